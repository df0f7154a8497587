//! Register ids of [`crate::HypercallId::HostVcpuGetReg`] and
//! [`crate::HypercallId::HostVcpuSetReg`].
//!
//! General registers, the PC and PSTATE have small fixed ids; the FP/SIMD
//! registers are addressed in 64-bit halves; EL1 system registers use their
//! `MRS`/`MSR` encoding (`op0, op1, CRn, CRm, op2`) under [`SYSREG`], as
//! KVM's `ONE_REG` ids do.

/// `x0`; `x<n>` is `X0 + n` for `n` in `0..=30`.
pub const X0: u64 = 0;
/// `SP_EL0`.
pub const SP_EL0: u64 = 31;
/// The PC (`ELR_EL2` while the vCPU is not running).
pub const PC: u64 = 32;
/// PSTATE (`SPSR_EL2` while the vCPU is not running).
pub const PSTATE: u64 = 33;
/// `SP_EL1`.
pub const SP_EL1: u64 = 34;
/// `ELR_EL1`.
pub const ELR_EL1: u64 = 35;
/// `SPSR_EL1`.
pub const SPSR_EL1: u64 = 36;
/// `FPSR`.
pub const FPSR: u64 = 37;
/// `FPCR`.
pub const FPCR: u64 = 38;
/// Low 64 bits of `v<n>`: `V_LO + n`.
pub const V_LO: u64 = 0x40;
/// High 64 bits of `v<n>`: `V_HI + n`.
pub const V_HI: u64 = 0x60;
/// The guest's view of the virtual counter offset (`CNTVOFF_EL2`).
pub const CNTVOFF: u64 = 0x80;
/// A non-protected vCPU's power state as the guest's PSCI sees it: 1 when
/// it is off (as after its own `CPU_OFF`: a `CPU_ON` from another vCPU may
/// start it), 0 when it is on. KServ sets it for `KVM_SET_MP_STATE`.
pub const POWER_OFF: u64 = 0x81;
/// The guest's GIC virtual CPU interface, for KServ's save and restore of a
/// non-protected vCPU (`KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS`): `ICH_VMCR_EL2`
/// (reserved bits must be zero). On a GICv2 host it holds `GICH_VMCR`, as
/// the world switch saves and loads it (`KVM_DEV_ARM_VGIC_GRP_CPU_REGS`).
pub const ICH_VMCR: u64 = 0x82;
/// `ICH_AP0R<n>_EL2` is `ICH_AP0R + n` (`n < 4`).
pub const ICH_AP0R: u64 = 0x84;
/// `ICH_AP1R<n>_EL2` is `ICH_AP1R + n` (`n < 4`); on a GICv2 host
/// `ICH_AP1R + 0` holds `GICH_APR`.
pub const ICH_AP1R: u64 = 0x88;
/// KServ's debugging of a non-protected vCPU (KVM's `KVM_SET_GUEST_DEBUG`),
/// bits of [`guest_debug`]: while set, the guest's debug exceptions go to
/// KServ as `exit::DEBUG` (`MDCR_EL2.TDE`), not to the guest.
pub const GUEST_DEBUG: u64 = 0x8C;

/// Bits of [`GUEST_DEBUG`]; any other bit is `InvalidParameter`.
pub mod guest_debug {
    /// Step one instruction per entry: each entry returns after one guest
    /// instruction (or an exception it takes) with `exit::DEBUG`.
    pub const SINGLE_STEP: u64 = 1 << 0;
    /// Debug exceptions (`BRK`, breakpoints, watchpoints, the guest's own
    /// steps) exit to KServ.
    pub const ENABLE: u64 = 1 << 1;
    /// With [`ENABLE`] (ABI 0.13): the breakpoints and watchpoints of the
    /// run are KServ's ([`super::HOST_DEBUG_REG`]), sanitised, instead of
    /// the guest's, which stay as the guest left them.
    pub const USE_HW: u64 = 1 << 2;
    /// Every bit.
    pub const ALL: u64 = SINGLE_STEP | ENABLE | USE_HW;
}

/// KServ's own breakpoint and watchpoint registers for a non-protected
/// vCPU (ABI 0.13, KVM's `kvm_guest_debug_arch`): `HOST_DEBUG_REG + i`
/// for `i < sys::DEBUG_REGS`, in [`sys::debug`]'s order. Any value is
/// stored; KCore loads only the breakpoints and watchpoints the CPU has,
/// under [`guest_debug::USE_HW`], and only what can match at EL1 or EL0
/// of the guest's security state (see `docs/abi.md`).
pub const HOST_DEBUG_REG: u64 = 0xC0;

/// A virtual SError pending for a non-protected vCPU (ABI 0.13, KVM's
/// `serror_pending`/`serror_esr`): 0, nothing pending, or
/// [`serror::PENDING`] with the syndrome (`VSESR_EL2`'s ISS, 25 bits) the
/// guest reads in `ESR_EL1` when the CPU has RAS. Reads report it until
/// the guest takes it.
pub const SERROR: u64 = 0x8D;

/// Bits of [`SERROR`]; any other bit is `InvalidParameter`.
pub mod serror {
    /// An SError is pending.
    pub const PENDING: u64 = 1 << 63;
    /// The syndrome's bits (`ESR_ELx.ISS`).
    pub const ESR: u64 = 0x1FF_FFFF;
    /// `ISS.IDS`: an implementation-defined syndrome (KVM's ESR for an
    /// SError without one).
    pub const IDS: u64 = 1 << 24;
}

/// Write-only (ABI 0.13, KVM's `ext_dabt_pending`): writing the address
/// (`FAR_EL1`) makes a non-protected vCPU take a synchronous external data
/// abort at its PC, an exception entry to its EL1 as the Arm ARM builds
/// it; a pending MMIO or PSCI completion is dropped (the access faulted).
pub const INJECT_DABT: u64 = 0x8E;
/// The bits of `ICH_VMCR_EL2` that exist: `VENG0`, `VENG1`, `VAckCtl`,
/// `VFIQEn`, `VCBPR`, `VEOIM`, `VBPR1`, `VBPR0`, `VPMR`.
pub const ICH_VMCR_VALID: u64 = 0x1F | 1 << 9 | 0x3FFF << 18;
/// A system register: `SYSREG | sysreg(op0, op1, crn, crm, op2)`.
pub const SYSREG: u64 = 0x1_0000;

/// The 16-bit `MRS`/`MSR` encoding of a system register.
pub const fn sysreg(op0: u64, op1: u64, crn: u64, crm: u64, op2: u64) -> u64 {
    (op0 & 3) << 14 | (op1 & 7) << 11 | (crn & 15) << 7 | (crm & 15) << 3 | (op2 & 7)
}

/// `x<n>`.
pub const fn x(n: u64) -> u64 {
    X0 + n
}

/// The EL1 system registers a vCPU carries, as `SYSREG | encoding`.
pub mod sys {
    use super::{SYSREG, sysreg};
    /// `SCTLR_EL1`.
    pub const SCTLR_EL1: u64 = SYSREG | sysreg(3, 0, 1, 0, 0);
    /// `CPACR_EL1`.
    pub const CPACR_EL1: u64 = SYSREG | sysreg(3, 0, 1, 0, 2);
    /// `TTBR0_EL1`.
    pub const TTBR0_EL1: u64 = SYSREG | sysreg(3, 0, 2, 0, 0);
    /// `TTBR1_EL1`.
    pub const TTBR1_EL1: u64 = SYSREG | sysreg(3, 0, 2, 0, 1);
    /// `TCR_EL1`.
    pub const TCR_EL1: u64 = SYSREG | sysreg(3, 0, 2, 0, 2);
    /// `AFSR0_EL1`.
    pub const AFSR0_EL1: u64 = SYSREG | sysreg(3, 0, 5, 1, 0);
    /// `AFSR1_EL1`.
    pub const AFSR1_EL1: u64 = SYSREG | sysreg(3, 0, 5, 1, 1);
    /// `ESR_EL1`.
    pub const ESR_EL1: u64 = SYSREG | sysreg(3, 0, 5, 2, 0);
    /// `FAR_EL1`.
    pub const FAR_EL1: u64 = SYSREG | sysreg(3, 0, 6, 0, 0);
    /// `PAR_EL1`.
    pub const PAR_EL1: u64 = SYSREG | sysreg(3, 0, 7, 4, 0);
    /// `MAIR_EL1`.
    pub const MAIR_EL1: u64 = SYSREG | sysreg(3, 0, 10, 2, 0);
    /// `AMAIR_EL1`.
    pub const AMAIR_EL1: u64 = SYSREG | sysreg(3, 0, 10, 3, 0);
    /// `VBAR_EL1`.
    pub const VBAR_EL1: u64 = SYSREG | sysreg(3, 0, 12, 0, 0);
    /// `CONTEXTIDR_EL1`.
    pub const CONTEXTIDR_EL1: u64 = SYSREG | sysreg(3, 0, 13, 0, 1);
    /// `TPIDR_EL1`.
    pub const TPIDR_EL1: u64 = SYSREG | sysreg(3, 0, 13, 0, 4);
    /// `CNTKCTL_EL1`.
    pub const CNTKCTL_EL1: u64 = SYSREG | sysreg(3, 0, 14, 1, 0);
    /// `CSSELR_EL1`.
    pub const CSSELR_EL1: u64 = SYSREG | sysreg(3, 2, 0, 0, 0);
    /// `TPIDR_EL0`.
    pub const TPIDR_EL0: u64 = SYSREG | sysreg(3, 3, 13, 0, 2);
    /// `TPIDRRO_EL0`.
    pub const TPIDRRO_EL0: u64 = SYSREG | sysreg(3, 3, 13, 0, 3);
    /// `CNTV_CTL_EL0`.
    pub const CNTV_CTL_EL0: u64 = SYSREG | sysreg(3, 3, 14, 3, 1);
    /// `CNTV_CVAL_EL0`.
    pub const CNTV_CVAL_EL0: u64 = SYSREG | sysreg(3, 3, 14, 3, 2);
    /// `CNTP_CTL_EL0`, the EL1 physical timer's control (ABI 0.11): only
    /// `ENABLE` and `IMASK` are kept (`ISTATUS` is the hardware's).
    pub const CNTP_CTL_EL0: u64 = SYSREG | sysreg(3, 3, 14, 2, 1);
    /// `CNTP_CVAL_EL0`, the EL1 physical timer's compare value (ABI 0.11),
    /// against the physical count: guests have no physical offset.
    pub const CNTP_CVAL_EL0: u64 = SYSREG | sysreg(3, 3, 14, 2, 2);
    /// `MDSCR_EL1`.
    pub const MDSCR_EL1: u64 = SYSREG | sysreg(2, 0, 0, 2, 2);
    /// `OSLSR_EL1` as the guest reads it (`OSLM` = 0b10, the OS lock
    /// implemented; `OSLK` whether the guest set it); only `OSLK` may be
    /// written.
    pub const OSLSR_EL1: u64 = SYSREG | sysreg(2, 0, 1, 1, 4);
    /// `MPIDR_EL1` (read-only: KCore derives it from the vCPU index).
    pub const MPIDR_EL1: u64 = SYSREG | sysreg(3, 0, 0, 0, 5);

    /// Breakpoint and watchpoint registers: `DBGBVR<n>_EL1`,
    /// `DBGBCR<n>_EL1`, `DBGWVR<n>_EL1`, `DBGWCR<n>_EL1` for `n` in 0..16
    /// (`op0=2, op1=0, CRn=0, CRm=n, op2=4..7`), [`DEBUG_REGS`] of them.
    pub const DEBUG_REGS: usize = 64;

    /// The id of the `i`th debug register (`i < DEBUG_REGS`): `n = i / 4`,
    /// then `BVR`, `BCR`, `WVR`, `WCR`.
    pub const fn debug(i: usize) -> u64 {
        SYSREG | sysreg(2, 0, 0, (i / 4) as u64, 4 + (i % 4) as u64)
    }

    /// The index (for [`debug`]) of the debug register `id` names.
    pub const fn debug_index(id: u64) -> Option<usize> {
        let enc = id ^ SYSREG;
        if enc >> 16 != 0 || enc >> 7 != 2 << 7 || enc & 7 < 4 {
            return None;
        }
        Some(((enc >> 3) & 15) as usize * 4 + (enc & 7) as usize - 4)
    }
}

/// The identification registers `HostGuestIdReg` answers, as 16-bit
/// encodings (without [`SYSREG`]): the feature space `op0=3, op1=0, CRn=0,
/// CRm=1..7` (56 registers, reserved ones included, which KCore traps in
/// guests) and [`id::FIXED`], which guests read from the hardware.
pub mod id {
    use super::sysreg;

    /// Registers of the feature space.
    pub const FEATURE_REGS: usize = 56;

    /// `MIDR_EL1`.
    pub const MIDR_EL1: u64 = sysreg(3, 0, 0, 0, 0);
    /// `REVIDR_EL1`.
    pub const REVIDR_EL1: u64 = sysreg(3, 0, 0, 0, 6);
    /// `CLIDR_EL1`.
    pub const CLIDR_EL1: u64 = sysreg(3, 1, 0, 0, 1);
    /// `AIDR_EL1`.
    pub const AIDR_EL1: u64 = sysreg(3, 1, 0, 0, 7);
    /// `CTR_EL0`.
    pub const CTR_EL0: u64 = sysreg(3, 3, 0, 0, 1);
    /// `ICH_VTR_EL2`, of which the guest's virtual CPU interface shows
    /// `PRIbits`, `PREbits`, `IDbits`, `SEIS` and `A3V` (what KServ reports as
    /// the read-only fields of `ICC_CTLR_EL1`). Not listed in
    /// `KVM_GET_REG_LIST`.
    pub const ICH_VTR_EL2: u64 = sysreg(3, 4, 12, 11, 1);

    /// The identification registers outside the feature space, in
    /// ascending order.
    pub const FIXED: [u64; 5] = [MIDR_EL1, REVIDR_EL1, CLIDR_EL1, AIDR_EL1, CTR_EL0];

    /// `ID_AA64PFR0_EL1`.
    pub const ID_AA64PFR0_EL1: u64 = sysreg(3, 0, 0, 4, 0);
    /// `ID_AA64PFR1_EL1`.
    pub const ID_AA64PFR1_EL1: u64 = sysreg(3, 0, 0, 4, 1);
    /// `ID_AA64DFR0_EL1`.
    pub const ID_AA64DFR0_EL1: u64 = sysreg(3, 0, 0, 5, 0);
    /// `ID_AA64ISAR0_EL1`.
    pub const ID_AA64ISAR0_EL1: u64 = sysreg(3, 0, 0, 6, 0);
    /// `ID_AA64ISAR1_EL1`.
    pub const ID_AA64ISAR1_EL1: u64 = sysreg(3, 0, 0, 6, 1);
    /// `ID_AA64ISAR2_EL1`.
    pub const ID_AA64ISAR2_EL1: u64 = sysreg(3, 0, 0, 6, 2);
    /// `ID_AA64MMFR0_EL1`.
    pub const ID_AA64MMFR0_EL1: u64 = sysreg(3, 0, 0, 7, 0);
    /// `ID_AA64MMFR1_EL1`.
    pub const ID_AA64MMFR1_EL1: u64 = sysreg(3, 0, 0, 7, 1);
    /// `ID_AA64MMFR2_EL1`.
    pub const ID_AA64MMFR2_EL1: u64 = sysreg(3, 0, 0, 7, 2);

    /// The index of `enc` in the feature space, if it is in it.
    pub const fn feature_index(enc: u64) -> Option<usize> {
        let op0 = (enc >> 14) & 3;
        let op1 = (enc >> 11) & 7;
        let crn = (enc >> 7) & 0xF;
        let crm = (enc >> 3) & 0xF;
        let op2 = enc & 7;
        if enc >> 16 != 0 || op0 != 3 || op1 != 0 || crn != 0 || crm == 0 || crm > 7 {
            return None;
        }
        Some(((crm - 1) * 8 + op2) as usize)
    }

    /// The encoding of the `i`th register of the feature space.
    pub const fn feature_encoding(i: usize) -> u64 {
        let i = i as u64;
        sysreg(3, 0, 0, i / 8 + 1, i % 8)
    }

    /// Whether `enc` is an identification register `HostGuestIdReg`
    /// answers.
    pub const fn is_id(enc: u64) -> bool {
        enc == ICH_VTR_EL2 || is_listed(enc)
    }

    /// Whether `enc` is an identification register KVM's
    /// `KVM_GET_REG_LIST` lists: the feature space and [`FIXED`].
    pub const fn is_listed(enc: u64) -> bool {
        if feature_index(enc).is_some() {
            return true;
        }
        let mut i = 0;
        while i < FIXED.len() {
            if FIXED[i] == enc {
                return true;
            }
            i += 1;
        }
        false
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_feature_space_is_56_registers_in_order() {
            assert_eq!(feature_index(sysreg(3, 0, 0, 1, 0)), Some(0));
            assert_eq!(feature_index(ID_AA64PFR0_EL1), Some(24));
            assert_eq!(feature_index(sysreg(3, 0, 0, 7, 7)), Some(55));
            for i in 0..FEATURE_REGS {
                assert_eq!(feature_index(feature_encoding(i)), Some(i));
                assert!(is_id(feature_encoding(i)));
            }
            for outside in [
                sysreg(3, 0, 0, 0, 5),
                sysreg(3, 0, 0, 8, 0),
                sysreg(3, 0, 1, 0, 0),
            ] {
                assert_eq!(feature_index(outside), None);
                assert!(!is_id(outside));
            }
            assert_eq!(feature_index(ID_AA64PFR0_EL1 | 1 << 16), None);
            assert!(FIXED.windows(2).all(|w| w[0] < w[1]));
            assert!(is_id(ICH_VTR_EL2) && !is_listed(ICH_VTR_EL2));
            assert!(
                FIXED
                    .iter()
                    .all(|&f| feature_index(f).is_none() && is_id(f))
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysreg_fields_in_their_bits() {
        for (i, shift) in [14, 11, 7, 3, 0].into_iter().enumerate() {
            let mut f = [0u64; 5];
            f[i] = 1;
            assert_eq!(sysreg(f[0], f[1], f[2], f[3], f[4]), 1 << shift);
        }
        assert_eq!(sys::MPIDR_EL1, SYSREG | 0xc005);
    }

    #[test]
    fn debug_registers_round_trip_and_nothing_else_is_one() {
        // DBGBVR0_EL1, DBGWCR15_EL1 as KVM numbers them.
        assert_eq!(sys::debug(0), SYSREG | 0x8004);
        assert_eq!(sys::debug(63), SYSREG | 0x807f);
        for i in 0..sys::DEBUG_REGS {
            assert_eq!(sys::debug_index(sys::debug(i)), Some(i));
        }
        for id in [
            sys::MDSCR_EL1,
            sys::OSLSR_EL1,
            SYSREG | sysreg(2, 0, 0, 2, 0), // MDCCINT_EL1
            SYSREG | sysreg(2, 1, 0, 0, 4),
            SYSREG | sysreg(2, 0, 1, 0, 4),
            SYSREG | sysreg(3, 0, 0, 0, 4),
            sysreg(2, 0, 0, 0, 4),
            X0,
        ] {
            assert_eq!(sys::debug_index(id), None, "{id:#x}");
        }
    }
}
