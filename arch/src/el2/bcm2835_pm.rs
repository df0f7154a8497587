//! The BCM2835/BCM2711 power-management block's watchdog: the Raspberry
//! Pi's only way to reset the board (it has no PSCI firmware and no
//! power-off). KCore uses it for KServ's `SYSTEM_RESET` when the platform
//! has no firmware (`kcore::psci::Backend::SpinTable`).
//!
//! Every write carries the password `0x5a` in bits 31:24. The sequence is
//! the one Linux's `bcm2835_wdt` restart and Xen's Raspberry Pi platform
//! use: a 10-tick timeout in `PM_WDOG` (+0x24), then `PM_RSTC` (+0x1c) with
//! the reset configuration field set to "full reset" (0x20), keeping its
//! other bits.

/// `PM_RSTC`: the reset control register.
const PM_RSTC: u64 = 0x1c;
/// `PM_WDOG`: the watchdog timer.
const PM_WDOG: u64 = 0x24;
/// Bits 31:24 of every write.
const PASSWORD: u32 = 0x5a00_0000;
/// `PM_RSTC.WRCFG` mask.
const RSTC_WRCFG_CLR: u32 = 0xffff_ffcf;
/// `PM_RSTC.WRCFG = full reset`.
const RSTC_WRCFG_FULL_RESET: u32 = 0x20;
/// Watchdog ticks before the reset.
const TIMEOUT_TICKS: u32 = 10;

/// Arms the watchdog to reset the board at once, then waits a bounded
/// while for it; returns only if the board did not reset.
///
/// # Safety
/// `base` must be the PM block's registers, mapped as device memory at
/// EL2; nothing else may be using them.
pub unsafe fn reset(base: u64) {
    let wdog = (base + PM_WDOG) as *mut u32;
    let rstc = (base + PM_RSTC) as *mut u32;
    // SAFETY: forwarded contract: the register is in the mapped block.
    unsafe { wdog.write_volatile(TIMEOUT_TICKS | PASSWORD) };
    // SAFETY: as above.
    let old = unsafe { rstc.read_volatile() };
    // SAFETY: as above.
    unsafe { rstc.write_volatile((old & RSTC_WRCFG_CLR) | PASSWORD | RSTC_WRCFG_FULL_RESET) };
    // 10 ticks of the 65.5 kHz watchdog clock: well under a millisecond.
    for _ in 0..10_000_000 {
        core::hint::spin_loop();
    }
}
