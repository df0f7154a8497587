//! `KVM_GET_VCPU_EVENTS` and `KVM_SET_VCPU_EVENTS` (`KVM_CAP_VCPU_EVENTS`),
//! as Linux 6.1's arm64 `kvm_arm_vcpu_{get,set}_events`: the events are a
//! pending virtual SError (with its ESR when the CPU has RAS) and a
//! pending external data abort, which VMMs save and restore across a
//! migration.
//!
//! KCore offers KServ no way to make an exception pending in a guest (its
//! own virtual SError, for a physical SError taken while the guest ran, is
//! delivered at the next entry and not visible to KServ), so nothing is
//! ever pending here: GET reports nothing pending and no ESR (guests have
//! no RAS), and SET takes only "nothing pending"; asking for an SError or
//! an external abort is `EINVAL`, KVM's answer to what it cannot do (an
//! SError with an ESR without RAS). Reserved and padding bytes must be
//! zero (`EINVAL`), as in KVM.

use super::errno::{EINVAL, Errno};

/// `struct kvm_vcpu_events` on arm64: `serror_pending`, `serror_has_esr`,
/// `ext_dabt_pending`, 5 bytes of padding, `serror_esr`, then 12 reserved
/// `u32`.
pub const SIZE: usize = 64;
const SERROR_PENDING: usize = 0;
const EXT_DABT_PENDING: usize = 2;
const PAD: core::ops::Range<usize> = 3..8;
const RESERVED: core::ops::Range<usize> = 16..64;

/// What `KVM_GET_VCPU_EVENTS` writes: nothing pending, no ESR.
pub fn get() -> [u8; SIZE] {
    [0; SIZE]
}

/// Checks what `KVM_SET_VCPU_EVENTS` passed: reserved or padding bytes
/// set, a pending SError (with or without an ESR) or external data abort
/// are `EINVAL`; otherwise there is nothing to do. The ESR is ignored
/// when no SError is pending with it, as in KVM.
pub fn set(b: &[u8; SIZE]) -> Result<(), Errno> {
    if b[RESERVED].iter().chain(&b[PAD]).any(|&x| x != 0) {
        return Err(EINVAL);
    }
    if b[SERROR_PENDING] != 0 || b[EXT_DABT_PENDING] != 0 {
        return Err(EINVAL);
    }
    // `serror_has_esr` and `serror_esr` count only with a pending SError.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERROR_HAS_ESR: usize = 1;

    #[test]
    fn nothing_pending_is_all_there_is() {
        assert_eq!(get(), [0; SIZE]);
        assert_eq!(set(&get()), Ok(()), "a restore of what GET gave");
        let with = |i: usize, v: u8| {
            let mut b = [0u8; SIZE];
            b[i] = v;
            set(&b)
        };
        assert_eq!(with(SERROR_PENDING, 1), Err(EINVAL), "an SError");
        assert_eq!(with(EXT_DABT_PENDING, 1), Err(EINVAL), "an abort");
        assert_eq!(with(SERROR_HAS_ESR, 1), Ok(()), "an ESR alone");
        assert_eq!(with(8, 0x11), Ok(()), "serror_esr alone");
        for i in PAD.chain(RESERVED) {
            assert_eq!(with(i, 1), Err(EINVAL), "byte {i}");
        }
        let mut both = [0u8; SIZE];
        both[SERROR_PENDING] = 1;
        both[SERROR_HAS_ESR] = 1;
        assert_eq!(set(&both), Err(EINVAL), "an SError with an ESR: no RAS");
    }
}
