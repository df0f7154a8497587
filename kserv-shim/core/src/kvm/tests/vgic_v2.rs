//! The GICv2 device on a GICv2 host (`KVM_DEV_TYPE_ARM_VGIC_V2`): offered
//! only there (and a GICv3 only on a GICv3 host), KVM's address
//! attributes and errnos, the distributor's banked, target-mask and SGI
//! registers, per-source SGIs in the interrupt words, KCore mapping its
//! `GICV` at the guest's GICC at the first run, and the CPU interface's
//! registers (`GRP_CPU_REGS`) in KCore's `GICH_VMCR` and `GICH_APR`
//! copies, against the real KCore.

use super::*;
use crate::kvm::errno::{E2BIG, EEXIST, ENXIO};
use crate::kvm::vgic::v2::{ADDR_TYPE_CPU, ADDR_TYPE_DIST};
use kcore::addr::Pa;
use kcore_abi::run::irq;
use uapi::vgic_attr::{CTRL_INIT, GRP_ADDR, GRP_CPU_REGS, GRP_CTRL, GRP_DIST_REGS, GRP_NR_IRQS};

/// QEMU `virt`'s GICv2 frames as kcore-vmm places them for the guest.
const GICD2: u64 = 0x0800_0000;
const GICC2: u64 = 0x0801_0000;
/// Where the host's GICV is (any page KServ's stage 2 does not map).
const HOST_GICV: u64 = 0x0804_0000;

/// A fake machine whose GIC is a GICv2.
fn v2_host() -> Fake {
    let mut f = Fake::new();
    make_v2_host(&mut f);
    f
}

/// Makes `f`'s machine a GICv2 one (before any VM is created).
pub(super) fn make_v2_host(f: &mut Fake) {
    f.k().w.host.mem_mut().set_gicv(Pa(HOST_GICV));
}

fn addr(f: &mut Fake, vm: &Vm, op: u32, ty: u64, base: u64) -> Result<u64, Errno> {
    device_attr(f, vm, vm::device_ioctl, op, GRP_ADDR, ty, base)
}

/// Creates, places and initialises a GICv2 and enables its distributor.
pub(super) fn vgic_v2(f: &mut Fake, vm: &Vm) {
    assert_eq!(
        vm::device_create(f, vm, uapi::device::TYPE_ARM_VGIC_V2, 0),
        Ok(vm::DEVICE_VGIC)
    );
    assert_eq!(addr(f, vm, 0, ADDR_TYPE_DIST, GICD2), Ok(GICD2));
    assert_eq!(addr(f, vm, 0, ADDR_TYPE_CPU, GICC2), Ok(GICC2));
    assert_eq!(gic_attr(f, vm, 0, GRP_CTRL, CTRL_INIT, 0), Ok(0));
    // GICD_CTLR.Enable.
    mmio(f, vm, 0, 0x0, 4, true, 1);
}

fn mmio(f: &mut Fake, vm: &Vm, v: usize, off: u64, width: u64, write: bool, data: u64) -> u64 {
    vm.with_gic(f, |g| {
        let (r, k) = g
            .mmio(v, GICD2 + off, width, write, data)
            .expect("the distributor's");
        (r, k)
    })
}

#[test]
fn only_the_hosts_own_gic_version() {
    use uapi::device::{CREATE_TEST, TYPE_ARM_VGIC_ITS, TYPE_ARM_VGIC_V2, TYPE_ARM_VGIC_V3};
    // A GICv3 host: no GICv2 (no GICC compatibility), as before.
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    assert_eq!(
        vm::device_create(&mut f, &vm, TYPE_ARM_VGIC_V2, 0),
        Err(ENODEV)
    );
    // A GICv2 host: a GICv2 only, no GICv3 and no ITS.
    let mut f = v2_host();
    let vm = new_vm(&mut f, 0);
    for ty in [TYPE_ARM_VGIC_V3, TYPE_ARM_VGIC_ITS] {
        assert_eq!(vm::device_create(&mut f, &vm, ty, 0), Err(ENODEV), "{ty}");
        assert_eq!(vm::device_create(&mut f, &vm, ty, CREATE_TEST), Err(ENODEV));
    }
    assert_eq!(
        vm::device_create(&mut f, &vm, TYPE_ARM_VGIC_V2, CREATE_TEST),
        Ok(0)
    );
    assert_eq!(
        vm::device_create(&mut f, &vm, TYPE_ARM_VGIC_V2, 0),
        Ok(vm::DEVICE_VGIC)
    );
    assert_eq!(
        vm::device_create(&mut f, &vm, TYPE_ARM_VGIC_V2, 0),
        Err(EEXIST)
    );
    // KCore took the VM with at most 8 vCPUs; so does KVM_CREATE_VCPU.
    let created = f.accepted(HypercallId::HostCreateVm);
    assert_eq!(created.last().map(|a| a[2]), Some(8));
    assert_eq!(vm::vcpu_reserve(&mut f, &vm, 8), Err(EINVAL));
    let _v = new_vcpu(&mut f, &vm, 7);
}

#[test]
fn address_attributes_follow_kvm() {
    let mut f = v2_host();
    let vm = new_vm(&mut f, 0);
    let _v = new_vcpu(&mut f, &vm, 0);
    assert_eq!(
        vm::device_create(&mut f, &vm, uapi::device::TYPE_ARM_VGIC_V2, 0),
        Ok(vm::DEVICE_VGIC)
    );
    // Unset: VGIC_ADDR_UNDEF.
    assert_eq!(addr(&mut f, &vm, 1, ADDR_TYPE_CPU, 0), Ok(u64::MAX));
    // 4 KiB alignment, the IPA space (40 bits), then set once.
    assert_eq!(
        addr(&mut f, &vm, 0, ADDR_TYPE_DIST, GICD2 + 0x800),
        Err(EINVAL)
    );
    assert_eq!(addr(&mut f, &vm, 0, ADDR_TYPE_DIST, !0xFFF), Err(EINVAL));
    assert_eq!(
        addr(&mut f, &vm, 0, ADDR_TYPE_CPU, (1 << 40) - 0x1000),
        Err(E2BIG)
    );
    assert_eq!(addr(&mut f, &vm, 0, ADDR_TYPE_DIST, GICD2), Ok(GICD2));
    assert_eq!(addr(&mut f, &vm, 0, ADDR_TYPE_DIST, GICD2), Err(EEXIST));
    assert_eq!(addr(&mut f, &vm, 1, ADDR_TYPE_DIST, 0), Ok(GICD2));
    // GICv3 types and unknown ones: ENXIO (KVM's ENODEV, reported so).
    for ty in [2, 3, 5, 6] {
        assert_eq!(addr(&mut f, &vm, 0, ty, 0x0900_0000), Err(ENXIO), "{ty}");
        assert_eq!(addr(&mut f, &vm, 2, ty, 0), Err(ENXIO), "{ty}");
    }
    assert_eq!(addr(&mut f, &vm, 2, ADDR_TYPE_CPU, 0), Ok(0));
    // Overlapping frames: the first run's EINVAL; unset CPU: ENXIO.
    assert_eq!(gic_attr(&mut f, &vm, 0, GRP_NR_IRQS, 0, 128), Ok(128));
    assert_eq!(gic_attr(&mut f, &vm, 1, GRP_NR_IRQS, 0, 0), Ok(128));
    assert_eq!(gic_attr(&mut f, &vm, 0, GRP_CTRL, CTRL_INIT, 0), Ok(0));
    assert_eq!(vm::prepare_run(&mut f, &vm), Err(ENXIO));
    assert_eq!(
        addr(&mut f, &vm, 0, ADDR_TYPE_CPU, GICD2 - 0x1000),
        Ok(GICD2 - 0x1000)
    );
    assert_eq!(vm::prepare_run(&mut f, &vm), Err(EINVAL));
    // GICv3-only groups are not a GICv2's.
    assert_eq!(gic_attr(&mut f, &vm, 2, 5, 0, 0), Err(ENXIO));
    assert_eq!(gic_attr(&mut f, &vm, 2, 6, 0, 0), Err(ENXIO));
    assert_eq!(f.calls_of(HypercallId::HostSetVgicCpu), 0);
}

/// A GICv2 host's VM of type `ty` (a protected VM: 1 << 31) with memory,
/// `n` initialised vCPUs and its GICv2 placed, initialised and enabled.
#[allow(clippy::vec_box, reason = "new_vcpu hands out boxes, as the glue does")]
fn v2_vm(ty: u64, n: u64) -> (Fake, Box<Vm>, Vec<Box<Vcpu>>) {
    let mut f = v2_host();
    let vm = new_vm(&mut f, ty);
    slot(&mut f, &vm);
    let mut vcpus = Vec::new();
    for i in 0..n {
        let mut v = new_vcpu(&mut f, &vm, i);
        init(&mut f, &vm, &mut v, 1 << 2);
        vcpus.push(v);
    }
    vgic_v2(&mut f, &vm);
    (f, vm, vcpus)
}

#[test]
fn first_run_maps_gicv_at_the_guests_gicc() {
    let (mut f, vm, mut vcpus) = v2_vm(0, 1);
    let v = &mut vcpus[0];
    f.script([(exit::MMIO, 0, 0x0900_0000, 0, 4, [0; 3])]);
    assert_eq!(ioctl(&mut f, &vm, v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.accepted(HypercallId::HostSetVgicCpu).len(), 1);
    let h = f.accepted(HypercallId::HostSetVgicCpu)[0];
    assert_eq!(h[1], GICC2 >> 12);
    // KCore's stage 2 of the VM maps GICV there, device memory.
    let id = kcore::vm::VmId(0);
    let k = f.k();
    let owners = k.w.host.mem().owners();
    let vmk = k.w.host.mem().vms().get(id).expect("the VM");
    let leaf = vmk
        .stage2
        .walk(
            &k.w.hw,
            &|t| owners.holds_table(t, Some(id)),
            GICC2 + 0x1000,
        )
        .expect("not corrupt")
        .expect("mapped");
    assert_eq!(leaf.pa, Pa(HOST_GICV + 0x1000));
    kcore::audit::audit(k.w.host.mem(), &k.w.hw).expect("KCore's invariants");
    // Once: the next run does not ask again.
    f.script([(exit::MMIO, 0, 0x0900_0000, 0, 4, [0; 3])]);
    assert_eq!(ioctl(&mut f, &vm, v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.calls_of(HypercallId::HostSetVgicCpu), 1);
}

/// vCPU 1's next interrupt words into `out`: how many, and SGI 3's.
fn flush_sgi3(f: &mut Fake, vm: &Vm, out: &mut [u64; 4]) -> (usize, u64) {
    let n = vm.with_gic(f, |g| (g.flush(1, out), 0));
    let sgi = out[..n].iter().find(|&&w| irq::vintid(w) == 3).copied();
    (n, sgi.expect("SGI 3"))
}

#[test]
fn distributor_banks_targets_and_sgis() {
    let (mut f, vm, _vcpus) = v2_vm(0, 2);
    // GICD_TYPER: 256 interrupts (7 lines of 32, minus 1), 2 CPUs.
    assert_eq!(mmio(&mut f, &vm, 0, 0x4, 4, false, 0), 7 | 1 << 5);
    assert_eq!(mmio(&mut f, &vm, 0, 0x0, 4, false, 0), 1);
    // Group 0 at reset; private interrupts banked per vCPU.
    assert_eq!(mmio(&mut f, &vm, 0, 0x80, 4, false, 0), 0);
    mmio(&mut f, &vm, 1, 0x100, 4, true, 1 << 20);
    assert_eq!(mmio(&mut f, &vm, 1, 0x100, 4, false, 0) & 1 << 20, 1 << 20);
    assert_eq!(mmio(&mut f, &vm, 0, 0x100, 4, false, 0) & 1 << 20, 0);
    // ITARGETSR: private ones read as the reader's own CPU.
    assert_eq!(mmio(&mut f, &vm, 1, 0x800, 4, false, 0), 0x0202_0202);
    assert_eq!(mmio(&mut f, &vm, 0, 0x81C, 4, false, 0), 0x0101_0101);
    // SPI 40 to CPU 1 by its mask; pending and enabled: vCPU 1 gets it.
    mmio(&mut f, &vm, 0, 0x828, 1, true, 0x2);
    assert_eq!(mmio(&mut f, &vm, 0, 0x828, 4, false, 0), 0x2);
    mmio(&mut f, &vm, 0, 0x104, 4, true, 1 << 8);
    mmio(&mut f, &vm, 0, 0x204, 4, true, 1 << 8);
    let mut out = [0u64; 4];
    let n = vm.with_gic(&mut f, |g| (g.flush(1, &mut out), 0));
    assert_eq!((n, irq::vintid(out[0])), (1, 40));
    assert_eq!(vm.with_gic(&mut f, |g| (g.flush(0, &mut out), 0)), 0);
    // GICD_SGIR from vCPU 0 to vCPU 1 (list), then from vCPU 1 to itself:
    // SGI 3 pending from sources 0 and 1, one source per delivery.
    mmio(&mut f, &vm, 0, 0xF00, 4, true, 2 << 16 | 3);
    mmio(&mut f, &vm, 1, 0xF00, 4, true, 2 << 24 | 3);
    assert_eq!(mmio(&mut f, &vm, 1, 0xF20, 4, false, 0), 0b11 << 24);
    let (n, sgi) = flush_sgi3(&mut f, &vm, &mut out);
    assert_eq!(irq::sgi_source(sgi), 0);
    assert_eq!(irq::state(sgi), irq::PENDING);
    // The guest took it (now active): source 1 waits until it is done.
    let mut states = out;
    for s in states[..n].iter_mut() {
        *s = irq::with_state(*s, if irq::vintid(*s) == 3 { irq::ACTIVE } else { 0 });
    }
    vm.with_gic(&mut f, |g| (g.fold(1, &out[..n], &states[..n]), 0));
    let (n, sgi) = flush_sgi3(&mut f, &vm, &mut out);
    assert_eq!((irq::state(sgi), irq::sgi_source(sgi)), (irq::ACTIVE, 0));
    // Completed: now the second source.
    let done: Vec<u64> = out[..n].iter().map(|&w| irq::with_state(w, 0)).collect();
    vm.with_gic(&mut f, |g| (g.fold(1, &out[..n], &done), 0));
    let (_, sgi) = flush_sgi3(&mut f, &vm, &mut out);
    assert_eq!((irq::state(sgi), irq::sgi_source(sgi)), (irq::PENDING, 1));
    assert_eq!(mmio(&mut f, &vm, 1, 0xF20, 4, false, 0), 0);
    // CPENDSGIR clears a source; ISPENDR does not pend a GICv2 SGI.
    mmio(&mut f, &vm, 0, 0xF00, 4, true, 1 << 16 | 5);
    // (vCPU 0 to itself by the list: source 0.)
    assert_eq!(mmio(&mut f, &vm, 0, 0xF14, 4, false, 0), 0x1 << 8);
    mmio(&mut f, &vm, 0, 0xF14, 4, true, 0x1 << 8);
    assert_eq!(mmio(&mut f, &vm, 0, 0xF24, 4, false, 0), 0);
    mmio(&mut f, &vm, 0, 0x200, 4, true, 1 << 6);
    assert_eq!(mmio(&mut f, &vm, 0, 0x200, 4, false, 0) & 1 << 6, 0);
    // The VMM sees the same registers by vCPU (bits 39..32).
    let t = gic_attr(&mut f, &vm, 1, GRP_DIST_REGS, 1 << 32 | 0x800, 0);
    assert_eq!(t, Ok(0x0202_0202));
    assert_eq!(
        gic_attr(&mut f, &vm, 1, GRP_DIST_REGS, 5 << 32 | 0x800, 0),
        Err(EINVAL)
    );
    assert_eq!(
        gic_attr(&mut f, &vm, 2, GRP_DIST_REGS, 0x1000, 0),
        Err(ENXIO)
    );
}

#[test]
fn cpu_regs_live_in_kcores_gich_copies() {
    use kcore_abi::reg::{ICH_AP1R, ICH_VMCR};
    let (mut f, vm, _vcpus) = v2_vm(0, 2);
    let cpu = |f: &mut Fake, op, vcpu: u64, off: u64, value| {
        gic_attr(f, &vm, op, GRP_CPU_REGS, vcpu << 32 | off, value)
    };
    // vCPU 1's priority mask (KVM's ABI: the 5-bit VMPriMask) and binary
    // points, set and read back; KCore holds them as GICH_VMCR.
    assert_eq!(cpu(&mut f, 1, 1, 0x04, 0), Ok(0));
    assert_eq!(cpu(&mut f, 0, 1, 0x04, 0x1E), Ok(0x1E));
    assert_eq!(cpu(&mut f, 0, 1, 0x08, 2), Ok(2));
    assert_eq!(cpu(&mut f, 0, 1, 0x1C, 3), Ok(3));
    assert_eq!(cpu(&mut f, 0, 1, 0x00, 0x203), Ok(0x203));
    for (off, want) in [(0x04, 0x1E), (0x08, 2), (0x1C, 3), (0x00, 0x203)] {
        assert_eq!(cpu(&mut f, 1, 1, off, 0), Ok(want), "{off:#x}");
    }
    assert_eq!(
        f.get_reg(1, ICH_VMCR),
        Some(0x1E << 27 | 2 << 21 | 3 << 18 | 1 << 9 | 3)
    );
    assert_eq!(f.get_reg(0, ICH_VMCR), Some(0), "vCPU 0's is its own");
    // What the guest's world switch saved is what the VMM reads.
    assert!(f.set_reg(0, ICH_VMCR, 0xF0 << 24 | 1));
    assert_eq!(cpu(&mut f, 1, 0, 0x04, 0), Ok(0x1E));
    assert_eq!(cpu(&mut f, 1, 0, 0x00, 0), Ok(1));
    // GICC_APR0 is GICH_APR (KCore's ICH_AP1R + 0); APR1..3 read as zero.
    assert_eq!(cpu(&mut f, 0, 1, 0xD0, 0x8000_0000), Ok(0x8000_0000));
    assert_eq!(f.get_reg(1, ICH_AP1R), Some(0x8000_0000));
    assert_eq!(cpu(&mut f, 0, 1, 0xD4, 5), Ok(5));
    assert_eq!(cpu(&mut f, 1, 1, 0xD4, 7), Ok(0));
    // GICC_IIDR: KVM's, read-only.
    assert_eq!(cpu(&mut f, 0, 1, 0xFC, 0), Ok(0));
    assert_eq!(cpu(&mut f, 1, 1, 0xFC, 0), Ok(0x04B2_043B));
    // No register there (GICC_IAR, unaligned, past the frame): has says
    // ENXIO; a get reads 0 and a set changes nothing, as KVM.
    for off in [0x0C, 0x06, 0x2000] {
        assert_eq!(cpu(&mut f, 2, 1, off, 0), Err(ENXIO), "{off:#x}");
        assert_eq!(cpu(&mut f, 1, 1, off, 7), Ok(0), "{off:#x}");
        assert_eq!(cpu(&mut f, 0, 1, off, 7), Ok(7), "{off:#x}");
    }
    assert_eq!(cpu(&mut f, 1, 1, 0x04, 0), Ok(0x1E));
    for off in [0x00, 0x04, 0x08, 0x1C, 0xD0, 0xDC, 0xFC] {
        assert_eq!(cpu(&mut f, 2, 1, off, 0), Ok(0), "{off:#x}");
    }
    // A vCPU the VM does not have: EINVAL, to a has too.
    assert_eq!(cpu(&mut f, 1, 5, 0x04, 0), Err(EINVAL));
    assert_eq!(cpu(&mut f, 2, 5, 0x04, 0), Err(EINVAL));
    assert_eq!(cpu(&mut f, 0, 2, 0x04, 0), Err(EINVAL));
}

#[test]
fn cpu_regs_errors() {
    // Before CTRL_INIT: EBUSY, as the distributor's registers.
    let mut f = v2_host();
    let vm = new_vm(&mut f, 0);
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    assert_eq!(
        vm::device_create(&mut f, &vm, uapi::device::TYPE_ARM_VGIC_V2, 0),
        Ok(vm::DEVICE_VGIC)
    );
    assert_eq!(gic_attr(&mut f, &vm, 1, GRP_CPU_REGS, 0x04, 0), Err(EBUSY));
    assert_eq!(gic_attr(&mut f, &vm, 2, GRP_CPU_REGS, 0x04, 0), Ok(0));
    // A protected vCPU's CPU interface is KCore's alone.
    let (mut f, vm, _vcpus) = v2_vm(1 << 31, 1);
    assert_eq!(gic_attr(&mut f, &vm, 1, GRP_CPU_REGS, 0x04, 0), Err(EPERM));
    assert_eq!(
        gic_attr(&mut f, &vm, 0, GRP_CPU_REGS, 0x04, 0x1F),
        Err(EPERM)
    );
    assert_eq!(f.get_reg(0, kcore_abi::reg::ICH_VMCR), None);
}
