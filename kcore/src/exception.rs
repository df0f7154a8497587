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
    /// FP/SIMD access trapped by `CPTR_EL2.TFP` (or `CPACR_EL1.FPEN`).
    pub const FP_ASIMD: u64 = 0x07;
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
    /// A breakpoint from a lower EL.
    pub const BKPT_LOW: u64 = 0x30;
    /// A software step completed at a lower EL.
    pub const SOFTSTP_LOW: u64 = 0x32;
    /// A watchpoint from a lower EL.
    pub const WATCHPT_LOW: u64 = 0x34;
    /// `BRK` in AArch64.
    pub const BRK64: u64 = 0x3C;
}

/// `ESR_ELx.ISS` fault status codes (`DFSC`/`IFSC`) KCore tells apart
/// (Arm ARM D19.2, ESR_ELx). The level-indexed kinds are matched on
/// `fsc & LEVEL_KIND`, which drops the level (0-3) in bits 1:0.
pub mod fsc {
    /// The bits of a fault status code that name its kind, without the
    /// lookup level.
    pub const LEVEL_KIND: u64 = 0x3C;
    /// Translation fault, levels 0-3.
    pub const TRANSLATION: u64 = 0x04;
    /// Access flag fault, levels 0-3.
    pub const ACCESS_FLAG: u64 = 0x08;
    /// Permission fault, levels 0-3.
    pub const PERMISSION: u64 = 0x0C;
    /// Synchronous external abort, not on a translation table walk.
    pub const SEA: u64 = 0x10;
    /// Translation fault, level -1 (FEAT_LPA2).
    pub const TRANSLATION_LEVEL_MINUS_1: u64 = 0x2B;
}

/// A syndrome register value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Esr(pub u64);

/// The fields of a trapped `MSR`/`MRS`/system instruction's syndrome
/// (`EC == 0x18`): which register, which general register, which way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegTrap {
    /// `Op0`.
    pub op0: u64,
    /// `Op1`.
    pub op1: u64,
    /// `CRn`.
    pub crn: u64,
    /// `CRm`.
    pub crm: u64,
    /// `Op2`.
    pub op2: u64,
    /// `Rt`: the general register transferred (31 is XZR).
    pub rt: usize,
    /// Direction: a read (`MRS`) rather than a write (`MSR`).
    pub read: bool,
}

impl Esr {
    /// Exception class.
    pub const fn ec(self) -> u64 {
        (self.0 >> ESR_EC_SHIFT) & 0x3F
    }
    /// Instruction syndrome.
    pub const fn iss(self) -> u64 {
        self.0 & 0x1FF_FFFF
    }
    /// For HVC/SMC: the 16-bit immediate.
    pub const fn imm16(self) -> u16 {
        self.0 as u16
    }
    /// For trapped `WFI`/`WFE`: the instruction was `WFE` (`TI == 0b01`;
    /// `WFI`, `WFIT` and `WFET` are not).
    pub const fn is_wfe(self) -> bool {
        self.0 & 3 == 1
    }
    /// For trapped `MSR`/`MRS`/system instructions: the register and
    /// direction.
    pub const fn sys_reg(self) -> SysRegTrap {
        let iss = self.iss();
        SysRegTrap {
            op0: (iss >> 20) & 3,
            op2: (iss >> 17) & 7,
            op1: (iss >> 14) & 7,
            crn: (iss >> 10) & 15,
            rt: ((iss >> 5) & 31) as usize,
            crm: (iss >> 1) & 15,
            read: iss & 1 == 1,
        }
    }
    /// For aborts: the fault status code.
    pub const fn fsc(self) -> u64 {
        self.0 & 0x3F
    }
    /// For aborts: a translation fault (any level, including -1) or an
    /// access flag fault: nothing is mapped (usable) there yet.
    pub const fn is_translation_or_access_fault(self) -> bool {
        let code = self.fsc();
        matches!(code & fsc::LEVEL_KIND, fsc::TRANSLATION | fsc::ACCESS_FLAG)
            || code == fsc::TRANSLATION_LEVEL_MINUS_1
    }
    /// For aborts: a permission fault (levels 0-3).
    pub const fn is_permission_fault(self) -> bool {
        self.fsc() & fsc::LEVEL_KIND == fsc::PERMISSION
    }
    /// For aborts: whether the fault is a translation, access-flag or
    /// permission fault: the stage-2 faults `HPFAR_EL2` is valid for.
    pub const fn is_s2_mapping_fault(self) -> bool {
        self.is_translation_or_access_fault() || self.is_permission_fault()
    }
    /// For stage-2 aborts: the fault was on the stage-1 translation table
    /// walk (S1PTW), not on the access itself.
    pub const fn s1ptw(self) -> bool {
        self.0 & (1 << 7) != 0
    }
    /// For data aborts: write (WnR).
    pub const fn is_write(self) -> bool {
        self.0 & ESR_WNR != 0
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

/// `ESR_ELx.EC`'s position.
const ESR_EC_SHIFT: u32 = 26;
/// `ESR_ELx.IL`: a 32-bit instruction.
const ESR_IL: u64 = 1 << 25;
/// `ESR_ELx.ISS.WnR` of a data abort.
const ESR_WNR: u64 = 1 << 6;

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
    let wnr = if !is_instr && trap.is_write() {
        ESR_WNR
    } else {
        0
    };
    let esr = (class << ESR_EC_SHIFT) | ESR_IL | wnr | fsc::SEA;
    enter_el1(t, esr, Some(t.far))
}

/// An UNDEFINED exception for the instruction KServ trapped on.
pub fn inject_undef(t: &TrapState) -> Injection {
    enter_el1(t, (ec::UNKNOWN << ESR_EC_SHIFT) | ESR_IL, None)
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
        assert_eq!(Esr(i.esr_el1).fsc(), fsc::SEA);
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

    #[test]
    fn sysreg_trap_fields() {
        // MRS x3, MDSCR_EL1 (Op0 2, Op1 0, CRn 0, CRm 2, Op2 2).
        assert_eq!(
            Esr(0x6224_0065).sys_reg(),
            SysRegTrap {
                op0: 2,
                op1: 0,
                crn: 0,
                crm: 2,
                op2: 2,
                rt: 3,
                read: true
            }
        );
        // MSR ICC_SGI1R_EL1, x4 (Op0 3, Op1 0, CRn 12, CRm 11, Op2 5).
        let t = Esr(0x623A_3096);
        assert_eq!(t.ec(), ec::SYS64);
        assert_eq!(
            t.sys_reg(),
            SysRegTrap {
                op0: 3,
                op1: 0,
                crn: 12,
                crm: 11,
                op2: 5,
                rt: 4,
                read: false
            }
        );
    }

    #[test]
    fn data_abort_fields() {
        // STR w5: ISV, SAS 2, SRT 5, WnR, translation fault level 3.
        let st = Esr(0x9385_0047);
        assert_eq!(st.ec(), ec::DABT_LOW);
        assert!(st.isv() && st.is_write() && !st.s1ptw());
        assert_eq!((st.access_bytes(), st.srt()), (4, 5));
        assert!(!st.sign_extend() && !st.sixty_four());
        assert!(st.is_translation_or_access_fault() && !st.is_permission_fault());
        // LDRSH x3 on the stage-1 walk: SAS 1, SSE, SF, S1PTW, level 2.
        let ld = Esr(0x9363_8086);
        assert!(ld.isv() && !ld.is_write() && ld.s1ptw());
        assert_eq!((ld.access_bytes(), ld.srt()), (2, 3));
        assert!(ld.sign_extend() && ld.sixty_four());
        assert_eq!(ld.fsc(), 0x06);
    }

    #[test]
    fn fault_status_kinds() {
        for (esr, translation, permission) in [
            (0x9200_0004, true, false),  // translation, level 0
            (0x9200_0007, true, false),  // translation, level 3
            (0x9200_002B, true, false),  // translation, level -1
            (0x9200_000B, true, false),  // access flag, level 3
            (0x9200_000D, false, true),  // permission, level 1
            (0x9200_000F, false, true),  // permission, level 3
            (0x9200_0010, false, false), // synchronous external abort
            (0x9200_0021, false, false), // alignment
        ] {
            let e = Esr(esr);
            assert_eq!(e.is_translation_or_access_fault(), translation, "{esr:#x}");
            assert_eq!(e.is_permission_fault(), permission, "{esr:#x}");
            assert_eq!(e.is_s2_mapping_fault(), translation || permission);
        }
    }

    #[test]
    fn wfx_kinds() {
        assert!(!Esr(0x0600_0000).is_wfe(), "WFI");
        assert!(Esr(0x0600_0001).is_wfe(), "WFE");
        assert!(!Esr(0x0600_0002).is_wfe(), "WFIT");
        assert!(!Esr(0x0600_0003).is_wfe(), "WFET");
    }
}
