//! The device tree KServ sees: the edits of docs/boot-image.md are there, and
//! everything else is the loader's tree, byte for byte.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use common::*;
use kcore::addr::MemRange;
use kcore_boot::kserv_dt::{KservDtEdits, PSCI_COMPATIBLE, build, stub};
use kcore_boot::platform::{self, Conduit, DMA_MASTER_COMPATIBLES, DtError, EnableMethod};

const KCORE: [MemRange; 2] = [
    MemRange::new(0x4000_0000, 0x40_0000).unwrap(),
    MemRange::new(0x7f00_0000, 0x100_0000).unwrap(),
];
const INITRD: MemRange = MemRange::new(0x4820_0000, 0x12_3456).unwrap();
const ABI: u32 = 0x0000_0001;

fn edits<'a>(cmdline: Option<&'a str>, initrd: Option<MemRange>) -> KservDtEdits<'a> {
    KservDtEdits {
        kcore_regions: &KCORE,
        initrd,
        payload_cmdline: cmdline,
        abi_version: ABI,
        uefi_mmap_size: None,
    }
}

/// Whether the edits may change property `name` of node `path` of `orig`.
fn edited(orig: &Flat, path: &str, name: &str) -> bool {
    let is_psci = path == "/psci"
        || orig
            .prop(path, "compatible")
            .is_some_and(|c| c.starts_with(b"arm,psci"));
    let is_cpu = path.starts_with("/cpus/")
        && path.matches('/').count() == 2
        && orig.prop(path, "device_type") == Some(b"cpu\0");
    (path == "/chosen" && ["bootargs", "linux,initrd-start", "linux,initrd-end"].contains(&name))
        || (is_psci
            && [
                "compatible",
                "method",
                "cpu_on",
                "cpu_off",
                "migrate",
                "cpu_suspend",
            ]
            .contains(&name))
        || (is_cpu && ["enable-method", "cpu-release-addr"].contains(&name))
        || (path == "/hypervisor" && ["compatible", "kcore,abi-version"].contains(&name))
        || (is_kept(orig, path) && name == "status")
}

/// Whether node `path` of `orig` is a device KCore keeps (a GICv3 ITS or a
/// DMA master): disabled for KServ.
fn is_kept(orig: &Flat, path: &str) -> bool {
    orig.prop(path, "compatible").is_some_and(|c| {
        c.split(|&b| b == 0).any(|s| {
            s == b"arm,gic-v3-its" || DMA_MASTER_COMPATIBLES.iter().any(|m| m.as_bytes() == s)
        })
    })
}

/// Checks `out` = `build(orig, e)` against the specification of the edits.
/// `bootargs` is what `/chosen/bootargs` must be.
fn check(orig_blob: &[u8], out_blob: &[u8], e: &KservDtEdits<'_>, bootargs: Option<&str>) {
    let orig = flatten(orig_blob);
    let out = flatten(out_blob);

    // Header-level data is preserved.
    assert_eq!(out.reservations, orig.reservations);
    assert_eq!(out.boot_cpuid_phys, orig.boot_cpuid_phys);

    // Every original node is still there, in the same order; new nodes are
    // only the ones the edits add.
    let stale = |p: &str| {
        p.starts_with("/reserved-memory/")
            && orig.prop(p, "compatible") == Some(b"kcore,reserved-memory\0")
    };
    let orig_paths: Vec<&str> = orig.paths().into_iter().filter(|p| !stale(p)).collect();
    let kept: Vec<&str> = out
        .paths()
        .into_iter()
        .filter(|p| orig_paths.contains(p))
        .collect();
    assert_eq!(kept, orig_paths);
    for p in out.paths() {
        if !orig_paths.contains(&p) {
            let allowed = ["/reserved-memory", "/chosen", "/psci", "/hypervisor"].contains(&p)
                || p.starts_with("/reserved-memory/kcore@");
            assert!(allowed, "unexpected new node {p}");
        }
    }

    // Every property the edits do not concern is byte for byte the same.
    for path in &orig_paths {
        let (o, n) = (orig.props_map(path), out.props_map(path));
        for (name, value) in &o {
            if !edited(&orig, path, name) {
                assert_eq!(n.get(name), Some(value), "{path}:{name} changed");
            }
        }
        for name in n.keys() {
            assert!(
                o.contains_key(name) || edited(&orig, path, name),
                "{path}:{name} added"
            );
        }
    }

    // /reserved-memory/kcore@...
    let rm = out.props_map("/reserved-memory");
    let cells = |n: &str| rm.get(n).map(|v| be32(v, 0)).unwrap_or(0);
    let (ac, sc) = (cells("#address-cells"), cells("#size-cells"));
    if !orig.paths().contains(&"/reserved-memory") {
        assert_eq!(rm.get("ranges").map(Vec::len), Some(0));
        let root = orig.props_map("/");
        assert_eq!(rm.get("#address-cells"), root.get("#address-cells"));
        assert_eq!(rm.get("#size-cells"), root.get("#size-cells"));
    }
    for r in e.kcore_regions {
        let path = format!("/reserved-memory/kcore@{:x}", r.base());
        let node = out.props_map(&path);
        let mut reg = Vec::new();
        for (v, c) in [(r.base(), ac), (r.size(), sc)] {
            match c {
                1 => reg.extend_from_slice(&(v as u32).to_be_bytes()),
                2 => reg.extend_from_slice(&v.to_be_bytes()),
                _ => panic!("cells {c}"),
            }
        }
        assert_eq!(node.get("reg"), Some(&reg), "{path}");
        assert_eq!(node.get("no-map"), Some(&vec![]), "{path}");
        assert_eq!(
            node.get("compatible"),
            Some(&s("kcore,reserved-memory")),
            "{path}"
        );
        assert_eq!(node.len(), 3, "{path}");
    }

    // /chosen.
    let chosen = out.props_map("/chosen");
    match e.initrd {
        Some(i) => {
            assert_eq!(
                chosen.get("linux,initrd-start"),
                Some(&i.base().to_be_bytes().to_vec())
            );
            assert_eq!(
                chosen.get("linux,initrd-end"),
                Some(&(i.base() + i.size()).to_be_bytes().to_vec())
            );
        }
        None => {
            assert!(!chosen.contains_key("linux,initrd-start"));
            assert!(!chosen.contains_key("linux,initrd-end"));
        }
    }
    assert_eq!(chosen.get("bootargs"), bootargs.map(s).as_ref());

    // PSCI through SMC, no PSCI 0.1 ids, every CPU on PSCI.
    let psci_paths: Vec<&str> = out
        .paths()
        .into_iter()
        .filter(|p| {
            out.prop(p, "compatible")
                .is_some_and(|c| c.starts_with(b"arm,psci"))
        })
        .collect();
    assert!(!psci_paths.is_empty());
    for p in psci_paths {
        let n = out.props_map(p);
        assert_eq!(
            n.get("compatible").map(Vec::as_slice),
            Some(PSCI_COMPATIBLE)
        );
        assert_eq!(n.get("method"), Some(&s("smc")));
        for gone in ["cpu_on", "cpu_off", "migrate", "cpu_suspend"] {
            assert!(!n.contains_key(gone), "{p}:{gone}");
        }
    }
    for p in out.paths() {
        if p.starts_with("/cpus/") && out.prop(p, "device_type") == Some(b"cpu\0") {
            assert_eq!(out.prop(p, "enable-method"), Some(&b"psci\0"[..]), "{p}");
            assert_eq!(out.prop(p, "cpu-release-addr"), None, "{p}");
        }
    }

    // Every ITS and DMA master is KCore's: disabled for KServ.
    for p in orig.paths().into_iter().filter(|p| is_kept(&orig, p)) {
        assert_eq!(out.prop(p, "status"), Some(&b"disabled\0"[..]), "{p}");
    }

    // /hypervisor.
    let hyp = out.props_map("/hypervisor");
    assert_eq!(hyp.get("compatible"), Some(&s("kcore,hypervisor")));
    assert_eq!(
        hyp.get("kcore,abi-version"),
        Some(&e.abi_version.to_be_bytes().to_vec())
    );

    // KCore's own reader agrees.
    let p = platform::parse(out_blob).unwrap();
    for r in e.kcore_regions {
        assert!(p.reserved.iter().any(|x| x.contains_range(r)), "{r}");
    }
    assert_eq!(p.psci.map(|p| p.method), Some(Conduit::Smc));
    assert!(p.cpus.iter().all(|c| c.enable_method == EnableMethod::Psci));
    assert_eq!(p.bootargs.as_deref(), bootargs);

    // And so does dtc.
    match dtc_accepts(out_blob) {
        Some(r) => r.unwrap_or_else(|err| panic!("dtc refuses the output: {err}")),
        None => println!("note: dtc not on PATH, skipping the dtc check"),
    }
}

#[test]
fn qemu_trees_get_every_edit_and_nothing_else() {
    for name in QEMU_FIXTURES {
        let orig = fixture(name);
        for (cmdline, initrd) in [
            (Some("console=ttyAMA0 root=/dev/vda"), Some(INITRD)),
            (None, None),
        ] {
            let e = edits(cmdline, initrd);
            let out = build(&orig, &e).unwrap();
            check(&orig, &out, &e, cmdline);
            // A fresh /reserved-memory with the root's cells (2, 2 on virt).
            let flat = flatten(&out);
            assert_eq!(
                flat.prop("/reserved-memory/kcore@40000000", "reg"),
                Some(&[0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0][..])
            );
        }
    }
}

#[test]
fn pi4_shaped_tree_moves_to_psci() {
    let orig = fixture("pi4-like.dtb");
    let e = edits(Some("console=ttyAMA0"), None);
    let out = build(&orig, &e).unwrap();
    let loader = "coherent_pool=1M 8250.nr_uarts=1";
    check(&orig, &out, &e, Some(&format!("console=ttyAMA0 {loader}")));
    let flat = flatten(&out);
    // The existing /reserved-memory keeps its children; ours follow, with its
    // cells (2 address, 1 size).
    let rm: Vec<&str> = flat
        .paths()
        .into_iter()
        .filter(|p| p.starts_with("/reserved-memory/"))
        .collect();
    assert_eq!(
        rm,
        [
            "/reserved-memory/linux,cma",
            "/reserved-memory/nvram@3ef00000",
            "/reserved-memory/unused@3f000000",
            "/reserved-memory/kcore@40000000",
            "/reserved-memory/kcore@7f000000",
        ]
    );
    assert_eq!(
        flat.prop("/reserved-memory/kcore@7f000000", "reg"),
        Some(&[0, 0, 0, 0, 0x7f, 0, 0, 0, 0x01, 0, 0, 0][..])
    );
    // The loader's initrd properties go when the payload has none.
    assert_eq!(flat.prop("/chosen", "linux,initrd-start"), None);
    // Firmware-specific nodes survive.
    assert!(flat.node("/__overrides__").is_some() && flat.node("/__symbols__").is_some());
    // A /psci was created.
    assert_eq!(flat.props_map("/psci").len(), 2);
    let p = platform::parse(&out).unwrap();
    assert_eq!(p.cpus.len(), 4);
    assert_eq!(p.uart.map(|u| u.base), Some(0xfe21_5040));
}

/// A root with the given cells and whatever `body` adds.
fn tree(ac: u32, sc: u32, body: impl FnOnce(&mut vm_fdt::FdtWriter)) -> Vec<u8> {
    synth(|w| {
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", ac).unwrap();
        w.property_u32("#size-cells", sc).unwrap();
        body(w);
        w.end_node(root).unwrap();
    })
}

#[test]
fn bootargs_combine_payload_then_loader() {
    let cases: [(Option<&str>, Option<&str>, Option<&str>); 7] = [
        (
            Some("quiet"),
            Some("console=ttyAMA0"),
            Some("quiet console=ttyAMA0"),
        ),
        (Some("quiet"), None, Some("quiet")),
        (None, Some("console=ttyAMA0"), Some("console=ttyAMA0")),
        (None, None, None),
        (Some(""), Some("console=ttyAMA0"), Some("console=ttyAMA0")),
        (Some("quiet"), Some(""), Some("quiet")),
        (Some(""), None, None),
    ];
    for (payload, loader, expect) in cases {
        let orig = tree(2, 2, |w| {
            let c = w.begin_node("chosen").unwrap();
            if let Some(l) = loader {
                w.property_string("bootargs", l).unwrap();
            }
            w.end_node(c).unwrap();
        });
        let e = edits(payload, Some(INITRD));
        let out = build(&orig, &e).unwrap();
        let args = flatten(&out)
            .prop("/chosen", "bootargs")
            .map(<[u8]>::to_vec);
        match (loader, expect) {
            // An empty loader string the payload does not replace stays as it was.
            (Some(""), None) => assert_eq!(args, Some(vec![0])),
            _ => assert_eq!(args, expect.map(s), "{payload:?} + {loader:?}"),
        }
    }
}

#[test]
fn missing_nodes_are_created() {
    let orig = tree(1, 1, |w| {
        let cpus = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        let c = w.begin_node("cpu@0").unwrap();
        w.property_string("device_type", "cpu").unwrap();
        w.property_u32("reg", 0).unwrap();
        w.end_node(c).unwrap();
        w.end_node(cpus).unwrap();
    });
    let e = edits(Some("quiet"), Some(INITRD));
    let out = build(&orig, &e).unwrap();
    check(&orig, &out, &e, Some("quiet"));
    let flat = flatten(&out);
    assert_eq!(
        flat.paths(),
        [
            "/",
            "/cpus",
            "/cpus/cpu@0",
            "/reserved-memory",
            "/reserved-memory/kcore@40000000",
            "/reserved-memory/kcore@7f000000",
            "/chosen",
            "/psci",
            "/hypervisor",
        ]
    );
    assert_eq!(
        flat.prop("/reserved-memory/kcore@40000000", "reg"),
        Some(&[0x40, 0, 0, 0, 0, 0x40, 0, 0][..])
    );

    // With one address cell, a region above 4 GiB cannot be described.
    let high = [MemRange::new(0x1_0000_0000, 0x1000).unwrap()];
    let e = KservDtEdits {
        kcore_regions: &high,
        ..edits(None, None)
    };
    assert!(matches!(build(&orig, &e), Err(DtError::BadEdit(_))));
}

#[test]
fn existing_special_nodes_are_edited_in_place() {
    let orig = tree(2, 2, |w| {
        let fw = w.begin_node("firmware").unwrap();
        let p = w.begin_node("psci").unwrap();
        w.property_string("compatible", "arm,psci").unwrap();
        w.property_string("method", "hvc").unwrap();
        w.property_u32("cpu_on", 0x9500_0003).unwrap();
        w.property_phandle(7).unwrap();
        w.end_node(p).unwrap();
        w.end_node(fw).unwrap();
        let h = w.begin_node("hypervisor").unwrap();
        w.property_string("compatible", "xen,xen").unwrap();
        w.property_u32("other", 5).unwrap();
        w.end_node(h).unwrap();
        let rm = w.begin_node("reserved-memory").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        w.property_null("ranges").unwrap();
        let old = w.begin_node("kcore@30000000").unwrap();
        w.property_string("compatible", "kcore,reserved-memory")
            .unwrap();
        w.property_array_u64("reg", &[0x3000_0000, 0x1000]).unwrap();
        w.end_node(old).unwrap();
        w.end_node(rm).unwrap();
        let c = w.begin_node("chosen").unwrap();
        w.property_u64("linux,initrd-start", 1).unwrap();
        w.property_string("stdout-path", "/uart").unwrap();
        w.property_u64("linux,initrd-end", 2).unwrap();
        w.end_node(c).unwrap();
    });
    let e = edits(None, Some(INITRD));
    let out = build(&orig, &e).unwrap();
    check(&orig, &out, &e, None);
    let flat = flatten(&out);
    // No second PSCI node; the one under /firmware keeps its phandle.
    assert!(flat.node("/psci").is_none());
    assert_eq!(
        flat.prop("/firmware/psci", "phandle"),
        Some(&7u32.to_be_bytes()[..])
    );
    // The stale KCore reservation of an earlier boot is gone.
    assert!(flat.node("/reserved-memory/kcore@30000000").is_none());
    assert_eq!(
        flat.prop("/hypervisor", "other"),
        Some(&5u32.to_be_bytes()[..])
    );
    // Edited properties keep their place.
    let chosen: Vec<&str> = flat
        .node("/chosen")
        .unwrap()
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        chosen,
        ["linux,initrd-start", "stdout-path", "linux,initrd-end"]
    );
}

#[test]
fn inconsistent_edits_are_refused() {
    let orig = fixture("qemu-virt-gicv3-a72.dtb");
    // Empty or wrapping KCore and initramfs regions cannot be stated at all
    // (`MemRange` refuses them); overlapping KCore regions are refused here.
    for (base, size) in [
        (0x4000_0000, 0),
        (u64::MAX - 10, 0x100),
        (0x4800_0000, 0),
        (u64::MAX, 2),
    ] {
        assert_eq!(MemRange::new(base, size), None, "{base:#x} + {size:#x}");
    }
    let overlapping = [
        MemRange::new(0x4000_0000, 0x2000).unwrap(),
        MemRange::new(0x4000_1000, 0x10).unwrap(),
    ];
    let e = KservDtEdits {
        kcore_regions: &overlapping,
        ..edits(None, None)
    };
    let err = build(&orig, &e).unwrap_err();
    assert!(matches!(err, DtError::BadEdit(_)), "{overlapping:?}: {err}");
    let err = build(&orig, &edits(Some("a\0b"), None)).unwrap_err();
    assert!(matches!(err, DtError::BadEdit(_)), "{err}");
    // /reserved-memory that translates addresses is not something to add to.
    let orig = tree(2, 2, |w| {
        let rm = w.begin_node("reserved-memory").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 1).unwrap();
        w.property_array_u32("ranges", &[0, 0, 0x4000_0000, 0x1000_0000])
            .unwrap();
        w.end_node(rm).unwrap();
    });
    assert!(matches!(
        build(&orig, &edits(None, None)),
        Err(DtError::BadEdit(_))
    ));
}

#[test]
fn nop_tokens_in_the_loader_tree_are_dropped() {
    let mut orig = fixture("qemu-virt-gicv2-a72.dtb");
    let t = find_prop(&orig, "/chosen", "kaslr-seed");
    nop_out(&mut orig, t.at, t.next);
    let (begin, end) = find_node(&orig, "/flash@0");
    nop_out(&mut orig, begin, end);
    let e = edits(Some("quiet"), Some(INITRD));
    let out = build(&orig, &e).unwrap();
    check(&orig, &out, &e, Some("quiet"));
    let flat = flatten(&out);
    assert!(flat.node("/flash@0").is_none());
    assert_eq!(flat.prop("/chosen", "kaslr-seed"), None);
    assert!(tokens(&out).iter().all(|t| t.kind != 4));
}

#[test]
fn output_is_compact_and_well_formed() {
    let orig = fixture("qemu-virt-gicv3-a72.dtb");
    let out = build(&orig, &edits(Some("quiet"), Some(INITRD))).unwrap();
    assert_eq!(be32(&out, 0), 0xd00d_feed);
    assert_eq!(be32(&out, TOTALSIZE) as usize, out.len());
    assert_eq!(be32(&out, VERSION), 17);
    // Each property name is stored once in the strings block.
    let off = be32(&out, OFF_DT_STRINGS) as usize;
    let strings: Vec<&[u8]> = out[off..]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .collect();
    let mut unique = strings.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), strings.len());
    // Building again from the output changes nothing but what the edits touch.
    let again = build(&out, &edits(None, Some(INITRD))).unwrap();
    assert_eq!(flatten(&again), flatten(&out));
}

/// A two-socket server's tree: both ITSes are KCore's (disabled for
/// KServ), the redistributor regions and NUMA nodes pass through untouched.
#[test]
fn server_shaped_tree_keeps_every_its() {
    let orig = fixture("server-like.dtb");
    let e = edits(Some("console=ttyAMA0"), Some(INITRD));
    let out = build(&orig, &e).unwrap();
    check(&orig, &out, &e, Some("console=ttyAMA0"));
    let flat = flatten(&out);
    for its in [
        "/interrupt-controller@100000000000/its@100000040000",
        "/interrupt-controller@100000000000/its@200000040000",
    ] {
        assert_eq!(flat.prop(its, "status"), Some(&b"disabled\0"[..]), "{its}");
    }
}

/// A KCore tree as `kcore.efi` writes it on an ACPI machine: the marker and
/// the UEFI hand-off in `/chosen`, beside nodes KServ must not see.
fn acpi_loader_tree(bootargs: Option<&str>) -> Vec<u8> {
    efi_loader_tree(bootargs, true)
}

/// A KCore tree as `kcore.efi` writes it: the UEFI hand-off in `/chosen`,
/// with the ACPI marker if `acpi`.
fn efi_loader_tree(bootargs: Option<&str>, acpi: bool) -> Vec<u8> {
    tree(2, 2, |w| {
        let c = w.begin_node("chosen").unwrap();
        if let Some(a) = bootargs {
            w.property_string("bootargs", a).unwrap();
        }
        w.property_string("stdout-path", "/serial@9000000").unwrap();
        w.property_u64("linux,uefi-system-table", 0x5bfe_0018)
            .unwrap();
        w.property_u64("linux,uefi-mmap-start", 0x5a00_0000)
            .unwrap();
        w.property_u32("linux,uefi-mmap-size", 48 * 40).unwrap();
        w.property_u32("linux,uefi-mmap-desc-size", 48).unwrap();
        w.property_u32("linux,uefi-mmap-desc-ver", 1).unwrap();
        if acpi {
            w.property_null(platform::ACPI_MARKER).unwrap();
        }
        w.property_u32(platform::MMAP_CAPACITY_PROP, 48 * 56)
            .unwrap();
        w.end_node(c).unwrap();
        let m = w.begin_node("memory@40000000").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u64("reg", &[0x4000_0000, 0x4000_0000])
            .unwrap();
        w.end_node(m).unwrap();
        let h = w.begin_node("hypervisor").unwrap();
        w.end_node(h).unwrap();
    })
}

#[test]
fn acpi_stub_tree_holds_only_chosen() {
    let orig = acpi_loader_tree(Some("acpi=force"));
    let p = platform::parse(&orig).unwrap();
    assert!(p.kserv_stub);
    let map = p.efi_map.unwrap();
    assert_eq!(
        (map.start, map.size, map.desc_size, map.capacity),
        (0x5a00_0000, 48 * 40, 48, 48 * 56)
    );
    let e = edits(Some("quiet"), Some(INITRD));
    let out = flatten(&stub(&orig, &e, 48 * 42).unwrap());
    // Linux's dt_is_stub(): nothing but /chosen under the root.
    assert_eq!(out.paths(), ["/", "/chosen"]);
    assert!(out.reservations.is_empty());
    let chosen = out.props_map("/chosen");
    let names: Vec<&str> = chosen.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "bootargs",
            kcore_abi::dt::ABI_VERSION_PROP,
            "linux,initrd-end",
            "linux,initrd-start",
            "linux,uefi-mmap-desc-size",
            "linux,uefi-mmap-desc-ver",
            "linux,uefi-mmap-size",
            "linux,uefi-mmap-start",
            "linux,uefi-system-table",
        ]
    );
    assert_eq!(chosen["bootargs"], s("quiet acpi=force"));
    assert_eq!(chosen[kcore_abi::dt::ABI_VERSION_PROP], ABI.to_be_bytes());
    assert_eq!(chosen["linux,initrd-start"], INITRD.base().to_be_bytes());
    assert_eq!(chosen["linux,initrd-end"], INITRD.end().to_be_bytes());
    assert_eq!(
        chosen["linux,uefi-mmap-start"],
        0x5a00_0000u64.to_be_bytes()
    );
    assert_eq!(chosen["linux,uefi-mmap-desc-size"], 48u32.to_be_bytes());
    // The map's size is KCore's, after its splits.
    assert_eq!(chosen["linux,uefi-mmap-size"], (48u32 * 42).to_be_bytes());
    // Without a payload command line the loader's bootargs are kept; with
    // neither there is none; without an initramfs no initrd properties.
    let out = flatten(&stub(&orig, &edits(None, None), 0).unwrap());
    assert_eq!(
        out.prop("/chosen", "bootargs"),
        Some(s("acpi=force").as_slice())
    );
    assert_eq!(out.prop("/chosen", "linux,initrd-start"), None);
    let bare = acpi_loader_tree(None);
    let out = flatten(&stub(&bare, &edits(None, None), 0).unwrap());
    assert_eq!(out.prop("/chosen", "bootargs"), None);
    // A device-tree machine has no marker and no memory map.
    let dt = platform::parse(&fixture("qemu-virt-gicv3-a72.dtb")).unwrap();
    assert!(!dt.kserv_stub && dt.efi_map.is_none());
}

/// `kcore.efi` in device-tree mode: the firmware's whole tree, its
/// `/chosen` with the UEFI hand-off and the loader's capacity property.
#[test]
fn efi_device_tree_keeps_the_uefi_hand_off_with_kcores_map_size() {
    let orig = efi_loader_tree(None, false);
    let p = platform::parse(&orig).unwrap();
    assert!(!p.kserv_stub);
    assert!(p.efi_map.is_some());
    let e = KservDtEdits {
        uefi_mmap_size: Some(48 * 42),
        ..edits(None, None)
    };
    let out = flatten(&build(&orig, &e).unwrap());
    // The whole tree, not a stub: KServ reads the devices from it.
    assert!(out.paths().contains(&"/memory@40000000"));
    assert!(out.paths().contains(&"/hypervisor"));
    assert_eq!(
        out.prop("/chosen", "stdout-path"),
        Some(s("/serial@9000000").as_slice())
    );
    let chosen = out.props_map("/chosen");
    assert_eq!(
        chosen["linux,uefi-system-table"],
        0x5bfe_0018u64.to_be_bytes()
    );
    assert_eq!(
        chosen["linux,uefi-mmap-start"],
        0x5a00_0000u64.to_be_bytes()
    );
    assert_eq!(chosen["linux,uefi-mmap-desc-size"], 48u32.to_be_bytes());
    // The map's size is KCore's, after its splits; the loader's own
    // property does not reach KServ.
    assert_eq!(chosen["linux,uefi-mmap-size"], (48u32 * 42).to_be_bytes());
    assert!(!chosen.contains_key(platform::MMAP_CAPACITY_PROP));
    assert!(!chosen.contains_key(platform::ACPI_MARKER));
    // Without UEFI nothing of the kind is added.
    let plain = flatten(&build(&fixture("qemu-virt-gicv3-a72.dtb"), &edits(None, None)).unwrap());
    assert!(
        plain
            .props_map("/chosen")
            .keys()
            .all(|k| !k.starts_with("linux,uefi-"))
    );
}

/// A `/chosen` with a memory map of 480 bytes at 0x5a00_0000 and the
/// buffer's `capacity`, if any.
fn mmap_tree(capacity: Option<u32>) -> Vec<u8> {
    tree(2, 2, |w| {
        let c = w.begin_node("chosen").unwrap();
        w.property_u64("linux,uefi-mmap-start", 0x5a00_0000)
            .unwrap();
        w.property_u32("linux,uefi-mmap-size", 480).unwrap();
        w.property_u32("linux,uefi-mmap-desc-size", 48).unwrap();
        if let Some(c) = capacity {
            w.property_u32(platform::MMAP_CAPACITY_PROP, c).unwrap();
        }
        w.end_node(c).unwrap();
    })
}

#[test]
fn efi_map_properties_come_together() {
    let capacity = |t: &[u8]| platform::parse(t).unwrap().efi_map.unwrap().capacity;
    assert_eq!(capacity(&mmap_tree(Some(960))), 960);
    // No capacity: the map's own size (another loader, no room to split).
    assert_eq!(capacity(&mmap_tree(None)), 480);
    // Less than the map.
    assert!(platform::parse(&mmap_tree(Some(96))).is_err());
    let short = tree(2, 2, |w| {
        let c = w.begin_node("chosen").unwrap();
        w.property_u32("linux,uefi-mmap-start", 0x5a00_0000)
            .unwrap();
        w.end_node(c).unwrap();
    });
    assert!(platform::parse(&short).is_err());
}
