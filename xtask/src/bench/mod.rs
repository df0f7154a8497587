//! `cargo xtask bench`: benchmarks under `-icount shift=0,sleep=off`.
//!
//! Under that flag QEMU advances the virtual clock by one nanosecond per
//! executed instruction and skips idle time instead of sleeping, so the
//! guest-visible counter measures instructions, not host time: results are
//! deterministic and independent of host load, and a ratio between two
//! configurations on the same machine is meaningful on a noisy laptop.
//!
//! Each benchmark boots the same QEMU machine twice, side by side: KCore
//! with KServ (Debian's kernel at EL1 and the shim), and the same kernel
//! booted directly at EL2, where it runs KVM in nVHE mode ("stock KVM").
//!
//! - `bench kvm` (also plain `bench`, [`kvm`]): VMs through `/dev/kvm` on
//!   both, microbenchmarks of the test guest and the macro rows, one table
//!   of both columns and their ratio, and JSON;
//! - `bench boot` ([`boot`]): boot to KServ's `/init`.

mod boot;
mod kvm;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kcore_qemu::{Machine, QemuCommand, kserv};

use crate::fetch::Series;
use crate::run::boot_target;

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: Option<What>,
    /// `bench kvm`'s arguments, for plain `bench`.
    #[command(flatten)]
    kvm: Args,
}

/// Arguments of each benchmark.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Boots of each side; the median of each figure is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Number of CPUs (the same for both).
    #[arg(long, default_value_t = 2)]
    smp: u32,
    /// RAM in MiB (the same for both).
    #[arg(long, value_name = "MiB", default_value_t = 1024)]
    mem: u32,
    /// The `virt` board's GIC version (`gic-version=`, the same for both):
    /// 3, or 2 for the GICv2 table (the guests get the host's kind of vGIC).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=3))]
    gic: u8,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Seconds each boot may take (wall-clock).
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    timeout: u64,
    /// Do not build first; use what is in build/.
    #[arg(long)]
    no_build: bool,
}

/// The benchmarks.
#[derive(clap::Subcommand, Debug)]
enum What {
    /// VMs on stock KVM and on KCore side by side: microbenchmarks and macro
    /// rows, a table with both columns and the ratio, JSON (the default).
    Kvm(Args),
    /// Instruction time from reset to KServ's /init: KCore -> KServ against
    /// the same kernel booted directly at EL2.
    Boot(Args),
}

/// Runs `cargo xtask bench`.
pub fn main(args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        None => kvm::main(&args.kvm),
        Some(What::Kvm(args)) => kvm::main(&args),
        Some(What::Boot(args)) => boot::main(&args),
    }
}

/// One side of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Kcore,
    Direct,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Kcore => "KCore -> KServ at EL1",
            Side::Direct => "direct at EL2, no KCore",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Side::Kcore => "kcore",
            Side::Direct => "direct",
        }
    }
}

/// The two QEMU commands of a comparison: the same machine, under
/// `-icount shift=0,sleep=off`, and the same kernel arguments, booting
/// KCore's image and the kernel directly.
struct Pair {
    machine: Machine,
    kcore: QemuCommand,
    direct: QemuCommand,
}

impl Pair {
    /// Builds first unless `args.no_build`; batch runs of KServ's `tests`
    /// on `args`' machine.
    fn new(args: &Args, tests: &[&str]) -> anyhow::Result<Self> {
        if !args.no_build {
            crate::build::all()?;
        }
        kcore_qemu::check_qemu()?;
        let machine = virt_machine(args.gic)
            .with_smp(args.smp)
            .with_mem_mib(args.mem)
            .with_icount(true);
        machine.validate().map_err(anyhow::Error::msg)?;
        let extra = kserv::batch_args(tests, machine.smp);
        let kcore = QemuCommand::new(machine.clone(), boot_target(Series::Linux6_1, false, None)?)
            .append(&extra);
        let direct = QemuCommand::new(machine.clone(), boot_target(Series::Linux6_1, true, None)?)
            .append(&extra);
        Ok(Pair {
            machine,
            kcore,
            direct,
        })
    }

    /// Runs `f` for both sides at once, two QEMUs side by side (under
    /// `-icount` the figures do not depend on host load): `(KCore's,
    /// direct's)`.
    fn both<T: Send>(
        &self,
        f: impl Fn(&QemuCommand, Side) -> anyhow::Result<T> + Sync,
    ) -> anyhow::Result<(T, T)> {
        std::thread::scope(|s| {
            let k = s.spawn(|| f(&self.kcore, Side::Kcore));
            let d = s.spawn(|| f(&self.direct, Side::Direct));
            Ok((join(k)?, join(d)?))
        })
    }
}

/// QEMU's `virt` board with GIC version `gic` (2, or 3 for anything else).
fn virt_machine(gic: u8) -> Machine {
    if gic == 2 {
        Machine::virt_gicv2()
    } else {
        Machine::virt_gicv3()
    }
}

fn join<T>(handle: std::thread::ScopedJoinHandle<'_, anyhow::Result<T>>) -> anyhow::Result<T> {
    handle
        .join()
        .unwrap_or_else(|_| bail!("a benchmark thread panicked"))
}

/// Writes `text` to `path`, making its directory first.
fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The median; the mean of the middle two for an even count.
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn gic_picks_the_board() {
        assert_eq!(virt_machine(2).gic.version(), 2);
        assert_eq!(virt_machine(3).gic.version(), 3);
    }
}
