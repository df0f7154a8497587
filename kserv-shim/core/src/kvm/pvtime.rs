//! Stolen time (Arm's "paravirtualized time", DEN0057A), as Linux 6.1's
//! `arch/arm64/kvm/pvtime.c` offers it: the VMM gives each vCPU the IPA of
//! a 64-byte structure (`KVM_ARM_VCPU_PVTIME_CTRL`/`KVM_ARM_VCPU_PVTIME_IPA`
//! on the vCPU fd: 64-byte aligned, inside a memory slot, once), the guest
//! finds it with `PV_TIME_FEATURES` and `PV_TIME_ST` (which zeroes it and
//! starts counting), and at each `KVM_RUN` the shim adds to its
//! `stolen_time` the time the vCPU's thread waited on a run queue since the
//! last update (the kernel's `sched_info.run_delay`), writing the VMM's
//! memory behind the slot. Protected VMs are refused (`ENXIO`, as for a
//! host without the feature): their memory is the guest's, which the shim
//! may not write, so KCore answers their calls `NOT_SUPPORTED`.

use super::env::KvmEnv;
use super::errno::{EEXIST, EINVAL, ENXIO, Errno};
use super::vm::Vm;
use kcore_abi::smccc::RET_NOT_SUPPORTED;

/// `KVM_ARM_VCPU_PVTIME_CTRL`: the vCPU attribute group.
pub const GROUP: u32 = 2;
/// `KVM_ARM_VCPU_PVTIME_IPA`: its one attribute.
pub const IPA: u64 = 0;
/// `PV_TIME_FEATURES` (SMC64, standard hypervisor service).
pub const PV_TIME_FEATURES: u32 = 0xC500_0020;
/// `PV_TIME_ST`: the structure's IPA.
pub const PV_TIME_ST: u32 = 0xC500_0021;
/// `GPA_INVALID`: what `KVM_GET_DEVICE_ATTR` reads before an IPA is set.
const NO_IPA: u64 = u64::MAX;
/// The structure's bytes (`struct pvclock_vcpu_stolen_time`): revision,
/// attributes, `stolen_time` at 8, padding.
const SIZE: usize = 64;
/// Where `stolen_time` is.
const STOLEN: u64 = 8;

/// A vCPU's stolen-time state (all zero: no IPA yet).
#[derive(Default)]
pub struct PvTime {
    /// The VMM set [`PvTime::ipa`].
    set: bool,
    /// The structure's IPA.
    ipa: u64,
    /// The thread's run delay at the last update (ns).
    last: u64,
}

/// The VMM's address of `len` bytes of guest memory at `ipa`, if a slot
/// backs them all.
fn user_addr<E: KvmEnv>(env: &mut E, vm: &Vm, ipa: u64, len: u64) -> Option<u64> {
    let s = vm.with_cfg(env, |_, c| c.slot_of(ipa >> 12))?;
    let off = ipa - s.gfn * 4096;
    (off + len <= s.pages * 4096).then_some(s.uaddr + off)
}

/// `KVM_HAS_DEVICE_ATTR`.
pub fn has_attr(vm: &Vm, attr: u64) -> Result<(), Errno> {
    if vm.protected() || attr != IPA {
        return Err(ENXIO);
    }
    Ok(())
}

/// `KVM_SET_DEVICE_ATTR`: the IPA, read from the VMM's `addr`.
pub fn set_attr<E: KvmEnv>(
    env: &mut E,
    vm: &Vm,
    pv: &mut PvTime,
    attr: u64,
    addr: u64,
) -> Result<(), Errno> {
    has_attr(vm, attr)?;
    let mut b = [0u8; 8];
    env.copy_from_user(addr, &mut b)?;
    let ipa = u64::from_le_bytes(b);
    if !ipa.is_multiple_of(SIZE as u64) {
        return Err(EINVAL);
    }
    if pv.set {
        return Err(EEXIST);
    }
    if user_addr(env, vm, ipa, 1).is_none() {
        return Err(EINVAL);
    }
    pv.set = true;
    pv.ipa = ipa;
    Ok(())
}

/// `KVM_GET_DEVICE_ATTR`: the IPA (all ones before one is set).
pub fn get_attr<E: KvmEnv>(
    env: &mut E,
    vm: &Vm,
    pv: &PvTime,
    attr: u64,
    addr: u64,
) -> Result<(), Errno> {
    has_attr(vm, attr)?;
    let ipa = if pv.set { pv.ipa } else { NO_IPA };
    env.copy_to_user(addr, &ipa.to_le_bytes())
}

/// The guest's `PV_TIME_FEATURES` of `feature`: 0 for the two calls once
/// the VMM set the IPA.
pub fn features(pv: &PvTime, feature: u32) -> u64 {
    if pv.set && (feature == PV_TIME_FEATURES || feature == PV_TIME_ST) {
        0
    } else {
        RET_NOT_SUPPORTED
    }
}

/// The guest's `PV_TIME_ST`: zeroes the structure, starts counting from
/// now and returns its IPA (`NOT_SUPPORTED` without one).
pub fn start<E: KvmEnv>(env: &mut E, vm: &Vm, pv: &mut PvTime) -> u64 {
    if !pv.set {
        return RET_NOT_SUPPORTED;
    }
    pv.last = env.run_delay();
    if let Some(u) = user_addr(env, vm, pv.ipa, SIZE as u64) {
        // As KVM's `kvm_write_guest_lock`, a failure is not the guest's.
        if env.copy_to_user(u, &[0u8; SIZE]).is_ok() {
            written(env, vm, pv.ipa);
        }
    }
    pv.ipa
}

/// At `KVM_RUN`: adds the run delay since the last update to the guest's
/// `stolen_time` (nothing before the VMM set an IPA).
pub fn update<E: KvmEnv>(env: &mut E, vm: &Vm, pv: &mut PvTime) {
    if !pv.set {
        return;
    }
    let Some(u) = user_addr(env, vm, pv.ipa + STOLEN, 8) else {
        return;
    };
    let mut b = [0u8; 8];
    if env.copy_from_user(u, &mut b).is_err() {
        return;
    }
    let now = env.run_delay();
    let stolen = u64::from_le_bytes(b).wrapping_add(now.wrapping_sub(pv.last));
    pv.last = now;
    if env.copy_to_user(u, &stolen.to_le_bytes()).is_ok() {
        written(env, vm, pv.ipa + STOLEN);
    }
}

/// The record's page at `ipa` was written through the VMM's mapping, which
/// no dirty-log fault sees: dirty, if its slot logs (as KVM's
/// `kvm_put_guest` marks it), so a migration carries the record.
fn written<E: KvmEnv>(env: &mut E, vm: &Vm, ipa: u64) {
    vm.with_cfg(env, |_, c| c.written(ipa >> 12));
}
