//! The body of the fuzz target for KCore's trap dispatcher, shared by the
//! libFuzzer target `kcore/fuzz/fuzz_targets/dispatcher.rs` and the
//! deterministic host test `kcore/tests/dispatcher_fuzz.rs` (so the
//! committed corpus means the same thing to both).
//!
//! [`run`] decodes its input bytes into a sequence of KServ traps — ESR class
//! and ISS, `FAR_EL2`, `HPFAR_EL2`, `x0..x7`, `SPSR_EL2`, the CPU index and
//! the firmware's answer — and applies each to one world (the [`template`]:
//! two RAM banks, three VMs with donated, shared and reclaimable pages, a
//! signed boot image, one free VM slot) through [`Host::handle_trap`] over
//! the host doubles, playing the EL2 glue's part for `CPU_ON` and
//! `CPU_OFF`. After every trap it checks the trap's result and effects
//! (`apply`) and the invariants of the whole world (`check_tables`); a
//! violation is an `Err`, a KCore panic is a panic.
//!
//! The decoder is biased, not restricted: every register value can still be
//! any `u64`, but a byte or two usually picks a live VM handle, a page of
//! RAM, a known function id or a boundary value, so the stateful paths are
//! reached without the fuzzer having to guess 64-bit handles.

#![allow(
    dead_code,
    reason = "the fuzz target and the host test each use a different part"
)]

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use ed25519_compact::{KeyPair, Seed};
use kcore::addr::{Ipa, MemRange, PAGE_SIZE, Pa, Pfn, RangeSet};
use kcore::exception::{Esr, TrapState, ec, fault_ipa};
use kcore::host::{Direct, Host, Regs, Resume, run_result};
use kcore::host_stage2::{HostMemoryMap, HostStage2};
use kcore::hw::{DeviceMemory, PhysMemory, TableMemory, Tlb, Vmid};
use kcore::image::VerifyKey;
use kcore::mem_protect::MemCore;
use kcore::ownership::{OwnershipTable, PageState};
use kcore::pgtable::{Geometry, PageTable, Stage2};
use kcore::psci::{CpuState, PsciRelay};
use kcore::vcpu::{ExitKind, GuestExit, run_vcpu};
use kcore::vm::{VmHandle, VmId, VmState};
use kcore_abi::{Error, HYPERCALL_BASE, HypercallId, psci, smccc, vm_flags};
use kcore_arch::host_cpu::{FakeFirmware, ScriptedGuest};
use kcore_arch::host_memory::{FakeAllocator, FakeMachine};

// ---- the machine ----------------------------------------------------------------

/// RAM bank 0: 4 MiB; KCore keeps its first MiB.
pub const RAM0: u64 = 0x4000_0000;
/// Size of bank 0.
pub const RAM0_SIZE: u64 = 4 << 20;
/// KCore's image and pool at the start of bank 0.
pub const KCORE_SIZE: u64 = 1 << 20;
/// RAM bank 1: 2 MiB after a 2 MiB hole (device memory between two banks).
pub const RAM1: u64 = 0x4060_0000;
/// Size of bank 1.
pub const RAM1_SIZE: u64 = 2 << 20;
/// A GICv2 virtual interface (GICH + GICV) that KCore keeps: device memory
/// KServ must never map.
pub const GIC_KCORE: u64 = 0x0803_0000;
/// Its size.
pub const GIC_KCORE_SIZE: u64 = 0x2_0000;
/// The GICv2 `GICV` frame inside it, which KCore maps into VMs.
pub const GICV: u64 = GIC_KCORE + 0x1_0000;
/// KServ's stage-2 root (two concatenated pages for 40 bits), in KCore's MiB.
pub const HOST_S2_ROOT: u64 = RAM0 + 0x8_0000;
/// KCore's pool for KServ's stage-2 tables: small enough that a long run of
/// device aborts can exhaust it (the `NoMemory` path).
pub const HOST_S2_POOL_PAGES: u64 = 32;
/// The CPU's PA size.
pub const PA_BITS: u32 = 40;
/// First page KServ owns.
pub const FIRST_HOST_PFN: u64 = (RAM0 + KCORE_SIZE) >> 12;
/// The platform's CPUs (MPIDRs, affinity fields only).
pub const MPIDRS: [u64; CPUS] = [0, 1, 0x100, 0x1_0000_0000];

/// RAM banks the ownership table covers.
pub const BANKS: usize = 4;
/// CPUs.
pub const CPUS: usize = 4;
/// VM slots.
pub const VMS: usize = 4;

/// KCore's host state as the fuzzer sees it.
pub type FuzzHost = Host<Entries, BANKS, CPUS, VMS>;

/// One world: KCore's state and the doubles it runs on.
#[derive(Clone, Debug)]
pub struct World {
    /// KCore.
    pub host: FuzzHost,
    /// Memory and TLBs.
    pub hw: Machine,
    /// KCore's pool for KServ's stage 2.
    pub alloc: FakeAllocator,
}

std::thread_local! {
    /// Writes to any ownership table on this thread (see [`Entries`]).
    static OWNER_WRITES: Cell<u64> = const { Cell::new(0) };
}

fn owner_writes() -> u64 {
    OWNER_WRITES.with(Cell::get)
}

/// The ownership table's storage: a `Vec` that counts every mutable access
/// (the table takes one only to write an entry). A trap that leaves the
/// count alone wrote no page state; the checks rely on that to skip
/// re-reading the table.
#[derive(Clone, Debug)]
pub struct Entries(Vec<u64>);

impl AsRef<[u64]> for Entries {
    fn as_ref(&self) -> &[u64] {
        &self.0
    }
}

impl AsMut<[u64]> for Entries {
    fn as_mut(&mut self) -> &mut [u64] {
        OWNER_WRITES.with(|c| c.set(c.get() + 1));
        &mut self.0
    }
}

const PAGE_WORDS: usize = (PAGE_SIZE / 8) as usize;

/// [`FakeMachine`], which KCore reads and writes as its hardware (its TLB
/// model counts unflushed invalidations), plus a copy of every page KCore
/// wrote as table memory, kept as whole pages of words, and a count of the
/// writes. The invariant checks walk the copy with their own descriptor
/// decoder ([`walk_tree`]), a page lookup per table rather than per entry,
/// which keeps checking whole trees after a trap cheap enough to fuzz with;
/// the count tells them when a trap wrote nothing. [`Machine::mirror_matches`]
/// checks that the copy and the memory agree.
#[derive(Clone, Debug, Default)]
pub struct Machine {
    /// The host double KCore runs on.
    pub fake: FakeMachine,
    mirror: BTreeMap<u64, Box<[u64; PAGE_WORDS]>>,
    /// Table writes, page zeroings and scrubs so far.
    pub writes: u64,
    /// Table entries written at an address that is not 8-byte aligned.
    pub misaligned: u64,
}

impl Machine {
    /// Whether every mirrored page reads the same through [`FakeMachine`].
    pub fn mirror_matches(&self) -> Result<(), String> {
        for (page, words) in &self.mirror {
            for (i, w) in words.iter().enumerate() {
                let real = self.fake.read_entry(Pa(*page), i);
                if real != *w {
                    return Err(format!(
                        "mirror of {page:#x}[{i}] is {w:#x}, memory holds {real:#x}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The mirror as table memory, for walks.
    fn view(&self) -> MirrorView<'_> {
        MirrorView {
            mirror: &self.mirror,
            last: Cell::new(None),
        }
    }
}

impl TableMemory for Machine {
    fn read_entry(&self, table: Pa, index: usize) -> u64 {
        self.fake.read_entry(table, index)
    }
    fn write_entry(&mut self, table: Pa, index: usize, value: u64) {
        self.fake.write_entry(table, index, value);
        self.writes += 1;
        let addr = table.raw().wrapping_add(index as u64 * 8);
        if !addr.is_multiple_of(8) {
            self.misaligned += 1;
            return;
        }
        let page = addr & !(PAGE_SIZE - 1);
        let words = self
            .mirror
            .entry(page)
            .or_insert_with(|| Box::new([0; PAGE_WORDS]));
        words[((addr % PAGE_SIZE) / 8) as usize] = value;
    }
    fn zero_page(&mut self, page: Pa) {
        self.fake.zero_page(page);
        self.writes += 1;
        self.mirror.remove(&page.raw());
    }
}

impl PhysMemory for Machine {
    fn read(&self, pa: Pa, buf: &mut [u8]) {
        self.fake.read(pa, buf);
    }
    fn read_words(&self, pa: Pa, buf: &mut [u64]) {
        self.fake.read_words(pa, buf);
    }
    fn write_words(&mut self, pa: Pa, words: &[u64]) {
        // Through the table path, so the mirror follows.
        let page = Pa(pa.raw() & !(PAGE_SIZE - 1));
        let first = ((pa.raw() % PAGE_SIZE) / 8) as usize;
        for (i, w) in words.iter().enumerate() {
            self.write_entry(page, first + i, *w);
        }
    }
    fn store_barrier(&mut self) {}
    fn sync_for_guest(&mut self, page: Pa) {
        self.fake.sync_for_guest(page);
    }
    fn scrub_page(&mut self, page: Pa) {
        self.fake.scrub_page(page);
        self.writes += 1;
        self.mirror.remove(&(page.raw() & !(PAGE_SIZE - 1)));
    }
}

impl DeviceMemory for Machine {
    fn mmio_read(&mut self, pa: Pa, width: u8) -> u64 {
        self.fake.mmio_read(pa, width)
    }
    fn mmio_write(&mut self, pa: Pa, width: u8, value: u64) {
        self.fake.mmio_write(pa, width, value);
    }
}

impl Tlb for Machine {
    fn flush_ipa(&mut self, vmid: Vmid, ipa: Ipa) {
        self.fake.flush_ipa(vmid, ipa);
    }
    fn flush_vmid(&mut self, vmid: Vmid) {
        self.fake.flush_vmid(vmid);
    }
}

/// Read-only table memory over [`Machine`]'s mirror, remembering the last
/// page it found (walks read a table's entries in a row).
struct MirrorView<'a> {
    mirror: &'a BTreeMap<u64, Box<[u64; PAGE_WORDS]>>,
    last: Cell<Option<(u64, &'a [u64; PAGE_WORDS])>>,
}

impl TableMemory for MirrorView<'_> {
    fn read_entry(&self, table: Pa, index: usize) -> u64 {
        let addr = table.raw().wrapping_add(index as u64 * 8);
        let page = addr & !(PAGE_SIZE - 1);
        let words = match self.last.get() {
            Some((p, w)) if p == page => Some(w),
            _ => {
                let w = self.mirror.get(&page).map(|b| &**b);
                if let Some(w) = w {
                    self.last.set(Some((page, w)));
                }
                w
            }
        };
        words.map_or(0, |w| w[((addr % PAGE_SIZE) / 8) as usize])
    }
    fn write_entry(&mut self, _: Pa, _: usize, _: u64) {
        unreachable!("the mirror view is read-only");
    }
    fn zero_page(&mut self, _: Pa) {
        unreachable!("the mirror view is read-only");
    }
}

/// Pre-populated VMs, by pool (each pool: 4 pages, the 2-page root first,
/// plus one page per vCPU for its context).
/// A: protected, with two donated pages, one of them shared back by the
/// guest and mapped by KServ. B: non-protected, with a page KServ shares, a
/// donated page and an extra pool page. C: torn down, its pages waiting to
/// be reclaimed. Slot 3 is free.
pub const POOL_A: u64 = FIRST_HOST_PFN;
/// VM B's pool.
pub const POOL_B: u64 = FIRST_HOST_PFN + 4;
/// VM C's pool.
pub const POOL_C: u64 = FIRST_HOST_PFN + 8;
/// First of the pages the template hands to VMs.
pub const GUEST_PAGES: u64 = FIRST_HOST_PFN + 64;
/// Length of VM A's signed boot image, at its gfn 0x10.
pub const IMAGE_LEN: u64 = 3000;
/// KServ's page holding the image's signature.
pub const SIG_PAGE: u64 = GUEST_PAGES + 9;

/// The pre-populated world, built once and cloned for every input.
pub fn template() -> &'static World {
    static TEMPLATE: OnceLock<World> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let w = build_template();
        if let Err(e) = check_world(&w) {
            unreachable!("the fuzz template breaks an invariant: {e}");
        }
        w
    })
}

fn empty_world() -> World {
    let mut banks = RangeSet::<BANKS>::new();
    let mut map = HostMemoryMap::<BANKS>::new();
    for (base, size) in [(RAM0, RAM0_SIZE), (RAM1, RAM1_SIZE)] {
        let r = MemRange::new(base, size).expect("RAM bank");
        banks.insert(r).expect("RAM bank fits");
        map.add_ram(r).expect("RAM bank fits");
    }
    let storage = Entries(vec![
        0u64;
        OwnershipTable::<Entries, BANKS>::entries_needed(&banks)
    ]);
    let mut owners = OwnershipTable::new(storage, banks).expect("ownership table");
    let kcore = MemRange::new(RAM0, KCORE_SIZE).expect("KCore's range");
    owners.mark_kcore(kcore).expect("KCore's pages");
    map.add_kcore(kcore).expect("KCore's range fits");
    map.add_kcore(MemRange::new(GIC_KCORE, GIC_KCORE_SIZE).expect("GIC range"))
        .expect("GIC range fits");
    let mut hw = Machine::default();
    let mut alloc = FakeAllocator::new(HOST_S2_ROOT + 16 * PAGE_SIZE, HOST_S2_POOL_PAGES);
    let geometry = Geometry::stage2(PA_BITS).expect("40-bit stage 2");
    let mut s2 = HostStage2::new(PageTable::<Stage2>::new(Pa(HOST_S2_ROOT), geometry), map);
    s2.map_ram(&mut hw, &mut alloc, &|t| owners.holds_table(t, None))
        .expect("KServ's RAM maps");
    World {
        host: Host::new(
            MemCore::new(owners, s2, PA_BITS),
            PsciRelay::new(&MPIDRS, 0),
        ),
        hw,
        alloc,
    }
}

fn setup_hvc(w: &mut World, id: HypercallId, args: &[u64]) -> u64 {
    let mut regs: Regs = [0; 31];
    regs[0] = id.function_id() as u64;
    regs[1..=args.len()].copy_from_slice(args);
    let t = TrapState {
        esr: ec::HVC64 << 26 | 1 << 25,
        ..BASE_TRAP
    };
    let mut fw = FakeFirmware::default();
    w.host
        .handle_trap(0, &t, &mut regs, &mut w.hw, &mut w.alloc, &mut fw);
    assert_eq!(regs[0], 0, "template: {id:?}{args:x?} failed");
    regs[1]
}

fn build_template() -> World {
    use HypercallId as H;
    let mut w = empty_world();
    let a = setup_hvc(
        &mut w,
        H::HostCreateVm,
        &[vm_flags::PROTECTED, 0, 2, POOL_A, 4],
    );
    let b = setup_hvc(&mut w, H::HostCreateVm, &[0, 0, 4, POOL_B, 4]);
    let c = setup_hvc(&mut w, H::HostCreateVm, &[0, 0, 1, POOL_C, 4]);
    // VM A's boot image: the first IMAGE_LEN bytes of its page at gfn 0x10,
    // signed with the key KCore holds; the signature in KServ's SIG_PAGE.
    let key = KeyPair::from_seed(Seed::new([0x4b; 32]));
    w.host
        .mem_mut()
        .set_verify_key(VerifyKey::new(*key.pk).expect("an Ed25519 key"));
    let image: Vec<u8> = (0..IMAGE_LEN).map(|i| (i * 13 + 1) as u8).collect();
    w.hw.fake.write(GUEST_PAGES << 12, &image);
    // The signature block: the signature over the image and a one-page
    // MMIO manifest, then the manifest.
    let manifest = kcore_abi::manifest::Manifest::new(&[(0x9000, 1)]).expect("a manifest");
    let mut tail = [0u8; kcore_abi::manifest::MAX_LEN];
    let n = manifest.encode(&mut tail).expect("room");
    let signed = [&image[..], &tail[..n]].concat();
    let mut block = key.sk.sign(&signed, None).to_vec();
    block.extend_from_slice(&tail[..n]);
    w.hw.fake.write(SIG_PAGE << 12, &block);
    setup_hvc(&mut w, H::HostCreateVcpu, &[a, 0]);
    setup_hvc(&mut w, H::HostCreateVcpu, &[b, 0]);
    setup_hvc(&mut w, H::HostCreateVcpu, &[b, 1]);
    // Each vCPU's context took a pool page: give the pools their table
    // pages back.
    setup_hvc(&mut w, H::HostDonateVmPool, &[a, GUEST_PAGES + 10]);
    setup_hvc(&mut w, H::HostDonateVmPool, &[b, GUEST_PAGES + 11]);
    setup_hvc(&mut w, H::HostDonateVmPool, &[b, GUEST_PAGES + 12]);
    setup_hvc(&mut w, H::HostDonateGuest, &[a, GUEST_PAGES, 0x10]);
    setup_hvc(&mut w, H::HostDonateGuest, &[a, GUEST_PAGES + 1, 0x11]);
    setup_hvc(&mut w, H::HostShareGuest, &[b, GUEST_PAGES + 2, 0x20]);
    setup_hvc(&mut w, H::HostDonateGuest, &[b, GUEST_PAGES + 3, 0x21]);
    setup_hvc(&mut w, H::HostDonateVmPool, &[b, GUEST_PAGES + 4]);
    setup_hvc(&mut w, H::HostDonateGuest, &[c, GUEST_PAGES + 6, 0x30]);
    setup_hvc(&mut w, H::HostShareGuest, &[c, GUEST_PAGES + 7, 0x31]);
    setup_hvc(&mut w, H::HostTeardownVm, &[c]);
    // VM A shares its page at gfn 0x11 with KServ, and KServ touches it.
    let t = w
        .host
        .mem()
        .check_guest_share_host(VmId(0), 0x11, &w.hw)
        .expect("guest_share_host");
    w.host.mem_mut().commit_guest_share_host(t);
    let ipa = (GUEST_PAGES + 1) << 12;
    let t = TrapState {
        esr: ec::DABT_LOW << 26 | 1 << 25 | 0x07,
        far: ipa,
        hpfar: (ipa >> 12) << 4,
        ..BASE_TRAP
    };
    let mut regs: Regs = [0; 31];
    let r = w.host.handle_trap(
        0,
        &t,
        &mut regs,
        &mut w.hw,
        &mut w.alloc,
        &mut FakeFirmware::default(),
    );
    assert_eq!(r, Resume::Retry, "template: KServ maps the shared page");
    w
}

// ---- the input ------------------------------------------------------------------

/// Most traps one input applies (bounds the time of one run).
pub const MAX_TRAPS: usize = 64;

/// The trap every decoded trap starts from: KServ at EL1h, DAIF masked.
const BASE_TRAP: TrapState = TrapState {
    esr: 0,
    far: 0,
    hpfar: 0,
    elr: 0xffff_8000_0810_0000,
    spsr: 0x3c5,
    vbar_el1: 0xffff_8000_0801_0000,
    sctlr_el1: 0,
};

/// Input bytes, read front to back; past the end every byte reads as zero.
struct Bytes<'a> {
    data: &'a [u8],
}

impl Bytes<'_> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        u64::from_le_bytes(b)
    }
}

/// Tags of a register word (see [`Bytes`] and `word`): the first byte of
/// every word picks how the rest is read.
pub mod tag {
    /// `0x00..=0x3F`: the tag itself (a small number).
    pub const SMALL_MAX: u8 = 0x3F;
    /// `0x40..=0x5F`: a VM handle: the live ones, stale ones, malformed ones.
    pub const HANDLE: u8 = 0x40;
    /// `0x60..=0x7F`: a page, frame or address the template makes special.
    pub const SPECIAL: u8 = 0x60;
    /// `0x80..=0x9F`: a RAM frame number, from the next two bytes.
    pub const RAM_PFN: u8 = 0x80;
    /// `0xA0..=0xBF`: a RAM address, from the next three bytes.
    pub const RAM_ADDR: u8 = 0xA0;
    /// `0xC0..=0xDF`: a boundary value.
    pub const BOUNDARY: u8 = 0xC0;
    /// `0xE0..=0xFF`: a raw little-endian `u64` from the next eight bytes
    /// (the encoder writes `0xFF`).
    pub const RAW: u8 = 0xFF;
}

/// Frames, addresses and ids the template makes special.
const SPECIAL: [u64; 32] = [
    POOL_A,
    POOL_A + 2,
    POOL_B,
    POOL_B + 3,
    POOL_C,
    POOL_C + 2,
    GUEST_PAGES,
    GUEST_PAGES + 1,
    GUEST_PAGES + 2,
    GUEST_PAGES + 3,
    GUEST_PAGES + 4,
    GUEST_PAGES + 6,
    GUEST_PAGES + 7,
    SIG_PAGE,
    RAM0 >> 12,
    HOST_S2_ROOT >> 12,
    (RAM0 + RAM0_SIZE) >> 12,
    RAM1 >> 12,
    ((RAM1 + RAM1_SIZE) >> 12) - 1,
    GIC_KCORE >> 12,
    0x10,
    0x11,
    0x20,
    (1 << (PA_BITS - 12)) - 1,
    MPIDRS[2],
    MPIDRS[3],
    HYPERCALL_BASE as u64 + 2,
    RAM0 + KCORE_SIZE,
    RAM1 + 0x1000,
    GUEST_PAGES << 12,
    (GUEST_PAGES + 1) << 12,
    GIC_KCORE,
];

/// Boundary values.
const BOUNDARY: [u64; 24] = [
    0,
    1,
    2,
    32,
    40,
    48,
    64,
    65,
    0xFFF,
    0x1000,
    u32::MAX as u64,
    1 << 32,
    (1 << 36) - 1,
    1 << 36,
    1 << 40,
    (1 << 44) - 1,
    1 << 48,
    (1 << 52) - 1,
    1 << 52,
    i64::MAX as u64,
    1 << 63,
    u64::MAX - 0xFFF,
    u64::MAX - 1,
    u64::MAX,
];

/// Function ids for `x0` besides KCore's own: the first unknown ones in and
/// out of KCore's range, the SMCCC UID query, Linux's hyp-stub calls, PSCI
/// (in and out of range) and other SMCCC services.
const OTHER_FIDS: [u64; 24] = [
    (HYPERCALL_BASE + HypercallId::ALL.len() as u32) as u64,
    0xC600_FFFF,
    HYPERCALL_BASE as u64 | 1 << 32,
    smccc::VENDOR_HYP_CALL_UID as u64,
    0,
    1,
    2,
    3,
    psci::VERSION as u64,
    psci::CPU_SUSPEND_32 as u64,
    psci::CPU_SUSPEND_64 as u64,
    psci::CPU_OFF as u64,
    psci::CPU_ON_32 as u64,
    psci::CPU_ON_64 as u64,
    psci::AFFINITY_INFO_32 as u64,
    psci::AFFINITY_INFO_64 as u64,
    psci::MIGRATE_INFO_TYPE as u64,
    psci::SYSTEM_OFF as u64,
    psci::SYSTEM_RESET as u64,
    psci::FEATURES as u64,
    0x8400_001F,
    0x8400_0020,
    smccc::SMCCC_VERSION as u64,
    0xC200_0000,
];

/// Exception classes besides HVC, SMC and the lower-EL aborts.
const OTHER_CLASSES: [u64; 8] = [
    ec::UNKNOWN,
    0x01,
    0x07,
    ec::SYS64,
    0x19,
    ec::IABT_CUR,
    ec::DABT_CUR,
    0x3F,
];

/// Fault status codes: translation, access flag and permission faults at
/// each level, LPA2's level -1, external aborts, alignment, TLB conflict.
const FSCS: [u64; 16] = [
    0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x2B, 0x10, 0x21, 0x30,
];

/// `SPSR_EL2` values: EL1h, EL1t, EL0t, AArch32 user, EL2h (impossible from
/// KServ), EL1h with PAN.
const SPSRS: [u64; 6] = [0x3c5, 0x3c4, 0x0, 0x10, 0x3c9, 0x3c5 | 1 << 22];

/// Firmware answers: success, and PSCI's errors.
const FW_ANSWERS: [u64; 8] = [
    0,
    0,
    0,
    -1i64 as u64,
    -2i64 as u64,
    -3i64 as u64,
    -4i64 as u64,
    -6i64 as u64,
];

/// The class byte of a trap (`% 8`).
pub mod class {
    /// HVC (three of the eight values).
    pub const HVC: u8 = 0;
    /// SMC.
    pub const SMC: u8 = 3;
    /// Data abort from a lower EL.
    pub const DABT: u8 = 4;
    /// Instruction abort from a lower EL.
    pub const IABT: u8 = 5;
    /// Another known class, from the next byte.
    pub const OTHER: u8 = 6;
    /// A raw class, from the next byte.
    pub const RAW: u8 = 7;
}

/// The `extra` byte of a trap.
pub mod extra {
    /// `ELR_EL2` from a word.
    pub const ELR: u8 = 1 << 0;
    /// `VBAR_EL1` from a word.
    pub const VBAR: u8 = 1 << 1;
    /// `SCTLR_EL1.SPAN`.
    pub const SPAN: u8 = 1 << 2;
    /// `SCTLR_EL1.DSSBS`.
    pub const DSSBS: u8 = 1 << 3;
    /// `HPFAR_EL2` is the raw word (otherwise the word is an IPA).
    pub const RAW_HPFAR: u8 = 1 << 4;
    /// `FAR_EL2` is its own word (otherwise the IPA of the HPFAR word).
    pub const OWN_FAR: u8 = 1 << 5;
    /// A CPU started by `CPU_ON` does not arrive (stays `ON_PENDING`).
    pub const NO_ARRIVAL: u8 = 1 << 6;
}

/// One decoded trap.
#[derive(Clone, Copy, Debug)]
pub struct Trap {
    /// CPU index (may be out of range: 4..=7).
    pub cpu: usize,
    /// KServ's state at the trap.
    pub state: TrapState,
    /// `x0..x30`.
    pub regs: Regs,
    /// What the firmware answers to anything this trap makes KCore ask.
    pub firmware: u64,
    /// See [`extra::NO_ARRIVAL`].
    pub no_arrival: bool,
}

fn handles(w: &World) -> ([u64; 12], usize) {
    let mut out = [0u64; 12];
    let mut n = 0;
    let mut push = |h: u64| {
        if n < out.len() {
            out[n] = h;
            n += 1;
        }
    };
    for (_, vm) in w.host.mem().vms().iter() {
        push(vm.handle.0);
    }
    for (_, vm) in w.host.mem().vms().iter().take(2) {
        push(vm.handle.0 + (1 << 16)); // a later generation
        push(vm.handle.0 | 1 << 48); // malformed
    }
    push(VmHandle::new(VmId(3), 0).0); // the free slot
    push(VmHandle::new(VmId(VMS as u16), 0).0); // no such slot
    push(0);
    (out, n)
}

fn ram_pfn(v: u16) -> u64 {
    // Either bank, a few frames past its end included.
    let v = v as u64;
    if v & 1 == 0 {
        (RAM0 >> 12) + (v >> 1) % ((RAM0_SIZE >> 12) + 4)
    } else {
        (RAM1 >> 12) + (v >> 1) % ((RAM1_SIZE >> 12) + 4)
    }
}

fn word(b: &mut Bytes<'_>, w: &World) -> u64 {
    let t = b.byte();
    match t {
        0..=tag::SMALL_MAX => t as u64,
        0x40..=0x5F => {
            let (h, n) = handles(w);
            h[(t - tag::HANDLE) as usize % n]
        }
        0x60..=0x7F => SPECIAL[(t - tag::SPECIAL) as usize % SPECIAL.len()],
        0x80..=0x9F => ram_pfn(b.u16()),
        0xA0..=0xBF => ram_pfn(b.u16()) << 12 | (b.byte() as u64) << 4,
        0xC0..=0xDF => BOUNDARY[(t - tag::BOUNDARY) as usize % BOUNDARY.len()],
        0xE0..=0xFF => b.u64(),
    }
}

fn function_id(b: &mut Bytes<'_>, w: &World) -> u64 {
    let t = b.byte();
    let ours = HypercallId::ALL.len();
    match t as usize {
        i if i < 0xC0 => {
            let i = i % (ours + OTHER_FIDS.len());
            match HypercallId::ALL.get(i) {
                Some(id) => id.function_id() as u64,
                None => OTHER_FIDS[i - ours],
            }
        }
        _ => word(b, w),
    }
}

fn decode_trap(b: &mut Bytes<'_>, w: &World) -> Trap {
    let class_byte = b.byte();
    let class = match class_byte % 8 {
        0..=2 => ec::HVC64,
        class::SMC => ec::SMC64,
        class::DABT => ec::DABT_LOW,
        class::IABT => ec::IABT_LOW,
        class::OTHER => OTHER_CLASSES[b.byte() as usize % OTHER_CLASSES.len()],
        _ => (b.byte() & 0x3F) as u64,
    };
    let shape = b.byte();
    let iss = if shape >= 0xC0 {
        word(b, w) & 0x1FF_FFFF
    } else if matches!(
        class,
        ec::DABT_LOW | ec::IABT_LOW | ec::DABT_CUR | ec::IABT_CUR
    ) {
        // FSC, WnR, S1PTW.
        FSCS[shape as usize % FSCS.len()] | (shape as u64 & 0xC0)
    } else {
        0
    };
    let cpu_byte = b.byte();
    let cpu = if cpu_byte >= 0xF8 {
        CPUS + (cpu_byte & 3) as usize
    } else {
        cpu_byte as usize % CPUS
    };
    let firmware = FW_ANSWERS[b.byte() as usize % FW_ANSWERS.len()];
    let spsr_byte = b.byte();
    let spsr = if spsr_byte >= 0xF0 {
        word(b, w)
    } else {
        SPSRS[spsr_byte as usize % SPSRS.len()]
    };
    let flags = b.byte();
    let mut regs: Regs = core::array::from_fn(|i| 0xA5A5_0000_0000_0000 | i as u64);
    regs[0] = function_id(b, w);
    for r in &mut regs[1..8] {
        *r = word(b, w);
    }
    let hpfar_word = word(b, w);
    let (hpfar, ipa) = if flags & extra::RAW_HPFAR != 0 {
        (hpfar_word, fault_ipa(hpfar_word, 0))
    } else {
        ((hpfar_word >> 12) << 4, hpfar_word)
    };
    let far = if flags & extra::OWN_FAR != 0 {
        word(b, w)
    } else {
        ipa
    };
    let mut state = TrapState {
        esr: class << 26 | 1 << 25 | iss,
        far,
        hpfar,
        ..BASE_TRAP
    };
    state.spsr = spsr;
    if flags & extra::ELR != 0 {
        state.elr = word(b, w);
    }
    if flags & extra::VBAR != 0 {
        state.vbar_el1 = word(b, w);
    }
    if flags & extra::SPAN != 0 {
        state.sctlr_el1 |= 1 << 23;
    }
    if flags & extra::DSSBS != 0 {
        state.sctlr_el1 |= 1 << 44;
    }
    Trap {
        cpu,
        state,
        regs,
        firmware,
        no_arrival: flags & extra::NO_ARRIVAL != 0,
    }
}

// ---- running --------------------------------------------------------------------

/// What a run reached, so the host test can show the fuzz body is not stuck
/// in shallow rejections.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Traps applied.
    pub traps: u64,
    /// Traps after which the whole world was checked (something changed).
    pub full_checks: u64,
    /// Successful HVCs, by index in [`HypercallId::ALL`].
    pub hvc_ok: [u64; HypercallId::ALL.len()],
    /// Refused HVCs, by index in [`HypercallId::ALL`].
    pub hvc_refused: [u64; HypercallId::ALL.len()],
    /// HVCs that are not KCore's ABI (unknown ids, `HVC #imm != 0`).
    pub hvc_other: u64,
    /// SMCs.
    pub smc: u64,
    /// `CPU_ON`s that reached the firmware.
    pub cpu_started: u64,
    /// `CPU_OFF`s that reached the firmware.
    pub cpu_off: u64,
    /// Stage-2 aborts KCore mapped.
    pub aborts_mapped: u64,
    /// Aborts turned into external aborts in KServ.
    pub aborts_injected: u64,
    /// UNDEFINED exceptions injected.
    pub undef: u64,
    /// `host_vcpu_run` calls played on a scripted guest.
    pub runs: u64,
}

impl Tally {
    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &Tally) {
        self.traps += o.traps;
        self.runs += o.runs;
        self.full_checks += o.full_checks;
        for i in 0..self.hvc_ok.len() {
            self.hvc_ok[i] += o.hvc_ok[i];
            self.hvc_refused[i] += o.hvc_refused[i];
        }
        self.hvc_other += o.hvc_other;
        self.smc += o.smc;
        self.cpu_started += o.cpu_started;
        self.cpu_off += o.cpu_off;
        self.aborts_mapped += o.aborts_mapped;
        self.aborts_injected += o.aborts_injected;
        self.undef += o.undef;
    }
}

/// Applies the traps `data` decodes to a fresh copy of the [`template`],
/// checking after each. With `check_mirror`, also checks at the end that the
/// walks saw what KCore wrote ([`Machine::mirror_matches`]). `Err` names the
/// first trap after which something was wrong.
pub fn run(data: &[u8], check_mirror: bool, tally: &mut Tally) -> Result<(), String> {
    let mut w = template().clone();
    // Inputs of even length run on a GICv2 host: `host_set_vgic_cpu` maps
    // its GICV frame, and VMs have at most 8 vCPUs.
    if data.len().is_multiple_of(2) {
        w.host.mem_mut().set_gicv(Pa(GICV));
    }
    let mut fw = FakeFirmware::default();
    let mut pages = page_states(&w);
    let mut b = Bytes { data };
    let mut n = 0;
    while !b.is_empty() && n < MAX_TRAPS {
        let trap = decode_trap(&mut b, &w);
        apply(&mut w, &mut fw, &mut pages, &trap, tally)
            .map_err(|e| format!("trap {n} {trap:x?}: {e}"))?;
        n += 1;
    }
    if check_mirror {
        w.hw.mirror_matches()?;
    }
    Ok(())
}

/// A VM's bookkeeping, as far as the checks compare it.
type VmSummary = (VmId, u64, VmState, u64, u64, u64, u64, u64);

fn vm_summary(w: &World) -> Vec<VmSummary> {
    w.host
        .mem()
        .vms()
        .iter()
        .map(|(id, v)| {
            (
                id,
                v.handle.0,
                v.state,
                v.vcpus,
                v.owned_pages,
                v.table_pages,
                v.borrowed_pages,
                v.pool.len(),
            )
        })
        .collect()
}

/// After KServ's `SYSTEM_OFF` or `SYSTEM_RESET`: every VM is torn down
/// (no other change to a VM), nothing is shared any more, and every page a
/// VM holds is zero before the firmware sees the call (invariant 6).
fn check_wiped(w: &World, fx: &Effects) -> Result<(), String> {
    let (before, after) = &fx.vms;
    if before.len() != after.len() {
        return Err("SYSTEM_OFF/RESET removed or added a VM".into());
    }
    for (b, a) in before.iter().zip(after) {
        let (id, handle, _, vcpus, owned, tables, _, pool) = *b;
        if *a != (id, handle, VmState::Dying, vcpus, owned, tables, 0, pool) {
            return Err(format!(
                "SYSTEM_OFF/RESET left VM {b:?} as {a:?}, not torn down"
            ));
        }
    }
    for (pfn, s) in w.host.mem().owners().iter() {
        match s {
            PageState::HostSharedWithGuest { .. } | PageState::GuestSharedWithHost { .. } => {
                return Err(format!(
                    "SYSTEM_OFF/RESET left page {:#x} shared: {s:?}",
                    pfn.0
                ));
            }
            PageState::Guest { .. } | PageState::VmTable { .. }
                if !w.hw.fake.is_zero(pfn.0 << 12) =>
            {
                return Err(format!(
                    "SYSTEM_OFF/RESET reached the firmware with VM page {:#x} ({s:?}) unscrubbed",
                    pfn.0
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The PSCI calls KCore may pass to the firmware itself (the EL2 glue makes
/// the `CPU_ON` and `CPU_OFF` calls).
const FIRMWARE_FIDS: [u32; 4] = [
    psci::AFFINITY_INFO_32,
    psci::AFFINITY_INFO_64,
    psci::SYSTEM_OFF,
    psci::SYSTEM_RESET,
];

/// The non-PSCI calls (and the one `PSCI_FEATURES` query) KCore may pass
/// on for KServ, with the only arguments it may pass: the allow-list of
/// `docs/abi.md` ("KServ's other SMCs"), written out independently of
/// `kcore::smc_forward`. SDEI is never among them.
fn forwarded_ok(f: u32, args: [u64; 3]) -> bool {
    use kcore_abi::smccc as s;
    let wa = [
        s::ARCH_WORKAROUND_1,
        s::ARCH_WORKAROUND_2,
        s::ARCH_WORKAROUND_3,
    ]
    .map(u64::from);
    let trng = [
        s::TRNG_VERSION,
        s::TRNG_FEATURES,
        s::TRNG_GET_UUID,
        s::TRNG_RND32,
        s::TRNG_RND64,
    ]
    .map(u64::from);
    match (f, args) {
        (s::SMCCC_VERSION | s::ARCH_WORKAROUND_1 | s::ARCH_WORKAROUND_3, [0, 0, 0]) => true,
        (s::ARCH_WORKAROUND_2, [1, 0, 0]) => true,
        (s::SMCCC_ARCH_FEATURES, [q, 0, 0]) => wa.contains(&q),
        (s::TRNG_VERSION | s::TRNG_GET_UUID, [0, 0, 0]) => true,
        (s::TRNG_FEATURES, [q, 0, 0]) => trng.contains(&q),
        (s::TRNG_RND32, [n, 0, 0]) => n >> 32 == 0,
        (s::TRNG_RND64, [_, 0, 0]) => true,
        (psci::FEATURES, [q, 0, 0]) => q == u64::from(s::SMCCC_VERSION),
        _ => false,
    }
}

/// What one trap did to the world's state.
struct Effects {
    /// It wrote the ownership table.
    owners: bool,
    /// It wrote table memory (or zeroed or scrubbed a page).
    tables: bool,
    /// VM bookkeeping before and after.
    vms: (Vec<VmSummary>, Vec<VmSummary>),
}

impl Effects {
    /// Nothing at all changed (and nothing was even written).
    fn none(&self) -> bool {
        !self.owners && !self.tables && self.vms.0 == self.vms.1
    }
}

fn apply(
    w: &mut World,
    fw: &mut FakeFirmware,
    pages: &mut Vec<Option<PageState>>,
    t: &Trap,
    tally: &mut Tally,
) -> Result<(), String> {
    tally.traps += 1;
    let (owner_writes_before, table_writes_before) = (owner_writes(), w.hw.writes);
    let vms_before = vm_summary(w);
    let fw_calls = fw.calls.len();
    fw.answer = t.firmware;
    let mut regs = t.regs;
    let mut resume = w
        .host
        .handle_trap(t.cpu, &t.state, &mut regs, &mut w.hw, &mut w.alloc, fw);
    if let Resume::RunVcpu(a) = resume {
        // The EL2 glue's part: run the vCPU on a guest whose exits come from
        // the trap's spare registers (arbitrary syndromes), then report.
        tally.runs += 1;
        let mut guest = ScriptedGuest::new(4);
        for pair in t.regs[8..14].chunks(2) {
            guest.then(GuestExit {
                kind: ExitKind::Sync,
                esr: pair[0],
                far: pair[1],
                hpfar: pair[1] >> 8,
                fp: pair[0] & 1 != 0,
            });
        }
        let mut direct = Direct {
            host: &mut w.host,
            hw: &mut w.hw,
        };
        let r = run_vcpu(&mut direct, &mut guest, a);
        run_result(r, &mut regs);
        resume = Resume::Retry;
    }
    let fx = Effects {
        owners: owner_writes() != owner_writes_before,
        tables: w.hw.writes != table_writes_before,
        vms: (vms_before, vm_summary(w)),
    };
    // KCore found its own state other than its checks promised: a KCore
    // bug whatever the trap was (the audit's `BrokenInvariant`; this body
    // has its own checks instead of the audit, so it asks directly).
    let broken = w.host.mem().broken_invariants();
    if broken != 0 {
        return Err(format!("KCore counted {broken} broken invariants"));
    }
    let esr = Esr(t.state.esr);
    match esr.ec() {
        ec::HVC64 => check_hvc(w, t, &regs, resume, &fx, tally)?,
        ec::SMC64 => {
            tally.smc += 1;
            if regs[1..] != t.regs[1..] {
                return Err("an SMC changed x1..x30".into());
            }
            let wipe = matches!(t.regs[0], x if x == psci::SYSTEM_OFF as u64 || x == psci::SYSTEM_RESET as u64)
                && esr.imm16() == 0;
            if wipe {
                check_wiped(w, &fx)?;
            } else if !fx.none() {
                return Err("an SMC changed memory ownership or a VM".into());
            }
            glue_psci(w, t, resume, &mut regs, tally)?;
        }
        ec::DABT_LOW | ec::IABT_LOW => {
            if regs != t.regs {
                return Err("an abort changed KServ's registers".into());
            }
            if fx.owners || fx.vms.0 != fx.vms.1 {
                return Err("an abort changed memory ownership or a VM".into());
            }
            match resume {
                Resume::Retry => {
                    tally.aborts_mapped += 1;
                    let ipa = fault_ipa(t.state.hpfar, t.state.far);
                    if !esr.is_s2_mapping_fault() {
                        return Err("an abort that is no stage-2 fault was retried".into());
                    }
                    let owners = w.host.mem().owners();
                    let host_table = |p| owners.holds_table(p, None);
                    match w
                        .host
                        .mem()
                        .host()
                        .table()
                        .walk(&w.hw.view(), &host_table, ipa)
                    {
                        Ok(Some(l)) if l.pa.raw() == ipa => {}
                        other => {
                            return Err(format!("retried abort at {ipa:#x} maps to {other:?}"));
                        }
                    }
                }
                Resume::Inject(i) => {
                    tally.aborts_injected += 1;
                    let e = Esr(i.esr_el1);
                    if !matches!(
                        e.ec(),
                        ec::DABT_CUR | ec::DABT_LOW | ec::IABT_CUR | ec::IABT_LOW
                    ) || e.fsc() != 0x10
                    {
                        return Err(format!("abort injected as ESR {:#x}", i.esr_el1));
                    }
                }
                other => return Err(format!("abort resumed as {other:?}")),
            }
        }
        _ => {
            if regs != t.regs {
                return Err("an undefined trap changed KServ's registers".into());
            }
            if !fx.none() {
                return Err("an undefined trap changed memory ownership or a VM".into());
            }
            match resume {
                Resume::Inject(i) if Esr(i.esr_el1).ec() == ec::UNKNOWN => tally.undef += 1,
                other => return Err(format!("EC {:#x} resumed as {other:?}", esr.ec())),
            }
        }
    }
    for (f, args) in &fw.calls[fw_calls..] {
        if !FIRMWARE_FIDS.contains(f) && !forwarded_ok(*f, *args) {
            return Err(format!("KCore passed {f:#x}{args:x?} to the firmware"));
        }
        if matches!(*f, psci::AFFINITY_INFO_32 | psci::AFFINITY_INFO_64)
            && !MPIDRS.contains(&args[0])
        {
            return Err(format!("AFFINITY_INFO of unknown MPIDR {:#x}", args[0]));
        }
    }
    if w.hw.fake.unflushed() != 0 {
        return Err(format!(
            "{} invalidated descriptors without a TLB flush",
            w.hw.fake.unflushed()
        ));
    }
    if w.hw.misaligned != 0 {
        return Err("a table entry was written at a misaligned address".into());
    }
    // The world passed the checks before this trap; they depend only on the
    // ownership table, the table memory and the VMs, so if none of those
    // changed they still pass.
    if fx.owners {
        *pages = page_states(w);
    }
    if !fx.none() {
        tally.full_checks += 1;
        check_tables(w, pages)?;
    }
    Ok(())
}

/// Checks an HVC's result and what it changed.
fn check_hvc(
    w: &World,
    t: &Trap,
    regs: &Regs,
    resume: Resume,
    fx: &Effects,
    tally: &mut Tally,
) -> Result<(), String> {
    if resume != Resume::Retry {
        return Err(format!("HVC resumed as {resume:?}"));
    }
    if regs[4..] != t.regs[4..] {
        return Err("an HVC changed x4..x30".into());
    }
    let x0 = t.regs[0];
    let imm = Esr(t.state.esr).imm16();
    let id = if imm == 0 {
        HypercallId::from_raw(x0)
    } else {
        None
    };
    let Some(id) = id else {
        tally.hvc_other += 1;
        let uid = imm == 0 && x0 == smccc::VENDOR_HYP_CALL_UID as u64;
        if !uid && (regs[0] != Error::NotSupported.to_x0() || regs[1..4] != [0; 3]) {
            return Err(format!("unknown HVC answered {:x?}", &regs[..4]));
        }
        if !fx.none() {
            return Err("an unknown HVC changed something".into());
        }
        return Ok(());
    };
    let index = HypercallId::ALL.iter().position(|i| *i == id).unwrap_or(0);
    let query = matches!(
        id,
        HypercallId::Version
            | HypercallId::Features
            | HypercallId::HostPageOwner
            | HypercallId::HostSelfCheck
    );
    match Error::from_x0(regs[0]) {
        Ok(()) => {
            if let Some(n) = tally.hvc_ok.get_mut(index) {
                *n += 1;
            }
            if query && !fx.none() {
                return Err(format!("query {id:?} changed something"));
            }
            if id == HypercallId::HostReclaimPage {
                let pfn = Pfn(t.regs[2]);
                if w.host.mem().owners().get(pfn) != Some(PageState::Host) {
                    return Err("a reclaimed page is not KServ's".into());
                }
                if !w.hw.fake.is_zero(t.regs[2] << 12) {
                    return Err(format!("reclaimed page {pfn:?} is not scrubbed"));
                }
            }
            Ok(())
        }
        Err(None) => Err(format!("HVC {id:?} returned undefined x0 {:#x}", regs[0])),
        Err(Some(e)) => {
            if let Some(n) = tally.hvc_refused.get_mut(index) {
                *n += 1;
            }
            if regs[1..4] != [0; 3] {
                return Err(format!("refused {id:?} leaks {:x?}", &regs[1..4]));
            }
            // A refused call changes nothing; the one refusal with an
            // effect is a failed image verification, which poisons the VM.
            let mut expect = fx.vms.0.clone();
            if e == Error::VerificationFailed {
                for v in &mut expect {
                    if v.1 == t.regs[1] {
                        v.2 = VmState::Poisoned;
                    }
                }
            }
            if fx.owners || fx.tables || fx.vms.1 != expect {
                return Err(format!(
                    "refused {id:?} ({e:?}) changed something: owners written {}, tables written {}, VMs {:?} -> {:?}",
                    fx.owners, fx.tables, fx.vms.0, fx.vms.1
                ));
            }
            Ok(())
        }
    }
}

/// Plays the EL2 glue's part after an SMC: the firmware's `CPU_ON` and
/// `CPU_OFF`, and the started CPU's arrival in KCore.
fn glue_psci(
    w: &mut World,
    t: &Trap,
    resume: Resume,
    regs: &mut Regs,
    tally: &mut Tally,
) -> Result<(), String> {
    match resume {
        Resume::Skip => Ok(()),
        Resume::StartCpu { mpidr, cpu } => {
            tally.cpu_started += 1;
            let id = t.regs[0];
            if id != psci::CPU_ON_32 as u64 && id != psci::CPU_ON_64 as u64 {
                return Err(format!("{id:#x} started a CPU"));
            }
            if MPIDRS.get(cpu) != Some(&mpidr) {
                return Err(format!("CPU_ON of CPU {cpu} with MPIDR {mpidr:#x}"));
            }
            w.host.finish_cpu_on(cpu, t.firmware, regs);
            if regs[0] != t.firmware {
                return Err("CPU_ON did not return the firmware's answer".into());
            }
            if t.firmware != 0 {
                return match w.host.psci().state(cpu) {
                    Some(CpuState::Off) => Ok(()),
                    s => Err(format!("a CPU the firmware did not start is {s:?}")),
                };
            }
            if t.no_arrival {
                return Ok(());
            }
            let Some((entry, _)) = w.host.take_boot_args(cpu) else {
                return Err("a started CPU found no boot arguments".into());
            };
            let may_run = w
                .host
                .mem()
                .owners()
                .get(Pfn(entry >> 12))
                .is_some_and(PageState::host_may_map);
            if !may_run || !entry.is_multiple_of(4) {
                return Err(format!("a CPU starts KServ at {entry:#x}"));
            }
            Ok(())
        }
        Resume::CpuOff => {
            tally.cpu_off += 1;
            if t.firmware != 0 {
                w.host.cpu_off_failed(t.cpu, regs);
            }
            Ok(())
        }
        // The firmware backend's relay never answers with the spin table's
        // outcomes.
        Resume::Retry
        | Resume::Inject(_)
        | Resume::RunVcpu(_)
        | Resume::SystemOff
        | Resume::Park
        | Resume::SystemReset => Err(format!("SMC resumed as {resume:?}")),
    }
}

// ---- the invariants -------------------------------------------------------------

/// The state of every page of RAM, bank by bank (`None`: an entry that
/// decodes to no state).
fn page_states(w: &World) -> Vec<Option<PageState>> {
    let owners = w.host.mem().owners();
    owners
        .banks()
        .iter()
        .flat_map(|b| (b.base() / PAGE_SIZE..b.end() / PAGE_SIZE).map(|p| owners.get(Pfn(p))))
        .collect()
}

/// Checks the whole world from scratch (the template, and tests).
pub fn check_world(w: &World) -> Result<(), String> {
    let broken = w.host.mem().broken_invariants();
    if broken != 0 {
        return Err(format!("KCore counted {broken} broken invariants"));
    }
    if w.hw.fake.unflushed() != 0 {
        return Err(format!(
            "{} invalidated descriptors without a TLB flush",
            w.hw.fake.unflushed()
        ));
    }
    check_tables(w, &page_states(w))
}

/// One node of a stage-2 tree.
#[derive(Clone, Copy, Debug)]
enum Node {
    /// A table page (root pages included).
    Table(u64),
    /// A block or page: input address, output address, size.
    Leaf(u64, u64, u64),
}

const DESC_VALID: u64 = 1 << 0;
const DESC_TABLE_OR_PAGE: u64 = 1 << 1;
const DESC_OA: u64 = 0x0000_FFFF_FFFF_F000;

/// Visits a stage-2 tree read from the mirror, decoding descriptors here
/// (VMSAv8-64, 4 KiB granule: Arm ARM D8.3) rather than with KCore's own
/// walker, so that a decoding mistake in KCore cannot hide itself.
/// `pages` root pages are concatenated at `level`. Encodings KCore must
/// never write (a level-0 block, a reserved level-3 descriptor, a block
/// whose output address is not aligned to its size) are errors.
fn walk_tree(
    mirror: &BTreeMap<u64, Box<[u64; PAGE_WORDS]>>,
    table: u64,
    pages: usize,
    level: usize,
    base: u64,
    f: &mut dyn FnMut(Node) -> Result<(), String>,
) -> Result<(), String> {
    let size = 1u64 << (12 + 9 * (3 - level as u32));
    for p in 0..pages {
        let page = table + p as u64 * PAGE_SIZE;
        f(Node::Table(page))?;
        let Some(words) = mirror.get(&page) else {
            continue; // never written: all invalid
        };
        for (i, &e) in words.iter().enumerate() {
            if e & DESC_VALID == 0 {
                continue;
            }
            let va = base + (p * PAGE_WORDS + i) as u64 * size;
            let oa = e & DESC_OA;
            match (level, e & DESC_TABLE_OR_PAGE != 0) {
                (3, true) => f(Node::Leaf(va, oa, size))?,
                (3, false) => return Err(format!("reserved level-3 descriptor {e:#x}")),
                (_, true) => walk_tree(mirror, oa, 1, level + 1, va, f)?,
                (0, false) => return Err(format!("level-0 block descriptor {e:#x}")),
                (_, false) if !oa.is_multiple_of(size) => {
                    return Err(format!("block descriptor {e:#x} at level {level}"));
                }
                (_, false) => f(Node::Leaf(va, oa, size))?,
            }
        }
    }
    Ok(())
}

/// What no sequence of KServ traps may break, given the state of every page
/// (`pages`, from [`page_states`]): every page of RAM has a state; KServ's
/// stage 2 is an identity map of pages KServ may use and maps nothing of
/// KCore's (RAM or device), and its tables are KCore's; each live VM maps
/// only its own (or borrowed) pages, at the gfn the ownership table records,
/// in tables held for it; the VMs' page counters agree with the ownership
/// table; no page names a VM that does not exist.
fn check_tables(w: &World, pages: &[Option<PageState>]) -> Result<(), String> {
    let mem = w.host.mem();
    // RAM banks as (first byte, end, index of the first page in `pages`).
    let mut banks = [(0u64, 0u64, 0usize); BANKS];
    let mut at = 0;
    for (slot, b) in banks.iter_mut().zip(mem.owners().banks().iter()) {
        *slot = (b.base(), b.end(), at);
        at += (b.size() / PAGE_SIZE) as usize;
    }
    let index = |pa: u64| {
        banks
            .iter()
            .find(|(base, end, _)| (*base..*end).contains(&pa))
            .map(|(base, _, first)| first + ((pa - base) / PAGE_SIZE) as usize)
    };
    let state = |pa: u64| index(pa).and_then(|i| pages.get(i).copied().flatten());
    if let Some(i) = pages.iter().position(Option::is_none) {
        return Err(format!("RAM page {i} has no valid state"));
    }

    let host = mem.host();
    let (root, geometry) = (host.table().root().raw(), host.table().geometry());
    walk_tree(
        &w.hw.mirror,
        root,
        geometry.root_tables(),
        geometry.start_level(),
        0,
        &mut |node| match node {
            Node::Table(t) if state(t) == Some(PageState::KCore) => Ok(()),
            Node::Table(t) => Err(format!("KServ's table page {t:#x} is {:?}", state(t))),
            Node::Leaf(va, pa, _) if va != pa => {
                Err(format!("KServ's stage 2 maps {va:#x} to {pa:#x}"))
            }
            Node::Leaf(va, _, size) => {
                let range = MemRange::new(va, size)
                    .ok_or_else(|| format!("KServ's leaf at {va:#x} overflows"))?;
                if host.map().kcore().overlaps(&range) {
                    return Err(format!("KServ maps KCore's memory in {range:?}"));
                }
                for (base, end, first) in banks.iter().filter(|b| b.1 > b.0) {
                    let (start, stop) = ((*base).max(va), (*end).min(range.end()));
                    if start >= stop {
                        continue;
                    }
                    let i0 = first + ((start - base) / PAGE_SIZE) as usize;
                    let i1 = first + ((stop - base) / PAGE_SIZE) as usize;
                    if let Some(k) = pages[i0..i1]
                        .iter()
                        .position(|s| !s.is_some_and(PageState::host_may_map))
                    {
                        let pa = start + k as u64 * PAGE_SIZE;
                        return Err(format!("KServ maps {pa:#x} in state {:?}", pages[i0 + k]));
                    }
                }
                Ok(())
            }
        },
    )?;

    // Page counts per VM slot, in one pass.
    let mut counts = [(0u64, 0u64, 0u64); VMS];
    for (i, s) in pages.iter().enumerate() {
        let Some(vm) = s.and_then(PageState::vm) else {
            continue;
        };
        let c = match counts.get_mut(vm.0 as usize) {
            Some(c) if mem.vms().get(vm).is_some() => c,
            _ => return Err(format!("RAM page {i} in state {s:?} names a missing VM")),
        };
        match s {
            Some(PageState::Guest { .. } | PageState::GuestSharedWithHost { .. }) => c.0 += 1,
            Some(PageState::VmTable { .. }) => c.1 += 1,
            Some(PageState::HostSharedWithGuest { .. }) => c.2 += 1,
            _ => {}
        }
    }
    for (id, vm) in mem.vms().iter() {
        let (owned, tables, borrowed) = counts[id.0 as usize];
        if (owned, tables, borrowed) != (vm.owned_pages, vm.table_pages, vm.borrowed_pages) {
            return Err(format!(
                "VM {id:?} counters {:?} but the table says {:?}",
                (vm.owned_pages, vm.table_pages, vm.borrowed_pages),
                (owned, tables, borrowed)
            ));
        }
        // A dying VM's root was emptied at teardown and its table pages may
        // be KServ's again: its tree is not walked (KCore never does either).
        if vm.state == VmState::Dying {
            continue;
        }
        let mut mapped = 0u64;
        let (root, geometry) = (vm.stage2.root().raw(), vm.stage2.geometry());
        walk_tree(
            &w.hw.mirror,
            root,
            geometry.root_tables(),
            geometry.start_level(),
            0,
            &mut |node| match node {
                Node::Table(t) if state(t) == Some(PageState::VmTable { vm: id }) => Ok(()),
                Node::Table(t) => Err(format!("VM {id:?} table page {t:#x} is {:?}", state(t))),
                Node::Leaf(va, pa, size) => {
                    let gfn = va >> 12;
                    // The GICV frame, where `host_set_vgic_cpu` put it:
                    // not RAM, not counted.
                    let gicv = vm.gicv.map(|g| gfn.wrapping_sub(g.0));
                    if let Some(i @ 0..2) = gicv {
                        return if pa == GICV + i * PAGE_SIZE && size == PAGE_SIZE {
                            Ok(())
                        } else {
                            Err(format!("VM {id:?} maps its GICV gfn {gfn:#x} to {pa:#x}"))
                        };
                    }
                    mapped += 1;
                    match state(pa) {
                        Some(
                            PageState::Guest { vm, gfn: g }
                            | PageState::GuestSharedWithHost { vm, gfn: g }
                            | PageState::HostSharedWithGuest { vm, gfn: g },
                        ) if vm == id && g.0 == gfn && size == PAGE_SIZE => Ok(()),
                        s => Err(format!(
                            "VM {id:?} maps gfn {gfn:#x} ({size:#x} bytes) to {pa:#x} in state {s:?}"
                        )),
                    }
                }
            },
        )?;
        if mapped != owned + borrowed {
            return Err(format!(
                "VM {id:?} maps {mapped} pages, owns or borrows {}",
                owned + borrowed
            ));
        }
    }
    Ok(())
}

// ---- seeds ----------------------------------------------------------------------

/// Builds inputs by hand: the seed corpus, and reproducers.
#[derive(Clone, Debug, Default)]
pub struct Encoder {
    bytes: Vec<u8>,
}

/// How [`Encoder`] writes one register.
#[derive(Clone, Copy, Debug)]
pub enum Val {
    /// Exactly this value.
    Raw(u64),
    /// The `i`-th handle candidate (live VMs first, in slot order).
    Handle(u8),
}

/// The index in [`HypercallId::ALL`] of a random hypercall, favouring the
/// calls that need the most state to succeed, and tearing VMs down rarely.
fn weighted_call(r: &mut dyn FnMut() -> u64) -> usize {
    let weight = |id: &HypercallId| match id {
        HypercallId::HostDonateGuest
        | HypercallId::HostShareGuest
        | HypercallId::HostUnshareGuest
        | HypercallId::HostReclaimPage => 4,
        HypercallId::HostCreateVm | HypercallId::HostDonateVmPool => 3,
        HypercallId::HostCreateVcpu => 2,
        _ => 1,
    };
    let total: u64 = HypercallId::ALL.iter().map(weight).sum();
    let mut pick = r() % total;
    for (i, id) in HypercallId::ALL.iter().enumerate() {
        if pick < weight(id) {
            return i;
        }
        pick -= weight(id);
    }
    0
}

/// What a register of a random trap should usually hold.
#[derive(Clone, Copy, Debug)]
enum Arg {
    /// A VM handle.
    Handle,
    /// A page frame number.
    Pfn,
    /// A guest frame number.
    Gfn,
    /// A page the template gave a VM.
    VmPage,
    /// A small number.
    Small,
    /// An address in RAM.
    Addr,
    /// An MPIDR.
    Mpidr,
    /// One of KCore's function ids.
    Fid,
    /// The length of an image.
    ImageLen,
    /// The page holding an image's signature.
    SigPage,
    /// A vCPU index (mostly one that exists).
    Vcpu,
    /// A KServ page for a run page.
    RunPage,
    /// Flags: 0, 1 or an undefined 2.
    Flags,
    /// A register id in or near the identification registers.
    IdReg,
    /// A `HostSetGicFrames` kind (mostly 0 or 1) ...
    GicKind,
    /// ... and frame count (mostly 1 or 2).
    GicFrames,
    /// Anything.
    Any,
}

impl Encoder {
    /// An empty input.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes so far.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }

    fn val(&mut self, v: Val) {
        match v {
            Val::Raw(x) => {
                self.bytes.push(tag::RAW);
                self.bytes.extend_from_slice(&x.to_le_bytes());
            }
            Val::Handle(i) => self.bytes.push(tag::HANDLE + (i & 0x1F)),
        }
    }

    /// A trap of class byte `class` (see [`class`]) with `x0..x7`, on CPU 0,
    /// with the firmware answering success.
    fn trap(&mut self, class: u8, x0: u64, args: &[Val], fault_ipa: u64, fsc: u8) -> &mut Self {
        self.bytes.push(class);
        self.bytes.push(fsc); // shape: FSCS index for aborts, 0 otherwise
        self.bytes.push(0); // CPU 0
        self.bytes.push(0); // firmware: success
        self.bytes.push(0); // SPSR: EL1h
        self.bytes.push(0); // extra: none
        self.bytes.push(0xFF); // x0: a raw word
        self.val(Val::Raw(x0));
        for i in 0..7 {
            self.val(args.get(i).copied().unwrap_or(Val::Raw(0)));
        }
        self.val(Val::Raw(fault_ipa));
        self
    }

    /// `HVC #0` with `x0 = id` and these arguments.
    pub fn hvc(&mut self, id: u64, args: &[Val]) -> &mut Self {
        self.trap(class::HVC, id, args, 0, 0)
    }

    /// `SMC #0` with `x0 = id` and these arguments.
    pub fn smc(&mut self, id: u64, args: &[Val]) -> &mut Self {
        self.trap(class::SMC, id, args, 0, 0)
    }

    fn push_special(&mut self, value: u64) {
        let i = SPECIAL.iter().position(|s| *s == value).unwrap_or(0);
        self.bytes.push(tag::SPECIAL + i as u8);
    }

    /// A random word of kind `kind` (one time in five, of any kind), in the
    /// decoder's encodings.
    fn random_word(&mut self, kind: Arg, r: &mut dyn FnMut() -> u64) {
        let v = r();
        let kind = if r().is_multiple_of(5) {
            Arg::Any
        } else {
            kind
        };
        match kind {
            Arg::Handle if v % 10 < 7 => self.bytes.push(tag::HANDLE + (v % 3) as u8),
            Arg::Handle => self.bytes.push(tag::HANDLE + (v % 12) as u8),
            Arg::Pfn if v % 10 < 6 => {
                self.bytes.push(tag::RAM_PFN);
                self.bytes
                    .extend_from_slice(&((v >> 8) as u16).to_le_bytes());
            }
            Arg::Pfn => self.bytes.push(tag::SPECIAL + (v % 20) as u8),
            Arg::Gfn if v % 10 < 6 => self.bytes.push((v % 64) as u8),
            Arg::Gfn => {
                self.push_special([0x10, 0x11, 0x20, (1 << (PA_BITS - 12)) - 1][v as usize % 4])
            }
            Arg::VmPage if v % 10 < 6 => self.val(Val::Raw(GUEST_PAGES + (v >> 8) % 8)),
            Arg::VmPage => self.val(Val::Raw(POOL_A + (v >> 8) % 12)),
            Arg::Small if v % 100 < 85 => self.bytes.push((v >> 8) as u8 % 64),
            Arg::Small => self.bytes.push(tag::BOUNDARY + (v >> 8) as u8 % 32),
            Arg::Fid => self.push_special(HYPERCALL_BASE as u64 + 2),
            Arg::ImageLen if v % 10 < 5 => self.val(Val::Raw(IMAGE_LEN)),
            Arg::ImageLen => self.val(Val::Raw(v % (4 * PAGE_SIZE))),
            Arg::SigPage => self.push_special(SIG_PAGE),
            Arg::Vcpu | Arg::Flags | Arg::GicKind => self.bytes.push((v % 3) as u8),
            Arg::GicFrames => self.bytes.push((1 + v % 3) as u8),
            // The feature space `CRm` 0..=8 (0 and 8 mostly outside it).
            Arg::IdReg => self.val(Val::Raw(
                kcore_abi::reg::SYSREG
                    | kcore_abi::reg::sysreg(3, 0, 0, (v >> 8) % 9, (v >> 16) % 8),
            )),
            Arg::RunPage => self.push_special(SIG_PAGE + 1 + v % 2),
            Arg::Addr => {
                self.bytes.push(tag::RAM_ADDR);
                self.bytes.extend_from_slice(&(v >> 8).to_le_bytes()[..3]);
            }
            Arg::Mpidr if v.is_multiple_of(2) => self.bytes.push((v % 4) as u8),
            Arg::Mpidr => self.push_special(MPIDRS[2 + (v as usize >> 8) % 2]),
            Arg::Any => match v % 100 {
                0..30 => self.bytes.push(tag::HANDLE + (r() % 8) as u8),
                30..50 => self.bytes.push(tag::SPECIAL + (r() % 32) as u8),
                50..70 => {
                    self.bytes.push(tag::RAM_PFN);
                    self.bytes.extend_from_slice(&(r() as u16).to_le_bytes());
                }
                70..85 => self.bytes.push((r() % 64) as u8),
                85..90 => {
                    self.bytes.push(tag::RAM_ADDR);
                    self.bytes.extend_from_slice(&r().to_le_bytes()[..3]);
                }
                90..95 => self.bytes.push(tag::BOUNDARY + (r() % 32) as u8),
                _ => self.val(Val::Raw(r())),
            },
        }
    }

    /// A random trap shaped the way the decoder reads one: mostly KCore's
    /// hypercalls and PSCI calls with plausible arguments for each, some
    /// aborts, a few of anything else.
    pub fn random_trap(&mut self, r: &mut dyn FnMut() -> u64) -> &mut Self {
        use Arg::{
            Addr, Any, Fid, Flags, Gfn, GicFrames, GicKind, Handle, ImageLen, Mpidr, Pfn, RunPage,
            SigPage, Small, Vcpu, VmPage,
        };
        let high = (r() as u8) & 0xF8;
        let class_byte = match r() % 100 {
            0..60 => class::HVC,
            60..75 => class::SMC,
            75..83 => class::DABT,
            83..90 => class::IABT,
            90..95 => class::OTHER,
            _ => class::RAW,
        };
        self.bytes.push(high | class_byte);
        if class_byte == class::OTHER || class_byte == class::RAW {
            self.bytes.push(r() as u8);
        }
        if r().is_multiple_of(10) {
            self.bytes.push(0xC0);
            self.random_word(Any, r);
        } else {
            self.bytes.push((r() % 0xC0) as u8);
        }
        self.bytes.push(r() as u8); // CPU
        self.bytes.push(r() as u8); // firmware
        self.bytes.push((r() % 0xF0) as u8); // SPSR
        let flags = r() as u8;
        self.bytes.push(flags);
        let ours = HypercallId::ALL.len();
        let psci = ours + 8; // OTHER_FIDS[8..22]: PSCI
        let x0 = match (class_byte, r() % 10) {
            (class::HVC, 0..8) => weighted_call(r),
            (class::SMC, 0..8) => psci + r() as usize % 14,
            _ => r() as usize % 0xC0,
        };
        self.bytes.push(x0 as u8);
        let id = x0 % (ours + OTHER_FIDS.len());
        let args: &[Arg] = match (
            HypercallId::ALL.get(id),
            OTHER_FIDS.get(id.wrapping_sub(ours)),
        ) {
            (Some(HypercallId::HostCreateVm), _) => &[Flags, Small, Vcpu, Pfn, Small],
            (Some(HypercallId::HostCreateVcpu), _) => &[Handle, Small],
            (Some(HypercallId::HostDonateVmPool | HypercallId::HostPageOwner), _) => &[Handle, Pfn],
            (Some(HypercallId::HostDonateGuest), _) => &[Handle, Pfn, Gfn],
            (Some(HypercallId::HostShareGuest), _) => &[Handle, Pfn, Gfn, Flags],
            (Some(HypercallId::HostUnshareGuest | HypercallId::HostSetVgicCpu), _) => {
                &[Handle, Gfn]
            }
            (Some(HypercallId::HostReclaimPage), _) => &[Handle, VmPage],
            (Some(HypercallId::HostTeardownVm), _) => &[Handle],
            (Some(HypercallId::Features), _) => &[Fid],
            (Some(HypercallId::HostVerifyImage), _) => &[Handle, Gfn, ImageLen, SigPage],
            (Some(HypercallId::HostDeclareMmio), _) => &[Handle, Gfn, Small],
            (Some(HypercallId::HostVcpuRun), _) => &[Handle, Vcpu, RunPage],
            (Some(HypercallId::HostVcpuGetReg), _) => &[Handle, Vcpu, Small],
            (Some(HypercallId::HostVcpuSetReg), _) => &[Handle, Vcpu, Small, Any],
            (Some(HypercallId::HostSelfCheck), _) => &[],
            (Some(HypercallId::HostGuestIdReg), _) => &[Arg::IdReg],
            (Some(HypercallId::HostSetGicFrames), _) => &[Handle, GicKind, Gfn, GicFrames],
            (Some(HypercallId::HostReadGicTable), _) => &[Handle, Any, Small],
            (Some(_), _) => &[Handle, Gfn, Small, Pfn],
            (None, Some(&f)) if f == psci::CPU_ON_32 as u64 || f == psci::CPU_ON_64 as u64 => {
                &[Mpidr, Addr, Small]
            }
            (None, Some(&f))
                if f == psci::AFFINITY_INFO_32 as u64 || f == psci::AFFINITY_INFO_64 as u64 =>
            {
                &[Mpidr, Small]
            }
            _ => &[],
        };
        for i in 0..7 {
            self.random_word(args.get(i).copied().unwrap_or(Any), r); // x1..x7
        }
        self.random_word(Addr, r); // HPFAR
        for flag in [extra::OWN_FAR, extra::ELR, extra::VBAR] {
            if flags & flag != 0 {
                self.random_word(Any, r);
            }
        }
        self
    }

    /// A stage-2 translation fault (level 3) on a data access at `ipa`.
    pub fn data_abort(&mut self, ipa: u64) -> &mut Self {
        self.trap(class::DABT, 0, &[], ipa, 3)
    }
}

/// The seed corpus: one input per hypercall with valid and boundary
/// arguments, PSCI calls, and aborts on each kind of memory. Written to
/// `kcore/fuzz/corpus/dispatcher/` by the host test `seeds_are_in_the_corpus`
/// run with `KCORE_WRITE_SEEDS=1`.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    use HypercallId as H;
    use Val::{Handle, Raw};
    let id = |h: H| h.function_id() as u64;
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: &str, e: &mut Encoder| out.push((name.to_string(), e.clone().finish()));
    let (a, b, c) = (Handle(0), Handle(1), Handle(2));
    let free = Handle(7); // VmHandle::new(VmId(3), 0), after 3 live + 4 variants
    add("version", Encoder::new().hvc(id(H::Version), &[]));
    add(
        "features",
        Encoder::new()
            .hvc(id(H::Features), &[Raw(id(H::HostCreateVm))])
            .hvc(id(H::Features), &[Raw(u64::MAX)]),
    );
    add(
        "uid_and_unknown",
        Encoder::new()
            .hvc(smccc::VENDOR_HYP_CALL_UID as u64, &[])
            .hvc(HYPERCALL_BASE as u64 + 0xFF, &[Raw(1)])
            .hvc(0, &[Raw(0x4010_0000)])
            .hvc(u64::MAX, &[]),
    );
    for (name, flags, ipa, vcpus, pool, pages) in [
        ("create_vm", 0, 0, 1, GUEST_PAGES + 16, 4),
        ("create_vm_protected_32bit", 1, 32, 64, GUEST_PAGES + 16, 4),
        ("create_vm_bad_ipa", 0, 48, 1, GUEST_PAGES + 16, 4),
        ("create_vm_pool_in_kcore", 0, 0, 1, RAM0 >> 12, 4),
        ("create_vm_pool_overflow", 0, 0, 1, u64::MAX >> 12, u64::MAX),
        ("create_vm_pool_max", 0, 0, 1, GUEST_PAGES + 16, 1 << 18),
        ("create_vm_bad_flags", 2, 0, 65, GUEST_PAGES + 16, 4),
    ] {
        add(
            name,
            Encoder::new().hvc(
                id(H::HostCreateVm),
                &[Raw(flags), Raw(ipa), Raw(vcpus), Raw(pool), Raw(pages)],
            ),
        );
    }
    add(
        "create_vcpu",
        Encoder::new()
            .hvc(id(H::HostCreateVcpu), &[a, Raw(1)])
            .hvc(id(H::HostCreateVcpu), &[a, Raw(1)])
            .hvc(id(H::HostCreateVcpu), &[b, Raw(63)])
            .hvc(id(H::HostCreateVcpu), &[c, Raw(0)])
            .hvc(id(H::HostCreateVcpu), &[b, Raw(u64::MAX)]),
    );
    add(
        "donate_pool",
        Encoder::new()
            .hvc(id(H::HostDonateVmPool), &[a, Raw(GUEST_PAGES + 20)])
            .hvc(id(H::HostDonateVmPool), &[a, Raw(GUEST_PAGES + 20)])
            .hvc(id(H::HostDonateVmPool), &[c, Raw(GUEST_PAGES + 21)])
            .hvc(id(H::HostDonateVmPool), &[b, Raw(RAM1 >> 12)]),
    );
    add(
        "donate_guest",
        Encoder::new()
            .hvc(
                id(H::HostDonateGuest),
                &[a, Raw(GUEST_PAGES + 20), Raw(0x40)],
            )
            .hvc(
                id(H::HostDonateGuest),
                &[a, Raw(GUEST_PAGES + 21), Raw(0x40)],
            )
            .hvc(
                id(H::HostDonateGuest),
                &[b, Raw(GUEST_PAGES + 22), Raw((1 << 28) - 1)],
            )
            .hvc(
                id(H::HostDonateGuest),
                &[b, Raw(GUEST_PAGES + 23), Raw(1 << 28)],
            )
            .hvc(id(H::HostDonateGuest), &[b, Raw(GUEST_PAGES), Raw(0x41)])
            .hvc(id(H::HostDonateGuest), &[a, Raw(u64::MAX), Raw(u64::MAX)]),
    );
    add(
        "share_unshare",
        Encoder::new()
            .hvc(
                id(H::HostShareGuest),
                &[b, Raw(GUEST_PAGES + 20), Raw(0x50)],
            )
            .hvc(
                id(H::HostShareGuest),
                &[a, Raw(GUEST_PAGES + 21), Raw(0x50)],
            )
            .hvc(id(H::HostUnshareGuest), &[b, Raw(0x50)])
            .hvc(id(H::HostUnshareGuest), &[b, Raw(0x50)])
            .hvc(id(H::HostUnshareGuest), &[b, Raw(0x21)])
            .hvc(id(H::HostUnshareGuest), &[b, Raw(u64::MAX)]),
    );
    add(
        "teardown_reclaim",
        Encoder::new()
            .hvc(id(H::HostReclaimPage), &[c, Raw(GUEST_PAGES + 6)])
            .hvc(id(H::HostReclaimPage), &[c, Raw(GUEST_PAGES + 6)])
            .hvc(id(H::HostReclaimPage), &[c, Raw(GUEST_PAGES + 7)])
            .hvc(id(H::HostReclaimPage), &[c, Raw(POOL_C)])
            .hvc(id(H::HostReclaimPage), &[c, Raw(POOL_C + 1)])
            .hvc(id(H::HostReclaimPage), &[c, Raw(POOL_C + 2)])
            .hvc(id(H::HostReclaimPage), &[c, Raw(POOL_C + 3)])
            .hvc(id(H::HostTeardownVm), &[a])
            .hvc(id(H::HostTeardownVm), &[a])
            .hvc(id(H::HostReclaimPage), &[a, Raw(GUEST_PAGES + 1)])
            .hvc(id(H::HostTeardownVm), &[free]),
    );
    add(
        "recreate_in_freed_slot",
        Encoder::new()
            .hvc(id(H::HostReclaimPage), &[c, Raw(GUEST_PAGES + 6)])
            .hvc(id(H::HostReclaimPage), &[c, Raw(POOL_C)])
            .hvc(id(H::HostReclaimPage), &[c, Raw(POOL_C + 1)])
            .hvc(id(H::HostReclaimPage), &[c, Raw(POOL_C + 2)])
            .hvc(id(H::HostReclaimPage), &[c, Raw(POOL_C + 3)])
            .hvc(
                id(H::HostCreateVm),
                &[Raw(0), Raw(0), Raw(1), Raw(POOL_C), Raw(4)],
            )
            .hvc(
                id(H::HostCreateVm),
                &[Raw(0), Raw(0), Raw(1), Raw(GUEST_PAGES + 16), Raw(4)],
            )
            .hvc(id(H::HostDonateGuest), &[c, Raw(GUEST_PAGES + 20), Raw(0)]),
    );
    add(
        "page_owner",
        Encoder::new()
            .hvc(id(H::HostPageOwner), &[Raw(GUEST_PAGES)])
            .hvc(id(H::HostPageOwner), &[Raw(GUEST_PAGES + 1)])
            .hvc(id(H::HostPageOwner), &[Raw(POOL_B)])
            .hvc(id(H::HostPageOwner), &[Raw(RAM0 >> 12)])
            .hvc(id(H::HostPageOwner), &[Raw(u64::MAX)]),
    );
    add(
        "verify_image_good",
        Encoder::new()
            .hvc(
                id(H::HostVerifyImage),
                &[a, Raw(0x10), Raw(IMAGE_LEN), Raw(SIG_PAGE)],
            )
            .hvc(
                id(H::HostVerifyImage),
                &[a, Raw(0x10), Raw(IMAGE_LEN), Raw(SIG_PAGE)],
            )
            .hvc(
                id(H::HostDonateGuest),
                &[a, Raw(GUEST_PAGES + 20), Raw(0x12)],
            )
            .hvc(id(H::HostCreateVcpu), &[a, Raw(1)])
            .hvc(id(H::HostTeardownVm), &[a]),
    );
    // On a GICv3 host (an input of odd length: the trailing byte decodes as
    // an unknown HVC): the verified protected VM's ITS frame goes into its
    // declared MMIO once, not outside it, not into a non-protected VM; its
    // memory is not readable through the ITS path while no guest programmed
    // a table there.
    let mut gic = Encoder::new();
    gic.hvc(
        id(H::HostVerifyImage),
        &[a, Raw(0x10), Raw(IMAGE_LEN), Raw(SIG_PAGE)],
    )
    .hvc(id(H::HostDeclareMmio), &[a, Raw(0x9000), Raw(1)])
    .hvc(
        id(H::HostSetGicFrames),
        &[a, Raw(kcore_abi::gic_frame::ITS), Raw(0x9000), Raw(1)],
    )
    .hvc(
        id(H::HostSetGicFrames),
        &[a, Raw(kcore_abi::gic_frame::ITS), Raw(0x9000), Raw(1)],
    )
    .hvc(
        id(H::HostSetGicFrames),
        &[a, Raw(kcore_abi::gic_frame::REDIST), Raw(0x9020), Raw(1)],
    )
    .hvc(
        id(H::HostSetGicFrames),
        &[b, Raw(kcore_abi::gic_frame::ITS), Raw(0x9000), Raw(1)],
    )
    .hvc(id(H::HostReadGicTable), &[a, Raw(0x10 << 12), Raw(8)])
    .hvc(id(H::HostReadGicTable), &[a, Raw(0x9000 << 12), Raw(24)]);
    gic.bytes.push(class::HVC);
    add("gic_frames", &mut gic);
    add(
        "verify_image_bad",
        Encoder::new()
            .hvc(
                id(H::HostVerifyImage),
                &[b, Raw(0x10), Raw(IMAGE_LEN), Raw(SIG_PAGE)],
            )
            .hvc(
                id(H::HostVerifyImage),
                &[a, Raw(0x10), Raw(IMAGE_LEN + 1), Raw(SIG_PAGE)],
            )
            .hvc(
                id(H::HostVerifyImage),
                &[a, Raw(u64::MAX), Raw(u64::MAX), Raw(SIG_PAGE)],
            )
            .hvc(
                id(H::HostVerifyImage),
                &[a, Raw(0x10), Raw(IMAGE_LEN - 1), Raw(SIG_PAGE)],
            )
            .hvc(
                id(H::HostDonateGuest),
                &[a, Raw(GUEST_PAGES + 20), Raw(0x12)],
            )
            .hvc(id(H::HostTeardownVm), &[a])
            .hvc(id(H::HostReclaimPage), &[a, Raw(GUEST_PAGES)]),
    );
    add(
        "psci",
        Encoder::new()
            .smc(psci::VERSION as u64, &[])
            .smc(psci::FEATURES as u64, &[Raw(psci::CPU_ON_32 as u64)])
            .smc(psci::CPU_ON_64 as u64, &[Raw(1), Raw(0x4010_0000), Raw(7)])
            .smc(psci::CPU_ON_64 as u64, &[Raw(1), Raw(0x4010_0000), Raw(7)])
            .smc(psci::CPU_ON_32 as u64, &[Raw(0x100), Raw(RAM0), Raw(0)])
            .smc(
                psci::CPU_ON_64 as u64,
                &[Raw(0x1_0000_0000), Raw(RAM1 + 4), Raw(0)],
            )
            .smc(psci::AFFINITY_INFO_64 as u64, &[Raw(1), Raw(0)])
            .smc(psci::AFFINITY_INFO_32 as u64, &[Raw(u64::MAX), Raw(0)])
            .smc(psci::CPU_OFF as u64, &[])
            .smc(psci::SYSTEM_RESET as u64, &[])
            .smc(smccc::SMCCC_VERSION as u64, &[]),
    );
    add(
        "aborts",
        Encoder::new()
            .data_abort(RAM0 + 0x2000)
            .data_abort(GUEST_PAGES << 12)
            .data_abort((GUEST_PAGES + 1) << 12)
            .data_abort((GUEST_PAGES + 2) << 12)
            .data_abort((GUEST_PAGES + 10) << 12)
            .data_abort(0x0900_0000)
            .data_abort(GIC_KCORE + 0x1000)
            .data_abort(RAM0 + RAM0_SIZE)
            .data_abort(RAM1 + RAM1_SIZE - 8)
            .data_abort((1 << PA_BITS) - 8)
            .data_abort(u64::MAX),
    );
    add(
        "donate_then_touch",
        Encoder::new()
            .hvc(id(H::HostDonateGuest), &[b, Raw(RAM1 >> 12), Raw(0x60)])
            .data_abort(RAM1)
            .data_abort(RAM1 + 0x1000)
            .hvc(
                id(H::HostShareGuest),
                &[b, Raw((RAM1 >> 12) + 1), Raw(0x61)],
            )
            .data_abort(RAM1 + 0x1000)
            .hvc(id(H::HostTeardownVm), &[b])
            .data_abort(RAM1 + 0x1000)
            .hvc(id(H::HostReclaimPage), &[b, Raw(RAM1 >> 12)])
            .data_abort(RAM1),
    );
    out
}
