//! KServ's traps at EL2: the glue between the vector table and
//! `kcore::host::Host`, and the reports of exceptions that must not happen.
//!
//! Lock order: a CPU's own [`LOADED`] slot, then [`STATE`],
//! then the console. The state lock is dropped around firmware calls that
//! start or stop CPUs, since a CPU started by the firmware takes it on
//! arrival, and while a guest runs. With no firmware (the spin-table
//! backend, `kcore::psci::Backend::SpinTable`) `CPU_ON` is recorded under
//! the lock and the pen is woken (`sev`) after it is dropped; `CPU_OFF`
//! drops it before the CPU goes to the pen ([`super::start::pen`]);
//! `SYSTEM_RESET` keeps it across the PM watchdog's reset, so nothing
//! changes between the VM wipe and the reset; `SYSTEM_OFF` revokes KServ's
//! stage 2 under it, and from then on every trap from KServ, on any CPU,
//! parks its CPU (`Resume::Park`, and [`state::park_if_off`] on the way in
//! and on every way back to KServ).

use super::state::{self, MAP_RANGES, MAX_CPUS, MAX_VMS, STATE, stop};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kcore::exception::fault_ipa;
use kcore::host::{Resume, run_result};
use kcore::mem_protect::MemCore;
use kcore::psci::Backend;
use kcore::smc_forward;
use kcore::vcpu::{Loaded, RunArgs, Step, VcpuHost, WriteFault, run_vcpu_in};
use kcore_abi::Error;
use kcore_abi::psci as fid;
use kcore_arch::el2::cpu::{self, el1};
use kcore_arch::el2::firmware::{self, SmcFirmware};
use kcore_arch::el2::guest::El2Guest;
use kcore_arch::el2::phys_memory::PhysTables;
use kcore_arch::el2::vectors::HostFrame;
use log::{error, info, warn};

static SECONDARY_ENTRY: AtomicU64 = AtomicU64::new(0);

/// Each CPU's loaded vCPU, kept from one `host_vcpu_run` to the next so
/// that a vCPU running on the same CPU again need not have its context read
/// back from its page ([`kcore::vcpu::run_vcpu_in`]). Only CPU `i` takes
/// slot `i`, so its lock is never contended; it is held for the whole run.
/// Allocated on the primary CPU at boot, one slot per CPU KCore manages.
static LOADED: spin::Once<Vec<spin::Mutex<CpuSlot>>> = spin::Once::new();

/// What a CPU keeps between its runs of vCPUs.
struct CpuSlot {
    /// The vCPU it ran last.
    loaded: Loaded,
    /// Its guest configuration, read from its own registers at its first
    /// run (never `Some` on a CPU that cannot run guests).
    guest: Option<El2Guest>,
}

/// Allocates the [`LOADED`] slots for `cpus` CPUs (at most [`MAX_CPUS`]).
/// Called once, on the primary CPU, before any vCPU can run.
pub fn init_loaded(cpus: usize) {
    LOADED.call_once(|| {
        (0..cpus.min(MAX_CPUS))
            .map(|_| {
                spin::Mutex::new(CpuSlot {
                    loaded: Loaded::empty(),
                    guest: None,
                })
            })
            .collect()
    });
}

/// Records where PSCI CPU_ON starts secondary CPUs.
pub fn set_secondary_entry(pa: u64) {
    SECONDARY_ENTRY.store(pa, Ordering::Relaxed);
}

/// Whether firmware answers `SMC`s below KCore (PSCI's backend is
/// `Firmware`), for the `SMC`s answered without KCore's lock.
static SMC_FIRMWARE: AtomicBool = AtomicBool::new(false);

/// Records whether firmware answers `SMC`s (set once, at boot).
pub fn set_smc_firmware(present: bool) {
    SMC_FIRMWARE.store(present, Ordering::Relaxed);
}

/// A synchronous exception from KServ. Called by the vector table with the
/// saved registers.
#[unsafe(no_mangle)]
extern "C" fn kcore_host_sync(frame: &mut HostFrame) {
    state::park_if_off();
    host_sync(frame);
    // Every way back to KServ, a vCPU run's included, with KCore's lock
    // dropped: KServ's SYSTEM_OFF on another CPU (no firmware) may have come
    // meanwhile.
    state::park_if_off();
}

/// [`kcore_host_sync`] between its checks for a system off.
fn host_sync(frame: &mut HostFrame) {
    let cpu = cpu::cpu_index();
    let trap = el1::trap_state();
    // The `SMC`s that touch none of KCore's state (the forwarding
    // allow-list) are answered without its lock: a slow firmware call
    // stalls no other CPU.
    if let Some(fid) = smc_forward::stateless(&trap, frame[0]) {
        let firmware = SMC_FIRMWARE.load(Ordering::Relaxed);
        smc_forward::handle(fid, &mut frame[..], firmware, &mut SmcFirmware);
        el1::skip_instruction();
        return;
    }
    let mut guard = STATE.lock();
    let Some(state) = guard.as_mut() else {
        stop(format_args!(
            "trap from KServ before KCore finished booting"
        ))
    };
    // SAFETY: the table code only touches pages of KServ's stage 2, which
    // come from KCore's pool and are mapped read-write at EL2.
    let mut mem = unsafe { PhysTables::new() };
    let denied_before = state.host.stats().denied;
    let broken_before = state.host.mem().broken_invariants();
    let x0 = frame[0];
    let resume = state.host.handle_trap(
        cpu,
        &trap,
        frame,
        &mut mem,
        &mut state.pool,
        &mut SmcFirmware,
    );
    // Under the state lock (it comes before the console's), since not
    // every way on from here returns; a KCore bug is rare enough.
    report_broken(
        broken_before,
        state.host.mem().broken_invariants(),
        format_args!(
            "a KServ trap (ESR {:#x}, x0 {x0:#x}, PC {:#x})",
            trap.esr, trap.elr
        ),
    );
    let spin_table = state.host.psci().backend() == Backend::SpinTable;
    match resume {
        Resume::Retry => {}
        Resume::Skip => el1::skip_instruction(),
        Resume::Inject(i) => {
            let denied = state.host.stats().denied;
            drop(guard);
            el1::inject(&i);
            // Report the first refusals and then every power of two: a
            // hostile KServ cannot flood the console.
            if denied != denied_before && denied.is_power_of_two() {
                warn!(
                    "refused KServ access at IPA {:#x} (PC {:#x}); abort injected ({denied} so far)",
                    fault_ipa(trap.hpfar, trap.far),
                    trap.elr
                );
            }
        }
        Resume::StartCpu { cpu: target, .. } if spin_table => {
            // The target waits in KCore's pen: the relay holds its entry.
            state.host.finish_cpu_on(target, fid::SUCCESS, frame);
            drop(guard);
            cpu::send_event();
            el1::skip_instruction();
        }
        Resume::StartCpu { mpidr, cpu: target } => {
            drop(guard);
            let entry = SECONDARY_ENTRY.load(Ordering::Relaxed);
            let r = firmware::smc(fid::CPU_ON_64, mpidr, entry, target as u64);
            if let Some(s) = STATE.lock().as_mut() {
                s.host.finish_cpu_on(target, r, frame);
            }
            el1::skip_instruction();
        }
        Resume::RunVcpu(a) => {
            // The guest runs with no lock held; each step that touches
            // KCore's state takes the lock for itself (`Locked`).
            drop(guard);
            let r = match LOADED.get().and_then(|slots| slots.get(cpu)) {
                Some(slot) => {
                    let slot = &mut *slot.lock();
                    if slot.guest.is_none() {
                        slot.guest = state::features().and_then(El2Guest::new);
                    }
                    match &mut slot.guest {
                        Some(g) => run_vcpu_in(&mut Locked, g, a, &mut slot.loaded),
                        None => Err(Error::NotSupported),
                    }
                }
                None => Err(Error::NotSupported),
            };
            run_result(r, frame);
        }
        Resume::CpuOff if spin_table => {
            drop(guard);
            super::start::pen(cpu);
        }
        Resume::SystemOff => {
            // KServ's VMs are wiped and its stage 2 revoked (flushed on
            // every CPU before `handle_trap` returned); the board has no
            // power-off. A CPU running KServ faults into KCore at once and
            // parks (`Resume::Park`, or `park_if_off` before the lock); one
            // running a guest finds the guest's stage 2 empty too, and
            // parks on its way back to KServ; the pen's CPUs are woken to
            // park.
            state::PARKED.store(true, Ordering::Release);
            drop(guard);
            info!("system off: every CPU parked (KServ's stage 2 revoked on every CPU)");
            cpu::send_event();
            cpu::halt();
        }
        Resume::Park => {
            drop(guard);
            cpu::halt();
        }
        Resume::SystemReset => {
            // KServ's VMs are wiped; the lock stays held so that nothing
            // changes before the reset.
            if let Some(Some(pm)) = state::RESET.get() {
                info!("system reset through the PM watchdog");
                // SAFETY: the tree's PM block, mapped as device memory at
                // EL2 (`start::build_el2_map`); KCore's lock is held.
                unsafe { kcore_arch::el2::bcm2835_pm::reset(*pm) };
            }
            state.host.system_reset_failed(frame);
            drop(guard);
            el1::skip_instruction();
        }
        Resume::CpuOff => {
            drop(guard);
            firmware::smc(fid::CPU_OFF, 0, 0, 0);
            if let Some(s) = STATE.lock().as_mut() {
                s.host.cpu_off_failed(cpu, frame);
            }
            el1::skip_instruction();
        }
    }
}

/// KCore's state for the vCPU run loop: the state lock for each step.
struct Locked;

impl Locked {
    /// Runs `f` on KCore's state under its lock, then, with the lock
    /// dropped, reports any broken invariant `f` counted ([`report_broken`],
    /// `what` naming the step). `None` if KCore has no state yet.
    fn step<R>(
        what: &str,
        f: impl FnOnce(&mut MemCore<&'static mut [u64], MAP_RANGES, MAX_VMS>, &mut PhysTables) -> R,
    ) -> Option<R> {
        let mut guard = STATE.lock();
        let state = guard.as_mut()?;
        // SAFETY: KCore's tables and RAM are mapped read-write at EL2.
        let mut mem = unsafe { PhysTables::new() };
        let before = state.host.mem().broken_invariants();
        let r = f(state.host.mem_mut(), &mut mem);
        let now = state.host.mem().broken_invariants();
        drop(guard);
        report_broken(before, now, format_args!("{what}"));
        Some(r)
    }
}

impl VcpuHost for Locked {
    fn load(&mut self, a: RunArgs, lr_count: usize, out: &mut Loaded) -> Result<(), Error> {
        Self::step("a vCPU load", |m, mem| {
            m.vcpu_load_into(a, lr_count, mem, out)
        })
        .unwrap_or(Err(Error::Busy))
    }
    fn cpu_on(&mut self, l: &mut Loaded, target: usize, entry: u64, context: u64) -> Step {
        Self::step("a guest's CPU_ON", |m, mem| {
            m.vcpu_cpu_on(l, target, entry, context, mem)
        })
        .unwrap_or(Step::Exit)
    }
    fn guest_mem(&mut self, l: &mut Loaded, share: bool, gfn: u64) {
        Self::step("a guest's MEM_SHARE or MEM_UNSHARE", |m, mem| {
            m.vcpu_guest_mem(l, share, gfn, mem)
        });
    }
    fn write_fault(&mut self, l: &Loaded, ipa: u64) -> WriteFault {
        Self::step("a guest's write to a read-only page", |m, mem| {
            m.vcpu_write_fault(l, ipa, mem)
        })
        .unwrap_or(WriteFault::Retry)
    }
    fn put(&mut self, l: &mut Loaded) {
        Self::step(
            "a vCPU put (its run page no longer pinned: exit not written)",
            |m, mem| m.vcpu_put(l, mem),
        );
    }
}

/// Logs that KCore's broken-invariant count went from `before` to `now`
/// during `step`: a KCore bug (a step found KCore's state other than its
/// own check promised, or a stage-2 table corrupt). Never silent, never a
/// flood: logged when the count reaches the first and then every power of
/// two, however many steps raised it.
fn report_broken(before: u64, now: u64, step: core::fmt::Arguments<'_>) {
    // The first power of two above `before`, if the count reached it.
    let crossed = before
        .checked_add(1)
        .and_then(u64::checked_next_power_of_two)
        .is_some_and(|p| p <= now);
    if crossed {
        error!(
            "KCore bug: {step} broke a KCore invariant (broken-invariant count {now}, was \
             {before})"
        );
    }
}

/// An exception KCore never expects: taken at EL2 itself, or an interrupt,
/// SError or AArch32 exception routed here. Reported once, then this CPU
/// stops (KCore never loops on a fault).
#[unsafe(no_mangle)]
extern "C" fn kcore_el2_unexpected(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    const KINDS: [&str; 16] = [
        "EL2t sync",
        "EL2t IRQ",
        "EL2t FIQ",
        "EL2t SError",
        "EL2h sync",
        "EL2h IRQ",
        "EL2h FIQ",
        "EL2h SError",
        "lower AArch64 sync",
        "lower AArch64 IRQ",
        "lower AArch64 FIQ",
        "lower AArch64 SError",
        "lower AArch32 sync",
        "lower AArch32 IRQ",
        "lower AArch32 FIQ",
        "lower AArch32 SError",
    ];
    let name = KINDS.get(kind as usize).copied().unwrap_or("unknown");
    stop(format_args!(
        "unexpected exception at EL2: {name}, ESR {esr:#x}, ELR {elr:#x}, FAR {far:#x}"
    ))
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    stop(format_args!("KCore panic: {info}"))
}
