//! The UEFI application: started by the firmware at EL2 with the MMU on and
//! boot services running, it
//!
//! 1. checks that it runs at EL2 (KCore refuses anything else);
//! 2. takes the machine's description from the configuration table
//!    ([`machine`]): the firmware's device tree (`EFI_DTB_TABLE_GUID`), the
//!    steps below; without one, the ACPI 2.0 RSDP, and the ACPI path of
//!    [`crate::acpi_boot`] takes over;
//! 3. copies the embedded `kcore.img` to a 2 MiB-aligned home of
//!    `EfiLoaderData` pages ([`kcore_efi::image`]);
//! 4. sizes the buffers for what runs after `ExitBootServices` and checks
//!    the device-tree edits once on the current memory map, printing the
//!    RAM banks and reserved ranges (normally those of the final map too:
//!    allocations since turn free memory into loader data, which is usable
//!    as well);
//! 5. exits boot services (the `uefi` crate retries once when the map
//!    changed in between, and resets the machine if that fails too), turns
//!    the final memory map into RAM banks and reserved ranges
//!    ([`ram_layout`]) and edits the tree ([`kcore_efi::dt`]);
//! 6. enters KCore at its `Image` entry at EL2 with the MMU and caches off
//!    and `x0` = the tree ([`enter_kcore`]).
//!
//! Runtime services are handed on as in ACPI mode ([`crate::acpi_boot`]):
//! a buffer set aside before `ExitBootServices` receives the final memory
//! map with every runtime descriptor mapped 1:1, `SetVirtualAddressMap`
//! gets it, and the tree's `/chosen` carries the system table and the map
//! (`linux,uefi-*`, [`kcore_efi::handoff`]) with the buffer in
//! `/memreserve/`. KCore reserves its own memory in that map and KServ's
//! kernel finds the hand-off in its tree (efivars, EFI reset). The memory
//! is read from the map as Linux's `reserve_regions` reads it, as in ACPI
//! mode (`kcore_acpi::banks`): every write-back descriptor is RAM, so
//! KServ's stage 2 maps the firmware's memory (runtime services, SMBIOS)
//! for its kernel to use, and what is not usable RAM is a `/memreserve/`
//! entry, so neither KCore's pool nor KServ's allocator ever takes it.
//!
//! Nothing allocated from the firmware's pool is freed after
//! `ExitBootServices`: the functions that run then never return
//! ([`enter_kcore`], or a reset when the edits fail).

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use aarch64_cpu::registers::{CNTFRQ_EL0, CNTPCT_EL0, CurrentEL, Readable};
use kcore_acpi::MemDesc;
use kcore_efi::handoff::{self, MapInfo};
use kcore_efi::memmap::Bank;
use kcore_efi::{cmdline, dt, image, memmap};
use uefi::boot::{self, AllocateType};
use uefi::mem::memory_map::{MemoryMap, MemoryMapOwned, MemoryType};
use uefi::proto::loaded_image::LoadedImage;
use uefi::runtime::{self, ResetType};
use uefi::table::cfg::ConfigTableEntry;
use uefi::{Guid, Status, entry, guid, println};

/// The boot image (KCore + KServ payload, `docs/boot-image.md`), embedded
/// by `cargo xtask build`, which names the file in `KCORE_EFI_IMAGE`.
static KCORE_IMG: &[u8] = include_bytes!(env!("KCORE_EFI_IMAGE"));

/// `EFI_DTB_TABLE_GUID`: the configuration-table entry holding a
/// flattened device tree.
const DTB_TABLE_GUID: Guid = guid!("b1b621d5-f19c-41a5-830b-d9152c69aae0");

/// Banks the final memory map may have beyond the first map's descriptor
/// count (exiting boot services may split a few more).
pub(crate) const BANK_SLACK: usize = 64;

#[entry]
fn main() -> Status {
    if uefi::helpers::init().is_err() {
        return Status::ABORTED;
    }
    // The `log` records of the crates (the `acpi` interpreter traces every
    // operation: thousands of console lines per reading of the AML) only
    // from warnings up.
    log::set_max_level(log::LevelFilter::Warn);
    match prepare() {
        Ok(Prepared::Dt(ready)) => boot(ready),
        Ok(Prepared::Acpi(ready)) => crate::acpi_boot::boot(ready),
        Err((status, message)) => {
            println!("kcore.efi: {message}");
            status
        }
    }
}

/// Everything [`boot`] needs, prepared while boot services run.
struct Ready {
    /// The firmware's tree.
    fw_dt: Vec<u8>,
    /// The bootargs from the load options.
    bootargs: Option<String>,
    /// Where the image is (its `Image` entry).
    entry: u64,
    /// The 2 MiB-aligned base and the bytes KCore may touch from it.
    home: (u64, u64),
    /// Room for the tree KCore gets.
    out: Vec<u8>,
    /// The buffer of KServ's memory map and its bytes.
    map_buf: (u64, usize),
    /// `linux,uefi-secure-boot`.
    secure_boot: u32,
}

/// Bytes of the arena for what [`boot`] allocates after `ExitBootServices`
/// (the `/chosen` properties).
const DT_ARENA_BYTES: usize = 64 << 10;
/// Bytes of `/chosen` values and `/memreserve/` entries the hand-off adds.
const HANDOFF_BYTES: usize = 256;

pub(crate) type Failure = (Status, String);

/// What [`prepare`] readied, by how the firmware describes the machine.
enum Prepared {
    Dt(Ready),
    Acpi(crate::acpi_boot::Ready),
}

fn prepare() -> Result<Prepared, Failure> {
    println!(
        "kcore.efi: KCore boot loader, boot image of {} KiB ({} ms since reset)",
        KCORE_IMG.len() / 1024,
        millis_since_reset()
    );
    let el = CurrentEL.read(CurrentEL::EL);
    if el != 2 {
        return Err((
            Status::UNSUPPORTED,
            format!("started at EL{el}; KCore runs at EL2 (is the firmware's EL2 enabled?)"),
        ));
    }
    let bootargs = load_options_bootargs();
    let fw_dt = match machine()? {
        Machine::Dt(tree) => tree,
        Machine::Acpi(rsdp) => {
            return crate::acpi_boot::prepare(rsdp, bootargs).map(Prepared::Acpi);
        }
    };
    let dt_room = dt::max_len(
        fw_dt.len(),
        memory_map_len()? + BANK_SLACK,
        bootargs.as_ref().map_or(0, String::len),
        HANDOFF_BYTES + (memory_map_len()? + BANK_SLACK) * 16,
    );
    let (entry, home) = load_image(dt_room)?;
    // KServ's memory map, with room for KCore's splits, and the arena.
    let desc_size = boot::memory_map(MemoryType::LOADER_DATA)
        .map_err(|e| (Status::ABORTED, format!("no memory map: {e}")))?
        .meta()
        .desc_size;
    let capacity = (memory_map_len()? + BANK_SLACK + crate::acpi_boot::SPLIT_ROOM) * desc_size;
    let map_base = allocate_pages(capacity, "KServ's memory map")?;
    let arena = allocate_pages(DT_ARENA_BYTES, "the loader's arena")?;
    crate::arena::set_arena(arena as usize, DT_ARENA_BYTES);
    let secure_boot = handoff::secure_boot_mode(crate::acpi_boot::secure_boot());

    // Check the edits once now, while errors can still be printed: after
    // ExitBootServices only the memory map changes.
    let mut out = vec![0u8; dt_room];
    let map = boot::memory_map(MemoryType::LOADER_DATA)
        .map_err(|e| (Status::ABORTED, format!("no memory map: {e}")))?;
    let descs: Vec<MemDesc> = map.entries().map(descriptor).collect();
    let layout = ram_layout(&descs, (map_base, capacity as u64))
        .map_err(|e| (Status::LOAD_ERROR, format!("the memory map: {e}")))?;
    let info = MapInfo {
        start: map_base,
        size: (map.len() * desc_size) as u32,
        desc_size: desc_size as u32,
        desc_ver: 1,
        capacity: capacity as u32,
    };
    drop(map);
    let props = handoff::uefi_chosen(0, &info, secure_boot);
    let props: Vec<(&str, &[u8])> = props.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    let edits = dt::Edits {
        banks: &layout.banks,
        bootargs: bootargs.as_deref(),
        chosen: &props,
        reserve: &layout.reserve,
    };
    dt::rewrite(&fw_dt, &edits, &mut out).map_err(|e| {
        (
            Status::LOAD_ERROR,
            format!("the firmware's device tree: {e}"),
        )
    })?;
    for b in &layout.banks {
        println!("kcore.efi: RAM [{:#x}, {:#x})", b.base, b.end);
    }
    for &(base, size) in &layout.reserve {
        println!("kcore.efi: reserved [{base:#x}, {:#x})", base + size);
    }
    println!(
        "kcore.efi: KCore at {entry:#x}, {} RAM banks, bootargs \"{}\"; exiting boot services ({} ms since reset)",
        layout.banks.len(),
        bootargs.as_deref().unwrap_or(""),
        millis_since_reset()
    );
    Ok(Prepared::Dt(Ready {
        fw_dt,
        bootargs,
        entry,
        home,
        out,
        map_buf: (map_base, capacity),
        secure_boot,
    }))
}

/// The RAM banks and `/memreserve/` entries of KCore's tree.
struct RamLayout {
    banks: Vec<Bank>,
    /// `(base, size)`.
    reserve: Vec<(u64, u64)>,
}

/// The memory map `descs` read as Linux's `reserve_regions` reads it
/// (`kcore_acpi::banks`: every memory descriptor is RAM, what is not usable
/// or is ACPI-reclaim reserved), and KServ's map's buffer `map_buf`
/// reserved too.
fn ram_layout(descs: &[MemDesc], map_buf: (u64, u64)) -> Result<RamLayout, kcore_acpi::Error> {
    let banks = kcore_acpi::banks(descs)?;
    let mut reserve: Vec<(u64, u64)> = banks
        .reserved
        .iter()
        .map(|r| (r.base(), r.size()))
        .collect();
    reserve.push(map_buf);
    Ok(RamLayout {
        banks: banks
            .memory
            .iter()
            .map(|m| Bank {
                base: m.base(),
                end: m.end(),
            })
            .collect(),
        reserve,
    })
}

/// Pages of `EfiLoaderData` for `bytes`.
fn allocate_pages(bytes: usize, what: &str) -> Result<u64, Failure> {
    let pages = (bytes as u64).div_ceil(memmap::EFI_PAGE) as usize;
    boot::allocate_pages(
        AllocateType::AnyPages,
        MemoryType::LOADER_DATA,
        pages.max(1),
    )
    .map(|p| p.as_ptr() as u64)
    .map_err(|e| {
        (
            Status::OUT_OF_RESOURCES,
            format!("no memory for {what}: {e}"),
        )
    })
}

/// Copies the embedded `kcore.img` to a 2 MiB-aligned home of
/// `EfiLoaderData` pages with `dt_room` bytes for KServ's tree; returns its
/// `Image` entry and `(base, bytes KCore may touch)`.
pub(crate) fn load_image(dt_room: usize) -> Result<(u64, (u64, u64)), Failure> {
    let layout = image::layout(KCORE_IMG, dt_room as u64)
        .map_err(|e| (Status::LOAD_ERROR, format!("the embedded kcore.img: {e}")))?;
    let pages = layout.alloc_bytes().div_ceil(memmap::EFI_PAGE) as usize;
    let alloc = boot::allocate_pages(AllocateType::AnyPages, MemoryType::LOADER_DATA, pages)
        .map_err(|e| {
            (
                Status::OUT_OF_RESOURCES,
                format!(
                    "cannot allocate {} MiB for kcore.img: {e}",
                    layout.alloc_bytes() >> 20
                ),
            )
        })?;
    let entry = layout.image_address(alloc.as_ptr() as u64);
    // SAFETY: [entry, entry + KCORE_IMG.len()) lies inside the pages just
    // allocated (`Layout::alloc_bytes` covers the alignment and the
    // footprint, which is at least the file), which nothing else uses;
    // firmware memory is identity-mapped, so the address is the pointer.
    unsafe {
        core::ptr::copy_nonoverlapping(KCORE_IMG.as_ptr(), entry as *mut u8, KCORE_IMG.len());
    }
    let home = (entry - layout.text_offset, layout.reserve);
    Ok((entry, home))
}

/// The physical counter in milliseconds: time since reset on QEMU and on
/// firmware that does not reset the counter later.
pub(crate) fn millis_since_reset() -> u64 {
    let freq = CNTFRQ_EL0.get().max(1);
    CNTPCT_EL0.get().saturating_mul(1000) / freq
}

/// How the firmware describes the machine.
enum Machine {
    /// Its device tree (a copy).
    Dt(Vec<u8>),
    /// ACPI only: the RSDP's address.
    Acpi(u64),
}

/// The firmware's description of the machine, from the configuration
/// table: its device tree when it has one (`EFI_DTB_TABLE_GUID`), else the
/// ACPI 2.0 RSDP.
fn machine() -> Result<Machine, Failure> {
    let (dtb, acpi) = uefi::system::with_config_table(|t| {
        let find = |guid| t.iter().find(|e| e.guid == guid).map(|e| e.address as u64);
        (find(DTB_TABLE_GUID), find(ConfigTableEntry::ACPI2_GUID))
    });
    match (dtb, acpi) {
        (Some(addr), _) => copy_dt(addr).map(Machine::Dt),
        (None, Some(rsdp)) => Ok(Machine::Acpi(rsdp)),
        (None, None) => Err((
            Status::UNSUPPORTED,
            "the firmware offers neither a device tree nor ACPI tables".into(),
        )),
    }
}

/// A copy of the firmware's device tree at `addr` (its memory may be boot
/// services data, free once they exit).
fn copy_dt(addr: u64) -> Result<Vec<u8>, Failure> {
    let bad = |e: dt::DtError| {
        (
            Status::LOAD_ERROR,
            format!("the firmware's device tree: {e}"),
        )
    };
    // SAFETY: the configuration table's DTB entry points at a device tree
    // the firmware keeps while boot services run (identity-mapped); its
    // header is 40 bytes, and `total_size` checks the magic before the
    // size is trusted.
    let header = unsafe { core::slice::from_raw_parts(addr as *const u8, 40) };
    let len = dt::total_size(header).map_err(bad)?;
    // SAFETY: as above; the header says the tree is `len` bytes long.
    let tree = unsafe { core::slice::from_raw_parts(addr as *const u8, len) };
    Ok(tree.to_vec())
}

/// The bootargs in this image's load options (`kcore_efi::cmdline`), else
/// in the file `cmdline::ARGS_FILE` of its partition. Says where they came
/// from, or why the file gave none: a boot that silently lost its arguments
/// would run KServ with its defaults.
fn load_options_bootargs() -> Option<String> {
    let from_options = boot::open_protocol_exclusive::<LoadedImage>(boot::image_handle())
        .ok()
        .and_then(|image| {
            image.load_options_as_bytes().and_then(|bytes| {
                let ucs2: Vec<u16> = bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                cmdline::bootargs(&ucs2)
            })
        });
    if from_options.is_some() {
        println!("kcore.efi: bootargs from the load options");
        return from_options;
    }
    match args_file() {
        Ok(args) => {
            println!(
                "kcore.efi: bootargs from {}{}",
                cmdline::ARGS_FILE,
                if args.is_some() { "" } else { " (empty)" }
            );
            args
        }
        Err(why) => {
            println!("kcore.efi: no bootargs: {} {why}", cmdline::ARGS_FILE);
            None
        }
    }
}

/// The arguments in `cmdline::ARGS_FILE` of this image's partition.
fn args_file() -> Result<Option<String>, String> {
    let sfs = boot::get_image_file_system(boot::image_handle())
        .map_err(|e| format!("cannot be opened: no file system ({:?})", e.status()))?;
    let path = uefi::CString16::try_from(cmdline::ARGS_FILE)
        .map_err(|_| String::from("is not a UCS-2 path"))?;
    let bytes = uefi::fs::FileSystem::new(sfs)
        .read(path.as_ref())
        .map_err(|e| format!("cannot be read ({e})"))?;
    Ok(cmdline::from_file(&bytes))
}

/// Descriptors in the current memory map.
pub(crate) fn memory_map_len() -> Result<usize, Failure> {
    boot::memory_map(MemoryType::LOADER_DATA)
        .map(|m| m.len())
        .map_err(|e| (Status::ABORTED, format!("no memory map: {e}")))
}

pub(crate) fn descriptor(d: &uefi::mem::memory_map::MemoryDescriptor) -> MemDesc {
    MemDesc {
        ty: d.ty.0,
        base: d.phys_start,
        pages: d.page_count,
        attribute: d.att.bits(),
    }
}

/// After `ExitBootServices`: copies the final memory `map` into the buffer
/// `map_buf` set aside for KServ's, every runtime descriptor mapped 1:1,
/// and hands it to `SetVirtualAddressMap` (runtime services then run at
/// their physical addresses in KServ, as Xen arranges for dom0). Returns
/// where the map is and the system table's address.
pub(crate) fn hand_on_runtime(map: &MemoryMapOwned, map_buf: (u64, usize)) -> (MapInfo, u64) {
    let meta = map.meta();
    let (map_base, capacity) = map_buf;
    let size = meta.map_size.min(capacity);
    // SAFETY: `[map_base, map_base + capacity)` is the buffer allocated for
    // KServ's map, which nothing else uses.
    let buf = unsafe { core::slice::from_raw_parts_mut(map_base as *mut u8, capacity) };
    buf[..size].copy_from_slice(&map.buffer()[..size]);
    handoff::map_runtime_1to1(&mut buf[..size], meta.desc_size);
    crate::acpi_boot::set_virtual_address_map_1to1(&buf[..size], meta.desc_size, meta.desc_version);
    let system_table = uefi::table::system_table_raw().map_or(0, |t| t.as_ptr() as u64);
    let info = MapInfo {
        start: map_base,
        size: size as u32,
        desc_size: meta.desc_size as u32,
        desc_ver: meta.desc_version,
        capacity: capacity as u32,
    };
    (info, system_table)
}

/// Exits boot services, edits the tree for the final memory map and enters
/// KCore. Nothing can be printed from here on; if the edits fail (they
/// succeeded on the previous map), the machine is powered off.
fn boot(mut r: Ready) -> ! {
    crate::panic::leaving_boot_services();
    // SAFETY: no protocol is open (the loaded-image protocol was closed
    // when `load_options_bootargs` returned), and nothing allocated from
    // the pool is freed afterwards: this function never returns and drops
    // nothing.
    let map = unsafe { boot::exit_boot_services(None) };
    crate::arena::arm();
    let (info, system_table) = hand_on_runtime(&map, r.map_buf);
    let props = handoff::uefi_chosen(system_table, &info, r.secure_boot);
    let props: Vec<(&str, &[u8])> = props.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    let descs: Vec<MemDesc> = map.entries().map(descriptor).collect();
    let (map_base, capacity) = r.map_buf;
    let edited = ram_layout(&descs, (map_base, capacity as u64))
        .ok()
        .and_then(|layout| {
            let edits = dt::Edits {
                banks: &layout.banks,
                bootargs: r.bootargs.as_deref(),
                chosen: &props,
                reserve: &layout.reserve,
            };
            dt::rewrite(&r.fw_dt, &edits, &mut r.out).ok()
        });
    let Some(len) = edited else {
        runtime::reset(ResetType::SHUTDOWN, Status::LOAD_ERROR, None);
    };
    crate::acpi_boot::clean_to_poc(map_base, capacity);
    // SAFETY: boot services have exited, so nothing else runs or uses the
    // home of kcore.img or the tree; `home` is the allocation made for the
    // image, `out[..len]` the tree.
    unsafe { enter_kcore(r.entry, r.home, r.out.as_ptr() as u64, len as u64) }
}

/// Enters KCore as a Linux `Image` loader would (`booting.rst`): cleans
/// and invalidates to the point of coherency KCore's home `home = (base,
/// len)` (image, bss, payload, the room for KServ's tree) and the tree
/// `[dt, dt + dt_len)`, then this routine's own instructions, invalidates
/// the instruction cache, masks every interrupt, turns the EL2 MMU and the
/// data and instruction caches off (`SCTLR_EL2.M/C/I`) and branches to
/// `entry` with `x0` = the tree and `x1`..`x3` = 0.
///
/// # Safety
///
/// Must run at EL2 after `ExitBootServices`, from identity-mapped memory,
/// with `entry` the `Image` entry of a KCore image copied into `home`, and
/// the tree in memory that nothing overwrites before KCore has copied it.
pub(crate) unsafe fn enter_kcore(entry: u64, home: (u64, u64), dt: u64, dt_len: u64) -> ! {
    // SAFETY: the caller's contract; the routine only cleans caches over
    // the given ranges and its own code, then leaves for KCore for good.
    unsafe {
        core::arch::asm!(
            "msr daifset, #0xf",
            // x8 = the smallest data cache line, x9 = its mask.
            "mrs x8, ctr_el0",
            "ubfx x8, x8, #16, #4",
            "mov x9, #4",
            "lsl x8, x9, x8",
            "sub x9, x8, #1",
            // Clean and invalidate KCore's home, [x2, x2 + x3).
            "add x10, x2, x3",
            "bic x11, x2, x9",
            "2: dc civac, x11",
            "add x11, x11, x8",
            "cmp x11, x10",
            "b.lo 2b",
            // The tree, [x0, x0 + x1).
            "add x10, x0, x1",
            "bic x11, x0, x9",
            "3: dc civac, x11",
            "add x11, x11, x8",
            "cmp x11, x10",
            "b.lo 3b",
            // This routine from here on, which runs with the caches off.
            "adr x11, 5f",
            "adr x10, 6f",
            "bic x11, x11, x9",
            "4: dc civac, x11",
            "add x11, x11, x8",
            "cmp x11, x10",
            "b.lo 4b",
            "dsb sy",
            "ic iallu",
            "dsb sy",
            "isb",
            "5:",
            "mrs x10, sctlr_el2",
            "bic x10, x10, #(1 << 0)",
            "bic x10, x10, #(1 << 2)",
            "bic x10, x10, #(1 << 12)",
            "msr sctlr_el2, x10",
            "isb",
            "ic iallu",
            "dsb nsh",
            "isb",
            "mov x1, xzr",
            "mov x2, xzr",
            "mov x3, xzr",
            "br x12",
            "6:",
            in("x0") dt,
            in("x1") dt_len,
            in("x2") home.0,
            in("x3") home.1,
            in("x12") entry,
            options(noreturn, nostack),
        );
    }
}
