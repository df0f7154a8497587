//! A non-protected guest's SMCCC calls other than PSCI, which KCore hands
//! to the shim as it hands PSCI (`docs/abi.md`), answered as Linux 6.1's
//! `arch/arm64/kvm/hypercalls.c` and `trng.c` answer them, and the
//! firmware feature bitmaps (`KVM_REG_ARM_STD_BMAP`, `STD_HYP_BMAP`,
//! `VENDOR_HYP_BMAP`) that gate them: a VMM may clear bits until the VM
//! first runs (`EBUSY` for a change after), and a call whose bit is clear
//! is `NOT_SUPPORTED`.
//!
//! Offered: the TRNG (`TRNG_VERSION`, `FEATURES`, `GET_UUID`, `RND32`,
//! `RND64`, from the kernel's random numbers), stolen time
//! ([`super::pvtime`]), KVM's vendor `KVM_FEATURES` and UID, and KVM's PTP
//! call (the wall clock and the counter at one instant, from the kernel's
//! `ktime_get_snapshot`); `SMCCC_ARCH_FEATURES` answers for stolen time
//! and `NOT_SUPPORTED` for the Spectre workarounds (whose registers read
//! `NOT_AVAIL`). A protected VM's calls stay KCore's, so its bitmaps are
//! what KCore offers (the vendor feature query) and cannot be narrowed.

use super::env::KvmEnv;
use super::errno::{EBUSY, EINVAL, Errno};
use super::pvtime::{self, PV_TIME_FEATURES, PV_TIME_ST, PvTime};
use super::vm::Vm;
use core::sync::atomic::Ordering::SeqCst;
use kcore_abi::smccc::{self, KVM_UID, RET_NOT_SUPPORTED};

/// The function ids (Linux's `include/linux/arm-smccc.h`).
pub mod fid {
    /// `ARM_SMCCC_TRNG_VERSION`.
    pub const TRNG_VERSION: u32 = 0x8400_0050;
    /// `ARM_SMCCC_TRNG_FEATURES`.
    pub const TRNG_FEATURES: u32 = 0x8400_0051;
    /// `ARM_SMCCC_TRNG_GET_UUID`.
    pub const TRNG_GET_UUID: u32 = 0x8400_0052;
    /// `ARM_SMCCC_TRNG_RND32`.
    pub const TRNG_RND32: u32 = 0x8400_0053;
    /// `ARM_SMCCC_TRNG_RND64`.
    pub const TRNG_RND64: u32 = 0xC400_0053;
    /// `ARM_SMCCC_VENDOR_HYP_KVM_FEATURES_FUNC_ID`.
    pub const KVM_FEATURES: u32 = 0x8600_0000;
    /// `ARM_SMCCC_VENDOR_HYP_KVM_PTP_FUNC_ID`.
    pub const KVM_PTP: u32 = 0x8600_0001;
}

/// The bitmaps' bits (`KVM_REG_ARM_*_BIT_*`).
pub mod bit {
    /// `KVM_REG_ARM_STD_BIT_TRNG_V1_0`.
    pub const TRNG: u64 = 1 << 0;
    /// `KVM_REG_ARM_STD_HYP_BIT_PV_TIME`.
    pub const PV_TIME: u64 = 1 << 0;
    /// `KVM_REG_ARM_VENDOR_HYP_BIT_FUNC_FEAT`.
    pub const FUNC_FEAT: u64 = 1 << 0;
    /// `KVM_REG_ARM_VENDOR_HYP_BIT_PTP`.
    pub const PTP: u64 = 1 << 1;
}

/// The bitmaps by register number (`KVM_REG_ARM_FW_FEAT_BMAP_REG(n)`).
const STD: usize = 0;
const STD_HYP: usize = 1;
const VENDOR_HYP: usize = 2;

/// `ARM_SMCCC_TRNG_VERSION_1_0`.
const TRNG_VERSION_1_0: u64 = 0x1_0000;
/// `TRNG_INVALID_PARAMETER`.
const TRNG_INVALID_PARAMETER: u64 = -2i64 as u64;
/// KVM's TRNG UUID (`0d21e000-4384-11eb-8070-524455 4e5a4c`) as `GET_UUID`
/// returns it: its bytes as four little-endian words.
const TRNG_UUID: [u64; 4] = [0x00e0_210d, 0xeb11_8443, 0x4452_7080, 0x4c5a_4e55];
/// The TRNG's calls.
const TRNG_CALLS: [u32; 5] = [
    fid::TRNG_VERSION,
    fid::TRNG_FEATURES,
    fid::TRNG_GET_UUID,
    fid::TRNG_RND32,
    fid::TRNG_RND64,
];
/// `KVM_PTP_VIRT_COUNTER`, `KVM_PTP_PHYS_COUNTER`.
const PTP_VIRT: u32 = 0;
const PTP_PHYS: u32 = 1;

/// What bitmap `n` (0..=2) can hold: everything above for a non-protected
/// VM, KCore's vendor feature query alone for a protected one.
pub const fn offered(n: u64, protected: bool) -> u64 {
    match (n, protected) {
        (0, false) => bit::TRNG,
        (1, false) => bit::PV_TIME,
        (2, false) => bit::FUNC_FEAT | bit::PTP,
        (2, true) => bit::FUNC_FEAT,
        _ => 0,
    }
}

/// Bitmap `n` as the VMM reads it.
pub fn bitmap(vm: &Vm, n: u64) -> u64 {
    let off = vm.fw_cleared[n as usize % 3].load(SeqCst);
    offered(n, vm.protected()) & !off
}

/// The VMM's write of bitmap `n`: bits beyond what is offered are `EINVAL`
/// (for a protected VM, any change); once the VM ran, any change `EBUSY`.
pub fn set_bitmap<E: KvmEnv>(env: &mut E, vm: &Vm, n: u64, value: u64) -> Result<(), Errno> {
    let all = offered(n, vm.protected());
    if value & !all != 0 || (vm.protected() && value != all) {
        return Err(EINVAL);
    }
    vm.with_cfg(env, |_, c| {
        if c.has_run() && value != bitmap(vm, n) {
            return Err(EBUSY);
        }
        vm.fw_cleared[n as usize % 3].store(all & !value, SeqCst);
        Ok(())
    })
}

/// Whether the bitmaps let the guest make call `fid` (`SMCCC_ARCH_FEATURES`
/// always; ids of no service here never).
fn allowed(vm: &Vm, fid: u32) -> bool {
    let on = |n: usize, b: u64| bitmap(vm, n as u64) & b != 0;
    if fid == smccc::SMCCC_ARCH_FEATURES {
        true
    } else if TRNG_CALLS.contains(&fid) {
        on(STD, bit::TRNG)
    } else if fid == PV_TIME_FEATURES || fid == PV_TIME_ST {
        on(STD_HYP, bit::PV_TIME)
    } else if fid == fid::KVM_FEATURES || fid == smccc::VENDOR_HYP_CALL_UID {
        on(VENDOR_HYP, bit::FUNC_FEAT)
    } else if fid == fid::KVM_PTP {
        on(VENDOR_HYP, bit::PTP)
    } else {
        false
    }
}

/// `TRNG_RND32`/`RND64` (`width` 32 or 64) of `bits` random bits: up to
/// three registers' worth, the low bits in `x3`.
fn trng_rnd<E: KvmEnv>(env: &mut E, width: u32, bits: u32) -> [u64; 4] {
    if bits > 3 * width {
        return [TRNG_INVALID_PARAMETER, 0, 0, 0];
    }
    // A 192-bit number, word 0 the lowest, cut to `bits`.
    let mut n = [0u64; 3];
    for (i, w) in n.iter_mut().enumerate() {
        let have = bits.saturating_sub(64 * i as u32).min(64);
        if have > 0 {
            let r = env.random_u64();
            *w = if have == 64 { r } else { r & ((1 << have) - 1) };
        }
    }
    if width == 32 {
        [0, n[1] & 0xFFFF_FFFF, n[0] >> 32, n[0] & 0xFFFF_FFFF]
    } else {
        [0, n[2], n[1], n[0]]
    }
}

/// `KVM_PTP` for counter `which`: the wall clock (ns) and the counter at
/// one instant, each split in two 32-bit halves.
fn ptp<E: KvmEnv>(env: &mut E, vm: &Vm, which: u32) -> [u64; 4] {
    let no = [RET_NOT_SUPPORTED, 0, 0, 0];
    let Some((real, count)) = env.ptp_snapshot() else {
        return no;
    };
    let cycles = if which == PTP_VIRT {
        count.wrapping_sub(vm.cntvoff.load(SeqCst))
    } else if which == PTP_PHYS {
        count
    } else {
        return no;
    };
    [
        real >> 32,
        real & 0xFFFF_FFFF,
        cycles >> 32,
        cycles & 0xFFFF_FFFF,
    ]
}

/// Answers call `fid` with arguments `x1..x3`: the guest's `x0..x3`.
pub fn call<E: KvmEnv>(
    env: &mut E,
    vm: &Vm,
    pv: &mut PvTime,
    fid: u32,
    args: [u64; 3],
) -> [u64; 4] {
    let mut r = [RET_NOT_SUPPORTED, 0, 0, 0];
    if !allowed(vm, fid) {
        return r;
    }
    // Arguments are 32 bits wide where KVM reads them so.
    let a1 = args[0] as u32;
    // An `if` chain, not a `match`: a dense `match` on the function ids
    // becomes a jump table, an indirect branch BTI would fault on.
    if fid == smccc::SMCCC_ARCH_FEATURES {
        if a1 == PV_TIME_FEATURES && bitmap(vm, STD_HYP as u64) & bit::PV_TIME != 0 {
            r[0] = 0;
        }
    } else if fid == PV_TIME_FEATURES {
        r[0] = pvtime::features(pv, a1);
    } else if fid == PV_TIME_ST {
        r[0] = pvtime::start(env, vm, pv);
    } else if fid == smccc::VENDOR_HYP_CALL_UID {
        r = KVM_UID;
    } else if fid == fid::KVM_FEATURES {
        r[0] = bitmap(vm, VENDOR_HYP as u64);
    } else if fid == fid::KVM_PTP {
        r = ptp(env, vm, a1);
    } else if fid == fid::TRNG_VERSION {
        r[0] = TRNG_VERSION_1_0;
    } else if fid == fid::TRNG_FEATURES {
        if TRNG_CALLS.contains(&a1) {
            r[0] = 0;
        }
    } else if fid == fid::TRNG_GET_UUID {
        r = TRNG_UUID;
    } else if fid == fid::TRNG_RND32 {
        r = trng_rnd(env, 32, a1);
    } else if fid == fid::TRNG_RND64 {
        r = trng_rnd(env, 64, a1);
    }
    r
}
