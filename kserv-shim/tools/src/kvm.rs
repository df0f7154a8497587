//! The raw KVM API as `kserv-tools` drives it: system calls (no libc
//! crate), KVM's ioctl numbers and constants (`include/uapi/linux/kvm.h`,
//! arm64), and the few helpers every user of `/dev/kvm` here needs: memory
//! slots, `ONE_REG`, vCPUs with their mapped `struct kvm_run`, and the
//! GICv3 at QEMU `virt`'s addresses (where the test guest expects it).

use kcore_test_guest as guest;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// ---- system calls -------------------------------------------------------------------

pub mod sys {
    /// `ioctl`, `mmap`, `clone`, `exit_group`, `wait4`, `eventfd2`,
    /// `madvise`, `sched_setaffinity` on aarch64 Linux.
    const IOCTL: u64 = 29;
    const MADVISE: u64 = 233;
    const MUNMAP: u64 = 215;
    const SCHED_SETAFFINITY: u64 = 122;
    const EVENTFD2: u64 = 19;
    const MMAP: u64 = 222;
    const CLONE: u64 = 220;
    const EXIT_GROUP: u64 = 94;
    const WAIT4: u64 = 260;

    #[cfg(target_arch = "aarch64")]
    fn syscall(n: u64, a: [u64; 6]) -> i64 {
        let r: i64;
        // SAFETY: a Linux system call; the callers pass arguments the kernel
        // validates itself (pointers it copies through with fault handling,
        // or memory this process owns for the call's duration).
        unsafe {
            core::arch::asm!(
                "svc #0",
                inlateout("x0") a[0] => r,
                in("x1") a[1],
                in("x2") a[2],
                in("x3") a[3],
                in("x4") a[4],
                in("x5") a[5],
                in("x8") n,
                options(nostack),
            );
        }
        r
    }

    #[cfg(not(target_arch = "aarch64"))]
    fn syscall(_n: u64, _a: [u64; 6]) -> i64 {
        -38 // ENOSYS: only arm64 has /dev/kvm as KCore offers it.
    }

    /// `ioctl(fd, cmd, arg)`: the return value or the errno.
    pub fn ioctl(fd: i32, cmd: u32, arg: u64) -> Result<i64, i32> {
        let r = syscall(IOCTL, [fd as u64, u64::from(cmd), arg, 0, 0, 0]);
        if r < 0 { Err(-r as i32) } else { Ok(r) }
    }

    /// `mmap(NULL, len, READ|WRITE, flags, fd, 0)`.
    pub fn mmap(len: usize, flags: u64, fd: i32) -> Result<*mut u8, i32> {
        mmap_at(len, flags, fd, 0)
    }

    /// `mmap(NULL, len, READ|WRITE, flags, fd, offset)`.
    pub fn mmap_at(len: usize, flags: u64, fd: i32, offset: u64) -> Result<*mut u8, i32> {
        let r = syscall(MMAP, [0, len as u64, 3, flags, fd as u64, offset]);
        if (-4095..0).contains(&r) {
            Err(-r as i32)
        } else {
            Ok(r as *mut u8)
        }
    }

    /// `fork()`: `clone(SIGCHLD, 0, 0, 0, 0)`; the child's pid, 0 in the
    /// child, or the errno.
    pub fn fork() -> Result<i64, i32> {
        let r = syscall(CLONE, [17, 0, 0, 0, 0, 0]);
        if r < 0 { Err(-r as i32) } else { Ok(r) }
    }

    /// `exit_group(code)`: ends the process at once (no destructors, no
    /// buffered output: for a forked child).
    pub fn exit_group(code: i32) -> ! {
        syscall(EXIT_GROUP, [code as u64, 0, 0, 0, 0, 0]);
        #[allow(clippy::empty_loop)]
        loop {}
    }

    /// `wait4(pid, &status, 0, NULL)`: the wait status, or the errno.
    pub fn wait(pid: i64) -> Result<i32, i32> {
        let mut status = 0i32;
        let r = syscall(WAIT4, [pid as u64, &raw mut status as u64, 0, 0, 0, 0]);
        if r < 0 { Err(-r as i32) } else { Ok(status) }
    }

    /// `eventfd2(0, EFD_NONBLOCK | EFD_CLOEXEC)`: a fresh eventfd.
    pub fn eventfd() -> Result<i32, i32> {
        let r = syscall(EVENTFD2, [0, 0o4000 | 0o2_000_000, 0, 0, 0, 0]);
        if r < 0 { Err(-r as i32) } else { Ok(r as i32) }
    }

    /// `munmap(addr, len)`.
    ///
    /// # Safety
    ///
    /// Nothing may use `[addr, addr + len)` afterwards.
    pub unsafe fn munmap(addr: *mut u8, len: usize) -> Result<(), i32> {
        let r = syscall(MUNMAP, [addr as u64, len as u64, 0, 0, 0, 0]);
        if r < 0 { Err(-r as i32) } else { Ok(()) }
    }

    /// `madvise(addr, len, MADV_NOHUGEPAGE)`: no transparent huge pages
    /// for the range.
    pub fn no_huge_pages(addr: *mut u8, len: usize) -> Result<(), i32> {
        const MADV_NOHUGEPAGE: u64 = 15;
        let r = syscall(MADVISE, [addr as u64, len as u64, MADV_NOHUGEPAGE, 0, 0, 0]);
        if r < 0 { Err(-r as i32) } else { Ok(()) }
    }

    /// `sched_setaffinity(0, ...)`: the calling thread runs only on `cpu`
    /// (< 64).
    pub fn pin_to_cpu(cpu: u32) -> Result<(), i32> {
        let mask = 1u64.checked_shl(cpu).ok_or(22)?;
        let r = syscall(SCHED_SETAFFINITY, [0, 8, &raw const mask as u64, 0, 0, 0]);
        if r < 0 { Err(-r as i32) } else { Ok(()) }
    }

    /// `MAP_SHARED`.
    pub const MAP_SHARED: u64 = 0x01;
    /// `MAP_SHARED | MAP_ANONYMOUS`.
    pub const MAP_SHARED_ANON: u64 = 0x21;
    /// `MAP_PRIVATE | MAP_ANONYMOUS`.
    pub const MAP_ANON: u64 = 0x22;
}

pub const EPERM: i32 = 1;
pub const ENOENT: i32 = 2;
pub const EINTR: i32 = 4;
pub const ENXIO: i32 = 6;
pub const E2BIG: i32 = 7;
pub const ENOEXEC: i32 = 8;
pub const EBADF: i32 = 9;
pub const EAGAIN: i32 = 11;
pub const EBUSY: i32 = 16;
pub const EEXIST: i32 = 17;
pub const ENODEV: i32 = 19;
pub const EINVAL: i32 = 22;
pub const EFAULT: i32 = 14;

// KVM's numbers (include/uapi/linux/kvm.h, arm64); KServ's extensions of
// the API are `kcore_abi::kvm_ext`'s.
pub use kcore_abi::kvm_ext::kvm_ioc as ioc;
pub use kcore_abi::kvm_ext::{CAP_ARM_PROTECTED_VM, KSERV_VM_VERIFY_IMAGE, VM_TYPE_ARM_PROTECTED};
pub const GET_API_VERSION: u32 = ioc(0, 0x00, 0);
pub const CREATE_VM: u32 = ioc(0, 0x01, 0);
pub const CHECK_EXTENSION: u32 = ioc(0, 0x03, 0);
pub const GET_VCPU_MMAP_SIZE: u32 = ioc(0, 0x04, 0);
pub const CREATE_VCPU: u32 = ioc(0, 0x41, 0);
pub const SET_USER_MEMORY_REGION: u32 = ioc(1, 0x46, 32);
pub const IRQ_LINE: u32 = ioc(1, 0x61, 8);
pub const RUN: u32 = ioc(0, 0x80, 0);
pub const GET_ONE_REG: u32 = ioc(1, 0xAB, 16);
pub const SET_ONE_REG: u32 = ioc(1, 0xAC, 16);
pub const ARM_VCPU_INIT: u32 = ioc(1, 0xAE, 32);
pub const ARM_PREFERRED_TARGET: u32 = ioc(2, 0xAF, 32);
pub const GET_REG_LIST: u32 = ioc(3, 0xB0, 8);
pub const CREATE_DEVICE: u32 = ioc(3, 0xE0, 12);
pub const SET_DEVICE_ATTR: u32 = ioc(1, 0xE1, 24);
pub const GET_DEVICE_ATTR: u32 = ioc(1, 0xE2, 24);
pub const IRQFD: u32 = ioc(1, 0x76, 32);
/// `KVM_SIGNAL_MSI` (`struct kvm_msi`, 32 bytes).
pub const SIGNAL_MSI: u32 = ioc(1, 0xA5, 32);
pub const HAS_DEVICE_ATTR: u32 = ioc(1, 0xE3, 24);
pub const IOEVENTFD: u32 = ioc(1, 0x79, 64);
pub const GET_DIRTY_LOG: u32 = ioc(1, 0x42, 16);
pub const CLEAR_DIRTY_LOG: u32 = ioc(3, 0xC0, 24);
pub const MEM_LOG_DIRTY_PAGES: u32 = 1 << 0;
pub const CAP_MANUAL_DIRTY_LOG_PROTECT2: u64 = 168;
pub const CAP_DIRTY_LOG_RING: u64 = 192;
pub const IOEVENTFD_DATAMATCH: u32 = 1 << 0;
pub const IOEVENTFD_DEASSIGN: u32 = 1 << 2;
pub const IRQFD_DEASSIGN: u32 = 1 << 0;
pub const IRQFD_RESAMPLE: u32 = 1 << 1;

pub const CAP_IRQCHIP: u64 = 0;
pub const CAP_USER_MEMORY: u64 = 3;
pub const CAP_NR_MEMSLOTS: u64 = 10;
pub const CAP_MAX_VCPUS: u64 = 66;
pub const CAP_ONE_REG: u64 = 70;
pub const CAP_READONLY_MEM: u64 = 81;
pub const CAP_DEVICE_CTRL: u64 = 89;
pub const CAP_ARM_PSCI_0_2: u64 = 102;
pub const CAP_IMMEDIATE_EXIT: u64 = 136;
pub const CAP_ARM_VM_IPA_SIZE: u64 = 165;
pub const CAP_IRQFD: u64 = 32;
pub const CAP_IOEVENTFD: u64 = 36;
pub const CAP_IRQFD_RESAMPLE: u64 = 82;
pub const CAP_IOEVENTFD_ANY_LENGTH: u64 = 122;
pub const CAP_SIGNAL_MSI: u64 = 77;
pub const CAP_MSI_DEVID: u64 = 131;

pub const REG_U32: u64 = 0x6020_0000_0010_0000;
pub const REG_U64: u64 = 0x6030_0000_0010_0000;
pub const REG_U128: u64 = 0x6040_0000_0010_0000;
pub const fn core64(off: u64) -> u64 {
    REG_U64 | off
}
pub const REG_PC: u64 = core64(64);
pub const REG_PSTATE: u64 = core64(66);
pub const REG_X0: u64 = core64(0);
pub const fn sysreg(op0: u64, op1: u64, crn: u64, crm: u64, op2: u64) -> u64 {
    0x6030_0000_0013_0000 | op0 << 14 | op1 << 11 | crn << 7 | crm << 3 | op2
}
pub const REG_MPIDR: u64 = sysreg(3, 0, 0, 0, 5);
pub const REG_TIMER_CNT: u64 = sysreg(3, 3, 14, 3, 2);
pub const REG_PSCI_VERSION: u64 = 0x6030_0000_0014_0000;

pub const EXIT_MMIO: u32 = 6;
pub const EXIT_SYSTEM_EVENT: u32 = 24;
pub const SYSTEM_EVENT_SHUTDOWN: u32 = 1;

/// Where the vGIC goes (QEMU `virt`'s layout, as the eventfd program
/// expects it).
pub const GICD_BASE: u64 = guest::eventfd::GICD;
pub const GICR_BASE: u64 = guest::eventfd::GICR;
/// A GICv2 VM's CPU interface (`KVM_VGIC_V2_ADDR_TYPE_CPU`).
pub const GICC_BASE: u64 = guest::gic::GICC;
/// `KVM_DEV_TYPE_ARM_VGIC_V2` and `_V3`.
pub const DEV_VGIC_V2: u32 = 5;
pub const DEV_VGIC_V3: u32 = 7;
/// `KVM_DEV_TYPE_ARM_VGIC_ITS`.
pub const DEV_VGIC_ITS: u32 = 8;
/// Where the ITS goes (QEMU `virt`'s address, as the test guest expects it).
pub const ITS_BASE: u64 = guest::gic::ITS;
/// `KVM_MSI_VALID_DEVID`.
pub const MSI_VALID_DEVID: u32 = 1;
/// `KVM_CREATE_DEVICE_TEST`: only whether the device could be made.
pub const CREATE_DEVICE_TEST: u32 = 1;

// ---- helpers ------------------------------------------------------------------------

pub fn ioctl(fd: &impl AsRawFd, cmd: u32, arg: u64) -> Result<i64, i32> {
    sys::ioctl(fd.as_raw_fd(), cmd, arg)
}

pub fn ptr<T>(v: &T) -> u64 {
    v as *const T as u64
}

/// For an ioctl that writes `v`.
pub fn ptr_mut<T>(v: &mut T) -> u64 {
    v as *mut T as u64
}

pub fn owned(fd: i64) -> OwnedFd {
    // SAFETY: `fd` is a descriptor a KVM ioctl just returned to this
    // process, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

pub fn region(slot: u32, flags: u32, gpa: u64, size: u64, uaddr: u64) -> [u64; 4] {
    [u64::from(slot) | u64::from(flags) << 32, gpa, size, uaddr]
}

pub fn set_region(vm: &OwnedFd, r: [u64; 4]) -> Result<i64, i32> {
    ioctl(vm, SET_USER_MEMORY_REGION, ptr(&r))
}

/// Copies the test guest's `image` to the start of `ram` (its RAM) and
/// makes all of `ram` memory slot 0 at `guest::RAM_BASE`.
pub fn load_guest(vm: &OwnedFd, ram: &mut [u8], image: &[u8]) -> Result<(), String> {
    let dst = ram
        .get_mut(..image.len())
        .ok_or_else(|| format!("a {}-byte image does not fit", image.len()))?;
    dst.copy_from_slice(image);
    set_region(
        vm,
        region(0, 0, guest::RAM_BASE, ram.len() as u64, ram.as_ptr() as u64),
    )
    .map(|_| ())
    .map_err(|e| format!("memory slot: errno {e}"))
}

pub fn get_reg(vcpu: &OwnedFd, id: u64) -> Result<u64, i32> {
    let mut v = [0u64; 2];
    let one = [id, v.as_mut_ptr() as u64];
    ioctl(vcpu, GET_ONE_REG, ptr(&one)).map(|_| v[0])
}

pub fn set_reg(vcpu: &OwnedFd, id: u64, value: u64) -> Result<i64, i32> {
    let v = [value, 0];
    let one = [id, v.as_ptr() as u64];
    ioctl(vcpu, SET_ONE_REG, ptr(&one))
}

pub fn vcpu_init(vcpu: &OwnedFd, target: u32, features: u32) -> Result<i64, i32> {
    let mut init = [0u32; 8];
    init[0] = target;
    init[1] = features;
    ioctl(vcpu, ARM_VCPU_INIT, ptr(&init))
}

pub fn device_attr(dev: &OwnedFd, cmd: u32, group: u32, attr: u64, addr: u64) -> Result<i64, i32> {
    let a = [u64::from(group) << 32, attr, addr];
    ioctl(dev, cmd, ptr(&a))
}

/// Anonymous, page-aligned memory for guest RAM.
pub fn anon(len: usize) -> Result<&'static mut [u8], i32> {
    let p = sys::mmap(len, sys::MAP_ANON, -1)?;
    // SAFETY: a fresh private mapping of `len` bytes, never unmapped.
    Ok(unsafe { core::slice::from_raw_parts_mut(p, len) })
}

// ---- vCPUs and the vGIC -------------------------------------------------------------

/// One vCPU's fd and its mmap'd `struct kvm_run`.
pub struct Vcpu {
    pub fd: OwnedFd,
    pub run: *mut u8,
}

// SAFETY: the kvm_run mapping is used by the one thread that owns the Vcpu.
unsafe impl Send for Vcpu {}

impl Drop for Vcpu {
    /// Unmaps `struct kvm_run` (which holds the vCPU's file open), then the
    /// fd closes: the vCPU's last reference is gone.
    fn drop(&mut self) {
        // SAFETY: `run` is this vCPU's one-page mapping, used only through
        // `self`, which is going away.
        let _ = unsafe { sys::munmap(self.run, 4096) };
    }
}

impl Vcpu {
    pub fn run_u32(&self, off: usize) -> u32 {
        // SAFETY: `off + 4` is inside the mapped page; the kernel writes it
        // only during KVM_RUN, which this thread is not in.
        unsafe { self.run.wrapping_add(off).cast::<u32>().read_volatile() }
    }
    pub fn run_u64(&self, off: usize) -> u64 {
        // SAFETY: as in `run_u32`.
        unsafe { self.run.wrapping_add(off).cast::<u64>().read_unaligned() }
    }
    pub fn set_run_u64(&self, off: usize, v: u64) {
        // SAFETY: as in `run_u32`.
        unsafe { self.run.wrapping_add(off).cast::<u64>().write_unaligned(v) }
    }
    /// A `KVM_EXIT_MMIO`'s address, data, length and direction (write).
    pub fn mmio(&self) -> (u64, u64, u32, bool) {
        // SAFETY: byte 52 of the mapped page, as in `run_u32`.
        let write = unsafe { self.run.wrapping_add(52).read_volatile() } != 0;
        (self.run_u64(32), self.run_u64(40), self.run_u32(48), write)
    }
    pub fn set_immediate_exit(&self, v: u8) {
        // SAFETY: byte 1 of the mapped page.
        unsafe { self.run.wrapping_add(1).write_volatile(v) }
    }
}

/// Whether `vm`'s host can only give it a GICv2: a test creation of a
/// GICv3 (`KVM_CREATE_DEVICE_TEST`) is `ENODEV`, as on a GICv2 host both
/// under KVM and under the shim.
pub fn host_gic_v2(vm: &OwnedFd) -> bool {
    let mut dev = [DEV_VGIC_V3, 0, CREATE_DEVICE_TEST];
    ioctl(vm, CREATE_DEVICE, dev.as_mut_ptr() as u64) == Err(ENODEV)
}

/// What a read of the test device's `GIC` register
/// ([`guest::testdev::GIC`]) returns for a VM with a GICv2 (`v2`) or a
/// GICv3.
pub fn gic_word(v2: bool) -> u64 {
    guest::testdev::gic_word(v2, false)
}

/// The `GRP_ADDR` attributes and addresses of the VM's vGIC: a GICv3's
/// distributor and redistributors ([`GICD_BASE`], [`GICR_BASE`]), a
/// GICv2's distributor and CPU interface ([`GICD_BASE`], [`GICC_BASE`]).
pub fn vgic_addresses(v2: bool) -> [(u64, u64); 2] {
    if v2 {
        [(0, GICD_BASE), (1, GICC_BASE)]
    } else {
        [(2, GICD_BASE), (3, GICR_BASE)]
    }
}

/// The VM's vGIC (after its vCPUs), the kind its host offers ([`host_gic_v2`]):
/// created, placed at [`vgic_addresses`], with `nr_irqs` interrupts if
/// given, initialised.
pub fn make_vgic(vm: &OwnedFd, nr_irqs: Option<u32>) -> Result<OwnedFd, String> {
    let v2 = host_gic_v2(vm);
    let mut dev = [if v2 { DEV_VGIC_V2 } else { DEV_VGIC_V3 }, 0, 0];
    ioctl(vm, CREATE_DEVICE, dev.as_mut_ptr() as u64)
        .map_err(|e| format!("KVM_CREATE_DEVICE: errno {e}"))?;
    let gic = owned(i64::from(dev[1]));
    for (attr, base) in vgic_addresses(v2) {
        device_attr(&gic, SET_DEVICE_ATTR, 0, attr, ptr(&base))
            .map_err(|e| format!("vGIC address {attr}: errno {e}"))?;
    }
    if let Some(nr) = nr_irqs {
        device_attr(&gic, SET_DEVICE_ATTR, 3, 0, ptr(&nr))
            .map_err(|e| format!("vGIC NR_IRQS: errno {e}"))?;
    }
    device_attr(&gic, SET_DEVICE_ATTR, 4, 0, 0).map_err(|e| format!("vGIC init: errno {e}"))?;
    Ok(gic)
}

/// An ITS for `vm` (after its GICv3, before a vCPU runs):
/// `KVM_DEV_TYPE_ARM_VGIC_ITS` created, placed at [`ITS_BASE`]
/// (`KVM_VGIC_ITS_ADDR_TYPE`), initialised (`KVM_DEV_ARM_VGIC_CTRL_INIT`).
pub fn make_its(vm: &OwnedFd) -> Result<OwnedFd, String> {
    let mut dev = [DEV_VGIC_ITS, 0, 0];
    ioctl(vm, CREATE_DEVICE, dev.as_mut_ptr() as u64)
        .map_err(|e| format!("KVM_CREATE_DEVICE: errno {e}"))?;
    let its = owned(i64::from(dev[1]));
    device_attr(&its, SET_DEVICE_ATTR, 0, 4, ptr(&ITS_BASE))
        .map_err(|e| format!("KVM_VGIC_ITS_ADDR_TYPE: errno {e}"))?;
    device_attr(&its, SET_DEVICE_ATTR, 4, 0, 0)
        .map_err(|e| format!("KVM_DEV_ARM_VGIC_CTRL_INIT: errno {e}"))?;
    Ok(its)
}

/// `KVM_SIGNAL_MSI` on the VM `vm` (a raw fd) through its ITS at
/// [`ITS_BASE`]: the MSI of `device` with `event`.
pub fn signal_msi(vm: RawFd, device: u32, event: u32) -> Result<i64, i32> {
    let doorbell = ITS_BASE + guest::gic::ITS_TRANSLATER;
    // struct kvm_msi: address_lo, address_hi, data, flags, devid, pad.
    let msi = [
        doorbell,
        u64::from(event) | u64::from(MSI_VALID_DEVID) << 32,
        u64::from(device),
        0,
    ];
    sys::ioctl(vm, SIGNAL_MSI, ptr(&msi))
}

pub fn make_vcpu(vm: &OwnedFd, id: u64, target: u32, features: u32) -> Result<Vcpu, String> {
    let fd =
        owned(ioctl(vm, CREATE_VCPU, id).map_err(|e| format!("KVM_CREATE_VCPU {id}: errno {e}"))?);
    vcpu_init(&fd, target, features).map_err(|e| format!("KVM_ARM_VCPU_INIT {id}: errno {e}"))?;
    // PSCI 1.0, as the guest expects.
    set_reg(&fd, REG_PSCI_VERSION, 0x1_0000).map_err(|e| format!("PSCI version: errno {e}"))?;
    let run = sys::mmap(4096, sys::MAP_SHARED, fd.as_raw_fd())
        .map_err(|e| format!("mmap kvm_run: errno {e}"))?;
    Ok(Vcpu { fd, run })
}
