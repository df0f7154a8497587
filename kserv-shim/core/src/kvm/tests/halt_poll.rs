//! `KVM_CAP_HALT_POLL`: offered, `KVM_ENABLE_CAP` on the VM takes the
//! vCPUs' longest halt-polling window with KVM's errors, and the vCPU's
//! waits carry it to the glue (the module's own parameter until then).

use super::*;
use crate::kvm::env::DEFAULT_POLL;

fn enable(f: &mut Fake, vm: &Vm, flags: u64, ns: u64) -> Result<i64, Errno> {
    enable_cap(f, vm, uapi::cap::HALT_POLL, flags, ns)
}

#[test]
fn a_vms_halt_poll_window_reaches_its_vcpus_waits() {
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    assert_eq!(vm::check_extension(&HOST, uapi::cap::HALT_POLL), 1);
    // A vCPU started off waits (until the fake's signal).
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2 | 1);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Err(EINTR));
    assert_eq!(f.polls, [DEFAULT_POLL], "the module's window");
    // KVM's errors: flags, a window past 32 bits.
    assert_eq!(enable(&mut f, &vm, 1, 1000), Err(EINVAL));
    assert_eq!(enable(&mut f, &vm, 0, 1 << 32), Err(EINVAL));
    assert_eq!(vm.max_halt_poll_ns(), DEFAULT_POLL, "unchanged");
    for ns in [200_000, 0, u64::from(u32::MAX)] {
        assert_eq!(enable(&mut f, &vm, 0, ns), Ok(0));
        f.signal = false;
        assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Err(EINTR));
        assert_eq!(f.polls.last(), Some(&ns), "the VM's window (0: none)");
    }
}
