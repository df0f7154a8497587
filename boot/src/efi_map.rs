//! KServ's EFI memory map on a UEFI machine booted in ACPI mode
//! (`docs/platforms.md`, "UEFI servers"): the loader (`kcore.efi`) hands
//! KCore the final memory map in a buffer with spare room
//! (`/chosen/linux,uefi-mmap-*` and `kcore,uefi-mmap-capacity`), and KServ's
//! stub device tree points Linux at the same buffer. Before KServ runs,
//! KCore [`reserve`]s its own memory there: every descriptor part that
//! overlaps KCore's image or pool becomes `EfiReservedMemoryType`, which
//! Linux adds as `nomap` memory (`reserve_regions` in
//! `drivers/firmware/efi/efi-init.c`) and never touches, the EFI equivalent
//! of the `no-map` reservations KServ's tree carries on the device-tree
//! path. Descriptors are split in place (the map stays sorted); the buffer
//! must have room for the new ones.
//!
//! A descriptor (`EFI_MEMORY_DESCRIPTOR`, UEFI 2.10 section 7.2) is `Type`
//! (u32), padding, `PhysicalStart`, `VirtualStart`, `NumberOfPages`,
//! `Attribute` (u64 each): 40 bytes, and `desc_size` apart.

use core::fmt;

use kcore::addr::{MemRange, PAGE_SIZE};

/// `EfiReservedMemoryType`.
pub const EFI_RESERVED: u32 = 0;
/// The bytes of a version-1 descriptor.
pub const DESC_LEN: usize = 40;

/// Where the loader put the memory map, from KCore's `/chosen`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EfiMap {
    /// `linux,uefi-mmap-start`: its physical address.
    pub start: u64,
    /// `linux,uefi-mmap-size`: the bytes of descriptors in it.
    pub size: u32,
    /// `linux,uefi-mmap-desc-size`: the stride of the descriptors.
    pub desc_size: u32,
    /// `kcore,uefi-mmap-capacity`: the bytes the buffer holds (at least
    /// `size`), room for the descriptors [`reserve`] adds; `size` when the
    /// loader does not say.
    pub capacity: u32,
}

impl EfiMap {
    /// The buffer, which must be RAM outside KCore's memory.
    pub fn buffer(&self) -> Option<MemRange> {
        MemRange::new(self.start, u64::from(self.capacity))
    }
}

/// Why [`reserve`] refused the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The descriptor size is below 40 bytes or not a multiple of 8, or the
    /// map is not a whole number of descriptors inside the buffer.
    BadLayout,
    /// A descriptor wraps past the end of the address space.
    Wraps {
        /// Its `PhysicalStart`.
        base: u64,
    },
    /// No room in the buffer for the descriptors a split adds.
    Full,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::BadLayout => f.write_str(
                "the EFI memory map's descriptor size or length does not fit its buffer",
            ),
            MapError::Wraps { base } => write!(
                f,
                "the EFI memory map has a descriptor at {base:#x} that wraps around"
            ),
            MapError::Full => f.write_str(
                "the EFI memory map's buffer has no room left to split descriptors around KCore's memory",
            ),
        }
    }
}

fn get(buf: &[u8], at: usize) -> u64 {
    buf.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn put(buf: &mut [u8], at: usize, v: u64) {
    if let Some(b) = buf.get_mut(at..at + 8) {
        b.copy_from_slice(&v.to_le_bytes());
    }
}

/// Marks every part of the map in `buf[..len]` (descriptors `desc_size`
/// apart) that overlaps one of `regions` (widened to whole pages) as
/// `EfiReservedMemoryType`, splitting descriptors in place; returns the
/// map's new length. Descriptors already reserved are left alone.
pub fn reserve(
    buf: &mut [u8],
    len: usize,
    desc_size: usize,
    regions: &[MemRange],
) -> Result<usize, MapError> {
    if desc_size < DESC_LEN
        || !desc_size.is_multiple_of(8)
        || !len.is_multiple_of(desc_size)
        || len > buf.len()
    {
        return Err(MapError::BadLayout);
    }
    let mut len = len;
    for r in regions.iter().filter_map(|r| r.align_out(PAGE_SIZE)) {
        let mut at = 0;
        while at < len {
            let ty = get(buf, at) as u32;
            let base = get(buf, at + 8);
            let virt = get(buf, at + 16);
            let pages = get(buf, at + 24);
            let end = pages
                .checked_mul(PAGE_SIZE)
                .and_then(|s| base.checked_add(s))
                .ok_or(MapError::Wraps { base })?;
            let (lo, hi) = (base.max(r.base()), end.min(r.end()));
            if ty == EFI_RESERVED || lo >= hi {
                at += desc_size;
                continue;
            }
            // Up to three pieces: [base, lo) as it was, [lo, hi) reserved,
            // [hi, end) as it was.
            let pieces = [(base, lo, ty), (lo, hi, EFI_RESERVED), (hi, end, ty)];
            let count = pieces.iter().filter(|p| p.0 < p.1).count();
            let grow = (count - 1) * desc_size;
            if len + grow > buf.len() {
                return Err(MapError::Full);
            }
            buf.copy_within(at + desc_size..len, at + desc_size + grow);
            len += grow;
            // The new slots start as copies of the descriptor (attribute,
            // padding), then get their own fields.
            for k in 1..count {
                buf.copy_within(at..at + desc_size, at + k * desc_size);
            }
            for &(s, e, t) in pieces.iter().filter(|p| p.0 < p.1) {
                put(buf, at, u64::from(t) | (get(buf, at) & !0xffff_ffff));
                put(buf, at + 8, s);
                put(buf, at + 16, if virt == 0 { 0 } else { virt + (s - base) });
                put(buf, at + 24, (e - s) / PAGE_SIZE);
                at += desc_size;
            }
        }
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    const STRIDE: usize = 48;
    const WB: u64 = 1 << 3;
    const RUNTIME: u64 = 1 << 63;

    fn map(descs: &[(u32, u64, u64, u64)], spare: usize) -> Vec<u8> {
        let mut buf = vec![0u8; (descs.len() + spare) * STRIDE];
        for (k, &(ty, base, pages, attr)) in descs.iter().enumerate() {
            let at = k * STRIDE;
            put(&mut buf, at, u64::from(ty));
            put(&mut buf, at + 8, base);
            put(
                &mut buf,
                at + 16,
                if attr & RUNTIME != 0 { base } else { 0 },
            );
            put(&mut buf, at + 24, pages);
            put(&mut buf, at + 32, attr);
            buf[at + 40..at + 48].fill(0xee);
        }
        buf
    }

    fn read(buf: &[u8], len: usize) -> Vec<(u32, u64, u64, u64, u64)> {
        (0..len)
            .step_by(STRIDE)
            .map(|at| {
                assert_eq!(&buf[at + 40..at + 48], &[0xee; 8], "padding kept");
                (
                    get(buf, at) as u32,
                    get(buf, at + 8),
                    get(buf, at + 16),
                    get(buf, at + 24),
                    get(buf, at + 32),
                )
            })
            .collect()
    }

    fn r(base: u64, size: u64) -> MemRange {
        MemRange::new(base, size).unwrap()
    }

    #[test]
    fn splits_around_kcore_and_keeps_the_rest() {
        let mut buf = map(
            &[
                (2, 0x4000_0000, 0x100, WB),
                (7, 0x4010_0000, 0x3_0000, WB),
                (5, 0x7000_0000, 0x10, WB | RUNTIME),
            ],
            4,
        );
        // KCore's image at the start of the loader data (not page aligned at
        // its end), its pool in the middle of the free memory.
        let kcore = [r(0x4000_0000, 0x8_0001), r(0x5000_0000, 0x80_0000)];
        let len = reserve(&mut buf, 3 * STRIDE, STRIDE, &kcore).unwrap();
        assert_eq!(
            read(&buf, len),
            [
                (0, 0x4000_0000, 0, 0x81, WB),
                (2, 0x4008_1000, 0, 0x7f, WB),
                (7, 0x4010_0000, 0, 0xff00, WB),
                (0, 0x5000_0000, 0, 0x800, WB),
                (7, 0x5080_0000, 0, 0x3_0000 - 0xff00 - 0x800, WB),
                (5, 0x7000_0000, 0x7000_0000, 0x10, WB | RUNTIME),
            ]
        );
        // Reserving again changes nothing.
        let again = reserve(&mut buf, len, STRIDE, &kcore).unwrap();
        assert_eq!(again, len);
    }

    #[test]
    fn a_region_over_several_descriptors_and_virtual_addresses_follow() {
        let mut buf = map(
            &[(6, 0x1000_0000, 4, WB | RUNTIME), (7, 0x1000_4000, 4, WB)],
            2,
        );
        let len = reserve(&mut buf, 2 * STRIDE, STRIDE, &[r(0x1000_2000, 0x4000)]).unwrap();
        assert_eq!(
            read(&buf, len),
            [
                (6, 0x1000_0000, 0x1000_0000, 2, WB | RUNTIME),
                (0, 0x1000_2000, 0x1000_2000, 2, WB | RUNTIME),
                (0, 0x1000_4000, 0, 2, WB),
                (7, 0x1000_6000, 0, 2, WB),
            ]
        );
    }

    #[test]
    fn refuses_a_full_buffer_and_bad_layouts() {
        let descs = [(7, 0x4000_0000, 0x1000, WB)];
        let mut buf = map(&descs, 1);
        let middle = [r(0x4010_0000, 0x1000)];
        assert_eq!(
            reserve(&mut buf, STRIDE, STRIDE, &middle),
            Err(MapError::Full)
        );
        let mut buf = map(&descs, 2);
        assert_eq!(reserve(&mut buf, STRIDE, STRIDE, &middle), Ok(3 * STRIDE));
        assert_eq!(
            reserve(&mut buf, STRIDE, 32, &middle),
            Err(MapError::BadLayout)
        );
        assert_eq!(
            reserve(&mut buf, STRIDE, 44, &middle),
            Err(MapError::BadLayout)
        );
        assert_eq!(
            reserve(&mut buf, STRIDE + 8, STRIDE, &middle),
            Err(MapError::BadLayout)
        );
        assert_eq!(
            reserve(&mut buf, 4 * STRIDE, STRIDE, &middle),
            Err(MapError::BadLayout)
        );
        let mut wraps = map(&[(7, u64::MAX - 0xfff, 2, WB)], 2);
        assert_eq!(
            reserve(&mut wraps, STRIDE, STRIDE, &middle),
            Err(MapError::Wraps {
                base: u64::MAX - 0xfff
            })
        );
        for e in [
            MapError::BadLayout,
            MapError::Full,
            MapError::Wraps { base: 1 },
        ] {
            assert!(alloc::format!("{e}").len() > 20);
        }
    }

    #[test]
    fn random_maps_never_panic_and_reserve_exactly_the_regions() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..500 {
            let n = (next() % 8 + 1) as usize;
            let mut descs = Vec::new();
            let mut base = 0x4000_0000u64;
            for _ in 0..n {
                let pages = next() % 64 + 1;
                descs.push(((next() % 8) as u32, base, pages, WB));
                base += pages * PAGE_SIZE;
            }
            let region = r(
                0x4000_0000 + (next() % 256) * PAGE_SIZE,
                (next() % 128 + 1) * PAGE_SIZE,
            );
            let mut buf = map(&descs, 2 * n);
            let len = reserve(&mut buf, n * STRIDE, STRIDE, &[region]).unwrap();
            let out = read(&buf, len);
            // Contiguous, same total, and reserved exactly where asked.
            let mut cur = 0x4000_0000;
            for &(ty, b, _, pages, _) in &out {
                assert_eq!(b, cur);
                cur += pages * PAGE_SIZE;
                let piece = r(b, pages * PAGE_SIZE);
                if piece.overlaps(&region) {
                    assert_eq!(ty, EFI_RESERVED);
                    assert!(region.contains_range(&piece) || ty == EFI_RESERVED);
                }
            }
            assert_eq!(cur, base);
            // Arbitrary bytes never panic.
            let mut junk: Vec<u8> = (0..(n * STRIDE)).map(|_| next() as u8).collect();
            let _ = reserve(&mut junk, n * STRIDE, STRIDE, &[region]);
        }
    }
}
