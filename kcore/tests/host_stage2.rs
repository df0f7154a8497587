//! KServ's stage 2 over the host double: built from a memory map, it maps
//! all of KServ's RAM with blocks, never a byte of KCore's, and maps device
//! memory on first touch.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

use kcore::addr::{Ipa, MemRange, PAGE_SIZE, Pa};
use kcore::host_stage2::{HostAbort, HostMemoryMap, HostStage2};
use kcore::pgtable::{Attrs, Geometry, MemKind, PageTable, Stage2};
use kcore_arch::host_memory::{FakeAllocator, FakeMachine};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const RAM: u64 = 0x4000_0000;
const KCORE: u64 = 0x4020_0000;
const KCORE_SIZE: u64 = 0x60_3000; // deliberately not 2 MiB aligned
const POOL: u64 = 0x7FC0_0000;
const POOL_SIZE: u64 = 4 * MIB;

fn setup(ipa_bits: u32) -> (HostStage2<8>, FakeMachine, FakeAllocator) {
    let mut map = HostMemoryMap::<8>::new();
    map.add_ram(MemRange::new(RAM, GIB).unwrap()).unwrap();
    map.add_kcore(MemRange::new(KCORE, KCORE_SIZE).unwrap())
        .unwrap();
    map.add_kcore(MemRange::new(POOL, POOL_SIZE).unwrap())
        .unwrap();
    let geometry = Geometry::stage2(ipa_bits).unwrap();
    // Table pages come from inside KCore's pool, as at EL2.
    let alloc = FakeAllocator::new(POOL + 16 * PAGE_SIZE, 512);
    let table = PageTable::<Stage2>::new(Pa(POOL), geometry);
    (HostStage2::new(table, map), FakeMachine::new(), alloc)
}

/// Whether `p` lies in KCore's pool, where the table's pages are.
fn in_pool(p: Pa) -> bool {
    (POOL..POOL + POOL_SIZE).contains(&p.raw())
}

/// The table pages of the tests that build their own stage 2 at
/// `0x1000_0000` (its root, then its pool).
fn low_pool(p: Pa) -> bool {
    (0x1000_0000..0x1010_0000).contains(&p.raw())
}

fn kcore_ranges() -> [MemRange; 2] {
    [
        MemRange::new(KCORE, KCORE_SIZE).unwrap(),
        MemRange::new(POOL, POOL_SIZE).unwrap(),
    ]
}

#[test]
fn ram_is_identity_mapped_except_kcore() {
    for bits in [40, 44, 48] {
        let (mut s2, mut mem, mut alloc) = setup(bits);
        s2.map_ram(&mut mem, &mut alloc, &in_pool).unwrap();
        let t = s2.table();
        let mut page = RAM;
        while page < RAM + GIB {
            let in_kcore = kcore_ranges().iter().any(|k| k.contains(page));
            match t.walk(&mem, &in_pool, page + 0x123).unwrap() {
                Some(leaf) => {
                    assert!(
                        !in_kcore,
                        "KCore page {page:#x} mapped for KServ ({bits}-bit IPA)"
                    );
                    assert_eq!(leaf.pa, Pa(page + 0x123), "identity");
                    assert_eq!(leaf.attrs, Attrs::RAM_RWX);
                }
                None => assert!(
                    in_kcore,
                    "KServ RAM page {page:#x} unmapped ({bits}-bit IPA)"
                ),
            }
            page += PAGE_SIZE;
        }
        // Outside RAM nothing is mapped until touched.
        assert!(t.walk(&mem, &in_pool, 0x0900_0000).unwrap().is_none());
        assert!(t.walk(&mem, &in_pool, RAM + GIB).unwrap().is_none());
    }
}

#[test]
fn ram_uses_blocks_where_alignment_allows() {
    let (mut s2, mut mem, mut alloc) = setup(40);
    s2.map_ram(&mut mem, &mut alloc, &in_pool).unwrap();
    let t = s2.table();
    assert_eq!(
        t.walk(&mem, &in_pool, RAM).unwrap().unwrap().level,
        2,
        "2 MiB block below KCore"
    );
    assert_eq!(
        t.walk(&mem, &in_pool, 0x5000_0000).unwrap().unwrap().level,
        2,
        "2 MiB block above KCore"
    );
    // KCore's footprint ends mid-2 MiB: the rest of that block needs pages.
    assert_eq!(
        t.walk(&mem, &in_pool, KCORE + KCORE_SIZE)
            .unwrap()
            .unwrap()
            .level,
        3
    );
    // 1 GiB of RAM in 2 MiB blocks needs few tables: no page per page.
    assert!(
        alloc.handed_out().len() < 8,
        "{} table pages",
        alloc.handed_out().len()
    );
}

#[test]
fn table_pages_are_kcore_pages() {
    let (mut s2, mut mem, mut alloc) = setup(44);
    s2.map_ram(&mut mem, &mut alloc, &in_pool).unwrap();
    let mut ab = || s2.handle_abort(&mut mem, &mut alloc, Ipa(0x0900_0000), |_| true, &in_pool);
    assert_eq!(ab(), HostAbort::Mapped);
    let pool = MemRange::new(POOL, POOL_SIZE).unwrap();
    let mut n = 0;
    s2.table()
        .for_each_table(&mem, &in_pool, &mut |p| {
            n += 1;
            assert!(
                pool.contains(p.raw()),
                "table page {p:?} outside KCore's pool"
            );
            assert!(
                s2.table().walk(&mem, &in_pool, p.raw()).unwrap().is_none(),
                "table page {p:?} mapped for KServ"
            );
        })
        .unwrap();
    assert!(n >= 3);
}

#[test]
fn aborts_map_devices_and_refuse_kcore() {
    let (mut s2, mut mem, mut alloc) = setup(40);
    s2.map_ram(&mut mem, &mut alloc, &in_pool).unwrap();
    // A UART below RAM: the largest block that holds no RAM is 1 GiB at 0.
    assert_eq!(
        s2.handle_abort(&mut mem, &mut alloc, Ipa(0x0900_0004), |_| true, &in_pool),
        HostAbort::Mapped
    );
    let leaf = s2
        .table()
        .walk(&mem, &in_pool, 0x0900_0004)
        .unwrap()
        .unwrap();
    assert_eq!(
        (leaf.pa, leaf.level, leaf.attrs.kind),
        (Pa(0x0900_0004), 1, MemKind::Device)
    );
    assert!(!leaf.attrs.exec);
    // High MMIO (virt's PCIe window at 512 GiB) gets a 1 GiB block too.
    assert_eq!(
        s2.handle_abort(
            &mut mem,
            &mut alloc,
            Ipa(0x80_0000_1000),
            |_| true,
            &in_pool
        ),
        HostAbort::Mapped
    );
    assert_eq!(
        s2.table()
            .walk(&mem, &in_pool, 0x80_0000_1000)
            .unwrap()
            .unwrap()
            .level,
        1
    );
    // KCore memory: refused, nothing mapped, counted.
    for a in [
        KCORE,
        KCORE + 0x1000,
        KCORE + KCORE_SIZE - 1,
        POOL,
        POOL + POOL_SIZE - 8,
    ] {
        assert_eq!(
            s2.handle_abort(&mut mem, &mut alloc, Ipa(a), |_| true, &in_pool),
            HostAbort::Denied,
            "{a:#x}"
        );
        assert!(s2.table().walk(&mem, &in_pool, a).unwrap().is_none());
    }
    assert_eq!(s2.denied_count(), 5);
    // Beyond the IPA space: refused.
    assert_eq!(
        s2.handle_abort(&mut mem, &mut alloc, Ipa(1 << 40), |_| true, &in_pool),
        HostAbort::Denied
    );
    // Mapped already (e.g. raced with another CPU): retry.
    assert_eq!(
        s2.handle_abort(&mut mem, &mut alloc, Ipa(RAM), |_| true, &in_pool),
        HostAbort::Mapped
    );
}

#[test]
fn device_block_next_to_ram_shrinks() {
    // RAM at 1 GiB: MMIO just below it, in the same 1 GiB-aligned window as
    // nothing, can still have a block; a device page inside a 2 MiB window
    // shared with KCore's image gets a 4 KiB page.
    let mut map = HostMemoryMap::<8>::new();
    map.add_ram(MemRange::new(0x4000_0000, 0x3000_0000).unwrap())
        .unwrap(); // up to 0x7000_0000
    map.add_kcore(MemRange::new(0x7010_0000, 0x1000).unwrap())
        .unwrap(); // e.g. GICH
    let mut s2 = HostStage2::new(
        PageTable::<Stage2>::new(Pa(0x1000_0000), Geometry::stage2(40).unwrap()),
        map,
    );
    let (mut mem, mut alloc) = (FakeMachine::new(), FakeAllocator::new(0x1000_1000, 64));
    assert_eq!(
        s2.handle_abort(&mut mem, &mut alloc, Ipa(0x7000_0010), |_| true, &low_pool),
        HostAbort::Mapped
    );
    assert_eq!(
        s2.table()
            .walk(&mem, &low_pool, 0x7000_0010)
            .unwrap()
            .unwrap()
            .level,
        3,
        "shares 2 MiB with KCore's page"
    );
    assert_eq!(
        s2.handle_abort(&mut mem, &mut alloc, Ipa(0x7020_0000), |_| true, &low_pool),
        HostAbort::Mapped
    );
    assert_eq!(
        s2.table()
            .walk(&mem, &low_pool, 0x7020_0000)
            .unwrap()
            .unwrap()
            .level,
        2,
        "2 MiB: its 1 GiB holds RAM"
    );
    assert_eq!(
        s2.handle_abort(&mut mem, &mut alloc, Ipa(0x7010_0000), |_| true, &low_pool),
        HostAbort::Denied
    );
}

#[test]
fn pool_exhaustion_is_an_error_not_a_panic() {
    let mut map = HostMemoryMap::<8>::new();
    // Not 1 GiB aligned: needs a level-1 and a level-2 table, the pool has one page.
    map.add_ram(MemRange::new(RAM + 2 * MIB, GIB - 2 * MIB).unwrap())
        .unwrap();
    let mut s2 = HostStage2::new(
        PageTable::<Stage2>::new(Pa(0x1000_0000), Geometry::stage2(48).unwrap()),
        map,
    );
    let (mut mem, mut alloc) = (FakeMachine::new(), FakeAllocator::new(0x1000_1000, 1));
    assert!(s2.map_ram(&mut mem, &mut alloc, &low_pool).is_err());
    assert_eq!(
        s2.handle_abort(
            &mut mem,
            &mut alloc,
            Ipa(0x1_0000_0000_0000 - 0x1000),
            |_| true,
            &low_pool
        ),
        HostAbort::NoMemory
    );
}

#[test]
fn map_rejects_bad_ranges_and_overlaps() {
    use kcore::pgtable::MapError;
    let mut t = PageTable::<Stage2>::new(Pa(0x1000_0000), Geometry::stage2(40).unwrap());
    let (mut mem, mut alloc) = (FakeMachine::new(), FakeAllocator::new(0x1000_1000, 64));
    assert_eq!(
        t.map(
            &mut mem,
            &mut alloc,
            &low_pool,
            0x1001,
            Pa(0x1000),
            0x1000,
            Attrs::RAM_RW
        ),
        Err(MapError::BadRange)
    );
    assert_eq!(
        t.map(
            &mut mem,
            &mut alloc,
            &low_pool,
            0x1000,
            Pa(0x1000),
            0,
            Attrs::RAM_RW
        ),
        Err(MapError::BadRange)
    );
    assert_eq!(
        t.map(
            &mut mem,
            &mut alloc,
            &low_pool,
            (1 << 40) - 0x1000,
            Pa(0),
            0x2000,
            Attrs::RAM_RW
        ),
        Err(MapError::BadRange)
    );
    assert_eq!(
        t.map(
            &mut mem,
            &mut alloc,
            &low_pool,
            u64::MAX - 0xFFF,
            Pa(0),
            0x1000,
            Attrs::RAM_RW
        ),
        Err(MapError::BadRange)
    );
    t.map(
        &mut mem,
        &mut alloc,
        &low_pool,
        0x4000_0000,
        Pa(0x4000_0000),
        2 * MIB,
        Attrs::RAM_RW,
    )
    .unwrap();
    assert_eq!(
        t.map(
            &mut mem,
            &mut alloc,
            &low_pool,
            0x4010_0000,
            Pa(0x9000_0000),
            0x1000,
            Attrs::RAM_RW
        ),
        Err(MapError::AlreadyMapped),
        "inside a block"
    );
    assert_eq!(
        t.walk(&mem, &low_pool, 0x4010_0000).unwrap().unwrap().pa,
        Pa(0x4010_0000),
        "unchanged"
    );
}

#[test]
fn a_page_mapped_by_a_partial_block_attempt_is_not_refused() {
    // A 2 MiB region whose last-level table already maps its second page
    // (KServ touched it while a neighbour was given away; the neighbour has
    // come back since). The first touch of its first page tries the 2 MiB
    // block, which fills the table's free entries up to the mapped one and
    // so maps the faulting page: that is success, not a refusal.
    let mut map = HostMemoryMap::<8>::new();
    map.add_ram(MemRange::new(RAM, GIB).unwrap()).unwrap();
    let mut s2 = HostStage2::new(
        PageTable::<Stage2>::new(Pa(0x1000_0000), Geometry::stage2(40).unwrap()),
        map,
    );
    let (mut mem, mut alloc) = (FakeMachine::new(), FakeAllocator::new(0x1000_1000, 64));
    let region = RAM + 4 * MIB;
    // Map the second page alone, as a 4 KiB page.
    let only_second = |r: MemRange| r.size() == PAGE_SIZE && r.base() == region + PAGE_SIZE;
    assert_eq!(
        s2.handle_abort(
            &mut mem,
            &mut alloc,
            Ipa(region + PAGE_SIZE),
            only_second,
            &low_pool
        ),
        HostAbort::Mapped
    );
    assert_eq!(
        s2.table()
            .walk(&mem, &low_pool, region + PAGE_SIZE)
            .unwrap()
            .unwrap()
            .level,
        3
    );
    assert!(s2.table().walk(&mem, &low_pool, region).unwrap().is_none());
    // Now everything in the region is KServ's.
    assert_eq!(
        s2.handle_abort(&mut mem, &mut alloc, Ipa(region), |_| true, &low_pool),
        HostAbort::Mapped
    );
    assert_eq!(
        s2.table()
            .walk(&mem, &low_pool, region)
            .unwrap()
            .unwrap()
            .pa,
        Pa(region)
    );
    assert_eq!(s2.denied_count(), 0);
}

/// A server's redistributors, one region per CPU (an ACPI MADT without a
/// GICR structure), join into one trapped region per contiguous run, and
/// the joined region traps exactly the pages the separate ones did.
#[test]
fn per_cpu_redistributor_regions_join_into_one_trap_region() {
    use kcore::host_stage2::TrapFrames;
    const BASE: u64 = 0x0800_0000;
    const STRIDE: u64 = 0x2_0000;
    let one = |i: u64, stride: u64| TrapFrames {
        region: MemRange::new(BASE + i * stride, stride).unwrap(),
        stride,
        offsets: [Some(0), None],
    };
    // 256 CPUs: one region.
    let mut run = one(0, STRIDE);
    for i in 1..256 {
        run = run.joined(&one(i, STRIDE)).unwrap();
    }
    assert_eq!(run.region, MemRange::new(BASE, 256 * STRIDE).unwrap());
    for i in [0, 1, 100, 255] {
        let frame = BASE + i * STRIDE;
        assert!(run.contains(frame), "CPU {i}'s control page");
        assert!(run.contains(frame + PAGE_SIZE - 8));
        assert!(!run.contains(frame + PAGE_SIZE), "CPU {i}'s other pages");
        assert!(!run.contains(frame + 0x1_0000), "CPU {i}'s SGI frame");
    }
    assert!(!run.contains(BASE + 256 * STRIDE));
    // A gap, another stride (GICv4), other offsets or a region holding a
    // partial frame do not join.
    let a = one(0, STRIDE);
    assert_eq!(a.joined(&one(2, STRIDE)), None, "gap");
    let v4 = TrapFrames {
        region: MemRange::new(BASE + STRIDE, 0x4_0000).unwrap(),
        stride: 0x4_0000,
        offsets: [Some(0), None],
    };
    assert_eq!(a.joined(&v4), None, "stride");
    let vlpi = TrapFrames {
        offsets: [Some(0), Some(0x3_0000)],
        ..one(1, STRIDE)
    };
    assert_eq!(a.joined(&vlpi), None, "offsets");
    let partial = TrapFrames {
        region: MemRange::new(BASE, STRIDE + PAGE_SIZE).unwrap(),
        ..a
    };
    let after = TrapFrames {
        region: MemRange::new(BASE + STRIDE + PAGE_SIZE, STRIDE).unwrap(),
        ..a
    };
    assert_eq!(partial.joined(&after), None, "a partial frame");
    // Joined regions go into a map as one slot each.
    let mut map = HostMemoryMap::<8>::new();
    for _ in 0..kcore::host_stage2::MAX_TRAP_FRAMES {
        map.add_trapped(run).unwrap();
    }
    assert!(map.add_trapped(run).is_err(), "every slot taken");
}
