//! What KServ may do to the GIC registers that make the GIC read or write
//! memory (DESIGN.md §2, invariant 7: memory a device or the GIC writes
//! outside stage 2 is never a VM's or KCore's).
//!
//! A GICv3 redistributor masters memory through its LPI tables: the
//! property table (`GICR_PROPBASER`) and the pending table
//! (`GICR_PENDBASER`), which it reads and writes by physical address, with
//! no stage 2 in the way; a GICv4 redistributor has the same for virtual
//! LPIs (`GICR_VPROPBASER`, `GICR_VPENDBASER`). KServ owns the GIC, but
//! these registers' pages are never in its stage 2: each access traps
//! ([`crate::host_stage2::TrapFrames`]) and KCore performs it after
//! [`check`]. KCore gives KServ no LPIs: the table bases read as zero and
//! ignore writes, `GICR_CTLR.EnableLPIs` stays clear, and the direct-LPI
//! registers ignore writes. Everything else on those pages (`GICR_CTLR`'s
//! other bits, `GICR_WAKER`, `GICR_TYPER`, ...) passes through.
//!
//! The ITS masters memory through its device, collection and command-queue
//! tables and every ITT a `MAPD` command names; KCore keeps its frames
//! (KServ's stage 2 never maps them) and hides it from KServ's device tree.
//! Giving KServ MSIs back needs a KCore-owned command queue that checks
//! every command (`docs/security.md`).

/// Size of a redistributor's `RD_base` (and `VLPI_base`) frame.
pub const FRAME: u64 = 0x1_0000;
/// Offset of the `VLPI_base` frame in a GICv4 redistributor.
pub const VLPI_FRAME: u64 = 2 * FRAME;
/// A GICv3 redistributor's stride: `RD_base` and `SGI_base`.
pub const STRIDE_V3: u64 = 2 * FRAME;
/// A GICv4 (VLPIS) redistributor's stride: plus `VLPI_base` and a reserved
/// frame.
pub const STRIDE_V4: u64 = 4 * FRAME;

/// `GICR_CTLR`.
const CTLR: u64 = 0x0000;
/// `GICR_CTLR.EnableLPIs`.
const CTLR_ENABLE_LPIS: u64 = 1 << 0;
/// `GICR_SETLPIR` .. `GICR_CLRLPIR` (64-bit each).
const DIRECT_LPI: core::ops::Range<u64> = 0x0040..0x0050;
/// `GICR_PROPBASER`, `GICR_PENDBASER` (and, in `VLPI_base`,
/// `GICR_VPROPBASER`, `GICR_VPENDBASER`), 64-bit each.
const TABLE_BASES: core::ops::Range<u64> = 0x0070..0x0080;
/// `GICR_INVLPIR` .. `GICR_INVALLR` (64-bit each).
const INVALIDATE: core::ops::Range<u64> = 0x00A0..0x00B8;
/// The 64-bit registers of `RD_base` (`GICR_TYPER`, the direct-LPI and
/// invalidate registers, the table bases) and of `VLPI_base` (the virtual
/// table bases): the only offsets a 64-bit access may use. Everything else
/// is a 32-bit register (or reserved), and a 64-bit access to it is
/// CONSTRAINED UNPREDICTABLE — it may abort KCore's own access.
const WIDE_RD: [u64; 7] = [0x08, 0x40, 0x48, 0x70, 0x78, 0xA0, 0xB0];
const WIDE_VLPI: [u64; 2] = [0x70, 0x78];

/// What KCore does with one trapped access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guarded {
    /// Read the register and give KServ its value.
    Read,
    /// Give KServ this value; the register is not read.
    ReadAs(u64),
    /// Write this value to the register.
    Write(u64),
    /// Drop the write.
    Ignore,
    /// Refuse the access: KServ takes an external abort.
    Deny,
}

/// Checks KServ's access at `offset` inside a redistributor (from the
/// start of its `RD_base` frame), `width` bytes, a write of `value` or a
/// read. Only aligned 32-bit accesses, and aligned 64-bit accesses to the
/// 64-bit registers, are architected; anything else is refused, so KCore
/// never makes an access the GIC may answer with an abort.
pub fn check(offset: u64, write: bool, width: u8, value: u64) -> Guarded {
    if !matches!(width, 4 | 8) || !offset.is_multiple_of(u64::from(width)) {
        return Guarded::Deny;
    }
    let (frame, reg) = (offset / FRAME * FRAME, offset % FRAME);
    let is_rd = frame == 0;
    let is_vlpi = frame == VLPI_FRAME;
    if !is_rd && !is_vlpi {
        // Not a page KCore traps: the caller never asks.
        return Guarded::Deny;
    }
    let wide: &[u64] = if is_rd { &WIDE_RD } else { &WIDE_VLPI };
    if width == 8 && !wide.contains(&reg) {
        return Guarded::Deny;
    }
    if TABLE_BASES.contains(&reg) {
        return if write {
            Guarded::Ignore
        } else {
            Guarded::ReadAs(0)
        };
    }
    if !write {
        return Guarded::Read;
    }
    if is_rd && reg == CTLR {
        return Guarded::Write(value & !CTLR_ENABLE_LPIS);
    }
    if is_rd && (DIRECT_LPI.contains(&reg) || INVALIDATE.contains(&reg)) {
        return Guarded::Ignore;
    }
    Guarded::Write(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lpi_tables_stay_out_of_kservs_reach() {
        for off in [0x70, 0x74, 0x78, 0x7C] {
            let w = if off % 8 == 0 { 8 } else { 4 };
            assert_eq!(check(off, true, w, 0x4000_0000), Guarded::Ignore);
            assert_eq!(check(off, false, w, 0), Guarded::ReadAs(0));
            let v = VLPI_FRAME + off;
            assert_eq!(check(v, true, w, 0x4000_0000), Guarded::Ignore);
            assert_eq!(check(v, false, w, 0), Guarded::ReadAs(0));
        }
        assert_eq!(check(0, true, 4, 0b11), Guarded::Write(0b10), "EnableLPIs");
        for off in [0x40, 0x48, 0xA0, 0xB0] {
            assert_eq!(check(off, true, 8, 42), Guarded::Ignore, "{off:#x}");
        }
    }

    #[test]
    fn the_rest_passes_and_odd_accesses_are_refused() {
        // GICR_WAKER, GICR_TYPER, GICR_CTLR read, GICR_SYNCR.
        assert_eq!(check(0x14, true, 4, 0), Guarded::Write(0));
        assert_eq!(check(0x8, false, 8, 0), Guarded::Read);
        assert_eq!(check(0x0, false, 4, 0), Guarded::Read);
        assert_eq!(check(0xC0, false, 4, 0), Guarded::Read);
        assert_eq!(check(0x14, true, 2, 0), Guarded::Deny, "halfword");
        assert_eq!(check(0x72, false, 4, 0), Guarded::Deny, "unaligned");
        assert_eq!(check(0x78, true, 1, 0), Guarded::Deny, "byte");
        assert_eq!(check(FRAME + 0x100, true, 4, 1), Guarded::Deny, "SGI_base");
        assert_eq!(check(0x0, true, 8, 0), Guarded::Deny, "64-bit GICR_CTLR");
        assert_eq!(check(0x10, false, 8, 0), Guarded::Deny, "64-bit STATUSR");
        assert_eq!(check(VLPI_FRAME + 0x80, true, 8, 0), Guarded::Deny);
        // 32-bit halves of the 64-bit registers are fine.
        assert_eq!(check(0xC, false, 4, 0), Guarded::Read, "GICR_TYPER[63:32]");
    }
}
