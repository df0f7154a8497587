//! A corrupted stage-2 table is reported, never followed and never fatal.
//!
//! Each test writes a table descriptor behind KCore's back (straight into
//! the host double's memory, as a bug or a stray write would) that names a
//! page which is not one of that stage 2's own tables: a KServ page laid out
//! as a plausible table, a KCore page, another VM's table, an address past
//! RAM. Then KCore runs over a [`Spy`] that records every page it reads or
//! writes, and the test checks that KCore's self-check reports
//! [`Finding::CorruptTable`] instead of reading through the descriptor, that
//! every call which walks past it is refused (or, for a commit, completed)
//! without touching the page, and that each time the broken-invariant count
//! shows it.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

mod common;

use std::cell::RefCell;
use std::collections::BTreeSet;

use common::{FIRST_HOST_PFN, HOST_S2_POOL, RAM, RAM_SIZE, World, check_invariants, world};
use ed25519_compact::{KeyPair, Seed};
use kcore::addr::{Ipa, PAGE_SIZE, Pa, Pfn};
use kcore::audit::{AuditError, Finding, audit};
use kcore::exception::{TrapState, ec};
use kcore::host::Resume;
use kcore::hw::{DeviceMemory, PhysMemory, TableMemory, Tlb, Vmid};
use kcore::image::VerifyKey;
use kcore::ownership::PageState;
use kcore::pgtable::{Attrs, CorruptTable, Geometry, MapError, PageTable, Stage2};
use kcore::vm::{VmId, VmState};
use kcore_abi::{Error, HypercallId as H, vm_flags};
use kcore_arch::host_cpu::FakeFirmware;
use kcore_arch::host_memory::{FakeAllocator, FakeMachine};

/// The host double, recording every page KCore reads or writes through
/// any of the hardware traits.
struct Spy {
    m: FakeMachine,
    touched: RefCell<BTreeSet<u64>>,
}

impl Spy {
    fn new(m: FakeMachine) -> Spy {
        Spy {
            m,
            touched: RefCell::new(BTreeSet::new()),
        }
    }
    fn touch(&self, addr: u64) {
        self.touched.borrow_mut().insert(addr & !(PAGE_SIZE - 1));
    }
    /// Panics if KCore read or wrote any byte of the page at `page`.
    fn assert_untouched(&self, page: u64, what: &str) {
        assert!(
            !self.touched.borrow().contains(&page),
            "{what}: KCore touched the page {page:#x} a forged descriptor names"
        );
    }
}

impl TableMemory for Spy {
    fn read_entry(&self, table: Pa, index: usize) -> u64 {
        self.touch(table.raw() + index as u64 * 8);
        self.m.read_entry(table, index)
    }
    fn write_entry(&mut self, table: Pa, index: usize, value: u64) {
        self.touch(table.raw() + index as u64 * 8);
        self.m.write_entry(table, index, value);
    }
    fn zero_page(&mut self, page: Pa) {
        self.touch(page.raw());
        self.m.zero_page(page);
    }
}

impl PhysMemory for Spy {
    fn read(&self, pa: Pa, buf: &mut [u8]) {
        self.touch(pa.raw());
        self.m.read(pa, buf);
    }
    fn read_words(&self, pa: Pa, buf: &mut [u64]) {
        self.touch(pa.raw());
        self.m.read_words(pa, buf);
    }
    fn write_words(&mut self, pa: Pa, words: &[u64]) {
        self.touch(pa.raw());
        self.m.write_words(pa, words);
    }
    fn store_barrier(&mut self) {
        self.m.store_barrier();
    }
    fn scrub_page(&mut self, page: Pa) {
        self.touch(page.raw());
        self.m.scrub_page(page);
    }
    fn sync_for_guest(&mut self, page: Pa) {
        self.touch(page.raw());
        self.m.sync_for_guest(page);
    }
}

impl Tlb for Spy {
    fn flush_ipa(&mut self, vmid: Vmid, ipa: Ipa) {
        self.m.flush_ipa(vmid, ipa);
    }
    fn flush_vmid(&mut self, vmid: Vmid) {
        self.m.flush_vmid(vmid);
    }
}

impl DeviceMemory for Spy {
    fn mmio_read(&mut self, pa: Pa, width: u8) -> u64 {
        self.m.mmio_read(pa, width)
    }
    fn mmio_write(&mut self, pa: Pa, width: u8, value: u64) {
        self.m.mmio_write(pa, width, value);
    }
}

/// VM 0 (protected): its pool, and the page it has at [`GFN`].
const POOL0: u64 = FIRST_HOST_PFN;
const GFN: u64 = 0x80;
/// VM 1 (non-protected): its pool.
const POOL1: u64 = FIRST_HOST_PFN + 16;
/// KServ pages: one donated at setup, fresh ones to offer, a signature.
const GUEST_PFN: u64 = FIRST_HOST_PFN + 32;
const FRESH_PFN: u64 = FIRST_HOST_PFN + 40;
const SIG_PFN: u64 = FIRST_HOST_PFN + 60;
/// A KServ page laid out as a table whose every entry is a valid table or
/// page descriptor naming the page itself: a walk that followed a
/// descriptor into it would find a mapping wherever it looked.
const KSERV_PAGE: u64 = (FIRST_HOST_PFN + 100) << 12;
/// A KCore page (its image).
const KCORE_PAGE: u64 = RAM + 0x3000;
/// A free table page of VM 1: a table page, but not VM 0's (and one
/// nothing here reads, unlike VM 1's root, which the audit walks).
const OTHER_TABLE: u64 = (POOL1 + 4) << 12;
/// The first page past the only RAM bank.
const PAST_RAM: u64 = RAM + RAM_SIZE;

/// The gfn of the first page under root entry 3 of a VM's stage 2 (40-bit
/// IPAs: level-1 root, 1 GiB per entry), where the descriptor is forged.
const FORGED_GFN: u64 = 3 << 18;

struct Setup {
    w: World,
    /// VM 0's handle.
    vm: u64,
}

fn hvc(w: &mut World, spy: &mut Spy, id: H, args: &[u64]) -> u64 {
    let mut regs = [0u64; 31];
    regs[0] = id.function_id() as u64;
    regs[1..=args.len()].copy_from_slice(args);
    w.host.handle_hvc(0, &mut regs, spy);
    regs[0]
}

/// Two VMs; VM 0 protected, with a verify key installed and a page at GFN
/// (so its tables below root entry 0 exist). [`KSERV_PAGE`] holds
/// self-naming descriptors.
fn setup() -> Setup {
    let mut w = world();
    let kp = KeyPair::from_seed(Seed::new([5; 32]));
    w.host
        .mem_mut()
        .set_verify_key(VerifyKey::new(*kp.pk).unwrap());
    let vm = common::hvc(
        &mut w,
        H::HostCreateVm,
        &[vm_flags::PROTECTED, 0, 1, POOL0, 8],
    );
    assert_eq!(vm[0], 0);
    let other = common::hvc(&mut w, H::HostCreateVm, &[0, 0, 1, POOL1, 8]);
    assert_eq!(other[0], 0);
    assert_eq!(
        common::hvc(&mut w, H::HostDonateGuest, &[vm[1], GUEST_PFN, GFN])[0],
        0
    );
    for i in 0..512u64 {
        let desc = KSERV_PAGE | 0b11;
        w.hw.write(KSERV_PAGE + i * 8, &desc.to_le_bytes());
    }
    let vm0 = w.host.mem().vms().get(VmId(0)).unwrap();
    assert_eq!(vm0.stage2.geometry().start_level(), 1);
    assert_eq!(
        w.host.mem().owners().get(Pfn(OTHER_TABLE >> 12)),
        Some(PageState::VmTable { vm: VmId(1) })
    );
    check_invariants(&w).unwrap();
    Setup { w, vm: vm[1] }
}

/// Writes a valid table descriptor naming `target` into root entry `idx`
/// of the stage 2 rooted at `root`, as a stray write would (no TLB model,
/// no KCore code involved).
fn forge(w: &mut World, root: Pa, idx: u64, target: u64) {
    w.hw.write(root.raw() + idx * 8, &(target | 0b11).to_le_bytes());
}

/// Everything that walks VM 0's stage 2 past a descriptor forged to name
/// `target`: reported, refused, counted, and the page never touched.
fn a_forged_vm_descriptor_is_never_followed(target: u64, what: &str) {
    let Setup { mut w, vm, .. } = setup();
    let root = w.host.mem().vms().get(VmId(0)).unwrap().stage2.root();
    forge(&mut w, root, FORGED_GFN >> 18, target);
    let mut spy = Spy::new(std::mem::take(&mut w.hw));
    let broken = |w: &World| w.host.mem().broken_invariants();

    // (a) The self-check reports the descriptor without reading through it.
    assert_eq!(
        audit(w.host.mem(), &spy),
        Err(AuditError {
            finding: Finding::CorruptTable,
            at: target,
            vm: Some(VmId(0)),
        }),
        "{what}"
    );
    spy.assert_untouched(target, what);
    assert_eq!(broken(&w), 0, "{what}: the audit only reads");

    // (b), (c) Every call that walks past it is refused and counted.
    let denied = Error::Denied.to_x0();
    let calls: [(H, [u64; 4]); 5] = [
        (H::HostDonateGuest, [vm, FRESH_PFN, FORGED_GFN, 0]),
        (H::HostDonateGuest, [vm, FRESH_PFN, FORGED_GFN + 0x1FF, 0]),
        (H::HostShareGuest, [vm, FRESH_PFN, FORGED_GFN + 1, 0]),
        (H::HostUnshareGuest, [vm, FORGED_GFN, 0, 0]),
        (H::HostVerifyImage, [vm, FORGED_GFN, 4096, SIG_PFN]),
    ];
    for (n, (id, args)) in calls.into_iter().enumerate() {
        assert_eq!(hvc(&mut w, &mut spy, id, &args), denied, "{what}: {id:?}");
        assert_eq!(broken(&w), n as u64 + 1, "{what}: {id:?} counted");
        spy.assert_untouched(target, what);
    }
    assert_eq!(
        w.host.mem().owners().get(Pfn(FRESH_PFN)),
        Some(PageState::Host),
        "{what}: the refused donation changed nothing"
    );
    let vm0 = w.host.mem().vms().get(VmId(0)).unwrap();
    assert_eq!(
        vm0.state,
        VmState::Created,
        "{what}: not verified, not poisoned"
    );
    assert_eq!(vm0.owned_pages, 1);
    // The guest's own calls walk the same table.
    for share in [true, false] {
        let r = if share {
            w.host
                .mem()
                .check_guest_share_host(VmId(0), FORGED_GFN, &spy)
                .map(drop)
        } else {
            w.host
                .mem()
                .check_guest_unshare_host(VmId(0), FORGED_GFN, &spy)
                .map(drop)
        };
        assert_eq!(r, Err(Error::Denied), "{what}: guest share {share}");
    }
    assert_eq!(broken(&w), 7, "{what}");
    spy.assert_untouched(target, what);

    // The rest of the VM's stage 2 still works.
    assert_eq!(
        hvc(
            &mut w,
            &mut spy,
            H::HostDonateGuest,
            &[vm, FRESH_PFN, GFN + 1]
        ),
        0,
        "{what}"
    );
    assert_eq!(broken(&w), 7, "{what}");
    spy.assert_untouched(target, what);

    // And every host test's invariant check fails.
    w.hw = spy.m;
    let e = check_invariants(&w).unwrap_err();
    assert!(e.contains("CorruptTable"), "{what}: {e}");
}

#[test]
fn a_descriptor_naming_a_kserv_page_is_never_followed() {
    a_forged_vm_descriptor_is_never_followed(KSERV_PAGE, "KServ's page");
}

#[test]
fn a_descriptor_naming_a_kcore_page_is_never_followed() {
    a_forged_vm_descriptor_is_never_followed(KCORE_PAGE, "KCore's page");
}

#[test]
fn a_descriptor_naming_another_vms_table_is_never_followed() {
    a_forged_vm_descriptor_is_never_followed(OTHER_TABLE, "another VM's table page");
}

#[test]
fn a_descriptor_naming_no_ram_is_never_followed() {
    a_forged_vm_descriptor_is_never_followed(PAST_RAM, "past RAM");
    a_forged_vm_descriptor_is_never_followed(1 << 39, "far past RAM");
}

/// A KServ data abort from EL1 at `ipa`, translation fault at level 1.
fn data_abort(ipa: u64) -> TrapState {
    TrapState {
        esr: ec::DABT_LOW << 26 | 1 << 25 | 0x05,
        far: ipa,
        hpfar: (ipa >> 12) << 4,
        elr: 0xffff_8000_0810_0000,
        spsr: 0x3c5,
        vbar_el1: 0xffff_8000_0801_0000,
        sctlr_el1: 0,
    }
}

#[test]
fn kservs_stage_2_forged_under_device_memory_is_never_followed() {
    let Setup { mut w, .. } = setup();
    // Root entry 4 of KServ's stage 2 (40 bits: level 1, 1 GiB each)
    // covers 4 GiB.., device memory not yet mapped.
    let root = w.host.mem().host().table().root();
    forge(&mut w, root, 4, KSERV_PAGE);
    let mut spy = Spy::new(std::mem::take(&mut w.hw));
    assert_eq!(
        audit(w.host.mem(), &spy),
        Err(AuditError {
            finding: Finding::CorruptTable,
            at: KSERV_PAGE,
            vm: None,
        })
    );
    spy.assert_untouched(KSERV_PAGE, "audit");
    // KServ touches device memory under the forged entry: an external
    // abort, counted, the page untouched.
    let mut regs = [7u64; 31];
    let r = w.host.handle_trap(
        0,
        &data_abort(0x1_0000_0000),
        &mut regs,
        &mut spy,
        &mut FakeAllocator::new(HOST_S2_POOL + 16 * PAGE_SIZE, 0),
        &mut FakeFirmware::default(),
    );
    assert!(matches!(r, Resume::Inject(_)), "{r:?}");
    assert_eq!(w.host.mem().broken_invariants(), 1);
    spy.assert_untouched(KSERV_PAGE, "abort");
}

#[test]
fn a_commit_that_meets_kservs_stage_2_forged_counts_it() {
    let Setup { mut w, vm, .. } = setup();
    // Root entry 1 of KServ's stage 2 covers all of RAM: a donation's
    // commit unmaps the page from KServ through it.
    let root = w.host.mem().host().table().root();
    forge(&mut w, root, 1, KSERV_PAGE);
    let mut spy = Spy::new(std::mem::take(&mut w.hw));
    assert_eq!(
        hvc(
            &mut w,
            &mut spy,
            H::HostDonateGuest,
            &[vm, FRESH_PFN, GFN + 1]
        ),
        0,
        "a commit cannot fail"
    );
    assert_eq!(w.host.mem().broken_invariants(), 1);
    spy.assert_untouched(KSERV_PAGE, "host_unmap");
    w.hw = spy.m;
    let e = check_invariants(&w).unwrap_err();
    assert!(e.contains("CorruptTable"), "{e}");
}

/// The walkers themselves: each stops at the forged descriptor with where
/// it is and what it names, having read nothing behind it.
#[test]
fn every_walker_stops_at_a_forged_descriptor() {
    const ROOT: u64 = 0x4000_0000;
    let in_tables = |p: Pa| (ROOT..ROOT + 64 * PAGE_SIZE).contains(&p.raw());
    let mut m = FakeMachine::new();
    let mut alloc = FakeAllocator::new(ROOT + 2 * PAGE_SIZE, 62);
    let mut t = PageTable::<Stage2>::new(Pa(ROOT), Geometry::stage2(40).unwrap());
    t.map(
        &mut m,
        &mut alloc,
        &in_tables,
        0x1000,
        Pa(0x9000_0000),
        PAGE_SIZE,
        Attrs::RAM_RW,
    )
    .unwrap();
    // Root entry 0 leads to a level-2 table; forge its entry 0 (which
    // leads to the level-3 table) to name the foreign page.
    let l2 = Pa(m.read_entry(Pa(ROOT), 0) & 0x0000_FFFF_FFFF_F000);
    let foreign = 0x8000_0000u64;
    for i in 0..512 {
        m.write(foreign + i * 8, &(foreign | 0b11).to_le_bytes());
    }
    m.write(l2.raw(), &(foreign | 0b11).to_le_bytes());
    let mut spy = Spy::new(m);
    let bad = CorruptTable {
        va: 0,
        level: 2,
        next: Pa(foreign),
    };
    assert_eq!(t.walk(&spy, &in_tables, 0x1000), Err(bad));
    assert_eq!(t.tables_needed(&spy, &in_tables, 0x2000), Err(bad));
    assert_eq!(t.unmap_leaf(&mut spy, &in_tables, 0x1000), Err(bad));
    assert_eq!(
        t.map(
            &mut spy,
            &mut alloc,
            &in_tables,
            0x2000,
            Pa(0x9000_1000),
            PAGE_SIZE,
            Attrs::RAM_RW
        ),
        Err(MapError::CorruptTable(bad))
    );
    let mut leaves = 0;
    assert_eq!(
        t.for_each_leaf(&spy, &in_tables, &mut |_, _, _| leaves += 1),
        Err(bad)
    );
    assert_eq!(leaves, 0);
    let mut tables = Vec::new();
    assert_eq!(
        t.for_each_table(&spy, &in_tables, &mut |p| tables.push(p)),
        Err(bad)
    );
    assert_eq!(tables, [Pa(ROOT), Pa(ROOT + PAGE_SIZE), l2]);
    spy.assert_untouched(foreign, "the walkers");
    // Elsewhere the tree is still walked.
    assert_eq!(t.walk(&spy, &in_tables, 0x4000_0000), Ok(None));
    assert_eq!(t.tables_needed(&spy, &in_tables, 0x4000_0000), Ok(2));
}

/// KServ's stage-2 tables are its root and its table pool's pages only: a
/// descriptor naming another of KCore's pages (its image, the ownership
/// table) is as corrupt as one naming KServ's.
#[test]
fn kservs_stage_2_never_follows_into_other_kcore_memory() {
    let Setup { mut w, .. } = setup();
    let root = w.host.mem().host().table().root();
    let kcore_page = RAM + 0x1000; // KCore's, outside KServ's table pages
    forge(&mut w, root, 4, kcore_page);
    let mut spy = Spy::new(std::mem::take(&mut w.hw));
    assert_eq!(
        audit(w.host.mem(), &spy),
        Err(AuditError {
            finding: Finding::CorruptTable,
            at: kcore_page,
            vm: None,
        })
    );
    spy.assert_untouched(kcore_page, "audit");
    let mut regs = [7u64; 31];
    let r = w.host.handle_trap(
        0,
        &data_abort(0x1_0000_0000),
        &mut regs,
        &mut spy,
        &mut FakeAllocator::new(HOST_S2_POOL + 16 * PAGE_SIZE, 0),
        &mut FakeFirmware::default(),
    );
    assert!(matches!(r, Resume::Inject(_)), "{r:?}");
    assert_eq!(w.host.mem().broken_invariants(), 1);
    spy.assert_untouched(kcore_page, "abort");
}
