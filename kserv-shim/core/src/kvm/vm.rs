//! A VM of the KVM API: `KVM_CREATE_VM` and the VM fd's ioctls (memory
//! slots, vCPU creation, `KVM_IRQ_LINE`, the vGIC device, image
//! verification of protected VMs), the guest memory KServ gives KCore on
//! first touch, and teardown.
//!
//! KCore's MMIO ranges: KCore reports an access as MMIO (with address,
//! width and data) only inside ranges declared with `HostDeclareMmio`, at
//! most 16 per VM, and a protected VM's freeze at its first run. At the
//! first `KVM_RUN` of any vCPU the shim declares every part of the IPA
//! space that no memory slot backs (the vGIC and the VMM's devices lie
//! there). A non-protected VM's read-only slots are backed: their pages are
//! shared read-only (`HostShareGuest` `READ_ONLY`) on first touch, reads and
//! instruction fetches go to memory and writes exit as MMIO to the VMM, as
//! in KVM. A protected VM's read-only slots count as unbacked and the shim
//! emulates them access by access (KCore shares nothing with a protected
//! VM), so an instruction fetch from one faults in the guest. A slot
//! deleted later (non-protected VMs) is declared too, while ranges remain;
//! a slot created later inside a declared range is emulated access by
//! access and its pages are then mapped, so only a first touch that is an
//! instruction fetch fails there. More than 16 unbacked ranges make the
//! first `KVM_RUN` fail with `ENOSPC`.

use super::env::{KvmEnv, Lock, array};
use super::errno::{
    EBUSY, EEXIST, EFAULT, EINVAL, EIO, EKEYREJECTED, ENODEV, ENOMEM, ENOSPC, ENXIO, Errno,
};
use super::eventfd::{Eventfds, IoArgs, IrqArgs};
use super::memslot::{self, Change, MAX_SLOTS, PAGE_SIZE, Region, Slot, Slots, page};
use super::stats::{VcpuStats, VmStats};
use super::uapi::{self, cap, device, irq_line, vgic_attr, vm_type};
use super::vgic::{ACKED_WORDS, MAX_VCPUS, Vgic, v2};
use crate::hypercall::{self, CallError, CreateVm, PageInfo, VmHandle};
use core::cell::UnsafeCell;
use core::sync::atomic::Ordering::SeqCst;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use kcore_abi::kvm_ext::{self, verify_image};
use kcore_abi::manifest::Manifest;
use kcore_abi::{Error, PageOwner, share_flags, vm_flags};

mod dirty;
pub use dirty::{drain_ring, mem_fault};

/// `log2` of the block donated at creation for the stage-2 root: 16 pages
/// cover the largest concatenated root KCore builds; what the root does not
/// need becomes table pool.
pub const ROOT_ORDER: u32 = 4;
/// Most table-pool pages a VM gets (a level-3 table maps 2 MiB).
pub const MAX_POOL: usize = 8192;
/// Most MMIO ranges KCore keeps per VM.
pub const MAX_MMIO: usize = 16;
/// Most bytes of a protected VM's image signature block (the signature and
/// its signed MMIO manifest).
pub const MAX_SIGNATURE_BLOCK: usize = kcore_abi::manifest::MAX_BLOCK_LEN;

/// vCPU power states ([`VcpuShared::power`]).
pub mod power {
    /// Runnable.
    pub const ON: u32 = 0;
    /// Off: `KVM_ARM_VCPU_POWER_OFF` or PSCI `CPU_OFF`, until `CPU_ON`.
    pub const OFF: u32 = 1;
    /// Stopped by a system event (`SYSTEM_OFF`/`RESET`) until re-init.
    pub const STOPPED: u32 = 2;
}

/// What every thread may read of a vCPU.
#[derive(Default)]
pub struct VcpuShared {
    /// [`power`].
    pub power: AtomicU32,
    /// Set by a kicker, cleared by the vCPU before it enters the guest.
    pub kicked: AtomicBool,
    /// Its counters (`KVM_GET_STATS_FD`).
    pub stats: VcpuStats,
    /// Its run page (0: none yet), whose dirty ring the VM's dirty-log
    /// ioctls drain ([`VmCfg::drain_rings`]). Set once the vCPU is
    /// created; the page is freed only after the VM's teardown, when no
    /// VM ioctl runs any more.
    pub run_pfn: AtomicU64,
}

/// A VM's configuration, under [`Lock::Vm`].
pub struct VmCfg {
    slots: Slots,
    /// The table pool's pages (an array of [`MAX_POOL`] pfns).
    pool: u64,
    pool_len: usize,
    mmio: [(u64, u64); MAX_MMIO],
    n_mmio: usize,
    /// The first `KVM_RUN` prepared the VM.
    ran: bool,
    /// A protected VM's signed MMIO manifest, once its image verified:
    /// where the first `KVM_RUN` may declare MMIO (all zero: none).
    manifest: Manifest,
    /// vCPU ids: 1 reserved, 2 created.
    vcpu_state: [u8; MAX_VCPUS],
    /// Created vCPUs' ids in creation order.
    order: [u8; MAX_VCPUS],
    n_vcpus: usize,
    /// `KVM_IOEVENTFD`s and `KVM_IRQFD`s.
    eventfds: Eventfds,
    /// A protected VM's handle (0: not protected): its memory is read
    /// through KCore ([`VmCfg::kcore_reads`]).
    protected_handle: u64,
}

/// A VM. All zero until [`init`]; the glue allocates it zeroed (and frees
/// it after [`destroy`]).
pub struct Vm {
    cfg: UnsafeCell<VmCfg>,
    gic: UnsafeCell<Vgic>,
    /// Per vCPU id.
    pub vcpus: [VcpuShared; MAX_VCPUS],
    handle: AtomicU64,
    protected: AtomicBool,
    ipa_bits: AtomicU32,
    /// `KVM_REG_ARM_PSCI_VERSION`.
    pub psci_version: AtomicU64,
    /// The guest's `CNTVOFF` (the counter at creation).
    pub cntvoff: AtomicU64,
    /// How many ioeventfds there are (MMIO writes look them up only then).
    ioeventfds: AtomicU32,
    /// `KVM_CAP_ARM_SYSTEM_SUSPEND` enabled: PSCI `SYSTEM_SUSPEND` exits to
    /// the VMM as `KVM_SYSTEM_EVENT_SUSPEND`.
    pub system_suspend: AtomicBool,
    /// Its counters (`KVM_GET_STATS_FD`).
    pub stats: VmStats,
    /// The firmware feature bitmaps' bits the VMM cleared
    /// ([`super::hypercalls`]).
    pub fw_cleared: [AtomicU64; 3],
    /// The virtual and physical timers' PPIs (0: the default;
    /// [`super::timer`]).
    pub timer_ppi: [AtomicU32; 2],
    /// `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`'s options (`uapi::dirty_log`).
    manual_dirty: AtomicU64,
    /// `KVM_CAP_HALT_POLL`: [`HALT_POLL_SET`] and the VM's longest halt
    /// polling window in ns; 0 before the VMM chose one.
    halt_poll: AtomicU64,
}

/// [`Vm::halt_poll`]'s mark of a window the VMM chose.
const HALT_POLL_SET: u64 = 1 << 63;

// SAFETY: the cells are only reached through `with_cfg`/`with_gic`, which
// hold the glue's lock for them; the rest is atomics.
unsafe impl Sync for Vm {}

impl Vm {
    /// KCore's handle.
    pub fn handle(&self) -> VmHandle {
        VmHandle(self.handle.load(SeqCst))
    }
    /// Whether it is protected.
    pub fn protected(&self) -> bool {
        self.protected.load(SeqCst)
    }
    /// The longest halt-polling window of its vCPUs (ns): what
    /// `KVM_CAP_HALT_POLL` set, else [`super::env::DEFAULT_POLL`] (the
    /// module's `halt_poll_ns`), as KVM's `kvm_vcpu_max_halt_poll_ns`.
    pub fn max_halt_poll_ns(&self) -> u64 {
        let h = self.halt_poll.load(SeqCst);
        if h & HALT_POLL_SET != 0 {
            h & !HALT_POLL_SET
        } else {
            super::env::DEFAULT_POLL
        }
    }
    /// Its IPA size in bits.
    pub fn ipa_bits(&self) -> u32 {
        self.ipa_bits.load(SeqCst)
    }

    /// Runs `f` on the configuration under [`Lock::Vm`].
    pub fn with_cfg<E: KvmEnv, R>(
        &self,
        env: &mut E,
        f: impl FnOnce(&mut E, &mut VmCfg) -> R,
    ) -> R {
        env.lock(Lock::Vm);
        // SAFETY: the VM lock is held, and no caller nests `with_cfg`.
        let r = f(env, unsafe { &mut *self.cfg.get() });
        env.unlock(Lock::Vm);
        r
    }

    /// Runs `f` on the vGIC under [`Lock::Gic`]; kicks the vCPUs in the
    /// mask `f` returns afterwards.
    pub fn with_gic<E: KvmEnv, R>(&self, env: &mut E, f: impl FnOnce(&mut Vgic) -> (R, u64)) -> R {
        env.lock(Lock::Gic);
        // SAFETY: the GIC lock is held, and no caller nests `with_gic`.
        let (r, kick) = f(unsafe { &mut *self.gic.get() });
        env.unlock(Lock::Gic);
        self.kick_mask(env, kick);
        r
    }

    /// Kicks every vCPU in `mask`.
    pub fn kick_mask<E: KvmEnv>(&self, env: &mut E, mut mask: u64) {
        // Only the set bits (usually none: this runs after every vGIC call).
        while mask != 0 {
            let id = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if id < MAX_VCPUS {
                self.kick(env, id);
            }
        }
    }

    /// Kicks vCPU `id`: it re-evaluates its interrupts and power state.
    pub fn kick<E: KvmEnv>(&self, env: &mut E, id: usize) {
        if let Some(v) = self.vcpus.get(id) {
            v.kicked.store(true, SeqCst);
            env.kick(id);
        }
    }
}

/// A KCore error as an errno: malformed `EINVAL`, refused `EPERM`... as
/// close as the KVM API has.
pub fn errno_of(e: CallError) -> Errno {
    use super::errno::EPERM;
    match e {
        CallError::Kcore(Error::InvalidParameter) => EINVAL,
        CallError::Kcore(Error::Denied) => EPERM,
        CallError::Kcore(Error::Busy) => EBUSY,
        CallError::Kcore(Error::NoMemory) => ENOMEM,
        CallError::Kcore(Error::NotFound) => ENXIO,
        CallError::Kcore(Error::VerificationFailed) => EKEYREJECTED,
        _ => EIO,
    }
}

// ---- /dev/kvm ------------------------------------------------------------------------

/// What the kernel tells the shim about the machine.
#[derive(Clone, Copy, Debug)]
pub struct Host {
    /// IPA bits a VM may have (the CPU's PA size, at most 48).
    pub ipa_limit: u32,
    /// CPUs online.
    pub online_cpus: u32,
    /// `MIDR_EL1`.
    pub midr: u64,
    /// Where user addresses end (`TASK_SIZE_MAX`: Debian's 6.1 has a 48-bit
    /// user address space, its 6.12 a 52-bit one).
    pub user_limit: u64,
    /// `ID_AA64DFR0_EL1` (Linux's sanitised view): the breakpoints and
    /// watchpoints a VMM's `KVM_GUESTDBG_USE_HW` has.
    pub dfr0: u64,
    /// `ID_AA64PFR0_EL1` (Linux's sanitised view): RAS, for an SError's ESR.
    pub pfr0: u64,
}

impl Host {
    /// The CPUs' breakpoints and watchpoints (`BRPs + 1`, `WRPs + 1`).
    pub const fn debug_counts(&self) -> (u64, u64) {
        ((self.dfr0 >> 12 & 0xF) + 1, (self.dfr0 >> 20 & 0xF) + 1)
    }

    /// The CPUs have RAS (`ID_AA64PFR0_EL1.RAS`): an SError can carry an
    /// ESR (`VSESR_EL2`).
    pub const fn ras(&self) -> bool {
        self.pfr0 >> 28 & 0xF != 0
    }
}

/// `KVM_CHECK_EXTENSION` on `/dev/kvm` or a VM fd: what the shim
/// implements (0 for everything else).
pub fn check_extension(host: &Host, c: u64) -> i64 {
    match c {
        cap::USER_MEMORY
        | cap::DESTROY_MEMORY_REGION_WORKS
        | cap::JOIN_MEMORY_REGIONS_WORKS
        | cap::INTERNAL_ERROR_DATA
        | cap::SET_GUEST_DEBUG
        | cap::VCPU_EVENTS
        | cap::HALT_POLL
        | cap::ONE_REG
        | cap::ARM_PSCI
        | cap::ARM_PSCI_0_2
        | cap::READONLY_MEM
        | cap::IMMEDIATE_EXIT
        | cap::DEVICE_CTRL
        | cap::IRQCHIP
        | cap::ARM_IRQ_LINE_LAYOUT_2
        | cap::CHECK_EXTENSION_VM
        | cap::SYSTEM_EVENT_DATA
        | cap::IOEVENTFD
        | cap::IOEVENTFD_ANY_LENGTH
        | cap::IRQFD
        | cap::IRQFD_RESAMPLE
        | cap::MP_STATE
        | cap::ENABLE_CAP_VM
        | cap::ARM_SYSTEM_SUSPEND
        | cap::BINARY_STATS_FD
        | cap::STEAL_TIME
        | cap::SIGNAL_MSI
        | cap::ARM_INJECT_EXT_DABT
        | kvm_ext::CAP_ARM_PROTECTED_VM => 1,
        cap::ARM_INJECT_SERROR_ESR => i64::from(host.ras()),
        cap::GUEST_DEBUG_HW_BPS => host.debug_counts().0 as i64,
        cap::GUEST_DEBUG_HW_WPS => host.debug_counts().1 as i64,
        cap::NR_VCPUS => i64::from(host.online_cpus.clamp(1, MAX_VCPUS as u32)),
        cap::MAX_VCPUS | cap::MAX_VCPU_ID => MAX_VCPUS as i64,
        cap::NR_MEMSLOTS => MAX_SLOTS as i64,
        cap::ARM_VM_IPA_SIZE => i64::from(host.ipa_limit),
        cap::IRQ_ROUTING => i64::from(uapi::routing::MAX_ROUTES),
        cap::SET_GUEST_DEBUG2 => i64::from(uapi::guest_debug::OFFERED),
        cap::MANUAL_DIRTY_LOG_PROTECT2 => uapi::dirty_log::MANUAL_CAPS as i64,
        _ => 0,
    }
}

/// `/dev/kvm` ioctls but `KVM_CREATE_VM` (the glue's, with [`check_type`]
/// and [`init`]). Unknown ones are `EINVAL`, as arm64 KVM answers
/// (`kvm_arch_dev_ioctl`).
pub fn dev_ioctl(host: &Host, cmd: u32, arg: u64) -> i64 {
    use super::errno::ret;
    match cmd {
        uapi::GET_API_VERSION if arg == 0 => uapi::API_VERSION,
        // A VM's question only (KVM: EINVAL on /dev/kvm).
        uapi::CHECK_EXTENSION if arg == cap::MSI_DEVID => ret(EINVAL),
        uapi::CHECK_EXTENSION => check_extension(host, arg),
        uapi::GET_VCPU_MMAP_SIZE if arg == 0 => PAGE_SIZE as i64,
        _ => ret(EINVAL),
    }
}

/// `KVM_CREATE_VM`'s type: `(protected, IPA bits)`. Unknown bits and IPA
/// sizes outside `32..=ipa_limit` are `EINVAL` (`kvm_arm_setup_stage2`).
pub fn check_type(ty: u64, ipa_limit: u32) -> Result<(bool, u32), Errno> {
    if ty & !(vm_type::IPA_SIZE_MASK | kvm_ext::VM_TYPE_ARM_PROTECTED) != 0 {
        return Err(EINVAL);
    }
    let bits = match (ty & vm_type::IPA_SIZE_MASK) as u32 {
        0 => vm_type::DEFAULT_IPA_BITS,
        b => b,
    };
    if bits < vm_type::MIN_IPA_BITS || bits > ipa_limit.min(48) {
        return Err(EINVAL);
    }
    Ok((ty & kvm_ext::VM_TYPE_ARM_PROTECTED != 0, bits))
}

/// Creates the VM in KCore (`vm` zeroed by the glue).
pub fn init<E: KvmEnv>(env: &mut E, vm: &Vm, ty: u64, host: &Host) -> Result<(), Errno> {
    let (protected, ipa_bits) = check_type(ty, host.ipa_limit)?;
    let pool = env.alloc_array(MAX_POOL).ok_or(ENOMEM)?;
    let Some(root) = env.alloc_pages(ROOT_ORDER) else {
        env.free_array(pool);
        return Err(ENOMEM);
    };
    let root_pages = 1u64 << ROOT_ORDER;
    // A GICv2 host's VMs have a GICv2 and at most 8 vCPUs.
    let v2 = hypercall::host_gicv2(env);
    let created = hypercall::create_vm(
        env,
        &CreateVm {
            flags: if protected { vm_flags::PROTECTED } else { 0 },
            ipa_bits: u64::from(ipa_bits),
            max_vcpus: if v2 { v2::MAX_CPUS } else { MAX_VCPUS } as u64,
            pool_pfn: root,
            pool_pages: root_pages,
        },
    );
    let h = match created {
        Ok(h) => h,
        Err(e) => {
            for p in 0..root_pages {
                env.free_page(root + p);
            }
            env.free_array(pool);
            return Err(errno_of(e));
        }
    };
    vm.handle.store(h.0, SeqCst);
    vm.protected.store(protected, SeqCst);
    vm.ipa_bits.store(ipa_bits, SeqCst);
    vm.psci_version.store(crate::psci::VERSION_1_1, SeqCst);
    let now = env.now();
    vm.cntvoff.store(now, SeqCst);
    vm.with_cfg(env, |_, c| {
        c.protected_handle = if protected { h.0 } else { 0 };
        c.pool = pool;
        // SAFETY: the array has MAX_POOL words and is the VM's alone.
        let list = unsafe { array(pool, MAX_POOL) };
        for (p, slot) in list.iter_mut().take(root_pages as usize).enumerate() {
            *slot = root + p as u64;
        }
        c.pool_len = root_pages as usize;
    });
    // SAFETY: nothing else can reach the new VM's vGIC yet.
    let gic = unsafe { &mut *vm.gic.get() };
    gic.reset();
    gic.set_host_v2(v2);
    Ok(())
}

impl VmCfg {
    fn pool(&mut self) -> &mut [u64] {
        // SAFETY: `pool` has MAX_POOL words (init), under the VM lock.
        unsafe { array(self.pool, MAX_POOL) }
    }

    /// One more table-pool page for KCore.
    fn grow_pool<E: KvmEnv>(&mut self, env: &mut E, h: VmHandle) -> Result<(), Errno> {
        if self.pool_len >= MAX_POOL {
            return Err(ENOMEM);
        }
        let pfn = env.alloc_pages(0).ok_or(ENOMEM)?;
        match hypercall::donate_vm_pool(env, h, pfn) {
            Ok(()) => {
                let i = self.pool_len;
                self.pool()[i] = pfn;
                self.pool_len += 1;
                Ok(())
            }
            Err(e) => {
                env.free_page(pfn);
                Err(errno_of(e))
            }
        }
    }

    /// Runs `call` until KCore stops answering `NoMemory`, growing the
    /// table pool after each.
    fn with_pool<E: KvmEnv, T>(
        &mut self,
        env: &mut E,
        h: VmHandle,
        mut call: impl FnMut(&mut E) -> Result<T, CallError>,
    ) -> Result<T, Errno> {
        loop {
            match call(env) {
                Err(CallError::Kcore(Error::NoMemory)) => self.grow_pool(env, h)?,
                r => return r.map_err(errno_of),
            }
        }
    }

    fn slot_pages(&mut self, i: usize) -> &mut [u64] {
        let s = self.slots[i];
        // SAFETY: a used slot's array has `pages` words, under the VM lock.
        unsafe { array(s.array, s.pages as usize) }
    }

    /// Backs `gfn` with the VMM's page: pinned, then shared with the VM
    /// (non-protected; read-only for a read-only slot) or donated to it
    /// (protected, whose read-only slots are emulated: `EFAULT`). Nothing to
    /// do if it is backed already. In a slot that logs dirty pages a first
    /// touch that is not a `write` is shared write-protected, a write
    /// shares it writable and marks it dirty (as KVM maps it).
    pub fn back<E: KvmEnv>(
        &mut self,
        env: &mut E,
        vm: &Vm,
        gfn: u64,
        write: bool,
    ) -> Result<(), Errno> {
        let i = self.slots.find(gfn).ok_or(EFAULT)?;
        let s = self.slots[i];
        let protected = vm.protected();
        let read_only = s.readonly();
        if read_only && protected {
            return Err(EFAULT);
        }
        let k = (gfn - s.gfn) as usize;
        if self.slot_pages(i)[k] & page::PINNED != 0 {
            return Ok(());
        }
        let pfn = env.pin_user_page(s.uaddr + k as u64 * PAGE_SIZE, !read_only)?;
        let h = vm.handle();
        let logged = s.logging() && !read_only && !protected;
        let flags = if read_only {
            share_flags::READ_ONLY
        } else if logged && !write {
            share_flags::WRITE_PROTECT
        } else {
            0
        };
        let r = self.with_pool(env, h, |env| {
            if protected {
                hypercall::donate_guest(env, h, pfn, gfn)
            } else {
                hypercall::share_guest(env, h, pfn, gfn, flags)
            }
        });
        match r {
            Ok(()) => {
                let how = if protected {
                    page::DONATED
                } else {
                    page::SHARED
                };
                self.slot_pages(i)[k] = pfn | page::PINNED | how;
                if logged && write {
                    self.written(gfn);
                }
                Ok(())
            }
            Err(e) => {
                env.unpin_page(pfn);
                env.log(b"kvm: a memory slot page could not be given to the VM");
                Err(if e == ENOMEM { ENOMEM } else { EFAULT })
            }
        }
    }

    /// Whether a vCPU of the VM entered the guest.
    pub fn has_run(&self) -> bool {
        self.ran
    }

    /// A protected VM's handle: KServ cannot read its memory, KCore reads
    /// the guest's ITS and LPI tables for it (`HostReadGicTable`).
    pub fn kcore_reads(&self) -> Option<VmHandle> {
        (self.protected_handle != 0).then_some(VmHandle(self.protected_handle))
    }

    /// The slot holding `gfn`.
    pub fn slot_of(&self, gfn: u64) -> Option<Slot> {
        self.slots.find(gfn).map(|i| self.slots[i])
    }

    /// Declares `[gfn, gfn + pages)` MMIO if KCore has room.
    fn declare<E: KvmEnv>(
        &mut self,
        env: &mut E,
        h: VmHandle,
        gfn: u64,
        pages: u64,
    ) -> Result<(), Errno> {
        if self.n_mmio >= MAX_MMIO {
            return Err(ENOSPC);
        }
        hypercall::declare_mmio(env, h, gfn, pages).map_err(errno_of)?;
        self.mmio[self.n_mmio] = (gfn, pages);
        self.n_mmio += 1;
        Ok(())
    }

    /// Created vCPU ids in creation order.
    pub fn vcpu_order(&self) -> &[u8] {
        &self.order[..self.n_vcpus]
    }
}

/// The first `KVM_RUN` of the VM: a created vGIC must be placed
/// ([`Vgic::check_frames`]: `ENXIO`, `EINVAL`) and initialised (`EBUSY`),
/// in KVM's order (`vgic_v3_map_resources`), and every unbacked part of the
/// IPA space is declared MMIO (`ENOSPC` if more than KCore's 16 ranges).
/// Once per VM. The vGIC is looked at under the VM's mutex that marks the
/// VM as run, so a [`device_create`] is wholly before (this sees its vGIC)
/// or after (it sees the mark: `EBUSY`), as `kvm_vgic_create` and the
/// first run exclude each other through the vCPU's mutex.
pub fn prepare_run<E: KvmEnv>(env: &mut E, vm: &Vm) -> Result<(), Errno> {
    let ipa_bits = vm.ipa_bits();
    let h = vm.handle();
    let ipa_pages = 1u64 << (ipa_bits - 12);
    vm.with_cfg(env, |env, c| {
        // A GICv2's CPU interface address (`None` for a GICv3 or none).
        let gicc = vm.with_gic(env, |g| {
            let r = match (g.created, g.is_v2()) {
                (false, _) => Ok(None),
                (true, false) => g.check_frames(ipa_bits).map(|()| None),
                (true, true) => g.check_frames_v2(),
            };
            let r = match r {
                Ok(_) if g.created && !g.ready => Err(EBUSY),
                r => r,
            };
            (r, 0)
        })?;
        if c.ran {
            return Ok(());
        }
        // A GICv2's CPU interface: KCore maps GICV there (before the
        // unbacked space becomes MMIO), growing the table pool as needed.
        if let Some(base) = gicc {
            loop {
                match hypercall::set_vgic_cpu(env, h, base >> 12) {
                    Err(CallError::Kcore(Error::NoMemory)) => c.grow_pool(env, h)?,
                    r => break r.map_err(errno_of)?,
                }
            }
            vm.with_gic(env, |g| (g.set_cpu_mapped(), 0));
        }
        let mut ranges = [(0u64, 0u64); MAX_MMIO];
        let mut n =
            memslot::unbacked(&c.slots, ipa_pages, !vm.protected(), &mut ranges).ok_or(ENOSPC)?;
        if vm.protected() {
            // Only where the image's signer allowed MMIO (KCore refuses
            // anything wider).
            n = memslot::intersect(&mut ranges, n, c.manifest.ranges()).ok_or(ENOSPC)?;
        }
        if n > MAX_MMIO - c.n_mmio {
            return Err(ENOSPC);
        }
        for &(gfn, pages) in &ranges[..n] {
            c.declare(env, h, gfn, pages)?;
        }
        if vm.protected() {
            place_gic_frames(env, vm)?;
        }
        c.ran = true;
        Ok(())
    })
}

/// A protected VM's ITS: tells KCore where the ITS frame and the
/// redistributors that hold vCPUs lie (`HostSetGicFrames`), so that KCore
/// records the guest's programming of their tables and reads those for the
/// ITS emulation. Nothing without an ITS. A frame outside the MMIO just
/// declared (over a memory slot, or where the manifest allows no MMIO) is
/// refused by KCore: `EPERM`; more than 8 regions in use `EINVAL`.
fn place_gic_frames<E: KvmEnv>(env: &mut E, vm: &Vm) -> Result<(), Errno> {
    use kcore_abi::gic_frame as frame_kind;
    let h = vm.handle();
    let (its, regions, n) = vm.with_gic(env, |g| (g.lpi_frames(), 0));
    let Some(its) = its else {
        return Ok(());
    };
    hypercall::set_gic_frames(env, h, frame_kind::ITS, its >> 12, 1).map_err(errno_of)?;
    for &(base, frames) in &regions[..n] {
        hypercall::set_gic_frames(env, h, frame_kind::REDIST, base >> 12, frames)
            .map_err(errno_of)?;
    }
    Ok(())
}

// ---- VM fd ioctls -----------------------------------------------------------------------

/// The VM fd's ioctls but `KVM_CREATE_VCPU` and `KVM_CREATE_DEVICE` (the
/// glue's, with [`vcpu_reserve`] and [`device_create`]). Unknown ones are
/// `EINVAL` (`kvm_arch_vm_ioctl`).
pub fn ioctl<E: KvmEnv>(
    env: &mut E,
    vm: &Vm,
    host: &Host,
    cmd: u32,
    arg: u64,
) -> Result<i64, Errno> {
    match cmd {
        // MSIs need a device id once an ITS exists (KVM's
        // `msis_require_devid`).
        uapi::CHECK_EXTENSION if arg == cap::MSI_DEVID => {
            Ok(i64::from(vm.with_gic(env, |g| (g.its.created, 0))))
        }
        uapi::CHECK_EXTENSION => Ok(check_extension(host, arg)),
        uapi::SIGNAL_MSI => super::vgic::its::signal_msi(env, vm, arg),
        uapi::SET_USER_MEMORY_REGION => {
            let mut b = [0u8; uapi::size::USERSPACE_MEMORY_REGION];
            env.copy_from_user(arg, &mut b)?;
            let r = Region::parse(&b);
            // `access_ok` of the user range (`__kvm_set_memory_region`; its
            // other checks before `EEXIST` are `EINVAL` too).
            if r.uaddr
                .checked_add(r.size)
                .is_none_or(|e| e > host.user_limit)
            {
                return Err(EINVAL);
            }
            set_memory_region(env, vm, &r).map(|()| 0)
        }
        uapi::IRQ_LINE => {
            let mut b = [0u8; uapi::size::IRQ_LEVEL];
            env.copy_from_user(arg, &mut b)?;
            let irq = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let level = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) != 0;
            irq_line(env, vm, irq, level).map(|()| 0)
        }
        uapi::ARM_PREFERRED_TARGET => {
            let mut b = [0u8; uapi::size::VCPU_INIT];
            let target = uapi::vcpu_init::preferred_target(host.midr);
            b[..4].copy_from_slice(&target.to_le_bytes());
            env.copy_to_user(arg, &b)?;
            Ok(0)
        }
        uapi::CREATE_IRQCHIP => Err(ENODEV),
        uapi::ENABLE_CAP => {
            let mut b = [0u8; uapi::size::ENABLE_CAP];
            env.copy_from_user(arg, &mut b)?;
            enable_cap(vm, &b).map(|()| 0)
        }
        uapi::IOEVENTFD => {
            let mut b = [0u8; uapi::size::IOEVENTFD];
            env.copy_from_user(arg, &mut b)?;
            let a = IoArgs::parse(&b);
            vm.with_cfg(env, |env, c| {
                let r = c.eventfds.ioeventfd(env, &a);
                vm.ioeventfds.store(c.eventfds.ioeventfds() as u32, SeqCst);
                r
            })
            .map(|()| 0)
        }
        uapi::SET_GSI_ROUTING => set_gsi_routing(env, vm, arg).map(|()| 0),
        uapi::GET_DIRTY_LOG => dirty::get_dirty_log(env, vm, arg).map(|()| 0),
        uapi::CLEAR_DIRTY_LOG => dirty::clear_dirty_log(env, vm, arg).map(|()| 0),
        uapi::IRQFD => {
            let mut b = [0u8; uapi::size::IRQFD];
            env.copy_from_user(arg, &mut b)?;
            let a = IrqArgs::parse(&b);
            let ready = vm.with_gic(env, |g| (g.ready, 0));
            let lower = vm.with_cfg(env, |env, c| c.eventfds.irqfd(env, &a, ready))?;
            if let Some(gsi) = lower {
                vm.with_gic(env, |g| match g.spi_of(gsi) {
                    Some(intid) => ((), g.end_resample(intid)),
                    None => ((), 0),
                });
            }
            Ok(0)
        }
        kvm_ext::KSERV_VM_VERIFY_IMAGE => {
            let mut b = [0u8; verify_image::SIZE];
            env.copy_from_user(arg, &mut b)?;
            let w = |i: usize| {
                let mut x = [0u8; 8];
                x.copy_from_slice(&b[i..i + 8]);
                u64::from_le_bytes(x)
            };
            let (gpa, len) = (w(verify_image::GPA), w(verify_image::LEN));
            let (sig_addr, sig_len) = (w(verify_image::SIG_ADDR), w(verify_image::SIG_LEN));
            verify_image(env, vm, gpa, len, sig_addr, sig_len).map(|()| 0)
        }
        _ => Err(EINVAL),
    }
}

/// `KVM_SET_USER_MEMORY_REGION` ([`memslot::check`]'s rules). A protected
/// VM's slot whose pages were donated cannot be deleted or moved (`EBUSY`):
/// KCore gives guest pages back only at teardown.
pub fn set_memory_region<E: KvmEnv>(env: &mut E, vm: &Vm, r: &Region) -> Result<(), Errno> {
    let h = vm.handle();
    let ipa_bits = vm.ipa_bits();
    let protected = vm.protected();
    // KServ learns nothing of where a protected VM writes.
    if protected && r.flags & uapi::mem::LOG_DIRTY_PAGES != 0 {
        return Err(EINVAL);
    }
    let manual = vm.manual_dirty.load(SeqCst);
    vm.with_cfg(env, |env, c| {
        let change = memslot::check(&c.slots, r, ipa_bits)?;
        let id = r.slot & 0xFFFF;
        // The dirty log as the new flags say; on failure the slot stays
        // without one.
        let log = |env: &mut E, c: &mut VmCfg, i: usize| {
            c.slots[i].flags = r.flags;
            let done = c.set_logging(env, h, i, manual);
            if done.is_err() {
                c.slots[i].flags &= !uapi::mem::LOG_DIRTY_PAGES;
            }
            done
        };
        let Some(i) = c.slots.index_of(id) else {
            // Create: the only change of an unused id.
            let pages = r.size / PAGE_SIZE;
            let array = env.alloc_array(pages as usize).ok_or(ENOMEM)?;
            let slot = Slot {
                flags: r.flags,
                id,
                gfn: r.gpa / PAGE_SIZE,
                pages,
                uaddr: r.uaddr,
                array,
                dirty: 0,
            };
            let done = c.slots.insert(env, slot).and_then(|i| {
                log(env, c, i).inspect_err(|_| {
                    c.slots.remove(i);
                })
            });
            if done.is_err() {
                env.free_array(array);
            }
            return done;
        };
        match change {
            Change::Nothing | Change::Create => Ok(()),
            Change::Flags => log(env, c, i),
            Change::Delete | Change::Move => {
                let old = c.slots[i];
                if protected && c.slot_pages(i).iter().any(|w| w & page::DONATED != 0) {
                    return Err(EBUSY);
                }
                for k in 0..old.pages as usize {
                    let w = c.slot_pages(i)[k];
                    if w & page::SHARED != 0 {
                        let gfn = old.gfn + k as u64;
                        if hypercall::unshare_guest(env, h, gfn).is_err() {
                            // Still the VM's: keep it pinned (and the
                            // array) rather than let the kernel reuse it.
                            return Err(EIO);
                        }
                        env.unpin_page(w & page::PFN);
                        c.slot_pages(i)[k] = 0;
                    }
                }
                if c.ran {
                    // Accesses there are MMIO from now on, while KCore has
                    // room for the range.
                    let _ = c.declare(env, h, old.gfn, old.pages);
                }
                if change == Change::Delete {
                    env.free_array(old.array);
                    if old.dirty != 0 {
                        env.free_array(old.dirty);
                    }
                    c.slots.remove(i);
                    Ok(())
                } else {
                    let i = c.slots.move_to(i, r.gpa / PAGE_SIZE);
                    log(env, c, i)
                }
            }
        }
    })
}

/// `KVM_IRQ_LINE` (arm64 layout 2): CPU lines are `ENXIO` (no userspace
/// irqchip), PPIs and SPIs need the vGIC (`ENXIO` without), a PPI names a
/// vCPU by creation index (`EINVAL` past them) and INTID 16..32, an SPI
/// INTID 32.. (`EINVAL` otherwise); `EBUSY` before the vGIC's init.
pub fn irq_line<E: KvmEnv>(env: &mut E, vm: &Vm, irq: u32, level: bool) -> Result<(), Errno> {
    let (ty, idx, num) = irq_line::decode(irq);
    let created = vm.with_gic(env, |g| (g.created, 0));
    match ty {
        irq_line::TYPE_CPU => Err(ENXIO),
        irq_line::TYPE_PPI | irq_line::TYPE_SPI if !created => Err(ENXIO),
        irq_line::TYPE_PPI => {
            let id = vm.with_cfg(env, |_, c| c.vcpu_order().get(idx).copied());
            let id = id.ok_or(EINVAL)? as usize;
            if !(16..32).contains(&num) {
                return Err(EINVAL);
            }
            vm.with_gic(env, |g| match g.set_line(id, num, level) {
                Ok(k) => (Ok(()), k),
                Err(e) => (Err(e), 0),
            })
        }
        irq_line::TYPE_SPI => {
            if num < 32 {
                return Err(EINVAL);
            }
            vm.with_gic(env, |g| match g.set_line(0, num, level) {
                Ok(k) => (Ok(()), k),
                Err(e) => (Err(e), 0),
            })
        }
        _ => Err(EINVAL),
    }
}

/// An irqfd's eventfd was signalled (the glue's worker): GSI `gsi`, SPI
/// `32 + gsi`, gets an edge, or its line is held high until the guest
/// completes it (`resample`).
pub fn irqfd_inject<E: KvmEnv>(env: &mut E, vm: &Vm, gsi: u32, resample: bool) {
    vm.with_gic(env, |g| match (g.spi_of(gsi), g.msi_of(gsi)) {
        (Some(intid), _) => ((), g.irqfd(intid, resample)),
        // An MSI route: through the ITS, an edge whatever `resample`.
        (None, Some(m)) => match g.its_msi(m.addr, m.data, m.has_devid.then_some(m.devid)) {
            Ok((_, kick)) => ((), kick),
            Err(_) => ((), 0),
        },
        (None, None) => ((), 0),
    });
}

/// A guest's MMIO write that no vGIC register or writable memory took:
/// whether an ioeventfd did (signalled).
pub fn ioeventfd_write<E: KvmEnv>(env: &mut E, vm: &Vm, addr: u64, width: u64, data: u64) -> bool {
    if vm.ioeventfds.load(SeqCst) == 0 {
        return false;
    }
    vm.with_cfg(env, |env, c| c.eventfds.mmio_write(env, addr, width, data))
}

/// After an exit whose fold found resampled SPIs the guest completed
/// (`acked`, by pin, from `Vgic::take_acked`): signals the resamplefds of
/// the GSIs routed to them.
pub fn resampled<E: KvmEnv>(env: &mut E, vm: &Vm, acked: &[u64; ACKED_WORDS]) {
    let gsis = vm.with_gic(env, |g| (g.gsis_of(acked), 0));
    vm.with_cfg(env, |env, c| c.eventfds.resampled(env, &gsis));
}

/// `KVM_SET_GSI_ROUTING` (`kvm_set_irq_routing` with arm64's
/// `kvm_set_routing_entry`): at most `KVM_MAX_IRQ_ROUTES` entries and no
/// flags (`EINVAL`); each entry a GSI below that limit, either an irqchip
/// route (no flags, irqchip 0, a pin below `KVM_IRQCHIP_NUM_PINS`) or an MSI
/// (only the `VALID_DEVID` flag; the ITS translates it), one entry
/// per GSI: anything else `EINVAL`, and the table in force stays; more than
/// `vgic::MAX_MSI_ROUTES` MSI entries are `ENOSPC`. The
/// table is built in a scratch array first, so a failure changes nothing.
/// `KVM_DEV_ARM_VGIC_CTRL_INIT` installs KVM's default routing again.
fn set_gsi_routing<E: KvmEnv>(env: &mut E, vm: &Vm, arg: u64) -> Result<(), Errno> {
    use super::uapi::routing::{ENTRY_SIZE, IRQCHIP, MAX_ROUTES, MSI, MSI_VALID_DEVID, NUM_PINS};
    use super::vgic::{MAX_MSI_ROUTES, MsiRoute, ROUTE_MSI};
    let mut h = [0u8; 8];
    env.copy_from_user(arg, &mut h)?;
    let nr = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let flags = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if nr > MAX_ROUTES || flags != 0 {
        return Err(EINVAL);
    }
    // One u16 per GSI, four to a word; then three words per MSI route:
    // address, data, device id (bit 32: `VALID_DEVID`).
    let words = MAX_ROUTES as usize / 4;
    let all = words + 3 * MAX_MSI_ROUTES;
    let scratch = env.alloc_array(all).ok_or(ENOMEM)?;
    // SAFETY: just allocated with `all` words, freed below, referenced
    // nowhere else.
    let (table, msis) = unsafe { array(scratch, all) }.split_at_mut(words);
    let mut n_msi = 0;
    let mut filled = || -> Result<(), Errno> {
        for i in 0..u64::from(nr) {
            let mut e = [0u8; ENTRY_SIZE];
            env.copy_from_user(arg + 8 + i * ENTRY_SIZE as u64, &mut e)?;
            let word = |k: usize| u32::from_le_bytes([e[k], e[k + 1], e[k + 2], e[k + 3]]);
            let (gsi, ty, flags) = (word(0), word(4), word(8));
            if gsi >= MAX_ROUTES {
                return Err(EINVAL);
            }
            let route = match ty {
                IRQCHIP if flags == 0 && word(16) == 0 && word(20) < NUM_PINS => {
                    word(20) as u16 + 1
                }
                MSI if flags & !MSI_VALID_DEVID == 0 => {
                    if n_msi >= MAX_MSI_ROUTES {
                        return Err(ENOSPC);
                    }
                    let m = &mut msis[3 * n_msi..3 * n_msi + 3];
                    m[0] = u64::from(word(16)) | u64::from(word(20)) << 32;
                    m[1] = u64::from(word(24));
                    m[2] = u64::from(word(28)) | u64::from(flags) << 32;
                    n_msi += 1;
                    ROUTE_MSI | (n_msi - 1) as u16
                }
                _ => return Err(EINVAL),
            };
            let (w, shift) = (gsi as usize / 4, (gsi % 4) * 16);
            if (table[w] >> shift) & 0xFFFF != 0 {
                return Err(EINVAL);
            }
            table[w] |= u64::from(route) << shift;
        }
        Ok(())
    };
    let r = filled();
    if r.is_ok() {
        vm.with_gic(env, |g| {
            for (n, m) in msis.chunks_exact(3).take(n_msi).enumerate() {
                let route = MsiRoute {
                    addr: m[0],
                    data: m[1] as u32,
                    devid: m[2] as u32,
                    has_devid: m[2] >> 32 != 0,
                };
                g.set_msi_route(n, route);
            }
            g.set_routes(|gsi| (table[gsi / 4] >> ((gsi % 4) * 16)) as u16);
            ((), 0)
        });
    }
    env.free_array(scratch);
    r
}

/// `KSERV_VM_VERIFY_IMAGE`: the pages of `[gpa, gpa + len)` (what the VMM
/// wrote through its slots) donated to the protected VM, then KCore checks
/// them against the signature block of `sig_len` bytes at `sig_addr` (the
/// 64-byte signature, then the signed MMIO manifest). `EINVAL` for a
/// non-protected VM, a malformed range or a malformed block, `EFAULT` for a
/// range no writable slot backs, `EKEYREJECTED` if the signature does not
/// verify (the VM can then never run), `EPERM` once the VM ran or was
/// verified. The manifest is kept: the first `KVM_RUN` declares MMIO only
/// inside it.
pub fn verify_image<E: KvmEnv>(
    env: &mut E,
    vm: &Vm,
    gpa: u64,
    len: u64,
    sig_addr: u64,
    sig_len: u64,
) -> Result<(), Errno> {
    if !vm.protected() || len == 0 || !gpa.is_multiple_of(PAGE_SIZE) {
        return Err(EINVAL);
    }
    let end = gpa.checked_add(len).ok_or(EINVAL)?;
    if end > 1u64 << vm.ipa_bits() {
        return Err(EINVAL);
    }
    let sig_len = usize::try_from(sig_len).map_err(|_| EINVAL)?;
    if !(kcore_abi::manifest::SIGNATURE_LEN..=MAX_SIGNATURE_BLOCK).contains(&sig_len) {
        return Err(EINVAL);
    }
    let mut block = [0u8; MAX_SIGNATURE_BLOCK];
    env.copy_from_user(sig_addr, &mut block[..sig_len])?;
    let tail = &block[kcore_abi::manifest::SIGNATURE_LEN..sig_len];
    let manifest = match Manifest::decode(tail) {
        Ok((m, n)) if n == tail.len() => m,
        _ => return Err(EINVAL),
    };
    let h = vm.handle();
    vm.with_cfg(env, |env, c| {
        let first = gpa / PAGE_SIZE;
        let last = (end - 1) / PAGE_SIZE;
        for gfn in first..=last {
            c.back(env, vm, gfn, false)?;
        }
        let sig_pfn = env.alloc_pages(0).ok_or(ENOMEM)?;
        env.write(sig_pfn, 0, &block[..sig_len]);
        let r = hypercall::verify_image(env, h, first, len, sig_pfn);
        env.free_page(sig_pfn);
        r.map_err(errno_of)?;
        c.manifest = manifest;
        Ok(())
    })
}

// ---- vCPU creation -------------------------------------------------------------------------

/// Reserves vCPU `id` for `KVM_CREATE_VCPU`, in `kvm_vm_ioctl_create_vcpu`'s
/// order: `EINVAL` past `KVM_CAP_MAX_VCPU_ID`, `EBUSY` once the vGIC is
/// initialised, `EINVAL` if the vCPU would get a redistributor and the
/// vGIC's frames then do not fit (`kvm_vgic_vcpu_init`), `EEXIST` if taken.
pub fn vcpu_reserve<E: KvmEnv>(env: &mut E, vm: &Vm, id: u64) -> Result<(), Errno> {
    let most = if vm.with_gic(env, |g| (g.is_v2(), 0)) {
        v2::MAX_CPUS
    } else {
        MAX_VCPUS
    };
    if id >= most as u64 {
        return Err(EINVAL);
    }
    let ipa_bits = vm.ipa_bits();
    vm.with_cfg(env, |env, c| {
        let vcpus = c.n_vcpus as u64;
        let gic = vm.with_gic(env, |g| {
            let r = if g.ready {
                Err(EBUSY)
            } else if g.created && g.redist_free(vcpus) && !g.layout_ok(vcpus, ipa_bits) {
                Err(EINVAL)
            } else {
                Ok(())
            };
            (r, 0)
        });
        gic?;
        if c.vcpu_state[id as usize] != 0 {
            return Err(EEXIST);
        }
        c.vcpu_state[id as usize] = 1;
        Ok(())
    })
}

/// Undoes [`vcpu_reserve`] after a failed creation.
pub fn vcpu_unreserve<E: KvmEnv>(env: &mut E, vm: &Vm, id: u64) {
    vm.with_cfg(env, |_, c| {
        if let Some(s) = c.vcpu_state.get_mut(id as usize)
            && *s == 1
        {
            *s = 0;
        }
    });
}

/// Creates reserved vCPU `id` in KCore.
pub fn vcpu_create<E: KvmEnv>(env: &mut E, vm: &Vm, id: u64) -> Result<(), Errno> {
    let h = vm.handle();
    vm.with_cfg(env, |env, c| {
        c.with_pool(env, h, |env| hypercall::create_vcpu(env, h, id))?;
        c.vcpu_state[id as usize] = 2;
        c.order[c.n_vcpus] = id as u8;
        c.n_vcpus += 1;
        Ok::<(), Errno>(())
    })?;
    vm.vcpus[id as usize].power.store(power::OFF, SeqCst);
    if !vm.protected() {
        // The guest's counter starts at the VM's creation, as under KVM.
        let _ =
            hypercall::vcpu_set_reg(env, h, id, kcore_abi::reg::CNTVOFF, vm.cntvoff.load(SeqCst));
    }
    Ok(())
}

// ---- the vGIC device ------------------------------------------------------------------------

/// `KVM_CREATE_DEVICE`: [`DEVICE_VGIC`] or [`DEVICE_ITS`] when a device
/// fd is to be made, 0 for a successful `KVM_CREATE_DEVICE_TEST`. A GICv3
/// and its ITS are offered (`ENODEV` otherwise, as a GICv3 host without
/// GICv2 compatibility answers; a protected VM's ITS reads the guest's
/// tables through KCore, [`prepare_run`]); a second GICv3 is `EEXIST`, a first one
/// after a vCPU ran `EBUSY` (`kvm_vgic_create`'s order). Flags other than
/// `KVM_CREATE_DEVICE_TEST` are ignored, as KVM ignores them. The VM's
/// mark of a first run is read and the vGIC created under one hold of the
/// VM's mutex ([`prepare_run`]).
pub fn device_create<E: KvmEnv>(env: &mut E, vm: &Vm, ty: u32, flags: u32) -> Result<i64, Errno> {
    let v2 = vm.with_gic(env, |g| (g.is_v2(), 0));
    if ty == device::TYPE_ARM_VGIC_ITS && !v2 {
        if flags & device::CREATE_TEST != 0 {
            return Ok(0);
        }
        return vm.with_gic(env, |g| (g.its_create().map(|()| DEVICE_ITS), 0));
    }
    // The host's GIC's own version only: a GICv2 on a GICv3 would need its
    // GICC compatibility interface, a GICv3 on a GICv2 cannot be.
    let ours = if v2 {
        device::TYPE_ARM_VGIC_V2
    } else {
        device::TYPE_ARM_VGIC_V3
    };
    if ty != ours {
        return Err(ENODEV);
    }
    if flags & device::CREATE_TEST != 0 {
        return Ok(0);
    }
    vm.with_cfg(env, |env, c| {
        vm.with_gic(env, |g| {
            if g.created {
                (Err(EEXIST), 0)
            } else if c.ran {
                (Err(EBUSY), 0)
            } else {
                g.created = true;
                (Ok(DEVICE_VGIC), 0)
            }
        })
    })
}

/// [`device_create`]: make a GICv3 device fd.
pub const DEVICE_VGIC: i64 = 1;
/// [`device_create`]: make an ITS device fd.
pub const DEVICE_ITS: i64 = 2;

/// The vCPU a vGIC register attribute names (`vgic_v3_parse_attr`): for
/// `GRP_DIST_REGS` the first created (KVM's vCPU 0), for the others the one
/// whose MPIDR is in bits 32..63; `EINVAL` if there is none.
fn attr_vcpu<E: KvmEnv>(env: &mut E, vm: &Vm, group: u32, attr: u64) -> Result<usize, Errno> {
    let wanted = if group == vgic_attr::GRP_DIST_REGS {
        None
    } else {
        Some(crate::psci::vcpu_of_mpidr(attr >> 32, MAX_VCPUS).ok_or(EINVAL)?)
    };
    let found = vm.with_cfg(env, |_, c| match wanted {
        None => c.vcpu_order().first().map(|&v| usize::from(v)),
        Some(v) => c.vcpu_order().contains(&(v as u8)).then_some(v),
    });
    found.ok_or(EINVAL)
}

/// `KVM_DEV_ARM_VGIC_GRP_CPU_SYSREGS` (`op`: 0 set, 1 get, 2 has) of vCPU
/// `v` ([`attr_vcpu`]): a GIC CPU interface register ([`super::icc`]),
/// through KCore's view of the guest's virtual CPU interface. A has says
/// whether the register exists (`ENXIO`); a set or get needs the vGIC
/// initialised (`EBUSY`), then, as `kvm_sys_reg_{set,get}_user`, a set
/// reads the value first (`EFAULT`) and an unknown register is `ENOENT`.
/// A protected vCPU's are KCore's alone (`EPERM`); a running vCPU's
/// `EBUSY`.
fn cpu_sysreg<E: KvmEnv>(
    env: &mut E,
    vm: &Vm,
    op: u8,
    v: usize,
    attr: u64,
    addr: u64,
) -> Result<(), Errno> {
    use super::errno::ENOENT;
    use super::icc::{self, Icc};
    use kcore_abi::reg as kr;
    let known = icc::decode(attr & 0xFFFF);
    if op == 2 {
        return known.map(|_| ()).ok_or(ENXIO);
    }
    if !vm.with_gic(env, |g| (g.ready, 0)) {
        return Err(EBUSY);
    }
    let mut b = [0u8; 8];
    if op == 0 {
        env.copy_from_user(addr, &mut b)?;
    }
    let r = known.ok_or(ENOENT)?;
    let vtr = hypercall::guest_id_reg(env, kr::SYSREG | kr::id::ICH_VTR_EL2).map_err(errno_of)?;
    let apr_id = match r {
        Icc::Ap0r(n) if n < icc::aprs(vtr) => Some(kr::ICH_AP0R + u64::from(n)),
        Icc::Ap1r(n) if n < icc::aprs(vtr) => Some(kr::ICH_AP1R + u64::from(n)),
        _ => None,
    };
    let (vmcr, apr) = cpuif_state(env, vm, v, apr_id)?;
    if op == 1 {
        let value = icc::read(r, vmcr, apr, vtr)?;
        return env.copy_to_user(addr, &value.to_le_bytes());
    }
    let w = icc::write(r, vmcr, u64::from_le_bytes(b), vtr)?;
    cpuif_write(env, vm, v, apr_id, w)
}

/// vCPU `v`'s virtual CPU interface as KCore holds it: its `ICH_VMCR`
/// pseudo register (`ICH_VMCR_EL2`, or `GICH_VMCR` on a GICv2 host) and
/// the active-priority register `apr` (0 for none). A protected vCPU's
/// are KCore's alone (`EPERM`); a running vCPU's `EBUSY` (KCore's `Busy`).
fn cpuif_state<E: KvmEnv>(
    env: &mut E,
    vm: &Vm,
    v: usize,
    apr: Option<u64>,
) -> Result<(u64, u64), Errno> {
    if vm.protected() {
        return Err(super::errno::EPERM);
    }
    let (h, id) = (vm.handle(), v as u64);
    let vmcr = hypercall::vcpu_get_reg(env, h, id, kcore_abi::reg::ICH_VMCR).map_err(errno_of)?;
    let apr = match apr {
        Some(k) => hypercall::vcpu_get_reg(env, h, id, k).map_err(errno_of)?,
        None => 0,
    };
    Ok((vmcr, apr))
}

/// Writes what a VMM's write to vCPU `v`'s CPU interface changes (`w`;
/// [`Write::Apr`] to the active-priority register `apr`) to KCore.
fn cpuif_write<E: KvmEnv>(
    env: &mut E,
    vm: &Vm,
    v: usize,
    apr: Option<u64>,
    w: super::icc::Write,
) -> Result<(), Errno> {
    use super::icc::Write;
    let (h, id) = (vm.handle(), v as u64);
    match (w, apr) {
        (Write::Vmcr(n), _) => hypercall::vcpu_set_reg(env, h, id, kcore_abi::reg::ICH_VMCR, n),
        (Write::Apr(n), Some(k)) => hypercall::vcpu_set_reg(env, h, id, k, n),
        (Write::Apr(_), None) | (Write::Nothing, _) => Ok(()),
    }
    .map_err(errno_of)
}

/// `KVM_DEV_ARM_VGIC_GRP_CPU_REGS` of a GICv2 (`op`: 0 set, 1 get, 2 has;
/// `vgic_v2_attr_regs_access`): a GICv2 CPU interface register of the vCPU
/// in `attr`'s bits 39..32 by its offset in bits 31..0 ([`super::gicc`]),
/// through KCore's copy of the guest's `GICH_VMCR` and `GICH_APR`. A has
/// says whether the VM has the vCPU (`EINVAL`), then whether KVM's table
/// has the register (`ENXIO`); a set reads the
/// value first (`EFAULT`); then, as `GRP_DIST_REGS`, the vGIC must be
/// initialised (`EBUSY`) and have the vCPU (`EINVAL`); an offset of no
/// register reads as 0 and takes no write, as KVM's `vgic_uaccess`. A
/// protected vCPU's are KCore's alone (`EPERM`); a running vCPU's `EBUSY`.
fn cpu_regs_v2<E: KvmEnv>(
    env: &mut E,
    vm: &Vm,
    op: u8,
    attr: u64,
    addr: u64,
) -> Result<i64, Errno> {
    use super::gicc::{self, Gicc};
    let known = gicc::decode(attr & 0xFFFF_FFFF);
    if op == 2 {
        // `vgic_v2_parse_attr` first: a vCPU the VM has (`EINVAL`).
        let v = (attr >> 32) as u8;
        if !vm.with_cfg(env, |_, c| c.vcpu_order().contains(&v)) {
            return Err(EINVAL);
        }
        return known.map(|_| 0).ok_or(ENXIO);
    }
    let mut b = [0u8; 4];
    if op == 0 {
        env.copy_from_user(addr, &mut b)?;
    }
    let (v, _) = vm.with_gic(env, |g| (v2::attr_cpu(g, attr), 0))?;
    let value = match known {
        None => 0,
        Some(r) => {
            // GICH_APR is KCore's `ICH_AP1R` + 0.
            let apr_id = (r == Gicc::Apr(0)).then_some(kcore_abi::reg::ICH_AP1R);
            let (vmcr, apr) = cpuif_state(env, vm, v, apr_id)?;
            if op == 0 {
                let w = gicc::write(r, vmcr, u32::from_le_bytes(b));
                cpuif_write(env, vm, v, apr_id, w)?;
            }
            gicc::read(r, vmcr, apr)
        }
    };
    if op == 1 {
        env.copy_to_user(addr, &value.to_le_bytes())?;
    }
    Ok(0)
}

/// `KVM_ENABLE_CAP` on the VM (`kvm_vm_ioctl_enable_cap`): flags must be 0;
/// `KVM_CAP_ARM_SYSTEM_SUSPEND`, `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2` and
/// `KVM_CAP_HALT_POLL` (`args[0]` the vCPUs' longest halt-polling window
/// in ns, more than 32 bits `EINVAL`) are offered, any other is `EINVAL`.
fn enable_cap(vm: &Vm, b: &[u8; uapi::size::ENABLE_CAP]) -> Result<(), Errno> {
    let cap = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let flags = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    if flags != 0 {
        return Err(EINVAL);
    }
    match u64::from(cap) {
        cap::ARM_SYSTEM_SUSPEND => {
            vm.system_suspend.store(true, SeqCst);
            Ok(())
        }
        cap::MANUAL_DIRTY_LOG_PROTECT2 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[8..16]);
            dirty::enable_manual(vm, u64::from_le_bytes(a))
        }
        cap::HALT_POLL => {
            // `args[0]`: the window in ns, an `unsigned int` in KVM.
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[8..16]);
            let ns = u32::try_from(u64::from_le_bytes(a)).map_err(|_| EINVAL)?;
            vm.halt_poll.store(HALT_POLL_SET | u64::from(ns), SeqCst);
            Ok(())
        }
        _ => Err(EINVAL),
    }
}

/// The vGIC device fd's ioctls: `KVM_{SET,GET,HAS}_DEVICE_ATTR` for the
/// groups `ADDR` (DIST, REDIST, REDIST_REGION), `NR_IRQS`, `CTRL` (`INIT`, `SAVE_PENDING_TABLES`), the
/// 32-bit registers of `DIST_REGS` and `REDIST_REGS` and `LEVEL_INFO`; other
/// attributes `ENXIO`, other ioctls `ENOTTY` (`kvm_device_ioctl`).
pub fn device_ioctl<E: KvmEnv>(env: &mut E, vm: &Vm, cmd: u32, arg: u64) -> Result<i64, Errno> {
    use super::errno::ENOTTY;
    let op = match cmd {
        uapi::SET_DEVICE_ATTR => 0,
        uapi::GET_DEVICE_ATTR => 1,
        uapi::HAS_DEVICE_ATTR => 2,
        _ => return Err(ENOTTY),
    };
    let mut b = [0u8; uapi::size::DEVICE_ATTR];
    env.copy_from_user(arg, &mut b)?;
    let w = |i: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(x)
    };
    let group = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let (attr, addr) = (w(8), w(16));
    let ipa_bits = vm.ipa_bits();
    if vm.with_gic(env, |g| (g.is_v2(), 0)) {
        return device_ioctl_v2(env, vm, op, group, attr, addr);
    }
    match (group, attr) {
        (vgic_attr::GRP_ADDR, vgic_attr::ADDR_TYPE_DIST | vgic_attr::ADDR_TYPE_REDIST) => {
            let redist = attr == vgic_attr::ADDR_TYPE_REDIST;
            base_attr(
                env,
                op,
                addr,
                |env, base| {
                    let vcpus = vm.with_cfg(env, |_, c| c.n_vcpus);
                    vm.with_gic(env, |g| (g.set_base(redist, base, ipa_bits, vcpus), 0))
                },
                |env| vm.with_gic(env, |g| (g.base(redist), 0)),
            )
        }
        (vgic_attr::GRP_ADDR, vgic_attr::ADDR_TYPE_REDIST_REGION) => {
            if op == 2 {
                return Ok(0);
            }
            let mut v = [0u8; 8];
            env.copy_from_user(addr, &mut v)?;
            let value = u64::from_le_bytes(v);
            if op == 0 {
                let vcpus = vm.with_cfg(env, |_, c| c.n_vcpus);
                vm.with_gic(env, |g| (g.set_redist_region(value, ipa_bits, vcpus), 0))?;
            } else {
                let region = vm.with_gic(env, |g| (g.redist_region(value), 0))?;
                env.copy_to_user(addr, &region.to_le_bytes())?;
            }
            Ok(0)
        }
        (vgic_attr::GRP_NR_IRQS, _) => nr_irqs(env, vm, op, addr),
        (vgic_attr::GRP_DIST_REGS | vgic_attr::GRP_REDIST_REGS, _) => {
            let v = attr_vcpu(env, vm, group, attr)?;
            let offset = attr & 0xFFFF_FFFF;
            let rd = (group == vgic_attr::GRP_REDIST_REGS).then_some(v);
            if op == 2 {
                // `vgic_v3_has_attr_regs`: the register table GET and SET
                // go through.
                let has = vm.with_gic(env, |g| (g.has_reg(rd.is_some(), offset), 0));
                return if has { Ok(0) } else { Err(ENXIO) };
            }
            let mut v = [0u8; 4];
            if op == 0 {
                env.copy_from_user(addr, &mut v)?;
            }
            let value = u32::from_le_bytes(v);
            let now = env.now();
            let (read, kick) = vm.with_gic(env, |g| {
                g.set_clock(now);
                match g.uaccess(rd, offset, op == 0, value) {
                    Ok(r) => (Ok(r), 0),
                    Err(e) => (Err(e), 0),
                }
            })?;
            vm.kick_mask(env, kick);
            if op == 1 {
                env.copy_to_user(addr, &(read as u32).to_le_bytes())?;
            }
            Ok(0)
        }
        (vgic_attr::GRP_CPU_SYSREGS, _) => {
            let v = attr_vcpu(env, vm, group, attr)?;
            cpu_sysreg(env, vm, op, v, attr, addr).map(|()| 0)
        }
        (vgic_attr::GRP_LEVEL_INFO, _) => {
            // `vgic_v3_attr_regs_access`'s order: the vCPU by MPIDR
            // (`EINVAL`), the value (`EFAULT`), `EBUSY` before init, then
            // info 0 (line level) only and a multiple of 32 (each `EINVAL`).
            // A has asks only about the info (`vgic_v3_has_attr`).
            let info = (attr >> 10) & 0x3F_FFFF;
            let intid = (attr & 0x3FF) as u32;
            if op == 2 {
                return if info == 0 { Ok(0) } else { Err(ENXIO) };
            }
            let v = attr_vcpu(env, vm, group, attr)?;
            let mut b = [0u8; 4];
            if op == 0 {
                env.copy_from_user(addr, &mut b)?;
            }
            let val = u32::from_le_bytes(b);
            let read = vm.with_gic(env, |g| {
                if !g.ready {
                    (Err(EBUSY), 0)
                } else if info != 0 || !intid.is_multiple_of(32) || !g.has_vcpu(v) {
                    (Err(EINVAL), 0)
                } else if op == 0 {
                    (Ok(0), g.set_line_levels(v, intid, val))
                } else {
                    (Ok(g.line_levels(v, intid)), 0)
                }
            })?;
            if op == 1 {
                env.copy_to_user(addr, &read.to_le_bytes())?;
            }
            Ok(0)
        }
        (vgic_attr::GRP_CTRL, vgic_attr::SAVE_PENDING_TABLES) if op != 1 => {
            if op == 0 {
                super::vgic::its::save_pending(env, vm)?;
            }
            Ok(0)
        }
        (vgic_attr::GRP_CTRL, vgic_attr::CTRL_INIT) if op != 1 => ctrl_init(env, vm, op),
        _ => Err(ENXIO),
    }
}

/// A `KVM_DEV_ARM_VGIC_GRP_ADDR` base (`op`: 0 set from the user's `u64`
/// at `addr`, 1 get into it, `VGIC_ADDR_UNDEF` when unset, 2 has).
fn base_attr<E: KvmEnv>(
    env: &mut E,
    op: u8,
    addr: u64,
    set: impl FnOnce(&mut E, u64) -> Result<(), Errno>,
    get: impl FnOnce(&mut E) -> Option<u64>,
) -> Result<i64, Errno> {
    match op {
        0 => {
            let mut v = [0u8; 8];
            env.copy_from_user(addr, &mut v)?;
            set(env, u64::from_le_bytes(v))?;
        }
        1 => {
            let v = get(env).unwrap_or(vgic_attr::ADDR_UNDEF);
            env.copy_to_user(addr, &v.to_le_bytes())?;
        }
        _ => {}
    }
    Ok(0)
}

/// `KVM_DEV_ARM_VGIC_GRP_NR_IRQS` (`op`: 0 set, 1 get, 2 has).
fn nr_irqs<E: KvmEnv>(env: &mut E, vm: &Vm, op: u8, addr: u64) -> Result<i64, Errno> {
    match op {
        0 => {
            let mut v = [0u8; 4];
            env.copy_from_user(addr, &mut v)?;
            let n = u32::from_le_bytes(v);
            vm.with_gic(env, |g| (g.set_nr_irqs(n), 0))?;
        }
        1 => {
            let n = vm.with_gic(env, |g| (g.nr_irqs().max(32), 0));
            env.copy_to_user(addr, &n.to_le_bytes())?;
        }
        _ => {}
    }
    Ok(0)
}

/// `KVM_DEV_ARM_VGIC_CTRL_INIT` (`op`: 0 set, 2 has).
fn ctrl_init<E: KvmEnv>(env: &mut E, vm: &Vm, op: u8) -> Result<i64, Errno> {
    if op == 0 {
        // Under the VM's mutex, as `vcpu_reserve`'s check of the
        // vGIC: a creation is wholly before (the vGIC gets its
        // vCPU), in the middle (KVM's EBUSY) or after (EBUSY).
        vm.with_cfg(env, |env, c| {
            if c.vcpu_state.contains(&1) {
                return Err(EBUSY);
            }
            vm.with_gic(env, |g| {
                g.init(c.vcpu_order());
                ((), 0)
            });
            Ok(())
        })?;
    }
    Ok(0)
}

/// A GICv2 device fd's attributes (`vgic_v2_{set,get,has}_attr`): `ADDR`
/// (`KVM_VGIC_V2_ADDR_TYPE_DIST`, `_CPU`: [`v2::ADDR_TYPE_DIST`]),
/// `NR_IRQS`, `CTRL_INIT` and the distributor's registers (`DIST_REGS`,
/// the vCPU in bits 39..32); everything else `ENXIO`, including GICv3
/// address types (KVM's `ENODEV` from `vgic_check_type`, reported as
/// `ENXIO`), and the CPU interface's registers (`GRP_CPU_REGS`,
/// [`cpu_regs_v2`]).
fn device_ioctl_v2<E: KvmEnv>(
    env: &mut E,
    vm: &Vm,
    op: u8,
    group: u32,
    attr: u64,
    addr: u64,
) -> Result<i64, Errno> {
    match (group, attr) {
        (vgic_attr::GRP_ADDR, _) => {
            // `kvm_vgic_addr`: a write's value first (`EFAULT`), then the
            // type.
            let mut v = [0u8; 8];
            if op == 0 {
                env.copy_from_user(addr, &mut v)?;
            }
            let cpu = match attr {
                v2::ADDR_TYPE_DIST => false,
                v2::ADDR_TYPE_CPU => true,
                _ => return Err(ENXIO),
            };
            let ipa_bits = vm.ipa_bits();
            base_attr(
                env,
                op,
                addr,
                |env, base| vm.with_gic(env, |g| (g.set_base_v2(cpu, base, ipa_bits), 0)),
                |env| vm.with_gic(env, |g| (g.base_v2(cpu), 0)),
            )
        }
        (vgic_attr::GRP_NR_IRQS, _) => nr_irqs(env, vm, op, addr),
        (vgic_attr::GRP_CTRL, vgic_attr::CTRL_INIT) if op != 1 => ctrl_init(env, vm, op),
        (vgic_attr::GRP_CPU_REGS, _) => cpu_regs_v2(env, vm, op, attr, addr),
        (vgic_attr::GRP_DIST_REGS, _) => {
            let offset = attr & 0xFFFF_FFFF;
            if op == 2 {
                return if offset.is_multiple_of(4) && offset < v2::DIST_SIZE {
                    Ok(0)
                } else {
                    Err(ENXIO)
                };
            }
            let mut b = [0u8; 4];
            if op == 0 {
                env.copy_from_user(addr, &mut b)?;
            }
            let now = env.now();
            let (read, kick) = vm.with_gic(env, |g| {
                g.set_clock(now);
                let r = v2::attr_cpu(g, attr)
                    .map(|(v, o)| g.uaccess_v2(v, o, op == 0, u32::from_le_bytes(b)));
                (r, 0)
            })?;
            vm.kick_mask(env, kick);
            if op == 1 {
                env.copy_to_user(addr, &(read as u32).to_le_bytes())?;
            }
            Ok(0)
        }
        _ => Err(ENXIO),
    }
}

// ---- teardown ---------------------------------------------------------------------------

/// What [`destroy`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Teardown {
    /// Pages back with the kernel (unpinned or freed).
    pub released: u64,
    /// Pages KServ did not get back: kept pinned or never freed.
    pub kept: u64,
}

/// Tears the VM down (no vCPU runs any more: every fd is closed):
/// `HostTeardownVm`, `HostReclaimPage` for every page it got, and each page
/// goes back to the kernel only once KCore says it is KServ's.
pub fn destroy<E: KvmEnv>(env: &mut E, vm: &Vm) -> Teardown {
    let h = vm.handle();
    let mut t = Teardown::default();
    if h.0 == 0 {
        return t;
    }
    vm.with_cfg(env, |env, c| c.eventfds.release(env));
    vm.ioeventfds.store(0, SeqCst);
    // KCore's answers are what a page's return rests on: after a successful
    // `HostTeardownVm` every page KServ shared with the VM is KServ's
    // alone, and a successful `HostReclaimPage` makes a page KServ's; only
    // when one of them failed is the page's owner asked (and the page kept
    // unless it is KServ's).
    let torn_down = hypercall::teardown_vm(env, h).is_ok();
    let is_host = |env: &mut E, pfn: u64| {
        matches!(
            hypercall::page_owner(env, pfn),
            Ok(PageInfo {
                owner: PageOwner::Host,
                ..
            })
        )
    };
    vm.with_cfg(env, |env, c| {
        for i in 0..c.slots.len() {
            for k in 0..c.slots[i].pages as usize {
                let w = c.slot_pages(i)[k];
                if w & page::PINNED == 0 {
                    continue;
                }
                let pfn = w & page::PFN;
                let returned = if w & page::DONATED != 0 {
                    hypercall::reclaim_page(env, h, pfn).is_ok()
                } else {
                    torn_down
                };
                if returned || is_host(env, pfn) {
                    env.unpin_page(pfn);
                    t.released += 1;
                } else {
                    t.kept += 1;
                }
            }
            env.free_array(c.slots[i].array);
            if c.slots[i].dirty != 0 {
                env.free_array(c.slots[i].dirty);
            }
        }
        c.slots.release(env);
        for k in 0..c.pool_len {
            let pfn = c.pool()[k];
            let returned = hypercall::reclaim_page(env, h, pfn).is_ok();
            if returned || is_host(env, pfn) {
                env.free_page(pfn);
                t.released += 1;
            } else {
                t.kept += 1;
            }
        }
        c.pool_len = 0;
        env.free_array(c.pool);
        c.pool = 0;
    });
    vm.handle.store(0, SeqCst);
    t
}
