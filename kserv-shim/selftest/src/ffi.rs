//! The C-callable surface of the self-test core, declared again in
//! `kserv-shim/module/kserv_selftest.h` (keep the two in step). The build
//! pulls every global `kserv_selftest_*` symbol of the static library into
//! the module's `selftest.o` (`ld -r -u <symbol>`), so the names carry that
//! prefix.
//!
//! Only the functions that issue hypercalls are `unsafe`: their caller must
//! have established that KCore is underneath (see [`Hvc::new`]); the module
//! does so by depending on `kserv_shim.ko`, which loads only on KCore.

use crate::request;
use crate::vm_selftest::{self, Access, Env, MAX_IMAGE_PAGES, MEM_PAGES, Probe, SIGNATURE_LEN};
use core::ffi::c_void;
use kserv_base::conduit::{Conduit, Hvc};

// ---- raw hypercalls (debugfs hvc) ---------------------------------------------------

/// Parses a raw hypercall request (`"<id> [a1 .. a6]"` in hex, see
/// [`request`]) from `len` bytes at `text` into `*regs`. Returns 0, or -1 and
/// leaves `*regs` alone when the text is not a request.
///
/// # Safety
///
/// `text` must be valid for reading `len` bytes and `regs` for writing eight
/// `u64`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_selftest_parse_hvc(
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

/// Issues one raw hypercall with `regs[0]` = function id and `regs[1..]` the
/// arguments; on return `regs` holds `x0..=x7`. For tests that probe how KCore
/// answers ids it does not implement.
///
/// # Safety
///
/// KCore must be underneath this kernel (see [`Hvc::new`]), and `regs` must be
/// valid for reads and writes of eight `u64`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kserv_selftest_hvc(regs: *mut [u64; 8]) {
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
pub extern "C" fn kserv_selftest_vmst_args_size() -> usize {
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
pub unsafe extern "C" fn kserv_selftest_vm_selftest(args: *const VmstArgs) -> u32 {
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
