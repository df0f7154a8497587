//! `KVM_GET_VCPU_EVENTS` and `KVM_SET_VCPU_EVENTS` through a vCPU fd:
//! KVM's `ENOEXEC` before `KVM_ARM_VCPU_INIT`, nothing pending after, a
//! VMM's SError made pending in KCore and read back, an external data
//! abort entered in the guest ([`super::super::events`]).

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
    assert_eq!(
        ioctl(&mut f, &vm, &mut v, uapi::GET_VCPU_EVENTS, 0x10),
        Err(EFAULT),
        "no user memory there"
    );
}

#[test]
fn vcpu_events_make_an_serror_pending_and_inject_an_abort() {
    use kcore_abi::reg::serror::{IDS, PENDING};
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    slot(&mut f, &vm);
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    let cap = |c| vm::check_extension(&HOST, c);
    assert_eq!(cap(uapi::cap::ARM_INJECT_EXT_DABT), 1);
    assert_eq!(cap(uapi::cap::ARM_INJECT_SERROR_ESR), 0, "no RAS");
    let events = |f: &mut Fake, v: &mut Vcpu, word: u64| {
        let at = user(f, 0xA000, &[word, 0, 0, 0, 0, 0, 0, 0]);
        ioctl(f, &vm, v, uapi::SET_VCPU_EVENTS, at)
    };
    // An SError: pending in KCore (an implementation-defined syndrome),
    // reported by GET; "nothing pending" clears nothing, as in KVM.
    assert_eq!(events(&mut f, &mut v, 1), Ok(0));
    assert_eq!(f.get_reg(0, kr::SERROR), Some(PENDING | IDS));
    assert_eq!(events(&mut f, &mut v, 0), Ok(0));
    let at = user(&mut f, 0xA000, &[u64::MAX; 8]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::GET_VCPU_EVENTS, at), Ok(0));
    let mut b = [0u8; 64];
    f.copy_from_user(at, &mut b).expect("user memory");
    let mut expect = [0u8; 64];
    expect[0] = 1;
    assert_eq!(b, expect, "serror_pending, no ESR without RAS");
    assert_eq!(events(&mut f, &mut v, 0x0101), Err(EINVAL), "an ESR");
    assert!(f.set_reg(0, kr::SERROR, 0));
    // An external data abort after an MMIO read: the guest takes it at the
    // access (EC 0x25 from EL1h, FSC 0x10) through VBAR_EL1 + 0x200.
    assert!(f.set_reg(0, kr::PC, 0x4000_1000));
    assert!(f.set_reg(0, kr::sys::VBAR_EL1, 0x4000_8000));
    f.script([(exit::MMIO, 0, 0x0900_0008, 0, 4, [0; 3])]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.run_u32(krun::EXIT_REASON), kexit::MMIO);
    assert_eq!(events(&mut f, &mut v, 1 << 16), Ok(0));
    assert_eq!(f.get_reg(0, kr::PC), Some(0x4000_8200));
    assert_eq!(f.get_reg(0, kr::ELR_EL1), Some(0x4000_1000));
    assert_eq!(f.get_reg(0, kr::sys::ESR_EL1), Some(0x9600_0010));
    assert_eq!(f.get_reg(0, kr::sys::FAR_EL1), Some(0x008), "the access's");
    assert_eq!(f.get_reg(0, kr::SERROR), Some(0), "nothing else pending");
}
