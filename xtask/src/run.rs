//! `cargo xtask run`: build everything, then boot the stack under QEMU.
//!
//! By default KCore's boot image (`build/kcore.img`) boots on `virt` with a
//! GICv3 and four Cortex-A72s, and QEMU takes over the terminal (`-nographic`:
//! the serial console is stdio, Ctrl-A X quits, Ctrl-A C toggles the monitor).
//! `--kernel 6.12` boots the image whose KServ is Debian's 6.12
//! (`build/kcore-6.12.img`) instead of 6.1's.
//! `--direct` boots the same Debian kernel straight at EL2 without KCore;
//! `--image` boots another image (e.g. a damaged one). `--batch` runs KServ's
//! built-in tests non-interactively with a timeout and exits 0 only if every
//! test passed and QEMU powered off, which makes it usable in scripts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use kcore_qemu::kserv::{self, Verdict};
use kcore_qemu::{Boot, Cpu, Machine, QemuCommand, Session, SessionOptions};

use crate::fetch::Series;
use crate::paths;

/// Debian's kernel series KServ runs.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum KernelKind {
    /// Linux 6.1, bookworm's kernel (`build/kcore.img`).
    #[value(name = "6.1")]
    Linux6_1,
    /// Linux 6.12, from bookworm-backports (`build/kcore-6.12.img`).
    #[value(name = "6.12")]
    Linux6_12,
}

impl KernelKind {
    fn series(self) -> Series {
        match self {
            KernelKind::Linux6_1 => Series::Linux6_1,
            KernelKind::Linux6_12 => Series::Linux6_12,
        }
    }
}

/// The board.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum MachineKind {
    /// QEMU `virt` with a GICv3.
    VirtGicv3,
    /// QEMU `virt` with a GICv2.
    VirtGicv2,
    /// QEMU's Raspberry Pi 4 (`raspi4b`) with Debian's tree edited for QEMU
    /// (`build/raspi4b/`): 4 CPUs and 1 GiB, whatever --smp and --mem say.
    Raspi4b,
    /// QEMU `virt` with a GICv3 booted by Debian's EDK2 with a device tree
    /// (`acpi=off`): `build/kcore.efi` from an EFI system partition
    /// (`build/esp-run/`, made for the run).
    VirtEfiDt,
    /// QEMU `virt` with a GICv3 booted by Debian's EDK2 describing it with
    /// ACPI only, as a server's firmware does: `build/kcore.efi` from an
    /// EFI system partition, KServ on ACPI.
    VirtEfiAcpi,
}

/// The CPU model.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum CpuKind {
    /// Cortex-A72 (Armv8.0, no VHE).
    #[value(name = "cortex-a72")]
    CortexA72,
    /// Every feature QEMU implements.
    Max,
}

/// Arguments of `cargo xtask run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The board.
    #[arg(long, value_enum, default_value = "virt-gicv3")]
    machine: MachineKind,
    /// The CPU model.
    #[arg(long, value_enum, default_value = "cortex-a72")]
    cpu: CpuKind,
    /// Number of CPUs.
    #[arg(long, default_value_t = 4)]
    smp: u32,
    /// RAM in MiB.
    #[arg(long, value_name = "MiB", default_value_t = 1024)]
    mem: u32,
    /// Debian's kernel series KServ (or, with --direct, the kernel at EL2) runs.
    #[arg(long, value_enum, default_value = "6.1", conflicts_with = "image")]
    kernel: KernelKind,
    /// Boot Debian's kernel directly at EL2, without KCore (the stock-KVM baseline).
    #[arg(long, conflicts_with = "image")]
    direct: bool,
    /// Boot this image instead of build/kcore.img (e.g. a damaged copy); with
    /// --machine virt-efi-dt, this EFI application instead of build/kcore.efi.
    #[arg(long, value_name = "PATH")]
    image: Option<PathBuf>,
    /// Run KServ's tests non-interactively, wait for QEMU to power off, report.
    #[arg(long)]
    batch: bool,
    /// Tests to run with --batch [default: boot,version; with --direct: boot,nokcore].
    #[arg(long, value_delimiter = ',', requires = "batch")]
    tests: Option<Vec<String>>,
    /// Seconds --batch waits for the tests and QEMU's exit.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    timeout: u64,
    /// Extra kernel command-line arguments (after the batch ones).
    #[arg(
        long,
        value_name = "STR",
        allow_hyphen_values = true,
        default_value = ""
    )]
    append: String,
    /// Run under -icount shift=0,sleep=off (deterministic instruction time).
    #[arg(long)]
    icount: bool,
    /// Show the whole console with --batch, not just the test lines.
    #[arg(long, short)]
    verbose: bool,
    /// Do not build first; boot what is in build/.
    #[arg(long)]
    no_build: bool,
}

impl RunArgs {
    fn machine(&self) -> Machine {
        let machine = match self.machine {
            MachineKind::VirtGicv3 => Machine::virt_gicv3(),
            MachineKind::VirtGicv2 => Machine::virt_gicv2(),
            MachineKind::VirtEfiDt => Machine::virt_efi_dt(),
            MachineKind::VirtEfiAcpi => Machine::virt_efi_acpi(),
            // QEMU fixes the rest of the board.
            MachineKind::Raspi4b => return Machine::raspi4b(paths::raspi4b_dtb()),
        };
        let cpu = match self.cpu {
            CpuKind::CortexA72 => Cpu::CortexA72,
            CpuKind::Max => Cpu::Max,
        };
        machine
            .with_cpu(cpu)
            .with_smp(self.smp)
            .with_mem_mib(self.mem)
            .with_icount(self.icount)
    }

    fn tests(&self) -> Vec<String> {
        match &self.tests {
            Some(tests) => tests.iter().filter(|t| !t.is_empty()).cloned().collect(),
            None if self.direct => vec!["boot".into(), "nokcore".into()],
            None => vec!["boot".into(), "version".into()],
        }
    }
}

/// What to boot: KCore's image with KServ on Debian's `series`, or that
/// kernel, its initramfs and command line for a direct boot. Fails with a
/// hint when the build has not produced them.
pub fn boot_target(series: Series, direct: bool, image: Option<&Path>) -> anyhow::Result<Boot> {
    if direct {
        let kernel = require(&paths::kserv_kernel(series))?;
        let initrd = require(&paths::kserv_initramfs(series))?;
        let cmdline_path = require(&paths::kserv_cmdline(series))?;
        let cmdline = std::fs::read_to_string(&cmdline_path)
            .with_context(|| format!("reading {}", cmdline_path.display()))?;
        Ok(Boot::Direct {
            kernel,
            initrd: Some(initrd),
            cmdline: cmdline.trim().to_string(),
        })
    } else {
        let image = match image {
            Some(image) => image.to_path_buf(),
            None => require(&paths::boot_image(series))?,
        };
        if !image.is_file() {
            bail!("{} does not exist", image.display());
        }
        Ok(Boot::Kcore { image })
    }
}

/// What a machine with UEFI firmware boots: `build/kcore.efi` (or
/// `image`, an EFI application) from the partition `build/<esp>/`, which
/// the run fills ([`QemuCommand::prepare`]).
pub fn efi_target(direct: bool, image: Option<&Path>, esp: &str) -> anyhow::Result<Boot> {
    if direct {
        bail!("--direct boots Debian's kernel with QEMU's loader, not through UEFI firmware");
    }
    let efi = match image {
        Some(image) => require(image)?,
        None => require(&paths::kcore_efi())?,
    };
    Ok(Boot::Efi {
        efi,
        esp: paths::build_dir().join(esp),
    })
}

fn require(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        bail!(
            "{} is missing: run `cargo xtask build` first",
            path.display()
        )
    }
}

/// `build/logs/<name>.log`.
pub fn log_path(name: &str) -> PathBuf {
    paths::build_dir().join("logs").join(format!("{name}.log"))
}

/// Runs `cargo xtask run`.
pub fn main(args: RunArgs) -> anyhow::Result<()> {
    if !args.no_build {
        crate::build::all()?;
    }
    kcore_qemu::check_qemu()?;
    let machine = args.machine();
    machine.validate().map_err(anyhow::Error::msg)?;
    let series = args.kernel.series();
    let boot = if machine.uefi.is_some() {
        efi_target(args.direct, args.image.as_deref(), "esp-run")?
    } else {
        boot_target(series, args.direct, args.image.as_deref())?
    };
    let what = match &boot {
        Boot::Kcore { image } => format!("KCore -> KServ from {}", image.display()),
        Boot::Efi { efi, .. } => format!("KCore -> KServ from {} (UEFI)", efi.display()),
        Boot::Direct { .. } => format!(
            "Debian's {} kernel directly at EL2 (no KCore)",
            series.name()
        ),
    };
    if args.batch {
        batch(&args, machine, boot, &what)
    } else {
        interactive(&args, machine, boot, &what)
    }
}

fn interactive(args: &RunArgs, machine: Machine, boot: Boot, what: &str) -> anyhow::Result<()> {
    let cmd = QemuCommand::new(machine.clone(), boot)
        .append(&format!("kserv.cpus={}", machine.smp))
        .append(&args.append);
    eprintln!("run: booting {what} on {machine}");
    eprintln!("run: {}", cmd.display());
    eprintln!("run: the console is this terminal; quit with Ctrl-A X (Ctrl-A H: help)");
    cmd.prepare().context("preparing the boot")?;
    let status = cmd.command().status().context("starting QEMU")?;
    if status.success() {
        Ok(())
    } else {
        bail!("QEMU exited with {status}")
    }
}

fn batch(args: &RunArgs, machine: Machine, boot: Boot, what: &str) -> anyhow::Result<()> {
    let tests = args.tests();
    let names: Vec<&str> = tests.iter().map(String::as_str).collect();
    for name in &names {
        if !kserv::TESTS.contains(name) {
            eprintln!(
                "run: warning: `{name}` is not one of KServ's tests ({})",
                kserv::TESTS.join(", ")
            );
        }
    }
    let cmd = QemuCommand::new(machine.clone(), boot)
        .append(&kserv::batch_args(&names, machine.smp))
        .append(&args.append);
    let log = log_path(&format!(
        "run{}{}",
        if args.direct { "-direct" } else { "" },
        args.kernel.series().suffix()
    ));
    eprintln!("run: booting {what} on {machine}");
    eprintln!(
        "run: tests {}; timeout {} s; console log {}",
        names.join(","),
        args.timeout,
        log.display()
    );
    let mut session = Session::spawn_with(&cmd, &log, SessionOptions { echo: args.verbose })?;
    let report = kserv::run_batch_on(&mut session, &machine, Duration::from_secs(args.timeout))?;
    let secs = session.elapsed().as_secs_f64();
    drop(session);

    for t in &report.tests {
        println!("{t}");
    }
    let passed = report
        .tests
        .iter()
        .filter(|t| t.verdict == Verdict::Pass)
        .count();
    match report.check(&names) {
        Ok(()) => {
            let end = if report.parked {
                "KCore parked every CPU"
            } else {
                "QEMU powered off"
            };
            println!(
                "run: PASS: {passed}/{} tests passed, {end} after {secs:.1} s (log: {})",
                names.len(),
                log.display()
            );
            Ok(())
        }
        Err(problems) => {
            for p in &problems {
                println!("run: problem: {p}");
            }
            bail!(
                "run: FAIL: {passed}/{} tests passed, {} problem(s) after {secs:.1} s; console log: {}",
                names.len(),
                problems.len(),
                log.display()
            )
        }
    }
}
