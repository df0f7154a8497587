//! KCore entered at EL1 (a machine without EL2, so the loader cannot enter
//! it at EL2) must say so on the console and stop cleanly: it powers the
//! machine off through the device tree's PSCI conduit, so QEMU exits by
//! itself, and KServ never starts.

use kcore_qemu::{Boot, Machine, QemuCommand};
use kcore_systests::{TestResult, expect_clean_stop, kcore_image};

#[test]
fn entry_at_el1_is_reported_and_stops() -> TestResult {
    let machine = Machine::virt_gicv3().with_el2(false);
    let cmd = QemuCommand::new(
        machine,
        Boot::Kcore {
            image: kcore_image()?,
        },
    );
    expect_clean_stop(
        "wrong-el",
        &cmd,
        "entered at EL1, but KCore must be entered at EL2",
    )
}
