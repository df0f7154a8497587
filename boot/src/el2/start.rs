//! Bring-up: from the first Rust instruction on the primary CPU to KServ at
//! EL1, and the same for every secondary CPU KServ starts through PSCI.
//!
//! Order on the primary CPU (DESIGN.md section 3): a private copy of the
//! device tree, the heap and the platform ([`early`]), console, EL check,
//! KCore's EL2 stage 1 and MMU, the payload, KCore's pool, KServ's device tree, KServ's stage 2,
//! the EL2 configuration for KServ, and the drop to EL1. Any failure prints
//! why and stops the machine cleanly ([`stop`]).

use super::entry::{
    self, CpuTable, ImageLayout, KCORE_CPU_TABLE, KCORE_SECONDARY_BOOT, SecondaryBoot,
};
use super::state::{
    FEATURES, KcoreState, MAP_RANGES, MAX_CPUS, POWER, RESET, STATE, park_if_off, stop,
};
use super::{console, early, trap};
use alloc::vec::Vec;
use kcore::addr::{MemRange, PAGE_SIZE, Pa, RangeSet};
use kcore::gic_guard;
use kcore::host::Host;
use kcore::host_stage2::{HostMemoryMap, HostStage2, TablePages, TrapFrames};
use kcore::image::VerifyKey;
use kcore::mem_protect::MemCore;
use kcore::ownership::OwnershipTable;
use kcore::pgtable::{Attrs, El2Stage1, Geometry, PageTable, Stage2};
use kcore::psci::{Backend, PsciRelay};
use kcore_arch::el2::cpu::{self, Features, HostConfig, MmuConfig};
use kcore_arch::el2::phys_memory::{PagePool, PhysTables};
use kcore_arch::el2::vectors;
use kcore_arch::el2::{gicv2, gicv3};
use kcore_arch::sysreg;
use kcore_boot::platform::{self, EnableMethod, GicVersion, MaybeRegion, Platform};
use kcore_boot::{efi_map, kserv_dt, pool};
use log::{info, warn};

/// Pages of the EL2 stage-1 table area in bss.
const EL2_TABLE_PAGES: usize = 64;

#[repr(C, align(4096))]
struct TableArea([u8; EL2_TABLE_PAGES * PAGE_SIZE as usize]);
static mut EL2_TABLES: TableArea = TableArea([0; EL2_TABLE_PAGES * PAGE_SIZE as usize]);
static HOST_CONFIG: spin::Once<HostConfig> = spin::Once::new();

/// `[start, end)` minus every range in `holes`, as pieces, through `f`.
fn subtract<E>(
    start: u64,
    end: u64,
    holes: &[MemRange],
    mut f: impl FnMut(u64, u64) -> Result<(), E>,
) -> Result<(), E> {
    let mut cur = start;
    let mut sorted: [Option<MemRange>; 4] = [None; 4];
    for (i, h) in holes.iter().take(4).enumerate() {
        sorted[i] = Some(*h);
    }
    sorted.sort_by_key(|h| h.map_or(u64::MAX, |h| h.base()));
    for h in sorted.iter().flatten() {
        if h.end() <= cur || h.base() >= end {
            continue;
        }
        if h.base() > cur {
            f(cur, h.base())?;
        }
        cur = cur.max(h.end());
    }
    if cur < end {
        f(cur, end)?;
    }
    Ok(())
}

/// Reserves KCore's `kcore_regions` in the EFI memory map the loader hands
/// on to KServ (`kcore_boot::efi_map`), in place, and returns the map's new
/// length; `None` when the loader handed no map on (a boot without UEFI).
fn reserve_in_efi_map(plat: &Platform, kcore_regions: &[MemRange]) -> Option<u32> {
    let map = plat.efi_map?;
    let buffer = map.buffer();
    let in_ram = buffer.is_some_and(|b| plat.memory.iter().any(|m| m.contains_range(&b)));
    if !in_ram
        || kcore_regions
            .iter()
            .any(|k| buffer.is_some_and(|b| b.overlaps(k)))
    {
        stop(format_args!(
            "the EFI memory map's buffer {buffer:?} is not RAM outside KCore's memory"
        ));
    }
    // SAFETY: the buffer is RAM (checked above), mapped read-write at EL2
    // like all RAM, outside KCore's image and pool, and nothing else uses
    // it before KServ runs.
    let buf =
        unsafe { core::slice::from_raw_parts_mut(map.start as *mut u8, map.capacity as usize) };
    let len = match efi_map::reserve(
        buf,
        map.size as usize,
        map.desc_size as usize,
        kcore_regions,
    ) {
        Ok(l) => l,
        Err(e) => stop(format_args!("{e}")),
    };
    info!(
        "the EFI memory map at {:#x} for KServ reserves KCore's memory ({} descriptors)",
        map.start,
        len / (map.desc_size as usize).max(1)
    );
    // `len` is at most the capacity, a u32.
    Some(u32::try_from(len).unwrap_or(map.capacity))
}

/// Records `frames` (redistributors' control pages) as reaching KServ only
/// through KCore, or stops.
fn trap_redistributors(map: &mut HostMemoryMap<MAP_RANGES>, frames: TrapFrames) {
    if map.add_trapped(frames).is_err() {
        stop(format_args!(
            "cannot trap the control pages of redistributor region {}",
            frames.region
        ));
    }
}

/// A GICv2's pages KCore maps at EL2 to run guests: the distributor's
/// first page (its banked private-interrupt registers) and the virtual
/// interface control (`GICH`), both translated through the tree's `ranges`.
fn gicv2_frames(plat: &Platform) -> Option<[MemRange; 2]> {
    let g = plat.gic.as_ref().filter(|g| g.version == GicVersion::V2)?;
    let page = |r: MemRange| MemRange::new(r.base(), PAGE_SIZE.min(r.size()));
    Some([page(g.dist)?, page(g.hyp_if?)?])
}

/// Builds KCore's EL2 stage 1: its image with section permissions, all RAM
/// read-write never-executable, the `devices` (console, GICv3
/// redistributors, the Pi's PM block) as device memory.
fn build_el2_map(
    img: &ImageLayout,
    ram: &[MemRange],
    devices: &[MemRange],
    f: &Features,
) -> Option<MmuConfig> {
    // SAFETY: the table area is KCore's bss, used for nothing else, and the
    // MMU is off (or, on the secondaries, already on with this same map).
    let mut mem = unsafe { PhysTables::new() };
    let area = core::ptr::addr_of!(EL2_TABLES) as u64;
    // SAFETY: the rest of the same bss area, also used for nothing else.
    let mut pool =
        unsafe { PagePool::new(area + PAGE_SIZE, area + EL2_TABLE_PAGES as u64 * PAGE_SIZE) };

    let geometry = Geometry::stage1(f.pa_bits)?;
    let mut t = PageTable::<El2Stage1>::new(Pa(area), geometry);
    // The tables are pages of the area, and nothing else.
    let area_end = area + EL2_TABLE_PAGES as u64 * PAGE_SIZE;
    let in_area = |p: Pa| (area..area_end).contains(&p.raw());
    let mut map = |va: u64, end: u64, a: Attrs| {
        t.map(&mut mem, &mut pool, &in_area, va, Pa(va), end - va, a)
            .ok()
    };
    map(img.start, img.text_end, Attrs::RAM_RX)?;
    map(img.text_end, img.rodata_end, Attrs::RAM_RO)?;
    map(img.rodata_end, img.end, Attrs::RAM_RW)?;
    let image = MemRange::from_bounds(img.start, img.end)?;
    for bank in ram.iter() {
        subtract(
            bank.base(),
            bank.end().min(geometry.input_limit()),
            &[image],
            |s, e| {
                t.map(
                    &mut mem,
                    &mut pool,
                    &in_area,
                    s,
                    Pa(s),
                    e - s,
                    Attrs::RAM_RW,
                )
                .map_err(|_| ())
            },
        )
        .ok()?;
    }
    for r in devices {
        let start = r.base() & !(PAGE_SIZE - 1);
        let end = align_up(r.end(), PAGE_SIZE)?;
        t.map(
            &mut mem,
            &mut pool,
            &in_area,
            start,
            Pa(start),
            end - start,
            Attrs::DEVICE,
        )
        .ok()?;
    }
    Some(MmuConfig {
        mair: El2Stage1::MAIR,
        tcr: sysreg::tcr_el2(&geometry, f.pa_range),
        ttbr0: area,
        sctlr: cpu::sctlr_el2(f),
    })
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    Some(v.checked_add(a - 1)? & !(a - 1))
}

/// The primary CPU's Rust entry, called by `entry.rs` with the loader's `x0`
/// and KCore's load address.
#[unsafe(no_mangle)]
extern "C" fn kcore_primary_main(dtb: u64, _load: u64) -> ! {
    // SAFETY: the loader passed the device tree in x0; `discover` checks its
    // header before reading the rest.
    let early = unsafe { early::discover(dtb) };
    let early = match early {
        Ok(e) => e,
        // No console without a device tree: nothing can be reported.
        Err(_) => cpu::halt(),
    };
    let plat = early.plat;
    POWER.call_once(|| plat.psci.map(|p| p.method));
    RESET.call_once(|| plat.pm_watchdog.map(|r| r.base()));
    if let Some(uart) = &plat.uart {
        // SAFETY: the device tree names a UART of this kind there; the MMU is
        // off (every access is device-typed) and the EL2 map built below
        // keeps it mapped.
        unsafe { console::init(uart) };
    }
    let el = cpu::current_el();
    if el != 2 {
        stop(format_args!(
            "entered at EL{el}, but KCore must be entered at EL2 (QEMU: -machine virt,virtualization=on)"
        ));
    }
    info!(
        "KCore v{} at EL2 (ABI {}.{})",
        env!("CARGO_PKG_VERSION"),
        kcore_abi::ABI_VERSION_MAJOR,
        kcore_abi::ABI_VERSION_MINOR
    );
    let f = *FEATURES.call_once(cpu::features);
    let img = entry::layout();
    let redist: &[MemRange] = match &plat.gic {
        Some(g) => &g.redist,
        None => &[],
    };
    let devices: Vec<MemRange> = plat
        .uart
        .and_then(|u| MemRange::new(u.base, u.size))
        .into_iter()
        .chain(redist.iter().copied())
        .chain(plat.pm_watchdog)
        .chain(gicv2_frames(&plat).into_iter().flatten())
        .collect();
    let Some(mmu) = build_el2_map(&img, &plat.memory, &devices, &f) else {
        stop(format_args!("cannot build KCore's EL2 page tables"));
    };
    // SAFETY: the map covers KCore's image (code, data, this stack), all RAM
    // and the console, each at its current address.
    unsafe { cpu::enable_mmu(&mmu) };
    cpu::set_vectors(vectors::vectors_addr());
    #[cfg(feature = "self-check")]
    if let Err(e) = kcore_arch::el2::memcpy::check() {
        stop(format_args!("self-check: {e}"));
    }
    let regions: Vec<(u64, u64)> = redist.iter().map(|r| (r.base(), r.size())).collect();
    gicv3::set_regions(&regions);
    if let Some([gicd, gich]) = gicv2_frames(&plat) {
        gicv2::set_frames(gicd.base(), gich.base());
    }

    // `early` validated the loader's tree and made KCore's own copy: the
    // loader's copy lives in memory KServ will own.
    let dt = early.dt;
    let boot = boot_kserv(&plat, dt, &img, &mmu, &f);
    info!(
        "entering KServ at EL1: kernel {:#x}, device tree {:#x}, {} CPUs ({} us since reset)",
        boot.entry,
        boot.dt,
        plat.cpus.len(),
        cpu::uptime_us()
    );
    // SAFETY: KServ's stage 2 and traps are configured; the boot stack is
    // free again (nothing above this frame is used after the ERET).
    unsafe { cpu::enter_el1(boot.entry, boot.dt, img.boot_stack_top) }
}

struct KservBoot {
    entry: u64,
    dt: u64,
}

fn boot_kserv(
    plat: &Platform,
    dt: &[u8],
    img: &ImageLayout,
    mmu: &MmuConfig,
    f: &Features,
) -> KservBoot {
    let banks: &[MemRange] = &plat.memory;
    let Some(bank) = banks.iter().find(|b| b.contains(img.start)).copied() else {
        stop(format_args!(
            "KCore at {:#x} is not inside any /memory bank",
            img.start
        ));
    };
    // The payload follows KCore's footprint, in the same bank.
    if img.end >= bank.end() {
        stop(format_args!(
            "no KServ payload: KCore ends at the end of its RAM bank"
        ));
    }
    // SAFETY: [img.end, bank.end) is RAM mapped at EL2; nothing else runs, and
    // it is only read while `payload` is alive.
    let mem = unsafe {
        core::slice::from_raw_parts(img.end as *const u8, (bank.end() - img.end) as usize)
    };
    let payload = match kcore_payload::parse(mem) {
        Ok(p) => p,
        Err(kcore_payload::Error::NoPayload) => stop(format_args!(
            "no KServ payload found after KCore (build the boot image with `cargo xtask build`)"
        )),
        Err(e) => stop(format_args!("bad KServ payload: {e}")),
    };
    let header = match kcore_payload::parse_image_header(payload.kernel.bytes) {
        Ok(h) => h,
        Err(e) => stop(format_args!("bad KServ payload: kernel: {e}")),
    };
    let mut kernel = img.end + payload.kernel.offset;
    let kernel_len = payload.kernel.bytes.len() as u64;
    let initrd = payload
        .initramfs
        .as_ref()
        .map(|c| (img.end + c.offset, c.bytes.len() as u64));
    let cmdline = payload.cmdline;
    // The key for protected VMs' images, copied into KCore's memory now: the
    // payload lives in memory KServ will own.
    let verify_key = payload.vm_verify_key.and_then(|k| match VerifyKey::new(*k) {
        Ok(k) => Some(k),
        Err(e) => {
            warn!("the boot image's VM verification key is unusable ({e}); protected VMs cannot be verified");
            None
        }
    });
    if verify_key.is_none() && payload.vm_verify_key.is_none() {
        warn!("the boot image carries no VM verification key; protected VMs cannot be verified");
    }
    // The kernel must sit text_offset above a 2 MiB boundary.
    if !(kernel - header.text_offset).is_multiple_of(2 << 20) {
        let Some(target) = align_up(kernel + kernel_len, 2 << 20).map(|t| t + header.text_offset)
        else {
            stop(format_args!("bad KServ payload: kernel cannot be placed"));
        };
        // SAFETY: both ranges are RAM in the payload's bank (checked against
        // the bank end below before anything else is written there); `copy`
        // handles overlap.
        if target + kernel_len > bank.end() {
            stop(format_args!("not enough RAM to place the KServ kernel"));
        }
        // SAFETY: see above.
        unsafe { core::ptr::copy(kernel as *const u8, target as *mut u8, kernel_len as usize) };
        kernel = target;
    }
    let kernel_end = kernel + header.image_size.max(kernel_len);
    let Some(dt_base) = align_up(kernel_end, 2 << 20) else {
        stop(format_args!("no room for KServ's device tree"))
    };
    let mut ram_banks = RangeSet::<MAP_RANGES>::new();
    for b in banks {
        if ram_banks.insert(*b).is_err() {
            warn!("ignoring RAM bank {b:?} (overlap or too many banks)");
        }
    }
    let owner_entries = OwnershipTable::<&mut [u64], MAP_RANGES>::entries_needed(&ram_banks);
    // KCore's pool: a stage-2 root, the ownership table, KServ's stage-2
    // tables, the secondary CPUs' stacks (`kcore_boot::pool`).
    // Above 1 GiB when the machine has RAM there (`pool::pool_banks`), else
    // in KCore's bank.
    let mut placed = Err(pool::PoolError::Overflow);
    for candidate in pool::pool_banks(banks, bank).into_iter().flatten() {
        placed = pool::place(&pool::PoolRequest {
            bank: candidate,
            owner_entries,
            cpus: plat.cpus.len().clamp(1, MAX_CPUS),
            kcore_start: img.start,
            kernel_end,
            dt_base,
            dt_len: dt.len() as u64,
            reserved: &plat.reserved,
        });
        if placed.is_ok() {
            break;
        }
    }
    let layout = match placed {
        Ok(l) => l,
        Err(e) => stop(format_args!("{e}")),
    };
    let pool = layout.pool;
    let image = MemRange::from_bounds(img.start, img.end).unwrap_or_default();
    let dt_limit = layout.dt.end();
    let me = cpu::mpidr();
    let spin = plat.spin_table(me);
    let mut kcore_regions = alloc::vec![image, pool];
    if spin {
        // A CPU still waiting in the loader's stub jumps, at EL2, to
        // whatever its release slot holds: the slots' pages are KCore's,
        // out of KServ's stage 2, even though every CPU is released below.
        let mut pages = spin_table_pages(plat);
        platform::normalize_regions(&mut pages);
        for page in pages {
            info!("the spin table's page {page} is KCore's");
            kcore_regions.push(page);
        }
    }
    platform::normalize_regions(&mut kcore_regions);
    let initrd = match initrd {
        None => None,
        Some((base, len)) => match MemRange::new(base, len) {
            Some(r) => Some(r),
            None => stop(format_args!(
                "cannot build KServ's device tree: the initramfs region is empty or wraps around"
            )),
        },
    };
    // KServ's tree reserves KCore's regions, except those the loader's
    // tree already reserves (the Pi's stub page, in `/memreserve/`): Linux
    // refuses to reserve a region twice, and says so.
    let kserv_reserved: Vec<MemRange> = kcore_regions
        .iter()
        .copied()
        .filter(|k| !plat.reserved.iter().any(|r| r.contains_range(k)))
        .collect();
    let uefi_mmap_size = reserve_in_efi_map(plat, &kcore_regions);
    let edits = kserv_dt::KservDtEdits {
        kcore_regions: &kserv_reserved,
        initrd,
        payload_cmdline: cmdline,
        abi_version: kcore_abi::abi_version() as u32,
        uefi_mmap_size,
    };
    let kdt = match (plat.kserv_stub, uefi_mmap_size) {
        (true, Some(len)) => {
            info!("ACPI machine: KServ gets a stub device tree");
            kserv_dt::stub(dt, &edits, len)
        }
        (true, None) => stop(format_args!(
            "the loader booted an ACPI machine but gave no EFI memory map for KServ"
        )),
        (false, _) => kserv_dt::build(dt, &edits),
    };
    let kdt = match kdt {
        Ok(d) => d,
        Err(e) => stop(format_args!("cannot build KServ's device tree: {e}")),
    };
    if dt_base + kdt.len() as u64 > dt_limit {
        stop(format_args!(
            "KServ's device tree grew beyond the space reserved for it"
        ));
    }
    // SAFETY: [dt_base, dt_base + len) is RAM past the kernel's footprint and
    // below KCore's pool (checked above), mapped at EL2.
    unsafe { core::ptr::copy_nonoverlapping(kdt.as_ptr(), dt_base as *mut u8, kdt.len()) };
    info!(
        "KServ: kernel {kernel:#x}..{kernel_end:#x}, initrd {}, device tree {dt_base:#x}, KCore owns {image:?} and {pool:?}",
        MaybeRegion(edits.initrd)
    );

    // KServ's stage 2.
    let mut map = HostMemoryMap::<MAP_RANGES>::new();
    for b in ram_banks.iter() {
        if map.add_ram(*b).is_err() {
            stop(format_args!("cannot record RAM bank {b:?}"));
        }
    }
    for &k in &kcore_regions {
        if map.add_kcore(k).is_err() {
            stop(format_args!("cannot record KCore region {k:?}"));
        }
    }
    // Devices that master memory with no SMMU of KCore's in front of them
    // are KCore's (hidden from KServ's tree): widened to whole pages, then
    // merged, so that neighbours sharing a page are one region.
    let mut masters: Vec<MemRange> = plat
        .dma_masters
        .iter()
        .filter_map(|r| r.align_out(PAGE_SIZE))
        .collect();
    platform::normalize_regions(&mut masters);
    for &r in &masters {
        if map.add_kcore(r).is_err() {
            stop(format_args!(
                "cannot keep the DMA master at {r:?} from KServ"
            ));
        }
    }
    if let Some(gic) = &plat.gic {
        // The virtual-interface control and vCPU interface of a GICv2 belong
        // to KCore: KServ never maps them. So do the ITSes, which write
        // their tables by physical address (hidden from KServ's tree).
        for r in [gic.hyp_if, gic.vcpu_if]
            .iter()
            .flatten()
            .chain(gic.its.iter())
            .copied()
        {
            if map.add_kcore(r).is_err() {
                stop(format_args!("cannot record GIC region {r:?} as KCore's"));
            }
        }
        // The redistributors' control pages (LPI table bases) reach KServ
        // only through KCore's checks (`kcore::gic_guard`). Contiguous
        // regions (one per CPU on an ACPI server) are trapped as one.
        let mut run: Option<TrapFrames> = None;
        for (i, r) in gic.redist.iter().enumerate() {
            let (range, Some(stride)) = (*r, gicv3::stride(i)) else {
                stop(format_args!(
                    "cannot find the layout of redistributor region {r}"
                ));
            };
            let vlpi = (stride == gic_guard::STRIDE_V4).then_some(gic_guard::VLPI_FRAME);
            let frames = TrapFrames {
                region: range,
                stride,
                offsets: [Some(0), vlpi],
            };
            run = match run.map(|cur| (cur, cur.joined(&frames))) {
                Some((_, Some(joined))) => Some(joined),
                Some((cur, None)) => {
                    trap_redistributors(&mut map, cur);
                    Some(frames)
                }
                None => Some(frames),
            };
        }
        if let Some(last) = run {
            trap_redistributors(&mut map, last);
        }
        info!(
            "{} RAM banks; {} redistributor regions, trapped as {} runs",
            ram_banks.len(),
            gic.redist.len(),
            map.trapped_regions()
        );
    }
    let Some(geometry) = Geometry::stage2(f.pa_bits) else {
        stop(format_args!("unsupported PA range"))
    };
    // SAFETY: the pool is RAM KCore just reserved for itself, mapped RW at EL2.
    let mut tables = unsafe { PhysTables::new() };
    // SAFETY: as above; `layout.tables` is the part of the pool between the
    // ownership table and the stacks, used for nothing else.
    let mut pages = unsafe { PagePool::new(layout.tables.base(), layout.tables.end()) };
    // SAFETY: `layout.owners` is part of KCore's pool, mapped read-write at
    // EL2, page aligned, holds `owner_entries` u64s (`pool::place`), and is
    // used for nothing else for as long as KCore runs.
    let storage: &'static mut [u64] =
        unsafe { core::slice::from_raw_parts_mut(layout.owners.base() as *mut u64, owner_entries) };
    let mut owners = match OwnershipTable::new(storage, ram_banks) {
        Ok(o) => o,
        Err(e) => stop(format_args!("cannot build the ownership table: {e:?}")),
    };
    for &k in &kcore_regions {
        if let Err(e) = owners.mark_kcore(k) {
            stop(format_args!("cannot mark KCore's memory {k:?}: {e:?}"));
        }
    }
    for i in 0..geometry.root_tables() {
        use kcore::hw::TableMemory;
        tables.zero_page(Pa(pool.base() + i as u64 * PAGE_SIZE));
    }
    let mut s2 = HostStage2::new(PageTable::<Stage2>::new(Pa(pool.base()), geometry), map);
    // KServ's tables are its root and pages of `pages`: never the ownership
    // table or the stacks beside them in KCore's pool.
    s2.set_table_pages(TablePages::new(layout.s2_root, layout.tables));
    let table_pages = s2.table_pages();
    if let Err(e) = s2.map_ram(&mut tables, &mut pages, &|t| table_pages.holds(&owners, t)) {
        stop(format_args!("cannot build KServ's stage 2: {e:?}"));
    }
    let mpidrs: Vec<u64> = plat.cpus.iter().map(|c| c.mpidr).collect();
    let Some(boot_cpu) = mpidrs.iter().position(|&m| m == me) else {
        stop(format_args!(
            "the boot CPU (MPIDR {me:#x}) is not in the device tree"
        ));
    };
    if mpidrs.len() > MAX_CPUS {
        warn!(
            "{} CPUs in the device tree; KCore manages the first {MAX_CPUS}",
            mpidrs.len()
        );
    }
    trap::init_loaded(mpidrs.len());
    let host_cfg = *HOST_CONFIG.call_once(|| HostConfig {
        vttbr: pool.base(),
        vtcr: sysreg::vtcr_el2(&geometry, f.pa_range),
    });
    // Secondary CPUs: stacks at the top of the pool, MMU configuration.
    let sb = SecondaryBoot {
        mmu: *mmu,
        stacks: layout.stacks,
        stack_size: pool::SECONDARY_STACK,
        cpus: mpidrs.len().min(MAX_CPUS) as u64,
    };
    let slot = &raw mut KCORE_SECONDARY_BOOT;
    // SAFETY: no secondary CPU runs yet; this is the only writer.
    unsafe { slot.write_volatile(sb) };
    cpu::clean_dcache_range(
        core::ptr::addr_of!(KCORE_SECONDARY_BOOT) as u64,
        size_of::<SecondaryBoot>() as u64,
    );
    let mut mem = MemCore::new(owners, s2, f.pa_bits);
    if let Some(k) = verify_key {
        mem.set_verify_key(k);
    }
    // A GICv2's virtual CPU interface, 8 KiB, which KServ's stage 2 never
    // maps (above): VMs get it at their GICC address (`kcore::gicv`).
    if let Some(gic) = plat.gic.as_ref().filter(|g| g.version == GicVersion::V2)
        && gicv2::available()
        && let Some(v) = gic.vcpu_if.filter(|v| v.size() >= 2 * PAGE_SIZE)
    {
        mem.set_gicv(Pa(v.base()));
    }
    *STATE.lock() = Some(KcoreState {
        host: Host::new(
            mem,
            PsciRelay::new(&mpidrs, boot_cpu).with_backend(if spin {
                Backend::SpinTable
            } else {
                Backend::Firmware
            }),
        ),
        pool: pages,
    });
    trap::set_smc_firmware(!spin);
    if spin {
        release_secondaries(plat, &mpidrs, me, img.spin_entry);
    }
    trap::set_secondary_entry(img.secondary_entry);
    cpu::set_cpu_index(boot_cpu);
    find_redistributor(boot_cpu);
    // SAFETY: the stage 2 just built maps all of KServ's RAM.
    unsafe { cpu::configure_for_host(f, &host_cfg) };
    // After the configuration: ICH_VTR_EL2 reads only with ICC_SRE_EL2.SRE
    // set.
    if let Some(state) = STATE.lock().as_mut() {
        state
            .host
            .mem_mut()
            .set_guest_id_regs(kcore::idregs::GuestIdRegs::sanitise(
                kcore_arch::el2::idregs::id_reg,
            ));
    }
    KservBoot {
        entry: kernel,
        dt: dt_base,
    }
}

/// The pages of the CPUs' spin-table release slots that lie in RAM.
fn spin_table_pages(plat: &Platform) -> Vec<MemRange> {
    plat.cpus
        .iter()
        .filter_map(|c| match c.enable_method {
            EnableMethod::SpinTable { release_addr } => {
                MemRange::new(release_addr & !(PAGE_SIZE - 1), PAGE_SIZE)
            }
            _ => None,
        })
        .filter(|p| plat.memory.iter().any(|b| b.contains_range(p)))
        .collect()
}

/// Releases every secondary CPU from the loader's spin table into KCore's
/// pen (`kcore_spin_entry`, then [`pen`]), before KServ runs: from then on
/// no CPU waits on a slot KServ could write. The CPU table the entry reads
/// is written and cleaned to the point of coherency first.
fn release_secondaries(plat: &Platform, mpidrs: &[u64], me: u64, entry: u64) {
    let mut table = CpuTable {
        count: mpidrs.len().min(MAX_CPUS) as u64,
        mpidrs: [0; MAX_CPUS],
    };
    for (slot, m) in table.mpidrs.iter_mut().zip(mpidrs) {
        *slot = m & kcore_abi::psci::MPIDR_AFFINITY;
    }
    let t = &raw mut KCORE_CPU_TABLE;
    // SAFETY: no secondary CPU runs yet; this is the only writer.
    unsafe { t.write_volatile(table) };
    cpu::clean_dcache_range(
        core::ptr::addr_of!(KCORE_CPU_TABLE) as u64,
        size_of::<CpuTable>() as u64,
    );
    let mut released = 0;
    for c in plat.cpus.iter().take(MAX_CPUS).filter(|c| c.mpidr != me) {
        let EnableMethod::SpinTable { release_addr } = c.enable_method else {
            continue;
        };
        let in_ram = plat
            .memory
            .iter()
            .any(|b| b.contains(release_addr) && b.contains(release_addr + 7));
        if !release_addr.is_multiple_of(8) || !in_ram {
            warn!(
                "CPU {:#x}: release address {release_addr:#x} is not aligned RAM; not started",
                c.mpidr
            );
            continue;
        }
        // SAFETY: an aligned slot in RAM, which the EL2 map covers; the
        // entry sets up EL2 from scratch with the MMU off.
        unsafe { cpu::spin_table_release(release_addr, entry) };
        released += 1;
    }
    info!(
        "no PSCI firmware: {released} secondary CPUs released from the spin table into KCore's pen"
    );
}

/// KCore's pen, for a platform with no PSCI firmware: this CPU waits
/// (`wfe`) until KServ's `CPU_ON` posts an entry point for it, then enters
/// KServ there. A CPU that KServ's `CPU_OFF` sent here starts again the same
/// way, on a fresh EL2 stack. On the firmware backend a CPU with nothing
/// posted parks (the firmware started it without KServ asking).
pub fn pen(cpu: usize) -> ! {
    let (entry, context) = loop {
        park_if_off();
        {
            let mut guard = STATE.lock();
            let Some(s) = guard.as_mut() else { cpu::halt() };
            if let Some(args) = s.host.take_boot_args(cpu) {
                break args;
            }
            if s.host.psci().backend() != Backend::SpinTable {
                drop(guard);
                warn!("CPU {cpu} started without a pending CPU_ON; parking it");
                cpu::halt();
            }
        }
        cpu::wait_for_event();
    };
    let slot = &raw const KCORE_SECONDARY_BOOT;
    // SAFETY: read-only; the primary wrote it before any secondary ran.
    let sb = unsafe { slot.read_volatile() };
    let top = sb.stacks + (cpu as u64 + 1) * sb.stack_size;
    // SAFETY: `entry` was checked to be KServ RAM by the PSCI relay; the
    // stack is this CPU's own in KCore's pool.
    unsafe { cpu::enter_el1(entry, context, top) }
}

/// Records this CPU's GICv3 redistributor, which running guests needs.
fn find_redistributor(cpu: usize) {
    if FEATURES.get().is_some_and(|f| f.gicv3_sysregs) && !gicv3::init_cpu(cpu, cpu::mpidr()) {
        warn!("CPU {cpu}: no GICv3 redistributor found; it cannot run guests");
    }
}

/// A secondary CPU's Rust entry, with its MMU on and its stack set.
#[unsafe(no_mangle)]
extern "C" fn kcore_secondary_main(cpu: usize) -> ! {
    cpu::set_vectors(vectors::vectors_addr());
    cpu::set_cpu_index(cpu);
    let (Some(f), Some(host_cfg)) = (FEATURES.get(), HOST_CONFIG.get()) else {
        cpu::halt()
    };
    find_redistributor(cpu);
    // SAFETY: the same stage 2 as the primary's, complete before any CPU_ON.
    unsafe { cpu::configure_for_host(f, host_cfg) };
    pen(cpu)
}
