//! Pending state through the emulated distributor and redistributors: a
//! pending SPI and the guest's timer PPIs (which KCore delivers: their
//! pending state is each timer's output, from KCore's exit reports)
//! read as pending in `GICD_ISPENDR`/`GICR_ISPENDR0`, both to the VMM
//! (`KVM_DEV_ARM_VGIC_GRP_{DIST,REDIST}_REGS`) and to the guest's MMIO.

use super::*;
use uapi::vgic_attr::{GRP_DIST_REGS, GRP_REDIST_REGS};

/// `GICR_ISPENDR0` (SGI frame) of vCPU 0 as the VMM reads it.
fn ispendr0(f: &mut Fake, vm: &Vm) -> u32 {
    gic_attr(f, vm, 1, GRP_REDIST_REGS, 0x1_0200, 0).expect("ISPENDR0")
}

/// One guest run: a read of `GICR_ISPENDR0` with the virtual timer's
/// `CNTV_CTL` set to `ctl` and the physical timer's `CNTP_CTL` to `pctl`
/// (each due at once: `CVAL` 0), then an exit to the VMM; what the guest
/// read.
fn guest_reads_ispendr0_both(f: &mut Fake, vm: &Vm, v: &mut Vcpu, ctl: u64, pctl: u64) -> u64 {
    let k = f.k();
    k.guest.then_do(
        data_abort(GICR + 0x1_0200, false, 4, false),
        move |ctx, _| {
            ctx.cntv_ctl = ctl;
            ctx.cntv_cval = 0;
            ctx.cntp_ctl = pctl;
            ctx.cntp_cval = 0;
        },
    );
    k.answer_regs.push(Some(RT));
    f.script([(exit::MMIO, 0, 0x0900_0000, 0, 4, [0; 3])]);
    assert_eq!(ioctl(f, vm, v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.run_u32(krun::EXIT_REASON), kexit::MMIO);
    *f.answers().last().expect("the read completed")
}

/// [`guest_reads_ispendr0_both`] with the physical timer off.
fn guest_reads_ispendr0(f: &mut Fake, vm: &Vm, v: &mut Vcpu, ctl: u64) -> u64 {
    guest_reads_ispendr0_both(f, vm, v, ctl, 0)
}

#[test]
fn a_pending_spi_and_the_timers_ppi_read_as_pending() {
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    slot(&mut f, &vm);
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    vgic(&mut f, &vm);
    // SPI 40's line high: GICD_ISPENDR1 bit 8, to the VMM and the guest.
    assert_eq!(vm::irq_line(&mut f, &vm, 1 << 24 | 40, true), Ok(()));
    let ispendr1 = gic_attr(&mut f, &vm, 1, GRP_DIST_REGS, 0x204, 0);
    assert_eq!(ispendr1.map(|x| x & 1 << 8), Ok(1 << 8));
    let read = vm.with_gic(&mut f, |g| (g.mmio(0, GICD + 0x204, 4, false, 0), 0));
    assert_eq!(read.map(|r| r.0 & 1 << 8), Some(1 << 8));
    // The timer: nothing before it ran.
    assert_eq!(ispendr0(&mut f, &vm) & 1 << 27, 0);
    // Enabled and due: the guest's read and the VMM's show PPI 27.
    let got = guest_reads_ispendr0(&mut f, &vm, &mut v, 1);
    assert_eq!(got & 1 << 27, 1 << 27, "{got:#x}");
    assert_eq!(ispendr0(&mut f, &vm) & 1 << 27, 1 << 27);
    // Masked (IMASK): not asserted, not pending.
    let got = guest_reads_ispendr0(&mut f, &vm, &mut v, 3);
    assert_eq!(got & 1 << 27, 0, "{got:#x}");
    assert_eq!(ispendr0(&mut f, &vm) & 1 << 27, 0);
    // The physical timer alone due: PPI 30, not 27 (each timer's own
    // deadline from KCore's exit report).
    let got = guest_reads_ispendr0_both(&mut f, &vm, &mut v, 3, 1);
    assert_eq!(got & (1 << 27 | 1 << 30), 1 << 30, "{got:#x}");
    assert_eq!(ispendr0(&mut f, &vm) & (1 << 27 | 1 << 30), 1 << 30);
    // Both due: both pending.
    let got = guest_reads_ispendr0_both(&mut f, &vm, &mut v, 1, 1);
    assert_eq!(got & (1 << 27 | 1 << 30), 1 << 27 | 1 << 30, "{got:#x}");
    // A PPI the VMM raises is pending too (its line).
    assert_eq!(vm::irq_line(&mut f, &vm, 2 << 24 | 20, true), Ok(()));
    assert_eq!(ispendr0(&mut f, &vm) & 1 << 20, 1 << 20);
}
