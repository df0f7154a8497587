//! The guest's physical memory map and where the boot files go in RAM.
//!
//! The MMIO part follows QEMU's `virt` board, so the guest kernel meets
//! familiar addresses; RAM starts at 1 GiB, as on `virt` (and as KCore's test
//! guest expects):
//!
//! ```text
//! 0x0800_0000  GICv3 distributor             64 KiB (GICv2: 4 KiB)
//! 0x0801_0000  GICv2 CPU interface           8 KiB (a GICv2 host's VMs only)
//! 0x080a_0000  GICv3 redistributors          128 KiB per vCPU (up to 123)
//! 0x0900_0000  PL011 UART                    4 KiB, SPI 1 (INTID 33)
//! 0x0901_0000  PL031 RTC                     4 KiB, SPI 2 (INTID 34)
//! 0x0a00_0000  virtio-mmio device i          0x200 each at +i*0x200, SPI 16+i
//! 0x4000_0000  RAM                           --mem MiB
//! ```
//!
//! In RAM (arm64 boot protocol, Linux `Documentation/arm64/booting.rst`): the
//! kernel `Image` at `text_offset` above the 2 MiB aligned start of RAM, the
//! device tree in the last 2 MiB block of RAM (8-byte aligned, at most 2 MiB,
//! alone in its 2 MiB block), the initrd page-aligned just below it. Every
//! placement is checked not to overlap the kernel's `image_size` (which
//! includes its bss) and to fit in RAM.

use std::fmt;

/// A guest physical address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gpa(pub u64);

impl fmt::Display for Gpa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// 1 MiB.
pub const MIB: u64 = 1 << 20;
/// 2 MiB: the arm64 kernel's base alignment and the DTB's limit.
pub const SZ_2M: u64 = 2 * MIB;
/// A page.
pub const PAGE: u64 = 4096;

/// GICv3 distributor.
pub const GIC_DIST_BASE: Gpa = Gpa(0x0800_0000);
/// Its size.
pub const GIC_DIST_SIZE: u64 = 0x1_0000;
/// The first GICv3 redistributor (RD_base + SGI_base frames, 128 KiB per vCPU).
pub const GIC_REDIST_BASE: Gpa = Gpa(0x080a_0000);
/// One redistributor's size.
pub const GIC_REDIST_SIZE_PER_CPU: u64 = 0x2_0000;
/// End of the redistributor window (where the UART starts).
const GIC_REDIST_LIMIT: u64 = 0x0900_0000;
/// The most vCPUs whose redistributors fit below the UART.
pub const MAX_VCPUS: u32 =
    ((GIC_REDIST_LIMIT - GIC_REDIST_BASE.0) / GIC_REDIST_SIZE_PER_CPU) as u32;

/// A GICv2's distributor is at [`GIC_DIST_BASE`] too, 4 KiB.
pub const GICV2_DIST_SIZE: u64 = 0x1000;
/// A GICv2's CPU interface, where KCore maps the hardware's virtual one
/// (QEMU `virt`'s GICC address).
pub const GIC_CPU_BASE: Gpa = Gpa(0x0801_0000);
/// Its size (`KVM_VGIC_V2_CPU_SIZE`).
pub const GIC_CPU_SIZE: u64 = 0x2000;
/// Most vCPUs a GICv2 names.
pub const GICV2_MAX_VCPUS: u32 = 8;

/// PL011 UART.
pub const UART_BASE: Gpa = Gpa(0x0900_0000);
/// PL031 RTC.
pub const RTC_BASE: Gpa = Gpa(0x0901_0000);
/// Size of each PrimeCell's register window.
pub const PRIMECELL_SIZE: u64 = 0x1000;
/// The first virtio-mmio device.
pub const VIRTIO_BASE: Gpa = Gpa(0x0a00_0000);
/// Register window of one virtio-mmio device.
pub const VIRTIO_SIZE: u64 = 0x200;
/// At most this many virtio-mmio devices.
pub const MAX_VIRTIO: u32 = 32;

/// Start of RAM.
pub const RAM_BASE: Gpa = Gpa(0x4000_0000);

/// A shared peripheral interrupt, by SPI number (INTID 32 + n).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Spi(pub u32);

impl Spi {
    /// The GIC interrupt id.
    pub const fn intid(self) -> u32 {
        32 + self.0
    }
}

/// The UART's interrupt.
pub const UART_SPI: Spi = Spi(1);
/// The RTC's interrupt.
pub const RTC_SPI: Spi = Spi(2);
/// The interrupt of virtio-mmio device `i`.
pub const fn virtio_spi(i: u32) -> Spi {
    Spi(16 + i)
}
/// The window of virtio-mmio device `i`.
pub const fn virtio_base(i: u32) -> Gpa {
    Gpa(VIRTIO_BASE.0 + i as u64 * VIRTIO_SIZE)
}

/// Interrupts the vGIC implements (`KVM_DEV_ARM_VGIC_GRP_NR_IRQS`): the 32
/// private ones and 96 SPIs, enough for every device above.
pub const NR_IRQS: u32 = 128;
const _: () = assert!(virtio_spi(MAX_VIRTIO - 1).intid() < NR_IRQS);
const _: () = assert!(NR_IRQS.is_multiple_of(32));
// The windows do not overlap each other or RAM.
const _: () = assert!(GIC_DIST_BASE.0 + GIC_DIST_SIZE <= GIC_REDIST_BASE.0);
const _: () = assert!(GIC_REDIST_BASE.0 + redist_size(MAX_VCPUS) <= UART_BASE.0);
const _: () = assert!(UART_BASE.0 + PRIMECELL_SIZE <= RTC_BASE.0);
const _: () = assert!(RTC_BASE.0 + PRIMECELL_SIZE <= VIRTIO_BASE.0);
const _: () = assert!(virtio_base(MAX_VIRTIO).0 <= RAM_BASE.0);

/// Largest device tree the boot protocol allows.
pub const DTB_MAX: u64 = SZ_2M;

/// Guest RAM sizes accepted, in MiB.
pub const MEM_MIB_RANGE: std::ops::RangeInclusive<u64> = 32..=(256 * 1024);

/// The redistributor region for `vcpus` vCPUs.
pub const fn redist_size(vcpus: u32) -> u64 {
    vcpus as u64 * GIC_REDIST_SIZE_PER_CPU
}

/// Bits of IPA space the guest needs: enough for the end of RAM, at least
/// KVM's minimum of 32.
pub fn ipa_bits_needed(mem_bytes: u64) -> u32 {
    let end = RAM_BASE.0.saturating_add(mem_bytes);
    let bits = 64 - (end - 1).leading_zeros();
    bits.max(crate::kvm_abi::KVM_MIN_IPA_BITS)
}

/// The MPIDR affinity KVM gives vCPU `index` (Aff0 = index[3:0], Aff1 =
/// index[11:4]: KVM's `reset_mpidr`), which is also its `reg` in the device
/// tree and its target for PSCI `CPU_ON`.
pub const fn mpidr(index: u32) -> u64 {
    ((index as u64 >> 4) & 0xff) << 8 | (index as u64 & 0xf)
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    v.checked_add(a - 1).map(|v| v & !(a - 1))
}

fn align_down(v: u64, a: u64) -> u64 {
    v & !(a - 1)
}

/// Where the boot files go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootLayout {
    /// RAM: start and size.
    pub ram: (Gpa, u64),
    /// The 2 MiB aligned base the kernel is loaded relative to.
    pub kernel_base: Gpa,
    /// The kernel's first byte and entry point (`kernel_base + text_offset`).
    pub kernel_entry: Gpa,
    /// End of the kernel's footprint (`entry + image_size`).
    pub kernel_end: Gpa,
    /// The initrd's first byte and its length, if there is one.
    pub initrd: Option<(Gpa, u64)>,
    /// The device tree's address; `DTB_MAX` bytes are reserved there.
    pub dtb: Gpa,
}

/// Why the boot files do not fit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The RAM size is outside [`MEM_MIB_RANGE`].
    RamSize(u64),
    /// The kernel and the device tree do not fit together.
    KernelTooLarge {
        /// Bytes the kernel occupies from RAM's start.
        needs: u64,
        /// RAM.
        ram: u64,
    },
    /// The initrd does not fit between the kernel and the device tree.
    InitrdTooLarge {
        /// Its length.
        len: u64,
        /// The room there is.
        room: u64,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::RamSize(b) => write!(
                f,
                "{} MiB of guest RAM is outside {}..={} MiB",
                b / MIB,
                MEM_MIB_RANGE.start(),
                MEM_MIB_RANGE.end()
            ),
            LayoutError::KernelTooLarge { needs, ram } => write!(
                f,
                "the kernel needs {} MiB (image_size and text_offset) plus 2 MiB for the device \
                 tree, more than the guest's {} MiB of RAM",
                needs.div_ceil(MIB),
                ram / MIB
            ),
            LayoutError::InitrdTooLarge { len, room } => write!(
                f,
                "the initrd ({len} bytes) does not fit between the kernel and the device tree \
                 ({room} bytes free): give the guest more --mem"
            ),
        }
    }
}

impl std::error::Error for LayoutError {}

impl BootLayout {
    /// Places a kernel with `text_offset` and `image_size` (from its header)
    /// and an initrd of `initrd_len` bytes in `mem_bytes` of RAM.
    pub fn new(
        mem_bytes: u64,
        text_offset: u64,
        image_size: u64,
        initrd_len: Option<u64>,
    ) -> Result<Self, LayoutError> {
        if !MEM_MIB_RANGE.contains(&(mem_bytes / MIB)) || !mem_bytes.is_multiple_of(MIB) {
            return Err(LayoutError::RamSize(mem_bytes));
        }
        let ram_end = RAM_BASE.0 + mem_bytes;
        let kernel_base = RAM_BASE.0; // 2 MiB aligned
        let needs = text_offset
            .checked_add(image_size)
            .and_then(|n| align_up(n, PAGE))
            .unwrap_or(u64::MAX);
        let too_large = LayoutError::KernelTooLarge {
            needs,
            ram: mem_bytes,
        };
        let kernel_end = kernel_base.checked_add(needs).ok_or(too_large.clone())?;
        let dtb = align_down(ram_end - DTB_MAX, SZ_2M);
        if kernel_end > dtb {
            return Err(too_large);
        }
        let initrd = match initrd_len {
            None => None,
            Some(len) => {
                let room = dtb - kernel_end;
                if len > room {
                    return Err(LayoutError::InitrdTooLarge { len, room });
                }
                let at = align_down(dtb - len, PAGE);
                if at < kernel_end {
                    return Err(LayoutError::InitrdTooLarge { len, room });
                }
                Some((Gpa(at), len))
            }
        };
        Ok(BootLayout {
            ram: (RAM_BASE, mem_bytes),
            kernel_base: Gpa(kernel_base),
            kernel_entry: Gpa(kernel_base + text_offset),
            kernel_end: Gpa(kernel_end),
            initrd,
            dtb: Gpa(dtb),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's 6.1 arm64 Image: text_offset 0, image_size 0x2010000.
    const DEBIAN_IMAGE_SIZE: u64 = 0x0201_0000;

    #[test]
    fn debian_kernel_in_128_mib() {
        let l = BootLayout::new(128 * MIB, 0, DEBIAN_IMAGE_SIZE, Some(1_900_000)).unwrap();
        assert_eq!(l.kernel_base, RAM_BASE);
        assert_eq!(l.kernel_entry, RAM_BASE);
        assert_eq!(l.kernel_end, Gpa(RAM_BASE.0 + DEBIAN_IMAGE_SIZE));
        // The DTB is alone in the last 2 MiB block, 8-byte aligned.
        assert_eq!(l.dtb, Gpa(RAM_BASE.0 + 126 * MIB));
        assert_eq!(l.dtb.0 % 8, 0);
        let (initrd, len) = l.initrd.unwrap();
        assert_eq!(initrd.0 % PAGE, 0);
        assert!(initrd.0 >= l.kernel_end.0);
        assert!(initrd.0 + len <= l.dtb.0);
        assert!(l.dtb.0 + DTB_MAX <= RAM_BASE.0 + 128 * MIB);
    }

    #[test]
    fn text_offset_moves_the_entry_not_the_base() {
        let l = BootLayout::new(64 * MIB, 0x8_0000, 0x100_0000, None).unwrap();
        assert_eq!(l.kernel_base, RAM_BASE);
        assert_eq!(l.kernel_entry, Gpa(RAM_BASE.0 + 0x8_0000));
        assert_eq!(l.kernel_end, Gpa(RAM_BASE.0 + 0x108_0000));
        assert_eq!(l.initrd, None);
    }

    #[test]
    fn what_does_not_fit_is_refused() {
        assert!(matches!(
            BootLayout::new(32 * MIB, 0, DEBIAN_IMAGE_SIZE, None),
            Err(LayoutError::KernelTooLarge { .. })
        ));
        assert!(matches!(
            BootLayout::new(64 * MIB, 0, DEBIAN_IMAGE_SIZE, Some(40 * MIB)),
            Err(LayoutError::InitrdTooLarge { .. })
        ));
        // Exactly the room there is fits.
        let room = 62 * MIB - DEBIAN_IMAGE_SIZE;
        assert!(BootLayout::new(64 * MIB, 0, DEBIAN_IMAGE_SIZE, Some(room)).is_ok());
        assert!(BootLayout::new(64 * MIB, 0, DEBIAN_IMAGE_SIZE, Some(room + 1)).is_err());
        assert_eq!(
            BootLayout::new(16 * MIB, 0, 0, None),
            Err(LayoutError::RamSize(16 * MIB))
        );
        assert!(BootLayout::new(64 * MIB + 1, 0, 0, None).is_err());
        assert!(BootLayout::new(64 * MIB, u64::MAX, u64::MAX, None).is_err());
    }

    #[test]
    fn ipa_bits() {
        assert_eq!(ipa_bits_needed(128 * MIB), 32);
        assert_eq!(ipa_bits_needed(3 * 1024 * MIB), 32);
        assert_eq!(ipa_bits_needed(3 * 1024 * MIB + MIB), 33);
        assert_eq!(ipa_bits_needed(256 * 1024 * MIB), 39);
    }

    #[test]
    fn mpidrs_as_kvm_assigns_them() {
        assert_eq!(mpidr(0), 0);
        assert_eq!(mpidr(15), 15);
        assert_eq!(mpidr(16), 0x100);
        assert_eq!(mpidr(17), 0x101);
    }

    #[test]
    fn mmio_map() {
        assert_eq!(MAX_VCPUS, 123);
        assert_eq!(UART_SPI.intid(), 33);
        assert_eq!(virtio_spi(0).intid(), 48);
    }
}
