//! `ONE_REG` ids of arm64 KVM mapped onto KCore's register ids
//! (`kcore_abi::reg`), and the list `KVM_GET_REG_LIST` reports.
//!
//! Core registers are `KVM_REG_ARM_CORE` ids whose low bits are an offset
//! in 32-bit words into `struct kvm_regs` (`x0..x30`, `sp`, `pc`,
//! `pstate`, `sp_el1`, `elr_el1`, `spsr[5]`, then the 16-byte aligned
//! `fp_regs`: `vregs[32]` of 128 bits, `fpsr`, `fpcr`); system registers use
//! the same `op0:op1:CRn:CRm:op2` encoding as KCore's; the virtual timer is
//! `KVM_REG_ARM_TIMER_*` (whose CNT and CVAL encodings are swapped) and the
//! EL1 physical timer `KVM_REG_ARM_PTIMER_*` (which KVM 6.1 does not list
//! either, so neither does [`list`]); the
//! PSCI version is a firmware pseudo-register; `KVM_REG_ARM_DEMUX` ids
//! name the caches' `CCSIDR_EL1`s ([`ccsidr_of`]). The error numbers follow
//! arm64 KVM (`arch/arm64/kvm/guest.c`): a core offset outside `kvm_regs`
//! is `ENOENT`, an id of the wrong size or inside a field `EINVAL`, an
//! unknown system register `ENOENT`, an id of another architecture `EINVAL`.

use super::errno::{EINVAL, ENOENT, Errno};
use super::uapi::reg as id;
use kcore_abi::reg as kr;

/// Words (32-bit) of `struct kvm_regs`.
pub const KVM_REGS_WORDS: u64 = 216;
/// Offset of `regs.sp`.
const OFF_SP: u64 = 62;
/// Offset of `regs.pc`.
const OFF_PC: u64 = 64;
/// Offset of `regs.pstate`.
const OFF_PSTATE: u64 = 66;
/// Offset of `sp_el1`.
const OFF_SP_EL1: u64 = 68;
/// Offset of `elr_el1`.
const OFF_ELR_EL1: u64 = 70;
/// Offset of `spsr[0]` (`KVM_SPSR_EL1`).
const OFF_SPSR: u64 = 72;
/// `KVM_NR_SPSR`.
const NR_SPSR: u64 = 5;
/// Offset of `fp_regs.vregs[0]`.
const OFF_VREGS: u64 = 84;
/// Offset of `fp_regs.fpsr`.
const OFF_FPSR: u64 = 212;
/// Offset of `fp_regs.fpcr`.
const OFF_FPCR: u64 = 213;

/// What an id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    /// A 64-bit register KCore keeps under this id.
    Kcore(u64),
    /// `v<n>` (128 bits: KCore's `V_LO + n` and `V_HI + n`).
    V(u64),
    /// `fpsr` or `fpcr` (32 bits of KCore's 64-bit id).
    Fp32(u64),
    /// `spsr[1..5]`, the AArch32 banked SPSRs: always 0 (no AArch32 EL1).
    Spsr32,
    /// `KVM_REG_ARM_TIMER_CNT`: the guest's virtual count (the physical
    /// count minus the vCPU's `CNTVOFF`).
    TimerCnt,
    /// `KVM_REG_ARM_PTIMER_CTL`: KCore's `CNTP_CTL_EL0` (`ENABLE`, `IMASK`)
    /// with `ISTATUS` as of now (set once the count reached `CVAL`, as KVM
    /// reads it whether or not the timer is enabled).
    PtimerCtl,
    /// `KVM_REG_ARM_PTIMER_CNT`: the guest's physical count, the physical
    /// count itself. Read-only: guests have no physical counter offset
    /// under KCore (`EINVAL` for a write).
    PtimerCnt,
    /// `KVM_REG_ARM_PSCI_VERSION`.
    PsciVersion,
    /// An identification register (KCore's id `SYSREG | encoding` of
    /// `kcore_abi::reg::id`): what every guest reads, from KCore
    /// (`HostGuestIdReg`); read-only, as in KVM 6.1 (a write must repeat the
    /// value).
    Id(u64),
    /// A register that reads as zero for the VMM and the guest alike and
    /// takes only zero: `MDCCINT_EL1` (RAZ/WI in the guest; there is no
    /// debug communications channel), `ACTLR_EL1` (RAZ/WI in the guest),
    /// `DISR_EL1` (RAS is not offered) and the AArch32 EL2 registers
    /// (`DBGVCR32_EL2`, `DACR32_EL2`, `IFSR32_EL2`, `FPEXC32_EL2`; guests
    /// are AArch64-only).
    Zero,
    /// `KVM_REG_ARM_SMCCC_ARCH_WORKAROUND_<n>` (1..=3): what the guest's
    /// `SMCCC_ARCH_FEATURES` query of that workaround answers. KCore
    /// answers `NOT_SUPPORTED`, so each reads as `NOT_AVAIL` (0), and a VMM
    /// may only write that (KVM takes no level above the host's).
    Workaround,
    /// `KVM_REG_ARM_{STD,STD_HYP,VENDOR_HYP}_BMAP` (0..=2): the hypercall
    /// services the guest has, which a VMM may narrow before the VM runs
    /// ([`super::hypercalls`]).
    FeatureBitmap(u64),
}

/// The `CSSELR_EL1` value of a `KVM_REG_ARM_DEMUX_ID_CCSIDR` id, whose
/// register is the `CCSIDR_EL1` of the cache it selects (if `CLIDR_EL1`
/// has it, [`csselr_valid`]); `ENOENT` for other bits, another demux id
/// or a size but 32 bits (`demux_c15_get`); `None` for an id [`decode`]
/// answers. (Not a [`Reg`]: another arm in the vCPU's matches on it would
/// make a jump table, an indirect branch the module must not have.)
pub fn ccsidr_of(reg: u64) -> Result<Option<u8>, Errno> {
    if (reg & !id::SIZE_MASK) >> 32 != id::ARM64 >> 32 || reg & id::COPROC_MASK != id::DEMUX {
        return Ok(None);
    }
    if reg & 0xF000_FF00 != 0 || id::size(reg) != 4 {
        return Err(ENOENT);
    }
    Ok(Some(reg as u8))
}

/// `CSSELR_EL1` values KVM 6.1 offers as `KVM_REG_ARM_DEMUX` registers
/// (`CSSELR_MAX`): level 1..7, instruction or data.
pub const CSSELR_LIMIT: u8 = 14;

/// Whether `CLIDR_EL1` has the cache `csselr` selects, as KVM 6.1's
/// `is_valid_cache`: its level's type (levels from the first without a
/// cache on are ignored) says instruction only (`InD` set), data or
/// unified (`InD` clear), or separate (both).
pub fn csselr_valid(clidr: u64, csselr: u8) -> bool {
    if csselr >= CSSELR_LIMIT {
        return false;
    }
    let level = u32::from(csselr >> 1);
    let instruction = csselr & 1 != 0;
    if (0..level).any(|l| (clidr >> (3 * l)) & 7 == 0) {
        return false;
    }
    match (clidr >> (3 * level)) & 7 {
        1 => instruction,
        2 | 4 => !instruction,
        3 => true,
        _ => false,
    }
}

/// The `KVM_REG_ARM_DEMUX` registers `KVM_GET_REG_LIST` reports after the
/// [`COUNT`] of [`list`]: the [`csselr_valid`] ones, in `CSSELR_EL1` order
/// (KVM's `write_demux_regids`).
pub fn demux_ids(clidr: u64) -> impl Iterator<Item = u64> {
    (0..CSSELR_LIMIT)
        .filter(move |&s| csselr_valid(clidr, s))
        .map(|s| id::ccsidr(u64::from(s)))
}

/// The registers of [`Reg::Zero`] but `FPEXC32_EL2`, as
/// `KVM_REG_ARM64_SYSREG` encodings, in ascending order.
const ZERO_SYSREGS: [u64; 6] = [
    kr::sysreg(2, 0, 0, 2, 0),  // MDCCINT_EL1
    kr::sysreg(2, 4, 0, 7, 0),  // DBGVCR32_EL2
    kr::sysreg(3, 0, 1, 0, 1),  // ACTLR_EL1
    kr::sysreg(3, 0, 12, 1, 1), // DISR_EL1
    kr::sysreg(3, 4, 3, 0, 0),  // DACR32_EL2
    kr::sysreg(3, 4, 5, 0, 1),  // IFSR32_EL2
];
/// `FPEXC32_EL2`, the last of [`Reg::Zero`]'s.
const FPEXC32_EL2: u64 = kr::sysreg(3, 4, 5, 3, 0);

/// Breakpoint and watchpoint registers KVM lists: 16 of each of
/// `DBGBVR`, `DBGBCR`, `DBGWVR`, `DBGWCR` (`op0=2, op1=0, CRn=0, CRm=n,
/// op2=4..7`), KCore's (`kcore_abi::reg::sys::debug`).
const DEBUG_REGS: usize = kr::sys::DEBUG_REGS;

/// The `i`th debug register's encoding (`i < DEBUG_REGS`).
const fn debug_encoding(i: usize) -> u64 {
    kr::sys::debug(i) & 0xFFFF
}

/// The EL1 system registers offered, in the order of their ids (as KVM
/// lists them): all of KCore's but the timer's (which are timer ids).
pub const SYSREGS: [u64; 21] = [
    kr::sys::MDSCR_EL1,
    kr::sys::MPIDR_EL1,
    kr::sys::SCTLR_EL1,
    kr::sys::CPACR_EL1,
    kr::sys::TTBR0_EL1,
    kr::sys::TTBR1_EL1,
    kr::sys::TCR_EL1,
    kr::sys::AFSR0_EL1,
    kr::sys::AFSR1_EL1,
    kr::sys::ESR_EL1,
    kr::sys::FAR_EL1,
    kr::sys::PAR_EL1,
    kr::sys::MAIR_EL1,
    kr::sys::AMAIR_EL1,
    kr::sys::VBAR_EL1,
    kr::sys::CONTEXTIDR_EL1,
    kr::sys::TPIDR_EL1,
    kr::sys::CNTKCTL_EL1,
    kr::sys::CSSELR_EL1,
    kr::sys::TPIDR_EL0,
    kr::sys::TPIDRRO_EL0,
];

/// The identification registers offered: the feature space and the
/// registers KVM lists beside it (`kcore_abi::reg::id`).
const ID_REGS: usize = kr::id::FEATURE_REGS + kr::id::FIXED.len();

/// The firmware pseudo-registers beside the PSCI version: three
/// workarounds and three feature bitmaps.
const FW_REGS: usize = 6;

/// The registers of [`Reg::Zero`].
const ZERO_REGS: usize = ZERO_SYSREGS.len() + 1;

/// Registers `KVM_GET_REG_LIST` reports.
pub const COUNT: usize = 31
    + 5
    + NR_SPSR as usize
    + 32
    + 2
    + 1
    + FW_REGS
    + 3
    + SYSREGS.len()
    + 1
    + ID_REGS
    + ZERO_REGS
    + DEBUG_REGS;

/// Decodes a `ONE_REG` id.
pub fn decode(reg: u64) -> Result<Reg, Errno> {
    if (reg & !id::SIZE_MASK) >> 32 != id::ARM64 >> 32 {
        return Err(EINVAL);
    }
    let size = id::size(reg);
    match reg & id::COPROC_MASK {
        id::CORE => {
            let off = reg & !(0xFF00_0000_0000_0000 | id::SIZE_MASK | id::CORE);
            if off >= KVM_REGS_WORDS || off + (size as u64) / 4 >= KVM_REGS_WORDS {
                return Err(ENOENT);
            }
            core(off, size).ok_or(EINVAL)
        }
        id::FW => match reg {
            id::PSCI_VERSION => Ok(Reg::PsciVersion),
            _ if (id::workaround(1)..=id::workaround(3)).contains(&reg) => Ok(Reg::Workaround),
            _ => Err(ENOENT),
        },
        id::FW_FEAT_BMAP => match reg {
            _ if (id::feature_bitmap(0)..=id::feature_bitmap(2)).contains(&reg) => {
                Ok(Reg::FeatureBitmap(reg & 0xFFFF))
            }
            _ => Err(ENOENT),
        },
        _ => match reg {
            id::TIMER_CTL => Ok(Reg::Kcore(kr::sys::CNTV_CTL_EL0)),
            id::TIMER_CVAL => Ok(Reg::Kcore(kr::sys::CNTV_CVAL_EL0)),
            id::TIMER_CNT => Ok(Reg::TimerCnt),
            id::PTIMER_CTL => Ok(Reg::PtimerCtl),
            id::PTIMER_CVAL => Ok(Reg::Kcore(kr::sys::CNTP_CVAL_EL0)),
            id::PTIMER_CNT => Ok(Reg::PtimerCnt),
            _ if reg & id::COPROC_MASK == id::SYSREG && size == 8 => {
                let enc = kr::SYSREG | (reg & 0xFFFF);
                if reg & !(id::ARM64 | id::SIZE_MASK | id::SYSREG | 0xFFFF) != 0 {
                    return Err(ENOENT);
                }
                let e = reg & 0xFFFF;
                if kr::id::is_listed(e) {
                    return Ok(Reg::Id(enc));
                }
                if kr::sys::debug_index(enc).is_some() {
                    return Ok(Reg::Kcore(enc));
                }
                if ZERO_SYSREGS.contains(&e) || e == FPEXC32_EL2 {
                    return Ok(Reg::Zero);
                }
                if enc == kr::sys::OSLSR_EL1 {
                    return Ok(Reg::Kcore(enc));
                }
                SYSREGS
                    .contains(&enc)
                    .then_some(Reg::Kcore(enc))
                    .ok_or(ENOENT)
            }
            _ => Err(ENOENT),
        },
    }
}

/// Whether a write of identification register `k` (KCore's id) from
/// userspace is accepted and ignored: the named AArch32 ID registers, which
/// read as zero because guests are AArch64-only, are "RAZ, user WI" in KVM
/// 6.1 (`aa32_id_visibility`); every other identification register takes
/// only its own value (`EINVAL`).
pub fn id_write_ignored(k: u64) -> bool {
    let enc = k & 0xFFFF;
    let (op0, op1, crn, crm, op2) = (
        enc >> 14,
        (enc >> 11) & 7,
        (enc >> 7) & 15,
        (enc >> 3) & 15,
        enc & 7,
    );
    if (op0, op1, crn) != (3, 0, 0) {
        return false;
    }
    match crm {
        // ID_PFR0, ID_PFR1, ID_DFR0, ID_MMFR0..3; not ID_AFR0 (op2 3).
        1 => op2 != 3,
        // ID_ISAR0..5, ID_MMFR4, ID_ISAR6.
        2 => true,
        // MVFR0..2, ID_PFR2, ID_MMFR5; not ID_DFR1 (5) or the reserved 3, 7.
        3 => matches!(op2, 0 | 1 | 2 | 4 | 6),
        _ => false,
    }
}

/// A core register at `off` (32-bit words) read as `size` bytes.
fn core(off: u64, size: usize) -> Option<Reg> {
    let (r, want) = match off {
        0..=61 if off.is_multiple_of(2) => (Reg::Kcore(kr::x(off / 2)), 8),
        OFF_SP => (Reg::Kcore(kr::SP_EL0), 8),
        OFF_PC => (Reg::Kcore(kr::PC), 8),
        OFF_PSTATE => (Reg::Kcore(kr::PSTATE), 8),
        OFF_SP_EL1 => (Reg::Kcore(kr::SP_EL1), 8),
        OFF_ELR_EL1 => (Reg::Kcore(kr::ELR_EL1), 8),
        OFF_SPSR => (Reg::Kcore(kr::SPSR_EL1), 8),
        _ if (OFF_SPSR + 2..OFF_SPSR + 2 * NR_SPSR).contains(&off) && off.is_multiple_of(2) => {
            (Reg::Spsr32, 8)
        }
        _ if (OFF_VREGS..OFF_FPSR).contains(&off) && (off - OFF_VREGS).is_multiple_of(4) => {
            (Reg::V((off - OFF_VREGS) / 4), 16)
        }
        OFF_FPSR => (Reg::Fp32(kr::FPSR), 4),
        OFF_FPCR => (Reg::Fp32(kr::FPCR), 4),
        _ => return None,
    };
    (size == want).then_some(r)
}

/// The `i`th id of the list `KVM_GET_REG_LIST` reports (`i < COUNT`): the
/// core registers, the firmware pseudo-registers, the timer, the system
/// registers, the identification registers, then those that read as zero.
pub fn list(i: usize) -> u64 {
    let u64c = |off| id::core(id::SIZE_U64, off);
    let mut i = i;
    let mut take = |n: usize| {
        if i < n {
            Some(i)
        } else {
            i -= n;
            None
        }
    };
    if let Some(n) = take(31) {
        return u64c(2 * n as u64);
    }
    if let Some(n) = take(5) {
        return u64c([OFF_SP, OFF_PC, OFF_PSTATE, OFF_SP_EL1, OFF_ELR_EL1][n]);
    }
    if let Some(n) = take(NR_SPSR as usize) {
        return u64c(OFF_SPSR + 2 * n as u64);
    }
    if let Some(n) = take(32) {
        return id::core(id::SIZE_U128, OFF_VREGS + 4 * n as u64);
    }
    if let Some(n) = take(2) {
        return id::core(id::SIZE_U32, OFF_FPSR + n as u64);
    }
    if take(1).is_some() {
        return id::PSCI_VERSION;
    }
    if let Some(n) = take(3) {
        return id::workaround(n as u64 + 1);
    }
    if let Some(n) = take(3) {
        return id::feature_bitmap(n as u64);
    }
    if let Some(n) = take(3) {
        return [id::TIMER_CTL, id::TIMER_CNT, id::TIMER_CVAL][n];
    }
    if let Some(n) = take(SYSREGS.len()) {
        return sys_id(SYSREGS[n]);
    }
    if take(1).is_some() {
        return sys_id(kr::sys::OSLSR_EL1);
    }
    if let Some(n) = take(ID_REGS) {
        return match n.checked_sub(kr::id::FIXED.len()) {
            None => sys_id(kr::id::FIXED[n]),
            Some(f) => sys_id(kr::id::feature_encoding(f)),
        };
    }
    if let Some(n) = take(DEBUG_REGS) {
        return sys_id(debug_encoding(n));
    }
    match ZERO_SYSREGS.get(i) {
        Some(&e) => sys_id(e),
        None => sys_id(FPEXC32_EL2),
    }
}

/// The `ONE_REG` id of KCore's system register `r`.
pub const fn sys_id(r: u64) -> u64 {
    id::ARM64 | id::SIZE_U64 | id::SYSREG | (r & 0xFFFF)
}

/// The values a vCPU has at reset (`VcpuContext::reset` in KCore): what a
/// protected vCPU, whose registers KServ may neither read nor set once
/// KCore holds them, is known to hold before its first run.
pub fn reset_value(r: Reg, mpidr: u64) -> u64 {
    match r {
        Reg::Kcore(kr::PSTATE) => PSTATE_RESET,
        Reg::Kcore(kr::sys::SCTLR_EL1) => SCTLR_EL1_RESET,
        Reg::Kcore(kr::sys::MPIDR_EL1) => mpidr,
        Reg::Kcore(kr::sys::OSLSR_EL1) => OSLSR_RESET,
        _ => 0,
    }
}

/// `OSLSR_EL1` at reset: the OS lock implemented, not set (KVM's and
/// KCore's).
pub const OSLSR_RESET: u64 = 1 << 3;
/// PSTATE at reset: EL1h with D, A, I and F masked (KVM's and KCore's).
pub const PSTATE_RESET: u64 = 0x3C5;
/// `SCTLR_EL1` at reset in KCore: its RES1 bits, MMU and caches off.
pub const SCTLR_EL1_RESET: u64 = 0x30D0_0800;

/// Whether PSTATE `v` is one a vCPU may be given: AArch64 EL0t, EL1t or
/// EL1h (KVM's `set_core_reg` refuses other modes with `EINVAL`; KCore
/// refuses them too).
pub const fn pstate_mode_ok(v: u64) -> bool {
    v & 0x10 == 0 && matches!(v & 0xF, 0b0000 | 0b0100 | 0b0101)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::BTreeSet;
    use std::vec::Vec;

    #[test]
    fn core_ids_map_to_kcore() {
        assert_eq!(decode(id::core(id::SIZE_U64, 0)), Ok(Reg::Kcore(kr::X0)));
        assert_eq!(
            decode(id::core(id::SIZE_U64, 60)),
            Ok(Reg::Kcore(kr::x(30)))
        );
        assert_eq!(
            decode(id::core(id::SIZE_U64, 62)),
            Ok(Reg::Kcore(kr::SP_EL0))
        );
        assert_eq!(decode(id::core(id::SIZE_U64, 64)), Ok(Reg::Kcore(kr::PC)));
        assert_eq!(
            decode(id::core(id::SIZE_U64, 66)),
            Ok(Reg::Kcore(kr::PSTATE))
        );
        assert_eq!(
            decode(id::core(id::SIZE_U64, 68)),
            Ok(Reg::Kcore(kr::SP_EL1))
        );
        assert_eq!(
            decode(id::core(id::SIZE_U64, 70)),
            Ok(Reg::Kcore(kr::ELR_EL1))
        );
        assert_eq!(
            decode(id::core(id::SIZE_U64, 72)),
            Ok(Reg::Kcore(kr::SPSR_EL1))
        );
        assert_eq!(decode(id::core(id::SIZE_U64, 74)), Ok(Reg::Spsr32));
        assert_eq!(decode(id::core(id::SIZE_U128, 84)), Ok(Reg::V(0)));
        assert_eq!(decode(id::core(id::SIZE_U128, 208)), Ok(Reg::V(31)));
        assert_eq!(decode(id::core(id::SIZE_U32, 212)), Ok(Reg::Fp32(kr::FPSR)));
        assert_eq!(decode(id::core(id::SIZE_U32, 213)), Ok(Reg::Fp32(kr::FPCR)));
    }

    #[test]
    fn bad_ids_get_kvms_errors() {
        // Wrong size, or the middle of a register: EINVAL.
        assert_eq!(decode(id::core(id::SIZE_U32, 0)), Err(EINVAL));
        assert_eq!(decode(id::core(id::SIZE_U64, 1)), Err(EINVAL));
        assert_eq!(decode(id::core(id::SIZE_U64, 84)), Err(EINVAL));
        assert_eq!(decode(id::core(id::SIZE_U128, 86)), Err(EINVAL));
        // Past the structure: ENOENT.
        assert_eq!(decode(id::core(id::SIZE_U64, 216)), Err(ENOENT));
        assert_eq!(decode(id::core(id::SIZE_U128, 213)), Err(ENOENT));
        // Another architecture: EINVAL.
        assert_eq!(decode(0x4030_0000_0010_0000), Err(EINVAL));
        // A system register KCore does not carry: ENOENT.
        assert_eq!(decode(id::sys(3, 0, 0, 0, 1)), Err(ENOENT));
        assert_eq!(decode(id::sys(3, 3, 14, 2, 0)), Err(ENOENT), "CNTP_TVAL");
        assert_eq!(decode(id::PSCI_VERSION + 4), Err(ENOENT));
        assert_eq!(decode(id::feature_bitmap(3)), Err(ENOENT));
    }

    #[test]
    fn timer_ids_keep_kvms_swap() {
        assert_eq!(decode(id::TIMER_CTL), Ok(Reg::Kcore(kr::sys::CNTV_CTL_EL0)));
        assert_eq!(
            decode(id::TIMER_CVAL),
            Ok(Reg::Kcore(kr::sys::CNTV_CVAL_EL0))
        );
        assert_eq!(decode(id::TIMER_CNT), Ok(Reg::TimerCnt));
        assert_eq!(decode(id::PSCI_VERSION), Ok(Reg::PsciVersion));
        // The physical timer's are not swapped, and not listed (KVM 6.1's
        // `KVM_GET_REG_LIST` has only the virtual timer's three).
        assert_eq!(decode(id::PTIMER_CTL), Ok(Reg::PtimerCtl));
        assert_eq!(
            decode(id::PTIMER_CVAL),
            Ok(Reg::Kcore(kr::sys::CNTP_CVAL_EL0))
        );
        assert_eq!(decode(id::PTIMER_CNT), Ok(Reg::PtimerCnt));
        for p in [id::PTIMER_CTL, id::PTIMER_CVAL, id::PTIMER_CNT] {
            assert!((0..COUNT).all(|i| list(i) != p), "{p:#x} listed");
        }
    }

    #[test]
    fn the_list_is_distinct_and_every_entry_decodes() {
        let ids: BTreeSet<u64> = (0..COUNT).map(list).collect();
        assert_eq!(ids.len(), COUNT);
        for i in 0..COUNT {
            assert!(decode(list(i)).is_ok(), "entry {i}: {:#x}", list(i));
        }
        // Every system register KCore carries is reachable.
        for r in [kr::sys::SCTLR_EL1, kr::sys::TPIDRRO_EL0, kr::sys::MPIDR_EL1] {
            assert!(ids.contains(&sys_id(r)));
        }
        // And every identification register KVM 6.1 lists.
        for r in [
            kr::id::MIDR_EL1,
            kr::id::CTR_EL0,
            kr::id::ID_AA64PFR0_EL1,
            id::sys(3, 0, 0, 1, 0) & 0xFFFF,
            id::sys(3, 0, 0, 7, 7) & 0xFFFF,
        ] {
            assert!(ids.contains(&sys_id(kr::SYSREG | r)), "{r:#x}");
        }
        assert_eq!(COUNT, 100 + 6 + 1 + 61 + 71);
    }

    #[test]
    fn firmware_debug_and_aarch32_registers() {
        assert_eq!(decode(id::workaround(1)), Ok(Reg::Workaround));
        assert_eq!(decode(id::workaround(3)), Ok(Reg::Workaround));
        assert_eq!(decode(id::feature_bitmap(2)), Ok(Reg::FeatureBitmap(2)));
        // Breakpoints and watchpoints are KCore's.
        assert_eq!(
            decode(id::sys(2, 0, 0, 0, 4)),
            Ok(Reg::Kcore(kr::sys::debug(0)))
        );
        assert_eq!(
            decode(id::sys(2, 0, 0, 15, 7)),
            Ok(Reg::Kcore(kr::sys::debug(63)))
        );
        for (op0, op1, crn, crm, op2) in [
            (2, 0, 0, 2, 0),
            (2, 4, 0, 7, 0),
            (3, 0, 1, 0, 1),
            (3, 0, 12, 1, 1),
            (3, 4, 3, 0, 0),
            (3, 4, 5, 0, 1),
            (3, 4, 5, 3, 0),
        ] {
            assert_eq!(
                decode(id::sys(op0, op1, crn, crm, op2)),
                Ok(Reg::Zero),
                "{op0} {op1} {crn} {crm} {op2}"
            );
        }
        assert_eq!(
            decode(id::sys(2, 0, 1, 1, 4)),
            Ok(Reg::Kcore(kr::sys::OSLSR_EL1))
        );
        assert_eq!(reset_value(Reg::Kcore(kr::sys::OSLSR_EL1), 0), OSLSR_RESET);
        // MDSCR_EL1 (2,0,0,2,2) is KCore's, not a debug register.
        assert_eq!(
            decode(id::sys(2, 0, 0, 2, 2)),
            Ok(Reg::Kcore(kr::sys::MDSCR_EL1))
        );
        assert_eq!(decode(id::sys(2, 0, 0, 2, 3)), Err(ENOENT));
    }

    #[test]
    fn identification_registers_are_kcores() {
        assert_eq!(
            decode(id::sys(3, 0, 0, 7, 0)),
            Ok(Reg::Id(kr::SYSREG | kr::id::ID_AA64MMFR0_EL1))
        );
        assert_eq!(
            decode(id::sys(3, 0, 0, 0, 0)),
            Ok(Reg::Id(kr::SYSREG | kr::id::MIDR_EL1))
        );
        assert_eq!(
            decode(id::sys(3, 0, 0, 3, 3)),
            Ok(Reg::Id(kr::SYSREG | kr::id::feature_encoding(19)))
        );
        // KVM's user-WI AArch32 registers and its invariant ones.
        let k = |crm, op2| kr::SYSREG | (id::sys(3, 0, 0, crm, op2) & 0xFFFF);
        assert!(
            id_write_ignored(k(1, 0)) && id_write_ignored(k(2, 7)) && id_write_ignored(k(3, 6))
        );
        for (crm, op2) in [(1, 3), (3, 3), (3, 5), (3, 7), (4, 0), (7, 0)] {
            assert!(!id_write_ignored(k(crm, op2)), "CRm {crm} op2 {op2}");
        }
        // MPIDR_EL1 stays the vCPU's own.
        assert_eq!(
            decode(id::sys(3, 0, 0, 0, 5)),
            Ok(Reg::Kcore(kr::sys::MPIDR_EL1))
        );
    }

    #[test]
    fn caches_as_kvms_is_valid_cache() {
        // L1 instruction only, L2 data only, L3 separate, L4 unified, L5
        // none, L6 unified (ignored after L5).
        let clidr = 1 | 2 << 3 | 3 << 6 | 4 << 9 | 4 << 15;
        let valid: Vec<u8> = (0..=255).filter(|&s| csselr_valid(clidr, s)).collect();
        assert_eq!(valid, [1, 2, 4, 5, 6]);
        // Reserved types (5..7) are no cache.
        assert!(!csselr_valid(5, 0) && !csselr_valid(7, 1));
        let ids: Vec<u64> = demux_ids(clidr).collect();
        assert_eq!(ids.len(), 5);
        assert_eq!(ids[0], id::ARM64 | id::SIZE_U32 | id::DEMUX | 1);
        assert_eq!(ccsidr_of(ids[4]), Ok(Some(6)));
        assert_eq!(ccsidr_of(ids[4] | 0x100), Err(ENOENT), "another demux id");
        assert_eq!(ccsidr_of(ids[4] | 0x1000_0000), Err(ENOENT), "unknown bits");
        assert_eq!(ccsidr_of(ids[4] ^ id::SIZE_U32 ^ id::SIZE_U64), Err(ENOENT));
        assert_eq!(ccsidr_of(0x4030_0000_0011_0000), Ok(None), "not arm64");
        assert_eq!(ccsidr_of(id::PSCI_VERSION), Ok(None));
        assert_eq!(decode(ids[4]), Err(ENOENT), "decode's answer: none");
        assert_eq!(demux_ids(0).count(), 0);
    }

    #[test]
    fn pstate_modes() {
        assert!(pstate_mode_ok(PSTATE_RESET));
        assert!(pstate_mode_ok(0x0));
        assert!(pstate_mode_ok(0x4));
        assert!(!pstate_mode_ok(0x10));
        assert!(!pstate_mode_ok(0x9));
    }
}
