//! The GICv2 registers KCore itself touches: the virtual interface control
//! (`GICH`) the world switch loads and saves for each guest entry, and the
//! distributor's banked per-CPU set/clear registers for the private
//! interrupts (the GICv2 counterpart of [`super::gicv3`]): the active state
//! of a PPI whose virtual twin sits in a hardware-mapped list register (the
//! guest's timers), and the enables of the EL2 timer's PPI and the
//! maintenance PPI while a guest runs.
//!
//! `GICH` and the distributor's first 4 KiB are mapped at EL2 as device
//! memory (`boot`'s EL2 map); both are banked: each CPU reaches its own
//! virtual interface and its own private-interrupt registers at the same
//! address. `GICH` (and `GICV`) are KCore's and never in KServ's stage 2;
//! the distributor is KServ's, so KCore writes only registers that change
//! one bit each and nothing else.

use core::sync::atomic::{AtomicU64, Ordering};

static GICD: AtomicU64 = AtomicU64::new(0);
static GICH: AtomicU64 = AtomicU64::new(0);

const ISENABLER0: u64 = 0x100;
const ICENABLER0: u64 = 0x180;
const ISPENDR0: u64 = 0x200;
const ISACTIVER0: u64 = 0x300;
const ICACTIVER0: u64 = 0x380;

/// `GICH_HCR`.
pub const HCR: u64 = 0x00;
/// `GICH_VTR`.
const VTR: u64 = 0x04;
/// `GICH_VMCR`.
pub const VMCR: u64 = 0x08;
/// `GICH_APR`.
pub const APR: u64 = 0xF0;
/// `GICH_LR0`.
const LR0: u64 = 0x100;

/// Records the distributor and `GICH` bases (both mapped at EL2 as device
/// memory by the caller, for as long as KCore runs).
pub fn set_frames(gicd: u64, gich: u64) {
    GICD.store(gicd, Ordering::Relaxed);
    GICH.store(gich, Ordering::Release);
}

fn base(b: &AtomicU64) -> Option<u64> {
    let v = b.load(Ordering::Acquire);
    (v != 0).then_some(v)
}

/// Whether both frames are known: this platform can run GICv2 guests.
pub fn available() -> bool {
    base(&GICD).is_some() && base(&GICH).is_some()
}

fn read32(addr: u64) -> u32 {
    // SAFETY: `addr` is a register of a frame `set_frames` recorded, mapped
    // as device memory at EL2; the registers read here have no side effect.
    unsafe { (addr as *const u32).read_volatile() }
}

fn write32(addr: u64, v: u32) {
    // SAFETY: as in `read32`: a register of this CPU's banked GICH or of
    // the distributor's banked private-interrupt registers.
    unsafe { (addr as *mut u32).write_volatile(v) }
}

/// Reads `GICH` register `off` (a constant of this module or an LR).
pub fn gich_read(off: u64) -> u32 {
    base(&GICH).map_or(0, |b| read32(b + off))
}

/// Writes `GICH` register `off`.
pub fn gich_write(off: u64, v: u32) {
    if let Some(b) = base(&GICH) {
        write32(b + off, v);
    }
}

/// The number of list registers (`GICH_VTR.ListRegs + 1`).
pub fn list_registers() -> usize {
    (gich_read(VTR) & 0x3F) as usize + 1
}

/// Reads list register `n`.
pub fn read_lr(n: usize) -> u32 {
    gich_read(LR0 + 4 * n as u64)
}

/// Writes list register `n`.
pub fn write_lr(n: usize, v: u32) {
    gich_write(LR0 + 4 * n as u64, v);
}

fn gicd_bit(reg: u64, intid: u32) {
    if let Some(b) = base(&GICD).filter(|_| intid < 32) {
        write32(b + reg, 1 << intid);
    }
}

/// Sets or clears the active state of PPI/SGI `intid` (< 32) on this CPU.
pub fn set_private_active(intid: u32, active: bool) {
    gicd_bit(if active { ISACTIVER0 } else { ICACTIVER0 }, intid);
}

/// Enables or disables PPI `intid` (< 32) on this CPU.
pub fn enable_private(intid: u32, enable: bool) {
    gicd_bit(if enable { ISENABLER0 } else { ICENABLER0 }, intid);
}

/// Whether PPI/SGI `intid` (< 32) is pending and not active on this CPU:
/// one that can be what interrupted it (an active one, e.g. a timer KCore
/// holds active for a hardware-mapped list register, cannot).
pub fn private_signalling(intid: u32) -> bool {
    base(&GICD).filter(|_| intid < 32).is_some_and(|b| {
        let bit = 1 << intid;
        read32(b + ISPENDR0) & bit != 0 && read32(b + ISACTIVER0) & bit == 0
    })
}
