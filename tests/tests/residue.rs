//! No residue across a reset (DESIGN.md §2, invariant 6): a machine reset
//! with a protected guest alive leaves none of the guest's data in RAM.
//!
//! One QEMU, two boots (no `-no-reboot`: the reset restarts the machine
//! with RAM as it was, as a board's warm reset does). In the first, KServ's
//! `residue` test starts a protected Linux guest that fills 4 MiB of its own
//! memory with 16 random bytes and shows only their hex digits, then resets
//! the machine (PSCI SYSTEM_RESET through KCore) with the guest running. In
//! the second, the test reads every page of RAM KServ owns for those bytes:
//! KCore must have scrubbed every VM's page before the firmware reset.

use std::time::Duration;

use kcore_qemu::{Boot, Machine, Pattern, QemuCommand, kserv};
use kcore_systests::{BOOT_TIMEOUT, Failure, TestResult, kcore_image, kcore_trouble, spawn};

#[test]
fn a_reset_leaves_no_protected_guest_data_in_ram() -> TestResult {
    let name = "residue";
    let machine = Machine::virt_gicv3().with_smp(2);
    let cmd = QemuCommand::new(
        machine.clone(),
        Boot::Kcore {
            image: kcore_image()?,
        },
    )
    .append(&kserv::batch_args(&["residue"], machine.smp))
    .allow_reboot();
    let mut run = spawn(name, &cmd)?;
    let s = &mut run.session;
    s.wait_for("KSERV-RESIDUE: ready", BOOT_TIMEOUT)?;
    s.send("plant\n")?;
    let planted = s.wait_for(
        Pattern::regex(r"KSERV-RESIDUE: planted ([0-9a-f]{32})\b")?,
        Duration::from_secs(400),
    )?;
    let hex = planted
        .captures
        .get(1)
        .cloned()
        .flatten()
        .unwrap_or_default();
    s.wait_for("reboot: Restarting system", Duration::from_secs(60))?;
    // The second boot: same image, same command line, RAM as it was.
    s.wait_for("KSERV-RESIDUE: ready", BOOT_TIMEOUT)?;
    s.send(&format!("scan {hex}\n"))?;
    let result = s.wait_for("KSERV-TEST residue: ", Duration::from_secs(600))?;
    let fail =
        |s: &kcore_qemu::Session, what: String| Failure::from(s.failure(format!("{name}: {what}")));
    if !result.line.contains("PASS 0 places") {
        return Err(fail(s, format!("after the reset: {}", result.line)));
    }
    if let Some(bad) = s.lines().iter().find(|l| kcore_trouble(l)) {
        return Err(fail(s, format!("KCore reported trouble: {bad:?}")));
    }
    s.wait_for("KSERV-DONE", Duration::from_secs(60))?;
    let status = s.wait_exit(Duration::from_secs(90))?;
    if !status.success() {
        return Err(fail(s, format!("QEMU exited with {status}")));
    }
    Ok(())
}
