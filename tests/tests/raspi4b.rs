//! KCore on QEMU's Raspberry Pi 4 (`raspi4b`): no PSCI firmware (an `SMC`
//! at EL2 would fall into QEMU's empty EL3 and never return), CPUs behind a
//! spin table, the console behind `/soc`'s `ranges` and a GIC-400. Boots
//! `build/kcore.img` with the tree the build edits for QEMU
//! (`build/raspi4b/`, `xtask/src/build/raspi4b.rs`) and checks that KCore
//! prints, releases the three secondary CPUs into its pen, and that KServ
//! reaches `/init` with 4 CPUs at EL1 and passes `hvc`, `hotplug` (CPU_OFF
//! back to the pen, AFFINITY_INFO from KCore's own state, CPU_ON from the
//! pen), `protection` and `vmisolation`. The run ends with KServ's
//! `SYSTEM_OFF`, which parks the CPUs (the board has no power-off), and the
//! harness then ends QEMU. A second run checks `SYSTEM_RESET` through the PM
//! watchdog.

use kcore_qemu::{Boot, Machine};
use kcore_systests::{
    Failure, TestResult, artefact, batch, expect_reset, kcore_image, kcore_trouble,
};

const TESTS: &[&str] = &["boot", "hvc", "hotplug", "protection", "vmisolation"];

#[test]
fn raspi4b_spin_table_4_cpus_at_el1() -> TestResult {
    let name = "raspi4b";
    let machine = Machine::raspi4b(artefact("raspi4b/bcm2711-rpi-4-b-qemu.dtb")?);
    let boot = Boot::Kcore {
        image: kcore_image()?,
    };
    let (report, run) = batch(name, machine, boot, TESTS)?;
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));
    let lines = run.session.lines();
    let has = |s: &str| lines.iter().any(|l| l.contains(s));
    if report.kcore_banner.is_none() {
        return Err(fail("no KCore banner: KCore did not print".into()));
    }
    if !has("kcore: no PSCI firmware: 3 secondary CPUs released from the spin table") {
        return Err(fail(
            "KCore did not release 3 CPUs from the spin table".into(),
        ));
    }
    if !has("kcore: the spin table's page [0x0, 0x1000) is KCore's") {
        return Err(fail("the stub's page 0 was not made KCore's".into()));
    }
    let boot_line = report.tests.iter().find(|t| t.name == "boot");
    if !boot_line.is_some_and(|t| t.detail.contains("4 CPUs online") && t.detail.contains("EL1")) {
        return Err(fail(format!(
            "KServ is not up with 4 CPUs at EL1: {boot_line:?}"
        )));
    }
    if !report.parked {
        return Err(fail("KCore did not park the CPUs at SYSTEM_OFF".into()));
    }
    if let Some(l) = lines.iter().find(|l| kcore_trouble(l)) {
        return Err(fail(format!("KCore reported trouble: {l}")));
    }
    Ok(())
}

/// KServ's `SYSTEM_RESET` on `raspi4b` (no firmware): KCore wipes the VMs
/// and arms the PM watchdog it found in the tree; QEMU's model of the
/// watchdog resets the board, and QEMU (run with `-no-reboot`) exits.
#[test]
fn raspi4b_system_reset_through_the_pm_watchdog() -> TestResult {
    expect_reset(
        "raspi4b-reset",
        Machine::raspi4b(artefact("raspi4b/bcm2711-rpi-4-b-qemu.dtb")?),
        &["kcore: system reset through the PM watchdog"],
    )
}
