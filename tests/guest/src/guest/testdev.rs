//! Accesses to the test device, each one load or store instruction with a
//! plain base register and no offset, writeback or pairing, so that the
//! hypervisor sees a fully described (ESR_EL2.ISV = 1) data abort.
//!
//! Loads start from a destination register pre-filled with [`GARBAGE`], so
//! that bits the hypervisor fails to write back show up in the result.

use core::arch::asm;
use kcore_test_guest::testdev::{BASE, Width};

/// What every load's destination register holds before the load.
pub const GARBAGE: u64 = 0xA5A5_5A5A_C3C3_3C3C;

/// The virtual address of the register at `offset` (identity-mapped).
fn address(offset: u64) -> usize {
    (BASE + offset) as usize
}

/// One load from the test device: `$insn` (with destination `{v}`) from
/// `[{a}]`; evaluates to the whole 64-bit destination register.
macro_rules! load {
    ($insn:literal, $offset:expr) => {{
        let mut v = GARBAGE;
        // SAFETY: one load from the test device page, which the identity map
        // (or, before the MMU is on, the VM) maps as device memory and which
        // holds no Rust object.
        unsafe {
            asm!(
                concat!($insn, ", [{a}]"),
                a = in(reg) address($offset),
                v = inout(reg) v,
                options(nostack, preserves_flags),
            )
        };
        v
    }};
}

/// One store to the test device: `$insn` (with source `{v}`, or the zero
/// register when no value is given) to `[{a}]`.
macro_rules! store {
    ($insn:literal, $offset:expr) => {{
        // SAFETY: one store to the test device page, which the identity map
        // (or, before the MMU is on, the VM) maps as device memory and which
        // holds no Rust object.
        unsafe {
            asm!(
                concat!($insn, ", [{a}]"),
                a = in(reg) address($offset),
                options(nostack, preserves_flags),
            )
        };
    }};
    ($insn:literal, $offset:expr, $value:expr) => {{
        // SAFETY: one store to the test device page, which the identity map
        // (or, before the MMU is on, the VM) maps as device memory and which
        // holds no Rust object.
        unsafe {
            asm!(
                concat!($insn, ", [{a}]"),
                a = in(reg) address($offset),
                v = in(reg) $value,
                options(nostack, preserves_flags),
            )
        };
    }};
}

/// Stores the low `width` bits of `value` to the register at `offset`.
pub fn write(offset: u64, width: Width, value: u64) {
    match width {
        Width::Byte => store!("strb {v:w}", offset, value),
        Width::Half => store!("strh {v:w}", offset, value),
        Width::Word => store!("str {v:w}", offset, value),
        Width::Double => store!("str {v:x}", offset, value),
    }
}

/// Loads `width` bits from the register at `offset`, zero-extended by the
/// CPU into the whole 64-bit destination register (which held [`GARBAGE`]).
pub fn read(offset: u64, width: Width) -> u64 {
    match width {
        Width::Byte => load!("ldrb {v:w}", offset),
        Width::Half => load!("ldrh {v:w}", offset),
        Width::Word => load!("ldr {v:w}", offset),
        Width::Double => load!("ldr {v:x}", offset),
    }
}

/// A sign-extending load instruction and its destination register size.
#[derive(Clone, Copy, Debug)]
pub enum SignedLoad {
    /// `ldrsb xN`: byte, sign-extended to 64 bits.
    ByteToX,
    /// `ldrsh xN`: halfword, sign-extended to 64 bits.
    HalfToX,
    /// `ldrsw xN`: word, sign-extended to 64 bits.
    WordToX,
    /// `ldrsb wN`: byte, sign-extended to 32 bits, upper 32 bits zeroed.
    ByteToW,
    /// `ldrsh wN`: halfword, sign-extended to 32 bits, upper 32 bits zeroed.
    HalfToW,
}

impl SignedLoad {
    /// The access width on the bus.
    pub const fn width(self) -> Width {
        match self {
            Self::ByteToX | Self::ByteToW => Width::Byte,
            Self::HalfToX | Self::HalfToW => Width::Half,
            Self::WordToX => Width::Word,
        }
    }

    /// What the destination X register holds after loading `raw` (the
    /// access-width value on the bus), per the Arm ARM.
    pub const fn extend(self, raw: u64) -> u64 {
        match self {
            Self::ByteToX => raw as u8 as i8 as i64 as u64,
            Self::HalfToX => raw as u16 as i16 as i64 as u64,
            Self::WordToX => raw as u32 as i32 as i64 as u64,
            Self::ByteToW => raw as u8 as i8 as i32 as u32 as u64,
            Self::HalfToW => raw as u16 as i16 as i32 as u32 as u64,
        }
    }

    /// The instruction's mnemonic and destination, for reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ByteToX => "ldrsb x",
            Self::HalfToX => "ldrsh x",
            Self::WordToX => "ldrsw x",
            Self::ByteToW => "ldrsb w",
            Self::HalfToW => "ldrsh w",
        }
    }
}

/// Loads from the register at `offset` with a sign-extending load; returns
/// the whole 64-bit destination register (which held [`GARBAGE`]).
pub fn read_signed(offset: u64, load: SignedLoad) -> u64 {
    match load {
        SignedLoad::ByteToX => load!("ldrsb {v:x}", offset),
        SignedLoad::HalfToX => load!("ldrsh {v:x}", offset),
        SignedLoad::WordToX => load!("ldrsw {v:x}", offset),
        SignedLoad::ByteToW => load!("ldrsb {v:w}", offset),
        SignedLoad::HalfToW => load!("ldrsh {v:w}", offset),
    }
}

/// Stores the zero register with `width` (`strb wzr`, ..., `str xzr`) to the
/// register at `offset`.
pub fn write_zero_register(offset: u64, width: Width) {
    match width {
        Width::Byte => store!("strb wzr", offset),
        Width::Half => store!("strh wzr", offset),
        Width::Word => store!("str wzr", offset),
        Width::Double => store!("str xzr", offset),
    }
}

/// `ldr xzr, [offset]`: a load whose result is discarded. Returns the stack
/// pointer before and after it (register 31 is the zero register here; a
/// hypervisor that writes the result to SP would corrupt it).
pub fn read_into_zero_register(offset: u64) -> (u64, u64) {
    let a = address(offset);
    let (before, after): (u64, u64);
    // SAFETY: one load from the test device page (see `write`); reads SP.
    unsafe {
        asm!(
            "mov {before}, sp",
            "ldr xzr, [{a}]",
            "mov {after}, sp",
            a = in(reg) a,
            before = out(reg) before,
            after = out(reg) after,
            options(nostack, preserves_flags),
        )
    };
    (before, after)
}
