//! The vGIC's `KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS`: a vCPU's GIC CPU interface
//! registers (`ICC_*_EL1`) as a VMM saves and restores them, mapped onto the
//! guest's virtual CPU interface state KCore keeps (`ICH_VMCR_EL2` and the
//! active-priority registers, `kcore_abi::reg::ICH_*`), with the semantics
//! of Linux 6.1's `vgic-sys-reg-v3.c`: the fields a VMM may set, what is
//! read-only (`ICC_CTLR_EL1`'s `PRIbits`, `IDbits`, `SEIS`, `A3V`, from
//! `ICH_VTR_EL2` as KCore reports it), and how many active-priority
//! registers exist.

use super::errno::{EINVAL, Errno};
use kcore_abi::reg::sysreg;

/// A CPU interface register of the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Icc {
    /// `ICC_PMR_EL1`.
    Pmr,
    /// `ICC_BPR0_EL1`.
    Bpr0,
    /// `ICC_BPR1_EL1`.
    Bpr1,
    /// `ICC_AP0R<n>_EL1`.
    Ap0r(u8),
    /// `ICC_AP1R<n>_EL1`.
    Ap1r(u8),
    /// `ICC_CTLR_EL1`.
    Ctlr,
    /// `ICC_SRE_EL1`.
    Sre,
    /// `ICC_IGRPEN0_EL1`.
    Igrpen0,
    /// `ICC_IGRPEN1_EL1`.
    Igrpen1,
}

/// The register a 16-bit system-register encoding names, if it is one of
/// the group's (`KVM_HAS_DEVICE_ATTR` is `ENXIO` otherwise).
pub const fn decode(enc: u64) -> Option<Icc> {
    Some(match enc {
        e if e == sysreg(3, 0, 4, 6, 0) => Icc::Pmr,
        e if e == sysreg(3, 0, 12, 8, 3) => Icc::Bpr0,
        e if e == sysreg(3, 0, 12, 12, 3) => Icc::Bpr1,
        e if e == sysreg(3, 0, 12, 12, 4) => Icc::Ctlr,
        e if e == sysreg(3, 0, 12, 12, 5) => Icc::Sre,
        e if e == sysreg(3, 0, 12, 12, 6) => Icc::Igrpen0,
        e if e == sysreg(3, 0, 12, 12, 7) => Icc::Igrpen1,
        e if e & !3 == sysreg(3, 0, 12, 8, 4) => Icc::Ap0r((e & 3) as u8),
        e if e & !3 == sysreg(3, 0, 12, 9, 0) => Icc::Ap1r((e & 3) as u8),
        _ => return None,
    })
}

/// `ICH_VMCR_EL2` fields (shift, width); `GICH_VMCR` has `ENG0`..`EOIM`,
/// `BPR1` (`VMABP`) and `BPR0` (`VMBP`) at the same places
/// ([`super::gicc`]).
pub(super) mod vmcr {
    pub const ENG0: (u32, u32) = (0, 1);
    pub const ENG1: (u32, u32) = (1, 1);
    pub const CBPR: (u32, u32) = (4, 1);
    pub const EOIM: (u32, u32) = (9, 1);
    pub const BPR1: (u32, u32) = (18, 3);
    pub const BPR0: (u32, u32) = (21, 3);
    pub const PMR: (u32, u32) = (24, 8);
}

/// Field `(shift, width)` of `v` (also [`super::gicc`]'s).
pub(super) const fn get(v: u64, (shift, width): (u32, u32)) -> u64 {
    (v >> shift) & ((1 << width) - 1)
}

/// `v` with field `(shift, width)` set to `x`'s low bits.
pub(super) const fn with(v: u64, (shift, width): (u32, u32), x: u64) -> u64 {
    let mask = ((1 << width) - 1) << shift;
    (v & !mask) | ((x << shift) & mask)
}

/// `ICC_CTLR_EL1`'s fields taken from `ICH_VTR_EL2`: `PRIbits` [10:8] is
/// `ICH_VTR.PRIbits` [31:29], `IDbits` [13:11] is [25:23], `SEIS` [14] is
/// [22], `A3V` [15] is [21].
const fn ctlr_from_vtr(vtr: u64) -> u64 {
    ((vtr >> 29) & 7) << 8
        | ((vtr >> 23) & 7) << 11
        | ((vtr >> 22) & 1) << 14
        | ((vtr >> 21) & 1) << 15
}

/// The read-only fields of `ICC_CTLR_EL1`.
const CTLR_READ_ONLY: u64 = 7 << 8 | 7 << 11 | 1 << 14 | 1 << 15;

/// The active-priority registers that exist: one with 5 priority bits,
/// two with 6, four with 7 (`vgic_v3_max_apr_idx`).
pub const fn aprs(vtr: u64) -> u8 {
    match (vtr >> 29) & 7 {
        6 => 4,
        5 => 2,
        _ => 1,
    }
}

/// `ICC_SRE_EL1` as a guest of a GICv3 has it: `SRE`, `DFB`, `DIB`.
const SRE: u64 = 7;

/// The value of `r`, given the vCPU's `ICH_VMCR_EL2`, its active-priority
/// register `apr` (when `r` is one; 0 otherwise) and `ICH_VTR_EL2`.
pub fn read(r: Icc, vmcr_value: u64, apr: u64, vtr: u64) -> Result<u64, Errno> {
    let v = vmcr_value;
    Ok(match r {
        Icc::Pmr => get(v, vmcr::PMR),
        Icc::Bpr0 => get(v, vmcr::BPR0),
        Icc::Bpr1 if get(v, vmcr::CBPR) == 0 => get(v, vmcr::BPR1),
        Icc::Bpr1 => (get(v, vmcr::BPR0) + 1).min(7),
        Icc::Ap0r(n) | Icc::Ap1r(n) if n < aprs(vtr) => apr,
        Icc::Ap0r(_) | Icc::Ap1r(_) => return Err(EINVAL),
        Icc::Ctlr => ctlr_from_vtr(vtr) | get(v, vmcr::CBPR) | get(v, vmcr::EOIM) << 1,
        Icc::Sre => SRE,
        Icc::Igrpen0 => get(v, vmcr::ENG0),
        Icc::Igrpen1 => get(v, vmcr::ENG1),
    })
}

/// What a write of `value` to `r` changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// KCore's `ICH_VMCR` becomes this (`ICH_VMCR_EL2`; [`super::gicc`]:
    /// `GICH_VMCR`).
    Vmcr(u64),
    /// The active-priority register becomes this.
    Apr(u64),
    /// Nothing (a value that only repeats what is fixed).
    Nothing,
}

/// A VMM's write of `value` to `r` (`set_gic_*` of `vgic-sys-reg-v3.c`):
/// `ICC_CTLR_EL1`'s read-only fields may not promise more than the CPU
/// interface has, nor another `SEIS` or `A3V` (`EINVAL`); `ICC_SRE_EL1`
/// must keep `SRE` (`EINVAL`); `ICC_BPR1_EL1` is ignored while `CBPR` is
/// set; an active-priority register that does not exist is `EINVAL`.
pub fn write(r: Icc, vmcr_value: u64, value: u64, vtr: u64) -> Result<Write, Errno> {
    let v = vmcr_value;
    Ok(match r {
        Icc::Pmr => Write::Vmcr(with(v, vmcr::PMR, value & 0xFF)),
        Icc::Bpr0 => Write::Vmcr(with(v, vmcr::BPR0, value & 7)),
        Icc::Bpr1 if get(v, vmcr::CBPR) == 0 => Write::Vmcr(with(v, vmcr::BPR1, value & 7)),
        Icc::Bpr1 => Write::Nothing,
        Icc::Ap0r(n) | Icc::Ap1r(n) if n < aprs(vtr) => Write::Apr(value & 0xFFFF_FFFF),
        Icc::Ap0r(_) | Icc::Ap1r(_) => return Err(EINVAL),
        Icc::Ctlr => {
            let ours = ctlr_from_vtr(vtr);
            let value_ro = value & CTLR_READ_ONLY;
            let field = |x: u64, shift: u32| (x >> shift) & 7;
            let more_priority = field(value_ro, 8) > field(ours, 8);
            let more_ids = field(value_ro, 11) > field(ours, 11);
            let other_flags = (value_ro ^ ours) & (1 << 14 | 1 << 15) != 0;
            if more_priority || more_ids || other_flags {
                return Err(EINVAL);
            }
            let v = with(v, vmcr::CBPR, value & 1);
            Write::Vmcr(with(v, vmcr::EOIM, (value >> 1) & 1))
        }
        Icc::Sre if value & 1 == 0 => return Err(EINVAL),
        Icc::Sre => Write::Nothing,
        Icc::Igrpen0 => Write::Vmcr(with(v, vmcr::ENG0, value & 1)),
        Icc::Igrpen1 => Write::Vmcr(with(v, vmcr::ENG1, value & 1)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU's GICv3 CPU interface: 5 priority bits, 16-bit ids, A3V.
    const VTR: u64 = 4 << 29 | 4 << 26 | 1 << 21 | 3;

    #[test]
    fn decodes_the_groups_registers_only() {
        assert_eq!(decode(sysreg(3, 0, 4, 6, 0)), Some(Icc::Pmr));
        assert_eq!(decode(sysreg(3, 0, 12, 8, 6)), Some(Icc::Ap0r(2)));
        assert_eq!(decode(sysreg(3, 0, 12, 9, 3)), Some(Icc::Ap1r(3)));
        assert_eq!(decode(sysreg(3, 0, 12, 12, 4)), Some(Icc::Ctlr));
        assert_eq!(
            decode(sysreg(3, 0, 12, 11, 5)),
            None,
            "ICC_SGI1R is not state"
        );
        assert_eq!(decode(sysreg(3, 0, 12, 12, 0)), None, "ICC_IAR1");
    }

    #[test]
    fn fields_round_trip_through_the_vmcr() {
        let mut v = 0;
        for (r, value) in [
            (Icc::Pmr, 0xF0),
            (Icc::Bpr0, 2),
            (Icc::Bpr1, 3),
            (Icc::Igrpen0, 1),
            (Icc::Igrpen1, 1),
        ] {
            match write(r, v, value, VTR) {
                Ok(Write::Vmcr(n)) => v = n,
                other => panic!("{r:?}: {other:?}"),
            }
            assert_eq!(read(r, v, 0, VTR), Ok(value), "{r:?}");
        }
        assert_eq!(v, 0xF0 << 24 | 2 << 21 | 3 << 18 | 1 << 1 | 1);
        assert_eq!(v & !kcore_abi::reg::ICH_VMCR_VALID, 0);
    }

    #[test]
    fn ctlr_keeps_what_the_cpu_interface_has() {
        let ctlr = read(Icc::Ctlr, 1 << 9, 0, VTR).unwrap_or(0);
        assert_eq!(ctlr, 4 << 8 | 1 << 15 | 1 << 1, "PRIbits, A3V, EOImode");
        assert_eq!(ctlr & CTLR_READ_ONLY, 4 << 8 | 1 << 15);
        // CBPR on, EOImode off: BPR1 then follows BPR0 and takes no write.
        let Ok(Write::Vmcr(v)) = write(Icc::Ctlr, 1 << 9 | 5 << 21, ctlr & !2 | 1, VTR) else {
            panic!("CTLR write refused");
        };
        assert_eq!(v & (1 << 9 | 1 << 4), 1 << 4);
        assert_eq!(read(Icc::Bpr1, v, 0, VTR), Ok(6));
        assert_eq!(write(Icc::Bpr1, v, 1, VTR), Ok(Write::Nothing));
        // More priority bits, other SEIS or A3V: refused; fewer: taken.
        assert_eq!(write(Icc::Ctlr, 0, 5 << 8 | 1 << 15, VTR), Err(EINVAL));
        assert_eq!(write(Icc::Ctlr, 0, 4 << 8, VTR), Err(EINVAL));
        assert_eq!(
            write(Icc::Ctlr, 0, 4 << 8 | 1 << 15 | 1 << 14, VTR),
            Err(EINVAL)
        );
        assert!(write(Icc::Ctlr, 0, 3 << 8 | 1 << 15, VTR).is_ok());
    }

    #[test]
    fn active_priority_registers_and_sre() {
        assert_eq!(aprs(VTR), 1);
        assert_eq!(aprs(6 << 29), 4);
        assert_eq!(read(Icc::Ap1r(0), 0, 0x8000_0001, VTR), Ok(0x8000_0001));
        assert_eq!(read(Icc::Ap0r(1), 0, 0, VTR), Err(EINVAL));
        assert_eq!(write(Icc::Ap1r(0), 0, 1 << 40 | 5, VTR), Ok(Write::Apr(5)));
        assert_eq!(write(Icc::Ap1r(1), 0, 5, VTR), Err(EINVAL));
        assert_eq!(read(Icc::Sre, 0, 0, VTR), Ok(7));
        assert_eq!(write(Icc::Sre, 0, 0, VTR), Err(EINVAL));
        assert_eq!(write(Icc::Sre, 0, 7, VTR), Ok(Write::Nothing));
    }
}
