//! The version handshake with KCore: ask for the ABI version and features, and
//! decide whether this shim can work with that KCore.
//!
//! The rule: the major versions must be equal (a major bump is an incompatible
//! change), and KCore's minor must be at least the shim's (the shim may use any
//! call up to its own minor; KCore only ever adds calls within a major).

use crate::conduit::Conduit;
use kcore_abi::{HypercallId, SUCCESS};

/// Status returned instead of KCore's when its reply is malformed (a version
/// word with bits above the 32 that carry major and minor). Not a KCore code:
/// KCore's own codes are small negative numbers.
pub const MALFORMED_REPLY: i64 = -4095;

/// KCore's answer to [`HypercallId::Version`]. `#[repr(C)]`: the C glue reads
/// it (`struct kcore_version` in `kserv_core.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KcoreVersion {
    /// ABI major version.
    pub major: u16,
    /// ABI minor version.
    pub minor: u16,
    /// Zero; keeps `features` 8-byte aligned on every ABI.
    pub reserved: u32,
    /// The [`kcore_abi::features`] bitmap.
    pub features: u64,
}

/// Whether a KCore's ABI version works with this shim. The discriminants are
/// what the C glue sees.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compat {
    /// Same major, KCore's minor at least ours.
    Compatible = 0,
    /// Different major version: nothing can be assumed.
    MajorMismatch = 1,
    /// Same major, but KCore predates calls this shim uses.
    MinorTooOld = 2,
}

/// Asks KCore for its ABI version.
///
/// Returns KCore's status in `Err` when it is not [`SUCCESS`], and
/// [`MALFORMED_REPLY`] when the reply cannot be a version word.
pub fn query<C: Conduit>(conduit: &mut C) -> Result<KcoreVersion, i64> {
    let mut regs = [0u64; 8];
    regs[0] = u64::from(HypercallId::Version.function_id());
    conduit.call(&mut regs);
    let status = regs[0] as i64;
    if status != SUCCESS {
        return Err(status);
    }
    if regs[1] > u64::from(u32::MAX) {
        return Err(MALFORMED_REPLY);
    }
    let (major, minor) = kcore_abi::split_version(regs[1]);
    Ok(KcoreVersion {
        major,
        minor,
        reserved: 0,
        features: regs[2],
    })
}

/// Applies the compatibility rule of this module's documentation to KCore's
/// version, against the ABI this shim was built with.
pub fn check(kcore_major: u16, kcore_minor: u16) -> Compat {
    check_against(
        kcore_major,
        kcore_minor,
        kcore_abi::ABI_VERSION_MAJOR,
        kcore_abi::ABI_VERSION_MINOR,
    )
}

/// [`check`] with the shim's version as a parameter, so the rule is testable
/// for versions other than the current one.
pub fn check_against(
    kcore_major: u16,
    kcore_minor: u16,
    ours_major: u16,
    ours_minor: u16,
) -> Compat {
    if kcore_major != ours_major {
        Compat::MajorMismatch
    } else if kcore_minor < ours_minor {
        Compat::MinorTooOld
    } else {
        Compat::Compatible
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers every call with fixed registers and records what it was asked.
    struct Scripted {
        reply: [u64; 4],
        asked: Option<[u64; 8]>,
    }

    impl Conduit for Scripted {
        fn call(&mut self, regs: &mut [u64; 8]) {
            self.asked = Some(*regs);
            regs[..4].copy_from_slice(&self.reply);
        }
    }

    #[test]
    fn query_sends_the_version_id_and_decodes() {
        let mut c = Scripted {
            reply: [0, 0x0003_0007, 0b11, 0],
            asked: None,
        };
        let v = query(&mut c);
        assert_eq!(
            v,
            Ok(KcoreVersion {
                major: 3,
                minor: 7,
                reserved: 0,
                features: 0b11
            })
        );
        let asked = c.asked.unwrap_or_default();
        assert_eq!(asked[0], 0xC600_0000);
        assert!(asked[1..].iter().all(|&r| r == 0));
    }

    #[test]
    fn query_reports_kcore_errors() {
        let mut c = Scripted {
            reply: [-1i64 as u64, 0x1234, 0, 0],
            asked: None,
        };
        assert_eq!(query(&mut c), Err(-1));
    }

    #[test]
    fn query_rejects_malformed_version_words() {
        let mut c = Scripted {
            reply: [0, 1 << 32, 0, 0],
            asked: None,
        };
        assert_eq!(query(&mut c), Err(MALFORMED_REPLY));
    }

    #[test]
    fn compatibility_rule() {
        assert_eq!(check_against(1, 4, 1, 4), Compat::Compatible);
        assert_eq!(check_against(1, 9, 1, 4), Compat::Compatible);
        assert_eq!(check_against(1, 3, 1, 4), Compat::MinorTooOld);
        assert_eq!(check_against(2, 4, 1, 4), Compat::MajorMismatch);
        assert_eq!(check_against(0, 9, 1, 0), Compat::MajorMismatch);
        assert_eq!(
            check(kcore_abi::ABI_VERSION_MAJOR, kcore_abi::ABI_VERSION_MINOR),
            Compat::Compatible
        );
    }
}
