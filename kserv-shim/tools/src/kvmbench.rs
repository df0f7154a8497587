//! `kserv-tools kvmbench GUEST_IMAGE`: the test guest's bench program
//! ([`guest::bench`]) through `/dev/kvm`, whichever implements it (KCore's
//! shim or Linux's own KVM): a non-protected VM with two vCPUs, 16 MiB of
//! RAM without transparent huge pages (so every first touch of a page is a
//! stage-2 fault on any host), the host's kind of vGIC (a GICv2 on a GICv2
//! host, which the test device's GIC register tells the guest), and the
//! test device emulated here. vCPU 0 runs on this thread pinned to CPU 0, vCPU 1 on another
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
//!
//! `kserv-tools kvmbench --vm MIB GUEST_IMAGE [SIGNATURE]`: the whole life
//! of a VM with `MIB` MiB of RAM, timed with this CPU's virtual counter
//! ([`vm_life`]): created, every page backed by the test guest's touch
//! program ([`guest::touch`]), torn down and its memory freed; in a
//! protected VM (KCore verifies the image, donates each page and scrubs
//! it at teardown) given the image's signature. Two figures, `iters=1`:
//! `vm-<MIB>m` for all of it, `vm-<MIB>m-teardown` from the guest's last
//! store to the memory's release (`-protected` after `m` for a protected
//! VM).

use crate::counter;
use crate::kvm::{
    ARM_PREFERRED_TARGET, CREATE_VM, EINTR, EXIT_MMIO, EXIT_SYSTEM_EVENT, IRQ_LINE,
    KSERV_VM_VERIFY_IMAGE, REG_PC, REG_X0, RUN, SYSTEM_EVENT_SHUTDOWN, VM_TYPE_ARM_PROTECTED, Vcpu,
    anon, gic_word, host_gic_v2, ioctl, load_guest, make_vcpu, make_vgic, owned, ptr, set_reg, sys,
};
use kcore_test_guest::bench::{self, BENCHES};
use kcore_test_guest::testdev;
use kcore_test_guest::{self as guest, Status};
use std::fs::{File, OpenOptions};
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
    let (outcome, total) = match args {
        [image] => (read(image).and_then(|i| micro(&i)), BENCHES.len() as u32),
        [flag, mib, image, sig @ ..] if flag == "--vm" && sig.len() <= 1 => {
            let r = mib
                .parse::<u64>()
                .ok()
                .filter(|m| (1..=4096).contains(m))
                .ok_or_else(|| format!("--vm {mib}: expected MiB in 1..=4096"))
                .and_then(|mib| {
                    let sig = sig.first().map(|s| read(s)).transpose()?;
                    vm_life(mib, &read(image)?, sig.as_deref())
                });
            (r, 1)
        }
        _ => {
            eprintln!(
                "usage: kserv-tools kvmbench GUEST_IMAGE\n\
                 \x20      kserv-tools kvmbench --vm MIB GUEST_IMAGE [SIGNATURE]"
            );
            return ExitCode::from(2);
        }
    };
    let (passed, failed) = match outcome {
        Ok(status) => (status.passed, status.failed),
        Err(e) => {
            println!("kvmbench: {e}");
            (0, total)
        }
    };
    println!("kvmbench: result: {passed} passed, {failed} failed");
    if failed == 0 && passed == total {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{path}: {e}"))
}

/// `/dev/kvm`.
fn open_kvm() -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("/dev/kvm: {e}"))
}

/// `KVM_ARM_PREFERRED_TARGET` of `vm`.
fn preferred_target(vm: &OwnedFd) -> Result<u32, String> {
    let mut init = [0u32; 8];
    ioctl(vm, ARM_PREFERRED_TARGET, init.as_mut_ptr() as u64)
        .map_err(|e| format!("KVM_ARM_PREFERRED_TARGET: errno {e}"))?;
    Ok(init[0])
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
    let kvm = open_kvm()?;
    let vm = owned(ioctl(&kvm, CREATE_VM, 0).map_err(|e| format!("KVM_CREATE_VM: errno {e}"))?);
    let target = preferred_target(&vm)?;
    let size = guest::RAM_SIZE as usize;
    let ram = anon(size).map_err(|e| format!("mmap: errno {e}"))?;
    sys::no_huge_pages(ram.as_mut_ptr(), size).map_err(|e| format!("madvise: errno {e}"))?;
    load_guest(&vm, ram, image)?;
    let v0 = make_vcpu(&vm, 0, target, PSCI_0_2)?;
    let v1 = make_vcpu(&vm, 1, target, PSCI_0_2 | POWER_OFF)?;
    // The host's kind of vGIC (`make_vgic`), which the guest asks for
    // through the test device's GIC register.
    let v2 = host_gic_v2(&vm);
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
    primary(&vm, &v0, v2)
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
/// (its GIC register says GICv2 if `v2`) and printing each result as it
/// comes.
fn primary(vm: &OwnedFd, v: &Vcpu, v2: bool) -> Result<Status, String> {
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
            (testdev::GIC, false) => v.set_run_u64(40, gic_word(v2)),
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

/// The life of a VM with `mib` MiB of RAM (see the module's text); prints
/// its two figures.
fn vm_life(mib: u64, image: &[u8], sig: Option<&[u8]>) -> Result<Status, String> {
    let Some((start, cntfrq)) = counter::read() else {
        return Err("no counter to time with".into());
    };
    let size = (mib << 20) as usize;
    if image.len() >= (guest::touch::FIRST - guest::RAM_BASE) as usize {
        return Err(format!("the image is {} bytes: too long", image.len()));
    }
    let kvm = open_kvm()?;
    let ty = if sig.is_some() {
        VM_TYPE_ARM_PROTECTED
    } else {
        0
    };
    let vm = owned(ioctl(&kvm, CREATE_VM, ty).map_err(|e| format!("KVM_CREATE_VM: errno {e}"))?);
    let target = preferred_target(&vm)?;
    let ram = sys::mmap(size, sys::MAP_ANON, -1).map_err(|e| format!("mmap: errno {e}"))?;
    // SAFETY: a fresh private mapping of `size` bytes, unmapped below only
    // once the VM that uses it is gone.
    let slice = unsafe { core::slice::from_raw_parts_mut(ram, size) };
    load_guest(&vm, slice, image)?;
    if let Some(sig) = sig {
        let args = [
            guest::RAM_BASE,
            image.len() as u64,
            sig.as_ptr() as u64,
            sig.len() as u64,
        ];
        ioctl(&vm, KSERV_VM_VERIFY_IMAGE, ptr(&args))
            .map_err(|e| format!("KSERV_VM_VERIFY_IMAGE: errno {e}"))?;
    }
    let v = make_vcpu(&vm, 0, target, PSCI_0_2)?;
    set_reg(&v.fd, REG_PC, guest::RAM_BASE).map_err(|e| format!("PC: errno {e}"))?;
    set_reg(&v.fd, REG_X0, guest::TOUCH_X0).map_err(|e| format!("x0: errno {e}"))?;
    let end = guest::RAM_BASE + size as u64;
    match run(&v)? {
        EXIT_MMIO if v.mmio().0 == end && v.mmio().3 => {}
        EXIT_MMIO => return Err(format!("an MMIO exit at {:#x}", v.mmio().0)),
        r => return Err(format!("exit reason {r}")),
    }
    let touched = counter::read().map_or(0, |(t, _)| t);
    // The last references: the vCPU (its kvm_run mapping, then its fd),
    // the VM's fd; then the memory.
    drop(v);
    drop(vm);
    // SAFETY: the VM that used the mapping is gone and `slice` is not
    // used again.
    unsafe { sys::munmap(ram, size) }.map_err(|e| format!("munmap: errno {e}"))?;
    let end = counter::read().map_or(0, |(t, _)| t);
    let name = format!("vm-{mib}m{}", if sig.is_some() { "-protected" } else { "" });
    for (name, ticks) in [
        (name.clone(), end.wrapping_sub(start)),
        (format!("{name}-teardown"), end.wrapping_sub(touched)),
    ] {
        println!("{PREFIX} {name} iters=1 ticks={ticks} cntfrq={cntfrq}");
    }
    Ok(Status {
        passed: 1,
        failed: 0,
    })
}
