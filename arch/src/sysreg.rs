//! Values KCore writes to EL2's translation-control registers, and the
//! register fields `aarch64-cpu` does not name.
//!
//! Every value is built from named fields, never from shifts: the fields of
//! `aarch64-cpu` where it declares them, and otherwise the declarations
//! below, made the same way (`tock-registers`' `register_bitfields!`, names
//! and offsets as in the Arm ARM, D19.2). The register values are pure
//! functions of a [`Geometry`] and the CPU's `PARange`, compiled for the
//! host too, so the tests here pin every bit.

use aarch64_cpu::registers::{TCR_EL2, VTCR_EL2};
use kcore::pgtable::Geometry;
use tock_registers::register_bitfields;

register_bitfields! [u64,
    /// `CPTR_EL2` with `HCR_EL2.E2H` = 0: traps of FP/SIMD, SVE, SME and
    /// trace, and the RES1 bits.
    pub(crate) CPTR_EL2_NVHE [
        /// Traps trace register accesses.
        TTA OFFSET(20) NUMBITS(1) [],
        /// RES1.
        RES1_13 OFFSET(13) NUMBITS(1) [],
        /// Traps SME (RES1 without FEAT_SME).
        TSM OFFSET(12) NUMBITS(1) [],
        /// Traps FP/SIMD.
        TFP OFFSET(10) NUMBITS(1) [],
        /// RES1.
        RES1_9 OFFSET(9) NUMBITS(1) [],
        /// Traps SVE (RES1 without FEAT_SVE).
        TZ OFFSET(8) NUMBITS(1) [],
        /// RES1.
        RES1_7_0 OFFSET(0) NUMBITS(8) [],
    ],
    /// `TCR_EL2` (non-VHE): the RES1 bits.
    pub(crate) TCR_EL2_RES1 [
        /// RES1.
        RES1_31 OFFSET(31) NUMBITS(1) [],
        /// RES1.
        RES1_23 OFFSET(23) NUMBITS(1) [],
    ],
    /// `ID_AA64PFR0_EL1`: the GIC system-register interface.
    pub(crate) ID_AA64PFR0 [
        /// Non-zero: GICv3 (or later) system registers.
        GIC OFFSET(24) NUMBITS(4) [],
    ],
    /// `ID_AA64PFR1_EL1`: FEAT_SME.
    pub(crate) ID_AA64PFR1 [
        /// Non-zero: SME.
        SME OFFSET(24) NUMBITS(4) [],
    ],
    /// `ID_AA64MMFR0_EL1`: FEAT_FGT.
    pub(crate) ID_AA64MMFR0 [
        /// Non-zero: fine-grained traps.
        FGT OFFSET(56) NUMBITS(4) [],
    ],
    /// `ID_AA64MMFR1_EL1`: FEAT_HCX.
    pub(crate) ID_AA64MMFR1 [
        /// Non-zero: `HCRX_EL2`.
        HCX OFFSET(40) NUMBITS(4) [],
    ],
    /// `ID_AA64ISAR2_EL1`: the QARMA3 pointer-authentication algorithms.
    pub(crate) ID_AA64ISAR2_EL1 [
        /// Address authentication with QARMA3.
        APA3 OFFSET(12) NUMBITS(4) [],
        /// Generic authentication with QARMA3.
        GPA3 OFFSET(8) NUMBITS(4) [],
    ],
    /// `PMCR_EL0`: the number of event counters.
    pub(crate) PMCR_EL0 [
        /// Event counters implemented.
        N OFFSET(11) NUMBITS(5) [],
    ],
    /// `CTR_EL0`: the cache line sizes.
    pub(crate) CTR_EL0 [
        /// Log2 of the words in the smallest data cache line.
        DminLine OFFSET(16) NUMBITS(4) [],
    ],
    /// `ICC_HPPIR1_EL1`: the highest-priority pending Group 1 interrupt.
    pub(crate) ICC_HPPIR1_EL1 [
        /// Its INTID.
        INTID OFFSET(0) NUMBITS(24) [],
    ],
    /// `ZCR_EL2` and `SMCR_EL2`: the vector length limit.
    pub(crate) ZCR_SMCR_EL2 [
        /// `SMCR_EL2.FA64`: the full A64 instruction set in streaming mode.
        FA64 OFFSET(31) NUMBITS(1) [],
        /// `LEN`, the vector length limit (all ones: the largest), with
        /// the RAZ/WI bits above it.
        LEN OFFSET(0) NUMBITS(9) [],
    ],
];

/// `VTCR_EL2` for a stage 2 of shape `g`: 4 KiB granule, inner shareable
/// write-back walks, 8-bit VMID, `PS` = `pa_range` (the
/// `ID_AA64MMFR0_EL1.PARange` encoding).
pub fn vtcr_el2(g: &Geometry, pa_range: u64) -> u64 {
    let sl0 = match g.start_level() {
        2 => VTCR_EL2::SL0::Granule4KBLevel2,
        1 => VTCR_EL2::SL0::Granule4KBLevel1,
        _ => VTCR_EL2::SL0::Granule4KBLevel0,
    };
    (VTCR_EL2::RES1::SET
        + VTCR_EL2::VS::Bits8
        + VTCR_EL2::PS.val(pa_range & 0b111)
        + VTCR_EL2::TG0::Granule4KB
        + VTCR_EL2::SH0::Inner
        + VTCR_EL2::ORGN0::NormalWBRAWA
        + VTCR_EL2::IRGN0::NormalWBRAWA
        + sl0
        + VTCR_EL2::T0SZ.val(64 - u64::from(g.input_bits())))
    .value
}

/// The `PARange` encoding a `VTCR_EL2` value was built with.
pub fn vtcr_el2_pa_range(vtcr: u64) -> u64 {
    VTCR_EL2::PS.read(vtcr)
}

/// `TCR_EL2` (non-VHE) for KCore's stage 1 of shape `g`: 4 KiB granule,
/// inner shareable write-back walks, `PS` = `pa_range`.
pub fn tcr_el2(g: &Geometry, pa_range: u64) -> u64 {
    (TCR_EL2::PS.val(pa_range & 0b111)
        + TCR_EL2::TG0::KiB_4
        + TCR_EL2::SH0::Inner
        + TCR_EL2::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
        + TCR_EL2::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
        + TCR_EL2::T0SZ.val(64 - u64::from(g.input_bits())))
    .value
        | (TCR_EL2_RES1::RES1_31::SET + TCR_EL2_RES1::RES1_23::SET).value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtcr_fields() {
        let g = Geometry::stage2(40).unwrap();
        let v = vtcr_el2(&g, 2);
        assert_eq!(v & 0x3F, 24, "T0SZ");
        assert_eq!((v >> 6) & 3, 1, "SL0 = level 1");
        assert_eq!((v >> 14) & 3, 0, "TG0 = 4K");
        assert_eq!((v >> 16) & 7, 2, "PS");
        assert_eq!(v >> 31, 1, "RES1");
        assert_eq!(vtcr_el2_pa_range(v), 2);
    }

    #[test]
    fn translation_control_values_are_pinned() {
        // The exact values KCore has always written, as literal numbers.
        for (bits, pa_range, v) in [
            (40, 2, 0x8002_3558),
            (32, 0, 0x8000_3520),
            (44, 5, 0x8005_3594),
            (48, 5, 0x8005_3590),
        ] {
            let g = Geometry::stage2(bits).unwrap();
            assert_eq!(vtcr_el2(&g, pa_range), v, "VTCR_EL2, {bits}-bit IPAs");
        }
        for (bits, pa_range, v) in [(39, 2, 0x8082_3519), (48, 5, 0x8085_3510)] {
            let g = Geometry::stage1(bits).unwrap();
            assert_eq!(tcr_el2(&g, pa_range), v, "TCR_EL2, {bits}-bit VAs");
        }
    }
}
