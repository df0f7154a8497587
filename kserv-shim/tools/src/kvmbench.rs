//! `kserv-tools kvmbench GUEST_IMAGE`: the test guest's bench program
//! ([`guest::bench`]) through `/dev/kvm`, whichever implements it (KCore's
//! shim or Linux's own KVM): a non-protected VM with two vCPUs, 16 MiB of
//! RAM without transparent huge pages (so every first touch of a page is a
//! stage-2 fault on any host), the vGIC, and the test device emulated
//! here. vCPU 0 runs on this thread pinned to CPU 0, vCPU 1 on another
//! pinned to CPU 1 (where there is one), so that every run places the work
//! alike.
//!
//! Prints one line per benchmark, in the guest's order:
//!
//! ```text
//! KSERV-BENCH <name> iters=<n> ticks=<t> cntfrq=<f>
//! KSERV-BENCH <name> FAIL <why>
//! ```
//!
//! `ticks` of the guest's virtual counter for all `n` iterations (the
//! guest's own `CNTFRQ_EL0` converts them to time). The guest's console
//! lines follow as `kvmbench: guest: <line>`; last comes `kvmbench: result:
//! <p> passed, <f> failed`, and the exit status is 0 only if every
//! benchmark reported a figure.

use crate::kvm::{
    ARM_PREFERRED_TARGET, CREATE_VM, EINTR, EXIT_MMIO, EXIT_SYSTEM_EVENT, IRQ_LINE, REG_PC, REG_X0,
    RUN, SYSTEM_EVENT_SHUTDOWN, Vcpu, anon, ioctl, load_guest, make_vcpu, make_vgic, owned, ptr,
    set_reg, sys,
};
use kcore_test_guest::bench::{self, BENCHES};
use kcore_test_guest::testdev;
use kcore_test_guest::{self as guest, Status};
use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::process::ExitCode;

/// The line prefix of a result.
pub const PREFIX: &str = "KSERV-BENCH";

/// `KVM_ARM_VCPU_INIT` features: PSCI 0.2 and later.
const PSCI_0_2: u32 = 1 << 2;
/// `KVM_ARM_VCPU_INIT` features: start powered off.
const POWER_OFF: u32 = 1 << 0;
/// `KVM_IRQ_LINE`'s type of an SPI (bits 24..28 of `irq`).
const IRQ_TYPE_SPI: u32 = 1 << 24;

/// The entry point.
pub fn main(args: &[String]) -> ExitCode {
    let [image] = args else {
        eprintln!("usage: kserv-tools kvmbench GUEST_IMAGE");
        return ExitCode::from(2);
    };
    let outcome = std::fs::read(image)
        .map_err(|e| format!("{image}: {e}"))
        .and_then(|image| micro(&image));
    let (passed, failed) = match outcome {
        Ok(status) => (status.passed, status.failed),
        Err(e) => {
            println!("kvmbench: {e}");
            (0, BENCHES.len() as u32)
        }
    };
    println!("kvmbench: result: {passed} passed, {failed} failed");
    if failed == 0 && passed as usize == BENCHES.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Pins this thread to `cpu`; says so if it cannot (the figures are still
/// right, only placed differently from run to run).
fn pin(cpu: u32) {
    if let Err(e) = sys::pin_to_cpu(cpu) {
        println!("kvmbench: cannot pin vCPU {cpu}'s thread to CPU {cpu}: errno {e}");
    }
}

/// The VM, its vCPUs and the guest's run; what the guest's status said,
/// as the results it printed counted it.
fn micro(image: &[u8]) -> Result<Status, String> {
    if image.len() > bench::FAULT_BASE as usize - guest::RAM_BASE as usize {
        return Err(format!("the image is {} bytes: too long", image.len()));
    }
    let kvm = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("/dev/kvm: {e}"))?;
    let vm = owned(ioctl(&kvm, CREATE_VM, 0).map_err(|e| format!("KVM_CREATE_VM: errno {e}"))?);
    let mut init = [0u32; 8];
    ioctl(&vm, ARM_PREFERRED_TARGET, init.as_mut_ptr() as u64)
        .map_err(|e| format!("KVM_ARM_PREFERRED_TARGET: errno {e}"))?;
    let target = init[0];
    let size = guest::RAM_SIZE as usize;
    let ram = anon(size).map_err(|e| format!("mmap: errno {e}"))?;
    sys::no_huge_pages(ram.as_mut_ptr(), size).map_err(|e| format!("madvise: errno {e}"))?;
    load_guest(&vm, ram, image)?;
    let v0 = make_vcpu(&vm, 0, target, PSCI_0_2)?;
    let v1 = make_vcpu(&vm, 1, target, PSCI_0_2 | POWER_OFF)?;
    let _gic = make_vgic(&vm, Some(64))?;
    set_reg(&v0.fd, REG_PC, guest::RAM_BASE).map_err(|e| format!("PC: errno {e}"))?;
    set_reg(&v0.fd, REG_X0, guest::BENCH_X0).map_err(|e| format!("x0: errno {e}"))?;

    // vCPU 1 sleeps in KVM_RUN until the guest's CPU_ON; after the guest's
    // SYSTEM_OFF it stays stopped there, and this process's exit ends it.
    std::thread::spawn(move || {
        pin(1);
        if let Err(e) = secondary(&v1) {
            println!("kvmbench: vCPU 1: {e}");
        }
    });
    pin(0);
    primary(&vm, &v0)
}

/// KVM_RUN, again after a signal.
fn run(v: &Vcpu) -> Result<u32, String> {
    loop {
        match ioctl(&v.fd, RUN, 0) {
            Ok(_) => return Ok(v.run_u32(8)),
            Err(EINTR) => continue,
            Err(e) => return Err(format!("KVM_RUN: errno {e}")),
        }
    }
}

/// vCPU 1 makes no exit to userspace but the VM's end.
fn secondary(v: &Vcpu) -> Result<(), String> {
    match run(v)? {
        EXIT_SYSTEM_EVENT => Ok(()),
        EXIT_MMIO => Err(format!("an MMIO exit at {:#x}", v.mmio().0)),
        r => Err(format!("exit reason {r}")),
    }
}

/// `KVM_IRQ_LINE` for SPI `intid`.
fn irq_line(vm: &OwnedFd, intid: u32, level: bool) -> Result<(), String> {
    let line = [IRQ_TYPE_SPI | intid, u32::from(level)];
    ioctl(vm, IRQ_LINE, ptr(&line))
        .map(|_| ())
        .map_err(|e| format!("KVM_IRQ_LINE: errno {e}"))
}

/// Runs vCPU 0 until the guest turns the VM off, serving the test device
/// and printing each result as it comes.
fn primary(vm: &OwnedFd, v: &Vcpu) -> Result<Status, String> {
    let spi = guest::eventfd::spi(bench::IRQ_GSI);
    let mut cntfrq = 0;
    let mut line = String::new();
    let mut status = None;
    let mut reported = 0;
    loop {
        match run(v)? {
            EXIT_MMIO => {}
            EXIT_SYSTEM_EVENT if v.run_u32(32) == SYSTEM_EVENT_SHUTDOWN => break,
            EXIT_SYSTEM_EVENT => return Err(format!("system event {}", v.run_u32(32))),
            r => return Err(format!("exit reason {r}, word {:#x}", v.run_u64(32))),
        }
        let (addr, data, len, write) = v.mmio();
        match (addr.wrapping_sub(testdev::BASE), write) {
            (bench::MMIO, false) if len == 4 => {
                v.set_run_u64(40, u64::from(bench::MMIO_VALUE));
            }
            (bench::IRQ_REQUEST, true) => {
                irq_line(vm, spi, true)?;
                irq_line(vm, spi, false)?;
            }
            (bench::RESULT, true) => {
                let (i, ticks) = bench::parse_result(data);
                let Some(b) = BENCHES.get(i) else {
                    return Err(format!("a result for benchmark {i}"));
                };
                match ticks {
                    Some(t) if cntfrq != 0 => println!(
                        "{PREFIX} {} iters={} ticks={t} cntfrq={cntfrq}",
                        b.name, b.iterations
                    ),
                    Some(_) => println!("{PREFIX} {} FAIL no CNTFRQ before it", b.name),
                    None => println!("{PREFIX} {} FAIL in the guest (see its console)", b.name),
                }
                reported += u32::from(ticks.is_some() && cntfrq != 0);
            }
            (bench::CNTFRQ, true) => cntfrq = data,
            (testdev::CONSOLE, true) => match data as u8 {
                b'\n' => println!("kvmbench: guest: {}", std::mem::take(&mut line)),
                b => line.push(char::from(b)),
            },
            (testdev::STATUS, true) => status = Some(Status::from_word(data)),
            _ => {
                let how = if write { "write" } else { "read" };
                return Err(format!("an MMIO {how} of {len} bytes at {addr:#x}"));
            }
        }
    }
    let status = status.ok_or("the guest ended without a status")?;
    // A figure counts only if the guest counted it too.
    Ok(Status {
        passed: status.passed.min(reported),
        failed: BENCHES.len() as u32 - status.passed.min(reported),
    })
}
