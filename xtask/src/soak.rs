//! `cargo xtask soak`: many VM lives in a row, with memory accounting.
//!
//! Boots KCore -> KServ (`virt`, GICv3, 4 CPUs) with KServ's `kvmlife` test
//! told to run `--cycles` create/run/destroy cycles of the bare-metal test
//! guest and as many of the Linux guest (alternately non-protected and
//! protected; `kserv.kvmlife_guest_cycles`, `kserv.kvmlife_cycles`). After
//! every Linux cycle KCore's self-check must find its ownership table
//! agreeing with every stage 2 and no page left in any guest; at the end
//! every pinned page must be unpinned, no teardown may have kept a page and
//! KServ's free memory must be back within 1 MiB, kernel cache growth
//! counted apart (kserv-shim/initramfs/
//! tests/kvmlife says how it is measured). The system test `kvm_life` runs
//! the same test with 20 test-guest and 6 Linux cycles; this is the long version, too long
//! for every CI run. The outcome goes to `docs/soak.md`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kcore_qemu::kserv::{self, Verdict};
use kcore_qemu::{Machine, QemuCommand, Session};

use crate::fetch::Series;
use crate::paths;
use crate::run::{boot_target, log_path};

/// Arguments of `cargo xtask soak`.
#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// Cycles of each guest (the test guest, then the Linux guest).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10000))]
    cycles: u32,
    /// Do not write docs/soak.md.
    #[arg(long)]
    no_doc: bool,
    /// Do not build first; use what is in build/.
    #[arg(long)]
    no_build: bool,
}

/// Runs `cargo xtask soak`.
pub fn main(args: SoakArgs) -> anyhow::Result<()> {
    if !args.no_build {
        crate::build::all()?;
    }
    kcore_qemu::check_qemu()?;
    let machine = Machine::virt_gicv3().with_smp(4);
    machine.validate().map_err(anyhow::Error::msg)?;
    let tests = ["kvmlife", "version"];
    let n = args.cycles;
    let cmd = QemuCommand::new(machine.clone(), boot_target(Series::Linux6_1, false, None)?)
        .append(&format!(
            "{} kserv.kvmlife_guest_cycles={n} kserv.kvmlife_cycles={n}",
            kserv::batch_args(&tests, machine.smp)
        ));
    // Generous: a Linux cycle takes 10-20 s under QEMU TCG on 2 cores.
    let timeout = Duration::from_secs(900 + 60 * u64::from(n));
    let log = log_path("soak");
    eprintln!(
        "soak: {machine}; {n} test-guest and {n} Linux guest cycles; console in {} \
         (progress: `kvmlife:` lines)",
        log.display()
    );
    let started = Instant::now();
    let mut session = Session::spawn(&cmd, &log)?;
    let report = kserv::run_batch(&mut session, timeout)?;
    let secs = started.elapsed().as_secs();
    let detail = report
        .tests
        .iter()
        .find(|t| t.name == "kvmlife")
        .map(|t| (t.verdict, t.detail.clone()));
    let ok = report.check(&tests);
    let line = match &detail {
        Some((Verdict::Pass, d)) => format!("PASS {d}"),
        Some((_, d)) => format!("FAIL {d}"),
        None => "no result line from kvmlife".to_string(),
    };
    eprintln!("soak: {line} ({secs} s)");
    if !args.no_doc {
        let out = paths::root().join("docs").join("soak.md");
        std::fs::write(&out, render(n, &machine.to_string(), &line, secs))
            .with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!("soak: written to {}", out.display());
    }
    if let Err(problems) = ok {
        bail!("the soak failed:\n  - {}", problems.join("\n  - "));
    }
    Ok(())
}

fn render(cycles: u32, machine: &str, line: &str, secs: u64) -> String {
    let mut t = String::new();
    let _ = write!(
        t,
        "# Soak: VM lives with memory accounting\n\n\
         <!-- Written by `cargo xtask soak`; do not edit by hand. -->\n\n\
         ```sh\n\
         cargo xtask soak              # --cycles N (default 200)\n\
         ```\n\n\
         KServ's `kvmlife` test with {cycles} create/run/destroy cycles of the bare-metal \
         test guest (`kserv-tools kvmapi --cycles`) and then {cycles} of the Linux guest \
         (`kcore-vmm`, 2 vCPUs, marker, checksum and power-off checked), each alternately \
         non-protected and protected. After every Linux cycle KCore's self-check \
         (`HostSelfCheck`) must find the ownership table agreeing with every stage-2 table \
         and no page left in any guest (no ownership drift); at the end the kernel's \
         `FOLL_PIN` counters must balance, no teardown may have kept a page, and KServ's \
         free memory (MemFree plus the per-CPU free lists, after `stat_refresh`) must be \
         back within 1 MiB of where it was before the cycles (no page lost), not counting \
         what the kernel's slab, stacks, page tables and per-CPU areas grew by over hundreds \
         of VMM processes (reported, and bounded at 4 MiB on its own). The self-check's \
         host pages are the pages KServ's stage 2 maps at the time (it maps lazily, so they \
         move), not an ownership count. Before the \
         cycles the same test runs two guests at once, kills a VMM mid-boot and checks \
         SIGBUS for forked readers of donated pages. The system test `kvm_life` runs it \
         with 20 test-guest and 6 Linux guest cycles in every `cargo xtask test`.\n\n\
         Last run: {machine}; {secs} s of wall-clock time.\n\n\
         ```text\n\
         kvmlife: {line}\n\
         ```\n"
    );
    t
}
