//! A small machine for KCore's host tests, and the checker of the ownership
//! invariants of DESIGN.md section 2.

#![allow(dead_code, reason = "each test binary uses a different part")]

use kcore::addr::{MemRange, PAGE_SIZE, Pa, RangeSet};
use kcore::host::Host;
use kcore::host_stage2::{HostMemoryMap, HostStage2, TablePages, TrapFrames};
use kcore::mem_protect::MemCore;
use kcore::ownership::OwnershipTable;
use kcore::pgtable::{Geometry, Leaf, PageTable, Stage2};
use kcore::psci::PsciRelay;
use kcore::vm::VmId;
use kcore_arch::host_memory::{FakeAllocator, FakeMachine};

/// One RAM bank of 4 MiB.
pub const RAM: u64 = 0x4000_0000;
pub const RAM_SIZE: u64 = 4 << 20;
/// KCore's image and pool: the first 1 MiB.
pub const KCORE_SIZE: u64 = 1 << 20;
/// KServ's stage-2 root and pool, inside KCore's region.
pub const HOST_S2_POOL: u64 = RAM + 0x8_0000;
/// First page KServ owns.
pub const FIRST_HOST_PFN: u64 = (RAM + KCORE_SIZE) >> 12;
/// The CPU's PA size.
pub const PA_BITS: u32 = 40;
/// Two GICv3 redistributors (as on QEMU's `virt`), whose control pages
/// KServ reaches only through KCore.
pub const GICR: u64 = 0x080A_0000;
pub const GICR_STRIDE: u64 = 0x2_0000;

pub use kcore_arch::host_world::World;

pub fn world() -> World {
    world_with(PsciRelay::new(&[0, 1, 2, 3], 0))
}

/// [`world`] with this PSCI relay (the spin-table backend, say).
pub fn world_with(psci: PsciRelay<4>) -> World {
    let mut banks = RangeSet::<4>::new();
    banks.insert(MemRange::new(RAM, RAM_SIZE).unwrap()).unwrap();
    let storage = vec![0u64; OwnershipTable::<Vec<u64>, 4>::entries_needed(&banks)];
    let mut owners = OwnershipTable::new(storage, banks).unwrap();
    let kcore = MemRange::new(RAM, KCORE_SIZE).unwrap();
    owners.mark_kcore(kcore).unwrap();
    let mut map = HostMemoryMap::<4>::new();
    map.add_ram(MemRange::new(RAM, RAM_SIZE).unwrap()).unwrap();
    map.add_kcore(kcore).unwrap();
    map.add_trapped(TrapFrames {
        region: MemRange::new(GICR, 2 * GICR_STRIDE).unwrap(),
        stride: GICR_STRIDE,
        offsets: [Some(0), None],
    })
    .unwrap();
    let mut hw = FakeMachine::new();
    let mut alloc = FakeAllocator::new(HOST_S2_POOL + 16 * PAGE_SIZE, 64);
    let geometry = Geometry::stage2(PA_BITS).unwrap();
    let mut s2 = HostStage2::new(PageTable::<Stage2>::new(Pa(HOST_S2_POOL), geometry), map);
    // KServ's tables: its root and the allocator's pages, nothing else of
    // KCore's.
    s2.set_table_pages(TablePages::new(
        MemRange::new(HOST_S2_POOL, geometry.root_tables() as u64 * PAGE_SIZE).unwrap(),
        MemRange::new(HOST_S2_POOL + 16 * PAGE_SIZE, 64 * PAGE_SIZE).unwrap(),
    ));
    let pages = s2.table_pages();
    s2.map_ram(&mut hw, &mut alloc, &|t| pages.holds(&owners, t))
        .unwrap();
    let mem = MemCore::new(owners, s2, PA_BITS);
    World {
        host: Host::new(mem, psci),
        hw,
        alloc,
    }
}

/// Checks invariants 1-4 of DESIGN.md section 2 over every stage-2 table
/// and the VMs' page counters (KCore's own [`kcore::audit`]), and that no
/// invalidated descriptor is waiting for a TLB flush.
pub fn check_invariants(w: &World) -> Result<(), String> {
    if w.hw.unflushed() != 0 {
        return Err(format!(
            "{} invalidated descriptors without a TLB flush",
            w.hw.unflushed()
        ));
    }
    kcore::audit::audit(w.host.mem(), &w.hw)
        .map(drop)
        .map_err(|e| format!("self-check: {e:?}"))
}

/// What KServ's stage 2 maps at `va`, walked as KCore walks it (each table
/// checked against the ownership table first). Panics on a corrupt table.
pub fn host_walk(w: &World, va: u64) -> Option<Leaf> {
    let owners = w.host.mem().owners();
    w.host
        .mem()
        .host()
        .table()
        .walk(&w.hw, &|t| owners.holds_table(t, None), va)
        .expect("KServ's stage 2 is not corrupt")
}

/// What VM `id`'s stage 2 maps at `ipa` (`None` too if there is no such
/// VM), walked as KCore walks it. Panics on a corrupt table.
pub fn vm_walk(w: &World, id: VmId, ipa: u64) -> Option<Leaf> {
    let owners = w.host.mem().owners();
    w.host
        .mem()
        .vms()
        .get(id)?
        .stage2
        .walk(&w.hw, &|t| owners.holds_table(t, Some(id)), ipa)
        .expect("the VM's stage 2 is not corrupt")
}

/// The raw registers of an HVC.
pub fn hvc(w: &mut World, id: kcore_abi::HypercallId, args: &[u64]) -> [u64; 4] {
    let mut regs = [0u64; 31];
    regs[0] = id.function_id() as u64;
    regs[1..=args.len()].copy_from_slice(args);
    w.host.handle_hvc(0, &mut regs, &mut w.hw);
    [regs[0], regs[1], regs[2], regs[3]]
}

/// A machine of `ram_pages` pages at [`RAM`] whose first `kcore_pages` are
/// KCore's, for a CPU with `pa_bits` of PA (`kcore_arch::host_world`). Small
/// enough for the model checker to copy, hash and compare states quickly.
pub fn small_world(ram_pages: u64, kcore_pages: u64, pa_bits: u32) -> World {
    kcore_arch::host_world::small_world(RAM, ram_pages, kcore_pages, pa_bits)
}

/// A signature block as `host_verify_image` reads it from KServ's page: the
/// Ed25519 signature over `image` followed by the encoded `mmio` manifest,
/// then that manifest (`kcore_abi::manifest`).
pub fn signature_block(
    kp: &ed25519_compact::KeyPair,
    image: &[u8],
    mmio: &[(u64, u64)],
) -> Vec<u8> {
    let m = kcore_abi::manifest::Manifest::new(mmio).unwrap();
    let mut tail = [0u8; kcore_abi::manifest::MAX_LEN];
    let n = m.encode(&mut tail).unwrap();
    let signed = [image, &tail[..n]].concat();
    let mut block = kp.sk.sign(&signed, None).to_vec();
    block.extend_from_slice(&tail[..n]);
    block
}
