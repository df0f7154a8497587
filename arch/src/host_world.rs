//! A whole small machine for host tests: KCore's host-facing state over a
//! [`FakeMachine`], built the way the EL2 binary builds it (an ownership
//! table with KCore's pages marked, KServ's stage 2 mapping the rest), so
//! that a test can issue hypercalls through [`Host::handle_hvc`] exactly as
//! KServ does. KCore's own tests and the shim's (`kserv-core`, whose
//! conduit calls this KCore) use it.

extern crate std;

use crate::host_memory::FakeAllocator;
use crate::host_memory::FakeMachine;
use kcore::addr::{MemRange, PAGE_SIZE, Pa, RangeSet};
use kcore::host::Host;
use kcore::host_stage2::{HostMemoryMap, HostStage2};
use kcore::mem_protect::MemCore;
use kcore::ownership::OwnershipTable;
use kcore::pgtable::{Geometry, PageTable, Stage2};
use kcore::psci::PsciRelay;
use std::vec::Vec;

/// KCore's state in host tests: up to 4 RAM banks, 4 CPUs, 4 VMs.
pub type TestHost = Host<Vec<u64>, 4, 4, 4>;

/// KCore, the machine it runs on, and the allocator of KServ's stage-2
/// tables.
pub struct World {
    /// KCore's host-facing state.
    pub host: TestHost,
    /// Memory, devices and TLB.
    pub hw: FakeMachine,
    /// The pool of KServ's stage-2 tables.
    pub alloc: FakeAllocator,
}

/// A machine of `ram_pages` pages at `ram` whose first `kcore_pages` are
/// KCore's (KServ's stage-2 root first, then the pool for its tables), for a
/// CPU with `pa_bits` of PA; KServ's stage 2 maps every other page.
///
/// # Panics
///
/// If the sizes leave no room for KServ's stage-2 tables or do not form a
/// valid machine: a test's mistake.
pub fn small_world(ram: u64, ram_pages: u64, kcore_pages: u64, pa_bits: u32) -> World {
    let bank = MemRange::new(ram, ram_pages * PAGE_SIZE).expect("RAM is a range");
    let kcore = MemRange::new(ram, kcore_pages * PAGE_SIZE).expect("KCore is a range");
    let mut banks = RangeSet::<4>::new();
    banks.insert(bank).expect("one bank fits");
    let storage = std::vec![0u64; OwnershipTable::<Vec<u64>, 4>::entries_needed(&banks)];
    let mut owners = OwnershipTable::new(storage, banks).expect("ownership table");
    owners.mark_kcore(kcore).expect("KCore's pages");
    let mut map = HostMemoryMap::<4>::new();
    map.add_ram(bank).expect("RAM");
    map.add_kcore(kcore).expect("KCore");
    let geometry = Geometry::stage2(pa_bits).expect("stage-2 geometry");
    let root_pages = geometry.root_tables() as u64;
    assert!(kcore_pages > root_pages, "room for KServ's stage-2 tables");
    let mut hw = FakeMachine::new();
    let mut alloc = FakeAllocator::new(ram + root_pages * PAGE_SIZE, kcore_pages - root_pages);
    let mut s2 = HostStage2::new(PageTable::<Stage2>::new(Pa(ram), geometry), map);
    s2.map_ram(&mut hw, &mut alloc, &|t| owners.holds_table(t, None))
        .expect("KServ's stage 2");
    let mem = MemCore::new(owners, s2, pa_bits);
    World {
        host: Host::new(mem, PsciRelay::new(&[0, 1, 2, 3], 0)),
        hw,
        alloc,
    }
}
