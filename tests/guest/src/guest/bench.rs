//! The bench program ([`kcore_test_guest::bench`]): vCPU 0 times each of
//! [`BENCHES`] with the virtual counter and reports the ticks; vCPU 1 idles
//! in WFI and answers the `ipi` benchmark's PINGs (in [`super::irq`]).
//!
//! [`touch`] is the touch program ([`kcore_test_guest::touch`]).
//!
//! The GIC is the VM's, GICv3 or GICv2 ([`gic`]'s back ends, which the
//! runner picked before it called [`run`]): `GICD_TYPER` is at the same
//! distributor offset on both.
//!
//! Every benchmark checks what it measured (the hypercall's answer, the
//! values read, the interrupts taken, the pages written), so a hypervisor
//! that skips the work reports a failure, not a fast figure.

use super::{boot, console, cpu, gic, irq, mmu, psci, testdev, timer};
use core::sync::atomic::{AtomicBool, Ordering::SeqCst};
use kcore_abi::psci::{SUCCESS, VERSION_1_0};
use kcore_test_guest::Status;
use kcore_test_guest::bench::{
    BENCHES, CNTFRQ, FAULT_BASE, IRQ_GSI, IRQ_REQUEST, MMIO, MMIO_VALUE, RESULT, SECONDARY_CTX,
    WAIT_MS, result_word,
};
use kcore_test_guest::eventfd::spi;
use kcore_test_guest::gic::SGI_PING;
use kcore_test_guest::testdev::{STATUS, Width};

/// `GICD_TYPER`, the distributor register the `mmio-kernel` benchmark
/// reads.
const GICD_TYPER: u64 = 0x4;
/// vCPU 1's MPIDR affinity.
const VCPU1: u64 = 1;
/// How long vCPU 1 may take to come up.
const POWER_TIMEOUT_MS: u64 = 5000;

/// vCPU 1 is up and its CPU interface on.
static VCPU1_UP: AtomicBool = AtomicBool::new(false);

/// Why a benchmark failed (printed on the console).
type Why = &'static str;

/// A benchmark's body: `n` repetitions, returning the counter ticks they
/// took.
type Body = fn(u32) -> Result<u64, Why>;

/// Runs the program, reports and turns the VM off.
pub fn run() -> ! {
    mmu::build_tables();
    mmu::enable();
    gic::init();
    gic::enable_distributor();
    gic::enable_spi(spi(IRQ_GSI), true);
    // The slow paths' waits end on a timer interrupt.
    gic::enable_timer_ppi(0);
    testdev::write(CNTFRQ, Width::Double, timer::frequency());
    let vcpu1 = start_vcpu1();
    let mut passed = 0;
    for (i, b) in BENCHES.iter().enumerate() {
        let result = match (body(b.name), vcpu1) {
            (None, _) => Err("not in this guest"),
            (Some(_), Err(why)) if b.name == "ipi" => Err(why),
            (Some(f), _) => f(b.warmup).and_then(|_| profiled(|| f(b.iterations))),
        };
        match result {
            Ok(ticks) => {
                passed += 1;
                testdev::write(RESULT, Width::Double, result_word(i, Some(ticks)));
            }
            Err(why) => {
                console::line(format_args!("bench: {}: FAIL {why}", b.name));
                testdev::write(RESULT, Width::Double, result_word(i, None));
            }
        }
    }
    let status = Status {
        passed,
        failed: BENCHES.len() as u32 - passed,
    };
    testdev::write(STATUS, Width::Double, status.to_word());
    psci::system_off();
    cpu::park()
}

/// Runs `timed` between the markers `scripts/insn-profile` counts
/// instructions between (`HINT #100`, `HINT #101`: NOPs to any CPU, and
/// outside the timed region).
fn profiled<R>(timed: impl FnOnce() -> R) -> R {
    // SAFETY: a hint instruction; no memory or register effect.
    unsafe { core::arch::asm!("hint #100", options(nomem, nostack, preserves_flags)) };
    let r = timed();
    // SAFETY: as above.
    unsafe { core::arch::asm!("hint #101", options(nomem, nostack, preserves_flags)) };
    r
}

/// The body of the benchmark called `name`.
fn body(name: &str) -> Option<Body> {
    let f: Body = match name {
        "hvc" => hvc,
        "mmio-kernel" => mmio_kernel,
        "mmio-user" => mmio_user,
        "ipi" => ipi,
        "irq" => irq_injection,
        "fault" => fault,
        _ => return None,
    };
    Some(f)
}

/// Turns vCPU 1 on and waits until it is up.
fn start_vcpu1() -> Result<(), Why> {
    if psci::cpu_on(VCPU1, boot::secondary_entry(), SECONDARY_CTX) != SUCCESS {
        return Err("CPU_ON of vCPU 1 failed");
    }
    let up = || VCPU1_UP.load(SeqCst);
    if timer::spin_until(up, timer::deadline_after_ms(POWER_TIMEOUT_MS)) {
        Ok(())
    } else {
        Err("vCPU 1 did not come up")
    }
}

/// vCPU 1's part: its CPU interface on, then WFI forever, taking each
/// interrupt after its WFI ([`irq::handle`] answers each PING with a
/// PONG).
pub fn secondary() -> ! {
    gic::init();
    VCPU1_UP.store(true, SeqCst);
    loop {
        cpu::wfi();
        cpu::take_pending_irqs();
    }
}

/// Ticks from `start` to now.
fn since(start: u64) -> u64 {
    timer::counter().wrapping_sub(start)
}

/// `PSCI_VERSION` through `HVC #0`: the hypervisor passes it to the host
/// kernel (KVM's PSCI code, or the shim's through KCore), which answers.
fn hvc(n: u32) -> Result<u64, Why> {
    let start = timer::counter();
    let mut wrong = 0;
    for _ in 0..n {
        wrong |= psci::version(psci::Conduit::Hvc) ^ VERSION_1_0;
    }
    let ticks = since(start);
    if wrong == 0 {
        Ok(ticks)
    } else {
        Err("PSCI_VERSION did not return 1.0")
    }
}

/// A distributor register: emulated by the host kernel's vGIC.
fn mmio_kernel(n: u32) -> Result<u64, Why> {
    let want = gic::gicd_read(GICD_TYPER);
    let start = timer::counter();
    let mut wrong = 0;
    for _ in 0..n {
        wrong |= gic::gicd_read(GICD_TYPER) ^ want;
    }
    let ticks = since(start);
    if want == 0 || wrong != 0 {
        Err("GICD_TYPER read as zero or changed")
    } else {
        Ok(ticks)
    }
}

/// A test device register: answered by the VMM.
fn mmio_user(n: u32) -> Result<u64, Why> {
    let start = timer::counter();
    let mut wrong = 0;
    for _ in 0..n {
        wrong |= testdev::read(MMIO, Width::Word) ^ u64::from(MMIO_VALUE);
    }
    let ticks = since(start);
    if wrong == 0 {
        Ok(ticks)
    } else {
        Err("the VMM's register read wrong")
    }
}

/// A round trip of SGIs: PING to vCPU 1, idle in WFI, whose handler sends
/// PONG back to this vCPU, idle in WFI too. Both wait in WFI rather than
/// spin: under `-icount` a spinning CPU holds the emulated machine's other
/// CPUs off for its whole time slice, which would measure QEMU's
/// scheduling rather than the hypervisor. The virtual timer, armed once
/// for the whole run, ends the waits if an SGI is lost.
fn ipi(n: u32) -> Result<u64, Why> {
    let wait = timer::ticks_in_ms(WAIT_MS);
    let pongs = || irq::PONGS.load(SeqCst);
    let first = pongs();
    let start = timer::counter();
    let deadline = start.saturating_add(wait.saturating_mul(u64::from(n).max(1)));
    timer::arm(deadline);
    let mut lost = false;
    for round in 1..=n {
        let want = first.wrapping_add(round);
        gic::send_sgi(SGI_PING, VCPU1 as usize);
        while pongs() != want {
            if timer::counter() >= deadline {
                lost = true;
                break;
            }
            cpu::wfi();
            cpu::take_pending_irqs();
        }
        if lost {
            break;
        }
    }
    let ticks = since(start);
    timer::disarm();
    if lost {
        Err("a PING or PONG was lost")
    } else {
        Ok(ticks)
    }
}

/// Asks the VMM for an edge on the SPI, then takes the interrupt
/// (acknowledge, count, EOI in [`irq::handle`]): it is pending when the
/// vCPU runs again.
fn irq_injection(n: u32) -> Result<u64, Why> {
    let wait = timer::ticks_in_ms(WAIT_MS);
    let start = timer::counter();
    for _ in 0..n {
        let want = irq::BENCH_SPIS.load(SeqCst).wrapping_add(1);
        testdev::write(IRQ_REQUEST, Width::Word, 1);
        cpu::take_pending_irqs();
        let taken = || irq::BENCH_SPIS.load(SeqCst) == want;
        // Not taken at once: wait for it (slowly), or fail.
        if !taken() && !irq::wait_until(taken, timer::counter().saturating_add(wait)) {
            return Err("the SPI did not come");
        }
    }
    Ok(since(start))
}

/// One store to each of `n` pages no one touched yet: a stage-2 fault each.
/// Runs once (no warm-up: the pages would be backed).
fn fault(n: u32) -> Result<u64, Why> {
    let page = |i: u32| (FAULT_BASE + u64::from(i) * 4096) as *mut u64;
    let start = timer::counter();
    for i in 0..n {
        // SAFETY: a page of the fault region, which the identity map maps
        // as normal memory and which holds no Rust object.
        unsafe { page(i).write_volatile(u64::from(i)) };
    }
    let ticks = since(start);
    // SAFETY: as above, read back.
    let kept = (0..n).all(|i| unsafe { page(i).read_volatile() } == u64::from(i));
    if kept {
        Ok(ticks)
    } else {
        Err("a touched page did not keep its word")
    }
}

/// The touch program: one store to each page from
/// [`kcore_test_guest::touch::FIRST`] up, MMU off, until the host stops the
/// VM at the first store past its RAM.
pub fn touch() -> ! {
    let mut addr = kcore_test_guest::touch::FIRST;
    loop {
        // SAFETY: a store to guest RAM above everything the guest uses (or,
        // past RAM, an MMIO exit that ends the run); with the MMU off no
        // Rust object lives there.
        unsafe { (addr as *mut u64).write_volatile(kcore_test_guest::touch::word(addr)) };
        addr = addr.wrapping_add(4096);
    }
}
