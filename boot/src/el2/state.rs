//! KCore's singletons at EL2, shared by bring-up ([`super::start`]) and the
//! trap handlers ([`super::trap`]): the bounds KCore is built with, the one
//! state behind its lock, the CPU features and power-off conduit read at
//! boot, and [`stop`], the way out when something must not go on. Both sides
//! depend on this module; it depends on neither.

use kcore::host::Host;
use kcore_abi::psci as fid;
use kcore_arch::el2::cpu::{self, Features};
use kcore_arch::el2::firmware;
use kcore_arch::el2::phys_memory::PagePool;
use kcore_boot::platform::Conduit;
use log::error;

/// Most CPUs KCore manages (two 128-core sockets); the secondary CPUs'
/// stacks in KCore's pool are sized by the device tree's count, not by this.
pub const MAX_CPUS: usize = kcore_arch::el2::gicv3::MAX_CPUS;
/// Ranges KServ's memory map may hold (RAM banks and KCore regions): a
/// server's EFI map, merged into banks, has about a hundred.
pub const MAP_RANGES: usize = 128;
/// Most VMs at once (hardware VMIDs 1..=MAX_VMS; 8-bit VMIDs).
pub const MAX_VMS: usize = 16;

/// Everything KServ's traps need, behind one lock (docs/lock-order.md).
pub struct KcoreState {
    /// The host-facing state machine.
    pub host: Host<&'static mut [u64], MAP_RANGES, MAX_CPUS, MAX_VMS>,
    /// Pages for KServ's stage-2 tables.
    pub pool: PagePool,
}

/// How a CPU waits for [`STATE`]: `YIELD` between tries. A hint on
/// hardware; under QEMU's round-robin TCG it hands the turn to the next CPU,
/// which may be the lock's holder, where a plain spin would burn this CPU's
/// whole time slice first (tens of thousands of instructions per contended
/// vCPU exit in the IPI benchmark).
pub struct YieldRelax;

impl spin::RelaxStrategy for YieldRelax {
    fn relax() {
        // SAFETY: a hint instruction; no memory or register effect.
        unsafe { core::arch::asm!("yield", options(nomem, nostack, preserves_flags)) };
    }
}

/// The one KCore state. Lock order: `STATE` before the console lock.
pub static STATE: spin::mutex::Mutex<Option<KcoreState>, YieldRelax> =
    spin::mutex::Mutex::new(None);
/// The CPU features KCore configured for, read once by the primary CPU.
pub static FEATURES: spin::Once<Features> = spin::Once::new();
/// How to power the machine off ([`stop`]): the device tree's PSCI conduit.
pub static POWER: spin::Once<Option<Conduit>> = spin::Once::new();

/// The board's reset device when there is no PSCI firmware: the base of the
/// Raspberry Pi's PM block (`kcore_arch::el2::bcm2835_pm`), if the tree has
/// one.
pub static RESET: spin::Once<Option<u64>> = spin::Once::new();
/// Set by KServ's `SYSTEM_OFF` on a platform with no firmware: every CPU
/// that enters KCore from then on parks.
pub static PARKED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Parks this CPU if KServ powered the system off ([`PARKED`]).
pub fn park_if_off() {
    if PARKED.load(core::sync::atomic::Ordering::Acquire) {
        cpu::halt();
    }
}

/// Prints `why`, then powers the machine off through PSCI if the platform
/// has it (over the device tree's conduit: `HVC` only when KCore was wrongly
/// entered at EL1), else parks this CPU. Never returns.
pub fn stop(why: core::fmt::Arguments<'_>) -> ! {
    error!("{why}");
    error!("halting");
    match POWER.get() {
        Some(Some(Conduit::Smc)) => {
            firmware::smc(fid::SYSTEM_OFF, 0, 0, 0);
        }
        Some(Some(Conduit::Hvc)) if cpu::current_el() < 2 => {
            firmware::hvc(fid::SYSTEM_OFF, 0, 0, 0);
        }
        _ => {}
    }
    cpu::halt()
}

/// The CPU features KCore configured for, once the primary read them.
pub fn features() -> Option<&'static Features> {
    FEATURES.get()
}
