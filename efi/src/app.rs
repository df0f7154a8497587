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
//!    RAM banks (normally those of the final map too: allocations since
//!    turn free memory into loader data, which is usable as well);
//! 5. exits boot services (the `uefi` crate retries once when the map
//!    changed in between, and resets the machine if that fails too), turns
//!    the final memory map into RAM banks ([`kcore_efi::memmap`]) and edits
//!    the tree ([`kcore_efi::dt`]);
//! 6. enters KCore at its `Image` entry at EL2 with the MMU and caches off
//!    and `x0` = the tree ([`enter_kcore`]).
//!
//! In device-tree mode runtime services are not handed on (ACPI mode hands
//! them on 1:1, [`crate::acpi_boot`]): `SetVirtualAddressMap` is not
//! called and KServ's tree has no `linux,uefi-*` properties, so KServ runs
//! without EFI runtime services (no efivars, no EFI reset: it resets and
//! powers off through KCore's PSCI). Their memory stays out of every RAM
//! bank, so neither KCore's pool nor KServ ever uses it.
//!
//! Nothing allocated from the firmware's pool is freed after
//! `ExitBootServices`: the functions that run then never return
//! ([`enter_kcore`], or a reset when the edits fail).

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use aarch64_cpu::registers::{CNTFRQ_EL0, CNTPCT_EL0, CurrentEL, Readable};
use kcore_efi::memmap::{Bank, Descriptor};
use kcore_efi::{cmdline, dt, image, memmap};
use uefi::boot::{self, AllocateType};
use uefi::mem::memory_map::{MemoryMap, MemoryType};
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
    /// Room for the banks of the final memory map.
    banks: Vec<Bank>,
    /// Room for the tree KCore gets.
    out: Vec<u8>,
}

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
    );
    let (entry, home) = load_image(dt_room)?;

    // Check the edits once now, while errors can still be printed: after
    // ExitBootServices only the memory map changes.
    let mut banks = vec![Bank::default(); memory_map_len()? + BANK_SLACK];
    let mut out = vec![0u8; dt_room];
    let map = boot::memory_map(MemoryType::LOADER_DATA)
        .map_err(|e| (Status::ABORTED, format!("no memory map: {e}")))?;
    let n = memmap::banks(map.entries().map(descriptor), &mut banks)
        .map_err(|e| (Status::LOAD_ERROR, format!("{e}")))?;
    let edits = dt::Edits {
        banks: &banks[..n],
        bootargs: bootargs.as_deref(),
    };
    dt::rewrite(&fw_dt, &edits, &mut out).map_err(|e| {
        (
            Status::LOAD_ERROR,
            format!("the firmware's device tree: {e}"),
        )
    })?;
    for b in &banks[..n] {
        println!("kcore.efi: RAM [{:#x}, {:#x})", b.base, b.end);
    }
    println!(
        "kcore.efi: KCore at {entry:#x}, {n} RAM banks, bootargs \"{}\"; exiting boot services ({} ms since reset)",
        bootargs.as_deref().unwrap_or(""),
        millis_since_reset()
    );
    Ok(Prepared::Dt(Ready {
        fw_dt,
        bootargs,
        entry,
        home,
        banks,
        out,
    }))
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

pub(crate) fn descriptor(d: &uefi::mem::memory_map::MemoryDescriptor) -> Descriptor {
    Descriptor {
        ty: d.ty.0,
        base: d.phys_start,
        pages: d.page_count,
        attr: d.att.bits(),
    }
}

/// Exits boot services, edits the tree for the final memory map and enters
/// KCore. Nothing can be printed from here on; if the edits fail (they
/// succeeded on the previous map), the machine is powered off.
fn boot(mut r: Ready) -> ! {
    // SAFETY: no protocol is open (the loaded-image protocol was closed
    // when `load_options_bootargs` returned), and nothing allocated from
    // the pool is freed afterwards: this function never returns and drops
    // nothing.
    let map = unsafe { boot::exit_boot_services(None) };
    let edited = memmap::banks(map.entries().map(descriptor), &mut r.banks)
        .ok()
        .and_then(|n| {
            let edits = dt::Edits {
                banks: &r.banks[..n],
                bootargs: r.bootargs.as_deref(),
            };
            dt::rewrite(&r.fw_dt, &edits, &mut r.out).ok()
        });
    let Some(len) = edited else {
        runtime::reset(ResetType::SHUTDOWN, Status::LOAD_ERROR, None);
    };
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
