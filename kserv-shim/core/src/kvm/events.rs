//! `KVM_GET_VCPU_EVENTS` and `KVM_SET_VCPU_EVENTS` (`KVM_CAP_VCPU_EVENTS`),
//! as Linux 6.1's arm64 `kvm_arm_vcpu_{get,set}_events`: the events are a
//! pending virtual SError (with its ESR when the CPU has RAS) and a
//! pending external data abort, which VMMs save and restore across a
//! migration or inject themselves.
//!
//! A non-protected vCPU's pending SError is KCore's `reg::SERROR`, read
//! back until the guest takes it; an external data abort
//! (`reg::INJECT_DABT`) is entered at once, so it never reads as pending,
//! as on KVM once the vCPU ran. GET reports `serror_has_esr` when the CPU
//! has RAS, and then the ESR of a pending SError. SET makes an SError
//! pending (with the VMM's ESR: `EINVAL` without RAS or for bits outside
//! `ISS`; without one KVM's implementation-defined syndrome) and injects
//! the abort; "nothing pending" clears nothing, as in KVM. Reserved and
//! padding bytes must be zero (`EINVAL`), as in KVM. A protected vCPU
//! reads nothing pending and takes nothing (`EPERM`: KCore refuses too).

use super::errno::{EINVAL, Errno};
use kcore_abi::reg::serror;

/// `struct kvm_vcpu_events` on arm64: `serror_pending`, `serror_has_esr`,
/// `ext_dabt_pending`, 5 bytes of padding, `serror_esr`, then 12 reserved
/// `u32`.
pub const SIZE: usize = 64;
const SERROR_PENDING: usize = 0;
const SERROR_HAS_ESR: usize = 1;
const EXT_DABT_PENDING: usize = 2;
const PAD: core::ops::Range<usize> = 3..8;
const SERROR_ESR: core::ops::Range<usize> = 8..16;
const RESERVED: core::ops::Range<usize> = 16..64;

/// What `KVM_SET_VCPU_EVENTS` asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    /// KCore's `reg::SERROR` to set: `serror::PENDING` with the syndrome.
    pub serror: Option<u64>,
    /// An external data abort to inject.
    pub ext_dabt: bool,
}

impl Events {
    /// Whether there is anything to do.
    pub const fn any(&self) -> bool {
        self.serror.is_some() || self.ext_dabt
    }
}

/// What `KVM_GET_VCPU_EVENTS` writes for KCore's `reg::SERROR` value
/// `serror` on a CPU with RAS or not.
pub fn get(serror: u64, ras: bool) -> [u8; SIZE] {
    let mut b = [0; SIZE];
    b[SERROR_HAS_ESR] = u8::from(ras);
    if serror & serror::PENDING != 0 {
        b[SERROR_PENDING] = 1;
        if ras {
            b[SERROR_ESR].copy_from_slice(&(serror & serror::ESR).to_le_bytes());
        }
    }
    b
}

/// Checks what `KVM_SET_VCPU_EVENTS` passed (`__kvm_arm_vcpu_set_events`):
/// reserved or padding bytes set, an ESR without RAS or with bits outside
/// `ISS` are `EINVAL`. The ESR counts only with a pending SError.
pub fn set(b: &[u8; SIZE], ras: bool) -> Result<Events, Errno> {
    if b[RESERVED].iter().chain(&b[PAD]).any(|&x| x != 0) {
        return Err(EINVAL);
    }
    let mut esr = [0; 8];
    esr.copy_from_slice(&b[SERROR_ESR]);
    let esr = u64::from_le_bytes(esr);
    let serror = match (b[SERROR_PENDING] != 0, b[SERROR_HAS_ESR] != 0) {
        (false, _) => None,
        (true, false) => Some(serror::PENDING | serror::IDS),
        (true, true) if ras && esr & !serror::ESR == 0 => Some(serror::PENDING | esr),
        (true, true) => return Err(EINVAL),
    };
    Ok(Events {
        serror,
        ext_dabt: b[EXT_DABT_PENDING] != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(usize, u8)]) -> [u8; SIZE] {
        let mut b = [0u8; SIZE];
        for &(i, v) in pairs {
            b[i] = v;
        }
        b
    }

    #[test]
    fn get_reports_kcores_pending_serror_and_its_esr_with_ras() {
        assert_eq!(get(0, false), [0; SIZE]);
        assert_eq!(get(0, true), with(&[(SERROR_HAS_ESR, 1)]));
        let pending = serror::PENDING | 0x12_3456;
        assert_eq!(get(pending, false), with(&[(SERROR_PENDING, 1)]));
        assert_eq!(
            get(pending, true),
            with(&[
                (SERROR_PENDING, 1),
                (SERROR_HAS_ESR, 1),
                (8, 0x56),
                (9, 0x34),
                (10, 0x12)
            ])
        );
    }

    #[test]
    fn set_takes_an_serror_and_an_abort_as_kvm() {
        assert_eq!(set(&get(0, false), false), Ok(Events::default()));
        assert!(!set(&get(0, true), true).expect("ok").any());
        let serror = with(&[(SERROR_PENDING, 1)]);
        let ids = Some(serror::PENDING | serror::IDS);
        assert_eq!(set(&serror, false).map(|e| e.serror), Ok(ids));
        let abort = with(&[(EXT_DABT_PENDING, 1)]);
        assert_eq!(
            set(&abort, false),
            Ok(Events {
                serror: None,
                ext_dabt: true
            })
        );
        // An ESR: only with RAS, only ISS bits, only with an SError.
        let esr = with(&[(SERROR_PENDING, 1), (SERROR_HAS_ESR, 1), (8, 0x11)]);
        assert_eq!(set(&esr, false), Err(EINVAL), "no RAS");
        assert_eq!(
            set(&esr, true).map(|e| e.serror),
            Ok(Some(serror::PENDING | 0x11))
        );
        let mut wide = esr;
        wide[11] = 2; // bit 25: outside ISS
        assert_eq!(set(&wide, true), Err(EINVAL));
        let alone = with(&[(SERROR_HAS_ESR, 1), (8, 0x11)]);
        assert_eq!(set(&alone, false), Ok(Events::default()), "ESR alone");
        for i in PAD.chain(RESERVED) {
            assert_eq!(set(&with(&[(i, 1)]), true), Err(EINVAL), "byte {i}");
        }
    }
}
