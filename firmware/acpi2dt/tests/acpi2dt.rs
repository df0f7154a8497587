//! ACPI tables built as a server's firmware would give them, translated to
//! KCore's device tree and read back through `kcore_boot::platform::parse`;
//! KServ's MADT/XSDT/RSDP rewrites; malformed tables; a mutation loop.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use common::*;
use kcore::addr::MemRange;
use kcore_acpi::{
    Chosen, Error, MAX_CPUS, MemDesc, Tables, XsdtEdit, describe, kserv_madt, kserv_rsdp,
    kserv_xsdt, platform_dt,
};
use kcore_boot::platform::{
    Conduit, Cpu, EnableMethod, Gic, GicVersion, Platform, Psci, Uart, UartKind, parse,
};

fn r(base: u64, size: u64) -> MemRange {
    MemRange::new(base, size).unwrap()
}

fn load(mem_bytes: &[u8], rsdp: u64) -> Result<Tables, Error> {
    Tables::load(&mem(mem_bytes), rsdp)
}

/// Translates `m` with an EFI map of `banks` banks; returns the tree and
/// its parse.
fn translate(m: &Machine, banks: usize) -> (Vec<u8>, Platform, EfiMap) {
    let (bytes, rsdp) = layout(&m.tables());
    let tables = load(&bytes, rsdp).unwrap();
    let efi = efi_map(banks);
    let map = &efi.map;
    let loader = [r(0xa000_0000, 0x20_0000)];
    let table = 0x5bfe_0018u64.to_be_bytes();
    let extra: [(&str, &[u8]); 2] = [("linux,uefi-system-table", &table), ("kcore,acpi", &[])];
    let chosen = Chosen {
        bootargs: Some("console=ttyAMA0 acpi=force"),
        reserved: &loader,
        extra: &extra,
    };
    let dt = platform_dt(&tables, map, &chosen).unwrap();
    let p = parse(&dt).unwrap();
    (dt, p, efi)
}

fn check_server(m: &Machine, banks: usize) -> (Vec<u8>, Platform) {
    let (dt, p, expect) = translate(m, banks);
    if let Some(verdict) = dtc_accepts(&dt) {
        verdict.unwrap();
    }
    let method = match m.psci {
        Some(_) => EnableMethod::Psci,
        None => EnableMethod::Other,
    };
    let cpus: Vec<Cpu> = (0..m.cpus)
        .map(|i| Cpu {
            mpidr: mpidr(i),
            enable_method: method,
        })
        .collect();
    assert_eq!(p.cpus, cpus);
    let redist = if m.gicr_structure {
        vec![r(GICR, 0x2_0000 * m.cpus as u64)]
    } else {
        (0..m.cpus as u64)
            .map(|i| r(GICR + 0x2_0000 * i, 0x2_0000))
            .collect()
    };
    assert_eq!(
        p.gic,
        Some(Gic {
            version: GicVersion::V3,
            dist: r(GICD, 0x1_0000),
            redist,
            cpu_if: Some(r(GICC, 0x2000)),
            hyp_if: Some(r(GICH, 0x2000)),
            vcpu_if: Some(r(GICV, 0x2000)),
            maintenance_irq: Some(25),
            its: m.its.iter().map(|&b| r(b, 0x2_0000)).collect(),
        })
    );
    assert_eq!(
        p.psci,
        m.psci.map(|hvc| Psci {
            method: if hvc { Conduit::Hvc } else { Conduit::Smc },
            v0_1_ids: None,
        })
    );
    assert_eq!(
        p.uart,
        Some(Uart {
            base: UART,
            size: 0x1000,
            kind: UartKind::Pl011
        })
    );
    let ranges = |v: &[(u64, u64)]| v.iter().map(|&(b, s)| r(b, s)).collect::<Vec<_>>();
    assert_eq!(p.memory, ranges(&expect.memory));
    // Runtime data, ACPI reclaim (the tables) and the loader's range.
    let mut reserved = expect.reserved.clone();
    reserved.push((0xa000_0000, 0x20_0000));
    reserved.sort();
    assert_eq!(p.reserved, ranges(&reserved));
    assert_eq!(p.bootargs.as_deref(), Some("console=ttyAMA0 acpi=force"));
    // The loader's further /chosen properties: the stub marker for KCore.
    assert!(p.kserv_stub);
    // The PCIe host bridge from the MCFG is a DMA master KCore keeps.
    assert_eq!(p.dma_masters, vec![r(ECAM, 256 << 20)]);
    (dt, p)
}

#[test]
fn four_cpu_server_with_gicr_structure() {
    let m = Machine::server(4);
    let (dt, _) = check_server(&m, 4);
    // What Platform does not read: the timer, the SMMU.
    let fdt = fdt::Fdt::new(&dt).unwrap();
    let timer = fdt.find_node("/timer").unwrap();
    let ints: Vec<u8> = timer.property("interrupts").unwrap().value.to_vec();
    let cells: Vec<u32> = ints
        .chunks(4)
        .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(cells, [1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]);
    // The timer's interrupts resolve through the GIC (root
    // `interrupt-parent` = the GIC's phandle), as Linux needs.
    let phandle = |n: fdt::node::FdtNode<'_, '_>, p: &str| {
        u32::from_be_bytes(n.property(p).unwrap().value.try_into().unwrap())
    };
    let gic = fdt.find_compatible(&["arm,gic-v3"]).unwrap();
    assert_eq!(
        phandle(fdt.find_node("/").unwrap(), "interrupt-parent"),
        phandle(gic, "phandle")
    );
    let smmu = fdt.find_compatible(&["arm,smmu-v3"]).unwrap();
    let reg: Vec<_> = smmu.reg().unwrap().collect();
    assert_eq!(reg[0].starting_address as u64, SMMU);
    assert_eq!(reg[0].size, Some(0x2_0000));
}

#[test]
fn smc_and_no_psci() {
    let mut m = Machine::server(4);
    m.psci = Some(false);
    check_server(&m, 2);
    m.psci = None;
    let (_, p) = check_server(&m, 2);
    assert!(p.psci.is_none());
}

#[test]
fn gicr_per_cpu_from_gicc() {
    let mut m = Machine::server(4);
    m.gicr_structure = false;
    check_server(&m, 3);
}

/// 256 CPUs on two Aff3 "sockets", one redistributor region each, and an
/// EFI map of 400 descriptors merged into 100 banks.
#[test]
fn server_scale_256_cpus_one_redistributor_region_each() {
    let mut m = Machine::server(256);
    m.gicr_structure = false;
    let (dt, p) = check_server(&m, 100);
    assert_eq!(p.gic.as_ref().unwrap().redist.len(), 256);
    assert_eq!(p.memory.len(), 101);
    assert!(dt.len() < 64 * 1024, "{} bytes", dt.len());
    println!("256 CPUs, 101 banks: {} bytes", dt.len());
    // And with one GICR structure, 256 CPUs.
    let m = Machine::server(256);
    check_server(&m, 100);
}

/// The most CPUs this crate accepts, each with its own redistributor
/// region: `kcore_boot::platform::parse` has no limit of its own below it.
#[test]
fn max_cpus_parse() {
    let mut m = Machine::server(MAX_CPUS);
    m.gicr_structure = false;
    let (dt, p) = check_server(&m, 1);
    // KCore copies the loader's tree into a buffer of `MAX_DT_SIZE`
    // (`boot/src/el2/early.rs`, 2 MiB).
    assert!(dt.len() <= 2 << 20, "{} bytes", dt.len());
    println!("4096 CPUs: {} bytes", dt.len());
    assert_eq!(p.cpus.len(), 4096);
    assert_eq!(p.gic.unwrap().redist.len(), 4096);
}

#[test]
fn sbsa_uart_and_mini_uart() {
    for (ty, kind) in [
        (0x0e, UartKind::Pl011),
        (0x0d, UartKind::Pl011),
        (0x10, UartKind::MiniUart),
    ] {
        let mut m = Machine::server(2);
        m.spcr_type = ty;
        let (_, p, _) = translate(&m, 1);
        assert_eq!(p.uart.unwrap().kind, kind, "SPCR type {ty:#x}");
        assert_eq!(p.uart.unwrap().base, UART);
    }
    // A 16550: KCore has no driver, so no console rather than a wrong one.
    let mut m = Machine::server(2);
    m.spcr_type = 0;
    let (_, p, _) = translate(&m, 1);
    assert_eq!(p.uart, None);
}

#[test]
fn usable_follows_linux() {
    use kcore_acpi::memory::{EFI_MEMORY_WB, efi_type::*};
    let usable = [
        LOADER_CODE,
        LOADER_DATA,
        BOOT_SERVICES_CODE,
        BOOT_SERVICES_DATA,
        CONVENTIONAL,
        ACPI_RECLAIM,
        PERSISTENT,
    ];
    for ty in 0..16 {
        assert_eq!(
            kcore_acpi::usable(ty, EFI_MEMORY_WB),
            usable.contains(&ty),
            "type {ty}"
        );
        assert!(!kcore_acpi::usable(ty, 0), "type {ty} without WB");
    }
    assert!(!kcore_acpi::usable(RUNTIME_SERVICES_DATA, EFI_MEMORY_WB));
    // Memory (in the banks) is any cacheable descriptor: WB, WT or WC.
    use kcore_acpi::memory::is_memory;
    assert!(is_memory(EFI_MEMORY_WB) && is_memory(1 << 2) && is_memory(1 << 1));
    assert!(!is_memory(1) && !is_memory(0));
    assert!(!kcore_acpi::usable(RESERVED, EFI_MEMORY_WB));
}

/// MMIO descriptors are never RAM, whatever caching they allow (QEMU's
/// EDK2 lists its variable-store flash as MMIO with `EFI_MEMORY_WB`).
#[test]
fn mmio_is_never_ram() {
    use kcore_acpi::memory::efi_type::{CONVENTIONAL, MMIO, MMIO_PORT_SPACE};
    let d = |ty, base, pages, attribute| MemDesc {
        ty,
        base,
        pages,
        attribute,
    };
    let map = [
        d(MMIO, 0x400_0000, 0x4000, 0x8000_0000_0000_000f),
        d(MMIO_PORT_SPACE, 0x3eff_0000, 0x10, 0xf),
        d(CONVENTIONAL, 0x4000_0000, 0x100, 0xf),
    ];
    let banks = kcore_acpi::banks(&map).unwrap();
    assert_eq!(
        banks.memory,
        [MemRange::new(0x4000_0000, 0x10_0000).unwrap()]
    );
    assert!(banks.reserved.is_empty());
}

#[test]
fn wrapping_memory_descriptor_is_refused() {
    let map = [MemDesc {
        ty: 7,
        base: u64::MAX - 0xfff,
        pages: 2,
        attribute: 8,
    }];
    assert!(matches!(
        kcore_acpi::banks(&map),
        Err(Error::BadMemoryMap { .. })
    ));
}

/// The tables KServ sees: GICV/GICH/maintenance gone from every GICC, no
/// ITS, everything else the same, MCFG dropped; read back through the loader.
#[test]
fn kserv_tables_hide_the_virtual_interface() {
    let m = Machine::server(8);
    let (mut bytes, rsdp) = layout(&m.tables());
    let tables = load(&bytes, rsdp).unwrap();
    let before = describe(&tables).unwrap();
    let (madt_at, madt) = tables.find(b"APIC").unwrap();
    let (mcfg_at, _) = tables.find(b"MCFG").unwrap();
    let new_madt = kserv_madt(madt).unwrap();
    // Every ITS structure (20 bytes each) is left out.
    assert!(!before.gic.its.is_empty());
    assert_eq!(new_madt.len(), madt.len() - 20 * before.gic.its.len());
    // Append the new MADT, XSDT and RSDP to "memory".
    let place = |bytes: &mut Vec<u8>, t: &[u8]| {
        bytes.resize(bytes.len().next_multiple_of(16), 0);
        let at = MEM_BASE + bytes.len() as u64;
        bytes.extend_from_slice(t);
        at
    };
    let new_madt_at = place(&mut bytes, &new_madt);
    let xsdt = tables.bytes(tables.xsdt_address()).unwrap().to_vec();
    let new_xsdt = kserv_xsdt(
        &xsdt,
        &[
            XsdtEdit::Replace {
                old: madt_at,
                new: new_madt_at,
            },
            XsdtEdit::Drop(mcfg_at),
        ],
    )
    .unwrap();
    assert_eq!(new_xsdt.len(), xsdt.len() - 8);
    let new_xsdt_at = place(&mut bytes, &new_xsdt);
    let old_rsdp = tables.bytes(rsdp).unwrap().to_vec();
    let new_rsdp = kserv_rsdp(&old_rsdp, new_xsdt_at).unwrap();
    let new_rsdp_at = place(&mut bytes, &new_rsdp);

    let kserv = load(&bytes, new_rsdp_at).unwrap();
    assert_eq!(kserv.find(b"APIC").unwrap().0, new_madt_at);
    assert!(kserv.find(b"MCFG").is_none());
    let after = describe(&kserv).unwrap();
    assert_eq!(after.cpus, before.cpus);
    assert_eq!(after.gic.redist, before.gic.redist);
    assert!(after.gic.its.is_empty());
    assert_eq!(after.gic.dist, before.gic.dist);
    assert_eq!(after.gic.cpu_if, before.gic.cpu_if);
    assert_eq!(
        (after.gic.hyp_if, after.gic.vcpu_if, after.gic.maintenance),
        (0, 0, 0)
    );
    assert!(after.ecam.is_empty());
    // KCore's tree from KServ's tables has no virtual interface.
    let map = efi_map(1).map;
    let p = parse(&platform_dt(&kserv, &map, &Chosen::default()).unwrap()).unwrap();
    let gic = p.gic.unwrap();
    assert_eq!(
        (gic.hyp_if, gic.vcpu_if, gic.maintenance_irq),
        (None, None, None)
    );

    // Bad input to the rewrites.
    assert!(kserv_madt(&new_madt[..40]).is_err());
    let mut bad = new_madt.clone();
    bad[50] ^= 1;
    assert_eq!(
        kserv_madt(&bad),
        Err(Error::BadChecksum {
            signature: *b"APIC"
        })
    );
    assert!(kserv_xsdt(&xsdt, &[XsdtEdit::Drop(0x1234)]).is_err());
    assert!(kserv_rsdp(&old_rsdp[..20], 0).is_err());
}

/// Replaces table `k` of the machine's tables by `f(table)` and loads.
fn load_edited(m: &Machine, k: usize, f: impl FnOnce(&mut Vec<u8>)) -> Result<Vec<u8>, Error> {
    let mut tables = m.tables();
    f(&mut tables[k]);
    let (bytes, rsdp) = layout(&tables);
    let t = load(&bytes, rsdp)?;
    let map = efi_map(1).map;
    platform_dt(&t, &map, &Chosen::default())
}

const MADT: usize = 1;

#[test]
fn malformed_tables_give_clear_errors() {
    let m = Machine::server(4);
    // Bad checksum.
    let e = load_edited(&m, MADT, |t| t[60] ^= 0x40).unwrap_err();
    assert_eq!(
        e,
        Error::BadChecksum {
            signature: *b"APIC"
        }
    );
    assert_eq!(format!("{e}"), "ACPI table APIC: bad checksum");
    // A length running past the end of memory (1 MiB); in a table this
    // crate does not read (the PPTT) that is not its concern.
    let past_end = |t: &mut Vec<u8>| {
        put32(t, 4, 0x10_0000);
        refix(t);
    };
    let e = load_edited(&m, 2, past_end).unwrap_err();
    assert!(matches!(e, Error::Unreadable { .. }), "{e:?}");
    assert!(load_edited(&m, 6, past_end).is_ok());
    // An entry of length 0, and one running past the table's end.
    let e = load_edited(&m, MADT, |t| {
        t[44 + 1] = 0;
        refix(t);
    })
    .unwrap_err();
    assert!(matches!(e, Error::BadTable { .. }), "{e:?}");
    let e = load_edited(&m, MADT, |t| {
        let last = t.len() - 20; // the last ITS entry
        t[last + 1] = 40;
        refix(t);
    })
    .unwrap_err();
    assert!(matches!(e, Error::BadTable { .. }), "{e:?}");
    // A GICC too short for its MPIDR.
    let e = load_edited(&m, MADT, |t| {
        *t = madt(&[gicc(0, 0, GICR, true)[..72].to_vec(), gicd(GICD, 3)]);
        t[44 + 1] = 72;
        refix(t);
    })
    .unwrap_err();
    assert!(matches!(e, Error::BadTable { .. }), "{e:?}");
    // Zero (enabled) CPUs.
    let e = load_edited(&m, MADT, |t| *t = madt(&[gicd(GICD, 3)])).unwrap_err();
    assert_eq!(e, Error::NoCpus);
    let e = load_edited(&m, MADT, |t| {
        *t = madt(&[gicc(0, 0, GICR, false), gicd(GICD, 3)])
    })
    .unwrap_err();
    assert_eq!(e, Error::NoCpus);
    // Duplicate MPIDRs.
    let e = load_edited(&m, MADT, |t| {
        *t = madt(&[
            gicc(0, 0x100, GICR, true),
            gicc(1, 0x100, GICR, true),
            gicd(GICD, 3),
        ])
    })
    .unwrap_err();
    assert_eq!(e, Error::DuplicateMpidr(0x100));
    // No GICD; a GICv2 GICD; no redistributor anywhere.
    let e = load_edited(&m, MADT, |t| *t = madt(&[gicc(0, 0, GICR, true)])).unwrap_err();
    assert!(matches!(e, Error::BadTable { .. }), "{e:?}");
    let e = load_edited(&m, MADT, |t| {
        *t = madt(&[gicc(0, 0, 0, true), gicd(GICD, 2)])
    })
    .unwrap_err();
    assert_eq!(e, Error::UnsupportedGic(2));
    let e = load_edited(&m, MADT, |t| {
        *t = madt(&[gicc(0, 0, 0, true), gicd(GICD, 3)])
    })
    .unwrap_err();
    assert!(matches!(e, Error::BadTable { .. }), "{e:?}");
    // Two ITSs at one base.
    let e = load_edited(&m, MADT, |t| {
        *t = madt(&[
            gicc(0, 0, GICR, true),
            gicd(GICD, 3),
            its(0, ITS0),
            its(1, ITS0),
        ])
    })
    .unwrap_err();
    assert_eq!(e, Error::DuplicateIts(ITS0));
    // No MADT at all.
    let e = load_edited(&m, MADT, |t| *t = sdt(b"SSDT", 2, &[0; 8])).unwrap_err();
    assert_eq!(e, Error::Missing(*b"APIC"));
    // More CPUs than any arm64 Linux.
    let e = load_edited(&m, MADT, |t| {
        let mut e: Vec<_> = (0..=MAX_CPUS)
            .map(|i| gicc(i as u32, mpidr(i), GICR, true))
            .collect();
        e.push(gicd(GICD, 3));
        *t = madt(&e);
    })
    .unwrap_err();
    assert_eq!(e, Error::TooManyCpus { limit: MAX_CPUS });
    // A GTDT whose timers are not PPIs: no timer node, no error.
    assert!(load_edited(&m, 2, |t| *t = gtdt([0, 30, 27, 26], 0)).is_ok());
    // IORT node running past the table.
    let e = load_edited(&m, 4, |t| {
        put16(t, 48 + 24 + 1, 200);
        refix(t);
    })
    .unwrap_err();
    assert!(matches!(e, Error::BadTable { .. }), "{e:?}");
}

#[test]
fn malformed_rsdp_and_xsdt() {
    let m = Machine::server(2);
    let (bytes, rsdp) = layout(&m.tables());
    let mut b = bytes.clone();
    b[0] = b'X';
    assert!(matches!(load(&b, rsdp), Err(Error::Rsdp(_))));
    let mut b = bytes.clone();
    b[8] ^= 1;
    assert!(matches!(load(&b, rsdp), Err(Error::Rsdp(_))));
    let mut b = bytes.clone();
    b[15] = 0;
    assert!(matches!(load(&b, rsdp), Err(Error::Rsdp(_))));
    // RSDP pointing nowhere, truncated memory.
    assert!(matches!(
        load(&bytes, 0x1000),
        Err(Error::Unreadable { .. })
    ));
    assert!(matches!(
        load(&bytes[..bytes.len() - 100], rsdp),
        Err(Error::Unreadable { .. })
    ));
    // XSDT entry pointing outside memory.
    let mut b = bytes.clone();
    put64(&mut b, 48 + 36, 0xdead_0000);
    let xlen = 36 + 8 * m.tables().len();
    fix(&mut b[48..], xlen, 9);
    assert!(matches!(load(&b, rsdp), Err(Error::Unreadable { .. })));
}

/// Random mutations of a valid image (with the touched table's checksum
/// fixed half the time, to get past it), of the builder's tables and of
/// QEMU's: never a panic, and every tree produced parses.
#[test]
fn mutations_never_panic() {
    let qemu: Vec<Vec<u8>> = qemu_tables().into_iter().map(|(_, t)| t).collect();
    for (seed, tables) in [
        (0x5eed_acb1, Machine::server(4).tables()),
        (0x0e1d_2c3b, qemu),
    ] {
        let (bytes, rsdp) = layout(&tables);
        let ok = mutate(&bytes, rsdp, seed, 3000);
        assert!(ok > 100, "only {ok} mutated images translated");
    }
}

/// `rounds` mutations of the image `bytes`; returns how many translated.
fn mutate(bytes: &[u8], rsdp: u64, seed: u64, rounds: usize) -> usize {
    let map = efi_map(2).map;
    let table_starts: Vec<usize> = {
        let t = load(bytes, rsdp).unwrap();
        [b"FACP", b"APIC", b"GTDT", b"SPCR", b"IORT", b"MCFG"]
            .iter()
            .map(|s| (t.find(s).unwrap().0 - MEM_BASE) as usize)
            .collect()
    };
    let mut rng = Rng(seed);
    let mut ok = 0;
    for _ in 0..rounds {
        let mut b = bytes.to_vec();
        let start = table_starts[rng.below(table_starts.len())];
        let len = u32::from_le_bytes(b[start + 4..start + 8].try_into().unwrap()) as usize;
        for _ in 0..1 + rng.below(4) {
            let at = start + rng.below(len);
            b[at] = rng.next() as u8;
        }
        if rng.below(2) == 0 {
            let l = (u32::from_le_bytes(b[start + 4..start + 8].try_into().unwrap()) as usize)
                .min(b.len() - start);
            fix(&mut b[start..], l, 9);
        }
        if rng.below(8) == 0 {
            let cut = rng.below(b.len());
            b.truncate(cut);
        }
        // The rewrites take raw bytes: any table, mutated, checksum or not.
        let raw = &b[start.min(b.len())..(start + len).min(b.len())];
        if let Ok(madt) = kserv_madt(raw) {
            assert!(madt.len() <= raw.len());
            assert_eq!(madt.len() % 4, raw.len() % 4);
        }
        let _ = kserv_xsdt(raw, &[XsdtEdit::Drop(0)]);
        let _ = kserv_rsdp(raw, 0);
        let Ok(t) = load(&b, rsdp) else { continue };
        if let Ok(dt) = platform_dt(&t, &map, &Chosen::default()) {
            parse(&dt).unwrap();
            ok += 1;
        }
    }
    ok
}

/// QEMU's own tables (`tests/fixtures/qemu-10-virt-gicv3-smmuv3.hex` says
/// how they were recorded), behind an RSDP and XSDT of the builder's.
fn qemu_tables() -> Vec<(String, Vec<u8>)> {
    let mut out = hex_sections(include_str!("fixtures/qemu-10-virt-gicv3-smmuv3.hex"));
    // The FADT names QEMU's DSDT, which is not laid out here (tests/aml.rs
    // loads it): it names none.
    for (name, t) in &mut out {
        if name == "FACP" {
            t[40..44].fill(0);
            t[140..148].fill(0);
            refix(t);
        }
    }
    out
}

#[test]
fn qemu_virt_tables() {
    let named = qemu_tables();
    let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "APIC", "DBG2", "FACP", "GTDT", "IORT", "MCFG", "PPTT", "SPCR"
        ]
    );
    let tables: Vec<Vec<u8>> = named.into_iter().map(|(_, t)| t).collect();
    let (bytes, rsdp) = layout(&tables);
    let t = load(&bytes, rsdp).unwrap();
    let efi = efi_map(2);
    let dt = platform_dt(&t, &efi.map, &Chosen::default()).unwrap();
    dtc_accepts(&dt).map(Result::unwrap);
    let p = parse(&dt).unwrap();
    assert_eq!(
        p.cpus,
        [0, 1].map(|mpidr| Cpu {
            mpidr,
            enable_method: EnableMethod::Psci
        })
    );
    assert_eq!(
        p.psci,
        Some(Psci {
            method: Conduit::Smc,
            v0_1_ids: None
        })
    );
    assert_eq!(
        p.uart,
        Some(Uart {
            base: 0x0900_0000,
            size: 0x1000,
            kind: UartKind::Pl011
        })
    );
    let gic = p.gic.unwrap();
    assert_eq!(gic.version, GicVersion::V3);
    assert_eq!(gic.dist, r(0x0800_0000, 0x1_0000));
    // QEMU's GICR structure covers its whole redistributor region, as its
    // device tree's does.
    assert_eq!(gic.redist, [r(0x080a_0000, 0xf6_0000)]);
    assert_eq!(gic.its, [r(0x0808_0000, 0x2_0000)]);
    assert_eq!(gic.maintenance_irq, Some(25));
    // QEMU's GICv3 GICCs give no GICC, GICH or GICV frame (its device
    // tree has none either).
    assert_eq!((gic.cpu_if, gic.hyp_if, gic.vcpu_if), (None, None, None));
    assert_eq!(p.dma_masters, [r(0x40_1000_0000, 256 << 20)]);
    let banks: Vec<MemRange> = efi.memory.iter().map(|&(b, s)| r(b, s)).collect();
    assert_eq!(p.memory, banks);
    let d = describe(&t).unwrap();
    assert_eq!(d.smmu_v3, [0x0905_0000]);
    assert_eq!(
        d.timer.map(|t| t.map(|(intid, _)| intid)),
        Some([29, 30, 27, 26])
    );

    // KServ's MADT from QEMU's: same CPUs and GIC, no ITS, no virtual
    // interface.
    let (_, madt) = t.find(b"APIC").unwrap();
    let mut tables = tables.clone();
    tables[0] = kserv_madt(madt).unwrap();
    let (bytes, rsdp) = layout(&tables);
    let k = describe(&load(&bytes, rsdp).unwrap()).unwrap();
    assert_eq!((k.cpus, k.gic.redist), (d.cpus, d.gic.redist));
    assert!(!d.gic.its.is_empty() && k.gic.its.is_empty());
    assert_eq!((k.gic.hyp_if, k.gic.vcpu_if, k.gic.maintenance), (0, 0, 0));
}

/// The loader's reader: identity-mapped memory, only inside the ranges
/// given (here, this process's own copy of the tables).
#[test]
fn identity_mem_reads_only_inside_its_ranges() {
    use kcore_acpi::{IdentityMem, PhysMem};
    let tables = Machine::server(2).tables();
    let mut bytes = vec![0; layout(&tables).0.len()];
    let at = bytes.as_ptr() as u64;
    bytes.copy_from_slice(&layout_at(&tables, at).0);
    let ranges = [r(at, bytes.len() as u64)];
    // SAFETY: `bytes` is this process's memory, at its own address, and not
    // written while `mem` lives.
    let mem = unsafe { IdentityMem::new(&ranges) };
    assert_eq!(mem.read(at, 8), Some(&bytes[..8]));
    assert_eq!(
        mem.read(at + bytes.len() as u64 - 4, 4),
        Some(&bytes[bytes.len() - 4..])
    );
    assert_eq!(mem.read(at + bytes.len() as u64 - 4, 5), None);
    assert_eq!(mem.read(at - 1, 2), None);
    assert_eq!(mem.read(u64::MAX - 2, 8), None);
    let t = Tables::load(&mem, at).unwrap();
    assert_eq!(describe(&t).unwrap().cpus, [mpidr(0), mpidr(1)]);
    // The EFI map's readable ranges: everything but MMIO, merged.
    let map = efi_map(3).map;
    let readable = kcore_acpi::memory::readable(&map).unwrap();
    assert!(readable.iter().all(|x| {
        !map.iter()
            .any(|d| d.ty == kcore_acpi::memory::efi_type::MMIO && x.contains(d.base))
    }));
    assert!(readable.iter().any(|x| x.contains(MEM_BASE)));
}

/// `Name (<name>, EisaId (<id>))` in AML.
fn aml_eisa(name: &[u8; 4], id: [u8; 4]) -> Vec<u8> {
    [&[0x08][..], name, &[0x0c], &id].concat()
}

/// `Name (<name>, "<id>")` in AML.
fn aml_string(name: &[u8; 4], id: &[u8]) -> Vec<u8> {
    [&[0x08][..], name, &[0x0d], id, &[0]].concat()
}

/// KServ's DSDT: the PCI host bridge and the IDs given (fw_cfg and
/// virtio-mmio here) renamed, the rest byte for byte; the FADT pointing at
/// it.
#[test]
fn kserv_aml_renames_the_devices_kcore_keeps() {
    let pnp0a08 = [0x41, 0xd0, 0x0a, 0x08];
    let pnp0a03 = [0x41, 0xd0, 0x0a, 0x03];
    let pnp0c02 = [0x41, 0xd0, 0x0c, 0x02];
    let body = [
        aml_string(b"_HID", b"ARMH0011"),
        aml_string(b"_HID", b"QEMU0002"),
        aml_string(b"_HID", b"LNRO0005"),
        aml_string(b"_HID", b"LNRO0005"),
        aml_eisa(b"_HID", pnp0a08),
        aml_eisa(b"_CID", pnp0a03),
        aml_eisa(b"_HID", pnp0c02),
        // QEMU's PCI0 names its IDs as strings.
        aml_string(b"_HID", b"PNP0A08"),
        aml_string(b"_CID", b"PNP0A03"),
        aml_string(b"_HID", b"PNP0C02"),
        // Not a _HID/_CID: left alone.
        aml_eisa(b"_UID", pnp0a08),
        aml_string(b"_STR", b"QEMU0002"),
    ]
    .concat();
    let dsdt = sdt(b"DSDT", 2, &body);
    let (out, renamed) = kcore_acpi::kserv_aml(&dsdt, &["QEMU0002", "LNRO0005"]).unwrap();
    assert_eq!(renamed, 7);
    assert_eq!(out.len(), dsdt.len());
    assert_eq!(out.iter().fold(0u8, |s, &b| s.wrapping_add(b)), 0);
    let expect = [
        aml_string(b"_HID", b"ARMH0011"),
        aml_string(b"_HID", b"KCOR0002"),
        aml_string(b"_HID", b"KCOR0005"),
        aml_string(b"_HID", b"KCOR0005"),
        aml_eisa(b"_HID", [0x2c, 0x72, 0x0a, 0x08]),
        aml_eisa(b"_CID", [0x2c, 0x72, 0x0a, 0x03]),
        aml_eisa(b"_HID", pnp0c02),
        aml_string(b"_HID", b"KCR0A08"),
        aml_string(b"_CID", b"KCR0A03"),
        aml_string(b"_HID", b"PNP0C02"),
        aml_eisa(b"_UID", pnp0a08),
        aml_string(b"_STR", b"QEMU0002"),
    ]
    .concat();
    assert_eq!(&out[36..], &expect[..]);
    assert_eq!(&out[10..36], &dsdt[10..36]);
    // Any ID given is renamed, EISA-encoded or not; the PCI host bridge's
    // always are.
    let (out, renamed) = kcore_acpi::kserv_aml(&dsdt, &["PNP0C02"]).unwrap();
    assert_eq!(renamed, 6);
    assert!(out.windows(7).any(|w| w == b"KCR0C02"));
    assert!(
        out.windows(4)
            .any(|w| w == [0x2c, 0x72, 0x0c, 0x02].as_slice())
    );
    assert!(out.windows(8).any(|w| w == b"QEMU0002"));
    // Bad input.
    let none: &[&str] = &[];
    assert!(kcore_acpi::kserv_aml(&dsdt[..30], none).is_err());
    let mut bad = dsdt.clone();
    bad[40] ^= 1;
    assert!(kcore_acpi::kserv_aml(&bad, none).is_err());
    // A truncated ID at the end of the table is left alone.
    let tail = sdt(b"DSDT", 2, &aml_string(b"_HID", b"QEMU0002")[..10]);
    assert_eq!(kcore_acpi::kserv_aml(&tail, &["QEMU0002"]).unwrap().1, 0);

    // The FADT: the DSDT it names, then a copy naming another.
    let mut f = fadt(true, false);
    put32(&mut f, 40, 0x7c43_7518);
    refix(&mut f);
    assert_eq!(kcore_acpi::fadt_dsdt(&f), Ok(0x7c43_7518));
    let moved = kcore_acpi::kserv_fadt(&f, 0x1_2345_6000).unwrap();
    assert_eq!(kcore_acpi::fadt_dsdt(&moved), Ok(0x1_2345_6000));
    assert_eq!(&moved[40..44], &[0; 4]);
    let low = kcore_acpi::kserv_fadt(&f, 0x7c34_0000).unwrap();
    assert_eq!(&low[40..44], &0x7c34_0000u32.to_le_bytes());
    assert_eq!(kcore_acpi::fadt_dsdt(&low), Ok(0x7c34_0000));
    // A FADT without X_DSDT cannot name a DSDT above 4 GiB.
    let mut short = f[..140].to_vec();
    put32(&mut short, 4, 140);
    refix(&mut short);
    assert!(kcore_acpi::kserv_fadt(&short, 0x1_0000_0000).is_err());
    assert_eq!(kcore_acpi::fadt_dsdt(&short), Ok(0x7c43_7518));
    let mut none = short.clone();
    put32(&mut none, 40, 0);
    refix(&mut none);
    assert!(kcore_acpi::fadt_dsdt(&none).is_err());
    // Random bytes never panic.
    let mut rng = Rng(7);
    for _ in 0..2000 {
        let mut t = dsdt.clone();
        for _ in 0..4 {
            let k = 36 + rng.below(t.len() - 36);
            t[k] = rng.next() as u8;
        }
        refix(&mut t);
        let (o, _) = kcore_acpi::kserv_aml(&t, &["QEMU0002", "LNRO0005"]).unwrap();
        assert_eq!(o.len(), t.len());
    }
}
