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
    mmio: Vec<(u64, u64)>,
    script: VecDeque<Script>,
    completions: Vec<u64>,
    refuse_run: Option<Error>,
    dying: bool,
    owned_by_vm: BTreeSet<u64>,
    calls: Vec<HypercallId>,
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
                crate::runpage::read_words(self, pfn, 0, &mut entry);
                self.completions.push(entry[run::COMPLETION]);
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
                crate::runpage::write_words(self, pfn, run::EXIT, &out);
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
    fn pin_user_page(&mut self, uaddr: u64, _write: bool) -> Result<u64, Errno> {
        let pfn = self.alloc_pages(0).ok_or(ENOMEM)?;
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
    use crate::psci::{ALREADY_ON, INVALID_PARAMETERS, OFF, ON, SUCCESS};
    // Each answer is the completion of the next entry.
    assert_eq!(
        f.completions[1..],
        [OFF, SUCCESS, ALREADY_ON, ON, INVALID_PARAMETERS]
    );
    assert!(f.kicks.contains(&1));
}

#[test]
fn memory_slots_and_teardown() {
    let mut f = Fake::new();
    let vm = new_vm(&mut f, 1 << 31);
    slot(&mut f, &vm);
    let mut v = new_vcpu(&mut f, &vm, 0);
    init(&mut f, &vm, &mut v, 1 << 2);
    // The image: two pages donated, then verified.
    user(&mut f, 0xC000, &[0; 8]);
    let req = user(&mut f, 0x9500, &[RAM, 0x1800, 0xC000]);
    assert_eq!(
        vm::ioctl(&mut f, &vm, &HOST, uapi::KSERV_VM_VERIFY_IMAGE, req),
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
