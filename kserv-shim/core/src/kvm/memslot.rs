//! Memory slots: `KVM_SET_USER_MEMORY_REGION`'s rules (as
//! `__kvm_set_memory_region` and arm64's `kvm_arch_prepare_memory_region`
//! apply them in Linux 6.1) and the guest-physical map they make, from
//! which the shim declares KCore's MMIO ranges.
//!
//! A slot maps `pages` guest frames from `gfn` to the VMM's memory at
//! `uaddr`. Pages are pinned and given to the VM one by one, on the
//! guest's first touch (a `MEM_FAULT` exit), and remembered in the slot's
//! page array (one word per page, [`page`] encoding), which the module's
//! glue allocates. A slot with `KVM_MEM_LOG_DIRTY_PAGES` (non-protected VMs)
//! also has a dirty bitmap, one bit a page in 64-bit words as KVM's
//! `unsigned long` bitmap on arm64 ([`bitmap_words`]).

use super::errno::{EEXIST, EFAULT, EINVAL, Errno};
use super::uapi::mem;

/// Memory slots per VM (`KVM_CAP_NR_MEMSLOTS`).
pub const MAX_SLOTS: usize = 32;
/// Bytes in a page.
pub const PAGE_SIZE: u64 = 4096;
/// Pages one slot may have (`KVM_MEM_MAX_NR_PAGES` is larger; the page
/// array must stay a sane allocation: 8 bytes a page, 16 MiB at most).
pub const MAX_SLOT_PAGES: u64 = 1 << 21;
/// The highest user address a slot may reach (arm64's 52-bit user VA
/// space; the glue's pinning checks the real limit).
pub const USER_LIMIT: u64 = 1 << 52;

/// A slot page's word: the pfn and how the VM has it.
pub mod page {
    /// The page is pinned (the pfn bits hold it).
    pub const PINNED: u64 = 1 << 63;
    /// Shared with the (non-protected) VM: `HostShareGuest`.
    pub const SHARED: u64 = 1 << 62;
    /// Donated to the (protected) VM: `HostDonateGuest`.
    pub const DONATED: u64 = 1 << 61;
    /// The pfn bits.
    pub const PFN: u64 = (1 << 52) - 1;
}

/// `struct kvm_userspace_memory_region`, as userspace passed it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Region {
    /// `slot`: bits 16.. the address space, 0..16 the id.
    pub slot: u32,
    /// `flags`.
    pub flags: u32,
    /// `guest_phys_addr`.
    pub gpa: u64,
    /// `memory_size`.
    pub size: u64,
    /// `userspace_addr`.
    pub uaddr: u64,
}

impl Region {
    /// Decodes the 32 bytes userspace passed.
    pub fn parse(b: &[u8; 32]) -> Region {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| u64::from(u32_at(i)) | u64::from(u32_at(i + 4)) << 32;
        Region {
            slot: u32_at(0),
            flags: u32_at(4),
            gpa: u64_at(8),
            size: u64_at(16),
            uaddr: u64_at(24),
        }
    }
}

/// One slot. All zero: unused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    /// `KVM_MEM_*` flags.
    pub flags: u32,
    /// First guest frame.
    pub gfn: u64,
    /// Pages; 0 for an unused slot.
    pub pages: u64,
    /// The VMM's address of the first page.
    pub uaddr: u64,
    /// The glue's page array (`pages` words), as an address; 0 before it
    /// is allocated.
    pub array: u64,
    /// The dirty bitmap ([`bitmap_words`] words), as an address, while the
    /// slot logs dirty pages; else 0.
    pub dirty: u64,
}

/// Words of a slot's dirty bitmap: one bit a page, rounded up to 64 pages
/// (`kvm_dirty_bitmap_bytes`).
pub const fn bitmap_words(pages: u64) -> usize {
    pages.div_ceil(64) as usize
}

impl Slot {
    /// Whether the slot is in use.
    pub const fn used(&self) -> bool {
        self.pages != 0
    }
    /// Whether the guest may only read it.
    pub const fn readonly(&self) -> bool {
        self.flags & mem::READONLY != 0
    }
    /// Whether it logs dirty pages.
    pub const fn logging(&self) -> bool {
        self.flags & mem::LOG_DIRTY_PAGES != 0
    }
    /// Whether `gfn` is inside.
    pub const fn contains(&self, gfn: u64) -> bool {
        self.used() && gfn >= self.gfn && gfn - self.gfn < self.pages
    }
    /// Whether `[gfn, gfn + pages)` overlaps it.
    pub const fn overlaps(&self, gfn: u64, pages: u64) -> bool {
        self.used() && gfn < self.gfn + self.pages && self.gfn < gfn + pages
    }
}

/// What a valid request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A new slot at this id.
    Create,
    /// The slot goes.
    Delete,
    /// The slot moves to another `gfn` (same memory, size and read-only
    /// flag; dirty logging may change with it).
    Move,
    /// Only the dirty-logging flag changes (`KVM_MR_FLAGS_ONLY`).
    Flags,
    /// The request repeats the slot as it is.
    Nothing,
}

/// Checks a `KVM_SET_USER_MEMORY_REGION` request against the slots of a
/// VM with an IPA space of `ipa_bits`, with KVM's errors in KVM's order:
/// unknown flags, a size, guest address or
/// user address that is not page aligned, a user range that wraps or
/// leaves user space, a slot id out of range, a wrapping guest range:
/// `EINVAL`; deleting an unused slot: `EINVAL`; changing a slot's memory,
/// size or read-only flag: `EINVAL`; overlapping another slot: `EEXIST`;
/// reaching past the IPA space: `EFAULT`.
pub fn check(slots: &[Slot; MAX_SLOTS], r: &Region, ipa_bits: u32) -> Result<Change, Errno> {
    if r.flags & !(mem::READONLY | mem::LOG_DIRTY_PAGES) != 0 {
        return Err(EINVAL);
    }
    if !r.size.is_multiple_of(PAGE_SIZE)
        || !r.gpa.is_multiple_of(PAGE_SIZE)
        || !r.uaddr.is_multiple_of(PAGE_SIZE)
    {
        return Err(EINVAL);
    }
    if r.uaddr
        .checked_add(r.size)
        .is_none_or(|end| end > USER_LIMIT)
    {
        return Err(EINVAL);
    }
    let (as_id, id) = (r.slot >> 16, (r.slot & 0xFFFF) as usize);
    if as_id != 0 || id >= MAX_SLOTS {
        return Err(EINVAL);
    }
    if r.gpa.checked_add(r.size).is_none() {
        return Err(EINVAL);
    }
    let pages = r.size / PAGE_SIZE;
    if pages > MAX_SLOT_PAGES {
        return Err(EINVAL);
    }
    let old = &slots[id];
    if pages == 0 {
        return if old.used() {
            Ok(Change::Delete)
        } else {
            Err(EINVAL)
        };
    }
    let gfn = r.gpa / PAGE_SIZE;
    let change = if !old.used() {
        Change::Create
    } else {
        if r.uaddr != old.uaddr || pages != old.pages || (r.flags ^ old.flags) & mem::READONLY != 0
        {
            return Err(EINVAL);
        }
        if gfn != old.gfn {
            Change::Move
        } else if r.flags != old.flags {
            return Ok(Change::Flags);
        } else {
            return Ok(Change::Nothing);
        }
    };
    let overlap = slots
        .iter()
        .enumerate()
        .any(|(i, s)| i != id && s.overlaps(gfn, pages));
    if overlap {
        return Err(EEXIST);
    }
    if gfn + pages > 1u64 << (ipa_bits - 12) {
        return Err(EFAULT);
    }
    Ok(change)
}

/// The slot holding `gfn`, if any.
pub fn find(slots: &[Slot; MAX_SLOTS], gfn: u64) -> Option<usize> {
    slots.iter().position(|s| s.contains(gfn))
}

/// The guest frames of an IPA space of `ipa_pages` pages that no slot
/// backs, as `(first gfn, pages)` ranges in ascending order, into `out`;
/// how many, or `None` if they do not fit. Read-only slots back their
/// frames only if `readonly_mapped` (a non-protected VM: KCore maps them
/// read-only); otherwise the shim emulates them and they count as not
/// backed.
pub fn unbacked<const N: usize>(
    slots: &[Slot; MAX_SLOTS],
    ipa_pages: u64,
    readonly_mapped: bool,
    out: &mut [(u64, u64); N],
) -> Option<usize> {
    let mut n = 0;
    let mut at = 0u64;
    loop {
        // The lowest backing slot at or after `at`.
        let next = slots
            .iter()
            .filter(|s| s.used() && (readonly_mapped || !s.readonly()) && s.gfn + s.pages > at)
            .min_by_key(|s| s.gfn);
        let (hole_end, resume) = match next {
            Some(s) => (s.gfn.max(at), s.gfn + s.pages),
            None => (ipa_pages, ipa_pages),
        };
        let hole_end = hole_end.min(ipa_pages);
        if hole_end > at {
            *out.get_mut(n)? = (at, hole_end - at);
            n += 1;
        }
        if resume >= ipa_pages {
            return Some(n);
        }
        at = resume;
    }
}

/// Narrows the first `n` ranges of `ranges` (sorted `(gfn, pages)`) to
/// their overlap with `allowed` (sorted, disjoint), in place; returns how
/// many ranges that leaves, or `None` if they do not fit.
pub fn intersect<const N: usize>(
    ranges: &mut [(u64, u64); N],
    n: usize,
    allowed: &[(u64, u64)],
) -> Option<usize> {
    let mut out = [(0u64, 0u64); N];
    let mut k = 0;
    for &(g, p) in ranges.iter().take(n) {
        for &(a, q) in allowed {
            let (lo, hi) = (g.max(a), (g + p).min(a + q));
            if lo < hi {
                *out.get_mut(k)? = (lo, hi - lo);
                k += 1;
            }
        }
    }
    *ranges = out;
    Some(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(slot: u32, flags: u32, gpa: u64, size: u64, uaddr: u64) -> Region {
        Region {
            slot,
            flags,
            gpa,
            size,
            uaddr,
        }
    }

    fn with(list: &[(usize, u64, u64, u32)]) -> [Slot; MAX_SLOTS] {
        let mut s = [Slot::default(); MAX_SLOTS];
        for &(id, gfn, pages, flags) in list {
            s[id] = Slot {
                flags,
                gfn,
                pages,
                uaddr: 0x7000_0000 + (id as u64) * 0x1000_0000,
                array: 0,
                dirty: 0,
            };
        }
        s
    }

    #[test]
    fn parse_is_little_endian() {
        let mut b = [0u8; 32];
        b[0] = 3;
        b[4] = 2;
        b[8..16].copy_from_slice(&0x4000_0000u64.to_le_bytes());
        b[16..24].copy_from_slice(&0x10_0000u64.to_le_bytes());
        b[24..32].copy_from_slice(&0xffff_0000_1000u64.to_le_bytes());
        assert_eq!(
            Region::parse(&b),
            region(3, 2, 0x4000_0000, 0x10_0000, 0xffff_0000_1000)
        );
    }

    #[test]
    fn kvms_rules() {
        let empty = with(&[]);
        let ok = region(0, 0, 0x4000_0000, 0x10_0000, 0x7000_0000);
        assert_eq!(check(&empty, &ok, 40), Ok(Change::Create));
        // Flags: read-only and dirty logging, alone or both, are fine;
        // unknown bits are not.
        for flags in [
            mem::READONLY,
            mem::LOG_DIRTY_PAGES,
            mem::READONLY | mem::LOG_DIRTY_PAGES,
        ] {
            assert_eq!(
                check(&empty, &Region { flags, ..ok }, 40),
                Ok(Change::Create)
            );
        }
        assert_eq!(check(&empty, &Region { flags: 4, ..ok }, 40), Err(EINVAL));
        // Alignment.
        assert_eq!(
            check(&empty, &Region { size: 0x1001, ..ok }, 40),
            Err(EINVAL)
        );
        assert_eq!(check(&empty, &Region { gpa: 0x800, ..ok }, 40), Err(EINVAL));
        assert_eq!(
            check(
                &empty,
                &Region {
                    uaddr: 0x7000_0010,
                    ..ok
                },
                40
            ),
            Err(EINVAL)
        );
        // Slot ids and address spaces.
        assert_eq!(check(&empty, &Region { slot: 32, ..ok }, 40), Err(EINVAL));
        assert_eq!(
            check(
                &empty,
                &Region {
                    slot: 1 << 16,
                    ..ok
                },
                40
            ),
            Err(EINVAL)
        );
        // Wrapping ranges.
        assert_eq!(
            check(&empty, &Region { gpa: !0xFFF, ..ok }, 40),
            Err(EINVAL)
        );
        assert_eq!(
            check(
                &empty,
                &Region {
                    uaddr: !0xFFF,
                    ..ok
                },
                40
            ),
            Err(EINVAL)
        );
        // Past the IPA space: EFAULT.
        assert_eq!(
            check(
                &empty,
                &Region {
                    gpa: 0xFF_FFFF_F000,
                    ..ok
                },
                40
            ),
            Err(EFAULT)
        );
        assert_eq!(
            check(
                &empty,
                &Region {
                    gpa: 0xFFF0_0000,
                    ..ok
                },
                32
            ),
            Ok(Change::Create)
        );
        assert_eq!(
            check(
                &empty,
                &Region {
                    gpa: 0xFFF0_1000,
                    ..ok
                },
                32
            ),
            Err(EFAULT)
        );
        // Deleting an unused slot.
        assert_eq!(check(&empty, &Region { size: 0, ..ok }, 40), Err(EINVAL));
    }

    #[test]
    fn existing_slots() {
        let s = with(&[(0, 0x40000, 256, 0), (1, 0x50000, 16, mem::READONLY)]);
        let same = region(0, 0, 0x4000_0000, 0x10_0000, 0x7000_0000);
        assert_eq!(check(&s, &same, 40), Ok(Change::Nothing));
        assert_eq!(
            check(&s, &Region { size: 0, ..same }, 40),
            Ok(Change::Delete)
        );
        assert_eq!(
            check(
                &s,
                &Region {
                    gpa: 0x8000_0000,
                    ..same
                },
                40
            ),
            Ok(Change::Move)
        );
        // Dirty logging on or off: a flags-only change, or a move with it.
        let logged = Region {
            flags: mem::LOG_DIRTY_PAGES,
            ..same
        };
        assert_eq!(check(&s, &logged, 40), Ok(Change::Flags));
        assert_eq!(
            check(
                &s,
                &Region {
                    gpa: 0x8000_0000,
                    ..logged
                },
                40
            ),
            Ok(Change::Move)
        );
        assert_eq!(
            check(
                &s,
                &Region {
                    flags: mem::READONLY | mem::LOG_DIRTY_PAGES,
                    ..same
                },
                40
            ),
            Err(EINVAL),
            "the read-only flag still cannot change"
        );
        assert_eq!(
            (bitmap_words(1), bitmap_words(64), bitmap_words(65)),
            (1, 1, 2)
        );
        // Another size, memory or read-only flag: EINVAL.
        assert_eq!(
            check(
                &s,
                &Region {
                    size: 0x2000,
                    ..same
                },
                40
            ),
            Err(EINVAL)
        );
        assert_eq!(
            check(
                &s,
                &Region {
                    uaddr: 0x9000_0000,
                    ..same
                },
                40
            ),
            Err(EINVAL)
        );
        assert_eq!(
            check(
                &s,
                &Region {
                    flags: mem::READONLY,
                    ..same
                },
                40
            ),
            Err(EINVAL)
        );
        // Overlaps: EEXIST, for new slots and moves alike.
        let new = region(2, 0, 0x4008_0000, 0x1000, 0x1000_0000);
        assert_eq!(check(&s, &new, 40), Err(EEXIST));
        assert_eq!(
            check(
                &s,
                &Region {
                    gpa: 0x5000_F000,
                    ..new
                },
                40
            ),
            Err(EEXIST)
        );
        assert_eq!(
            check(
                &s,
                &Region {
                    gpa: 0x5001_0000,
                    ..new
                },
                40
            ),
            Ok(Change::Create)
        );
        assert_eq!(
            check(
                &s,
                &Region {
                    gpa: 0x5000_0000,
                    ..same
                },
                40
            ),
            Err(EEXIST)
        );
        assert_eq!(find(&s, 0x400FF), Some(0));
        assert_eq!(find(&s, 0x40100), None);
        assert_eq!(find(&s, 0x5000F), Some(1));
    }

    #[test]
    fn unbacked_ranges() {
        let mut out = [(0, 0); 4];
        let s = with(&[
            (0, 0x40000, 256, 0),
            (3, 0x100, 16, 0),
            (1, 0x50000, 16, mem::READONLY),
        ]);
        let n = unbacked(&s, 1 << 20, false, &mut out);
        assert_eq!(n, Some(3));
        assert_eq!(
            out[..3],
            [
                (0, 0x100),
                (0x110, 0x40000 - 0x110),
                (0x40100, (1 << 20) - 0x40100)
            ]
        );
        // Mapped read-only, the read-only slot backs its frames.
        assert_eq!(unbacked(&s, 1 << 20, true, &mut out), Some(4));
        assert_eq!(
            out[2..4],
            [(0x40100, 0x50000 - 0x40100), (0x50010, (1 << 20) - 0x50010)]
        );
        // A slot reaching the top of the space leaves no range after it.
        let s = with(&[(0, 0, 0x100, 0), (1, (1 << 20) - 0x10, 0x10, 0)]);
        assert_eq!(unbacked(&s, 1 << 20, false, &mut out), Some(1));
        assert_eq!(out[0], (0x100, (1 << 20) - 0x110));
        // No slot: the whole space.
        assert_eq!(unbacked(&with(&[]), 1 << 20, false, &mut out), Some(1));
        assert_eq!(out[0], (0, 1 << 20));
        // Too many holes for the table.
        let s = with(&[
            (0, 1, 1, 0),
            (1, 3, 1, 0),
            (2, 5, 1, 0),
            (3, 7, 1, 0),
            (4, 9, 1, 0),
        ]);
        assert_eq!(unbacked(&s, 16, false, &mut out), None);
        let mut big = [(0, 0); 8];
        assert_eq!(unbacked(&s, 16, false, &mut big), Some(6));
    }

    #[test]
    fn ranges_narrow_to_what_is_allowed() {
        let mut r = [(0u64, 0u64); 4];
        r[0] = (0, 0x4_0000);
        r[1] = (0x4_8000, 0x100);
        let n = intersect(&mut r, 2, &[(0x9000, 1), (0xa000, 4), (0x4_8080, 0x1000)]).unwrap();
        assert_eq!(&r[..n], [(0x9000, 1), (0xa000, 4), (0x4_8080, 0x80)]);
        let mut r = [(0u64, 0u64); 1];
        r[0] = (0, 0x10);
        assert_eq!(
            intersect(&mut r, 1, &[]),
            Some(0),
            "an empty manifest: no MMIO"
        );
        r[0] = (0, 0x10);
        assert_eq!(intersect(&mut r, 1, &[(0, 1), (2, 1)]), None, "too many");
    }
}
