//! What `kcore.efi` hands on in ACPI mode besides KCore's tree: the EFI
//! memory map KServ receives (runtime descriptors mapped 1:1 for
//! `SetVirtualAddressMap`, [`map_runtime_1to1`]) and the `/chosen`
//! properties that point KCore and KServ at it and at the system table
//! ([`chosen`]), as Linux's EFI stub writes them
//! (`drivers/firmware/efi/libstub/fdt.c`, read by `fdtparams.c`).

use alloc::vec::Vec;

use kcore_boot::platform::{ACPI_MARKER, MMAP_CAPACITY_PROP};

/// `EFI_MEMORY_RUNTIME`: the region is used by runtime services.
pub const EFI_MEMORY_RUNTIME: u64 = 1 << 63;

/// Where the memory map for KServ is and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapInfo {
    /// Its buffer's physical address.
    pub start: u64,
    /// Bytes of descriptors.
    pub size: u32,
    /// The stride of the descriptors.
    pub desc_size: u32,
    /// `EFI_MEMORY_DESCRIPTOR_VERSION` of the firmware.
    pub desc_ver: u32,
    /// The buffer's bytes (room for KCore's splits included).
    pub capacity: u32,
}

/// Linux's `efi_secureboot_mode` for `linux,uefi-secure-boot`, which its
/// `fdtparams.c` requires beside the map: from the `SecureBoot` variable
/// (`Some(1)` on, `Some(0)` off), unknown when it cannot be read.
pub fn secure_boot_mode(secure_boot: Option<u8>) -> u32 {
    match secure_boot {
        Some(0) => 2,
        Some(1) => 3,
        _ => 1,
    }
}

/// Sets `VirtualStart = PhysicalStart` in every runtime descriptor of the
/// map `buf` (descriptors `desc_size` apart; a partial one at the end is
/// ignored), the 1:1 map `SetVirtualAddressMap` receives and KServ's kernel
/// then finds in its map (as Xen's `efi_set_virtual_address_map`); returns
/// how many descriptors are runtime ones.
pub fn map_runtime_1to1(buf: &mut [u8], desc_size: usize) -> usize {
    if desc_size < 40 {
        return 0;
    }
    let read = |d: &[u8], at: usize| {
        d.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    let mut runtime = 0;
    for d in buf.chunks_exact_mut(desc_size) {
        if read(d, 32) & EFI_MEMORY_RUNTIME != 0 {
            let phys = read(d, 8);
            d[16..24].copy_from_slice(&phys.to_le_bytes());
            runtime += 1;
        }
    }
    runtime
}

/// The `/chosen` properties of KCore's tree in ACPI mode: [`uefi_chosen`]
/// and the ACPI marker.
pub fn chosen(system_table: u64, map: &MapInfo, secure_boot: u32) -> Vec<(&'static str, Vec<u8>)> {
    let mut props = uefi_chosen(system_table, map, secure_boot);
    props.push((ACPI_MARKER, Vec::new()));
    props
}

/// The `/chosen` properties of KCore's tree that hand UEFI on, in either
/// mode: the system table and memory map for KServ (`linux,uefi-*`, which
/// KCore copies into KServ's tree) and the map buffer's capacity (KCore's
/// own).
pub fn uefi_chosen(
    system_table: u64,
    map: &MapInfo,
    secure_boot: u32,
) -> Vec<(&'static str, Vec<u8>)> {
    alloc::vec![
        (
            "linux,uefi-system-table",
            system_table.to_be_bytes().to_vec()
        ),
        ("linux,uefi-mmap-start", map.start.to_be_bytes().to_vec()),
        ("linux,uefi-mmap-size", map.size.to_be_bytes().to_vec()),
        (
            "linux,uefi-mmap-desc-size",
            map.desc_size.to_be_bytes().to_vec()
        ),
        (
            "linux,uefi-mmap-desc-ver",
            map.desc_ver.to_be_bytes().to_vec()
        ),
        ("linux,uefi-secure-boot", secure_boot.to_be_bytes().to_vec()),
        (MMAP_CAPACITY_PROP, map.capacity.to_be_bytes().to_vec()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_descriptors_map_1to1_and_nothing_else_changes() {
        let stride = 48;
        let mut buf = vec![0u8; 3 * stride + 8];
        let descs = [
            (5u32, 0x5bfe_0000u64, EFI_MEMORY_RUNTIME | 8),
            (7, 0x4000_0000, 8),
            (6, 0x5c00_0000, EFI_MEMORY_RUNTIME | 8),
        ];
        for (k, (ty, base, attr)) in descs.iter().enumerate() {
            let d = &mut buf[k * stride..];
            d[0..4].copy_from_slice(&ty.to_le_bytes());
            d[8..16].copy_from_slice(&base.to_le_bytes());
            d[24..32].copy_from_slice(&16u64.to_le_bytes());
            d[32..40].copy_from_slice(&attr.to_le_bytes());
        }
        let before = buf.clone();
        assert_eq!(map_runtime_1to1(&mut buf, stride), 2);
        let virt = |b: &[u8], k: usize| {
            u64::from_le_bytes(b[k * stride + 16..k * stride + 24].try_into().unwrap())
        };
        assert_eq!(
            [virt(&buf, 0), virt(&buf, 1), virt(&buf, 2)],
            [0x5bfe_0000, 0, 0x5c00_0000]
        );
        for (k, (a, b)) in before.iter().zip(&buf).enumerate() {
            if !matches!(k % stride, 16..24) {
                assert_eq!(a, b, "byte {k}");
            }
        }
        assert_eq!(map_runtime_1to1(&mut buf, 39), 0);
    }

    #[test]
    fn chosen_properties_as_linux_reads_them() {
        let map = MapInfo {
            start: 0x5a00_0000,
            size: 480,
            desc_size: 48,
            desc_ver: 1,
            capacity: 960,
        };
        let props = chosen(0x5bfe_0018, &map, secure_boot_mode(Some(0)));
        let get = |n: &str| props.iter().find(|p| p.0 == n).unwrap().1.clone();
        // fdtparams.c: the system table and map start are 64-bit, the rest
        // 32-bit, big-endian.
        assert_eq!(get("linux,uefi-system-table"), 0x5bfe_0018u64.to_be_bytes());
        assert_eq!(get("linux,uefi-mmap-start"), 0x5a00_0000u64.to_be_bytes());
        assert_eq!(get("linux,uefi-mmap-size"), 480u32.to_be_bytes());
        assert_eq!(get("linux,uefi-mmap-desc-size"), 48u32.to_be_bytes());
        assert_eq!(get("linux,uefi-mmap-desc-ver"), 1u32.to_be_bytes());
        // efi_secureboot_mode: disabled, enabled, unknown.
        assert_eq!(get("linux,uefi-secure-boot"), 2u32.to_be_bytes());
        assert_eq!(
            [
                secure_boot_mode(Some(1)),
                secure_boot_mode(None),
                secure_boot_mode(Some(7))
            ],
            [3, 1, 1]
        );
        assert_eq!(get(MMAP_CAPACITY_PROP), 960u32.to_be_bytes());
        assert!(get(ACPI_MARKER).is_empty());
        // Device-tree mode: the same hand-off without the ACPI marker.
        let dt_mode = uefi_chosen(0x5bfe_0018, &map, secure_boot_mode(Some(0)));
        assert_eq!(dt_mode[..], props[..props.len() - 1]);
        assert!(dt_mode.iter().all(|p| p.0 != ACPI_MARKER));
    }
}
