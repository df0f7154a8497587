//! The EFI memory map as KCore's RAM banks and reserved ranges, as Linux's
//! `reserve_regions` (`drivers/firmware/efi/efi-init.c`) reads it.
//!
//! Every descriptor that is memory (write-back, write-through or
//! write-combining: Linux's `is_memory`) goes into the banks, sorted and
//! merged, so maps of hundreds of entries become a few banks and KServ's
//! stage 2 maps firmware memory (runtime services, ACPI tables) as normal
//! memory, not device memory. Of those, what is not [`usable`] (Linux's
//! `is_usable_memory`: loader, boot-services, conventional, persistent and
//! ACPI-reclaim memory that can be mapped write-back) is reserved, where
//! Linux marks it `nomap`, and so is ACPI-reclaim memory, which Linux keeps
//! (`memblock_reserve`): it holds the tables KServ reads after KCore has
//! placed its pool. MMIO and uncached descriptors are not memory, nor are
//! MMIO descriptors that say they could be cached (QEMU's EDK2 gives its
//! variable-store flash `EFI_MEMORY_WB` among its capabilities): Linux
//! would add them as `nomap` memory, but to KCore RAM is what it may own,
//! scrub and hand to a VM, and a device's frames never are (KServ's stage
//! 2 maps them as device memory, as every MMIO region).

use alloc::vec::Vec;

use kcore::addr::MemRange;
use kcore_boot::platform::normalize_regions;

use crate::Error;

/// One descriptor of the EFI memory map (`EFI_MEMORY_DESCRIPTOR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemDesc {
    /// `Type` (`EfiConventionalMemory` is 7).
    pub ty: u32,
    /// `PhysicalStart`.
    pub base: u64,
    /// `NumberOfPages` (4 KiB each).
    pub pages: u64,
    /// `Attribute` (`EFI_MEMORY_WB` is bit 3).
    pub attribute: u64,
}

/// EFI memory types (UEFI 2.10, table 7.10).
pub mod efi_type {
    /// `EfiReservedMemoryType`.
    pub const RESERVED: u32 = 0;
    /// `EfiLoaderCode`.
    pub const LOADER_CODE: u32 = 1;
    /// `EfiLoaderData`.
    pub const LOADER_DATA: u32 = 2;
    /// `EfiBootServicesCode`.
    pub const BOOT_SERVICES_CODE: u32 = 3;
    /// `EfiBootServicesData`.
    pub const BOOT_SERVICES_DATA: u32 = 4;
    /// `EfiRuntimeServicesCode`.
    pub const RUNTIME_SERVICES_CODE: u32 = 5;
    /// `EfiRuntimeServicesData`.
    pub const RUNTIME_SERVICES_DATA: u32 = 6;
    /// `EfiConventionalMemory`.
    pub const CONVENTIONAL: u32 = 7;
    /// `EfiUnusableMemory`.
    pub const UNUSABLE: u32 = 8;
    /// `EfiACPIReclaimMemory`.
    pub const ACPI_RECLAIM: u32 = 9;
    /// `EfiACPIMemoryNVS`.
    pub const ACPI_NVS: u32 = 10;
    /// `EfiMemoryMappedIO`.
    pub const MMIO: u32 = 11;
    /// `EfiMemoryMappedIOPortSpace`.
    pub const MMIO_PORT_SPACE: u32 = 12;
    /// `EfiPersistentMemory`.
    pub const PERSISTENT: u32 = 14;
}

/// `EFI_MEMORY_WB`: the region can be mapped write-back cacheable.
pub const EFI_MEMORY_WB: u64 = 1 << 3;
/// `EFI_MEMORY_WC` and `EFI_MEMORY_WT`: write-combining, write-through.
pub const EFI_MEMORY_WC_WT: u64 = (1 << 1) | (1 << 2);

/// Whether a descriptor with `attribute` is memory rather than MMIO
/// (Linux's `is_memory`).
pub fn is_memory(attribute: u64) -> bool {
    attribute & (EFI_MEMORY_WB | EFI_MEMORY_WC_WT) != 0
}

/// Whether a descriptor of type `ty` with `attribute` is RAM the OS may use
/// after `ExitBootServices` (Linux's `is_usable_memory`).
pub fn usable(ty: u32, attribute: u64) -> bool {
    use efi_type::*;
    matches!(
        ty,
        LOADER_CODE
            | LOADER_DATA
            | ACPI_RECLAIM
            | BOOT_SERVICES_CODE
            | BOOT_SERVICES_DATA
            | CONVENTIONAL
            | PERSISTENT
    ) && attribute & EFI_MEMORY_WB != 0
}

/// KCore's view of the map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Banks {
    /// Memory descriptors ([`is_memory`]), sorted and merged.
    pub memory: Vec<MemRange>,
    /// Memory KCore must not take: descriptors that are not [`usable`], and
    /// ACPI reclaim; sorted and merged.
    pub reserved: Vec<MemRange>,
}

/// Sorts and merges the memory descriptors of `map` into banks and
/// reserves what is not usable. Descriptors with no pages are skipped; one
/// that wraps is an error.
pub fn banks(map: &[MemDesc]) -> Result<Banks, Error> {
    let mut out = Banks::default();
    for d in map.iter().filter(|d| d.pages != 0) {
        let range = descriptor_range(d)?;
        if !is_memory(d.attribute) || matches!(d.ty, efi_type::MMIO | efi_type::MMIO_PORT_SPACE) {
            continue;
        }
        out.memory.push(range);
        if !usable(d.ty, d.attribute) || d.ty == efi_type::ACPI_RECLAIM {
            out.reserved.push(range);
        }
    }
    normalize_regions(&mut out.memory);
    normalize_regions(&mut out.reserved);
    Ok(out)
}

/// The ranges of `map` a loader may read tables from: every descriptor that
/// is not MMIO, sorted and merged (ACPI tables live in ACPI-reclaim, ACPI
/// NVS, runtime or reserved memory depending on the firmware). For
/// [`crate::tables::IdentityMem`].
pub fn readable(map: &[MemDesc]) -> Result<Vec<MemRange>, Error> {
    let mut out = Vec::new();
    for d in map.iter().filter(|d| d.pages != 0) {
        if matches!(d.ty, efi_type::MMIO | efi_type::MMIO_PORT_SPACE) {
            continue;
        }
        out.push(descriptor_range(d)?);
    }
    normalize_regions(&mut out);
    Ok(out)
}

/// The range `d` covers; an error if it wraps.
fn descriptor_range(d: &MemDesc) -> Result<MemRange, Error> {
    d.pages
        .checked_mul(4096)
        .and_then(|size| MemRange::new(d.base, size))
        .ok_or(Error::BadMemoryMap {
            base: d.base,
            pages: d.pages,
        })
}
