//! The guest runner against a fake KCore whose vCPUs play scripted guests
//! (each [`Op`] is what the guest does next: an MMIO access, a memory touch,
//! a PSCI call, an SGI, waiting for an interrupt, ...), and a fake kernel
//! with real threads, a real clock and pages it checks KServ holds before
//! every access.

extern crate std;

use super::*;
use kcore_abi::HypercallId;
use kcore_abi::run::exit;
use std::boxed::Box;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::string::{String, ToString};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use std::vec::Vec;
use std::{format, vec};

/// What the fake guest does next.
#[derive(Clone, Debug)]
enum Op {
    /// Writes `data` (`width` bytes) at `addr`: an MMIO exit.
    Write(u64, u64, u64),
    /// Reads `width` bytes at `addr`; KServ must answer `expect`.
    Read(u64, u64, u64),
    /// Touches `addr`: memory faults until the page is backed.
    Touch(u64),
    /// A PSCI call (`fid`, `x1..x3`); KServ must answer `expect`.
    Psci(u32, [u64; 3], Option<u64>),
    /// `AFFINITY_INFO(target)` again and again until it answers `state`.
    AwaitAffinity(u64, u64),
    /// Writes `ICC_SGI1R_EL1`.
    Sgi(u64),
    /// Idles in WFI until `intid` is supplied pending, then completes it.
    TakeIrq(u32),
    /// Acknowledges `intid` (idling until it is supplied pending): active.
    Ack(u32),
    /// Completes `intid`, which KServ must have supplied active again.
    Eoi(u32),
    /// WFI with the timer `us` microseconds ahead; KServ must not run the
    /// vCPU again before then.
    WfiTimer(u64),
    /// An exit for a KServ interrupt.
    Irq,
    /// WFI forever.
    Park,
}

/// The console bytes of `text` as MMIO writes.
fn console(text: &str) -> Vec<Op> {
    text.bytes()
        .map(|b| Op::Write(testdev::BASE + testdev::CONSOLE, 1, u64::from(b)))
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Host,
    Table,
    Guest(u64),
}

/// What the next entry of a vCPU must bring.
#[derive(Clone, Copy, Debug)]
enum Check {
    None,
    Completion(u64),
    Poll(u64),
    NotBefore(u64),
}

struct FakeVcpu {
    created: bool,
    pc: u64,
    x0: u64,
    started: bool,
    boot: bool,
    off: bool,
    ops: VecDeque<Op>,
    check: Check,
    polls: u32,
    runs: u64,
}

/// Ways the fake can misbehave.
#[derive(Clone, Copy, Debug, Default)]
struct Knobs {
    /// `HostVcpuRun` of this vCPU fails with `Busy` from its n-th run on.
    run_error: Option<(usize, u64)>,
    /// The n-th `HostReclaimPage` is refused.
    refuse_reclaim: Option<usize>,
    /// Every new 2 MiB of guest memory costs this many table pages (1).
    tables_per_region: u64,
    /// The threads of both vCPUs run on CPU 0.
    same_cpu: bool,
    /// The exit reports one interrupt fewer than supplied.
    short_irq_report: bool,
    /// A broken KCore that lets KServ read a protected vCPU's registers.
    leak_registers: bool,
}

struct World {
    pages: BTreeMap<u64, (St, Vec<u8>)>,
    next_pfn: u64,
    allocated: BTreeSet<u64>,
    freed: Vec<u64>,
    log: Vec<String>,
    errors: Vec<String>,
    /// The entry halves KServ wrote, per vCPU: (completion, irq words).
    entries: [Vec<(u64, Vec<u64>)>; VCPUS],
    knobs: Knobs,
    start: Instant,
    // The one VM.
    handle: Option<u64>,
    dying: bool,
    verified: bool,
    pool_free: u64,
    regions: BTreeSet<u64>,
    mmio: Vec<(u64, u64)>,
    vcpus: [FakeVcpu; VCPUS],
    reclaims: usize,
    pool_donations: u64,
    /// Register reads/writes and interrupt injections refused as KCore
    /// refuses them.
    attacks_refused: u64,
}

const HANDLE: u64 = 0x1_0001;
/// Runs between attacks in the scripted runs (short guests).
const ATTACK_EVERY: u64 = 3;
/// PSCI `ALREADY_ON`, which KCore (not KServ) answers.
const ALREADY_ON: u64 = -4i64 as u64;
const KEY: u64 = 0x5eed;
const RAM: u64 = 0x4_0000;

fn fake_signature(image: &[u8]) -> [u8; SIGNATURE_LEN] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ KEY;
    for &b in image {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    // The signature, then (zero-padded) what would be the manifest: the
    // fake KCore checks the first 64 bytes only.
    let mut sig = [0u8; SIGNATURE_LEN];
    sig[..64].fill(0x5a);
    sig[..8].copy_from_slice(&h.to_le_bytes());
    sig
}

fn image() -> Vec<u8> {
    (0..5000u32).map(|i| (i * 7 + 3) as u8).collect()
}

impl World {
    fn new(knobs: Knobs, scripts: [Vec<Op>; VCPUS]) -> Self {
        let [s0, s1] = scripts;
        let vcpu = |ops: Vec<Op>| FakeVcpu {
            created: false,
            pc: 0,
            x0: 0,
            started: false,
            boot: false,
            off: false,
            ops: ops.into(),
            check: Check::None,
            polls: 0,
            runs: 0,
        };
        World {
            pages: BTreeMap::new(),
            next_pfn: RAM,
            allocated: BTreeSet::new(),
            freed: Vec::new(),
            log: Vec::new(),
            errors: Vec::new(),
            entries: [Vec::new(), Vec::new()],
            knobs: Knobs {
                tables_per_region: knobs.tables_per_region.max(1),
                ..knobs
            },
            start: Instant::now(),
            handle: None,
            dying: false,
            verified: false,
            pool_free: 0,
            regions: BTreeSet::new(),
            mmio: Vec::new(),
            vcpus: [vcpu(s0), vcpu(s1)],
            reclaims: 0,
            pool_donations: 0,
            attacks_refused: 0,
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn state(&self, pfn: u64) -> Result<St, Error> {
        self.pages
            .get(&pfn)
            .map(|p| p.0)
            .ok_or(Error::InvalidParameter)
    }

    fn set(&mut self, pfn: u64, st: St) {
        if let Some(p) = self.pages.get_mut(&pfn) {
            p.0 = st;
        }
    }

    fn host_page(&self, pfn: u64) -> &Vec<u8> {
        match self.pages.get(&pfn) {
            Some((St::Host, data)) if self.allocated.contains(&pfn) => data,
            other => panic!("KServ touched pfn {pfn:#x}, which it does not hold: {other:?}"),
        }
    }

    fn host_page_mut(&mut self, pfn: u64) -> &mut Vec<u8> {
        self.host_page(pfn);
        &mut self.pages.get_mut(&pfn).expect("page").1
    }

    fn gfn_page(&self, gfn: u64) -> Option<u64> {
        self.pages
            .iter()
            .find(|(_, (st, _))| *st == St::Guest(gfn))
            .map(|(pfn, _)| *pfn)
    }

    fn live(&self, handle: u64) -> Result<(), Error> {
        if self.handle == Some(handle) {
            Ok(())
        } else {
            Err(Error::NotFound)
        }
    }

    fn maybe_forget_vm(&mut self) {
        if self.dying && !self.pages.values().any(|p| p.0 != St::Host) {
            self.handle = None;
        }
    }

    fn hvc(&mut self, id: HypercallId, a: [u64; 6]) -> Result<[u64; 3], Error> {
        match id {
            HypercallId::Version => Ok([kcore_abi::abi_version(), 0b1111, 0]),
            HypercallId::HostCreateVm => {
                let [flags, ipa, vcpus, pool, n, _] = a;
                if self.handle.is_some() {
                    return Err(Error::NoMemory);
                }
                if flags != vm_flags::PROTECTED || ipa != IPA_BITS || vcpus != VCPUS as u64 {
                    return Err(Error::InvalidParameter);
                }
                if n < 4 || pool % 4 != 0 {
                    return Err(Error::InvalidParameter);
                }
                for p in pool..pool + n {
                    if self.state(p)? != St::Host {
                        return Err(Error::Denied);
                    }
                }
                for p in pool..pool + n {
                    self.set(p, St::Table);
                }
                self.handle = Some(HANDLE);
                self.pool_free = n - 4;
                Ok([HANDLE, 0, 0])
            }
            HypercallId::HostDonateVmPool => {
                self.live(a[0])?;
                if self.dying || self.state(a[1])? != St::Host {
                    return Err(Error::Denied);
                }
                self.set(a[1], St::Table);
                self.pool_free += 1;
                self.pool_donations += 1;
                Ok([0; 3])
            }
            HypercallId::HostDeclareMmio => {
                self.live(a[0])?;
                if self.vcpus.iter().any(|v| v.started) {
                    return Err(Error::Denied);
                }
                self.mmio.push((a[1], a[2]));
                Ok([0; 3])
            }
            HypercallId::HostDonateGuest => {
                self.live(a[0])?;
                let (pfn, gfn) = (a[1], a[2]);
                if self.dying || self.state(pfn)? != St::Host || self.gfn_page(gfn).is_some() {
                    return Err(Error::Denied);
                }
                if gfn >= 1 << (IPA_BITS - 12) {
                    return Err(Error::InvalidParameter);
                }
                let region = gfn >> 9;
                if !self.regions.contains(&region) {
                    let cost = self.knobs.tables_per_region;
                    if self.pool_free < cost {
                        return Err(Error::NoMemory);
                    }
                    self.pool_free -= cost;
                    self.regions.insert(region);
                }
                self.set(pfn, St::Guest(gfn));
                Ok([0; 3])
            }
            HypercallId::HostVerifyImage => {
                self.live(a[0])?;
                let (gfn, len, sig_pfn) = (a[1], a[2] as usize, a[3]);
                let mut bytes = Vec::new();
                for p in 0..len.div_ceil(PAGE_SIZE) as u64 {
                    let pfn = self.gfn_page(gfn + p).ok_or(Error::Denied)?;
                    bytes.extend_from_slice(&self.pages[&pfn].1);
                }
                bytes.truncate(len);
                if self.host_page(sig_pfn)[..64] != fake_signature(&bytes)[..64] {
                    return Err(Error::VerificationFailed);
                }
                self.verified = true;
                Ok([0; 3])
            }
            HypercallId::HostCreateVcpu => {
                self.live(a[0])?;
                let v = self
                    .vcpus
                    .get(a[1] as usize)
                    .ok_or(Error::InvalidParameter)?;
                if v.created {
                    return Err(Error::Busy);
                }
                if self.pool_free == 0 {
                    return Err(Error::NoMemory);
                }
                self.pool_free -= 1;
                self.vcpus[a[1] as usize].created = true;
                Ok([0; 3])
            }
            HypercallId::HostVcpuSetReg => {
                self.live(a[0])?;
                let v = self.vcpus.get_mut(a[1] as usize).ok_or(Error::NotFound)?;
                if !v.created {
                    return Err(Error::NotFound);
                }
                if v.started {
                    self.attacks_refused += 1;
                    return Err(Error::Denied);
                }
                match a[2] {
                    reg::PC => v.pc = a[3],
                    reg::X0 => v.x0 = a[3],
                    _ => return Err(Error::Denied),
                }
                Ok([0; 3])
            }
            HypercallId::HostVcpuRun => {
                self.live(a[0])?;
                self.vcpu_run(a[1] as usize, a[2]).map(|r| [r, 0, 0])
            }
            HypercallId::HostTeardownVm => {
                self.live(a[0])?;
                if self.dying {
                    return Err(Error::Denied);
                }
                self.dying = true;
                Ok([0; 3])
            }
            HypercallId::HostReclaimPage => {
                self.live(a[0])?;
                if !self.dying {
                    return Err(Error::Busy);
                }
                self.reclaims += 1;
                if self.knobs.refuse_reclaim == Some(self.reclaims) {
                    return Err(Error::Denied);
                }
                match self.state(a[1])? {
                    St::Host => return Err(Error::Denied),
                    St::Table | St::Guest(_) => {}
                }
                let p = self.pages.get_mut(&a[1]).expect("page");
                p.0 = St::Host;
                p.1.fill(0);
                self.maybe_forget_vm();
                Ok([0; 3])
            }
            HypercallId::HostVcpuGetReg => {
                // A protected VM: no register is KServ's to read.
                self.live(a[0])?;
                let v = self.vcpus.get(a[1] as usize).ok_or(Error::NotFound)?;
                if !v.created {
                    return Err(Error::NotFound);
                }
                if self.knobs.leak_registers {
                    return Ok([0x5EC2E7, 0, 0]);
                }
                self.attacks_refused += 1;
                Err(Error::Denied)
            }
            HypercallId::HostPageOwner => {
                let h = self.handle.unwrap_or(HANDLE);
                Ok(match self.state(a[0])? {
                    St::Host => [PageOwner::Host as u64, 0, 0],
                    St::Table => [PageOwner::VmTable as u64, h, 0],
                    St::Guest(gfn) => [PageOwner::Guest as u64, h, gfn],
                })
            }
            _ => Err(Error::NotSupported),
        }
    }

    /// `HostVcpuRun`: checks the entry, plays the guest to its next exit.
    fn vcpu_run(&mut self, idx: usize, run_pfn: u64) -> Result<u64, Error> {
        if idx >= VCPUS || !self.vcpus[idx].created {
            return Err(Error::NotFound);
        }
        if !self.verified || self.dying {
            return Err(Error::Denied);
        }
        if self.state(run_pfn)? != St::Host {
            return Err(Error::Denied);
        }
        // KServ's interrupts are checked before anything changes, as KCore
        // does: no hardware mapping, not the guest timer's INTID.
        {
            let page = self.host_page(run_pfn);
            let word = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&page[8 * i..8 * i + 8]);
                u64::from_le_bytes(b)
            };
            let n = (word(run::IRQ_COUNT) as usize).min(run::MAX_IRQS);
            if (0..n).any(|i| {
                irq::hw(word(run::IRQS + i)).is_some() || irq::vintid(word(run::IRQS + i)) == 27
            }) {
                self.attacks_refused += 1;
                return Err(Error::Denied);
            }
        }
        if let Some((v, n)) = self.knobs.run_error
            && v == idx
            && self.vcpus[idx].runs + 1 >= n
        {
            return Err(Error::Busy);
        }
        {
            let v = &mut self.vcpus[idx];
            if v.boot {
                (v.boot, v.started, v.off) = (false, true, false);
            } else if !v.started {
                if idx != 0 || v.pc != guest::RAM_BASE || v.x0 != guest::BOOT_X0 {
                    return Err(Error::Denied);
                }
                v.started = true;
            } else if v.off {
                return Err(Error::Denied);
            }
            v.runs += 1;
        }
        let page = self.host_page(run_pfn).clone();
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&page[8 * i..8 * i + 8]);
            u64::from_le_bytes(b)
        };
        if word(run::FLAGS) != 0 || word(run::IRQ_COUNT) > IRQ_SLOTS as u64 {
            return Err(Error::InvalidParameter);
        }
        let completion = word(run::COMPLETION);
        let mut lrs: Vec<u64> = (0..word(run::IRQ_COUNT) as usize)
            .map(|i| word(run::IRQS + i))
            .collect();
        for (i, &w) in lrs.iter().enumerate() {
            let id = irq::vintid(w);
            if irq::state(w) == 0 || lrs[..i].iter().any(|&o| irq::vintid(o) == id) {
                return Err(Error::InvalidParameter);
            }
        }
        self.entries[idx].push((completion, lrs.clone()));
        let now = self.now();

        let v = &mut self.vcpus[idx];
        match v.check {
            Check::None => {}
            Check::Completion(expect) => {
                if completion != expect {
                    self.errors.push(format!(
                        "vCPU {idx}: completion {completion:#x}, expected {expect:#x}"
                    ));
                }
            }
            Check::Poll(state) => {
                v.polls += 1;
                if completion == state || v.polls > 100_000 {
                    v.ops.pop_front();
                    v.polls = 0;
                }
            }
            Check::NotBefore(deadline) => {
                if now < deadline {
                    self.errors.push(format!(
                        "vCPU {idx} ran at {now} before its timer deadline {deadline}"
                    ));
                }
            }
        }
        self.vcpus[idx].check = Check::None;

        // reason, flags, addr, data, width, args, timer deadline
        let mut out = (exit::WFI, 0u64, 0u64, 0u64, 0u64, [0u64; 3], u64::MAX);
        // With no ops left the guest is parked in WFI.
        while let Some(op) = self.vcpus[idx].ops.front().cloned() {
            let mut pop = true;
            let mut exits = true;
            match op {
                Op::Write(addr, width, data) => {
                    out = (
                        exit::MMIO,
                        exit_flags::WRITE,
                        addr,
                        data,
                        width,
                        [0; 3],
                        u64::MAX,
                    );
                }
                Op::Read(addr, width, expect) => {
                    out = (exit::MMIO, 0, addr, 0, width, [0; 3], u64::MAX);
                    self.vcpus[idx].check = Check::Completion(expect);
                }
                Op::Touch(addr) => {
                    if self.gfn_page(addr >> 12).is_some() {
                        exits = false;
                    } else {
                        pop = false;
                        out = (exit::MEM_FAULT, 0, addr & !0xfff, 0, 0, [0; 3], u64::MAX);
                    }
                }
                Op::Psci(fid, args, expect) => {
                    if matches!(fid, psci::CPU_ON_64 | psci::CPU_ON_32) {
                        let t = args[0] as usize;
                        let tv = &mut self.vcpus[t];
                        if tv.started && !tv.off {
                            // KCore answers this itself.
                            if expect.is_some_and(|e| e != ALREADY_ON) {
                                self.errors.push(format!("CPU_ON of running vCPU {t}"));
                            }
                            self.vcpus[idx].ops.pop_front();
                            continue;
                        }
                        tv.boot = true;
                    }
                    if fid == psci::CPU_OFF {
                        self.vcpus[idx].off = true;
                    }
                    out = (exit::PSCI, 0, 0, u64::from(fid), 0, args, u64::MAX);
                    if let Some(e) = expect {
                        self.vcpus[idx].check = Check::Completion(e);
                    }
                }
                Op::AwaitAffinity(target, state) => {
                    pop = false;
                    let fid = u64::from(psci::AFFINITY_INFO_64);
                    out = (exit::PSCI, 0, 0, fid, 0, [target, 0, 0], u64::MAX);
                    self.vcpus[idx].check = Check::Poll(state);
                }
                Op::Sgi(value) => {
                    out = (exit::SGI, 0, 0, value, 0, [0; 3], u64::MAX);
                }
                Op::TakeIrq(id) | Op::Ack(id) => {
                    match lrs.iter_mut().find(|w| irq::vintid(**w) == id) {
                        Some(w) if irq::state(*w) & irq::PENDING != 0 => {
                            let st = if matches!(op, Op::Ack(_)) {
                                irq::ACTIVE
                            } else {
                                irq::state(*w) & irq::ACTIVE
                            };
                            *w = irq::with_state(*w, st);
                            exits = false;
                        }
                        _ => {
                            pop = false;
                            out = (exit::WFI, 0, 0, 0, 0, [0; 3], u64::MAX);
                        }
                    }
                }
                Op::Eoi(id) => {
                    exits = false;
                    match lrs.iter_mut().find(|w| irq::vintid(**w) == id) {
                        Some(w) if irq::state(*w) & irq::ACTIVE != 0 => {
                            *w = irq::with_state(*w, irq::state(*w) & irq::PENDING);
                        }
                        _ => self.errors.push(format!(
                            "vCPU {idx}: interrupt {id} was not supplied active again"
                        )),
                    }
                }
                Op::WfiTimer(us) => {
                    let deadline = now + us;
                    out = (exit::WFI, 0, 0, 0, 0, [0; 3], deadline);
                    self.vcpus[idx].check = Check::NotBefore(deadline);
                }
                Op::Irq => {
                    out = (exit::IRQ, 0, 0, 0, 0, [0; 3], u64::MAX);
                }
                Op::Park => {
                    pop = false;
                    out = (exit::WFI, 0, 0, 0, 0, [0; 3], u64::MAX);
                }
            }
            if pop {
                self.vcpus[idx].ops.pop_front();
            }
            if exits {
                break;
            }
        }
        let (reason, flags, addr, data, width, args, deadline) = out;
        let mut exit_words = vec![0u64; run::WORDS - run::EXIT];
        let mut put = |i: usize, v: u64| exit_words[i - run::EXIT] = v;
        put(run::EXIT_REASON, reason);
        put(run::EXIT_FLAGS, flags);
        put(run::EXIT_ADDR, addr);
        put(run::EXIT_DATA, data);
        put(run::EXIT_WIDTH, width);
        for (i, a) in args.iter().enumerate() {
            put(run::EXIT_ARGS + i, *a);
        }
        put(run::EXIT_TIMER_DEADLINE, deadline);
        let reported = if self.knobs.short_irq_report && !lrs.is_empty() {
            lrs.len() - 1
        } else {
            lrs.len()
        };
        put(run::EXIT_IRQ_COUNT, reported as u64);
        for (i, w) in lrs.iter().enumerate() {
            put(run::EXIT_IRQS + i, *w);
        }
        let page = &mut self.pages.get_mut(&run_pfn).expect("run page").1;
        for (i, w) in exit_words.iter().enumerate() {
            page[8 * (run::EXIT + i)..8 * (run::EXIT + i) + 8].copy_from_slice(&w.to_le_bytes());
        }
        Ok(reason)
    }
}

struct Sleeper {
    kicked: Mutex<bool>,
    cv: Condvar,
}

/// The fake kernel and KCore, shared by every thread's [`Fake`].
struct Machine {
    world: Mutex<World>,
    kicks: [Sleeper; VCPUS],
    done: [Sleeper; VCPUS],
    vm: &'static Shared,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One thread's view of the fake machine: the [`Env`] of the tests.
#[derive(Clone)]
struct Fake {
    m: Arc<Machine>,
    cpu: u32,
}

impl Fake {
    fn new(knobs: Knobs, scripts: [Vec<Op>; VCPUS]) -> Fake {
        let sleeper = || Sleeper {
            kicked: Mutex::new(false),
            cv: Condvar::new(),
        };
        Fake {
            m: Arc::new(Machine {
                world: Mutex::new(World::new(knobs, scripts)),
                kicks: [sleeper(), sleeper()],
                done: [sleeper(), sleeper()],
                vm: Box::leak(Box::new(Shared::new())),
            }),
            cpu: 7,
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.m.world)
    }

    fn vm(&self) -> &'static Shared {
        self.m.vm
    }

    fn run(&mut self, timeout_secs: u64) -> Outcome {
        let image = image();
        let sig = fake_signature(&image);
        self.run_with(&image, &sig, timeout_secs)
    }

    fn run_with(&mut self, image: &[u8], sig: &[u8; SIGNATURE_LEN], timeout_secs: u64) -> Outcome {
        let vm = self.vm();
        run(
            self,
            vm,
            &Setup {
                image,
                signature: sig,
                timeout_secs,
                attack_every: ATTACK_EVERY,
            },
        )
    }

    fn log(&self) -> Vec<String> {
        self.world().log.clone()
    }

    fn line(&self, prefix: &str) -> String {
        self.log()
            .into_iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in {:#?}", self.log()))
    }

    /// Every page the run allocated went back, and no page is anyone's but
    /// KServ's.
    fn assert_all_back(&self) {
        let w = self.world();
        let mut freed = w.freed.clone();
        freed.sort_unstable();
        let allocated: Vec<u64> = w.allocated.iter().copied().collect();
        assert_eq!(freed, allocated, "pages allocated but not freed");
        assert!(w.pages.values().all(|p| p.0 == St::Host));
        assert_eq!(w.handle, None, "the VM's slot is gone with its last page");
    }

    fn errors(&self) -> Vec<String> {
        self.world().errors.clone()
    }
}

impl Conduit for Fake {
    fn call(&mut self, regs: &mut [u64; 8]) {
        let id = HypercallId::from_raw(regs[0]).expect("a KCore call");
        let args = [regs[1], regs[2], regs[3], regs[4], regs[5], regs[6]];
        let r = self.world().hvc(id, args);
        match r {
            Ok([a, b, c]) => regs[..4].copy_from_slice(&[0, a, b, c]),
            Err(e) => regs[..4].copy_from_slice(&[e.to_x0(), 0, 0, 0]),
        }
    }
}

fn deadline_in(deadline: u64, now: u64) -> Duration {
    Duration::from_micros(deadline.saturating_sub(now).min(200_000))
}

impl PageIo for Fake {
    fn write(&mut self, pfn: u64, offset: usize, data: &[u8]) {
        let mut w = self.world();
        w.host_page_mut(pfn)[offset..offset + data.len()].copy_from_slice(data);
    }

    fn read(&mut self, pfn: u64, offset: usize, buf: &mut [u8]) {
        let w = self.world();
        buf.copy_from_slice(&w.host_page(pfn)[offset..offset + buf.len()]);
    }
}

impl Env for Fake {
    fn alloc_pages(&mut self, order: u32) -> Option<u64> {
        let mut w = self.world();
        let n = 1u64 << order;
        let first = w.next_pfn.next_multiple_of(n);
        w.next_pfn = first + n;
        for p in first..first + n {
            w.pages.insert(p, (St::Host, vec![0; PAGE_SIZE]));
            w.allocated.insert(p);
        }
        Some(first)
    }

    fn free_page(&mut self, pfn: u64) {
        let mut w = self.world();
        w.host_page(pfn);
        assert!(!w.freed.contains(&pfn), "pfn {pfn:#x} freed twice");
        w.freed.push(pfn);
        w.pages.remove(&pfn);
    }

    fn log(&mut self, line: &[u8]) {
        let line = String::from_utf8_lossy(line).to_string();
        self.world().log.push(line);
    }

    fn now(&mut self) -> u64 {
        self.world().now()
    }

    fn frequency(&mut self) -> u64 {
        1_000_000
    }

    fn cpu(&mut self) -> u32 {
        self.cpu
    }

    fn relax(&mut self) {
        std::thread::yield_now();
    }

    fn start_vcpu(&mut self, idx: usize) -> Result<(), i64> {
        let mut env = self.clone();
        env.cpu = if self.world().knobs.same_cpu {
            0
        } else {
            idx as u32
        };
        *lock(&self.m.done[idx].kicked) = false;
        std::thread::spawn(move || {
            let vm = env.vm();
            vcpu_thread(&mut env, vm, idx);
            let done = &env.m.done[idx];
            *lock(&done.kicked) = true;
            done.cv.notify_all();
        });
        Ok(())
    }

    fn join_vcpu(&mut self, idx: usize, deadline: u64) -> bool {
        let wait = deadline_in(deadline, self.now());
        let done = &self.m.done[idx];
        let g = lock(&done.kicked);
        let (g, _) = done
            .cv
            .wait_timeout_while(g, wait, |d| !*d)
            .unwrap_or_else(PoisonError::into_inner);
        *g
    }

    fn wait(&mut self, idx: usize, deadline: u64) {
        let wait = deadline_in(deadline, self.now());
        let k = &self.m.kicks[idx];
        let g = lock(&k.kicked);
        let (mut g, _) =
            k.cv.wait_timeout_while(g, wait, |kicked| !*kicked)
                .unwrap_or_else(PoisonError::into_inner);
        *g = false;
    }

    fn wake(&mut self, idx: usize) {
        let k = &self.m.kicks[idx];
        *lock(&k.kicked) = true;
        k.cv.notify_all();
    }
}

/// The scripts of a guest that does a bit of everything and passes.
fn passing_guest() -> [Vec<Op>; VCPUS] {
    let dev = testdev::BASE;
    let mpidr1 = 1;
    let mut v0 = vec![
        Op::Touch(guest::RAM_BASE + 0x20_0000),
        Op::Write(dev + testdev::SCRATCH, 2, 0x1234_5678),
        Op::Read(dev + testdev::SCRATCH, 8, !0x5678),
        Op::Read(dev + testdev::SCRATCH, 1, 0x87),
        Op::Read(dev + 0x800, 4, 0),
        Op::Psci(psci::VERSION, [0; 3], Some(psci::VERSION_1_0)),
        Op::Psci(0x8400_0011, [0; 3], Some(psci::NOT_SUPPORTED)),
        Op::Psci(psci::FEATURES, [u64::from(psci::CPU_ON_64), 0, 0], Some(0)),
        Op::Psci(
            psci::FEATURES,
            [0x8400_0001, 0, 0],
            Some(psci::NOT_SUPPORTED),
        ),
        Op::Psci(psci::MIGRATE_INFO_TYPE, [0; 3], Some(2)),
        Op::Psci(
            psci::AFFINITY_INFO_64,
            [mpidr1, 0, 0],
            Some(psci::AFFINITY_OFF),
        ),
        Op::Psci(
            psci::AFFINITY_INFO_64,
            [mpidr1, 1, 0],
            Some(psci::INVALID_PARAMETERS),
        ),
        Op::Psci(
            psci::CPU_ON_64,
            [mpidr1, 0x4000_1000, guest::SECONDARY_CTX],
            Some(0),
        ),
        Op::Psci(
            psci::AFFINITY_INFO_64,
            [mpidr1, 0, 0],
            Some(psci::AFFINITY_ON),
        ),
        // PING vCPU 1, wait for its PONG.
        Op::Sgi(u64::from(guest::gic::SGI_PING) << 24 | 1 << 1),
        Op::TakeIrq(guest::gic::SGI_PONG),
        Op::WfiTimer(2000),
        Op::Irq,
        Op::Touch(guest::CHECKSUM_BASE),
        Op::Touch(guest::CHECKSUM_BASE + 0x1000),
        Op::AwaitAffinity(mpidr1, psci::AFFINITY_OFF),
    ];
    for name in guest::TESTS {
        v0.extend(console(&format!("kcore-test-guest: {name}: PASS\r\n")));
    }
    let n = guest::TESTS.len();
    v0.extend(console(&format!(
        "kcore-test-guest: result: {n} passed, 0 failed\n"
    )));
    v0.extend([
        Op::Write(dev + testdev::CHECKSUM, 8, guest::expected_checksum()),
        Op::Write(
            dev + testdev::STATUS,
            8,
            Status {
                passed: n as u32,
                failed: 0,
            }
            .to_word(),
        ),
        Op::Psci(psci::SYSTEM_OFF, [0; 3], None),
    ]);
    let v1 = vec![
        Op::TakeIrq(guest::gic::SGI_PING),
        Op::Sgi(u64::from(guest::gic::SGI_PONG) << 24 | 1),
        Op::Touch(guest::RAM_BASE + 0x30_0000),
        Op::Psci(psci::CPU_OFF, [0; 3], None),
    ];
    [v0, v1]
}

#[test]
fn a_passing_guest_passes_and_every_page_comes_back() {
    let mut f = Fake::new(Knobs::default(), passing_guest());
    let outcome = f.run(20);
    assert_eq!(f.errors(), Vec::<String>::new());
    let log = f.log();
    assert!(outcome.pass, "{log:#?}");
    assert!(!outcome.stuck);
    assert_eq!(outcome.kept, 0);
    f.assert_all_back();
    assert!(
        f.line("setup: PASS protected VM 0x10001, 32-bit IPA")
            .contains("5000 bytes")
    );
    // The console, line by line, in order.
    let guest_lines: Vec<&String> = log.iter().filter(|l| l.starts_with("guest: ")).collect();
    assert_eq!(guest_lines.len(), guest::TESTS.len() + 1);
    for (l, name) in guest_lines.iter().zip(guest::TESTS) {
        assert_eq!(**l, format!("guest: kcore-test-guest: {name}: PASS"));
    }
    assert!(
        f.line("stop: SYSTEM_OFF from vCPU 0 after ")
            .ends_with(" ms")
    );
    let v0 = f.line("vcpu 0: ");
    assert!(v0.contains(" runs, exits: mmio "), "{v0}");
    assert!(v0.contains(" mem 3 wfi "), "{v0}");
    assert!(v0.contains(" sgi 1 irq 1;"), "{v0}");
    assert!(v0.ends_with("CPU 0"), "{v0}");
    let v1 = f.line("vcpu 1: ");
    assert!(
        v1.contains("exits: mmio 0 mem 1 wfi ") && v1.contains(" psci 1 sgi 1 irq 0;"),
        "{v1}"
    );
    assert!(v1.ends_with("CPU 1"), "{v1}");
    // Every round of attacks was refused, and the guest did not notice.
    let refused = f.world().attacks_refused;
    assert!(refused > 0);
    assert_eq!(
        f.line("attacks: "),
        format!(
            "attacks: PASS {refused} refused (registers of the running protected vCPUs read and set, \
             hardware-mapped and timer interrupts injected), every {ATTACK_EVERY} runs"
        )
    );
    assert_eq!(
        f.line("checksum: "),
        format!("checksum: PASS {:#x}", guest::expected_checksum())
    );
    assert!(
        f.line("teardown: PASS ")
            .contains(" pages back to the kernel")
    );
    assert_eq!(
        log.last().map(String::as_str),
        Some(
            format!(
                "result: PASS {} guest tests passed, checksum matches, vCPUs on CPUs 0, 1, {} pages back",
                guest::TESTS.len(),
                outcome.freed
            )
            .as_str()
        )
    );
}

#[test]
fn the_image_goes_to_ram_base_and_vcpu0_starts_there() {
    let mut f = Fake::new(Knobs::default(), passing_guest());
    let vm = f.vm();
    vm.reset();
    let image = image();
    let sig = fake_signature(&image);
    let setup = Setup {
        image: &image,
        signature: &sig,
        timeout_secs: 1,
        attack_every: ATTACK_EVERY,
    };
    let mut d = Line::new();
    let h = setup_vm(&mut f, vm, &setup, &mut d);
    assert_eq!(
        h,
        Ok(VmHandle(HANDLE)),
        "{}",
        String::from_utf8_lossy(d.bytes())
    );
    let w = f.world();
    assert_eq!(w.mmio, [(TESTDEV_GFN, 1)]);
    assert_eq!(
        (w.vcpus[0].pc, w.vcpus[0].x0),
        (guest::RAM_BASE, guest::BOOT_X0)
    );
    assert!(w.vcpus.iter().all(|v| v.created));
    let first = w.gfn_page(RAM_GFN).expect("image page 0");
    assert_eq!(w.pages[&first].1[..100], image[..100]);
    let second = w.gfn_page(RAM_GFN + 1).expect("image page 1");
    assert_eq!(w.pages[&second].1[..5000 - 4096], image[4096..]);
    assert!(w.pages[&second].1[5000 - 4096..].iter().all(|&b| b == 0));
    assert_eq!(vm.pool_len.load(SeqCst), ROOT_PAGES + EXTRA_POOL_PAGES);
}

/// Sets up the VM and returns vCPU `idx` ready to step.
fn stepper(f: &mut Fake, idx: usize) -> Vcpu {
    let vm = f.vm();
    vm.reset();
    let image = image();
    let sig = fake_signature(&image);
    let setup = Setup {
        image: &image,
        signature: &sig,
        timeout_secs: 1,
        attack_every: ATTACK_EVERY,
    };
    assert!(setup_vm(f, vm, &setup, &mut Line::new()).is_ok());
    let mut v = Vcpu::new(idx);
    v.on = true;
    v
}

/// The completion and irq words of vCPU `idx`'s last entry.
fn last_entry(f: &Fake, idx: usize) -> (u64, Vec<u64>) {
    f.world().entries[idx].last().cloned().expect("an entry")
}

#[test]
fn mmio_reads_complete_on_the_next_entry() {
    let dev = testdev::BASE;
    let ops = vec![
        Op::Write(dev + testdev::SCRATCH, 4, 0xdead_beef_0bad_f00d),
        Op::Read(dev + testdev::SCRATCH, 2, 0),
        Op::Read(dev + testdev::SCRATCH, 8, 0),
        Op::Read(dev + testdev::STATUS, 8, 0),
        Op::Write(dev + 0x18, 8, 5),
        Op::Write(dev + testdev::CONSOLE, 1, 0x07),
        Op::Write(dev + testdev::CONSOLE, 1, u64::from(b'x')),
        Op::Write(dev + testdev::CONSOLE, 1, u64::from(b'\n')),
        Op::Irq,
    ];
    let mut f = Fake::new(Knobs::default(), [ops, vec![]]);
    let mut v = stepper(&mut f, 0);
    let vm = f.vm();
    let mut completions = Vec::new();
    for _ in 0..9 {
        assert_eq!(v.step(&mut f, vm), Next::Run);
        completions.push(v.completion);
    }
    assert_eq!(
        completions,
        [0, 0x0ff2, 0xffff_ffff_f452_0ff2, 0, 0, 0, 0, 0, 0],
        "SCRATCH holds the low 32 bits, reads invert within the width"
    );
    // The completion reached KCore in the entry after each read.
    let entries: Vec<u64> = f.world().entries[0].iter().map(|e| e.0).collect();
    assert_eq!(entries[2], 0x0ff2);
    assert_eq!(entries[3], 0xffff_ffff_f452_0ff2);
    assert_eq!(
        vm.mmio_other.load(SeqCst),
        2,
        "a STATUS read and a write at 0x18"
    );
    assert_eq!(f.log().last().map(String::as_str), Some("guest: ?x"));
    assert_eq!(vm.vcpus[0].counted(counter::MMIO), 8);
    assert_eq!(vm.vcpus[0].counted(counter::IRQ), 1);
}

#[test]
fn memory_faults_donate_zeroed_pages_inside_ram_only() {
    let ops = vec![
        Op::Touch(guest::RAM_BASE + 0x5_0000),
        Op::Touch(guest::RAM_BASE + guest::RAM_SIZE),
    ];
    let mut f = Fake::new(Knobs::default(), [ops, vec![]]);
    let mut v = stepper(&mut f, 0);
    let vm = f.vm();
    assert_eq!(v.step(&mut f, vm), Next::Run);
    let gfn = (guest::RAM_BASE + 0x5_0000) >> 12;
    let pfn = f.world().gfn_page(gfn).expect("donated");
    assert_eq!(
        vm.mem[(gfn - RAM_GFN) as usize].load(SeqCst),
        pfn | slot::PRESENT | slot::GIVEN
    );
    // The access retried and passed; the next one is outside RAM.
    assert_eq!(v.step(&mut f, vm), Next::Stop);
    assert_eq!(vm.stop_reason(), StopReason::Failed);
    assert_eq!(
        vm.fault(),
        Some(Fault::OutsideRam {
            vcpu: 0,
            addr: guest::RAM_BASE + guest::RAM_SIZE
        })
    );
}

#[test]
fn psci_answers() {
    let mut f = Fake::new(Knobs::default(), [vec![], vec![]]);
    let mut v = stepper(&mut f, 0);
    let vm = f.vm();
    let cases: [(u32, [u64; 3], u64); 12] = [
        (psci::VERSION, [0; 3], 0x1_0000),
        (psci::FEATURES, [u64::from(psci::SYSTEM_OFF), 0, 0], 0),
        (psci::FEATURES, [u64::from(psci::FEATURES), 0, 0], 0),
        (psci::FEATURES, [0x8400_0001, 0, 0], psci::NOT_SUPPORTED),
        (
            psci::FEATURES,
            [1 << 32 | u64::from(psci::VERSION), 0, 0],
            psci::NOT_SUPPORTED,
        ),
        (psci::MIGRATE_INFO_TYPE, [0; 3], 2),
        (
            psci::AFFINITY_INFO_32,
            [0xffff_ffff_0000_0000, 0, 0],
            psci::AFFINITY_ON,
        ),
        (psci::AFFINITY_INFO_64, [1, 0, 0], psci::AFFINITY_OFF),
        (psci::AFFINITY_INFO_64, [2, 0, 0], psci::INVALID_PARAMETERS),
        (
            psci::AFFINITY_INFO_64,
            [1 << 8, 0, 0],
            psci::INVALID_PARAMETERS,
        ),
        (0x8400_001F, [0; 3], psci::NOT_SUPPORTED),
        (
            psci::CPU_ON_64,
            [0, 0x4000_0000, 0],
            psci::INVALID_PARAMETERS,
        ),
    ];
    for (fid, args, answer) in cases {
        assert_eq!(v.psci(&mut f, vm, u64::from(fid), args), Next::Run);
        assert_eq!(v.completion, answer, "fid {fid:#x} {args:x?}");
    }
    // CPU_ON of vCPU 1: on, woken; CPU_OFF: this vCPU stops.
    assert_eq!(
        v.psci(&mut f, vm, u64::from(psci::CPU_ON_32), [1, 0, 0]),
        Next::Run
    );
    assert_eq!(v.completion, 0);
    assert!(vm.vcpus[1].is_on());
    assert!(*lock(&f.m.kicks[1].kicked));
    assert_eq!(
        v.psci(&mut f, vm, u64::from(psci::CPU_OFF), [0; 3]),
        Next::Off
    );
    assert!(!v.on && !vm.vcpus[0].is_on());
    assert_eq!(
        v.psci(&mut f, vm, u64::from(psci::SYSTEM_OFF), [0; 3]),
        Next::Stop
    );
    assert_eq!(vm.stop_reason(), StopReason::SystemOff);
    // The first reason wins.
    assert_eq!(
        v.psci(&mut f, vm, u64::from(psci::SYSTEM_RESET), [0; 3]),
        Next::Stop
    );
    assert_eq!(vm.stop_reason(), StopReason::SystemOff);
}

#[test]
fn sgi_targets_decode_icc_sgi1r() {
    assert_eq!(sgi_targets(1 << 24 | 0b10, 0), 0b10);
    assert_eq!(sgi_targets(0b11, 0), 0b11, "to itself too");
    assert_eq!(sgi_targets(1 << 40 | 0b1, 0), 0b10, "IRM: all but self");
    assert_eq!(sgi_targets(1 << 40, 1), 0b01);
    assert_eq!(sgi_targets(1 << 16 | 0b11, 0), 0, "Aff1 = 1: vCPUs 16..");
    assert_eq!(sgi_targets(1 << 32 | 0b11, 0), 0, "Aff2");
    assert_eq!(sgi_targets(1 << 44 | 0b11, 0), 0, "RS = 1: Aff0 16..31");
    assert_eq!(vcpu_of_mpidr(1 << 31 | 1), Some(1));
    assert_eq!(vcpu_of_mpidr(2), None);
    assert_eq!(vcpu_of_mpidr(0x10), None);
}

#[test]
fn the_vgic_supplies_pending_sgis_and_again_what_is_in_flight() {
    let dev = testdev::BASE;
    let ops = vec![
        // Takes SGI 3 but leaves it active across an exit.
        Op::Ack(3),
        Op::Write(dev + testdev::SCRATCH, 8, 1),
        Op::Write(dev + testdev::SCRATCH, 8, 2),
        Op::Eoi(3),
        Op::Write(dev + testdev::SCRATCH, 8, 3),
        Op::Irq,
        Op::Irq,
        Op::Irq,
    ];
    let mut f = Fake::new(Knobs::default(), [ops, vec![]]);
    let mut v = stepper(&mut f, 0);
    let vm = f.vm();
    let sgi = |id: u32, st: u64| irq::encode(id, SGI_PRIORITY, true, st);

    // Nothing pending: the guest idles.
    assert_eq!(v.step(&mut f, vm), Next::Idle(u64::MAX));
    assert!(!v.has_irq(vm));
    vm.raise(&mut f, 0, 3);
    assert!(v.has_irq(vm));
    assert_eq!(v.step(&mut f, vm), Next::Run);
    assert_eq!(last_entry(&f, 0).1, [sgi(3, irq::PENDING)]);
    // Active now: supplied again as active; a new SGI 3 merges into it.
    vm.raise(&mut f, 0, 3);
    assert_eq!(v.step(&mut f, vm), Next::Run);
    assert_eq!(last_entry(&f, 0).1, [sgi(3, irq::ACTIVE | irq::PENDING)]);
    // The guest completes the active one; the pending one stays.
    assert_eq!(v.step(&mut f, vm), Next::Run);
    assert_eq!(last_entry(&f, 0).1, [sgi(3, irq::PENDING | irq::ACTIVE)]);
    assert_eq!(v.n_inflight, 1);
    assert_eq!(irq::state(v.inflight[0]), irq::PENDING);
    // Five SGIs: three list registers' worth now (lowest first), with the
    // one in flight first.
    for id in [9, 1, 2, 5, 7] {
        vm.raise(&mut f, 0, id);
    }
    assert_eq!(v.step(&mut f, vm), Next::Run);
    assert_eq!(
        last_entry(&f, 0).1,
        [
            sgi(3, irq::PENDING),
            sgi(1, irq::PENDING),
            sgi(2, irq::PENDING)
        ]
    );
    assert_eq!(vm.vcpus[0].pending.load(SeqCst), 1 << 5 | 1 << 7 | 1 << 9);
    assert_eq!(f.errors(), Vec::<String>::new());
    // The fake guest took none of them: all still in flight, supplied again.
    assert_eq!(v.step(&mut f, vm), Next::Run);
    assert_eq!(
        last_entry(&f, 0).1,
        [
            sgi(3, irq::PENDING),
            sgi(1, irq::PENDING),
            sgi(2, irq::PENDING)
        ]
    );
}

#[test]
fn a_short_interrupt_report_fails_the_run() {
    let mut f = Fake::new(
        Knobs {
            short_irq_report: true,
            ..Knobs::default()
        },
        [vec![Op::Irq], vec![]],
    );
    let mut v = stepper(&mut f, 0);
    let vm = f.vm();
    vm.raise(&mut f, 0, 4);
    assert_eq!(v.step(&mut f, vm), Next::Stop);
    assert_eq!(
        vm.fault(),
        Some(Fault::IrqReport {
            vcpu: 0,
            reported: 0
        })
    );
}

#[test]
fn wfi_sleeps_until_the_timer_deadline() {
    let mut f = Fake::new(
        Knobs::default(),
        [vec![Op::WfiTimer(30_000), Op::Irq], vec![]],
    );
    let mut v = stepper(&mut f, 0);
    let vm = f.vm();
    let Next::Idle(deadline) = v.step(&mut f, vm) else {
        panic!("expected an idle vCPU");
    };
    let t = Instant::now();
    idle(&mut f, vm, &v, deadline);
    assert!(t.elapsed() >= Duration::from_millis(25));
    assert!(f.now() >= deadline);
    assert_eq!(v.step(&mut f, vm), Next::Run);
    assert_eq!(f.errors(), Vec::<String>::new());
}

#[test]
fn a_stuck_guest_times_out_and_still_gives_every_page_back() {
    let mut f = Fake::new(
        Knobs::default(),
        [
            vec![Op::Touch(guest::RAM_BASE + 0x10_0000), Op::Park],
            vec![],
        ],
    );
    let t = Instant::now();
    let outcome = f.run(1);
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert!(!outcome.pass && !outcome.stuck);
    assert!(f.line("stop: timeout after 1 s after ").ends_with(" ms"));
    assert_eq!(
        f.line("checksum: "),
        format!(
            "checksum: FAIL the guest reported none (expected {:#x})",
            guest::expected_checksum()
        )
    );
    let result = f.line("result: ");
    assert_eq!(
        result,
        format!(
            "result: FAIL no SYSTEM_OFF: timeout after 1 s; no attacks made; no checksum; no status; \
             0/{} test lines in order; vCPUs not each on a CPU of its own: on CPUs 0, none",
            guest::TESTS.len()
        )
    );
    f.assert_all_back();
}

#[test]
fn a_refused_run_fails_and_tears_down() {
    let mut f = Fake::new(
        Knobs {
            run_error: Some((0, 3)),
            ..Knobs::default()
        },
        passing_guest(),
    );
    let outcome = f.run(20);
    assert!(!outcome.pass);
    let stop = f.line("stop: ");
    assert!(
        stop.starts_with("stop: vCPU 0: HostVcpuRun: Busy after "),
        "{stop}"
    );
    f.line("result: FAIL no SYSTEM_OFF: vCPU 0: HostVcpuRun: Busy; no attacks made; no checksum");
    f.assert_all_back();
}

#[test]
fn the_table_pool_grows_when_kcore_runs_out() {
    let mut f = Fake::new(
        Knobs {
            tables_per_region: 4,
            ..Knobs::default()
        },
        passing_guest(),
    );
    let outcome = f.run(20);
    assert!(outcome.pass, "{:#?}", f.log());
    assert!(f.vm().pool_len.load(SeqCst) > ROOT_PAGES + EXTRA_POOL_PAGES);
    assert!(f.world().pool_donations > EXTRA_POOL_PAGES as u64);
    f.assert_all_back();
}

#[test]
fn vcpus_sharing_a_cpu_fail() {
    let mut f = Fake::new(
        Knobs {
            same_cpu: true,
            ..Knobs::default()
        },
        passing_guest(),
    );
    let outcome = f.run(20);
    assert!(!outcome.pass);
    let result = f.line("result: ");
    assert_eq!(
        result,
        "result: FAIL vCPUs not each on a CPU of its own: on CPUs 0, 0"
    );
    f.assert_all_back();
}

#[test]
fn a_page_kcore_keeps_is_never_freed() {
    let mut f = Fake::new(
        Knobs {
            refuse_reclaim: Some(2),
            ..Knobs::default()
        },
        passing_guest(),
    );
    let outcome = f.run(20);
    assert!(!outcome.pass);
    assert_eq!(outcome.kept, 1);
    let teardown = f.line("teardown: FAIL ");
    assert!(teardown.contains("HostReclaimPage(pfn 0x"), "{teardown}");
    assert!(teardown.contains(": Denied; "), "{teardown}");
    assert!(teardown.contains("1 pages kept"), "{teardown}");
    let w = f.world();
    let kept: Vec<u64> = w
        .allocated
        .iter()
        .copied()
        .filter(|p| !w.freed.contains(p))
        .collect();
    assert_eq!(kept.len(), 1);
    assert_ne!(w.pages[&kept[0]].0, St::Host);
}

#[test]
fn a_bad_signature_stops_before_any_vcpu_runs() {
    let mut f = Fake::new(Knobs::default(), passing_guest());
    let image = image();
    let mut sig = fake_signature(&image);
    sig[3] ^= 1;
    let outcome = f.run_with(&image, &sig, 5);
    assert!(!outcome.pass);
    let setup = f.line("setup: FAIL ");
    assert!(
        setup.contains("HostVerifyImage(5000 bytes at gfn 0x40000): VerificationFailed"),
        "{setup}"
    );
    assert!(f.world().entries.iter().all(Vec::is_empty));
    assert!(!f.log().iter().any(|l| l.starts_with("vcpu ")));
    f.assert_all_back();

    let mut f = Fake::new(Knobs::default(), passing_guest());
    let outcome = f.run_with(&[], &sig, 5);
    assert!(!outcome.pass);
    f.line("setup: FAIL image of 0 bytes");
    f.assert_all_back();
}

#[test]
fn the_kserv_test_reads_what_the_run_logs() {
    let script = include_str!("../../../initramfs/tests/vcpu");
    for needle in [
        "kserv-shim: guest_run: start",
        "kserv-shim: guest_run: result: PASS",
        "kserv-shim: guest_run: checksum: PASS",
        "kserv-shim: guest_run: guest: kcore-test-guest: ",
        "kserv-shim: guest_run: vcpu ",
        "/lib/kserv/test-guest.tests",
    ] {
        assert!(
            script.contains(needle),
            "tests/vcpu does not look for {needle:?}"
        );
    }
}

#[test]
fn a_failing_guest_fails() {
    let [mut v0, v1] = passing_guest();
    let n = guest::TESTS.len();
    let pass_line = format!("kcore-test-guest: {}: PASS\r\n", guest::TESTS[3]);
    let fail_line = format!("kcore-test-guest: {}: FAIL no PONG\r\n", guest::TESTS[3]);
    let text: String = v0
        .iter()
        .filter_map(|op| match op {
            Op::Write(a, 1, b) if *a == testdev::BASE => Some(*b as u8 as char),
            _ => None,
        })
        .collect();
    assert!(text.contains(&pass_line));
    // The console as it was, with one FAIL; a wrong checksum; the status.
    v0.retain(|op| !matches!(op, Op::Write(a, 1, _) if *a == testdev::BASE));
    let at = v0.len() - 3;
    let text = text.replace(&pass_line, &fail_line);
    v0.splice(at..at, console(&text));
    for op in &mut v0 {
        match op {
            Op::Write(a, 8, sum) if *a == testdev::BASE + testdev::CHECKSUM => *sum ^= 1,
            Op::Write(a, 8, status) if *a == testdev::BASE + testdev::STATUS => {
                *status = Status {
                    passed: n as u32 - 1,
                    failed: 1,
                }
                .to_word()
            }
            _ => {}
        }
    }
    let mut f = Fake::new(Knobs::default(), [v0, v1]);
    let outcome = f.run(20);
    assert!(!outcome.pass);
    assert_eq!(outcome.kept, 0);
    assert_eq!(
        f.line("checksum: "),
        format!(
            "checksum: FAIL {:#x}, expected {:#x}",
            guest::expected_checksum() ^ 1,
            guest::expected_checksum()
        )
    );
    assert_eq!(
        f.line("result: "),
        format!(
            "result: FAIL checksum {:#x} wrong; status: {} passed, 1 failed of {n}",
            guest::expected_checksum() ^ 1,
            n - 1
        )
    );
    assert!(
        f.log()
            .contains(&format!("guest: {}", fail_line.trim_end()))
    );
    f.assert_all_back();
}

#[test]
fn a_vcpu_turned_off_runs_again_after_the_next_cpu_on() {
    let on = |expect| Op::Psci(psci::CPU_ON_64, [1, 0x4000_1000, 7], Some(expect));
    let [mut v0, _] = passing_guest();
    // Everything up to the console, then CPU_ON, wait for OFF, again.
    let console_at = v0
        .iter()
        .position(|op| matches!(op, Op::Write(a, 1, _) if *a == testdev::BASE))
        .expect("console");
    let tail = v0.split_off(console_at);
    v0.retain(|op| {
        !matches!(
            op,
            Op::Psci(..) | Op::Sgi(_) | Op::TakeIrq(_) | Op::AwaitAffinity(..)
        )
    });
    v0.extend([
        on(0),
        Op::AwaitAffinity(1, psci::AFFINITY_OFF),
        on(0),
        Op::TakeIrq(5),
        Op::AwaitAffinity(1, psci::AFFINITY_OFF),
    ]);
    v0.extend(tail);
    let v1 = vec![
        Op::Psci(psci::CPU_OFF, [0; 3], None),
        // Its second life.
        Op::Sgi(5 << 24 | 1),
        Op::Psci(psci::CPU_OFF, [0; 3], None),
    ];
    let mut f = Fake::new(Knobs::default(), [v0, v1]);
    let outcome = f.run(20);
    assert_eq!(f.errors(), Vec::<String>::new());
    assert!(outcome.pass, "{:#?}", f.log());
    assert_eq!(f.world().vcpus[1].runs, 3);
    assert!(
        f.line("vcpu 1: 3 runs, exits: mmio 0 mem 0 wfi 0 psci 2 sgi 1 irq 0;")
            .len()
            > 10
    );
    f.assert_all_back();
}

#[test]
fn a_kcore_that_leaks_registers_fails_the_run() {
    let mut f = Fake::new(
        Knobs {
            leak_registers: true,
            ..Knobs::default()
        },
        passing_guest(),
    );
    let outcome = f.run(20);
    assert!(!outcome.pass);
    let result = f.line("result: FAIL");
    assert!(
        result.contains("attack get-reg was not refused: success"),
        "{result}"
    );
    assert!(f.line("attacks: ").starts_with("attacks: FAIL"));
    f.assert_all_back();
}
