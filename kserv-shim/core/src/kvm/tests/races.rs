//! Two threads of a VMM on one VM, interleaved at every point where the
//! first holds none of the shim's locks (where the second could take
//! them): the shim's outcome is one KVM gives. `KVM_CREATE_DEVICE` of the
//! vGIC against a vCPU's first `KVM_RUN` (KVM: `kvm_vgic_create` under
//! `kvm->lock` with every vCPU's mutex, `kvm_arch_vcpu_run_pid_change`
//! under the vCPU's), and `KVM_DEV_ARM_VGIC_CTRL_INIT` against
//! `KVM_CREATE_VCPU` (`vgic_init`'s "in the middle of creating a vCPU" and
//! `kvm_arch_vcpu_precreate`'s "initialised").

use super::*;
use std::cell::RefCell;
use std::rc::Rc;

/// One thread's ioctl on the VM.
type Step = Box<dyn FnOnce(&mut Fake) -> Result<i64, Errno>>;
/// What the test looks at once both ran.
type Look = Box<dyn FnOnce(&mut Fake) -> u64>;
/// Both threads' results and the look.
type Outcome = (Result<i64, Errno>, Result<i64, Errno>, u64);

/// Every outcome of `first` and `second` from `setup` (a fresh VM each
/// time): `second` whole before `first`, after it, and at each of
/// `first`'s lock-free points; then the same with the threads swapped
/// (results stay in `first`, `second` order).
fn outcomes(setup: impl Fn(&mut Fake) -> (Step, Step, Look)) -> BTreeSet<Outcome> {
    let mut seen = BTreeSet::new();
    for swapped in [false, true] {
        for point in 0.. {
            let mut f = Fake::new();
            let (a, b, look) = setup(&mut f);
            let (a, b) = if swapped { (b, a) } else { (a, b) };
            let rb = Rc::new(RefCell::new(None));
            let ra = if point == 0 {
                *rb.borrow_mut() = Some(b(&mut f));
                a(&mut f)
            } else {
                let slot = rb.clone();
                f.preempt = Some((
                    point - 1,
                    Box::new(move |f: &mut Fake| *slot.borrow_mut() = Some(b(f))),
                ));
                let ra = a(&mut f);
                if let Some((_, b)) = f.preempt.take() {
                    // `first` has no more such points: `second` after it.
                    b(&mut f);
                    let rb = rb.borrow_mut().take().expect("ran");
                    let l = look(&mut f);
                    seen.insert(if swapped { (rb, ra, l) } else { (ra, rb, l) });
                    break;
                }
                ra
            };
            assert!(f.held.is_empty());
            let rb = rb.borrow_mut().take().expect("ran");
            let l = look(&mut f);
            seen.insert(if swapped { (rb, ra, l) } else { (ra, rb, l) });
        }
    }
    seen
}

fn leak<T>(b: Box<T>) -> &'static mut T {
    Box::leak(b)
}

fn set_gic_attr(f: &mut Fake, vm: &Vm, group: u32, attr: u64, value: u64) -> Result<i64, Errno> {
    let v = user(f, 0xA000, &[value]);
    let a = user(f, 0xA100, &[u64::from(group) << 32, attr, v]);
    vm::device_ioctl(f, vm, uapi::SET_DEVICE_ATTR, a)
}

#[test]
fn creating_the_vgic_against_a_first_run_is_one_or_the_other() {
    let seen = outcomes(|f| {
        let vm: &'static Vm = leak(new_vm(f, 0));
        let v = leak(new_vcpu(f, vm, 0));
        init(f, vm, v, 0);
        f.run[krun::IMMEDIATE_EXIT] = 1;
        let run: Step = Box::new(move |f| ioctl(f, vm, v, uapi::RUN, 0));
        let create: Step =
            Box::new(move |f| vm::device_create(f, vm, uapi::device::TYPE_ARM_VGIC_V3, 0));
        // Whether the VM ran without the vGIC it has.
        let look: Look = Box::new(move |f| {
            let ran = vm.with_cfg(f, |_, c| c.has_run());
            u64::from(ran && vm.with_gic(f, |g| (g.created, 0)))
        });
        (run, create, look)
    });
    let expected = BTreeSet::from([
        // The run first (KVM's `vcpu_has_run_once`; a create while the run
        // holds the vCPU's mutex is EBUSY too).
        (Err(EINTR), Err(EBUSY), 0),
        // The create first: the run needs the vGIC placed.
        (Err(ENXIO), Ok(vm::DEVICE_VGIC), 0),
    ]);
    assert_eq!(seen, expected);
}

#[test]
fn initialising_the_vgic_against_a_vcpus_creation_is_one_or_the_other() {
    use super::uapi::vgic_attr::{ADDR_TYPE_DIST, ADDR_TYPE_REDIST, CTRL_INIT, GRP_ADDR, GRP_CTRL};
    let seen = outcomes(|f| {
        let vm: &'static Vm = leak(new_vm(f, 0));
        leak(new_vcpu(f, vm, 0));
        assert_eq!(
            vm::device_create(f, vm, uapi::device::TYPE_ARM_VGIC_V3, 0),
            Ok(vm::DEVICE_VGIC)
        );
        for (ty, base) in [(ADDR_TYPE_DIST, GICD), (ADDR_TYPE_REDIST, GICR)] {
            assert_eq!(set_gic_attr(f, vm, GRP_ADDR, ty, base), Ok(0));
        }
        let init: Step = Box::new(move |f| set_gic_attr(f, vm, GRP_CTRL, CTRL_INIT, 0));
        // `KVM_CREATE_VCPU` as the glue makes it.
        let create: Step = Box::new(move |f| {
            vm::vcpu_reserve(f, vm, 1)?;
            // SAFETY: as in `new_vcpu`.
            let v = leak(unsafe { Box::<Vcpu>::new_zeroed().assume_init() });
            vcpu::create(f, vm, v, 1).map(|()| 0)
        });
        // Initialised, and with vCPU 1's redistributor.
        let look: Look = Box::new(move |f| {
            vm.with_gic(f, |g| {
                (u64::from(g.ready) << 1 | u64::from(g.has_vcpu(1)), 0)
            })
        });
        (init, create, look)
    });
    let expected = BTreeSet::from([
        // The init first: `kvm_arch_vcpu_precreate`'s EBUSY.
        (Ok(0), Err(EBUSY), 2),
        // The creation first: the vGIC has both vCPUs.
        (Ok(0), Ok(0), 3),
        // The init while the vCPU is being created: `vgic_init`'s EBUSY.
        (Err(EBUSY), Ok(0), 0),
    ]);
    assert_eq!(seen, expected);
}
