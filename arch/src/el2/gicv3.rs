//! The parts of a GICv3's redistributors KCore itself touches: the active
//! state of a PPI whose virtual twin sits in a hardware-mapped list
//! register (the guest's timer), and the enable of the EL2 timer's PPI that
//! brings KServ's CPU back when KServ's own timer is due while a guest runs.
//!
//! KServ owns the GIC (it runs the distributor and its redistributors), so
//! KCore writes only the set/clear registers of the current CPU's own SGI
//! frame, which change one bit each and nothing else.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Most CPUs KCore records a redistributor for.
pub const MAX_CPUS: usize = 256;
/// Most redistributor regions: one per CPU, as an ACPI MADT without a GICR
/// structure gives them (each GICC names its own redistributor).
pub const MAX_REGIONS: usize = MAX_CPUS;

static REGIONS: [(AtomicU64, AtomicU64); MAX_REGIONS] =
    [const { (AtomicU64::new(0), AtomicU64::new(0)) }; MAX_REGIONS];
static REGION_COUNT: AtomicUsize = AtomicUsize::new(0);
static SGI_FRAME: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

const GICR_TYPER: u64 = 0x8;
const TYPER_VLPIS: u64 = 1 << 1;
const TYPER_LAST: u64 = 1 << 4;
/// One 64 KiB register frame; a redistributor has two (four with VLPIS).
const FRAME: u64 = 0x1_0000;
const SGI_OFFSET: u64 = 0x1_0000;
const ISENABLER0: u64 = 0x100;
const ICENABLER0: u64 = 0x180;
const ISACTIVER0: u64 = 0x300;
const ICACTIVER0: u64 = 0x380;

/// Records the redistributor regions (`base`, `size`) from the device tree.
/// KCore's EL2 map must cover them as device memory.
pub fn set_regions(regions: &[(u64, u64)]) {
    let n = regions.len().min(MAX_REGIONS);
    for (slot, &(b, s)) in REGIONS.iter().zip(regions) {
        slot.0.store(b, Ordering::Relaxed);
        slot.1.store(s, Ordering::Relaxed);
    }
    REGION_COUNT.store(n, Ordering::Release);
}

fn read64(addr: u64) -> u64 {
    // SAFETY: `addr` lies in a redistributor region KCore maps as device
    // memory (`set_regions`' contract); reading GICR_TYPER has no effect.
    unsafe { (addr as *const u64).read_volatile() }
}

fn write32(addr: u64, v: u32) {
    // SAFETY: `addr` is a set/clear register of this CPU's own SGI frame,
    // found by `init_cpu` inside a mapped redistributor region.
    unsafe { (addr as *mut u32).write_volatile(v) }
}

/// Finds the redistributor of the CPU with affinity `mpidr` and records its
/// SGI frame for CPU `cpu`. Returns whether one was found.
pub fn init_cpu(cpu: usize, mpidr: u64) -> bool {
    let want = (mpidr >> 32 & 0xFF) << 24 | (mpidr & 0xFF_FFFF);
    let n = REGION_COUNT.load(Ordering::Acquire);
    for (b, s) in REGIONS.iter().take(n) {
        let (base, size) = (b.load(Ordering::Relaxed), s.load(Ordering::Relaxed));
        let mut rd = base;
        while rd.saturating_add(2 * FRAME) <= base.saturating_add(size) {
            let typer = read64(rd + GICR_TYPER);
            if typer >> 32 == want {
                if let Some(slot) = SGI_FRAME.get(cpu) {
                    slot.store(rd + SGI_OFFSET, Ordering::Relaxed);
                    return true;
                }
                return false;
            }
            if typer & TYPER_LAST != 0 {
                break;
            }
            rd += if typer & TYPER_VLPIS != 0 {
                4 * FRAME
            } else {
                2 * FRAME
            };
        }
    }
    false
}

/// The distance between two redistributors in the recorded region `i`:
/// two 64 KiB frames, or four when they have virtual LPIs (GICv4, VLPIS).
/// `None` when there is no such region.
pub fn stride(i: usize) -> Option<u64> {
    if i >= REGION_COUNT.load(Ordering::Acquire) {
        return None;
    }
    let (b, s) = REGIONS.get(i)?;
    let (base, size) = (b.load(Ordering::Relaxed), s.load(Ordering::Relaxed));
    if size < 2 * FRAME {
        return None;
    }
    let typer = read64(base + GICR_TYPER);
    Some(if typer & TYPER_VLPIS != 0 {
        4 * FRAME
    } else {
        2 * FRAME
    })
}

fn frame() -> Option<u64> {
    let f = SGI_FRAME
        .get(super::cpu::cpu_index())?
        .load(Ordering::Relaxed);
    (f != 0).then_some(f)
}

/// Whether this CPU's redistributor is known.
pub fn available() -> bool {
    frame().is_some()
}

/// Sets or clears the active state of PPI/SGI `intid` (< 32) on this CPU.
pub fn set_private_active(intid: u32, active: bool) {
    if let Some(f) = frame().filter(|_| intid < 32) {
        let reg = if active { ISACTIVER0 } else { ICACTIVER0 };
        write32(f + reg, 1 << intid);
    }
}

/// Enables PPI `intid` (< 32) on this CPU.
pub fn enable_private(intid: u32) {
    if let Some(f) = frame().filter(|_| intid < 32) {
        write32(f + ISENABLER0, 1 << intid);
    }
}

/// Disables PPI `intid` (< 32) on this CPU.
pub fn disable_private(intid: u32) {
    if let Some(f) = frame().filter(|_| intid < 32) {
        write32(f + ICENABLER0, 1 << intid);
    }
}
