//! Debian's own QEMU (bookworm's `qemu-system-aarch64` 7.2 and
//! bookworm-backports' 10.0, unmodified, with Debian's libraries) as the VMM
//! on `/dev/kvm`: KServ's `debqemu` test has each boot a Linux guest with
//! `-accel kvm -M virt,gic-version=3[,its=off] -cpu host`, 2 vCPUs, the
//! in-kernel GICv3 (and ITS), a virtio-blk-pci disk and a virtio-net-pci NIC
//! on user networking to its busybox init, which reads and writes the disk,
//! takes a DHCP lease, fetches a file by TFTP, prints its markers and powers
//! off. The QEMU root is only in the initramfs variant
//! `build/kserv/initramfs-debqemu.cpio` and the boot image packed with it,
//! `build/kcore-debqemu.img` (`xtask/src/build/debqemu.rs`).
//!
//! Both columns must, on both QEMUs, boot the guest with `its=off` (INTx),
//! and boot it on the default machine (the in-kernel ITS, MSI-X), migrate
//! it running to a file and back (dirty logging, the vGIC's and the ITS's
//! state, the devices) and finish it there (`docs/kvm.md`, "Debian's
//! QEMU").

use kcore_qemu::{Boot, Machine};
use kcore_systests::{
    Failure, SlotSession, TestResult, artefact, batch_within, direct_boot, kcore_trouble,
    missing_marker,
};
use std::time::Duration;

/// KServ's boot, QEMU's start-up and the nested guest boots under TCG
/// (four runs, two of them migrations).
const TIMEOUT: Duration = Duration::from_secs(1200);

/// Runs KServ's `debqemu` test on `boot`; fails unless it really ran (not
/// skipped) and both guests' markers reached the console.
fn run(name: &str, boot: Boot) -> Result<SlotSession, Failure> {
    let (report, run) = batch_within(
        name,
        Machine::virt_gicv3().with_smp(2),
        boot,
        &["debqemu"],
        TIMEOUT,
    )?;
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));
    let detail = report
        .tests
        .iter()
        .find(|t| t.name == "debqemu")
        .map(|t| t.detail.clone())
        .unwrap_or_default();
    if detail.starts_with("skipped") {
        return Err(fail(format!("debqemu did not run: {detail}")));
    }
    for qemu in ["QEMU 7.2", "QEMU 10.0"] {
        if !detail.contains(qemu) {
            return Err(fail(format!(
                "no {qemu} (Debian's bookworm and backports): {detail}"
            )));
        }
    }
    println!("{name}: debqemu: {detail}");
    // What each required run's console must show.
    let boot = [
        "KCORE-GUEST: hello from",
        "KCORE-GUEST: disk written",
        "KCORE-GUEST: net eth0 10.0.2.15",
        "KCORE-GUEST: tftp ",
        "KCORE-GUEST: done",
        "debqemu-exit 0",
    ];
    // And what the migrated guest's second QEMU must show.
    let resumed = [
        "KCORE-GUEST: held ",
        "KCORE-GUEST: disk written",
        "KCORE-GUEST: net eth0 10.0.2.15",
        "KCORE-GUEST: tftp ",
        "KCORE-GUEST: done",
    ];
    for version in ["7.2", "10.0"] {
        for (run_name, markers) in [("its-off", &boot[..]), ("migrate-its-b", &resumed[..])] {
            let prefix = format!("debqemu {version}-{run_name}| ");
            if let Some(m) = missing_marker(&run.session.lines(), &prefix, markers) {
                return Err(fail(format!("no `{m}` line on the console")));
            }
        }
    }
    Ok(run)
}

#[test]
fn debian_qemu_on_stock_kvm() -> TestResult {
    let Boot::Direct {
        kernel, cmdline, ..
    } = direct_boot()?
    else {
        unreachable!("direct_boot() is a direct boot")
    };
    let boot = Boot::Direct {
        kernel,
        initrd: Some(artefact("kserv/initramfs-debqemu.cpio")?),
        cmdline,
    };
    run("debqemu-direct", boot)?;
    Ok(())
}

#[test]
fn debian_qemu_on_kcore() -> TestResult {
    let boot = Boot::Kcore {
        image: artefact("kcore-debqemu.img")?,
    };
    let run = run("debqemu-kcore", boot)?;
    if let Some(bad) = run.session.lines().iter().find(|l| kcore_trouble(l)) {
        return Err(Failure::from(run.session.failure(format!(
            "debqemu-kcore: KCore reported trouble: {bad:?}"
        ))));
    }
    Ok(())
}
