//! The VM isolation self-test behind the module's debugfs `vm_selftest`
//! file: KServ, as an untrusted party, walks a protected VM through its life
//! and checks at every step that KCore keeps its promises
//! (`docs/ownership.md`, DESIGN.md section 1).
//!
//! 1. `create_vm`: a protected VM from [`POOL_PAGES`] contiguous table pages,
//!    one vCPU, one more table page through `HostDonateVmPool`.
//! 2. `donate`: [`MEM_PAGES`] pages with known, non-zero contents become the
//!    VM's at [`MEM_GFN`]`..`.
//! 3. `owner`: `HostPageOwner` reports them `Guest` of the VM at their gfns,
//!    and the table pages `VmTable`.
//! 4. `read_donated`: KServ reads a donated page through its linear map; the
//!    access must fault (KCore answers with a synchronous external abort, the
//!    reading kthread dies in an Oops).
//! 5. `load_image`, `verify_good`: the test image is copied into pages that
//!    are donated at consecutive gfns from [`IMAGE_GFN`], and
//!    `HostVerifyImage` accepts its good signature.
//! 6. `create_vm_b`, `load_tampered`, `verify_tampered`: a second protected
//!    VM gets the image with its last byte flipped; verification must fail
//!    with `VerificationFailed`.
//! 7. `write_verified`: KServ writes a verified image page: must fault.
//!    `reclaim_live`: reclaiming it from the live VM must be refused with
//!    `Busy`, and the page stays the VM's.
//! 8. `teardown`, `reclaim`, `scrubbed`: both VMs are torn down and every
//!    page (memory, image and table) is reclaimed; the VMs' slots are gone
//!    with their last page; each page comes back `Host` and reads all zero.
//!    KServ's first access to a reclaimed page is made by a sacrificial
//!    kthread, so a KCore that refuses a page it reports `Host` fails the
//!    step rather than killing the test.
//! 9. `release`: pages go back to the kernel's allocator only when KServ
//!    got them back and `HostPageOwner` agrees they are KServ's. A page KCore
//!    may still own is kept (and reported), never freed.
//! 10. `version`: KCore still answers its version call.
//!
//! Each step logs one line `<step>: PASS|FAIL <detail>`, and a last
//! `result:` line. A failed step that later steps depend on (creating a VM,
//! donating, loading) skips those; the clean-up steps always run.
//!
//! Everything that touches the kernel (page contents through the linear
//! map, the faulting kthreads, the allocator, the log) is behind [`Env`],
//! which the module's C glue implements; host tests implement it over a fake
//! KCore. The code avoids `core::fmt` and anything else that compiles to
//! indirect branches: the kernel maps module text with BTI guards on CPUs
//! that have them.

use crate::line::{Line, owner_name};
use kcore_abi::{Error, PageOwner, vm_flags};
use kserv_base::conduit::Conduit;
use kserv_base::hypercall::{self, CallError, CreateVm, PageInfo, VmHandle};
use kserv_base::version;

/// Bytes in a page.
pub const PAGE_SIZE: usize = 4096;
/// Table pages each VM is created with: contiguous, the first pfn aligned
/// to this many pages. The default 40-bit IPA space has a root of two
/// concatenated pages; two more cover the level-2 and level-3 tables of one
/// 2 MiB region of guest memory.
pub const POOL_PAGES: usize = 4;
/// Memory pages donated to the first VM.
pub const MEM_PAGES: usize = 4;
/// Most pages of test image (64 KiB).
pub const MAX_IMAGE_PAGES: usize = 16;
/// Longest test image.
pub const MAX_IMAGE_LEN: usize = MAX_IMAGE_PAGES * PAGE_SIZE;
/// Length of a signature block as the glue hands it over: the Ed25519
/// signature, the signed MMIO manifest, zero padding.
pub const SIGNATURE_LEN: usize = kcore_abi::manifest::MAX_BLOCK_LEN;
/// The gfn the image starts at (IPA 2 GiB, where guests' RAM usually starts).
pub const IMAGE_GFN: u64 = 0x8_0000;
/// The gfn of the first memory page (in the same 2 MiB as the image, so
/// [`POOL_PAGES`] table pages suffice).
pub const MEM_GFN: u64 = IMAGE_GFN + 0x100;
/// Chunk size for page contents going through [`Env`].
const CHUNK: usize = 256;
/// The two VMs.
const VMS: usize = 2;
/// Every page the test may use.
const MAX_PAGES: usize = VMS * (POOL_PAGES + 1 + MAX_IMAGE_PAGES) + MEM_PAGES + 1;

/// A kernel access to a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A 64-bit load.
    Read,
    /// A 64-bit store.
    Write,
}

/// How an access made by a sacrificial kernel thread ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// It never completed and the thread died: the kernel reported an abort.
    Faulted,
    /// It completed; a read returned this value.
    Completed(u64),
    /// The thread neither completed nor died in time.
    Hung,
    /// The thread could not be started (a negative errno).
    NotRun(i64),
}

/// What the self-test needs from the kernel, besides hypercalls.
pub trait Env: Conduit {
    /// Copies `data` into KServ's page `pfn` at `offset` through the kernel's
    /// linear map. Called only for pages KServ holds.
    fn write(&mut self, pfn: u64, offset: usize, data: &[u8]);
    /// Reads `buf.len()` bytes of KServ's page `pfn` at `offset` through the
    /// linear map. Called only for pages KServ holds.
    fn read(&mut self, pfn: u64, offset: usize, buf: &mut [u8]);
    /// Makes a fresh kernel thread access page `pfn` through the linear map:
    /// the access may fault and kill that thread (`expect_fault` says whether
    /// the test expects it to, for the log).
    fn probe(&mut self, pfn: u64, access: Access, expect_fault: bool) -> Probe;
    /// Page `pfn` is KServ's again: it may go back to the kernel's allocator.
    /// Called at most once per page; pages never released are kept.
    fn release(&mut self, pfn: u64);
    /// Logs one line (no newline).
    fn log(&mut self, line: &[u8]);
}

/// The pages of one VM.
#[derive(Clone, Copy, Debug)]
pub struct VmPages<'a> {
    /// First of [`POOL_PAGES`] contiguous table pages, aligned to that many.
    pub pool: u64,
    /// One more table page, donated with `HostDonateVmPool`.
    pub extra_pool: u64,
    /// One page per 4 KiB of the image.
    pub image: &'a [u64],
}

/// The self-test's inputs: the image, its signature and the pages the
/// kernel allocated for it (all KServ's, distinct).
#[derive(Clone, Copy, Debug)]
pub struct Setup<'a> {
    /// How many table pages the kernel allocated per VM at each `pool`
    /// (must be [`POOL_PAGES`]).
    pub pool_pages: usize,
    /// The test image as signed (1..=[`MAX_IMAGE_LEN`] bytes).
    pub image: &'a [u8],
    /// Its signature block ([`SIGNATURE_LEN`], zero-padded).
    pub signature: &'a [u8; SIGNATURE_LEN],
    /// The VM that runs the good image, and the one given a tampered copy.
    pub vms: [VmPages<'a>; VMS],
    /// The first VM's memory pages.
    pub mem: &'a [u64; MEM_PAGES],
    /// KServ's page that carries the signature to KCore.
    pub sig_pfn: u64,
}

/// The self-test's steps, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The inputs are consistent.
    Setup,
    /// The first protected VM exists.
    CreateVm,
    /// Pages with known contents donated.
    Donate,
    /// `HostPageOwner` agrees.
    Owner,
    /// KServ's read of a donated page faulted.
    ReadDonated,
    /// The image is in the VM's pages.
    LoadImage,
    /// The good signature is accepted.
    VerifyGood,
    /// The second protected VM exists.
    CreateVmB,
    /// The tampered image is in its pages.
    LoadTampered,
    /// The tampered image is rejected.
    VerifyTampered,
    /// KServ's write to a verified image page faulted.
    WriteVerified,
    /// Reclaiming from a live VM is refused.
    ReclaimLive,
    /// Both VMs are dying.
    Teardown,
    /// Every page came back.
    Reclaim,
    /// And was scrubbed.
    Scrubbed,
    /// Pages went back to the kernel.
    Release,
    /// KCore still answers.
    Version,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 17] = [
        Step::Setup,
        Step::CreateVm,
        Step::Donate,
        Step::Owner,
        Step::ReadDonated,
        Step::LoadImage,
        Step::VerifyGood,
        Step::CreateVmB,
        Step::LoadTampered,
        Step::VerifyTampered,
        Step::WriteVerified,
        Step::ReclaimLive,
        Step::Teardown,
        Step::Reclaim,
        Step::Scrubbed,
        Step::Release,
        Step::Version,
    ];

    /// The name in the log.
    pub const fn name(self) -> &'static str {
        match self {
            Step::Setup => "setup",
            Step::CreateVm => "create_vm",
            Step::Donate => "donate",
            Step::Owner => "owner",
            Step::ReadDonated => "read_donated",
            Step::LoadImage => "load_image",
            Step::VerifyGood => "verify_good",
            Step::CreateVmB => "create_vm_b",
            Step::LoadTampered => "load_tampered",
            Step::VerifyTampered => "verify_tampered",
            Step::WriteVerified => "write_verified",
            Step::ReclaimLive => "reclaim_live",
            Step::Teardown => "teardown",
            Step::Reclaim => "reclaim",
            Step::Scrubbed => "scrubbed",
            Step::Release => "release",
            Step::Version => "version",
        }
    }
}

/// How the self-test went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Steps that passed.
    pub passed: u32,
    /// Steps that failed.
    pub failed: u32,
    /// Pages handed back to the kernel.
    pub released: u32,
    /// Pages kept because KCore may still own them.
    pub kept: u32,
}

/// Runs the self-test. Every page of `setup` is either released through
/// [`Env::release`] or counted in [`Outcome::kept`].
pub fn run<E: Env>(env: &mut E, setup: &Setup<'_>) -> Outcome {
    let mut t = Test::new(env, setup);
    if t.check_setup() {
        let a = t.phase_a();
        t.phase_b();
        if a.is_ok() {
            t.phase_a_after_verify();
        }
        t.teardown_and_reclaim();
    }
    t.release();
    t.version();
    t.result()
}

/// The byte at `offset` of memory page `page`: never zero.
pub const fn pattern(page: usize, offset: usize) -> u8 {
    (offset.wrapping_mul(31).wrapping_add(page.wrapping_mul(97)) as u8) | 0x80
}

// ---- the pages -------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Table,
    Memory,
    Image,
    Signature,
}

/// What KServ knows about a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    /// KServ's: never given away, or a call to give it was refused.
    Kserv,
    /// A VM's: the call that gave it succeeded.
    Given,
    /// A call to give it answered with something the ABI does not define:
    /// it may be either's.
    Doubtful,
    /// Given, then reclaimed.
    Reclaimed,
    /// Reclaimed, but KServ's reads of it fault: never freed.
    Unreadable,
}

#[derive(Clone, Copy, Debug)]
struct Page {
    pfn: u64,
    /// The VM it is for (`VMS` for none).
    vm: usize,
    role: Role,
    held: Held,
}

/// A step that later steps depend on failed.
struct Stop;

struct Test<'e, 's, E> {
    env: &'e mut E,
    setup: &'e Setup<'s>,
    pages: [Page; MAX_PAGES],
    npages: usize,
    handles: [Option<VmHandle>; VMS],
    dying: [bool; VMS],
    passed: u32,
    failed: u32,
    released: u32,
    kept: u32,
}

impl<'e, 's, E: Env> Test<'e, 's, E> {
    fn new(env: &'e mut E, setup: &'e Setup<'s>) -> Self {
        let mut t = Test {
            env,
            setup,
            pages: [Page {
                pfn: 0,
                vm: VMS,
                role: Role::Signature,
                held: Held::Kserv,
            }; MAX_PAGES],
            npages: 0,
            handles: [None; VMS],
            dying: [false; VMS],
            passed: 0,
            failed: 0,
            released: 0,
            kept: 0,
        };
        for (v, vp) in setup.vms.iter().enumerate() {
            // Only the pages the kernel allocated: `check_setup` refuses a
            // pool of another size.
            for i in 0..setup.pool_pages.min(POOL_PAGES) as u64 {
                t.add(vp.pool.wrapping_add(i), v, Role::Table);
            }
            t.add(vp.extra_pool, v, Role::Table);
            for &pfn in vp.image {
                t.add(pfn, v, Role::Image);
            }
        }
        for &pfn in setup.mem {
            t.add(pfn, 0, Role::Memory);
        }
        t.add(setup.sig_pfn, VMS, Role::Signature);
        t
    }

    /// Registers a page; beyond [`MAX_PAGES`] (a setup [`Test::check_setup`]
    /// refuses) pages are not tracked and so never released.
    fn add(&mut self, pfn: u64, vm: usize, role: Role) {
        if self.npages < MAX_PAGES {
            self.pages[self.npages] = Page {
                pfn,
                vm,
                role,
                held: Held::Kserv,
            };
            self.npages += 1;
        }
    }

    fn index_of(&self, pfn: u64) -> Option<usize> {
        self.pages[..self.npages].iter().position(|p| p.pfn == pfn)
    }

    /// Records the result of a call that gives `pfn` to a VM.
    fn gave(&mut self, pfn: u64, r: Result<(), CallError>) {
        if let Some(i) = self.index_of(pfn) {
            self.pages[i].held = match r {
                Ok(()) => Held::Given,
                // A refused call changes nothing.
                Err(CallError::Kcore(_)) => Held::Kserv,
                Err(_) => Held::Doubtful,
            };
        }
    }

    fn report(&mut self, step: Step, pass: bool, detail: &Line) {
        let mut l = Line::new();
        l.s(step.name())
            .s(if pass { ": PASS " } else { ": FAIL " })
            .raw(detail.bytes());
        self.env.log(l.bytes());
        if pass {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
    }

    fn pass(&mut self, step: Step, detail: &Line) {
        self.report(step, true, detail);
    }

    fn fail(&mut self, step: Step, detail: &Line) {
        self.report(step, false, detail);
    }

    fn image_pages(&self) -> usize {
        self.setup.image.len().div_ceil(PAGE_SIZE)
    }

    // ---- steps -----------------------------------------------------------------------

    fn check_setup(&mut self) -> bool {
        let s = self.setup;
        let mut d = Line::new();
        let n = self.image_pages();
        if s.pool_pages != POOL_PAGES {
            d.s("table pools of ")
                .dec(s.pool_pages as u64)
                .s(" pages, the test needs ")
                .dec(POOL_PAGES as u64);
        } else if s.image.is_empty() || s.image.len() > MAX_IMAGE_LEN {
            d.s("image of ")
                .dec(s.image.len() as u64)
                .s(" bytes (1..=")
                .dec(MAX_IMAGE_LEN as u64)
                .s(" allowed)");
        } else if s.vms.iter().any(|v| v.image.len() != n) {
            d.s("image page lists do not hold ")
                .dec(n as u64)
                .s(" pages");
        } else if s.vms.iter().any(|v| v.pool % POOL_PAGES as u64 != 0) {
            d.s("a table pool is not aligned to ")
                .dec(POOL_PAGES as u64)
                .s(" pages");
        } else if (0..self.npages).any(|i| {
            let pfn = self.pages[i].pfn;
            self.pages[i + 1..self.npages].iter().any(|p| p.pfn == pfn)
        }) {
            d.s("a page is listed twice");
        } else {
            d.s("image of ")
                .dec(s.image.len() as u64)
                .s(" bytes in ")
                .dec(n as u64)
                .s(" pages, ")
                .dec(self.npages as u64)
                .s(" pages in all");
            self.pass(Step::Setup, &d);
            return true;
        }
        self.fail(Step::Setup, &d);
        false
    }

    /// Creates VM `v` (protected, default IPA size, one vCPU) from its
    /// table pool, then gives it one more table page.
    fn create(&mut self, v: usize) -> Result<VmHandle, Stop> {
        let step = if v == 0 {
            Step::CreateVm
        } else {
            Step::CreateVmB
        };
        let vp = self.setup.vms[v];
        let mut d = Line::new();
        let r = hypercall::create_vm(
            self.env,
            &CreateVm {
                flags: vm_flags::PROTECTED,
                ipa_bits: 0,
                max_vcpus: 1,
                pool_pfn: vp.pool,
                pool_pages: POOL_PAGES as u64,
            },
        );
        for i in 0..POOL_PAGES as u64 {
            self.gave(vp.pool + i, r.map(drop));
        }
        let h = match r {
            Ok(h) => h,
            Err(e) => {
                d.s("HostCreateVm(protected, pool pfn ")
                    .hex(vp.pool)
                    .s(", ")
                    .dec(POOL_PAGES as u64)
                    .s(" pages): ")
                    .err(e);
                self.fail(step, &d);
                return Err(Stop);
            }
        };
        self.handles[v] = Some(h);
        let r = hypercall::donate_vm_pool(self.env, h, vp.extra_pool);
        self.gave(vp.extra_pool, r);
        if let Err(e) = r {
            d.s("VM ").hex(h.0).s(": HostDonateVmPool(pfn ");
            d.hex(vp.extra_pool).s("): ").err(e);
            self.fail(step, &d);
            return Err(Stop);
        }
        if let Err(e) = hypercall::create_vcpu(self.env, h, 0) {
            d.s("VM ").hex(h.0).s(": HostCreateVcpu(0): ").err(e);
            self.fail(step, &d);
            return Err(Stop);
        }
        d.s("protected VM ")
            .hex(h.0)
            .s(", ")
            .dec(POOL_PAGES as u64)
            .s(" table pages at pfn ")
            .hex(vp.pool)
            .s(" + pfn ")
            .hex(vp.extra_pool)
            .s(", vCPU 0");
        self.pass(step, &d);
        Ok(h)
    }

    /// Fills memory page `i` with [`pattern`] and checks it reads back.
    fn fill(&mut self, i: usize, pfn: u64) -> bool {
        let mut chunk = [0u8; CHUNK];
        let mut back = [0u8; CHUNK];
        for off in (0..PAGE_SIZE).step_by(CHUNK) {
            for (j, b) in chunk.iter_mut().enumerate() {
                *b = pattern(i, off + j);
            }
            self.env.write(pfn, off, &chunk);
            self.env.read(pfn, off, &mut back);
            if back != chunk {
                return false;
            }
        }
        true
    }

    /// Copies the image into `pfns` (the tail of the last page zeroed),
    /// flipping the last byte if `tamper`, and donates them to `vm` at
    /// consecutive gfns from [`IMAGE_GFN`].
    fn load(&mut self, vm: VmHandle, v: usize, tamper: bool) -> Result<(), (u64, CallError)> {
        let image = self.setup.image;
        let pfns = self.setup.vms[v].image;
        let zeros = [0u8; CHUNK];
        for (p, &pfn) in pfns.iter().enumerate() {
            let start = p * PAGE_SIZE;
            let end = image.len().min(start + PAGE_SIZE);
            self.env.write(pfn, 0, &image[start..end]);
            let mut off = end - start;
            while off < PAGE_SIZE {
                let n = (PAGE_SIZE - off).min(CHUNK);
                self.env.write(pfn, off, &zeros[..n]);
                off += n;
            }
            if tamper && end == image.len() {
                let last = image.len() - 1 - start;
                self.env.write(pfn, last, &[image[image.len() - 1] ^ 0x01]);
            }
            let r = hypercall::donate_guest(self.env, vm, pfn, IMAGE_GFN + p as u64);
            self.gave(pfn, r);
            r.map_err(|e| (pfn, e))?;
        }
        Ok(())
    }

    /// Page `pfn` must be `owner` of `vm` (at `gfn`, for VM pages).
    fn expect_owner(
        &mut self,
        pfn: u64,
        owner: PageOwner,
        vm: Option<VmHandle>,
        gfn: Option<u64>,
        d: &mut Line,
    ) -> bool {
        match hypercall::page_owner(self.env, pfn) {
            Ok(i) if i.owner == owner && i.vm == vm && gfn.is_none_or(|g| g == i.gfn) => true,
            Ok(i) => {
                d.s("pfn ").hex(pfn).s(" is ").owner(&i).s(", expected ");
                d.s(owner_name(owner));
                if let Some(vm) = vm {
                    d.s(" of VM ").hex(vm.0);
                }
                if let Some(g) = gfn {
                    d.s(" at gfn ").hex(g);
                }
                false
            }
            Err(e) => {
                d.s("HostPageOwner(").hex(pfn).s("): ").err(e);
                false
            }
        }
    }

    fn probe(&mut self, step: Step, pfn: u64, access: Access, what: &str) {
        let mut d = Line::new();
        let verb = match access {
            Access::Read => "reader",
            Access::Write => "writer",
        };
        match self.env.probe(pfn, access, true) {
            Probe::Faulted => {
                d.s(verb)
                    .s(" of ")
                    .s(what)
                    .s(" pfn ")
                    .hex(pfn)
                    .s(" faulted");
                self.pass(step, &d);
            }
            Probe::Completed(v) => {
                match access {
                    Access::Read => d.s("read ").hex(v).s(" from "),
                    Access::Write => d.s("wrote to "),
                };
                d.s(what).s(" pfn ").hex(pfn);
                self.fail(step, &d);
            }
            Probe::Hung => {
                d.s(verb).s(" of pfn ").hex(pfn);
                d.s(" neither finished nor faulted in time");
                self.fail(step, &d);
            }
            Probe::NotRun(e) => {
                d.s("cannot start the ").s(verb).s(" (error ");
                if e < 0 {
                    d.s("-");
                }
                d.dec(e.unsigned_abs()).s(")");
                self.fail(step, &d);
            }
        }
    }

    /// The first VM up to its verified image. `Err` if the image is not in
    /// its pages (the steps after verification then make no sense).
    fn phase_a(&mut self) -> Result<(), Stop> {
        let vm = self.create(0)?;

        // donate: known contents first.
        let mut d = Line::new();
        let mem = *self.setup.mem;
        for (i, &pfn) in mem.iter().enumerate() {
            if !self.fill(i, pfn) {
                d.s("pfn ")
                    .hex(pfn)
                    .s(" does not read back what was written");
                self.fail(Step::Donate, &d);
                return Err(Stop);
            }
            let r = hypercall::donate_guest(self.env, vm, pfn, MEM_GFN + i as u64);
            self.gave(pfn, r);
            if let Err(e) = r {
                d.s("HostDonateGuest(pfn ").hex(pfn).s(", gfn ");
                d.hex(MEM_GFN + i as u64).s("): ").err(e);
                self.fail(Step::Donate, &d);
                return Err(Stop);
            }
        }
        d.dec(MEM_PAGES as u64)
            .s(" pages with known contents, pfn ")
            .hex(mem[0])
            .s(".. at gfn ")
            .hex(MEM_GFN)
            .s("..");
        self.pass(Step::Donate, &d);

        // owner
        let mut d = Line::new();
        let mut ok = true;
        for (i, &pfn) in mem.iter().enumerate() {
            ok = ok
                && self.expect_owner(
                    pfn,
                    PageOwner::Guest,
                    Some(vm),
                    Some(MEM_GFN + i as u64),
                    &mut d,
                );
        }
        let vp = self.setup.vms[0];
        for pfn in (vp.pool..vp.pool + POOL_PAGES as u64).chain([vp.extra_pool]) {
            ok = ok && self.expect_owner(pfn, PageOwner::VmTable, Some(vm), None, &mut d);
        }
        if ok {
            d.dec(MEM_PAGES as u64)
                .s(" pages Guest of VM ")
                .hex(vm.0)
                .s(" at their gfns, ")
                .dec(POOL_PAGES as u64 + 1)
                .s(" table pages VmTable");
            self.pass(Step::Owner, &d);
        } else {
            self.fail(Step::Owner, &d);
        }

        // read_donated
        self.probe(Step::ReadDonated, mem[0], Access::Read, "donated");

        // load_image
        let mut d = Line::new();
        let n = self.image_pages() as u64;
        if let Err((pfn, e)) = self.load(vm, 0, false) {
            d.s("HostDonateGuest(image pfn ").hex(pfn).s("): ").err(e);
            self.fail(Step::LoadImage, &d);
            return Err(Stop);
        }
        d.dec(self.setup.image.len() as u64)
            .s(" bytes in ")
            .dec(n)
            .s(" pages at gfn ")
            .hex(IMAGE_GFN)
            .s("..")
            .hex(IMAGE_GFN + n - 1);
        self.pass(Step::LoadImage, &d);

        // verify_good
        let sig = self.setup.signature;
        let sig_pfn = self.setup.sig_pfn;
        self.env.write(sig_pfn, 0, sig);
        let len = self.setup.image.len() as u64;
        let mut d = Line::new();
        match hypercall::verify_image(self.env, vm, IMAGE_GFN, len, sig_pfn) {
            Ok(()) => {
                d.s("good signature accepted (VM ").hex(vm.0).s(", ");
                d.dec(len).s(" bytes)");
                self.pass(Step::VerifyGood, &d);
            }
            Err(e) => {
                d.s("HostVerifyImage(good signature): ").err(e);
                if e.is(Error::VerificationFailed) {
                    d.s(" (not signed with the key in the boot image?)");
                }
                self.fail(Step::VerifyGood, &d);
            }
        }
        Ok(())
    }

    /// The second VM, with one flipped image byte.
    fn phase_b(&mut self) {
        let Ok(vm) = self.create(1) else { return };
        let mut d = Line::new();
        if let Err((pfn, e)) = self.load(vm, 1, true) {
            d.s("HostDonateGuest(image pfn ").hex(pfn).s("): ").err(e);
            self.fail(Step::LoadTampered, &d);
            return;
        }
        let len = self.setup.image.len() as u64;
        let last = self.setup.image[self.setup.image.len() - 1];
        d.s("byte ")
            .hex(len - 1)
            .s(" flipped (")
            .hex(u64::from(last))
            .s(" -> ")
            .hex(u64::from(last ^ 1))
            .s("), VM ")
            .hex(vm.0);
        self.pass(Step::LoadTampered, &d);

        let mut d = Line::new();
        let sig_pfn = self.setup.sig_pfn;
        self.env.write(sig_pfn, 0, self.setup.signature);
        match hypercall::verify_image(self.env, vm, IMAGE_GFN, len, sig_pfn) {
            Err(CallError::Kcore(Error::VerificationFailed)) => {
                d.s("tampered image rejected: VerificationFailed");
                self.pass(Step::VerifyTampered, &d);
            }
            Ok(()) => {
                d.s("tampered image accepted");
                self.fail(Step::VerifyTampered, &d);
            }
            Err(e) => {
                d.s("expected VerificationFailed, got ").err(e);
                self.fail(Step::VerifyTampered, &d);
            }
        }
    }

    /// The first VM after verification: its image can be neither written
    /// nor reclaimed.
    fn phase_a_after_verify(&mut self) {
        let Some(vm) = self.handles[0] else { return };
        let pfn = self.setup.vms[0].image[0];
        self.probe(Step::WriteVerified, pfn, Access::Write, "verified image");

        let mut d = Line::new();
        match hypercall::reclaim_page(self.env, vm, pfn) {
            Err(CallError::Kcore(Error::Busy)) => {
                if self.expect_owner(pfn, PageOwner::Guest, Some(vm), Some(IMAGE_GFN), &mut d) {
                    d.s("reclaim of image pfn ").hex(pfn);
                    d.s(" from the live VM refused (Busy), still the VM's");
                    self.pass(Step::ReclaimLive, &d);
                } else {
                    self.fail(Step::ReclaimLive, &d);
                }
            }
            Ok(()) => {
                if let Some(i) = self.index_of(pfn) {
                    self.pages[i].held = Held::Reclaimed;
                }
                d.s("reclaim of image pfn ")
                    .hex(pfn)
                    .s(" from the live VM succeeded");
                self.fail(Step::ReclaimLive, &d);
            }
            Err(e) => {
                d.s("reclaim from the live VM: expected Busy, got ").err(e);
                self.fail(Step::ReclaimLive, &d);
            }
        }
    }

    fn teardown_and_reclaim(&mut self) {
        // teardown
        let mut d = Line::new();
        let mut ok = true;
        let mut any = false;
        for v in 0..VMS {
            let Some(vm) = self.handles[v] else { continue };
            if any {
                d.s(", ");
            }
            any = true;
            match hypercall::teardown_vm(self.env, vm) {
                Ok(()) => {
                    self.dying[v] = true;
                    d.s("VM ").hex(vm.0).s(" dying");
                }
                Err(e) => {
                    ok = false;
                    d.s("HostTeardownVm(").hex(vm.0).s("): ").err(e);
                }
            }
        }
        if !any {
            return;
        }
        if ok {
            self.pass(Step::Teardown, &d);
        } else {
            self.fail(Step::Teardown, &d);
        }

        // reclaim
        let mut d = Line::new();
        let mut ok = true;
        let (mut memory, mut tables) = (0u64, 0u64);
        for i in 0..self.npages {
            let p = self.pages[i];
            if !matches!(p.held, Held::Given | Held::Doubtful) || p.vm >= VMS {
                continue;
            }
            let (Some(vm), true) = (self.handles[p.vm], self.dying[p.vm]) else {
                if ok {
                    d.s("pfn ")
                        .hex(p.pfn)
                        .s(" belongs to a VM that is not dying; ");
                }
                ok = false;
                continue;
            };
            match hypercall::reclaim_page(self.env, vm, p.pfn) {
                Ok(()) => {
                    self.pages[i].held = Held::Reclaimed;
                    if p.role == Role::Table {
                        tables += 1;
                    } else {
                        memory += 1;
                    }
                }
                // Never given after all: the release step asks KCore.
                Err(CallError::Kcore(Error::Denied)) if p.held == Held::Doubtful => {}
                Err(e) => {
                    if ok {
                        d.s("HostReclaimPage(VM ").hex(vm.0).s(", pfn ");
                        d.hex(p.pfn).s("): ").err(e).s("; ");
                    }
                    ok = false;
                }
            }
        }
        // A VM's slot goes with its last page: the handle names nothing now.
        for v in 0..VMS {
            let Some(vm) = self.handles[v] else { continue };
            let all_back = self.pages[..self.npages]
                .iter()
                .all(|p| p.vm != v || !matches!(p.held, Held::Given | Held::Doubtful));
            if !self.dying[v] || !all_back {
                continue;
            }
            match hypercall::teardown_vm(self.env, vm) {
                Err(CallError::Kcore(Error::NotFound)) => {}
                r => {
                    if ok {
                        d.s("VM ").hex(vm.0).s(" still known after its last page: ");
                        match r {
                            Ok(()) => d.s("teardown succeeded"),
                            Err(e) => d.err(e),
                        };
                    }
                    ok = false;
                }
            }
        }
        if ok {
            d.dec(memory)
                .s(" memory/image and ")
                .dec(tables)
                .s(" table pages back, VM slots freed");
            self.pass(Step::Reclaim, &d);
        } else {
            self.fail(Step::Reclaim, &d);
        }

        // scrubbed
        let mut d = Line::new();
        let (mut n, mut bad) = (0u64, 0u64);
        for i in 0..self.npages {
            if self.pages[i].held != Held::Reclaimed {
                continue;
            }
            n += 1;
            let mut why = Line::new();
            if !self.scrubbed(i, &mut why) {
                if bad == 0 {
                    d.raw(why.bytes());
                }
                bad += 1;
            }
        }
        if bad == 0 {
            d.dec(n).s(" reclaimed pages Host and all zero");
            self.pass(Step::Scrubbed, &d);
        } else {
            d.s(" (").dec(bad).s(" of ").dec(n).s(" pages)");
            self.fail(Step::Scrubbed, &d);
        }
    }

    /// Whether reclaimed page `i` is KServ's, readable and all zero; says
    /// why not in `why`. KServ's first access to it is made by a sacrificial
    /// thread: should KCore refuse it although it reports the page KServ's,
    /// that thread dies, not the test. A page KServ cannot read is never
    /// given back to the kernel.
    fn scrubbed(&mut self, i: usize, why: &mut Line) -> bool {
        let pfn = self.pages[i].pfn;
        if !self.expect_owner(pfn, PageOwner::Host, None, None, why) {
            return false;
        }
        let mut ok = true;
        match self.env.probe(pfn, Access::Read, false) {
            Probe::Completed(_) => {}
            first => {
                ok = false;
                why.s("KServ's first read of reclaimed pfn ").hex(pfn);
                why.s(match first {
                    Probe::Faulted => " faulted",
                    Probe::Hung => " hung",
                    _ => " could not be tried",
                });
                why.s(" although KCore reports it Host");
                if first != Probe::Faulted
                    || self.env.probe(pfn, Access::Read, false) != Probe::Completed(0)
                {
                    why.s("; KServ cannot read it: kept");
                    self.pages[i].held = Held::Unreadable;
                    return false;
                }
                why.s("; a second read succeeded");
            }
        }
        let mut buf = [0u8; CHUNK];
        for off in (0..PAGE_SIZE).step_by(CHUNK) {
            self.env.read(pfn, off, &mut buf);
            if let Some(j) = buf.iter().position(|&b| b != 0) {
                if ok {
                    why.s("reclaimed pfn ").hex(pfn);
                } else {
                    why.s(", and");
                }
                why.s(" byte ").hex((off + j) as u64);
                why.s(" is ").hex(u64::from(buf[j])).s(", not 0");
                return false;
            }
        }
        ok
    }

    /// Hands back to the kernel every page KServ holds and KCore agrees is
    /// KServ's; keeps the rest.
    fn release(&mut self) {
        let mut kept = Line::new();
        for i in 0..self.npages {
            let p = self.pages[i];
            // A page listed twice (a setup `check_setup` refuses) goes back once.
            if self.pages[..i].iter().any(|q| q.pfn == p.pfn) {
                continue;
            }
            let ours = !matches!(p.held, Held::Given | Held::Unreadable)
                && matches!(
                    hypercall::page_owner(self.env, p.pfn),
                    Ok(PageInfo {
                        owner: PageOwner::Host,
                        vm: None,
                        ..
                    })
                );
            if ours {
                self.env.release(p.pfn);
                self.released += 1;
            } else {
                if self.kept < 4 {
                    kept.s(" ").hex(p.pfn);
                }
                self.kept += 1;
            }
        }
        let mut d = Line::new();
        d.dec(u64::from(self.released))
            .s(" pages back to the kernel");
        if self.kept == 0 {
            self.pass(Step::Release, &d);
        } else {
            d.s(", ")
                .dec(u64::from(self.kept))
                .s(" kept (KCore may own them):")
                .raw(kept.bytes());
            self.fail(Step::Release, &d);
        }
    }

    fn version(&mut self) {
        let mut d = Line::new();
        match version::query(self.env) {
            Ok(v) => {
                d.s("KCore still answers (").dec(u64::from(v.major)).s(".");
                d.dec(u64::from(v.minor)).s(")");
                self.pass(Step::Version, &d);
            }
            Err(status) => {
                d.s("KCore no longer answers (status ")
                    .hex(status as u64)
                    .s(")");
                self.fail(Step::Version, &d);
            }
        }
    }

    fn result(&mut self) -> Outcome {
        let mut l = Line::new();
        if self.failed == 0 {
            l.s("result: PASS all ")
                .dec(u64::from(self.passed))
                .s(" steps passed");
        } else {
            l.s("result: FAIL ")
                .dec(u64::from(self.failed))
                .s(" of ")
                .dec(u64::from(self.passed + self.failed))
                .s(" steps failed");
        }
        self.env.log(l.bytes());
        Outcome {
            passed: self.passed,
            failed: self.failed,
            released: self.released,
            kept: self.kept,
        }
    }
}

#[cfg(test)]
mod tests;
