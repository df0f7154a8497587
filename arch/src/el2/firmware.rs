//! SMCCC calls to the firmware below KCore (EL3, or QEMU's built-in PSCI):
//! `SMC #0` normally, `HVC #0` only to report a wrong entry EL.

use core::arch::asm;
use kcore::hw::Firmware;

/// The firmware, reached through `SMC #0`.
#[derive(Debug, Default)]
pub struct SmcFirmware;

macro_rules! smccc_call {
    ($(#[$doc:meta])* $name:ident, $insn:literal) => {
        $(#[$doc])*
        pub fn $name(fid: u32, a1: u64, a2: u64, a3: u64) -> u64 {
            let mut x0 = fid as u64;
            // SAFETY: an SMCCC 1.1 call: the callee may clobber x0-x17
            // (declared) and preserves everything else, including the stack
            // and the memory KCore owns.
            unsafe {
                asm!($insn,
                    inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
                    out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
                    out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
                    out("x15") _, out("x16") _, out("x17") _, options(nostack));
            }
            x0
        }
    };
}

smccc_call!(
    /// Issues `SMC #0` and returns `x0`.
    smc,
    "smc #0"
);
smccc_call!(
    /// Issues `HVC #0` and returns `x0`: PSCI when KCore was wrongly entered
    /// at EL1 and the platform's conduit is `HVC`.
    hvc,
    "hvc #0"
);

/// Issues `SMC #0` and returns `x0..x3`.
pub fn smc_regs(fid: u32, a1: u64, a2: u64, a3: u64) -> [u64; 4] {
    let mut r = [u64::from(fid), a1, a2, a3];
    // SAFETY: an SMCCC 1.1 call: the callee may clobber x0-x17 (declared)
    // and preserves everything else, including the stack and the memory
    // KCore owns.
    unsafe {
        asm!("smc #0",
            inout("x0") r[0], inout("x1") r[1], inout("x2") r[2], inout("x3") r[3],
            out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
            out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
            out("x15") _, out("x16") _, out("x17") _, options(nostack));
    }
    r
}

impl Firmware for SmcFirmware {
    fn smc(&mut self, fid: u32, args: [u64; 3]) -> u64 {
        smc(fid, args[0], args[1], args[2])
    }
    fn smc_regs(&mut self, fid: u32, args: [u64; 3]) -> [u64; 4] {
        smc_regs(fid, args[0], args[1], args[2])
    }
}
