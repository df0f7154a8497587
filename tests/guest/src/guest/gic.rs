//! The GICv3 CPU interface, through its system registers: the host's
//! virtual GIC delivers SGIs and the timer PPI without the guest touching a
//! distributor or redistributor. The eventfd and bench programs also
//! program the host's distributor and redistributors
//! ([`kcore_test_guest::eventfd::GICD`], `GICR`) for their SPIs.

use core::arch::asm;
use kcore_test_guest::eventfd::{GICD, GICR};
use kcore_test_guest::gic::TIMER_INTID;

/// `ICC_SRE_EL1.SRE`: use the system-register interface.
const ICC_SRE_EL1_SRE: u64 = 1 << 0;
/// `ICC_PMR_EL1`: let every priority through.
const PRIORITY_MASK_ALL: u64 = 0xff;
/// `ICC_SGI1R_EL1.INTID` is bits 27:24.
const SGI1R_INTID_SHIFT: u32 = 24;

/// The INTIDs `ICC_IAR1_EL1` returns when no interrupt is to be handled
/// (1020..=1023; 1023 is "spurious"). These must not be EOIed.
pub const SPECIAL_INTIDS: core::ops::RangeInclusive<u32> = 1020..=1023;

/// Enables this vCPU's CPU interface for Group 1 interrupts of any priority.
pub fn init() {
    // SAFETY: configures this vCPU's GIC CPU interface; no memory access.
    unsafe {
        asm!(
            "mrs {t}, icc_sre_el1",
            "orr {t}, {t}, #{sre}",
            "msr icc_sre_el1, {t}",
            "isb",
            "msr icc_pmr_el1, {pmr}",
            "msr icc_bpr1_el1, xzr",
            "msr icc_igrpen1_el1, {one}",
            "isb",
            t = out(reg) _,
            sre = const ICC_SRE_EL1_SRE,
            pmr = in(reg) PRIORITY_MASK_ALL,
            one = in(reg) 1u64,
            options(nomem, nostack, preserves_flags),
        )
    };
}

/// Acknowledges the highest-priority pending interrupt: its INTID, or one of
/// [`SPECIAL_INTIDS`].
pub fn acknowledge() -> u32 {
    let v: u64;
    // SAFETY: reads ICC_IAR1_EL1, which activates the interrupt it returns;
    // the caller completes it with `end_of_interrupt`.
    unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    (v & 0xff_ffff) as u32
}

/// Completes (drops priority and deactivates, EOImode 0) an acknowledged
/// interrupt.
pub fn end_of_interrupt(intid: u32) {
    // SAFETY: writes ICC_EOIR1_EL1 for an interrupt this vCPU acknowledged.
    unsafe {
        asm!(
            "msr icc_eoir1_el1, {}",
            "isb",
            in(reg) u64::from(intid),
            options(nomem, nostack, preserves_flags),
        )
    };
}

/// Sends SGI `intid` to the vCPU with affinity `0.0.0.target` (`target` <
/// 16).
pub fn send_sgi(intid: u32, target: usize) {
    let value = u64::from(intid) << SGI1R_INTID_SHIFT | 1 << (target & 0xf);
    // SAFETY: writes ICC_SGI1R_EL1; the `dsb` first makes this vCPU's
    // earlier stores visible to the target's handler.
    unsafe {
        asm!(
            "dsb ish",
            "msr icc_sgi1r_el1, {}",
            "isb",
            in(reg) value,
            options(nostack, preserves_flags),
        )
    };
}

/// A 32-bit distributor register write.
pub fn gicd_write(offset: u64, value: u32) {
    // SAFETY: a store to the distributor's page, which the identity map
    // maps as device memory and which holds no Rust object.
    unsafe { core::ptr::write_volatile((GICD + offset) as *mut u32, value) };
}

/// A 32-bit distributor register read.
pub fn gicd_read(offset: u64) -> u32 {
    // SAFETY: a load from the distributor's page, as in `gicd_write`.
    unsafe { core::ptr::read_volatile((GICD + offset) as *const u32) }
}

/// `GICD_CTLR`: affinity routing (ARE), Group 1 enabled.
pub fn enable_distributor() {
    gicd_write(0x0, 1 << 4 | 1 << 1);
}

/// SPI `intid`: Group 1, priority 0xa0, routed to affinity 0.0.0.0 (vCPU
/// 0), edge-triggered if `edge` and level-triggered if not, then enabled.
pub fn enable_spi(intid: u32, edge: bool) {
    let (word, bit) = (u64::from(intid / 32) * 4, intid % 32);
    // IGROUPR is not a set/clear pair: read, modify, write.
    gicd_write(0x80 + word, gicd_read(0x80 + word) | 1 << bit);
    let prio = u64::from(intid) & !3;
    let shift = (intid % 4) * 8;
    let old = gicd_read(0x400 + prio);
    gicd_write(0x400 + prio, old & !(0xff << shift) | 0xa0 << shift);
    gicd_write(0x6000 + 8 * u64::from(intid), 0);
    gicd_write(0x6000 + 8 * u64::from(intid) + 4, 0);
    // Both ways, explicitly: an SPI's reset configuration is the
    // implementation's choice (KVM's SPIs start edge-triggered, KServ's
    // vGIC's level-triggered).
    let cfg = 0xC00 + u64::from(intid / 16) * 4;
    let shift = (intid % 16) * 2;
    let old = gicd_read(cfg) & !(3 << shift);
    gicd_write(cfg, if edge { old | 2 << shift } else { old });
    gicd_write(0x100 + word, 1 << bit);
}

/// Enables the timer PPI in redistributor `index`'s SGI frame
/// (`GICR_ISENABLER0`; redistributors are 128 KiB apart).
pub fn enable_timer_ppi(index: usize) {
    let isenabler0 = GICR + 0x2_0000 * index as u64 + 0x1_0100;
    // SAFETY: a store to a redistributor's SGI frame, mapped as device
    // memory, which holds no Rust object.
    unsafe { core::ptr::write_volatile(isenabler0 as *mut u32, 1 << TIMER_INTID) };
}
