//! PSCI SYSTEM_RESET from KServ goes through KCore to the firmware: KServ's
//! `reset` test reboots, and QEMU (run with `-no-reboot`) exits by itself
//! after Linux's "reboot: Restarting system".

use std::time::Duration;

use kcore_qemu::{Boot, Machine, QemuCommand};
use kcore_systests::{BOOT_TIMEOUT, Failure, TestResult, kcore_image, spawn};

#[test]
fn system_reset_reaches_the_firmware() -> TestResult {
    let name = "reset";
    let machine = Machine::virt_gicv3().with_smp(2);
    let cmd = QemuCommand::new(
        machine,
        Boot::Kcore {
            image: kcore_image()?,
        },
    )
    .append("kserv.mode=batch kserv.tests=reset");
    let mut run = spawn(name, &cmd)?;
    let s = &mut run.session;
    s.wait_for("kserv-shim: KCore ABI version", BOOT_TIMEOUT)?;
    s.wait_for("reboot: Restarting system", Duration::from_secs(60))?;
    let status = s.wait_exit(Duration::from_secs(60))?;
    if !status.success() {
        return Err(Failure::from(
            s.failure(format!("{name}: QEMU exited with {status}")),
        ));
    }
    Ok(())
}
