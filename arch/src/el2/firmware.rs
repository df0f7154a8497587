//! `SMC` to the firmware below KCore (EL3, or QEMU's built-in PSCI).

use core::arch::asm;
use kcore::hw::Firmware;

/// The firmware, reached through `SMC #0` (SMCCC 1.1: `x0-x17` clobbered).
#[derive(Debug, Default)]
pub struct SmcFirmware;

/// Issues `SMC #0`.
pub fn smc(fid: u32, a1: u64, a2: u64, a3: u64) -> u64 {
    let mut x0 = fid as u64;
    // SAFETY: an SMCCC call; the firmware may clobber x0-x17 (declared) and
    // preserves everything else, including the stack and memory KCore owns.
    unsafe {
        asm!("smc #0",
            inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
            out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _, options(nostack));
    }
    x0
}

impl Firmware for SmcFirmware {
    fn smc(&mut self, fid: u32, args: [u64; 3]) -> u64 {
        smc(fid, args[0], args[1], args[2])
    }
}
