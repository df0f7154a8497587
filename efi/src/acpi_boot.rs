//! `kcore.efi` on a machine the firmware describes with ACPI only
//! (`docs/platforms.md`, "UEFI servers", ACPI mode).
//!
//! While boot services run ([`prepare`]):
//!
//! 1. the tables are loaded from the RSDP with `kcore-acpi` (validating
//!    copies; the reader is bounded by the memory map) and the machine is
//!    read from them, the AML within [`crate::panic::AML_LIMIT`];
//! 2. the tables KServ sees are written to `EfiACPIReclaimMemory` pages:
//!    its MADT (no GICV/GICH/maintenance interrupt, no ITS), its DSDT (the
//!    devices KCore keeps, `kcore_acpi::namespace`, renamed so that no
//!    driver binds: on QEMU's `virt` the PCI host bridge, fw_cfg and the
//!    virtio-mmio transports, whose frames KCore's tree lists, as the
//!    device-tree path disables these DMA masters; each kept device and its
//!    ranges are printed) and a FADT pointing at it, a copy of each SSDT in
//!    which such a device's ID was renamed the same way
//!    (`kcore_acpi::kserv_aml`), an XSDT pointing at those (in the
//!    originals' places) without the MCFG, and an RSDP pointing at that
//!    XSDT, which replaces the firmware's in the configuration table's ACPI
//!    2.0 entry;
//! 3. a buffer for the memory map KServ receives (with room for the
//!    descriptors KCore splits), the home of `kcore.img`, and an arena for
//!    what is allocated after `ExitBootServices` ([`crate::arena`]) are set
//!    aside, and KCore's tree is built once on the current map to report
//!    errors while they can be printed.
//!
//! After `ExitBootServices` ([`boot`]): the final map is copied into the
//! buffer with every runtime descriptor mapped 1:1, `SetVirtualAddressMap`
//! gets that map (runtime services then run at their physical addresses in
//! KServ, as Xen arranges for dom0), KCore's tree is built from the
//! machine as read in step 1 (no AML is interpreted after
//! `ExitBootServices`) and the final map, with `/chosen` carrying the UEFI
//! hand-off and the ACPI marker
//! ([`kcore_efi::handoff`]), and KCore is entered as on the device-tree
//! path. KCore then gives KServ a stub tree and reserves its own memory in
//! the map (`kcore_boot::efi_map`).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use kcore::addr::MemRange;
use kcore_acpi::{
    Chosen, Description, IdentityMem, MemDesc, Tables, XsdtEdit, namespace, platform_dt_of,
};
use kcore_efi::fault::{self, Fault};
use kcore_efi::handoff::{self, MapInfo};
use kcore_efi::memmap;
use uefi::boot::{self, AllocateType};
use uefi::mem::memory_map::{MemoryMap, MemoryType};
use uefi::runtime::{self, ResetType};
use uefi::table::cfg::ConfigTableEntry;
use uefi::{Status, println};

use crate::app::{self, Failure};

/// Descriptors KCore may add to KServ's memory map by splitting (its image
/// and pool, each splitting one descriptor into three).
pub(crate) const SPLIT_ROOM: usize = 16;
/// The arena's bytes beyond twice KCore's tree and the map's descriptors.
const ARENA_BASE_BYTES: usize = 1 << 20;

/// Everything [`boot`] needs, prepared while boot services run.
pub(crate) struct Ready {
    /// The machine as the tables describe it, read once (with the AML)
    /// while boot services run.
    description: Box<Description>,
    bootargs: Option<String>,
    entry: u64,
    home: (u64, u64),
    /// The buffer of KServ's memory map and its bytes.
    map_buf: (u64, usize),
    /// Ranges of usable memory KCore must not take: the map's buffer.
    reserved: Vec<MemRange>,
    /// `linux,uefi-secure-boot`.
    secure_boot: u32,
}

/// The `SecureBoot` variable's value, if it can be read.
pub(crate) fn secure_boot() -> Option<u8> {
    let mut buf = [0u8; 8];
    let (value, _) = runtime::get_variable(
        uefi::cstr16!("SecureBoot"),
        &runtime::VariableVendor::GLOBAL_VARIABLE,
        &mut buf,
    )
    .ok()?;
    value.first().copied()
}

fn failed(what: &str) -> impl Fn(kcore_acpi::Error) -> Failure + '_ {
    move |e| (Status::LOAD_ERROR, format!("{what}: {e}"))
}

fn no_memory(what: &'static str) -> impl Fn(uefi::Error) -> Failure {
    move |e| {
        (
            Status::OUT_OF_RESOURCES,
            format!("cannot allocate {what}: {e}"),
        )
    }
}

fn mem_desc(d: &uefi::mem::memory_map::MemoryDescriptor) -> MemDesc {
    app::descriptor(d)
}

/// Pages of `ty` for `bytes`, as a physical address.
fn allocate(ty: MemoryType, bytes: usize, what: &'static str) -> Result<u64, Failure> {
    let pages = (bytes as u64).div_ceil(memmap::EFI_PAGE) as usize;
    boot::allocate_pages(AllocateType::AnyPages, ty, pages.max(1))
        .map(|p| p.as_ptr() as u64)
        .map_err(no_memory(what))
}

/// Steps 1 to 3 of the module documentation.
pub(crate) fn prepare(rsdp: u64, bootargs: Option<String>) -> Result<Ready, Failure> {
    println!("kcore.efi: ACPI machine, RSDP at {rsdp:#x}");
    let map = boot::memory_map(MemoryType::LOADER_DATA)
        .map_err(|e| (Status::ABORTED, format!("no memory map: {e}")))?;
    let desc_size = map.meta().desc_size;
    let descs: Vec<MemDesc> = map.entries().map(mem_desc).collect();
    drop(map);
    let readable = kcore_acpi::memory::readable(&descs).map_err(failed("the memory map"))?;
    // SAFETY: boot services run, so memory is identity-mapped, and every
    // range of `readable` is memory (not MMIO) of the firmware's map.
    let mem = unsafe { IdentityMem::new(&readable) };
    let tables = Tables::load(&mem, rsdp).map_err(failed("the ACPI tables"))?;
    let fault = Fault::from_bootargs(bootargs.as_deref().unwrap_or("")).map_err(|v| {
        (
            Status::INVALID_PARAMETER,
            format!("{}{v}: no such fault (aml-loop, aml-panic)", fault::OPTION),
        )
    })?;
    // The machine (CPUs, GIC, the AML's devices KCore keeps), read once,
    // before anything of the firmware's is changed: KCore's tree is built
    // from it here and again after `ExitBootServices`, where no time limit
    // can stop the interpreter.
    let aml = crate::panic::reading_aml();
    let description = Box::new(kcore_acpi::describe(&tables).map_err(failed("the ACPI tables"))?);
    drop(aml);
    install_kserv_tables(&tables, fault)?;

    // KServ's memory map: the final one, with room for KCore's splits.
    let capacity = (app::memory_map_len()? + app::BANK_SLACK + SPLIT_ROOM) * desc_size;
    let map_base = allocate(MemoryType::LOADER_DATA, capacity, "KServ's memory map")?;
    let map_range = MemRange::new(map_base, capacity as u64)
        .ok_or((Status::LOAD_ERROR, "KServ's memory map wraps".into()))?;
    let reserved = alloc::vec![map_range];

    // KCore's tree on the current map, to size the buffers and report
    // errors now.
    let map = boot::memory_map(MemoryType::LOADER_DATA)
        .map_err(|e| (Status::ABORTED, format!("no memory map: {e}")))?;
    let descs: Vec<MemDesc> = map.entries().map(mem_desc).collect();
    drop(map);
    let info = MapInfo {
        start: map_base,
        size: (descs.len() * desc_size) as u32,
        desc_size: desc_size as u32,
        desc_ver: 1,
        capacity: capacity as u32,
    };
    let secure_boot = handoff::secure_boot_mode(secure_boot());
    let extra = handoff::chosen(0, &info, secure_boot);
    let extra: Vec<(&str, &[u8])> = extra.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    let chosen = Chosen {
        bootargs: bootargs.as_deref(),
        reserved: &reserved,
        extra: &extra,
    };
    let tree =
        platform_dt_of(&description, &descs, &chosen).map_err(failed("KCore's device tree"))?;
    let banks = kcore_acpi::banks(&descs).map_err(failed("the memory map"))?;
    let dt_room = tree.len() + (app::BANK_SLACK + SPLIT_ROOM) * 64 + (64 << 10);
    let (entry, home) = app::load_image(dt_room)?;
    // The arena: KCore's tree (built twice over, with room), the map's
    // descriptors as `MemDesc`s, the `/chosen` properties.
    let arena_len = ARENA_BASE_BYTES + 4 * dt_room + 2 * capacity;
    let arena = allocate(MemoryType::LOADER_DATA, arena_len, "the loader's arena")?;
    crate::arena::set_arena(arena as usize, arena_len);
    for b in &banks.memory {
        println!("kcore.efi: RAM [{:#x}, {:#x})", b.base(), b.end());
    }
    println!(
        "kcore.efi: KCore at {entry:#x}, {} RAM banks, {} CPUs from the MADT, bootargs \"{}\"; exiting boot services ({} ms since reset)",
        banks.memory.len(),
        description.cpus.len(),
        bootargs.as_deref().unwrap_or(""),
        app::millis_since_reset()
    );
    Ok(Ready {
        description,
        bootargs,
        entry,
        home,
        map_buf: (map_base, capacity),
        reserved,
        secure_boot,
    })
}

/// Writes the tables KServ sees (MADT, FADT, DSDT, the SSDTs with IDs
/// renamed, XSDT, RSDP; module documentation) to ACPI-reclaim pages and
/// points the configuration table's ACPI 2.0 entry at the new RSDP. A
/// `fault` adds its SSDT to the AML read ([`kcore_efi::fault`]).
fn install_kserv_tables(tables: &Tables, fault: Option<Fault>) -> Result<(), Failure> {
    let missing = |what: &str| (Status::LOAD_ERROR, format!("ACPI: no {what}"));
    let (madt_at, madt) = tables.find(b"APIC").ok_or_else(|| missing("MADT"))?;
    let madt = kcore_acpi::kserv_madt(madt).map_err(failed("KServ's MADT"))?;
    let (fadt_at, fadt) = tables.find(b"FACP").ok_or_else(|| missing("FADT"))?;
    let (_, dsdt) = tables.dsdt().ok_or_else(|| missing("DSDT"))?;
    // The devices of the AML: those KCore keeps are in its tree
    // (`platform_dt`) and renamed in KServ's DSDT and SSDTs.
    let fault_ssdt = fault.map(|f| {
        println!(
            "kcore.efi: {}{}: adding a faulty SSDT to the AML",
            fault::OPTION,
            f.name()
        );
        f.ssdt()
    });
    let mut aml = tables.aml();
    aml.extend(fault_ssdt.as_deref());
    let started = app::millis_since_reset();
    let reading = crate::panic::reading_aml();
    let devices = namespace::devices(&aml).map_err(failed("the ACPI tables"))?;
    drop(reading);
    println!(
        "kcore.efi: read the AML of {} tables in {} ms: {} devices",
        aml.len(),
        app::millis_since_reset().saturating_sub(started),
        devices.len()
    );
    for d in devices.iter().filter(|d| namespace::kept_by_kcore(d)) {
        let ranges: Vec<String> = d
            .ranges
            .iter()
            .map(|&(b, s)| format!("[{b:#x}, {:#x})", b.saturating_add(s)))
            .collect();
        println!(
            "kcore.efi: KCore keeps {} ({}): {}",
            d.path,
            d.hid.as_deref().unwrap_or("no _HID"),
            ranges.join(" ")
        );
    }
    let hide = namespace::ids_to_hide(&devices);
    let hide: Vec<&str> = hide.iter().map(String::as_str).collect();
    let (dsdt, mut hidden) = kcore_acpi::kserv_aml(dsdt, &hide).map_err(failed("KServ's DSDT"))?;
    // The SSDTs with an ID renamed, by their firmware addresses; the others
    // KServ reads where they are.
    let mut ssdts = Vec::new();
    for (at, t) in tables.ssdts() {
        let (t, n) = kcore_acpi::kserv_aml(t, &hide).map_err(failed("KServ's SSDT"))?;
        hidden += n;
        if n > 0 {
            ssdts.push((at, t));
        }
    }
    let xsdt = tables
        .bytes(tables.xsdt_address())
        .ok_or_else(|| missing("XSDT"))?;
    let old_rsdp = tables
        .bytes(tables.rsdp_address())
        .ok_or_else(|| missing("RSDP"))?;
    // MADT, FADT, DSDT, XSDT, RSDP, then the edited SSDTs, each 16-byte
    // aligned, in one allocation (the FADT keeps its length, the XSDT never
    // grows: every edit replaces or drops an entry).
    let fixed = [
        madt.len(),
        fadt.len(),
        dsdt.len(),
        xsdt.len(),
        old_rsdp.len(),
    ];
    let total: usize = fixed
        .into_iter()
        .chain(ssdts.iter().map(|(_, t)| t.len()))
        .map(|l| l.next_multiple_of(16))
        .sum();
    let base = allocate(MemoryType::ACPI_RECLAIM, total, "KServ's ACPI tables")?;
    let mut next = base;
    let mut place = |len: usize| {
        let at = next;
        next += len.next_multiple_of(16) as u64;
        at
    };
    let [madt_new, fadt_new, dsdt_new, xsdt_new, rsdp_new] = fixed.map(&mut place);
    let ssdts_new: Vec<u64> = ssdts.iter().map(|(_, t)| place(t.len())).collect();
    let fadt = kcore_acpi::kserv_fadt(fadt, dsdt_new).map_err(failed("KServ's FADT"))?;
    let mut edits = alloc::vec![
        XsdtEdit::Replace {
            old: madt_at,
            new: madt_new,
        },
        XsdtEdit::Replace {
            old: fadt_at,
            new: fadt_new,
        },
    ];
    for ((old, _), &new) in ssdts.iter().zip(&ssdts_new) {
        edits.push(XsdtEdit::Replace { old: *old, new });
    }
    if let Some((mcfg_at, _)) = tables.find(b"MCFG") {
        edits.push(XsdtEdit::Drop(mcfg_at));
    }
    let xsdt = kcore_acpi::kserv_xsdt(xsdt, &edits).map_err(failed("KServ's XSDT"))?;
    let rsdp = kcore_acpi::kserv_rsdp(old_rsdp, xsdt_new).map_err(failed("KServ's RSDP"))?;
    let placed = [
        (madt_new, &madt),
        (fadt_new, &fadt),
        (dsdt_new, &dsdt),
        (xsdt_new, &xsdt),
        (rsdp_new, &rsdp),
    ]
    .into_iter()
    .chain(ssdts_new.iter().copied().zip(ssdts.iter().map(|(_, t)| t)));
    for (to, t) in placed {
        // SAFETY: the pages were just allocated for these tables, each in
        // its own slot sized for it, and are identity-mapped.
        unsafe { core::ptr::copy_nonoverlapping(t.as_ptr(), to as *mut u8, t.len()) };
    }
    // SAFETY: the RSDP is ACPI-reclaim memory that stays as it is (nothing
    // writes or frees it).
    unsafe {
        boot::install_configuration_table(&ConfigTableEntry::ACPI2_GUID, rsdp_new as *const _)
    }
    .map_err(|e| {
        (
            Status::ABORTED,
            format!("cannot install KServ's RSDP in the configuration table: {e}"),
        )
    })?;
    println!(
        "kcore.efi: KServ's ACPI tables: RSDP {rsdp_new:#x}, XSDT {xsdt_new:#x} ({} tables), MADT {madt_new:#x} ({} bytes), DSDT {dsdt_new:#x}, {} of {} SSDTs edited ({hidden} device IDs hidden)",
        (xsdt.len() - 36) / 8,
        madt.len(),
        ssdts.len(),
        tables.ssdts().len()
    );
    Ok(())
}

/// Exits boot services, hands runtime services on 1:1, builds KCore's tree
/// and enters KCore. Nothing can be printed from here on; if the tree
/// cannot be built (it could on the previous map), the machine is powered
/// off.
pub(crate) fn boot(r: Ready) -> ! {
    crate::panic::leaving_boot_services();
    // SAFETY: no protocol is open, and nothing allocated from the pool is
    // freed afterwards (the arena allocator ignores frees once armed).
    let map = unsafe { boot::exit_boot_services(None) };
    crate::arena::arm();
    let (info, system_table) = app::hand_on_runtime(&map, r.map_buf);
    let descs: Vec<MemDesc> = map.entries().map(mem_desc).collect();
    let extra = handoff::chosen(system_table, &info, r.secure_boot);
    let extra: Vec<(&str, &[u8])> = extra.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    let chosen = Chosen {
        bootargs: r.bootargs.as_deref(),
        reserved: &r.reserved,
        extra: &extra,
    };
    let Ok(tree) = platform_dt_of(&r.description, &descs, &chosen) else {
        runtime::reset(ResetType::SHUTDOWN, Status::LOAD_ERROR, None);
    };
    clean_to_poc(info.start, info.capacity as usize);
    // SAFETY: boot services have exited, so nothing else runs or uses the
    // home of kcore.img, the tree (in the arena) or the map's buffer.
    unsafe { app::enter_kcore(r.entry, r.home, tree.as_ptr() as u64, tree.len() as u64) }
}

/// `SetVirtualAddressMap` with `map` (`desc_size` apart, runtime
/// descriptors already 1:1). A failure leaves the firmware in physical
/// mode, where the same 1:1 addresses are as good: it is ignored.
pub(crate) fn set_virtual_address_map_1to1(map: &[u8], desc_size: usize, desc_version: u32) {
    let Some(st) = uefi::table::system_table_raw() else {
        return;
    };
    // SAFETY: the system table is the firmware's, valid for as long as
    // the machine runs.
    let rt = unsafe { (*st.as_ptr()).runtime_services };
    if rt.is_null() {
        return;
    }
    // SAFETY: as above for the runtime services table.
    let svam = unsafe { (*rt).set_virtual_address_map };
    // SAFETY: after ExitBootServices runtime services may be called, one at
    // a time (one CPU runs); `map` is a whole memory map of the firmware's
    // layout.
    let _ = unsafe { svam(map.len(), desc_size, desc_version, map.as_ptr().cast()) };
}

/// Cleans and invalidates `[base, base + len)` to the point of coherency,
/// for KCore, which starts with its caches off.
pub(crate) fn clean_to_poc(base: u64, len: usize) {
    let end = base + len as u64;
    // SAFETY: data cache maintenance by address on memory the loader owns;
    // it changes no memory contents.
    unsafe {
        core::arch::asm!(
            "mrs {line}, ctr_el0",
            "ubfx {line}, {line}, #16, #4",
            "mov {tmp}, #4",
            "lsl {line}, {tmp}, {line}",
            "sub {tmp}, {line}, #1",
            "bic {cur}, {cur}, {tmp}",
            "2: dc civac, {cur}",
            "add {cur}, {cur}, {line}",
            "cmp {cur}, {end}",
            "b.lo 2b",
            "dsb sy",
            cur = inout(reg) base => _,
            end = in(reg) end,
            line = out(reg) _,
            tmp = out(reg) _,
            options(nostack),
        );
    }
}
