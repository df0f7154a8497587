//! Dirty page logging for non-protected VMs: KServ write-protects pages it
//! shares with a VM (`host_protect_guest`); the guest's next write to one
//! is recorded by KCore in the run page's dirty ring and the page made
//! writable (the fast path, below) or, with the ring full, exits to KServ
//! as a memory fault marked
//! [`WRITE_PROTECTED`](kcore_abi::run::exit_flags::WRITE_PROTECTED), and
//! KServ, having recorded the page dirty, makes it writable again
//! (`host_unprotect_guest`).
//!
//! Neither call changes who owns a page: both act only on
//! `HostSharedWithGuest { v, gfn }` pages mapped at their recorded gfn, and
//! change only the write permission of that one stage-2 leaf (and a
//! software bit that tells a write-protected page from a read-only share).
//! A protected VM is refused (`Denied`): KServ neither shares with it nor
//! may learn where it writes.
//!
//! Each change is break-before-make: the leaf is invalidated
//! ([`PageTable::unmap_leaf`](crate::pgtable::PageTable::unmap_leaf)), the
//! TLBs of every CPU are invalidated for it, and only then is the new leaf
//! written, with tables that already exist (nothing is allocated). All of
//! it happens under KCore's lock; a vCPU running on another CPU that
//! touches the page in between takes a translation fault and exits as an
//! ordinary memory fault, which KServ answers by running it again. After
//! the flush no CPU can write a write-protected page.
//!
//! A guest's write permission fault is classified under the lock too
//! ([`MemCore::vcpu_write_fault`]), against the stage 2 as it is then: the
//! page may have been made writable, unshared or re-shared by another CPU
//! since the fault.
//!
//! The fast path (ABI 0.14): a write to a page KCore write-protected for
//! dirty logging does not leave the guest while the dirty ring of the
//! vCPU's run page has room. KCore makes the page writable, as
//! `host_unprotect_guest` would, appends its gfn to the ring
//! ([`kcore_abi::run::DIRTY_RING`]) and re-enters the guest, which repeats
//! the write; KServ drains the ring into its dirty bitmaps. Only a full
//! ring (or counts KServ corrupted) makes the write exit as before. The
//! change is only ever to a `HostSharedWithGuest` page of the VM at its
//! recorded gfn whose leaf carries the dirty-log bit, so a read-only share
//! stays read-only and a protected VM never gets here; the only KServ
//! memory written is the ring of the run page the vCPU's load pinned.

use crate::addr::{Gfn, Ipa, PAGE_SHIFT, PAGE_SIZE, Pa, Pfn};
use crate::hw::{Hardware, PageAllocator, TableMemory};
use crate::mem_protect::MemCore;
use crate::ownership::PageState;
use crate::pgtable::{Attrs, Leaf, MemKind};
use crate::vcpu::{Loaded, WriteFault};
use crate::vm::{VmId, VmKind, VmState};
use kcore_abi::run;
use kcore_abi::{Error, MAX_PROTECT_PAGES};

/// Pages `host_protect_guest` changes at a time (its stack holds them).
const BATCH: usize = 64;
/// More pages than this in one batch are flushed from the TLBs by VMID
/// instead of one IPA at a time.
const FLUSH_BY_IPA_MAX: usize = 16;

/// No pages: a leaf is only ever re-made where its tables still exist.
struct NoTables;

impl PageAllocator for NoTables {
    fn alloc_page(&mut self) -> Option<Pa> {
        None
    }
    fn free_pages(&self) -> usize {
        0
    }
}

/// What the leaf at a gfn of a VM is, for dirty logging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shared {
    /// A 4 KiB page KServ shares with the VM at this gfn, with these
    /// attributes.
    Page(Pfn, Attrs),
    /// Nothing is mapped there.
    Unmapped,
    /// Something else, mapped with these attributes: the VM's own page, or
    /// not a page leaf.
    Other(Attrs),
}

impl<S: AsRef<[u64]> + AsMut<[u64]>, const BANKS: usize, const VMS: usize> MemCore<S, BANKS, VMS> {
    /// A live, non-dying, non-protected VM's id; `NotFound`, `Denied`.
    fn logged_vm(&self, handle: u64) -> Result<VmId, Error> {
        let (id, vm) = self.live_vm(handle)?;
        if vm.state == VmState::Dying || vm.kind != VmKind::NonProtected {
            return Err(Error::Denied);
        }
        Ok(id)
    }

    /// The leaf at `gfn` of VM `id` (live, not dying), classified; a walk
    /// that meets a corrupt table is counted and `Denied`.
    fn shared_at(&self, id: VmId, gfn: Gfn, hw: &impl TableMemory) -> Result<Shared, Error> {
        let leaf = self.leaf_at(id, gfn, hw)?;
        let Some(Leaf { pa, level, attrs }) = leaf else {
            return Ok(Shared::Unmapped);
        };
        let pfn = Pfn::of(pa);
        let shared = matches!(
            self.owners.get(pfn),
            Some(PageState::HostSharedWithGuest { vm: v, gfn: g }) if v == id && g == gfn
        );
        Ok(if shared && level == 3 && attrs.kind == MemKind::Normal {
            Shared::Page(pfn, attrs)
        } else {
            Shared::Other(attrs)
        })
    }

    /// The break of break-before-make: VM `id`'s leaf at `gfn` invalidated
    /// and, with `flush`, that IPA flushed from every CPU's TLBs (else the
    /// caller flushes the VMID before [`Self::remake`]). Whether there was
    /// a leaf.
    fn unmake(&mut self, id: VmId, gfn: Gfn, flush: bool, hw: &mut impl Hardware) -> bool {
        let ipa = gfn.0 << PAGE_SHIFT;
        let owners = &self.owners;
        let is_table = |p| owners.holds_table(p, Some(id));
        let Some(vm) = self.vms.get_mut(id) else {
            return false;
        };
        match vm.stage2.unmap_leaf(hw, &is_table, ipa) {
            Ok(Some(_)) => {
                if flush {
                    hw.flush_ipa(id.vmid(), Ipa(ipa));
                }
                true
            }
            Ok(None) | Err(_) => false,
        }
    }

    /// The second half of [`Self::unmake`]: the page at `gfn` mapped to
    /// `pfn` with `attrs`, in tables that exist.
    fn remake(
        &mut self,
        id: VmId,
        gfn: Gfn,
        pfn: Pfn,
        attrs: Attrs,
        hw: &mut impl Hardware,
    ) -> bool {
        let ipa = gfn.0 << PAGE_SHIFT;
        let owners = &self.owners;
        let is_table = |p| owners.holds_table(p, Some(id));
        let (Some(vm), Some(pa)) = (self.vms.get_mut(id), pfn.pa()) else {
            return false;
        };
        vm.stage2
            .map(hw, &mut NoTables, &is_table, ipa, pa, PAGE_SIZE, attrs)
            .is_ok()
    }

    /// `host_protect_guest`: write-protects, for dirty logging, every page
    /// of `[gfn, gfn + pages)` that KServ shares writable with the
    /// non-protected VM `handle`; returns how many. Other pages of the
    /// range are left alone. `NotFound` for no such VM, `Denied` for a
    /// protected or dying one (or a corrupt table on the way),
    /// `InvalidParameter` for an empty range, one of more than
    /// [`MAX_PROTECT_PAGES`] or one leaving the IPA space. Every walk is
    /// made before anything changes, so a refused call changes nothing.
    pub fn host_protect_guest(
        &mut self,
        handle: u64,
        gfn: u64,
        pages: u64,
        hw: &mut impl Hardware,
    ) -> Result<u64, Error> {
        let id = self.logged_vm(handle)?;
        if pages == 0 || pages > MAX_PROTECT_PAGES {
            return Err(Error::InvalidParameter);
        }
        let vm = self.vms.get(id).ok_or(Error::NotFound)?;
        let first = Self::guest_gfn(vm, gfn)?;
        let last = gfn.checked_add(pages - 1).ok_or(Error::InvalidParameter)?;
        Self::guest_gfn(vm, last)?;
        // Check: every walk succeeds (a corrupt table refuses the call
        // before anything changed).
        for i in 0..pages {
            self.shared_at(id, Gfn(first.0 + i), hw)?;
        }
        // Commit, a batch at a time: break, flush, make.
        let mut batch = [(Gfn(0), Pfn(0)); BATCH];
        let mut done = 0;
        let mut as_checked = true;
        let mut i = 0;
        while i < pages {
            let mut n = 0;
            while i < pages && n < BATCH {
                let g = Gfn(first.0 + i);
                match self.shared_at(id, g, hw) {
                    Ok(Shared::Page(pfn, attrs)) if attrs.write => {
                        batch[n] = (g, pfn);
                        n += 1;
                    }
                    Ok(_) => {}
                    Err(_) => as_checked = false,
                }
                i += 1;
            }
            let by_ipa = n <= FLUSH_BY_IPA_MAX;
            for &(g, _) in &batch[..n] {
                as_checked &= self.unmake(id, g, by_ipa, hw);
            }
            if !by_ipa {
                hw.flush_vmid(id.vmid());
            }
            for &(g, pfn) in &batch[..n] {
                as_checked &= self.remake(id, g, pfn, Attrs::RAM_RX_LOGGED, hw);
            }
            done += n as u64;
        }
        if !as_checked {
            // The walks above found every one of them mapped, through the
            // VM's own tables.
            self.broke();
        }
        Ok(done)
    }

    /// `host_unprotect_guest`: the page KServ shares with the non-protected
    /// VM `handle` at `gfn`, write-protected for dirty logging, becomes
    /// writable again. Returns 1, or 0 if it was writable already (another
    /// vCPU's fault on it came first). `NotFound` for no such VM or nothing
    /// mapped at `gfn`, `Denied` for a protected or dying VM or a page that
    /// is not a shared one of the VM's or is read-only because KServ
    /// shared it so, `InvalidParameter` for a gfn outside the IPA space.
    pub fn host_unprotect_guest(
        &mut self,
        handle: u64,
        gfn: u64,
        hw: &mut impl Hardware,
    ) -> Result<u64, Error> {
        let id = self.logged_vm(handle)?;
        let vm = self.vms.get(id).ok_or(Error::NotFound)?;
        let gfn = Self::guest_gfn(vm, gfn)?;
        let (pfn, attrs) = match self.shared_at(id, gfn, hw)? {
            Shared::Page(pfn, attrs) => (pfn, attrs),
            Shared::Unmapped => return Err(Error::NotFound),
            Shared::Other(_) => return Err(Error::Denied),
        };
        if attrs.write {
            return Ok(0);
        }
        if !attrs.dirty_log {
            return Err(Error::Denied);
        }
        self.make_writable(id, gfn, (pfn, attrs), hw);
        Ok(1)
    }

    /// VM `id`'s page at `gfn`, shared from `at.0` and write-protected for
    /// dirty logging with attributes `at.1` (as [`Self::shared_at`] found it just
    /// now, under this same lock), made writable: break, flush the IPA on
    /// every CPU, make. The flush also drops any TLB entry of the old
    /// read-only leaf, so no CPU keeps faulting on a page that is
    /// writable.
    fn make_writable(&mut self, id: VmId, gfn: Gfn, at: (Pfn, Attrs), hw: &mut impl Hardware) {
        let (pfn, attrs) = at;
        let writable = Attrs {
            write: true,
            dirty_log: false,
            ..attrs
        };
        let done = self.unmake(id, gfn, true, hw) && self.remake(id, gfn, pfn, writable, hw);
        if !done {
            // Found mapped through the VM's own tables by the caller.
            self.broke();
        }
    }

    /// A write permission fault of the loaded non-protected vCPU `l` at
    /// `ipa`, classified under KCore's lock against the VM's stage 2 as it
    /// is now: a page write-protected for dirty logging, a read-only share
    /// (emulated as MMIO), or neither any more (the guest retries). A
    /// write-protected page is made writable and its gfn appended to the
    /// dirty ring of `l`'s run page when the ring has room
    /// ([`WriteFault::Recorded`]); otherwise it
    /// exits to KServ as before ([`WriteFault::Logged`]).
    pub fn vcpu_write_fault(&mut self, l: &Loaded, ipa: u64, hw: &mut impl Hardware) -> WriteFault {
        let live = self
            .vms
            .get(l.vm)
            .is_some_and(|vm| vm.state != VmState::Dying && vm.kind == VmKind::NonProtected);
        if !live || ipa >= l.ipa_limit {
            return WriteFault::Retry;
        }
        let gfn = Gfn(ipa >> PAGE_SHIFT);
        match self.shared_at(l.vm, gfn, hw) {
            Ok(Shared::Page(_, a) | Shared::Other(a)) if a.write => WriteFault::Retry,
            Ok(Shared::Page(pfn, a)) if a.dirty_log => self.record_write(l, gfn, pfn, a, hw),
            Ok(Shared::Unmapped) => WriteFault::Retry,
            // A read-only share, or anything KServ must sort out (a table
            // KCore found corrupt, counted): an exit.
            Ok(_) | Err(_) => WriteFault::ReadOnly,
        }
    }

    /// The fast path of dirty logging: the guest of `l` wrote its page at
    /// `gfn`, shared from `pfn` and write-protected for dirty logging with
    /// `attrs`. If the dirty ring of `l`'s run page has room
    /// ([`run::dirty_room`] of the counts read from the page: any values
    /// KServ left there are safe, a bad pair reads as full), the page
    /// becomes writable, the gfn is appended and the guest repeats the
    /// write without an exit ([`WriteFault::Recorded`]). Otherwise, or if
    /// the run page is not the one the load pinned (a KCore bug, counted),
    /// nothing changes and the write exits ([`WriteFault::Logged`]).
    ///
    /// The entry is written before the new producer count, with a store
    /// barrier between, so KServ draining the ring on another CPU (without
    /// KCore's lock) never reads an entry not yet written. Both happen
    /// under KCore's lock after the stage-2 change, so a `HostProtectGuest`
    /// either comes before all of it (and the write finds the page
    /// write-protected) or after all of it.
    fn record_write(
        &mut self,
        l: &Loaded,
        gfn: Gfn,
        pfn: Pfn,
        attrs: Attrs,
        hw: &mut impl Hardware,
    ) -> WriteFault {
        if self.run_page_pins(l).is_none() {
            self.broke();
            return WriteFault::Logged;
        }
        // The run page is page-aligned and every word below lies within
        // `run::PAGE_WORDS`, inside it.
        let word = |i: usize| Pa(l.run_page.raw() + 8 * i as u64);
        let mut counts = [0u64; 2];
        hw.read_words(word(run::DIRTY_HEAD), &mut counts);
        let [head, tail] = counts;
        if !run::dirty_room(head, tail) {
            return WriteFault::Logged;
        }
        self.make_writable(l.vm, gfn, (pfn, attrs), hw);
        hw.write_words(word(run::dirty_slot(head)), &[gfn.0]);
        hw.store_barrier();
        hw.write_words(word(run::DIRTY_HEAD), &[head.wrapping_add(1)]);
        WriteFault::Recorded
    }
}
