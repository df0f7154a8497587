//! The only lawful ways for a page to change owner (DESIGN.md section 2).
//!
//! Every transition is split in two, as in pKVM's `mem_protect.c`: `check_*`
//! validates everything — the handle, the VM's state, that the page is RAM,
//! its current state, the guest frame, and that the VM's table pool holds
//! every table page the mapping can need — and returns a ticket; `commit_*`
//! consumes the ticket and cannot fail. A refused call therefore changes
//! nothing. Names follow `<initiator>_<verb>_<completer>`. Tickets are
//! neither `Copy` nor `Clone`: each is used by exactly one commit.
//!
//! A broken invariant is never silent. Where a commit finds the state other
//! than its check promised — the VM gone, a page not RAM, the pool short, a
//! mapping refused, a counter about to underflow — it does what it still
//! can, leaves the rest as it was and counts a broken invariant
//! ([`MemCore::broken_invariants`]): host tests, the fuzzer and the model
//! check fail on any, the EL2 glue logs it. Every walk of a stage 2 checks
//! each next-level table against the ownership table before it reads it
//! ([`crate::pgtable`], [`OwnershipTable::holds_table`]); a check that meets
//! a descriptor naming any other page counts a broken invariant too and
//! refuses with `Denied`.
//!
//! Ordering inside a commit keeps secrets from leaking even with other CPUs
//! running: a page leaves KServ's stage 2 (entry invalidated, TLBs flushed)
//! before a VM can map it, and a VM's page is scrubbed before KServ can map
//! it again.
//!
//! [`MemCore`]'s vCPU half — creating vCPUs, KServ's access to their
//! registers and MMIO ranges, and the load and put of `host_vcpu_run` that
//! pin and unpin its run page — is in [`crate::vcpu_mem`], which builds on
//! this module; this module does not depend on the vCPU code.

use crate::addr::{Gfn, Ipa, MemRange, PAGE_SHIFT, PAGE_SIZE, Pa, Pfn};
use crate::host_stage2::HostStage2;
use crate::hw::{Hardware, PhysMemory, TableMemory};
use crate::idregs::GuestIdRegs;
use crate::image::{self, Signature, VerifyKey};
use crate::ownership::{OwnershipTable, PageState};
use crate::pgtable::{Attrs, CorruptTable, Geometry, Leaf, PageTable};
use crate::vm::{
    FreeList, MAX_VCPUS, MmioRanges, Reserved, Vm, VmHandle, VmId, VmKind, VmState, Vms,
};
use core::sync::atomic::{AtomicU64, Ordering};
use kcore_abi::manifest::{self, Manifest};
use kcore_abi::{Error, call, share_flags, vm_flags};

/// KServ's VMID.
pub const HOST_VMID: u16 = 0;
/// Table pages one page mapping can need (levels 1-3 below a root).
const MAX_TABLES_PER_MAP: usize = 3;

/// The memory side of KCore: the ownership table, the VMs and KServ's stage 2.
#[derive(Clone, Debug)]
pub struct MemCore<S, const BANKS: usize, const VMS: usize> {
    /// The ownership table (crate-visible for the vCPU half,
    /// [`crate::vcpu_mem`], which pins and unpins run pages).
    pub(crate) owners: OwnershipTable<S, BANKS>,
    /// The VMs (crate-visible for the vCPU half).
    pub(crate) vms: Vms<VMS>,
    host: HostStage2<BANKS>,
    /// Largest IPA size a VM may ask for.
    max_ipa_bits: u32,
    /// The key protected VMs' images are checked against (from the boot image).
    verify_key: Option<VerifyKey>,
    /// The last context-page version given out ([`Vm::ctx_versions`];
    /// crate-visible for the vCPU half, which gives them out).
    pub(crate) ctx_writes: u64,
    /// How often a commit step found the state other than its check
    /// promised ([`Self::broken_invariants`]).
    broken: BrokenCount,
    /// The CPU as guests see it ([`crate::idregs`]).
    pub(crate) guest_ids: GuestIdRegs,
    /// How often [`Self::set_guest_id_regs`] ran: a vCPU load copies the
    /// view into its CPU's `Loaded` only when this changed.
    pub(crate) guest_ids_version: u64,
    /// A GICv2 host's virtual CPU interface frame (`GICV`), which
    /// `host_set_vgic_cpu` maps into VMs ([`crate::gicv`]).
    pub(crate) gicv: Option<Pa>,
}

/// The broken-invariant count. A check (`&self`) that finds a table
/// corrupt raises it too, hence an atomic; every step runs under KCore's
/// lock, so a load and a store suffice.
#[derive(Debug, Default)]
struct BrokenCount(AtomicU64);

impl BrokenCount {
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    fn raise(&self) {
        self.0
            .store(self.get().saturating_add(1), Ordering::Relaxed);
    }
}

impl Clone for BrokenCount {
    fn clone(&self) -> Self {
        BrokenCount(AtomicU64::new(self.get()))
    }
}

/// Arguments of `host_create_vm`, as decoded from registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateVm {
    /// Protected or not.
    pub kind: VmKind,
    /// Requested IPA size in bits (32..=the CPU's PA size); 0 for the default (40).
    pub ipa_bits: u32,
    /// Most vCPUs (1..=64).
    pub max_vcpus: u64,
    /// First of the pages KServ donates for the VM's stage-2 tables.
    pub pool: Pfn,
    /// How many (at least the root's pages).
    pub pool_pages: u64,
}

impl CreateVm {
    /// Decodes `host_create_vm`'s arguments: `InvalidParameter` for an
    /// unknown flag or an IPA size that does not fit.
    pub fn from_call(a: &call::HostCreateVm) -> Result<CreateVm, Error> {
        if a.flags & !vm_flags::ALL != 0 {
            return Err(Error::InvalidParameter);
        }
        let ipa_bits = u32::try_from(a.ipa_bits).map_err(|_| Error::InvalidParameter)?;
        Ok(CreateVm {
            kind: if a.flags & vm_flags::PROTECTED != 0 {
                VmKind::Protected
            } else {
                VmKind::NonProtected
            },
            ipa_bits,
            max_vcpus: a.max_vcpus,
            pool: Pfn(a.pool_pfn),
            pool_pages: a.pool_pages,
        })
    }
}

/// A checked `host_create_vm`.
#[derive(Debug)]
pub struct CreateVmTicket {
    id: VmId,
    handle: VmHandle,
    kind: VmKind,
    geometry: Geometry,
    pages: MemRange,
    max_vcpus: u16,
}

/// A checked page transition: the VM, the page and where the VM sees it.
#[derive(Debug, PartialEq, Eq)]
pub struct PageTicket {
    vm: VmId,
    pfn: Pfn,
    gfn: Gfn,
    /// How the VM maps it (guest memory: read-write, or read-only for a
    /// read-only share, or write-protected for dirty logging).
    attrs: Attrs,
}

/// A checked `host_reclaim_page`.
#[derive(Debug, PartialEq, Eq)]
pub struct ReclaimTicket {
    vm: VmId,
    pfn: Pfn,
    was: PageState,
}

/// Most pages one `host_create_vm` may donate (1 GiB): bounds the time the
/// call takes. More can follow with `host_donate_vm_pool`.
pub const MAX_POOL_DONATION: u64 = 1 << 18;

/// Default IPA size of a VM.
pub const DEFAULT_IPA_BITS: u32 = 40;

impl<S: AsRef<[u64]> + AsMut<[u64]>, const BANKS: usize, const VMS: usize> MemCore<S, BANKS, VMS> {
    /// Puts the pieces together: `owners` must already mark KCore's pages and
    /// `host` map what KServ may use. `pa_bits` is the CPU's PA size.
    pub fn new(owners: OwnershipTable<S, BANKS>, host: HostStage2<BANKS>, pa_bits: u32) -> Self {
        MemCore {
            owners,
            vms: Vms::new(),
            host,
            max_ipa_bits: pa_bits.min(48),
            verify_key: None,
            ctx_writes: 0,
            broken: BrokenCount::default(),
            guest_ids: GuestIdRegs::EMPTY,
            guest_ids_version: 0,
            gicv: None,
        }
    }

    /// Installs the guests' view of the CPU's ID registers (made at boot by
    /// [`GuestIdRegs::sanitise`]; all zero until then).
    pub fn set_guest_id_regs(&mut self, ids: GuestIdRegs) {
        self.guest_ids = ids;
        self.guest_ids_version += 1;
    }

    /// The guests' view of the CPU's ID registers, which their trapped
    /// reads and `HostGuestIdReg` answer from.
    pub fn guest_id_regs(&self) -> &GuestIdRegs {
        &self.guest_ids
    }

    /// Installs the key protected VMs' images are checked against.
    pub fn set_verify_key(&mut self, key: VerifyKey) {
        self.verify_key = Some(key);
    }

    /// How often a step found KCore's state other than its own checks had
    /// promised (a pinned run page that is no longer pinned at the put, a
    /// VM gone between its check and its commit, a stage-2 descriptor that
    /// names a page that is not one of that stage 2's tables, ...).
    /// Always 0 unless KCore has a bug: host tests, the fuzzer and the model
    /// check require 0 ([`crate::audit`] reports anything else); at EL2 the
    /// trap glue logs it after every trap, rate-limited.
    pub fn broken_invariants(&self) -> u64 {
        self.broken.get()
    }

    /// Records a broken invariant (see [`Self::broken_invariants`]). Takes
    /// `&self` so that a check which finds a table corrupt can record it.
    pub(crate) fn broke(&self) {
        self.broken.raise();
    }

    /// A check found a stage-2 table corrupt (a descriptor naming a page
    /// that is not one of its tables): counted, and the call refused.
    fn corrupt(&self) -> Error {
        self.broke();
        Error::Denied
    }

    /// Sets a page's state in a commit: its check found the page to be RAM,
    /// so a page the table does not cover is a broken invariant.
    pub(crate) fn set_owner(&mut self, pfn: Pfn, state: PageState) {
        if !self.owners.set(pfn, state) {
            self.broke();
        }
    }

    /// The ownership table.
    pub fn owners(&self) -> &OwnershipTable<S, BANKS> {
        &self.owners
    }
    /// The VMs.
    pub fn vms(&self) -> &Vms<VMS> {
        &self.vms
    }
    /// KServ's stage 2.
    pub fn host(&self) -> &HostStage2<BANKS> {
        &self.host
    }
    /// KServ's stage 2, mutably (its abort handling).
    pub(crate) fn host_mut(&mut self) -> (&mut HostStage2<BANKS>, &OwnershipTable<S, BANKS>) {
        (&mut self.host, &self.owners)
    }

    /// The VM a raw handle from KServ names, if it exists now.
    pub(crate) fn live_vm(&self, handle: u64) -> Result<(VmId, &Vm), Error> {
        self.vms.lookup(handle).ok_or(Error::NotFound)
    }

    /// A page of RAM and its state; `InvalidParameter` outside RAM.
    pub(crate) fn ram_page(&self, pfn: u64) -> Result<(Pfn, PageState), Error> {
        let pfn = Pfn(pfn);
        self.owners
            .get(pfn)
            .map(|s| (pfn, s))
            .ok_or(Error::InvalidParameter)
    }

    /// Whether a KServ page in `state` may leave KServ (become a VM's page,
    /// a table or part of a pool): only a [`PageState::Host`] page; a pinned
    /// one is `Busy` until KCore is done with it, anything else `Denied`.
    fn host_page_to_give(state: PageState) -> Result<(), Error> {
        match state {
            PageState::Host => Ok(()),
            PageState::HostPinned { .. } => Err(Error::Busy),
            _ => Err(Error::Denied),
        }
    }

    /// `gfn`, if it lies inside `vm`'s IPA space.
    pub(crate) fn guest_gfn(vm: &Vm, gfn: u64) -> Result<Gfn, Error> {
        let ipa = Gfn(gfn).ipa().ok_or(Error::InvalidParameter)?;
        if ipa.raw() >= vm.stage2.geometry().input_limit() {
            return Err(Error::InvalidParameter);
        }
        Ok(Gfn(gfn))
    }

    /// The leaf that maps `gfn` in the stage 2 of VM `id` (live; not
    /// dying, whose tables may be KServ's already), if any; a walk that
    /// meets a corrupt table is counted and `Denied`.
    pub(crate) fn leaf_at(
        &self,
        id: VmId,
        gfn: Gfn,
        hw: &impl TableMemory,
    ) -> Result<Option<Leaf>, Error> {
        let vm = self.vms.get(id).ok_or(Error::NotFound)?;
        vm.stage2
            .walk(
                hw,
                &|t| self.owners.holds_table(t, Some(id)),
                gfn.0 << PAGE_SHIFT,
            )
            .map_err(|_| self.corrupt())
    }

    /// Removes `pfn` from KServ's stage 2 (the whole leaf that maps it: KServ
    /// re-faults the rest in) and flushes the TLBs.
    fn host_unmap(&mut self, hw: &mut impl Hardware, pfn: Pfn) {
        let pa = pfn.0 << PAGE_SHIFT;
        let owners = &self.owners;
        let pages = self.host.table_pages();
        let is_table = |t| pages.holds(owners, t);
        match self.host.table_mut().unmap_leaf(hw, &is_table, pa) {
            Ok(Some((base, _))) => hw.flush_ipa(HOST_VMID, Ipa(base)),
            // KServ maps lazily: it may never have touched the page.
            Ok(None) => {}
            // KServ's stage 2 is corrupt on the way to `pa`: nothing behind
            // the descriptor was touched.
            Err(_) => self.broke(),
        }
    }

    // ---- host_create_vm -------------------------------------------------------

    /// Checks `host_create_vm`.
    pub fn check_create_vm(&self, a: &CreateVm) -> Result<CreateVmTicket, Error> {
        let ipa_bits = if a.ipa_bits == 0 {
            DEFAULT_IPA_BITS.min(self.max_ipa_bits)
        } else {
            a.ipa_bits
        };
        if ipa_bits < 32 || ipa_bits > self.max_ipa_bits {
            return Err(Error::InvalidParameter);
        }
        let geometry = Geometry::stage2(ipa_bits).ok_or(Error::InvalidParameter)?;
        // A GICv2 names at most 8 CPUs (`GICD_ITARGETSR`, an SGI's source).
        let most = if self.gicv.is_some() {
            8
        } else {
            MAX_VCPUS as u64
        };
        if a.max_vcpus == 0 || a.max_vcpus > most {
            return Err(Error::InvalidParameter);
        }
        let root = geometry.root_tables() as u64;
        if a.pool_pages < root || a.pool_pages > MAX_POOL_DONATION {
            return Err(Error::InvalidParameter);
        }
        let base = a.pool.pa().ok_or(Error::InvalidParameter)?;
        // The concatenated root must be aligned to its size.
        if !base.is_aligned(root * PAGE_SIZE) {
            return Err(Error::InvalidParameter);
        }
        let bytes = a
            .pool_pages
            .checked_mul(PAGE_SIZE)
            .ok_or(Error::InvalidParameter)?;
        let pages = MemRange::new(base.raw(), bytes).ok_or(Error::InvalidParameter)?;
        for i in 0..a.pool_pages {
            match self.owners.get(Pfn(a.pool.0 + i)) {
                Some(PageState::Host) => {}
                Some(PageState::HostPinned { .. }) => return Err(Error::Busy),
                Some(_) => return Err(Error::Denied),
                None => return Err(Error::InvalidParameter),
            }
        }
        let (id, handle) = self.vms.free_slot().ok_or(Error::NoMemory)?;
        Ok(CreateVmTicket {
            id,
            handle,
            kind: a.kind,
            geometry,
            pages,
            max_vcpus: a.max_vcpus as u16,
        })
    }

    /// Commits `host_create_vm`: the pages become the VM's table pages.
    pub fn commit_create_vm(&mut self, t: CreateVmTicket, hw: &mut impl Hardware) -> VmHandle {
        let first = Pfn::of(Pa(t.pages.base()));
        let count = t.pages.size() >> PAGE_SHIFT;
        for i in 0..count {
            let pfn = Pfn(first.0 + i);
            self.host_unmap(hw, pfn);
            self.set_owner(pfn, PageState::VmTable { vm: t.id });
        }
        let root_pages = t.geometry.root_tables() as u64;
        for i in 0..root_pages {
            hw.zero_page(Pa(t.pages.base() + i * PAGE_SIZE));
        }
        let mut pool = FreeList::new();
        for i in root_pages..count {
            pool.push(hw, Pa(t.pages.base() + i * PAGE_SIZE));
        }
        // The VMID may have been used by an earlier VM in this slot.
        hw.flush_vmid(t.id.vmid());
        let inserted = self.vms.insert(
            t.id,
            Vm {
                handle: t.handle,
                kind: t.kind,
                state: VmState::Created,
                stage2: PageTable::new(Pa(t.pages.base()), t.geometry),
                pool,
                max_vcpus: t.max_vcpus,
                vcpus: 0,
                owned_pages: 0,
                table_pages: count,
                borrowed_pages: 0,
                image: None,
                vcpu_pages: [0; MAX_VCPUS as usize],
                ctx_versions: [0; MAX_VCPUS as usize],
                loaded: 0,
                run_pages: [0; MAX_VCPUS as usize],
                ran: false,
                mmio: MmioRanges::default(),
                manifest: Manifest::default(),
                gicv: None,
                gic: crate::gic_tables::GicTables::new(),
            },
        );
        if !inserted {
            // The check found the slot free.
            self.broke();
        }
        t.handle
    }

    // ---- host_donate_vm_pool ----------------------------------------------------

    /// Checks `host_donate_vm_pool`: one more table page for a VM.
    pub fn check_donate_vm_pool(&self, handle: u64, pfn: u64) -> Result<PageTicket, Error> {
        let (id, vm) = self.live_vm(handle)?;
        if vm.state == VmState::Dying {
            return Err(Error::Denied);
        }
        let (pfn, state) = self.ram_page(pfn)?;
        Self::host_page_to_give(state)?;
        Ok(PageTicket {
            vm: id,
            pfn,
            gfn: Gfn(0),
            attrs: Attrs::RAM_RWX,
        })
    }

    /// Commits `host_donate_vm_pool`.
    pub fn commit_donate_vm_pool(&mut self, t: PageTicket, hw: &mut impl Hardware) {
        self.host_unmap(hw, t.pfn);
        self.set_owner(t.pfn, PageState::VmTable { vm: t.vm });
        if let (Some(vm), Some(pa)) = (self.vms.get_mut(t.vm), t.pfn.pa()) {
            vm.pool.push(hw, pa);
            vm.table_pages += 1;
        } else {
            // The check found the VM live and the page RAM.
            self.broke();
        }
    }

    // ---- host_donate_guest / host_share_guest ------------------------------------

    fn check_host_to_guest(
        &self,
        handle: u64,
        pfn: u64,
        gfn: u64,
        hw: &impl TableMemory,
    ) -> Result<PageTicket, Error> {
        let (id, vm) = self.live_vm(handle)?;
        if matches!(vm.state, VmState::Dying | VmState::Poisoned) {
            return Err(Error::Denied);
        }
        let (pfn, state) = self.ram_page(pfn)?;
        let gfn = Self::guest_gfn(vm, gfn)?;
        Self::host_page_to_give(state)?;
        // No memory where KServ emulates devices: the guest's accesses there
        // are to be exits, never reads of a page KServ chose.
        if vm.mmio.contains(gfn) || vm.manifest.contains(gfn.0) {
            return Err(Error::Denied);
        }
        let ipa = gfn.0 << PAGE_SHIFT;
        let is_table = |t| self.owners.holds_table(t, Some(id));
        match vm.stage2.walk(hw, &is_table, ipa) {
            Ok(None) => {}
            Ok(Some(_)) => return Err(Error::Busy),
            Err(_) => return Err(self.corrupt()),
        }
        let needed = vm
            .stage2
            .tables_needed(hw, &is_table, ipa)
            .map_err(|_| self.corrupt())?;
        if (vm.pool.len() as usize) < needed.min(MAX_TABLES_PER_MAP) {
            return Err(Error::NoMemory);
        }
        Ok(PageTicket {
            vm: id,
            pfn,
            gfn,
            attrs: Attrs::RAM_RWX,
        })
    }

    /// Maps `t`'s page into its VM at its gfn, then `count`s it in the VM.
    fn guest_map(&mut self, hw: &mut impl Hardware, t: &PageTicket, count: impl FnOnce(&mut Vm)) {
        let (Some(vm), Some(pa)) = (self.vms.get_mut(t.vm), t.pfn.pa()) else {
            // The check found the VM live and the page RAM.
            self.broke();
            return;
        };
        hw.sync_for_guest(pa);
        let ipa = t.gfn.0 << PAGE_SHIFT;
        let owners = &self.owners;
        let is_table = |p| owners.holds_table(p, Some(t.vm));
        let attrs = t.attrs;
        // Cannot fail: the check walked to the gfn through the VM's own
        // tables, saw it unmapped and the pool holding every table page
        // the mapping needs.
        let mapped = match vm.stage2.tables_needed(hw, &is_table, ipa) {
            Ok(needed) => match Reserved::take(&mut vm.pool, hw, needed) {
                Some(mut reserved) => {
                    let r = vm
                        .stage2
                        .map(hw, &mut reserved, &is_table, ipa, pa, PAGE_SIZE, attrs);
                    reserved.give_back(&mut vm.pool, hw);
                    r.is_ok()
                }
                None => false,
            },
            Err(_) => false,
        };
        count(vm);
        if !mapped {
            self.broke();
        }
    }

    /// Checks `host_donate_guest`: a KServ page becomes the VM's at `gfn`.
    pub fn check_host_donate_guest(
        &self,
        handle: u64,
        pfn: u64,
        gfn: u64,
        hw: &impl TableMemory,
    ) -> Result<PageTicket, Error> {
        self.check_host_to_guest(handle, pfn, gfn, hw)
    }

    /// Commits `host_donate_guest`: out of KServ's stage 2 first, then into
    /// the VM's.
    pub fn commit_host_donate_guest(&mut self, t: PageTicket, hw: &mut impl Hardware) {
        self.host_unmap(hw, t.pfn);
        self.set_owner(
            t.pfn,
            PageState::Guest {
                vm: t.vm,
                gfn: t.gfn,
            },
        );
        self.guest_map(hw, &t, |vm| vm.owned_pages += 1);
    }

    /// Checks `host_share_guest`: a KServ page is also mapped in a
    /// non-protected VM at `gfn`.
    pub fn check_host_share_guest(
        &self,
        handle: u64,
        pfn: u64,
        gfn: u64,
        flags: u64,
        hw: &impl TableMemory,
    ) -> Result<PageTicket, Error> {
        let t = self.check_host_to_guest(handle, pfn, gfn, hw)?;
        let attrs = match flags {
            0 => Attrs::RAM_RWX,
            share_flags::READ_ONLY => Attrs::RAM_RX,
            share_flags::WRITE_PROTECT => Attrs::RAM_RX_LOGGED,
            _ => return Err(Error::InvalidParameter),
        };
        match self.vms.get(t.vm).map(|v| v.kind) {
            Some(VmKind::NonProtected) => Ok(PageTicket { attrs, ..t }),
            _ => Err(Error::Denied),
        }
    }

    /// Commits `host_share_guest`.
    pub fn commit_host_share_guest(&mut self, t: PageTicket, hw: &mut impl Hardware) {
        self.set_owner(
            t.pfn,
            PageState::HostSharedWithGuest {
                vm: t.vm,
                gfn: t.gfn,
            },
        );
        self.guest_map(hw, &t, |vm| vm.borrowed_pages += 1);
    }

    /// Checks `host_unshare_guest`: ends a `host_share_guest` of `gfn`.
    pub fn check_host_unshare_guest(
        &self,
        handle: u64,
        gfn: u64,
        hw: &impl TableMemory,
    ) -> Result<PageTicket, Error> {
        let (id, vm) = self.live_vm(handle)?;
        // A dying VM's tables may already be KServ's again: never walk them.
        if vm.state == VmState::Dying {
            return Err(Error::Denied);
        }
        let gfn = Self::guest_gfn(vm, gfn)?;
        let leaf = self.leaf_at(id, gfn, hw)?.ok_or(Error::NotFound)?;
        let pfn = Pfn::of(leaf.pa);
        match self.owners.get(pfn) {
            Some(PageState::HostSharedWithGuest { vm: v, gfn: g }) if v == id && g == gfn => {
                Ok(PageTicket {
                    vm: id,
                    pfn,
                    gfn,
                    attrs: Attrs::RAM_RWX,
                })
            }
            _ => Err(Error::Denied),
        }
    }

    /// Commits `host_unshare_guest`: out of the VM's stage 2, back to KServ alone.
    pub fn commit_host_unshare_guest(&mut self, t: PageTicket, hw: &mut impl Hardware) {
        let ipa = t.gfn.0 << PAGE_SHIFT;
        let owners = &self.owners;
        let is_table = |p| owners.holds_table(p, Some(t.vm));
        // The check found the VM live, the page mapped at the gfn through
        // its own tables and borrowed (so counted).
        let as_checked = match self.vms.get_mut(t.vm) {
            Some(vm) => {
                let unmapped = match vm.stage2.unmap_leaf(hw, &is_table, ipa) {
                    Ok(Some(_)) => {
                        hw.flush_ipa(t.vm.vmid(), Ipa(ipa));
                        true
                    }
                    Ok(None) | Err(_) => false,
                };
                let counted = match vm.borrowed_pages.checked_sub(1) {
                    Some(n) => {
                        vm.borrowed_pages = n;
                        true
                    }
                    None => false,
                };
                unmapped && counted
            }
            None => false,
        };
        if !as_checked {
            self.broke();
        }
        self.set_owner(t.pfn, PageState::Host);
    }

    // ---- guest_share_host / guest_unshare_host -------------------------------------

    fn guest_page(
        &self,
        vm: VmId,
        gfn: u64,
        hw: &impl TableMemory,
    ) -> Result<(Pfn, Gfn, PageState), Error> {
        let v = self.vms.get(vm).ok_or(Error::NotFound)?;
        // A dying VM's tables may already be KServ's again: never walk them.
        if v.state == VmState::Dying {
            return Err(Error::Denied);
        }
        let gfn = Self::guest_gfn(v, gfn)?;
        let leaf = self.leaf_at(vm, gfn, hw)?.ok_or(Error::NotFound)?;
        let pfn = Pfn::of(leaf.pa);
        let state = self.owners.get(pfn).ok_or(Error::Denied)?;
        Ok((pfn, gfn, state))
    }

    /// Checks `guest_share_host`: VM `vm` shares its page at `gfn` with KServ.
    pub fn check_guest_share_host(
        &self,
        vm: VmId,
        gfn: u64,
        hw: &impl TableMemory,
    ) -> Result<PageTicket, Error> {
        match self.guest_page(vm, gfn, hw)? {
            (pfn, gfn, PageState::Guest { vm: v, gfn: g }) if v == vm && g == gfn => {
                Ok(PageTicket {
                    vm,
                    pfn,
                    gfn,
                    attrs: Attrs::RAM_RWX,
                })
            }
            _ => Err(Error::Denied),
        }
    }

    /// Commits `guest_share_host`. KServ's stage 2 maps the page on KServ's
    /// first touch.
    pub fn commit_guest_share_host(&mut self, t: PageTicket) {
        self.set_owner(
            t.pfn,
            PageState::GuestSharedWithHost {
                vm: t.vm,
                gfn: t.gfn,
            },
        );
    }

    /// Checks `guest_unshare_host`: VM `vm` takes its page at `gfn` back.
    pub fn check_guest_unshare_host(
        &self,
        vm: VmId,
        gfn: u64,
        hw: &impl TableMemory,
    ) -> Result<PageTicket, Error> {
        match self.guest_page(vm, gfn, hw)? {
            (pfn, gfn, PageState::GuestSharedWithHost { vm: v, gfn: g }) if v == vm && g == gfn => {
                Ok(PageTicket {
                    vm,
                    pfn,
                    gfn,
                    attrs: Attrs::RAM_RWX,
                })
            }
            _ => Err(Error::Denied),
        }
    }

    /// Commits `guest_unshare_host`: out of KServ's stage 2.
    pub fn commit_guest_unshare_host(&mut self, t: PageTicket, hw: &mut impl Hardware) {
        self.host_unmap(hw, t.pfn);
        self.set_owner(
            t.pfn,
            PageState::Guest {
                vm: t.vm,
                gfn: t.gfn,
            },
        );
    }

    // ---- host_teardown_vm / host_reclaim_page ---------------------------------------

    /// `host_teardown_vm`, first phase: the VM is dying, can never run again
    /// and is unmapped from everything. Its pages stay its own until KServ
    /// reclaims them; pages KServ had shared with it are KServ's alone again.
    pub fn host_teardown_vm(&mut self, handle: u64, hw: &mut impl Hardware) -> Result<(), Error> {
        let (id, vm) = self.live_vm(handle)?;
        if vm.state == VmState::Dying {
            return Err(Error::Denied);
        }
        if vm.loaded != 0 {
            // A vCPU is running on some CPU: its stage 2 must stay until it
            // is back (KServ can ask again after the exit).
            return Err(Error::Busy);
        }
        self.commit_teardown(id, hw);
        Ok(())
    }

    /// The commit of `host_teardown_vm`: empty the VM's stage 2 (its root
    /// pages; the lower tables stay the VM's until reclaimed), drop every
    /// translation of its VMID, end every share. Cannot fail.
    fn commit_teardown(&mut self, id: VmId, hw: &mut impl Hardware) {
        if let Some(vm) = self.vms.get_mut(id) {
            vm.state = VmState::Dying;
            vm.borrowed_pages = 0;
            let root = vm.stage2.root();
            for i in 0..vm.stage2.geometry().root_tables() as u64 {
                hw.zero_page(Pa(root.raw() + i * PAGE_SIZE));
            }
        } else {
            // Both callers found the VM live.
            self.broke();
        }
        hw.flush_vmid(id.vmid());
        if self.owners.end_host_shares(id) == 0 {
            return;
        }
        // Pages the guest shares with KServ: out of KServ's stage 2, the
        // guest's alone again (until reclaimed).
        let banks = *self.owners.banks();
        for bank in banks.iter() {
            for p in bank.base() >> PAGE_SHIFT..bank.end() >> PAGE_SHIFT {
                let pfn = Pfn(p);
                if let Some(PageState::GuestSharedWithHost { vm, gfn }) = self.owners.get(pfn)
                    && vm == id
                {
                    self.host_unmap(hw, pfn);
                    self.set_owner(pfn, PageState::Guest { vm, gfn });
                }
            }
        }
    }

    /// Before `SYSTEM_OFF` or `SYSTEM_RESET` reaches the firmware: no VM's
    /// data may outlive KCore in RAM (QEMU and warm resets keep it). Every
    /// live VM is torn down — running vCPUs included: their stage 2 is
    /// emptied and its VMID flushed first, so a guest still running on
    /// another CPU faults into KCore (whose lock the caller holds) instead
    /// of writing on — and then every page a VM owns (memory, shared or
    /// not, stage-2 tables, vCPU contexts, pool pages) is scrubbed. The
    /// pages stay the dying VMs' until reclaimed, so should the firmware
    /// return, the bookkeeping still holds. Returns the pages scrubbed.
    pub fn wipe_vms(&mut self, hw: &mut impl Hardware) -> u64 {
        let ids: [Option<VmId>; VMS] = core::array::from_fn(|i| {
            let id = VmId(i as u16);
            self.vms
                .get(id)
                .filter(|vm| vm.state != VmState::Dying)
                .map(|_| id)
        });
        for id in ids.into_iter().flatten() {
            self.commit_teardown(id, hw);
        }
        let mut scrubbed = 0;
        let banks = *self.owners.banks();
        for bank in banks.iter() {
            for p in bank.base() >> PAGE_SHIFT..bank.end() >> PAGE_SHIFT {
                let pfn = Pfn(p);
                let vm_held = matches!(
                    self.owners.get(pfn),
                    Some(PageState::Guest { .. } | PageState::VmTable { .. })
                );
                if vm_held && let Some(pa) = pfn.pa() {
                    hw.scrub_page(pa);
                    scrubbed += 1;
                }
            }
        }
        scrubbed
    }

    /// `SYSTEM_OFF` with no firmware to power the board off: takes every
    /// page away from KServ at once. Its stage-2 root is emptied (the lower
    /// tables are left as they are, unreachable) and every translation of
    /// its VMID dropped on every CPU, so that a CPU still running KServ
    /// faults into KCore at its next instruction fetch or access that the
    /// flushed TLBs no longer cover, where it finds the system off and parks
    /// ([`crate::host::Resume::Park`]). KServ's stage 2 is never built again.
    pub fn revoke_host(&mut self, hw: &mut impl Hardware) {
        let table = self.host.table();
        let root = table.root();
        for i in 0..table.geometry().root_tables() as u64 {
            hw.zero_page(Pa(root.raw() + i * PAGE_SIZE));
        }
        hw.flush_vmid(HOST_VMID);
    }

    /// Checks `host_reclaim_page`: a page of a dying VM (memory or table)
    /// returns to KServ.
    pub fn check_host_reclaim_page(&self, handle: u64, pfn: u64) -> Result<ReclaimTicket, Error> {
        let (id, vm) = self.live_vm(handle)?;
        // Dying, and no vCPU of it still out on a CPU: a VM torn down under
        // a running vCPU (by the wipe before SYSTEM_OFF/RESET, should the
        // firmware return) keeps its pages until that vCPU's put, which
        // writes its context page.
        if vm.state != VmState::Dying || vm.loaded != 0 {
            return Err(Error::Busy);
        }
        let (pfn, state) = self.ram_page(pfn)?;
        match state {
            PageState::Guest { vm, .. } | PageState::VmTable { vm } if vm == id => {
                Ok(ReclaimTicket {
                    vm: id,
                    pfn,
                    was: state,
                })
            }
            _ => Err(Error::Denied),
        }
    }

    /// Commits `host_reclaim_page`: the page is scrubbed, then KServ's. The
    /// VM's slot is freed (and its VMID flushed) with its last page.
    pub fn commit_host_reclaim_page(&mut self, t: ReclaimTicket, hw: &mut impl Hardware) {
        // The check found the page RAM, the VM's (so counted), the VM live.
        match t.pfn.pa() {
            Some(pa) => hw.scrub_page(pa),
            None => self.broke(),
        }
        self.set_owner(t.pfn, PageState::Host);
        let mut empty = false;
        let mut counted = false;
        if let Some(vm) = self.vms.get_mut(t.vm) {
            let pages = match t.was {
                PageState::VmTable { .. } => &mut vm.table_pages,
                _ => &mut vm.owned_pages,
            };
            if let Some(n) = pages.checked_sub(1) {
                *pages = n;
                counted = true;
            }
            empty = vm.table_pages == 0 && vm.owned_pages == 0;
        }
        if !counted {
            self.broke();
        }
        if empty {
            hw.flush_vmid(t.vm.vmid());
            self.vms.remove(t.vm);
        }
    }

    /// `host_page_owner` (for tests): the state of a page of RAM.
    pub fn host_page_owner(&self, pfn: u64) -> Result<PageState, Error> {
        self.ram_page(pfn).map(|(_, s)| s)
    }

    // ---- host_verify_image ----------------------------------------------------------

    /// `host_verify_image`: checks a protected VM's boot image, `len` bytes
    /// starting at `gfn`, against the boot image's key and the signature
    /// block at the start of KServ's page `sig_pfn`: the 64-byte signature
    /// over the image's bytes followed by the MMIO manifest, then that
    /// manifest (`kcore_abi::manifest`), which from then on bounds where
    /// KServ may declare MMIO. A malformed manifest, or one that covers the
    /// image, is `InvalidParameter` and changes nothing. The image pages must
    /// be the VM's own (KServ lost write access when it donated them), so the
    /// bytes checked are the bytes the VM will run. A malformed request
    /// changes nothing; a signature that does not verify poisons the VM.
    pub fn host_verify_image(
        &mut self,
        handle: u64,
        gfn: u64,
        len: u64,
        sig_pfn: u64,
        hw: &(impl TableMemory + PhysMemory),
    ) -> Result<(), Error> {
        let (id, vm) = self.live_vm(handle)?;
        if vm.kind != VmKind::Protected || vm.state != VmState::Created {
            return Err(Error::Denied);
        }
        let key = self.verify_key.ok_or(Error::NotSupported)?;
        if len == 0 || len > image::MAX_IMAGE_LEN {
            return Err(Error::InvalidParameter);
        }
        let pages = len.div_ceil(PAGE_SIZE);
        let first = Self::guest_gfn(vm, gfn)?;
        let last = gfn.checked_add(pages - 1).ok_or(Error::InvalidParameter)?;
        Self::guest_gfn(vm, last)?;
        // Every image page must be mapped at its gfn and be the VM's alone.
        let is_table = |t| self.owners.holds_table(t, Some(id));
        let page_at = |i: u64| -> Result<Option<Pa>, CorruptTable> {
            let g = first.0 + i;
            let Some(leaf) = vm.stage2.walk(hw, &is_table, g << PAGE_SHIFT)? else {
                return Ok(None);
            };
            Ok(match self.owners.get(Pfn::of(leaf.pa)) {
                Some(PageState::Guest { vm: v, gfn: pg }) if v == id && pg.0 == g => Some(leaf.pa),
                _ => None,
            })
        };
        for i in 0..pages {
            match page_at(i) {
                Ok(Some(_)) => {}
                Ok(None) => return Err(Error::Denied),
                Err(_) => return Err(self.corrupt()),
            }
        }
        // The signature block — the signature, then the MMIO manifest the
        // signature also covers — copied once out of KServ's page; only the
        // copy is looked at.
        let (sig_pfn, sig_state) = self.ram_page(sig_pfn)?;
        if !matches!(sig_state, PageState::Host | PageState::HostPinned { .. }) {
            return Err(Error::Denied);
        }
        let mut block = [0u8; manifest::MAX_BLOCK_LEN];
        hw.read(sig_pfn.pa().ok_or(Error::InvalidParameter)?, &mut block);
        let (sig, tail) = block.split_at(image::SIGNATURE_LEN);
        let (mmio, n) = Manifest::decode(tail).map_err(|_| Error::InvalidParameter)?;
        // Devices where the image is make no sense: refused as malformed.
        if mmio
            .ranges()
            .iter()
            .any(|&(g, p)| g < first.0 + pages && first.0 < g + p)
        {
            return Err(Error::InvalidParameter);
        }
        let mut signature = [0u8; image::SIGNATURE_LEN];
        signature.copy_from_slice(sig);
        let result = image::verify_with_tail(
            &key,
            &Signature(signature),
            // The same walks again: every one succeeded just above.
            (0..pages).filter_map(|i| page_at(i).ok().flatten()),
            len,
            &tail[..n],
            hw,
        );
        let Some(vm) = self.vms.get_mut(id) else {
            // Found live above, and nothing since removed it.
            self.broke();
            return Err(Error::NotFound);
        };
        match result {
            Ok(()) => {
                vm.state = VmState::Verified;
                vm.image = Some((first, len));
                vm.manifest = mmio;
                Ok(())
            }
            Err(_) => {
                vm.state = VmState::Poisoned;
                Err(Error::VerificationFailed)
            }
        }
    }
}
