//! The errno audit: for every ioctl the shim implements on `/dev/kvm`, a VM,
//! a vCPU, the vGIC and the ITS device, the error KVM 6.1 gives for each
//! kind of bad input, one row each, and the real limits where the shim
//! answers otherwise on purpose.
//!
//! How the table was built: each ioctl's path in Debian's Linux 6.1 source
//! was read (`virt/kvm/kvm_main.c`, `virt/kvm/eventfd.c`,
//! `arch/arm64/kvm/{arm,guest,sys_regs,reset,arch_timer,pvtime,pmu-emul,
//! hypercalls}.c`, `arch/arm64/kvm/vgic/{vgic-kvm-device,vgic-mmio-v3,
//! vgic-init,vgic-its,vgic-irqfd,vgic-sys-reg-v3}.c`) with
//! `Documentation/virt/kvm/api.rst` and the selftests' expectations
//! (`aarch64/vgic_init.c`, `set_memory_region_test.c`, `kvm_create_max_vcpus.c`,
//! `aarch64/get-reg-list.c`), noting for each check the errno and, where one
//! input fails several checks, which comes first. Every row runs the shim's
//! own ioctl path (what the module's glue calls: `vm::dev_ioctl`,
//! `vm::init`, `vm::ioctl`, `vm::vcpu_reserve`, `vm::device_create`,
//! `vcpu::ioctl`, `vm::device_ioctl`, `vgic::its::device_ioctl`) on a fresh
//! VM against the real KCore, so a changed errno fails it. `EFAULT` rows
//! use an address the fake kernel's `copy_{from,to}_user` refuses, as the
//! glue's do for an unmapped one.
//!
//! The rows of [`limits`] are where KServ differs by design (`docs/kvm.md`,
//! "Where it differs from KVM" and "Errors"): they pin the shim's answer so
//! that a change is noticed and the document updated.

use super::*;
use crate::kvm::eventfd::{io, irq};
use crate::kvm::uapi::reg as id;
use crate::kvm::uapi::vgic_attr as va;
use crate::kvm::uapi::{cap, device, dirty_log, irq_line, mem, mp_state, routing, vcpu_init};
use crate::kvm::vgic::its;
use crate::kvm::{pvtime, timer};

/// Where a row's argument structure is put.
const ARG: u64 = 0x2_0000;
/// Where a value an attribute or register points at is put.
const VALUE: u64 = 0x2_1000;
/// A bitmap's place.
const BITMAP: u64 = 0x2_2000;
/// An address `copy_{from,to}_user` fails on.
const BAD: u64 = 0x10;
/// An eventfd of the VMM's, and an fd of another kind.
const EVENTFD: i32 = 5;
const NOT_EVENTFD: i32 = 6;
/// Where the ITS is placed.
const ITS_BASE: u64 = 0x0808_0000;
/// `KVM_ARM_VCPU_PMU_V3_CTRL` and its attributes.
const PMU_GROUP: u64 = 0;
/// `ICC_PMR_EL1` as a `GRP_CPU_SYSREGS` attribute (op0 3, CRn 4, CRm 6).
const ICC_PMR: u64 = 3 << 14 | 4 << 7 | 6 << 3;
/// The target `ARM_PREFERRED_TARGET` names (`KVM_ARM_TARGET_GENERIC_V8`).
const TARGET: u64 = 5;
/// `KVM_CAP_HALT_POLL`.
const CAP_HALT_POLL: u64 = 182;

/// What a row's ioctl runs against (each row gets its own).
#[derive(Clone, Copy, Debug)]
enum Setup {
    /// A non-protected VM (and `/dev/kvm`).
    Vm,
    /// A protected VM.
    Protected,
    /// A VM with slot 0: 1 MiB at [`RAM`].
    Slot,
    /// A protected VM with slot 0.
    ProtectedSlot,
    /// A VM with slot 0 logging dirty pages.
    Logging,
    /// A VM with vCPU 0, not initialised.
    Vcpu,
    /// vCPU 0 initialised (PSCI 0.2), slot 0.
    Init,
    /// A protected VM's vCPU 0, initialised.
    ProtectedInit,
    /// `Init` and a vGIC created, not placed nor initialised.
    Gic,
    /// `Init` and the vGIC placed (distributor and legacy
    /// redistributors) and initialised.
    GicReady,
    /// `Init` on a GICv2 host, a GICv2 placed and initialised.
    GicV2Ready,
    /// `GicReady` and an ITS, not placed.
    Its,
    /// `Its` placed at [`ITS_BASE`].
    ItsPlaced,
    /// `Init`, and the VM has been prepared by a first `KVM_RUN`.
    Ran,
}

/// A row's world.
struct Ctx {
    f: Fake,
    vm: Box<Vm>,
    v: Vec<Vcpu>,
}

type Res = Result<i64, Errno>;

impl Ctx {
    fn new(setup: Setup) -> Ctx {
        use Setup as S;
        let mut f = Fake::new();
        if matches!(setup, S::GicV2Ready) {
            vgic_v2::make_v2_host(&mut f);
        }
        f.fds.insert(EVENTFD, 0xE0);
        f.fds.insert(NOT_EVENTFD, 0);
        let protected = matches!(setup, S::Protected | S::ProtectedSlot | S::ProtectedInit);
        let vm = new_vm(&mut f, if protected { 1 << 31 } else { 0 });
        let mut c = Ctx {
            f,
            vm,
            v: Vec::new(),
        };
        if matches!(setup, S::Vm | S::Protected) {
            return c;
        }
        if !matches!(setup, S::Vcpu | S::ProtectedInit) {
            let flags = if matches!(setup, S::Logging) {
                u64::from(mem::LOG_DIRTY_PAGES)
            } else {
                0
            };
            let r = c.region(0, flags, RAM, 0x10_0000, UADDR);
            assert_eq!(r, Ok(0), "{setup:?}'s slot");
        }
        if matches!(setup, S::Slot | S::ProtectedSlot | S::Logging) {
            return c;
        }
        c.add_vcpu(0);
        if matches!(setup, S::Vcpu) {
            return c;
        }
        init(&mut c.f, &c.vm, &mut c.v[0], 1 << vcpu_init::PSCI_0_2);
        match setup {
            S::Gic => {
                let r = c.create_device(device::TYPE_ARM_VGIC_V3, 0);
                assert_eq!(r, Ok(vm::DEVICE_VGIC));
            }
            S::GicReady | S::Its | S::ItsPlaced => vgic(&mut c.f, &c.vm),
            S::GicV2Ready => vgic_v2::vgic_v2(&mut c.f, &c.vm),
            S::Ran => assert_eq!(vm::prepare_run(&mut c.f, &c.vm), Ok(())),
            _ => {}
        }
        if matches!(setup, S::Its | S::ItsPlaced) {
            let r = c.create_device(device::TYPE_ARM_VGIC_ITS, 0);
            assert_eq!(r, Ok(vm::DEVICE_ITS));
        }
        if matches!(setup, S::ItsPlaced) {
            let r = c.its(0, va::GRP_ADDR, va::ITS_ADDR_TYPE, ITS_BASE);
            assert_eq!(r, Ok(0));
        }
        c
    }

    fn add_vcpu(&mut self, vcpu: u64) {
        let v = new_vcpu(&mut self.f, &self.vm, vcpu);
        self.v.push(*v);
    }

    /// `words` at [`ARG`]; returns [`ARG`].
    fn arg(&mut self, words: &[u64]) -> u64 {
        user(&mut self.f, ARG, words)
    }

    /// A `/dev/kvm` ioctl.
    fn dev(&mut self, cmd: u32, arg: u64) -> Res {
        match vm::dev_ioctl(&HOST, cmd, arg) {
            r if r < 0 => Err((-r) as Errno),
            r => Ok(r),
        }
    }

    /// `KVM_CREATE_VM` of type `ty` (as the glue: a zeroed VM, `vm::init`).
    fn create_vm(&mut self, ty: u64) -> Res {
        // SAFETY: all zero is what the glue hands the core (as `new_vm`).
        let vm: Box<Vm> = unsafe { Box::new_zeroed().assume_init() };
        vm::init(&mut self.f, &vm, ty, &HOST).map(|()| 0)
    }

    /// `KVM_CREATE_VCPU`'s decision (`vm::vcpu_reserve`).
    fn create_vcpu(&mut self, vcpu: u64) -> Res {
        vm::vcpu_reserve(&mut self.f, &self.vm, vcpu).map(|()| 0)
    }

    /// `KVM_CREATE_DEVICE`'s decision.
    fn create_device(&mut self, ty: u32, flags: u32) -> Res {
        vm::device_create(&mut self.f, &self.vm, ty, flags)
    }

    /// A VM ioctl with its structure (`words`) at [`ARG`].
    fn vm(&mut self, cmd: u32, words: &[u64]) -> Res {
        let a = self.arg(words);
        self.vm_at(cmd, a)
    }

    fn vm_at(&mut self, cmd: u32, arg: u64) -> Res {
        vm::ioctl(&mut self.f, &self.vm, &HOST, cmd, arg)
    }

    /// `KVM_SET_USER_MEMORY_REGION`.
    fn region(&mut self, slot: u64, flags: u64, gpa: u64, size: u64, uaddr: u64) -> Res {
        self.vm(
            uapi::SET_USER_MEMORY_REGION,
            &[slot | flags << 32, gpa, size, uaddr],
        )
    }

    /// A vCPU ioctl of vCPU 0 with its structure at [`ARG`].
    fn vcpu(&mut self, cmd: u32, words: &[u64]) -> Res {
        let a = self.arg(words);
        self.vcpu_at(cmd, a)
    }

    fn vcpu_at(&mut self, cmd: u32, arg: u64) -> Res {
        vcpu::ioctl(&mut self.f, &self.vm, &HOST, &mut self.v[0], cmd, arg)
    }

    /// `KVM_GET_ONE_REG` (`set`: `SET_ONE_REG` of `value`) of `reg`.
    fn one_reg(&mut self, set: bool, reg: u64, value: u64) -> Res {
        user(&mut self.f, VALUE, &[value, 0]);
        let cmd = if set {
            uapi::SET_ONE_REG
        } else {
            uapi::GET_ONE_REG
        };
        self.vcpu(cmd, &[reg, VALUE])
    }

    /// `cmd` (`KVM_{GET,SET}_ONE_REG`) of `reg` with its value at `at`,
    /// on a CPU with [`ccsidr`]'s caches (a set of [`VALUE`] writes
    /// 0, no cache's geometry).
    fn caches(&mut self, cmd: u32, reg: u64, at: u64) -> Res {
        ccsidr::with_caches(&mut self.f);
        user(&mut self.f, VALUE, &[0]);
        self.vcpu(cmd, &[reg, at])
    }

    /// `KVM_ARM_VCPU_INIT` of vCPU 0.
    fn vcpu_init(&mut self, target: u64, features: [u64; 7]) -> Res {
        let w = |i: usize| features[i] | features[i + 1] << 32;
        let words = [target | features[0] << 32, w(1), w(3), w(5)];
        self.vcpu(uapi::ARM_VCPU_INIT, &words)
    }

    /// `KVM_RUN` of vCPU 0.
    fn run(&mut self) -> Res {
        self.vcpu_at(uapi::RUN, 0)
    }

    /// A device attribute `op` (0 set, 1 get, 2 has) through `ioctl`, the
    /// value at [`VALUE`] (or `addr` if not 0).
    fn attr_with(
        &mut self,
        ioctl: fn(&mut Fake, &Vm, u32, u64) -> Res,
        op: usize,
        group: u32,
        attr: u64,
        value: u64,
        addr: u64,
    ) -> Res {
        let cmd = [
            uapi::SET_DEVICE_ATTR,
            uapi::GET_DEVICE_ATTR,
            uapi::HAS_DEVICE_ATTR,
        ][op];
        user(&mut self.f, VALUE, &[value]);
        let addr = if addr == 0 { VALUE } else { addr };
        let a = self.arg(&[u64::from(group) << 32, attr, addr]);
        ioctl(&mut self.f, &self.vm, cmd, a)
    }

    /// A vGIC device attribute.
    fn gic(&mut self, op: usize, group: u32, attr: u64, value: u64) -> Res {
        self.attr_with(vm::device_ioctl, op, group, attr, value, 0)
    }

    /// An ITS device attribute.
    fn its(&mut self, op: usize, group: u32, attr: u64, value: u64) -> Res {
        self.attr_with(its::device_ioctl, op, group, attr, value, 0)
    }

    /// A vCPU device attribute of vCPU 0.
    fn vcpu_attr(&mut self, op: usize, group: u64, attr: u64, value: u64) -> Res {
        let cmd = [
            uapi::SET_DEVICE_ATTR,
            uapi::GET_DEVICE_ATTR,
            uapi::HAS_DEVICE_ATTR,
        ][op];
        user(&mut self.f, VALUE, &[value]);
        self.vcpu(cmd, &[group << 32, attr, VALUE])
    }

    /// `KVM_IOEVENTFD`.
    fn ioeventfd(&mut self, addr: u64, len: u64, fd: i32, flags: u32) -> Res {
        let fdw = u64::from(fd as u32) << 32;
        let words = [0, addr, len | fdw, u64::from(flags), 0, 0, 0, 0];
        self.vm(uapi::IOEVENTFD, &words)
    }

    /// `KVM_IRQFD`.
    fn irqfd(&mut self, fd: i32, gsi: u32, flags: u32, resamplefd: i32) -> Res {
        let w0 = u64::from(fd as u32) | u64::from(gsi) << 32;
        let w1 = u64::from(flags) | u64::from(resamplefd as u32) << 32;
        self.vm(uapi::IRQFD, &[w0, w1, 0, 0])
    }

    /// `KVM_SET_GSI_ROUTING` with `(gsi, type, flags, irqchip, pin)`.
    fn routing(&mut self, nr: u64, flags: u64, entries: &[(u32, u32, u32, u32, u32)]) -> Res {
        let mut words = vec![nr | flags << 32];
        for &(gsi, ty, fl, chip, pin) in entries {
            words.extend([
                u64::from(gsi) | u64::from(ty) << 32,
                u64::from(fl),
                u64::from(chip) | u64::from(pin) << 32,
                0,
                0,
                0,
            ]);
        }
        self.vm(uapi::SET_GSI_ROUTING, &words)
    }

    /// `KVM_SIGNAL_MSI`.
    fn msi(&mut self, addr: u64, data: u32, flags: u32, devid: u32) -> Res {
        let words = [
            addr,
            u64::from(data) | u64::from(flags) << 32,
            u64::from(devid),
            0,
        ];
        self.vm(uapi::SIGNAL_MSI, &words)
    }

    /// `KVM_GET_DIRTY_LOG` of `slot` into [`BITMAP`] (or `to`).
    fn get_log(&mut self, slot: u64, to: u64) -> Res {
        self.vm(uapi::GET_DIRTY_LOG, &[slot, to])
    }

    /// `KVM_CLEAR_DIRTY_LOG`.
    fn clear_log(&mut self, slot: u64, first: u64, num: u64, from: u64) -> Res {
        user(&mut self.f, BITMAP, &[u64::MAX; 8]);
        self.vm(uapi::CLEAR_DIRTY_LOG, &[slot | num << 32, first, from])
    }

    /// `KVM_ENABLE_CAP` on the VM.
    fn enable_cap(&mut self, c: u64, flags: u64, arg0: u64) -> Res {
        let mut words = [0u64; 13];
        words[0] = c | flags << 32;
        words[1] = arg0;
        self.vm(uapi::ENABLE_CAP, &words)
    }

    /// `KVM_IRQ_LINE` of `(type, vcpu index, number)`.
    fn irq_line(&mut self, ty: u32, idx: u32, num: u32) -> Res {
        let irq = ty << 24 | idx << 16 | num;
        self.vm(uapi::IRQ_LINE, &[u64::from(irq) | 1 << 32])
    }
}

/// One audited (ioctl, bad input).
struct Row {
    fd: &'static str,
    ioctl: &'static str,
    input: &'static str,
    setup: Setup,
    /// What KVM 6.1 answers (0: success).
    errno: Errno,
    /// Where Linux 6.1 says so.
    source: &'static str,
    call: fn(&mut Ctx) -> Res,
}

/// Builds a [`Row`].
fn row(
    fd: &'static str,
    ioctl: &'static str,
    input: &'static str,
    setup: Setup,
    errno: Errno,
    source: &'static str,
    call: fn(&mut Ctx) -> Res,
) -> Row {
    Row {
        fd,
        ioctl,
        input,
        setup,
        errno,
        source,
        call,
    }
}

/// Runs `rows`: the mismatches, as lines.
fn check(rows: &[Row]) -> Vec<std::string::String> {
    let mut bad = Vec::new();
    for r in rows {
        // A row the shim lets through to the guest ends in the fake's
        // panic (its guest has no script): a mismatch like any other.
        let got = std::panic::catch_unwind(|| {
            let mut c = Ctx::new(r.setup);
            (r.call)(&mut c)
        });
        let Ok(got) = got else {
            bad.push(std::format!("{} {} ({}): panicked", r.fd, r.ioctl, r.input));
            continue;
        };
        let want = if r.errno == 0 { Ok(()) } else { Err(r.errno) };
        if got.map(|_| ()) != want {
            bad.push(std::format!(
                "{} {} ({}): expected {} ({}), got {:?}",
                r.fd,
                r.ioctl,
                r.input,
                r.errno,
                r.source,
                got
            ));
        }
    }
    bad
}

/// The rows of a table: `row(...)` calls, kept one to a few lines each
/// (a brace macro, which rustfmt leaves as written).
macro_rules! rows {
    ($(row($($arg:tt)*)),* $(,)?) => {
        vec![$(row($($arg)*)),*]
    };
}

/// `/dev/kvm` and `KVM_CREATE_VM`.
fn system_rows() -> Vec<Row> {
    use Setup::Vm as V;
    let d = "/dev/kvm";
    rows! {
        row(d, "KVM_GET_API_VERSION", "arg != 0", V, EINVAL, "kvm_main.c kvm_dev_ioctl", |c| {
            c.dev(uapi::GET_API_VERSION, 1)
        }),
        row(d, "KVM_GET_VCPU_MMAP_SIZE", "arg != 0", V, EINVAL, "kvm_main.c kvm_dev_ioctl", |c| {
            c.dev(uapi::GET_VCPU_MMAP_SIZE, 1)
        }),
        row(d, "unknown ioctl", "nr 0x7f", V, EINVAL, "arm.c kvm_arch_dev_ioctl", |c| {
            c.dev(0xAE7F, 0)
        }),
        row(d, "KVM_CHECK_EXTENSION", "MSI_DEVID without a VM", V, EINVAL,
            "arm.c kvm_vm_ioctl_check_extension (KVM_CAP_MSI_DEVID, !kvm)", |c| {
            c.dev(uapi::CHECK_EXTENSION, cap::MSI_DEVID)
        }),
        row(d, "KVM_CREATE_VM", "unknown type bit 8", V, EINVAL,
            "mmu.c kvm_init_stage2_mmu / reset.c kvm_arm_setup_stage2 (type & ~IPA_SIZE_MASK)", |c| {
            c.create_vm(1 << 8)
        }),
        row(d, "KVM_CREATE_VM", "unknown type bit 30", V, EINVAL,
            "reset.c kvm_arm_setup_stage2 (type & ~IPA_SIZE_MASK)", |c| c.create_vm(1 << 30)),
        row(d, "KVM_CREATE_VM", "IPA size 31 (< 32)", V, EINVAL,
            "reset.c kvm_arm_setup_stage2 (phys_shift < ARM64_MIN_PARANGE_BITS)", |c| {
            c.create_vm(31)
        }),
        row(d, "KVM_CREATE_VM", "IPA size 1", V, EINVAL,
            "reset.c kvm_arm_setup_stage2 (phys_shift < ARM64_MIN_PARANGE_BITS)", |c| {
            c.create_vm(1)
        }),
        row(d, "KVM_CREATE_VM", "IPA size past the limit (45 > 44)", V, EINVAL,
            "reset.c kvm_arm_setup_stage2 (phys_shift > kvm_ipa_limit); api.rst 4.2", |c| {
            c.create_vm(45)
        }),
    }
}

/// The VM fd.
fn vm_rows() -> Vec<Row> {
    use Setup::*;
    let d = "VM";
    let region = "KVM_SET_USER_MEMORY_REGION";
    let setmr = "kvm_main.c __kvm_set_memory_region";
    let routing_src = "kvm_main.c kvm_vm_ioctl(KVM_SET_GSI_ROUTING)";
    rows! {
        // KVM_CREATE_VCPU
        row(d, "KVM_CREATE_VCPU", "id u64::MAX", Vm, EINVAL,
            "kvm_main.c kvm_vm_ioctl_create_vcpu (id >= KVM_MAX_VCPU_IDS)", |c| {
            c.create_vcpu(u64::MAX)
        }),
        row(d, "KVM_CREATE_VCPU", "id taken", Vcpu, EEXIST,
            "kvm_main.c kvm_vm_ioctl_create_vcpu (kvm_get_vcpu_by_id)", |c| c.create_vcpu(0)),
        row(d, "KVM_CREATE_VCPU", "its redistributor would overlap the distributor", Vm, EINVAL,
            "vgic-init.c kvm_vgic_vcpu_init -> vgic-mmio-v3.c vgic_register_redist_iodev", |c| {
            c.create_device(device::TYPE_ARM_VGIC_V3, 0)?;
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_DIST, GICD)?;
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST_REGION, 2 << 52 | GICD)?;
            c.create_vcpu(0)
        }),
        row(d, "KVM_CREATE_VCPU", "overlapping layout, id taken (EINVAL first)", Gic, EINVAL,
            "kvm_main.c kvm_vm_ioctl_create_vcpu (kvm_arch_vcpu_create before EEXIST)", |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_DIST, GICR + 0x2_0000)?;
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST, GICR)?;
            c.add_vcpu(1);
            c.create_vcpu(0)
        }),
        row(d, "KVM_CREATE_VCPU", "after the vGIC's init", GicReady, EBUSY,
            "arm.c kvm_arch_vcpu_precreate (vgic_initialized)", |c| c.create_vcpu(1)),
        // KVM_SET_USER_MEMORY_REGION
        row(d, region, "unknown flag bit 2", Vm, EINVAL, "kvm_main.c check_memory_region_flags", |c| {
            c.region(0, 4, RAM, 0x1000, UADDR)
        }),
        row(d, region, "unknown flag bit 31", Vm, EINVAL, "kvm_main.c check_memory_region_flags", |c| {
            c.region(0, 1 << 31, RAM, 0x1000, UADDR)
        }),
        row(d, region, "size not page aligned", Vm, EINVAL, setmr, |c| {
            c.region(0, 0, RAM, 0x1800, UADDR)
        }),
        row(d, region, "guest address not page aligned", Vm, EINVAL, setmr, |c| {
            c.region(0, 0, RAM + 0x800, 0x1000, UADDR)
        }),
        row(d, region, "user address not page aligned", Vm, EINVAL, setmr, |c| {
            c.region(0, 0, RAM, 0x1000, UADDR + 8)
        }),
        row(d, region, "user range past user space", Vm, EINVAL,
            "kvm_main.c __kvm_set_memory_region (access_ok)", |c| {
            c.region(0, 0, RAM, 0x2000, (1 << 52) - 0x1000)
        }),
        row(d, region, "user range past a 48-bit user space", Vm, EINVAL,
            "kvm_main.c __kvm_set_memory_region (access_ok: TASK_SIZE_MAX)", |c| {
            c.region(0, 0, RAM, 0x2000, (1 << 48) - 0x1000)
        }),
        row(d, region, "delete with a user address past user space", Slot, EINVAL,
            "kvm_main.c __kvm_set_memory_region (access_ok before the delete)", |c| {
            c.region(0, 0, RAM, 0, (1 << 48) + 0x1000)
        }),
        row(d, region, "user range wraps", Vm, EINVAL,
            "kvm_main.c __kvm_set_memory_region (access_ok)", |c| {
            c.region(0, 0, RAM, 0x2000, u64::MAX - 0xFFF)
        }),
        row(d, region, "address space 1", Vm, EINVAL,
            "kvm_main.c __kvm_set_memory_region (as_id >= KVM_ADDRESS_SPACE_NUM)", |c| {
            c.region(1 << 16, 0, RAM, 0x1000, UADDR)
        }),
        row(d, region, "guest range wraps", Vm, EINVAL, setmr, |c| {
            c.region(0, 0, u64::MAX - 0xFFF, 0x2000, UADDR)
        }),
        row(d, region, "delete an unused slot", Vm, EINVAL,
            "kvm_main.c __kvm_set_memory_region (!old || !old->npages)", |c| {
            c.region(3, 0, RAM, 0, UADDR)
        }),
        row(d, region, "slot id 0x7fff", Vm, EINVAL,
            "kvm_main.c __kvm_set_memory_region (id >= KVM_MEM_SLOTS_NUM)", |c| {
            c.region(0x7FFF, 0, RAM, 0x1000, UADDR)
        }),
        row(d, region, "change a slot's user address", Slot, EINVAL,
            "kvm_main.c __kvm_set_memory_region (userspace_addr != old)", |c| {
            c.region(0, 0, RAM, 0x10_0000, UADDR + 0x1000)
        }),
        row(d, region, "change a slot's size", Slot, EINVAL,
            "kvm_main.c __kvm_set_memory_region (npages != old->npages)", |c| {
            c.region(0, 0, RAM, 0x20_0000, UADDR)
        }),
        row(d, region, "toggle a slot's READONLY", Slot, EINVAL,
            "kvm_main.c __kvm_set_memory_region ((flags ^ old) & KVM_MEM_READONLY)", |c| {
            c.region(0, u64::from(mem::READONLY), RAM, 0x10_0000, UADDR)
        }),
        row(d, region, "new slot overlaps another", Slot, EEXIST,
            "kvm_main.c __kvm_set_memory_region (kvm_check_memslot_overlap)", |c| {
            c.region(1, 0, RAM + 0x8_0000, 0x10_0000, UADDR + 0x100_0000)
        }),
        row(d, region, "move onto another slot", Slot, EEXIST,
            "kvm_main.c __kvm_set_memory_region (KVM_MR_MOVE overlap)", |c| {
            c.region(1, 0, RAM + 0x100_0000, 0x1000, UADDR + 0x100_0000)?;
            c.region(1, 0, RAM, 0x1000, UADDR + 0x100_0000)
        }),
        row(d, region, "past the IPA space", Vm, EFAULT,
            "arm64 mmu.c kvm_arch_prepare_memory_region (> kvm_phys_size)", |c| {
            c.region(0, 0, (1 << 40) - 0x1000, 0x2000, UADDR)
        }),
        row(d, region, "unreadable structure", Vm, EFAULT, "kvm_main.c kvm_vm_ioctl (copy_from_user)", |c| {
            c.vm_at(uapi::SET_USER_MEMORY_REGION, BAD)
        }),
        row(d, region, "same slot again", Slot, 0,
            "kvm_main.c __kvm_set_memory_region (nothing to change)", |c| {
            c.region(0, 0, RAM, 0x10_0000, UADDR)
        }),
        // KVM_GET_DIRTY_LOG
        row(d, "KVM_GET_DIRTY_LOG", "address space 1", Logging, EINVAL,
            "kvm_main.c kvm_get_dirty_log_protect (as_id)", |c| c.get_log(1 << 16, BITMAP)),
        row(d, "KVM_GET_DIRTY_LOG", "slot id 0x7fff", Logging, EINVAL,
            "kvm_main.c kvm_get_dirty_log_protect (id >= KVM_USER_MEM_SLOTS)", |c| {
            c.get_log(0x7FFF, BITMAP)
        }),
        row(d, "KVM_GET_DIRTY_LOG", "unused slot 32", Logging, ENOENT,
            "kvm_main.c kvm_get_dirty_log_protect (!memslot)", |c| c.get_log(32, BITMAP)),
        row(d, "KVM_GET_DIRTY_LOG", "unused slot 1", Logging, ENOENT,
            "kvm_main.c kvm_get_dirty_log_protect (!memslot)", |c| c.get_log(1, BITMAP)),
        row(d, "KVM_GET_DIRTY_LOG", "slot without logging", Slot, ENOENT,
            "kvm_main.c kvm_get_dirty_log_protect (!memslot->dirty_bitmap)", |c| {
            c.get_log(0, BITMAP)
        }),
        row(d, "KVM_GET_DIRTY_LOG", "a protected VM's slot", ProtectedSlot, ENOENT,
            "kvm_main.c kvm_get_dirty_log_protect (!memslot->dirty_bitmap)", |c| {
            c.get_log(0, BITMAP)
        }),
        row(d, "KVM_GET_DIRTY_LOG", "unwritable bitmap", Logging, EFAULT,
            "kvm_main.c kvm_get_dirty_log_protect (copy_to_user)", |c| c.get_log(0, BAD)),
        row(d, "KVM_GET_DIRTY_LOG", "unreadable structure", Logging, EFAULT,
            "kvm_main.c kvm_vm_ioctl (copy_from_user)", |c| c.vm_at(uapi::GET_DIRTY_LOG, BAD)),
        // KVM_CLEAR_DIRTY_LOG
        row(d, "KVM_CLEAR_DIRTY_LOG", "address space 1", Logging, EINVAL,
            "kvm_main.c kvm_clear_dirty_log_protect (as_id)", |c| {
            c.clear_log(1 << 16, 0, 64, BITMAP)
        }),
        row(d, "KVM_CLEAR_DIRTY_LOG", "first_page not a multiple of 64", Logging, EINVAL,
            "kvm_main.c kvm_clear_dirty_log_protect (first_page & 63)", |c| {
            c.clear_log(0, 1, 64, BITMAP)
        }),
        row(d, "KVM_CLEAR_DIRTY_LOG", "first_page unaligned, unused slot", Vm, EINVAL,
            "kvm_main.c kvm_clear_dirty_log_protect (first_page before the slot)", |c| {
            c.clear_log(1, 1, 64, BITMAP)
        }),
        row(d, "KVM_CLEAR_DIRTY_LOG", "slot without logging", Slot, ENOENT,
            "kvm_main.c kvm_clear_dirty_log_protect (!memslot->dirty_bitmap)", |c| {
            c.clear_log(0, 0, 64, BITMAP)
        }),
        row(d, "KVM_CLEAR_DIRTY_LOG", "a protected VM's slot", ProtectedSlot, ENOENT,
            "kvm_main.c kvm_clear_dirty_log_protect (!memslot->dirty_bitmap)", |c| {
            c.clear_log(0, 0, 64, BITMAP)
        }),
        row(d, "KVM_CLEAR_DIRTY_LOG", "num_pages short of the end, not a multiple of 64", Logging,
            EINVAL, "kvm_main.c kvm_clear_dirty_log_protect (num_pages & 63)", |c| {
            c.clear_log(0, 0, 65, BITMAP)
        }),
        row(d, "KVM_CLEAR_DIRTY_LOG", "range past the slot's end", Logging, EINVAL,
            "kvm_main.c kvm_clear_dirty_log_protect (num_pages > npages - first_page)", |c| {
            c.clear_log(0, 192, 128, BITMAP)
        }),
        row(d, "KVM_CLEAR_DIRTY_LOG", "first_page past the slot", Logging, EINVAL,
            "kvm_main.c kvm_clear_dirty_log_protect (first_page > npages)", |c| {
            c.clear_log(0, 320, 0, BITMAP)
        }),
        row(d, "KVM_CLEAR_DIRTY_LOG", "unreadable bitmap", Logging, EFAULT,
            "kvm_main.c kvm_clear_dirty_log_protect (copy_from_user)", |c| {
            c.clear_log(0, 0, 64, BAD)
        }),
        row(d, "KVM_CLEAR_DIRTY_LOG", "unreadable structure", Logging, EFAULT,
            "kvm_main.c kvm_vm_ioctl (copy_from_user)", |c| c.vm_at(uapi::CLEAR_DIRTY_LOG, BAD)),
        // KVM_ENABLE_CAP
        row(d, "KVM_ENABLE_CAP", "flags != 0", Vm, EINVAL, "arm.c kvm_vm_ioctl_enable_cap (cap->flags)", |c| {
            c.enable_cap(cap::ARM_SYSTEM_SUSPEND, 1, 0)
        }),
        row(d, "KVM_ENABLE_CAP", "a capability not enabled per VM", Vm, EINVAL,
            "arm.c kvm_vm_ioctl_enable_cap (default)", |c| c.enable_cap(cap::IRQCHIP, 0, 0)),
        row(d, "KVM_ENABLE_CAP", "MANUAL_DIRTY_LOG_PROTECT2 INITIALLY_SET alone", Vm, EINVAL,
            "kvm_main.c kvm_vm_ioctl_enable_cap_generic (allowed_options)", |c| {
            c.enable_cap(cap::MANUAL_DIRTY_LOG_PROTECT2, 0, dirty_log::INITIALLY_SET)
        }),
        row(d, "KVM_ENABLE_CAP", "MANUAL_DIRTY_LOG_PROTECT2 unknown option", Vm, EINVAL,
            "kvm_main.c kvm_vm_ioctl_enable_cap_generic (allowed_options)", |c| {
            c.enable_cap(cap::MANUAL_DIRTY_LOG_PROTECT2, 0, dirty_log::MANUAL_PROTECT_ENABLE | 4)
        }),
        row(d, "KVM_ENABLE_CAP", "MANUAL_DIRTY_LOG_PROTECT2 flags != 0", Vm, EINVAL,
            "kvm_main.c kvm_vm_ioctl_enable_cap_generic (cap->flags)", |c| {
            c.enable_cap(cap::MANUAL_DIRTY_LOG_PROTECT2, 1, dirty_log::MANUAL_PROTECT_ENABLE)
        }),
        row(d, "KVM_ENABLE_CAP", "SYSTEM_SUSPEND with arguments", Vm, 0,
            "arm.c kvm_vm_ioctl_enable_cap (args not looked at)", |c| {
            c.enable_cap(cap::ARM_SYSTEM_SUSPEND, 0, 7)
        }),
        row(d, "KVM_ENABLE_CAP", "MANUAL_DIRTY_LOG_PROTECT2 off (0)", Vm, 0,
            "kvm_main.c kvm_vm_ioctl_enable_cap_generic", |c| {
            c.enable_cap(cap::MANUAL_DIRTY_LOG_PROTECT2, 0, 0)
        }),
        row(d, "KVM_ENABLE_CAP", "HALT_POLL flags != 0", Vm, EINVAL,
            "kvm_main.c kvm_vm_ioctl_enable_cap_generic (KVM_CAP_HALT_POLL: cap->flags)", |c| {
            c.enable_cap(CAP_HALT_POLL, 1, 1000)
        }),
        row(d, "KVM_ENABLE_CAP", "HALT_POLL wider than 32 bits", Vm, EINVAL,
            "kvm_main.c kvm_vm_ioctl_enable_cap_generic (args[0] != (unsigned int)args[0])", |c| {
            c.enable_cap(CAP_HALT_POLL, 0, 1 << 32)
        }),
        row(d, "KVM_ENABLE_CAP", "HALT_POLL 1000 ns", Vm, 0,
            "kvm_main.c kvm_vm_ioctl_enable_cap_generic (max_halt_poll_ns)", |c| {
            c.enable_cap(CAP_HALT_POLL, 0, 1000)
        }),
        row(d, "KVM_ENABLE_CAP", "unreadable structure", Vm, EFAULT,
            "kvm_main.c kvm_vm_ioctl (copy_from_user)", |c| c.vm_at(uapi::ENABLE_CAP, BAD)),
        // KVM_IRQ_LINE
        row(d, "KVM_IRQ_LINE", "PPI without a vGIC", Vm, ENXIO,
            "arm.c kvm_vm_ioctl_irq_line (!irqchip_in_kernel)", |c| {
            c.irq_line(irq_line::TYPE_PPI, 0, 20)
        }),
        row(d, "KVM_IRQ_LINE", "SPI without a vGIC", Vm, ENXIO,
            "arm.c kvm_vm_ioctl_irq_line (!irqchip_in_kernel)", |c| {
            c.irq_line(irq_line::TYPE_SPI, 0, 40)
        }),
        row(d, "KVM_IRQ_LINE", "CPU line with a vGIC", GicReady, ENXIO,
            "arm.c kvm_vm_ioctl_irq_line (KVM_ARM_IRQ_TYPE_CPU, irqchip_in_kernel)", |c| {
            c.irq_line(irq_line::TYPE_CPU, 0, 0)
        }),
        row(d, "KVM_IRQ_LINE", "unknown type 3", GicReady, EINVAL, "arm.c kvm_vm_ioctl_irq_line", |c| {
            c.irq_line(3, 0, 40)
        }),
        row(d, "KVM_IRQ_LINE", "PPI of a vCPU index past the vCPUs", GicReady, EINVAL,
            "arm.c kvm_vm_ioctl_irq_line (vcpu_idx >= nrcpus)", |c| {
            c.irq_line(irq_line::TYPE_PPI, 5, 20)
        }),
        row(d, "KVM_IRQ_LINE", "PPI number 15 (an SGI)", GicReady, EINVAL,
            "arm.c kvm_vm_ioctl_irq_line (irq_num < VGIC_NR_SGIS)", |c| {
            c.irq_line(irq_line::TYPE_PPI, 0, 15)
        }),
        row(d, "KVM_IRQ_LINE", "PPI number 32", GicReady, EINVAL,
            "arm.c kvm_vm_ioctl_irq_line (irq_num >= VGIC_NR_PRIVATE_IRQS)", |c| {
            c.irq_line(irq_line::TYPE_PPI, 0, 32)
        }),
        row(d, "KVM_IRQ_LINE", "SPI number 31", GicReady, EINVAL,
            "arm.c kvm_vm_ioctl_irq_line (irq_num < VGIC_NR_PRIVATE_IRQS)", |c| {
            c.irq_line(irq_line::TYPE_SPI, 0, 31)
        }),
        row(d, "KVM_IRQ_LINE", "SPI before the vGIC's init", Gic, EBUSY,
            "vgic.c kvm_vgic_inject_irq (vgic_lazy_init: GICv3 not initialised)", |c| {
            c.irq_line(irq_line::TYPE_SPI, 0, 40)
        }),
        row(d, "KVM_IRQ_LINE", "SPI past the vGIC's interrupts", GicReady, EINVAL,
            "vgic.c kvm_vgic_inject_irq (vgic_get_irq NULL)", |c| {
            c.irq_line(irq_line::TYPE_SPI, 0, 1000)
        }),
        row(d, "KVM_IRQ_LINE", "unreadable structure", GicReady, EFAULT,
            "kvm_main.c kvm_vm_ioctl (copy_from_user)", |c| c.vm_at(uapi::IRQ_LINE, BAD)),
        // KVM_CREATE_DEVICE
        row(d, "KVM_CREATE_DEVICE", "unknown type 0xff", Vm, ENODEV,
            "kvm_main.c kvm_ioctl_create_device (type >= ARRAY_SIZE)", |c| c.create_device(0xFF, 0)),
        row(d, "KVM_CREATE_DEVICE", "unknown type 0xff, TEST", Vm, ENODEV,
            "kvm_main.c kvm_ioctl_create_device (before the test)", |c| {
            c.create_device(0xFF, device::CREATE_TEST)
        }),
        row(d, "KVM_CREATE_DEVICE", "GICv2 on a GICv3 without compatibility", Vm, ENODEV,
            "kvm_main.c kvm_ioctl_create_device (ops NULL: vgic-v3.c registers no v2 ops)", |c| {
            c.create_device(device::TYPE_ARM_VGIC_V2, 0)
        }),
        row(d, "KVM_CREATE_DEVICE", "a second GICv3", Gic, EEXIST,
            "vgic-init.c kvm_vgic_create (irqchip_in_kernel)", |c| {
            c.create_device(device::TYPE_ARM_VGIC_V3, 0)
        }),
        row(d, "KVM_CREATE_DEVICE", "a second GICv3 after a run", GicReady, EEXIST,
            "vgic-init.c kvm_vgic_create (EEXIST before vcpu_has_run_once)", |c| {
            vm::prepare_run(&mut c.f, &c.vm)?;
            c.create_device(device::TYPE_ARM_VGIC_V3, 0)
        }),
        row(d, "KVM_CREATE_DEVICE", "a first GICv3 after a run", Ran, EBUSY,
            "vgic-init.c kvm_vgic_create (vcpu_has_run_once)", |c| {
            c.create_device(device::TYPE_ARM_VGIC_V3, 0)
        }),
        row(d, "KVM_CREATE_DEVICE", "unknown flags are ignored", Vm, 0,
            "kvm_main.c kvm_ioctl_create_device (only KVM_CREATE_DEVICE_TEST)", |c| {
            c.create_device(device::TYPE_ARM_VGIC_V3, 0x10)
        }),
        // KVM_CREATE_IRQCHIP, KVM_ARM_PREFERRED_TARGET, unknown
        row(d, "KVM_CREATE_IRQCHIP", "a GICv3 host without GICv2 emulation", Vm, ENODEV,
            "arm.c kvm_arch_vm_ioctl -> vgic-init.c kvm_vgic_create (can_emulate_gicv2)", |c| {
            c.vm_at(uapi::CREATE_IRQCHIP, 0)
        }),
        row(d, "KVM_ARM_PREFERRED_TARGET", "unwritable structure", Vm, EFAULT,
            "arm.c kvm_arch_vm_ioctl (copy_to_user)", |c| c.vm_at(uapi::ARM_PREFERRED_TARGET, BAD)),
        row(d, "unknown ioctl", "nr 0x7f", Vm, EINVAL, "arm.c kvm_arch_vm_ioctl (default)", |c| {
            c.vm_at(0xAE7F, 0)
        }),
        // KVM_SET_GSI_ROUTING
        row(d, "KVM_SET_GSI_ROUTING", "nr > KVM_MAX_IRQ_ROUTES", GicReady, EINVAL, routing_src, |c| {
            c.routing(4097, 0, &[])
        }),
        row(d, "KVM_SET_GSI_ROUTING", "flags != 0", GicReady, EINVAL, routing_src, |c| {
            c.routing(0, 1, &[])
        }),
        row(d, "KVM_SET_GSI_ROUTING", "gsi >= KVM_MAX_IRQ_ROUTES", GicReady, EINVAL,
            "irqchip.c kvm_set_irq_routing (ue->gsi)", |c| {
            c.routing(1, 0, &[(4096, routing::IRQCHIP, 0, 0, 0)])
        }),
        row(d, "KVM_SET_GSI_ROUTING", "irqchip entry with flags", GicReady, EINVAL,
            "irqchip.c kvm_set_irq_routing (ue->flags)", |c| {
            c.routing(1, 0, &[(0, routing::IRQCHIP, 1, 0, 0)])
        }),
        row(d, "KVM_SET_GSI_ROUTING", "irqchip 1", GicReady, EINVAL,
            "vgic-irqfd.c kvm_set_routing_entry (irqchip >= KVM_NR_IRQCHIPS)", |c| {
            c.routing(1, 0, &[(0, routing::IRQCHIP, 0, 1, 0)])
        }),
        row(d, "KVM_SET_GSI_ROUTING", "pin >= KVM_IRQCHIP_NUM_PINS", GicReady, EINVAL,
            "vgic-irqfd.c kvm_set_routing_entry (pin)", |c| {
            c.routing(1, 0, &[(0, routing::IRQCHIP, 0, 0, routing::NUM_PINS)])
        }),
        row(d, "KVM_SET_GSI_ROUTING", "unknown entry type", GicReady, EINVAL,
            "vgic-irqfd.c kvm_set_routing_entry (default)", |c| c.routing(1, 0, &[(0, 3, 0, 0, 0)])),
        row(d, "KVM_SET_GSI_ROUTING", "MSI entry with unknown flags", GicReady, EINVAL,
            "irqchip.c kvm_set_irq_routing (ue->flags & ~KVM_MSI_VALID_DEVID)", |c| {
            c.routing(1, 0, &[(0, routing::MSI, 2, 0, 0)])
        }),
        row(d, "KVM_SET_GSI_ROUTING", "one GSI to irqchip 0 twice", GicReady, EINVAL,
            "irqchip.c setup_routing_entry", |c| {
            c.routing(2, 0, &[(0, routing::IRQCHIP, 0, 0, 1), (0, routing::IRQCHIP, 0, 0, 2)])
        }),
        row(d, "KVM_SET_GSI_ROUTING", "no entries", GicReady, 0,
            "irqchip.c kvm_set_irq_routing (an empty table)", |c| c.routing(0, 0, &[])),
        row(d, "KVM_SET_GSI_ROUTING", "before a vGIC exists", Vm, 0,
            "kvm_main.c kvm_arch_can_set_irq_routing (true on arm64)", |c| {
            c.routing(1, 0, &[(0, routing::IRQCHIP, 0, 0, 0)])
        }),
        row(d, "KVM_SET_GSI_ROUTING", "unreadable header", GicReady, EFAULT, routing_src, |c| {
            c.vm_at(uapi::SET_GSI_ROUTING, BAD)
        }),
        // KVM_IOEVENTFD
        row(d, "KVM_IOEVENTFD", "len 3", Vm, EINVAL, "eventfd.c kvm_assign_ioeventfd (len)", |c| {
            c.ioeventfd(0x0A00_0000, 3, EVENTFD, 0)
        }),
        row(d, "KVM_IOEVENTFD", "addr + len wraps", Vm, EINVAL,
            "eventfd.c kvm_assign_ioeventfd (range overflow)", |c| {
            c.ioeventfd(u64::MAX - 1, 4, EVENTFD, 0)
        }),
        row(d, "KVM_IOEVENTFD", "unknown flag bit 5", Vm, EINVAL,
            "eventfd.c kvm_assign_ioeventfd (KVM_IOEVENTFD_VALID_FLAG_MASK)", |c| {
            c.ioeventfd(0x0A00_0000, 4, EVENTFD, 1 << 5)
        }),
        row(d, "KVM_IOEVENTFD", "len 0 with DATAMATCH", Vm, EINVAL,
            "eventfd.c kvm_assign_ioeventfd (!len && DATAMATCH)", |c| {
            c.ioeventfd(0x0A00_0000, 0, EVENTFD, io::DATAMATCH)
        }),
        row(d, "KVM_IOEVENTFD", "fd not open", Vm, EBADF,
            "eventfd.c kvm_assign_ioeventfd_idx (eventfd_ctx_fdget)", |c| {
            c.ioeventfd(0x0A00_0000, 4, 77, 0)
        }),
        row(d, "KVM_IOEVENTFD", "fd not an eventfd", Vm, EINVAL,
            "eventfd.c kvm_assign_ioeventfd_idx (eventfd_ctx_fdget)", |c| {
            c.ioeventfd(0x0A00_0000, 4, NOT_EVENTFD, 0)
        }),
        row(d, "KVM_IOEVENTFD", "the same again", Vm, EEXIST,
            "eventfd.c kvm_assign_ioeventfd_idx (ioeventfd_check_collision)", |c| {
            c.ioeventfd(0x0A00_0000, 4, EVENTFD, 0)?;
            c.ioeventfd(0x0A00_0000, 4, EVENTFD, 0)
        }),
        row(d, "KVM_IOEVENTFD", "deassign of none", Vm, ENOENT,
            "eventfd.c kvm_deassign_ioeventfd_idx", |c| {
            c.ioeventfd(0x0A00_0000, 4, EVENTFD, io::DEASSIGN)
        }),
        row(d, "KVM_IOEVENTFD", "deassign with a bad fd", Vm, EBADF,
            "eventfd.c kvm_deassign_ioeventfd_idx (eventfd_ctx_fdget)", |c| {
            c.ioeventfd(0x0A00_0000, 4, 77, io::DEASSIGN)
        }),
        row(d, "KVM_IOEVENTFD", "on the PIO bus", Vm, 0,
            "eventfd.c ioeventfd_bus_from_flags (KVM_PIO_BUS exists on arm64)", |c| {
            c.ioeventfd(0x1000, 2, EVENTFD, io::PIO)
        }),
        row(d, "KVM_IOEVENTFD", "on the virtio-ccw bus", Vm, 0,
            "eventfd.c ioeventfd_bus_from_flags (KVM_VIRTIO_CCW_NOTIFY_BUS)", |c| {
            c.ioeventfd(0x1000, 8, EVENTFD, io::VIRTIO_CCW_NOTIFY)
        }),
        row(d, "KVM_IOEVENTFD", "len 0 (any length)", Vm, 0,
            "eventfd.c kvm_assign_ioeventfd (len 0 without DATAMATCH)", |c| {
            c.ioeventfd(0x0A00_0000, 0, EVENTFD, 0)
        }),
        row(d, "KVM_IOEVENTFD", "unreadable structure", Vm, EFAULT,
            "kvm_main.c kvm_vm_ioctl (copy_from_user)", |c| c.vm_at(uapi::IOEVENTFD, BAD)),
        // KVM_IRQFD
        row(d, "KVM_IRQFD", "unknown flag", GicReady, EINVAL, "eventfd.c kvm_irqfd (flags)", |c| {
            c.irqfd(EVENTFD, 0, 1 << 2, 0)
        }),
        row(d, "KVM_IRQFD", "before the vGIC's init", Gic, EAGAIN,
            "eventfd.c kvm_irqfd_assign (kvm_arch_intc_initialized)", |c| {
            c.irqfd(EVENTFD, 0, 0, 0)
        }),
        row(d, "KVM_IRQFD", "without a vGIC", Init, EAGAIN,
            "eventfd.c kvm_irqfd_assign (kvm_arch_intc_initialized)", |c| {
            c.irqfd(EVENTFD, 0, 0, 0)
        }),
        row(d, "KVM_IRQFD", "fd not open", GicReady, EBADF, "eventfd.c kvm_irqfd_assign (fdget)", |c| {
            c.irqfd(77, 0, 0, 0)
        }),
        row(d, "KVM_IRQFD", "fd not an eventfd", GicReady, EINVAL,
            "eventfd.c kvm_irqfd_assign (eventfd_ctx_fileget)", |c| c.irqfd(NOT_EVENTFD, 0, 0, 0)),
        row(d, "KVM_IRQFD", "eventfd already used", GicReady, EBUSY,
            "eventfd.c kvm_irqfd_assign (used for another irq)", |c| {
            c.irqfd(EVENTFD, 0, 0, 0)?;
            c.irqfd(EVENTFD, 1, 0, 0)
        }),
        row(d, "KVM_IRQFD", "RESAMPLE with a bad resamplefd", GicReady, EBADF,
            "eventfd.c kvm_irqfd_assign (eventfd_ctx_fdget(resamplefd))", |c| {
            c.irqfd(EVENTFD, 0, irq::RESAMPLE, 77)
        }),
        row(d, "KVM_IRQFD", "deassign of none", GicReady, 0,
            "eventfd.c kvm_irqfd_deassign (always 0)", |c| c.irqfd(EVENTFD, 0, irq::DEASSIGN, 0)),
        row(d, "KVM_IRQFD", "a GSI no route names", GicReady, 0,
            "eventfd.c kvm_irqfd_assign (no check of the GSI; irqfd_update finds no route)", |c| {
            c.irqfd(EVENTFD, 5000, 0, 0)
        }),
        row(d, "KVM_IRQFD", "unreadable structure", GicReady, EFAULT,
            "kvm_main.c kvm_vm_ioctl (copy_from_user)", |c| c.vm_at(uapi::IRQFD, BAD)),
        // KVM_SIGNAL_MSI
        row(d, "KVM_SIGNAL_MSI", "without a vGIC", Vm, EINVAL,
            "irqchip.c kvm_send_userspace_msi (!irqchip_in_kernel)", |c| {
            c.msi(ITS_BASE + 0x40, 0, 1, 0)
        }),
        row(d, "KVM_SIGNAL_MSI", "unknown flags", ItsPlaced, EINVAL,
            "irqchip.c kvm_send_userspace_msi (flags & ~KVM_MSI_VALID_DEVID)", |c| {
            c.msi(ITS_BASE + 0x40, 0, 3, 0)
        }),
        row(d, "KVM_SIGNAL_MSI", "a vGIC without an ITS", GicReady, ENODEV,
            "vgic-irqfd.c kvm_set_msi (!vgic_has_its)", |c| c.msi(ITS_BASE + 0x40, 0, 1, 0)),
        row(d, "KVM_SIGNAL_MSI", "no device id", ItsPlaced, EINVAL,
            "vgic-its.c vgic_msi_to_its (!KVM_MSI_VALID_DEVID)", |c| c.msi(ITS_BASE + 0x40, 0, 0, 0)),
        row(d, "KVM_SIGNAL_MSI", "doorbell outside the ITS", ItsPlaced, EINVAL,
            "vgic-its.c vgic_msi_to_its (no ITS iodev there)", |c| c.msi(0x0900_0000, 0, 1, 0)),
        row(d, "KVM_SIGNAL_MSI", "ITS not placed", Its, EINVAL,
            "vgic-its.c vgic_msi_to_its (no iodev registered)", |c| c.msi(ITS_BASE + 0x40, 0, 1, 0)),
        row(d, "KVM_SIGNAL_MSI", "ITS not enabled", ItsPlaced, EBUSY,
            "vgic-its.c vgic_its_resolve_lpi (!its->enabled)", |c| c.msi(ITS_BASE + 0x40, 0, 1, 0)),
        row(d, "KVM_SIGNAL_MSI", "unreadable structure", ItsPlaced, EFAULT,
            "kvm_main.c kvm_vm_ioctl (copy_from_user)", |c| c.vm_at(uapi::SIGNAL_MSI, BAD)),
    }
}

/// The vCPU fd.
fn vcpu_rows() -> Vec<Row> {
    use Setup::*;
    let d = "vCPU";
    let one = "guest.c kvm_arm_get_reg";
    let set_one = "guest.c kvm_arm_set_reg";
    rows! {
        row(d, "unknown ioctl", "nr 0x7f", Init, EINVAL, "arm.c kvm_arch_vcpu_ioctl (default)", |c| {
            c.vcpu_at(0xAE7F, 0)
        }),
        row(d, "KVM_ENABLE_CAP", "on a vCPU", Init, EINVAL, "arm.c kvm_arch_vcpu_ioctl (default)", |c| {
            c.vcpu(uapi::ENABLE_CAP, &[cap::ARM_SYSTEM_SUSPEND])
        }),
        row(d, "KVM_ARM_VCPU_FINALIZE", "before KVM_ARM_VCPU_INIT", Vcpu, ENOEXEC,
            "arm.c kvm_arch_vcpu_ioctl (KVM_ARM_VCPU_FINALIZE, !initialized)", |c| {
            c.vcpu(vcpu::ARM_VCPU_FINALIZE, &[4])
        }),
        row(d, "KVM_ARM_VCPU_FINALIZE", "SVE without SVE", Init, EINVAL,
            "reset.c kvm_arm_vcpu_finalize (!vcpu_has_sve)", |c| {
            c.vcpu(vcpu::ARM_VCPU_FINALIZE, &[4])
        }),
        row(d, "KVM_ARM_VCPU_FINALIZE", "unreadable feature", Init, EFAULT,
            "arm.c kvm_arch_vcpu_ioctl (get_user)", |c| c.vcpu_at(vcpu::ARM_VCPU_FINALIZE, BAD)),
        // KVM_RUN
        row(d, "KVM_RUN", "arg != 0", Init, EINVAL, "kvm_main.c kvm_vcpu_ioctl (KVM_RUN, arg)", |c| {
            c.vcpu_at(uapi::RUN, 1)
        }),
        row(d, "KVM_RUN", "before KVM_ARM_VCPU_INIT", Vcpu, ENOEXEC,
            "arm.c kvm_arch_vcpu_run_pid_change (!kvm_vcpu_initialized)", |c| c.run()),
        row(d, "KVM_RUN", "vGIC created, nothing placed", Gic, ENXIO,
            "vgic-v3.c vgic_v3_map_resources (redistributor base not set)", |c| c.run()),
        row(d, "KVM_RUN", "vGIC created, immediate_exit set", Gic, ENXIO,
            "arm.c kvm_arch_vcpu_run_pid_change (before immediate_exit)", |c| {
            c.f.run[krun::IMMEDIATE_EXIT] = 1;
            c.run()
        }),
        row(d, "KVM_RUN", "vGIC placed, not initialised", Gic, EBUSY,
            "vgic-v3.c vgic_v3_map_resources (!vgic_initialized)", |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_DIST, GICD)?;
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST, GICR)?;
            c.run()
        }),
        row(d, "KVM_RUN", "vGIC initialised, no redistributors", Gic, ENXIO,
            "vgic-v3.c vgic_v3_map_resources (redistributor base not set)", |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_DIST, GICD)?;
            c.gic(0, va::GRP_CTRL, va::CTRL_INIT, 0)?;
            c.run()
        }),
        row(d, "KVM_RUN", "vGIC initialised, no distributor", Gic, ENXIO,
            "vgic-v3.c vgic_v3_map_resources (distributor base not set)", |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST, GICR)?;
            c.gic(0, va::GRP_CTRL, va::CTRL_INIT, 0)?;
            c.run()
        }),
        row(d, "KVM_RUN", "later vCPUs' redistributors over the distributor", Gic, EINVAL,
            "vgic-v3.c vgic_v3_map_resources (vgic_v3_check_base); vgic_init selftest", |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_DIST, GICR + 0x2_0000)?;
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST, GICR)?;
            c.add_vcpu(1);
            c.gic(0, va::GRP_CTRL, va::CTRL_INIT, 0)?;
            c.run()
        }),
        row(d, "KVM_RUN", "later vCPUs' redistributors past the IPA space", Gic, EINVAL,
            "vgic-v3.c vgic_v3_check_base (vgic_check_iorange); vgic_init selftest", |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_DIST, GICD)?;
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST, (1 << 40) - 0x2_0000)?;
            c.add_vcpu(1);
            c.gic(0, va::GRP_CTRL, va::CTRL_INIT, 0)?;
            c.run()
        }),
        row(d, "KVM_RUN", "a region of 1 redistributor for 2 vCPUs", Gic, ENXIO,
            "vgic-v3.c vgic_v3_map_resources (vCPU 1's redistributor base not set)", |c| {
            c.add_vcpu(1);
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_DIST, GICD)?;
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST_REGION, 1 << 52 | GICR)?;
            c.gic(0, va::GRP_CTRL, va::CTRL_INIT, 0)?;
            c.run()
        }),
        row(d, "KVM_RUN", "both timers on one PPI", GicReady, EINVAL,
            "arch_timer.c kvm_timer_enable (!timer_irqs_are_valid)", |c| {
            c.vcpu_attr(0, u64::from(timer::GROUP), timer::IRQ_VTIMER, 30)?;
            c.run()
        }),
        row(d, "KVM_RUN", "immediate_exit", Init, EINTR,
            "arm.c kvm_arch_vcpu_ioctl_run (run->immediate_exit); api.rst 5 immediate_exit", |c| {
            c.f.run[krun::IMMEDIATE_EXIT] = 1;
            c.run()
        }),
        // KVM_ARM_VCPU_INIT
        row(d, "KVM_ARM_VCPU_INIT", "another target", Vcpu, EINVAL,
            "arm.c kvm_vcpu_set_target (init->target != phys_target)", |c| {
            c.vcpu_init(TARGET + 1, [0; 7])
        }),
        row(d, "KVM_ARM_VCPU_INIT", "unknown feature bit 7", Vcpu, ENOENT,
            "arm.c kvm_vcpu_set_target (i >= KVM_VCPU_MAX_FEATURES)", |c| {
            c.vcpu_init(TARGET, [1 << 7, 0, 0, 0, 0, 0, 0])
        }),
        row(d, "KVM_ARM_VCPU_INIT", "a feature in features[6]", Vcpu, ENOENT,
            "arm.c kvm_vcpu_set_target (i >= KVM_VCPU_MAX_FEATURES)", |c| {
            c.vcpu_init(TARGET, [0, 0, 0, 0, 0, 0, 1])
        }),
        row(d, "KVM_ARM_VCPU_INIT", "again with other features", Init, EINVAL,
            "arm.c kvm_vcpu_set_target (secondary calls must be identical)", |c| {
            c.vcpu_init(TARGET, [0; 7])
        }),
        row(d, "KVM_ARM_VCPU_INIT", "again with other and unknown features", Init, EINVAL,
            "arm.c kvm_vcpu_set_target (known bits compared first)", |c| {
            c.vcpu_init(TARGET, [1 << 8, 0, 0, 0, 0, 0, 0])
        }),
        row(d, "KVM_ARM_VCPU_INIT", "again with the same and an unknown feature", Init, ENOENT,
            "arm.c kvm_vcpu_set_target", |c| {
            c.vcpu_init(TARGET, [1 << vcpu_init::PSCI_0_2 | 1 << 9, 0, 0, 0, 0, 0, 0])
        }),
        row(d, "KVM_ARM_VCPU_INIT", "unreadable structure", Vcpu, EFAULT,
            "arm.c kvm_arch_vcpu_ioctl (copy_from_user)", |c| c.vcpu_at(uapi::ARM_VCPU_INIT, BAD)),
        // KVM_GET_ONE_REG / KVM_SET_ONE_REG
        row(d, "KVM_GET_ONE_REG", "before KVM_ARM_VCPU_INIT", Vcpu, ENOEXEC,
            "arm.c kvm_arch_vcpu_ioctl (!kvm_vcpu_initialized)", |c| {
            c.one_reg(false, id::PSCI_VERSION, 0)
        }),
        row(d, "KVM_SET_ONE_REG", "before KVM_ARM_VCPU_INIT", Vcpu, ENOEXEC,
            "arm.c kvm_arch_vcpu_ioctl (!kvm_vcpu_initialized)", |c| {
            c.one_reg(true, id::PSCI_VERSION, 0)
        }),
        row(d, "KVM_GET_ONE_REG", "unreadable structure before init", Vcpu, ENOEXEC,
            "arm.c kvm_arch_vcpu_ioctl (ENOEXEC before copy_from_user)", |c| {
            c.vcpu_at(uapi::GET_ONE_REG, BAD)
        }),
        row(d, "KVM_GET_ONE_REG", "not an arm64 id", Init, EINVAL, "guest.c kvm_arm_get_reg (KVM_REG_ARM64)", |c| {
            c.one_reg(false, 0x4030_0000_0010_0000, 0)
        }),
        row(d, "KVM_GET_ONE_REG", "core offset past kvm_regs", Init, ENOENT,
            "guest.c get_core_reg (off >= nr_regs)", |c| {
            c.one_reg(false, id::core(id::SIZE_U64, 216), 0)
        }),
        row(d, "KVM_GET_ONE_REG", "core register of the wrong size", Init, EINVAL,
            "guest.c core_reg_addr (validate_core_offset)", |c| {
            c.one_reg(false, id::core(id::SIZE_U32, 0), 0)
        }),
        row(d, "KVM_GET_ONE_REG", "core offset inside a register", Init, EINVAL,
            "guest.c validate_core_offset", |c| c.one_reg(false, id::core(id::SIZE_U64, 1), 0)),
        row(d, "KVM_GET_ONE_REG", "unknown system register", Init, ENOENT,
            "sys_regs.c kvm_sys_reg_get_user (!r)", |c| {
            c.one_reg(false, id::sys(3, 0, 0, 0, 1), 0)
        }),
        row(d, "KVM_GET_ONE_REG", "system register with a 32-bit size", Init, ENOENT,
            "sys_regs.c index_to_params (size != U64)", |c| {
            let pfr0 = id::sys(3, 0, 0, 4, 0);
            c.one_reg(false, pfr0 & !id::SIZE_MASK | id::SIZE_U32, 0)
        }),
        row(d, "KVM_GET_ONE_REG", "unknown firmware register", Init, ENOENT,
            "hypercalls.c kvm_arm_get_fw_reg (default)", |c| {
            c.one_reg(false, id::PSCI_VERSION + 4, 0)
        }),
        row(d, "KVM_GET_ONE_REG", "feature bitmap 3", Init, ENOENT,
            "hypercalls.c kvm_arm_get_fw_reg (default)", |c| {
            c.one_reg(false, id::feature_bitmap(3), 0)
        }),
        row(d, "KVM_GET_ONE_REG", "an SVE register without SVE", Init, ENOENT,
            "guest.c sve_reg_to_region (!vcpu_has_sve)", |c| {
            c.one_reg(false, id::ARM64 | id::SIZE_U64 | 0x0015_0000, 0)
        }),
        row(d, "KVM_GET_ONE_REG", "unknown coprocessor 0x17", Init, ENOENT,
            "sys_regs.c kvm_arm_sys_reg_get_reg (not KVM_REG_ARM64_SYSREG)", |c| {
            c.one_reg(false, id::ARM64 | id::SIZE_U64 | 0x0017_0000, 0)
        }),
        row(d, "KVM_GET_ONE_REG", "unwritable value", Init, EFAULT, "guest.c get_core_reg (copy_to_user)", |c| {
            c.vcpu(uapi::GET_ONE_REG, &[id::core(id::SIZE_U64, 0), BAD])
        }),
        row(d, "KVM_GET_ONE_REG", "unreadable structure", Init, EFAULT,
            "arm.c kvm_arch_vcpu_ioctl (copy_from_user)", |c| c.vcpu_at(uapi::GET_ONE_REG, BAD)),
        row(d, "KVM_SET_ONE_REG", "unknown system register", Init, ENOENT,
            "sys_regs.c kvm_sys_reg_set_user (!r)", |c| {
            c.one_reg(true, id::sys(3, 0, 0, 0, 1), 0)
        }),
        row(d, "KVM_SET_ONE_REG", "core register of the wrong size", Init, EINVAL,
            "guest.c set_core_reg (core_reg_addr)", |c| {
            c.one_reg(true, id::core(id::SIZE_U32, 0), 0)
        }),
        row(d, "KVM_SET_ONE_REG", "PSTATE with EL2h", Init, EINVAL,
            "guest.c set_core_reg (PSTATE mode check)", |c| {
            c.one_reg(true, id::core(id::SIZE_U64, 66), 0x3C9)
        }),
        row(d, "KVM_SET_ONE_REG", "an ID register to another value", Init, EINVAL,
            "sys_regs.c set_id_reg (val != read_id_reg)", |c| {
            c.one_reg(true, id::sys(3, 0, 0, 4, 0), u64::MAX)
        }),
        row(d, "KVM_SET_ONE_REG", "PSCI 0.1 on a PSCI 0.2 vCPU", Init, EINVAL,
            "hypercalls.c kvm_arm_set_fw_reg (KVM_ARM_PSCI_0_1, wants_02)", |c| {
            c.one_reg(true, id::PSCI_VERSION, 0)
        }),
        row(d, "KVM_SET_ONE_REG", "PSCI version 2.0", Init, EINVAL,
            "hypercalls.c kvm_arm_set_fw_reg (unknown version)", |c| {
            c.one_reg(true, id::PSCI_VERSION, 2 << 16)
        }),
        row(d, "KVM_SET_ONE_REG", "PSCI_VERSION with a 32-bit size", Init, ENOENT,
            "hypercalls.c kvm_arm_set_fw_reg (KVM_REG_SIZE != 8)", |c| {
            c.one_reg(true, id::PSCI_VERSION & !id::SIZE_MASK | id::SIZE_U32, 1 << 16)
        }),
        row(d, "KVM_SET_ONE_REG", "PSCI 0.2 on a vCPU without PSCI_0_2", Vcpu, EINVAL,
            "hypercalls.c kvm_arm_set_fw_reg (KVM_ARM_PSCI_0_2, !wants_02)", |c| {
            c.vcpu_init(TARGET, [0; 7])?;
            c.one_reg(true, id::PSCI_VERSION, 2)
        }),
        row(d, "KVM_GET_DEVICE_ATTR", "timer PPI unwritable", Init, EFAULT,
            "arch_timer.c kvm_arm_timer_get_attr (put_user)", |c| {
            c.vcpu(uapi::GET_DEVICE_ATTR, &[u64::from(timer::GROUP) << 32, 0, BAD])
        }),
        row(d, "KVM_GET_DEVICE_ATTR", "PV time IPA unwritable", Init, EFAULT,
            "pvtime.c kvm_arm_pvtime_get_attr (put_user)", |c| {
            c.vcpu(uapi::GET_DEVICE_ATTR, &[u64::from(pvtime::GROUP) << 32, pvtime::IPA, BAD])
        }),
        row(d, "KVM_SET_ONE_REG", "feature bitmap bit not offered", Init, EINVAL,
            "hypercalls.c kvm_arm_set_fw_reg_bmap (val & ~fw_reg_features)", |c| {
            c.one_reg(true, id::feature_bitmap(0), 1 << 5)
        }),
        row(d, "KVM_SET_ONE_REG", "feature bitmap changed after a run", Ran, EBUSY,
            "hypercalls.c kvm_arm_set_fw_reg_bmap (HAS_RAN_ONCE)", |c| {
            c.one_reg(true, id::feature_bitmap(0), 0)
        }),
        row(d, "KVM_SET_ONE_REG", "unreadable value", Init, EFAULT, "guest.c set_core_reg (copy_from_user)", |c| {
            c.vcpu(uapi::SET_ONE_REG, &[id::core(id::SIZE_U64, 0), BAD])
        }),
        row(d, "KVM_SET_ONE_REG", "unreadable structure", Init, EFAULT,
            "arm.c kvm_arch_vcpu_ioctl (copy_from_user)", |c| c.vcpu_at(uapi::SET_ONE_REG, BAD)),
        // KVM_REG_ARM_DEMUX: the caches' CCSIDR_EL1 (`Ctx::caches`: L1 I+D, unified L2).
        row(d, "KVM_GET_ONE_REG", "CCSIDR of L1 data", Init, 0, "sys_regs.c demux_c15_get",
            |c| c.caches(uapi::GET_ONE_REG, id::ccsidr(0), VALUE)),
        row(d, "KVM_GET_ONE_REG", "CCSIDR of L2 instruction (unified L2)", Init, ENOENT,
            "sys_regs.c demux_c15_get (!is_valid_cache)", |c| c.caches(uapi::GET_ONE_REG, id::ccsidr(3), VALUE)),
        row(d, "KVM_GET_ONE_REG", "CCSIDR as 64 bits", Init, ENOENT, "sys_regs.c demux_c15_get (KVM_REG_SIZE != 4)",
            |c| c.caches(uapi::GET_ONE_REG, id::ccsidr(0) ^ id::SIZE_U32 ^ id::SIZE_U64, VALUE)),
        row(d, "KVM_GET_ONE_REG", "CCSIDR, unwritable value", Init, EFAULT, "sys_regs.c demux_c15_get (put_user)",
            |c| c.caches(uapi::GET_ONE_REG, id::ccsidr(2), BAD)),
        row(d, "KVM_SET_ONE_REG", "CCSIDR to another value", Init, EINVAL,
            "sys_regs.c demux_c15_set (newval != get_ccsidr)", |c| c.caches(uapi::SET_ONE_REG, id::ccsidr(1), VALUE)),
        row(d, "KVM_SET_ONE_REG", "CCSIDR of L3 (none), unreadable value", Init, ENOENT,
            "sys_regs.c demux_c15_set (is_valid_cache first)", |c| c.caches(uapi::SET_ONE_REG, id::ccsidr(4), BAD)),
        row(d, "KVM_SET_ONE_REG", "CCSIDR, unreadable value", Init, EFAULT, "sys_regs.c demux_c15_set (get_user)",
            |c| c.caches(uapi::SET_ONE_REG, id::ccsidr(0), BAD)),
        row(d, "KVM_GET_ONE_REG", "wrong sizes", Init, EINVAL, one, |c| {
            c.one_reg(false, id::core(id::SIZE_U128, 0), 0)
        }),
        row(d, "KVM_SET_ONE_REG", "vector register as 64 bits", Init, EINVAL, set_one, |c| {
            c.one_reg(true, id::core(id::SIZE_U64, 84), 0)
        }),
        // KVM_GET_REG_LIST
        row(d, "KVM_GET_REG_LIST", "before KVM_ARM_VCPU_INIT", Vcpu, ENOEXEC,
            "arm.c kvm_arch_vcpu_ioctl (!kvm_vcpu_initialized)", |c| c.vcpu(uapi::GET_REG_LIST, &[0])),
        row(d, "KVM_GET_REG_LIST", "n too small", Init, E2BIG, "arm.c kvm_arch_vcpu_ioctl (n < reg_list.n)", |c| {
            c.vcpu(uapi::GET_REG_LIST, &[1])
        }),
        row(d, "KVM_GET_REG_LIST", "unreadable structure", Init, EFAULT,
            "arm.c kvm_arch_vcpu_ioctl (copy_from_user)", |c| c.vcpu_at(uapi::GET_REG_LIST, BAD)),
        // KVM_{GET,SET}_MP_STATE
        row(d, "KVM_SET_MP_STATE", "unknown state 9", Init, EINVAL,
            "arm.c kvm_arch_vcpu_ioctl_set_mpstate (default)", |c| c.vcpu(uapi::SET_MP_STATE, &[9])),
        row(d, "KVM_SET_MP_STATE", "HALTED (x86's)", Init, EINVAL,
            "arm.c kvm_arch_vcpu_ioctl_set_mpstate (default)", |c| c.vcpu(uapi::SET_MP_STATE, &[3])),
        row(d, "KVM_SET_MP_STATE", "STOPPED before init", Vcpu, 0,
            "arm.c kvm_arch_vcpu_ioctl_set_mpstate (no init needed)", |c| {
            c.vcpu(uapi::SET_MP_STATE, &[u64::from(mp_state::STOPPED)])
        }),
        row(d, "KVM_SET_MP_STATE", "unreadable state", Init, EFAULT,
            "kvm_main.c kvm_vcpu_ioctl (copy_from_user)", |c| c.vcpu_at(uapi::SET_MP_STATE, BAD)),
        row(d, "KVM_GET_MP_STATE", "unwritable state", Init, EFAULT,
            "kvm_main.c kvm_vcpu_ioctl (copy_to_user)", |c| c.vcpu_at(uapi::GET_MP_STATE, BAD)),
        // KVM_SET_GUEST_DEBUG
        row(d, "KVM_SET_GUEST_DEBUG", "unknown control bit 2", Init, EINVAL,
            "guest.c kvm_arch_vcpu_ioctl_set_guest_debug (KVM_GUESTDBG_VALID_MASK)", |c| {
            c.vcpu(uapi::SET_GUEST_DEBUG, &[1 << 2])
        }),
        row(d, "KVM_SET_GUEST_DEBUG", "unknown control bit 31", Init, EINVAL,
            "guest.c kvm_arch_vcpu_ioctl_set_guest_debug (KVM_GUESTDBG_VALID_MASK)", |c| {
            c.vcpu(uapi::SET_GUEST_DEBUG, &[1 << 31])
        }),
        row(d, "KVM_SET_GUEST_DEBUG", "unreadable structure", Init, EFAULT,
            "kvm_main.c kvm_vcpu_ioctl (copy_from_user)", |c| c.vcpu_at(uapi::SET_GUEST_DEBUG, BAD)),
        row(d, "KVM_SET_GUEST_DEBUG", "ENABLE | USE_HW", Init, 0,
            "guest.c kvm_arch_vcpu_ioctl_set_guest_debug (external_debug_state)", |c| {
            c.vcpu(uapi::SET_GUEST_DEBUG, &[u64::from(uapi::guest_debug::ENABLE | uapi::guest_debug::USE_HW)])
        }),
        // KVM_SET_VCPU_EVENTS
        row(d, "KVM_SET_VCPU_EVENTS", "serror_has_esr without RAS", Init, EINVAL,
            "guest.c __kvm_arm_vcpu_set_events (ARM64_HAS_RAS_EXTN)", |c| {
            c.vcpu(uapi::SET_VCPU_EVENTS, &[0x0101, 0x11, 0, 0, 0, 0, 0, 0])
        }),
        row(d, "KVM_SET_VCPU_EVENTS", "serror_pending and ext_dabt_pending", Init, 0,
            "guest.c __kvm_arm_vcpu_set_events (kvm_inject_vabt, kvm_inject_dabt)", |c| {
            c.vcpu(uapi::SET_VCPU_EVENTS, &[0x01_0001, 0, 0, 0, 0, 0, 0, 0])
        }),
        // vCPU device attributes
        row(d, "KVM_SET_DEVICE_ATTR", "unknown group 9", Init, ENXIO,
            "guest.c kvm_arm_vcpu_arch_set_attr (default)", |c| c.vcpu_attr(0, 9, 0, 0)),
        row(d, "KVM_GET_DEVICE_ATTR", "unknown group 9", Init, ENXIO,
            "guest.c kvm_arm_vcpu_arch_get_attr (default)", |c| c.vcpu_attr(1, 9, 0, 0)),
        row(d, "KVM_HAS_DEVICE_ATTR", "unknown group 9", Init, ENXIO,
            "guest.c kvm_arm_vcpu_arch_has_attr (default)", |c| c.vcpu_attr(2, 9, 0, 0)),
        row(d, "KVM_SET_DEVICE_ATTR", "PMU_V3 without a PMU", Init, ENODEV,
            "pmu-emul.c kvm_arm_pmu_v3_set_attr (!kvm_vcpu_has_pmu)", |c| {
            c.vcpu_attr(0, PMU_GROUP, 0, 23)
        }),
        row(d, "KVM_SET_DEVICE_ATTR", "PMU_V3 INIT without a PMU", GicReady, ENODEV,
            "pmu-emul.c kvm_arm_pmu_v3_set_attr (!kvm_vcpu_has_pmu)", |c| {
            c.vcpu_attr(0, PMU_GROUP, 1, 0)
        }),
        row(d, "KVM_GET_DEVICE_ATTR", "PMU_V3_IRQ without a vGIC", Init, EINVAL,
            "pmu-emul.c kvm_arm_pmu_v3_get_attr (!irqchip_in_kernel)", |c| {
            c.vcpu_attr(1, PMU_GROUP, 0, 0)
        }),
        row(d, "KVM_GET_DEVICE_ATTR", "PMU_V3_IRQ without a PMU", GicReady, ENODEV,
            "pmu-emul.c kvm_arm_pmu_v3_get_attr (!kvm_vcpu_has_pmu)", |c| {
            c.vcpu_attr(1, PMU_GROUP, 0, 0)
        }),
        row(d, "KVM_GET_DEVICE_ATTR", "PMU_V3 INIT", GicReady, ENXIO,
            "pmu-emul.c kvm_arm_pmu_v3_get_attr (default)", |c| c.vcpu_attr(1, PMU_GROUP, 1, 0)),
        row(d, "KVM_HAS_DEVICE_ATTR", "PMU_V3_IRQ without a PMU", GicReady, ENXIO,
            "pmu-emul.c kvm_arm_pmu_v3_has_attr", |c| c.vcpu_attr(2, PMU_GROUP, 0, 0)),
        row(d, "KVM_SET_DEVICE_ATTR", "timer PPI without a vGIC", Init, EINVAL,
            "arch_timer.c kvm_arm_timer_set_attr (!irqchip_in_kernel)", |c| {
            c.vcpu_attr(0, u64::from(timer::GROUP), timer::IRQ_VTIMER, 27)
        }),
        row(d, "KVM_SET_DEVICE_ATTR", "timer PPI 15", Gic, EINVAL,
            "arch_timer.c kvm_arm_timer_set_attr (!irq_is_ppi)", |c| {
            c.vcpu_attr(0, u64::from(timer::GROUP), timer::IRQ_VTIMER, 15)
        }),
        row(d, "KVM_SET_DEVICE_ATTR", "timer PPI 32", Gic, EINVAL,
            "arch_timer.c kvm_arm_timer_set_attr (!irq_is_ppi)", |c| {
            c.vcpu_attr(0, u64::from(timer::GROUP), timer::IRQ_VTIMER, 32)
        }),
        row(d, "KVM_SET_DEVICE_ATTR", "timer attribute 2", Gic, ENXIO,
            "arch_timer.c kvm_arm_timer_set_attr (default)", |c| {
            c.vcpu_attr(0, u64::from(timer::GROUP), 2, 27)
        }),
        row(d, "KVM_SET_DEVICE_ATTR", "timer PPI unreadable", Gic, EFAULT,
            "arch_timer.c kvm_arm_timer_set_attr (get_user)", |c| {
            c.vcpu(uapi::SET_DEVICE_ATTR, &[u64::from(timer::GROUP) << 32, 0, BAD])
        }),
        row(d, "KVM_GET_DEVICE_ATTR", "timer attribute 2", Init, ENXIO,
            "arch_timer.c kvm_arm_timer_get_attr (default)", |c| {
            c.vcpu_attr(1, u64::from(timer::GROUP), 2, 0)
        }),
        row(d, "KVM_HAS_DEVICE_ATTR", "timer attribute 2", Init, ENXIO,
            "arch_timer.c kvm_arm_timer_has_attr", |c| c.vcpu_attr(2, u64::from(timer::GROUP), 2, 0)),
        row(d, "KVM_SET_DEVICE_ATTR", "PV time attribute 1", Init, ENXIO,
            "pvtime.c kvm_arm_pvtime_set_attr (attr != KVM_ARM_VCPU_PVTIME_IPA)", |c| {
            c.vcpu_attr(0, u64::from(pvtime::GROUP), 1, RAM)
        }),
        row(d, "KVM_SET_DEVICE_ATTR", "PV time IPA not 64-byte aligned", Init, EINVAL,
            "pvtime.c kvm_arm_pvtime_set_attr (!IS_ALIGNED(ipa, 64))", |c| {
            c.vcpu_attr(0, u64::from(pvtime::GROUP), pvtime::IPA, RAM + 8)
        }),
        row(d, "KVM_SET_DEVICE_ATTR", "PV time IPA in no slot", Init, EINVAL,
            "pvtime.c kvm_arm_pvtime_set_attr (kvm_is_error_hva)", |c| {
            c.vcpu_attr(0, u64::from(pvtime::GROUP), pvtime::IPA, 0x1000_0000)
        }),
        row(d, "KVM_SET_DEVICE_ATTR", "PV time IPA twice", Init, EEXIST,
            "pvtime.c kvm_arm_pvtime_set_attr (steal.base != GPA_INVALID)", |c| {
            c.vcpu_attr(0, u64::from(pvtime::GROUP), pvtime::IPA, RAM)?;
            c.vcpu_attr(0, u64::from(pvtime::GROUP), pvtime::IPA, RAM + 64)
        }),
        row(d, "KVM_SET_DEVICE_ATTR", "PV time IPA unreadable", Init, EFAULT,
            "pvtime.c kvm_arm_pvtime_set_attr (get_user)", |c| {
            c.vcpu(uapi::SET_DEVICE_ATTR, &[u64::from(pvtime::GROUP) << 32, pvtime::IPA, BAD])
        }),
        row(d, "KVM_GET_DEVICE_ATTR", "PV time attribute 1", Init, ENXIO,
            "pvtime.c kvm_arm_pvtime_get_attr", |c| c.vcpu_attr(1, u64::from(pvtime::GROUP), 1, 0)),
        row(d, "KVM_HAS_DEVICE_ATTR", "PV time attribute 1", Init, ENXIO,
            "pvtime.c kvm_arm_pvtime_has_attr", |c| c.vcpu_attr(2, u64::from(pvtime::GROUP), 1, 0)),
        row(d, "KVM_SET_DEVICE_ATTR", "unreadable structure", Init, EFAULT,
            "arm.c kvm_arch_vcpu_ioctl (copy_from_user)", |c| c.vcpu_at(uapi::SET_DEVICE_ATTR, BAD)),
    }
}

/// The vGIC (GICv3) device fd.
fn vgic_rows() -> Vec<Row> {
    use Setup::*;
    let d = "vGIC";
    let addr = "vgic-kvm-device.c kvm_vgic_addr";
    let iorange = "vgic-kvm-device.c vgic_check_iorange";
    let alloc = "vgic-mmio-v3.c vgic_v3_alloc_redist_region";
    let common = "vgic-kvm-device.c vgic_set_common_attr";
    let regs = "vgic-kvm-device.c vgic_v3_attr_regs_access";
    let parse = "vgic-kvm-device.c vgic_v3_parse_attr (no such vCPU)";
    rows! {
        row(d, "unknown ioctl", "KVM_RUN", Gic, ENOTTY, "kvm_main.c kvm_device_ioctl (default)", |c| {
            vm::device_ioctl(&mut c.f, &c.vm, uapi::RUN, 0)
        }),
        row(d, "KVM_SET_DEVICE_ATTR", "unreadable structure", Gic, EFAULT,
            "kvm_main.c kvm_device_ioctl_attr (copy_from_user)", |c| {
            vm::device_ioctl(&mut c.f, &c.vm, uapi::SET_DEVICE_ATTR, BAD)
        }),
        row(d, "KVM_SET_DEVICE_ATTR", "unknown group 99", Gic, ENXIO, "vgic-kvm-device.c vgic_set_common_attr", |c| {
            c.gic(0, 99, 0, 0)
        }),
        row(d, "KVM_GET_DEVICE_ATTR", "unknown group 99", Gic, ENXIO, "vgic-kvm-device.c vgic_get_common_attr", |c| {
            c.gic(1, 99, 0, 0)
        }),
        row(d, "KVM_HAS_DEVICE_ATTR", "unknown group 99", Gic, ENXIO, "vgic-kvm-device.c vgic_v3_has_attr", |c| {
            c.gic(2, 99, 0, 0)
        }),
        // GRP_ADDR
        row(d, "GRP_ADDR set", "a GICv2 type (0)", Gic, ENXIO, "vgic_set_common_attr (ENODEV -> ENXIO)", |c| {
            c.gic(0, va::GRP_ADDR, 0, GICD)
        }),
        row(d, "GRP_ADDR get", "unknown type 7", Gic, ENXIO, "vgic_get_common_attr (ENODEV -> ENXIO)", |c| {
            c.gic(1, va::GRP_ADDR, 7, 0)
        }),
        row(d, "GRP_ADDR has", "unknown type 7", Gic, ENXIO, "vgic-kvm-device.c vgic_v3_has_attr", |c| {
            c.gic(2, va::GRP_ADDR, 7, 0)
        }),
        row(d, "GRP_ADDR set", "DIST not 64 KiB aligned", Gic, EINVAL, iorange, |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_DIST, GICD + 0x1000)
        }),
        row(d, "GRP_ADDR set", "DIST past the IPA space", Gic, E2BIG, iorange, |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_DIST, 1 << 40)
        }),
        row(d, "GRP_ADDR set", "DIST twice", Gic, EEXIST, iorange, |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_DIST, GICD)?;
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_DIST, GICD + 0x10_0000)
        }),
        row(d, "GRP_ADDR set", "DIST twice, unaligned (EEXIST first)", Gic, EEXIST, iorange, |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_DIST, GICD)?;
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_DIST, GICD + 0x10)
        }),
        row(d, "GRP_ADDR set", "unreadable address", Gic, EFAULT, "vgic-kvm-device.c kvm_vgic_addr (get_user)", |c| {
            c.attr_with(vm::device_ioctl, 0, va::GRP_ADDR, va::ADDR_TYPE_DIST, 0, BAD)
        }),
        row(d, "GRP_ADDR get", "unwritable address", Gic, EFAULT, "vgic-kvm-device.c kvm_vgic_addr (put_user)", |c| {
            c.attr_with(vm::device_ioctl, 1, va::GRP_ADDR, va::ADDR_TYPE_DIST, 0, BAD)
        }),
        row(d, "GRP_ADDR set", "REDIST over the distributor", Gic, EINVAL,
            "vgic-mmio-v3.c vgic_v3_alloc_redist_region (vgic_dist_overlap)", |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_DIST, GICR)?;
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST, GICR)
        }),
        row(d, "GRP_ADDR set", "REDIST_REGION over the distributor, a vCPU there", Gic, EINVAL,
            "vgic-mmio-v3.c vgic_register_redist_iodev (vgic_v3_check_base); vgic_init selftest", |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_DIST, GICR)?;
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST_REGION, 1 << 52 | GICR)
        }),
        row(d, "GRP_ADDR set", "REDIST_REGION over the distributor, no vCPU", Vm, 0,
            "vgic-mmio-v3.c vgic_v3_alloc_redist_region (no dist check for a region)", |c| {
            c.create_device(device::TYPE_ARM_VGIC_V3, 0)?;
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_DIST, GICR)?;
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST_REGION, 1 << 52 | GICR)
        }),
        row(d, "GRP_ADDR set", "REDIST twice", Gic, EEXIST, alloc, |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST, GICR)?;
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST, GICR + 0x10_0000)
        }),
        row(d, "GRP_ADDR set", "REDIST after a region", Gic, EINVAL,
            "vgic-mmio-v3.c vgic_v3_alloc_redist_region (mixing region types)", |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST_REGION, 1 << 52 | GICR)?;
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST, GICR + 0x10_0000)
        }),
        row(d, "GRP_ADDR set", "REDIST not 64 KiB aligned", Gic, EINVAL, iorange, |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST, GICR + 0x1000)
        }),
        row(d, "GRP_ADDR set", "REDIST past the IPA space", Gic, E2BIG, iorange, |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST, 1 << 40)
        }),
        row(d, "GRP_ADDR set", "REDIST_REGION without a count", Gic, EINVAL, addr, |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST_REGION, GICR)
        }),
        row(d, "GRP_ADDR set", "REDIST_REGION with flags", Gic, EINVAL, addr, |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST_REGION, 1 << 52 | 1 << 12 | GICR)
        }),
        row(d, "GRP_ADDR set", "REDIST_REGION index 1 first", Gic, EINVAL, alloc, |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST_REGION, 1 << 52 | GICR | 1)
        }),
        row(d, "GRP_ADDR set", "REDIST_REGION index 0 after the legacy type", Gic, EINVAL, alloc, |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST, GICR)?;
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST_REGION, 1 << 52 | (GICR + 0x10_0000))
        }),
        row(d, "GRP_ADDR set", "REDIST_REGION index 0 twice", Gic, EINVAL, alloc, |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST_REGION, 1 << 52 | GICR)?;
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST_REGION, 1 << 52 | (GICR + 0x10_0000))
        }),
        row(d, "GRP_ADDR set", "REDIST_REGION past the IPA space", Gic, E2BIG, iorange, |c| {
            c.gic(0, va::GRP_ADDR, va::ADDR_TYPE_REDIST_REGION, 2 << 52 | ((1 << 40) - 0x2_0000))
        }),
        row(d, "GRP_ADDR get", "REDIST_REGION of no such index", Gic, ENOENT,
            "vgic-kvm-device.c kvm_vgic_addr (!rdreg)", |c| {
            c.gic(1, va::GRP_ADDR, va::ADDR_TYPE_REDIST_REGION, 0)
        }),
        row(d, "GRP_ADDR get", "REDIST_REGION index unreadable", Gic, EFAULT,
            "vgic-kvm-device.c kvm_vgic_addr (get_user for the index)", |c| {
            c.attr_with(vm::device_ioctl, 1, va::GRP_ADDR, va::ADDR_TYPE_REDIST_REGION, 0, BAD)
        }),
        // GRP_NR_IRQS
        row(d, "GRP_NR_IRQS set", "32 (< 64)", Gic, EINVAL, common, |c| {
            c.gic(0, va::GRP_NR_IRQS, 0, 32)
        }),
        row(d, "GRP_NR_IRQS set", "100 (not a multiple of 32)", Gic, EINVAL, common, |c| {
            c.gic(0, va::GRP_NR_IRQS, 0, 100)
        }),
        row(d, "GRP_NR_IRQS set", "1056 (> 1024)", Gic, EINVAL, common, |c| {
            c.gic(0, va::GRP_NR_IRQS, 0, 1056)
        }),
        row(d, "GRP_NR_IRQS set", "twice", Gic, EBUSY, "vgic_set_common_attr (nr_spis already set)", |c| {
            c.gic(0, va::GRP_NR_IRQS, 0, 64)?;
            c.gic(0, va::GRP_NR_IRQS, 0, 96)
        }),
        row(d, "GRP_NR_IRQS set", "after init", GicReady, EBUSY, "vgic_set_common_attr (vgic_ready)", |c| {
            c.gic(0, va::GRP_NR_IRQS, 0, 64)
        }),
        row(d, "GRP_NR_IRQS set", "unreadable value", Gic, EFAULT, "vgic_set_common_attr (get_user)", |c| {
            c.attr_with(vm::device_ioctl, 0, va::GRP_NR_IRQS, 0, 0, BAD)
        }),
        row(d, "GRP_NR_IRQS get", "unwritable value", Gic, EFAULT, "vgic_get_common_attr (put_user)", |c| {
            c.attr_with(vm::device_ioctl, 1, va::GRP_NR_IRQS, 0, 0, BAD)
        }),
        // GRP_CTRL
        row(d, "GRP_CTRL set", "unknown attribute 9", Gic, ENXIO, common, |c| {
            c.gic(0, va::GRP_CTRL, 9, 0)
        }),
        row(d, "GRP_CTRL get", "CTRL_INIT", Gic, ENXIO, "vgic-kvm-device.c vgic_get_common_attr", |c| {
            c.gic(1, va::GRP_CTRL, va::CTRL_INIT, 0)
        }),
        row(d, "GRP_CTRL has", "unknown attribute 9", Gic, ENXIO, "vgic-kvm-device.c vgic_v3_has_attr", |c| {
            c.gic(2, va::GRP_CTRL, 9, 0)
        }),
        row(d, "GRP_CTRL get", "SAVE_PENDING_TABLES", GicReady, ENXIO, "vgic-kvm-device.c vgic_get_common_attr", |c| {
            c.gic(1, va::GRP_CTRL, va::SAVE_PENDING_TABLES, 0)
        }),
        row(d, "GRP_CTRL set", "CTRL_INIT twice", GicReady, 0, "vgic-init.c vgic_init (initialised: 0)", |c| {
            c.gic(0, va::GRP_CTRL, va::CTRL_INIT, 0)
        }),
        row(d, "GRP_CTRL set", "CTRL_INIT while a vCPU is being created", Gic, EBUSY,
            "vgic-init.c vgic_init (created_vcpus != online_vcpus)", |c| {
            c.create_vcpu(1)?;
            c.gic(0, va::GRP_CTRL, va::CTRL_INIT, 0)
        }),
        row(d, "GRP_CTRL set", "SAVE_PENDING_TABLES before init", Gic, ENXIO,
            "vgic-v3.c vgic_v3_save_pending_tables (!vgic_initialized)", |c| {
            c.gic(0, va::GRP_CTRL, va::SAVE_PENDING_TABLES, 0)
        }),
        row(d, "GRP_CTRL set", "SAVE_PENDING_TABLES without LPIs", GicReady, 0,
            "vgic-v3.c vgic_v3_save_pending_tables (nothing to save)", |c| {
            c.gic(0, va::GRP_CTRL, va::SAVE_PENDING_TABLES, 0)
        }),
        row(d, "GRP_ADDR get", "REDIST before it is set: VGIC_ADDR_UNDEF", Gic, 0,
            "vgic-kvm-device.c kvm_vgic_addr (undef_value)", |c| {
            c.gic(1, va::GRP_ADDR, va::ADDR_TYPE_REDIST, 0)
        }),
        row(d, "GRP_NR_IRQS get", "before it is set", Gic, 0,
            "vgic-kvm-device.c vgic_get_common_attr (nr_spis + 32)", |c| {
            c.gic(1, va::GRP_NR_IRQS, 0, 0)
        }),
        // GRP_DIST_REGS / GRP_REDIST_REGS
        row(d, "GRP_DIST_REGS get", "before init", Gic, EBUSY, regs, |c| {
            c.gic(1, va::GRP_DIST_REGS, 0, 0)
        }),
        row(d, "GRP_DIST_REGS set", "no vCPU yet", Vm, EINVAL, parse, |c| {
            c.create_device(device::TYPE_ARM_VGIC_V3, 0)?;
            c.gic(0, va::GRP_DIST_REGS, 0, 0)
        }),
        row(d, "GRP_DIST_REGS has", "no vCPU yet", Vm, EINVAL, "vgic-mmio-v3.c vgic_v3_has_attr_regs (parse)", |c| {
            c.create_device(device::TYPE_ARM_VGIC_V3, 0)?;
            c.gic(2, va::GRP_DIST_REGS, 0, 0)
        }),
        row(d, "GRP_DIST_REGS has", "offset not 4-byte aligned", GicReady, ENXIO,
            "vgic-mmio-v3.c vgic_v3_has_attr_regs (addr & 3)", |c| c.gic(2, va::GRP_DIST_REGS, 2, 0)),
        row(d, "GRP_DIST_REGS has", "offset past the distributor", GicReady, ENXIO,
            "vgic-mmio-v3.c vgic_v3_has_attr_regs (no region)", |c| {
            c.gic(2, va::GRP_DIST_REGS, 0x1_0000, 0)
        }),
        row(d, "GRP_DIST_REGS get", "offset not 4-byte aligned: reads 0", GicReady, 0,
            "vgic-mmio.c vgic_uaccess_read (no region: 0)", |c| c.gic(1, va::GRP_DIST_REGS, 2, 0)),
        row(d, "GRP_DIST_REGS set", "offset past the distributor: ignored", GicReady, 0,
            "vgic-mmio.c vgic_uaccess_write (no region: 0)", |c| {
            c.gic(0, va::GRP_DIST_REGS, 0x1_0000, 0)
        }),
        row(d, "GRP_DIST_REGS set", "unreadable value", GicReady, EFAULT, regs, |c| {
            c.attr_with(vm::device_ioctl, 0, va::GRP_DIST_REGS, 0, 0, BAD)
        }),
        row(d, "GRP_DIST_REGS get", "unwritable value", GicReady, EFAULT, regs, |c| {
            c.attr_with(vm::device_ioctl, 1, va::GRP_DIST_REGS, 0, 0, BAD)
        }),
        row(d, "GRP_REDIST_REGS get", "MPIDR of no vCPU", GicReady, EINVAL, parse, |c| {
            c.gic(1, va::GRP_REDIST_REGS, 5 << 32, 0)
        }),
        row(d, "GRP_REDIST_REGS get", "MPIDR of no vCPU, before init", Gic, EINVAL, parse, |c| {
            c.gic(1, va::GRP_REDIST_REGS, 5 << 32, 0)
        }),
        row(d, "GRP_REDIST_REGS has", "MPIDR of no vCPU", GicReady, EINVAL, parse, |c| {
            c.gic(2, va::GRP_REDIST_REGS, 5 << 32, 0)
        }),
        row(d, "GRP_REDIST_REGS has", "offset past the SGI frame", GicReady, ENXIO,
            "vgic-mmio-v3.c vgic_v3_has_attr_regs (no region)", |c| {
            c.gic(2, va::GRP_REDIST_REGS, 0x2_0000, 0)
        }),
        // What is a register of userspace's: `vgic_get_mmio_region` on KVM's tables.
        row(d, "GRP_DIST_REGS has", "GICD_SETSPI_NSR (no register of userspace's)", GicReady, ENXIO,
            "vgic-mmio-v3.c vgic_v3_has_attr_regs (no region)", |c| c.gic(2, va::GRP_DIST_REGS, 0x40, 0)),
        row(d, "GRP_DIST_REGS has", "ISENABLER of SPIs past nr_irqs", GicReady, ENXIO,
            "vgic-mmio.c check_region (intid >= nr_irqs)", |c| c.gic(2, va::GRP_DIST_REGS, 0x120, 0)),
        row(d, "GRP_DIST_REGS has", "ISENABLER of SPIs before NR_IRQS or init", Gic, ENXIO,
            "vgic-mmio.c check_region (nr_spis 0)", |c| c.gic(2, va::GRP_DIST_REGS, 0x104, 0)),
        row(d, "GRP_DIST_REGS has", "IROUTER of an SGI", GicReady, 0,
            "vgic-mmio-v3.c vgic_v3_dist_registers (GICD_IROUTER)", |c| c.gic(2, va::GRP_DIST_REGS, 0x6000, 0)),
        row(d, "GRP_REDIST_REGS has", "GICR_SETLPIR (no register of userspace's)", GicReady, ENXIO,
            "vgic-mmio-v3.c vgic_v3_has_attr_regs (no region)", |c| c.gic(2, va::GRP_REDIST_REGS, 0x40, 0)),
        row(d, "GRP_REDIST_REGS has", "GICR_NSACR", GicReady, 0,
            "vgic-mmio-v3.c vgic_v3_rd_registers (GICR_NSACR)", |c| c.gic(2, va::GRP_REDIST_REGS, 0x1_0E00, 0)),
        row(d, "GRP_CPU_SYSREGS has", "ICC_AP1R3_EL1", GicReady, 0, "vgic-sys-reg-v3.c gic_v3_icc_reg_descs",
            |c| c.gic(2, va::GRP_CPU_SYSREGS, 3 << 14 | 12 << 7 | 9 << 3 | 3, 0)),
        row(d, "GRP_REDIST_REGS set", "before init", Gic, EBUSY, regs, |c| {
            c.gic(0, va::GRP_REDIST_REGS, 0, 0)
        }),
        // GRP_CPU_SYSREGS
        row(d, "GRP_CPU_SYSREGS has", "unknown register", GicReady, ENXIO,
            "vgic-sys-reg-v3.c vgic_v3_has_cpu_sysregs_attr", |c| {
            c.gic(2, va::GRP_CPU_SYSREGS, 3 << 14, 0)
        }),
        row(d, "GRP_CPU_SYSREGS has", "MPIDR of no vCPU", GicReady, EINVAL, parse, |c| {
            c.gic(2, va::GRP_CPU_SYSREGS, 5 << 32 | ICC_PMR, 0)
        }),
        row(d, "GRP_CPU_SYSREGS get", "MPIDR of no vCPU", GicReady, EINVAL, parse, |c| {
            c.gic(1, va::GRP_CPU_SYSREGS, 5 << 32 | ICC_PMR, 0)
        }),
        row(d, "GRP_CPU_SYSREGS get", "before init", Gic, EBUSY, regs, |c| {
            c.gic(1, va::GRP_CPU_SYSREGS, ICC_PMR, 0)
        }),
        row(d, "GRP_CPU_SYSREGS get", "unknown register", GicReady, ENOENT,
            "sys_regs.c kvm_sys_reg_get_user (!r)", |c| {
            c.gic(1, va::GRP_CPU_SYSREGS, 3 << 14, 0)
        }),
        row(d, "GRP_CPU_SYSREGS set", "unknown register", GicReady, ENOENT,
            "sys_regs.c kvm_sys_reg_set_user (!r)", |c| {
            c.gic(0, va::GRP_CPU_SYSREGS, 3 << 14, 0)
        }),
        row(d, "GRP_CPU_SYSREGS set", "unknown register, unreadable value", GicReady, EFAULT,
            "sys_regs.c kvm_sys_reg_set_user (get_user first)", |c| {
            c.attr_with(vm::device_ioctl, 0, va::GRP_CPU_SYSREGS, 3 << 14, 0, BAD)
        }),
        row(d, "GRP_CPU_SYSREGS get", "unwritable value", GicReady, EFAULT,
            "sys_regs.c kvm_sys_reg_get_user (put_user)", |c| {
            c.attr_with(vm::device_ioctl, 1, va::GRP_CPU_SYSREGS, ICC_PMR, 0, BAD)
        }),
        // GRP_CPU_REGS (a GICv2's)
        row(d, "GRP_CPU_REGS has", "GICC_IAR (no register of userspace's)", GicV2Ready, ENXIO,
            "vgic-kvm-device.c vgic_v2_has_attr_regs (no region)", |c| {
            c.gic(2, va::GRP_CPU_REGS, 0x0C, 0)
        }),
        row(d, "GRP_CPU_REGS has", "unaligned offset", GicV2Ready, ENXIO,
            "vgic-kvm-device.c vgic_v2_has_attr_regs (addr & 3)", |c| {
            c.gic(2, va::GRP_CPU_REGS, 0x05, 0)
        }),
        row(d, "GRP_CPU_REGS has", "GICC_APR3", GicV2Ready, 0,
            "vgic-mmio-v2.c vgic_v2_cpu_registers (GIC_CPU_ACTIVEPRIO, 16 bytes)", |c| {
            c.gic(2, va::GRP_CPU_REGS, 0xDC, 0)
        }),
        row(d, "GRP_CPU_REGS has", "vCPU index of no vCPU", GicV2Ready, EINVAL,
            "vgic-kvm-device.c vgic_v2_has_attr_regs (vgic_v2_parse_attr)", |c| {
            c.gic(2, va::GRP_CPU_REGS, 5 << 32 | 0x04, 0)
        }),
        row(d, "GRP_CPU_REGS get", "vCPU index of no vCPU", GicV2Ready, EINVAL,
            "vgic-kvm-device.c vgic_v2_parse_attr (no such vCPU)", |c| {
            c.gic(1, va::GRP_CPU_REGS, 5 << 32 | 0x04, 0)
        }),
        row(d, "GRP_CPU_REGS get", "GICC_IAR: reads as zero", GicV2Ready, 0,
            "vgic-mmio.c vgic_uaccess_read (no region: 0)", |c| {
            c.gic(1, va::GRP_CPU_REGS, 0x0C, 0)
        }),
        row(d, "GRP_CPU_REGS set", "unreadable value", GicV2Ready, EFAULT,
            "vgic-kvm-device.c vgic_v2_attr_regs_access (get_user)", |c| {
            c.attr_with(vm::device_ioctl, 0, va::GRP_CPU_REGS, 0x04, 0, BAD)
        }),
        row(d, "GRP_CPU_REGS get", "unwritable value", GicV2Ready, EFAULT,
            "vgic-kvm-device.c vgic_v2_attr_regs_access (put_user)", |c| {
            c.attr_with(vm::device_ioctl, 1, va::GRP_CPU_REGS, 0x04, 0, BAD)
        }),
        // GRP_LEVEL_INFO
        row(d, "GRP_LEVEL_INFO has", "info 1", GicReady, ENXIO, "vgic-kvm-device.c vgic_v3_has_attr", |c| {
            c.gic(2, va::GRP_LEVEL_INFO, 1 << 10, 0)
        }),
        row(d, "GRP_LEVEL_INFO get", "before init", Gic, EBUSY, regs, |c| {
            c.gic(1, va::GRP_LEVEL_INFO, 32, 0)
        }),
        row(d, "GRP_LEVEL_INFO get", "info 1, before init (EBUSY first)", Gic, EBUSY, regs, |c| {
            c.gic(1, va::GRP_LEVEL_INFO, 1 << 10 | 32, 0)
        }),
        row(d, "GRP_LEVEL_INFO get", "info 1", GicReady, EINVAL, regs, |c| {
            c.gic(1, va::GRP_LEVEL_INFO, 1 << 10 | 32, 0)
        }),
        row(d, "GRP_LEVEL_INFO set", "INTID 33 (not a multiple of 32)", GicReady, EINVAL,
            "vgic-mmio-v3.c vgic_v3_line_level_info_uaccess (intid % 32)", |c| {
            c.gic(0, va::GRP_LEVEL_INFO, 33, 0)
        }),
        row(d, "GRP_LEVEL_INFO get", "MPIDR of no vCPU, before init", Gic, EINVAL, parse, |c| {
            c.gic(1, va::GRP_LEVEL_INFO, 5 << 32 | 32, 0)
        }),
        row(d, "GRP_LEVEL_INFO get", "INTIDs past the vGIC's: reads 0", GicReady, 0,
            "vgic-mmio.c vgic_read_irq_line_level_info (missing interrupts skipped)", |c| {
            c.gic(1, va::GRP_LEVEL_INFO, 992, 0)
        }),
        row(d, "GRP_LEVEL_INFO set", "unreadable value", GicReady, EFAULT, regs, |c| {
            c.attr_with(vm::device_ioctl, 0, va::GRP_LEVEL_INFO, 32, 0, BAD)
        }),
    }
}

/// The ITS device fd.
fn its_rows() -> Vec<Row> {
    use Setup::*;
    let d = "ITS";
    let set = "vgic-its.c vgic_its_set_attr";
    let regs = "vgic-its.c vgic_its_attr_regs_access";
    rows! {
        row(d, "unknown ioctl", "KVM_RUN", Its, ENOTTY, "kvm_main.c kvm_device_ioctl (default)", |c| {
            its::device_ioctl(&mut c.f, &c.vm, uapi::RUN, 0)
        }),
        row(d, "KVM_SET_DEVICE_ATTR", "unreadable structure", Its, EFAULT,
            "kvm_main.c kvm_device_ioctl_attr (copy_from_user)", |c| {
            its::device_ioctl(&mut c.f, &c.vm, uapi::SET_DEVICE_ATTR, BAD)
        }),
        row(d, "KVM_SET_DEVICE_ATTR", "unknown group 99", Its, ENXIO, set, |c| c.its(0, 99, 0, 0)),
        row(d, "KVM_GET_DEVICE_ATTR", "unknown group 99", Its, ENXIO, "vgic-its.c vgic_its_get_attr", |c| {
            c.its(1, 99, 0, 0)
        }),
        row(d, "GRP_ADDR set", "a vGIC address type", Its, ENODEV, set, |c| {
            c.its(0, va::GRP_ADDR, va::ADDR_TYPE_DIST, ITS_BASE)
        }),
        row(d, "GRP_ADDR get", "a vGIC address type", Its, ENODEV, "vgic-its.c vgic_its_get_attr", |c| {
            c.its(1, va::GRP_ADDR, va::ADDR_TYPE_DIST, 0)
        }),
        row(d, "GRP_ADDR has", "a vGIC address type", Its, ENXIO, "vgic-its.c vgic_its_has_attr", |c| {
            c.its(2, va::GRP_ADDR, va::ADDR_TYPE_DIST, 0)
        }),
        row(d, "GRP_ADDR set", "not 64 KiB aligned", Its, EINVAL, "vgic_check_iorange", |c| {
            c.its(0, va::GRP_ADDR, va::ITS_ADDR_TYPE, ITS_BASE + 0x1000)
        }),
        row(d, "GRP_ADDR set", "past the IPA space", Its, E2BIG, "vgic_check_iorange", |c| {
            c.its(0, va::GRP_ADDR, va::ITS_ADDR_TYPE, 1 << 40)
        }),
        row(d, "GRP_ADDR set", "twice", ItsPlaced, EEXIST, "vgic_check_iorange", |c| {
            c.its(0, va::GRP_ADDR, va::ITS_ADDR_TYPE, ITS_BASE + 0x10_0000)
        }),
        row(d, "GRP_ADDR set", "unreadable address", Its, EFAULT, set, |c| {
            c.attr_with(its::device_ioctl, 0, va::GRP_ADDR, va::ITS_ADDR_TYPE, 0, BAD)
        }),
        row(d, "GRP_ADDR get", "unwritable address", Its, EFAULT, "vgic-its.c vgic_its_get_attr", |c| {
            c.attr_with(its::device_ioctl, 1, va::GRP_ADDR, va::ITS_ADDR_TYPE, 0, BAD)
        }),
        row(d, "GRP_CTRL get", "CTRL_INIT", Its, ENXIO, "vgic-its.c vgic_its_get_attr (default)", |c| {
            c.its(1, va::GRP_CTRL, va::CTRL_INIT, 0)
        }),
        row(d, "GRP_CTRL has", "unknown attribute 9", Its, ENXIO, "vgic-its.c vgic_its_has_attr", |c| {
            c.its(2, va::GRP_CTRL, 9, 0)
        }),
        row(d, "GRP_CTRL set", "unknown attribute 9: nothing done", Its, 0,
            "vgic-its.c vgic_its_ctrl (no case: 0)", |c| c.its(0, va::GRP_CTRL, 9, 0)),
        row(d, "GRP_ITS_REGS set", "64-bit register at +4", ItsPlaced, EINVAL, regs, |c| {
            c.its(0, va::GRP_ITS_REGS, 0x84, 0)
        }),
        row(d, "GRP_ITS_REGS get", "32-bit register at +2", ItsPlaced, EINVAL, regs, |c| {
            c.its(1, va::GRP_ITS_REGS, 0x2, 0)
        }),
        row(d, "GRP_ITS_REGS has", "64-bit register at +4", ItsPlaced, EINVAL,
            "vgic-its.c vgic_its_has_attr_regs", |c| c.its(2, va::GRP_ITS_REGS, 0x84, 0)),
        row(d, "GRP_ITS_REGS get", "no register there", ItsPlaced, ENXIO, regs, |c| {
            c.its(1, va::GRP_ITS_REGS, 0x20, 0)
        }),
        row(d, "GRP_ITS_REGS has", "no register there", ItsPlaced, ENXIO,
            "vgic-its.c vgic_its_has_attr_regs", |c| c.its(2, va::GRP_ITS_REGS, 0x20, 0)),
        row(d, "GRP_ITS_REGS get", "ITS not placed", Its, ENXIO, "vgic-its.c vgic_its_attr_regs_access (base undefined)", |c| {
            c.its(1, va::GRP_ITS_REGS, 0x0, 0)
        }),
        row(d, "GRP_ITS_REGS set", "unreadable value", ItsPlaced, EFAULT, set, |c| {
            c.attr_with(its::device_ioctl, 0, va::GRP_ITS_REGS, 0x80, 0, BAD)
        }),
    }
}

/// Where KServ answers otherwise than KVM on purpose: a limit of KCore or
/// of the shim (`docs/kvm.md`, "Where it differs from KVM"). `errno` is
/// the shim's answer; `source` says what KVM would do and why not here.
fn limits() -> Vec<Row> {
    use Setup::*;
    let d = "limit";
    rows! {
        row(d, "KVM_SET_USER_MEMORY_REGION", "a slot of more than 8 GiB", Vm, EINVAL,
            "KVM takes 2^31 - 1 pages a slot; KServ's page arrays 2^21", |c| {
            c.region(0, 0, 0, (1 << 33) + 0x1000, UADDR)
        }),
        row(d, "KVM_SET_USER_MEMORY_REGION", "LOG_DIRTY_PAGES on a protected VM", Protected, EINVAL,
            "KVM logs any slot; KServ learns nothing of a protected VM's writes", |c| {
            c.region(0, u64::from(mem::LOG_DIRTY_PAGES), RAM, 0x1000, UADDR)
        }),
        row(d, "KVM_CREATE_VCPU", "id 64", Vm, EINVAL,
            "KVM takes ids below 512; KServ's KVM_CAP_MAX_VCPU_ID is 64", |c| c.create_vcpu(64)),
        row(d, "KVM_IRQ_LINE", "CPU line without a vGIC", Init, ENXIO,
            "KVM drives the vCPU's IRQ line (userspace irqchip); KServ has none", |c| {
            c.irq_line(irq_line::TYPE_CPU, 0, 0)
        }),
        row(d, "KVM_ARM_VCPU_INIT", "EL1_32BIT", Vcpu, EINVAL,
            "KVM takes it on a CPU with AArch32 EL1; KCore runs AArch64 guests only", |c| {
            c.vcpu_init(TARGET, [1 << vcpu_init::EL1_32BIT, 0, 0, 0, 0, 0, 0])
        }),
        row(d, "KVM_ARM_VCPU_INIT", "PMU_V3 (bit 3)", Vcpu, EINVAL,
            "KVM takes it with a host PMU; KCore offers guests none", |c| {
            c.vcpu_init(TARGET, [1 << 3, 0, 0, 0, 0, 0, 0])
        }),
        row(d, "KVM_ARM_VCPU_INIT", "SVE (bit 4)", Vcpu, EINVAL,
            "KVM takes it on an SVE host; KCore offers none", |c| {
            c.vcpu_init(TARGET, [1 << 4, 0, 0, 0, 0, 0, 0])
        }),
        row(d, "KVM_ARM_VCPU_INIT", "PTRAUTH_ADDRESS and _GENERIC", Vcpu, EINVAL,
            "KVM takes them with pointer authentication; KCore offers none", |c| {
            c.vcpu_init(TARGET, [3 << 5, 0, 0, 0, 0, 0, 0])
        }),
        row(d, "KVM_SET_MP_STATE", "SUSPENDED", Init, EINVAL,
            "KVM parks the vCPU as in WFI; not offered here", |c| {
            c.vcpu(uapi::SET_MP_STATE, &[u64::from(mp_state::SUSPENDED)])
        }),
        row(d, "KVM_CREATE_DEVICE", "a second ITS", Its, EEXIST,
            "KVM takes several ITSs; the shim one", |c| {
            c.create_device(device::TYPE_ARM_VGIC_ITS, 0)
        }),
        row(d, "KVM_SET_DEVICE_ATTR", "ITS_SAVE_TABLES of a protected VM's ITS", Protected, EPERM,
            "a protected VM's memory is not KServ's to write", |c| {
            c.create_device(device::TYPE_ARM_VGIC_ITS, 0)?;
            c.its(0, va::GRP_CTRL, va::ITS_SAVE_TABLES, 0)
        }),
        row(d, "KVM_GET_ONE_REG", "a protected vCPU's x1", ProtectedInit, EPERM,
            "KCore keeps a protected vCPU's registers", |c| {
            c.one_reg(false, id::core(id::SIZE_U64, 2), 0)
        }),
        row(d, "KVM_ENABLE_CAP", "ARM_NISV_TO_USER", Vm, EINVAL,
            "KVM reports syndrome-less aborts to the VMM; not offered here (capability 0)", |c| {
            c.enable_cap(177, 0, 0)
        }),
        row(d, "KVM_SET_ONE_REG", "an AArch32 SPSR (abt) not 0", Init, EINVAL,
            "KVM stores it; KCore has no AArch32 state", |c| {
            c.one_reg(true, id::core(id::SIZE_U64, 74), 1)
        }),
        row(d, "KVM_SET_ONE_REG", "MPIDR_EL1 another value", Init, EINVAL,
            "KVM stores it; KCore derives it from the vCPU index", |c| {
            c.one_reg(true, id::sys(3, 0, 0, 0, 5), 1 << 31 | 7)
        }),
        row(d, "KVM_SET_ONE_REG", "ACTLR_EL1 not 0", Init, EINVAL,
            "KVM stores it; RAZ/WI in KCore's guests", |c| {
            c.one_reg(true, id::sys(3, 0, 1, 0, 1), 1)
        }),
        row(d, "KVM_SET_ONE_REG", "SMCCC_ARCH_WORKAROUND_1 AVAIL", Init, EINVAL,
            "KVM takes what the host's mitigation offers; KCore's guests get NOT_AVAIL", |c| {
            c.one_reg(true, id::workaround(1), 1)
        }),
        row(d, "KVM_SET_GUEST_DEBUG", "a protected vCPU", ProtectedInit, EPERM,
            "KVM debugs any vCPU; KCore does not let KServ into a protected one", |c| {
            c.vcpu(uapi::SET_GUEST_DEBUG, &[u64::from(uapi::guest_debug::ENABLE)])
        }),
        row(d, "KVM_SET_VCPU_EVENTS", "an SError for a protected vCPU", ProtectedInit, EPERM,
            "KVM injects into any vCPU; KCore does not let KServ into a protected one", |c| {
            c.vcpu(uapi::SET_VCPU_EVENTS, &[1, 0, 0, 0, 0, 0, 0, 0])
        }),
        row(d, "KVM_SET_VCPU_EVENTS", "an external abort for a protected vCPU", ProtectedInit, EPERM,
            "KVM injects into any vCPU; KCore does not let KServ into a protected one", |c| {
            c.vcpu(uapi::SET_VCPU_EVENTS, &[1 << 16, 0, 0, 0, 0, 0, 0, 0])
        }),
        row(d, "KVM_HAS_DEVICE_ATTR", "PV time on a protected VM", ProtectedInit, ENXIO,
            "KVM offers stolen time; a protected VM's memory is not the shim's to write", |c| {
            c.vcpu_attr(2, u64::from(pvtime::GROUP), pvtime::IPA, 0)
        }),
    }
}

#[test]
fn every_ioctl_fails_with_kvms_errno() {
    assert_eq!(vcpu::ARM_VCPU_FINALIZE, 0x4004_AEC2);
    let mut rows = system_rows();
    rows.extend(vm_rows());
    rows.extend(vcpu_rows());
    rows.extend(vgic_rows());
    rows.extend(its_rows());
    assert!(rows.len() > 200, "{} rows", rows.len());
    assert!(
        rows.iter()
            .all(|r| !r.source.is_empty() && !r.input.is_empty())
    );
    let bad = check(&rows);
    std::println!("{} rows, {} differ", rows.len(), bad.len());
    assert!(
        bad.is_empty(),
        "{} of {} rows differ:\n{}",
        bad.len(),
        rows.len(),
        bad.join("\n")
    );
}

#[test]
fn the_real_limits_answer_as_documented() {
    let rows = limits();
    let bad = check(&rows);
    assert!(
        bad.is_empty(),
        "{} of {} limits differ:\n{}",
        bad.len(),
        rows.len(),
        bad.join("\n")
    );
}
