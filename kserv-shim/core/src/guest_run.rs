//! Runs `kcore-test-guest` (`tests/guest`) in a protected VM: the module's
//! debugfs `guest_run` file. KServ plays the untrusted VMM a real one would
//! be: it builds the VM, loads and has KCore verify the signed image, runs
//! each vCPU on a kernel thread of its own and emulates what the guest may
//! reach — the test device, PSCI and the GIC's SGIs — from the exits KCore
//! reports, then tears the VM down and takes every page back.
//!
//! 1. `setup`: a protected VM with a [`IPA_BITS`]-bit IPA space, its root
//!    tables from one aligned block of [`ROOT_PAGES`] pages and
//!    [`EXTRA_POOL_PAGES`] more table-pool pages (one context page per vCPU
//!    and the level-3 tables of guest RAM; `NoMemory` later adds more, at
//!    most [`MAX_POOL_PAGES`] in all); the test device's page declared MMIO;
//!    the image copied into pages donated at `RAM_BASE`'s gfn on and
//!    verified against its signature; [`VCPUS`] vCPUs, vCPU 0's PC at
//!    `RAM_BASE` and `x0` = `BOOT_X0`.
//! 2. The run: [`Env::start_vcpu`] starts one thread per vCPU, bound to
//!    physical CPU *i* (the module's glue); each runs [`vcpu_thread`]: enter
//!    the vCPU with `HostVcpuRun`, handle the exit, repeat:
//!    - `IRQ`: nothing (KServ had an interrupt to take); run again.
//!    - `MMIO`: the test device ([`kcore_test_guest::testdev`]): console
//!      bytes become log lines, `STATUS` and `CHECKSUM` are recorded,
//!      `SCRATCH` stores and reads back inverted; a read's value goes back in
//!      the next entry's `COMPLETION`.
//!    - `MEM_FAULT`: a zeroed page donated at that gfn (inside guest RAM
//!      only, at most [`MAX_MEM_PAGES`]), and the access retries.
//!    - `WFI`: the thread sleeps until the vCPU has an interrupt to take,
//!      its timer deadline passes or the VM stops.
//!    - `PSCI`: PSCI 1.0 ([`psci`]): `CPU_ON` starts the target's thread,
//!      `CPU_OFF` parks this one until the next `CPU_ON`, `SYSTEM_OFF` ends
//!      the run; the answer goes back in `COMPLETION`.
//!    - `SGI`: the SGI becomes pending for each target vCPU, which is woken.
//!
//!    The virtual GIC is a minimal model: per vCPU a mask of pending SGIs
//!    (set by any thread) and the list of interrupts in flight (supplied at
//!    the last entry and still pending or active in its exit report, which
//!    the next entry supplies again with that state), at most [`IRQ_SLOTS`]
//!    per entry. The whole run is bounded by a wall-clock timeout, after
//!    which the VM is stopped.
//! 3. `teardown`: `HostTeardownVm`, `HostReclaimPage` for every page the VM
//!    got (memory, image, table pool with the vCPU contexts), then each page
//!    goes back to the kernel only once `HostPageOwner` says it is KServ's.
//!
//! Logs (one line each): `start: …`, `setup: PASS|FAIL …`, `guest: <line>`
//! per console line of the guest, `stop: …`, `vcpu <i>: <n> runs, exits:
//! mmio <a> mem <b> wfi <c> psci <d> sgi <e> irq <f>`, `checksum:
//! PASS|FAIL …`, `teardown: PASS|FAIL …`, and last `result: PASS|FAIL …`:
//! PASS only if the guest's `STATUS` says every test in
//! [`kcore_test_guest::TESTS`] passed, its checksum is
//! [`kcore_test_guest::expected_checksum`], it turned itself off, the vCPUs
//! ran on different physical CPUs and every page came back.
//!
//! Everything that touches the kernel (pages, threads, sleeping, time, the
//! log) is behind [`Env`], which the module's C glue implements and host
//! tests fake. Like the rest of the core, the code avoids `core::fmt`,
//! `dyn` and function pointers (indirect branches fault on CPUs with BTI).
//! State shared by the threads is all atomics in [`Shared`], which the glue
//! allocates zeroed (large: one slot per page of guest RAM).

use crate::conduit::Conduit;
use crate::hypercall::{self, CallError, CreateVm, PageInfo, VmHandle};
use crate::line::{Line, error_name};
use crate::psci;
use crate::runpage::{Exit, PageIo, write_entry};
use core::sync::atomic::Ordering::{Relaxed, SeqCst};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};
use kcore_abi::run::{self, ExitReason, exit_flags, irq};
use kcore_abi::{Error, PageOwner, reg, vm_flags};
use kcore_test_guest::testdev::{self, Width};
use kcore_test_guest::{self as guest, Line as GuestLine, Status};

/// Bytes in a page.
pub const PAGE_SIZE: usize = 4096;
const PAGE_SHIFT: u32 = 12;
/// The guest's vCPUs.
pub const VCPUS: usize = guest::VCPUS as usize;
/// The VM's IPA space: 4 GiB holds the guest's RAM and its test device.
pub const IPA_BITS: u64 = 32;
/// First gfn of guest RAM (where the image goes).
pub const RAM_GFN: u64 = guest::RAM_BASE >> PAGE_SHIFT;
/// Pages of guest RAM.
pub const RAM_PAGES: usize = (guest::RAM_SIZE >> PAGE_SHIFT) as usize;
/// Most pages of guest memory (image included) the run donates: all of RAM.
pub const MAX_MEM_PAGES: usize = RAM_PAGES;
/// The test device's gfn.
pub const TESTDEV_GFN: u64 = testdev::BASE >> PAGE_SHIFT;
/// Most pages of image.
pub const MAX_IMAGE_PAGES: usize = 16;
/// Longest image (64 KiB).
pub const MAX_IMAGE_LEN: usize = MAX_IMAGE_PAGES * PAGE_SIZE;
/// Length of the image's signature block as the glue hands it over: the
/// Ed25519 signature, the signed MMIO manifest, zero padding (KCore reads
/// the manifest's own length from its header).
pub const SIGNATURE_LEN: usize = kcore_abi::manifest::MAX_BLOCK_LEN;
/// `log2` of the root's pages: a 32-bit IPA space starts at level 2 with
/// four concatenated tables, aligned to their size.
pub const ROOT_ORDER: u32 = 2;
/// The root's pages.
pub const ROOT_PAGES: usize = 1 << ROOT_ORDER;
/// Table-pool pages donated after `HostCreateVm`: a context page per vCPU,
/// a level-3 table per 2 MiB of RAM, and one spare.
pub const EXTRA_POOL_PAGES: usize = VCPUS + RAM_PAGES / 512 + 1;
/// Most table-pool pages in all (root included).
pub const MAX_POOL_PAGES: usize = 32;
/// Most interrupts supplied per entry: QEMU's GICv3 has four list
/// registers, of which KCore keeps one for the guest's timer.
pub const IRQ_SLOTS: usize = 3;
/// The priority SGIs are injected with (the guest unmasks every priority).
pub const SGI_PRIORITY: u8 = 0xa0;
/// The default wall-clock limit of a run, in seconds.
pub const TIMEOUT_SECS: u64 = 60;
/// How long stopped threads get to come back, in seconds.
pub const GRACE_SECS: u64 = 10;
/// Most memory faults in a row on pages already (being) donated.
const MAX_REFAULTS: u32 = 100_000;
/// Bytes of one guest console line; longer ones are cut into pieces.
const CONSOLE_BYTES: usize = 200;
/// What every log line about a guest console line starts with.
const GUEST_PREFIX: &str = "guest: ";

const _: () = assert!(guest::RAM_BASE.is_multiple_of(PAGE_SIZE as u64));
const _: () = assert!(guest::RAM_SIZE.is_multiple_of(PAGE_SIZE as u64));
const _: () = assert!(guest::RAM_BASE + guest::RAM_SIZE <= 1 << IPA_BITS);
const _: () =
    assert!(testdev::BASE.is_multiple_of(PAGE_SIZE as u64) && testdev::SIZE == PAGE_SIZE as u64);
const _: () = assert!(VCPUS <= 16 && IRQ_SLOTS <= run::MAX_IRQS);
const _: () = assert!(ROOT_PAGES + EXTRA_POOL_PAGES <= MAX_POOL_PAGES);
const _: () = assert!(MAX_IMAGE_PAGES <= MAX_MEM_PAGES);
const _: () = assert!(CONSOLE_BYTES + GUEST_PREFIX.len() <= crate::line::LINE_BYTES);

/// The PSCI functions the model implements (what `PSCI_FEATURES` admits).
pub const PSCI_IMPLEMENTED: [u32; 10] = [
    psci::VERSION,
    psci::CPU_OFF,
    psci::CPU_ON_32,
    psci::CPU_ON_64,
    psci::AFFINITY_INFO_32,
    psci::AFFINITY_INFO_64,
    psci::MIGRATE_INFO_TYPE,
    psci::SYSTEM_OFF,
    psci::SYSTEM_RESET,
    psci::FEATURES,
];

/// What the run needs from the kernel, besides hypercalls. Every thread
/// has its own `Env`; the calls must be safe to make from several threads
/// at once.
pub trait Env: Conduit + PageIo {
    /// A naturally aligned block of `2^order` zeroed pages (each of which
    /// can be freed alone); the first pfn, or `None`.
    fn alloc_pages(&mut self, order: u32) -> Option<u64>;
    /// Gives page `pfn`, from [`Env::alloc_pages`], back to the kernel.
    fn free_page(&mut self, pfn: u64);
    /// Logs one line (no newline).
    fn log(&mut self, line: &[u8]);
    /// The physical counter (`CNTPCT_EL0`).
    fn now(&mut self) -> u64;
    /// The counter's frequency in Hz.
    fn frequency(&mut self) -> u64;
    /// The physical CPU this thread runs on.
    fn cpu(&mut self) -> u32;
    /// Lets the kernel schedule (called between runs).
    fn relax(&mut self);
    /// Starts the thread of vCPU `idx`, bound to physical CPU `idx`, which
    /// calls [`vcpu_thread`] for it. `Err` with a negative errno.
    fn start_vcpu(&mut self, idx: usize) -> Result<(), i64>;
    /// Waits until vCPU `idx`'s thread has finished or, at the latest,
    /// until the counter reaches `deadline` (it may return earlier); whether
    /// it finished. Not called again once it said so.
    fn join_vcpu(&mut self, idx: usize, deadline: u64) -> bool;
    /// Sleeps until [`Env::wake`] for `idx` (also one that came before this
    /// call, since the last `wait` returned) or, at the latest, until the
    /// counter reaches `deadline` (it may return earlier). Only vCPU
    /// `idx`'s own thread waits on `idx`.
    fn wait(&mut self, idx: usize, deadline: u64);
    /// Wakes vCPU `idx`'s thread from [`Env::wait`].
    fn wake(&mut self, idx: usize);
}

/// The inputs of a run.
#[derive(Clone, Copy, Debug)]
pub struct Setup<'a> {
    /// The flat guest image (1..=[`MAX_IMAGE_LEN`] bytes).
    pub image: &'a [u8],
    /// Its signature block ([`SIGNATURE_LEN`], zero-padded).
    pub signature: &'a [u8; SIGNATURE_LEN],
    /// Wall-clock limit of the run, in seconds.
    pub timeout_secs: u64,
    /// Runs of a vCPU between two rounds of attacks ([`attack`]); 0: none.
    pub attack_every: u64,
}

/// How a run went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Everything passed.
    pub pass: bool,
    /// A vCPU thread did not come back even after the grace period: the
    /// [`Shared`] state and the pages must never be freed (the thread may
    /// still use them).
    pub stuck: bool,
    /// Pages given back to the kernel.
    pub freed: u32,
    /// Pages kept because KServ did not get them back.
    pub kept: u32,
}

// ---- shared state ----------------------------------------------------------------

/// A slot that holds a page: bits 0..52 the pfn, plus these flags.
mod slot {
    /// A thread is allocating the page (no pfn yet).
    pub const CLAIMED: u64 = 1 << 63;
    /// KCore accepted the page (`HostDonateGuest` / `HostDonateVmPool`).
    pub const GIVEN: u64 = 1 << 62;
    /// The slot holds a page the run allocated.
    pub const PRESENT: u64 = 1 << 61;
    /// The pfn bits.
    pub const PFN: u64 = (1 << 52) - 1;
}

/// Why the run stopped (`Shared::stop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum StopReason {
    /// Still running.
    Running = 0,
    /// The guest called PSCI `SYSTEM_OFF`.
    SystemOff = 1,
    /// The guest called PSCI `SYSTEM_RESET`.
    SystemReset = 2,
    /// The wall-clock limit passed.
    Timeout = 3,
    /// Something went wrong (`Shared::fault` says what).
    Failed = 4,
}

impl StopReason {
    fn from_raw(v: u32) -> StopReason {
        match v {
            0 => StopReason::Running,
            1 => StopReason::SystemOff,
            2 => StopReason::SystemReset,
            3 => StopReason::Timeout,
            _ => StopReason::Failed,
        }
    }
}

/// What went wrong in a vCPU thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `HostVcpuRun` failed with this `x0`.
    Run {
        /// The vCPU.
        vcpu: usize,
        /// KCore's status.
        status: u64,
    },
    /// An exit reason this ABI does not define.
    UnknownExit {
        /// The vCPU.
        vcpu: usize,
        /// The reason.
        reason: u64,
    },
    /// The exit reported another number of interrupts than were supplied.
    IrqReport {
        /// The vCPU.
        vcpu: usize,
        /// How many it reported.
        reported: u64,
    },
    /// A memory fault outside guest RAM.
    OutsideRam {
        /// The vCPU.
        vcpu: usize,
        /// The page's address.
        addr: u64,
    },
    /// No page for a memory fault (the kernel had none).
    NoPage {
        /// The vCPU.
        vcpu: usize,
        /// The gfn.
        gfn: u64,
    },
    /// `HostDonateGuest` failed.
    Donate {
        /// The vCPU.
        vcpu: usize,
        /// The gfn.
        gfn: u64,
        /// KCore's status.
        status: u64,
    },
    /// The same kind of memory fault over and over on donated pages.
    Refaults {
        /// The vCPU.
        vcpu: usize,
        /// The last gfn.
        gfn: u64,
    },
    /// The vCPU's thread could not be started.
    Start {
        /// The vCPU.
        vcpu: usize,
        /// The errno.
        errno: i64,
    },
    /// KCore did not refuse an attack on the protected vCPU.
    Attack {
        /// The vCPU.
        vcpu: usize,
        /// Which attack ([`attack`]).
        what: u64,
        /// KCore's status.
        status: u64,
    },
}

impl Fault {
    fn encode(self) -> (u32, usize, u64, u64) {
        match self {
            Fault::Run { vcpu, status } => (1, vcpu, status, 0),
            Fault::UnknownExit { vcpu, reason } => (2, vcpu, reason, 0),
            Fault::IrqReport { vcpu, reported } => (3, vcpu, reported, 0),
            Fault::OutsideRam { vcpu, addr } => (4, vcpu, addr, 0),
            Fault::NoPage { vcpu, gfn } => (5, vcpu, gfn, 0),
            Fault::Donate { vcpu, gfn, status } => (6, vcpu, gfn, status),
            Fault::Refaults { vcpu, gfn } => (7, vcpu, gfn, 0),
            Fault::Start { vcpu, errno } => (8, vcpu, errno as u64, 0),
            Fault::Attack { vcpu, what, status } => (9, vcpu, what, status),
        }
    }

    fn decode(kind: u32, vcpu: usize, a: u64, b: u64) -> Option<Fault> {
        Some(match kind {
            1 => Fault::Run { vcpu, status: a },
            2 => Fault::UnknownExit { vcpu, reason: a },
            3 => Fault::IrqReport { vcpu, reported: a },
            4 => Fault::OutsideRam { vcpu, addr: a },
            5 => Fault::NoPage { vcpu, gfn: a },
            6 => Fault::Donate {
                vcpu,
                gfn: a,
                status: b,
            },
            7 => Fault::Refaults { vcpu, gfn: a },
            8 => Fault::Start {
                vcpu,
                errno: a as i64,
            },
            9 => Fault::Attack {
                vcpu,
                what: a,
                status: b,
            },
            _ => return None,
        })
    }

    fn describe(self, l: &mut Line) {
        let status = |l: &mut Line, x0: u64| {
            match Error::from_x0(x0) {
                Ok(()) => l.s("success"),
                Err(Some(e)) => l.s(error_name(e)),
                Err(None) => l.s("status ").hex(x0),
            };
        };
        match self {
            Fault::Run { vcpu, status: x0 } => {
                l.s("vCPU ").dec(vcpu as u64).s(": HostVcpuRun: ");
                status(l, x0);
            }
            Fault::UnknownExit { vcpu, reason } => {
                l.s("vCPU ").dec(vcpu as u64).s(": unknown exit reason ");
                l.dec(reason);
            }
            Fault::IrqReport { vcpu, reported } => {
                l.s("vCPU ").dec(vcpu as u64).s(": the exit reported ");
                l.dec(reported).s(" interrupts, not the ones supplied");
            }
            Fault::OutsideRam { vcpu, addr } => {
                l.s("vCPU ").dec(vcpu as u64).s(": memory fault at ");
                l.hex(addr).s(", outside guest RAM");
            }
            Fault::NoPage { vcpu, gfn } => {
                l.s("vCPU ").dec(vcpu as u64).s(": no free page for gfn ");
                l.hex(gfn);
            }
            Fault::Donate {
                vcpu,
                gfn,
                status: x0,
            } => {
                l.s("vCPU ").dec(vcpu as u64).s(": HostDonateGuest(gfn ");
                l.hex(gfn).s("): ");
                status(l, x0);
            }
            Fault::Refaults { vcpu, gfn } => {
                l.s("vCPU ")
                    .dec(vcpu as u64)
                    .s(": endless memory faults on ");
                l.s("donated gfn ").hex(gfn);
            }
            Fault::Start { vcpu, errno } => {
                l.s("cannot start the thread of vCPU ").dec(vcpu as u64);
                l.s(" on CPU ").dec(vcpu as u64).s(" (error ").signed(errno);
                l.s(")");
            }
            Fault::Attack {
                vcpu,
                what,
                status: x0,
            } => {
                l.s("vCPU ").dec(vcpu as u64).s(": attack ");
                l.s(attack::name(what)).s(" was not refused: ");
                status(l, x0);
            }
        }
    }
}

/// The exit counters of a vCPU, indices into `VcpuShared::counters`.
mod counter {
    /// `HostVcpuRun` calls that returned.
    pub const RUNS: usize = 0;
    /// MMIO exits.
    pub const MMIO: usize = 1;
    /// Memory faults.
    pub const MEM: usize = 2;
    /// WFI/WFE exits.
    pub const WFI: usize = 3;
    /// PSCI exits.
    pub const PSCI: usize = 4;
    /// SGI exits.
    pub const SGI: usize = 5;
    /// IRQ exits.
    pub const IRQ: usize = 6;
    /// Interrupts the guest completed.
    pub const DELIVERED: usize = 7;
    /// Attacks KCore refused.
    pub const REFUSED: usize = 8;
    /// How many.
    pub const N: usize = 9;
}

/// What KServ tries against the running protected VM between two runs of
/// a vCPU (issue 4's attacks): each must be refused, and the guest must
/// not notice. Made every [`attack::EVERY`] runs of each vCPU.
pub mod attack {
    use kcore_abi::reg;

    /// Runs between two rounds of attacks in the module's runs.
    pub const EVERY: u64 = 400;
    /// Registers KServ tries to read: `GET | index`.
    pub const GETS: [u64; 7] = [
        reg::PC,
        reg::X0,
        reg::x(1),
        reg::x(30),
        reg::sys::SCTLR_EL1,
        reg::sys::TTBR0_EL1,
        reg::V_LO,
    ];
    /// Registers KServ tries to set, and the values.
    pub const SETS: [(u64, u64); 5] = [
        (reg::PC, super::guest::RAM_BASE),
        (reg::X0, 0),
        (reg::x(1), 0xBAD),
        (reg::PSTATE, 0x3C5),
        (reg::sys::VBAR_EL1, 0),
    ];
    /// Interrupt words KServ tries to inject: hardware-mapped to the
    /// physical virtual-timer PPI, to the EL2 timer's PPI, to an SPI; and
    /// the guest timer's own INTID, which KCore keeps for itself.
    pub const IRQS: [u64; 4] = [
        kcore_abi::run::irq::encode(40, 0xa0, true, kcore_abi::run::irq::PENDING)
            | kcore_abi::run::irq::HW
            | 27 << 44,
        kcore_abi::run::irq::encode(33, 0xa0, true, kcore_abi::run::irq::PENDING)
            | kcore_abi::run::irq::HW
            | 26 << 44,
        kcore_abi::run::irq::encode(48, 0xa0, true, kcore_abi::run::irq::PENDING)
            | kcore_abi::run::irq::HW
            | 48 << 44,
        kcore_abi::run::irq::encode(27, 0xa0, true, kcore_abi::run::irq::PENDING),
    ];
    /// Attack ids: a get of `GETS[i]`, a set of `SETS[i]`, a run with
    /// `IRQS[i]`, a get of the other vCPU's PC.
    pub const GET: u64 = 0x100;
    /// See [`GET`].
    pub const SET: u64 = 0x200;
    /// See [`GET`].
    pub const IRQ: u64 = 0x300;
    /// See [`GET`].
    pub const OTHER: u64 = 0x400;

    /// A name for the log.
    pub fn name(what: u64) -> &'static str {
        match what & 0xF00 {
            GET => "get-reg",
            SET => "set-reg",
            IRQ => "hw-irq",
            OTHER => "get-reg-other-vcpu",
            _ => "unknown",
        }
    }
}

/// What the threads share about one vCPU.
pub struct VcpuShared {
    /// The run page ([`slot`] encoding).
    run_page: AtomicU64,
    /// Pending SGIs (bit = INTID), raised by any thread.
    pending: AtomicU32,
    /// `CPU_ON`s accepted for it (vCPU 0's power-on counts as one).
    ons: AtomicU32,
    /// Its `CPU_OFF`s, counted by its own thread.
    offs: AtomicU32,
    /// The physical CPUs it ran on (bit = CPU, up to 63).
    cpus: AtomicU64,
    /// Exit counters ([`counter`]).
    counters: [AtomicU64; counter::N],
}

impl VcpuShared {
    const fn new() -> Self {
        VcpuShared {
            run_page: AtomicU64::new(0),
            pending: AtomicU32::new(0),
            ons: AtomicU32::new(0),
            offs: AtomicU32::new(0),
            cpus: AtomicU64::new(0),
            counters: [const { AtomicU64::new(0) }; counter::N],
        }
    }

    fn count(&self, c: usize) {
        self.counters[c].fetch_add(1, Relaxed);
    }

    fn counted(&self, c: usize) -> u64 {
        self.counters[c].load(Relaxed)
    }

    /// Whether the model has the vCPU on: a `CPU_ON` since its last
    /// `CPU_OFF`.
    fn is_on(&self) -> bool {
        self.ons.load(SeqCst) > self.offs.load(SeqCst)
    }
}

/// Everything the run's threads share. All atomics: an all-zero `Shared`
/// is valid (the glue allocates it zeroed), and [`Shared::reset`] makes any
/// one ready for a run.
pub struct Shared {
    /// The VM handle.
    handle: AtomicU64,
    /// A [`StopReason`].
    stop: AtomicU32,
    /// The [`Fault`] (`Fault::encode`) when `stop` is `Failed`.
    fault_kind: AtomicU32,
    fault_vcpu: AtomicU32,
    fault_a: AtomicU64,
    fault_b: AtomicU64,
    /// The vCPU that stopped the VM with PSCI.
    stopped_by: AtomicU32,
    /// The guest's `STATUS` write.
    status: AtomicU64,
    status_seen: AtomicBool,
    /// The guest's `CHECKSUM` write.
    checksum: AtomicU64,
    checksum_seen: AtomicBool,
    /// The `SCRATCH` register.
    scratch: AtomicU64,
    /// Test device accesses it does not define (read 0, write ignored).
    mmio_other: AtomicU64,
    /// The index in `TESTS` of the next PASS/FAIL line expected.
    next_test: AtomicU32,
    /// PASS and FAIL lines, and those not in `TESTS`' order.
    pass_lines: AtomicU32,
    fail_lines: AtomicU32,
    misordered: AtomicU32,
    /// The guest's `result:` line, if seen.
    result: AtomicU64,
    result_seen: AtomicBool,
    /// Per vCPU.
    vcpus: [VcpuShared; VCPUS],
    /// The table pool's pages ([`slot`] encoding), `pool_len` used.
    pool: [AtomicU64; MAX_POOL_PAGES],
    pool_len: AtomicUsize,
    /// Guest memory by gfn from [`RAM_GFN`] ([`slot`] encoding).
    mem: [AtomicU64; MAX_MEM_PAGES],
    /// KServ's page that carries the signature ([`slot`] encoding).
    sig_page: AtomicU64,
    /// [`Setup::attack_every`] of this run.
    attack_every: AtomicU64,
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

impl Shared {
    /// A fresh state (large: keep it off small stacks).
    pub const fn new() -> Self {
        Shared {
            handle: AtomicU64::new(0),
            stop: AtomicU32::new(0),
            fault_kind: AtomicU32::new(0),
            fault_vcpu: AtomicU32::new(0),
            fault_a: AtomicU64::new(0),
            fault_b: AtomicU64::new(0),
            stopped_by: AtomicU32::new(0),
            status: AtomicU64::new(0),
            status_seen: AtomicBool::new(false),
            checksum: AtomicU64::new(0),
            checksum_seen: AtomicBool::new(false),
            scratch: AtomicU64::new(0),
            mmio_other: AtomicU64::new(0),
            next_test: AtomicU32::new(0),
            pass_lines: AtomicU32::new(0),
            fail_lines: AtomicU32::new(0),
            misordered: AtomicU32::new(0),
            result: AtomicU64::new(0),
            attack_every: AtomicU64::new(0),
            result_seen: AtomicBool::new(false),
            vcpus: [const { VcpuShared::new() }; VCPUS],
            pool: [const { AtomicU64::new(0) }; MAX_POOL_PAGES],
            pool_len: AtomicUsize::new(0),
            mem: [const { AtomicU64::new(0) }; MAX_MEM_PAGES],
            sig_page: AtomicU64::new(0),
        }
    }

    /// Makes the state ready for a run: all zero, vCPU 0 on.
    pub fn reset(&self) {
        for a in [
            &self.handle,
            &self.fault_a,
            &self.fault_b,
            &self.status,
            &self.checksum,
            &self.scratch,
            &self.mmio_other,
            &self.result,
            &self.sig_page,
            &self.attack_every,
        ] {
            a.store(0, SeqCst);
        }
        for a in [
            &self.stop,
            &self.fault_kind,
            &self.fault_vcpu,
            &self.stopped_by,
            &self.next_test,
            &self.pass_lines,
            &self.fail_lines,
            &self.misordered,
        ] {
            a.store(0, SeqCst);
        }
        for a in [&self.status_seen, &self.checksum_seen, &self.result_seen] {
            a.store(false, SeqCst);
        }
        for v in &self.vcpus {
            v.run_page.store(0, SeqCst);
            v.pending.store(0, SeqCst);
            v.ons.store(0, SeqCst);
            v.offs.store(0, SeqCst);
            v.cpus.store(0, SeqCst);
            for c in &v.counters {
                c.store(0, SeqCst);
            }
        }
        for p in self.pool.iter().chain(self.mem.iter()) {
            p.store(0, SeqCst);
        }
        self.pool_len.store(0, SeqCst);
        // vCPU 0 is on from the start.
        self.vcpus[0].ons.store(1, SeqCst);
    }

    fn vm(&self) -> VmHandle {
        VmHandle(self.handle.load(SeqCst))
    }

    /// Why the run stopped, or `Running`.
    pub fn stop_reason(&self) -> StopReason {
        StopReason::from_raw(self.stop.load(SeqCst))
    }

    fn stopped(&self) -> bool {
        self.stop.load(SeqCst) != StopReason::Running as u32
    }

    /// Stops the run for `why` (the first reason wins) and wakes every
    /// vCPU thread. Returns whether this call decided the reason.
    fn stop_for<E: Env>(&self, env: &mut E, why: StopReason) -> bool {
        let won = self
            .stop
            .compare_exchange(StopReason::Running as u32, why as u32, SeqCst, SeqCst)
            .is_ok();
        for i in 0..VCPUS {
            env.wake(i);
        }
        won
    }

    /// Stops the run because of `f`.
    fn fail<E: Env>(&self, env: &mut E, f: Fault) {
        let won = self
            .stop
            .compare_exchange(
                StopReason::Running as u32,
                StopReason::Failed as u32,
                SeqCst,
                SeqCst,
            )
            .is_ok();
        if won {
            let (kind, vcpu, a, b) = f.encode();
            self.fault_vcpu.store(vcpu as u32, SeqCst);
            self.fault_a.store(a, SeqCst);
            self.fault_b.store(b, SeqCst);
            self.fault_kind.store(kind, SeqCst);
        }
        for i in 0..VCPUS {
            env.wake(i);
        }
    }

    /// The fault that stopped the run, if one did.
    pub fn fault(&self) -> Option<Fault> {
        Fault::decode(
            self.fault_kind.load(SeqCst),
            self.fault_vcpu.load(SeqCst) as usize,
            self.fault_a.load(SeqCst),
            self.fault_b.load(SeqCst),
        )
    }

    /// Makes SGI `intid` pending for vCPU `target` and wakes it.
    fn raise<E: Env>(&self, env: &mut E, target: usize, intid: u32) {
        if target < VCPUS && intid < 16 {
            self.vcpus[target].pending.fetch_or(1 << intid, SeqCst);
            env.wake(target);
        }
    }

    /// One more table-pool page: `Err` if none may or can be added, or
    /// KCore refused it.
    fn grow_pool<E: Env>(&self, env: &mut E) -> Result<(), CallError> {
        let mut i = self.pool_len.load(SeqCst);
        loop {
            if i >= MAX_POOL_PAGES {
                return Err(CallError::Kcore(Error::NoMemory));
            }
            match self.pool_len.compare_exchange(i, i + 1, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(now) => i = now,
            }
        }
        let Some(pfn) = env.alloc_pages(0) else {
            return Err(CallError::Kcore(Error::NoMemory));
        };
        let r = hypercall::donate_vm_pool(env, self.vm(), pfn);
        let given = if r.is_ok() { slot::GIVEN } else { 0 };
        self.pool[i].store(pfn | slot::PRESENT | given, SeqCst);
        r
    }

    /// Runs `call` until KCore stops answering `NoMemory`, growing the
    /// table pool after each one (at most up to [`MAX_POOL_PAGES`]).
    fn with_pool<E: Env, T>(
        &self,
        env: &mut E,
        mut call: impl FnMut(&mut E) -> Result<T, CallError>,
    ) -> Result<T, CallError> {
        loop {
            match call(env) {
                Err(CallError::Kcore(Error::NoMemory)) => self.grow_pool(env)?,
                r => return r,
            }
        }
    }

    /// Donates `pfn` at `gfn` (growing the pool as KCore needs); records it.
    /// (KCore cleans it to the point of coherency before the guest maps it:
    /// the guest starts with its MMU and caches off.)
    fn donate<E: Env>(&self, env: &mut E, at: &AtomicU64, pfn: u64, gfn: u64) -> Result<(), u64> {
        at.store(pfn | slot::PRESENT, SeqCst);
        let vm = self.vm();
        match self.with_pool(env, |env| hypercall::donate_guest(env, vm, pfn, gfn)) {
            Ok(()) => {
                at.store(pfn | slot::PRESENT | slot::GIVEN, SeqCst);
                Ok(())
            }
            Err(e) => Err(raw_status(e)),
        }
    }

    fn tally_line(&self, text: &[u8]) {
        let Ok(text) = core::str::from_utf8(text) else {
            return;
        };
        let name = match guest::parse_line(text) {
            Some(GuestLine::Pass { name }) => {
                self.pass_lines.fetch_add(1, SeqCst);
                name
            }
            Some(GuestLine::Fail { name, .. }) => {
                self.fail_lines.fetch_add(1, SeqCst);
                name
            }
            Some(GuestLine::Result(s)) => {
                self.result.store(s.to_word(), SeqCst);
                self.result_seen.store(true, SeqCst);
                return;
            }
            None => return,
        };
        let next = self.next_test.load(SeqCst) as usize;
        if guest::TESTS.get(next).is_some_and(|t| *t == name) {
            self.next_test.store(next as u32 + 1, SeqCst);
        } else {
            self.misordered.fetch_add(1, SeqCst);
        }
    }
}

/// `x0` of a failed call.
fn raw_status(e: CallError) -> u64 {
    match e {
        CallError::Kcore(e) => e.to_x0(),
        CallError::UnknownStatus(x0) => x0,
        CallError::MalformedReply => 0,
    }
}

/// The vCPU index an MPIDR names, if it is one of the guest's.
pub fn vcpu_of_mpidr(mpidr: u64) -> Option<usize> {
    psci::vcpu_of_mpidr(mpidr, VCPUS)
}

/// The vCPUs an `ICC_SGI1R_EL1` value written by vCPU `from` targets, as a
/// mask ([`psci::sgi_targets`]).
pub fn sgi_targets(value: u64, from: usize) -> u32 {
    psci::sgi_targets(value, from, VCPUS) as u32
}

fn width_of(bytes: u64) -> Option<Width> {
    match bytes {
        1 => Some(Width::Byte),
        2 => Some(Width::Half),
        4 => Some(Width::Word),
        8 => Some(Width::Double),
        _ => None,
    }
}

// ---- one vCPU -----------------------------------------------------------------------

/// What a vCPU thread does after an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// Run again.
    Run,
    /// Idle until an interrupt, the counter reaching this deadline, or the
    /// end of the run.
    Idle(u64),
    /// The vCPU is off (until the next `CPU_ON`).
    Off,
    /// The run is over.
    Stop,
}

/// A vCPU as its own thread keeps it.
struct Vcpu {
    idx: usize,
    /// Whether the model has it on.
    on: bool,
    /// The next entry's `COMPLETION`.
    completion: u64,
    /// Interrupts in flight: supplied, and still pending or active.
    inflight: [u64; IRQ_SLOTS],
    n_inflight: usize,
    /// The console line so far.
    console: [u8; CONSOLE_BYTES],
    console_len: usize,
    /// Memory faults in a row on pages already (being) donated.
    refaults: u32,
}

impl Vcpu {
    fn new(idx: usize) -> Self {
        Vcpu {
            idx,
            on: false,
            completion: 0,
            inflight: [0; IRQ_SLOTS],
            n_inflight: 0,
            console: [0; CONSOLE_BYTES],
            console_len: 0,
            refaults: 0,
        }
    }

    fn shared<'s>(&self, vm: &'s Shared) -> &'s VcpuShared {
        &vm.vcpus[self.idx]
    }

    /// Whether an interrupt waits for the guest: a pending SGI, or one in
    /// flight that is still pending.
    fn has_irq(&self, vm: &Shared) -> bool {
        self.shared(vm).pending.load(SeqCst) != 0
            || self.inflight[..self.n_inflight]
                .iter()
                .any(|&w| irq::state(w) & irq::PENDING != 0)
    }

    /// The interrupt words of the next entry: those in flight, again, with
    /// pending SGIs merged in; then new pending SGIs while slots remain
    /// (the rest stay pending).
    fn prepare_irqs(&mut self, vm: &Shared, out: &mut [u64; IRQ_SLOTS]) -> usize {
        let pending = &self.shared(vm).pending;
        let mut take = pending.swap(0, SeqCst);
        let mut n = 0;
        for &w in &self.inflight[..self.n_inflight] {
            let bit = 1u32.checked_shl(irq::vintid(w)).unwrap_or(0);
            let mut state = irq::state(w);
            if take & bit != 0 {
                state |= irq::PENDING;
                take &= !bit;
            }
            out[n] = irq::with_state(w, state);
            n += 1;
        }
        let mut rest = take;
        while rest != 0 && n < IRQ_SLOTS {
            let intid = rest.trailing_zeros();
            rest &= rest - 1;
            take &= !(1 << intid);
            out[n] = irq::encode(intid, SGI_PRIORITY, true, irq::PENDING);
            n += 1;
        }
        if take != 0 {
            pending.fetch_or(take, SeqCst);
        }
        n
    }

    /// Takes the states of the supplied interrupts from the exit report.
    fn take_irq_report(&mut self, vm: &Shared, supplied: &[u64], e: &Exit) -> Result<(), Fault> {
        let reported = e.word(run::EXIT_IRQ_COUNT);
        if reported != supplied.len() as u64 {
            return Err(Fault::IrqReport {
                vcpu: self.idx,
                reported,
            });
        }
        self.n_inflight = 0;
        for (i, &w) in supplied.iter().enumerate() {
            let state = irq::state(e.word(run::EXIT_IRQS + i));
            if state == 0 {
                self.shared(vm).count(counter::DELIVERED);
            } else {
                self.inflight[self.n_inflight] = irq::with_state(w, state);
                self.n_inflight += 1;
            }
        }
        Ok(())
    }

    /// A round of attacks on this (protected, already started) vCPU: each
    /// must be refused, and the guest must not notice (it goes on passing
    /// its tests). Uses the run page before the real entry rewrites it.
    fn attack<E: Env>(&mut self, env: &mut E, vm: &Shared, run_page: u64) -> Result<(), Fault> {
        let me = self.shared(vm);
        let idx = self.idx as u64;
        let refused = |what: u64, r: Result<u64, CallError>, only_denied: bool| match r {
            Err(CallError::Kcore(Error::Denied)) => Ok(()),
            Err(CallError::Kcore(Error::Busy)) if !only_denied => Ok(()),
            Err(e) => Err(Fault::Attack {
                vcpu: self.idx,
                what,
                status: raw_status(e),
            }),
            Ok(_) => Err(Fault::Attack {
                vcpu: self.idx,
                what,
                status: 0,
            }),
        };
        for (i, &id) in attack::GETS.iter().enumerate() {
            refused(
                attack::GET | i as u64,
                hypercall::vcpu_get_reg(env, vm.vm(), idx, id),
                true,
            )?;
            me.count(counter::REFUSED);
        }
        for (i, &(id, value)) in attack::SETS.iter().enumerate() {
            refused(
                attack::SET | i as u64,
                hypercall::vcpu_set_reg(env, vm.vm(), idx, id, value).map(|()| 0),
                true,
            )?;
            me.count(counter::REFUSED);
        }
        // The other vCPU may be running right now: refused either way.
        let other = (idx + 1) % VCPUS as u64;
        refused(
            attack::OTHER,
            hypercall::vcpu_get_reg(env, vm.vm(), other, reg::PC),
            false,
        )?;
        me.count(counter::REFUSED);
        for (i, &w) in attack::IRQS.iter().enumerate() {
            write_entry(env, run_page, 0, self.completion, &[w]);
            refused(
                attack::IRQ | i as u64,
                hypercall::vcpu_run(env, vm.vm(), idx, run_page),
                true,
            )?;
            me.count(counter::REFUSED);
        }
        Ok(())
    }

    /// One entry into the guest and what its exit asks for.
    fn step<E: Env>(&mut self, env: &mut E, vm: &Shared) -> Next {
        let me = self.shared(vm);
        let run_page = me.run_page.load(SeqCst) & slot::PFN;
        let runs = me.counted(counter::RUNS);
        let every = vm.attack_every.load(Relaxed);
        if every != 0
            && runs > 0
            && runs.is_multiple_of(every)
            && let Err(f) = self.attack(env, vm, run_page)
        {
            vm.fail(env, f);
            return Next::Stop;
        }
        let mut irqs = [0u64; IRQ_SLOTS];
        let n = self.prepare_irqs(vm, &mut irqs);
        write_entry(env, run_page, 0, self.completion, &irqs[..n]);

        let r = hypercall::vcpu_run(env, vm.vm(), self.idx as u64, run_page);
        let cpu = env.cpu();
        me.cpus.fetch_or(1u64.checked_shl(cpu).unwrap_or(0), SeqCst);
        let reason = match r {
            Ok(reason) => reason,
            Err(e) => {
                // The entry was refused: the interrupts stay ours.
                vm.fail(
                    env,
                    Fault::Run {
                        vcpu: self.idx,
                        status: raw_status(e),
                    },
                );
                return Next::Stop;
            }
        };
        me.count(counter::RUNS);
        self.completion = 0;
        let e = Exit::read(env, run_page);
        if let Err(f) = self.take_irq_report(vm, &irqs[..n], &e) {
            vm.fail(env, f);
            return Next::Stop;
        }
        let decoded = ExitReason::from_raw(reason);
        if decoded != Some(ExitReason::MemFault) {
            self.refaults = 0;
        }
        match decoded {
            Some(ExitReason::Irq) => {
                me.count(counter::IRQ);
                Next::Run
            }
            Some(ExitReason::Mmio) => {
                me.count(counter::MMIO);
                self.mmio(env, vm, &e);
                Next::Run
            }
            Some(ExitReason::MemFault) => {
                me.count(counter::MEM);
                self.mem_fault(env, vm, e.word(run::EXIT_ADDR))
            }
            Some(ExitReason::Wfi) => {
                me.count(counter::WFI);
                if e.word(run::EXIT_FLAGS) & exit_flags::WFE != 0 {
                    // No event model: a WFE only yields.
                    Next::Run
                } else {
                    Next::Idle(e.word(run::EXIT_TIMER_DEADLINE))
                }
            }
            Some(ExitReason::Psci) => {
                me.count(counter::PSCI);
                let args = [
                    e.word(run::EXIT_ARGS),
                    e.word(run::EXIT_ARGS + 1),
                    e.word(run::EXIT_ARGS + 2),
                ];
                self.psci(env, vm, e.word(run::EXIT_DATA), args)
            }
            Some(ExitReason::Sgi) => {
                me.count(counter::SGI);
                let targets = sgi_targets(e.word(run::EXIT_DATA), self.idx);
                let intid = ((e.word(run::EXIT_DATA) >> 24) & 0xF) as u32;
                for t in 0..VCPUS {
                    if targets & (1 << t) != 0 {
                        vm.raise(env, t, intid);
                    }
                }
                Next::Run
            }
            None => {
                vm.fail(
                    env,
                    Fault::UnknownExit {
                        vcpu: self.idx,
                        reason,
                    },
                );
                Next::Stop
            }
        }
    }

    /// An access to the test device.
    fn mmio<E: Env>(&mut self, env: &mut E, vm: &Shared, e: &Exit) {
        let write = e.word(run::EXIT_FLAGS) & exit_flags::WRITE != 0;
        let offset = e.word(run::EXIT_ADDR).wrapping_sub(testdev::BASE);
        let data = e.word(run::EXIT_DATA);
        let Some(width) = width_of(e.word(run::EXIT_WIDTH)).filter(|_| offset < testdev::SIZE)
        else {
            vm.mmio_other.fetch_add(1, SeqCst);
            return;
        };
        if write {
            if offset == testdev::CONSOLE && width == Width::Byte {
                self.console_byte(env, vm, data as u8);
            } else if offset == testdev::STATUS && width == Width::Double {
                vm.status.store(data, SeqCst);
                vm.status_seen.store(true, SeqCst);
            } else if offset == testdev::CHECKSUM && width == Width::Double {
                vm.checksum.store(data, SeqCst);
                vm.checksum_seen.store(true, SeqCst);
            } else if offset == testdev::SCRATCH {
                vm.scratch
                    .store(testdev::scratch_store(data, width), SeqCst);
            } else {
                vm.mmio_other.fetch_add(1, SeqCst);
            }
        } else if offset == testdev::SCRATCH {
            self.completion = testdev::scratch_load(vm.scratch.load(SeqCst), width);
        } else {
            vm.mmio_other.fetch_add(1, SeqCst);
        }
    }

    fn console_byte<E: Env>(&mut self, env: &mut E, vm: &Shared, b: u8) {
        match b {
            b'\n' => return self.flush_console(env, vm),
            b'\r' => return,
            0x20..=0x7e => self.console[self.console_len] = b,
            _ => self.console[self.console_len] = b'?',
        }
        self.console_len += 1;
        if self.console_len == CONSOLE_BYTES {
            self.flush_console(env, vm);
        }
    }

    /// Logs the console line so far (if any).
    fn flush_console<E: Env>(&mut self, env: &mut E, vm: &Shared) {
        let text = &self.console[..self.console_len];
        let mut l = Line::new();
        l.s(GUEST_PREFIX).raw(text);
        env.log(l.bytes());
        vm.tally_line(text);
        self.console_len = 0;
    }

    /// A memory fault at `addr`: a zeroed page donated there.
    fn mem_fault<E: Env>(&mut self, env: &mut E, vm: &Shared, addr: u64) -> Next {
        let gfn = addr >> PAGE_SHIFT;
        let Some(at) = gfn
            .checked_sub(RAM_GFN)
            .and_then(|i| vm.mem.get(i as usize))
        else {
            vm.fail(
                env,
                Fault::OutsideRam {
                    vcpu: self.idx,
                    addr,
                },
            );
            return Next::Stop;
        };
        if at
            .compare_exchange(0, slot::CLAIMED, SeqCst, SeqCst)
            .is_err()
        {
            // Donated already, or being donated by the other vCPU: the
            // access retries.
            self.refaults += 1;
            if self.refaults > MAX_REFAULTS {
                vm.fail(
                    env,
                    Fault::Refaults {
                        vcpu: self.idx,
                        gfn,
                    },
                );
                return Next::Stop;
            }
            return Next::Run;
        }
        self.refaults = 0;
        let Some(pfn) = env.alloc_pages(0) else {
            at.store(0, SeqCst);
            vm.fail(
                env,
                Fault::NoPage {
                    vcpu: self.idx,
                    gfn,
                },
            );
            return Next::Stop;
        };
        match vm.donate(env, at, pfn, gfn) {
            Ok(()) => Next::Run,
            Err(status) => {
                vm.fail(
                    env,
                    Fault::Donate {
                        vcpu: self.idx,
                        gfn,
                        status,
                    },
                );
                Next::Stop
            }
        }
    }

    /// A PSCI call: `fid` with `x1..x3` = `args`.
    fn psci<E: Env>(&mut self, env: &mut E, vm: &Shared, fid: u64, args: [u64; 3]) -> Next {
        let fid = if fid >> 32 == 0 { fid as u32 } else { 0 };
        let smc32 = fid & (1 << 30) == 0;
        let arg = |a: u64| if smc32 { a & 0xFFFF_FFFF } else { a };
        let (answer, next) = match fid {
            psci::VERSION => (psci::VERSION_1_0, Next::Run),
            psci::FEATURES => {
                let asked = args[0];
                let known = asked >> 32 == 0 && PSCI_IMPLEMENTED.contains(&(asked as u32));
                let answer = if known {
                    psci::SUCCESS
                } else {
                    psci::NOT_SUPPORTED
                };
                (answer, Next::Run)
            }
            psci::CPU_ON_32 | psci::CPU_ON_64 => {
                // KCore has checked the target and recorded its entry point
                // and context id: starting its thread is all that is left.
                match vcpu_of_mpidr(arg(args[0])).filter(|&t| t != self.idx) {
                    Some(t) => {
                        vm.vcpus[t].ons.fetch_add(1, SeqCst);
                        env.wake(t);
                        (psci::SUCCESS, Next::Run)
                    }
                    None => (psci::INVALID_PARAMETERS, Next::Run),
                }
            }
            psci::CPU_OFF => {
                self.on = false;
                self.shared(vm).offs.fetch_add(1, SeqCst);
                (0, Next::Off)
            }
            psci::AFFINITY_INFO_32 | psci::AFFINITY_INFO_64 => {
                match vcpu_of_mpidr(arg(args[0])).filter(|_| args[1] == 0) {
                    Some(t) if vm.vcpus[t].is_on() => (psci::AFFINITY_ON, Next::Run),
                    Some(_) => (psci::AFFINITY_OFF, Next::Run),
                    None => (psci::INVALID_PARAMETERS, Next::Run),
                }
            }
            psci::MIGRATE_INFO_TYPE => (psci::NO_TRUSTED_OS, Next::Run),
            psci::SYSTEM_OFF | psci::SYSTEM_RESET => {
                let why = if fid == psci::SYSTEM_OFF {
                    StopReason::SystemOff
                } else {
                    StopReason::SystemReset
                };
                if vm.stop_for(env, why) {
                    vm.stopped_by.store(self.idx as u32, SeqCst);
                }
                (0, Next::Stop)
            }
            _ => (psci::NOT_SUPPORTED, Next::Run),
        };
        self.completion = answer;
        next
    }
}

/// Idles vCPU `v` until an interrupt waits for it, the counter reaches
/// `deadline` or the run stops.
fn idle<E: Env>(env: &mut E, vm: &Shared, v: &Vcpu, deadline: u64) {
    loop {
        if vm.stopped() || v.has_irq(vm) || env.now() >= deadline {
            return;
        }
        env.wait(v.idx, deadline);
    }
}

/// The body of vCPU `idx`'s thread: runs it while the model has it on,
/// idles it while off, until the run stops.
pub fn vcpu_thread<E: Env>(env: &mut E, vm: &Shared, idx: usize) {
    if idx >= VCPUS {
        return;
    }
    let mut v = Vcpu::new(idx);
    loop {
        if vm.stopped() {
            break;
        }
        if !v.on {
            if vm.vcpus[idx].is_on() {
                v.on = true;
            } else {
                env.wait(idx, u64::MAX);
            }
            continue;
        }
        match v.step(env, vm) {
            Next::Run | Next::Off => env.relax(),
            Next::Idle(deadline) => idle(env, vm, &v, deadline),
            Next::Stop => break,
        }
    }
    if v.console_len > 0 {
        v.flush_console(env, vm);
    }
}

// ---- the run ---------------------------------------------------------------------------

/// Collects why a run failed, for the result line.
struct Verdict {
    failed: bool,
    why: Line,
}

impl Verdict {
    fn fail(&mut self, what: &Line) {
        if self.failed {
            self.why.s("; ");
        }
        self.failed = true;
        self.why.raw(what.bytes());
    }
}

fn log_step<E: Env>(env: &mut E, step: &str, pass: bool, detail: &Line) {
    let mut l = Line::new();
    l.s(step).s(if pass { ": PASS " } else { ": FAIL " });
    l.raw(detail.bytes());
    env.log(l.bytes());
}

/// Runs the guest: setup, the vCPU threads, teardown. Every page the run
/// allocated goes back to the kernel once KCore gave it back; pages it
/// cannot account for are kept ([`Outcome::kept`]).
pub fn run<E: Env>(env: &mut E, vm: &Shared, setup: &Setup<'_>) -> Outcome {
    vm.reset();
    vm.attack_every.store(setup.attack_every, SeqCst);
    let mut v = Verdict {
        failed: false,
        why: Line::new(),
    };
    let mut l = Line::new();
    l.s("start: image of ").dec(setup.image.len() as u64);
    l.s(" bytes, ").dec(VCPUS as u64).s(" vCPUs, ");
    l.dec(guest::RAM_SIZE >> 20)
        .s(" MiB of RAM at ")
        .hex(guest::RAM_BASE);
    l.s(", timeout ").dec(setup.timeout_secs).s(" s");
    env.log(l.bytes());

    let mut d = Line::new();
    let handle = match setup_vm(env, vm, setup, &mut d) {
        Ok(h) => {
            log_step(env, "setup", true, &d);
            Some(h)
        }
        Err(h) => {
            log_step(env, "setup", false, &d);
            v.fail(&d);
            h
        }
    };
    let mut stuck = false;
    if !v.failed {
        stuck = run_vcpus(env, vm, setup, &mut v);
        summarize(env, vm, &mut v);
    }
    let (mut freed, mut kept) = (0, 0);
    if stuck {
        let mut l = Line::new();
        l.s("a vCPU thread did not come back: the VM and all its pages are kept");
        log_step(env, "teardown", false, &l);
        v.fail(&l);
    } else {
        let t = teardown(env, vm, handle);
        freed = t.freed;
        kept = t.kept;
        log_step(env, "teardown", t.ok, &t.detail);
        if !t.ok {
            v.fail(&t.detail);
        }
    }

    let mut l = Line::new();
    if v.failed {
        l.s("result: FAIL ").raw(v.why.bytes());
    } else {
        l.s("result: PASS ").dec(guest::TESTS.len() as u64);
        l.s(" guest tests passed, checksum matches, vCPUs on CPUs");
        for (i, c) in vm.vcpus.iter().enumerate() {
            l.s(if i == 0 { " " } else { ", " });
            cpus(&mut l, c.cpus.load(SeqCst));
        }
        l.s(", ").dec(u64::from(freed)).s(" pages back");
    }
    env.log(l.bytes());
    Outcome {
        pass: !v.failed,
        stuck,
        freed,
        kept,
    }
}

/// Appends a CPU mask as `0`, or `0+1` when there are several.
fn cpus(l: &mut Line, mask: u64) {
    if mask == 0 {
        l.s("none");
        return;
    }
    let mut first = true;
    for c in 0..64u64 {
        if mask & (1 << c) != 0 {
            if !first {
                l.s("+");
            }
            first = false;
            l.dec(c);
        }
    }
}

/// Step 1: the VM, its image, vCPUs and run pages. `Err` with the handle of
/// a VM that exists (to tear down); `d` says what failed or, on success,
/// what was set up.
fn setup_vm<E: Env>(
    env: &mut E,
    vm: &Shared,
    setup: &Setup<'_>,
    d: &mut Line,
) -> Result<VmHandle, Option<VmHandle>> {
    let image = setup.image;
    if image.is_empty() || image.len() > MAX_IMAGE_LEN {
        d.s("image of ").dec(image.len() as u64).s(" bytes (1..=");
        d.dec(MAX_IMAGE_LEN as u64).s(" allowed)");
        return Err(None);
    }
    // The root: one aligned block.
    let Some(root) = env.alloc_pages(ROOT_ORDER) else {
        d.s("no block of ")
            .dec(ROOT_PAGES as u64)
            .s(" pages for the root tables");
        return Err(None);
    };
    for i in 0..ROOT_PAGES {
        vm.pool[i].store((root + i as u64) | slot::PRESENT, SeqCst);
    }
    vm.pool_len.store(ROOT_PAGES, SeqCst);
    let created = hypercall::create_vm(
        env,
        &CreateVm {
            flags: vm_flags::PROTECTED,
            ipa_bits: IPA_BITS,
            max_vcpus: VCPUS as u64,
            pool_pfn: root,
            pool_pages: ROOT_PAGES as u64,
        },
    );
    let h = match created {
        Ok(h) => h,
        Err(e) => {
            d.s("HostCreateVm(protected, ")
                .dec(IPA_BITS)
                .s("-bit IPA, ");
            d.dec(ROOT_PAGES as u64)
                .s(" pages at pfn ")
                .hex(root)
                .s("): ");
            d.err(e);
            return Err(None);
        }
    };
    for i in 0..ROOT_PAGES {
        vm.pool[i].fetch_or(slot::GIVEN, SeqCst);
    }
    vm.handle.store(h.0, SeqCst);
    let fail = |d: &mut Line, what: &str, e: CallError| {
        d.s(what).s(": ").err(e);
        Err(Some(h))
    };
    for _ in 0..EXTRA_POOL_PAGES {
        if let Err(e) = vm.grow_pool(env) {
            return fail(d, "HostDonateVmPool", e);
        }
    }
    // The image, in pages donated from RAM_GFN on.
    let pages = image.len().div_ceil(PAGE_SIZE);
    for p in 0..pages {
        let Some(pfn) = env.alloc_pages(0) else {
            d.s("no page for the image");
            return Err(Some(h));
        };
        let end = image.len().min((p + 1) * PAGE_SIZE);
        env.write(pfn, 0, &image[p * PAGE_SIZE..end]);
        if let Err(status) = vm.donate(env, &vm.mem[p], pfn, RAM_GFN + p as u64) {
            d.s("image page ")
                .dec(p as u64)
                .s(" at gfn ")
                .hex(RAM_GFN + p as u64);
            return fail(d, ": HostDonateGuest", status_error(status));
        }
    }
    let Some(sig_pfn) = env.alloc_pages(0) else {
        d.s("no page for the signature");
        return Err(Some(h));
    };
    vm.sig_page.store(sig_pfn | slot::PRESENT, SeqCst);
    env.write(sig_pfn, 0, setup.signature);
    let len = image.len() as u64;
    if let Err(e) = hypercall::verify_image(env, h, RAM_GFN, len, sig_pfn) {
        d.s("HostVerifyImage(")
            .dec(len)
            .s(" bytes at gfn ")
            .hex(RAM_GFN)
            .s("): ");
        d.err(e);
        if e.is(Error::VerificationFailed) {
            d.s(" (not signed with the key in the boot image?)");
        }
        return Err(Some(h));
    }
    // Only now, and only inside the manifest the image was signed with.
    if let Err(e) = hypercall::declare_mmio(env, h, TESTDEV_GFN, 1) {
        d.s("test device at ").hex(testdev::BASE).s(": ");
        return fail(d, "HostDeclareMmio", e);
    }

    for i in 0..VCPUS as u64 {
        if let Err(e) = vm.with_pool(env, |env| hypercall::create_vcpu(env, h, i)) {
            d.s("vCPU ").dec(i).s(": ");
            return fail(d, "HostCreateVcpu", e);
        }
    }
    for (r, value) in [(reg::PC, guest::RAM_BASE), (reg::X0, guest::BOOT_X0)] {
        if let Err(e) = hypercall::vcpu_set_reg(env, h, 0, r, value) {
            d.s("vCPU 0 register ").dec(r).s(": ");
            return fail(d, "HostVcpuSetReg", e);
        }
    }
    for (i, c) in vm.vcpus.iter().enumerate() {
        let Some(pfn) = env.alloc_pages(0) else {
            d.s("no run page for vCPU ").dec(i as u64);
            return Err(Some(h));
        };
        c.run_page.store(pfn | slot::PRESENT, SeqCst);
    }

    d.s("protected VM ")
        .hex(h.0)
        .s(", ")
        .dec(IPA_BITS)
        .s("-bit IPA, image of ");
    d.dec(len).s(" bytes verified at gfn ").hex(RAM_GFN).s(", ");
    d.dec(VCPUS as u64)
        .s(" vCPUs, ")
        .dec(vm.pool_len.load(SeqCst) as u64);
    d.s(" table pages, test device at ").hex(testdev::BASE);
    Ok(h)
}

/// A call's `x0` as the error it stands for.
fn status_error(x0: u64) -> CallError {
    match Error::from_x0(x0) {
        Err(Some(e)) => CallError::Kcore(e),
        _ => CallError::UnknownStatus(x0),
    }
}

/// Step 2: the vCPU threads, until the guest turns the VM off, something
/// fails or the time is up. Returns whether a thread is stuck.
fn run_vcpus<E: Env>(env: &mut E, vm: &Shared, setup: &Setup<'_>, v: &mut Verdict) -> bool {
    let freq = env.frequency().max(1);
    let start = env.now();
    let deadline = start.saturating_add(setup.timeout_secs.saturating_mul(freq));
    let mut started = [false; VCPUS];
    let mut joined = [false; VCPUS];
    for (i, s) in started.iter_mut().enumerate() {
        match env.start_vcpu(i) {
            Ok(()) => *s = true,
            Err(errno) => {
                vm.fail(env, Fault::Start { vcpu: i, errno });
                break;
            }
        }
    }
    join_all(env, &started, &mut joined, deadline);
    if started != joined {
        vm.stop_for(env, StopReason::Timeout);
        let grace = env.now().saturating_add(GRACE_SECS.saturating_mul(freq));
        join_all(env, &started, &mut joined, grace);
    }
    let ms = env.now().wrapping_sub(start).saturating_mul(1000) / freq;

    let mut l = Line::new();
    let reason = vm.stop_reason();
    match reason {
        StopReason::SystemOff | StopReason::SystemReset => {
            l.s(if reason == StopReason::SystemOff {
                "SYSTEM_OFF"
            } else {
                "SYSTEM_RESET"
            });
            l.s(" from vCPU ")
                .dec(u64::from(vm.stopped_by.load(SeqCst)));
        }
        StopReason::Timeout => {
            l.s("timeout after ").dec(setup.timeout_secs).s(" s");
        }
        StopReason::Failed | StopReason::Running => match vm.fault() {
            Some(f) => f.describe(&mut l),
            None => {
                l.s("the threads ended by themselves");
            }
        },
    }
    let mut s = Line::new();
    s.s("stop: ").raw(l.bytes()).s(" after ").dec(ms).s(" ms");
    env.log(s.bytes());
    if reason != StopReason::SystemOff {
        let mut d = Line::new();
        d.s("no SYSTEM_OFF: ").raw(l.bytes());
        v.fail(&d);
    }
    started != joined
}

/// Joins every started thread not yet joined, until `deadline`.
fn join_all<E: Env>(
    env: &mut E,
    started: &[bool; VCPUS],
    joined: &mut [bool; VCPUS],
    deadline: u64,
) {
    for i in 0..VCPUS {
        while started[i] && !joined[i] {
            if env.join_vcpu(i, deadline) {
                joined[i] = true;
            } else if env.now() >= deadline {
                return;
            }
        }
    }
}

/// The per-vCPU lines, the checksum line, and the verdict on the guest.
fn summarize<E: Env>(env: &mut E, vm: &Shared, v: &mut Verdict) {
    for (i, c) in vm.vcpus.iter().enumerate() {
        let mut l = Line::new();
        l.s("vcpu ")
            .dec(i as u64)
            .s(": ")
            .dec(c.counted(counter::RUNS));
        l.s(" runs, exits: mmio ").dec(c.counted(counter::MMIO));
        l.s(" mem ").dec(c.counted(counter::MEM));
        l.s(" wfi ").dec(c.counted(counter::WFI));
        l.s(" psci ").dec(c.counted(counter::PSCI));
        l.s(" sgi ").dec(c.counted(counter::SGI));
        l.s(" irq ").dec(c.counted(counter::IRQ));
        l.s("; ").dec(c.counted(counter::REFUSED));
        l.s(" attacks refused; ").dec(c.counted(counter::DELIVERED));
        l.s(" interrupts delivered, CPU ");
        cpus(&mut l, c.cpus.load(SeqCst));
        env.log(l.bytes());
    }

    let refused: u64 = vm.vcpus.iter().map(|c| c.counted(counter::REFUSED)).sum();
    let mut d = Line::new();
    d.dec(refused)
        .s(" refused (registers of the running protected vCPUs read and set, ")
        .s("hardware-mapped and timer interrupts injected), every ")
        .dec(vm.attack_every.load(Relaxed))
        .s(" runs");
    // An attack KCore let through already failed the run; none made at all
    // means the run was too short to test anything.
    let attacked =
        (refused > 0 || vm.attack_every.load(Relaxed) == 0) && vm.fault_kind.load(SeqCst) != 9;
    log_step(env, "attacks", attacked, &d);
    if !attacked {
        let mut w = Line::new();
        if refused == 0 {
            w.s("no attacks made");
        } else {
            w.s("an attack was not refused");
        }
        v.fail(&w);
    }

    let expected = guest::expected_checksum();
    let mut d = Line::new();
    let sum = vm.checksum.load(SeqCst);
    let ok = vm.checksum_seen.load(SeqCst) && sum == expected;
    if !vm.checksum_seen.load(SeqCst) {
        d.s("the guest reported none (expected ")
            .hex(expected)
            .s(")");
    } else if ok {
        d.hex(sum);
    } else {
        d.hex(sum).s(", expected ").hex(expected);
    }
    log_step(env, "checksum", ok, &d);
    if !ok {
        let mut w = Line::new();
        if vm.checksum_seen.load(SeqCst) {
            w.s("checksum ").hex(sum).s(" wrong");
        } else {
            w.s("no checksum");
        }
        v.fail(&w);
    }

    let status = Status::from_word(vm.status.load(SeqCst));
    let mut d = Line::new();
    if !vm.status_seen.load(SeqCst) {
        d.s("no status");
        v.fail(&d);
    } else if !status.all_passed() {
        d.s("status: ").dec(u64::from(status.passed)).s(" passed, ");
        d.dec(u64::from(status.failed)).s(" failed of ");
        d.dec(guest::TESTS.len() as u64);
        v.fail(&d);
    }
    let misordered = vm.misordered.load(SeqCst);
    let seen = vm.next_test.load(SeqCst) as usize;
    if misordered != 0 || seen != guest::TESTS.len() {
        let mut d = Line::new();
        d.dec(seen as u64).s("/").dec(guest::TESTS.len() as u64);
        d.s(" test lines in order");
        if misordered != 0 {
            d.s(", ").dec(u64::from(misordered)).s(" out of order");
        }
        v.fail(&d);
    }

    let masks = vm.vcpus.each_ref().map(|c| c.cpus.load(SeqCst));
    let mut overlap = false;
    for i in 0..VCPUS {
        for j in 0..i {
            overlap |= masks[i] & masks[j] != 0;
        }
    }
    if masks.contains(&0) || overlap {
        let mut d = Line::new();
        d.s("vCPUs not each on a CPU of its own: on CPUs");
        for (i, &m) in masks.iter().enumerate() {
            d.s(if i == 0 { " " } else { ", " });
            cpus(&mut d, m);
        }
        v.fail(&d);
    }
}

/// What teardown achieved.
struct Teardown {
    ok: bool,
    freed: u32,
    kept: u32,
    detail: Line,
}

/// Step 3: the VM torn down, every page reclaimed, and the pages KCore
/// says are KServ's again given back to the kernel.
fn teardown<E: Env>(env: &mut E, vm: &Shared, handle: Option<VmHandle>) -> Teardown {
    let mut t = Teardown {
        ok: true,
        freed: 0,
        kept: 0,
        detail: Line::new(),
    };
    let mut problem = Line::new();
    let pool = &vm.pool[..vm.pool_len.load(SeqCst).min(MAX_POOL_PAGES)];
    let (mut reclaimed, mut memory, mut tables) = (0u64, 0u64, 0u64);
    if let Some(h) = handle {
        match hypercall::teardown_vm(env, h) {
            Ok(()) => {}
            Err(e) => {
                problem.s("HostTeardownVm: ").err(e).s("; ");
                t.ok = false;
            }
        }
        for (is_table, at) in vm
            .mem
            .iter()
            .map(|a| (false, a))
            .chain(pool.iter().map(|a| (true, a)))
        {
            let s = at.load(SeqCst);
            if s & slot::PRESENT == 0 {
                continue;
            }
            let pfn = s & slot::PFN;
            match hypercall::reclaim_page(env, h, pfn) {
                Ok(()) => {
                    reclaimed += 1;
                    if is_table {
                        tables += 1;
                    } else {
                        memory += 1;
                    }
                }
                // Never accepted: nothing to reclaim (release asks KCore).
                Err(_) if s & slot::GIVEN == 0 => {}
                Err(e) => {
                    if t.ok {
                        problem
                            .s("HostReclaimPage(pfn ")
                            .hex(pfn)
                            .s("): ")
                            .err(e)
                            .s("; ");
                    }
                    t.ok = false;
                }
            }
        }
        // The VM's slot goes with its last page.
        if t.ok {
            match hypercall::teardown_vm(env, h) {
                Err(CallError::Kcore(Error::NotFound)) => {}
                r => {
                    problem.s("the VM is still known after its last page (");
                    match r {
                        Ok(()) => problem.s("teardown succeeded"),
                        Err(e) => problem.err(e),
                    };
                    problem.s("); ");
                    t.ok = false;
                }
            }
        }
    }
    // Back to the kernel: only what KCore says is KServ's.
    let others = vm
        .vcpus
        .iter()
        .map(|c| &c.run_page)
        .chain(core::iter::once(&vm.sig_page));
    for at in vm.mem.iter().chain(pool.iter()).chain(others) {
        let s = at.load(SeqCst);
        if s & slot::PRESENT == 0 {
            continue;
        }
        let pfn = s & slot::PFN;
        match hypercall::page_owner(env, pfn) {
            Ok(PageInfo {
                owner: PageOwner::Host,
                vm: None,
                ..
            }) => {
                env.free_page(pfn);
                at.store(0, SeqCst);
                t.freed += 1;
            }
            r => {
                if t.kept == 0 {
                    problem.s("pfn ").hex(pfn).s(" is ");
                    match r {
                        Ok(i) => problem.owner(&i),
                        Err(e) => problem.s("unknown: ").err(e),
                    };
                    problem.s(", kept; ");
                }
                t.kept += 1;
                t.ok = false;
            }
        }
    }
    if t.ok {
        t.detail.dec(reclaimed).s(" pages reclaimed (").dec(memory);
        t.detail.s(" memory, ").dec(tables).s(" table), ");
        t.detail
            .dec(u64::from(t.freed))
            .s(" pages back to the kernel");
    } else {
        t.detail.raw(problem.bytes()).dec(u64::from(t.kept));
        t.detail
            .s(" pages kept, ")
            .dec(u64::from(t.freed))
            .s(" back");
    }
    t
}

#[cfg(test)]
mod tests;
