//! The vCPU timer attributes (`KVM_ARM_VCPU_TIMER_CTRL`), as Linux 6.1's
//! `arch/arm64/kvm/arch_timer.c` takes them: the PPIs of the virtual
//! (`KVM_ARM_VCPU_TIMER_IRQ_VTIMER`, 27 by default) and physical
//! (`KVM_ARM_VCPU_TIMER_IRQ_PTIMER`, 30) timers, one pair for the whole VM,
//! set through any vCPU until that vCPU first runs (`EBUSY` after), only
//! with an in-kernel vGIC (`EINVAL`), only PPIs (`EINVAL`); the first
//! `KVM_RUN` refuses two timers on one PPI (`EINVAL`). KCore delivers both
//! timers itself: the shim names their PPIs in the run page's entry flags
//! and leaves those PPIs out of what it hands over.

use super::env::KvmEnv;
use super::errno::{EBUSY, EINVAL, ENXIO, Errno};
use super::vm::Vm;
use core::sync::atomic::Ordering::SeqCst;

/// `KVM_ARM_VCPU_TIMER_CTRL`: the vCPU attribute group.
pub const GROUP: u32 = 1;
/// `KVM_ARM_VCPU_TIMER_IRQ_VTIMER`.
pub const IRQ_VTIMER: u64 = 0;
/// `KVM_ARM_VCPU_TIMER_IRQ_PTIMER`.
pub const IRQ_PTIMER: u64 = 1;
/// The PPIs by default (`default_vtimer_irq`, `default_ptimer_irq`).
const DEFAULTS: [u32; 2] = [27, 30];

/// Timer `t`'s PPI in the VM.
pub fn ppi(vm: &Vm, t: usize) -> u32 {
    match vm.timer_ppi[t % 2].load(SeqCst) {
        0 => DEFAULTS[t % 2],
        p => p,
    }
}

/// `KVM_HAS_DEVICE_ATTR`.
pub fn has_attr(attr: u64) -> Result<(), Errno> {
    if attr == IRQ_VTIMER || attr == IRQ_PTIMER {
        Ok(())
    } else {
        Err(ENXIO)
    }
}

/// `KVM_SET_DEVICE_ATTR`: the PPI (an `int`) at the VMM's `addr`, for a
/// vCPU that has not run yet (`ran`).
pub fn set_attr<E: KvmEnv>(
    env: &mut E,
    vm: &Vm,
    ran: bool,
    attr: u64,
    addr: u64,
) -> Result<(), Errno> {
    if !vm.with_gic(env, |g| (g.created, 0)) {
        return Err(EINVAL);
    }
    let mut b = [0u8; 4];
    env.copy_from_user(addr, &mut b)?;
    let irq = i32::from_le_bytes(b);
    if !(16..32).contains(&irq) {
        return Err(EINVAL);
    }
    if ran {
        return Err(EBUSY);
    }
    has_attr(attr)?;
    vm.timer_ppi[attr as usize].store(irq as u32, SeqCst);
    vm.with_gic(env, |g| (g.set_timer_ppi(attr as usize, irq as u32), 0));
    Ok(())
}

/// `KVM_GET_DEVICE_ATTR`: the PPI, written as an `int`.
pub fn get_attr<E: KvmEnv>(env: &mut E, vm: &Vm, attr: u64, addr: u64) -> Result<(), Errno> {
    has_attr(attr)?;
    env.copy_to_user(addr, &ppi(vm, attr as usize).to_le_bytes())
}

/// Before a vCPU's first run: the two timers need two PPIs (`EINVAL`).
pub fn check(vm: &Vm) -> Result<(), Errno> {
    if ppi(vm, 0) == ppi(vm, 1) {
        Err(EINVAL)
    } else {
        Ok(())
    }
}
