//! The stage-1 identity map both vCPUs run with, and turning the MMU on.
//!
//! 4 KiB granule, 39-bit VAs (`TCR_EL1.T0SZ` = 25), so translation starts at
//! level 1 where each entry maps 1 GiB (Arm ARM D8.2):
//!
//! | VA = PA | entry | memory type |
//! |---|---|---|
//! | 0 .. 1 GiB (devices, incl. the test device) | L1 block | Device-nGnRnE, never executable |
//! | RAM (`RAM_BASE`, `RAM_SIZE`) | L2 2 MiB blocks | Normal write-back, inner shareable |
//!
//! Everything else, including the rest of the 1–2 GiB range past RAM, is
//! unmapped, so a stray access faults. The two tables live in the
//! `.bss.page_tables` pages the linker script reserves; vCPU 0 fills them
//! with the MMU off (so they are in memory, not in a cache) before any vCPU
//! turns its MMU on, and nothing changes them afterwards.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};
use kcore_test_guest::{RAM_BASE, RAM_SIZE, testdev};

/// Entries per 4 KiB table.
const ENTRIES: usize = 512;
/// Bytes one level-1 entry maps.
const L1_BLOCK: u64 = 1 << 30;
/// Bytes one level-2 entry maps.
const L2_BLOCK: u64 = 2 << 20;

// Descriptor fields (Arm ARM D8.3, VMSAv8-64 translation table formats).
/// Valid block descriptor (bits 1:0 = 0b01).
const BLOCK: u64 = 0b01;
/// Valid table descriptor (bits 1:0 = 0b11).
const TABLE: u64 = 0b11;
/// `AttrIndx` (bits 4:2): index into `MAIR_EL1`.
const fn attr_index(i: u64) -> u64 {
    i << 2
}
/// `SH` (bits 9:8) = 0b11: inner shareable.
const INNER_SHAREABLE: u64 = 0b11 << 8;
/// `AF` (bit 10): accessed (no access-flag faults).
const ACCESS_FLAG: u64 = 1 << 10;
/// `PXN` (bit 53): never executable at EL1.
const PXN: u64 = 1 << 53;
/// `UXN` (bit 54): never executable at EL0.
const UXN: u64 = 1 << 54;

/// `MAIR_EL1` attribute 0: Device-nGnRnE.
const ATTR_DEVICE: u64 = 0;
/// `MAIR_EL1` attribute 1: Normal, inner and outer write-back
/// read/write-allocate.
const ATTR_NORMAL: u64 = 1;
/// `MAIR_EL1` encoding of [`ATTR_DEVICE`].
pub const MAIR_DEVICE_NGNRNE: u64 = 0x00;
/// `MAIR_EL1` encoding of [`ATTR_NORMAL`].
pub const MAIR_NORMAL_WB: u64 = 0xff;
/// `MAIR_EL1`.
const MAIR: u64 = MAIR_DEVICE_NGNRNE << (8 * ATTR_DEVICE) | MAIR_NORMAL_WB << (8 * ATTR_NORMAL);

/// `TCR_EL1` (Arm ARM D19.2): T0SZ = 25 (39-bit VA), table walks inner and
/// outer write-back (IRGN0 = ORGN0 = 0b01) and inner shareable (SH0 = 0b11),
/// 4 KiB granule (TG0 = 0), no TTBR1 walks (EPD1), 36-bit IPA (IPS = 0b001).
const TCR: u64 = 25 | 0b01 << 8 | 0b01 << 10 | 0b11 << 12 | 1 << 23 | 0b001 << 32;

/// `SCTLR_EL1` bits.
pub mod sctlr {
    /// `M`: stage-1 MMU on.
    pub const M: u64 = 1 << 0;
    /// `C`: data accesses cacheable.
    pub const C: u64 = 1 << 2;
    /// `SA`: SP alignment checking at EL1.
    pub const SA: u64 = 1 << 3;
    /// `I`: instruction fetches cacheable.
    pub const I: u64 = 1 << 12;
    /// The bits that are RES1 in Armv8.0 (EOS, TSCXT, EIS, SPAN, nTLSMD,
    /// LSMAOE); little-endian, no WXN, no alignment checking.
    pub const RES1: u64 = 1 << 11 | 1 << 20 | 1 << 22 | 1 << 23 | 1 << 28 | 1 << 29;
}

/// What [`enable`] writes to `SCTLR_EL1`.
const SCTLR_ON: u64 = sctlr::RES1 | sctlr::M | sctlr::C | sctlr::SA | sctlr::I;

/// One translation table.
#[repr(C, align(4096))]
struct Table([AtomicU64; ENTRIES]);

/// The level-1 table (TTBR0) and the level-2 table for the GiB with RAM.
#[unsafe(link_section = ".bss.page_tables")]
static TABLES: [Table; 2] = [const { Table([const { AtomicU64::new(0) }; ENTRIES]) }; 2];

/// Maps the 2 MiB block at `base`, in RAM's GiB, as [`build_tables`] maps
/// RAM (normal memory, executable): the eventfd program's executable
/// read-only slot. Called after [`build_tables`], before [`enable`].
pub fn map_normal_block(base: u64) {
    let [_, l2] = &TABLES;
    if base / L1_BLOCK != RAM_BASE / L1_BLOCK {
        return;
    }
    let normal = BLOCK | attr_index(ATTR_NORMAL) | INNER_SHAREABLE | ACCESS_FLAG;
    let i = (base % L1_BLOCK / L2_BLOCK) as usize;
    l2.0[i].store((base & !(L2_BLOCK - 1)) | normal, Ordering::Relaxed);
}

/// Fills the translation tables. Called once, by vCPU 0, with the MMU off.
pub fn build_tables() {
    let [l1, l2] = &TABLES;
    let device = BLOCK | attr_index(ATTR_DEVICE) | ACCESS_FLAG | PXN | UXN;
    let normal = BLOCK | attr_index(ATTR_NORMAL) | INNER_SHAREABLE | ACCESS_FLAG;
    let l2_address = core::ptr::from_ref(l2) as u64;
    l1.0[0].store(device, Ordering::Relaxed);
    l1.0[(RAM_BASE / L1_BLOCK) as usize].store(l2_address | TABLE, Ordering::Relaxed);
    let first = (RAM_BASE % L1_BLOCK / L2_BLOCK) as usize;
    let blocks = (RAM_SIZE / L2_BLOCK) as usize;
    for (i, entry) in l2.0.iter().enumerate().skip(first).take(blocks) {
        let base = RAM_BASE - RAM_BASE % L1_BLOCK + i as u64 * L2_BLOCK;
        entry.store(base | normal, Ordering::Relaxed);
    }
}

// The map's shape: devices in the first GiB, RAM in whole 2 MiB blocks
// within one other GiB.
const _: () = assert!(testdev::BASE + testdev::SIZE <= L1_BLOCK);
const _: () = assert!(RAM_BASE >= L1_BLOCK);
const _: () = assert!(RAM_BASE.is_multiple_of(L2_BLOCK) && RAM_SIZE.is_multiple_of(L2_BLOCK));
const _: () = assert!(RAM_BASE / L1_BLOCK == (RAM_BASE + RAM_SIZE - 1) / L1_BLOCK);

// `guest_mmu_enable`: turns on the calling vCPU's MMU and caches with the
// identity map and returns `SCTLR_EL1` as read back in x0. A leaf routine
// that touches no memory and only x0, so that vCPU 1's entry code can call
// it before its first store (see `secondary`). The tables were written
// before (`dsb sy` completes those writes before the first walk); stale TLB
// and instruction cache entries are dropped first.
core::arch::global_asm!(
    r#"
.section .text.guest_mmu_enable, "ax"
.balign 4
.global guest_mmu_enable
guest_mmu_enable:
    dsb sy
    ldr x0, ={mair}
    msr mair_el1, x0
    ldr x0, ={tcr}
    msr tcr_el1, x0
    adrp x0, {tables}
    add x0, x0, :lo12:{tables}
    msr ttbr0_el1, x0
    isb
    tlbi vmalle1
    ic iallu
    dsb nsh
    isb
    ldr x0, ={sctlr}
    msr sctlr_el1, x0
    isb
    mrs x0, sctlr_el1
    ret
"#,
    mair = const MAIR,
    tcr = const TCR,
    sctlr = const SCTLR_ON,
    tables = sym TABLES,
);

/// Turns on this vCPU's MMU and caches with the identity map; returns
/// `SCTLR_EL1` as read back afterwards. [`build_tables`] must have run.
pub fn enable() -> u64 {
    let sctlr: u64;
    // SAFETY: the identity map covers the image, bss, the stacks, the
    // tables and the test device at their current addresses, so every
    // pointer and the PC stay valid. `guest_mmu_enable` changes only x0 and
    // (by the call) x30.
    unsafe {
        asm!(
            "bl guest_mmu_enable",
            out("x0") sctlr,
            out("x30") _,
            options(nostack, preserves_flags),
        )
    };
    sctlr
}

/// `PAR_EL1` after translating `va` for an EL1 read (`AT S1E1R`).
pub fn translate(va: u64) -> u64 {
    let par: u64;
    // SAFETY: an address translation query; writes only PAR_EL1.
    unsafe {
        asm!(
            "at s1e1r, {va}",
            "isb",
            "mrs {par}, par_el1",
            va = in(reg) va,
            par = lateout(reg) par,
            options(nostack, preserves_flags),
        )
    };
    par
}

/// `PAR_EL1` fields of a translation.
pub mod par {
    /// `F`: the translation faulted.
    pub const F: u64 = 1 << 0;
    /// Output address (bits 47:12).
    pub const PA: u64 = 0x0000_ffff_ffff_f000;
    /// `ATTR` (bits 63:56): the `MAIR` encoding of the memory type.
    pub const fn attr(par: u64) -> u64 {
        par >> 56
    }
}
