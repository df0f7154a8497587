//! Who owns every 4 KiB page of RAM: the ownership table of DESIGN.md
//! section 2.
//!
//! One packed `u64` per page, for every page of every RAM bank (banks may
//! have holes between them). A page's [`PageState`] names its owner — KCore,
//! KServ (the host) or a VM — and, for pages a VM may see, the one guest frame
//! it may be mapped at and how it is shared. The table is the source of truth;
//! the stage-2 tables are kept consistent with it by the transitions in
//! [`crate::mem_protect`] which, with the run page's pin and unpin in
//! [`crate::vcpu_mem`], are the only code that changes an entry.
//!
//! | state | owner | mapped in KServ's stage 2 | mapped in VM *v*'s stage 2 |
//! |---|---|---|---|
//! | `KCore` | KCore | never | never |
//! | `VmTable { vm }` | KCore, for *v*'s stage-2 tables | never | never |
//! | `Host` | KServ | yes (lazily) | never |
//! | `HostPinned { pins }` | KServ, in use by KCore (a running vCPU's run page) | yes (lazily) | never |
//! | `HostSharedWithGuest { vm, gfn }` | KServ | yes | at `gfn` only (non-protected *v*) |
//! | `Guest { vm, gfn }` | *v* | never | at `gfn` only |
//! | `GuestSharedWithHost { vm, gfn }` | *v* | yes | at `gfn` only |

use crate::addr::{Gfn, MemRange, PAGE_SHIFT, PAGE_SIZE, Pa, Pfn, RangeSet};
use crate::vm::VmId;

/// The state of one page of RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageState {
    /// KCore's own: its image, its pools, the ownership table itself.
    KCore,
    /// KCore's, holding a stage-2 table of VM `vm` (donated by KServ for it).
    VmTable {
        /// The VM whose tables live here.
        vm: VmId,
    },
    /// KServ's, mapped only in KServ's stage 2.
    Host,
    /// KServ's, and in use by KCore across a lock drop: the run page of
    /// `pins` running vCPUs, which KCore writes when each of them exits.
    /// KServ may map it; nobody may donate, share, pool or make a table of
    /// it until the last unpin makes it [`PageState::Host`] again.
    HostPinned {
        /// How many uses hold the pin (at least 1).
        pins: u32,
    },
    /// KServ's, also mapped in the non-protected VM `vm` at `gfn`.
    HostSharedWithGuest {
        /// The borrowing VM.
        vm: VmId,
        /// Where the VM sees it.
        gfn: Gfn,
    },
    /// VM `vm`'s, mapped only in its stage 2 at `gfn`.
    Guest {
        /// The owning VM.
        vm: VmId,
        /// Where the VM sees it.
        gfn: Gfn,
    },
    /// VM `vm`'s at `gfn`, shared by the VM with KServ (also in KServ's stage 2).
    GuestSharedWithHost {
        /// The owning VM.
        vm: VmId,
        /// Where the VM sees it.
        gfn: Gfn,
    },
}

impl PageState {
    /// Whether KServ may have this page in its stage 2.
    pub const fn host_may_map(self) -> bool {
        matches!(
            self,
            PageState::Host
                | PageState::HostPinned { .. }
                | PageState::HostSharedWithGuest { .. }
                | PageState::GuestSharedWithHost { .. }
        )
    }

    /// The VM involved with this page, if any.
    pub const fn vm(self) -> Option<VmId> {
        match self {
            PageState::KCore | PageState::Host | PageState::HostPinned { .. } => None,
            PageState::VmTable { vm }
            | PageState::HostSharedWithGuest { vm, .. }
            | PageState::Guest { vm, .. }
            | PageState::GuestSharedWithHost { vm, .. } => Some(vm),
        }
    }

    /// Where VM [`PageState::vm`] may map this page, if anywhere.
    pub const fn gfn(self) -> Option<Gfn> {
        match self {
            PageState::HostSharedWithGuest { gfn, .. }
            | PageState::Guest { gfn, .. }
            | PageState::GuestSharedWithHost { gfn, .. } => Some(gfn),
            _ => None,
        }
    }

    const TAG_KCORE: u64 = 1;
    const TAG_VM_TABLE: u64 = 2;
    const TAG_HOST: u64 = 3;
    const TAG_HOST_SHARED: u64 = 4;
    const TAG_GUEST: u64 = 5;
    const TAG_GUEST_SHARED: u64 = 6;
    const TAG_HOST_PINNED: u64 = 7;
    /// Largest guest frame number an entry holds (a 56-bit IPA space).
    pub const MAX_GFN: u64 = (1 << 44) - 1;

    /// Whether KCore holds a pin on this page: it may not change owner.
    pub const fn is_pinned(self) -> bool {
        matches!(self, PageState::HostPinned { .. })
    }

    /// The packed form: tag in bits 3:0, VM in bits 19:4, gfn (or a pin
    /// count) in bits 63:20.
    pub const fn pack(self) -> u64 {
        let (tag, vm, gfn) = match self {
            PageState::KCore => (Self::TAG_KCORE, 0, 0),
            PageState::VmTable { vm } => (Self::TAG_VM_TABLE, vm.0, 0),
            PageState::Host => (Self::TAG_HOST, 0, 0),
            PageState::HostPinned { pins } => (Self::TAG_HOST_PINNED, 0, pins as u64),
            PageState::HostSharedWithGuest { vm, gfn } => (Self::TAG_HOST_SHARED, vm.0, gfn.0),
            PageState::Guest { vm, gfn } => (Self::TAG_GUEST, vm.0, gfn.0),
            PageState::GuestSharedWithHost { vm, gfn } => (Self::TAG_GUEST_SHARED, vm.0, gfn.0),
        };
        tag | (vm as u64) << 4 | (gfn & Self::MAX_GFN) << 20
    }

    /// Decodes [`PageState::pack`]; `None` for a word no state packs to.
    pub const fn unpack(w: u64) -> Option<PageState> {
        let vm = VmId((w >> 4) as u16);
        let gfn = Gfn(w >> 20);
        let no_extra = w >> 4 == 0;
        let no_gfn = w >> 20 == 0;
        Some(match w & 0xF {
            Self::TAG_KCORE if no_extra => PageState::KCore,
            Self::TAG_VM_TABLE if no_gfn => PageState::VmTable { vm },
            Self::TAG_HOST if no_extra => PageState::Host,
            Self::TAG_HOST_PINNED
                if w >> 4 & 0xFFFF == 0 && gfn.0 != 0 && gfn.0 <= u32::MAX as u64 =>
            {
                PageState::HostPinned { pins: gfn.0 as u32 }
            }
            Self::TAG_HOST_SHARED => PageState::HostSharedWithGuest { vm, gfn },
            Self::TAG_GUEST => PageState::Guest { vm, gfn },
            Self::TAG_GUEST_SHARED => PageState::GuestSharedWithHost { vm, gfn },
            _ => return None,
        })
    }
}

/// Why a table could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnershipError {
    /// The storage holds fewer entries than the banks have pages.
    StorageTooSmall {
        /// Entries needed.
        needed: usize,
    },
    /// A bank is not page aligned.
    MisalignedBank,
    /// A range to mark is not RAM.
    NotRam,
}

/// The ownership table over storage `S` (a `[u64]` KCore owns), for up to
/// `BANKS` RAM banks.
#[derive(Clone, Debug)]
pub struct OwnershipTable<S, const BANKS: usize> {
    entries: S,
    banks: RangeSet<BANKS>,
    /// Index of each bank's first page in `entries`, in bank order.
    first: [usize; BANKS],
}

impl<S: AsRef<[u64]> + AsMut<[u64]>, const BANKS: usize> OwnershipTable<S, BANKS> {
    /// Entries needed for these banks.
    pub fn entries_needed(banks: &RangeSet<BANKS>) -> usize {
        banks
            .iter()
            .map(|b| (b.size() >> PAGE_SHIFT) as usize)
            .sum()
    }

    /// A table with every page of every bank owned by KServ.
    pub fn new(mut entries: S, banks: RangeSet<BANKS>) -> Result<Self, OwnershipError> {
        if banks.iter().any(|b| !b.is_aligned(PAGE_SIZE)) {
            return Err(OwnershipError::MisalignedBank);
        }
        let needed = Self::entries_needed(&banks);
        let slots = entries.as_mut();
        if slots.len() < needed {
            return Err(OwnershipError::StorageTooSmall { needed });
        }
        slots[..needed].fill(PageState::Host.pack());
        let mut first = [0; BANKS];
        let mut at = 0;
        for (i, b) in banks.iter().enumerate() {
            first[i] = at;
            at += (b.size() >> PAGE_SHIFT) as usize;
        }
        Ok(OwnershipTable {
            entries,
            banks,
            first,
        })
    }

    /// The RAM banks.
    pub fn banks(&self) -> &RangeSet<BANKS> {
        &self.banks
    }

    fn index(&self, pfn: Pfn) -> Option<usize> {
        let pa = pfn.pa()?.raw();
        let (i, bank) = self
            .banks
            .iter()
            .enumerate()
            .find(|(_, b)| b.contains(pa))?;
        Some(self.first[i] + ((pa - bank.base()) >> PAGE_SHIFT) as usize)
    }

    /// Whether `pfn` is a page of RAM.
    pub fn is_ram(&self, pfn: Pfn) -> bool {
        self.index(pfn).is_some()
    }

    /// The state of page `pfn`, or `None` if it is not RAM.
    pub fn get(&self, pfn: Pfn) -> Option<PageState> {
        let w = *self.entries.as_ref().get(self.index(pfn)?)?;
        PageState::unpack(w)
    }

    /// Sets the state of page `pfn`. Only the checked transitions call this,
    /// after validating that `pfn` is RAM; for anything else it does nothing
    /// and returns false (the caller counts a broken invariant).
    #[must_use]
    pub(crate) fn set(&mut self, pfn: Pfn, state: PageState) -> bool {
        if let Some(i) = self.index(pfn)
            && let Some(slot) = self.entries.as_mut().get_mut(i)
        {
            *slot = state.pack();
            return true;
        }
        false
    }

    /// Whether `pa` may hold a table of the stage 2 of VM `vm`, or of
    /// KServ's when `vm` is `None`: a page in state `VmTable { vm }`, or
    /// `KCore`. Every walk of a stage 2 asks this of each next-level table
    /// before it reads it ([`crate::pgtable`]), so a corrupted descriptor
    /// never leads KCore into a page that is not KCore's.
    pub fn holds_table(&self, pa: Pa, vm: Option<VmId>) -> bool {
        let want = match vm {
            Some(vm) => PageState::VmTable { vm },
            None => PageState::KCore,
        };
        self.get(Pfn::of(pa)) == Some(want)
    }

    /// Marks every page of `range` (RAM) as KCore's: at boot, for KCore's
    /// image, its pools and this table's own storage.
    pub fn mark_kcore(&mut self, range: MemRange) -> Result<(), OwnershipError> {
        let range = range.align_out(PAGE_SIZE).ok_or(OwnershipError::NotRam)?;
        let first = Pfn::of(Pa(range.base()));
        let pages = range.size() >> PAGE_SHIFT;
        if (0..pages).any(|i| !self.is_ram(Pfn(first.0 + i))) {
            return Err(OwnershipError::NotRam);
        }
        for i in 0..pages {
            // Cannot fail: every page was found to be RAM above.
            let _ = self.set(Pfn(first.0 + i), PageState::KCore);
        }
        Ok(())
    }

    /// Every page and its state, bank by bank.
    pub fn iter(&self) -> impl Iterator<Item = (Pfn, PageState)> + '_ {
        self.banks.iter().flat_map(move |b| {
            let first = b.base() >> PAGE_SHIFT;
            (0..b.size() >> PAGE_SHIFT).filter_map(move |i| {
                let pfn = Pfn(first + i);
                Some((pfn, self.get(pfn)?))
            })
        })
    }

    /// A VM is being torn down: every page KServ shared with `vm` becomes
    /// KServ's alone, in one pass over the table (not a lookup per page).
    /// Returns how many of `vm`'s own pages it shares with KServ, which the
    /// caller takes back page by page.
    pub(crate) fn end_host_shares(&mut self, vm: VmId) -> usize {
        let needed = Self::entries_needed(&self.banks);
        let mut guest_shared = 0;
        for w in self.entries.as_mut().iter_mut().take(needed) {
            match PageState::unpack(*w) {
                Some(PageState::HostSharedWithGuest { vm: v, .. }) if v == vm => {
                    *w = PageState::Host.pack();
                }
                Some(PageState::GuestSharedWithHost { vm: v, .. }) if v == vm => {
                    guest_shared += 1;
                }
                _ => {}
            }
        }
        guest_shared
    }

    /// Whether every page of `range` is RAM that KServ may map.
    /// (KServ's stage-2 faults ask this of a whole 2 MiB block, so a range
    /// within one bank is read as one run of entries.)
    pub fn host_may_map_range(&self, range: MemRange) -> bool {
        let first = range.base() >> PAGE_SHIFT;
        let last = (range.end() - 1) >> PAGE_SHIFT;
        let may = |w: &u64| PageState::unpack(*w).is_some_and(PageState::host_may_map);
        if let (Some(a), Some(b)) = (self.index(Pfn(first)), self.index(Pfn(last)))
            && b >= a
            && b - a == (last - first) as usize
            && let Some(run) = self.entries.as_ref().get(a..=b)
        {
            return run.iter().all(may);
        }
        (first..=last).all(|p| self.get(Pfn(p)).is_some_and(PageState::host_may_map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips_and_rejects_junk() {
        let vm = VmId(513);
        let states = [
            PageState::KCore,
            PageState::VmTable { vm },
            PageState::Host,
            PageState::HostPinned { pins: 1 },
            PageState::HostPinned { pins: u32::MAX },
            PageState::HostSharedWithGuest {
                vm,
                gfn: Gfn(PageState::MAX_GFN),
            },
            PageState::Guest {
                vm: VmId(0),
                gfn: Gfn(0),
            },
            PageState::GuestSharedWithHost {
                vm: VmId(u16::MAX),
                gfn: Gfn(0x4_0000),
            },
        ];
        for s in states {
            assert_eq!(PageState::unpack(s.pack()), Some(s), "{s:?}");
        }
        for junk in [
            0,
            7,
            15,
            1 | 1 << 4,
            3 | 1 << 20,
            2 | 1 << 20,
            7 | 1 << 4 | 1 << 20,
            7 | 1 << 52,
        ] {
            assert_eq!(PageState::unpack(junk), None, "{junk:#x}");
        }
    }

    #[test]
    fn banks_with_holes_index_correctly() {
        let mut banks = RangeSet::<4>::new();
        banks
            .insert(MemRange::new(0x8000_0000, 0x4000).unwrap())
            .unwrap();
        banks
            .insert(MemRange::new(0x4000_0000, 0x2000).unwrap())
            .unwrap();
        assert_eq!(OwnershipTable::<[u64; 6], 4>::entries_needed(&banks), 6);
        assert_eq!(
            OwnershipTable::new([0u64; 5], banks).err(),
            Some(OwnershipError::StorageTooSmall { needed: 6 })
        );
        let mut t = OwnershipTable::new([0u64; 6], banks).unwrap();
        assert_eq!(t.get(Pfn(0x4_0000)), Some(PageState::Host));
        assert_eq!(t.get(Pfn(0x4_0002)), None, "hole");
        assert_eq!(t.get(Pfn(0x8_0003)), Some(PageState::Host));
        assert_eq!(t.get(Pfn(0x8_0004)), None);
        t.mark_kcore(MemRange::new(0x8000_1000, 0x10).unwrap())
            .unwrap();
        assert_eq!(t.get(Pfn(0x8_0001)), Some(PageState::KCore));
        assert_eq!(t.get(Pfn(0x8_0000)), Some(PageState::Host));
        assert_eq!(
            t.mark_kcore(MemRange::new(0x4000_1000, 0x2000).unwrap()),
            Err(OwnershipError::NotRam)
        );
        assert_eq!(
            t.get(Pfn(0x4_0001)),
            Some(PageState::Host),
            "a refused mark changes nothing"
        );
        assert_eq!(t.iter().count(), 6);
        assert!(!t.host_may_map_range(MemRange::new(0x8000_0000, 0x2000).unwrap()));
        assert!(t.host_may_map_range(MemRange::new(0x8000_2000, 0x2000).unwrap()));
        assert!(
            !t.host_may_map_range(MemRange::new(0x8000_2000, 0x3000).unwrap()),
            "past RAM"
        );
        let guest = PageState::Guest {
            vm: VmId(1),
            gfn: Gfn(7),
        };
        assert!(t.set(Pfn(0x8_0003), guest));
        assert!(
            !t.host_may_map_range(MemRange::new(0x8000_2000, 0x2000).unwrap()),
            "a guest's page in the range"
        );
        assert!(t.set(
            Pfn(0x8_0003),
            PageState::HostSharedWithGuest {
                vm: VmId(1),
                gfn: Gfn(7),
            },
        ));
        assert!(t.host_may_map_range(MemRange::new(0x8000_2000, 0x2000).unwrap()));
    }

    #[test]
    fn table_pages_and_non_ram_writes() {
        let mut banks = RangeSet::<4>::new();
        banks
            .insert(MemRange::new(0x4000_0000, 0x4000).unwrap())
            .unwrap();
        let mut t = OwnershipTable::new([0u64; 4], banks).unwrap();
        assert!(!t.set(Pfn(0x4_0004), PageState::KCore), "past RAM");
        assert!(t.set(Pfn(0x4_0001), PageState::KCore));
        assert!(t.set(Pfn(0x4_0002), PageState::VmTable { vm: VmId(1) }));
        // KServ's stage 2 lives in KCore pages, a VM's in its own VmTable.
        assert!(t.holds_table(Pa(0x4000_1000), None));
        assert!(!t.holds_table(Pa(0x4000_1000), Some(VmId(1))));
        assert!(t.holds_table(Pa(0x4000_2000), Some(VmId(1))));
        assert!(!t.holds_table(Pa(0x4000_2000), Some(VmId(0))));
        assert!(!t.holds_table(Pa(0x4000_2000), None));
        assert!(!t.holds_table(Pa(0x4000_0000), None), "KServ's page");
        assert!(!t.holds_table(Pa(0x4000_4000), None), "past RAM");
    }
}
