//! `x0` (the boot registers) and `mmu` (the identity map).

use crate::guest::mmu::{self, MAIR_DEVICE_NGNRNE, MAIR_NORMAL_WB, par, sctlr};
use crate::guest::runner::{TestResult, ensure};
use core::sync::atomic::{AtomicU64, Ordering};
use kcore_test_guest::{BOOT_X0, RAM_BASE, RAM_SIZE, testdev};

/// `x0` at `_start`.
static X0: AtomicU64 = AtomicU64::new(0);
/// The OR of `x1`..`x30` at `_start`.
static OTHER_REGISTERS: AtomicU64 = AtomicU64::new(0);

/// Records vCPU 0's registers at entry (before any test runs).
pub fn record_boot_registers(x0: u64, other_registers: u64) {
    X0.store(x0, Ordering::SeqCst);
    OTHER_REGISTERS.store(other_registers, Ordering::SeqCst);
}

/// vCPU 0 started with `x0` = [`BOOT_X0`] and every other GPR zero.
pub fn x0() -> TestResult {
    let x0 = X0.load(Ordering::SeqCst);
    let others = OTHER_REGISTERS.load(Ordering::SeqCst);
    ensure!(x0 == BOOT_X0, "x0 was {x0:#x}, expected {BOOT_X0:#x}");
    ensure!(
        others == 0,
        "x1..x30 were not all zero (their OR: {others:#x})"
    );
    Ok(())
}

/// Builds the identity map, turns the MMU and caches on and checks the
/// result with address translations.
pub fn mmu() -> TestResult {
    mmu::build_tables();
    let value = mmu::enable();
    let on = sctlr::M | sctlr::C | sctlr::I;
    ensure!(
        value & on == on,
        "SCTLR_EL1 reads {value:#x} after enabling"
    );
    let page = 0x1000;
    for (what, va, attr) in [
        ("RAM start", RAM_BASE, MAIR_NORMAL_WB),
        ("RAM end", RAM_BASE + RAM_SIZE - page, MAIR_NORMAL_WB),
        ("the test device", testdev::BASE, MAIR_DEVICE_NGNRNE),
    ] {
        let p = mmu::translate(va);
        ensure!(
            p & par::F == 0 && p & par::PA == va && par::attr(p) == attr,
            "{what} ({va:#x}) translates to PAR_EL1 {p:#x}"
        );
    }
    let past = RAM_BASE + RAM_SIZE;
    let p = mmu::translate(past);
    ensure!(
        p & par::F != 0,
        "{past:#x}, past RAM, is mapped (PAR_EL1 {p:#x})"
    );
    Ok(())
}
