//! The CPU a guest sees: its ID registers, sanitised once from the boot
//! CPU's and the same for every VM and for KServ's `KVM_GET_ONE_REG`.
//!
//! KCore traps the guest's reads of the feature ID space (`HCR_EL2.TID3`:
//! `op0=3, op1=0, CRn=0, CRm=1..7`) and answers them from [`GuestIdRegs`],
//! and KServ reads the same table with `HostGuestIdReg`, so what a VMM
//! reports (QEMU's `-cpu host`, the selftests' `vcpu_get_reg`) is what the
//! guest gets. A field is kept only if it is on the allow-list of its
//! register: features that need nothing from the hypervisor (instructions,
//! stage-1 translation, FP/SIMD) keep the hardware's value; anything KCore
//! does not switch or emulate (SVE, SME, MTE, pointer authentication's keys,
//! the PMU, SPE, trace, AMU, MPAM, RAS, AArch32, nested virtualisation)
//! reads as not implemented, as does every register of the space that is
//! not listed (the AArch32 ID registers among them: guests are
//! AArch64-only, at EL0 and EL1). The main ID registers KCore does not trap
//! (`MIDR_EL1` through `VPIDR_EL2`, `REVIDR_EL1`, `AIDR_EL1`, `CLIDR_EL1`,
//! `CTR_EL0`) read as the hardware's in the guest and are kept here with
//! their hardware values for KServ.

pub use kcore_abi::reg::id::{
    AIDR_EL1, CLIDR_EL1, CTR_EL0, FEATURE_REGS, FIXED, ICH_VTR_EL2, ID_AA64DFR0_EL1,
    ID_AA64ISAR0_EL1, ID_AA64ISAR1_EL1, ID_AA64ISAR2_EL1, ID_AA64MMFR0_EL1, ID_AA64MMFR1_EL1,
    ID_AA64MMFR2_EL1, ID_AA64PFR0_EL1, ID_AA64PFR1_EL1, MIDR_EL1, REVIDR_EL1, feature_encoding,
    feature_index,
};

/// A 4-bit field at `shift`.
const fn field(shift: u32) -> u64 {
    0xF << shift
}

/// `ID_AA64PFR0_EL1.EL0` and `.EL1`: "AArch64 only".
const PFR0_EL0_EL1_AARCH64: u64 = 1 | 1 << 4;

/// What is kept of each register (the rest reads as zero): `(encoding,
/// hardware fields kept)`. A register not listed reads as zero.
const ALLOW: [(u64, u64); 8] = [
    // FP, AdvSIMD, GIC (the CPU interface's system registers), DIT, CSV2,
    // CSV3. EL0/EL1 are set to AArch64-only below; EL2, EL3, RAS, SVE,
    // SEL2, MPAM, AMU and RME read as absent.
    (
        ID_AA64PFR0_EL1,
        field(16) | field(20) | field(24) | field(48) | field(56) | field(60),
    ),
    // BT, SSBS, CSV2_frac. MTE, RAS_frac, MPAM_frac, SME, RNDR_trap, NMI:
    // absent.
    (ID_AA64PFR1_EL1, field(0) | field(4) | field(32)),
    // DebugVer, BRPs, WRPs, CTX_CMPs, DoubleLock: the debug architecture
    // the guest's (trapped) debug registers follow. PMUVer, TraceVer,
    // PMSVer, TraceFilt, TraceBuffer, MTPMU, BRBE: absent.
    (
        ID_AA64DFR0_EL1,
        field(0) | field(12) | field(20) | field(28) | field(36),
    ),
    // Every instruction set extension of ISAR0 needs nothing from EL2.
    (ID_AA64ISAR0_EL1, u64::MAX),
    // DPB, JSCVT, FCMA, LRCPC, FRINTTS, SB, SPECRES, BF16, DGH, I8MM. The
    // pointer-authentication fields (APA, API, GPA, GPI; KCore does not
    // switch the keys), XS and LS64 (which need HCRX_EL2): absent.
    (
        ID_AA64ISAR1_EL1,
        field(0)
            | field(12)
            | field(16)
            | field(20)
            | field(32)
            | field(36)
            | field(40)
            | field(44)
            | field(48)
            | field(52),
    ),
    // RPRES, BC, CLRBHB. WFxT (whose timeouts KCore does not model),
    // GPA3, APA3, MOPS, PAC_frac: absent.
    (ID_AA64ISAR2_EL1, field(4) | field(20) | field(28)),
    // PARange, ASIDBits, BigEnd, SNSMem, BigEndEL0, TGran16, TGran64,
    // TGran4: stage 1 as the hardware has it. The stage-2 granules, ExS,
    // FGT and ECV: absent.
    (
        ID_AA64MMFR0_EL1,
        field(0) | field(4) | field(8) | field(12) | field(16) | field(20) | field(24) | field(28),
    ),
    // HAFDBS, HPDS, PAN, SpecSEI, ETS, AFP, nTLBPA, CMOW. VMIDBits, VH,
    // LO (KCore traps the LOR registers), XNX, TWED, HCX, TIDCP1: absent.
    (
        ID_AA64MMFR1_EL1,
        field(0)
            | field(12)
            | field(20)
            | field(28)
            | field(36)
            | field(44)
            | field(48)
            | field(56),
    ),
];

/// `ID_AA64MMFR2_EL1`: CnP, UAO, LSM, IESB, VARange, CCIDX, ST, AT, TTL,
/// BBM, E0PD. NV, IDS, FWB and EVT (EL2 features): absent.
const MMFR2_ALLOW: u64 = field(0)
    | field(4)
    | field(8)
    | field(12)
    | field(16)
    | field(20)
    | field(28)
    | field(32)
    | field(48)
    | field(52)
    | field(60);

/// The guest's view of the CPU's identification registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestIdRegs {
    /// The feature space, by [`feature_index`].
    pub features: [u64; FEATURE_REGS],
    /// [`FIXED`]'s registers.
    pub fixed: [u64; FIXED.len()],
    /// `ICH_VTR_EL2`'s fields that describe the guest's virtual CPU
    /// interface: `PRIbits`, `PREbits`, `IDbits`, `SEIS`, `A3V`.
    pub ich_vtr: u64,
}

/// [`GuestIdRegs::ich_vtr`]'s fields: bits 31..21.
const ICH_VTR_ALLOW: u64 = 0xFFE0_0000;

impl GuestIdRegs {
    /// An all-zero view (no features): what a CPU that reports nothing
    /// gets; the boot path replaces it with [`GuestIdRegs::sanitise`].
    pub const EMPTY: GuestIdRegs = GuestIdRegs {
        features: [0; FEATURE_REGS],
        fixed: [0; FIXED.len()],
        ich_vtr: 0,
    };

    /// The guest's view of a CPU whose register `enc` reads `hw(enc)`
    /// (called for every feature-space and [`FIXED`] encoding, and
    /// [`ICH_VTR_EL2`]).
    pub fn sanitise(hw: impl Fn(u64) -> u64) -> GuestIdRegs {
        let mut features = [0; FEATURE_REGS];
        for (i, value) in features.iter_mut().enumerate() {
            let enc = feature_encoding(i);
            *value = hw(enc) & allowed(enc);
        }
        if let Some(i) = feature_index(ID_AA64PFR0_EL1) {
            features[i] |= PFR0_EL0_EL1_AARCH64;
        }
        let mut fixed = [0; FIXED.len()];
        for (value, enc) in fixed.iter_mut().zip(FIXED) {
            *value = hw(enc);
        }
        GuestIdRegs {
            features,
            fixed,
            ich_vtr: hw(ICH_VTR_EL2) & ICH_VTR_ALLOW,
        }
    }

    /// The value of `enc`, if it is an identification register this view
    /// holds (the whole feature space, [`FIXED`] and [`ICH_VTR_EL2`]).
    pub fn get(&self, enc: u64) -> Option<u64> {
        if let Some(i) = feature_index(enc) {
            return Some(self.features[i]);
        }
        if enc == ICH_VTR_EL2 {
            return Some(self.ich_vtr);
        }
        FIXED.iter().position(|&f| f == enc).map(|i| self.fixed[i])
    }
}

/// The hardware fields of `enc` a guest sees.
const fn allowed(enc: u64) -> u64 {
    if enc == ID_AA64MMFR2_EL1 {
        return MMFR2_ALLOW;
    }
    let mut i = 0;
    while i < ALLOW.len() {
        if ALLOW[i].0 == enc {
            return ALLOW[i].1;
        }
        i += 1;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use kcore_abi::reg::sysreg;

    /// Every field set: what survives is exactly the allow-list.
    fn all_ones(_: u64) -> u64 {
        u64::MAX
    }

    #[test]
    fn guests_are_aarch64_only_without_el2_el3_sve_or_ras() {
        let v = GuestIdRegs::sanitise(all_ones);
        let pfr0 = v.get(ID_AA64PFR0_EL1).unwrap_or_default();
        let f = |shift: u32| (pfr0 >> shift) & 0xF;
        assert_eq!((f(0), f(4)), (1, 1), "EL0 and EL1 AArch64 only");
        for (shift, what) in [
            (8, "EL2"),
            (12, "EL3"),
            (28, "RAS"),
            (32, "SVE"),
            (36, "SEL2"),
            (40, "MPAM"),
            (44, "AMU"),
            (52, "RME"),
        ] {
            assert_eq!(f(shift), 0, "{what}");
        }
        assert_eq!(
            (f(16), f(20), f(24)),
            (0xF, 0xF, 0xF),
            "FP, AdvSIMD, GIC kept"
        );
        // On a CPU with AArch32 everywhere the guest still sees none.
        let a32 = GuestIdRegs::sanitise(|_| 0x2222);
        assert_eq!(a32.get(ID_AA64PFR0_EL1).map(|v| v & 0xFF), Some(0x11));
    }

    #[test]
    fn aarch32_and_unlisted_registers_read_as_zero() {
        let v = GuestIdRegs::sanitise(all_ones);
        for crm in 1..=3 {
            for op2 in 0..8 {
                assert_eq!(
                    v.get(sysreg(3, 0, 0, crm, op2)),
                    Some(0),
                    "CRm {crm} op2 {op2}"
                );
            }
        }
        // SVE's and SME's feature registers, the AFRs, DFR1.
        for enc in [
            sysreg(3, 0, 0, 4, 4),
            sysreg(3, 0, 0, 4, 5),
            sysreg(3, 0, 0, 5, 1),
            sysreg(3, 0, 0, 5, 4),
            sysreg(3, 0, 0, 5, 5),
        ] {
            assert_eq!(v.get(enc), Some(0));
        }
    }

    #[test]
    fn hidden_features_read_as_absent() {
        let v = GuestIdRegs::sanitise(all_ones);
        let get = |enc| v.get(enc).unwrap_or(u64::MAX);
        let fld = |value: u64, shift: u32| (value >> shift) & 0xF;
        let pfr1 = get(ID_AA64PFR1_EL1);
        assert_eq!((fld(pfr1, 8), fld(pfr1, 24)), (0, 0), "MTE, SME");
        let dfr0 = get(ID_AA64DFR0_EL1);
        assert_eq!((fld(dfr0, 8), fld(dfr0, 32)), (0, 0), "PMUVer, PMSVer");
        assert_eq!(fld(dfr0, 0), 0xF, "DebugVer kept");
        let isar1 = get(ID_AA64ISAR1_EL1);
        for shift in [4, 8, 24, 28] {
            assert_eq!(
                fld(isar1, shift),
                0,
                "pointer authentication field at {shift}"
            );
        }
        let isar2 = get(ID_AA64ISAR2_EL1);
        assert_eq!((fld(isar2, 0), fld(isar2, 8), fld(isar2, 12)), (0, 0, 0));
        let mmfr1 = get(ID_AA64MMFR1_EL1);
        assert_eq!(
            (fld(mmfr1, 4), fld(mmfr1, 8), fld(mmfr1, 16)),
            (0, 0, 0),
            "VMID, VH, LO"
        );
        let mmfr2 = get(ID_AA64MMFR2_EL1);
        assert_eq!((fld(mmfr2, 24), fld(mmfr2, 40)), (0, 0), "NV, FWB");
        assert_eq!(get(ID_AA64ISAR0_EL1), u64::MAX, "ISAR0 kept whole");
    }

    #[test]
    fn the_fixed_registers_keep_the_hardware_values() {
        let v = GuestIdRegs::sanitise(|enc| enc ^ 0x5a5a);
        for enc in FIXED {
            assert_eq!(v.get(enc), Some(enc ^ 0x5a5a));
        }
        assert_eq!(v.get(sysreg(3, 0, 0, 0, 5)), None, "MPIDR is per vCPU");
        assert_eq!(
            v.get(ICH_VTR_EL2),
            Some((ICH_VTR_EL2 ^ 0x5a5a) & 0xFFE0_0000),
            "only the CPU interface's features, not the list registers"
        );
        assert_eq!(v.get(sysreg(3, 0, 1, 0, 0)), None);
    }
}
