//! The dirty program ([`kcore_test_guest::dirty`]): both vCPUs write known
//! pages round by round while the host reads the dirty log between rounds.
//! vCPU 0 leads: it opens a round, writes its pages, waits for vCPU 1's,
//! and reports the round on the test device.

use super::{boot, cpu, mmu, psci, testdev, timer};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use kcore_abi::psci::SUCCESS;
use kcore_test_guest::Status;
use kcore_test_guest::dirty::{BASE, PAGES, ROUND, ROUNDS, SECONDARY_CTX, word, writes};
use kcore_test_guest::testdev::{STATUS, Width};

/// vCPU 1.
const VCPU1: u64 = 1;
/// How long vCPU 0 waits for vCPU 1 (to come up, to finish a round).
const TIMEOUT_MS: u64 = 10_000;

/// vCPU 1 is up.
static UP: AtomicBool = AtomicBool::new(false);
/// Rounds opened by vCPU 0.
static OPENED: AtomicU64 = AtomicU64::new(0);
/// Rounds vCPU 1 finished.
static DONE: AtomicU64 = AtomicU64::new(0);

/// Writes vCPU `vcpu`'s pages of round `round`.
fn write_pages(round: u64, vcpu: u64) {
    for p in (0..PAGES).filter(|&p| writes(round, vcpu, p)) {
        // SAFETY: the first word of a page of the region, which the
        // identity map maps as normal memory and which holds no Rust
        // object; each vCPU writes only its own pages.
        unsafe { core::ptr::write_volatile((BASE + p * 4096) as *mut u64, word(round, vcpu)) };
    }
}

/// vCPU 0's part; turns the VM off.
pub fn run() -> ! {
    mmu::build_tables();
    mmu::enable();
    let mut passed = 0;
    let up = psci::cpu_on(VCPU1, boot::secondary_entry(), SECONDARY_CTX) == SUCCESS
        && timer::spin_until(|| UP.load(SeqCst), timer::deadline_after_ms(TIMEOUT_MS));
    if up {
        for r in 0..ROUNDS {
            OPENED.store(r + 1, SeqCst);
            write_pages(r, 0);
            let done = || DONE.load(SeqCst) > r;
            if !timer::spin_until(done, timer::deadline_after_ms(TIMEOUT_MS)) {
                break;
            }
            testdev::write(ROUND, Width::Double, r);
            passed += 1;
        }
    }
    let status = Status {
        passed,
        failed: ROUNDS as u32 - passed,
    };
    testdev::write(STATUS, Width::Double, status.to_word());
    psci::system_off();
    cpu::park()
}

/// vCPU 1's part: each round vCPU 0 opens, its pages.
pub fn secondary() -> ! {
    UP.store(true, SeqCst);
    let mut r = 0;
    loop {
        while OPENED.load(SeqCst) <= r {
            core::hint::spin_loop();
        }
        write_pages(r, VCPU1);
        r += 1;
        DONE.store(r, SeqCst);
    }
}
