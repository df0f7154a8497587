//! MMIO emulation through the test device's scratch register: every access
//! width, sign-extending loads, and the zero register as source and
//! destination.

use crate::guest::runner::{TestResult, ensure};
use crate::guest::testdev::{self, SignedLoad};
use kcore_test_guest::testdev::{SCRATCH, Width, scratch_load, scratch_store};

/// Bits above the access width in the source register of a narrow store;
/// the host must not store them.
const HIGH_GARBAGE: u64 = 0xDEAD_BEEF_0BAD_F00D;

/// Writes `low` (with [`HIGH_GARBAGE`] above the access width in the source
/// register) to SCRATCH with `width`; reads it back with `width` (all 64
/// bits of the destination must be right, the CPU zero-extends) and with 64
/// bits (only the written bits may have been stored).
fn round_trip(width: Width, low: u64) -> TestResult {
    let value = HIGH_GARBAGE & !width.mask() | low & width.mask();
    let stored = scratch_store(value, width);
    testdev::write(SCRATCH, width, value);
    let got = testdev::read(SCRATCH, width);
    let want = scratch_load(stored, width);
    ensure!(
        got == want,
        "wrote {value:#x}, read {got:#x} into the X register, expected {want:#x}"
    );
    let whole = testdev::read(SCRATCH, Width::Double);
    let want = scratch_load(stored, Width::Double);
    ensure!(
        whole == want,
        "wrote {value:#x}, 64-bit read gave {whole:#x}, expected {want:#x}"
    );
    Ok(())
}

/// 8-bit stores and loads.
pub fn mmio8() -> TestResult {
    round_trip(Width::Byte, 0xa5)?;
    round_trip(Width::Byte, 0x3c)
}

/// 16-bit stores and loads.
pub fn mmio16() -> TestResult {
    round_trip(Width::Half, 0xbeef)?;
    round_trip(Width::Half, 0x1234)
}

/// 32-bit stores and loads.
pub fn mmio32() -> TestResult {
    round_trip(Width::Word, 0xdead_beef)?;
    round_trip(Width::Word, 0x1234_5678)
}

/// 64-bit stores and loads.
pub fn mmio64() -> TestResult {
    round_trip(Width::Double, 0x0123_4567_89ab_cdef)?;
    round_trip(Width::Double, 0xfedc_ba98_7654_3210)
}

/// `ldrsb`/`ldrsh`/`ldrsw` into X registers and `ldrsb`/`ldrsh` into W
/// registers, with the loaded value's top bit set (sign-extended; the W
/// forms zero the upper 32 bits) and clear.
pub fn signed() -> TestResult {
    for (load, value) in [
        (SignedLoad::ByteToX, 0x12),
        (SignedLoad::HalfToX, 0x1234),
        (SignedLoad::WordToX, 0x1234_5678),
        (SignedLoad::ByteToW, 0x12),
        (SignedLoad::HalfToW, 0x1234),
        (SignedLoad::ByteToX, 0x80),
        (SignedLoad::HalfToW, 0x8000),
        (SignedLoad::WordToX, 0x8000_0000),
    ] {
        let width = load.width();
        testdev::write(SCRATCH, width, value);
        let raw = scratch_load(scratch_store(value, width), width);
        let want = load.extend(raw);
        let got = testdev::read_signed(SCRATCH, load);
        ensure!(
            got == want,
            "{} of {raw:#x}: register holds {got:#x}, expected {want:#x}",
            load.name()
        );
    }
    Ok(())
}

/// `strb wzr` ... `str xzr` store zero; `ldr xzr` changes nothing (not
/// the stack pointer, not the device).
pub fn zero_register() -> TestResult {
    let mark = 0x0123_4567_89ab_cdef;
    for width in [Width::Byte, Width::Half, Width::Word, Width::Double] {
        testdev::write(SCRATCH, Width::Double, mark);
        testdev::write_zero_register(SCRATCH, width);
        let got = testdev::read(SCRATCH, Width::Double);
        ensure!(
            got == u64::MAX,
            "{}-byte store of the zero register: 64-bit read gave {got:#x}",
            width.bytes()
        );
    }
    testdev::write(SCRATCH, Width::Double, mark);
    let (before, after) = testdev::read_into_zero_register(SCRATCH);
    ensure!(
        before == after,
        "ldr xzr changed SP from {before:#x} to {after:#x}"
    );
    let got = testdev::read(SCRATCH, Width::Double);
    ensure!(
        got == !mark,
        "after ldr xzr the register reads {got:#x}, expected {:#x}",
        !mark
    );
    Ok(())
}
