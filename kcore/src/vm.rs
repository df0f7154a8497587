//! VMs as KCore sees them: a slot, a kind, a life-cycle state, a stage-2
//! table, a bounded pool of table pages KServ donated for it and the
//! guest-physical ranges KServ emulates ([`MmioRanges`]).
//!
//! A VM's stage-2 tables come only from its own pool of pages KServ donated
//! for it, so one VM can never exhaust memory another needs; KServ tops a
//! pool up by donating more.
//! Slots are recycled: a handle carries a generation so that a stale handle
//! never reaches a new VM, and the hardware VMID (slot + 1) is invalidated in
//! the TLBs before a slot is reused.

use crate::addr::{Gfn, Pa};
use crate::hw::TableMemory;
use crate::pgtable::{PageTable, Stage2};

/// A VM's slot index inside KCore (never shown to KServ).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VmId(pub u16);

impl VmId {
    /// The hardware VMID of this slot (0 is KServ's).
    pub const fn vmid(self) -> u16 {
        self.0 + 1
    }
}

/// The handle KServ uses for a VM: `generation << 16 | (slot + 1)`; 0 is
/// never a handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VmHandle(pub u64);

impl VmHandle {
    /// The handle of `slot` in generation `generation`.
    pub const fn new(slot: VmId, generation: u32) -> VmHandle {
        VmHandle((generation as u64) << 16 | (slot.0 as u64 + 1))
    }
    /// The slot and generation a raw handle names, if well formed.
    pub const fn decode(raw: u64) -> Option<(VmId, u32)> {
        let slot = raw & 0xFFFF;
        if slot == 0 || raw >> 48 != 0 {
            return None;
        }
        Some((VmId((slot - 1) as u16), (raw >> 16) as u32))
    }
}

/// What KServ may do with a VM's memory and registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VmKind {
    /// KServ may neither read nor write its private memory or registers.
    Protected,
    /// KVM-compatible: KServ may share its own pages into it.
    NonProtected,
}

/// Where a VM is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VmState {
    /// Created: accepting memory; a protected VM still needs a verified image.
    Created,
    /// A protected VM whose image KCore verified: it may run.
    Verified,
    /// Image verification failed: the VM can never run; only teardown remains.
    Poisoned,
    /// Torn down: unmapped, cannot run; KServ reclaims its pages one by one.
    Dying,
}

/// The free table pages of one VM: a list threaded through the pages
/// themselves (word 0 of a free page holds the next one), so a VM's pool
/// costs KCore no memory of its own. The pages are KCore's (`VmTable`), so
/// KServ cannot touch the list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FreeList {
    head: u64,
    len: u64,
}

impl FreeList {
    /// An empty list.
    pub const fn new() -> Self {
        FreeList { head: 0, len: 0 }
    }
    /// Free pages.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether no page is free.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Adds a page (zeroing it).
    pub fn push(&mut self, mem: &mut impl TableMemory, page: Pa) {
        mem.zero_page(page);
        mem.write_entry(page, 0, self.head);
        self.head = page.raw();
        self.len += 1;
    }
    /// Takes a page (zeroed).
    pub fn pop(&mut self, mem: &mut impl TableMemory) -> Option<Pa> {
        if self.len == 0 {
            return None;
        }
        let page = Pa(self.head);
        self.head = mem.read_entry(page, 0);
        mem.write_entry(page, 0, 0);
        self.len -= 1;
        Some(page)
    }
}

/// Up to three table pages taken from a [`FreeList`] for one mapping: what
/// a 4 KiB mapping can need below the root.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reserved {
    pages: [Option<Pa>; 3],
}

impl Reserved {
    /// Takes `n` (at most 3) pages from `list`, or none if it holds fewer.
    pub fn take(list: &mut FreeList, mem: &mut impl TableMemory, n: usize) -> Option<Reserved> {
        if n > 3 || (list.len() as usize) < n {
            return None;
        }
        let mut r = Reserved::default();
        for slot in r.pages.iter_mut().take(n) {
            *slot = list.pop(mem);
        }
        Some(r)
    }
    /// Gives back what the mapping did not use.
    pub fn give_back(self, list: &mut FreeList, mem: &mut impl TableMemory) {
        for p in self.pages.into_iter().flatten() {
            list.push(mem, p);
        }
    }
}

impl crate::hw::PageAllocator for Reserved {
    fn alloc_page(&mut self) -> Option<Pa> {
        self.pages.iter_mut().find_map(Option::take)
    }
    fn free_pages(&self) -> usize {
        self.pages.iter().flatten().count()
    }
}

/// A VM's declared MMIO ranges, as gfn ranges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmioRanges {
    ranges: [(u64, u64); MAX_MMIO_RANGES],
    len: usize,
}

/// Most MMIO ranges per VM.
pub const MAX_MMIO_RANGES: usize = 16;

impl MmioRanges {
    /// Adds `pages` pages from `first`; false when the table is full.
    pub fn add(&mut self, first: Gfn, pages: u64) -> bool {
        if self.len >= MAX_MMIO_RANGES {
            return false;
        }
        self.ranges[self.len] = (first.0, first.0 + pages);
        self.len += 1;
        true
    }
    /// Whether `gfn` is inside a declared range.
    pub fn contains(&self, gfn: Gfn) -> bool {
        self.ranges[..self.len]
            .iter()
            .any(|&(a, b)| (a..b).contains(&gfn.0))
    }
}

/// One VM.
#[derive(Clone, Debug)]
pub struct Vm {
    /// KServ's handle for it.
    pub handle: VmHandle,
    /// Protected or not.
    pub kind: VmKind,
    /// Life-cycle state.
    pub state: VmState,
    /// Its stage 2 (root and tables in pages KServ donated, owned by KCore).
    pub stage2: PageTable<Stage2>,
    /// Free table pages.
    pub pool: FreeList,
    /// Most vCPUs it may have.
    pub max_vcpus: u16,
    /// Which vCPUs exist (bit `i` for vCPU `i`).
    pub vcpus: u64,
    /// Pages in state `Guest`/`GuestSharedWithHost` of this VM.
    pub owned_pages: u64,
    /// Pages in state `VmTable` of this VM.
    pub table_pages: u64,
    /// Pages in state `HostSharedWithGuest` with this VM.
    pub borrowed_pages: u64,
    /// The verified boot image (first gfn, length in bytes) of a protected
    /// VM in state [`VmState::Verified`]: its first PC must lie inside.
    pub image: Option<(Gfn, u64)>,
    /// The KCore page holding each vCPU's context (0: no such vCPU).
    pub vcpu_pages: [u64; MAX_VCPUS as usize],
    /// The version of each context page's contents: a number KCore never
    /// gives out twice, renewed whenever it writes the page (see
    /// [`crate::vcpu::CtxKey`]).
    pub ctx_versions: [u64; MAX_VCPUS as usize],
    /// vCPUs running on some CPU right now (bit `i` for vCPU `i`).
    pub loaded: u64,
    /// The run page (a pfn) of each running vCPU, pinned
    /// ([`crate::ownership::PageState::HostPinned`]) from its load to its
    /// put; meaningful only where `loaded` has the vCPU's bit.
    pub run_pages: [u64; MAX_VCPUS as usize],
    /// Whether any vCPU has run (a protected VM's MMIO ranges are frozen).
    pub ran: bool,
    /// The guest-physical ranges KServ emulates.
    pub mmio: MmioRanges,
    /// A protected VM's signed MMIO manifest, from its verified image's
    /// signature block: [`Self::mmio`] may only lie inside it (empty before
    /// verification and for non-protected VMs).
    pub manifest: kcore_abi::manifest::Manifest,
    /// Where the host's GICv2 `GICV` frame is mapped (its first gfn; two
    /// pages), once `host_set_vgic_cpu` set it ([`crate::gicv`]).
    pub gicv: Option<Gfn>,
    /// A protected VM's ITS and redistributor frames and the LPI tables
    /// its guest programmed there ([`crate::gic_tables`]).
    pub gic: crate::gic_tables::GicTables,
}

/// Most vCPUs a VM may have (a bitmap of 64).
pub const MAX_VCPUS: u16 = 64;

// Each vCPU's redistributor has its pending table in a VM's GIC tables.
const _: () = assert!(MAX_VCPUS as usize == crate::gic_tables::MAX_FRAMES);

/// The VM slots.
#[derive(Clone, Debug)]
pub struct Vms<const VMS: usize> {
    slots: [Option<Vm>; VMS],
    generations: [u32; VMS],
}

impl<const VMS: usize> Default for Vms<VMS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const VMS: usize> Vms<VMS> {
    /// No VMs.
    pub fn new() -> Self {
        Vms {
            slots: core::array::from_fn(|_| None),
            generations: [0; VMS],
        }
    }

    /// The VM a raw handle from KServ names, if it exists now.
    pub fn lookup(&self, raw: u64) -> Option<(VmId, &Vm)> {
        let (id, generation) = VmHandle::decode(raw)?;
        let vm = self.slots.get(id.0 as usize)?.as_ref()?;
        (self.generations[id.0 as usize] == generation).then_some((id, vm))
    }

    /// The VM in slot `id`.
    pub fn get(&self, id: VmId) -> Option<&Vm> {
        self.slots.get(id.0 as usize)?.as_ref()
    }

    /// The VM in slot `id`, mutably.
    pub fn get_mut(&mut self, id: VmId) -> Option<&mut Vm> {
        self.slots.get_mut(id.0 as usize)?.as_mut()
    }

    /// A free slot and the handle a VM created there would get.
    pub fn free_slot(&self) -> Option<(VmId, VmHandle)> {
        let i = self.slots.iter().position(Option::is_none)?;
        let id = VmId(i as u16);
        Some((id, VmHandle::new(id, self.generations[i])))
    }

    /// Puts `vm` in slot `id` (which [`Vms::free_slot`] returned). False if
    /// there is no such slot or it was not free (the VM in it is replaced):
    /// the caller counts a broken invariant.
    #[must_use]
    pub(crate) fn insert(&mut self, id: VmId, vm: Vm) -> bool {
        match self.slots.get_mut(id.0 as usize) {
            Some(s) => s.replace(vm).is_none(),
            None => false,
        }
    }

    /// Empties slot `id` and moves its generation on, so old handles die.
    pub(crate) fn remove(&mut self, id: VmId) {
        let i = id.0 as usize;
        if let Some(s) = self.slots.get_mut(i) {
            *s = None;
            self.generations[i] = self.generations[i].wrapping_add(1);
        }
    }

    /// Every VM.
    pub fn iter(&self) -> impl Iterator<Item = (VmId, &Vm)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((VmId(i as u16), s.as_ref()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_encode_slot_and_generation() {
        let h = VmHandle::new(VmId(3), 7);
        assert_eq!(VmHandle::decode(h.0), Some((VmId(3), 7)));
        assert_eq!(VmHandle::decode(0), None);
        assert_eq!(VmHandle::decode(1 << 48 | 1), None);
        assert_eq!(VmId(0).vmid(), 1);
    }
}
