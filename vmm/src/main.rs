//! `kcore-vmm`: see the library and `docs/vmm.md`.

use kcore_vmm::args::{self, Command};
use std::io::Write;

fn main() {
    let code = real_main();
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

fn real_main() -> i32 {
    match args::parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            println!("{}", args::USAGE);
            0
        }
        Ok(Command::Run(opts)) => run(&opts),
        Err(e) => {
            eprintln!("kcore-vmm: {e}");
            1
        }
    }
}

#[cfg(target_arch = "aarch64")]
fn run(opts: &args::Options) -> i32 {
    use kcore_vmm::exit::Stop;
    let raw = kcore_vmm::terminal::RawStdin::enable();
    let result = kcore_vmm::vm::run(opts, raw.is_some());
    drop(raw);
    match result {
        Ok(stop) => {
            if stop != Stop::PowerOff {
                eprintln!("kcore-vmm: {stop}");
            }
            stop.exit_code()
        }
        Err(e) => {
            eprintln!("kcore-vmm: {e:#}");
            1
        }
    }
}

#[cfg(not(target_arch = "aarch64"))]
fn run(_: &args::Options) -> i32 {
    eprintln!("kcore-vmm: runs only on arm64 Linux (it drives KVM for arm64 guests)");
    1
}
