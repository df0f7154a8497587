//! `KVM_GET_VCPU_EVENTS` and `KVM_SET_VCPU_EVENTS` through a vCPU fd:
//! KVM's `ENOEXEC` before `KVM_ARM_VCPU_INIT`, nothing pending after, and
//! only "nothing pending" taken back ([`super::super::events`]).

use super::*;

#[test]
fn vcpu_events_report_and_take_nothing_pending() {
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    let mut v = new_vcpu(&mut f, &vm, 0);
    assert_eq!(
        vm::check_extension(&HOST, uapi::cap::VCPU_EVENTS),
        1,
        "KVM_CAP_VCPU_EVENTS"
    );
    let at = user(&mut f, 0xA000, &[u64::MAX; 8]);
    assert_eq!(
        ioctl(&mut f, &vm, &mut v, uapi::GET_VCPU_EVENTS, at),
        Err(ENOEXEC)
    );
    assert_eq!(
        ioctl(&mut f, &vm, &mut v, uapi::SET_VCPU_EVENTS, at),
        Err(ENOEXEC)
    );
    init(&mut f, &vm, &mut v, 1 << 2);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::GET_VCPU_EVENTS, at), Ok(0));
    let mut b = [0u8; 64];
    f.copy_from_user(at, &mut b).expect("user memory");
    assert_eq!(b, [0; 64], "every byte written: nothing pending");
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::SET_VCPU_EVENTS, at), Ok(0));
    // An SError (byte 0) or an external abort (byte 2) to inject: EINVAL.
    for word in [1, 1 << 16] {
        let at = user(&mut f, 0xA000, &[word, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            ioctl(&mut f, &vm, &mut v, uapi::SET_VCPU_EVENTS, at),
            Err(EINVAL)
        );
    }
    assert_eq!(
        ioctl(&mut f, &vm, &mut v, uapi::GET_VCPU_EVENTS, 0x10),
        Err(EFAULT),
        "no user memory there"
    );
}
