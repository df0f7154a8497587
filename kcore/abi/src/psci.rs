//! PSCI (Arm DEN 0022): the function ids and results KCore, KServ's shim and
//! the test guest share. KCore is KServ's PSCI firmware and forwards a
//! guest's PSCI calls to KServ, which emulates PSCI for its VMs; the test
//! guest makes the calls. The function ids are SMCCC fast calls of the
//! standard secure service owner ([`crate::smccc::OWNER_STANDARD`]),
//! numbers `0x00..=0x1F`, in an SMC32 and (where the call takes addresses)
//! an SMC64 form. Results travel in `x0` as sign-extended 64-bit values.

/// First PSCI function id of the SMC32 range.
pub const FIRST_32: u32 = 0x8400_0000;
/// Last PSCI function id of the SMC32 range.
pub const LAST_32: u32 = 0x8400_001F;
/// First PSCI function id of the SMC64 range.
pub const FIRST_64: u32 = 0xC400_0000;
/// Last PSCI function id of the SMC64 range.
pub const LAST_64: u32 = 0xC400_001F;

/// Whether `fid` lies in the PSCI function-id ranges (standard secure
/// service, numbers 0x00-0x1F, SMC32 or SMC64).
pub const fn is_psci(fid: u32) -> bool {
    matches!(fid, FIRST_32..=LAST_32 | FIRST_64..=LAST_64)
}

/// KVM's PSCI 0.1 function ids (`KVM_PSCI_FN_*`): what a vCPU initialised
/// without `KVM_ARM_VCPU_PSCI_0_2` calls (the guest finds them in its device
/// tree). Their arguments are never narrowed to 32 bits.
pub mod v0_1 {
    /// `KVM_PSCI_FN_CPU_SUSPEND`.
    pub const CPU_SUSPEND: u32 = 0x95C1_BA5E;
    /// `KVM_PSCI_FN_CPU_OFF`.
    pub const CPU_OFF: u32 = 0x95C1_BA5F;
    /// `KVM_PSCI_FN_CPU_ON`.
    pub const CPU_ON: u32 = 0x95C1_BA60;
    /// `KVM_PSCI_FN_MIGRATE`.
    pub const MIGRATE: u32 = 0x95C1_BA61;

    /// Whether `fid` is one of them.
    pub const fn is_psci(fid: u32) -> bool {
        matches!(fid, CPU_SUSPEND..=MIGRATE)
    }
}

/// `PSCI_VERSION`.
pub const VERSION: u32 = 0x8400_0000;
/// `CPU_SUSPEND` (SMC32).
pub const CPU_SUSPEND_32: u32 = 0x8400_0001;
/// `CPU_SUSPEND` (SMC64).
pub const CPU_SUSPEND_64: u32 = 0xC400_0001;
/// `CPU_OFF`: does not return on success.
pub const CPU_OFF: u32 = 0x8400_0002;
/// `CPU_ON` (SMC32): `x1` target MPIDR, `x2` entry point, `x3` context id.
pub const CPU_ON_32: u32 = 0x8400_0003;
/// `CPU_ON` (SMC64).
pub const CPU_ON_64: u32 = 0xC400_0003;
/// `AFFINITY_INFO` (SMC32): `x1` target MPIDR, `x2` lowest affinity level.
pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
/// `AFFINITY_INFO` (SMC64).
pub const AFFINITY_INFO_64: u32 = 0xC400_0004;
/// `MIGRATE_INFO_TYPE`.
pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
/// `SYSTEM_OFF`.
pub const SYSTEM_OFF: u32 = 0x8400_0008;
/// `SYSTEM_RESET`.
pub const SYSTEM_RESET: u32 = 0x8400_0009;
/// `PSCI_FEATURES`.
pub const FEATURES: u32 = 0x8400_000A;
/// `SYSTEM_SUSPEND` (SMC32, PSCI 1.0).
pub const SYSTEM_SUSPEND_32: u32 = 0x8400_000E;
/// `SYSTEM_SUSPEND` (SMC64, PSCI 1.0).
pub const SYSTEM_SUSPEND_64: u32 = 0xC400_000E;
/// `SYSTEM_RESET2` (SMC32, PSCI 1.1).
pub const SYSTEM_RESET2_32: u32 = 0x8400_0012;
/// `SYSTEM_RESET2` (SMC64, PSCI 1.1).
pub const SYSTEM_RESET2_64: u32 = 0xC400_0012;

/// `PSCI_VERSION` 0.1 (what KVM reports for its 0.1).
pub const VERSION_0_1: u64 = 0x1;
/// `PSCI_VERSION` 0.2.
pub const VERSION_0_2: u64 = 0x2;
/// `PSCI_VERSION` 1.0.
pub const VERSION_1_0: u64 = 0x1_0000;
/// `PSCI_VERSION` 1.1.
pub const VERSION_1_1: u64 = 0x1_0001;

/// `SUCCESS`.
pub const SUCCESS: u64 = 0;
/// `NOT_SUPPORTED` (-1).
pub const NOT_SUPPORTED: u64 = -1i64 as u64;
/// `INVALID_PARAMETERS` (-2).
pub const INVALID_PARAMETERS: u64 = -2i64 as u64;
/// `DENIED` (-3).
pub const DENIED: u64 = -3i64 as u64;
/// `ALREADY_ON` (-4).
pub const ALREADY_ON: u64 = -4i64 as u64;
/// `ON_PENDING` (-5).
pub const ON_PENDING: u64 = -5i64 as u64;
/// `INTERNAL_FAILURE` (-6).
pub const INTERNAL_FAILURE: u64 = -6i64 as u64;
/// `INVALID_ADDRESS` (-9).
pub const INVALID_ADDRESS: u64 = -9i64 as u64;

/// `AFFINITY_INFO`: the target is on.
pub const AFFINITY_ON: u64 = 0;
/// `AFFINITY_INFO`: the target is off.
pub const AFFINITY_OFF: u64 = 1;
/// `AFFINITY_INFO`: the target is being turned on.
pub const AFFINITY_ON_PENDING: u64 = 2;
/// `MIGRATE_INFO_TYPE`: no Trusted OS that needs migrating.
pub const NO_TRUSTED_OS: u64 = 2;
/// `SYSTEM_RESET2`: the architectural warm reset (the only one defined).
pub const RESET2_WARM: u64 = 0;
/// `SYSTEM_RESET2`: first vendor-specific reset type.
pub const RESET2_VENDOR: u64 = 0x8000_0000;

/// The affinity fields of an MPIDR (`Aff3`, `Aff2`, `Aff1`, `Aff0`): what a
/// PSCI call's target MPIDR is made of.
pub const MPIDR_AFFINITY: u64 = 0xFF_00FF_FFFF;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smccc;

    #[test]
    fn ids_are_standard_service_fast_calls() {
        let std32 = smccc::FAST_CALL | smccc::owner(smccc::OWNER_STANDARD);
        assert_eq!(FIRST_32, std32);
        assert_eq!(FIRST_64, std32 | smccc::SMC64);
        assert!(is_psci(CPU_ON_64) && is_psci(SYSTEM_OFF) && is_psci(LAST_32));
        assert!(!is_psci(0xC600_0000) && !is_psci(0x8400_0020) && !is_psci(0x83FF_FFFF));
        for n in 0..=0x1F {
            assert!(is_psci(FIRST_32 + n) && is_psci(FIRST_64 + n));
        }
    }
}
