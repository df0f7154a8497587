//! The C-callable surface of the core, declared again in
//! `kserv-shim/module/kserv_core.h` (keep the two in step). The build pulls
//! every global `kserv_core_*` symbol of the static library into the module's
//! `core.o` (`ld -r -u <symbol>`), so the names carry that prefix.
//!
//! Only the functions that issue hypercalls are `unsafe`: their caller must
//! have established that KCore is underneath (see [`Hvc::new`]).

use crate::conduit::{Conduit, Hvc};
use crate::guest_run;
use crate::request;
use crate::runpage::PageIo;
use crate::version::{self, KcoreVersion};
use crate::vm_selftest::{self, Access, Env, MAX_IMAGE_PAGES, MEM_PAGES, Probe, SIGNATURE_LEN};
use core::ffi::{c_char, c_void};
use kcore_abi::run;

/// `s` followed by a NUL, as a C string in a static. `N` must be `s.len() + 1`
/// (checked at compile time).
const fn nul_terminated<const N: usize>(s: &str) -> [u8; N] {
    let b = s.as_bytes();
    assert!(b.len() + 1 == N, "N must leave room for exactly one NUL");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < b.len() {
        assert!(b[i] != 0, "no NUL inside the string");
        out[i] = b[i];
        i += 1;
    }
    out
}

static DT_HYPERVISOR_COMPATIBLE: [u8; kcore_abi::dt::HYPERVISOR_COMPATIBLE.len() + 1] =
    nul_terminated(kcore_abi::dt::HYPERVISOR_COMPATIBLE);
static DT_ABI_VERSION_PROP: [u8; kcore_abi::dt::ABI_VERSION_PROP.len() + 1] =
    nul_terminated(kcore_abi::dt::ABI_VERSION_PROP);
static DT_RESERVED_COMPATIBLE: [u8; kcore_abi::dt::RESERVED_COMPATIBLE.len() + 1] =
    nul_terminated(kcore_abi::dt::RESERVED_COMPATIBLE);

/// `compatible` of the device-tree node announcing KCore, as a C string.
#[unsafe(no_mangle)]
pub extern "C" fn kserv_core_dt_hypervisor_compatible() -> *const c_char {
    DT_HYPERVISOR_COMPATIBLE.as_ptr().cast()
}

/// Name of that node's ABI version property, as a C string.
#[unsafe(no_mangle)]
pub extern "C" fn kserv_core_dt_abi_version_prop() -> *const c_char {
    DT_ABI_VERSION_PROP.as_ptr().cast()
}

/// `compatible` of the `/reserved-memory` children covering KCore, as a C
/// string.
#[unsafe(no_mangle)]
pub extern "C" fn kserv_core_dt_reserved_compatible() -> *const c_char {
    DT_RESERVED_COMPATIBLE.as_ptr().cast()
}

/// Parses a raw hypercall request (`"<id> [a1 .. a6]"` in hex, see
/// [`request`]) from `len` bytes at `text` into `*regs`. Returns 0, or -1 and
/// leaves `*regs` alone when the text is not a request.
///
/// # Safety
///
/// `text` must be valid for reading `len` bytes and `regs` for writing eight
/// `u64`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_parse_hvc(
    text: *const u8,
    len: usize,
    regs: *mut [u64; 8],
) -> i32 {
    // SAFETY: the caller guarantees `text` is valid for `len` bytes.
    let text = unsafe { core::slice::from_raw_parts(text, len) };
    match request::parse(text) {
        Ok(r) => {
            // SAFETY: the caller guarantees `regs` is valid for writes.
            unsafe { regs.write(r) };
            0
        }
        Err(_) => -1,
    }
}

/// The ABI version this shim was built against, `major << 16 | minor`.
#[unsafe(no_mangle)]
pub extern "C" fn kserv_core_abi_version() -> u32 {
    kcore_abi::abi_version() as u32
}

/// Whether KCore's ABI version `major.minor` works with this shim: a
/// [`version::Compat`] discriminant (0 = compatible).
#[unsafe(no_mangle)]
pub extern "C" fn kserv_core_check_abi(major: u16, minor: u16) -> u32 {
    version::check(major, minor) as u32
}

/// Asks KCore for its version. Returns 0 and fills `*out`, or KCore's negative
/// status (or [`version::MALFORMED_REPLY`]) and leaves `*out` alone.
///
/// # Safety
///
/// KCore must be underneath this kernel (see [`Hvc::new`]), and `out` must be
/// valid for writing one `KcoreVersion`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_version(out: *mut KcoreVersion) -> i64 {
    // SAFETY: the caller guarantees KCore is underneath.
    let mut hvc = unsafe { Hvc::new() };
    match version::query(&mut hvc) {
        Ok(v) => {
            // SAFETY: the caller guarantees `out` is valid for writes.
            unsafe { out.write(v) };
            0
        }
        Err(status) => status,
    }
}

/// Issues one raw hypercall with `regs[0]` = function id and `regs[1..]` the
/// arguments; on return `regs` holds `x0..=x7`. For tests that probe how KCore
/// answers ids it does not implement.
///
/// # Safety
///
/// KCore must be underneath this kernel (see [`Hvc::new`]), and `regs` must be
/// valid for reads and writes of eight `u64`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_hvc(regs: *mut [u64; 8]) {
    // SAFETY: the caller guarantees KCore is underneath.
    let mut hvc = unsafe { Hvc::new() };
    // SAFETY: the caller guarantees `regs` is valid and not aliased for the call.
    let regs = unsafe { &mut *regs };
    hvc.call(regs);
}

// ---- the VM isolation self-test (debugfs vm_selftest) ------------------------------

/// One VM's pages (`struct kserv_vmst_vm`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct VmstVm {
    /// First of [`vm_selftest::POOL_PAGES`] contiguous table pages, aligned
    /// to that many.
    pub pool_pfn: u64,
    /// One more table page.
    pub extra_pool_pfn: u64,
    /// The image pages; the first `ceil(image_len / 4096)` are used.
    pub image_pfns: [u64; MAX_IMAGE_PAGES],
}

/// The self-test's inputs (`struct kserv_vmst_args`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct VmstArgs {
    /// Handed back to every `kserv_glue_vmst_*` call.
    pub ctx: *mut c_void,
    /// Pages allocated at each `pool_pfn` (must be
    /// [`vm_selftest::POOL_PAGES`]).
    pub pool_pages: u64,
    /// The test image.
    pub image: *const u8,
    /// Its length (1..=[`vm_selftest::MAX_IMAGE_LEN`]).
    pub image_len: u64,
    /// Its signature block, zero-padded to [`vm_selftest::SIGNATURE_LEN`].
    pub sig: *const u8,
    /// The good VM and the tampered one.
    pub vm: [VmstVm; 2],
    /// The first VM's memory pages.
    pub mem_pfns: [u64; MEM_PAGES],
    /// KServ's page that carries the signature to KCore.
    pub sig_pfn: u64,
}

const _: () = assert!(size_of::<VmstVm>() == 8 * (2 + MAX_IMAGE_PAGES));
const _: () = assert!(size_of::<VmstArgs>() == 8 * 5 + 2 * size_of::<VmstVm>() + 8 * MEM_PAGES + 8);

unsafe extern "C" {
    /// Copies `len` bytes from `data` to page `pfn` at `offset`.
    fn kserv_glue_vmst_write(ctx: *mut c_void, pfn: u64, offset: u32, data: *const u8, len: u32);
    /// Copies `len` bytes of page `pfn` at `offset` to `buf`.
    fn kserv_glue_vmst_read(ctx: *mut c_void, pfn: u64, offset: u32, buf: *mut u8, len: u32);
    /// Accesses page `pfn` from a new kthread: 0 completed (`*value` read),
    /// 1 faulted, 2 hung, a negative errno if it could not be tried.
    /// `expect_fault` only changes what the glue logs.
    fn kserv_glue_vmst_probe(
        ctx: *mut c_void,
        pfn: u64,
        write: u32,
        expect_fault: u32,
        value: *mut u64,
    ) -> i64;
    /// Page `pfn` may go back to the kernel's allocator.
    fn kserv_glue_vmst_release(ctx: *mut c_void, pfn: u64);
    /// Logs `len` bytes at `line` as one line.
    fn kserv_glue_vmst_log(ctx: *mut c_void, line: *const u8, len: u32);
}

/// [`Env`] over the C glue's callbacks and the HVC conduit.
struct Glue {
    hvc: Hvc,
    ctx: *mut c_void,
}

impl Conduit for Glue {
    fn call(&mut self, regs: &mut [u64; 8]) {
        self.hvc.call(regs);
    }
}

impl Env for Glue {
    fn write(&mut self, pfn: u64, offset: usize, data: &[u8]) {
        // SAFETY: the glue copies `data.len()` bytes from a valid slice into
        // one of its own pages, which the self-test only names while KServ
        // holds it; offset + len stay within the page (`vm_selftest` writes
        // at most a page).
        unsafe {
            kserv_glue_vmst_write(
                self.ctx,
                pfn,
                offset as u32,
                data.as_ptr(),
                data.len() as u32,
            )
        }
    }

    fn read(&mut self, pfn: u64, offset: usize, buf: &mut [u8]) {
        // SAFETY: as for `write`, into a valid mutable slice.
        unsafe {
            kserv_glue_vmst_read(
                self.ctx,
                pfn,
                offset as u32,
                buf.as_mut_ptr(),
                buf.len() as u32,
            )
        }
    }

    fn probe(&mut self, pfn: u64, access: Access, expect_fault: bool) -> Probe {
        let mut value = 0u64;
        let write = u32::from(access == Access::Write);
        let expect_fault = u32::from(expect_fault);
        // SAFETY: `value` is a valid u64 for the glue to write; the access
        // itself happens in a kthread the glue sacrifices.
        match unsafe { kserv_glue_vmst_probe(self.ctx, pfn, write, expect_fault, &mut value) } {
            0 => Probe::Completed(value),
            1 => Probe::Faulted,
            2 => Probe::Hung,
            e => Probe::NotRun(e),
        }
    }

    fn release(&mut self, pfn: u64) {
        // SAFETY: the glue frees only pages it allocated for this run.
        unsafe { kserv_glue_vmst_release(self.ctx, pfn) }
    }

    fn log(&mut self, line: &[u8]) {
        // SAFETY: a valid slice of `line.len()` bytes.
        unsafe { kserv_glue_vmst_log(self.ctx, line.as_ptr(), line.len() as u32) }
    }
}

/// `sizeof(struct kserv_vmst_args)` as the core sees it: the glue refuses
/// to run the self-test if its own differs.
#[unsafe(no_mangle)]
pub extern "C" fn kserv_core_vmst_args_size() -> usize {
    size_of::<VmstArgs>()
}

/// Runs the VM isolation self-test ([`vm_selftest::run`]) over the pages
/// and image in `*args`, logging through the glue. Returns the number of
/// failed steps (0: every step passed). Every page is either released
/// through `kserv_glue_vmst_release` or kept because KCore may own it.
///
/// # Safety
///
/// KCore must be underneath this kernel (see [`Hvc::new`]). `args` must be
/// valid, `image` valid for `image_len` bytes (at most
/// [`vm_selftest::MAX_IMAGE_LEN`]) and `sig` for [`SIGNATURE_LEN`], and every pfn in it a
/// page the glue allocated for this run, distinct and KServ's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_vm_selftest(args: *const VmstArgs) -> u32 {
    // SAFETY: the caller guarantees `args` is valid.
    let a = unsafe { &*args };
    let len = (a.image_len as usize).min(vm_selftest::MAX_IMAGE_LEN);
    // SAFETY: the caller guarantees `image` is valid for `image_len` bytes.
    let image = unsafe { core::slice::from_raw_parts(a.image, len) };
    // SAFETY: the caller guarantees `sig` is valid for SIGNATURE_LEN bytes.
    let signature = unsafe { &*a.sig.cast::<[u8; SIGNATURE_LEN]>() };
    let pages = len.div_ceil(vm_selftest::PAGE_SIZE);
    let setup = vm_selftest::Setup {
        pool_pages: a.pool_pages as usize,
        image,
        signature,
        vms: [0, 1].map(|v| vm_selftest::VmPages {
            pool: a.vm[v].pool_pfn,
            extra_pool: a.vm[v].extra_pool_pfn,
            image: &a.vm[v].image_pfns[..pages],
        }),
        mem: &a.mem_pfns,
        sig_pfn: a.sig_pfn,
    };
    let mut env = Glue {
        // SAFETY: the caller guarantees KCore is underneath.
        hvc: unsafe { Hvc::new() },
        ctx: a.ctx,
    };
    vm_selftest::run(&mut env, &setup).failed
}

// ---- running the test guest (debugfs guest_run) -------------------------------------

/// The guest run's inputs (`struct kserv_gr_args`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GrArgs {
    /// Handed back to every `kserv_glue_gr_*` call that takes a context.
    pub ctx: *mut c_void,
    /// The threads' shared state: [`kserv_core_gr_state_size`] bytes,
    /// zeroed, aligned to 8.
    pub state: *mut c_void,
    /// Its size in bytes.
    pub state_size: u64,
    /// The flat guest image.
    pub image: *const u8,
    /// Its length (1..=[`guest_run::MAX_IMAGE_LEN`]).
    pub image_len: u64,
    /// Its signature block, zero-padded to [`vm_selftest::SIGNATURE_LEN`].
    pub sig: *const u8,
    /// Wall-clock limit of the run, in seconds; 0 for
    /// [`guest_run::TIMEOUT_SECS`].
    pub timeout_secs: u64,
}

const _: () = assert!(size_of::<GrArgs>() == 7 * 8);

/// Results of [`kserv_core_guest_run`].
pub mod gr_result {
    /// Every check passed.
    pub const PASS: u32 = 0;
    /// Something failed; everything was cleaned up.
    pub const FAIL: u32 = 1;
    /// Something failed and a vCPU thread never came back: the state and
    /// the glue's context must be leaked (the thread may still use them).
    pub const STUCK: u32 = 2;
}

unsafe extern "C" {
    /// A zeroed, naturally aligned block of `2^order` pages (each freeable
    /// alone); its first pfn, or 0.
    fn kserv_glue_gr_alloc(ctx: *mut c_void, order: u32) -> u64;
    /// Frees one page from `kserv_glue_gr_alloc`.
    fn kserv_glue_gr_free(ctx: *mut c_void, pfn: u64);
    /// Copies `len` bytes from `data` to page `pfn` at `offset`.
    fn kserv_glue_gr_write(ctx: *mut c_void, pfn: u64, offset: u32, data: *const u8, len: u32);
    /// Copies `len` bytes of page `pfn` at `offset` to `buf`.
    fn kserv_glue_gr_read(ctx: *mut c_void, pfn: u64, offset: u32, buf: *mut u8, len: u32);
    /// Logs `len` bytes at `line` as one line.
    fn kserv_glue_gr_log(ctx: *mut c_void, line: *const u8, len: u32);
    /// `CNTPCT_EL0`.
    fn kserv_glue_gr_now() -> u64;
    /// `CNTFRQ_EL0`.
    fn kserv_glue_gr_frequency() -> u64;
    /// The CPU the caller runs on.
    fn kserv_glue_gr_cpu() -> u32;
    /// `cond_resched()`.
    fn kserv_glue_gr_relax();
    /// Starts vCPU `idx`'s kthread on CPU `idx`: 0 or a negative errno.
    fn kserv_glue_gr_start(ctx: *mut c_void, idx: u32) -> i64;
    /// Waits for vCPU `idx`'s kthread to finish, until `deadline` at most:
    /// 1 if it finished.
    fn kserv_glue_gr_join(ctx: *mut c_void, idx: u32, deadline: u64) -> u32;
    /// Sleeps until woken for `idx` or until `deadline` at most.
    fn kserv_glue_gr_wait(ctx: *mut c_void, idx: u32, deadline: u64);
    /// Wakes vCPU `idx`'s kthread.
    fn kserv_glue_gr_wake(ctx: *mut c_void, idx: u32);
}

/// [`guest_run::Env`] over the C glue's callbacks and the HVC conduit.
struct GrGlue {
    hvc: Hvc,
    ctx: *mut c_void,
}

impl Conduit for GrGlue {
    fn call(&mut self, regs: &mut [u64; 8]) {
        self.hvc.call(regs);
    }
}

impl PageIo for GrGlue {
    fn write(&mut self, pfn: u64, offset: usize, data: &[u8]) {
        glue_page_write(self.ctx, pfn, offset, data);
    }
    fn read(&mut self, pfn: u64, offset: usize, buf: &mut [u8]) {
        glue_page_read(self.ctx, pfn, offset, buf);
    }
    fn write_words(&mut self, pfn: u64, first: usize, words: &[u64]) {
        glue_page_write_words(self.ctx, pfn, first, words);
    }
    fn read_words(&mut self, pfn: u64, first: usize, words: &mut [u64]) {
        glue_page_read_words(self.ctx, pfn, first, words);
    }
}

/// Writes `data` at `offset` of KServ page `pfn` through the glue (for
/// `guest_run` and `/dev/kvm`, which name only pages they allocated and
/// hold; the glue checks the page and the bounds again).
pub(crate) fn glue_page_write(ctx: *mut c_void, pfn: u64, offset: usize, data: &[u8]) {
    // SAFETY: a valid slice of `data.len()` bytes; `ctx` is the glue's own
    // context for this run, which it passed in.
    unsafe { kserv_glue_gr_write(ctx, pfn, offset as u32, data.as_ptr(), data.len() as u32) }
}

/// Reads into `buf` from `offset` of KServ page `pfn` through the glue.
pub(crate) fn glue_page_read(ctx: *mut c_void, pfn: u64, offset: usize, buf: &mut [u8]) {
    // SAFETY: as for `glue_page_write`, into a valid mutable slice.
    unsafe { kserv_glue_gr_read(ctx, pfn, offset as u32, buf.as_mut_ptr(), buf.len() as u32) }
}

// The run page's words are little-endian, as this kernel keeps a `u64` in
// memory: the glue copies them as they are, with no buffer and no
// conversion (a conversion through bytes costs a store per byte on this
// target, which allows no unaligned access).
const _: () = assert!(cfg!(target_endian = "little"));

/// [`glue_page_write`] of `words` from word `first` of the page on.
pub(crate) fn glue_page_write_words(ctx: *mut c_void, pfn: u64, first: usize, words: &[u64]) {
    let words = &words[..words.len().min(run::WORDS)];
    let (offset, len) = (8 * first as u32, 8 * words.len() as u32);
    // SAFETY: `words` is valid for reading `len` bytes, which are its
    // little-endian words (asserted above); `ctx` as in `glue_page_write`.
    unsafe { kserv_glue_gr_write(ctx, pfn, offset, words.as_ptr().cast(), len) }
}

/// [`glue_page_read`] into `words` from word `first` of the page on.
pub(crate) fn glue_page_read_words(ctx: *mut c_void, pfn: u64, first: usize, words: &mut [u64]) {
    let n = words.len().min(run::WORDS);
    let words = &mut words[..n];
    let (offset, len) = (8 * first as u32, 8 * words.len() as u32);
    // SAFETY: `words` is valid for writing `len` bytes, and any bytes make
    // valid words; `ctx` as in `glue_page_write`.
    unsafe { kserv_glue_gr_read(ctx, pfn, offset, words.as_mut_ptr().cast(), len) }
}

impl guest_run::Env for GrGlue {
    fn alloc_pages(&mut self, order: u32) -> Option<u64> {
        // SAFETY: the glue allocates from the kernel; 0 means none.
        let pfn = unsafe { kserv_glue_gr_alloc(self.ctx, order) };
        (pfn != 0).then_some(pfn)
    }

    fn free_page(&mut self, pfn: u64) {
        // SAFETY: `guest_run` frees only pages it allocated, once, after
        // KCore confirmed they are KServ's.
        unsafe { kserv_glue_gr_free(self.ctx, pfn) }
    }

    fn log(&mut self, line: &[u8]) {
        // SAFETY: a valid slice of `line.len()` bytes.
        unsafe { kserv_glue_gr_log(self.ctx, line.as_ptr(), line.len() as u32) }
    }

    fn now(&mut self) -> u64 {
        // SAFETY: reads the counter.
        unsafe { kserv_glue_gr_now() }
    }

    fn frequency(&mut self) -> u64 {
        // SAFETY: reads the counter's frequency.
        unsafe { kserv_glue_gr_frequency() }
    }

    fn cpu(&mut self) -> u32 {
        // SAFETY: reads the CPU number.
        unsafe { kserv_glue_gr_cpu() }
    }

    fn relax(&mut self) {
        // SAFETY: `cond_resched()` from a kthread or a syscall.
        unsafe { kserv_glue_gr_relax() }
    }

    fn start_vcpu(&mut self, idx: usize) -> Result<(), i64> {
        // SAFETY: the glue starts a kthread that calls
        // `kserv_core_guest_vcpu` with this run's arguments.
        match unsafe { kserv_glue_gr_start(self.ctx, idx as u32) } {
            0 => Ok(()),
            e => Err(e),
        }
    }

    fn join_vcpu(&mut self, idx: usize, deadline: u64) -> bool {
        // SAFETY: waits on the glue's completion for a started thread.
        unsafe { kserv_glue_gr_join(self.ctx, idx as u32, deadline) != 0 }
    }

    fn wait(&mut self, idx: usize, deadline: u64) {
        // SAFETY: sleeps on the glue's wait queue of `idx`.
        unsafe { kserv_glue_gr_wait(self.ctx, idx as u32, deadline) }
    }

    fn wake(&mut self, idx: usize) {
        // SAFETY: wakes the glue's wait queue of `idx`.
        unsafe { kserv_glue_gr_wake(self.ctx, idx as u32) }
    }
}

/// `sizeof(struct kserv_gr_args)` as the core sees it: the glue refuses to
/// run if its own differs.
#[unsafe(no_mangle)]
pub extern "C" fn kserv_core_gr_args_size() -> usize {
    size_of::<GrArgs>()
}

/// How many vCPUs a run has (`KSERV_GR_VCPUS` in `kserv_core.h`).
#[unsafe(no_mangle)]
pub extern "C" fn kserv_core_gr_vcpus() -> u32 {
    guest_run::VCPUS as u32
}

const _: () = assert!(guest_run::MAX_IMAGE_LEN == 16 * 4096 && guest_run::SIGNATURE_LEN == 336);
const _: () = assert!(SIGNATURE_LEN == 336);

/// Bytes of the shared state the glue allocates (zeroed) for a run.
#[unsafe(no_mangle)]
pub extern "C" fn kserv_core_gr_state_size() -> usize {
    size_of::<guest_run::Shared>()
}

/// The shared state of `a`, if the glue's allocation can hold it.
///
/// # Safety
///
/// `a.state` must be null or valid for `a.state_size` bytes for as long as
/// the returned reference is used.
unsafe fn gr_state(a: &GrArgs) -> Option<&guest_run::Shared> {
    let fits = a.state_size as usize >= size_of::<guest_run::Shared>()
        && (a.state as usize).is_multiple_of(align_of::<guest_run::Shared>());
    if a.state.is_null() || !fits {
        return None;
    }
    // SAFETY: the memory is valid, large and aligned enough (checked above,
    // the caller guarantees validity), and every field of `Shared` is an
    // atomic integer, for which any bit pattern (the glue's zeroes in
    // particular) is a valid value; it is only ever accessed through
    // atomics, so sharing it between threads is sound.
    Some(unsafe { &*a.state.cast::<guest_run::Shared>() })
}

/// Runs the test guest ([`guest_run::run`]) with the image in `*args`,
/// logging through the glue: a [`gr_result`] code. Every page the run
/// allocated is either freed through `kserv_glue_gr_free` or kept because
/// KCore may own it.
///
/// # Safety
///
/// KCore must be underneath this kernel (see [`Hvc::new`]). `args` must be
/// valid and stay so (with `state`, `image` for `image_len` bytes and `sig`
/// for [`guest_run::SIGNATURE_LEN`]) until the run returns, or for good if it returns
/// [`gr_result::STUCK`]; `state` must not be in use by another run.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_guest_run(args: *const GrArgs) -> u32 {
    // SAFETY: the caller guarantees `args` is valid.
    let a = unsafe { &*args };
    let mut env = GrGlue {
        // SAFETY: the caller guarantees KCore is underneath.
        hvc: unsafe { Hvc::new() },
        ctx: a.ctx,
    };
    // SAFETY: the caller guarantees `state` is valid for `state_size`.
    let Some(state) = (unsafe { gr_state(a) }) else {
        guest_run::Env::log(&mut env, b"setup: FAIL the glue's state is too small");
        return gr_result::FAIL;
    };
    let len = (a.image_len as usize).min(guest_run::MAX_IMAGE_LEN);
    // SAFETY: the caller guarantees `image` is valid for `image_len` bytes.
    let image = unsafe { core::slice::from_raw_parts(a.image, len) };
    // SAFETY: the caller guarantees `sig` is valid for SIGNATURE_LEN bytes.
    let signature = unsafe { &*a.sig.cast::<[u8; guest_run::SIGNATURE_LEN]>() };
    let timeout_secs = match a.timeout_secs {
        0 => guest_run::TIMEOUT_SECS,
        t => t,
    };
    let setup = guest_run::Setup {
        image,
        signature,
        timeout_secs,
        attack_every: guest_run::attack::EVERY,
    };
    let outcome = guest_run::run(&mut env, state, &setup);
    if outcome.stuck {
        gr_result::STUCK
    } else if outcome.pass {
        gr_result::PASS
    } else {
        gr_result::FAIL
    }
}

/// The body of vCPU `idx`'s kthread ([`guest_run::vcpu_thread`]).
///
/// # Safety
///
/// Called only from the kthread the glue started for `idx` during
/// [`kserv_core_guest_run`] with the same `args`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_core_guest_vcpu(args: *const GrArgs, idx: u32) {
    // SAFETY: the caller guarantees `args` is the running run's.
    let a = unsafe { &*args };
    // SAFETY: as in `kserv_core_guest_run`, which checked the state.
    let Some(state) = (unsafe { gr_state(a) }) else {
        return;
    };
    let mut env = GrGlue {
        // SAFETY: the run that started this thread established that KCore
        // is underneath.
        hvc: unsafe { Hvc::new() },
        ctx: a.ctx,
    };
    guest_run::vcpu_thread(&mut env, state, idx as usize);
}
