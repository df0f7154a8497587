//! The ITS model on its own: its registers as a guest and a VMM see them,
//! commands applied with KVM's checks, MSIs translated into LPIs, and LPIs
//! reaching the list registers and folding back as edges.

extern crate std;

use super::super::IRQ_SLOTS;
use super::*;
use kcore_abi::run::irq;
use std::boxed::Box;
use std::vec::Vec;

const D: u64 = 0x0800_0000;
const R: u64 = 0x080A_0000;
const ITS: u64 = 0x0808_0000;
/// The property table (LPIs up to 2^16), the queue and the tables' guest
/// addresses (the model only stores them).
const PROPBASER: u64 = 0x4010_0000 | 15;
const CBASER: u64 = VALID | 0x4020_0000;
const BASER_DEV: u64 = VALID | 0x4030_0000;
const BASER_COLL: u64 = VALID | 0x4040_0000;

/// A vGIC with an ITS for vCPUs 0 and 1, its distributor enabled.
fn gic() -> Box<Vgic> {
    // SAFETY: every field of `Vgic` (and of its ITS) is an integer, a bool
    // or an array of them: all zero is a valid (not created) vGIC.
    let mut g: Box<Vgic> = unsafe { Box::new_zeroed().assume_init() };
    g.reset();
    g.created = true;
    g.set_base(false, D, 40, 2).expect("dist");
    g.set_base(true, R, 40, 2).expect("redist");
    g.its_create().expect("its");
    g.its.set_base(ITS, 40).expect("its base");
    g.init(&[0, 1]);
    g.mmio(0, D, 4, true, 2);
    g
}

fn its_w(g: &mut Vgic, off: u64, width: u64, data: u64) -> bool {
    g.its_access(off, width, true, data, false)
        .expect("write")
        .1
}

fn its_r(g: &mut Vgic, off: u64, width: u64) -> u64 {
    g.its_access(off, width, false, 0, false).expect("read").0
}

/// The guest's ITS setup as Linux does it: property and pending tables,
/// LPIs on for both vCPUs, the tables and the queue, the ITS on.
fn enable(g: &mut Vgic) {
    for v in 0..2 {
        let rd = R + v * 0x2_0000;
        g.mmio(v as usize, rd + 0x70, 8, true, PROPBASER);
        g.mmio(v as usize, rd + 0x78, 8, true, 0x4050_0000 + v * 0x1_0000);
        g.mmio(v as usize, rd, 4, true, 1);
    }
    its_w(g, 0x100, 8, BASER_DEV);
    its_w(g, 0x108, 8, BASER_COLL);
    its_w(g, 0x80, 8, CBASER);
    its_w(g, 0x0, 4, 1);
}

fn ok() -> Checked {
    Checked {
        table_ok: true,
        visible: true,
    }
}

fn mapd(dev: u32, bits: u32, valid: bool) -> Command {
    Command([
        cmd::MAPD | u64::from(dev) << 32,
        u64::from(bits - 1),
        u64::from(valid) << 63 | 0x4060_0000,
        0,
    ])
}
fn mapc(coll: u16, target: u32, valid: bool) -> Command {
    Command([
        cmd::MAPC,
        0,
        u64::from(valid) << 63 | u64::from(target) << 16 | u64::from(coll),
        0,
    ])
}
fn mapti(dev: u32, event: u32, intid: u32, coll: u16) -> Command {
    Command([
        cmd::MAPTI | u64::from(dev) << 32,
        u64::from(event) | u64::from(intid) << 32,
        u64::from(coll),
        0,
    ])
}
fn ev(code: u64, dev: u32, event: u32) -> Command {
    Command([code | u64::from(dev) << 32, u64::from(event), 0, 0])
}

/// Applies `c` as the queue would (its slot in the queue first).
fn apply(g: &mut Vgic, c: Command, chk: Checked) -> (Refresh, u64) {
    let next = (g.its.cwriter + CMD_SIZE) % g.its.queue_size();
    its_w(g, 0x88, 8, next);
    assert!(g.its_next().is_some());
    g.its_apply(&c, &chk)
}

fn flush(g: &mut Vgic, v: usize) -> Vec<u64> {
    let mut out = [0u64; IRQ_SLOTS];
    let n = g.flush(v, &mut out);
    out[..n].to_vec()
}

fn lpi(g: &Vgic, intid: u32) -> Option<Irq> {
    g.its.lpi_slot(intid).map(|s| g.its.lpis[s].irq)
}

#[test]
fn registers_follow_kvm() {
    let mut g = gic();
    // LPIs and 16 ID bits advertised; PLPIS in each redistributor.
    assert_eq!(
        g.mmio(0, D + 4, 4, false, 0).map(|r| r.0),
        Some(1 << 17 | 15 << 19 | 7)
    );
    assert_eq!(g.mmio(0, R + 8, 4, false, 0).map(|r| r.0 & 1), Some(1));
    assert_eq!(its_r(&mut g, 0x4, 4), 0x4B00_043B);
    assert_eq!(its_r(&mut g, 0x8, 8), 1 | 15 << 13 | 15 << 8 | 7 << 4);
    assert_eq!(its_r(&mut g, 0xC, 4), 0, "TYPER's top half");
    assert_eq!(its_r(&mut g, 0xFFE8, 4), 0x3B);
    // BASER0/1 as created: device and collection tables, 8-byte entries.
    assert_eq!(its_r(&mut g, 0x100, 8) >> 56 & 7, TYPE_DEVICE);
    assert_eq!(its_r(&mut g, 0x108, 8) >> 56 & 7, TYPE_COLLECTION);
    assert_eq!(its_r(&mut g, 0x110, 8), 0, "BASER2 is RAZ");
    // Type and size are read-only; collections take no indirection.
    its_w(
        &mut g,
        0x108,
        8,
        BASER_COLL | INDIRECT | 2 << 56 | 0x1F << 48,
    );
    let coll = its_r(&mut g, 0x108, 8);
    assert_eq!(
        (coll >> 56 & 7, coll >> 48 & 0x1F, coll & INDIRECT),
        (4, 7, 0)
    );
    // Enabling needs valid tables and queue.
    its_w(&mut g, 0x0, 4, 1);
    assert_eq!(its_r(&mut g, 0x0, 4), 1 << 31, "quiescent, disabled");
    enable(&mut g);
    assert_eq!(its_r(&mut g, 0x0, 4), 1 << 31 | 1);
    // While enabled, CBASER and BASERs are fixed.
    its_w(&mut g, 0x80, 8, 0);
    assert_eq!(its_r(&mut g, 0x80, 8), CBASER);
    // CWRITER: 32-byte aligned, inside the one-page queue, or ignored.
    its_w(&mut g, 0x88, 8, 0x1000);
    assert_eq!(its_r(&mut g, 0x88, 8), 0);
    assert!(its_w(&mut g, 0x88, 8, 0x47), "a move runs the queue");
    assert_eq!(its_r(&mut g, 0x88, 8), 0x40);
    assert_eq!(its_r(&mut g, 0x0, 4), 1, "commands waiting");
    // A guest's CREADR write is ignored; a VMM's needs the ITS disabled.
    its_w(&mut g, 0x90, 8, 0x20);
    assert_eq!(its_r(&mut g, 0x90, 8), 0);
    assert_eq!(g.its_access(0x90, 8, true, 0x20, true), Err(EBUSY));
    assert_eq!(
        g.its_access(0x4, 4, true, 1 << 12, true),
        Err(EINVAL),
        "IIDR rev"
    );
    // Widths a register does not take read as zero.
    assert_eq!(its_r(&mut g, 0x0, 8), 0);
    assert_eq!(g.its_access(0x6, 2, false, 0, false), Ok((0, false)));
    // PROPBASER is fixed once LPIs are on.
    g.mmio(0, R + 0x70, 8, true, 0);
    assert_eq!(
        g.mmio(0, R + 0x70, 8, false, 0).map(|r| r.0),
        Some(PROPBASER)
    );
    // Reset: disabled, queue and tables invalid.
    g.its_reset();
    assert_eq!(its_r(&mut g, 0x0, 4), 1 << 31);
    assert_eq!(its_r(&mut g, 0x100, 8) & VALID, 0);
    assert_eq!(its_r(&mut g, 0x80, 8), 0);
}

#[test]
fn commands_map_translate_and_move_lpis() {
    let mut g = gic();
    enable(&mut g);
    apply(&mut g, mapd(3, 4, true), ok());
    apply(&mut g, mapc(1, 0, true), ok());
    let (refresh, _) = apply(&mut g, mapti(3, 2, 8200, 1), ok());
    let s = g.its.lpi_slot(8200).expect("mapped");
    assert_ne!(refresh[s / 64] & 1 << (s % 64), 0, "configuration to read");
    // Configured from its property byte: priority 0xa0, enabled.
    g.its_set_prop(s, 8200, 0xA1);
    assert_eq!(
        lpi(&g, 8200).map(|i| (i.priority, i.enabled())),
        Some((0xA0, true))
    );
    // An MSI makes it pending on vCPU 0 (kicked), an edge in a list register.
    assert_eq!(g.its_msi(ITS + 0x1_0040, 2, Some(3)), Ok((1, 1)));
    let words = flush(&mut g, 0);
    assert_eq!(words.len(), 1);
    assert_eq!(irq::vintid(words[0]), 8200);
    assert_eq!(irq::priority(words[0]), 0xA0);
    assert!(irq::group1(words[0]));
    assert_eq!(irq::state(words[0]), irq::PENDING);
    // Taken, then completed: gone; another MSI meanwhile is not lost.
    g.fold(0, &words, &[irq::with_state(words[0], irq::ACTIVE)]);
    g.its_msi(ITS, 2, Some(3)).expect("msi");
    g.fold(0, &words, &[irq::with_state(words[0], 0)]);
    let again = flush(&mut g, 0);
    assert_eq!(
        again.iter().map(|&w| irq::vintid(w)).collect::<Vec<_>>(),
        [8200]
    );
    g.fold(0, &again, &[irq::with_state(again[0], 0)]);
    assert!(!g.has_work(0));
    // Unmapped events, devices and doorbells elsewhere.
    assert_eq!(g.its_msi(ITS, 3, Some(3)), Ok((0, 0)));
    assert_eq!(g.its_msi(ITS, 2, Some(4)), Ok((0, 0)));
    assert_eq!(g.its_msi(ITS, 2, None), Err(EINVAL));
    assert_eq!(g.its_msi(ITS + ITS_SIZE, 2, Some(3)), Err(EINVAL));
    // INT raises it too; CLEAR drops it before delivery.
    apply(&mut g, ev(cmd::INT, 3, 2), ok());
    assert!(g.has_work(0));
    apply(&mut g, ev(cmd::CLEAR, 3, 2), ok());
    assert!(!g.has_work(0));
    // MOVI to a collection on vCPU 1.
    apply(&mut g, mapc(2, 1, true), ok());
    apply(&mut g, Command([cmd::MOVI | 3 << 32, 2, 2, 0]), ok());
    assert_eq!(g.its_msi(ITS, 2, Some(3)), Ok((1, 2)));
    assert!(g.has_work(1) && !g.has_work(0));
    // MOVALL back to vCPU 0.
    apply(&mut g, Command([cmd::MOVALL, 0, 1 << 16, 0]), ok());
    assert!(g.has_work(0) && !g.has_work(1));
    // INVALL of collection 1 (vCPU 0) rereads the LPI; INV of an unmapped
    // event nothing.
    let (r, _) = apply(&mut g, Command([cmd::INVALL, 0, 1, 0]), ok());
    assert_ne!(r[s / 64] & 1 << (s % 64), 0);
    let (r, _) = apply(&mut g, ev(cmd::INV, 3, 9), ok());
    assert_eq!(r, [0; MAX_LPIS / 64]);
    // A disabled LPI stays pending and is not handed over.
    g.its_set_prop(s, 8200, 0xA0);
    assert!(!g.has_work(0));
    // DISCARD frees it (the slot, and the translation).
    apply(&mut g, ev(cmd::DISCARD, 3, 2), ok());
    assert!(lpi(&g, 8200).is_none());
    assert_eq!(g.its_msi(ITS, 2, Some(3)), Ok((0, 0)));
}

#[test]
fn bad_commands_are_dropped_as_kvm_drops_them() {
    let mut g = gic();
    enable(&mut g);
    let no = Checked::default();
    // A device id outside the guest's table; an ITT of more than 16 bits.
    apply(&mut g, mapd(3, 4, true), no);
    apply(&mut g, mapd(4, 17, true), ok());
    apply(&mut g, mapc(1, 0, true), ok());
    apply(&mut g, mapti(3, 0, 8192, 1), ok());
    apply(&mut g, mapti(4, 0, 8193, 1), ok());
    assert!(
        g.its.lpis.iter().all(|l| l.intid == 0),
        "no device: nothing mapped"
    );
    apply(&mut g, mapd(3, 4, true), ok());
    // Event past the ITT, INTID outside the LPIs or the property table,
    // an ITT entry no slot backs.
    apply(&mut g, mapti(3, 16, 8192, 1), ok());
    apply(&mut g, mapti(3, 0, 8191, 1), ok());
    apply(&mut g, mapti(3, 0, 1 << 16, 1), ok());
    apply(
        &mut g,
        mapti(3, 0, 8192, 1),
        Checked {
            table_ok: true,
            visible: false,
        },
    );
    assert!(g.its.lpis.iter().all(|l| l.intid == 0));
    // MAPC to a vCPU that does not exist.
    apply(&mut g, mapc(5, 7, true), ok());
    assert!(g.its.coll(5).is_none());
    // A mapping to a new collection the table cannot hold.
    apply(
        &mut g,
        mapti(3, 0, 8192, 9),
        Checked {
            table_ok: false,
            visible: true,
        },
    );
    assert!(g.its.coll(9).is_none() && lpi(&g, 8192).is_none());
    // A collection mapped later: MAPTI made it, MAPC gives it a target.
    apply(&mut g, mapti(3, 1, 8193, 6), ok());
    assert_eq!(g.its_msi(ITS, 1, Some(3)), Ok((0, 0)), "no target yet");
    apply(&mut g, mapc(6, 1, true), ok());
    assert_eq!(g.its_msi(ITS, 1, Some(3)), Ok((1, 0)), "pending, disabled");
    // Mapping an event twice keeps the first.
    apply(&mut g, mapti(3, 1, 8300, 6), ok());
    assert!(lpi(&g, 8300).is_none());
    // Unmapping the collection unroutes; MAPD V=0 frees the device's LPIs.
    apply(&mut g, mapc(6, 0, false), ok());
    assert_eq!(g.its_msi(ITS, 1, Some(3)), Ok((0, 0)));
    apply(&mut g, mapd(3, 4, false), ok());
    assert!(lpi(&g, 8193).is_none());
    // Unknown commands and SYNC move the queue on.
    let before = g.its.creadr;
    apply(&mut g, Command([0x2A, !0, !0, !0]), ok());
    assert_eq!(g.its.creadr, before + CMD_SIZE);
}

#[test]
fn msis_need_the_its_and_the_targets_lpis_on() {
    let mut g = gic();
    enable(&mut g);
    apply(&mut g, mapd(1, 2, true), ok());
    apply(&mut g, mapc(0, 1, true), ok());
    apply(&mut g, mapti(1, 0, 8192, 0), ok());
    // vCPU 1 turns its LPIs off: EBUSY, as KVM.
    g.mmio(1, R + 0x2_0000, 4, true, 0);
    assert_eq!(g.its_msi(ITS, 0, Some(1)), Err(EBUSY));
    g.mmio(1, R + 0x2_0000, 4, true, 1);
    assert_eq!(g.its_msi(ITS, 0, Some(1)), Ok((1, 0)));
    its_w(&mut g, 0x0, 4, 0);
    assert_eq!(g.its_msi(ITS, 0, Some(1)), Err(EBUSY), "ITS disabled");
    // No ITS at all: ENODEV; KVM_IRQ_LINE cannot reach an LPI.
    // SAFETY: as in `gic`: all zero is a valid vGIC.
    let mut plain: Box<Vgic> = unsafe { Box::new_zeroed().assume_init() };
    plain.reset();
    assert_eq!(
        plain.its_msi(ITS, 0, Some(1)),
        Err(crate::kvm::errno::ENODEV)
    );
    assert_eq!(g.set_line(0, 8192, true), Err(EINVAL));
}

#[test]
fn the_caps_bound_what_a_guest_maps() {
    let mut g = gic();
    enable(&mut g);
    apply(&mut g, mapc(0, 0, true), ok());
    for d in 0..MAX_DEVICES as u32 + 4 {
        apply(&mut g, mapd(d, 16, true), ok());
    }
    assert_eq!(g.its.devices.iter().filter(|d| d.used).count(), MAX_DEVICES);
    // More events than entries: the first MAX_ITES map, the rest drop.
    let mut n = 0u32;
    for d in 0..4 {
        for e in 0..(MAX_ITES as u32 / 2) {
            apply(&mut g, mapti(d, e, 8192 + n, 0), ok());
            n += 1;
        }
    }
    assert_eq!(g.its.ites.iter().filter(|i| i.used).count(), MAX_ITES);
    assert_eq!(g.its.lpis.iter().filter(|l| l.intid != 0).count(), MAX_LPIS);
    assert!(lpi(&g, 8192 + MAX_ITES as u32).is_none());
    // Two events may share one LPI; it lives while one maps it.
    apply(&mut g, ev(cmd::DISCARD, 0, 0), ok());
    apply(&mut g, mapti(60, 0, 8193, 0), ok());
    apply(&mut g, ev(cmd::DISCARD, 0, 1), ok());
    assert!(lpi(&g, 8193).is_some());
    apply(&mut g, ev(cmd::DISCARD, 60, 0), ok());
    assert!(lpi(&g, 8193).is_none());
    // Invalidating the device table frees every device and LPI.
    its_w(&mut g, 0x0, 4, 0);
    its_w(&mut g, 0x100, 8, 0);
    assert!(g.its.devices.iter().all(|d| !d.used));
    assert!(g.its.lpis.iter().all(|l| l.intid == 0));
}
