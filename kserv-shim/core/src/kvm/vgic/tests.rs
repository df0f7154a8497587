//! The vGIC model on its own: registers as a guest sees them, interrupt
//! lines, SGIs, and what each entry hands KCore and each exit folds back.

extern crate std;

use super::*;
use std::boxed::Box;

const D: u64 = 0x0800_0000;
const R: u64 = 0x080A_0000;

/// A vGIC with its frames placed, `n` interrupts and vCPUs 0 and 1, its
/// distributor enabled.
fn gic(n: u32) -> Box<Vgic> {
    // SAFETY: every field of `Vgic` is an integer, a bool or an array of
    // them: all zero is a valid (not created) vGIC, as the glue makes it.
    let mut g: Box<Vgic> = unsafe { Box::new_zeroed().assume_init() };
    g.reset();
    g.created = true;
    g.set_base(false, D, 40, 2)
        .unwrap_or_else(|e| panic!("dist {e}"));
    g.set_base(true, R, 40, 2)
        .unwrap_or_else(|e| panic!("redist {e}"));
    g.set_nr_irqs(n).unwrap_or_else(|e| panic!("nr_irqs {e}"));
    g.init(&[0, 1]);
    w(&mut g, 0, D, 2);
    g
}

fn r(g: &mut Vgic, v: usize, addr: u64) -> u64 {
    g.mmio(v, addr, 4, false, 0).map_or(u64::MAX, |(x, _)| x)
}

fn w(g: &mut Vgic, v: usize, addr: u64, data: u64) -> u64 {
    g.mmio(v, addr, 4, true, data).map_or(u64::MAX, |(_, k)| k)
}

fn flush(g: &mut Vgic, v: usize) -> std::vec::Vec<u64> {
    let mut out = [0; IRQ_SLOTS];
    let n = g.flush(v, &mut out);
    out[..n].to_vec()
}

#[test]
fn attributes_follow_kvm() {
    use crate::kvm::errno::{E2BIG, EEXIST};
    // SAFETY: as in `gic`.
    let mut g: Box<Vgic> = unsafe { Box::new_zeroed().assume_init() };
    assert_eq!(g.base(false), None);
    assert_eq!(g.set_base(false, 0x1000, 40, 2), Err(EINVAL));
    assert_eq!(g.set_base(false, 1 << 40, 40, 2), Err(E2BIG));
    assert_eq!(g.set_base(false, D, 40, 2), Ok(()));
    assert_eq!(g.set_base(false, D, 40, 2), Err(EEXIST));
    assert_eq!(g.set_nr_irqs(48), Err(EINVAL));
    assert_eq!(g.set_nr_irqs(100), Err(EINVAL));
    assert_eq!(g.set_nr_irqs(1024), Err(EINVAL));
    assert_eq!(g.set_nr_irqs(64), Ok(()));
    assert_eq!(g.set_nr_irqs(96), Err(EBUSY));
    // Lines before init: EBUSY.
    assert_eq!(g.set_line(0, 40, true), Err(EBUSY));
}

#[test]
fn identification_registers() {
    let mut g = gic(64);
    assert_eq!(r(&mut g, 0, D), 2 | 1 << 4 | 1 << 6);
    assert_eq!(r(&mut g, 0, D + 4) & 0x1F, 1);
    assert_eq!(r(&mut g, 0, D + 0xFFE8), 0x3B);
    assert_eq!(r(&mut g, 0, D + 8) >> 24, 0x4B);
    // Redistributor 1: vCPU 1, the last one.
    let typer = g.mmio(0, R + 0x2_0000 + 8, 8, false, 0).map(|x| x.0);
    assert_eq!(typer, Some(1 << 32 | 1 << 8 | 1 << 4));
    let typer0 = g.mmio(0, R + 8, 8, false, 0).map(|x| x.0);
    assert_eq!(typer0, Some(0));
    // Beyond the redistributors: not the vGIC's.
    assert!(g.mmio(0, R + 0x4_0000, 4, false, 0).is_none());
    assert!(!g.claims(R + 0x4_0000));
    assert!(g.claims(D + 0x100));
    // WAKER reads as zero; a byte access to a word register too.
    assert_eq!(r(&mut g, 0, R + 0x14), 0);
    assert_eq!(g.mmio(0, D, 1, false, 0).map(|x| x.0), Some(0));
}

#[test]
fn spi_level_line_until_the_device_lowers_it() {
    let mut g = gic(64);
    // Disabled: nothing to deliver.
    assert_eq!(g.set_line(0, 40, true), Ok(0));
    assert!(flush(&mut g, 0).is_empty());
    assert_eq!(r(&mut g, 0, D + 0x204), 1 << 8, "pending in ISPENDR1");
    // Enable it (priority 0xa0): vCPU 0 (route 0) gets kicked.
    w(&mut g, 0, D + 0x428, 0xa0);
    assert_eq!(w(&mut g, 0, D + 0x104, 1 << 8), 1);
    let words = flush(&mut g, 0);
    assert_eq!(words, [irq::encode(40, 0xa0, true, irq::PENDING)]);
    assert!(flush(&mut g, 1).is_empty(), "owned by vCPU 0");
    // The guest acknowledges: active; the line is still high.
    g.fold(0, &words, &[irq::encode(40, 0xa0, true, irq::ACTIVE)]);
    assert_eq!(r(&mut g, 0, D + 0x304), 1 << 8);
    let again = flush(&mut g, 0);
    assert_eq!(
        again,
        [irq::encode(40, 0xa0, true, irq::ACTIVE | irq::PENDING)]
    );
    // The device lowers the line; the guest completes it.
    g.set_line(0, 40, false).ok();
    let active = flush(&mut g, 0);
    assert_eq!(active, [irq::encode(40, 0xa0, true, irq::ACTIVE)]);
    g.fold(0, &active, &[0]);
    assert!(flush(&mut g, 0).is_empty());
    assert!(!g.has_work(0));
    assert_eq!(r(&mut g, 0, D + 0x204), 0);
}

#[test]
fn edges_are_not_lost_while_in_a_list_register() {
    let mut g = gic(64);
    // SPI 33 edge-triggered (ICFGR2, bits 2..4), enabled, routed to vCPU 1.
    w(&mut g, 0, D + 0xC08, 2 << 2);
    g.mmio(0, D + 0x6000 + 33 * 8, 8, true, 1);
    w(&mut g, 0, D + 0x104, 1 << 1);
    assert_eq!(g.set_line(0, 33, true), Ok(1 << 1));
    g.set_line(0, 33, false).ok();
    let words = flush(&mut g, 1);
    assert_eq!(words.len(), 1);
    // A second edge while the first sits pending in the list register.
    g.set_line(0, 33, true).ok();
    g.set_line(0, 33, false).ok();
    // The guest took the first: the second is still pending.
    g.fold(1, &words, &[irq::with_state(words[0], irq::ACTIVE)]);
    let next = flush(&mut g, 1);
    assert_eq!(irq::state(next[0]), irq::ACTIVE | irq::PENDING);
}

#[test]
fn sgis_priorities_and_the_timer() {
    let mut g = gic(64);
    // SGI 3 from vCPU 0 to vCPU 1 (target list bit 1).
    assert_eq!(g.sgi(0, 3 << 24 | 0b10, true), 1 << 1);
    assert!(g.has_work(1));
    assert!(!g.has_work(0));
    // Four more interrupts for vCPU 1 at different priorities: the three
    // best go first.
    for (sgi, prio) in [(5u32, 0x80u64), (6, 0x40), (7, 0x10)] {
        let reg = R + 0x2_0000 + 0x1_0000 + 0x400 + u64::from(sgi);
        g.mmio(1, reg, 1, true, prio);
        g.sgi(0, u64::from(sgi) << 24 | 0b10, true);
    }
    let words = flush(&mut g, 1);
    let ids: std::vec::Vec<u32> = words.iter().map(|&w| irq::vintid(w)).collect();
    assert_eq!(ids, [3, 7, 6], "priority 0 (SGI 3), then 0x10, 0x40");
    // The timer PPI never goes to KCore, whatever its state.
    w(&mut g, 1, R + 0x2_0000 + 0x1_0000 + 0x100, 1 << 27);
    w(&mut g, 1, R + 0x2_0000 + 0x1_0000 + 0x200, 1 << 27);
    g.fold(1, &words, &[0, 0, 0]);
    let rest = flush(&mut g, 1);
    assert_eq!(
        rest.iter()
            .map(|&w| irq::vintid(w))
            .collect::<std::vec::Vec<_>>(),
        [5]
    );
    // Group 0 SGIs only from SGI0R: SGI 9 made group 0 is raised by both,
    // a group-1 SGI not by SGI0R.
    assert_eq!(g.sgi(1, 4 << 24 | 1, false), 0);
    w(&mut g, 0, R + 0x1_0000 + 0x80, !(1 << 9) & 0xFFFF_FFFF);
    assert_eq!(g.sgi(1, 9 << 24 | 1, false), 1);
}

#[test]
fn private_configuration_is_read_only_and_priorities_keep_five_bits() {
    let mut g = gic(64);
    let sgi_frame = R + 0x1_0000;
    let before = r(&mut g, 0, sgi_frame + 0xC04);
    w(&mut g, 0, sgi_frame + 0xC04, 0xFFFF_FFFF);
    assert_eq!(r(&mut g, 0, sgi_frame + 0xC04), before);
    assert_eq!(
        r(&mut g, 0, sgi_frame + 0xC00),
        0xAAAA_AAAA,
        "SGIs are edge"
    );
    g.mmio(0, sgi_frame + 0x401, 1, true, 0xFF);
    assert_eq!(
        g.mmio(0, sgi_frame + 0x401, 1, false, 0).map(|x| x.0),
        Some(0xF8)
    );
    // The distributor does not reach private interrupts.
    w(&mut g, 0, D + 0x100, 0xFFFF_FFFF);
    assert_eq!(r(&mut g, 0, D + 0x100), 0);
    // KVM_IRQ_LINE for a PPI of a vCPU that is not there.
    assert_eq!(g.set_line(5, 20, true), Err(EINVAL));
    assert_eq!(g.set_line(0, 64, true), Err(EINVAL));
}

#[test]
fn the_timer_ppi_configuration_goes_to_kcore() {
    use kcore_abi::run::entry_flags::{PTIMER_SHIFT, TIMER_DISABLED, TIMER_GROUP0};
    let mut g = gic(64);
    let both = TIMER_DISABLED | TIMER_DISABLED << PTIMER_SHIFT;
    assert_eq!(g.timer_flags(0), both, "PPIs start disabled");
    let sgi_frame = R + 0x1_0000;
    w(&mut g, 0, sgi_frame + 0x100, 1 << 27);
    g.mmio(0, sgi_frame + 0x41B, 1, true, 0xA0);
    let ptimer_off = TIMER_DISABLED << PTIMER_SHIFT;
    assert_eq!(g.timer_flags(0), 0xA0 << 8 | ptimer_off);
    w(&mut g, 0, sgi_frame + 0x80, !(1u64 << 27) & 0xFFFF_FFFF);
    assert_eq!(g.timer_flags(0), 0xA0 << 8 | TIMER_GROUP0 | ptimer_off);
    assert_eq!(g.timer_flags(1), both, "vCPU 1's own PPI");
    // The physical timer's PPI 30, in the high half, alike; moved to PPI
    // 22 it names its INTID.
    w(&mut g, 0, sgi_frame + 0x100, 1 << 30);
    g.mmio(0, sgi_frame + 0x41E, 1, true, 0x50);
    assert_eq!(g.timer_flags(0) >> PTIMER_SHIFT, 0x50 << 8, "group 1");
    g.set_timer_ppi(1, 22);
    assert_eq!(g.timer_flags(0) >> PTIMER_SHIFT, 22 << 24 | TIMER_DISABLED);
    g.set_timer_ppi(1, 30);
    w(&mut g, 0, D, 0);
    assert_eq!(
        g.timer_flags(0) & TIMER_DISABLED,
        TIMER_DISABLED,
        "distributor off"
    );
}

#[test]
fn irqfd_edges_and_resampled_lines() {
    let mut g = gic(64);
    // GSI 8 = SPI 40, level-sensitive (the default), enabled, vCPU 0.
    w(&mut g, 0, D + 0x428, 0xa0);
    w(&mut g, 0, D + 0x104, 1 << 8);
    // A plain irqfd on a level SPI raises its line and leaves it high, as
    // Linux 6.1 does (`kvm_arch_set_irq_inatomic`), until KVM_IRQ_LINE
    // lowers it.
    assert_eq!(g.irqfd(40, false), 1);
    let words = flush(&mut g, 0);
    assert_eq!(words, [irq::encode(40, 0xa0, true, irq::PENDING)]);
    g.fold(0, &words, &[irq::with_state(words[0], irq::ACTIVE)]);
    g.set_line(0, 40, false).ok();
    let active = flush(&mut g, 0);
    assert_eq!(active, [irq::encode(40, 0xa0, true, irq::ACTIVE)]);
    g.fold(0, &active, &[0]);
    assert!(flush(&mut g, 0).is_empty());
    // SPIs the vGIC does not have, or private ones, are ignored.
    assert_eq!(g.irqfd(64, false), 0);
    assert_eq!(g.irqfd(27, true), 0);
    // Resampled: the line stays high until the guest completes it.
    assert_eq!(g.irqfd(40, true), 1);
    let words = flush(&mut g, 0);
    assert_eq!(words, [irq::encode(40, 0xa0, true, irq::PENDING)]);
    g.fold(0, &words, &[irq::with_state(words[0], irq::ACTIVE)]);
    assert!(g.take_acked().is_none(), "only acknowledged");
    // While active it is not handed over pending too, so that the
    // completion shows.
    let active = flush(&mut g, 0);
    assert_eq!(active, [irq::encode(40, 0xa0, true, irq::ACTIVE)]);
    g.fold(0, &active, &[0]);
    assert_eq!(g.take_acked().map(|a| a[0]), Some(1 << 8));
    assert!(g.take_acked().is_none(), "taken once");
    assert!(flush(&mut g, 0).is_empty(), "the line went low");
    // Acknowledged and completed in one run counts too.
    g.irqfd(40, true);
    let words = flush(&mut g, 0);
    g.fold(0, &words, &[0]);
    assert!(g.take_acked().is_some());
    // A resampled line whose irqfd goes away drops.
    g.irqfd(40, true);
    assert!(g.has_work(0));
    g.end_resample(40);
    assert!(!g.has_work(0));
    assert_eq!(g.end_resample(40), 0, "once");
    // An edge-triggered SPI takes irqfd edges, each one delivered.
    w(&mut g, 0, D + 0xC08, 2 << 16);
    g.irqfd(40, false);
    let words = flush(&mut g, 0);
    assert_eq!(words, [irq::encode(40, 0xa0, true, irq::PENDING)]);
    g.irqfd(40, false);
    g.fold(0, &words, &[irq::with_state(words[0], irq::ACTIVE)]);
    assert_eq!(irq::state(flush(&mut g, 0)[0]), irq::ACTIVE | irq::PENDING);
}

#[test]
fn a_redistributor_region_places_and_limits_the_frames() {
    use crate::kvm::errno::{EEXIST, ENOENT};
    // SAFETY: as in `gic`: all zero is a valid vGIC.
    let mut g: Box<Vgic> = unsafe { Box::new_zeroed().assume_init() };
    g.reset();
    g.created = true;
    let region =
        |count: u64, base: u64, flags: u64, index: u64| count << 52 | base | flags << 12 | index;
    // The errors are `rdist`'s tests'.
    assert_eq!(g.redist_region(0), Err(ENOENT));
    // One redistributor in region 0, the second vCPU's in region 1, away
    // from it.
    assert_eq!(g.set_redist_region(region(1, R, 0, 0), 40, 2), Ok(()));
    assert_eq!(g.redist_region(0), Ok(region(1, R, 0, 0)));
    assert_eq!(g.redist_region(1), Err(ENOENT));
    assert_eq!(
        g.set_redist_region(region(1, R + 0x4_0000, 0, 1), 40, 2),
        Ok(()),
        "a second region, index 1"
    );
    assert_eq!(
        g.set_redist_region(region(1, R, 0, 0), 40, 2),
        Err(EINVAL),
        "index 0 again"
    );
    assert_eq!(
        g.set_base(true, R, 40, 2),
        Err(EINVAL),
        "the legacy type does not mix"
    );
    assert_eq!(g.set_base(false, D, 40, 2), Ok(()));
    assert_eq!(g.set_base(false, D, 40, 2), Err(EEXIST));
    assert_eq!(g.redist_region(1), Ok(region(1, R + 0x4_0000, 0, 1)));
    g.init(&[0, 1]);
    assert_eq!(g.check_frames(40), Ok(()));
    assert!(g.claims(R) && g.claims(R + 0x1_0000));
    assert!(
        !g.claims(R + 0x2_0000),
        "only one redistributor in region 0"
    );
    // The guest finds vCPU 1's frames in region 1, both marked Last (the
    // regions are not contiguous), each with its own affinity.
    assert!(g.claims(R + 0x4_0000) && g.claims(R + 0x5_0000));
    assert!(!g.claims(R + 0x6_0000));
    let typer = |g: &mut Vgic, base: u64| r(g, 0, base + 8) | r(g, 0, base + 0xC) << 32;
    assert_eq!(typer(&mut g, R), 1 << 4);
    assert_eq!(typer(&mut g, R + 0x4_0000), 1 << 32 | 1 << 8 | 1 << 4);
    // The SGI frame of region 1's redistributor is vCPU 1's: enabling
    // PPI 20 there shows in vCPU 1's redistributor, not vCPU 0's.
    w(&mut g, 0, R + 0x5_0100, 1 << 20);
    assert_eq!(
        g.uaccess(Some(1), 0x1_0100, false, 0)
            .map(|x| x.0 & 1 << 20),
        Ok(1 << 20)
    );
    assert_eq!(
        g.uaccess(Some(0), 0x1_0100, false, 0)
            .map(|x| x.0 & 1 << 20),
        Ok(0)
    );
}

#[test]
fn the_first_run_needs_a_redistributor_per_vcpu() {
    use crate::kvm::errno::ENXIO;
    // SAFETY: as in `gic`.
    let mut g: Box<Vgic> = unsafe { Box::new_zeroed().assume_init() };
    g.reset();
    g.created = true;
    let region = |count: u64, base: u64, index: u64| count << 52 | base | index;
    assert_eq!(g.set_base(false, D, 40, 3), Ok(()));
    assert_eq!(g.set_redist_region(region(2, R, 0), 40, 3), Ok(()));
    g.init(&[0, 1, 2]);
    assert_eq!(g.check_frames(40), Err(ENXIO), "2 redistributors, 3 vCPUs");
    // A region over the distributor, with vCPUs whose redistributors it
    // would hold, is refused and freed at once (KVM registers them then:
    // `vgic_register_all_redist_iodevs`, `vgic_v3_check_base`).
    assert_eq!(g.set_redist_region(region(1, D, 1), 40, 3), Err(EINVAL));
    assert_eq!(g.check_frames(40), Err(ENXIO), "the region was freed");
    // Without vCPUs the same region is taken, and the first run refuses it.
    g.reset();
    g.created = true;
    assert_eq!(g.set_base(false, D, 40, 0), Ok(()));
    assert_eq!(g.set_redist_region(region(1, D, 0), 40, 0), Ok(()));
    g.init(&[0]);
    assert_eq!(g.check_frames(40), Err(EINVAL));
    g.reset();
    g.created = true;
    assert_eq!(g.check_frames(40), Err(ENXIO), "nothing placed");
}

/// What the guest of KVM's `vgic_irq` selftest does in its preemption test:
/// four edge SPIs, each of higher priority than the last, acknowledged one
/// after the other while the guest masks interrupts. The fourth needs the
/// last list register, which is only handed over behind three active ones.
#[test]
fn four_levels_of_preemption_use_the_fourth_list_register() {
    let mut g = gic(64);
    w(&mut g, 0, D + 0x104, 0xF); // SPIs 32..36 enabled
    w(&mut g, 0, D + 0xC08, 0xAA); // edge
    w(&mut g, 0, D + 0x420, 0x0008_1018); // priorities 24, 16, 8, 0
    let mut active = std::vec::Vec::new();
    for intid in 32..36 {
        g.set_line(0, intid, true).ok();
        g.set_line(0, intid, false).ok();
        let words = flush(&mut g, 0);
        let prio = (35 - intid as u8) * 8;
        let pending = irq::encode(intid, prio, true, irq::PENDING);
        assert!(words.contains(&pending), "{intid}: {words:x?}");
        assert_eq!(words.len(), active.len() + 1, "{words:x?}");
        // Acknowledged.
        let states: std::vec::Vec<u64> = words
            .iter()
            .map(|&x| irq::with_state(x, irq::ACTIVE))
            .collect();
        g.fold(0, &words, &states);
        active.push(intid);
    }
    let words = flush(&mut g, 0);
    assert_eq!(words.len(), 4);
    assert_eq!(r(&mut g, 0, D + 0x304), 0xF, "four active");
    // Completed from the highest priority down.
    g.fold(0, &words, &[0; 4]);
    assert_eq!(r(&mut g, 0, D + 0x304), 0);
    assert!(flush(&mut g, 0).is_empty());
    // Three pending interrupts take three list registers, not four: the
    // last stays free for KCore's timer.
    w(&mut g, 0, D + 0x204, 0xF);
    assert_eq!(flush(&mut g, 0).len(), 3);
}

/// `KVM_WRITE_ISACTIVER` of the selftest: four interrupts made active from
/// user space all reach the list registers, so that the guest can complete
/// them.
#[test]
fn four_interrupts_restored_active_fit_the_list_registers() {
    let mut g = gic(64);
    for intid in 0..4u32 {
        g.uaccess(Some(0), 0x1_0000 + 0x300, true, 1 << intid)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let words = flush(&mut g, 0);
    let mut ids: std::vec::Vec<u32> = words.iter().map(|&x| irq::vintid(x)).collect();
    ids.sort();
    assert_eq!(ids, [0, 1, 2, 3]);
    assert!(words.iter().all(|&x| irq::state(x) == irq::ACTIVE));
}

#[test]
fn routing_tables_map_gsis_to_spis_and_completions_back() {
    let mut g = gic(64);
    // KVM's default routing: GSI n is SPI 32 + n, for the SPIs there are.
    assert_eq!(g.spi_of(0), Some(32));
    assert_eq!(g.spi_of(31), Some(63));
    assert_eq!(g.spi_of(32), None);
    let mut pins = [0u64; ACKED_WORDS];
    pins[0] = 1 << 5;
    assert_eq!(g.gsis_of(&pins)[0], 1 << 5);
    // GSIs 100 and 7 to pin 5 (SPI 37), GSI 8 an MSI.
    g.set_routes(|gsi| match gsi {
        7 | 100 => 6,
        8 => ROUTE_MSI,
        _ => 0,
    });
    assert_eq!(g.spi_of(100), Some(37));
    assert_eq!(g.spi_of(5), None);
    assert_eq!(g.spi_of(8), None);
    assert_eq!(g.spi_of(u32::MAX), None);
    // A completion of SPI 37 is the last GSI routed there, as KVM's table.
    let gsis = g.gsis_of(&pins);
    assert_eq!(gsis[1], 1 << (100 - 64));
    assert_eq!(gsis[0], 0);
    // CTRL_INIT of a fresh vGIC installs the default again.
    g.ready = false;
    g.init(&[0]);
    assert_eq!(g.spi_of(5), Some(37));
}

#[test]
fn userspace_reaches_kvms_register_table_only() {
    // SAFETY: as in `gic`.
    let mut fresh: Box<Vgic> = unsafe { Box::new_zeroed().assume_init() };
    fresh.reset();
    // Before NR_IRQS or init KVM has no SPIs: only private interrupts' bits.
    assert!(fresh.has_reg(false, 0x100));
    assert!(!fresh.has_reg(false, 0x104), "ISENABLER of SPIs 32..63");
    let mut g = gic(64);
    for (rd, offset, has) in [
        (false, 0x0, true),
        (false, 0xC, true),     // GICD_TYPER2
        (false, 0x14, false),   // nothing between STATUSR and IGROUPR
        (false, 0x40, false),   // GICD_SETSPI_NSR: not userspace's
        (false, 0x104, true),   // SPIs 32..63
        (false, 0x108, false),  // SPIs 64..95: past nr_irqs
        (false, 0x43C, true),   // priorities of 60..63
        (false, 0x440, false),  // of 64..67
        (false, 0x6000, true),  // IROUTER of interrupt 0, as KVM
        (false, 0x61F8, true),  // of 63
        (false, 0x6200, false), // of 64
        (false, 0xE00, false),  // GICD_NSACR is not in KVM's table
        (false, 0xFFCC, false),
        (false, 0xFFFC, true),
        (false, 0x1_0000, false),
        (true, 0x0, true),
        (true, 0xC, true),   // GICR_TYPER's upper half
        (true, 0x40, false), // GICR_SETLPIR
        (true, 0xC4, false),
        (true, 0x1_0000, false), // the SGI frame's first word
        (true, 0x1_0084, false), // IGROUPR1 would be an ESPI's
        (true, 0x1_041C, true),  // IPRIORITYR7
        (true, 0x1_0420, false),
        (true, 0x1_0C04, true), // ICFGR1
        (true, 0x1_0E00, true), // GICR_NSACR
        (true, 0x2_0000, false),
        (true, 0x2, false),
    ] {
        assert_eq!(g.has_reg(rd, offset), has, "rd {rd} {offset:#x}");
        // GET and SET go through the same table: no register, 0 and no
        // effect.
        if !has {
            assert_eq!(g.uaccess(rd.then_some(1), offset, true, !0), Ok((0, 0)));
            assert_eq!(g.uaccess(rd.then_some(1), offset, false, 0), Ok((0, 0)));
        }
    }
}
