//! The devices of the DSDT and SSDTs (`kcore_acpi::namespace`): which ranges
//! become KCore's on QEMU's own DSDT, every memory descriptor, and AML that
//! cannot be read or evaluated failing closed, never panicking.
#![allow(missing_docs, clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use kcore::addr::MemRange;
use kcore_acpi::namespace::{self, AcpiDevice, kept_by_kcore, memory_ranges};
use kcore_acpi::{Chosen, Error, Tables, XsdtEdit, kserv_aml, kserv_xsdt, platform_dt};
use kcore_boot::platform::parse;

fn section(text: &str, name: &str) -> Vec<u8> {
    hex_sections(text)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap()
        .1
}

/// QEMU 10 `virt`'s DSDT (`fixtures/qemu-10-virt-dsdt.hex`).
fn qemu_dsdt() -> Vec<u8> {
    section(include_str!("fixtures/qemu-10-virt-dsdt.hex"), "DSDT")
}

const CASES: &str = include_str!("fixtures/aml-cases.hex");

/// QEMU's static tables (FADT first) with the FADT's `X_DSDT` pointing at
/// `dsdt`, laid after them, and `ssdts` listed in the XSDT.
fn qemu_with(dsdt: &[u8], ssdts: &[Vec<u8>]) -> (Vec<u8>, u64) {
    let mut tables: Vec<Vec<u8>> =
        hex_sections(include_str!("fixtures/qemu-10-virt-gicv3-smmuv3.hex"))
            .into_iter()
            .map(|(_, t)| t)
            .collect();
    let fadt = tables.iter().position(|t| &t[..4] == b"FACP").unwrap();
    tables.extend_from_slice(ssdts);
    let at = MEM_BASE + layout(&tables).0.len() as u64;
    put64(&mut tables[fadt], 140, at);
    refix(&mut tables[fadt]);
    let (mut bytes, rsdp) = layout(&tables);
    bytes.extend_from_slice(dsdt);
    (bytes, rsdp)
}

fn load(bytes: &[u8], rsdp: u64) -> Result<Tables, Error> {
    Tables::load(&mem(bytes), rsdp)
}

fn r(base: u64, size: u64) -> MemRange {
    MemRange::new(base, size).unwrap()
}

fn find<'a>(devices: &'a [AcpiDevice], path: &str) -> &'a AcpiDevice {
    devices.iter().find(|d| d.path == path).unwrap()
}

/// QEMU's DSDT: fw_cfg, the 32 virtio-mmio transports, the PCI host
/// bridge's windows and its ECAM reservation become KCore's, in its tree
/// as DMA masters; the PL011 console, the CPUs, the power button, the GED
/// and the interrupt links stay KServ's; KServ's DSDT renames exactly the
/// kept devices' IDs.
#[test]
fn qemu_dsdt_devices_kcore_keeps() {
    let dsdt = qemu_dsdt();
    let all = namespace::devices(&[&dsdt]).unwrap();
    assert_eq!(all.len(), 2 + 1 + 1 + 1 + 4 + 2 + 1 + 32);
    let fwcf = find(&all, "\\_SB_.FWCF");
    assert_eq!(
        (fwcf.hid.as_deref(), &fwcf.ranges[..]),
        (Some("QEMU0002"), &[(0x902_0000, 0x18)][..])
    );
    let pci = find(&all, "\\_SB_.PCI0");
    assert_eq!(pci.cids, ["PNP0A03"]);
    assert_eq!(
        pci.ranges,
        [
            (0x1000_0000, 0x2eff_0000),
            // The I/O window, translated into memory.
            (0x3eff_0000, 0x1_0000),
            (0x80_0000_0000, 0x80_0000_0000)
        ]
    );
    let com = find(&all, "\\_SB_.COM0");
    assert_eq!(com.ranges, [(0x900_0000, 0x1000)]);
    assert!(!kept_by_kcore(com));
    let kept: Vec<&str> = all
        .iter()
        .filter(|d| kept_by_kcore(d))
        .map(|d| d.path.as_str())
        .collect();
    assert_eq!(kept.len(), 1 + 2 + 32);
    assert!(kept.contains(&"\\_SB_.PCI0.RES0"));
    for (k, vr) in all
        .iter()
        .filter(|d| d.path.starts_with("\\_SB_.VR"))
        .enumerate()
    {
        assert_eq!(vr.ranges, [(0xa00_0000 + 0x200 * k as u64, 0x200)]);
        assert!(kept_by_kcore(vr));
    }
    for path in ["\\_SB_.C000", "\\_SB_.PWRB", "\\_SB_.GED_", "\\_SB_.L000"] {
        assert!(!kept_by_kcore(find(&all, path)), "{path}");
    }

    // KCore's tree: every kept range a DMA master (fw_cfg, the transports
    // merged, the windows, the ECAM), the UART not.
    let (bytes, rsdp) = qemu_with(&dsdt, &[]);
    let t = load(&bytes, rsdp).unwrap();
    assert_eq!(t.dsdt().map(|d| d.1), Some(&dsdt[..]));
    let efi = efi_map(2);
    let dt = platform_dt(&t, &efi.map, &Chosen::default()).unwrap();
    dtc_accepts(&dt).map(Result::unwrap);
    let p = parse(&dt).unwrap();
    assert_eq!(
        p.dma_masters,
        [
            r(0x902_0000, 0x18),
            r(0xa00_0000, 0x4000),
            r(0x1000_0000, 0x2f00_0000),
            r(0x40_1000_0000, 256 << 20),
            r(0x80_0000_0000, 0x80_0000_0000),
        ]
    );
    assert!(!p.dma_masters.iter().any(|m| m.contains(0x900_0000)));
    assert_eq!(p.uart.unwrap().base, 0x900_0000);
    assert_eq!(kcore_acpi::describe(&t).unwrap().acpi_devices.len(), 35);

    // KServ's DSDT: the kept devices' IDs renamed, KServ's left.
    let hide = namespace::ids_to_hide(&all);
    assert_eq!(
        hide,
        ["LNRO0005", "PNP0A03", "PNP0A08", "PNP0C02", "QEMU0002"]
    );
    let hide: Vec<&str> = hide.iter().map(String::as_str).collect();
    let (k, renamed) = kserv_aml(&dsdt, &hide).unwrap();
    assert_eq!(renamed, 32 + 1 + 2 + 1);
    let kall = namespace::devices(&[&k]).unwrap();
    let ids: Vec<&str> = kall.iter().flat_map(AcpiDevice::ids).collect();
    for gone in ["QEMU0002", "LNRO0005", "PNP0A08", "PNP0A03", "PNP0C02"] {
        assert!(!ids.contains(&gone), "{gone}");
    }
    for kept in ["ARMH0011", "ACPI0007", "PNP0C0C", "ACPI0013", "PNP0C0F"] {
        assert!(ids.contains(&kept), "{kept}");
    }
    assert!(ids.contains(&"KCOR0002") && ids.contains(&"KCR0C02"));
    // Renaming moves no range: the same devices keep the same memory.
    let ranges = |d: &[AcpiDevice]| d.iter().map(|d| d.ranges.clone()).collect::<Vec<_>>();
    assert_eq!(ranges(&kall), ranges(&all));
}

/// Every memory descriptor the reader decodes, from `iasl`'s encodings; a
/// `_CID` package; a PL061 left to KServ; SSDTs loaded after the DSDT.
#[test]
fn memory_descriptors_and_ssdts() {
    let mix = section(CASES, "mix");
    let (bytes, rsdp) = qemu_with(&qemu_dsdt(), &[mix]);
    let t = load(&bytes, rsdp).unwrap();
    assert_eq!(t.aml().len(), 2);
    let all = namespace::devices(&t.aml()).unwrap();
    let dma = find(&all, "\\_SB_.DMA0");
    assert_eq!(dma.cids, ["KCTS1002", "PNP0C02"]);
    assert_eq!(
        dma.ranges,
        [
            // QWordMemory: [min, max] + translation.
            (0x1_2000_0000, 0x1_0000),
            // Memory32: min to max + length.
            (0x920_0000, 0x2000),
            // Memory24: 256-byte units.
            (0x1_0000, 0x1_0200),
            // ExtendedMemory.
            (0x930_0000, 0x1000),
            // A 32-bit register in system memory.
            (0x940_0010, 4),
        ]
    );
    assert!(kept_by_kcore(dma));
    let gpio = find(&all, "\\_SB_.GPIO");
    assert_eq!(gpio.ranges, [(0x903_0000, 0x1000)]);
    assert!(!kept_by_kcore(gpio));
    let p = parse(&platform_dt(&t, &efi_map(2).map, &Chosen::default()).unwrap()).unwrap();
    assert!(p.dma_masters.iter().any(|m| m.contains(0x1_2000_ffff)));
    assert!(!p.dma_masters.iter().any(|m| m.contains(0x903_0000)));
}

/// AML that cannot be evaluated without hardware, or whose `_CRS` is not a
/// resource template, fails the translation with a message naming the
/// device.
#[test]
fn unevaluable_aml_fails_closed() {
    for (name, what) in [
        ("hw", "\\_SB_.DEV0._CRS touches hardware"),
        ("notbuf", "\\_SB_.NOTB._CRS is not a buffer"),
    ] {
        let ssdt = section(CASES, name);
        let (bytes, rsdp) = qemu_with(&qemu_dsdt(), &[ssdt]);
        let t = load(&bytes, rsdp).unwrap();
        let e = platform_dt(&t, &efi_map(2).map, &Chosen::default()).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Aml(_)), "{name}: {msg}");
        assert!(msg.contains(what), "{name}: {msg}");
        assert!(msg.contains("does not boot"), "{msg}");
    }
    // A DSDT that is only a header has no AML.
    let empty = sdt(b"DSDT", 2, &[]);
    assert!(matches!(namespace::devices(&[&empty]), Err(Error::Aml(_))));
    // A DSDT the FADT names but that is not there.
    let (mut bytes, rsdp) = qemu_with(&qemu_dsdt(), &[]);
    bytes.truncate(bytes.len() - 100);
    assert!(load(&bytes, rsdp).is_err());
}

/// Resource templates cut short or running past their buffer are refused;
/// descriptors naming no memory are skipped.
#[test]
fn resource_templates_are_bounds_checked() {
    // Memory32Fixed, then an IRQ (small), then the end tag.
    let good = [
        0x86, 9, 0, 1, 0, 0, 0x10, 0, 0, 0x10, 0, 0, 0x22, 0x01, 0x00, 0x79, 0,
    ];
    assert_eq!(memory_ranges(&good), Ok(vec![(0x10_0000, 0x1000)]));
    for cut in 1..12 {
        assert!(memory_ranges(&good[..cut]).is_err(), "{cut}");
    }
    // A large descriptor claiming more than the buffer holds.
    assert!(memory_ranges(&[0x86, 0xff, 0xff, 0]).is_err());
    // Memory32Fixed with a zero length, a bus-number WordAddressSpace: none.
    let none = [
        0x86, 9, 0, 1, 0, 0, 0x10, 0, 0, 0, 0, 0, 0x88, 13, 0, 2, 0, 0, 0, 0, 0, 0, 0xff, 0, 0, 0,
        0, 1, 0, 0x79, 0,
    ];
    assert_eq!(memory_ranges(&none), Ok(vec![]));
    // A range wrapping past the end of the address space.
    let mut wrap = vec![0x8a, 43, 0, 0, 0, 0];
    for v in [0u64, u64::MAX - 10, u64::MAX, 0, 100] {
        wrap.extend_from_slice(&v.to_le_bytes());
    }
    assert!(memory_ranges(&wrap).is_err());
    // Random bytes never panic.
    let mut rng = Rng(11);
    for _ in 0..20_000 {
        let len = rng.below(64);
        let b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = memory_ranges(&b);
    }
}

/// Garbage in the AML gives an error or a namespace, and never a panic of
/// this crate's. The interpreter (`acpi` 6.1.1) itself panics on some
/// malformed AML (a package length past its block: slice indexing in
/// `MethodContext::start_new_block`); those panics are caught here, counted
/// and checked to come from the crate's code. In `kcore.efi` such a panic
/// stops the boot before KCore starts, with a message, back to the firmware
/// (`efi/src/panic.rs`, `docs/security.md`). So does AML that runs for ever
/// while the table loads (the interpreter has no loop limit, and spins
/// without calling out: `kcore.efi` stops it with a timer event), counted
/// here as still running after 2 s.
#[test]
fn mutated_aml_never_panics_here() {
    use std::panic;
    use std::sync::{Arc, Mutex};
    let dsdt = qemu_dsdt();
    let places: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = places.clone();
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let at = info.location().map(|l| l.file().to_string());
        seen.lock().unwrap().push(at.unwrap_or_default());
    }));
    let mut rng = Rng(3);
    let (mut failed, mut read, mut panicked, mut hung) = (0, 0, 0, 0);
    let rounds = 300;
    for round in 0..rounds {
        let mut t = dsdt.clone();
        for _ in 0..1 + round % 4 {
            let k = 36 + rng.below(t.len() - 36);
            t[k] = rng.next() as u8;
        }
        if round % 7 == 0 {
            t.truncate(36 + rng.below(t.len() - 36));
        }
        refix(&mut t);
        // On a thread of its own: some mutations make the interpreter loop
        // for ever (it has no loop limit); such a thread is left spinning
        // until the test binary exits.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = panic::catch_unwind(|| namespace::devices(&[&t]).map(|d| d.len()));
            let _ = tx.send(r);
        });
        match rx.recv_timeout(std::time::Duration::from_secs(2)) {
            Ok(Ok(Ok(_))) => read += 1,
            Ok(Ok(Err(Error::Aml(_)))) => failed += 1,
            Ok(Ok(Err(e))) => panic!("{e}"),
            Ok(Err(_)) => panicked += 1,
            Err(_) => hung += 1,
        }
    }
    panic::set_hook(previous);
    let places = places.lock().unwrap();
    println!(
        "{rounds} mutated DSDTs: {read} read, {failed} refused, {panicked} panicked in the acpi crate, {hung} still running after 2 s"
    );
    assert!(failed > 0 && read > 0);
    assert_eq!(places.len(), panicked);
    for p in places.iter() {
        assert!(
            p.contains("acpi-6.1.1"),
            "a panic outside the acpi crate: {p}"
        );
    }
}

#[test]
fn eisa_ids() {
    assert_eq!(namespace::eisa_id(0x080a_d041).as_deref(), Some("PNP0A08"));
    assert_eq!(namespace::eisa_id(0x0300_722c).as_deref(), Some("KCR0003"));
    assert_eq!(namespace::eisa_id(0), None);
    assert_eq!(namespace::eisa_id(1 << 40), None);
}

/// Bytes at which `a` and `b` differ, but for the checksum.
fn changed(a: &[u8], b: &[u8]) -> usize {
    assert_eq!(a.len(), b.len());
    (0..a.len()).filter(|&k| k != 9 && a[k] != b[k]).count()
}

fn sums_to_zero(t: &[u8]) -> bool {
    t.iter().fold(0u8, |s, &b| s.wrapping_add(b)) == 0
}

/// KServ's copies of the SSDTs: the IDs of the devices KCore keeps renamed
/// in every form `kserv_aml` reads (`Name`, a method returning a constant
/// or a package, `_CID` packages with 1- and 2-byte PkgLengths), the IDs of
/// KServ's devices left alone; KServ's XSDT pointing at a copy.
#[test]
fn kserv_ssdts_rename_the_devices_kcore_keeps() {
    let (mix, ids) = (section(CASES, "mix"), section(CASES, "ids"));
    let (bytes, rsdp) = qemu_with(&qemu_dsdt(), &[mix.clone(), ids.clone()]);
    let t = load(&bytes, rsdp).unwrap();
    let ssdts = t.ssdts();
    assert_eq!(ssdts.len(), 2);
    assert_eq!((ssdts[0].1, ssdts[1].1), (&mix[..], &ids[..]));
    let all = namespace::devices(&t.aml()).unwrap();
    let hide = namespace::ids_to_hide(&all);
    let hide: Vec<&str> = hide.iter().map(String::as_str).collect();
    for id in [
        "KCTS0002", "KCTS1002", "KCTS0004", "KCTS1004", "PNP0C33", "KCTS2006",
    ] {
        assert!(hide.contains(&id), "{id}");
    }
    for id in ["ARMH0011", "ARMH0061", "KCTS0005", "KCTS1005"] {
        assert!(!hide.contains(&id), "{id}");
    }
    let (dsdt, _) = kserv_aml(t.dsdt().unwrap().1, &hide).unwrap();
    let (kmix, n_mix) = kserv_aml(&mix, &hide).unwrap();
    let (kids, n_ids) = kserv_aml(&ids, &hide).unwrap();
    // mix: DMA0's _HID and both elements of its _CID package. ids: DEV1's
    // method _HID and two of its method _CID's package; DEV2's _HID and
    // seven of its package's eight.
    assert_eq!((n_mix, n_ids), (3, 11));
    // Two bytes for each: `KCTS` to `KCOR`, an EISA vendor to `KCR`.
    assert_eq!((changed(&mix, &kmix), changed(&ids, &kids)), (6, 22));
    for (k, t) in [(&kmix, &mix), (&kids, &ids)] {
        assert!(sums_to_zero(k));
        assert_eq!(k[..9], t[..9]);
        assert_eq!(k[10..36], t[10..36]);
    }
    let kall = namespace::devices(&[&dsdt, &kmix, &kids]).unwrap();
    let ids_of = |path: &str| {
        let d = find(&kall, path);
        (d.hid.clone().unwrap(), d.cids.join(" "))
    };
    let expect = [
        ("\\_SB_.DMA0", "KCOR0002", "KCOR1002 KCR0C02"),
        ("\\_SB_.DEV1", "KCOR0004", "KCR0C02 ARMH0011 KCOR1004"),
        (
            "\\_SB_.DEV2",
            "KCR0C33",
            "KCOR2001 KCOR2002 KCOR2003 KCOR2004 KCOR2005 KCOR2006 ARMH0011 KCR0A03",
        ),
        ("\\_SB_.DEV3", "KCTS0005", "KCTS1005"),
        ("\\_SB_.COM1", "ARMH0011", ""),
        ("\\_SB_.GPIO", "ARMH0061", ""),
    ];
    for (path, hid, cids) in expect {
        assert_eq!(ids_of(path), (hid.to_string(), cids.to_string()), "{path}");
    }
    // The same devices keep the same memory.
    let ranges = |d: &[AcpiDevice]| d.iter().map(|d| d.ranges.clone()).collect::<Vec<_>>();
    assert_eq!(ranges(&kall), ranges(&all));
    // KServ's XSDT names the copy in the SSDT's place, and does not grow.
    let xsdt = t.bytes(t.xsdt_address()).unwrap();
    let new = 0x7e00_0000u64;
    let edit = XsdtEdit::Replace {
        old: ssdts[1].0,
        new,
    };
    let kx = kserv_xsdt(xsdt, &[edit]).unwrap();
    assert_eq!(kx.len(), xsdt.len());
    let entries = |x: &[u8]| -> Vec<u64> {
        x[36..]
            .chunks(8)
            .map(|e| u64::from_le_bytes(e.try_into().unwrap()))
            .collect()
    };
    let (old_entries, new_entries) = (entries(xsdt), entries(&kx));
    let k = old_entries.iter().position(|&a| a == ssdts[1].0).unwrap();
    assert_eq!(new_entries[k], new);
    assert_eq!(new_entries[..k], old_entries[..k]);
    assert_eq!(new_entries[k + 1..], old_entries[k + 1..]);
}

/// `EisaId (<id>)`, a string, in AML.
fn eisa(id: [u8; 4]) -> Vec<u8> {
    [&[0x0c][..], &id].concat()
}
fn string(id: &[u8]) -> Vec<u8> {
    [&[0x0d][..], id, &[0]].concat()
}

/// `Package` with NumElements `count` and `elements`, its PkgLength the
/// right one in 1, 2 or 3 bytes.
fn package(count: u8, elements: &[Vec<u8>]) -> Vec<u8> {
    let body = [&[count][..], &elements.concat()].concat();
    let length = |bytes: usize| body.len() + bytes;
    let pkg_length = if length(1) < 64 {
        vec![length(1) as u8]
    } else if length(2) < 1 << 12 {
        let l = length(2);
        vec![0x40 | (l & 0xf) as u8, (l >> 4) as u8]
    } else {
        let l = length(3);
        vec![0x80 | (l & 0xf) as u8, (l >> 4) as u8, (l >> 12) as u8]
    };
    [&[0x12][..], &pkg_length, &body].concat()
}

/// A `_CID` package gets exactly its hidden elements renamed, whatever its
/// PkgLength's size; an `EisaId` as a Word constant is renamed;
/// `Method (_HID)` only when it has no arguments and returns the constant
/// first; malformed packages (a PkgLength past the table, more elements
/// than follow, a string without its NUL) rename nothing outside them and
/// never panic.
#[test]
fn cid_packages_and_methods() {
    let pnp0a03 = [0x41, 0xd0, 0x0a, 0x03];
    let pnp0c0c = [0x41, 0xd0, 0x0c, 0x0c];
    let hidden = ["QEMU0002", "PNP0C02"];
    let cid = |p: Vec<u8>| [b"\x08_CID".to_vec(), p].concat();
    let elements = |qemu: &[u8], pnp: &[u8]| {
        vec![
            eisa(pnp0a03),
            string(b"ACPI0004"),
            string(qemu),
            eisa(pnp0c0c),
            string(b"ARMH0011"),
            string(pnp),
        ]
    };
    let good = sdt(
        b"SSDT",
        2,
        &cid(package(6, &elements(b"QEMU0002", b"PNP0C02"))),
    );
    let (out, n) = kserv_aml(&good, &hidden).unwrap();
    assert_eq!(n, 3);
    let mut want = elements(b"KCOR0002", b"KCR0C02");
    want[0] = eisa([0x2c, 0x72, 0x0a, 0x03]);
    assert_eq!(out[36..], cid(package(6, &want))[..]);
    assert!(sums_to_zero(&out));

    // A 3-byte PkgLength: the last of 255 elements is still renamed.
    let mut many = vec![string(&[b'X'; 19]); 254];
    many.push(string(b"QEMU0002"));
    let big = sdt(b"SSDT", 2, &cid(package(255, &many)));
    assert_eq!(big[42] >> 6, 2);
    let (out, n) = kserv_aml(&big, &hidden).unwrap();
    assert_eq!((n, changed(&big, &out)), (1, 4));
    assert_eq!(out[out.len() - 9..], *b"KCOR0002\0");

    // More elements than the package holds: those inside are renamed, the
    // ID after the package is not.
    let mut short = cid(package(5, &[string(b"QEMU0002")]));
    short.extend(string(b"QEMU0002"));
    let short = sdt(b"SSDT", 2, &short);
    let (out, n) = kserv_aml(&short, &hidden).unwrap();
    assert_eq!(n, 1);
    assert_eq!(out[out.len() - 9..], *b"QEMU0002\0");
    // A string whose NUL is past the package's end is not renamed.
    let mut no_nul = cid(package(1, &[string(b"QEMU0002")]));
    no_nul[6] -= 1;
    no_nul.pop();
    no_nul.extend([0, 0]);
    let no_nul = sdt(b"SSDT", 2, &no_nul);
    assert_eq!(kserv_aml(&no_nul, &hidden).unwrap().1, 0);
    // A PkgLength past the end of the table: nothing in it is renamed,
    // though its elements are whole.
    for extra in [1, 2, 20] {
        let mut past = cid(package(1, &[string(b"QEMU0002")]));
        past[6] += extra;
        let past = sdt(b"SSDT", 2, &past);
        let (out, n) = kserv_aml(&past, &hidden).unwrap();
        assert_eq!((n, changed(&past, &out)), (0, 0), "{extra}");
    }
    // No NUL before the end of the table.
    let tail = sdt(b"DSDT", 2, &cid(package(1, &[string(b"QEMU0002")]))[..15]);
    assert_eq!(kserv_aml(&tail, &hidden).unwrap().1, 0);

    // `EisaId ("PNP0000")`: iasl encodes it as a Word constant.
    let word = sdt(
        b"SSDT",
        2,
        &[0x08, b'_', b'H', b'I', b'D', 0x0b, 0x41, 0xd0],
    );
    let (out, n) = kserv_aml(&word, &["PNP0000"]).unwrap();
    assert_eq!((n, &out[41..]), (1, &[0x0b, 0x2c, 0x72][..]));

    // Methods: `Method (_HID, 0) { Return ("QEMU0002") }` is renamed, in
    // a DSDT too; with an argument, a statement before `Return`, or a
    // PkgLength that ends before the constant, it is not.
    let method = |flags: u8, body: &[u8], cut: u8| {
        let len = 1 + 4 + 1 + body.len() as u8 - cut;
        [&[0x14, len][..], b"_HID", &[flags], body].concat()
    };
    let ret = [&[0xa4][..], &string(b"QEMU0002")].concat();
    let noop_ret = [&[0xa3][..], &ret].concat();
    for (sig, flags, body, cut, renamed) in [
        (b"SSDT", 0, &ret, 0, 1),
        (b"DSDT", 0x08, &ret, 0, 1),
        (b"SSDT", 1, &ret, 0, 0),
        (b"SSDT", 0, &noop_ret, 0, 0),
        (b"SSDT", 0, &ret, 1, 0),
    ] {
        let t = sdt(sig, 2, &method(flags, body, cut));
        let (out, n) = kserv_aml(&t, &hidden).unwrap();
        assert_eq!(n, renamed, "{flags} {body:x?} {cut}");
        assert_eq!(changed(&t, &out), 4 * renamed);
    }
}

/// Only DSDTs and SSDTs are AML; mutated tables are never a panic nor a
/// write outside an ID.
#[test]
fn kserv_aml_refuses_other_tables_and_survives_mutations() {
    let ids = section(CASES, "ids");
    for sig in [b"FACP", b"APIC", b"XSDT", b"SSDX", b"dsdt"] {
        let mut t = ids.clone();
        t[..4].copy_from_slice(sig);
        refix(&mut t);
        let e = kserv_aml(&t, &[]).unwrap_err();
        assert!(
            matches!(e, Error::BadTable { signature, .. } if signature == *sig),
            "{e}"
        );
    }
    let mut bad = ids.clone();
    bad[40] ^= 1;
    assert_eq!(
        kserv_aml(&bad, &[]),
        Err(Error::BadChecksum {
            signature: *b"SSDT"
        })
    );
    assert!(kserv_aml(&ids[..30], &[]).is_err());
    assert!(kserv_aml(&[], &[]).is_err());

    let hidden = ["KCTS0004", "KCTS1004", "PNP0C02", "KCTS2001", "KCTS2006"];
    let mut rng = Rng(5);
    let mut renamed = 0;
    for round in 0..5000 {
        // Every fifth table cut short (its length fixed), then one to four
        // bytes of its AML replaced.
        let len = match round % 5 {
            0 => 37 + rng.below(ids.len() - 37),
            _ => ids.len(),
        };
        let mut t = ids[..len].to_vec();
        put32(&mut t, 4, len as u32);
        for _ in 0..=round % 4 {
            t[36 + rng.below(len - 36)] = rng.next() as u8;
        }
        refix(&mut t);
        let (out, n) = kserv_aml(&t, &hidden).unwrap();
        assert!(sums_to_zero(&out));
        assert!(changed(&t, &out) <= 4 * n, "round {round}");
        renamed += n;
    }
    assert!(renamed > 0);
}
