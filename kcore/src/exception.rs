//! Exception syndromes and the exceptions KCore injects into KServ.
//!
//! When KServ touches memory it may not (KCore's own, or a region KCore keeps
//! for itself), KCore makes the access fail inside KServ the way a bus error
//! would: it synthesises a synchronous external abort at EL1 (Arm ARM D1.10,
//! "Exception entry"), so Linux handles it with its ordinary fault code. An
//! instruction KServ may not execute becomes an UNDEFINED exception. The
//! computations here are pure; `kcore-arch` writes the resulting registers.

/// `ESR_ELx.EC` values KCore handles (Arm ARM D19.2, ESR_ELx).
pub mod ec {
    /// Unknown reason (used for injected UNDEFINED).
    pub const UNKNOWN: u64 = 0x00;
    /// Trapped `WFI`/`WFE`.
    pub const WFX: u64 = 0x01;
    /// `HVC` from AArch64.
    pub const HVC64: u64 = 0x16;
    /// `SMC` from AArch64 (trapped by `HCR_EL2.TSC`).
    pub const SMC64: u64 = 0x17;
    /// Trapped `MSR`/`MRS`/system instruction.
    pub const SYS64: u64 = 0x18;
    /// Instruction abort from a lower EL.
    pub const IABT_LOW: u64 = 0x20;
    /// Instruction abort from the same EL.
    pub const IABT_CUR: u64 = 0x21;
    /// Data abort from a lower EL.
    pub const DABT_LOW: u64 = 0x24;
    /// Data abort from the same EL.
    pub const DABT_CUR: u64 = 0x25;
}

/// A syndrome register value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Esr(pub u64);

impl Esr {
    /// Exception class.
    pub const fn ec(self) -> u64 {
        (self.0 >> 26) & 0x3F
    }
    /// Instruction syndrome.
    pub const fn iss(self) -> u64 {
        self.0 & 0x1FF_FFFF
    }
    /// For HVC/SMC: the 16-bit immediate.
    pub const fn imm16(self) -> u16 {
        self.0 as u16
    }
    /// For aborts: the fault status code.
    pub const fn fsc(self) -> u64 {
        self.0 & 0x3F
    }
    /// For aborts: whether the fault is a translation, access-flag or
    /// permission fault (levels 0-3): the stage-2 faults `HPFAR_EL2` is
    /// valid for.
    pub const fn is_s2_mapping_fault(self) -> bool {
        let fsc = self.fsc();
        matches!(fsc & 0x3C, 0x04 | 0x08 | 0x0C) || fsc == 0x2B // 0x2B: translation fault level -1 (LPA2)
    }
    /// For data aborts: write (WnR).
    pub const fn is_write(self) -> bool {
        self.0 & (1 << 6) != 0
    }
    /// For data aborts: the syndrome below is valid (ISV): a single load or
    /// store of one general register.
    pub const fn isv(self) -> bool {
        self.0 & (1 << 24) != 0
    }
    /// For data aborts with ISV: the access size in bytes (SAS).
    pub const fn access_bytes(self) -> u8 {
        1 << ((self.0 >> 22) & 3)
    }
    /// For data aborts with ISV: a load sign-extends (SSE).
    pub const fn sign_extend(self) -> bool {
        self.0 & (1 << 21) != 0
    }
    /// For data aborts with ISV: the register transferred (SRT; 31 is XZR).
    pub const fn srt(self) -> usize {
        ((self.0 >> 16) & 0x1F) as usize
    }
    /// For data aborts with ISV: the register is 64 bits wide (SF).
    pub const fn sixty_four(self) -> bool {
        self.0 & (1 << 15) != 0
    }
}

/// The IPA of a stage-2 abort: `HPFAR_EL2.FIPA` (bits 47:12 of the IPA in
/// bits 43:4) plus the page offset from `FAR_EL2`.
pub const fn fault_ipa(hpfar: u64, far: u64) -> u64 {
    ((hpfar & 0x0000_0FFF_FFFF_FFF0) << 8) | (far & 0xFFF)
}

/// PSTATE/SPSR bits used when building an exception entry.
mod pstate {
    pub const M_MASK: u64 = 0b1_1111;
    pub const M_EL1T: u64 = 0b0_0100;
    pub const M_EL1H: u64 = 0b0_0101;
    pub const NRW: u64 = 1 << 4;
    pub const DAIF: u64 = 0b1111 << 6;
    pub const SSBS: u64 = 1 << 12;
    pub const PAN: u64 = 1 << 22;
}

/// `SCTLR_EL1` bits that shape exception entry.
mod sctlr {
    pub const SPAN: u64 = 1 << 23;
    pub const DSSBS: u64 = 1 << 44;
}

/// KServ's state at the trap, as `kcore-arch` captured it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrapState {
    /// `ESR_EL2`.
    pub esr: u64,
    /// `FAR_EL2`.
    pub far: u64,
    /// `HPFAR_EL2` (meaningful for stage-2 aborts only).
    pub hpfar: u64,
    /// `ELR_EL2`: where KServ was.
    pub elr: u64,
    /// `SPSR_EL2`: KServ's PSTATE.
    pub spsr: u64,
    /// `VBAR_EL1`: KServ's vectors.
    pub vbar_el1: u64,
    /// `SCTLR_EL1`.
    pub sctlr_el1: u64,
}

/// The register values that make KServ take an exception at EL1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection {
    /// New `ESR_EL1`.
    pub esr_el1: u64,
    /// New `FAR_EL1`, when the exception reports an address.
    pub far_el1: Option<u64>,
    /// New `ELR_EL1`: KServ's PC at the trap.
    pub elr_el1: u64,
    /// New `SPSR_EL1`: KServ's PSTATE at the trap.
    pub spsr_el1: u64,
    /// New `ELR_EL2`: the vector KServ resumes at.
    pub elr_el2: u64,
    /// New `SPSR_EL2`: PSTATE on entry to that vector.
    pub spsr_el2: u64,
}

const ESR_IL: u64 = 1 << 25;
/// Fault status: synchronous external abort, not on a table walk.
const FSC_SEA: u64 = 0x10;

fn enter_el1(t: &TrapState, esr_el1: u64, far_el1: Option<u64>) -> Injection {
    let from = t.spsr & pstate::M_MASK;
    let offset = if t.spsr & pstate::NRW != 0 {
        0x600 // lower EL, AArch32
    } else {
        match from {
            pstate::M_EL1H => 0x200,
            pstate::M_EL1T => 0x000,
            _ => 0x400, // lower EL (EL0), AArch64
        }
    };
    let mut new = pstate::M_EL1H | pstate::DAIF;
    if t.sctlr_el1 & sctlr::SPAN == 0 {
        new |= pstate::PAN;
    } else {
        new |= t.spsr & pstate::PAN;
    }
    if t.sctlr_el1 & sctlr::DSSBS != 0 {
        new |= pstate::SSBS;
    }
    Injection {
        esr_el1,
        far_el1,
        elr_el1: t.elr,
        spsr_el1: t.spsr,
        elr_el2: t.vbar_el1.wrapping_add(offset),
        spsr_el2: new,
    }
}

fn from_el1(t: &TrapState) -> bool {
    matches!(t.spsr & pstate::M_MASK, pstate::M_EL1H | pstate::M_EL1T) && t.spsr & pstate::NRW == 0
}

/// A synchronous external abort for the instruction or data access that
/// caused the stage-2 abort described by `t`.
pub fn inject_external_abort(t: &TrapState) -> Injection {
    let trap = Esr(t.esr);
    let is_instr = matches!(trap.ec(), ec::IABT_LOW | ec::IABT_CUR);
    let class = match (is_instr, from_el1(t)) {
        (true, true) => ec::IABT_CUR,
        (true, false) => ec::IABT_LOW,
        (false, true) => ec::DABT_CUR,
        (false, false) => ec::DABT_LOW,
    };
    // Keep only WnR from the original syndrome: nothing else about the
    // stage-2 walk is KServ's business.
    let wnr = if is_instr { 0 } else { t.esr & (1 << 6) };
    let esr = (class << 26) | ESR_IL | wnr | FSC_SEA;
    enter_el1(t, esr, Some(t.far))
}

/// An UNDEFINED exception for the instruction KServ trapped on.
pub fn inject_undef(t: &TrapState) -> Injection {
    enter_el1(t, (ec::UNKNOWN << 26) | ESR_IL, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EL1H_MASKED: u64 = 0x3C5;

    fn trap(esr: u64, spsr: u64) -> TrapState {
        TrapState {
            esr,
            far: 0xffff_8000_1234_5678,
            hpfar: 0,
            elr: 0xffff_8000_0800_0000,
            spsr,
            vbar_el1: 0xffff_8000_0801_0000,
            sctlr_el1: 0,
        }
    }

    #[test]
    fn abort_from_el1h_goes_to_current_el_spx_vector() {
        // Data abort from lower EL, translation fault level 3, write.
        let t = trap((ec::DABT_LOW << 26) | ESR_IL | (1 << 6) | 0x07, 0x2000_0005);
        let i = inject_external_abort(&t);
        assert_eq!(i.elr_el2, t.vbar_el1 + 0x200);
        assert_eq!(Esr(i.esr_el1).ec(), ec::DABT_CUR);
        assert_eq!(Esr(i.esr_el1).fsc(), FSC_SEA);
        assert!(Esr(i.esr_el1).is_write());
        assert_eq!(i.far_el1, Some(t.far));
        assert_eq!((i.elr_el1, i.spsr_el1), (t.elr, t.spsr));
        assert_eq!(i.spsr_el2, EL1H_MASKED | pstate::PAN, "SPAN=0 sets PAN");
    }

    #[test]
    fn abort_from_el0_goes_to_lower_el_vector() {
        let t = trap((ec::IABT_LOW << 26) | ESR_IL | 0x0F, 0x0);
        let i = inject_external_abort(&t);
        assert_eq!(i.elr_el2, t.vbar_el1 + 0x400);
        assert_eq!(Esr(i.esr_el1).ec(), ec::IABT_LOW);
        assert!(!Esr(i.esr_el1).is_write());
    }

    #[test]
    fn pan_and_ssbs_follow_sctlr() {
        let mut t = trap(ec::DABT_LOW << 26, pstate::M_EL1H);
        t.sctlr_el1 = sctlr::SPAN | sctlr::DSSBS;
        let i = inject_undef(&t);
        assert_eq!(i.spsr_el2, EL1H_MASKED | pstate::SSBS);
        assert_eq!(Esr(i.esr_el1).ec(), ec::UNKNOWN);
        assert_eq!(i.far_el1, None);
        t.spsr |= pstate::PAN;
        assert_eq!(
            inject_undef(&t).spsr_el2 & pstate::PAN,
            pstate::PAN,
            "PAN kept when SPAN=1"
        );
    }

    #[test]
    fn fault_ipa_combines_hpfar_and_far() {
        // IPA 0x4020_3abc: FIPA = IPA[47:12] in HPFAR[43:4].
        let hpfar = (0x4020_3abc_u64 >> 12) << 4;
        assert_eq!(fault_ipa(hpfar, 0xffff_0000_dead_0abc), 0x4020_3abc);
        assert!(Esr(0x9200_0007).is_s2_mapping_fault());
        assert!(Esr(0x9200_000F).is_s2_mapping_fault());
        assert!(!Esr(0x9200_0010).is_s2_mapping_fault());
    }
}
