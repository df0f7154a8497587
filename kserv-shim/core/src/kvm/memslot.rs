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
//!
//! A VM's slots ([`Slots`]) are a table sorted by `gfn` in a glue array
//! that grows on demand (doubling, from 8 entries), with an index by slot
//! id beside it, so a VM with few slots pays for few and a lookup by
//! address or by id is a binary search, up to KVM's [`MAX_SLOTS`].

use super::errno::{EEXIST, EFAULT, EINVAL, ENOMEM, Errno};
use super::uapi::mem;

/// Memory slot ids per VM (`KVM_CAP_NR_MEMSLOTS`): Linux 6.1's
/// `KVM_USER_MEM_SLOTS` on arm64 (`SHRT_MAX`, no internal slots).
pub const MAX_SLOTS: usize = 32767;
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

/// One slot. All zero: unused. Laid out as 6 words: [`Slots`] keeps
/// slots in glue arrays of `u64`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Slot {
    /// `KVM_MEM_*` flags.
    pub flags: u32,
    /// Its id (`slot`'s low 16 bits; address space 0).
    pub id: u32,
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

/// Words of a [`Slot`] in a glue array.
const SLOT_WORDS: usize = size_of::<Slot>() / 8;
const _: () = assert!(size_of::<Slot>() == 48 && align_of::<Slot>() == 8);
/// Entries of a slot table's first allocation.
const FIRST_CAPACITY: usize = 8;

/// Zeroed `u64` arrays from the kernel (the module's `kvzalloc`; every
/// [`super::env::KvmEnv`] is one).
pub trait Arrays {
    /// A zeroed array of `words` u64, as an address.
    fn alloc_array(&mut self, words: usize) -> Option<u64>;
    /// Frees an array of [`Arrays::alloc_array`].
    fn free_array(&mut self, addr: u64);
}

impl<E: super::env::KvmEnv> Arrays for E {
    fn alloc_array(&mut self, words: usize) -> Option<u64> {
        super::env::KvmEnv::alloc_array(self, words)
    }
    fn free_array(&mut self, addr: u64) {
        super::env::KvmEnv::free_array(self, addr);
    }
}

/// A VM's used slots, sorted by `gfn` (they never overlap), in a glue
/// array of `cap` entries; beside it `ids`, `cap` words `id << 48 | gfn`
/// sorted (so by id). All zero: no slot, nothing allocated. Touched only
/// under the VM's lock.
#[derive(Debug, Default)]
pub struct Slots {
    table: u64,
    ids: u64,
    cap: usize,
    len: usize,
}

/// An `ids` word.
const fn id_word(id: u32, gfn: u64) -> u64 {
    (id as u64) << 48 | gfn
}

impl Slots {
    /// The slots, by ascending `gfn`.
    pub fn as_slice(&self) -> &[Slot] {
        if self.table == 0 {
            return &[];
        }
        // SAFETY: `table` holds `cap` zero-initialised `Slot`s (6 aligned
        // words each, every bit pattern valid), owned by `self`; the first
        // `len` are the used ones.
        unsafe { core::slice::from_raw_parts(self.table as *const Slot, self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [Slot] {
        if self.table == 0 {
            return &mut [];
        }
        // SAFETY: as in `as_slice`, borrowed mutably through `self`.
        unsafe { core::slice::from_raw_parts_mut(self.table as *mut Slot, self.len) }
    }

    fn ids(&self) -> &[u64] {
        // SAFETY: `ids` has `cap` words owned by `self`, `len` used.
        unsafe { super::env::array(self.ids, self.cap) }
            .split_at(self.len)
            .0
    }

    fn ids_mut(&mut self) -> &mut [u64] {
        // SAFETY: as in `ids`, borrowed mutably through `self`.
        unsafe { super::env::array(self.ids, self.cap) }
    }

    /// How many slots are used.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no slot is used.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The index (in [`Slots::as_slice`]) of slot `id`, if used.
    pub fn index_of(&self, id: u32) -> Option<usize> {
        let ids = self.ids();
        let k = ids.partition_point(|&w| w >> 48 < u64::from(id));
        let w = *ids.get(k)?;
        if w >> 48 != u64::from(id) {
            return None;
        }
        let gfn = w & ((1 << 48) - 1);
        self.as_slice().binary_search_by_key(&gfn, |s| s.gfn).ok()
    }

    /// Slot `id`, if used.
    pub fn by_id(&self, id: u32) -> Option<Slot> {
        self.index_of(id).map(|i| self.as_slice()[i])
    }

    /// The index of the slot holding `gfn`, if any.
    pub fn find(&self, gfn: u64) -> Option<usize> {
        let slots = self.as_slice();
        // The first slot ending past `gfn` (ends ascend as starts do).
        let i = slots.partition_point(|s| s.gfn + s.pages <= gfn);
        slots.get(i).filter(|s| s.contains(gfn)).map(|_| i)
    }

    /// Whether a slot other than `id` overlaps `[gfn, gfn + pages)`.
    pub fn overlaps(&self, id: u32, gfn: u64, pages: u64) -> bool {
        let slots = self.as_slice();
        let from = slots.partition_point(|s| s.gfn + s.pages <= gfn);
        slots[from..]
            .iter()
            .take_while(|s| s.gfn < gfn + pages)
            .any(|s| s.id != id)
    }

    /// Grows the arrays to hold one more slot (`ENOMEM`).
    fn reserve<A: Arrays>(&mut self, env: &mut A) -> Result<(), Errno> {
        if self.len < self.cap {
            return Ok(());
        }
        let cap = (self.cap * 2).clamp(FIRST_CAPACITY, MAX_SLOTS);
        if cap <= self.len {
            return Err(ENOMEM);
        }
        let table = env.alloc_array(cap * SLOT_WORDS).ok_or(ENOMEM)?;
        let Some(ids) = env.alloc_array(cap) else {
            env.free_array(table);
            return Err(ENOMEM);
        };
        let mut grown = Slots {
            table,
            ids,
            cap,
            len: self.len,
        };
        grown.as_mut_slice().copy_from_slice(self.as_slice());
        grown.ids_mut()[..self.len].copy_from_slice(self.ids());
        self.release(env);
        *self = grown;
        Ok(())
    }

    /// Adds `slot` (checked: its id unused, no overlap); its index.
    /// `ENOMEM` if the arrays cannot grow.
    pub fn insert<A: Arrays>(&mut self, env: &mut A, slot: Slot) -> Result<usize, Errno> {
        self.reserve(env)?;
        let i = self.as_slice().partition_point(|s| s.gfn < slot.gfn);
        let word = id_word(slot.id, slot.gfn);
        let k = self.ids().partition_point(|&w| w < word);
        let len = self.len;
        self.len += 1;
        let table = self.as_mut_slice();
        table.copy_within(i..len, i + 1);
        table[i] = slot;
        let ids = self.ids_mut();
        ids.copy_within(k..len, k + 1);
        ids[k] = word;
        Ok(i)
    }

    /// Removes the slot at index `i` and returns it.
    pub fn remove(&mut self, i: usize) -> Slot {
        let s = self.as_slice()[i];
        let word = id_word(s.id, s.gfn);
        let k = self.ids().partition_point(|&w| w < word);
        let len = self.len;
        self.as_mut_slice().copy_within(i + 1.., i);
        self.ids_mut().copy_within(k + 1..len, k);
        self.len -= 1;
        s
    }

    /// Moves the slot at index `i` to `gfn` (checked: no overlap); its
    /// new index.
    pub fn move_to(&mut self, i: usize, gfn: u64) -> usize {
        let s = self.remove(i);
        // The arrays keep their room: this cannot fail.
        let mut nothing = NoArrays;
        self.insert(&mut nothing, Slot { gfn, ..s }).unwrap_or(i)
    }

    /// Frees the arrays (the slots' own arrays are the caller's).
    pub fn release<A: Arrays>(&mut self, env: &mut A) {
        if self.table != 0 {
            env.free_array(self.table);
            env.free_array(self.ids);
        }
        *self = Slots::default();
    }
}

impl core::ops::Index<usize> for Slots {
    type Output = Slot;
    fn index(&self, i: usize) -> &Slot {
        &self.as_slice()[i]
    }
}

impl core::ops::IndexMut<usize> for Slots {
    /// For a slot's `flags`, `array` and `dirty`: its `gfn` and `id` key
    /// the arrays and change only through [`Slots::move_to`].
    fn index_mut(&mut self, i: usize) -> &mut Slot {
        &mut self.as_mut_slice()[i]
    }
}

/// An allocator with nothing to give.
struct NoArrays;

impl Arrays for NoArrays {
    fn alloc_array(&mut self, _words: usize) -> Option<u64> {
        None
    }
    fn free_array(&mut self, _addr: u64) {}
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
pub fn check(slots: &Slots, r: &Region, ipa_bits: u32) -> Result<Change, Errno> {
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
    let (as_id, id) = (r.slot >> 16, r.slot & 0xFFFF);
    if as_id != 0 || id as usize >= MAX_SLOTS {
        return Err(EINVAL);
    }
    if r.gpa.checked_add(r.size).is_none() {
        return Err(EINVAL);
    }
    let pages = r.size / PAGE_SIZE;
    if pages > MAX_SLOT_PAGES {
        return Err(EINVAL);
    }
    let old = slots.by_id(id);
    if pages == 0 {
        return if old.is_some() {
            Ok(Change::Delete)
        } else {
            Err(EINVAL)
        };
    }
    let gfn = r.gpa / PAGE_SIZE;
    let change = if let Some(old) = old {
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
    } else {
        Change::Create
    };
    if slots.overlaps(id, gfn, pages) {
        return Err(EEXIST);
    }
    if gfn + pages > 1u64 << (ipa_bits - 12) {
        return Err(EFAULT);
    }
    Ok(change)
}

/// The guest frames of an IPA space of `ipa_pages` pages that no slot
/// backs, as `(first gfn, pages)` ranges in ascending order, into `out`;
/// how many, or `None` if they do not fit. Read-only slots back their
/// frames only if `readonly_mapped` (a non-protected VM: KCore maps them
/// read-only); otherwise the shim emulates them and they count as not
/// backed.
pub fn unbacked<const N: usize>(
    slots: &Slots,
    ipa_pages: u64,
    readonly_mapped: bool,
    out: &mut [(u64, u64); N],
) -> Option<usize> {
    let mut n = 0;
    let mut at = 0u64;
    // The backing slots, by ascending gfn, then the end of the space.
    let backing = slots
        .as_slice()
        .iter()
        .filter(|s| readonly_mapped || !s.readonly())
        .map(|s| (s.gfn, s.gfn + s.pages))
        .chain([(ipa_pages, ipa_pages)]);
    for (start, end) in backing {
        let hole_end = start.min(ipa_pages);
        if hole_end > at {
            *out.get_mut(n)? = (at, hole_end - at);
            n += 1;
        }
        at = at.max(end);
        if at >= ipa_pages {
            break;
        }
    }
    Some(n)
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

    extern crate std;
    use std::boxed::Box;
    use std::collections::HashMap;

    /// The kernel's arrays, counted.
    #[derive(Default)]
    struct Heap(HashMap<u64, Box<[u64]>>);

    impl Arrays for Heap {
        fn alloc_array(&mut self, words: usize) -> Option<u64> {
            let b = std::vec![0u64; words].into_boxed_slice();
            let a = b.as_ptr() as u64;
            self.0.insert(a, b);
            Some(a)
        }
        fn free_array(&mut self, addr: u64) {
            assert!(self.0.remove(&addr).is_some(), "freed twice");
        }
    }

    fn slot(id: u32, gfn: u64, pages: u64, flags: u32) -> Slot {
        Slot {
            flags,
            id,
            gfn,
            pages,
            uaddr: 0x7000_0000 + u64::from(id) * 0x1000_0000,
            array: 0,
            dirty: 0,
        }
    }

    fn with(list: &[(u32, u64, u64, u32)]) -> Slots {
        let mut heap = Heap::default();
        let mut s = Slots::default();
        for &(id, gfn, pages, flags) in list {
            s.insert(&mut heap, slot(id, gfn, pages, flags))
                .expect("room");
        }
        // The test's slots live as long as the test.
        core::mem::forget(heap);
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
        assert_eq!(
            check(&empty, &Region { slot: 32766, ..ok }, 40),
            Ok(Change::Create)
        );
        assert_eq!(
            check(&empty, &Region { slot: 32767, ..ok }, 40),
            Err(EINVAL)
        );
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
        assert_eq!(s.find(0x400FF), Some(0));
        assert_eq!(s.find(0x40100), None);
        assert_eq!(s.find(0x5000F), Some(1));
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

    #[test]
    fn the_table_grows_on_demand_and_stays_sorted() {
        let mut heap = Heap::default();
        let mut s = Slots::default();
        assert_eq!(s.find(0), None);
        assert_eq!(s.index_of(0), None);
        assert!(heap.0.is_empty(), "no slot, no allocation");
        // KVM's maximum, inserted from the top down (each one at the
        // front), ids and addresses in opposite orders.
        let n = MAX_SLOTS as u32;
        for id in 0..n {
            let gfn = 2 * u64::from(n - 1 - id);
            let r = region(id, 0, gfn * PAGE_SIZE, PAGE_SIZE, 0x1000);
            assert_eq!(check(&s, &r, 40), Ok(Change::Create), "slot {id}");
            assert_eq!(s.insert(&mut heap, slot(id, gfn, 1, 0)), Ok(0));
        }
        assert_eq!(s.len(), MAX_SLOTS);
        assert_eq!(heap.0.len(), 2, "one table and one index");
        assert!(
            s.as_slice()
                .windows(2)
                .all(|w| w[0].gfn + w[0].pages <= w[1].gfn)
        );
        for id in [0, 1, 4000, n - 1] {
            let i = s.index_of(id).expect("used");
            assert_eq!(s[i].id, id);
            assert_eq!(s.find(2 * u64::from(n - 1 - id)), Some(i));
            assert_eq!(s.find(2 * u64::from(n - 1 - id) + 1), None, "a hole");
        }
        // One id more is KVM's EINVAL; an overlap EEXIST; the holes fit.
        let past = region(n, 0, 0x1_0000_0000, PAGE_SIZE, 0x1000);
        assert_eq!(check(&s, &past, 40), Err(EINVAL));
        let i = s.index_of(7).expect("used");
        let gfn = s[i].gfn;
        let moved = region(7, 0, (gfn + 1) * PAGE_SIZE, PAGE_SIZE, s[i].uaddr);
        assert_eq!(check(&s, &moved, 40), Ok(Change::Move));
        let onto = region(7, 0, (gfn + 2) * PAGE_SIZE, PAGE_SIZE, s[i].uaddr);
        assert_eq!(check(&s, &onto, 40), Err(EEXIST));
        // A move re-sorts; a removal closes the gap.
        let top = 2 * u64::from(n) + 10;
        let j = s.move_to(i, top);
        assert_eq!((j, s.index_of(7)), (MAX_SLOTS - 1, Some(MAX_SLOTS - 1)));
        assert_eq!(s.find(gfn), None);
        assert_eq!(s.find(top), Some(j));
        assert_eq!(s.remove(s.index_of(3).expect("used")).id, 3);
        assert_eq!((s.index_of(3), s.len()), (None, MAX_SLOTS - 1));
        assert!(s.as_slice().windows(2).all(|w| w[0].gfn < w[1].gfn));
        assert_eq!(s.by_id(4).map(|x| x.gfn), Some(2 * u64::from(n - 5)));
        s.release(&mut heap);
        assert!(heap.0.is_empty() && s.is_empty());
    }
}
