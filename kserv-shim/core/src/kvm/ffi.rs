//! The C-callable surface of the KVM API (aarch64 only), declared again in
//! `kserv-shim/module/kserv_core.h`: the glue allocates the objects
//! (zeroed, [`kserv_core_kvm_sizes`]), makes the fds and calls in here; the
//! core calls back `kserv_glue_kvm_*` for what needs the kernel.

use super::env::{KvmEnv, Lock};
use super::errno::{Errno, ioctl_ret, ret};
use super::vcpu::{self, Vcpu};
use super::vm::{self, Host, Vm};
use crate::conduit::{Conduit, Hvc};
use crate::runpage::PageIo;
use core::ffi::c_void;
use kcore_abi::run;

/// Sizes the glue allocates (`struct kserv_kvm_sizes`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KvmSizes {
    /// Bytes of a VM's core state.
    pub vm: u64,
    /// Bytes of a vCPU's core state.
    pub vcpu: u64,
    /// Most vCPUs (ids below it).
    pub max_vcpus: u64,
}

/// What the glue knows of the machine (`struct kserv_kvm_host`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KvmHost {
    /// IPA bits a VM may have.
    pub ipa_limit: u32,
    /// CPUs online.
    pub online_cpus: u32,
    /// `MIDR_EL1`.
    pub midr: u64,
    /// `TASK_SIZE_MAX`.
    pub user_limit: u64,
    /// `ID_AA64DFR0_EL1`, sanitised.
    pub dfr0: u64,
    /// `ID_AA64PFR0_EL1`, sanitised.
    pub pfr0: u64,
}

impl KvmHost {
    fn host(&self) -> Host {
        Host {
            ipa_limit: self.ipa_limit,
            online_cpus: self.online_cpus,
            midr: self.midr,
            user_limit: self.user_limit,
            dfr0: self.dfr0,
            pfr0: self.pfr0,
        }
    }
}

unsafe extern "C" {
    fn kserv_glue_kvm_copy_from_user(ctx: *mut c_void, uaddr: u64, buf: *mut u8, len: u32) -> i32;
    fn kserv_glue_kvm_copy_to_user(ctx: *mut c_void, uaddr: u64, data: *const u8, len: u32) -> i32;
    fn kserv_glue_kvm_pin(ctx: *mut c_void, uaddr: u64, write: u32, pfn: *mut u64) -> i32;
    fn kserv_glue_kvm_unpin(pfn: u64);
    fn kserv_glue_kvm_alloc_array(words: u64) -> u64;
    fn kserv_glue_kvm_free_array(addr: u64);
    fn kserv_glue_kvm_run_read(ctx: *mut c_void, offset: u32, buf: *mut u8, len: u32);
    fn kserv_glue_kvm_run_write(ctx: *mut c_void, offset: u32, data: *const u8, len: u32);
    fn kserv_glue_kvm_lock(ctx: *mut c_void, which: u32);
    fn kserv_glue_kvm_unlock(ctx: *mut c_void, which: u32);
    fn kserv_glue_kvm_signal_pending() -> u32;
    fn kserv_glue_kvm_wait(ctx: *mut c_void, deadline: u64, max_poll_ns: u64);
    fn kserv_glue_kvm_kick(ctx: *mut c_void, id: u32);
    fn kserv_glue_kvm_enter_guest(ctx: *mut c_void);
    fn kserv_glue_kvm_leave_guest(ctx: *mut c_void);
    fn kserv_glue_kvm_log(line: *const u8, len: u32);
    fn kserv_glue_kvm_eventfd_get(fd: i32, eventfd: *mut u64) -> i32;
    fn kserv_glue_kvm_eventfd_put(eventfd: u64);
    fn kserv_glue_kvm_eventfd_signal(eventfd: u64);
    fn kserv_glue_kvm_irqfd_attach(
        ctx: *mut c_void,
        fd: i32,
        eventfd: u64,
        gsi: u32,
        resample: u32,
        hook: *mut u64,
    ) -> i32;
    fn kserv_glue_kvm_irqfd_detach(hook: u64);
    fn kserv_glue_kvm_alloc_pages(ctx: *mut c_void, order: u32) -> u64;
    fn kserv_glue_kvm_free_page(ctx: *mut c_void, pfn: u64);
    fn kserv_glue_kvm_page_write(
        ctx: *mut c_void,
        pfn: u64,
        offset: u32,
        data: *const u8,
        len: u32,
    );
    fn kserv_glue_kvm_page_read(ctx: *mut c_void, pfn: u64, offset: u32, buf: *mut u8, len: u32);
    fn kserv_glue_kvm_now() -> u64;
    fn kserv_glue_kvm_cpu() -> u32;
    fn kserv_glue_kvm_relax();
    fn kserv_glue_kvm_fence();
    fn kserv_glue_kvm_random() -> u64;
    fn kserv_glue_kvm_ptp(real: *mut u64, cycles: *mut u64) -> u32;
    fn kserv_glue_kvm_run_delay() -> u64;
    fn kserv_glue_kvm_ccsidr(csselr: u32) -> u32;
}

/// [`KvmEnv`] over the glue for one call.
struct Glue {
    hvc: Hvc,
    ctx: *mut c_void,
}

impl Glue {
    /// # Safety
    ///
    /// KCore must be underneath; `ctx` is the glue's context of the call.
    unsafe fn new(ctx: *mut c_void) -> Glue {
        Glue {
            // SAFETY: the caller guarantees KCore is underneath.
            hvc: unsafe { Hvc::new() },
            ctx,
        }
    }
}

fn status(r: i32) -> Result<(), Errno> {
    if r == 0 { Ok(()) } else { Err(r) }
}

impl Conduit for Glue {
    fn call(&mut self, regs: &mut [u64; 8]) {
        self.hvc.call(regs);
    }
}

// The run page's words are little-endian, as this kernel keeps a `u64` in
// memory: the glue copies them as they are, with no buffer and no
// conversion (a conversion through bytes costs a store per byte on this
// target, which allows no unaligned access).
const _: () = assert!(cfg!(target_endian = "little"));

/// Writes `data` at `offset` of KServ page `pfn` through the glue (the
/// core names only pages it allocated and holds; the glue checks the page
/// and the bounds again).
fn page_write(ctx: *mut c_void, pfn: u64, offset: usize, data: &[u8]) {
    // SAFETY: a valid slice of `data.len()` bytes; `ctx` is the glue's own
    // context for this call, which it passed in.
    unsafe { kserv_glue_kvm_page_write(ctx, pfn, offset as u32, data.as_ptr(), data.len() as u32) }
}

/// Reads into `buf` from `offset` of KServ page `pfn` through the glue.
fn page_read(ctx: *mut c_void, pfn: u64, offset: usize, buf: &mut [u8]) {
    // SAFETY: as for `page_write`, into a valid mutable slice.
    unsafe { kserv_glue_kvm_page_read(ctx, pfn, offset as u32, buf.as_mut_ptr(), buf.len() as u32) }
}

impl PageIo for Glue {
    fn write(&mut self, pfn: u64, offset: usize, data: &[u8]) {
        page_write(self.ctx, pfn, offset, data);
    }
    fn read(&mut self, pfn: u64, offset: usize, buf: &mut [u8]) {
        page_read(self.ctx, pfn, offset, buf);
    }
    fn write_words(&mut self, pfn: u64, first: usize, words: &[u64]) {
        let words = &words[..words.len().min(run::WORDS)];
        let (offset, len) = (8 * first as u32, 8 * words.len() as u32);
        // SAFETY: `words` is valid for reading `len` bytes, which are its
        // little-endian words (asserted above); `ctx` as in `page_write`.
        unsafe { kserv_glue_kvm_page_write(self.ctx, pfn, offset, words.as_ptr().cast(), len) }
    }
    fn read_words(&mut self, pfn: u64, first: usize, words: &mut [u64]) {
        let n = words.len().min(run::WORDS);
        let words = &mut words[..n];
        let (offset, len) = (8 * first as u32, 8 * words.len() as u32);
        // SAFETY: `words` is valid for writing `len` bytes, and any bytes
        // make valid words; `ctx` as in `page_write`.
        unsafe { kserv_glue_kvm_page_read(self.ctx, pfn, offset, words.as_mut_ptr().cast(), len) }
    }
    fn fence(&mut self) {
        // SAFETY: `smp_mb()`; no memory is accessed.
        unsafe { kserv_glue_kvm_fence() }
    }
}

impl KvmEnv for Glue {
    fn copy_from_user(&mut self, uaddr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        // SAFETY: a valid mutable slice; the glue uses copy_from_user.
        status(unsafe {
            kserv_glue_kvm_copy_from_user(self.ctx, uaddr, buf.as_mut_ptr(), buf.len() as u32)
        })
    }
    fn copy_to_user(&mut self, uaddr: u64, data: &[u8]) -> Result<(), Errno> {
        // SAFETY: a valid slice; the glue uses copy_to_user.
        status(unsafe {
            kserv_glue_kvm_copy_to_user(self.ctx, uaddr, data.as_ptr(), data.len() as u32)
        })
    }
    fn pin_user_page(&mut self, uaddr: u64, write: bool) -> Result<u64, Errno> {
        let mut pfn = 0;
        // SAFETY: `pfn` is a valid u64 to write.
        status(unsafe { kserv_glue_kvm_pin(self.ctx, uaddr, u32::from(write), &mut pfn) })?;
        Ok(pfn)
    }
    fn unpin_page(&mut self, pfn: u64) {
        // SAFETY: the core unpins only pages it pinned, once.
        unsafe { kserv_glue_kvm_unpin(pfn) }
    }
    fn alloc_pages(&mut self, order: u32) -> Option<u64> {
        // SAFETY: allocates kernel pages; 0 is none.
        let pfn = unsafe { kserv_glue_kvm_alloc_pages(self.ctx, order) };
        (pfn != 0).then_some(pfn)
    }
    fn free_page(&mut self, pfn: u64) {
        // SAFETY: the core frees only pages it allocated, once, KServ's.
        unsafe { kserv_glue_kvm_free_page(self.ctx, pfn) }
    }
    fn alloc_array(&mut self, words: usize) -> Option<u64> {
        // SAFETY: allocates zeroed kernel memory; 0 is none.
        let a = unsafe { kserv_glue_kvm_alloc_array(words as u64) };
        (a != 0).then_some(a)
    }
    fn free_array(&mut self, addr: u64) {
        // SAFETY: the core frees only arrays it allocated, once.
        unsafe { kserv_glue_kvm_free_array(addr) }
    }
    fn run_read(&mut self, offset: usize, buf: &mut [u8]) {
        // SAFETY: a valid mutable slice; the glue checks the bounds.
        unsafe {
            kserv_glue_kvm_run_read(self.ctx, offset as u32, buf.as_mut_ptr(), buf.len() as u32)
        }
    }
    fn run_write(&mut self, offset: usize, data: &[u8]) {
        // SAFETY: a valid slice; the glue checks the bounds.
        unsafe {
            kserv_glue_kvm_run_write(self.ctx, offset as u32, data.as_ptr(), data.len() as u32)
        }
    }
    fn lock(&mut self, l: Lock) {
        // SAFETY: the glue's lock of this VM.
        unsafe { kserv_glue_kvm_lock(self.ctx, l as u32) }
    }
    fn unlock(&mut self, l: Lock) {
        // SAFETY: releases what `lock` took.
        unsafe { kserv_glue_kvm_unlock(self.ctx, l as u32) }
    }
    fn now(&mut self) -> u64 {
        // SAFETY: reads the counter.
        unsafe { kserv_glue_kvm_now() }
    }
    fn cpu(&mut self) -> u32 {
        // SAFETY: reads the CPU number.
        unsafe { kserv_glue_kvm_cpu() }
    }
    fn signal_pending(&mut self) -> bool {
        // SAFETY: reads the current task's signal state.
        unsafe { kserv_glue_kvm_signal_pending() != 0 }
    }
    fn wait(&mut self, deadline: u64, max_poll_ns: u64) {
        // SAFETY: sleeps on the calling vCPU's wait queue.
        unsafe { kserv_glue_kvm_wait(self.ctx, deadline, max_poll_ns) }
    }
    fn kick(&mut self, id: usize) {
        // SAFETY: wakes and interrupts vCPU `id` of this VM, if it exists.
        unsafe { kserv_glue_kvm_kick(self.ctx, id as u32) }
    }
    fn enter_guest(&mut self) {
        // SAFETY: masks interrupts and marks the calling vCPU in the guest.
        unsafe { kserv_glue_kvm_enter_guest(self.ctx) }
    }
    fn leave_guest(&mut self) {
        // SAFETY: undoes `enter_guest`.
        unsafe { kserv_glue_kvm_leave_guest(self.ctx) }
    }
    fn relax(&mut self) {
        // SAFETY: `cond_resched()` in an ioctl.
        unsafe { kserv_glue_kvm_relax() }
    }
    fn log(&mut self, line: &[u8]) {
        // SAFETY: a valid slice.
        unsafe { kserv_glue_kvm_log(line.as_ptr(), line.len() as u32) }
    }
    fn eventfd_get(&mut self, fd: i32) -> Result<u64, Errno> {
        let mut e = 0;
        // SAFETY: `e` is a valid u64 to write.
        status(unsafe { kserv_glue_kvm_eventfd_get(fd, &mut e) })?;
        Ok(e)
    }
    fn eventfd_put(&mut self, eventfd: u64) {
        // SAFETY: the core drops only references it got, once.
        unsafe { kserv_glue_kvm_eventfd_put(eventfd) }
    }
    fn eventfd_signal(&mut self, eventfd: u64) {
        // SAFETY: a reference the core holds.
        unsafe { kserv_glue_kvm_eventfd_signal(eventfd) }
    }
    fn irqfd_attach(
        &mut self,
        fd: i32,
        eventfd: u64,
        gsi: u32,
        resample: bool,
    ) -> Result<u64, Errno> {
        let mut hook = 0;
        // SAFETY: `hook` is a valid u64 to write; `eventfd` a reference the
        // core holds for as long as the hook lives.
        status(unsafe {
            kserv_glue_kvm_irqfd_attach(self.ctx, fd, eventfd, gsi, u32::from(resample), &mut hook)
        })?;
        Ok(hook)
    }
    fn irqfd_detach(&mut self, hook: u64) {
        // SAFETY: a hook of `irqfd_attach`, detached once.
        unsafe { kserv_glue_kvm_irqfd_detach(hook) }
    }
    fn random_u64(&mut self) -> u64 {
        // SAFETY: reads the kernel's random number generator.
        unsafe { kserv_glue_kvm_random() }
    }
    fn ptp_snapshot(&mut self) -> Option<(u64, u64)> {
        let (mut real, mut cycles) = (0, 0);
        // SAFETY: two valid u64s to write.
        let ok = unsafe { kserv_glue_kvm_ptp(&mut real, &mut cycles) };
        (ok != 0).then_some((real, cycles))
    }
    fn run_delay(&mut self) -> u64 {
        // SAFETY: reads the current task's scheduler statistics.
        unsafe { kserv_glue_kvm_run_delay() }
    }
    fn ccsidr(&mut self, csselr: u8) -> u32 {
        // SAFETY: selects a cache and reads its geometry on this CPU.
        unsafe { kserv_glue_kvm_ccsidr(u32::from(csselr)) }
    }
}

/// The glue's VM state.
///
/// # Safety
///
/// `vm` must be the core state of a live VM, for as long as the reference
/// is used.
unsafe fn vm_ref<'a>(vm: *mut c_void) -> &'a Vm {
    // SAFETY: per the caller's guarantee; `Vm` is shared (its cells are
    // reached under the glue's locks).
    unsafe { &*vm.cast::<Vm>() }
}

/// The glue's vCPU state.
///
/// # Safety
///
/// `vcpu` must be the core state of a live vCPU whose mutex the caller
/// holds (or that nothing else can reach), for as long as it is used.
unsafe fn vcpu_mut<'a>(vcpu: *mut c_void) -> &'a mut Vcpu {
    // SAFETY: per the caller's guarantee.
    unsafe { &mut *vcpu.cast::<Vcpu>() }
}

/// The machine as the glue describes it.
///
/// # Safety
///
/// `host` must be valid for reading.
unsafe fn host_of(host: *const KvmHost) -> Host {
    // SAFETY: per the caller's guarantee.
    unsafe { (*host).host() }
}

/// The sizes of the core's objects.
///
/// # Safety
///
/// `out` must be valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_kvm_sizes(out: *mut KvmSizes) {
    // SAFETY: the caller guarantees `out` is valid.
    unsafe {
        out.write(KvmSizes {
            vm: size_of::<Vm>() as u64,
            vcpu: size_of::<Vcpu>() as u64,
            max_vcpus: super::vgic::MAX_VCPUS as u64,
        })
    }
}

/// Compares the kernel's values of [`super::uapi::CHECKED`] (in order) with
/// the core's: 0 if all agree, else the 1-based index of the first that
/// does not.
///
/// # Safety
///
/// `values` must be valid for `n` reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_kvm_check_uapi(values: *const u64, n: u32) -> u32 {
    // SAFETY: the caller guarantees `values` has `n` entries.
    let got = unsafe { core::slice::from_raw_parts(values, n as usize) };
    let want = &super::uapi::CHECKED;
    if got.len() != want.len() {
        return want.len() as u32 + 1;
    }
    match got.iter().zip(want).position(|(a, b)| a != b) {
        Some(i) => i as u32 + 1,
        None => 0,
    }
}

/// `/dev/kvm` ioctls but `KVM_CREATE_VM`.
///
/// # Safety
///
/// `host` must be valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_kvm_dev_ioctl(host: *const KvmHost, cmd: u32, arg: u64) -> i64 {
    // SAFETY: the caller guarantees `host` is valid.
    let host = unsafe { &*host }.host();
    vm::dev_ioctl(&host, cmd, arg)
}

/// `KVM_CREATE_VM` of type `ty` into `vm` (zeroed, `KvmSizes::vm` bytes).
///
/// # Safety
///
/// KCore must be underneath; `host` valid; `vm` the glue's fresh VM state
/// and `ctx` the glue's context for it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_kvm_vm_init(
    ctx: *mut c_void,
    host: *const KvmHost,
    vm: *mut c_void,
    ty: u64,
) -> i64 {
    // SAFETY: per the caller's guarantees.
    let mut env = unsafe { Glue::new(ctx) };
    // SAFETY: per the caller's guarantees.
    let host = unsafe { host_of(host) };
    // SAFETY: per the caller's guarantees.
    let vm = unsafe { vm_ref(vm) };
    ioctl_ret(vm::init(&mut env, vm, ty, &host).map(|()| 0))
}

/// A VM fd's ioctl but `KVM_CREATE_VCPU`/`KVM_CREATE_DEVICE`.
///
/// # Safety
///
/// As for [`kserv_core_kvm_vm_init`], `vm` initialised.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_kvm_vm_ioctl(
    ctx: *mut c_void,
    host: *const KvmHost,
    vm: *mut c_void,
    cmd: u32,
    arg: u64,
) -> i64 {
    // SAFETY: per the caller's guarantees.
    let mut env = unsafe { Glue::new(ctx) };
    // SAFETY: per the caller's guarantees.
    let host = unsafe { host_of(host) };
    // SAFETY: per the caller's guarantees.
    let vm = unsafe { vm_ref(vm) };
    ioctl_ret(vm::ioctl(&mut env, vm, &host, cmd, arg))
}

/// Reserves vCPU id `id` (first half of `KVM_CREATE_VCPU`).
///
/// # Safety
///
/// As for [`kserv_core_kvm_vm_ioctl`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_kvm_vcpu_reserve(
    ctx: *mut c_void,
    vm: *mut c_void,
    id: u64,
) -> i64 {
    // SAFETY: per the caller's guarantees.
    let mut env = unsafe { Glue::new(ctx) };
    // SAFETY: per the caller's guarantees.
    let vm = unsafe { vm_ref(vm) };
    ioctl_ret(vm::vcpu_reserve(&mut env, vm, id).map(|()| 0))
}

/// Creates reserved vCPU `id` into `vcpu` (zeroed, `KvmSizes::vcpu`
/// bytes); on failure the id is free again.
///
/// # Safety
///
/// As for [`kserv_core_kvm_vm_ioctl`]; `vcpu` the glue's fresh vCPU state.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_kvm_vcpu_create(
    ctx: *mut c_void,
    vm: *mut c_void,
    vcpu: *mut c_void,
    id: u64,
) -> i64 {
    // SAFETY: per the caller's guarantees.
    let mut env = unsafe { Glue::new(ctx) };
    // SAFETY: per the caller's guarantees.
    let vm = unsafe { vm_ref(vm) };
    // SAFETY: per the caller's guarantees.
    let v = unsafe { vcpu_mut(vcpu) };
    match vcpu::create(&mut env, vm, v, id) {
        Ok(()) => 0,
        Err(e) => {
            vm::vcpu_unreserve(&mut env, vm, id);
            ret(e)
        }
    }
}

/// Frees reserved vCPU id `id` when the glue could not create it.
///
/// # Safety
///
/// As for [`kserv_core_kvm_vm_ioctl`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_kvm_vcpu_unreserve(ctx: *mut c_void, vm: *mut c_void, id: u64) {
    // SAFETY: per the caller's guarantees.
    let mut env = unsafe { Glue::new(ctx) };
    // SAFETY: per the caller's guarantees.
    let vm = unsafe { vm_ref(vm) };
    vm::vcpu_unreserve(&mut env, vm, id);
}

/// A vCPU fd's ioctl (the glue holds the vCPU's mutex).
///
/// # Safety
///
/// As for [`kserv_core_kvm_vm_ioctl`]; `vcpu` one of the VM's, created.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_kvm_vcpu_ioctl(
    ctx: *mut c_void,
    host: *const KvmHost,
    vm: *mut c_void,
    vcpu: *mut c_void,
    cmd: u32,
    arg: u64,
) -> i64 {
    // SAFETY: per the caller's guarantees.
    let mut env = unsafe { Glue::new(ctx) };
    // SAFETY: per the caller's guarantees.
    let host = unsafe { host_of(host) };
    // SAFETY: per the caller's guarantees.
    let vm = unsafe { vm_ref(vm) };
    // SAFETY: per the caller's guarantees.
    let v = unsafe { vcpu_mut(vcpu) };
    ioctl_ret(vcpu::ioctl(&mut env, vm, &host, v, cmd, arg))
}

/// `KVM_CREATE_DEVICE`'s decision: 1 make a vGIC device fd, 2 an ITS
/// device fd, 0 a successful test, or a negative errno.
///
/// # Safety
///
/// As for [`kserv_core_kvm_vm_ioctl`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_kvm_device_create(
    ctx: *mut c_void,
    vm: *mut c_void,
    ty: u32,
    flags: u32,
) -> i64 {
    // SAFETY: per the caller's guarantees.
    let mut env = unsafe { Glue::new(ctx) };
    // SAFETY: per the caller's guarantees.
    let vm = unsafe { vm_ref(vm) };
    ioctl_ret(vm::device_create(&mut env, vm, ty, flags))
}

/// A vGIC device fd's ioctl.
///
/// # Safety
///
/// As for [`kserv_core_kvm_vm_ioctl`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_kvm_device_ioctl(
    ctx: *mut c_void,
    vm: *mut c_void,
    cmd: u32,
    arg: u64,
) -> i64 {
    // SAFETY: per the caller's guarantees.
    let mut env = unsafe { Glue::new(ctx) };
    // SAFETY: per the caller's guarantees.
    let vm = unsafe { vm_ref(vm) };
    ioctl_ret(vm::device_ioctl(&mut env, vm, cmd, arg))
}

/// An ITS device fd's ioctl.
///
/// # Safety
///
/// As for [`kserv_core_kvm_vm_ioctl`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_kvm_its_ioctl(
    ctx: *mut c_void,
    vm: *mut c_void,
    cmd: u32,
    arg: u64,
) -> i64 {
    // SAFETY: per the caller's guarantees.
    let mut env = unsafe { Glue::new(ctx) };
    // SAFETY: per the caller's guarantees.
    let vm = unsafe { vm_ref(vm) };
    ioctl_ret(super::vgic::its::device_ioctl(&mut env, vm, cmd, arg))
}

/// An irqfd's worker: its eventfd was signalled.
///
/// # Safety
///
/// As for [`kserv_core_kvm_vm_ioctl`] (the VM is live while its irqfds are
/// hooked: teardown detaches them first).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_kvm_irqfd_inject(
    ctx: *mut c_void,
    vm: *mut c_void,
    gsi: u32,
    resample: u32,
) {
    // SAFETY: per the caller's guarantees.
    let mut env = unsafe { Glue::new(ctx) };
    // SAFETY: per the caller's guarantees.
    let vm = unsafe { vm_ref(vm) };
    vm::irqfd_inject(&mut env, vm, gsi, resample != 0);
}

/// `read(2)` of a stats fd (`KVM_GET_STATS_FD`) of the VM (`vcpu` < 0)
/// or of its vCPU `vcpu`: up to `len` bytes from `offset` to the caller's
/// `uaddr`; the bytes read or a negative errno.
///
/// # Safety
///
/// As for [`kserv_core_kvm_vm_ioctl`]; `vcpu` created if not negative.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_kvm_stats_read(
    ctx: *mut c_void,
    vm: *mut c_void,
    pid: u32,
    vcpu: i32,
    offset: i64,
    uaddr: u64,
    len: u64,
) -> i64 {
    // SAFETY: per the caller's guarantees.
    let mut env = unsafe { Glue::new(ctx) };
    // SAFETY: per the caller's guarantees.
    let vm = unsafe { vm_ref(vm) };
    let vcpu = u32::try_from(vcpu).ok();
    ioctl_ret(super::stats::read(&mut env, vm, pid, vcpu, offset, uaddr, len).map(|n| n as i64))
}

/// Frees a vCPU's pages (after [`kserv_core_kvm_vm_destroy`]).
///
/// # Safety
///
/// As for [`kserv_core_kvm_vcpu_ioctl`]; no ioctl on it runs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_kvm_vcpu_destroy(ctx: *mut c_void, vcpu: *mut c_void) {
    // SAFETY: per the caller's guarantees.
    let mut env = unsafe { Glue::new(ctx) };
    // SAFETY: per the caller's guarantees.
    let v = unsafe { vcpu_mut(vcpu) };
    vcpu::destroy(&mut env, v);
}

/// Tears the VM down; returns the pages given back to the kernel and puts
/// the number kept (still KCore's or a VM's: never to be freed) in `*kept`.
///
/// # Safety
///
/// As for [`kserv_core_kvm_vm_ioctl`]; no fd of the VM is left; `kept`
/// valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_kvm_vm_destroy(
    ctx: *mut c_void,
    vm: *mut c_void,
    kept: *mut u64,
) -> u64 {
    // SAFETY: per the caller's guarantees.
    let mut env = unsafe { Glue::new(ctx) };
    // SAFETY: per the caller's guarantees.
    let vm = unsafe { vm_ref(vm) };
    let t = vm::destroy(&mut env, vm);
    // SAFETY: the caller guarantees `kept` is valid.
    unsafe { kept.write(t.kept) };
    t.released
}
