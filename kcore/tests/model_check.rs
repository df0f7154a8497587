//! Exhaustive model checking of KCore's memory hypercalls (DESIGN.md
//! sections 2 and 7; `docs/model-checking.md`).
//!
//! Every sequence of up to [`DEPTH`] operations over a finite alphabet —
//! KServ's memory hypercalls with arguments drawn from small sets that include
//! hostile ones, the guest-initiated sharing calls, a protected VM writing its
//! secret into a private page and KServ loading from memory through its
//! stage 2 — runs the real KCore code over the host double of the hardware,
//! breadth first, each distinct state explored once. After every step:
//!
//! - the step agrees with the spec (the transition table of
//!   `docs/ownership.md`): pre-conditions in the order KCore checks them, one
//!   refusal for each failed one, and the exact abstract state afterwards —
//!   owners, KServ's stage-2 mappings, the VMs, their mappings (a refused call
//!   changes nothing);
//! - no invalidated descriptor waits for a TLB flush, KCore wrote no byte
//!   outside its table pages, and a page that came back to KServ from a VM is
//!   zero (invariant 6);
//! - noninterference: the state is a pair of runs in lock-step that differ only
//!   in the secret the protected VMs write (0xAA.. in one, 0x55.. in the
//!   other); what KServ observes — every call's `x0..x3`, what its loads
//!   return and the bytes of every page it may map — is identical in both,
//!   and so is KCore's own state.
//!
//! The invariants of DESIGN.md section 2 (`common::check_invariants`, which
//! walks every table) are checked once for every distinct shape of the
//! tables reached. States are told apart by a canonical hash that treats as
//! interchangeable what the model treats alike: the four pages, the two
//! table pools and the two gfns.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

mod common;

use std::collections::{BTreeSet, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use common::{RAM, World, check_invariants, host_walk, hvc, small_world, vm_walk};
use kcore::addr::{Gfn, PAGE_SIZE, Pa, Pfn};
use kcore::exception::{TrapState, ec};
use kcore::host::Resume;
use kcore::hw::TableMemory;
use kcore::ownership::PageState;
use kcore::pgtable::Geometry;
use kcore::vcpu::{Loaded, RunArgs};
use kcore::vm::{FreeList, VmHandle, VmId, VmKind, VmState};
use kcore_abi::{Error, HypercallId as H, PageOwner, run, vm_flags};
use kcore_arch::host_cpu::FakeFirmware;

// ---- the machine -------------------------------------------------------------

/// RAM pages of the model machine: KCore's, two table pools, the four pages
/// the model moves around, two more of KServ's that nothing touches.
const RAM_PAGES: usize = 16;
/// KCore's pages: KServ's stage-2 root and its two tables, one spare.
const KCORE_PAGES: u64 = 4;
/// A real PARange (64 GiB): a one-page stage-2 root of 64 entries, for
/// KServ and for every VM (whose IPA size defaults to it).
const PA_BITS: u32 = 36;
const FIRST_PFN: u64 = RAM >> 12;
/// The two fixed donations of stage-2 table pages, one per VM: the root
/// and two pages for its free list.
const POOLS: [u64; 2] = [FIRST_PFN + 4, FIRST_PFN + 7];
const POOL_PAGES: u64 = 3;
/// The four KServ pages the model donates, shares, reads and reclaims.
const DATA: [u64; 4] = [
    FIRST_PFN + 10,
    FIRST_PFN + 11,
    FIRST_PFN + 12,
    FIRST_PFN + 13,
];
/// A KCore page (a table of KServ's stage 2), as a hostile argument.
const KCORE_PFN: u64 = FIRST_PFN + 1;
/// The first frame past RAM, as a hostile argument.
const NOT_RAM_PFN: u64 = FIRST_PFN + RAM_PAGES as u64;
/// Two guest frames under different 2 MiB regions: the first mapping of a
/// VM takes both pages of its pool (a level-2 and a level-3 table), so a
/// second one needs a `host_donate_vm_pool` first (`NoMemory` is reachable).
const GFNS: [u64; 2] = [0x10, 0x210];
/// VM slots of [`kcore_arch::host_world::TestHost`].
const VM_SLOTS: usize = 4;
const MAX_VCPUS: u64 = 2;
/// The bound: every sequence of this many steps is explored.
const DEPTH: usize = 7;
/// A well-formed handle of slot 0 whose generation no VM reaches.
const STALE_HANDLE: u64 = VmHandle::new(VmId(0), 0x7777).0;
/// What a protected VM writes into its private pages, per run.
const SECRET: [u8; 2] = [0xAA, 0x55];
/// What a VM puts into a page before it shares it with KServ (both runs).
const PUBLIC: u8 = 0x3C;
/// What KServ stores into a page it may write (both windows): a valid
/// run-page flags word, so a page KServ scribbled on can still be a run page.
const HOST_WORD: u64 = run::entry_flags::TIMER_DISABLED;
/// The GIC's list registers, as the EL2 glue passes them to a load.
const LIST_REGISTERS: usize = 4;
/// Where the model writes into a page: its first and last word. KCore never
/// copies data, so comparing these (plus the full page of every new state)
/// compares everything a run can differ in.
const WINDOWS: [u64; 2] = [0, PAGE_SIZE - 8];

fn page_index(pfn: u64) -> Option<usize> {
    let i = pfn.checked_sub(FIRST_PFN)? as usize;
    (i < RAM_PAGES).then_some(i)
}

// ---- the alphabet ------------------------------------------------------------

/// A VM handle as KServ passes it: the latest handle of the VM made from
/// table pool 0 (`A`) or 1 (`B`), live or not (0 before it was made), or one
/// that never names a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VmArg {
    A,
    B,
    Stale,
}

/// A page as KServ passes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Page {
    /// One of the four model pages.
    Data(usize),
    /// A page of KCore's.
    KCore,
    /// Not RAM.
    NotRam,
    /// Page `.1` of table pool `.0` (for reclaim).
    Table(usize, u64),
}

impl Page {
    fn pfn(self) -> u64 {
        match self {
            Page::Data(i) => DATA[i],
            Page::KCore => KCORE_PFN,
            Page::NotRam => NOT_RAM_PFN,
            Page::Table(p, i) => POOLS[p] + i,
        }
    }
}

/// One step. Hypercalls take KServ's arguments; the guest steps name the VM
/// made from table pool `vm` and run only while it exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    CreateVm {
        protected: bool,
        pool: usize,
    },
    DonateVmPool {
        vm: VmArg,
        page: Page,
    },
    DonateGuest {
        vm: VmArg,
        page: Page,
        gfn: usize,
    },
    ShareGuest {
        vm: VmArg,
        page: Page,
        gfn: usize,
    },
    UnshareGuest {
        vm: VmArg,
        gfn: usize,
    },
    TeardownVm {
        vm: VmArg,
    },
    ReclaimPage {
        vm: VmArg,
        page: Page,
    },
    PageOwner {
        page: Page,
    },
    /// `guest_share_host`: the VM first fills the page with [`PUBLIC`].
    GuestShareHost {
        vm: usize,
        gfn: usize,
    },
    GuestUnshareHost {
        vm: usize,
        gfn: usize,
    },
    /// The VM (protected, able to run) writes [`SECRET`] into the private
    /// page it has at `gfn`.
    VmWriteSecret {
        vm: usize,
        gfn: usize,
    },
    /// KServ loads from a page; a stage-2 fault goes through KCore's abort
    /// handler.
    HostRead {
        page: Page,
    },
    /// KServ stores [`HOST_WORD`] into a page (same fault path as a load).
    HostWrite {
        page: Page,
    },
    /// `host_create_vcpu` of vCPU 0.
    CreateVcpu {
        vm: VmArg,
    },
    /// The first half of `host_vcpu_run` of vCPU 0 with `page` as its run
    /// page, on the CPU the model gives the VM made from that pool (the
    /// stale handle runs nowhere). KCore's lock is dropped after it: every
    /// other step may come before the [`Op::VcpuPut`], as another CPU's
    /// hypercall, KServ's store or the running guest's own call.
    VcpuLoad {
        vm: VmArg,
        page: Page,
    },
    /// The last half of `host_vcpu_run`: the guest exited on the CPU of the
    /// VM made from pool `vm`, and KCore writes the exit into the run page.
    VcpuPut {
        vm: usize,
    },
    /// `host_read_gic_table` of 8 bytes at the start of `gfn`: KServ asks
    /// KCore for a VM's memory as its ITS emulation does.
    ReadGicTable {
        vm: VmArg,
        gfn: usize,
    },
}

fn alphabet() -> Vec<Op> {
    let vms = [VmArg::A, VmArg::B, VmArg::Stale];
    let pages = [
        Page::Data(0),
        Page::Data(1),
        Page::Data(2),
        Page::Data(3),
        Page::KCore,
        Page::NotRam,
    ];
    let tables: Vec<Page> = (0..2)
        .flat_map(|p| (0..POOL_PAGES).map(move |i| Page::Table(p, i)))
        .collect();
    let mut ops = Vec::new();
    for protected in [true, false] {
        for pool in 0..2 {
            ops.push(Op::CreateVm { protected, pool });
        }
    }
    for vm in vms {
        for page in pages {
            ops.push(Op::DonateVmPool { vm, page });
            for gfn in 0..GFNS.len() {
                ops.push(Op::DonateGuest { vm, page, gfn });
                ops.push(Op::ShareGuest { vm, page, gfn });
            }
        }
        for gfn in 0..GFNS.len() {
            ops.push(Op::UnshareGuest { vm, gfn });
            ops.push(Op::ReadGicTable { vm, gfn });
        }
        ops.push(Op::TeardownVm { vm });
        for &page in pages.iter().chain(&tables) {
            ops.push(Op::ReclaimPage { vm, page });
        }
    }
    for page in pages {
        ops.push(Op::PageOwner { page });
    }
    for vm in 0..2 {
        for gfn in 0..GFNS.len() {
            ops.push(Op::GuestShareHost { vm, gfn });
            ops.push(Op::GuestUnshareHost { vm, gfn });
            ops.push(Op::VmWriteSecret { vm, gfn });
        }
    }
    for page in &pages[..5] {
        ops.push(Op::HostRead { page: *page });
        ops.push(Op::HostWrite { page: *page });
    }
    // A run page may also be a page of a table pool that is KServ's until
    // the VM is made from it: then the run page is offered as a VM's root.
    let run_pages: Vec<Page> = pages
        .iter()
        .copied()
        .chain([Page::Table(0, 0), Page::Table(1, 0)])
        .collect();
    for vm in vms {
        ops.push(Op::CreateVcpu { vm });
        for &page in &run_pages {
            ops.push(Op::VcpuLoad { vm, page });
        }
    }
    for vm in 0..2 {
        ops.push(Op::VcpuPut { vm });
    }
    ops
}

// ---- two runs in lock-step -----------------------------------------------------

/// The first and last word of a page.
type Digest = [u64; 2];

/// What one step shows: a call's `x0..x3`, what KServ's load returned
/// (`None`: KCore made it fault), or that a VM wrote.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Regs([u64; 4]),
    Read(Option<Digest>),
    /// A store by KServ: done, or KCore made it fault.
    Stored(bool),
    Wrote,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Regs([x0, x1, x2, x3]) => match Error::from_x0(*x0) {
                Ok(()) => write!(f, "Ok(x1={x1:#x}, x2={x2:#x}, x3={x3:#x})"),
                Err(Some(e)) => write!(f, "{e:?}(x1={x1:#x}, x2={x2:#x}, x3={x3:#x})"),
                Err(None) => write!(f, "x0={x0:#x}(x1={x1:#x}, x2={x2:#x}, x3={x3:#x})"),
            },
            Outcome::Read(Some(d)) => write!(f, "Read({d:x?})"),
            Outcome::Read(None) => f.write_str("Read(external abort)"),
            Outcome::Stored(ok) => write!(f, "Stored({ok})"),
            Outcome::Wrote => f.write_str("Wrote"),
        }
    }
}

/// The model state: the two runs and KServ's handles for the VMs made from
/// each table pool.
struct Pair {
    runs: [World; 2],
    handles: [Option<u64>; 2],
    /// Per run, the vCPU loaded on the CPU of the VM made from each pool
    /// (between an [`Op::VcpuLoad`] and its [`Op::VcpuPut`]).
    loaded: [[Option<Box<Loaded>>; 2]; 2],
}

fn clone_world(w: &World) -> World {
    World {
        host: w.host.clone(),
        hw: w.hw.clone(),
        alloc: w.alloc.clone(),
    }
}

impl Pair {
    fn new() -> Pair {
        let world = || small_world(RAM_PAGES as u64, KCORE_PAGES, PA_BITS);
        Pair {
            runs: [world(), world()],
            handles: [None, None],
            loaded: Default::default(),
        }
    }

    fn duplicate(&self) -> Pair {
        Pair {
            runs: [clone_world(&self.runs[0]), clone_world(&self.runs[1])],
            handles: self.handles,
            loaded: self.loaded.clone(),
        }
    }

    fn handle(&self, vm: VmArg) -> u64 {
        match vm {
            VmArg::A => self.handles[0].unwrap_or(0),
            VmArg::B => self.handles[1].unwrap_or(0),
            VmArg::Stale => STALE_HANDLE,
        }
    }
}

/// The slot of the VM made from table pool `vm`, if it still exists.
fn guest_id(w: &World, handles: &[Option<u64>; 2], vm: usize) -> Option<VmId> {
    let (id, _) = w.host.mem().vms().lookup(handles[vm]?)?;
    Some(id)
}

/// The private page a protected VM that can still run has at `gfn`.
fn private_page(w: &World, handles: &[Option<u64>; 2], vm: usize, gfn: usize) -> Option<u64> {
    let id = guest_id(w, handles, vm)?;
    let v = w.host.mem().vms().get(id)?;
    if v.kind != VmKind::Protected || matches!(v.state, VmState::Dying | VmState::Poisoned) {
        return None;
    }
    let pa = vm_walk(w, id, GFNS[gfn] << 12)?.pa;
    let private = PageState::Guest {
        vm: id,
        gfn: Gfn(GFNS[gfn]),
    };
    (w.host.mem().owners().get(Pfn::of(pa)) == Some(private)).then_some(pa.raw())
}

/// Whether `op` can happen at all: a VM that does not exist runs no code.
fn enabled(p: &Pair, op: Op) -> bool {
    let w = &p.runs[0];
    match op {
        Op::GuestShareHost { vm, .. } | Op::GuestUnshareHost { vm, .. } => {
            guest_id(w, &p.handles, vm).is_some()
        }
        Op::VmWriteSecret { vm, gfn } => private_page(w, &p.handles, vm, gfn).is_some(),
        Op::VcpuPut { vm } => p.loaded[0][vm].is_some(),
        _ => true,
    }
}

fn fill(hw: &mut kcore_arch::host_memory::FakeMachine, pa: u64, byte: u8) {
    for off in WINDOWS {
        hw.write(pa + off, &[byte; 8]);
    }
}

fn digest(w: &World, pfn: u64) -> Digest {
    WINDOWS.map(|off| w.hw.read_entry(Pa((pfn << 12) + off), 0))
}

fn regs(r: [u64; 4]) -> Outcome {
    Outcome::Regs(r)
}

fn status(r: Result<(), Error>) -> Outcome {
    Outcome::Regs([r.err().map_or(0, Error::to_x0), 0, 0, 0])
}

fn guest_share_host(w: &mut World, id: VmId, gfn: u64) -> Outcome {
    let mem = w.host.mem();
    match mem.check_guest_share_host(id, gfn, &w.hw) {
        Ok(t) => {
            // The VM releases the page: it first puts there only what it
            // means KServ to see (declassification is the VM's own act).
            if let Some(leaf) = vm_walk(w, id, gfn << 12) {
                fill(&mut w.hw, leaf.pa.raw(), PUBLIC);
            }
            w.host.mem_mut().commit_guest_share_host(t);
            status(Ok(()))
        }
        Err(e) => status(Err(e)),
    }
}

fn guest_unshare_host(w: &mut World, id: VmId, gfn: u64) -> Outcome {
    match w.host.mem().check_guest_unshare_host(id, gfn, &w.hw) {
        Ok(t) => {
            let (mem, hw) = (w.host.mem_mut(), &mut w.hw);
            mem.commit_guest_unshare_host(t, hw);
            status(Ok(()))
        }
        Err(e) => status(Err(e)),
    }
}

/// KServ loads from `pfn` (identity mapped): if its stage 2 has no entry,
/// the access traps and KCore's abort handler either maps the page (retry)
/// or makes KServ take an external abort.
fn host_read(w: &mut World, pfn: u64) -> Result<Outcome, String> {
    fault_in(w, pfn)?;
    let mapped = host_walk(w, pfn << 12).is_some();
    Ok(Outcome::Read(mapped.then(|| digest(w, pfn))))
}

/// KServ stores [`HOST_WORD`] into `pfn`'s windows, through the same fault
/// path as [`host_read`].
fn host_write(w: &mut World, pfn: u64) -> Result<Outcome, String> {
    fault_in(w, pfn)?;
    let mapped = host_walk(w, pfn << 12).is_some();
    if mapped {
        for off in WINDOWS {
            w.hw.write((pfn << 12) + off, &HOST_WORD.to_ne_bytes());
        }
    }
    Ok(Outcome::Stored(mapped))
}

/// KServ touches `pfn`: an unmapped page goes through KCore's abort handler,
/// which must either map it (retry) or inject an external abort.
fn fault_in(w: &mut World, pfn: u64) -> Result<(), String> {
    let pa = pfn << 12;
    let mapped = |w: &World| host_walk(w, pa).is_some();
    if !mapped(w) {
        let trap = TrapState {
            // Data abort from EL1, translation fault at level 3.
            esr: ec::DABT_LOW << 26 | 1 << 25 | 0x07,
            far: 0xffff_0000_0000_0000 | pa,
            hpfar: (pa >> 12) << 4,
            elr: 0xffff_8000_0810_0000,
            spsr: 0x3c5,
            vbar_el1: 0xffff_8000_0801_0000,
            sctlr_el1: 0,
        };
        let mut regs = [0u64; 31];
        let mut fw = FakeFirmware::default();
        let resume = w
            .host
            .handle_trap(0, &trap, &mut regs, &mut w.hw, &mut w.alloc, &mut fw);
        let now = mapped(w);
        if !matches!(
            (resume, now),
            (Resume::Retry, true) | (Resume::Inject(_), false)
        ) {
            return Err(format!(
                "KServ's access to {pfn:#x}: the abort handler returned {resume:?} \
                 and the page is {}mapped",
                if now { "" } else { "not " }
            ));
        }
    }
    Ok(())
}

/// The first half of `host_vcpu_run`, as the EL2 glue runs it: the HVC
/// decoded by KCore's dispatcher, then the load under the lock. The loaded
/// vCPU is kept only if the load succeeded.
fn vcpu_load(w: &mut World, slot: &mut Option<Box<Loaded>>, handle: u64, pfn: u64) -> Outcome {
    let mut regs = [0u64; 31];
    regs[0] = H::HostVcpuRun.function_id() as u64;
    (regs[1], regs[2], regs[3]) = (handle, 0, pfn);
    let Some(a) = w.host.handle_hvc(0, &mut regs, &mut w.hw) else {
        return Outcome::Regs([regs[0], regs[1], regs[2], regs[3]]);
    };
    assert_eq!(
        a,
        RunArgs {
            handle,
            vcpu: 0,
            run_pfn: pfn
        }
    );
    let mut l = Box::new(Loaded::empty());
    let r = w
        .host
        .mem_mut()
        .vcpu_load_into(a, LIST_REGISTERS, &mut w.hw, &mut l);
    if r.is_ok() {
        *slot = Some(l);
    }
    status(r)
}

/// The last half of `host_vcpu_run`: KCore writes the exit into the run
/// page. It may do so only while the page is still KServ's and pinned: a
/// page given away meanwhile (a VM's table, a protected VM's memory) would
/// take KServ's words.
fn vcpu_put(w: &mut World, slot: &mut Option<Box<Loaded>>) -> Result<Outcome, String> {
    let mut l = slot.take().ok_or("no vCPU is loaded on this CPU")?;
    let pfn = Pfn::of(l.run_page);
    match w.host.mem().owners().get(pfn) {
        Some(PageState::HostPinned { .. }) => {}
        s => {
            return Err(format!(
                "the put is about to write the exit into run page {:#x}, which is {s:?}: \
                 not KServ's and pinned",
                pfn.0
            ));
        }
    }
    w.host.mem_mut().vcpu_put(&mut l, &mut w.hw);
    Ok(Outcome::Wrote)
}

/// Runs `op` in both runs.
fn apply(p: &mut Pair, op: Op) -> Result<[Outcome; 2], String> {
    let handles = p.handles;
    let h = |vm| p.handle(vm);
    let mut out = [Outcome::Wrote; 2];
    let args: Option<(H, Vec<u64>)> = match op {
        Op::CreateVm { protected, pool } => {
            let flags = if protected { vm_flags::PROTECTED } else { 0 };
            let a = vec![flags, 0, MAX_VCPUS, POOLS[pool], POOL_PAGES];
            Some((H::HostCreateVm, a))
        }
        Op::DonateVmPool { vm, page } => Some((H::HostDonateVmPool, vec![h(vm), page.pfn()])),
        Op::DonateGuest { vm, page, gfn } => {
            Some((H::HostDonateGuest, vec![h(vm), page.pfn(), GFNS[gfn]]))
        }
        Op::ShareGuest { vm, page, gfn } => {
            Some((H::HostShareGuest, vec![h(vm), page.pfn(), GFNS[gfn]]))
        }
        Op::UnshareGuest { vm, gfn } => Some((H::HostUnshareGuest, vec![h(vm), GFNS[gfn]])),
        Op::TeardownVm { vm } => Some((H::HostTeardownVm, vec![h(vm)])),
        Op::ReclaimPage { vm, page } => Some((H::HostReclaimPage, vec![h(vm), page.pfn()])),
        Op::PageOwner { page } => Some((H::HostPageOwner, vec![page.pfn()])),
        Op::CreateVcpu { vm } => Some((H::HostCreateVcpu, vec![h(vm), 0])),
        Op::ReadGicTable { vm, gfn } => {
            Some((H::HostReadGicTable, vec![h(vm), GFNS[gfn] << 12, 8]))
        }
        _ => None,
    };
    let cpu = |vm: VmArg| match vm {
        VmArg::A => Some(0),
        VmArg::B => Some(1),
        VmArg::Stale => None,
    };
    let load_handle = match op {
        Op::VcpuLoad { vm, .. } => h(vm),
        _ => 0,
    };
    for (run, w) in p.runs.iter_mut().enumerate() {
        let no_vm = || format!("{op:?}: the VM does not exist");
        out[run] = match (op, &args) {
            (_, Some((id, a))) => regs(hvc(w, *id, a)),
            (Op::GuestShareHost { vm, gfn }, None) => {
                let id = guest_id(w, &handles, vm).ok_or_else(no_vm)?;
                guest_share_host(w, id, GFNS[gfn])
            }
            (Op::GuestUnshareHost { vm, gfn }, None) => {
                let id = guest_id(w, &handles, vm).ok_or_else(no_vm)?;
                guest_unshare_host(w, id, GFNS[gfn])
            }
            (Op::VmWriteSecret { vm, gfn }, None) => {
                let pa = private_page(w, &handles, vm, gfn).ok_or_else(no_vm)?;
                fill(&mut w.hw, pa, SECRET[run]);
                Outcome::Wrote
            }
            (Op::HostRead { page }, None) => host_read(w, page.pfn())?,
            (Op::HostWrite { page }, None) => host_write(w, page.pfn())?,
            (Op::VcpuLoad { vm, page }, None) => {
                let mut scratch = None;
                let slot = match cpu(vm) {
                    Some(c) => &mut p.loaded[run][c],
                    None => &mut scratch,
                };
                vcpu_load(w, slot, load_handle, page.pfn())
            }
            (Op::VcpuPut { vm }, None) => vcpu_put(w, &mut p.loaded[run][vm])?,
            (_, None) => unreachable!("every hypercall has arguments"),
        };
    }
    if let (Op::CreateVm { pool, .. }, Outcome::Regs([0, handle, ..])) = (op, out[0]) {
        p.handles[pool] = Some(handle);
    }
    Ok(out)
}

// ---- the abstract state and the spec ---------------------------------------------

/// One VM as the spec sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct AbsVm {
    id: VmId,
    handle: u64,
    kind: VmKind,
    state: VmState,
    /// Free pages of its table pool.
    pool: u64,
    owned: u64,
    tables: u64,
    borrowed: u64,
    /// Whether vCPU 0 exists.
    vcpu: bool,
    /// vCPU 0's run page while it is loaded (between a load and its put).
    run: Option<u64>,
}

/// KCore's state as the spec sees it: every RAM page's owner, whether
/// KServ's stage 2 maps it, the VMs, and what every live VM maps at the
/// model's guest frames.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Abs {
    pages: [PageState; RAM_PAGES],
    host_mapped: [bool; RAM_PAGES],
    vms: Vec<AbsVm>,
    /// `(vm, index into GFNS, pfn)`, sorted.
    leaves: Vec<(VmId, usize, u64)>,
}

fn project(w: &World) -> Abs {
    let mem = w.host.mem();
    let pfn = |i: usize| FIRST_PFN + i as u64;
    let pages = std::array::from_fn(|i| mem.owners().get(Pfn(pfn(i))).unwrap());
    let host_mapped = std::array::from_fn(|i| host_walk(w, pfn(i) << 12).is_some());
    let mut vms = Vec::new();
    let mut leaves = Vec::new();
    for (id, v) in mem.vms().iter() {
        vms.push(AbsVm {
            id,
            handle: v.handle.0,
            kind: v.kind,
            state: v.state,
            pool: v.pool.len(),
            owned: v.owned_pages,
            tables: v.table_pages,
            borrowed: v.borrowed_pages,
            vcpu: v.vcpus & 1 != 0,
            run: (v.loaded & 1 != 0).then_some(v.run_pages[0]),
        });
        // A dying VM's tables are never walked (KCore emptied its root).
        if v.state == VmState::Dying {
            continue;
        }
        for (g, gfn) in GFNS.iter().enumerate() {
            if let Some(leaf) = vm_walk(w, id, gfn << 12) {
                leaves.push((id, g, Pfn::of(leaf.pa).0));
            }
        }
    }
    Abs {
        pages,
        host_mapped,
        vms,
        leaves,
    }
}

impl Abs {
    /// A page argument: RAM or `InvalidParameter`.
    fn page(&self, pfn: u64) -> Result<(usize, PageState), Error> {
        let i = page_index(pfn).ok_or(Error::InvalidParameter)?;
        Ok((i, self.pages[i]))
    }
    /// A handle argument: a live VM or `NotFound`.
    fn live(&self, handle: u64) -> Result<AbsVm, Error> {
        self.vms
            .iter()
            .find(|v| v.handle == handle)
            .copied()
            .ok_or(Error::NotFound)
    }
    fn vm(&self, id: VmId) -> Option<AbsVm> {
        self.vms.iter().find(|v| v.id == id).copied()
    }
    fn vm_mut(&mut self, id: VmId) -> &mut AbsVm {
        self.vms.iter_mut().find(|v| v.id == id).unwrap()
    }
    fn leaf(&self, id: VmId, gfn: usize) -> Option<u64> {
        self.leaves
            .iter()
            .find(|l| l.0 == id && l.1 == gfn)
            .map(|l| l.2)
    }
    fn set(&mut self, i: usize, s: PageState) {
        self.pages[i] = s;
        // A page KServ may no longer map has left its stage 2.
        self.host_mapped[i] &= s.host_may_map();
    }
}

/// What differs between `actual` and `want`, item by item.
fn diff(actual: &Abs, want: &Abs) -> String {
    let mut out = Vec::new();
    for i in 0..RAM_PAGES {
        let pfn = FIRST_PFN + i as u64;
        if actual.pages[i] != want.pages[i] {
            out.push(format!(
                "  page {pfn:#x}: {:?}, expected {:?}",
                actual.pages[i], want.pages[i]
            ));
        }
        if actual.host_mapped[i] != want.host_mapped[i] {
            out.push(format!(
                "  page {pfn:#x}: {} in KServ's stage 2, expected {}",
                if actual.host_mapped[i] {
                    "mapped"
                } else {
                    "not mapped"
                },
                if want.host_mapped[i] {
                    "mapped"
                } else {
                    "not mapped"
                }
            ));
        }
    }
    if actual.vms != want.vms {
        out.push(format!(
            "  VMs: {:?}\n  expected {:?}",
            actual.vms, want.vms
        ));
    }
    if actual.leaves != want.leaves {
        out.push(format!(
            "  VM stage-2 leaves (vm, gfn index, pfn): {:x?}, expected {:x?}",
            actual.leaves, want.leaves
        ));
    }
    if out.is_empty() {
        out.push("  (page contents only)".to_string());
    }
    out.join("\n")
}

/// What the spec expects a step to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Call(Result<[u64; 3], Error>),
    /// A load that succeeds (`true`) or faults.
    Read(bool),
    /// A store that succeeds (`true`) or faults.
    Stored(bool),
    Wrote,
}

/// What a step writes into a model page (beyond KCore's table pages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fill {
    Secret,
    Public,
    /// KServ's [`HOST_WORD`].
    Host,
}

/// The spec's verdict on a step from `pre`: what it shows, the abstract state
/// after it, and the page it fills with data, if any. `shown` is what the step
/// returned, used only for the one thing the spec leaves to KCore: the
/// handle of a new VM (checked separately to be fresh).
struct Verdict {
    expect: Expect,
    post: Abs,
    fills: Option<(usize, Fill)>,
}

fn spec(op: Op, pre: &Abs, before: &Pair, shown: Outcome) -> Verdict {
    let mut post = pre.clone();
    let mut fills = None;
    let expect = match op {
        Op::HostRead { page } => {
            let ok = pre.page(page.pfn()).is_ok_and(|(_, s)| s.host_may_map());
            if let (true, Ok((i, _))) = (ok, pre.page(page.pfn())) {
                // Mapped on first touch.
                post.host_mapped[i] = true;
            }
            Expect::Read(ok)
        }
        Op::HostWrite { page } => {
            let ok = pre.page(page.pfn()).is_ok_and(|(_, s)| s.host_may_map());
            if let (true, Ok((i, _))) = (ok, pre.page(page.pfn())) {
                post.host_mapped[i] = true;
                fills = Some((i, Fill::Host));
            }
            Expect::Stored(ok)
        }
        Op::VmWriteSecret { vm, gfn } => {
            let id = guest_id(&before.runs[0], &before.handles, vm).unwrap();
            let pfn = pre.leaf(id, gfn).unwrap();
            fills = page_index(pfn).map(|i| (i, Fill::Secret));
            Expect::Wrote
        }
        Op::VcpuPut { vm } => {
            // The exit goes into the run page (its words past the model's
            // windows); the pin the load took is dropped.
            let id = guest_id(&before.runs[0], &before.handles, vm).unwrap();
            let pfn = pre.vm(id).and_then(|v| v.run).unwrap();
            let i = page_index(pfn).unwrap();
            post.pages[i] = match pre.pages[i] {
                PageState::HostPinned { pins: 1 } => PageState::Host,
                PageState::HostPinned { pins } => PageState::HostPinned { pins: pins - 1 },
                s => s,
            };
            post.vm_mut(id).run = None;
            Expect::Wrote
        }
        _ => {
            let r = spec_call(op, pre, &mut post, before, shown);
            if r.is_err() {
                // A refused call changes nothing.
                post = pre.clone();
            } else if let Op::GuestShareHost { vm, gfn } = op {
                let id = guest_id(&before.runs[0], &before.handles, vm).unwrap();
                fills = pre
                    .leaf(id, gfn)
                    .and_then(page_index)
                    .map(|i| (i, Fill::Public));
            }
            Expect::Call(r)
        }
    };
    Verdict {
        expect,
        post,
        fills,
    }
}

/// Table pages a mapping at model gfn `gfn` of VM `id` needs (the spec leaves
/// the shape of the tables to KCore).
fn tables_needed(w: &World, id: VmId, gfn: usize) -> u64 {
    let owners = w.host.mem().owners();
    w.host.mem().vms().get(id).map_or(0, |v| {
        v.stage2
            .tables_needed(&w.hw, &|t| owners.holds_table(t, Some(id)), GFNS[gfn] << 12)
            .unwrap()
            .min(3) as u64
    })
}

/// The hypercalls and guest calls of `docs/ownership.md`: every
/// pre-condition in the order KCore checks it, each failing one with its
/// refusal; on success `post` becomes the state after the call.
fn spec_call(
    op: Op,
    pre: &Abs,
    post: &mut Abs,
    before: &Pair,
    shown: Outcome,
) -> Result<[u64; 3], Error> {
    use PageState as S;
    let w = &before.runs[0];
    let gfn_of = |g: usize| Gfn(GFNS[g]);
    // A KServ page that is to leave KServ: a pinned one is busy.
    let give = |s: PageState| match s {
        S::Host => Ok(()),
        S::HostPinned { .. } => Err(Error::Busy),
        _ => Err(Error::Denied),
    };
    match op {
        Op::CreateVm { protected, pool } => {
            // (flags, IPA size, vCPUs, alignment and size of the donation
            // are valid in the model.)
            for i in 0..POOL_PAGES {
                match pre.page(POOLS[pool] + i)?.1 {
                    S::Host => {}
                    S::HostPinned { .. } => return Err(Error::Busy),
                    _ => return Err(Error::Denied),
                }
            }
            if pre.vms.len() >= VM_SLOTS {
                return Err(Error::NoMemory);
            }
            // The handle is KCore's choice, checked to be fresh elsewhere.
            let handle = match shown {
                Outcome::Regs([0, h, ..]) => h,
                _ => 0,
            };
            let id = VmHandle::decode(handle).map_or(VmId(u16::MAX), |(id, _)| id);
            for i in 0..POOL_PAGES {
                post.set(page_index(POOLS[pool] + i).unwrap(), S::VmTable { vm: id });
            }
            let root = Geometry::stage2(PA_BITS).unwrap().root_tables() as u64;
            post.vms.push(AbsVm {
                id,
                handle,
                kind: if protected {
                    VmKind::Protected
                } else {
                    VmKind::NonProtected
                },
                state: VmState::Created,
                pool: POOL_PAGES - root,
                owned: 0,
                tables: POOL_PAGES,
                borrowed: 0,
                vcpu: false,
                run: None,
            });
            post.vms.sort_by_key(|v| v.id);
            Ok([handle, 0, 0])
        }
        Op::DonateVmPool { vm, page } => {
            let v = pre.live(before.handle(vm))?;
            if v.state == VmState::Dying {
                return Err(Error::Denied);
            }
            let (i, s) = pre.page(page.pfn())?;
            give(s)?;
            post.set(i, S::VmTable { vm: v.id });
            let pv = post.vm_mut(v.id);
            pv.pool += 1;
            pv.tables += 1;
            Ok([0; 3])
        }
        Op::DonateGuest { vm, page, gfn } | Op::ShareGuest { vm, page, gfn } => {
            let share = matches!(op, Op::ShareGuest { .. });
            let v = pre.live(before.handle(vm))?;
            if matches!(v.state, VmState::Dying | VmState::Poisoned) {
                return Err(Error::Denied);
            }
            let (i, s) = pre.page(page.pfn())?;
            // (The model's gfns lie inside every VM's IPA space.)
            give(s)?;
            if pre.leaf(v.id, gfn).is_some() {
                return Err(Error::Busy);
            }
            let needed = tables_needed(w, v.id, gfn);
            if v.pool < needed {
                return Err(Error::NoMemory);
            }
            if share && v.kind == VmKind::Protected {
                return Err(Error::Denied);
            }
            let (vm, gfn_) = (v.id, gfn_of(gfn));
            post.set(
                i,
                if share {
                    S::HostSharedWithGuest { vm, gfn: gfn_ }
                } else {
                    S::Guest { vm, gfn: gfn_ }
                },
            );
            let pv = post.vm_mut(vm);
            pv.pool -= needed;
            if share {
                pv.borrowed += 1;
            } else {
                pv.owned += 1;
            }
            post.leaves.push((vm, gfn, page.pfn()));
            post.leaves.sort();
            Ok([0; 3])
        }
        Op::UnshareGuest { vm, gfn } => {
            let v = pre.live(before.handle(vm))?;
            if v.state == VmState::Dying {
                return Err(Error::Denied);
            }
            let pfn = pre.leaf(v.id, gfn).ok_or(Error::NotFound)?;
            let (i, s) = pre.page(pfn).map_err(|_| Error::Denied)?;
            if s != (S::HostSharedWithGuest {
                vm: v.id,
                gfn: gfn_of(gfn),
            }) {
                return Err(Error::Denied);
            }
            post.set(i, S::Host);
            post.vm_mut(v.id).borrowed -= 1;
            post.leaves.retain(|l| (l.0, l.1) != (v.id, gfn));
            Ok([0; 3])
        }
        Op::TeardownVm { vm } => {
            let v = pre.live(before.handle(vm))?;
            if v.state == VmState::Dying {
                return Err(Error::Denied);
            }
            if v.run.is_some() {
                // A vCPU runs on some CPU: its stage 2 must stay.
                return Err(Error::Busy);
            }
            let pv = post.vm_mut(v.id);
            pv.state = VmState::Dying;
            pv.borrowed = 0;
            for i in 0..RAM_PAGES {
                match pre.pages[i] {
                    S::HostSharedWithGuest { vm, .. } if vm == v.id => post.set(i, S::Host),
                    S::GuestSharedWithHost { vm, gfn } if vm == v.id => {
                        post.set(i, S::Guest { vm, gfn })
                    }
                    _ => {}
                }
            }
            post.leaves.retain(|l| l.0 != v.id);
            Ok([0; 3])
        }
        Op::ReclaimPage { vm, page } => {
            let v = pre.live(before.handle(vm))?;
            if v.state != VmState::Dying {
                return Err(Error::Busy);
            }
            let (i, s) = pre.page(page.pfn())?;
            let table = match s {
                S::Guest { vm, .. } if vm == v.id => false,
                S::VmTable { vm } if vm == v.id => true,
                _ => return Err(Error::Denied),
            };
            post.set(i, S::Host);
            post.host_mapped[i] = false;
            let pv = post.vm_mut(v.id);
            if table {
                pv.tables -= 1;
            } else {
                pv.owned -= 1;
            }
            if pv.tables == 0 && pv.owned == 0 {
                // The slot is freed with the VM's last page.
                post.vms.retain(|x| x.id != v.id);
            }
            Ok([0; 3])
        }
        Op::PageOwner { page } => {
            let (_, s) = pre.page(page.pfn())?;
            let code = match s {
                S::KCore => PageOwner::KCore,
                S::VmTable { .. } => PageOwner::VmTable,
                S::Host => PageOwner::Host,
                S::HostPinned { .. } => PageOwner::HostPinned,
                S::HostSharedWithGuest { .. } => PageOwner::HostSharedWithGuest,
                S::Guest { .. } => PageOwner::Guest,
                S::GuestSharedWithHost { .. } => PageOwner::GuestSharedWithHost,
            };
            let handle = s.vm().and_then(|id| pre.vm(id)).map_or(0, |v| v.handle);
            let third = match s {
                S::HostPinned { pins } => pins as u64,
                _ => s.gfn().map_or(0, |g| g.0),
            };
            Ok([code as u64, handle, third])
        }
        Op::CreateVcpu { vm } => {
            let v = pre.live(before.handle(vm))?;
            if matches!(v.state, VmState::Dying | VmState::Poisoned) {
                return Err(Error::Denied);
            }
            // (vCPU 0 is below every VM's maximum.)
            if v.vcpu {
                return Err(Error::Busy);
            }
            if v.pool == 0 {
                return Err(Error::NoMemory);
            }
            // The context takes a page of the VM's table pool.
            let pv = post.vm_mut(v.id);
            pv.pool -= 1;
            pv.vcpu = true;
            Ok([0; 3])
        }
        Op::VcpuLoad { vm, page } => {
            let v = pre.live(before.handle(vm))?;
            if !v.vcpu {
                return Err(Error::NotFound);
            }
            // Protected VMs never have a verified image in the model.
            let runnable = v.kind == VmKind::NonProtected
                && matches!(v.state, VmState::Created | VmState::Verified);
            if !runnable {
                return Err(Error::Denied);
            }
            if v.run.is_some() {
                return Err(Error::Busy);
            }
            let (i, s) = pre.page(page.pfn())?;
            let pins = match s {
                S::Host => 1,
                S::HostPinned { pins } => pins + 1,
                _ => return Err(Error::Denied),
            };
            // The entry half of the run page, as KServ left it.
            let word = |k: usize| w.hw.read_entry(Pa(page.pfn() << 12), k);
            if word(run::FLAGS) & !run::entry_flags::ALL != 0 {
                return Err(Error::InvalidParameter);
            }
            match word(run::IRQ_COUNT) {
                0 => {}
                n if n > run::MAX_IRQS as u64 => return Err(Error::InvalidParameter),
                n => unreachable!("the model never writes an interrupt count ({n})"),
            }
            // A fresh vCPU of a non-protected VM starts wherever KServ set
            // its PC; a vCPU that ran completes its (empty) exit.
            post.pages[i] = S::HostPinned { pins };
            post.vm_mut(v.id).run = Some(page.pfn());
            Ok([0; 3])
        }
        Op::GuestShareHost { vm, gfn } | Op::GuestUnshareHost { vm, gfn } => {
            let share = matches!(op, Op::GuestShareHost { .. });
            let id = guest_id(w, &before.handles, vm).ok_or(Error::NotFound)?;
            let v = pre.vm(id).ok_or(Error::NotFound)?;
            if v.state == VmState::Dying {
                return Err(Error::Denied);
            }
            let pfn = pre.leaf(id, gfn).ok_or(Error::NotFound)?;
            let (i, s) = pre.page(pfn).map_err(|_| Error::Denied)?;
            let (private, shared) = (
                S::Guest {
                    vm: id,
                    gfn: gfn_of(gfn),
                },
                S::GuestSharedWithHost {
                    vm: id,
                    gfn: gfn_of(gfn),
                },
            );
            let (from, to) = if share {
                (private, shared)
            } else {
                (shared, private)
            };
            if s != from {
                return Err(Error::Denied);
            }
            post.set(i, to);
            Ok([0; 3])
        }
        Op::ReadGicTable { vm, .. } => {
            // Only inside a window a protected guest opened with its own
            // ITS register writes; no guest in the model runs one (its
            // protected VMs are never verified), so every read of a live
            // VM's memory is refused, its secret included.
            pre.live(before.handle(vm))?;
            Err(Error::Denied)
        }
        Op::HostRead { .. }
        | Op::HostWrite { .. }
        | Op::VmWriteSecret { .. }
        | Op::VcpuPut { .. } => unreachable!("not a call"),
    }
}

// ---- checking one step ------------------------------------------------------------

/// The bytes of every RAM page that a run can differ in, per run: the
/// model's windows of every page KServ or a VM holds; nothing for KCore's
/// pages, whose content is the tables the abstract state describes.
type Contents = [[Digest; RAM_PAGES]; 2];

fn contents(p: &Pair, abs: &Abs) -> Contents {
    std::array::from_fn(|r| {
        let w = &p.runs[r];
        std::array::from_fn(|i| {
            let pfn = FIRST_PFN + i as u64;
            match abs.pages[i] {
                PageState::KCore | PageState::VmTable { .. } => [0; 2],
                _ if w.hw.is_zero(pfn << 12) => [0; 2],
                _ => digest(w, pfn),
            }
        })
    })
}

/// One VM's bookkeeping, field by field.
type VmBooks = (
    VmId,
    VmHandle,
    VmKind,
    VmState,
    FreeList,
    u64,
    u64,
    u64,
    u64,
    Option<(Gfn, u64)>,
    u64,
    u64,
);

/// The part of KCore's state that is cheap to read (no table walks): the
/// ownership table, the VMs' bookkeeping and the TLB maintenance so far.
/// Every change KCore makes to a stage 2 shows here too: a new mapping
/// takes table pages or changes an owner, a removed one needs a flush.
#[derive(Debug, PartialEq, Eq)]
struct Books {
    pages: [PageState; RAM_PAGES],
    vms: Vec<VmBooks>,
    broken: u64,
    flushes: usize,
    unflushed: usize,
}

fn books(w: &World) -> Books {
    let mem = w.host.mem();
    Books {
        pages: std::array::from_fn(|i| mem.owners().get(Pfn(FIRST_PFN + i as u64)).unwrap()),
        vms: mem
            .vms()
            .iter()
            .map(|(id, v)| {
                (
                    id,
                    v.handle,
                    v.kind,
                    v.state,
                    v.pool,
                    v.vcpus,
                    v.owned_pages,
                    v.table_pages,
                    v.borrowed_pages,
                    v.image,
                    v.loaded,
                    v.run_pages[0],
                )
            })
            .collect(),
        broken: mem.broken_invariants(),
        flushes: w.hw.flushes().len(),
        unflushed: w.hw.unflushed(),
    }
}

fn refused(out: Outcome) -> bool {
    matches!(out, Outcome::Regs([x0, ..]) if x0 != 0)
}

/// What KServ sees of the step is the same in both runs, and is what the
/// spec says.
fn check_shown(
    op: Op,
    v: &Verdict,
    pre: &Abs,
    before: &Pair,
    out: [Outcome; 2],
) -> Result<(), String> {
    if out[0] != out[1] {
        return Err(format!(
            "noninterference: the step shows {:?} in one run and {:?} in the other",
            out[0], out[1]
        ));
    }
    let as_spec = match (v.expect, out[0]) {
        (Expect::Call(r), Outcome::Regs(x)) => {
            let want = match r {
                Ok([a, b, c]) => [0, a, b, c],
                Err(e) => [e.to_x0(), 0, 0, 0],
            };
            x == want
        }
        (Expect::Read(ok), Outcome::Read(d)) => ok == d.is_some(),
        (Expect::Stored(ok), Outcome::Stored(done)) => ok == done,
        (Expect::Wrote, Outcome::Wrote) => true,
        _ => false,
    };
    if !as_spec {
        return Err(format!(
            "spec: expected {:?}, the step showed {:?}",
            v.expect, out[0]
        ));
    }
    if let (Op::CreateVm { .. }, Outcome::Regs([0, h, ..])) = (op, out[0]) {
        let used = pre.vms.iter().any(|x| x.handle == h)
            || before.handles.contains(&Some(h))
            || h == STALE_HANDLE;
        let slot_free = VmHandle::decode(h).is_some_and(|(id, _)| pre.vm(id).is_none());
        if used || !slot_free {
            return Err(format!(
                "host_create_vm returned handle {h:#x}, not a fresh handle of a free slot"
            ));
        }
    }
    Ok(())
}

/// Checks the state after a step that changed something against the spec's
/// verdict, and returns it with its contents.
fn check_post(
    v: &Verdict,
    pre: &Abs,
    pre_c: &Contents,
    after: &Pair,
) -> Result<(Abs, Contents), String> {
    let post = project(&after.runs[0]);
    if post != v.post {
        return Err(format!(
            "spec: the state after the step differs from the spec's:\n{}",
            diff(&post, &v.post)
        ));
    }
    // Every descriptor KCore invalidated was followed by a TLB flush, and no
    // step found KCore's state other than its check promised (both part of
    // the invariant check, made here after every step: `check_invariants`
    // runs once per shape of the tables, and a step that changes nothing is
    // held to KCore's whole bookkeeping, the count included).
    for (r, w) in after.runs.iter().enumerate() {
        if w.hw.unflushed() != 0 {
            return Err(format!(
                "invariant (run {r}): {} invalidated stage-2 descriptors without a TLB flush",
                w.hw.unflushed()
            ));
        }
        let broken = w.host.mem().broken_invariants();
        if broken != 0 {
            return Err(format!(
                "invariant (run {r}): KCore counted {broken} broken invariants"
            ));
        }
    }
    // Noninterference: KCore's own state does not depend on the secret.
    let (b0, b1) = (books(&after.runs[0]), books(&after.runs[1]));
    if (b0.pages, &b0.vms) != (b1.pages, &b1.vms) {
        return Err(format!(
            "noninterference: KCore's state differs between the runs:\n  {b0:?}\n  {b1:?}"
        ));
    }
    // Page contents: KCore writes only its own table pages; a page that
    // comes back to KServ from a VM is zero (invariant 6).
    let c = contents(after, &post);
    for r in 0..2 {
        let hw = &after.runs[r].hw;
        for i in 0..RAM_PAGES {
            let pfn = FIRST_PFN + i as u64;
            let (s0, s1) = (pre.pages[i], post.pages[i]);
            let vm_held = matches!(
                s0,
                PageState::Guest { .. }
                    | PageState::GuestSharedWithHost { .. }
                    | PageState::VmTable { .. }
            );
            if vm_held && s1 == PageState::Host {
                if !hw.is_zero(pfn << 12) {
                    return Err(format!(
                        "invariant 6: page {pfn:#x} came back to KServ from a VM (was {s0:?}) \
                         without being zeroed"
                    ));
                }
                continue;
            }
            let kcores = |s| matches!(s, PageState::KCore | PageState::VmTable { .. });
            if kcores(s0) || kcores(s1) {
                continue;
            }
            let want = match v.fills {
                Some((j, Fill::Secret)) if j == i => [u64::from_ne_bytes([SECRET[r]; 8]); 2],
                Some((j, Fill::Public)) if j == i => [u64::from_ne_bytes([PUBLIC; 8]); 2],
                Some((j, Fill::Host)) if j == i => [HOST_WORD; 2],
                _ => pre_c[r][i],
            };
            if c[r][i] != want {
                return Err(format!(
                    "page {pfn:#x} ({s0:?} -> {s1:?}) holds {:x?} in run {r}, expected {want:x?}",
                    c[r][i]
                ));
            }
        }
    }
    // Noninterference: every page KServ may map reads the same in both runs.
    for (i, s) in post.pages.iter().enumerate() {
        if s.host_may_map() && c[0][i] != c[1][i] {
            return Err(format!(
                "noninterference: KServ may read page {:#x} ({s:?}), which holds {:x?} in one \
                 run and {:x?} in the other",
                FIRST_PFN + i as u64,
                c[0][i],
                c[1][i]
            ));
        }
    }
    Ok((post, c))
}

/// Checks made once per new state: the other run's stage 2s match, every
/// page KServ may map holds the same bytes in both runs (all 4096 of them),
/// and — once per distinct shape of the tables (`structures`) — the
/// invariants hold over every stage-2 table.
fn check_new_state(p: &Pair, abs: &Abs, structures: &Mutex<HashSet<u128>>) -> Result<(), String> {
    let other = project(&p.runs[1]);
    if other != *abs {
        return Err(format!(
            "noninterference: KCore's state differs between the runs (run 1 vs run 0):\n{}",
            diff(&other, abs)
        ));
    }
    for i in 0..RAM_PAGES {
        let pa = (FIRST_PFN + i as u64) << 12;
        let [a, b] = [&p.runs[0].hw, &p.runs[1].hw];
        if abs.pages[i].host_may_map()
            && !(a.is_zero(pa) && b.is_zero(pa))
            && a.bytes(pa, PAGE_SIZE as usize) != b.bytes(pa, PAGE_SIZE as usize)
        {
            return Err(format!(
                "noninterference: KServ may read page {pa:#x}, whose bytes differ between the runs"
            ));
        }
    }
    if !structures
        .lock()
        .unwrap()
        .insert(canonical_hash(abs, None, None))
    {
        return Ok(());
    }
    // The other run has the same abstract state (above): its tables are the
    // same, only the secret's bytes differ.
    check_invariants(&p.runs[0]).map_err(|e| format!("invariant: {e}"))
}

// ---- the search ------------------------------------------------------------------

/// A 128-bit hash of an abstract state — with the pages' contents and
/// KServ's handles, if given — that is the same for every state a symmetry
/// of the model maps it to. The alphabet and the initial state treat alike
/// the four model pages, the two table pools (with the VMs made from them)
/// and the two gfns (each under its own 2 MiB region), so states that are
/// images of each other have images of each other as futures, and one of
/// them is explored.
fn canonical_hash(abs: &Abs, c: Option<&Contents>, handles: Option<[Option<u64>; 2]>) -> u128 {
    let mut best = u128::MAX;
    for pools in [false, true] {
        for gfns in [false, true] {
            let (a, c, h) = mirror(abs, c, handles, pools, gfns);
            best = best.min(hash_up_to_page_order(&a, c.as_ref(), h));
        }
    }
    best
}

/// The image of a state with the two table pools swapped (`pools`: their
/// pages, and KServ's handles for the VMs made from them) and the two gfns
/// swapped (`gfns`).
fn mirror(
    abs: &Abs,
    c: Option<&Contents>,
    handles: Option<[Option<u64>; 2]>,
    pools: bool,
    gfns: bool,
) -> (Abs, Option<Contents>, Option<[Option<u64>; 2]>) {
    let (p0, p1) = (page_index(POOLS[0]).unwrap(), page_index(POOLS[1]).unwrap());
    let from = |i: usize| match i {
        _ if !pools => i,
        _ if (p0..p0 + POOL_PAGES as usize).contains(&i) => i - p0 + p1,
        _ if (p1..p1 + POOL_PAGES as usize).contains(&i) => i - p1 + p0,
        _ => i,
    };
    let gfn = |g: Gfn| match GFNS.iter().position(|&x| x == g.0) {
        Some(k) if gfns => Gfn(GFNS[1 - k]),
        _ => g,
    };
    let state = |s: PageState| match s {
        PageState::HostSharedWithGuest { vm, gfn: g } => {
            PageState::HostSharedWithGuest { vm, gfn: gfn(g) }
        }
        PageState::Guest { vm, gfn: g } => PageState::Guest { vm, gfn: gfn(g) },
        PageState::GuestSharedWithHost { vm, gfn: g } => {
            PageState::GuestSharedWithHost { vm, gfn: gfn(g) }
        }
        s => s,
    };
    let mut leaves: Vec<_> = abs
        .leaves
        .iter()
        .map(|&(vm, g, pfn)| (vm, if gfns { 1 - g } else { g }, pfn))
        .collect();
    leaves.sort();
    // A run page may be a pool page: it moves with its pool.
    let pfn = |p: u64| page_index(p).map_or(p, |i| FIRST_PFN + from(i) as u64);
    let vms = abs
        .vms
        .iter()
        .map(|v| AbsVm {
            run: v.run.map(pfn),
            ..*v
        })
        .collect();
    let image = Abs {
        pages: std::array::from_fn(|i| state(abs.pages[from(i)])),
        host_mapped: std::array::from_fn(|i| abs.host_mapped[from(i)]),
        vms,
        leaves,
    };
    let c = c.map(|c| std::array::from_fn(|r| std::array::from_fn(|i| c[r][from(i)])));
    let handles = handles.map(|[a, b]| if pools { [b, a] } else { [a, b] });
    (image, c, handles)
}

/// A 128-bit hash of an abstract state — with the pages' contents and
/// KServ's handles, if given — the same under any permutation of the four
/// model pages.
fn hash_up_to_page_order(
    abs: &Abs,
    c: Option<&Contents>,
    handles: Option<[Option<u64>; 2]>,
) -> u128 {
    let bytes = |r: usize, i: usize| c.map_or([0; 2], |c| c[r][i]);
    let sig = |d: usize| {
        let i = page_index(DATA[d]).unwrap();
        (
            abs.pages[i].pack(),
            abs.host_mapped[i],
            bytes(0, i),
            bytes(1, i),
        )
    };
    let mut order = [0, 1, 2, 3];
    order.sort_by_key(|&d| sig(d));
    let relabel = |pfn: u64| match DATA.iter().position(|&x| x == pfn) {
        Some(d) => 0xD0 + order.iter().position(|&o| o == d).unwrap() as u64,
        None => pfn,
    };
    let mut leaves: Vec<_> = abs
        .leaves
        .iter()
        .map(|&(vm, g, pfn)| (vm, g, relabel(pfn)))
        .collect();
    leaves.sort();
    let feed = |h: &mut DefaultHasher| {
        for i in 0..RAM_PAGES {
            if !DATA.contains(&(FIRST_PFN + i as u64)) {
                (
                    abs.pages[i].pack(),
                    abs.host_mapped[i],
                    bytes(0, i),
                    bytes(1, i),
                )
                    .hash(h);
            }
        }
        for d in order {
            sig(d).hash(h);
        }
        if c.is_some() {
            for v in &abs.vms {
                AbsVm {
                    run: v.run.map(relabel),
                    ..*v
                }
                .hash(h);
            }
        } else {
            // The shape of the tables: what the invariants depend on (the
            // pool lengths stand for which pages hold tables; the run pages
            // for the pins).
            for v in &abs.vms {
                (
                    v.id,
                    v.kind,
                    v.state,
                    v.pool,
                    v.owned,
                    v.tables,
                    v.borrowed,
                    v.vcpu,
                    v.run.map(relabel),
                )
                    .hash(h);
            }
        }
        leaves.hash(h);
        handles.hash(h);
    };
    let mut lo = DefaultHasher::new();
    let mut hi = DefaultHasher::new();
    0xC0FFEEu32.hash(&mut hi);
    feed(&mut lo);
    feed(&mut hi);
    (hi.finish() as u128) << 64 | lo.finish() as u128
}

/// A state found at some depth: how it was reached from one at the depth
/// before.
#[derive(Clone, Copy)]
struct Node {
    parent: u32,
    op: u16,
}

/// What was reached, for the sanity floor.
#[derive(Default, Debug)]
struct Coverage {
    protected_owns_page: bool,
    host_shared: bool,
    guest_shared: bool,
    shared_both_ways: bool,
    dying: bool,
    slot_reused: bool,
    secret_written: bool,
    secret_scrubbed: bool,
    declassified_read: bool,
    faulted_in: bool,
    read_refused: bool,
    vcpu_loaded: bool,
    vcpu_put: bool,
    pinned_twice: bool,
    pinned_refused: bool,
    teardown_while_running: bool,
    errors: BTreeSet<i64>,
}

impl Coverage {
    fn state(&mut self, abs: &Abs) {
        let kind = |id| abs.vm(id).map(|v| v.kind);
        for s in abs.pages {
            if let PageState::Guest { vm, .. } | PageState::GuestSharedWithHost { vm, .. } = s {
                self.protected_owns_page |= kind(vm) == Some(VmKind::Protected);
            }
        }
        let hs = abs
            .pages
            .iter()
            .any(|s| matches!(s, PageState::HostSharedWithGuest { .. }));
        let gs = abs
            .pages
            .iter()
            .any(|s| matches!(s, PageState::GuestSharedWithHost { .. }));
        self.host_shared |= hs;
        self.guest_shared |= gs;
        self.shared_both_ways |= hs && gs;
        self.dying |= abs.vms.iter().any(|v| v.state == VmState::Dying);
        self.pinned_twice |= abs
            .pages
            .iter()
            .any(|s| matches!(s, PageState::HostPinned { pins } if *pins > 1));
    }

    fn step(&mut self, op: Op, out: Outcome, pre: &Abs, pre_c: &Contents) {
        let secret = [u64::from_ne_bytes([SECRET[0]; 8]); 2];
        let busy = Error::Busy.to_x0();
        let pinned = |page: Page| page_index(page.pfn()).is_some_and(|i| pre.pages[i].is_pinned());
        match (op, out) {
            (Op::TeardownVm { .. }, Outcome::Regs([x0, ..])) if x0 == busy => {
                self.teardown_while_running = true;
                self.errors.insert(x0 as i64);
            }
            (
                Op::DonateVmPool { page, .. }
                | Op::DonateGuest { page, .. }
                | Op::ShareGuest { page, .. },
                Outcome::Regs([x0, ..]),
            ) if x0 == busy && pinned(page) => {
                self.pinned_refused = true;
                self.errors.insert(x0 as i64);
            }
            (Op::CreateVm { pool, .. }, Outcome::Regs([x0, ..]))
                if x0 == busy && pinned(Page::Table(pool, 0)) =>
            {
                self.pinned_refused = true;
                self.errors.insert(x0 as i64);
            }
            (_, Outcome::Regs([x0, ..])) if x0 != 0 => {
                self.errors.insert(x0 as i64);
            }
            (Op::VcpuLoad { .. }, Outcome::Regs([0, ..])) => self.vcpu_loaded = true,
            (Op::VcpuPut { .. }, _) => self.vcpu_put = true,
            (Op::CreateVm { .. }, Outcome::Regs([0, h, ..])) => {
                self.slot_reused |= VmHandle::decode(h).is_some_and(|(_, g)| g > 0);
            }
            (Op::ReclaimPage { page, .. }, Outcome::Regs([0, ..])) => {
                let i = page_index(page.pfn()).unwrap();
                self.secret_scrubbed |= pre_c[0][i] == secret;
            }
            (Op::VmWriteSecret { .. }, _) => self.secret_written = true,
            (Op::HostRead { page }, Outcome::Read(d)) => {
                let i = page_index(page.pfn()).unwrap();
                self.faulted_in |= d.is_some() && !pre.host_mapped[i];
                self.read_refused |= d.is_none();
                self.declassified_read |= d.is_some()
                    && matches!(pre.pages[i], PageState::GuestSharedWithHost { .. })
                    && d != Some([0; 2]);
            }
            _ => {}
        }
    }
}

/// The figures of a search.
struct Report {
    states: usize,
    structures: usize,
    transitions: u64,
    refused: u64,
    per_depth: Vec<usize>,
    coverage: Coverage,
}

fn path(levels: &[Vec<Node>], depth: usize, mut idx: usize, alphabet: &[Op]) -> Vec<Op> {
    let mut ops = Vec::new();
    for d in (1..=depth).rev() {
        let n = levels[d][idx];
        ops.push(alphabet[n.op as usize]);
        idx = n.parent as usize;
    }
    ops.reverse();
    ops
}

fn show(ops: &[Op]) -> String {
    let steps: Vec<String> = ops
        .iter()
        .enumerate()
        .map(|(i, o)| format!("  {}. {o:?}", i + 1))
        .collect();
    steps.join("\n")
}

/// What one worker found while expanding part of a level.
#[derive(Default)]
struct Found {
    next: Vec<Node>,
    transitions: u64,
    refused: u64,
    coverage: Coverage,
}

impl Found {
    fn merge(&mut self, o: Found) {
        self.next.extend(o.next);
        self.transitions += o.transitions;
        self.refused += o.refused;
        let (a, b) = (&mut self.coverage, o.coverage);
        a.protected_owns_page |= b.protected_owns_page;
        a.host_shared |= b.host_shared;
        a.guest_shared |= b.guest_shared;
        a.shared_both_ways |= b.shared_both_ways;
        a.dying |= b.dying;
        a.slot_reused |= b.slot_reused;
        a.secret_written |= b.secret_written;
        a.secret_scrubbed |= b.secret_scrubbed;
        a.declassified_read |= b.declassified_read;
        a.faulted_in |= b.faulted_in;
        a.read_refused |= b.read_refused;
        a.vcpu_loaded |= b.vcpu_loaded;
        a.vcpu_put |= b.vcpu_put;
        a.pinned_twice |= b.pinned_twice;
        a.pinned_refused |= b.pinned_refused;
        a.teardown_while_running |= b.teardown_while_running;
        a.errors.extend(b.errors);
    }
}

/// What the workers share: the states found so far (as hashes) and the
/// shapes of the tables whose invariants were checked.
struct Search<'a> {
    alphabet: &'a [Op],
    init: &'a Pair,
    levels: &'a [Vec<Node>],
    visited: Mutex<HashSet<u128>>,
    structures: Mutex<HashSet<u128>>,
}

/// Runs `op` in both runs; a panic in KCore is a failure of the step.
fn apply_step(p: &mut Pair, op: Op) -> Result<[Outcome; 2], String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| apply(p, op))).unwrap_or_else(|e| {
        let why = e
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| e.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(format!("KCore panicked: {why}"))
    })
}

/// Everything checked after one step from `base` (abstract state `pre`,
/// contents `pre_c`, bookkeeping `pre_books`) to `after`, which showed
/// `out`. Returns the state after it and its contents if it changed
/// something (checked in full); `None` if it changed nothing, as the spec
/// says (a refusal, a query, a load from a page KServ has mapped), which is
/// checked on KCore's bookkeeping only.
fn check(
    op: Op,
    base: &Pair,
    (pre, pre_c, pre_books): (&Abs, &Contents, &[Books; 2]),
    after: &Pair,
    out: [Outcome; 2],
) -> Result<Option<(Abs, Contents)>, String> {
    let v = spec(op, pre, base, out[0]);
    check_shown(op, &v, pre, base, out)?;
    if v.post != *pre || v.fills.is_some() {
        let (post, c) = check_post(&v, pre, pre_c, after)?;
        return Ok(Some((post, c)));
    }
    // A refused call changes nothing.
    for (r, b) in pre_books.iter().enumerate() {
        let now = books(&after.runs[r]);
        if now != *b {
            return Err(format!(
                "the step changed KCore's state (run {r}) where the spec says it changes \
                 nothing:\n  before {b:?}\n  after  {now:?}"
            ));
        }
    }
    Ok(None)
}

/// Expands state `idx` of depth `d`: every enabled step from it, checked.
///
/// A step that changes nothing leaves the machines as they were, so the next
/// step runs on the same copy; after a step that changed something the copy
/// is made afresh. (A failure seen on a reused copy is re-run on a fresh one,
/// to tell which step is at fault.)
fn expand(s: &Search<'_>, d: usize, idx: usize, found: &mut Found) -> Result<(), String> {
    let ops = path(s.levels, d, idx, s.alphabet);
    let mut base = s.init.duplicate();
    for &op in &ops {
        apply_step(&mut base, op)?;
    }
    let pre = project(&base.runs[0]);
    let pre_c = contents(&base, &pre);
    let pre_books = [books(&base.runs[0]), books(&base.runs[1])];
    let at = (&pre, &pre_c, &pre_books);
    let mut work = base.duplicate();
    // Steps that changed nothing, run on `work` since it was copied.
    let mut reused: Vec<Op> = Vec::new();
    for (oi, &op) in s.alphabet.iter().enumerate() {
        if !enabled(&base, op) {
            continue;
        }
        let fail = |e: String| {
            format!(
                "{e}\nafter the steps\n{}\n  {}. {op:?}  <- here",
                show(&ops),
                ops.len() + 1
            )
        };
        let out = apply_step(&mut work, op).map_err(fail)?;
        found.transitions += 1;
        found.refused += u64::from(refused(out[0]));
        found.coverage.step(op, out[0], &pre, &pre_c);
        let stepped = match check(op, &base, at, &work, out) {
            Err(e) if !reused.is_empty() => {
                let mut fresh = base.duplicate();
                let out = apply_step(&mut fresh, op).map_err(fail)?;
                check(op, &base, at, &fresh, out).map_err(fail)?;
                return Err(fail(format!(
                    "{e}\n(only after these steps from the same state, one of which must \
                     have changed it although refused: {reused:?})"
                )));
            }
            r => r.map_err(fail)?,
        };
        let Some((post, c)) = stepped else {
            reused.push(op);
            continue;
        };
        let key = canonical_hash(&post, Some(&c), Some(work.handles));
        if s.visited.lock().unwrap().insert(key) {
            check_new_state(&work, &post, &s.structures).map_err(fail)?;
            found.coverage.state(&post);
            found.next.push(Node {
                parent: idx as u32,
                op: oi as u16,
            });
        }
        work = base.duplicate();
        reused.clear();
    }
    // What the reused steps left behind is still the state they started
    // from, stage 2s and contents included.
    if !reused.is_empty() {
        let now = project(&work.runs[0]);
        if now != pre || contents(&work, &now) != pre_c {
            return Err(format!(
                "one of the refused or read-only steps {reused:?} changed the state after\n{}\n{}",
                show(&ops),
                diff(&now, &pre)
            ));
        }
    }
    Ok(())
}

/// Breadth-first search of every sequence of up to `depth` steps, each
/// distinct state (up to a permutation of the model pages) expanded once,
/// on every CPU. A state is kept as the path that first reached it and
/// rebuilt by replaying it, so memory holds one hash per state, not two
/// machines.
fn explore(depth: usize) -> Result<Report, String> {
    let alphabet = alphabet();
    let init = Pair::new();
    let init_abs = project(&init.runs[0]);
    let init_c = contents(&init, &init_abs);
    let structures = Mutex::new(HashSet::new());
    check_new_state(&init, &init_abs, &structures).map_err(|e| format!("initial state: {e}"))?;
    let mut visited = HashSet::new();
    visited.insert(canonical_hash(&init_abs, Some(&init_c), Some(init.handles)));
    let mut levels = vec![vec![Node {
        parent: u32::MAX,
        op: u16::MAX,
    }]];
    let mut total = Found::default();
    total.coverage.state(&init_abs);
    let mut per_depth = vec![1];
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut visited = Mutex::new(visited);
    let mut structures = structures;
    for d in 0..depth {
        let search = Search {
            alphabet: &alphabet,
            init: &init,
            levels: &levels,
            visited,
            structures,
        };
        let cursor = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let width = levels[d].len();
        let results: Vec<Result<Found, String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut found = Found::default();
                        loop {
                            let first = cursor.fetch_add(8, Ordering::Relaxed);
                            if first >= width || stop.load(Ordering::Relaxed) {
                                return Ok(found);
                            }
                            for idx in first..(first + 8).min(width) {
                                if let Err(e) = expand(&search, d, idx, &mut found) {
                                    stop.store(true, Ordering::Relaxed);
                                    return Err(e);
                                }
                            }
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut level = Found::default();
        for r in results {
            level.merge(r?);
        }
        visited = search.visited;
        structures = search.structures;
        per_depth.push(level.next.len());
        let next = std::mem::take(&mut level.next);
        total.merge(level);
        levels.push(next);
    }
    Ok(Report {
        states: per_depth.iter().sum(),
        structures: structures.into_inner().unwrap().len(),
        transitions: total.transitions,
        refused: total.refused,
        per_depth,
        coverage: total.coverage,
    })
}

#[test]
fn every_hypercall_sequence_up_to_the_bound() {
    // `MODEL_CHECK_DEPTH=n` explores deeper (or shallower) by hand.
    let depth = std::env::var("MODEL_CHECK_DEPTH")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(DEPTH);
    let start = Instant::now();
    let report = explore(depth).unwrap_or_else(|e| panic!("model check failed: {e}"));
    let summary = format!(
        "model check: 2 VMs, 4 pages, depth {depth}: {} states ({} shapes of the tables), \
         {} transitions ({} refused), {} operations in the alphabet, {:.1} s",
        report.states,
        report.structures,
        report.transitions,
        report.refused,
        alphabet().len(),
        start.elapsed().as_secs_f64()
    );
    println!("{summary}");
    println!("  new states per depth: {:?}", report.per_depth);
    println!("  coverage: {:?}", report.coverage);
    assert_eq!(report.per_depth.len(), depth + 1, "{summary}");
    if depth < DEPTH {
        return;
    }
    assert!(
        report.states > 2_000 && report.transitions > 100_000,
        "{summary}: too few states"
    );
    let c = &report.coverage;
    for (what, reached) in [
        ("a protected VM owns a page", c.protected_owns_page),
        ("KServ shares a page with a VM", c.host_shared),
        ("a VM shares a page with KServ", c.guest_shared),
        ("pages shared both ways at once", c.shared_both_ways),
        ("a dying VM", c.dying),
        ("a VM slot reused", c.slot_reused),
        ("a secret in a private page", c.secret_written),
        ("a page with a secret reclaimed", c.secret_scrubbed),
        ("KServ reads what a VM shared", c.declassified_read),
        ("KServ faults a page back in", c.faulted_in),
        ("KServ's load refused", c.read_refused),
        ("a vCPU loaded (KCore's lock dropped)", c.vcpu_loaded),
        ("a vCPU put back", c.vcpu_put),
        ("one run page of two running vCPUs", c.pinned_twice),
        (
            "a running vCPU's run page offered as a VM page, pool or root: Busy",
            c.pinned_refused,
        ),
        (
            "a teardown refused while a vCPU runs",
            c.teardown_while_running,
        ),
    ] {
        assert!(reached, "{summary}: never reached: {what}");
    }
    for e in [
        Error::InvalidParameter,
        Error::Denied,
        Error::Busy,
        Error::NoMemory,
        Error::NotFound,
    ] {
        assert!(
            c.errors.contains(&(e.to_x0() as i64)),
            "{summary}: no call was refused with {e:?}"
        );
    }
}
