//! Traps the hypervisor must handle on the guest's behalf: a system register
//! access it answers with UNDEFINED, and FP/SIMD state across many exits.

use crate::guest::exception::catch_undefined;
use crate::guest::fpsimd::{self, EXIT_ROUNDS};
use crate::guest::runner::{TestResult, ensure, fail};
use core::arch::asm;

/// What the destination register holds before the trapped read: an
/// UNDEFINED instruction must not change it.
const MARK: u64 = 0x5eed_5eed_5eed_5eed;

/// A read of `S3_1_C15_C0_0` and a write of `S3_0_C15_C0_0`, both
/// IMPLEMENTATION DEFINED registers trapped by `HCR_EL2.TIDCP`, each take
/// exactly one UNDEFINED exception at that instruction; the read leaves its
/// destination alone.
pub fn sysreg_undef() -> TestResult {
    let mut value = MARK;
    let mut at = 0u64;
    let caught = catch_undefined(|| {
        // SAFETY: the read is UNDEFINED at EL1 under the hypervisor; the
        // handler skips it. Only `at` and `value` are written.
        unsafe {
            asm!(
                "adr {at}, 2f",
                "2: mrs {value}, s3_1_c15_c0_0",
                at = out(reg) at,
                value = inout(reg) value,
                options(nostack, preserves_flags),
            )
        }
    });
    match caught {
        Some(elr) => ensure!(
            elr == at,
            "read: UNDEFINED taken at {elr:#x}, the mrs is at {at:#x}"
        ),
        None => fail!("read of S3_1_C15_C0_0 did not take UNDEFINED (gave {value:#x})"),
    }
    ensure!(
        value == MARK,
        "read: the mrs changed its destination to {value:#x}"
    );

    let caught = catch_undefined(|| {
        // SAFETY: the write is UNDEFINED at EL1 under the hypervisor; the
        // handler skips it. Only `at` is written.
        unsafe {
            asm!(
                "adr {at}, 2f",
                "2: msr s3_0_c15_c0_0, {value}",
                at = out(reg) at,
                value = in(reg) MARK,
                options(nostack, preserves_flags),
            )
        }
    });
    match caught {
        Some(elr) => ensure!(
            elr == at,
            "write: UNDEFINED taken at {elr:#x}, the msr is at {at:#x}"
        ),
        None => fail!("write of S3_0_C15_C0_0 did not take UNDEFINED"),
    }
    Ok(())
}

/// vCPU 0's Q registers, FPCR and FPSR survive `2 * EXIT_ROUNDS` exits.
pub fn fpsimd() -> TestResult {
    if let Err(m) = fpsimd::check(&fpsimd::VCPU0_PATTERN) {
        fail!("{m} changed across {} exits", 2 * EXIT_ROUNDS);
    }
    Ok(())
}
