//! Platform discovery against real QEMU device trees, a Raspberry Pi 4
//! shaped tree, and synthetic trees for the corner cases.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use common::*;
use kcore::addr::MemRange;
use kcore_boot::platform::{
    Conduit, Cpu, DtError, EnableMethod, Gic, GicVersion, MINI_UART_COMPATIBLE, Psci, Psci01Ids,
    Uart, UartKind, parse,
};

const fn r(base: u64, size: u64) -> MemRange {
    MemRange::new(base, size).unwrap()
}

fn qemu_cpus() -> Vec<Cpu> {
    (0..4)
        .map(|mpidr| Cpu {
            mpidr,
            enable_method: EnableMethod::Psci,
        })
        .collect()
}

const QEMU_PSCI: Psci = Psci {
    method: Conduit::Smc,
    v0_1_ids: Some(Psci01Ids {
        cpu_suspend: Some(0xc400_0001),
        cpu_off: Some(0x8400_0002),
        cpu_on: Some(0xc400_0003),
        migrate: Some(0xc400_0005),
    }),
};

fn check_qemu_common(p: &kcore_boot::Platform) {
    assert_eq!((p.address_cells, p.size_cells), (2, 2));
    assert_eq!(p.memory, [r(0x4000_0000, 1 << 30)]);
    assert_eq!(p.reserved, []);
    assert_eq!(p.cpus, qemu_cpus());
    assert_eq!(
        p.uart,
        Some(Uart {
            base: 0x0900_0000,
            size: 0x1000,
            kind: UartKind::Pl011,
        })
    );
    assert_eq!(p.psci, Some(QEMU_PSCI));
    assert_eq!(p.bootargs, None);
}

#[test]
fn qemu_virt_gicv3() {
    for name in ["qemu-virt-gicv3-a72.dtb", "qemu-virt-gicv3-max.dtb"] {
        let p = parse(&fixture(name)).unwrap();
        check_qemu_common(&p);
        assert_eq!(
            p.gic,
            Some(Gic {
                version: GicVersion::V3,
                dist: r(0x0800_0000, 0x1_0000),
                redist: vec![r(0x080a_0000, 0xf6_0000)],
                cpu_if: None,
                hyp_if: None,
                vcpu_if: None,
                maintenance_irq: Some(25),
                // Behind the GIC node's `ranges`.
                its: vec![r(0x0808_0000, 0x2_0000)],
            }),
            "{name}"
        );
        // fw_cfg, 32 virtio-mmio transports (merged), the PCIe ECAM.
        assert_eq!(
            p.dma_masters,
            [
                r(0x0902_0000, 0x18),
                r(0x0a00_0000, 0x4000),
                r(0x40_1000_0000, 0x1000_0000)
            ],
            "{name}"
        );
    }
}

#[test]
fn qemu_virt_gicv2() {
    let p = parse(&fixture("qemu-virt-gicv2-a72.dtb")).unwrap();
    check_qemu_common(&p);
    assert_eq!(
        p.gic,
        Some(Gic {
            version: GicVersion::V2,
            dist: r(0x0800_0000, 0x1_0000),
            redist: vec![],
            cpu_if: Some(r(0x0801_0000, 0x1_0000)),
            hyp_if: Some(r(0x0803_0000, 0x1_0000)),
            vcpu_if: Some(r(0x0804_0000, 0x1_0000)),
            maintenance_irq: Some(25),
            its: vec![],
        })
    );
}

#[test]
fn pi4_shaped_tree() {
    let p = parse(&fixture("pi4-like.dtb")).unwrap();
    assert_eq!((p.address_cells, p.size_cells), (2, 1));
    // Two touching nodes merged, a zero-sized entry and a disabled node dropped.
    assert_eq!(p.memory, [r(0, 0x4000_0000), r(0x1_0000_0000, 0x8000_0000)]);
    // /memreserve/ and nvram; the dynamic CMA pool and a disabled node are not.
    assert_eq!(
        p.reserved,
        [
            r(0, 0x1000),
            r(0x3e00_0000, 0x1_0000),
            r(0x3ef0_0000, 0x1000)
        ]
    );
    let release = [0xd8, 0xe0, 0xe8, 0xf0];
    let cpus: Vec<Cpu> = (0..4)
        .map(|i| Cpu {
            mpidr: i as u64,
            enable_method: EnableMethod::SpinTable {
                release_addr: release[i],
            },
        })
        .collect();
    assert_eq!(p.cpus, cpus);
    // Behind /soc's ranges: 0x4004_1000 -> 0xff84_1000.
    assert_eq!(
        p.gic,
        Some(Gic {
            version: GicVersion::V2,
            dist: r(0xff84_1000, 0x1000),
            redist: vec![],
            cpu_if: Some(r(0xff84_2000, 0x2000)),
            hyp_if: Some(r(0xff84_4000, 0x2000)),
            vcpu_if: Some(r(0xff84_6000, 0x2000)),
            maintenance_irq: Some(25),
            its: vec![],
        })
    );
    // stdout-path names the mini UART through the `serial1` alias, behind
    // /soc's ranges: 0x7e21_5040 -> 0xfe21_5040.
    assert_eq!(
        p.uart,
        Some(Uart {
            base: 0xfe21_5040,
            size: 0x40,
            kind: UartKind::MiniUart,
        })
    );
    assert_eq!(p.psci, None);
    assert_eq!(
        p.bootargs.as_deref(),
        Some("coherent_pool=1M 8250.nr_uarts=1")
    );
    // No /psci and spin-table secondaries: KCore starts them itself.
    assert!(p.spin_table(0));
}

#[test]
fn spin_table_only_without_psci() {
    // QEMU virt: PSCI CPUs and a /psci node.
    let p = parse(&fixture("qemu-virt-gicv3-a72.dtb")).unwrap();
    assert!(!p.spin_table(0));
    // A Pi with TF-A as its armstub: a /psci node, so the firmware path.
    let mut p = parse(&fixture("pi4-like.dtb")).unwrap();
    p.psci = Some(QEMU_PSCI);
    assert!(!p.spin_table(0));
    // One secondary with another method: not a spin-table platform.
    let mut p = parse(&fixture("pi4-like.dtb")).unwrap();
    p.cpus[2].enable_method = EnableMethod::Other;
    assert!(!p.spin_table(0));
    // The boot CPU's own method does not matter; a lone CPU has nothing to
    // release.
    let mut p = parse(&fixture("pi4-like.dtb")).unwrap();
    p.cpus[0].enable_method = EnableMethod::Other;
    assert!(p.spin_table(0));
    p.cpus.truncate(1);
    assert!(!p.spin_table(0));
}

#[test]
fn pm_watchdog_behind_soc_ranges() {
    // The shape of Debian's bcm2711-rpi-4-b.dtb: the PM block at
    // 0x7e100000 on the bus, 0xfe100000 for the CPU.
    let dtb = tree(|w| {
        let soc = w.begin_node("soc").unwrap();
        w.property_string("compatible", "simple-bus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 1).unwrap();
        w.property_array_u32("ranges", &[0x7e00_0000, 0, 0xfe00_0000, 0x180_0000])
            .unwrap();
        let wd = w.begin_node("watchdog@7e100000").unwrap();
        w.property_string_list(
            "compatible",
            vec!["brcm,bcm2711-pm".into(), "brcm,bcm2835-pm-wdt".into()],
        )
        .unwrap();
        w.property_array_u32("reg", &[0x7e10_0000, 0x114, 0x7e00_a000, 0x24])
            .unwrap();
        w.end_node(wd).unwrap();
        w.end_node(soc).unwrap();
    });
    assert_eq!(
        parse(&dtb).unwrap().pm_watchdog,
        Some(r(0xfe10_0000, 0x114))
    );
    assert_eq!(
        parse(&fixture("qemu-virt-gicv3-a72.dtb"))
            .unwrap()
            .pm_watchdog,
        None
    );
}

/// A root with `#address-cells = 2`, `#size-cells = 2` and whatever `body`
/// adds.
fn tree(body: impl FnOnce(&mut vm_fdt::FdtWriter)) -> Vec<u8> {
    synth(|w| {
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        body(w);
        w.end_node(root).unwrap();
    })
}

fn pl011(w: &mut vm_fdt::FdtWriter, name: &str, base: u64) {
    let n = w.begin_node(name).unwrap();
    w.property_string_list(
        "compatible",
        vec!["arm,pl011".into(), "arm,primecell".into()],
    )
    .unwrap();
    w.property_array_u64("reg", &[base, 0x1000]).unwrap();
    w.end_node(n).unwrap();
}

#[test]
fn stdout_path_selects_the_console_pl011() {
    for stdout in [
        "serial1:115200n8",
        "/pl011@9040000",
        "/pl011@9040000:9600",
        "serial1",
    ] {
        let dtb = tree(|w| {
            pl011(w, "pl011@9000000", 0x0900_0000);
            pl011(w, "pl011@9040000", 0x0904_0000);
            let a = w.begin_node("aliases").unwrap();
            w.property_string("serial0", "/pl011@9000000").unwrap();
            w.property_string("serial1", "/pl011@9040000").unwrap();
            w.end_node(a).unwrap();
            let c = w.begin_node("chosen").unwrap();
            w.property_string("stdout-path", stdout).unwrap();
            w.end_node(c).unwrap();
        });
        let p = parse(&dtb).unwrap();
        assert_eq!(
            p.uart,
            Some(Uart {
                base: 0x0904_0000,
                size: 0x1000,
                kind: UartKind::Pl011,
            }),
            "{stdout}"
        );
    }
    // An alias that names itself, or nothing, falls back to the first PL011.
    for stdout in ["serial9", "loop", "/nowhere"] {
        let dtb = tree(|w| {
            let a = w.begin_node("aliases").unwrap();
            w.property_string("loop", "loop").unwrap();
            w.end_node(a).unwrap();
            pl011(w, "pl011@9000000", 0x0900_0000);
            let c = w.begin_node("chosen").unwrap();
            w.property_string("stdout-path", stdout).unwrap();
            w.end_node(c).unwrap();
        });
        assert_eq!(
            parse(&dtb).unwrap().uart.map(|u| u.base),
            Some(0x0900_0000),
            "{stdout}"
        );
    }
}

#[test]
fn empty_device_reg_entries_are_refused_and_empty_memory_dropped() {
    // A device's entries are told apart by position, so an empty one is an
    // error rather than left out.
    let dtb = tree(|w| {
        let n = w.begin_node("pl011@9000000").unwrap();
        w.property_string("compatible", "arm,pl011").unwrap();
        w.property_array_u64("reg", &[0x0900_0000, 0]).unwrap();
        w.end_node(n).unwrap();
    });
    let err = parse(&dtb).unwrap_err();
    assert!(
        matches!(
            err,
            DtError::BadProperty {
                property: "reg",
                ..
            }
        ),
        "{err}"
    );
    // A memory node's empty entry describes nothing.
    let dtb = tree(|w| {
        let n = w.begin_node("memory@40000000").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u64("reg", &[0x4000_0000, 0, 0x8000_0000, 0x1000])
            .unwrap();
        w.end_node(n).unwrap();
    });
    assert_eq!(parse(&dtb).unwrap().memory, [r(0x8000_0000, 0x1000)]);
}

#[test]
fn console_without_a_driver_falls_back_to_the_first_pl011() {
    // stdout-path names an 8250 through an alias: KCore has no driver for
    // it, so the first PL011 is the console; with a mini UART named, it is.
    for (stdout_compat, want) in [
        ("ns16550a", (0x0900_0000, UartKind::Pl011)),
        (MINI_UART_COMPATIBLE, (0x7e21_5040, UartKind::MiniUart)),
    ] {
        let dtb = tree(|w| {
            pl011(w, "pl011@9000000", 0x0900_0000);
            let n = w.begin_node("serial@7e215040").unwrap();
            w.property_string("compatible", stdout_compat).unwrap();
            w.property_array_u64("reg", &[0x7e21_5040, 0x40]).unwrap();
            w.end_node(n).unwrap();
            let a = w.begin_node("aliases").unwrap();
            w.property_string("serial1", "/serial@7e215040").unwrap();
            w.end_node(a).unwrap();
            let c = w.begin_node("chosen").unwrap();
            w.property_string("stdout-path", "serial1:115200n8")
                .unwrap();
            w.end_node(c).unwrap();
        });
        let u = parse(&dtb).unwrap().uart.unwrap();
        assert_eq!((u.base, u.kind), want, "{stdout_compat}");
    }
}

#[test]
fn disabled_pl011_is_not_the_fallback() {
    let dtb = tree(|w| {
        let n = w.begin_node("pl011@1000").unwrap();
        w.property_string("compatible", "arm,pl011").unwrap();
        w.property_string("status", "disabled").unwrap();
        w.property_array_u64("reg", &[0x1000, 0x1000]).unwrap();
        w.end_node(n).unwrap();
        pl011(w, "pl011@2000", 0x2000);
    });
    assert_eq!(parse(&dtb).unwrap().uart.map(|u| u.base), Some(0x2000));
}

fn psci_node(w: &mut vm_fdt::FdtWriter, compat: &[&str], method: Option<&str>) {
    let n = w.begin_node("psci").unwrap();
    w.property_string_list("compatible", compat.iter().map(|s| s.to_string()).collect())
        .unwrap();
    if let Some(m) = method {
        w.property_string("method", m).unwrap();
    }
    w.end_node(n).unwrap();
}

#[test]
fn psci_variants() {
    let dtb = tree(|w| psci_node(w, &["arm,psci-0.2"], Some("hvc")));
    assert_eq!(
        parse(&dtb).unwrap().psci,
        Some(Psci {
            method: Conduit::Hvc,
            v0_1_ids: None
        })
    );

    let dtb = tree(|w| {
        let n = w.begin_node("psci").unwrap();
        w.property_string("compatible", "arm,psci").unwrap();
        w.property_string("method", "smc").unwrap();
        w.property_u32("cpu_on", 0x8400_0003).unwrap();
        w.end_node(n).unwrap();
    });
    let ids = Psci01Ids {
        cpu_on: Some(0x8400_0003),
        ..Psci01Ids::default()
    };
    assert_eq!(
        parse(&dtb).unwrap().psci,
        Some(Psci {
            method: Conduit::Smc,
            v0_1_ids: Some(ids)
        })
    );

    let dtb = tree(|w| psci_node(w, &["arm,psci-1.0"], Some("svc")));
    assert!(matches!(
        parse(&dtb),
        Err(DtError::BadProperty {
            property: "method",
            ..
        })
    ));
    let dtb = tree(|w| psci_node(w, &["arm,psci-1.0"], None));
    assert!(matches!(
        parse(&dtb),
        Err(DtError::MissingProperty {
            property: "method",
            ..
        })
    ));
}

#[test]
fn gicv3_with_two_redistributor_regions_and_a_cpu_interface() {
    let dtb = tree(|w| {
        let n = w.begin_node("interrupt-controller@8000000").unwrap();
        w.property_string("compatible", "arm,gic-v3").unwrap();
        w.property_u32("#redistributor-regions", 2).unwrap();
        let regs = [
            0x800_0000,
            0x1_0000,
            0x80a_0000,
            0x20_0000,
            0x900_0000,
            0x20_0000,
            0x1000_0000,
            0x2000,
            0x1001_0000,
            0x2000,
            0x1002_0000,
            0x2000,
        ];
        w.property_array_u64("reg", &regs).unwrap();
        w.property_array_u32("interrupts", &[1, 9, 4]).unwrap();
        w.end_node(n).unwrap();
    });
    let g = parse(&dtb).unwrap().gic.unwrap();
    assert_eq!(
        g.redist,
        [r(0x80a_0000, 0x20_0000), r(0x900_0000, 0x20_0000)]
    );
    assert_eq!(g.cpu_if, Some(r(0x1000_0000, 0x2000)));
    assert_eq!(g.hyp_if, Some(r(0x1001_0000, 0x2000)));
    assert_eq!(g.vcpu_if, Some(r(0x1002_0000, 0x2000)));

    // Fewer reg entries than #redistributor-regions promises.
    let dtb = tree(|w| {
        let n = w.begin_node("intc").unwrap();
        w.property_string("compatible", "arm,gic-v3").unwrap();
        w.property_u32("#redistributor-regions", 3).unwrap();
        w.property_array_u64("reg", &[0x800_0000, 0x1_0000, 0x80a_0000, 0x20_0000])
            .unwrap();
        w.end_node(n).unwrap();
    });
    assert!(matches!(
        parse(&dtb),
        Err(DtError::BadProperty {
            property: "reg",
            ..
        })
    ));
    // A GICv2 without its CPU interface.
    let dtb = tree(|w| {
        let n = w.begin_node("intc").unwrap();
        w.property_string("compatible", "arm,gic-400").unwrap();
        w.property_array_u64("reg", &[0x800_0000, 0x1000]).unwrap();
        w.end_node(n).unwrap();
    });
    assert!(matches!(
        parse(&dtb),
        Err(DtError::BadProperty {
            property: "reg",
            ..
        })
    ));
}

#[test]
fn cpus_with_two_address_cells_and_other_methods() {
    let dtb = tree(|w| {
        let cpus = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        for (name, mpidr, method) in [
            ("cpu@0", 0u64, None),
            ("cpu@100", 0x100, Some("psci")),
            ("cpu@1_0000_0000", 1 << 32, Some("acpi")),
        ] {
            let c = w.begin_node(name).unwrap();
            w.property_string("device_type", "cpu").unwrap();
            w.property_u64("reg", mpidr).unwrap();
            if let Some(m) = method {
                w.property_string("enable-method", m).unwrap();
            }
            w.end_node(c).unwrap();
        }
        let m = w.begin_node("cpu-map").unwrap();
        w.end_node(m).unwrap();
        w.end_node(cpus).unwrap();
    });
    let p = parse(&dtb).unwrap();
    let methods: Vec<_> = p.cpus.iter().map(|c| (c.mpidr, c.enable_method)).collect();
    assert_eq!(
        methods,
        [
            (0, EnableMethod::Other),
            (0x100, EnableMethod::Psci),
            (1 << 32, EnableMethod::Other)
        ]
    );

    // A spin-table CPU without (or with a short) cpu-release-addr.
    for release in [None, Some(0xd8u32)] {
        let dtb = tree(|w| {
            let cpus = w.begin_node("cpus").unwrap();
            w.property_u32("#address-cells", 1).unwrap();
            w.property_u32("#size-cells", 0).unwrap();
            let c = w.begin_node("cpu@0").unwrap();
            w.property_string("device_type", "cpu").unwrap();
            w.property_u32("reg", 0).unwrap();
            w.property_string("enable-method", "spin-table").unwrap();
            if let Some(a) = release {
                w.property_u32("cpu-release-addr", a).unwrap();
            }
            w.end_node(c).unwrap();
            w.end_node(cpus).unwrap();
        });
        let e = parse(&dtb).unwrap_err();
        assert!(format!("{e}").contains("cpu-release-addr"), "{e}");
    }
}

/// A PL011 under a bus `bus` with the given cells and ranges.
fn bus_tree(ranges: Option<&[u32]>, bus_ac: u32, reg: &[u32]) -> Vec<u8> {
    tree(|w| {
        let b = w.begin_node("soc").unwrap();
        w.property_string("compatible", "simple-bus").unwrap();
        w.property_u32("#address-cells", bus_ac).unwrap();
        w.property_u32("#size-cells", 1).unwrap();
        if let Some(r) = ranges {
            w.property_array_u32("ranges", r).unwrap();
        }
        let u = w.begin_node("serial@1000").unwrap();
        w.property_string("compatible", "arm,pl011").unwrap();
        w.property_array_u32("reg", reg).unwrap();
        w.end_node(u).unwrap();
        w.end_node(b).unwrap();
    })
}

#[test]
fn address_translation_through_buses() {
    // Identity (`ranges;`).
    let p = parse(&bus_tree(Some(&[]), 1, &[0x1000, 0x100])).unwrap();
    assert_eq!(
        p.uart,
        Some(Uart {
            base: 0x1000,
            size: 0x100,
            kind: UartKind::Pl011,
        })
    );
    // Second of two windows; child 1 cell, parent 2 cells, size 1 cell.
    let ranges = [0x0, 0x0, 0x8000_0000, 0x1000, 0x1000, 0x4, 0x0, 0x1_0000];
    let p = parse(&bus_tree(Some(&ranges), 1, &[0x1800, 0x100])).unwrap();
    assert_eq!(
        p.uart,
        Some(Uart {
            base: 0x4_0000_0800,
            size: 0x100,
            kind: UartKind::Pl011,
        })
    );
    // A region that crosses the end of its window is refused.
    let e = parse(&bus_tree(Some(&ranges), 1, &[0x1_0f80, 0x100])).unwrap_err();
    assert!(
        matches!(
            e,
            DtError::Untranslatable {
                address: 0x1_0f80,
                ..
            }
        ),
        "{e}"
    );
    // No ranges at all: the bus does not map its children.
    let e = parse(&bus_tree(None, 1, &[0x1000, 0x100])).unwrap_err();
    assert!(matches!(e, DtError::Untranslatable { .. }), "{e}");
    // A 3-cell bus (PCI-like) is not decoded.
    let e = parse(&bus_tree(Some(&[]), 3, &[0, 0, 0x1000, 0x100])).unwrap_err();
    assert!(
        matches!(
            e,
            DtError::UnsupportedCells {
                address_cells: 3,
                ..
            }
        ),
        "{e}"
    );
    // A reg that is not whole entries.
    let e = parse(&bus_tree(Some(&[]), 1, &[0x1000, 0x100, 0x2000])).unwrap_err();
    assert!(
        matches!(
            e,
            DtError::BadProperty {
                property: "reg",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn memory_that_wraps_is_refused() {
    let dtb = tree(|w| {
        let m = w.begin_node("memory@0").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u64("reg", &[u64::MAX - 0xfff, 0x2000])
            .unwrap();
        w.end_node(m).unwrap();
    });
    let e = parse(&dtb).unwrap_err();
    assert!(matches!(e, DtError::RegionOverflow { .. }), "{e}");
    assert!(format!("{e}").contains("/memory@0"), "{e}");
}

#[test]
fn nop_tokens_are_tolerated() {
    // libfdt deletes by overwriting with FDT_NOP; the `fdt` crate trips over
    // NOPs between properties and nodes, so the guard strips them first.
    let mut dtb = fixture("qemu-virt-gicv3-a72.dtb");
    let t = find_prop(&dtb, "/psci", "cpu_on");
    nop_out(&mut dtb, t.at, t.next);
    let (begin, end) = find_node(&dtb, "/pmu");
    nop_out(&mut dtb, begin, end);
    let t = find_prop(&dtb, "/cpus/cpu@1", "compatible");
    nop_out(&mut dtb, t.at, t.next);
    let p = parse(&dtb).unwrap();
    assert_eq!(p.psci.unwrap().v0_1_ids.unwrap().cpu_on, None);
    assert_eq!(p.cpus, qemu_cpus());
    assert_eq!(p.memory, [r(0x4000_0000, 1 << 30)]);
}

#[test]
fn sanitized_copy_strips_nops_and_never_panics() {
    use kcore_boot::platform::sanitized_copy;
    let mut dtb = fixture("qemu-virt-gicv3-a72.dtb");
    let t = find_prop(&dtb, "/psci", "cpu_on");
    nop_out(&mut dtb, t.at, t.next);
    let (begin, end) = find_node(&dtb, "/pmu");
    nop_out(&mut dtb, begin, end);
    let mut out = vec![0xA5u8; dtb.len() + 64];
    let n = sanitized_copy(&dtb, &mut out).unwrap();
    assert_eq!(n, dtb.len());
    let copy = &out[..n];
    // No NOP token is left: the raw `fdt` crate, which trips over them, now
    // sees the same tree the guarded parser sees.
    let raw = fdt::Fdt::new(copy).unwrap();
    assert!(raw.find_all_nodes("/pmu").next().is_none());
    assert_eq!(parse(copy).unwrap(), parse(&dtb).unwrap());
    // A copy of a NOP-free tree is byte-identical.
    let clean = fixture("qemu-virt-gicv2-a72.dtb");
    let mut out = vec![0u8; clean.len()];
    assert_eq!(sanitized_copy(&clean, &mut out).unwrap(), clean.len());
    assert_eq!(out, clean);
    // Too small an output buffer, or a damaged blob: an error.
    assert!(sanitized_copy(&clean, &mut out[..100]).is_err());
    for cut in [0, 3, 40, clean.len() / 2, clean.len() - 1] {
        assert!(
            sanitized_copy(&clean[..cut], &mut out).is_err(),
            "cut at {cut}"
        );
    }
    let mut rng = 0x1234_5678_9abc_def0u64;
    for _ in 0..2000 {
        let mut m = dtb.clone();
        for _ in 0..3 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let i = (rng as usize) % m.len().min(0x2000);
            m[i] ^= (rng >> 40) as u8 | 1;
        }
        let mut out = vec![0u8; m.len()];
        if let Ok(n) = sanitized_copy(&m, &mut out) {
            let _ = parse(&out[..n]);
        }
    }
}

#[test]
fn an_empty_tree_describes_nothing() {
    let p = parse(&tree(|_| {})).unwrap();
    assert!(p.memory.is_empty() && p.cpus.is_empty() && p.reserved.is_empty());
    assert_eq!(
        (p.gic, p.uart, p.psci, p.bootargs),
        (None, None, None, None)
    );
}

/// A two-socket server's shape (`server-like.dts`): 8 CPUs in two NUMA
/// nodes, a redistributor region per CPU, two ITSes, RAM in three banks.
/// KCore reads all of it, and the per-CPU regions join into one trapped
/// run per socket (`kcore::host_stage2::TrapFrames::joined`).
#[test]
fn server_shaped_tree() {
    use kcore::host_stage2::TrapFrames;
    let p = parse(&fixture("server-like.dtb")).unwrap();
    let mpidrs: Vec<u64> = p.cpus.iter().map(|c| c.mpidr).collect();
    assert_eq!(mpidrs, [0, 1, 2, 3, 0x1_0000, 0x1_0001, 0x1_0002, 0x1_0003]);
    assert!(p.cpus.iter().all(|c| c.enable_method == EnableMethod::Psci));
    assert_eq!(
        p.memory,
        [
            r(0x8000_0000, 0x7c00_0000),
            r(0x8_8000_0000, 0x3_8000_0000),
            r(0x8800_0000_0000, 0x4_0000_0000)
        ]
    );
    assert_eq!(p.reserved, [r(0xfbf0_0000, 0x10_0000)]);
    let gic = p.gic.as_ref().unwrap();
    assert_eq!(gic.version, GicVersion::V3);
    assert_eq!(gic.dist, r(0x1000_0000_0000, 0x1_0000));
    let bases: Vec<u64> = gic.redist.iter().map(|r| r.base()).collect();
    let socket = |hi: u64| (0..4).map(move |i| hi | (0x10_0000 + i * 0x2_0000));
    let want: Vec<u64> = socket(0x1000_0000_0000)
        .chain(socket(0x2000_0000_0000))
        .collect();
    assert_eq!(bases, want);
    assert!(gic.redist.iter().all(|r| r.size() == 0x2_0000));
    assert_eq!(
        gic.its,
        [r(0x1000_0004_0000, 0x2_0000), r(0x2000_0004_0000, 0x2_0000)]
    );
    assert_eq!(p.psci.map(|s| s.method), Some(Conduit::Smc));
    assert_eq!(p.uart.map(|u| u.base), Some(0x1000_0200_0000));
    // Trapped as KCore traps them at boot: one run per socket.
    let mut runs: Vec<TrapFrames> = Vec::new();
    for region in &gic.redist {
        let t = TrapFrames {
            region: *region,
            stride: 0x2_0000,
            offsets: [Some(0), None],
        };
        match runs.last().and_then(|last| last.joined(&t)) {
            Some(j) => *runs.last_mut().unwrap() = j,
            None => runs.push(t),
        }
    }
    let spans: Vec<MemRange> = runs.iter().map(|t| t.region).collect();
    assert_eq!(
        spans,
        [r(0x1000_0010_0000, 0x8_0000), r(0x2000_0010_0000, 0x8_0000)]
    );
}
