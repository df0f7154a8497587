//! The KVM API against a fake KCore and a fake kernel, one thread: VM and
//! vCPU creation, memory slots, registers, and `KVM_RUN` turning scripted
//! KCore exits into `kvm_run` exits (MMIO to the VMM and its completion,
//! memory faults backed with pinned pages, PSCI system events, KCore
//! refusals), `immediate_exit` and signals, and teardown giving every page
//! back.

extern crate std;

use super::env::{KvmEnv, Lock};
use super::errno::*;
use super::uapi::{self, exit as kexit, run as krun};
use super::vcpu::{self, Vcpu};
use super::vm::{self, Host, Vm};
use crate::conduit::Conduit;
use crate::runpage::PageIo;
use kcore_abi::kvm_ext::KSERV_VM_VERIFY_IMAGE;
use kcore_abi::run::{self, exit};
use kcore_abi::{Error, HypercallId, reg as kr};
use std::boxed::Box;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::vec::Vec;

const HOST: Host = Host {
    ipa_limit: 44,
    online_cpus: 4,
    midr: 0x410F_D083,
};

/// What the fake KCore's next `HostVcpuRun` reports: reason, flags, addr,
/// data, width, args.
type Script = (u64, u64, u64, u64, u64, [u64; 3]);

#[derive(Default)]
struct Fake {
    // The kernel.
    next_pfn: u64,
    pages: BTreeMap<u64, Vec<u8>>,
    arrays: BTreeMap<u64, Box<[u64]>>,
    user: BTreeMap<u64, u8>,
    pinned: BTreeMap<u64, u64>,
    freed: BTreeSet<u64>,
    run: Vec<u8>,
    signal: bool,
    kicks: Vec<usize>,
    // KCore.
    regs: BTreeMap<(u64, u64), u64>,
    protected: bool,
    guest: BTreeMap<u64, u64>,
    shared: BTreeSet<u64>,
    /// Pages shared read-only (`HostShareGuest` flags).
    shared_ro: BTreeSet<u64>,
    /// Pages pinned for reading only.
    pinned_ro: BTreeSet<u64>,
    mmio: Vec<(u64, u64)>,
    script: VecDeque<Script>,
    completions: Vec<u64>,
    /// The interrupt words of each entry.
    entry_irqs: Vec<Vec<u64>>,
    refuse_run: Option<Error>,
    /// `HostVerifyImage` succeeds (else `NotSupported`).
    verify_ok: bool,
    dying: bool,
    owned_by_vm: BTreeSet<u64>,
    calls: Vec<HypercallId>,
    // Eventfds: the caller's fds (an fd of another kind maps to 0), each
    // eventfd's references and counter, and the irqfd hooks.
    fds: BTreeMap<i32, u64>,
    eventfd_refs: BTreeMap<u64, u32>,
    eventfd_count: BTreeMap<u64, u64>,
    hooks: BTreeMap<u64, (u64, u32, bool)>,
    next_hook: u64,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            next_pfn: 0x1000,
            run: std::vec![0; uapi::size::RUN],
            ..Fake::default()
        }
    }
    fn run_u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.run[off..off + 4].try_into().unwrap_or_default())
    }
    fn run_u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.run[off..off + 8].try_into().unwrap_or_default())
    }
    fn kcore(&mut self, id: HypercallId, a: [u64; 6]) -> Result<[u64; 3], Error> {
        self.calls.push(id);
        match id {
            HypercallId::HostCreateVm => {
                self.protected = a[0] & 1 != 0;
                for p in 0..a[4] {
                    self.owned_by_vm.insert(a[3] + p);
                }
                Ok([0x1_0001, 0, 0])
            }
            HypercallId::HostCreateVcpu => {
                self.regs.insert((a[1], kr::PSTATE), 0x3C5);
                Ok([0; 3])
            }
            HypercallId::HostDonateVmPool => {
                self.owned_by_vm.insert(a[1]);
                Ok([0; 3])
            }
            HypercallId::HostShareGuest if self.protected => Err(Error::Denied),
            HypercallId::HostShareGuest | HypercallId::HostDonateGuest => {
                if self.guest.contains_key(&a[2]) {
                    return Err(Error::Busy);
                }
                self.guest.insert(a[2], a[1]);
                if id == HypercallId::HostShareGuest {
                    self.shared.insert(a[1]);
                    if a[3] & kcore_abi::share_flags::READ_ONLY != 0 {
                        self.shared_ro.insert(a[1]);
                    }
                } else {
                    self.owned_by_vm.insert(a[1]);
                }
                Ok([0; 3])
            }
            HypercallId::HostUnshareGuest => {
                let pfn = self.guest.remove(&a[1]).ok_or(Error::NotFound)?;
                self.shared.remove(&pfn);
                Ok([0; 3])
            }
            HypercallId::HostDeclareMmio => {
                self.mmio.push((a[1], a[2]));
                Ok([0; 3])
            }
            HypercallId::HostVcpuGetReg if self.protected => Err(Error::Denied),
            HypercallId::HostVcpuGetReg => Ok([*self.regs.get(&(a[1], a[2])).unwrap_or(&0), 0, 0]),
            HypercallId::HostVcpuSetReg => {
                self.regs.insert((a[1], a[2]), a[3]);
                Ok([0; 3])
            }
            HypercallId::HostVcpuRun => {
                if let Some(e) = self.refuse_run {
                    return Err(e);
                }
                let pfn = a[2];
                let mut entry = [0u64; run::ENTRY_WORDS];
                self.read_words(pfn, 0, &mut entry);
                self.completions.push(entry[run::COMPLETION]);
                let n = (entry[run::IRQ_COUNT] as usize).min(run::MAX_IRQS);
                self.entry_irqs
                    .push(entry[run::IRQS..run::IRQS + n].to_vec());
                let (reason, flags, addr, data, width, args) =
                    self.script
                        .pop_front()
                        .unwrap_or((exit::IRQ, 0, 0, 0, 0, [0; 3]));
                let mut out = [0u64; run::WORDS - run::EXIT];
                out[0] = reason;
                out[1] = flags;
                out[2] = addr;
                out[3] = data;
                out[4] = width;
                out[5..8].copy_from_slice(&args);
                out[9] = u64::MAX;
                out[10] = entry[run::IRQ_COUNT];
                let n = entry[run::IRQ_COUNT] as usize;
                out[11..11 + n].copy_from_slice(&entry[run::IRQS..run::IRQS + n]);
                self.write_words(pfn, run::EXIT, &out);
                Ok([reason, 0, 0])
            }
            HypercallId::HostTeardownVm => {
                self.dying = true;
                self.shared.clear();
                Ok([0; 3])
            }
            HypercallId::HostReclaimPage => {
                if !self.dying || !self.owned_by_vm.remove(&a[1]) {
                    return Err(Error::Denied);
                }
                Ok([0; 3])
            }
            HypercallId::HostVerifyImage if self.verify_ok => Ok([0; 3]),
            HypercallId::HostPageOwner => {
                let owner = if self.owned_by_vm.contains(&a[0]) || self.shared.contains(&a[0]) {
                    5
                } else {
                    3
                };
                Ok([owner, 0, 0])
            }
            _ => Err(Error::NotSupported),
        }
    }
}

impl Conduit for Fake {
    fn call(&mut self, regs: &mut [u64; 8]) {
        let Some(id) = HypercallId::from_raw(regs[0]) else {
            regs[0] = Error::NotSupported.to_x0();
            return;
        };
        let a = [regs[1], regs[2], regs[3], regs[4], regs[5], regs[6]];
        match self.kcore(id, a) {
            Ok(r) => {
                regs[0] = 0;
                regs[1..4].copy_from_slice(&r);
            }
            Err(e) => regs[0] = e.to_x0(),
        }
    }
}

impl PageIo for Fake {
    fn write(&mut self, pfn: u64, offset: usize, data: &[u8]) {
        let p = self.pages.entry(pfn).or_insert_with(|| std::vec![0; 4096]);
        p[offset..offset + data.len()].copy_from_slice(data);
    }
    fn read(&mut self, pfn: u64, offset: usize, buf: &mut [u8]) {
        let p = self.pages.entry(pfn).or_insert_with(|| std::vec![0; 4096]);
        buf.copy_from_slice(&p[offset..offset + buf.len()]);
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
        if !write {
            self.pinned_ro.insert(pfn);
        }
        self.pinned.insert(pfn, uaddr);
        Ok(pfn)
    }
    fn unpin_page(&mut self, pfn: u64) {
        assert!(self.pinned.remove(&pfn).is_some(), "unpin of {pfn:#x}");
        assert!(!self.owned_by_vm.contains(&pfn) && !self.shared.contains(&pfn));
    }
    fn alloc_pages(&mut self, order: u32) -> Option<u64> {
        let n = 1u64 << order;
        let first = self.next_pfn.next_multiple_of(n);
        self.next_pfn = first + n;
        Some(first)
    }
    fn free_page(&mut self, pfn: u64) {
        assert!(!self.owned_by_vm.contains(&pfn), "freed a VM page {pfn:#x}");
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
    fn lock(&mut self, _l: Lock) {}
    fn unlock(&mut self, _l: Lock) {}
    fn now(&mut self) -> u64 {
        1000
    }
    fn cpu(&mut self) -> u32 {
        2
    }
    fn signal_pending(&mut self) -> bool {
        self.signal
    }
    fn wait(&mut self, _deadline: u64) {
        // Nothing else runs: a wait would be forever.
        self.signal = true;
    }
    fn kick(&mut self, id: usize) {
        self.kicks.push(id);
    }
    fn enter_guest(&mut self) {}
    fn leave_guest(&mut self) {}
    fn relax(&mut self) {}
    fn log(&mut self, _line: &[u8]) {}
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
        0
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
    assert_eq!(f.regs.get(&(0, kr::x(5))), Some(&0x1234));
    // The counter: physical (1000) minus the VM's offset.
    f.regs.insert((0, kr::CNTVOFF), 400);
    let cnt = user(&mut f, 0x9200, &[uapi::reg::TIMER_CNT, 0xA100]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::GET_ONE_REG, cnt), Ok(0));
    let mut b = [0u8; 8];
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
    user(&mut f, 0xB000, &[200]);
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
    assert_eq!(f.regs.get(&(0, kr::X0)), Some(&7));
    assert_eq!(f.regs.get(&(0, kr::x(1))), None, "no hypercall for x1");
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
    f.script.extend([
        (exit::MEM_FAULT, 0, RAM + 0x3000, 0, 0, [0; 3]),
        (exit::MMIO, 0, 0x0900_0008, 0, 4, [0; 3]),
    ]);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    // First run: everything but the slot declared MMIO.
    let ipa = 1u64 << (40 - 12);
    assert_eq!(
        f.mmio,
        [(0, RAM >> 12), ((RAM >> 12) + 256, ipa - (RAM >> 12) - 256)]
    );
    // The fault was backed with the VMM's page at the right address.
    let pfn = f.guest.get(&((RAM >> 12) + 3)).copied();
    assert!(pfn.is_some_and(|p| f.pinned.get(&p) == Some(&(UADDR + 0x3000))));
    // The read went to the VMM.
    assert_eq!(f.run_u32(krun::EXIT_REASON), kexit::MMIO);
    assert_eq!(f.run_u64(krun::MMIO_PHYS_ADDR), 0x0900_0008);
    assert_eq!(f.run_u32(krun::MMIO_LEN), 4);
    assert_eq!(f.run[krun::MMIO_IS_WRITE], 0);
    // Its answer is the next entry's completion (cut to 4 bytes).
    f.run[krun::MMIO_DATA..krun::MMIO_DATA + 8]
        .copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
    f.script.push_back((
        exit::PSCI,
        0,
        0,
        u64::from(crate::psci::SYSTEM_OFF),
        0,
        [0; 3],
    ));
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.completions.last(), Some(&0x5566_7788));
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
}

#[test]
fn immediate_exit_signals_and_kcore_refusals() {
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 0);
    let mut v = new_vcpu(&mut f, &vm, 0);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Err(ENOEXEC));
    init(&mut f, &vm, &mut v, 1 << 2);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 1), Err(EINVAL));
    f.run[krun::IMMEDIATE_EXIT] = 1;
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Err(EINTR));
    f.run[krun::IMMEDIATE_EXIT] = 0;
    assert!(!f.calls.contains(&HypercallId::HostVcpuRun));
    f.refuse_run = Some(Error::Denied);
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.run_u32(krun::EXIT_REASON), kexit::FAIL_ENTRY);
    assert_eq!(f.run_u64(krun::FAIL_ENTRY_REASON), Error::Denied.to_x0());
    assert_eq!(f.run_u32(krun::FAIL_ENTRY_CPU), 2);
    // A vCPU started off (POWER_OFF) sleeps until a signal.
    let mut v1 = new_vcpu(&mut f, &vm, 1);
    init(&mut f, &vm, &mut v1, 1 << 2 | 1);
    f.refuse_run = None;
    let runs = f
        .calls
        .iter()
        .filter(|c| **c == HypercallId::HostVcpuRun)
        .count();
    assert_eq!(ioctl(&mut f, &vm, &mut v1, uapi::RUN, 0), Err(EINTR));
    assert_eq!(
        f.calls
            .iter()
            .filter(|c| **c == HypercallId::HostVcpuRun)
            .count(),
        runs
    );
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
    f.script.extend([
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
        f.completions[1..],
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

/// A `KSERV_VM_VERIFY_IMAGE` request for `len` bytes at `RAM` with a
/// signature block (an all-zero signature; the fake KCore checks none) whose
/// manifest holds `mmio`.
fn signed_request(f: &mut Fake, len: u64, mmio: &[(u64, u64)]) -> u64 {
    let m = kcore_abi::manifest::Manifest::new(mmio).unwrap();
    let mut block = [0u8; kcore_abi::manifest::MAX_BLOCK_LEN];
    let n = m.encode(&mut block[64..]).unwrap() + 64;
    f.copy_to_user(0xC000, &block[..n]).unwrap();
    user(f, 0x9500, &[RAM, len, 0xC000, n as u64])
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
    assert!(f.guest.is_empty());
    let req = signed_request(&mut f, 0x1800, &[]);
    assert_eq!(
        vm::ioctl(&mut f, &vm, &HOST, KSERV_VM_VERIFY_IMAGE, req),
        Err(EIO)
    );
    assert_eq!(f.guest.len(), 2, "pages donated before KCore was asked");
    // Donated pages pin the slot.
    let del = user(&mut f, 0x8000, &[0, 0, 0, 0]);
    assert_eq!(
        vm::ioctl(&mut f, &vm, &HOST, uapi::SET_USER_MEMORY_REGION, del),
        Err(EBUSY)
    );
    let pool = f.owned_by_vm.len();
    assert!(pool >= 18, "16 root pages, a vCPU's context, 2 donated");
    let t = vm::destroy(&mut f, &vm);
    assert_eq!(t.kept, 0);
    assert_eq!(t.released as usize, pool);
    assert!(f.pinned.is_empty() && f.owned_by_vm.is_empty());
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
        Ok(true)
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
    f.script.extend([
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
    f.script.push_back(w(0x33, 4));
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    assert_eq!(f.run[krun::MMIO_IS_WRITE], 1);
    assert_eq!(f.run_u64(krun::MMIO_DATA), 0x33);
    f.script.push_back(w(0x11, 8));
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
    f.script.push_back(w(0x11, 4));
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
    f.script
        .push_back((exit::MMIO, 0, 0x0900_0000, 0, 4, [0; 3]));
    assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
    let e = f.entry_irqs.last().cloned().unwrap_or_default();
    assert_eq!(e.len(), 1);
    assert_eq!(lr::vintid(e[0]), 40);
    // Fd 6 raises SPI 41's line until the guest completes it; the guest
    // takes both (active), then completes them (the fake KCore reports the
    // states given, so script them through the exits' irq states).
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
            f.verify_ok = true;
            let req = signed_request(&mut f, 0x1000, &[(rom, 2)]);
            assert_eq!(
                vm::ioctl(&mut f, &vm, &HOST, KSERV_VM_VERIFY_IMAGE, req),
                Ok(0)
            );
        }
        if protected {
            // Emulated: a read exit answered from the VMM's memory.
            f.script.extend([
                (exit::MMIO, 0, ROM + 0x10, 0, 8, [0; 3]),
                (exit::MMIO, WRITE, ROM + 0x10, 5, 8, [0; 3]),
            ]);
        } else {
            // Mapped on first touch (a fault, say an instruction fetch).
            f.script.extend([
                (exit::MEM_FAULT, 0, ROM + 0x10, 0, 0, [0; 3]),
                (exit::MMIO, WRITE, ROM + 0x10, 5, 8, [0; 3]),
            ]);
        }
        assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
        let declared_rom = f.mmio.iter().any(|&(g, n)| g <= rom && rom < g + n);
        assert_eq!(declared_rom, protected, "declared MMIO only when emulated");
        if protected {
            assert_eq!(f.mmio, [(rom, 2)], "only inside the signed manifest");
        }
        if protected {
            assert_eq!(f.completions.last(), Some(&0xABCD));
            assert!(!f.guest.contains_key(&rom), "nothing mapped");
        } else {
            let pfn = f.guest.get(&rom).copied();
            assert!(pfn.is_some_and(|p| f.shared_ro.contains(&p) && f.pinned_ro.contains(&p)));
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
        f.script.push_back((
            exit::PSCI,
            0,
            0,
            u64::from(crate::psci::SYSTEM_OFF),
            0,
            [0; 3],
        ));
        assert_eq!(ioctl(&mut f, &vm, &mut v, uapi::RUN, 0), Ok(0));
        // What the guest left behind.
        for (k, val) in [
            (kr::x(5), 7),
            (kr::PC, RAM + 0x40),
            (kr::V_HI + 3, 9),
            (kr::PSTATE, 0x3C4),
        ] {
            f.regs.insert((0, k), val);
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
            assert_eq!(f.regs.get(&(0, k)), Some(&want), "register {k:#x}");
        }
        // Runnable again: the system event's stop is over.
        f.script
            .push_back((exit::MMIO, 0, 0x0900_0000, 0, 4, [0; 3]));
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
