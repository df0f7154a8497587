//! Build orchestration for KCore/KServ: `cargo xtask <command>`.
//!
//! The two commands a new machine needs are `cargo xtask run` (build everything
//! and boot KCore -> KServ under QEMU) and `cargo xtask test` (every test). Both
//! install what they lack first (Debian packages, Rust targets, Debian's kernel,
//! headers and busybox into `.cache/`).

mod bench;
mod build;
mod cmd;
mod deps;
mod fetch;
mod fuzz;
mod paths;
mod run;
mod security;
mod sign;
mod soak;
mod systests;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Build, run and test KCore/KServ")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the Debian packages and Rust targets the build needs.
    Deps,
    /// Download Debian's arm64 kernels (6.1 and 6.12), headers and busybox into `.cache/`.
    Fetch,
    /// Build KCore, the shim modules, KServ's initramfs and pack `build/kcore.img`
    /// (and `build/kcore-6.12.img`, KServ on Debian's 6.12; `build/rpi4-sd.img`, the Pi 4's card).
    Build,
    /// Build everything and write a board's SD-card image (`rpi4`:
    /// `build/rpi4-sd.img`, docs/platforms.md).
    Image {
        /// The board.
        #[arg(value_enum)]
        board: ImageBoard,
    },
    /// Build everything, then boot the stack under QEMU.
    Run(run::RunArgs),
    /// Run every test: formatting, lints, host tests, QEMU system tests.
    Test(test::TestArgs),
    /// Run the attack suite against KCore under QEMU and write docs/security.md.
    Security(security::SecurityArgs),
    /// Many VM lives in a row with memory accounting (200 cycles); writes docs/soak.md.
    Soak(soak::SoakArgs),
    /// Benchmarks under `-icount`, KCore against the same kernel booted at EL2.
    Bench(bench::BenchArgs),
    /// Fuzz KCore's trap dispatcher with libFuzzer (`kcore/fuzz`; docs/model-checking.md).
    Fuzz(fuzz::FuzzArgs),
    /// Write the detached Ed25519 signature of a protected VM's image.
    SignImage(sign::SignArgs),
}

/// Boards `cargo xtask image` writes a card for.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ImageBoard {
    /// Raspberry Pi 4 Model B.
    Rpi4,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Deps => deps::ensure(),
        Command::Fetch => {
            deps::ensure()?;
            fetch::ensure()?;
            fetch::ensure_series(fetch::Series::Linux6_12).map(|_| ())
        }
        Command::Build => build::all().map(|_| ()),
        Command::Image {
            board: ImageBoard::Rpi4,
        } => {
            let built = build::all()?;
            cmd::step(
                "card",
                format!(
                    "write it with: dd if={} of=/dev/<card> bs=4M conv=fsync (docs/platforms.md)",
                    cmd::show(&built.rpi4_sd)
                ),
            );
            Ok(())
        }
        Command::Run(args) => run::main(args),
        Command::Test(args) => test::main(args),
        Command::Security(args) => security::main(args),
        Command::Soak(args) => soak::main(args),
        Command::Bench(args) => bench::main(args),
        Command::Fuzz(args) => fuzz::main(args),
        Command::SignImage(args) => sign::main(args),
    }
}
