//! The KVM API against the real KCore (`kcore` over the host double of
//! `kcore-arch`, its guest CPU playing scripted exits) and a fake kernel,
//! one thread: VM and vCPU creation, memory slots, registers, and `KVM_RUN`
//! turning the guest's exits into `kvm_run` exits (MMIO to the VMM and its
//! completion, memory faults backed with pinned pages, PSCI system events,
//! KCore refusals), `immediate_exit` and signals, and teardown giving every
//! page back.

extern crate std;

use super::env::{KvmEnv, Lock};
use super::errno::*;
use super::uapi::{self, exit as kexit, run as krun};
use super::vcpu::{self, Vcpu};
use super::vm::{self, Host, Vm};
use crate::conduit::Conduit;
use crate::runpage::PageIo;
use kcore::exception::ec;
use kcore::host::{Direct, Regs, run_result};
use kcore::vcpu::{ExitKind, GuestExit, Loaded, run_vcpu_in};
use kcore_abi::kvm_ext::KSERV_VM_VERIFY_IMAGE;
use kcore_abi::run::exit;
use kcore_abi::{Error, HypercallId, PageOwner, reg as kr};
use kcore_arch::host_cpu::ScriptedGuest;
use kcore_arch::host_world::{World, small_world};
use std::boxed::Box;
use std::collections::{BTreeMap, BTreeSet};
use std::vec;
use std::vec::Vec;

const HOST: Host = Host {
    ipa_limit: 44,
    online_cpus: 4,
    midr: 0x410F_D083,
    user_limit: 1 << 48,
    // QEMU's cortex-a72: 6 breakpoints, 4 watchpoints; no RAS.
    dfr0: 0x1030_5106,
    pfr0: 0x1122,
};

/// The machine's RAM: 16 MiB, of which KCore keeps the first 256 KiB.
const MACHINE_RAM: u64 = 0x8000_0000;
const MACHINE_PAGES: u64 = 4096;
const KCORE_PAGES: u64 = 64;
/// The general register the scripted guest's MMIO accesses use.
const RT: usize = 1;
/// A [`Script`] flag of this test's: the guest writes a page mapped
/// read-only, so the hardware reports a permission fault (else a
/// translation fault: nothing mapped there).
const READ_ONLY_PAGE: u64 = 1 << 63;
/// Runs KServ may start with the guest's script used up (each ends in a
/// physical interrupt) before the test is stuck in a loop.
const IDLE_RUNS: usize = 1000;

/// What the guest does next, as KServ will see it: reason, flags, addr,
/// data, width, args (the guest CPU turns it into the trap that makes KCore
/// report it).
type Script = (u64, u64, u64, u64, u64, [u64; 3]);

/// The real KCore on a small machine, reached through its HVC handler and
/// its vCPU run loop as the EL2 glue reaches them.
struct Kcore {
    w: World,
    guest: ScriptedGuest,
    cpu: Loaded,
    /// Every call: id, `x1..=x6`, and `x0`, `x1` of the answer.
    calls: Vec<(HypercallId, [u64; 6], u64, u64)>,
    /// For each scripted exit in order, the guest register KServ's answer
    /// lands in at the next entry (an MMIO read's, a PSCI call's `x0`).
    answer_regs: Vec<Option<usize>>,
    /// Runs started with the script used up.
    idle_runs: usize,
}

impl Kcore {
    fn new() -> Kcore {
        Kcore {
            w: small_world(MACHINE_RAM, MACHINE_PAGES, KCORE_PAGES, 40),
            guest: ScriptedGuest::new(4),
            cpu: Loaded::empty(),
            calls: Vec::new(),
            answer_regs: Vec::new(),
            idle_runs: 0,
        }
    }
}

/// A data abort with a valid syndrome (translation or permission fault,
/// level 3) at `ipa`.
fn data_abort(ipa: u64, write: bool, width: u64, permission: bool) -> GuestExit {
    let sas = u64::from(width.max(1).trailing_zeros());
    let fault_status = if permission { 0x0F } else { 0x07 };
    GuestExit {
        kind: ExitKind::Sync,
        esr: ec::DABT_LOW << 26
            | 1 << 25
            | 1 << 24
            | sas << 22
            | (RT as u64) << 16
            | 1 << 15
            | u64::from(write) << 6
            | fault_status,
        far: ipa & 0xFFF,
        hpfar: (ipa >> 12) << 4,
        fp: false,
    }
}

/// Another thread's work, run on the fake kernel.
type Preempt = Box<dyn FnOnce(&mut Fake)>;

#[derive(Default)]
struct Fake {
    // The kernel.
    next_pfn: u64,
    allocated: Vec<u64>,
    arrays: BTreeMap<u64, Box<[u64]>>,
    /// Each wait's longest polling window.
    polls: Vec<u64>,
    user: BTreeMap<u64, u8>,
    pinned: BTreeMap<u64, u64>,
    freed: BTreeSet<u64>,
    run: Vec<u8>,
    signal: bool,
    kicks: Vec<usize>,
    /// The deadline of every wait.
    waits: Vec<u64>,
    /// Pages pinned for reading only.
    pinned_ro: BTreeSet<u64>,
    // Eventfds: the caller's fds (an fd of another kind maps to 0), each
    // eventfd's references and counter, and the irqfd hooks.
    fds: BTreeMap<i32, u64>,
    eventfd_refs: BTreeMap<u64, u32>,
    eventfd_count: BTreeMap<u64, u64>,
    hooks: BTreeMap<u64, (u64, u32, bool)>,
    next_hook: u64,
    // The random numbers handed out so far, and the thread's run delay.
    randoms: u64,
    run_delay: u64,
    // The shim's locks this thread holds, and another thread's work to
    // run at a chosen point where it holds none (`races`).
    held: Vec<Lock>,
    preempt: Option<(usize, Preempt)>,
    // KCore.
    k: Option<Box<Kcore>>,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            next_pfn: (MACHINE_RAM >> 12) + KCORE_PAGES,
            run: std::vec![0; uapi::size::RUN],
            k: Some(Box::new(Kcore::new())),
            ..Fake::default()
        }
    }
    fn k(&mut self) -> &mut Kcore {
        self.k.as_mut().expect("a KCore")
    }
    fn run_u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.run[off..off + 4].try_into().unwrap_or_default())
    }
    fn run_u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.run[off..off + 8].try_into().unwrap_or_default())
    }
    /// Lets KCore's signature check accept images signed by [`sign`].
    fn trust_signer(&mut self) {
        let pk = signer().pk;
        self.k()
            .w
            .host
            .mem_mut()
            .set_verify_key(kcore::image::VerifyKey::new(*pk).expect("a key"));
    }
    /// Queues the guest's next exits.
    fn script(&mut self, exits: impl IntoIterator<Item = Script>) {
        for (reason, flags, addr, data, width, args) in exits {
            let write = flags & kcore_abi::run::exit_flags::WRITE != 0;
            let k = self.k();
            let answer = match reason {
                exit::MMIO | exit::MEM_FAULT => {
                    let permission = flags & READ_ONLY_PAGE != 0;
                    let abort = data_abort(addr, write, width, permission);
                    k.guest.then_do(abort, move |ctx, _| {
                        ctx.x[RT] = data;
                    });
                    (reason == exit::MMIO && !write).then_some(RT)
                }
                exit::PSCI => {
                    let hvc = GuestExit {
                        kind: ExitKind::Sync,
                        esr: ec::HVC64 << 26 | 1 << 25,
                        far: 0,
                        hpfar: 0,
                        fp: false,
                    };
                    k.guest.then_do(hvc, move |ctx, _| {
                        ctx.x[0] = data;
                        ctx.x[1..4].copy_from_slice(&args);
                    });
                    Some(0)
                }
                // A debug exception KServ's debugging routes to EL2: `data`
                // is its syndrome, `addr` the watchpoint's address.
                exit::DEBUG => {
                    k.guest.then(GuestExit {
                        kind: ExitKind::Sync,
                        esr: data,
                        far: addr,
                        hpfar: 0,
                        fp: false,
                    });
                    None
                }
                _ => {
                    k.guest.then(GuestExit {
                        kind: ExitKind::Irq,
                        esr: 0,
                        far: 0,
                        hpfar: 0,
                        fp: false,
                    });
                    None
                }
            };
            k.answer_regs.push(answer);
        }
    }
    /// KServ's answers as the guest found them on its next entry, in order.
    fn answers(&mut self) -> Vec<u64> {
        let k = self.k();
        k.answer_regs
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some(k.guest.entries.get(i + 1)?.0.x[(*r)?]))
            .collect()
    }
    /// The list registers' virtual INTIDs at the guest's last entry.
    fn last_entry_irqs(&mut self) -> Vec<u32> {
        let k = self.k();
        k.guest.entries.last().map_or(Vec::new(), |(_, lrs)| {
            lrs.as_slice().iter().map(|lr| lr.vintid).collect()
        })
    }
    /// How many calls of `id` KServ made.
    fn calls_of(&mut self, id: HypercallId) -> usize {
        self.k().calls.iter().filter(|c| c.0 == id).count()
    }
    /// The accepted calls of `id`, with their arguments.
    fn accepted(&mut self, id: HypercallId) -> Vec<[u64; 6]> {
        let k = self.k();
        k.calls
            .iter()
            .filter(|c| c.0 == id && c.2 == 0)
            .map(|c| c.1)
            .collect()
    }
    /// The MMIO ranges KCore accepted, `(first gfn, pages)`.
    fn mmio(&mut self) -> Vec<(u64, u64)> {
        self.accepted(HypercallId::HostDeclareMmio)
            .iter()
            .map(|a| (a[1], a[2]))
            .collect()
    }
    /// The value of every register KCore accepted from KServ, by `(vCPU,
    /// register)`: the last one set.
    fn regs_set(&mut self) -> BTreeMap<(u64, u64), u64> {
        self.accepted(HypercallId::HostVcpuSetReg)
            .iter()
            .map(|a| ((a[1], a[2]), a[3]))
            .collect()
    }
    /// The handle of the VM KServ created.
    fn handle(&mut self) -> u64 {
        let k = self.k();
        k.calls
            .iter()
            .find(|c| c.0 == HypercallId::HostCreateVm && c.2 == 0)
            .map_or(0, |c| c.3)
    }
    /// A raw hypercall, as another KServ CPU (the test) makes it.
    fn hvc(&mut self, id: HypercallId, args: &[u64]) -> [u64; 4] {
        let mut regs = [0u64; 8];
        regs[0] = u64::from(id.function_id());
        regs[1..=args.len()].copy_from_slice(args);
        self.call(&mut regs);
        [regs[0], regs[1], regs[2], regs[3]]
    }
    /// A non-protected vCPU's register, as KCore holds it.
    fn get_reg(&mut self, vcpu: u64, id: u64) -> Option<u64> {
        let h = self.handle();
        let r = self.hvc(HypercallId::HostVcpuGetReg, &[h, vcpu, id]);
        (r[0] == 0).then_some(r[1])
    }
    /// Sets a vCPU's register in KCore; whether KCore took it.
    fn set_reg(&mut self, vcpu: u64, id: u64, value: u64) -> bool {
        let h = self.handle();
        self.hvc(HypercallId::HostVcpuSetReg, &[h, vcpu, id, value])[0] == 0
    }
    /// Who KCore says owns `pfn`: the owner, and the gfn if a VM maps it.
    fn owner(&mut self, pfn: u64) -> (Option<PageOwner>, u64) {
        let r = self.hvc(HypercallId::HostPageOwner, &[pfn]);
        (PageOwner::from_raw(r[1]), r[3])
    }
    /// KServ's pages KCore says a VM holds (its memory or its tables).
    fn vm_pages(&mut self) -> Vec<u64> {
        let first = (MACHINE_RAM >> 12) + KCORE_PAGES;
        (first..(MACHINE_RAM >> 12) + MACHINE_PAGES)
            .filter(|&p| {
                matches!(
                    self.owner(p).0,
                    Some(PageOwner::Guest | PageOwner::VmTable | PageOwner::HostSharedWithGuest)
                )
            })
            .collect()
    }
    /// Pages a VM's memory holds (donated or shared), by gfn.
    fn guest_pages(&mut self) -> BTreeMap<u64, u64> {
        let first = (MACHINE_RAM >> 12) + KCORE_PAGES;
        let mut out = BTreeMap::new();
        for p in first..(MACHINE_RAM >> 12) + MACHINE_PAGES {
            if let (Some(PageOwner::Guest | PageOwner::HostSharedWithGuest), gfn) = self.owner(p) {
                out.insert(gfn, p);
            }
        }
        out
    }
}

impl Conduit for Fake {
    fn call(&mut self, regs: &mut [u64; 8]) {
        let k = self.k();
        let mut r: Regs = [0; 31];
        r[..8].copy_from_slice(regs);
        if regs[0] == u64::from(HypercallId::HostVcpuRun.function_id()) && k.guest.script.is_empty()
        {
            k.idle_runs += 1;
            assert!(k.idle_runs < IDLE_RUNS, "the guest's script ran out");
        }
        if let Some(a) = k.w.host.handle_hvc(0, &mut r, &mut k.w.hw) {
            let mut d = Direct {
                host: &mut k.w.host,
                hw: &mut k.w.hw,
            };
            let result = run_vcpu_in(&mut d, &mut k.guest, a, &mut k.cpu);
            run_result(result, &mut r);
        }
        if let Some(id) = HypercallId::from_raw(regs[0]) {
            let mut args = [0; 6];
            args.copy_from_slice(&regs[1..7]);
            k.calls.push((id, args, r[0], r[1]));
        }
        regs.copy_from_slice(&r[..8]);
    }
}

/// The key pair of this test's VM images.
fn signer() -> ed25519_compact::KeyPair {
    ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([7; 32]))
}

impl PageIo for Fake {
    fn write(&mut self, pfn: u64, offset: usize, data: &[u8]) {
        self.k().w.hw.write((pfn << 12) + offset as u64, data);
    }
    fn read(&mut self, pfn: u64, offset: usize, buf: &mut [u8]) {
        let b = self.k().w.hw.bytes((pfn << 12) + offset as u64, buf.len());
        buf.copy_from_slice(&b);
    }
}

impl KvmEnv for Fake {
    fn copy_from_user(&mut self, uaddr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        if uaddr < 0x1000 {
            return Err(EFAULT);
        }
        for (i, b) in buf.iter_mut().enumerate() {
            *b = *self.user.get(&(uaddr + i as u64)).unwrap_or(&0);
        }
        Ok(())
    }
    fn copy_to_user(&mut self, uaddr: u64, data: &[u8]) -> Result<(), Errno> {
        if uaddr < 0x1000 {
            return Err(EFAULT);
        }
        for (i, b) in data.iter().enumerate() {
            self.user.insert(uaddr + i as u64, *b);
        }
        Ok(())
    }
    fn pin_user_page(&mut self, uaddr: u64, write: bool) -> Result<u64, Errno> {
        let pfn = self.alloc_pages(0).ok_or(ENOMEM)?;
        // The page holds what the caller's memory holds there.
        let page = uaddr & !0xFFF;
        let mut bytes = [0u8; 4096];
        self.copy_from_user(page, &mut bytes)?;
        PageIo::write(self, pfn, 0, &bytes);
        if !write {
            self.pinned_ro.insert(pfn);
        }
        self.pinned.insert(pfn, uaddr);
        Ok(pfn)
    }
    fn unpin_page(&mut self, pfn: u64) {
        assert!(self.pinned.remove(&pfn).is_some(), "unpin of {pfn:#x}");
        assert_eq!(
            self.owner(pfn).0,
            Some(PageOwner::Host),
            "unpin of {pfn:#x}"
        );
    }
    fn alloc_pages(&mut self, order: u32) -> Option<u64> {
        let n = 1u64 << order;
        let first = self.next_pfn.next_multiple_of(n);
        if first + n > (MACHINE_RAM >> 12) + MACHINE_PAGES {
            return None;
        }
        self.next_pfn = first + n;
        self.allocated.extend(first..first + n);
        Some(first)
    }
    fn free_page(&mut self, pfn: u64) {
        assert_eq!(
            self.owner(pfn).0,
            Some(PageOwner::Host),
            "freed a VM page {pfn:#x}"
        );
        assert!(self.freed.insert(pfn), "double free {pfn:#x}");
    }
    fn alloc_array(&mut self, words: usize) -> Option<u64> {
        let b = std::vec![0u64; words].into_boxed_slice();
        let a = b.as_ptr() as u64;
        self.arrays.insert(a, b);
        Some(a)
    }
    fn free_array(&mut self, addr: u64) {
        assert!(self.arrays.remove(&addr).is_some());
    }
    fn run_read(&mut self, offset: usize, buf: &mut [u8]) {
        buf.copy_from_slice(&self.run[offset..offset + buf.len()]);
    }
    fn run_write(&mut self, offset: usize, data: &[u8]) {
        self.run[offset..offset + data.len()].copy_from_slice(data);
    }
    fn lock(&mut self, l: Lock) {
        // `Lock`'s order: the VM's mutex before the vGIC's spinlock, each
        // once.
        assert!(
            self.held.iter().all(|&h| (h as u32) < (l as u32)),
            "{l:?} taken holding {:?}",
            self.held
        );
        self.held.push(l);
    }
    fn unlock(&mut self, l: Lock) {
        assert_eq!(self.held.pop(), Some(l), "unlock order");
        if self.held.is_empty()
            && let Some((n, work)) = self.preempt.take()
        {
            // Another thread would get the locks here.
            if n == 0 {
                work(self);
            } else {
                self.preempt = Some((n - 1, work));
            }
        }
    }
    fn now(&mut self) -> u64 {
        1000
    }
    fn cpu(&mut self) -> u32 {
        2
    }
    fn signal_pending(&mut self) -> bool {
        self.signal
    }
    fn wait(&mut self, deadline: u64, max_poll_ns: u64) {
        // Nothing else runs: a wait would be forever.
        self.waits.push(deadline);
        self.signal = true;
        self.polls.push(max_poll_ns);
    }
    fn kick(&mut self, id: usize) {
        self.kicks.push(id);
    }
    fn enter_guest(&mut self) {}
    fn leave_guest(&mut self) {}
    fn relax(&mut self) {}
    fn log(&mut self, _line: &[u8]) {}
    fn random_u64(&mut self) -> u64 {
        self.randoms += 1;
        0x0123_4567_89AB_CDEF_u64.rotate_left(self.randoms as u32)
    }
    fn ptp_snapshot(&mut self) -> Option<(u64, u64)> {
        Some((0x1_2345_6789, 5000))
    }
    fn run_delay(&mut self) -> u64 {
        self.run_delay
    }
    fn ccsidr(&mut self, csselr: u8) -> u32 {
        // Line size, ways and sets that tell the caches apart.
        0x7000_E01A ^ u32::from(csselr) << 13
    }
    fn eventfd_get(&mut self, fd: i32) -> Result<u64, Errno> {
        match self.fds.get(&fd) {
            None => Err(EBADF),
            Some(0) => Err(EINVAL),
            Some(&e) => {
                *self.eventfd_refs.entry(e).or_default() += 1;
                Ok(e)
            }
        }
    }
    fn eventfd_put(&mut self, eventfd: u64) {
        let r = self.eventfd_refs.get_mut(&eventfd);
        assert!(r.as_ref().is_some_and(|r| **r > 0), "put of {eventfd:#x}");
        if let Some(r) = r {
            *r -= 1;
        }
    }
    fn eventfd_signal(&mut self, eventfd: u64) {
        assert!(self.eventfd_refs.get(&eventfd).is_some_and(|&r| r > 0));
        *self.eventfd_count.entry(eventfd).or_default() += 1;
    }
    fn irqfd_attach(
        &mut self,
        fd: i32,
        eventfd: u64,
        gsi: u32,
        resample: bool,
    ) -> Result<u64, Errno> {
        if self.fds.get(&fd) != Some(&eventfd) {
            return Err(EINVAL);
        }
        self.next_hook += 1;
        self.hooks.insert(self.next_hook, (eventfd, gsi, resample));
        Ok(self.next_hook)
    }
    fn irqfd_detach(&mut self, hook: u64) {
        assert!(self.hooks.remove(&hook).is_some(), "detach of {hook}");
    }
}

impl Fake {
    /// References held on eventfds.
    fn eventfd_refs(&self) -> u32 {
        self.eventfd_refs.values().sum()
    }
    /// Signals the eventfd of `fd` as a VMM's thread would: the hooked
    /// irqfds' injections run (the glue's worker).
    fn signal_fd(&mut self, vm: &Vm, fd: i32) {
        let e = self.fds[&fd];
        let hooked: Vec<(u32, bool)> = self
            .hooks
            .values()
            .filter(|h| h.0 == e)
            .map(|h| (h.1, h.2))
            .collect();
        for (gsi, resample) in hooked {
            vm::irqfd_inject(self, vm, gsi, resample);
        }
    }
}

fn new_vm(f: &mut Fake, ty: u64) -> Box<Vm> {
    // SAFETY: all zero is what the glue hands the core (atomics, integers,
    // bools and cells of those).
    let vm: Box<Vm> = unsafe { Box::new_zeroed().assume_init() };
    vm::init(f, &vm, ty, &HOST).unwrap_or_else(|e| panic!("init {e}"));
    vm
}

fn new_vcpu(f: &mut Fake, vm: &Vm, id: u64) -> Box<Vcpu> {
    // SAFETY: as in `new_vm`.
    let mut v: Box<Vcpu> = unsafe { Box::new_zeroed().assume_init() };
    vm::vcpu_reserve(f, vm, id).unwrap_or_else(|e| panic!("reserve {e}"));
    vcpu::create(f, vm, &mut v, id).unwrap_or_else(|e| panic!("create {e}"));
    v
}

/// Puts `words` in user memory at `at`; returns `at`.
fn user(f: &mut Fake, at: u64, words: &[u64]) -> u64 {
    for (i, w) in words.iter().enumerate() {
        f.copy_to_user(at + 8 * i as u64, &w.to_le_bytes()).ok();
    }
    at
}

fn ioctl(f: &mut Fake, vm: &Vm, v: &mut Vcpu, cmd: u32, arg: u64) -> Result<i64, Errno> {
    vcpu::ioctl(f, vm, &HOST, v, cmd, arg)
}

fn init(f: &mut Fake, vm: &Vm, v: &mut Vcpu, features: u64) {
    let a = user(f, 0x9000, &[5 | features << 32, 0, 0, 0]);
    assert_eq!(ioctl(f, vm, v, uapi::ARM_VCPU_INIT, a), Ok(0));
}

/// `KVM_ENABLE_CAP` of `cap` on the VM with `flags` and `args[0]`.
fn enable_cap(f: &mut Fake, vm: &Vm, cap: u64, flags: u64, arg: u64) -> Result<i64, Errno> {
    let mut words = [0u64; 13];
    words[0] = cap | flags << 32;
    words[1] = arg;
    let a = user(f, 0x8300, &words);
    vm::ioctl(f, vm, &HOST, uapi::ENABLE_CAP, a)
}

const RAM: u64 = 0x4000_0000;
const UADDR: u64 = 0x7000_0000;

fn slot(f: &mut Fake, vm: &Vm) {
    let a = user(f, 0x8000, &[0, RAM, 0x10_0000, UADDR]);
    assert_eq!(
        vm::ioctl(f, vm, &HOST, uapi::SET_USER_MEMORY_REGION, a),
        Ok(0)
    );
}

#[test]
fn system_fd_and_vm_types() {
    assert_eq!(vm::dev_ioctl(&HOST, uapi::GET_API_VERSION, 0), 12);
    assert_eq!(vm::dev_ioctl(&HOST, uapi::GET_API_VERSION, 1), ret(EINVAL));
    assert_eq!(vm::dev_ioctl(&HOST, uapi::GET_VCPU_MMAP_SIZE, 0), 4096);
    assert_eq!(vm::dev_ioctl(&HOST, 0xAE7F, 0), ret(EINVAL));
    assert_eq!(
        vm::dev_ioctl(&HOST, uapi::CHECK_EXTENSION, uapi::cap::ARM_VM_IPA_SIZE),
        44
    );
    assert_eq!(
        vm::dev_ioctl(&HOST, uapi::CHECK_EXTENSION, uapi::cap::NR_VCPUS),
        4
    );
    assert_eq!(
        vm::dev_ioctl(&HOST, uapi::CHECK_EXTENSION, uapi::cap::ARM_PSCI),
        1
    );
    // QEMU 10 refuses to start without it (`kvm_required_capabilites`).
    assert_eq!(
        vm::dev_ioctl(&HOST, uapi::CHECK_EXTENSION, uapi::cap::INTERNAL_ERROR_DATA),
        1
    );
    assert_eq!(vm::check_type(0, 44), Ok((false, 40)));
    assert_eq!(vm::check_type(1 << 31 | 36, 44), Ok((true, 36)));
    assert_eq!(vm::check_type(45, 44), Err(EINVAL));
    assert_eq!(vm::check_type(31, 44), Err(EINVAL));
    assert_eq!(vm::check_type(1 << 8, 44), Err(EINVAL));
    assert_eq!(
        vm::check_type(0, 36),
        Err(EINVAL),
        "40 bits by default, as KVM"
    );
}

#[test]
fn registers_of_a_non_protected_vcpu() {
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    let mut v = new_vcpu(&mut f, &vm, 0);
    let one = user(
        &mut f,
        0x9100,
        &[uapi::reg::core(uapi::reg::SIZE_U64, 10), 0xA000],
    );
    assert_eq!(
        ioctl(&mut f, &vm, &mut v, uapi::GET_ONE_REG, one),
        Err(ENOEXEC)
    );
    init(&mut f, &vm, &mut v, 1 << 2);
    user(&mut f, 0xA000, &[0x1234]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::SET_ONE_REG, one), Ok(0));
    assert_eq!(f.get_reg(0, kr::x(5)), Some(0x1234));
    // A watchpoint control register (DBGWCR15_EL1) is KCore's and keeps
    // what the VMM writes, as KVM stores it.
    let wcr = user(
        &mut f,
        0x9080,
        &[super::regs::sys_id(kr::sys::debug(63)), 0xA080],
    );
    user(&mut f, 0xA080, &[0x1f5]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::SET_ONE_REG, wcr), Ok(0));
    assert_eq!(f.get_reg(0, kr::sys::debug(63)), Some(0x1f5));
    user(&mut f, 0xA080, &[0]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::GET_ONE_REG, wcr), Ok(0));
    let mut b = [0u8; 8];
    f.copy_from_user(0xA080, &mut b).ok();
    assert_eq!(u64::from_le_bytes(b), 0x1f5);
    // The counter: physical (1000) minus the VM's offset.
    assert!(f.set_reg(0, kr::CNTVOFF, 400));
    let cnt = user(&mut f, 0x9200, &[uapi::reg::TIMER_CNT, 0xA100]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::GET_ONE_REG, cnt), Ok(0));
    f.copy_from_user(0xA100, &mut b).ok();
    assert_eq!(u64::from_le_bytes(b), 600);
    // REG_LIST: E2BIG with the count, then the list.
    let list = user(&mut f, 0xB000, &[3]);
    assert_eq!(
        ioctl(&mut f, &vm, &mut v, uapi::GET_REG_LIST, list),
        Err(E2BIG)
    );
    f.copy_from_user(0xB000, &mut b).ok();
    assert_eq!(u64::from_le_bytes(b), super::regs::COUNT as u64);
    user(&mut f, 0xB000, &[300]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::GET_REG_LIST, list), Ok(0));
    // Bad PSTATE mode: EINVAL without a hypercall.
    let ps = user(
        &mut f,
        0x9300,
        &[uapi::reg::core(uapi::reg::SIZE_U64, 66), 0xA200],
    );
    user(&mut f, 0xA200, &[0x10]);
    assert_eq!(
        ioctl(&mut f, &vm, &mut v, uapi::SET_ONE_REG, ps),
        Err(EINVAL)
    );
}

#[test]
fn a_protected_vcpu_takes_pc_x0_and_reset_values_only() {
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 1 << 31);
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    let set = |f: &mut Fake, v: &mut Vcpu, id: u64, val: u64| {
        let one = user(f, 0x9000, &[id, 0xA000]);
        user(f, 0xA000, &[val]);
        vcpu::ioctl(f, &vm, &HOST, v, uapi::SET_ONE_REG, one)
    };
    let core = |off| uapi::reg::core(uapi::reg::SIZE_U64, off);
    assert_eq!(set(&mut f, &mut v, core(64), RAM), Ok(0));
    assert_eq!(set(&mut f, &mut v, core(0), 7), Ok(0));
    assert_eq!(set(&mut f, &mut v, core(66), 0x3C5), Ok(0));
    assert_eq!(set(&mut f, &mut v, core(66), 0x3C4), Err(EPERM));
    assert_eq!(set(&mut f, &mut v, core(2), 0), Ok(0));
    assert_eq!(set(&mut f, &mut v, core(2), 1), Err(EPERM));
    assert_eq!(f.regs_set().get(&(0, kr::X0)), Some(&7));
    assert_eq!(
        f.calls_of(HypercallId::HostVcpuSetReg),
        2,
        "PC and x0 only: no hypercall for x1"
    );
    let get = user(&mut f, 0x9400, &[core(0), 0xA000]);
    assert_eq!(
        ioctl(&mut f, &vm, &mut v, uapi::GET_ONE_REG, get),
        Err(EPERM)
    );
}

#[test]
fn run_exits_mmio_memory_psci_and_refusals() {
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    slot(&mut f, &vm);
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    f.script([
        (exit::MEM_FAULT, 0, RAM + 0x3000, 0, 0, [0; 3]),
        (exit::MMIO, 0, 0x0900_0008, 0, 4, [0; 3]),
    ]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    // First run: everything but the slot declared MMIO.
    let ipa = 1u64 << (40 - 12);
    assert_eq!(
        f.mmio(),
        [(0, RAM >> 12), ((RAM >> 12) + 256, ipa - (RAM >> 12) - 256)]
    );
    // The fault was backed with the VMM's page at the right address.
    let pfn = f.guest_pages().get(&((RAM >> 12) + 3)).copied();
    assert!(pfn.is_some_and(|p| f.pinned.get(&p) == Some(&(UADDR + 0x3000))));
    // The read went to the VMM.
    assert_eq!(f.run_u32(krun::EXIT_REASON), kexit::MMIO);
    assert_eq!(f.run_u64(krun::MMIO_PHYS_ADDR), 0x0900_0008);
    assert_eq!(f.run_u32(krun::MMIO_LEN), 4);
    assert_eq!(f.run[krun::MMIO_IS_WRITE], 0);
    // Its answer is the next entry's completion (cut to 4 bytes).
    f.run[krun::MMIO_DATA..krun::MMIO_DATA + 8]
        .copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
    f.script([(
        exit::PSCI,
        0,
        0,
        u64::from(crate::psci::SYSTEM_OFF),
        0,
        [0; 3],
    )]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.answers().last(), Some(&0x5566_7788));
    assert_eq!(f.run_u32(krun::EXIT_REASON), kexit::SYSTEM_EVENT);
    assert_eq!(
        f.run_u32(krun::SYSTEM_EVENT_TYPE),
        uapi::system_event::SHUTDOWN
    );
    assert_eq!(f.run_u32(krun::SYSTEM_EVENT_NDATA), 1);
    // After a system event the vCPU is stopped: KVM_RUN sleeps until a
    // signal (the fake's wait brings one).
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Err(EINTR));
    assert_eq!(f.run_u32(krun::EXIT_REASON), kexit::INTR);
    // The vCPU's stats file counted those exits: three exits (a fault, an
    // MMIO read for the VMM, a PSCI call) and the signal.
    let at = 0x7000_0000;
    let n = super::stats::read(&mut f, &vm, 5, Some(0), 0, at, 4096);
    let n = n.unwrap_or_else(|e| panic!("stats {e}")) as usize;
    let mut b = vec![0u8; n];
    f.copy_from_user(at, &mut b).ok();
    let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
    let data = u32::from_le_bytes(b[20..24].try_into().unwrap_or([0; 4])) as usize;
    let value = |name: &str| {
        let descs = (72..data).step_by(64);
        let d = descs
            .into_iter()
            .find(|&d| b[d + 16..].starts_with(name.as_bytes()));
        let d = d.unwrap_or_else(|| panic!("no {name}"));
        word(data + u32::from_le_bytes(b[d + 8..d + 12].try_into().unwrap_or([0; 4])) as usize)
    };
    assert_eq!(&b[24..37], b"kvm-5/vcpu-0\0");
    assert_eq!(value("exits"), 3);
    assert_eq!(value("mem_faults"), 1);
    assert_eq!(value("mmio_exit_user"), 1);
    assert_eq!(value("mmio_exit_kernel"), 0);
    assert_eq!(value("hvc_exit_stat"), 1);
    assert_eq!(value("signal_exits"), 1);
    assert_eq!(value("wfi_exit_stat"), 0);
    // A read past the end reads nothing; a negative offset is refused.
    let past = super::stats::read(&mut f, &vm, 5, Some(0), n as i64, at, 8);
    assert_eq!(past, Ok(0));
    assert_eq!(
        super::stats::read(&mut f, &vm, 5, None, -1, at, 8),
        Err(EINVAL)
    );
}

#[test]
fn immediate_exit_signals_and_kcore_refusals() {
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    let before = f.allocated.len();
    let mut v = new_vcpu(&mut f, &vm, 0);
    let run_page = f.allocated[before..] == [f.allocated[before]];
    let run_page = if run_page { f.allocated[before] } else { 0 };
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Err(ENOEXEC));
    init(&mut f, &vm, &mut v, 1 << 2);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 1), Err(EINVAL));
    f.run[krun::IMMEDIATE_EXIT] = 1;
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Err(EINTR));
    f.run[krun::IMMEDIATE_EXIT] = 0;
    assert_eq!(f.calls_of(HypercallId::HostVcpuRun), 0);
    // KCore refuses a run page that is not KServ's alone: another KServ
    // CPU gives this vCPU's away to the VM's tables.
    let h = f.handle();
    assert_eq!(f.hvc(HypercallId::HostDonateVmPool, &[h, run_page])[0], 0);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.run_u32(krun::EXIT_REASON), kexit::FAIL_ENTRY);
    assert_eq!(f.run_u64(krun::FAIL_ENTRY_REASON), Error::Denied.to_x0());
    assert_eq!(f.run_u32(krun::FAIL_ENTRY_CPU), 2);
    // A vCPU started off (POWER_OFF) sleeps until a signal.
    let mut v1 = new_vcpu(&mut f, &vm, 1);
    init(&mut f, &vm, &mut v1, 1 << 2 | 1);
    let runs = f.calls_of(HypercallId::HostVcpuRun);
    assert_eq!(ioctl(&mut f, &vm, &mut v1, uapi::RUN, 0), Err(EINTR));
    assert_eq!(f.calls_of(HypercallId::HostVcpuRun), runs);
}

#[test]
fn cpu_on_wakes_a_powered_off_vcpu() {
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    let mut v0 = new_vcpu(&mut f, &vm, 0);
    let mut v1 = new_vcpu(&mut f, &vm, 1);
    init(&mut f, &vm, &mut v0, 1 << 2);
    init(&mut f, &vm, &mut v1, 1 << 2 | 1);
    let on = u64::from(crate::psci::CPU_ON_64);
    let info = u64::from(crate::psci::AFFINITY_INFO_64);
    f.script([
        (exit::PSCI, 0, 0, info, 0, [1, 0, 0]),
        (exit::PSCI, 0, 0, on, 0, [1, RAM, 0]),
        (exit::PSCI, 0, 0, on, 0, [1, RAM, 0]),
        (exit::PSCI, 0, 0, info, 0, [1, 0, 0]),
        (exit::PSCI, 0, 0, on, 0, [7, RAM, 0]),
        (
            exit::PSCI,
            0,
            0,
            u64::from(crate::psci::SYSTEM_RESET),
            0,
            [0; 3],
        ),
    ]);
    assert_eq!(ioctl(&mut f, &vm, &mut v0, uapi::RUN, 0), Ok(0));
    assert_eq!(
        f.run_u32(krun::SYSTEM_EVENT_TYPE),
        uapi::system_event::RESET
    );
    use crate::psci::{AFFINITY_OFF, AFFINITY_ON, ALREADY_ON, INVALID_PARAMETERS, SUCCESS};
    // Each answer is the completion of the next entry.
    assert_eq!(
        f.answers(),
        [
            AFFINITY_OFF,
            SUCCESS,
            ALREADY_ON,
            AFFINITY_ON,
            INVALID_PARAMETERS
        ]
    );
    assert!(f.kicks.contains(&1));
}

#[test]
fn psci_0_1_for_a_vcpu_without_psci_0_2() {
    use crate::psci::{CPU_ON_64, NOT_SUPPORTED, SUCCESS, VERSION, v0_1};
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    let mut v0 = new_vcpu(&mut f, &vm, 0);
    let mut v1 = new_vcpu(&mut f, &vm, 1);
    init(&mut f, &vm, &mut v0, 0);
    init(&mut f, &vm, &mut v1, 1);
    let one = user(&mut f, 0x9100, &[uapi::reg::PSCI_VERSION, 0xA000]);
    assert_eq!(ioctl(&mut f, &vm, &mut v0, uapi::GET_ONE_REG, one), Ok(0));
    let mut b = [0u8; 8];
    f.copy_from_user(0xA000, &mut b).ok();
    assert_eq!(u64::from_le_bytes(b), crate::psci::VERSION_0_1);
    // It takes back only that version; a PSCI_0_2 vCPU only 0.2 and later.
    let set = |f: &mut Fake, v: &mut Vcpu, value: u64| {
        let one = user(f, 0x9100, &[uapi::reg::PSCI_VERSION, 0xA000]);
        user(f, 0xA000, &[value]);
        ioctl(f, &vm, v, uapi::SET_ONE_REG, one)
    };
    assert_eq!(set(&mut f, &mut v0, crate::psci::VERSION_0_1), Ok(0));
    assert_eq!(set(&mut f, &mut v0, crate::psci::VERSION_1_0), Err(EINVAL));
    let mut v2 = new_vcpu(&mut f, &vm, 2);
    init(&mut f, &vm, &mut v2, 1 << 2);
    assert_eq!(set(&mut f, &mut v2, crate::psci::VERSION_0_1), Err(EINVAL));
    assert_eq!(set(&mut f, &mut v2, crate::psci::VERSION_1_0), Ok(0));
    f.script([
        (exit::PSCI, 0, 0, u64::from(VERSION), 0, [0; 3]),
        (exit::PSCI, 0, 0, u64::from(CPU_ON_64), 0, [1, RAM, 0]),
        (exit::PSCI, 0, 0, u64::from(v0_1::MIGRATE), 0, [0; 3]),
        (exit::PSCI, 0, 0, u64::from(v0_1::CPU_ON), 0, [1, RAM, 0x55]),
        (exit::MMIO, 0, 0x0900_0008, 0, 4, [0; 3]),
    ]);
    assert_eq!(ioctl(&mut f, &vm, &mut v0, uapi::RUN, 0), Ok(0));
    // 0.2 calls are not this vCPU's; 0.1's CPU_ON starts vCPU 1.
    assert_eq!(
        f.answers()[..4],
        [NOT_SUPPORTED, NOT_SUPPORTED, NOT_SUPPORTED, SUCCESS]
    );
    assert!(f.kicks.contains(&1));
    assert_eq!(f.get_reg(1, kcore_abi::reg::PC), Some(RAM));
    assert_eq!(f.get_reg(1, kcore_abi::reg::X0), Some(0x55));
}

#[test]
fn mp_state_and_system_suspend() {
    use crate::psci::{FEATURES, SUCCESS, SYSTEM_SUSPEND_64};
    use uapi::mp_state::{RUNNABLE, STOPPED, SUSPENDED};
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    let mut v0 = new_vcpu(&mut f, &vm, 0);
    let mut v1 = new_vcpu(&mut f, &vm, 1);
    init(&mut f, &vm, &mut v0, 1 << 2);
    init(&mut f, &vm, &mut v1, 1 << 2);
    for cap in [
        uapi::cap::MP_STATE,
        uapi::cap::ARM_SYSTEM_SUSPEND,
        uapi::cap::ENABLE_CAP_VM,
    ] {
        assert_eq!(vm::dev_ioctl(&HOST, uapi::CHECK_EXTENSION, cap), 1);
    }
    let mp = |f: &mut Fake, v: &mut Vcpu| {
        let at = user(f, 0xB000, &[u64::MAX]);
        assert_eq!(ioctl(f, &vm, v, uapi::GET_MP_STATE, at), Ok(0));
        let mut b = [0u8; 4];
        f.copy_from_user(at, &mut b).expect("user memory");
        u32::from_le_bytes(b)
    };
    let set_mp = |f: &mut Fake, v: &mut Vcpu, state: u32| {
        let at = user(f, 0xB100, &[u64::from(state)]);
        ioctl(f, &vm, v, uapi::SET_MP_STATE, at)
    };
    assert_eq!(mp(&mut f, &mut v1), RUNNABLE);
    assert_eq!(
        set_mp(&mut f, &mut v1, SUSPENDED),
        Err(EINVAL),
        "not offered"
    );
    assert_eq!(set_mp(&mut f, &mut v1, 7), Err(EINVAL));
    assert_eq!(set_mp(&mut f, &mut v1, STOPPED), Ok(0));
    assert_eq!(mp(&mut f, &mut v1), STOPPED);
    assert_eq!(
        f.get_reg(1, kcore_abi::reg::POWER_OFF),
        Some(1),
        "KCore told"
    );
    assert_eq!(set_mp(&mut f, &mut v1, RUNNABLE), Ok(0));
    assert_eq!(f.get_reg(1, kcore_abi::reg::POWER_OFF), Some(0));
    assert!(f.kicks.contains(&1));

    // SYSTEM_SUSPEND: not offered until the VMM enables it; then it exits
    // as KVM_SYSTEM_EVENT_SUSPEND with the call's registers as they were.
    let enable = |f: &mut Fake, cap: u64, flags: u64| {
        let at = user(f, 0xB200, &[flags << 32 | cap, 0, 0, 0, 0]);
        vm::ioctl(f, &vm, &HOST, uapi::ENABLE_CAP, at)
    };
    let features = u64::from(FEATURES);
    let suspend = u64::from(SYSTEM_SUSPEND_64);
    f.script([
        (exit::PSCI, 0, 0, features, 0, [suspend, 0, 0]),
        (exit::PSCI, 0, 0, suspend, 0, [RAM, 0x77, 0]),
        (exit::MMIO, 0, 0x0900_0008, 0, 4, [0; 3]),
    ]);
    assert_eq!(ioctl(&mut f, &vm, &mut v0, uapi::RUN, 0), Ok(0));
    assert_eq!(
        f.run_u32(krun::EXIT_REASON),
        kexit::MMIO,
        "the suspend was refused"
    );
    assert_eq!(
        enable(&mut f, uapi::cap::ARM_SYSTEM_SUSPEND, 1),
        Err(EINVAL),
        "flags"
    );
    assert_eq!(
        enable(&mut f, uapi::cap::MP_STATE, 0),
        Err(EINVAL),
        "not an enableable cap"
    );
    assert_eq!(enable(&mut f, uapi::cap::ARM_SYSTEM_SUSPEND, 0), Ok(0));
    f.script([
        (exit::PSCI, 0, 0, features, 0, [suspend, 0, 0]),
        (exit::PSCI, 0, 0, suspend, 0, [RAM, 0x77, 0]),
    ]);
    assert_eq!(ioctl(&mut f, &vm, &mut v0, uapi::RUN, 0), Ok(0));
    assert_eq!(f.run_u32(krun::EXIT_REASON), kexit::SYSTEM_EVENT);
    assert_eq!(
        f.run_u32(krun::SYSTEM_EVENT_TYPE),
        uapi::system_event::SUSPEND
    );
    assert_eq!(f.run_u32(krun::SYSTEM_EVENT_NDATA), 0);
    assert_eq!(
        f.get_reg(0, kcore_abi::reg::x(1)),
        Some(RAM),
        "entry point for the VMM"
    );
    let not_supported = crate::psci::NOT_SUPPORTED;
    assert_eq!(f.answers()[..4], [not_supported, not_supported, 0, SUCCESS]);
}

/// A `KSERV_VM_VERIFY_IMAGE` request for `len` bytes at `RAM` (the VMM's
/// memory at `UADDR`) with a signature block by [`signer`] whose manifest
/// holds `mmio`.
fn signed_request(f: &mut Fake, len: u64, mmio: &[(u64, u64)]) -> u64 {
    let m = kcore_abi::manifest::Manifest::new(mmio).unwrap();
    let mut block = [0u8; kcore_abi::manifest::MAX_BLOCK_LEN];
    let n = m.encode(&mut block[64..]).unwrap() + 64;
    let mut signed = std::vec![0u8; len as usize];
    f.copy_from_user(UADDR, &mut signed).unwrap();
    signed.extend_from_slice(&block[64..n]);
    block[..64].copy_from_slice(&signer().sk.sign(&signed, None)[..]);
    f.copy_to_user(0xC000, &block[..n]).unwrap();
    user(f, 0x9500, &[RAM, len, 0xC000, n as u64])
}

/// Points a protected vCPU 0 at the start of its verified image (at `RAM`),
/// the only first PC KCore runs it from.
fn start_in_image(f: &mut Fake, vm: &Vm, v: &mut Vcpu) {
    let one = user(
        f,
        0x9600,
        &[uapi::reg::core(uapi::reg::SIZE_U64, 64), 0xA600],
    );
    user(f, 0xA600, &[RAM]);
    assert_eq!(ioctl(f, vm, v, uapi::SET_ONE_REG, one), Ok(0));
}

#[test]
fn memory_slots_and_teardown() {
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 1 << 31);
    slot(&mut f, &vm);
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    // The image: two pages donated, then verified. A block that is not a
    // signature and a manifest is refused before anything is donated.
    let req = user(&mut f, 0x9500, &[RAM, 0x1800, 0xC000, 64]);
    user(&mut f, 0xC000, &[0; 8]);
    assert_eq!(
        vm::ioctl(&mut f, &vm, &HOST, KSERV_VM_VERIFY_IMAGE, req),
        Err(EINVAL)
    );
    assert!(f.guest_pages().is_empty());
    let req = signed_request(&mut f, 0x1800, &[]);
    assert_eq!(
        vm::ioctl(&mut f, &vm, &HOST, KSERV_VM_VERIFY_IMAGE, req),
        Err(EIO)
    );
    assert_eq!(
        f.guest_pages().len(),
        2,
        "pages donated before KCore was asked"
    );
    // Donated pages pin the slot.
    let del = user(&mut f, 0x8000, &[0, 0, 0, 0]);
    assert_eq!(
        vm::ioctl(&mut f, &vm, &HOST, uapi::SET_USER_MEMORY_REGION, del),
        Err(EBUSY)
    );
    let pool = f.vm_pages().len();
    assert!(pool >= 18, "16 root pages, a vCPU's context, 2 donated");
    let t = vm::destroy(&mut f, &vm);
    assert_eq!(t.kept, 0);
    assert_eq!(t.released as usize, pool);
    assert!(f.pinned.is_empty() && f.vm_pages().is_empty());
    vcpu::destroy(&mut f, &mut v);
    assert!(f.arrays.is_empty(), "every array freed");
}

const GICD: u64 = 0x0800_0000;
const GICR: u64 = 0x080A_0000;

/// Creates, places and initialises the vGIC (after the vCPUs), and
/// enables its distributor.
fn vgic(f: &mut Fake, vm: &Vm) {
    use super::uapi::vgic_attr::{ADDR_TYPE_DIST, ADDR_TYPE_REDIST, CTRL_INIT, GRP_ADDR, GRP_CTRL};
    assert_eq!(
        vm::device_create(f, vm, uapi::device::TYPE_ARM_VGIC_V3, 0),
        Ok(vm::DEVICE_VGIC)
    );
    for (ty, base) in [(ADDR_TYPE_DIST, GICD), (ADDR_TYPE_REDIST, GICR)] {
        let value = user(f, 0xA000, &[base]);
        let a = user(f, 0xA100, &[u64::from(GRP_ADDR) << 32, ty, value]);
        assert_eq!(vm::device_ioctl(f, vm, uapi::SET_DEVICE_ATTR, a), Ok(0));
    }
    let a = user(f, 0xA100, &[u64::from(GRP_CTRL) << 32, CTRL_INIT, 0]);
    assert_eq!(vm::device_ioctl(f, vm, uapi::SET_DEVICE_ATTR, a), Ok(0));
    vm.with_gic(f, |g| ((), g.mmio(0, GICD, 4, true, 2).map_or(0, |r| r.1)));
}

#[test]
fn cpu_sysregs_save_and_restore_the_guests_cpu_interface() {
    use super::uapi::vgic_attr::GRP_CPU_SYSREGS;
    use kcore_abi::reg::{id::ICH_VTR_EL2, sysreg};
    let mut f = Fake::new();
    // A CPU interface with 5 priority bits, 16-bit ids and A3V, as QEMU's.
    let vtr = 4u64 << 29 | 4 << 26 | 1 << 21 | 3;
    f.k()
        .w
        .host
        .mem_mut()
        .set_guest_id_regs(kcore::idregs::GuestIdRegs::sanitise(|enc| {
            if enc == ICH_VTR_EL2 { vtr } else { 0 }
        }));
    let vm = new_vm(&mut f, 0);
    let mut v0 = new_vcpu(&mut f, &vm, 0);
    let mut v1 = new_vcpu(&mut f, &vm, 1);
    init(&mut f, &vm, &mut v0, 1 << 2);
    init(&mut f, &vm, &mut v1, 1 << 2);
    vgic(&mut f, &vm);
    let attr = |mpidr: u64, op0, op1, crn, crm, op2| mpidr << 32 | sysreg(op0, op1, crn, crm, op2);
    let access = |f: &mut Fake, cmd: u32, attr: u64, value: u64| {
        let at = user(f, 0xA000, &[value]);
        let a = user(f, 0xA100, &[u64::from(GRP_CPU_SYSREGS) << 32, attr, at]);
        let r = vm::device_ioctl(f, &vm, cmd, a);
        let mut b = [0u8; 8];
        f.copy_from_user(at, &mut b).expect("user memory");
        r.map(|_| u64::from_le_bytes(b))
    };
    let pmr1 = attr(1, 3, 0, 4, 6, 0);
    assert_eq!(access(&mut f, uapi::GET_DEVICE_ATTR, pmr1, 0), Ok(0));
    assert_eq!(access(&mut f, uapi::SET_DEVICE_ATTR, pmr1, 0xF0), Ok(0xF0));
    assert_eq!(access(&mut f, uapi::GET_DEVICE_ATTR, pmr1, 0), Ok(0xF0));
    assert_eq!(
        f.get_reg(1, kcore_abi::reg::ICH_VMCR),
        Some(0xF0 << 24),
        "KCore holds it"
    );
    assert_eq!(
        f.get_reg(0, kcore_abi::reg::ICH_VMCR),
        Some(0),
        "vCPU 0's is its own"
    );
    let ctlr = attr(0, 3, 0, 12, 12, 4);
    assert_eq!(
        access(&mut f, uapi::GET_DEVICE_ATTR, ctlr, 0),
        Ok(4 << 8 | 1 << 15)
    );
    assert_eq!(
        access(&mut f, uapi::SET_DEVICE_ATTR, ctlr, 5 << 8 | 1 << 15),
        Err(EINVAL)
    );
    let ap1r = |n| attr(0, 3, 0, 12, 9, n);
    assert_eq!(
        access(&mut f, uapi::SET_DEVICE_ATTR, ap1r(0), 0x8000_0000),
        Ok(0x8000_0000)
    );
    assert_eq!(f.get_reg(0, kcore_abi::reg::ICH_AP1R), Some(0x8000_0000));
    assert_eq!(
        access(&mut f, uapi::GET_DEVICE_ATTR, ap1r(1), 0),
        Err(EINVAL),
        "one APR"
    );
    // Has: the group's registers only; no such vCPU: EINVAL.
    assert_eq!(access(&mut f, uapi::HAS_DEVICE_ATTR, ap1r(3), 0), Ok(0));
    let iar = attr(0, 3, 0, 12, 12, 0);
    assert_eq!(access(&mut f, uapi::HAS_DEVICE_ATTR, iar, 0), Err(ENXIO));
    assert_eq!(
        access(&mut f, uapi::GET_DEVICE_ATTR, attr(5, 3, 0, 4, 6, 0), 0),
        Err(EINVAL)
    );
}

/// `KVM_IOEVENTFD` with `struct kvm_ioeventfd`'s fields.
fn ioeventfd(
    f: &mut Fake,
    vm: &Vm,
    datamatch: u64,
    addr: u64,
    len: u64,
    fd: i32,
    flags: u64,
) -> Result<i64, Errno> {
    let a = user(
        f,
        0xB000,
        &[
            datamatch,
            addr,
            len | u64::from(fd as u32) << 32,
            flags,
            0,
            0,
            0,
            0,
        ],
    );
    vm::ioctl(f, vm, &HOST, uapi::IOEVENTFD, a)
}

/// `KVM_IRQFD` with `struct kvm_irqfd`'s fields.
fn irqfd(
    f: &mut Fake,
    vm: &Vm,
    fd: i32,
    gsi: u32,
    flags: u32,
    resamplefd: i32,
) -> Result<i64, Errno> {
    let a = user(
        f,
        0xB100,
        &[
            u64::from(fd as u32) | u64::from(gsi) << 32,
            u64::from(flags) | u64::from(resamplefd as u32) << 32,
            0,
            0,
        ],
    );
    vm::ioctl(f, vm, &HOST, uapi::IRQFD, a)
}

#[test]
fn ioeventfds_take_matching_writes_with_kvms_errors() {
    use super::eventfd::io::{DATAMATCH, DEASSIGN, PIO};
    use kcore_abi::run::exit_flags::WRITE;
    const DB: u64 = 0x0A00_0050;
    let mut f = Fake::new();
    // fds 5 and 6 are eventfds, 7 another kind of file.
    f.fds.extend([(5, 0xE5), (6, 0xE6), (7, 0)]);
    let vm = new_vm(&mut f, 0);
    slot(&mut f, &vm);
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    let flags = |x: u32| u64::from(x);
    // KVM's checks, in its order.
    assert_eq!(
        ioeventfd(&mut f, &vm, 0, DB, 3, 5, 0),
        Err(EINVAL),
        "length"
    );
    assert_eq!(
        ioeventfd(&mut f, &vm, 0, u64::MAX - 2, 4, 5, 0),
        Err(EINVAL),
        "wraps"
    );
    assert_eq!(
        ioeventfd(&mut f, &vm, 0, DB, 4, 5, 1 << 5),
        Err(EINVAL),
        "flags"
    );
    assert_eq!(
        ioeventfd(&mut f, &vm, 0, DB, 0, 5, flags(DATAMATCH)),
        Err(EINVAL)
    );
    assert_eq!(ioeventfd(&mut f, &vm, 0, DB, 4, 9, 0), Err(EBADF));
    assert_eq!(
        ioeventfd(&mut f, &vm, 0, DB, 4, 7, 0),
        Err(EINVAL),
        "not an eventfd"
    );
    assert_eq!(
        vm::ioctl(&mut f, &vm, &HOST, uapi::IOEVENTFD, 0x10),
        Err(EFAULT)
    );
    // 4-byte writes of 0x11 signal fd 5, of 0x22 fd 6; any 2-byte write fd 5.
    assert_eq!(
        ioeventfd(&mut f, &vm, 0x11, DB, 4, 5, flags(DATAMATCH)),
        Ok(0)
    );
    assert_eq!(
        ioeventfd(&mut f, &vm, 0x22, DB, 4, 6, flags(DATAMATCH)),
        Ok(0)
    );
    assert_eq!(
        ioeventfd(&mut f, &vm, 0x22, DB, 4, 5, flags(DATAMATCH)),
        Err(EEXIST)
    );
    assert_eq!(
        ioeventfd(&mut f, &vm, 0, DB, 4, 5, 0),
        Err(EEXIST),
        "a wildcard over them"
    );
    assert_eq!(
        ioeventfd(&mut f, &vm, 0, DB, 0, 6, 0),
        Err(EEXIST),
        "any length over them"
    );
    assert_eq!(ioeventfd(&mut f, &vm, 0, DB, 2, 5, 0), Ok(0));
    assert_eq!(
        ioeventfd(&mut f, &vm, 0, DB, 4, 5, flags(PIO)),
        Ok(0),
        "another bus"
    );
    assert_eq!(f.eventfd_refs(), 4);
    let w = |data: u64, width: u64| (exit::MMIO, WRITE, DB, data, width, [0; 3]);
    f.script([
        w(0x11, 4),
        w(0x11, 4),
        w(0x22, 4),
        w(0xFFFF, 2),
        (exit::MMIO, 0, DB, 0, 4, [0; 3]),
    ]);
    // The read goes to the VMM; the writes before it did not.
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.run_u32(krun::EXIT_REASON), kexit::MMIO);
    assert_eq!(f.run[krun::MMIO_IS_WRITE], 0);
    assert_eq!(f.eventfd_count.get(&0xE5), Some(&3));
    assert_eq!(f.eventfd_count.get(&0xE6), Some(&1));
    // Unmatched: a value, a width.
    f.script([w(0x33, 4)]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.run[krun::MMIO_IS_WRITE], 1);
    assert_eq!(f.run_u64(krun::MMIO_DATA), 0x33);
    f.script([w(0x11, 8)]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.run_u32(krun::MMIO_LEN), 8);
    // Deassignment must name the same fd, address, length and match.
    let dm = flags(DATAMATCH | DEASSIGN);
    assert_eq!(ioeventfd(&mut f, &vm, 0x11, DB, 4, 6, dm), Err(ENOENT));
    assert_eq!(ioeventfd(&mut f, &vm, 0x11, DB, 2, 5, dm), Err(ENOENT));
    assert_eq!(
        ioeventfd(&mut f, &vm, 0, DB, 4, 5, flags(DEASSIGN)),
        Err(ENOENT)
    );
    assert_eq!(ioeventfd(&mut f, &vm, 0x11, DB, 4, 5, dm), Ok(0));
    assert_eq!(ioeventfd(&mut f, &vm, 0x11, DB, 4, 5, dm), Err(ENOENT));
    assert_eq!(ioeventfd(&mut f, &vm, 0x11, DB, 4, 9, dm), Err(EBADF));
    assert_eq!(f.eventfd_refs(), 3);
    f.script([w(0x11, 4)]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.run_u64(krun::MMIO_DATA), 0x11, "now the VMM's");
    assert_eq!(f.eventfd_count.get(&0xE5), Some(&3));
    // Teardown drops every reference.
    vcpu::destroy(&mut f, &mut v);
    vm::destroy(&mut f, &vm);
    assert_eq!(f.eventfd_refs(), 0);
}

#[test]
fn irqfds_inject_spis_and_resample_with_kvms_errors() {
    use super::eventfd::irq::{DEASSIGN, RESAMPLE};
    use kcore_abi::run::irq as lr;
    let mut f = Fake::new();
    f.fds.extend([(5, 0xE5), (6, 0xE6), (8, 0xE8), (7, 0)]);
    let vm = new_vm(&mut f, 0);
    slot(&mut f, &vm);
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    // Before the vGIC is initialised: EAGAIN (flags are checked first).
    assert_eq!(irqfd(&mut f, &vm, 5, 8, 1 << 2, 0), Err(EINVAL));
    assert_eq!(irqfd(&mut f, &vm, 5, 8, 0, 0), Err(EAGAIN));
    vgic(&mut f, &vm);
    assert_eq!(irqfd(&mut f, &vm, 9, 8, 0, 0), Err(EBADF));
    assert_eq!(irqfd(&mut f, &vm, 7, 8, 0, 0), Err(EINVAL));
    assert_eq!(
        irqfd(&mut f, &vm, 5, 8, RESAMPLE, 9),
        Err(EBADF),
        "resamplefd"
    );
    assert_eq!(f.eventfd_refs(), 0, "nothing kept on failure");
    // GSI 8 (SPI 40) edge-triggered and enabled for vCPU 0; GSI 9 (SPI 41)
    // level-sensitive and enabled.
    vm.with_gic(&mut f, |g| {
        g.mmio(0, GICD + 0xC08, 4, true, 2 << 16);
        g.mmio(0, GICD + 0x104, 4, true, 3 << 8);
        ((), 0)
    });
    assert_eq!(irqfd(&mut f, &vm, 5, 8, 0, 0), Ok(0));
    assert_eq!(
        irqfd(&mut f, &vm, 5, 9, 0, 0),
        Err(EBUSY),
        "one GSI per eventfd"
    );
    assert_eq!(irqfd(&mut f, &vm, 6, 9, RESAMPLE, 8), Ok(0));
    assert_eq!(f.hooks.len(), 2);
    // A signal of fd 5 is an edge of SPI 40: the next entry hands it over.
    f.kicks.clear();
    f.signal_fd(&vm, 5);
    assert_eq!(f.kicks, [0]);
    f.script([(exit::MMIO, 0, 0x0900_0000, 0, 4, [0; 3])]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    let e = f.last_entry_irqs();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0], 40);
    // Fd 6 raises SPI 41's line until the guest completes it; the guest
    // takes both (active), then completes them (the states the exits report
    // are the ones the test writes into the vGIC below).
    f.signal_fd(&vm, 6);
    assert_eq!(f.eventfd_count.get(&0xE8), None);
    vm.with_gic(&mut f, |g| {
        let mut words = [0u64; super::vgic::IRQ_SLOTS];
        let n = g.flush(0, &mut words);
        assert_eq!(n, 2);
        let states: Vec<u64> = words[..n]
            .iter()
            .map(|&w| lr::with_state(w, lr::ACTIVE))
            .collect();
        g.fold(0, &words[..n], &states);
        let active: Vec<u64> = {
            let n = g.flush(0, &mut words);
            words[..n].to_vec()
        };
        assert!(
            active.iter().all(|&w| lr::state(w) == lr::ACTIVE),
            "no P+A for a resampled line"
        );
        g.fold(0, &active, &[0, 0]);
        ((), 0)
    });
    // The exit path signals the resamplefd, once per completion.
    let acked = vm.with_gic(&mut f, |g| (g.take_acked(), 0)).unwrap();
    vm::resampled(&mut f, &vm, &acked);
    assert_eq!(f.eventfd_count.get(&0xE8), Some(&1));
    assert!(vm.with_gic(&mut f, |g| (g.take_acked(), 0)).is_none());
    // Deassignment: fd and GSI must match; 0 even when nothing matched.
    assert_eq!(irqfd(&mut f, &vm, 5, 9, DEASSIGN, 0), Ok(0));
    assert_eq!(f.hooks.len(), 2);
    assert_eq!(irqfd(&mut f, &vm, 9, 8, DEASSIGN, 0), Err(EBADF));
    assert_eq!(irqfd(&mut f, &vm, 5, 8, DEASSIGN, 0), Ok(0));
    assert_eq!(f.hooks.len(), 1);
    // The last resampling irqfd of a GSI going lowers its line.
    f.signal_fd(&vm, 6);
    assert!(vm.with_gic(&mut f, |g| (g.has_work(0), 0)));
    assert_eq!(irqfd(&mut f, &vm, 6, 9, DEASSIGN, 0), Ok(0));
    assert!(!vm.with_gic(&mut f, |g| (g.has_work(0), 0)));
    assert_eq!(f.eventfd_refs(), 0);
    // Teardown unhooks what is left.
    assert_eq!(irqfd(&mut f, &vm, 5, 8, 0, 0), Ok(0));
    assert_eq!(irqfd(&mut f, &vm, 6, 9, RESAMPLE, 8), Ok(0));
    vcpu::destroy(&mut f, &mut v);
    vm::destroy(&mut f, &vm);
    assert!(f.hooks.is_empty());
    assert_eq!(f.eventfd_refs(), 0);
}

/// `KVM_SET_GSI_ROUTING` with `(gsi, type, flags, irqchip, pin)` entries.
fn gsi_routing(
    f: &mut Fake,
    vm: &Vm,
    flags: u64,
    entries: &[(u32, u32, u32, u32, u32)],
) -> Result<i64, Errno> {
    let mut words = vec![entries.len() as u64 | flags << 32];
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
    let a = user(f, 0xC000, &words);
    vm::ioctl(f, vm, &HOST, uapi::SET_GSI_ROUTING, a)
}

/// A vGIC device attribute: `op` 0 set, 1 get, 2 has; the value at 0xA000.
fn gic_attr(
    f: &mut Fake,
    vm: &Vm,
    op: u32,
    group: u32,
    attr: u64,
    value: u32,
) -> Result<u32, Errno> {
    let v = device_attr(f, vm, vm::device_ioctl, op, group, attr, u64::from(value))?;
    Ok(v as u32)
}

/// A device attribute through `ioctl` (a device fd's): `op` 0 set, 1 get,
/// 2 has; the value (64 bits) at 0xA000 before and after.
fn device_attr(
    f: &mut Fake,
    vm: &Vm,
    ioctl: fn(&mut Fake, &Vm, u32, u64) -> Result<i64, Errno>,
    op: u32,
    group: u32,
    attr: u64,
    value: u64,
) -> Result<u64, Errno> {
    let cmd = [
        uapi::SET_DEVICE_ATTR,
        uapi::GET_DEVICE_ATTR,
        uapi::HAS_DEVICE_ATTR,
    ][op as usize];
    let v = user(f, 0xA000, &[value]);
    let a = user(f, 0xA100, &[u64::from(group) << 32, attr, v]);
    ioctl(f, vm, cmd, a)?;
    let mut b = [0u8; 8];
    f.copy_from_user(0xA000, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// What KVM's `vgic_irq` selftest needs beyond plain injection: routing
/// tables for its irqfds, line levels set through `LEVEL_INFO`, and four
/// interrupts restored active all reaching KCore's list registers.
#[test]
fn gsi_routing_level_info_and_four_active_interrupts() {
    use super::uapi::routing::{IRQCHIP, MSI, NUM_PINS};
    use super::uapi::vgic_attr::{GRP_DIST_REGS, GRP_LEVEL_INFO};
    let mut f = Fake::new();
    f.fds.extend([(5, 0xE5)]);
    let vm = new_vm(&mut f, 0);
    slot(&mut f, &vm);
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    assert_eq!(vm::check_extension(&HOST, uapi::cap::IRQ_ROUTING), 4096);
    vgic(&mut f, &vm);
    // Routing: KVM's errors, and a failed table changes nothing.
    for (flags, entries) in [
        (1, vec![]),
        (0, vec![(0, IRQCHIP, 0, 0, NUM_PINS)]),
        (0, vec![(0, IRQCHIP, 0, 1, 0)]),
        (0, vec![(0, IRQCHIP, 1, 0, 0)]),
        (0, vec![(4096, IRQCHIP, 0, 0, 0)]),
        (0, vec![(0, 3, 0, 0, 0)]),
        (0, vec![(7, IRQCHIP, 0, 0, 1), (7, MSI, 0, 0, 0)]),
    ] {
        assert_eq!(
            gsi_routing(&mut f, &vm, flags, &entries),
            Err(EINVAL),
            "{entries:?}"
        );
    }
    let a = user(&mut f, 0xC000, &[4097]);
    assert_eq!(
        vm::ioctl(&mut f, &vm, &HOST, uapi::SET_GSI_ROUTING, a),
        Err(EINVAL)
    );
    assert_eq!(
        vm.with_gic(&mut f, |g| (g.spi_of(3), 0)),
        Some(35),
        "the default"
    );
    // GSI 3 to SPI 42 (pin 10), GSI 4 an MSI: an irqfd of GSI 3 drives
    // SPI 42 (edge-triggered, enabled), GSI 4's never fires.
    assert_eq!(
        gsi_routing(&mut f, &vm, 0, &[(3, IRQCHIP, 0, 0, 10), (4, MSI, 1, 0, 0)]),
        Ok(0)
    );
    assert_eq!(vm.with_gic(&mut f, |g| (g.spi_of(4), 0)), None);
    assert_eq!(
        vm.with_gic(&mut f, |g| (g.spi_of(10), 0)),
        None,
        "not in the table"
    );
    vm.with_gic(&mut f, |g| {
        g.mmio(0, GICD + 0xC08, 4, true, 2 << 20);
        g.mmio(0, GICD + 0x104, 4, true, 1 << 10);
        ((), 0)
    });
    assert_eq!(irqfd(&mut f, &vm, 5, 3, 0, 0), Ok(0));
    f.kicks.clear();
    f.signal_fd(&vm, 5);
    assert_eq!(f.kicks, [0]);
    f.script([(exit::MMIO, 0, 0x0900_0000, 0, 4, [0; 3])]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.last_entry_irqs(), [42]);
    // LEVEL_INFO: SPI 41's line (level-sensitive, the default) high, read
    // back; SGIs and interrupts past the configured ones are left alone.
    assert_eq!(gic_attr(&mut f, &vm, 2, GRP_LEVEL_INFO, 32, 0), Ok(0));
    assert_eq!(
        gic_attr(&mut f, &vm, 0, GRP_LEVEL_INFO, 32, 1 << 9),
        Ok(1 << 9)
    );
    assert_eq!(gic_attr(&mut f, &vm, 1, GRP_LEVEL_INFO, 32, 0), Ok(1 << 9));
    assert_eq!(
        gic_attr(&mut f, &vm, 0, GRP_LEVEL_INFO, 0, u32::MAX),
        Ok(u32::MAX)
    );
    assert_eq!(
        gic_attr(&mut f, &vm, 1, GRP_LEVEL_INFO, 0, 0),
        Ok(0xFFFF_0000),
        "PPIs' lines, not SGIs'"
    );
    assert_eq!(gic_attr(&mut f, &vm, 0, GRP_LEVEL_INFO, 0, 0), Ok(0));
    assert_eq!(gic_attr(&mut f, &vm, 1, GRP_LEVEL_INFO, 992, 0), Ok(0));
    for attr in [1024, 1120, 0xFFFF_FFE0, 33] {
        assert_eq!(
            gic_attr(&mut f, &vm, 1, GRP_LEVEL_INFO, attr, 0),
            Err(EINVAL),
            "{attr}"
        );
    }
    assert_eq!(
        gic_attr(&mut f, &vm, 2, GRP_LEVEL_INFO, 1024, 0),
        Err(ENXIO)
    );
    assert_eq!(
        gic_attr(&mut f, &vm, 1, GRP_LEVEL_INFO, 1 << 32, 0),
        Err(EINVAL),
        "no such vCPU"
    );
    // Four SPIs made active from user space, SPI 42 still pending: KCore
    // takes four list registers.
    gic_attr(&mut f, &vm, 0, GRP_LEVEL_INFO, 32, 0).ok();
    for spi in 43..47u32 {
        assert_eq!(
            gic_attr(&mut f, &vm, 0, GRP_DIST_REGS, 0x304, 1 << (spi - 32)),
            Ok(1 << (spi - 32))
        );
    }
    f.script([(exit::MMIO, 0, 0x0900_0000, 0, 4, [0; 3])]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    let mut got = f.last_entry_irqs();
    got.sort();
    assert_eq!(got, [43, 44, 45, 46], "active ones first: SPI 42 waits");
    assert_eq!(f.k().calls.last().map(|c| c.2), Some(0), "accepted");
    vcpu::destroy(&mut f, &mut v);
    vm::destroy(&mut f, &vm);
}

#[test]
fn read_only_slots_are_mapped_read_only_or_emulated() {
    use kcore_abi::run::exit_flags::WRITE;
    const ROM: u64 = 0x1000_0000;
    const ROM_UADDR: u64 = 0x6000_0000;
    for protected in [false, true] {
        let mut f = Fake::new();
        let vm = new_vm(&mut f, if protected { 1 << 31 } else { 0 });
        slot(&mut f, &vm);
        let a = user(
            &mut f,
            0x8000,
            &[
                1 | u64::from(uapi::mem::READONLY) << 32,
                ROM,
                0x2000,
                ROM_UADDR,
            ],
        );
        assert_eq!(
            vm::ioctl(&mut f, &vm, &HOST, uapi::SET_USER_MEMORY_REGION, a),
            Ok(0)
        );
        f.copy_to_user(ROM_UADDR + 0x10, &0xABCDu64.to_le_bytes())
            .ok();
        let mut v = new_vcpu(&mut f, &vm, 0);
        init(&mut f, &vm, &mut v, 1 << 2);
        let rom = ROM >> 12;
        if protected {
            // Its image's signed manifest lets the ROM be emulated.
            f.trust_signer();
            let req = signed_request(&mut f, 0x1000, &[(rom, 2)]);
            assert_eq!(
                vm::ioctl(&mut f, &vm, &HOST, KSERV_VM_VERIFY_IMAGE, req),
                Ok(0)
            );
            start_in_image(&mut f, &vm, &mut v);
        }
        if protected {
            // Emulated: a read exit answered from the VMM's memory.
            f.script([
                (exit::MMIO, 0, ROM + 0x10, 0, 8, [0; 3]),
                (exit::MMIO, WRITE, ROM + 0x10, 5, 8, [0; 3]),
            ]);
        } else {
            // Mapped on first touch (a fault, say an instruction fetch).
            f.script([
                (exit::MEM_FAULT, 0, ROM + 0x10, 0, 0, [0; 3]),
                (exit::MMIO, WRITE | READ_ONLY_PAGE, ROM + 0x10, 5, 8, [0; 3]),
            ]);
        }
        assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
        let declared_rom = f.mmio().iter().any(|&(g, n)| g <= rom && rom < g + n);
        assert_eq!(declared_rom, protected, "declared MMIO only when emulated");
        if protected {
            assert_eq!(f.mmio(), [(rom, 2)], "only inside the signed manifest");
        }
        if protected {
            assert_eq!(f.answers().last(), Some(&0xABCD));
            assert!(!f.guest_pages().contains_key(&rom), "nothing mapped");
        } else {
            let pfn = f.guest_pages().get(&rom).copied();
            let shared_ro: Vec<u64> = f
                .accepted(HypercallId::HostShareGuest)
                .iter()
                .filter(|a| a[3] & kcore_abi::share_flags::READ_ONLY != 0)
                .map(|a| a[1])
                .collect();
            assert!(pfn.is_some_and(|p| shared_ro.contains(&p) && f.pinned_ro.contains(&p)));
        }
        // Writes reach the VMM as MMIO, as in KVM.
        assert_eq!(f.run_u32(krun::EXIT_REASON), kexit::MMIO);
        assert_eq!(f.run[krun::MMIO_IS_WRITE], 1);
        assert_eq!(f.run_u64(krun::MMIO_PHYS_ADDR), ROM + 0x10);
        vcpu::destroy(&mut f, &mut v);
        let t = vm::destroy(&mut f, &vm);
        assert_eq!(t.kept, 0);
        assert!(f.pinned.is_empty(), "every page unpinned");
    }
}

#[test]
fn reinit_resets_a_non_protected_vcpu_only() {
    for protected in [false, true] {
        let mut f = Fake::new();
        let vm = new_vm(&mut f, if protected { 1 << 31 } else { 0 });
        slot(&mut f, &vm);
        let mut v = new_vcpu(&mut f, &vm, 0);
        init(&mut f, &vm, &mut v, 1 << 2);
        if protected {
            f.trust_signer();
            let req = signed_request(&mut f, 0x1000, &[]);
            assert_eq!(
                vm::ioctl(&mut f, &vm, &HOST, KSERV_VM_VERIFY_IMAGE, req),
                Ok(0)
            );
            start_in_image(&mut f, &vm, &mut v);
        }
        f.script([(
            exit::PSCI,
            0,
            0,
            u64::from(crate::psci::SYSTEM_OFF),
            0,
            [0; 3],
        )]);
        assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
        // What the guest left behind.
        for (k, val) in [
            (kr::x(5), 7),
            (kr::PC, RAM + 0x40),
            (kr::V_HI + 3, 9),
            (kr::PSTATE, 0x3C4),
        ] {
            // KCore takes them only for a non-protected vCPU.
            assert_eq!(f.set_reg(0, k, val), !protected);
        }
        let a = user(&mut f, 0x9000, &[5 | (1 << 2) << 32, 0, 0, 0]);
        let r = ioctl(&mut f, &vm, &mut v, uapi::ARM_VCPU_INIT, a);
        if protected {
            assert_eq!(r, Err(EPERM));
            continue;
        }
        assert_eq!(r, Ok(0));
        for (k, want) in [
            (kr::x(5), 0),
            (kr::PC, 0),
            (kr::V_HI + 3, 0),
            (kr::PSTATE, 0x3C5),
        ] {
            assert_eq!(f.get_reg(0, k), Some(want), "register {k:#x}");
        }
        // Runnable again: the system event's stop is over.
        f.script([(exit::MMIO, 0, 0x0900_0000, 0, 4, [0; 3])]);
        assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
        assert_eq!(f.run_u32(krun::EXIT_REASON), kexit::MMIO);
        // Another feature set is still EINVAL.
        let a = user(&mut f, 0x9000, &[5, 0, 0, 0]);
        assert_eq!(
            ioctl(&mut f, &vm, &mut v, uapi::ARM_VCPU_INIT, a),
            Err(EINVAL)
        );
    }
}

/// Reads `KVM_REG_ARM_*_BMAP` `n` through `GET_ONE_REG`.
fn get_bitmap(f: &mut Fake, vm: &Vm, v: &mut Vcpu, n: u64) -> Result<u64, Errno> {
    let one = user(f, 0x9100, &[uapi::reg::feature_bitmap(n), 0xA000]);
    ioctl(f, vm, v, uapi::GET_ONE_REG, one)?;
    let mut b = [0u8; 8];
    f.copy_from_user(0xA000, &mut b).ok();
    Ok(u64::from_le_bytes(b))
}

/// Writes `KVM_REG_ARM_*_BMAP` `n` through `SET_ONE_REG`.
fn set_bitmap(f: &mut Fake, vm: &Vm, v: &mut Vcpu, n: u64, value: u64) -> Result<i64, Errno> {
    user(f, 0xA000, &[value]);
    let one = user(f, 0x9100, &[uapi::reg::feature_bitmap(n), 0xA000]);
    ioctl(f, vm, v, uapi::SET_ONE_REG, one)
}

/// A `KVM_{SET,GET,HAS}_DEVICE_ATTR` of the vCPU with the value at 0xA000.
fn vcpu_attr(
    f: &mut Fake,
    vm: &Vm,
    v: &mut Vcpu,
    cmd: u32,
    group: u64,
    attr: u64,
) -> Result<i64, Errno> {
    let a = user(f, 0x9200, &[group << 32, attr, 0xA000]);
    ioctl(f, vm, v, cmd, a)
}

#[test]
fn firmware_calls_follow_the_bitmaps_and_stolen_time_is_counted() {
    use super::hypercalls::fid;
    use super::pvtime::{GROUP, PV_TIME_FEATURES, PV_TIME_ST};
    use kcore_abi::smccc;
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    slot(&mut f, &vm);
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    // Every service offered at first; bits beyond them are EINVAL.
    let all = [1, 1, 3];
    for n in 0..3 {
        assert_eq!(get_bitmap(&mut f, &vm, &mut v, n), Ok(all[n as usize]));
        let beyond = all[n as usize] + 1;
        assert_eq!(set_bitmap(&mut f, &vm, &mut v, n, beyond), Err(EINVAL));
    }
    // PV time: KVM's rules for the IPA.
    use uapi::{GET_DEVICE_ATTR as GET, HAS_DEVICE_ATTR as HAS, SET_DEVICE_ATTR as SET};
    assert_eq!(
        vcpu_attr(&mut f, &vm, &mut v, HAS, u64::from(GROUP), 0),
        Ok(0)
    );
    assert_eq!(
        vcpu_attr(&mut f, &vm, &mut v, HAS, u64::from(GROUP), 1),
        Err(ENXIO)
    );
    assert_eq!(
        vcpu_attr(&mut f, &vm, &mut v, HAS, 0, 0),
        Err(ENXIO),
        "no PMU"
    );
    assert_eq!(
        vcpu_attr(&mut f, &vm, &mut v, GET, u64::from(GROUP), 0),
        Ok(0)
    );
    let mut b = [0u8; 8];
    f.copy_from_user(0xA000, &mut b).ok();
    assert_eq!(u64::from_le_bytes(b), u64::MAX, "no IPA yet");
    let st = RAM + 0x8000;
    for (ipa, want) in [
        (st + 8, Err(EINVAL)),
        (0x100_0000, Err(EINVAL)),
        (st, Ok(0)),
    ] {
        user(&mut f, 0xA000, &[ipa]);
        assert_eq!(
            vcpu_attr(&mut f, &vm, &mut v, SET, u64::from(GROUP), 0),
            want
        );
    }
    assert_eq!(
        vcpu_attr(&mut f, &vm, &mut v, SET, u64::from(GROUP), 0),
        Err(EEXIST)
    );
    // Narrow the vendor bitmap to the feature query: PTP is refused then.
    assert_eq!(set_bitmap(&mut f, &vm, &mut v, 2, 1), Ok(0));
    assert_eq!(get_bitmap(&mut f, &vm, &mut v, 2), Ok(1));
    // The guest's calls, each answered at its next entry.
    let calls: [(u32, u64); 9] = [
        (smccc::SMCCC_ARCH_FEATURES, u64::from(PV_TIME_FEATURES)),
        (PV_TIME_FEATURES, u64::from(PV_TIME_ST)),
        (PV_TIME_ST, 0),
        (fid::TRNG_VERSION, 0),
        (fid::TRNG_RND64, 100),
        (fid::TRNG_RND32, 97),
        (fid::KVM_FEATURES, 0),
        (fid::KVM_PTP, 0),
        (smccc::VENDOR_HYP_CALL_UID, 0),
    ];
    user(&mut f, UADDR + 0x8000, &[7, 9]);
    f.run_delay = 500;
    f.script(calls.map(|(fid, a1)| (exit::PSCI, 0, 0, u64::from(fid), 0, [a1, 0, 0])));
    // Then a read for the VMM ends the run.
    let to_vmm = (exit::MMIO, 0, 0x0900_0000, 0, 4, [0; 3]);
    f.script([to_vmm]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    let x = |f: &mut Fake, i: usize| f.k().guest.entries[i + 1].0.x;
    assert_eq!(x(&mut f, 0)[0], 0, "ARCH_FEATURES(PV_TIME_FEATURES)");
    assert_eq!(x(&mut f, 1)[0], 0, "PV_TIME_FEATURES(PV_TIME_ST)");
    assert_eq!(x(&mut f, 2)[0], st, "PV_TIME_ST");
    assert_eq!(x(&mut f, 3)[..2], [0x1_0000, 0], "TRNG 1.0");
    let rnd64 = x(&mut f, 4);
    assert_eq!(rnd64[0], 0);
    assert_eq!((rnd64[1], rnd64[2] >> 36), (0, 0), "100 bits");
    assert_ne!(rnd64[3], 0);
    assert_eq!(x(&mut f, 5)[0], -2i64 as u64, "RND32 takes 96 bits at most");
    assert_eq!(x(&mut f, 6)[0], 1, "KVM_FEATURES: the narrowed bitmap");
    assert_eq!(x(&mut f, 7)[0], smccc::RET_NOT_SUPPORTED, "PTP cleared");
    assert_eq!(x(&mut f, 8)[..4], smccc::KVM_UID);
    // PV_TIME_ST zeroed the structure.
    let mut s = [0xFFu8; 16];
    f.copy_from_user(UADDR + 0x8000, &mut s).ok();
    assert_eq!(s, [0; 16]);
    // The VM ran: the bitmaps keep their values (EBUSY for a change).
    assert_eq!(set_bitmap(&mut f, &vm, &mut v, 2, 3), Err(EBUSY));
    assert_eq!(set_bitmap(&mut f, &vm, &mut v, 2, 1), Ok(0));
    // The next KVM_RUN adds the run delay since PV_TIME_ST, through the
    // VMM's mapping: a slot that logs dirty pages (a migration) gets the
    // record's page marked, as no guest fault records that write.
    let logging = u64::from(uapi::mem::LOG_DIRTY_PAGES) << 32;
    let a = user(&mut f, 0x8000, &[logging, RAM, 0x10_0000, UADDR]);
    assert_eq!(
        vm::ioctl(&mut f, &vm, &HOST, uapi::SET_USER_MEMORY_REGION, a),
        Ok(0)
    );
    let first_word = |f: &mut Fake, vm: &Vm| {
        let a = user(f, 0x8100, &[0, 0xD000]);
        assert_eq!(vm::ioctl(f, vm, &HOST, uapi::GET_DIRTY_LOG, a), Ok(0));
        let mut b = [0u8; 8];
        f.copy_from_user(0xD000, &mut b).ok();
        u64::from_le_bytes(b)
    };
    assert_eq!(first_word(&mut f, &vm), 0);
    f.run_delay = 2500;
    f.script([to_vmm]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    f.copy_from_user(UADDR + 0x8000, &mut s).ok();
    assert_eq!(
        u64::from_le_bytes(s[8..].try_into().unwrap_or_default()),
        2000
    );
    assert_eq!(first_word(&mut f, &vm), 1 << 8, "the record's page");
    assert_eq!(s[..8], [0; 8], "revision and attributes 0");
}

#[test]
fn a_protected_vm_has_no_stolen_time_and_fixed_bitmaps() {
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 1 << 31);
    slot(&mut f, &vm);
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    let g = u64::from(super::pvtime::GROUP);
    assert_eq!(
        vcpu_attr(&mut f, &vm, &mut v, uapi::HAS_DEVICE_ATTR, g, 0),
        Err(ENXIO)
    );
    user(&mut f, 0xA000, &[RAM]);
    assert_eq!(
        vcpu_attr(&mut f, &vm, &mut v, uapi::SET_DEVICE_ATTR, g, 0),
        Err(ENXIO)
    );
    assert_eq!(get_bitmap(&mut f, &vm, &mut v, 0), Ok(0));
    assert_eq!(get_bitmap(&mut f, &vm, &mut v, 2), Ok(1));
    assert_eq!(
        set_bitmap(&mut f, &vm, &mut v, 2, 0),
        Err(EINVAL),
        "KCore answers"
    );
    assert_eq!(set_bitmap(&mut f, &vm, &mut v, 2, 1), Ok(0));
}

#[test]
fn timer_ppis_follow_kvms_rules_and_reach_kcore() {
    use super::timer::{GROUP, IRQ_PTIMER, IRQ_VTIMER};
    use uapi::{GET_DEVICE_ATTR as GET, HAS_DEVICE_ATTR as HAS, SET_DEVICE_ATTR as SET};
    let g = u64::from(GROUP);
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    slot(&mut f, &vm);
    let mut v = new_vcpu(&mut f, &vm, 0);
    let mut v1 = new_vcpu(&mut f, &vm, 1);
    init(&mut f, &vm, &mut v, 1 << 2);
    init(&mut f, &vm, &mut v1, 1 << 2);
    let read = |f: &mut Fake| {
        let mut b = [0u8; 4];
        f.copy_from_user(0xA000, &mut b).ok();
        u32::from_le_bytes(b)
    };
    assert_eq!(vcpu_attr(&mut f, &vm, &mut v, HAS, g, IRQ_VTIMER), Ok(0));
    assert_eq!(vcpu_attr(&mut f, &vm, &mut v, HAS, g, IRQ_PTIMER), Ok(0));
    assert_eq!(vcpu_attr(&mut f, &vm, &mut v, HAS, g, 2), Err(ENXIO));
    for (attr, default) in [(IRQ_VTIMER, 27), (IRQ_PTIMER, 30)] {
        assert_eq!(vcpu_attr(&mut f, &vm, &mut v, GET, g, attr), Ok(0));
        assert_eq!(read(&mut f), default);
    }
    // No in-kernel vGIC yet.
    user(&mut f, 0xA000, &[20]);
    assert_eq!(
        vcpu_attr(&mut f, &vm, &mut v, SET, g, IRQ_VTIMER),
        Err(EINVAL)
    );
    vgic(&mut f, &vm);
    for bad in [15, 32, 0xFFFF_FFFF] {
        user(&mut f, 0xA000, &[bad]);
        assert_eq!(
            vcpu_attr(&mut f, &vm, &mut v, SET, g, IRQ_VTIMER),
            Err(EINVAL)
        );
    }
    user(&mut f, 0xA000, &[20]);
    assert_eq!(vcpu_attr(&mut f, &vm, &mut v, SET, g, 2), Err(ENXIO));
    assert_eq!(vcpu_attr(&mut f, &vm, &mut v, SET, g, IRQ_VTIMER), Ok(0));
    // One pair for the VM: vCPU 1 reads it.
    assert_eq!(vcpu_attr(&mut f, &vm, &mut v1, GET, g, IRQ_VTIMER), Ok(0));
    assert_eq!(read(&mut f), 20);
    // Both on one PPI: the first run refuses.
    assert_eq!(vcpu_attr(&mut f, &vm, &mut v, SET, g, IRQ_PTIMER), Ok(0));
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Err(EINVAL));
    user(&mut f, 0xA000, &[21]);
    assert_eq!(vcpu_attr(&mut f, &vm, &mut v, SET, g, IRQ_PTIMER), Ok(0));
    // The guest enables PPIs 20 and 21: KCore is told they are the timers,
    // and accepts.
    let isenabler0 = GICR + 0x1_0000 + 0x100;
    vm.with_gic(&mut f, |gic| {
        (
            (),
            gic.mmio(0, isenabler0, 4, true, 3 << 20).map_or(0, |r| r.1),
        )
    });
    let flags = vm.with_gic(&mut f, |gic| (gic.timer_flags(0), 0));
    use kcore_abi::run::entry_flags::{PTIMER_SHIFT, TIMER_DISABLED, TIMER_INTID_SHIFT};
    let half = |h: u64| ((h >> TIMER_INTID_SHIFT) & 0xFF, h & TIMER_DISABLED);
    assert_eq!(half(flags), (20, 0));
    assert_eq!(half(flags >> PTIMER_SHIFT), (21, 0));
    f.script([(exit::MMIO, 0, 0x0900_0000, 0, 4, [0; 3])]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.run_u32(krun::EXIT_REASON), kexit::MMIO);
    // This vCPU ran: its attributes are fixed; vCPU 1 may still set them.
    user(&mut f, 0xA000, &[21]);
    assert_eq!(
        vcpu_attr(&mut f, &vm, &mut v, SET, g, IRQ_VTIMER),
        Err(EBUSY)
    );
    assert_eq!(vcpu_attr(&mut f, &vm, &mut v1, SET, g, IRQ_PTIMER), Ok(0));
}
mod ccsidr;
mod dirty_log;
mod errno_audit;
mod halt_poll;
mod its;
mod memslots;
mod pending;
mod ptimer;
mod races;
mod vcpu_events;
mod vgic_v2;

#[test]
fn guest_debug_use_hw_gives_kcore_the_vmms_breakpoints_and_watchpoints() {
    use uapi::guest_debug::{ENABLE, USE_HW};
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    // The cortex-a72's counts, as KVM answers them.
    assert_eq!(vm::check_extension(&HOST, uapi::cap::GUEST_DEBUG_HW_BPS), 6);
    assert_eq!(vm::check_extension(&HOST, uapi::cap::GUEST_DEBUG_HW_WPS), 4);
    // struct kvm_guest_debug: control, pad, dbg_bcr[16], dbg_bvr[16],
    // dbg_wcr[16], dbg_wvr[16].
    let mut words = [0u64; 65];
    words[0] = u64::from(ENABLE | USE_HW);
    words[1 + 2] = 0x1e7; // dbg_bcr[2]
    words[1 + 16 + 2] = 0x4000_1000; // dbg_bvr[2]
    words[1 + 32 + 3] = 0x1ff7; // dbg_wcr[3]
    words[1 + 48 + 3] = 0x4000_2000; // dbg_wvr[3]
    let a = user(&mut f, 0x9000, &words);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::SET_GUEST_DEBUG, a), Ok(0));
    assert_eq!(
        f.get_reg(0, kr::GUEST_DEBUG),
        Some(kr::guest_debug::ENABLE | kr::guest_debug::USE_HW)
    );
    let host = |i: u64| kr::HOST_DEBUG_REG + i;
    assert_eq!(f.get_reg(0, host(8)), Some(0x4000_1000), "BVR2");
    assert_eq!(f.get_reg(0, host(9)), Some(0x1e7), "BCR2");
    assert_eq!(f.get_reg(0, host(14)), Some(0x4000_2000), "WVR3");
    assert_eq!(f.get_reg(0, host(15)), Some(0x1ff7), "WCR3");
    // The guest's own registers are not touched.
    assert_eq!(f.get_reg(0, kr::sys::debug(9)), Some(0));
    // A watchpoint exit: KVM_EXIT_DEBUG with the address.
    let esr = 0x34u64 << 26 | 1 << 25 | 1 << 6 | 0x22;
    f.script([(exit::DEBUG, 0, 0x4000_2000, esr, 0, [0; 3])]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.run_u32(krun::EXIT_REASON), kexit::DEBUG);
    assert_eq!(f.run_u32(krun::DEBUG_HSR), esr as u32);
    // USE_HW without ENABLE: debugging off, as KVM.
    let a = user(&mut f, 0x9000, &[u64::from(USE_HW)]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::SET_GUEST_DEBUG, a), Ok(0));
    assert_eq!(f.get_reg(0, kr::GUEST_DEBUG), Some(0));
}

#[test]
fn guest_debug_steps_through_kcore_and_exits_as_kvm_exit_debug() {
    use uapi::guest_debug::{ENABLE, SINGLESTEP, USE_HW, USE_SW_BP};
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    slot(&mut f, &vm);
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    let set = |f: &mut Fake, v: &mut Vcpu, control: u32| {
        let a = user(f, 0x9000, &[u64::from(control)]);
        ioctl(f, &vm, v, uapi::SET_GUEST_DEBUG, a)
    };
    assert_eq!(set(&mut f, &mut v, 1 << 3), Err(EINVAL), "not a valid bit");
    assert_eq!(set(&mut f, &mut v, ENABLE | SINGLESTEP | USE_SW_BP), Ok(0));
    assert_eq!(
        f.get_reg(0, kr::GUEST_DEBUG),
        Some(kr::guest_debug::ENABLE | kr::guest_debug::SINGLE_STEP)
    );
    // KCore's debug exit: KVM_EXIT_DEBUG with the full syndrome.
    let esr = 0x32u64 << 26 | 1 << 25 | 0x22 | 1 << 32;
    f.script([(exit::DEBUG, 0, 0, esr, 0, [0; 3])]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.run_u32(krun::EXIT_REASON), kexit::DEBUG);
    assert_eq!(f.run_u32(krun::DEBUG_HSR), esr as u32);
    assert_eq!(f.run_u32(krun::DEBUG_HSR_HIGH), 1);
    assert_eq!(f.run_u64(krun::DEBUG_FAR), 0);
    // Without ENABLE the rest is ignored and debugging stops.
    assert_eq!(set(&mut f, &mut v, SINGLESTEP), Ok(0));
    assert_eq!(f.get_reg(0, kr::GUEST_DEBUG), Some(0));
    assert_eq!(
        vm::check_extension(&HOST, uapi::cap::SET_GUEST_DEBUG2),
        i64::from(ENABLE | SINGLESTEP | USE_SW_BP | USE_HW)
    );
    // A protected vCPU is not debugged.
    let pvm = new_vm(&mut f, 1 << 31);
    let mut pv = new_vcpu(&mut f, &pvm, 0);
    let a = user(&mut f, 0x9000, &[u64::from(ENABLE)]);
    assert_eq!(
        vcpu::ioctl(&mut f, &pvm, &HOST, &mut pv, uapi::SET_GUEST_DEBUG, a),
        Err(EPERM)
    );
}
