//! The vCPU's GIC, a GICv3 or a GICv2 ([`detect`]: the VMM says which in
//! [`testdev::GIC`](kcore_test_guest::testdev::GIC)).
//!
//! - GICv3: the CPU interface through its system registers; the host's
//!   virtual GIC delivers SGIs and the timer PPI without the guest touching
//!   a distributor or redistributor. The eventfd and bench programs also
//!   program the distributor and redistributors
//!   ([`kcore_test_guest::eventfd::GICD`], `GICR`) for their SPIs.
//! - GICv2: the memory-mapped CPU interface at
//!   [`kcore_test_guest::gic::GICC`] (under KCore the hardware's virtual
//!   one, mapped there), SGIs through `GICD_SGIR`, SPIs routed with
//!   `ITARGETSR`, private interrupts enabled in the distributor's banked
//!   `ISENABLER0` (each vCPU only its own). Interrupts stay in group 0,
//!   their reset group, which the CPU interface signals as IRQs.

use super::testdev;
use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};
use kcore_test_guest::eventfd::{GICD, GICR};
use kcore_test_guest::gic::{GICC, TIMER_INTID};
use kcore_test_guest::testdev::{GIC, GIC_V2, Width, gic_has_its};

/// `ICC_SRE_EL1.SRE`: use the system-register interface.
const ICC_SRE_EL1_SRE: u64 = 1 << 0;
/// `ICC_PMR_EL1`/`GICC_PMR`: let every priority through.
const PRIORITY_MASK_ALL: u64 = 0xff;
/// `ICC_SGI1R_EL1.INTID` is bits 27:24.
const SGI1R_INTID_SHIFT: u32 = 24;

/// The INTIDs `ICC_IAR1_EL1`/`GICC_IAR` return when no interrupt is to be
/// handled (1020..=1023; 1023 is "spurious"). These must not be EOIed.
pub const SPECIAL_INTIDS: core::ops::RangeInclusive<u32> = 1020..=1023;

/// GICv2 CPU interface registers (offsets from [`GICC`]).
const GICC_CTLR: u64 = 0x00;
const GICC_PMR: u64 = 0x04;
const GICC_BPR: u64 = 0x08;
const GICC_IAR: u64 = 0x0c;
const GICC_EOIR: u64 = 0x10;
/// `GICC_CTLR`: group 0 and group 1 enabled (FIQEn clear: group 0 as IRQs).
const GICC_CTLR_ENABLE: u32 = 0b11;
/// GICv2 distributor registers (offsets from [`GICD`]).
const GICD_ISENABLER0: u64 = 0x100;
const GICD_ITARGETSR: u64 = 0x800;
const GICD_SGIR: u64 = 0xf00;
/// `GICD_SGIR.CPUTargetList` is bits 23:16.
const SGIR_TARGET_SHIFT: u32 = 16;
/// `GICC_IAR.InterruptID` is bits 9:0 (bits 12:10: an SGI's source CPU).
const GICV2_INTID_MASK: u32 = 0x3ff;

/// The VM's GIC is a GICv2 (set once by [`detect`], before any vCPU uses
/// the GIC).
static V2: AtomicBool = AtomicBool::new(false);

/// The VM's GICv3 has an ITS (set once by [`detect`]).
static ITS: AtomicBool = AtomicBool::new(false);

/// Asks the VMM which GIC the VM has, and whether it has an ITS
/// ([`testdev::GIC`]); vCPU 0 calls it first thing, before it starts vCPU 1.
pub fn detect() {
    let word = testdev::read(GIC, Width::Double);
    V2.store(word == GIC_V2, Ordering::SeqCst);
    ITS.store(gic_has_its(word), Ordering::SeqCst);
}

/// Whether the VM has an ITS at [`kcore_test_guest::gic::ITS`].
pub fn has_its() -> bool {
    ITS.load(Ordering::SeqCst)
}

/// Whether the VM's GIC is a GICv2.
pub fn is_v2() -> bool {
    V2.load(Ordering::SeqCst)
}

/// A 32-bit write to the GICv2 CPU interface.
fn gicc_write(offset: u64, value: u32) {
    // SAFETY: a store to the CPU interface's page, in the identity map's
    // device range, which holds no Rust object.
    unsafe { core::ptr::write_volatile((GICC + offset) as *mut u32, value) };
}

/// A 32-bit read of the GICv2 CPU interface.
fn gicc_read(offset: u64) -> u32 {
    // SAFETY: a load from the CPU interface's page, as in `gicc_write`.
    unsafe { core::ptr::read_volatile((GICC + offset) as *const u32) }
}

/// Enables this vCPU's CPU interface for interrupts of any priority (Group
/// 1 on a GICv3; both groups on a GICv2).
pub fn init() {
    if is_v2() {
        gicc_write(GICC_PMR, PRIORITY_MASK_ALL as u32);
        gicc_write(GICC_BPR, 0);
        gicc_write(GICC_CTLR, GICC_CTLR_ENABLE);
        return;
    }
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

/// An acknowledged interrupt: its INTID and what [`end_of_interrupt`]
/// writes back (on a GICv2 with an SGI's source CPU).
#[derive(Clone, Copy)]
pub struct Acked {
    /// The INTID, or one of [`SPECIAL_INTIDS`].
    pub intid: u32,
    /// The whole `IAR` value.
    raw: u32,
}

/// Acknowledges the highest-priority pending interrupt.
pub fn acknowledge() -> Acked {
    if is_v2() {
        let raw = gicc_read(GICC_IAR);
        return Acked {
            intid: raw & GICV2_INTID_MASK,
            raw,
        };
    }
    let v: u64;
    // SAFETY: reads ICC_IAR1_EL1, which activates the interrupt it returns;
    // the caller completes it with `end_of_interrupt`.
    unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    let intid = (v & 0xff_ffff) as u32;
    Acked { intid, raw: intid }
}

/// Completes (drops priority and deactivates, EOImode 0) an acknowledged
/// interrupt.
pub fn end_of_interrupt(irq: Acked) {
    if is_v2() {
        gicc_write(GICC_EOIR, irq.raw);
        return;
    }
    // SAFETY: writes ICC_EOIR1_EL1 for an interrupt this vCPU acknowledged.
    unsafe {
        asm!(
            "msr icc_eoir1_el1, {}",
            "isb",
            in(reg) u64::from(irq.raw),
            options(nomem, nostack, preserves_flags),
        )
    };
}

/// Sends SGI `intid` to the vCPU with affinity `0.0.0.target` (`target` <
/// 16; on a GICv2, < 8: CPU interface `target`).
pub fn send_sgi(intid: u32, target: usize) {
    if is_v2() {
        // SAFETY: a barrier only; the earlier stores must be visible to
        // the target's handler before the SGI is.
        unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
        gicd_write(
            GICD_SGIR,
            1 << (SGIR_TARGET_SHIFT + (target as u32 & 7)) | intid,
        );
        return;
    }
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

/// `GICD_CTLR`: affinity routing (ARE), Group 1 enabled; on a GICv2,
/// enabled.
pub fn enable_distributor() {
    gicd_write(0x0, if is_v2() { 1 } else { 1 << 4 | 1 << 1 });
}

/// SPI `intid`: Group 1 (GICv2: group 0), priority 0xa0, routed to
/// affinity 0.0.0.0 (GICv2: CPU interface 0), i.e. vCPU 0, edge-triggered
/// if `edge` and level-triggered if not, then enabled.
pub fn enable_spi(intid: u32, edge: bool) {
    let (word, bit) = (u64::from(intid / 32) * 4, intid % 32);
    if !is_v2() {
        // IGROUPR is not a set/clear pair: read, modify, write.
        gicd_write(0x80 + word, gicd_read(0x80 + word) | 1 << bit);
    }
    let prio = u64::from(intid) & !3;
    let shift = (intid % 4) * 8;
    let old = gicd_read(0x400 + prio);
    gicd_write(0x400 + prio, old & !(0xff << shift) | 0xa0 << shift);
    if is_v2() {
        let targets = GICD_ITARGETSR + u64::from(intid & !3);
        let shift = (intid % 4) * 8;
        let old = gicd_read(targets);
        gicd_write(targets, old & !(0xff << shift) | 1 << shift);
    } else {
        gicd_write(0x6000 + 8 * u64::from(intid), 0);
        gicd_write(0x6000 + 8 * u64::from(intid) + 4, 0);
    }
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
/// (`GICR_ISENABLER0`; redistributors are 128 KiB apart). On a GICv2 the
/// distributor's `ISENABLER0` is banked for the accessing vCPU: only vCPU
/// `index` itself can, so it must be the caller.
pub fn enable_timer_ppi(index: usize) {
    if is_v2() {
        debug_assert_eq!(index, super::cpu::index());
        gicd_write(GICD_ISENABLER0, 1 << TIMER_INTID);
        return;
    }
    let isenabler0 = GICR + 0x2_0000 * index as u64 + 0x1_0100;
    // SAFETY: a store to a redistributor's SGI frame, mapped as device
    // memory, which holds no Rust object.
    unsafe { core::ptr::write_volatile(isenabler0 as *mut u32, 1 << TIMER_INTID) };
}
