//! PSCI SYSTEM_RESET from KServ goes through KCore to the firmware: KServ's
//! `reset` test reboots, and QEMU (run with `-no-reboot`) exits by itself
//! after Linux's "reboot: Restarting system".

use kcore_qemu::Machine;
use kcore_systests::{TestResult, expect_reset};

#[test]
fn system_reset_reaches_the_firmware() -> TestResult {
    expect_reset("reset", Machine::virt_gicv3().with_smp(2), &[])
}
