//! A vCPU of the KVM API: `KVM_ARM_VCPU_INIT`, `ONE_REG`,
//! `KVM_GET_REG_LIST` and `KVM_RUN`, which enters the guest through KCore
//! (`HostVcpuRun`) and handles its exits: the vGIC's registers and memory
//! slots the shim emulates itself, other MMIO goes to the VMM
//! (`KVM_EXIT_MMIO`; a read's data, put in `kvm_run.mmio.data`, completes
//! the access at the next entry), memory faults are backed with the VMM's
//! pages, PSCI is answered in the shim (`SYSTEM_OFF`/`RESET` become
//! `KVM_EXIT_SYSTEM_EVENT`), SGIs raised in the vGIC, and WFI sleeps until
//! an interrupt for the vCPU, its timer deadline or a signal. KCore refusing
//! an entry is `KVM_EXIT_FAIL_ENTRY` with KCore's status.

use super::env::KvmEnv;
use super::errno::{
    E2BIG, EFAULT, EINTR, EINVAL, ENODEV, ENOENT, ENOEXEC, ENOMEM, ENXIO, EPERM, Errno,
};
use super::hypercalls;
use super::pvtime::{self, PvTime};
use super::regs::{self, Reg};
use super::stats::bump;
use super::timer;
use super::uapi::{self, exit as kexit, run as krun, system_event, vcpu_init};
use super::vgic::{IRQ_SLOTS, MAX_VCPUS};
use super::vm::{self, Host, Vm, errno_of, power};
use crate::hypercall::{self, CallError};
use crate::psci;
use crate::runpage::{Exit, write_entry};
use core::sync::atomic::Ordering::SeqCst;
use kcore_abi::run::{self, ExitReason, exit_flags};
use kcore_abi::{Error, reg as kr, smccc};

/// A vCPU as its fd's holder keeps it (the glue serialises its ioctls).
/// All zero: not created.
pub struct Vcpu {
    id: u32,
    created: bool,
    /// `KVM_ARM_VCPU_INIT` succeeded.
    initialized: bool,
    /// Its feature bits (`features[0]`).
    features: u32,
    /// It entered the guest at least once.
    ran: bool,
    /// KServ's run page for `HostVcpuRun`.
    run_pfn: u64,
    /// The next entry's `COMPLETION`.
    completion: u64,
    /// Bytes of an MMIO read the VMM completes (0: none pending).
    mmio_read: u8,
    /// Stolen time.
    pv: PvTime,
}

/// Creates vCPU `id` (reserved with [`vm::vcpu_reserve`]) in `v`, zeroed by
/// the glue.
pub fn create<E: KvmEnv>(env: &mut E, vm: &Vm, v: &mut Vcpu, id: u64) -> Result<(), Errno> {
    let pfn = env.alloc_pages(0).ok_or(ENOMEM)?;
    if let Err(e) = vm::vcpu_create(env, vm, id) {
        env.free_page(pfn);
        return Err(e);
    }
    v.id = id as u32;
    v.created = true;
    v.run_pfn = pfn;
    vm.vcpus[id as usize].run_pfn.store(pfn, SeqCst);
    bump(&vm.stats.vcpus);
    Ok(())
}

/// Frees what [`create`] allocated (after the VM's teardown).
pub fn destroy<E: KvmEnv>(env: &mut E, v: &mut Vcpu) {
    if v.run_pfn != 0 {
        env.free_page(v.run_pfn);
        v.run_pfn = 0;
    }
    v.created = false;
}

/// `struct kvm_guest_debug`'s size: `control`, `pad`, 64 debug registers
/// (`uapi::SET_GUEST_DEBUG`'s).
const GUEST_DEBUG_SIZE: usize = 8 + 512;

/// `KVM_ARM_VCPU_FINALIZE` (`_IOW(KVMIO, 0xc2, int)`).
pub const ARM_VCPU_FINALIZE: u32 =
    kcore_abi::kvm_ext::kvm_ioc(kcore_abi::kvm_ext::IOC_WRITE, 0xC2, 4);

/// The vCPU fd's ioctls. Unknown ones are `EINVAL` (`kvm_arch_vcpu_ioctl`);
/// vCPU device attributes as [`device_attr`] says.
pub fn ioctl<E: KvmEnv>(
    env: &mut E,
    vm: &Vm,
    host: &Host,
    v: &mut Vcpu,
    cmd: u32,
    arg: u64,
) -> Result<i64, Errno> {
    if !v.created {
        return Err(EINVAL);
    }
    match cmd {
        uapi::RUN if arg == 0 => run_vcpu(env, vm, v),
        uapi::RUN => Err(EINVAL),
        uapi::ARM_VCPU_INIT => {
            let mut b = [0u8; uapi::size::VCPU_INIT];
            env.copy_from_user(arg, &mut b)?;
            init(env, vm, host, v, &b).map(|()| 0)
        }
        uapi::GET_ONE_REG | uapi::SET_ONE_REG => {
            if !v.initialized {
                return Err(ENOEXEC);
            }
            let mut b = [0u8; uapi::size::ONE_REG];
            env.copy_from_user(arg, &mut b)?;
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[..8]);
            let id = u64::from_le_bytes(w);
            w.copy_from_slice(&b[8..]);
            let addr = u64::from_le_bytes(w);
            if cmd == uapi::GET_ONE_REG {
                get_one_reg(env, vm, v, id, addr).map(|()| 0)
            } else {
                set_one_reg(env, vm, v, id, addr).map(|()| 0)
            }
        }
        uapi::GET_REG_LIST => {
            if !v.initialized {
                return Err(ENOEXEC);
            }
            let mut b = [0u8; 8];
            env.copy_from_user(arg, &mut b)?;
            let n = u64::from_le_bytes(b);
            let clidr = guest_id_reg(env, kr::SYSREG | kr::id::CLIDR_EL1)?;
            let count = regs::COUNT + regs::demux_ids(clidr).count();
            env.copy_to_user(arg, &(count as u64).to_le_bytes())?;
            if n < count as u64 {
                return Err(E2BIG);
            }
            let ids = (0..regs::COUNT)
                .map(regs::list)
                .chain(regs::demux_ids(clidr));
            for (i, r) in ids.enumerate() {
                env.copy_to_user(arg + 8 + 8 * i as u64, &r.to_le_bytes())?;
            }
            Ok(0)
        }
        uapi::GET_MP_STATE => {
            let state = match vm.vcpus[v.id as usize].power.load(SeqCst) {
                power::ON => uapi::mp_state::RUNNABLE,
                _ => uapi::mp_state::STOPPED,
            };
            env.copy_to_user(arg, &state.to_le_bytes())?;
            Ok(0)
        }
        uapi::GET_VCPU_EVENTS | uapi::SET_VCPU_EVENTS if !v.initialized => Err(ENOEXEC),
        uapi::GET_VCPU_EVENTS => {
            let serror = match vm.protected() {
                true => 0,
                false => hypercall::vcpu_get_reg(env, vm.handle(), u64::from(v.id), kr::SERROR)
                    .map_err(errno_of)?,
            };
            env.copy_to_user(arg, &super::events::get(serror, host.ras()))?;
            Ok(0)
        }
        uapi::SET_VCPU_EVENTS => {
            let mut b = [0u8; super::events::SIZE];
            env.copy_from_user(arg, &mut b)?;
            let ev = super::events::set(&b, host.ras())?;
            if ev.any() && vm.protected() {
                return Err(EPERM);
            }
            let (h, id) = (vm.handle(), u64::from(v.id));
            if let Some(serror) = ev.serror {
                hypercall::vcpu_set_reg(env, h, id, kr::SERROR, serror).map_err(errno_of)?;
            }
            if ev.ext_dabt {
                hypercall::vcpu_set_reg(env, h, id, kr::INJECT_DABT, 0).map_err(errno_of)?;
            }
            Ok(0)
        }
        uapi::SET_GUEST_DEBUG => {
            // The whole `struct kvm_guest_debug`, as `kvm_vcpu_ioctl`
            // copies it (`EFAULT`).
            let mut b = [0u8; GUEST_DEBUG_SIZE];
            env.copy_from_user(arg, &mut b)?;
            set_guest_debug(env, vm, v, &b).map(|()| 0)
        }
        uapi::SET_MP_STATE => {
            let mut b = [0u8; uapi::size::MP_STATE];
            env.copy_from_user(arg, &mut b)?;
            set_mp_state(env, vm, v, u32::from_le_bytes(b)).map(|()| 0)
        }
        uapi::SET_DEVICE_ATTR | uapi::GET_DEVICE_ATTR | uapi::HAS_DEVICE_ATTR => {
            let mut b = [0u8; uapi::size::DEVICE_ATTR];
            env.copy_from_user(arg, &mut b)?;
            device_attr(env, vm, v, cmd, &b).map(|()| 0)
        }
        ARM_VCPU_FINALIZE => {
            // `kvm_arm_vcpu_finalize`: only SVE is finalised, and no vCPU
            // here has it (`KVM_CAP_ARM_SVE` is 0).
            if !v.initialized {
                return Err(ENOEXEC);
            }
            let mut b = [0u8; 4];
            env.copy_from_user(arg, &mut b)?;
            Err(EINVAL)
        }
        _ => Err(EINVAL),
    }
}

/// `KVM_ARM_VCPU_PMU_V3_CTRL`: the vCPU attribute group of the PMU.
const PMU_GROUP: u32 = 0;
/// `KVM_ARM_VCPU_PMU_V3_IRQ`.
const PMU_IRQ: u64 = 0;

/// The vCPU's device attributes (`struct kvm_device_attr` in `b`), as
/// `kvm_arm_vcpu_arch_{set,get,has}_attr`: `KVM_ARM_VCPU_TIMER_CTRL`
/// ([`timer`]), `KVM_ARM_VCPU_PVTIME_CTRL` ([`pvtime`]); other groups
/// `ENXIO`. No vCPU has a PMU, so `KVM_ARM_VCPU_PMU_V3_CTRL` answers as
/// `kvm_arm_pmu_v3_{set,get,has}_attr` do for a vCPU without one: a set
/// `ENODEV`; a get of the PMU's interrupt `EINVAL` without a vGIC, else
/// `ENODEV`; any other get, and every has, `ENXIO`.
fn device_attr<E: KvmEnv>(
    env: &mut E,
    vm: &Vm,
    v: &mut Vcpu,
    cmd: u32,
    b: &[u8; uapi::size::DEVICE_ATTR],
) -> Result<(), Errno> {
    let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
    let group = u32::from_le_bytes(b[4..8].try_into().unwrap_or([0; 4]));
    let (attr, addr) = (word(8), word(16));
    if group == PMU_GROUP {
        return Err(match cmd {
            uapi::SET_DEVICE_ATTR => ENODEV,
            uapi::GET_DEVICE_ATTR if attr == PMU_IRQ => {
                if vm.with_gic(env, |g| (g.created, 0)) {
                    ENODEV
                } else {
                    EINVAL
                }
            }
            _ => ENXIO,
        });
    }
    if group == timer::GROUP {
        return match cmd {
            uapi::SET_DEVICE_ATTR => timer::set_attr(env, vm, v.ran, attr, addr),
            uapi::GET_DEVICE_ATTR => timer::get_attr(env, vm, attr, addr),
            _ => timer::has_attr(attr),
        };
    }
    if group != pvtime::GROUP {
        return Err(ENXIO);
    }
    match cmd {
        uapi::SET_DEVICE_ATTR => pvtime::set_attr(env, vm, &mut v.pv, attr, addr),
        uapi::GET_DEVICE_ATTR => pvtime::get_attr(env, vm, &v.pv, attr, addr),
        _ => pvtime::has_attr(vm, attr),
    }
}

/// `KVM_SET_MP_STATE` (`kvm_arch_vcpu_ioctl_set_mpstate`): `RUNNABLE` powers
/// the vCPU on, `STOPPED` off (a guest's `CPU_ON` may then start it, as
/// after its own `CPU_OFF`); KCore's view follows for a non-protected vCPU
/// that exists there (the `POWER_OFF` pseudo-register). `SUSPENDED` is not
/// offered (`EINVAL`, as for an unknown state; `docs/kvm.md`).
fn set_mp_state<E: KvmEnv>(env: &mut E, vm: &Vm, v: &Vcpu, state: u32) -> Result<(), Errno> {
    let (power, off) = match state {
        uapi::mp_state::RUNNABLE => (power::ON, 0),
        uapi::mp_state::STOPPED => (power::OFF, 1),
        _ => return Err(EINVAL),
    };
    if v.initialized && !vm.protected() {
        hypercall::vcpu_set_reg(env, vm.handle(), u64::from(v.id), kr::POWER_OFF, off)
            .map_err(errno_of)?;
    }
    vm.vcpus[v.id as usize].power.store(power, SeqCst);
    if power == power::ON {
        vm.kick(env, v.id as usize);
    }
    Ok(())
}

/// `KVM_SET_GUEST_DEBUG` (`kvm_arch_vcpu_ioctl_set_guest_debug`): bits
/// outside arm64's valid mask are `EINVAL`; without `ENABLE` debugging
/// stops; with it the guest's debug exceptions (`BRK` included, as KVM
/// routes them with `USE_SW_BP` or not) exit as `KVM_EXIT_DEBUG`,
/// `SINGLESTEP` steps one instruction per `KVM_RUN`, and `USE_HW` runs the
/// guest on the VMM's breakpoints and watchpoints (`kvm_guest_debug_arch`,
/// KCore's `reg::HOST_DEBUG_REG`, which KCore sanitises) instead of its
/// own. A protected vCPU is not debugged (`EPERM`).
fn set_guest_debug<E: KvmEnv>(
    env: &mut E,
    vm: &Vm,
    v: &Vcpu,
    b: &[u8; GUEST_DEBUG_SIZE],
) -> Result<(), Errno> {
    use kr::guest_debug as k;
    use uapi::guest_debug as g;
    let word = |i: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(w)
    };
    let control = word(0) as u32;
    if control & !g::VALID != 0 {
        return Err(EINVAL);
    }
    if vm.protected() {
        return Err(EPERM);
    }
    let (h, id) = (vm.handle(), u64::from(v.id));
    let mut bits = 0;
    if control & g::ENABLE != 0 {
        bits = k::ENABLE;
        if control & g::SINGLESTEP != 0 {
            bits |= k::SINGLE_STEP;
        }
        if control & g::USE_HW != 0 {
            bits |= k::USE_HW;
            // `dbg_bcr[16]`, `dbg_bvr[16]`, `dbg_wcr[16]`, `dbg_wvr[16]`
            // after `control` and `pad`, into KCore's order per pair `n`:
            // `BVR`, `BCR`, `WVR`, `WCR`.
            for n in 0..16 {
                let at = |array: usize| 8 + 128 * array + 8 * n;
                let pair = [word(at(1)), word(at(0)), word(at(3)), word(at(2))];
                for (j, val) in pair.into_iter().enumerate() {
                    let r = kr::HOST_DEBUG_REG + (4 * n + j) as u64;
                    hypercall::vcpu_set_reg(env, h, id, r, val).map_err(errno_of)?;
                }
            }
        }
    }
    hypercall::vcpu_set_reg(env, h, id, kr::GUEST_DEBUG, bits).map_err(errno_of)
}

/// `KVM_ARM_VCPU_INIT`: the preferred target only, features `POWER_OFF`
/// and `PSCI_0_2` (features KVM does not know: `ENOENT`; others, and a
/// different target or feature set than a previous init: `EINVAL`). A
/// re-init resets the vCPU, as KVM does when a VMM reboots its guest: the
/// power state, and once it ran every register KCore keeps to its reset
/// value (written with `HostVcpuSetReg`); a protected vCPU cannot be reset
/// once it ran (KCore holds its registers): `EPERM`.
fn init<E: KvmEnv>(
    env: &mut E,
    vm: &Vm,
    host: &Host,
    v: &mut Vcpu,
    b: &[u8; 32],
) -> Result<(), Errno> {
    let target = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    if target != vcpu_init::preferred_target(host.midr) {
        return Err(EINVAL);
    }
    let mut features = [0u32; 7];
    for (i, f) in features.iter_mut().enumerate() {
        let o = 4 + 4 * i;
        *f = u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    }
    // `kvm_vcpu_set_target`'s order: a known feature that differs from a
    // previous init, then an unknown one, then one not offered.
    let known = (1u32 << vcpu_init::MAX_FEATURES) - 1;
    if v.initialized && features[0] & known != v.features {
        return Err(EINVAL);
    }
    if features[0] & !known != 0 || features[1..].iter().any(|&f| f != 0) {
        return Err(ENOENT);
    }
    let offered = 1 << vcpu_init::POWER_OFF | 1 << vcpu_init::PSCI_0_2;
    if features[0] & !offered != 0 {
        return Err(EINVAL);
    }
    if v.ran {
        if vm.protected() {
            return Err(EPERM);
        }
        reset_registers(env, vm, v)?;
        v.completion = 0;
        v.mmio_read = 0;
    }
    v.features = features[0];
    v.initialized = true;
    let state = if features[0] & 1 << vcpu_init::POWER_OFF != 0 {
        power::OFF
    } else {
        power::ON
    };
    vm.vcpus[v.id as usize].power.store(state, SeqCst);
    Ok(())
}

/// Every register of `KVM_GET_REG_LIST` that KCore keeps back to its reset
/// value (`regs::reset_value`), and the physical timer stopped; the VM's
/// timer offset and PSCI version and the vCPU's `MPIDR_EL1` stay.
fn reset_registers<E: KvmEnv>(env: &mut E, vm: &Vm, v: &Vcpu) -> Result<(), Errno> {
    let h = vm.handle();
    let vid = u64::from(v.id);
    let mpidr = 1 << 31 | psci::mpidr_of(v.id as usize);
    let set = |env: &mut E, k: u64, val: u64| {
        hypercall::vcpu_set_reg(env, h, vid, k, val).map_err(errno_of)
    };
    for i in 0..regs::COUNT {
        match regs::decode(regs::list(i)) {
            Ok(Reg::Kcore(kr::sys::MPIDR_EL1)) => {}
            Ok(r @ Reg::Kcore(k)) => set(env, k, regs::reset_value(r, mpidr))?,
            Ok(Reg::Fp32(k)) => set(env, k, 0)?,
            Ok(Reg::V(n)) => {
                set(env, kr::V_LO + n, 0)?;
                set(env, kr::V_HI + n, 0)?;
            }
            _ => {}
        }
    }
    // The physical timer, which the list leaves out: stopped, as KVM's
    // `kvm_timer_vcpu_reset` leaves both timers.
    set(env, kr::sys::CNTP_CTL_EL0, 0)
}

/// The value of `r` for `GET_ONE_REG`, as little-endian bytes (16 for a
/// vector register).
fn read_reg<E: KvmEnv>(env: &mut E, vm: &Vm, v: &Vcpu, r: Reg) -> Result<[u8; 16], Errno> {
    let h = vm.handle();
    let id = u64::from(v.id);
    let get = |env: &mut E, k: u64| -> Result<u64, Errno> {
        if vm.protected() {
            // KCore reveals nothing of a protected vCPU; its MPIDR is no
            // secret (KCore derives it from the index).
            return if k == kr::sys::MPIDR_EL1 {
                Ok(1 << 31 | psci::mpidr_of(v.id as usize))
            } else {
                Err(EPERM)
            };
        }
        hypercall::vcpu_get_reg(env, h, id, k).map_err(|e| match e {
            CallError::Kcore(Error::NotFound) => ENOENT,
            e => errno_of(e),
        })
    };
    let mut out = [0u8; 16];
    match r {
        Reg::Kcore(k) => out[..8].copy_from_slice(&get(env, k)?.to_le_bytes()),
        Reg::Fp32(k) => out[..4].copy_from_slice(&(get(env, k)? as u32).to_le_bytes()),
        Reg::V(n) => {
            out[..8].copy_from_slice(&get(env, kr::V_LO + n)?.to_le_bytes());
            out[8..].copy_from_slice(&get(env, kr::V_HI + n)?.to_le_bytes());
        }
        Reg::Spsr32 => {}
        // One arm for the timers' pseudo-registers: more arms would make
        // this match a jump table (an indirect branch, which the module
        // must not have).
        Reg::TimerCnt | Reg::PtimerCnt | Reg::PtimerCtl => {
            let v = if vm.protected() {
                return Err(EPERM);
            } else if r == Reg::PtimerCtl {
                // ISTATUS as of now, as KVM's `read_timer_ctl`.
                let ctl = get(env, kr::sys::CNTP_CTL_EL0)? & !CNT_CTL_ISTATUS;
                let cval = get(env, kr::sys::CNTP_CVAL_EL0)?;
                ctl | if env.now() >= cval {
                    CNT_CTL_ISTATUS
                } else {
                    0
                }
            } else if r == Reg::PtimerCnt {
                // No physical offset.
                env.now()
            } else {
                env.now().wrapping_sub(get(env, kr::CNTVOFF)?)
            };
            out[..8].copy_from_slice(&v.to_le_bytes());
        }
        Reg::PsciVersion => {
            // KVM_ARM_PSCI_0_1 for a vCPU without KVM_ARM_VCPU_PSCI_0_2.
            let version = if v.features & 1 << vcpu_init::PSCI_0_2 == 0 {
                psci::VERSION_0_1
            } else {
                vm.psci_version.load(SeqCst)
            };
            out[..8].copy_from_slice(&version.to_le_bytes())
        }
        Reg::Id(k) => out[..8].copy_from_slice(&guest_id_reg(env, k)?.to_le_bytes()),
        // NOT_AVAIL: KCore answers the guest's SMCCC_ARCH_FEATURES with
        // NOT_SUPPORTED.
        Reg::Zero | Reg::Workaround => {}
        Reg::FeatureBitmap(n) => out[..8].copy_from_slice(&hypercalls::bitmap(vm, n).to_le_bytes()),
    }
    Ok(out)
}

fn get_one_reg<E: KvmEnv>(env: &mut E, vm: &Vm, v: &Vcpu, id: u64, addr: u64) -> Result<(), Errno> {
    if let Some(csselr) = regs::ccsidr_of(id)? {
        let c = ccsidr(env, csselr)?;
        return env.copy_to_user(addr, &c.to_le_bytes());
    }
    let r = regs::decode(id)?;
    let bytes = read_reg(env, vm, v, r)?;
    env.copy_to_user(addr, &bytes[..uapi::reg::size(id).min(16)])
}

/// `CNTx_CTL_EL0.ISTATUS`: the timer's condition is met.
const CNT_CTL_ISTATUS: u64 = 1 << 2;

/// `SET_ONE_REG`. A protected VM's vCPU 0 takes only its PC and `x0`, and
/// only before it first ran; its other vCPUs take nothing (they start where
/// the guest's PSCI `CPU_ON` says). Anything else is `EPERM`, except a write
/// of the value the register holds at reset (so VMMs' ordinary setup works).
fn set_one_reg<E: KvmEnv>(env: &mut E, vm: &Vm, v: &Vcpu, id: u64, addr: u64) -> Result<(), Errno> {
    if let Some(csselr) = regs::ccsidr_of(id)? {
        // A cache's geometry is invariant: only its own value, and no such
        // cache is `ENOENT` before the value is read (`demux_c15_set`).
        let c = ccsidr(env, csselr)?;
        let mut b = [0u8; 4];
        env.copy_from_user(addr, &mut b)?;
        return if b == c.to_le_bytes() {
            Ok(())
        } else {
            Err(EINVAL)
        };
    }
    let r = regs::decode(id)?;
    let size = uapi::reg::size(id).min(16);
    let mut b = [0u8; 16];
    env.copy_from_user(addr, &mut b[..size])?;
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    let lo = u64::from_le_bytes(w);
    w.copy_from_slice(&b[8..]);
    let hi = u64::from_le_bytes(w);
    let h = vm.handle();
    let vid = u64::from(v.id);
    if let Reg::Kcore(kr::PSTATE) = r
        && !regs::pstate_mode_ok(lo)
    {
        return Err(EINVAL);
    }
    // Fixed values: a write must repeat them (KVM takes neither more than
    // the host offers nor, here, less: `docs/kvm.md`).
    match r {
        Reg::Zero | Reg::Workaround => return if lo == 0 { Ok(()) } else { Err(EINVAL) },
        Reg::FeatureBitmap(n) => return hypercalls::set_bitmap(env, vm, n, lo),
        _ => {}
    }
    if let Reg::Id(k) = r {
        // Read-only, as in KVM 6.1: only the value every guest reads (the
        // AArch32 ones ignore any write).
        return if regs::id_write_ignored(k) || guest_id_reg(env, k)? == lo {
            Ok(())
        } else {
            Err(EINVAL)
        };
    }
    if vm.protected() {
        let mpidr = 1 << 31 | psci::mpidr_of(v.id as usize);
        let allowed = matches!(r, Reg::Kcore(kr::PC) | Reg::Kcore(kr::X0)) && !v.ran && v.id == 0;
        if !allowed {
            let same = match r {
                Reg::V(_) => lo == 0 && hi == 0,
                Reg::PsciVersion => return set_psci_version(vm, v, lo),
                Reg::TimerCnt | Reg::PtimerCnt => false,
                r => lo == regs::reset_value(r, mpidr),
            };
            return if same && !v.ran { Ok(()) } else { Err(EPERM) };
        }
    }
    let set = |env: &mut E, k: u64, val: u64| {
        hypercall::vcpu_set_reg(env, h, vid, k, val).map_err(|e| match e {
            CallError::Kcore(Error::NotFound | Error::InvalidParameter) => EINVAL,
            e => errno_of(e),
        })
    };
    match r {
        Reg::Kcore(kr::sys::MPIDR_EL1) => {
            // KCore derives it from the index: only that value is taken.
            if lo == 1 << 31 | psci::mpidr_of(v.id as usize) {
                Ok(())
            } else {
                Err(EINVAL)
            }
        }
        Reg::Kcore(k) => set(env, k, lo),
        Reg::Fp32(k) => set(env, k, lo & 0xFFFF_FFFF),
        Reg::V(n) => {
            set(env, kr::V_LO + n, lo)?;
            set(env, kr::V_HI + n, hi)
        }
        Reg::Spsr32 => {
            if lo == 0 {
                Ok(())
            } else {
                Err(EINVAL)
            }
        }
        Reg::TimerCnt => {
            // The offset of the whole VM, as KVM sets it.
            let off = env.now().wrapping_sub(lo);
            vm.cntvoff.store(off, SeqCst);
            let order = vm.with_cfg(env, |_, c| {
                let mut o = [0u8; MAX_VCPUS];
                o[..c.vcpu_order().len()].copy_from_slice(c.vcpu_order());
                (o, c.vcpu_order().len())
            });
            for &t in &order.0[..order.1] {
                set(env, kr::CNTVOFF, off)
                    .or_else(|e| if u64::from(t) == vid { Err(e) } else { Ok(()) })?;
                let _ = hypercall::vcpu_set_reg(env, h, u64::from(t), kr::CNTVOFF, off);
            }
            Ok(())
        }
        Reg::PtimerCtl => set(env, kr::sys::CNTP_CTL_EL0, lo),
        // No physical counter offset: the count is the machine's.
        Reg::PtimerCnt => Err(EINVAL),
        Reg::PsciVersion => set_psci_version(vm, v, lo),
        Reg::Id(_) | Reg::Zero | Reg::Workaround | Reg::FeatureBitmap(_) => Ok(()),
    }
}

/// An identification register as guests read it (no secret of any VM's:
/// the same for protected ones).
fn guest_id_reg<E: KvmEnv>(env: &mut E, k: u64) -> Result<u64, Errno> {
    hypercall::guest_id_reg(env, k).map_err(|e| match e {
        CallError::Kcore(Error::NotFound) => ENOENT,
        e => errno_of(e),
    })
}

/// `KVM_REG_ARM_DEMUX_ID_CCSIDR`: the geometry of the cache `csselr`
/// selects as this CPU reads it, which is what the guest reads (KCore does
/// not trap `CCSIDR_EL1`), if KCore's `CLIDR_EL1` (the guest's) has that
/// cache (`ENOENT`), as KVM 6.1's `demux_c15_get`. Not secret: the same
/// for protected VMs.
fn ccsidr<E: KvmEnv>(env: &mut E, csselr: u8) -> Result<u32, Errno> {
    let clidr = guest_id_reg(env, kr::SYSREG | kr::id::CLIDR_EL1)?;
    if regs::csselr_valid(clidr, csselr) {
        Ok(env.ccsidr(csselr))
    } else {
        Err(ENOENT)
    }
}

/// `KVM_REG_ARM_PSCI_VERSION` (`kvm_arm_set_fw_reg`): 0.2, 1.0 or 1.1 for
/// a vCPU with `KVM_ARM_VCPU_PSCI_0_2`, only 0.1 (the version it has) for
/// one without; `EINVAL` otherwise.
fn set_psci_version(vm: &Vm, vcpu: &Vcpu, v: u64) -> Result<(), Errno> {
    if vcpu.features & 1 << vcpu_init::PSCI_0_2 == 0 {
        return if v == psci::VERSION_0_1 {
            Ok(())
        } else {
            Err(EINVAL)
        };
    }
    if matches!(v, psci::VERSION_0_2 | psci::VERSION_1_0 | psci::VERSION_1_1) {
        vm.psci_version.store(v, SeqCst);
        Ok(())
    } else {
        Err(EINVAL)
    }
}

// ---- KVM_RUN ------------------------------------------------------------------------------

/// What the run loop does after an exit.
enum Next {
    /// Enter the guest again.
    Enter,
    /// Sleep until an interrupt, a kick, a signal or this deadline.
    Idle(u64),
    /// Return to the VMM with this value (`kvm_run` filled).
    Return(i64),
}

fn run_u32<E: KvmEnv>(env: &mut E, off: usize, v: u32) {
    env.run_write(off, &v.to_le_bytes());
}

fn run_u64<E: KvmEnv>(env: &mut E, off: usize, v: u64) {
    env.run_write(off, &v.to_le_bytes());
}

fn exit_to<E: KvmEnv>(env: &mut E, reason: u32) {
    env.run_write(krun::UNION, &[0u8; krun::UNION_SIZE]);
    run_u32(env, krun::EXIT_REASON, reason);
}

/// `KVM_RUN`.
fn run_vcpu<E: KvmEnv>(env: &mut E, vm: &Vm, v: &mut Vcpu) -> Result<i64, Errno> {
    if !v.initialized {
        return Err(ENOEXEC);
    }
    if !v.ran {
        // KVM's first-run work (`kvm_arch_vcpu_run_pid_change`): the vGIC's
        // resources, then the timers, before `immediate_exit` is looked at.
        vm::prepare_run(env, vm)?;
        timer::check(vm)?;
    }
    if v.mmio_read != 0 {
        // The VMM's answer to the MMIO read it was asked for.
        let mut d = [0u8; 8];
        env.run_read(krun::MMIO_DATA, &mut d);
        let n = v.mmio_read as usize;
        d[n.min(8)..].fill(0);
        v.completion = u64::from_le_bytes(d);
        v.mmio_read = 0;
    }
    let mut ie = [0u8; 1];
    env.run_read(krun::IMMEDIATE_EXIT, &mut ie);
    if ie[0] != 0 {
        return Err(EINTR);
    }
    pvtime::update(env, vm, &mut v.pv);
    run_u32(env, krun::EXIT_REASON, kexit::UNKNOWN);
    env.run_write(krun::FLAGS, &0u16.to_le_bytes());
    let me = &vm.vcpus[v.id as usize];
    loop {
        if env.signal_pending() {
            exit_to(env, kexit::INTR);
            bump(&me.stats.signal_exits);
            return Err(EINTR);
        }
        me.kicked.store(false, SeqCst);
        if me.power.load(SeqCst) != power::ON {
            env.wait(u64::MAX, vm.max_halt_poll_ns());
            continue;
        }
        let next = enter(env, vm, v);
        match next {
            Next::Enter => env.relax(),
            Next::Idle(deadline) => idle(env, vm, v, deadline),
            Next::Return(r) => return Ok(r),
        }
    }
}

/// Sleeps until the vCPU has an interrupt, its deadline passes, it is
/// kicked (power changes) or a signal comes.
fn idle<E: KvmEnv>(env: &mut E, vm: &Vm, v: &Vcpu, deadline: u64) {
    let id = v.id as usize;
    let me = &vm.vcpus[id];
    let mut waited = false;
    loop {
        if env.signal_pending() || me.power.load(SeqCst) != power::ON || env.now() >= deadline {
            return;
        }
        if vm.with_gic(env, |g| (g.has_work(id), 0)) {
            if waited {
                bump(&me.stats.halt_wakeup);
            }
            return;
        }
        env.wait(deadline, vm.max_halt_poll_ns());
        waited = true;
        if me.kicked.swap(false, SeqCst) {
            continue;
        }
    }
}

/// One entry into the guest and what its exit asks for.
fn enter<E: KvmEnv>(env: &mut E, vm: &Vm, v: &mut Vcpu) -> Next {
    let id = v.id as usize;
    let mut irqs = [0u64; IRQ_SLOTS];
    let (n, flags) = vm.with_gic(env, |g| ((g.flush(id, &mut irqs), g.timer_flags(id)), 0));
    write_entry(env, v.run_pfn, flags, v.completion, &irqs[..n]);
    env.enter_guest();
    if vm.vcpus[id].kicked.load(SeqCst) {
        // A kick came after the interrupts were chosen: choose again.
        env.leave_guest();
        vm.with_gic(env, |g| (g.fold(id, &irqs[..n], &irqs[..n]), 0));
        return Next::Enter;
    }
    let r = hypercall::vcpu_run(env, vm.handle(), u64::from(v.id), v.run_pfn);
    env.leave_guest();
    let reason = match r {
        Ok(reason) => reason,
        Err(e) => {
            vm.with_gic(env, |g| (g.fold(id, &irqs[..n], &irqs[..n]), 0));
            exit_to(env, kexit::FAIL_ENTRY);
            let status = match e {
                CallError::Kcore(e) => e.to_x0(),
                CallError::UnknownStatus(x0) => x0,
                CallError::MalformedReply => 0,
            };
            run_u64(env, krun::FAIL_ENTRY_REASON, status);
            let cpu = env.cpu();
            run_u32(env, krun::FAIL_ENTRY_CPU, cpu);
            return Next::Return(0);
        }
    };
    v.ran = true;
    v.completion = 0;
    let st = &vm.vcpus[id].stats;
    bump(&st.exits);
    // The pages KCore logged without an exit, into the bitmaps before this
    // exit's own fault (if any) is handled, and so the ring has room.
    vm::drain_ring(env, vm, v.run_pfn);
    let e = Exit::read(env, v.run_pfn);
    let deadlines = [
        e.word(run::EXIT_TIMER_DEADLINES),
        e.word(run::EXIT_TIMER_DEADLINES + 1),
    ];
    let now = env.now();
    match e.irq_states(n) {
        Some(states) => {
            let acked = vm.with_gic(env, |g| {
                g.timer_exit(id, deadlines, now);
                let k = g.fold(id, &irqs[..n], states);
                (g.take_acked(), k)
            });
            if let Some(acked) = acked {
                vm::resampled(env, vm, &acked);
            }
        }
        None => return internal_error(env, reason, e.word(run::EXIT_IRQ_COUNT)),
    }
    match ExitReason::from_raw(reason) {
        Some(ExitReason::Irq) => {
            bump(&st.irq_exits);
            Next::Enter
        }
        Some(ExitReason::Mmio) => {
            let next = mmio(env, vm, v, &e);
            bump(match next {
                Next::Return(0) => &st.mmio_exit_user,
                _ => &st.mmio_exit_kernel,
            });
            next
        }
        Some(ExitReason::MemFault) => {
            let gfn = e.word(run::EXIT_ADDR) >> 12;
            let flags = e.word(run::EXIT_FLAGS);
            match vm::mem_fault(env, vm, gfn, flags) {
                Ok(()) => {
                    bump(&st.mem_faults);
                    if flags & exit_flags::WRITE_PROTECTED == 0 {
                        bump(&vm.stats.pages_backed);
                    }
                    Next::Enter
                }
                Err(err) => Next::Return(super::errno::ret(err)),
            }
        }
        Some(ExitReason::Wfi) if e.word(run::EXIT_FLAGS) & exit_flags::WFE != 0 => {
            bump(&st.wfe_exit_stat);
            Next::Enter
        }
        Some(ExitReason::Wfi) => {
            bump(&st.wfi_exit_stat);
            Next::Idle(e.word(run::EXIT_TIMER_DEADLINE))
        }
        Some(ExitReason::Psci) => {
            bump(&st.hvc_exit_stat);
            psci_call(env, vm, v, &e)
        }
        Some(ExitReason::Debug) => {
            exit_to(env, kexit::DEBUG);
            let esr = e.word(run::EXIT_DATA);
            run_u32(env, krun::DEBUG_HSR, esr as u32);
            run_u32(env, krun::DEBUG_HSR_HIGH, (esr >> 32) as u32);
            run_u64(env, krun::DEBUG_FAR, e.word(run::EXIT_ADDR));
            Next::Return(0)
        }
        Some(ExitReason::Sgi) => {
            let g1 =
                e.word(run::EXIT_FLAGS) & (exit_flags::SGI_ASGI1R | exit_flags::SGI_SGI0R) == 0;
            let value = e.word(run::EXIT_DATA);
            vm.with_gic(env, |g| ((), g.sgi(id, value, g1)));
            Next::Enter
        }
        None => internal_error(env, reason, 0),
    }
}

/// `KVM_EXIT_INTERNAL_ERROR` for an exit the shim cannot make sense of.
fn internal_error<E: KvmEnv>(env: &mut E, reason: u64, detail: u64) -> Next {
    exit_to(env, kexit::INTERNAL_ERROR);
    run_u32(
        env,
        krun::INTERNAL_SUBERROR,
        uapi::internal_error::UNEXPECTED_EXIT_REASON,
    );
    run_u32(env, krun::INTERNAL_NDATA, 2);
    run_u64(env, krun::INTERNAL_DATA, reason);
    run_u64(env, krun::INTERNAL_DATA + 8, detail);
    Next::Return(0)
}

/// An MMIO exit: the vGIC, a memory slot (a protected VM's read-only ones,
/// or one created after KCore's MMIO ranges were declared), an ioeventfd,
/// or the VMM (writes to read-only slots too, as in KVM).
fn mmio<E: KvmEnv>(env: &mut E, vm: &Vm, v: &mut Vcpu, e: &Exit) -> Next {
    let addr = e.word(run::EXIT_ADDR);
    let width = e.word(run::EXIT_WIDTH).clamp(1, 8);
    let write = e.word(run::EXIT_FLAGS) & exit_flags::WRITE != 0;
    let data = e.word(run::EXIT_DATA);
    let id = v.id as usize;
    if let Some(value) = super::vgic::its::mmio(env, vm, addr, width, write, data) {
        if !write {
            v.completion = value;
        }
        return Next::Enter;
    }
    if let Some(value) = vm.with_gic(env, |g| match g.mmio(id, addr, width, write, data) {
        Some((value, kick)) => (Some(value), kick),
        None => (None, 0),
    }) {
        if !write {
            v.completion = value;
        }
        return Next::Enter;
    }
    let gfn = addr >> 12;
    if let Some(s) = vm.with_cfg(env, |_, c| c.slot_of(gfn))
        && (!write || !s.readonly())
        && (s.readonly() || !vm.protected())
    {
        let uaddr = s.uaddr + (addr - s.gfn * 4096);
        let mut b = [0u8; 8];
        let r = if write {
            b = data.to_le_bytes();
            env.copy_to_user(uaddr, &b[..width as usize])
        } else {
            env.copy_from_user(uaddr, &mut b[..width as usize])
        };
        if r.is_err() {
            return Next::Return(super::errno::ret(EFAULT));
        }
        if !write {
            v.completion = u64::from_le_bytes(b);
        }
        if !(s.readonly() && vm.protected()) {
            // Map the page (read-only for a read-only slot): the next
            // accesses go straight to memory.
            let _ = vm.with_cfg(env, |env, c| {
                if write {
                    c.written(gfn);
                }
                c.back(env, vm, gfn, write)
            });
        }
        return Next::Enter;
    }
    if write && vm::ioeventfd_write(env, vm, addr, width, data) {
        return Next::Enter;
    }
    exit_to(env, kexit::MMIO);
    run_u64(env, krun::MMIO_PHYS_ADDR, addr);
    run_u64(env, krun::MMIO_DATA, if write { data } else { 0 });
    run_u32(env, krun::MMIO_LEN, width as u32);
    env.run_write(krun::MMIO_IS_WRITE, &[u8::from(write)]);
    if !write {
        v.mmio_read = width as u8;
    }
    Next::Return(0)
}

/// Another SMCCC call of a non-protected guest ([`hypercalls`]): `x0` is
/// the next entry's completion, `x1..x3` are set now (KVM sets all four).
fn firmware_call<E: KvmEnv>(env: &mut E, vm: &Vm, v: &mut Vcpu, fid: u32, e: &Exit) -> Next {
    let args = [0, 1, 2].map(|i| e.word(run::EXIT_ARGS + i));
    let r = hypercalls::call(env, vm, &mut v.pv, fid, args);
    for (i, x) in r.iter().enumerate().skip(1) {
        let set = hypercall::vcpu_set_reg(env, vm.handle(), u64::from(v.id), kr::x(i as u64), *x);
        if let Err(err) = set {
            return Next::Return(super::errno::ret(errno_of(err)));
        }
    }
    v.completion = r[0];
    Next::Enter
}

/// `KVM_EXIT_SYSTEM_EVENT`: every vCPU stopped (until re-init), as KVM's
/// `kvm_prepare_system_event` does; the caller sees `INTERNAL_FAILURE`
/// should the VMM run it again.
fn system_event<E: KvmEnv>(env: &mut E, vm: &Vm, v: &mut Vcpu, ty: u32, flags: u64) -> Next {
    for id in 0..MAX_VCPUS {
        if vm.vcpus[id].power.swap(power::STOPPED, SeqCst) != power::STOPPED {
            vm.kick(env, id);
        }
    }
    v.completion = psci::INTERNAL_FAILURE;
    exit_to(env, kexit::SYSTEM_EVENT);
    run_u32(env, krun::SYSTEM_EVENT_TYPE, ty);
    run_u32(env, krun::SYSTEM_EVENT_NDATA, 1);
    run_u64(env, krun::SYSTEM_EVENT_DATA, flags);
    Next::Return(0)
}

/// PSCI as KVM's `psci.c` answers it: 0.2, 1.0 or 1.1 for a vCPU
/// initialised with `KVM_ARM_VCPU_PSCI_0_2`, KVM's 0.1 otherwise (its own
/// function ids, [`psci::v0_1`]: `CPU_SUSPEND`, `CPU_OFF`, `CPU_ON`; every
/// other call `NOT_SUPPORTED`, as the other version's are).
fn psci_call<E: KvmEnv>(env: &mut E, vm: &Vm, v: &mut Vcpu, e: &Exit) -> Next {
    let raw = e.word(run::EXIT_DATA) as u32;
    if !psci::is_psci(raw) && !psci::v0_1::is_psci(raw) {
        return firmware_call(env, vm, v, raw, e);
    }
    let v0_1 = v.features & 1 << vcpu_init::PSCI_0_2 == 0;
    // A 0.1 call is answered as the 0.2 call it names, with its arguments
    // whole; anything of the other version is not supported.
    let fid = match (v0_1, raw) {
        (true, psci::v0_1::CPU_SUSPEND) => psci::CPU_SUSPEND_64,
        (true, psci::v0_1::CPU_OFF) => psci::CPU_OFF,
        (true, psci::v0_1::CPU_ON) => psci::CPU_ON_64,
        (false, f) if !psci::v0_1::is_psci(f) => f,
        _ => {
            v.completion = psci::NOT_SUPPORTED;
            return Next::Enter;
        }
    };
    let a = |i: usize| smccc::arg(fid, e.word(run::EXIT_ARGS + i));
    let version = vm.psci_version.load(SeqCst);
    let minor = if version == psci::VERSION_0_2 {
        None
    } else {
        Some(version & 0xFFFF)
    };
    let order = vm.with_cfg(env, |_, c| {
        let mut o = [0u8; MAX_VCPUS];
        o[..c.vcpu_order().len()].copy_from_slice(c.vcpu_order());
        (o, c.vcpu_order().len())
    });
    let order = &order.0[..order.1];
    // An `if` chain, not a `match`: a dense `match` on the function ids
    // becomes a jump table, an indirect branch BTI would fault on.
    let is = |a: u32, b: u32| fid == a || fid == b;
    let reset2 =
        minor.is_some_and(|m| m >= 1) && is(psci::SYSTEM_RESET2_32, psci::SYSTEM_RESET2_64);
    // PSCI 1.0's SYSTEM_SUSPEND, once the VMM enabled it.
    let suspend = minor.is_some() && vm.system_suspend.load(SeqCst);
    let answer = if fid == psci::VERSION {
        version
    } else if fid == psci::FEATURES && minor.is_some() {
        let asked = a(0);
        let known = [
            psci::VERSION,
            psci::CPU_SUSPEND_32,
            psci::CPU_SUSPEND_64,
            psci::CPU_OFF,
            psci::CPU_ON_32,
            psci::CPU_ON_64,
            psci::AFFINITY_INFO_32,
            psci::AFFINITY_INFO_64,
            psci::MIGRATE_INFO_TYPE,
            psci::SYSTEM_OFF,
            psci::SYSTEM_RESET,
            psci::FEATURES,
            smccc::SMCCC_VERSION,
        ];
        let asked_reset2 = minor.is_some_and(|m| m >= 1)
            && (asked == u64::from(psci::SYSTEM_RESET2_32)
                || asked == u64::from(psci::SYSTEM_RESET2_64));
        let asked_suspend = suspend
            && (asked == u64::from(psci::SYSTEM_SUSPEND_32)
                || asked == u64::from(psci::SYSTEM_SUSPEND_64));
        if asked >> 32 == 0 && (known.contains(&(asked as u32)) || asked_reset2 || asked_suspend) {
            psci::SUCCESS
        } else {
            psci::NOT_SUPPORTED
        }
    } else if is(psci::CPU_SUSPEND_32, psci::CPU_SUSPEND_64) {
        v.completion = psci::SUCCESS;
        return Next::Idle(e.word(run::EXIT_TIMER_DEADLINE));
    } else if fid == psci::CPU_OFF {
        vm.vcpus[v.id as usize].power.store(power::OFF, SeqCst);
        psci::SUCCESS
    } else if is(psci::CPU_ON_32, psci::CPU_ON_64) {
        match psci::vcpu_of_mpidr(a(0), MAX_VCPUS).filter(|&t| order.contains(&(t as u8))) {
            None => psci::INVALID_PARAMETERS,
            Some(t) => {
                // KCore recorded the entry point and context id.
                let on = vm.vcpus[t]
                    .power
                    .compare_exchange(power::OFF, power::ON, SeqCst, SeqCst);
                if on.is_ok() {
                    vm.kick(env, t);
                    psci::SUCCESS
                } else {
                    psci::ALREADY_ON
                }
            }
        }
    } else if is(psci::AFFINITY_INFO_32, psci::AFFINITY_INFO_64) {
        affinity_info(vm, order, a(0), a(1))
    } else if fid == psci::MIGRATE_INFO_TYPE {
        psci::NO_TRUSTED_OS
    } else if suspend && is(psci::SYSTEM_SUSPEND_32, psci::SYSTEM_SUSPEND_64) {
        // To the VMM with the vCPU's registers as the call left them (x0
        // still the function id), as KVM does: the VMM reads the entry
        // point and context id from x1 and x2 to emulate the suspend.
        v.completion = u64::from(fid);
        exit_to(env, kexit::SYSTEM_EVENT);
        run_u32(env, krun::SYSTEM_EVENT_TYPE, system_event::SUSPEND);
        run_u32(env, krun::SYSTEM_EVENT_NDATA, 0);
        return Next::Return(0);
    } else if fid == psci::SYSTEM_OFF {
        return system_event(env, vm, v, system_event::SHUTDOWN, 0);
    } else if fid == psci::SYSTEM_RESET {
        return system_event(env, vm, v, system_event::RESET, 0);
    } else if reset2 {
        let ty = a(0);
        if ty == psci::RESET2_WARM || ty >= psci::RESET2_VENDOR {
            return system_event(
                env,
                vm,
                v,
                system_event::RESET,
                system_event::RESET_FLAG_PSCI_RESET2,
            );
        }
        psci::INVALID_PARAMETERS
    } else {
        psci::NOT_SUPPORTED
    };
    v.completion = answer;
    Next::Enter
}

/// `AFFINITY_INFO(target, lowest level)`: ON if a vCPU of the VM matching
/// the target at that level is on, OFF if all matching are off,
/// `INVALID_PARAMETERS` if none matches or the arguments are malformed.
fn affinity_info(vm: &Vm, order: &[u8], target: u64, level: u64) -> u64 {
    if target & !psci::MPIDR_AFFINITY != 0 || level > 3 {
        return psci::INVALID_PARAMETERS;
    }
    let mask = psci::MPIDR_AFFINITY & !((1u64 << (8 * level)) - 1);
    let mut matched = false;
    let mut on = false;
    for &t in order {
        if psci::mpidr_of(t as usize) & mask == target & mask {
            matched = true;
            on |= vm.vcpus[t as usize].power.load(SeqCst) == power::ON;
        }
    }
    match (matched, on) {
        (false, _) => psci::INVALID_PARAMETERS,
        (true, true) => psci::AFFINITY_ON,
        (true, false) => psci::AFFINITY_OFF,
    }
}
