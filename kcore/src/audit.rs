//! KCore's self-check: the ownership table against every stage-2 table.
//!
//! Walks KServ's stage 2 and every live VM's, and checks DESIGN.md §2's
//! invariants 1–4 and the VMs' page counters against the ownership table:
//! KServ's stage 2 is an identity map of pages KServ may use and never of
//! KCore memory; a VM maps only its own pages (or pages shared with it),
//! each at its recorded gfn, with 4 KiB leaves; every table page of a stage
//! 2 is KCore's (`KCore` for KServ's, `VmTable` of that VM for a VM's); no
//! page names a VM that does not exist; a page is pinned exactly as often as
//! running vCPUs use it as their run page (invariant 7), and no commit step
//! ever found the state other than its check promised. Host tests run it
//! after every step;
//! test images expose it to KServ as a hypercall (feature `self-check`), so
//! the attack suite can confirm afterwards that nothing drifted. It only
//! reads, allocates nothing and reports the first disagreement.
//!
//! It never reads a page through a descriptor before checking that the
//! page is one of that stage 2's own tables (the walks of
//! [`crate::pgtable`] ask [`crate::ownership::OwnershipTable::holds_table`]
//! first): a descriptor that names anything else — a guest's page, KServ's,
//! an address past RAM — is reported as [`Finding::CorruptTable`], never
//! followed, so a corrupted table cannot make the self-check fault.

use crate::addr::{PAGE_SIZE, Pa, Pfn};
use crate::hw::TableMemory;
use crate::mem_protect::MemCore;
use crate::ownership::PageState;
use crate::pgtable::CorruptTable;
use crate::vm::{VmId, VmState};

/// What disagreed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Finding {
    /// KServ's stage 2 maps an address to another one.
    HostNotIdentity = 1,
    /// KServ's stage 2 maps a page in a state KServ may not map.
    HostMapsForeign = 2,
    /// KServ's stage 2 maps KCore's device memory, or a device page KServ
    /// may reach only through KCore.
    HostMapsKcoreDevice = 3,
    /// A root page of KServ's stage 2 is not KCore's (a table below the
    /// root that is not is [`Finding::CorruptTable`]).
    HostTableNotKcore = 4,
    /// A VM maps a block, not a page.
    VmBlock = 5,
    /// A VM maps a page that is not its own at that gfn.
    VmMapsForeign = 6,
    /// A root page of a VM's stage 2 is not that VM's `VmTable` (a table
    /// below the root that is not is [`Finding::CorruptTable`]).
    VmTableNotOwned = 7,
    /// A VM's page counters disagree with the ownership table.
    VmCounters = 8,
    /// A live VM maps another number of pages than it owns or borrows.
    VmMappedCount = 9,
    /// A page names a VM that does not exist.
    OrphanPage = 10,
    /// A page's pin count is not the number of running vCPUs using it as
    /// their run page, or a running vCPU's run page is not pinned.
    PinMismatch = 11,
    /// A commit step found the state other than its check promised
    /// ([`MemCore::broken_invariants`]).
    BrokenInvariant = 12,
    /// A table descriptor names a page that is not one of its stage 2's
    /// tables (`at`: that page; `vm`: whose stage 2, `None` for KServ's).
    /// The audit did not follow it.
    CorruptTable = 13,
}

/// The first disagreement found: what, where (an address or a pfn), which
/// VM slot (if any).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AuditError {
    /// What.
    pub finding: Finding,
    /// The address (IPA or PA) or pfn concerned.
    pub at: u64,
    /// The VM slot concerned.
    pub vm: Option<VmId>,
}

/// What a clean audit covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Pages KServ's stage 2 maps.
    pub host_pages: u64,
    /// Pages mapped in VMs' stage 2s.
    pub vm_pages: u64,
    /// Table pages walked.
    pub table_pages: u64,
    /// Live VMs.
    pub vms: u64,
}

fn fail(finding: Finding, at: u64, vm: Option<VmId>) -> AuditError {
    AuditError { finding, at, vm }
}

fn corrupt(c: CorruptTable, vm: Option<VmId>) -> AuditError {
    fail(Finding::CorruptTable, c.next.raw(), vm)
}

/// Audits `mem` with its tables in `hw`.
pub fn audit<S: AsRef<[u64]> + AsMut<[u64]>, const BANKS: usize, const VMS: usize>(
    mem: &MemCore<S, BANKS, VMS>,
    hw: &impl TableMemory,
) -> Result<AuditReport, AuditError> {
    let owners = mem.owners();
    let state = |pa: u64| owners.get(Pfn(pa >> 12));
    let mut report = AuditReport::default();
    let mut err: Option<AuditError> = None;
    let host = mem.host();
    let pages = mem.host().table_pages();
    let host_table = |t: Pa| pages.holds(owners, t);
    let walked = host
        .table()
        .for_each_leaf(hw, &host_table, &mut |va, leaf, size| {
            for off in (0..size).step_by(PAGE_SIZE as usize) {
                let pa = leaf.pa.raw() + off;
                report.host_pages += 1;
                if va + off != pa {
                    err.get_or_insert(fail(Finding::HostNotIdentity, va + off, None));
                }
                match state(pa) {
                    Some(s) if !s.host_may_map() => {
                        err.get_or_insert(fail(Finding::HostMapsForeign, pa, s.vm()));
                    }
                    None if host.map().kcore().find(pa).is_some() || host.map().is_trapped(pa) => {
                        err.get_or_insert(fail(Finding::HostMapsKcoreDevice, pa, None));
                    }
                    _ => {}
                }
            }
        });
    if let Err(c) = walked {
        err.get_or_insert(corrupt(c, None));
    }
    if let Some(e) = err {
        return Err(e);
    }
    host.table()
        .for_each_table(hw, &host_table, &mut |t| {
            report.table_pages += 1;
            if !host_table(t) {
                err.get_or_insert(fail(Finding::HostTableNotKcore, t.raw(), None));
            }
        })
        .map_err(|c| corrupt(c, None))?;
    if let Some(e) = err {
        return Err(e);
    }
    for (id, vm) in mem.vms().iter() {
        let mut mapped = 0u64;
        // A dying VM's root was emptied at teardown and its lower tables
        // may be KServ's again: its tree is not walked (KCore never does).
        if vm.state != VmState::Dying {
            report.vms += 1;
            let vm_table = |t: Pa| owners.holds_table(t, Some(id));
            let walked = vm
                .stage2
                .for_each_leaf(hw, &vm_table, &mut |va, leaf, size| {
                    if size != PAGE_SIZE {
                        err.get_or_insert(fail(Finding::VmBlock, va, Some(id)));
                    }
                    let gfn = va >> 12;
                    if crate::gicv::is_gicv_leaf(vm, mem.gicv, gfn, leaf.pa, leaf.attrs) {
                        return;
                    }
                    mapped += 1;
                    match state(leaf.pa.raw()) {
                        Some(PageState::Guest { vm, gfn: g })
                        | Some(PageState::GuestSharedWithHost { vm, gfn: g })
                        | Some(PageState::HostSharedWithGuest { vm, gfn: g })
                            if vm == id && g.0 == gfn => {}
                        _ => {
                            err.get_or_insert(fail(Finding::VmMapsForeign, va, Some(id)));
                        }
                    }
                });
            if let Err(c) = walked {
                err.get_or_insert(corrupt(c, Some(id)));
            }
            if let Some(e) = err {
                return Err(e);
            }
            vm.stage2
                .for_each_table(hw, &vm_table, &mut |t| {
                    report.table_pages += 1;
                    if !vm_table(t) {
                        err.get_or_insert(fail(Finding::VmTableNotOwned, t.raw(), Some(id)));
                    }
                })
                .map_err(|c| corrupt(c, Some(id)))?;
        }
        if let Some(e) = err {
            return Err(e);
        }
        report.vm_pages += mapped;
        let (mut owned, mut tables, mut borrowed) = (0, 0, 0);
        for (_, s) in owners.iter() {
            match s {
                PageState::Guest { vm, .. } | PageState::GuestSharedWithHost { vm, .. }
                    if vm == id =>
                {
                    owned += 1
                }
                PageState::VmTable { vm } if vm == id => tables += 1,
                PageState::HostSharedWithGuest { vm, .. } if vm == id => borrowed += 1,
                _ => {}
            }
        }
        if (owned, tables, borrowed) != (vm.owned_pages, vm.table_pages, vm.borrowed_pages) {
            return Err(fail(Finding::VmCounters, 0, Some(id)));
        }
        let expect = if vm.state == VmState::Dying {
            0
        } else {
            owned + borrowed
        };
        if mapped != expect {
            return Err(fail(Finding::VmMappedCount, mapped, Some(id)));
        }
    }
    for (pfn, s) in owners.iter() {
        if let Some(v) = s.vm()
            && mem.vms().get(v).is_none()
        {
            return Err(fail(Finding::OrphanPage, pfn.0, Some(v)));
        }
    }
    // Invariant 7: pins are the running vCPUs' run pages, no more, no less.
    let users = |pfn: Pfn| -> u64 {
        mem.vms()
            .iter()
            .map(|(_, vm)| {
                (0..vm.run_pages.len())
                    .filter(|&i| vm.loaded & (1 << i) != 0 && vm.run_pages[i] == pfn.0)
                    .count() as u64
            })
            .sum()
    };
    for (pfn, s) in owners.iter() {
        if let PageState::HostPinned { pins } = s
            && users(pfn) != pins as u64
        {
            return Err(fail(Finding::PinMismatch, pfn.0, None));
        }
    }
    for (id, vm) in mem.vms().iter() {
        for (i, &run) in vm.run_pages.iter().enumerate() {
            if vm.loaded & (1 << i) != 0 && !owners.get(Pfn(run)).is_some_and(PageState::is_pinned)
            {
                return Err(fail(Finding::PinMismatch, run, Some(id)));
            }
        }
    }
    if mem.broken_invariants() != 0 {
        return Err(fail(
            Finding::BrokenInvariant,
            mem.broken_invariants(),
            None,
        ));
    }
    Ok(report)
}
