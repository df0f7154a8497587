//! A damaged boot image must be refused cleanly: KCore reports the bad (or
//! missing) payload, says it halts and powers the machine off, so QEMU exits
//! by itself; Linux never starts and the console shows no exception loop.
//! Each case boots a damaged copy of `build/kcore.img` (written to
//! `build/systests/`).

use kcore_qemu::{Boot, Machine, QemuCommand};
use kcore_systests::image::{Damage, write_damaged};
use kcore_systests::{TestResult, build_dir, expect_clean_stop, kcore_image};

fn refused(damage: Damage, message: &str) -> TestResult {
    let name = format!("malformed-{}", damage.name());
    let image = write_damaged(&kcore_image()?, damage, &build_dir().join("systests"))?;
    let cmd = QemuCommand::new(Machine::virt_gicv3(), Boot::Kcore { image });
    expect_clean_stop(&name, &cmd, message)
}

#[test]
fn truncated_payload() -> TestResult {
    refused(Damage::Truncated, "bad KServ payload:")
}

#[test]
fn flipped_byte_in_kernel() -> TestResult {
    refused(Damage::FlippedKernelByte, "bad KServ payload:")
}

#[test]
fn zeroed_payload_magic() -> TestResult {
    refused(Damage::ZeroedMagic, "(?:no|bad) KServ payload")
}
