//! The EFI memory map → RAM banks.
//!
//! After `ExitBootServices`, the memory the firmware lent to boot-time code
//! is free again; what remains the firmware's (runtime services code and
//! data, ACPI tables and NVS, reserved and unusable memory, MMIO, persistent
//! memory) must never become KCore's pool or KServ's RAM. `kcore.efi`
//! therefore describes to KCore only the usable memory, as Linux counts it
//! (`is_usable_memory` in `drivers/firmware/efi/efi-init.c`): loader code
//! and data, boot-services code and data, and conventional memory, each
//! only when it can be mapped write-back. Everything else becomes a hole
//! between banks: KCore places its pool inside a bank
//! (`boot/src/pool.rs`), and KServ, told of no other RAM, never maps it.
//! The memory holding `kcore.img` is loader data, so it lies inside a bank,
//! as KCore expects (it reserves its own image and pool from KServ).

/// EFI memory types (UEFI 2.10, table 7.10) that become usable RAM once
/// boot services have exited.
pub const USABLE_TYPES: [u32; 5] = [
    1, // EfiLoaderCode
    2, // EfiLoaderData
    3, // EfiBootServicesCode
    4, // EfiBootServicesData
    7, // EfiConventionalMemory
];

/// `EFI_MEMORY_WB`: the region supports write-back caching.
pub const ATTR_WB: u64 = 0x8;

/// The UEFI page size.
pub const EFI_PAGE: u64 = 4096;

/// One descriptor of the EFI memory map, as far as banks are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// The EFI memory type.
    pub ty: u32,
    /// Physical start address.
    pub base: u64,
    /// Length in 4 KiB pages.
    pub pages: u64,
    /// The attribute bits (`EFI_MEMORY_*`).
    pub attr: u64,
}

impl From<Descriptor> for kcore_acpi::MemDesc {
    fn from(d: Descriptor) -> Self {
        kcore_acpi::MemDesc {
            ty: d.ty,
            base: d.base,
            pages: d.pages,
            attribute: d.attr,
        }
    }
}

impl Descriptor {
    /// Whether KCore and KServ may use this memory once boot services are
    /// gone.
    pub fn is_usable(&self) -> bool {
        USABLE_TYPES.contains(&self.ty) && self.attr & ATTR_WB != 0
    }
}

/// A range of RAM, `[base, end)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bank {
    /// First byte.
    pub base: u64,
    /// One past the last byte.
    pub end: u64,
}

impl Bank {
    /// Bytes in the bank.
    pub fn size(&self) -> u64 {
        self.end.saturating_sub(self.base)
    }
}

/// Why the memory map could not be turned into banks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// A descriptor's range wraps around the address space.
    Wraps(Descriptor),
    /// More separate banks than the buffer holds.
    TooManyBanks(usize),
    /// No usable memory at all.
    NoRam,
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MapError::Wraps(d) => write!(
                f,
                "memory map entry at {:#x} ({} pages) wraps around",
                d.base, d.pages
            ),
            MapError::TooManyBanks(n) => write!(f, "the memory map has more than {n} RAM banks"),
            MapError::NoRam => f.write_str("the memory map has no usable RAM"),
        }
    }
}

/// Writes the usable RAM of `descs` into `out` as banks sorted by address,
/// touching or overlapping ranges merged; returns how many it wrote.
pub fn banks(
    descs: impl IntoIterator<Item = Descriptor>,
    out: &mut [Bank],
) -> Result<usize, MapError> {
    let mut n = 0;
    for d in descs.into_iter().filter(Descriptor::is_usable) {
        let end = d
            .pages
            .checked_mul(EFI_PAGE)
            .and_then(|len| d.base.checked_add(len))
            .ok_or(MapError::Wraps(d))?;
        if end == d.base {
            continue;
        }
        let mut bank = Bank { base: d.base, end };
        // Absorb every bank this one touches.
        let mut i = 0;
        while i < n {
            if out[i].base <= bank.end && bank.base <= out[i].end {
                bank.base = bank.base.min(out[i].base);
                bank.end = bank.end.max(out[i].end);
                out.copy_within(i + 1..n, i);
                n -= 1;
            } else {
                i += 1;
            }
        }
        if n == out.len() {
            return Err(MapError::TooManyBanks(out.len()));
        }
        let at = out[..n]
            .iter()
            .position(|b| b.base > bank.base)
            .unwrap_or(n);
        out.copy_within(at..n, at + 1);
        out[at] = bank;
        n += 1;
    }
    if n == 0 {
        return Err(MapError::NoRam);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ty: u32, base: u64, pages: u64) -> Descriptor {
        Descriptor {
            ty,
            base,
            pages,
            attr: ATTR_WB | 0x1,
        }
    }

    fn b(base: u64, end: u64) -> Bank {
        Bank { base, end }
    }

    /// A map shaped like EDK2's on QEMU `virt` with 1 GiB: boot-time and
    /// loader memory interleaved with runtime services code and data near
    /// the top, a reserved page, MMIO (flash) below RAM.
    #[test]
    fn runtime_reserved_and_mmio_become_holes() {
        let map = [
            d(11, 0x0400_0000, 0x4000),  // MMIO: flash
            d(7, 0x4000_0000, 0x100),    // conventional
            d(2, 0x4010_0000, 0x200),    // loader data
            d(7, 0x4030_0000, 0x3_0000), // conventional
            d(4, 0x7030_0000, 0x100),    // boot services data
            d(6, 0x7040_0000, 0x40),     // runtime services data
            d(3, 0x7044_0000, 0x20),     // boot services code
            d(5, 0x7046_0000, 0x30),     // runtime services code
            d(0, 0x7049_0000, 0x1),      // reserved
            d(4, 0x7049_1000, 0xfb6f),   // boot services data
            d(9, 0x8000_0000, 0x10),     // ACPI reclaim (not RAM here)
            d(10, 0x8001_0000, 0x10),    // ACPI NVS
            d(14, 0x8002_0000, 0x10),    // persistent memory
            d(7, 0x8003_0000, 0x10),     // conventional
        ];
        let mut out = [Bank::default(); 8];
        let n = banks(map, &mut out).expect("banks");
        assert_eq!(
            out[..n],
            [
                b(0x4000_0000, 0x7040_0000),
                b(0x7044_0000, 0x7046_0000),
                b(0x7049_1000, 0x8000_0000),
                b(0x8003_0000, 0x8004_0000),
            ]
        );
    }

    #[test]
    fn unsorted_and_overlapping_descriptors_merge() {
        let map = [
            d(7, 0x9000_0000, 0x10),
            d(7, 0x4000_0000, 0x10),
            d(1, 0x8000_0000, 0x10),
            d(7, 0x4000_8000, 0x10),   // overlaps the second
            d(7, 0x8001_0000, 0x10),   // touches the third
            d(7, 0x8002_0000, 0xffe0), // touches the previous and the first
        ];
        let mut out = [Bank::default(); 8];
        let n = banks(map, &mut out).expect("banks");
        assert_eq!(
            out[..n],
            [b(0x4000_0000, 0x4001_8000), b(0x8000_0000, 0x9001_0000)]
        );
    }

    #[test]
    fn memory_without_write_back_is_not_ram() {
        let mut uncached = d(7, 0x4000_0000, 0x10);
        uncached.attr = 0x1; // EFI_MEMORY_UC only
        let mut out = [Bank::default(); 2];
        assert_eq!(banks([uncached], &mut out), Err(MapError::NoRam));
        assert_eq!(banks([uncached, d(7, 0x5000_0000, 1)], &mut out), Ok(1));
        assert_eq!(out[0], b(0x5000_0000, 0x5000_1000));
    }

    #[test]
    fn errors() {
        let mut out = [Bank::default(); 2];
        let wraps = d(7, u64::MAX - 0xfff, 2);
        assert_eq!(banks([wraps], &mut out), Err(MapError::Wraps(wraps)));
        let three = [
            d(7, 0x1000_0000, 1),
            d(7, 0x2000_0000, 1),
            d(7, 0x3000_0000, 1),
        ];
        assert_eq!(banks(three, &mut out), Err(MapError::TooManyBanks(2)));
        assert_eq!(banks([], &mut out), Err(MapError::NoRam));
        assert_eq!(banks([d(7, 0x1000, 0)], &mut out), Err(MapError::NoRam));
        for e in [
            MapError::Wraps(wraps),
            MapError::TooManyBanks(2),
            MapError::NoRam,
        ] {
            assert!(!format!("{e}").is_empty());
        }
    }
}
