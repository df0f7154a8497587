//! KCore boots KServ (Debian's kernel at EL1) to its `/init` on four CPUs, on
//! each interrupt controller and CPU model we support, and KServ's `boot`,
//! `version`, `hvc` and `hotplug` tests pass: all CPUs online, KCore's ABI
//! version read through the device tree and a hypercall, unknown and legacy
//! hypercalls refused, and every secondary CPU taken offline and back
//! through KCore's PSCI (CPU_OFF, AFFINITY_INFO, CPU_ON).

use kcore_qemu::{Boot, Cpu, Machine};
use kcore_systests::{Failure, TestResult, batch, kcore_image};

const TESTS: &[&str] = &["boot", "version", "hvc", "hotplug"];

fn boots(name: &str, machine: Machine) -> TestResult {
    let boot = Boot::Kcore {
        image: kcore_image()?,
    };
    let (report, run) = batch(name, machine, boot, TESTS)?;
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));
    match (report.kcore_banner, report.linux_banner) {
        (Some(k), Some(l)) if k < l => {}
        (Some(_), Some(_)) => return Err(fail("Linux's banner came before KCore's".into())),
        (None, _) => return Err(fail("no KCore banner (`kcore: KCore v...`)".into())),
        (_, None) => {
            return Err(fail(
                "no Linux banner (`Booting Linux on physical CPU`)".into(),
            ));
        }
    }
    Ok(())
}

#[test]
fn gicv3_cortex_a72_4_cpus() -> TestResult {
    boots(
        "boot-gicv3-a72",
        Machine::virt_gicv3().with_cpu(Cpu::CortexA72).with_smp(4),
    )
}

#[test]
fn gicv2_cortex_a72_4_cpus() -> TestResult {
    boots(
        "boot-gicv2-a72",
        Machine::virt_gicv2().with_cpu(Cpu::CortexA72).with_smp(4),
    )
}

#[test]
fn gicv3_max_4_cpus() -> TestResult {
    boots(
        "boot-gicv3-max",
        Machine::virt_gicv3().with_cpu(Cpu::Max).with_smp(4),
    )
}
