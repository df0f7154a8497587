//! The guest's EL1 physical timer through the KVM API against the real
//! KCore: `KVM_REG_ARM_PTIMER_*` by `ONE_REG` (not listed, as in KVM 6.1),
//! a protected vCPU's refused, and a vCPU idling in `WFI` woken at the
//! earlier of its two timers' deadlines.

use super::*;

/// `ONE_REG` `cmd` of `id` with the value at user address `0xA000`.
fn one_reg(f: &mut Fake, vm: &Vm, v: &mut Vcpu, cmd: u32, id: u64) -> Result<u64, Errno> {
    let a = user(f, 0x9000, &[id, 0xA000]);
    ioctl(f, vm, v, cmd, a)?;
    let mut b = [0u8; 8];
    f.copy_from_user(0xA000, &mut b).ok();
    Ok(u64::from_le_bytes(b))
}

fn get(f: &mut Fake, vm: &Vm, v: &mut Vcpu, id: u64) -> Result<u64, Errno> {
    one_reg(f, vm, v, uapi::GET_ONE_REG, id)
}

fn set(f: &mut Fake, vm: &Vm, v: &mut Vcpu, id: u64, val: u64) -> Result<(), Errno> {
    user(f, 0xA000, &[val]);
    one_reg(f, vm, v, uapi::SET_ONE_REG, id).map(|_| ())
}

#[test]
fn the_physical_timer_registers_go_through_one_reg() {
    use uapi::reg::{PTIMER_CNT, PTIMER_CTL, PTIMER_CVAL};
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    // The fake kernel's clock reads 1000.
    assert_eq!(set(&mut f, &vm, &mut v, PTIMER_CVAL, 2000), Ok(()));
    assert_eq!(f.get_reg(0, kr::sys::CNTP_CVAL_EL0), Some(2000));
    // ENABLE and IMASK are kept; ISTATUS is the timer's, as of now.
    assert_eq!(set(&mut f, &vm, &mut v, PTIMER_CTL, 0b111), Ok(()));
    assert_eq!(f.get_reg(0, kr::sys::CNTP_CTL_EL0), Some(0b011));
    assert_eq!(get(&mut f, &vm, &mut v, PTIMER_CTL), Ok(0b011));
    assert_eq!(set(&mut f, &vm, &mut v, PTIMER_CVAL, 1000), Ok(()));
    assert_eq!(get(&mut f, &vm, &mut v, PTIMER_CTL), Ok(0b111), "fired");
    assert_eq!(get(&mut f, &vm, &mut v, PTIMER_CVAL), Ok(1000));
    // The count is the machine's: no offset to set.
    assert_eq!(get(&mut f, &vm, &mut v, PTIMER_CNT), Ok(1000));
    assert_eq!(set(&mut f, &vm, &mut v, PTIMER_CNT, 5), Err(EINVAL));
    // The virtual timer's offset does not move it.
    assert!(f.set_reg(0, kr::CNTVOFF, 400));
    assert_eq!(get(&mut f, &vm, &mut v, PTIMER_CNT), Ok(1000));
    // Each vCPU has its own.
    let mut v1 = new_vcpu(&mut f, &vm, 1);
    init(&mut f, &vm, &mut v1, 1 << 2);
    assert_eq!(get(&mut f, &vm, &mut v1, PTIMER_CVAL), Ok(0));
    assert_eq!(get(&mut f, &vm, &mut v1, PTIMER_CTL), Ok(0b100));
    assert_eq!(f.get_reg(0, kr::sys::CNTP_CTL_EL0), Some(0b011));
    // Not in KVM_GET_REG_LIST, as in KVM 6.1.
    let list = user(&mut f, 0xB000, &[300]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::GET_REG_LIST, list), Ok(0));
    for i in 0..super::super::regs::COUNT as u64 {
        let mut b = [0u8; 8];
        f.copy_from_user(0xB008 + 8 * i, &mut b).ok();
        let id = u64::from_le_bytes(b);
        assert!(
            ![PTIMER_CTL, PTIMER_CVAL, PTIMER_CNT].contains(&id),
            "{id:#x}"
        );
    }
    // A re-init after a run stops it, as KVM's vCPU reset does.
    f.script([(exit::MMIO, 0, 0x0900_0000, 0, 4, [0; 3])]);
    slot(&mut f, &vm);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    init(&mut f, &vm, &mut v, 1 << 2);
    assert_eq!(f.get_reg(0, kr::sys::CNTP_CTL_EL0), Some(0));
}

#[test]
fn a_protected_vcpus_physical_timer_is_not_kservs() {
    use uapi::reg::{PTIMER_CNT, PTIMER_CTL, PTIMER_CVAL};
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 1 << 31);
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    for id in [PTIMER_CTL, PTIMER_CVAL, PTIMER_CNT] {
        assert_eq!(get(&mut f, &vm, &mut v, id), Err(EPERM), "{id:#x}");
        assert_eq!(set(&mut f, &vm, &mut v, id, 1), Err(EPERM), "{id:#x}");
    }
    // Its reset value may be repeated before the first run, as for every
    // other register; the count never.
    assert_eq!(set(&mut f, &vm, &mut v, PTIMER_CTL, 0), Ok(()));
    assert_eq!(set(&mut f, &vm, &mut v, PTIMER_CVAL, 0), Ok(()));
    assert_eq!(set(&mut f, &vm, &mut v, PTIMER_CNT, 1000), Err(EPERM));
    assert_eq!(f.calls_of(HypercallId::HostVcpuGetReg), 0);
}

/// A WFI exit after the guest armed its virtual timer for `vcval` and its
/// physical timer for `pcval` (both enabled, unmasked).
fn wfi_after_arming(f: &mut Fake, vcval: u64, pcval: u64) {
    let k = f.k();
    let wfi = GuestExit {
        kind: ExitKind::Sync,
        esr: ec::WFX << 26 | 1 << 25,
        far: 0,
        hpfar: 0,
        fp: false,
    };
    k.guest.then_do(wfi, move |ctx, _| {
        (ctx.cntv_ctl, ctx.cntv_cval) = (1, vcval);
        (ctx.cntp_ctl, ctx.cntp_cval) = (1, pcval);
    });
    k.answer_regs.push(None);
}

#[test]
fn a_vcpu_in_wfi_wakes_at_the_earlier_of_its_timers() {
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    slot(&mut f, &vm);
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    // The fake kernel's clock reads 1000; the physical timer is due first.
    wfi_after_arming(&mut f, 9000, 3000);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Err(EINTR));
    assert_eq!(f.waits, [3000]);
    // Then the virtual one, whose count is offset (the VM's counter
    // started at 0 when it first ran).
    let off = f.get_reg(0, kr::CNTVOFF).unwrap_or_default();
    assert_eq!(off, 1000);
    f.signal = false;
    wfi_after_arming(&mut f, 4000, 7000);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Err(EINTR));
    assert_eq!(f.waits, [3000, 4000 + off]);
}
