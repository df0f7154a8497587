//! A GICv2 VM's CPU interface registers through the vGIC device
//! (`KVM_DEV_ARM_VGIC_GRP_CPU_REGS`), on a GICv2 host only: a VM with two
//! vCPUs and its GICv2 initialised; vCPU 1's priority mask and binary
//! point set and read back (KVM's ABI: `GICC_PMR` as the 5-bit
//! `GICH_VMCR.VMPriMask`), vCPU 0's left alone, KVM's `GICC_IIDR`, and
//! KVM's errors: `ENXIO` to a has of an offset with no register, `EINVAL`
//! for a vCPU the VM does not have. The same answers on stock KVM and on
//! the shim: `kserv-tools kvmapi --gicv2-cpu` runs only these ([`only`]),
//! which KServ's `kvmguest` test does on stock KVM's GICv2.

use super::Checks;
use crate::kvm::*;
use std::fs::{File, OpenOptions};

/// `KVM_DEV_ARM_VGIC_GRP_CPU_REGS`.
const GRP_CPU_REGS: u32 = 2;
/// Offsets in the CPU interface's frame.
const GICC_PMR: u64 = 0x04;
const GICC_BPR: u64 = 0x08;
const GICC_IAR: u64 = 0x0C;
const GICC_IIDR: u64 = 0xFC;

/// `kserv-tools kvmapi --gicv2-cpu`: [`checks`] on `/dev/kvm`, whichever
/// implements it.
pub fn only(c: &mut Checks) {
    let kvm = OpenOptions::new().read(true).write(true).open("/dev/kvm");
    let r = kvm
        .map_err(|e| format!("/dev/kvm: {e}"))
        .and_then(|kvm| checks(c, &kvm));
    if let Err(e) = r {
        c.check("gicv2-cpu", false, || e);
    }
}

/// The checks; `Err` when the VM cannot be set up.
pub fn checks(c: &mut Checks, kvm: &File) -> Result<(), String> {
    let vm = owned(ioctl(kvm, CREATE_VM, 0).map_err(|e| format!("KVM_CREATE_VM: errno {e}"))?);
    let mut init = [0u32; 8];
    ioctl(&vm, ARM_PREFERRED_TARGET, ptr_mut(&mut init))
        .map_err(|e| format!("KVM_ARM_PREFERRED_TARGET: errno {e}"))?;
    let target = init[0];
    let _v0 = make_vcpu(&vm, 0, target, 1 << 2)?;
    let _v1 = make_vcpu(&vm, 1, target, 1 << 2 | 1)?;
    let gic = make_vgic(&vm, None)?;
    let reg = |vcpu: u64, off: u64| vcpu << 32 | off;
    let set = |attr: u64, v: u32| device_attr(&gic, SET_DEVICE_ATTR, GRP_CPU_REGS, attr, ptr(&v));
    let get = |attr: u64| {
        let mut v = 0u32;
        device_attr(&gic, GET_DEVICE_ATTR, GRP_CPU_REGS, attr, ptr_mut(&mut v))
            .map(|_| i64::from(v))
    };
    let has = |attr: u64| device_attr(&gic, HAS_DEVICE_ATTR, GRP_CPU_REGS, attr, 0);
    c.ok("gicv2-cpu-has-pmr", has(reg(1, GICC_PMR)), 0);
    c.errno("gicv2-cpu-has-iar", has(reg(1, GICC_IAR)), ENXIO);
    let pmr0 = get(reg(0, GICC_PMR));
    c.ok("gicv2-cpu-set-pmr", set(reg(1, GICC_PMR), 0x1E), 0);
    c.ok("gicv2-cpu-get-pmr", get(reg(1, GICC_PMR)), 0x1E);
    c.ok("gicv2-cpu-set-bpr", set(reg(1, GICC_BPR), 3), 0);
    c.ok("gicv2-cpu-get-bpr", get(reg(1, GICC_BPR)), 3);
    c.check(
        "gicv2-cpu-other-vcpu",
        pmr0.is_ok() && get(reg(0, GICC_PMR)) == pmr0,
        || format!("vCPU 0's PMR {pmr0:?}, then {:?}", get(reg(0, GICC_PMR))),
    );
    c.ok("gicv2-cpu-iidr", get(reg(1, GICC_IIDR)), 0x04B2_043B);
    c.errno("gicv2-cpu-no-vcpu", get(reg(5, GICC_PMR)), EINVAL);
    c.errno("gicv2-cpu-has-no-vcpu", has(reg(5, GICC_PMR)), EINVAL);
    Ok(())
}
