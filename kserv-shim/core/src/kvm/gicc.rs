//! A GICv2 vGIC's `KVM_DEV_ARM_VGIC_GRP_CPU_REGS`: a vCPU's GIC CPU interface
//! registers (`GICC_*`, by their offset in the CPU interface's frame) as a
//! VMM saves and restores them, with the semantics of Linux 6.1's
//! `vgic-mmio-v2.c` (`vgic_v2_cpu_registers`, `vgic_mmio_{read,write}_vcpuif`,
//! `vgic_mmio_{read,write}_apr` on a GICv2 host).
//!
//! The state is the guest's virtual CPU interface as KCore keeps it: on a
//! GICv2 host KCore's `ICH_VMCR` pseudo register (`kcore_abi::reg`) holds
//! the hardware's `GICH_VMCR` as the world switch saved it, and `ICH_AP1R`
//! `+ 0` its `GICH_APR`. `GICH_VMCR`'s fields sit where `ICH_VMCR_EL2`'s do
//! but for the priority mask, five bits at 31..27 (`VMPriMask`) where
//! `ICH_VMCR_EL2` has eight at 31..24; this module converts, KCore does
//! not.
//!
//! As KVM's device ABI has it, `GICC_PMR` is the five-bit `VMPriMask`
//! (bits 4..0), not the priority byte; `GICC_APR1..3` read as zero and take
//! no write (a GICv2 has 32 active priorities, one register); `GICC_IIDR`
//! is KVM's (`0x4b` product, architecture 2, Arm) and read-only; an offset
//! of no register reads as zero and takes no write, and `KVM_HAS_DEVICE_ATTR`
//! says `ENXIO` for it.

use super::icc::{Write, get, with};

/// A CPU interface register of the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gicc {
    /// `GICC_CTLR` (0x00).
    Ctlr,
    /// `GICC_PMR` (0x04).
    Pmr,
    /// `GICC_BPR` (0x08).
    Bpr,
    /// `GICC_ABPR` (0x1C).
    Abpr,
    /// `GICC_APR<n>` (0xD0 + 4n).
    Apr(u8),
    /// `GICC_IIDR` (0xFC).
    Iidr,
}

/// The register at `offset` of the CPU interface's frame, if the group has
/// one there (aligned 32-bit registers only).
pub const fn decode(offset: u64) -> Option<Gicc> {
    Some(match offset {
        0x00 => Gicc::Ctlr,
        0x04 => Gicc::Pmr,
        0x08 => Gicc::Bpr,
        0x1C => Gicc::Abpr,
        0xD0 | 0xD4 | 0xD8 | 0xDC => Gicc::Apr(((offset - 0xD0) / 4) as u8),
        0xFC => Gicc::Iidr,
        _ => return None,
    })
}

/// `GICH_VMCR` fields (shift, width) where `ICH_VMCR_EL2`'s differ.
mod vmcr {
    pub use super::super::icc::vmcr::{BPR0 as BP, BPR1 as ABP, EOIM};
    /// `VMGrp0En`, `VMGrp1En`, `VMAckCtl`, `VMFIQEn`, `VMCBPR`: the same
    /// bits as `GICC_CTLR`'s `EnableGrp0`, `EnableGrp1`, `AckCtl`, `FIQEn`,
    /// `CBPR` (`VEM`, [`EOIM`], is its `EOImodeNS`, bit 9 in both).
    pub const CTLR_LOW: (u32, u32) = (0, 5);
    /// `VMPriMask`: the top five bits of the priority mask.
    pub const PRIMASK: (u32, u32) = (27, 5);
}

/// `GICC_IIDR` as KVM reports it: `PRODUCT_ID_KVM` (0x4b), architecture
/// version 2, `IMPLEMENTER_ARM` (0x43b).
pub const IIDR: u32 = 0x4B << 20 | 2 << 16 | 0x43B;

/// The value of `r`, given the vCPU's `GICH_VMCR` and `GICH_APR`.
pub fn read(r: Gicc, vmcr_value: u64, apr: u64) -> u32 {
    let v = vmcr_value;
    let value = match r {
        Gicc::Ctlr => get(v, vmcr::CTLR_LOW) | get(v, vmcr::EOIM) << 9,
        Gicc::Pmr => get(v, vmcr::PRIMASK),
        Gicc::Bpr => get(v, vmcr::BP),
        Gicc::Abpr => get(v, vmcr::ABP),
        Gicc::Apr(0) => apr,
        Gicc::Apr(_) => 0,
        Gicc::Iidr => u64::from(IIDR),
    };
    value as u32
}

/// A VMM's write of `value` to `r`.
pub fn write(r: Gicc, vmcr_value: u64, value: u32) -> Write {
    let (v, x) = (vmcr_value, u64::from(value));
    match r {
        Gicc::Ctlr => Write::Vmcr(with(with(v, vmcr::CTLR_LOW, x), vmcr::EOIM, x >> 9)),
        Gicc::Pmr => Write::Vmcr(with(v, vmcr::PRIMASK, x)),
        Gicc::Bpr => Write::Vmcr(with(v, vmcr::BP, x)),
        Gicc::Abpr => Write::Vmcr(with(v, vmcr::ABP, x)),
        Gicc::Apr(0) => Write::Apr(x),
        Gicc::Apr(_) | Gicc::Iidr => Write::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kcore_abi::reg::ICH_VMCR_VALID;

    #[test]
    fn decodes_kvms_table_only() {
        assert_eq!(decode(0), Some(Gicc::Ctlr));
        assert_eq!(decode(0x1C), Some(Gicc::Abpr));
        assert_eq!(decode(0xDC), Some(Gicc::Apr(3)));
        assert_eq!(decode(0xFC), Some(Gicc::Iidr));
        // GICC_IAR, EOIR, RPR, HPPIR, AIAR, NSAPR0, DIR, an unaligned
        // offset: not state.
        for off in [0x0C, 0x10, 0x14, 0x18, 0x20, 0xE0, 0x1000, 0x2, 0xD1] {
            assert_eq!(decode(off), None, "{off:#x}");
        }
    }

    #[test]
    fn fields_round_trip_through_gich_vmcr() {
        let fields = [
            (Gicc::Ctlr, 0x21F),
            (Gicc::Pmr, 0x1F),
            (Gicc::Bpr, 3),
            (Gicc::Abpr, 4),
        ];
        let v = fields.iter().fold(0, |v, &(r, value)| {
            let Write::Vmcr(n) = write(r, v, value) else {
                panic!("{r:?}: not a GICH_VMCR field")
            };
            n
        });
        // Each reads back what was written, though the others followed.
        for (r, value) in fields {
            assert_eq!(read(r, v, 0), value, "{r:?}");
        }
        // GICH_VMCR's layout: VMPriMask at 31..27, VMBP 23..21, VMABP
        // 20..18, VEM 9, the enables 4..0; nothing KCore would refuse.
        assert_eq!(v, 0x1F << 27 | 3 << 21 | 4 << 18 | 1 << 9 | 0x1F);
        assert_eq!(v & !ICH_VMCR_VALID, 0);
        // Only each register's bits: PMR 5 bits, BPR 3, CTLR 6.
        assert_eq!(write(Gicc::Pmr, 0, 0xFF), Write::Vmcr(0x1F << 27));
        assert_eq!(write(Gicc::Bpr, 0, 0xF), Write::Vmcr(7 << 21));
        assert_eq!(
            write(Gicc::Ctlr, 0, 0xFFFF_FFFF),
            Write::Vmcr(0x1F | 1 << 9)
        );
        // The priority mask as KVM's ABI exports it, not as GICC_PMR.
        assert_eq!(read(Gicc::Pmr, 0xF8 << 24, 0), 0x1F);
    }

    #[test]
    fn one_active_priority_register_and_a_fixed_iidr() {
        assert_eq!(read(Gicc::Apr(0), 0, 0x8000_0001), 0x8000_0001);
        assert_eq!(read(Gicc::Apr(1), 0, 0x8000_0001), 0);
        assert_eq!(write(Gicc::Apr(0), 0, 5), Write::Apr(5));
        assert_eq!(write(Gicc::Apr(2), 0, 5), Write::Nothing);
        assert_eq!(read(Gicc::Iidr, 0, 0), 0x04B2_043B);
        assert_eq!(write(Gicc::Iidr, 0, 0), Write::Nothing);
    }
}
