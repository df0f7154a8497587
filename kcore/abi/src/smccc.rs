//! SMC Calling Convention (Arm DEN0028) function-id encoding.
//!
//! Bit 31 selects fast calls, bit 30 the SMC64 convention, bits 29:24 the
//! service owner and bits 15:0 the function number.

/// Bit 31: fast call.
pub const FAST_CALL: u32 = 1 << 31;
/// Bit 30: SMC64/HVC64 calling convention.
pub const SMC64: u32 = 1 << 30;
/// Owner: Arm architecture calls.
pub const OWNER_ARCH: u32 = 0;
/// Owner: standard secure services (PSCI lives here).
pub const OWNER_STANDARD: u32 = 4;
/// Owner: standard hypervisor services.
pub const OWNER_STANDARD_HYP: u32 = 5;
/// Owner: vendor-specific hypervisor services (KCore's calls live here).
pub const OWNER_VENDOR_HYP: u32 = 6;

/// Whether `fid` is an SMC32 function (its arguments are 32-bit).
pub const fn is_smc32(fid: u32) -> bool {
    fid & SMC64 == 0
}

/// A function's argument as the calling convention of `fid` reads it: an
/// SMC32 call sees only the low 32 bits of its registers.
pub const fn arg(fid: u32, a: u64) -> u64 {
    if is_smc32(fid) { a & 0xFFFF_FFFF } else { a }
}

/// The owner field of a function id.
pub const fn owner(o: u32) -> u32 {
    (o & 0x3F) << 24
}

/// Decodes the owner field of a function id.
pub const fn owner_of(function_id: u32) -> u32 {
    (function_id >> 24) & 0x3F
}

/// SMCCC `SMCCC_VERSION`.
pub const SMCCC_VERSION: u32 = 0x8000_0000;
/// SMCCC `SMCCC_ARCH_FEATURES`.
pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
/// What `SMCCC_VERSION` returns: SMCCC 1.1.
pub const VERSION_1_1: u64 = 0x1_0001;
/// SMCCC `NOT_SUPPORTED` as it appears in `x0`.
pub const RET_NOT_SUPPORTED: u64 = -1i64 as u64;
/// SMCCC `INVALID_PARAMETER` as it appears in `x0`.
pub const RET_INVALID_PARAMETER: u64 = -3i64 as u64;
/// Vendor hypervisor service "call UID" query (SMC32 form, as Linux issues it).
pub const VENDOR_HYP_CALL_UID: u32 = 0x8600_FF01;

/// KVM's vendor hypervisor UID (`28b46fb6-2ec5-11e9-a9ca-4b564d003a74`)
/// in `x0..x3`, as guests of KVM (and pKVM) expect it from
/// [`VENDOR_HYP_CALL_UID`]: KCore answers it for protected guests, the shim
/// for the others.
pub const KVM_UID: [u64; 4] = [0xb66f_b428, 0xe911_c52e, 0x564b_caa9, 0x743a_004d];

/// KCore's UID, returned in `x0..x3` (each register holding 32 bits) by
/// [`VENDOR_HYP_CALL_UID`]: a random UUID, `4b636f72-652d-4b53-6572-76d2a1b83c17`.
pub const KCORE_UID: [u32; 4] = [0x726f_634b, 0x534b_2d65, 0xd276_7265, 0x173c_b8a1];

/// SMCCC `SMCCC_ARCH_WORKAROUND_1` (Spectre v2: invalidate the branch
/// predictor).
pub const ARCH_WORKAROUND_1: u32 = 0x8000_8000;
/// SMCCC `SMCCC_ARCH_WORKAROUND_2` (Spectre v4: `x1` = 1 turns the calling
/// CPU's speculative-store-bypass mitigation on, 0 off).
pub const ARCH_WORKAROUND_2: u32 = 0x8000_7FFF;
/// SMCCC `SMCCC_ARCH_WORKAROUND_3` (Spectre-BHB).
pub const ARCH_WORKAROUND_3: u32 = 0x8000_3FFF;

/// The Arm TRNG firmware interface (Arm DEN0098): `TRNG_VERSION`.
pub const TRNG_VERSION: u32 = 0x8400_0050;
/// `TRNG_FEATURES`: `x1` = a TRNG function id.
pub const TRNG_FEATURES: u32 = 0x8400_0051;
/// `TRNG_GET_UUID`: the implementation's UUID in `x0..x3`.
pub const TRNG_GET_UUID: u32 = 0x8400_0052;
/// `TRNG_RND` (SMC32): `x1` = bits wanted (at most 96), entropy in `x1..x3`.
pub const TRNG_RND32: u32 = 0x8400_0053;
/// `TRNG_RND` (SMC64): `x1` = bits wanted (at most 192), entropy in `x1..x3`.
pub const TRNG_RND64: u32 = 0xC400_0053;

/// Whether `fid` is an SDEI call (Arm DEN0054: standard secure service,
/// numbers 0x20..=0x3F, SMC32 or SMC64).
pub const fn is_sdei(fid: u32) -> bool {
    matches!(fid, 0x8400_0020..=0x8400_003F | 0xC400_0020..=0xC400_003F)
}
