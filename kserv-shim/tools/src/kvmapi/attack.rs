//! `kserv-tools attack ROW ARGS..`: the attack suite's userspace attacks.
//!
//! KServ's test `attacks` runs these beside the kernel-side ones of
//! `kserv_attack.ko`, while a protected Linux guest runs. Each row prints
//! what it expects before it starts (`expected <text>`) and what happened
//! last (`observed PASS|FAIL <text>`); the exit status is 0 for PASS.
//!
//! - `devmem VICTIM_PFN KCORE_PFN`: `/dev/mem` on the victim's page and on
//!   KCore's memory.
//! - `rawmap VICTIM_PFN`: a user mapping of the victim's page made without
//!   `/dev/mem`'s checks (`kserv_attack`'s `mem` file).
//! - `image-before IMAGE SIG`: the test guest's image changed by one byte
//!   before `KSERV_VM_VERIFY_IMAGE`.
//! - `image-after IMAGE SIG`: the image changed after verification (`kvmapi
//!   --sigbus`: children reading and writing it), then the guest runs.
//! - `pc-outside IMAGE SIG`: a protected vCPU's first PC outside the
//!   verified image.

use super::*;
use std::io::Write as _;
use std::os::unix::fs::FileExt;

const DEVMEM: &str = "/dev/mem";
const RAWMAP: &str = "/sys/kernel/debug/kserv_attack/mem";
const EKEYREJECTED: i32 = 129;
const PAGE: u64 = 4096;

/// One row: `expected`, printed first, then the attack's outcome.
fn row(expected: &str, attack: impl FnOnce(&mut Vec<String>) -> bool) -> ExitCode {
    println!("expected {expected}");
    std::io::stdout().flush().ok();
    let mut notes = Vec::new();
    let pass = attack(&mut notes);
    println!(
        "observed {} {}",
        if pass { "PASS" } else { "FAIL" },
        notes.join("; ")
    );
    if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub fn main(args: &[String]) -> ExitCode {
    let num = |i: usize| -> Option<u64> {
        let s: &str = args.get(i)?;
        match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => s.parse().ok(),
        }
    };
    match (args.first().map(String::as_str), args.len()) {
        (Some("devmem"), 3) => match (num(1), num(2)) {
            (Some(victim), Some(kcore)) => row(
                "/dev/mem: KServ's own kernel refuses to read or map the protected VM's page \
                 (EPERM: it is RAM, STRICT_DEVMEM); it maps KCore's memory (not RAM to Linux), \
                 but the first read and the first write die of SIGBUS (KCore's abort)",
                |n| devmem(n, victim, kcore),
            ),
            _ => usage(),
        },
        (Some("rawmap"), 2) => match num(1) {
            Some(victim) => row(
                "a user mapping of the protected VM's page made without /dev/mem's checks: \
                 the reading process and the writing process die of SIGBUS (KCore's abort)",
                |n| rawmap(n, victim),
            ),
            None => usage(),
        },
        (Some(r @ ("image-before" | "image-after" | "pc-outside")), 3) => {
            let (image, sig) = match (std::fs::read(&args[1]), std::fs::read(&args[2])) {
                (Ok(i), Ok(s)) => (i, s),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("kserv-tools attack: {e}");
                    return ExitCode::from(2);
                }
            };
            match r {
                "image-before" => row(
                    "a protected VM whose image was changed (one byte) before verification: \
                     KSERV_VM_VERIFY_IMAGE fails (KCore: VerificationFailed, EKEYREJECTED) and \
                     the VM never runs (no vCPU, or KVM_RUN does not enter)",
                    |n| image_before(n, &image, &sig),
                ),
                "image-after" => row(
                    "after verification the VMM cannot change the image: children reading or \
                     writing its pages die of SIGBUS; the guest then runs the signed image and \
                     passes all its tests with the right checksum",
                    |n| image_after(n, &args[1], &args[2]),
                ),
                _ => row(
                    "a protected vCPU whose first PC lies outside the verified image does not \
                     enter (KVM_RUN ends in KVM_EXIT_FAIL_ENTRY with KCore's Denied); with \
                     the PC inside the image it runs",
                    |n| pc_outside(n, &image, &sig),
                ),
            }
        }
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: kserv-tools attack devmem VICTIM_PFN KCORE_PFN | rawmap VICTIM_PFN\n\
         \x20      kserv-tools attack image-before|image-after|pc-outside IMAGE SIG"
    );
    ExitCode::from(2)
}

/// Forks a child that maps page `pa` of `file` (shared) and reads or writes
/// one word of it. The child exits 0 if the access completed, 3 if the
/// mmap failed; its wait status.
fn child_touch(file: &File, pa: u64, write: bool) -> Result<i32, String> {
    let fd = file.as_raw_fd();
    match sys::fork().map_err(|e| format!("fork: errno {e}"))? {
        0 => {
            let Ok(p) = sys::mmap_at(PAGE as usize, sys::MAP_SHARED, fd, pa) else {
                sys::exit_group(3)
            };
            let w = p.cast::<u64>();
            if write {
                // SAFETY: `w` is the start of the fresh one-page mapping
                // above; the page is someone else's, so the access faulting
                // is the test (this child dies of it).
                unsafe { w.write_volatile(0xbad0_bad0_bad0_bad0) };
            } else {
                // SAFETY: as for the write.
                unsafe { w.read_volatile() };
            }
            sys::exit_group(0)
        }
        pid => sys::wait(pid).map_err(|e| format!("wait4: errno {e}")),
    }
}

/// Both a reading and a writing child die of SIGBUS.
fn touches_fault(n: &mut Vec<String>, file: &File, what: &str, pa: u64) -> bool {
    let mut ok = true;
    for write in [false, true] {
        let verb = if write { "write" } else { "read" };
        match child_touch(file, pa, write) {
            Ok(s) if s & 0x7F == SIGBUS => n.push(format!("{what}: the {verb} died of SIGBUS")),
            Ok(s) if s & 0x7F == 0 && (s >> 8) & 0xFF == 3 => {
                n.push(format!("UNEXPECTED: {what}: mmap failed"));
                ok = false;
            }
            Ok(s) => {
                n.push(format!("UNEXPECTED: {what}: the {verb}er {}", describe(s)));
                ok = false;
            }
            Err(e) => {
                n.push(format!("UNEXPECTED: {what}: {e}"));
                ok = false;
            }
        }
    }
    ok
}

fn open_rw(path: &str) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("{path}: {e}"))
}

fn devmem(n: &mut Vec<String>, victim: u64, kcore: u64) -> bool {
    let mem = match open_rw(DEVMEM) {
        Ok(f) => f,
        Err(e) => {
            n.push(format!("UNEXPECTED: {e}"));
            return false;
        }
    };
    let mut ok = true;
    let mut word = [0u8; 8];
    match mem.read_at(&mut word, victim * PAGE) {
        Err(e) if e.raw_os_error() == Some(EPERM) => {
            n.push(format!("read of pfn {victim:#x}: EPERM"));
        }
        r => {
            n.push(format!("UNEXPECTED: read of pfn {victim:#x}: {r:?}"));
            ok = false;
        }
    }
    match sys::mmap_at(
        PAGE as usize,
        sys::MAP_SHARED,
        mem.as_raw_fd(),
        victim * PAGE,
    ) {
        Err(EPERM) => n.push(format!("mmap of pfn {victim:#x}: EPERM")),
        r => {
            n.push(format!("UNEXPECTED: mmap of pfn {victim:#x}: {r:?}"));
            ok = false;
        }
    }
    let what = format!("KCore pfn {kcore:#x}");
    touches_fault(n, &mem, &what, kcore * PAGE) && ok
}

fn rawmap(n: &mut Vec<String>, victim: u64) -> bool {
    match open_rw(RAWMAP) {
        Ok(f) => touches_fault(n, &f, &format!("pfn {victim:#x}"), victim * PAGE),
        Err(e) => {
            n.push(format!("UNEXPECTED: {e}"));
            false
        }
    }
}

/// `KVM_EXIT_FAIL_ENTRY`: the entry failed, `hardware_entry_failure_reason`
/// (at byte 32 of `kvm_run`) holding KCore's status.
const EXIT_FAIL_ENTRY: u32 = 9;
/// KCore's `Denied`.
const KCORE_DENIED: u64 = -17i64 as u64;

/// One `KVM_RUN` that must not enter the guest: `Ok` with how it was
/// refused (an errno, or a failed entry with KCore's `Denied`), `Err` with
/// what happened instead.
fn run_refused(v: &Vcpu) -> Result<String, String> {
    match ioctl(&v.fd, RUN, 0) {
        Err(e) => Ok(format!("errno {e}")),
        Ok(_) if v.run_u32(8) == EXIT_FAIL_ENTRY && v.run_u64(32) == KCORE_DENIED => {
            Ok("KVM_EXIT_FAIL_ENTRY, KCore: Denied".into())
        }
        Ok(_) => Err(format!(
            "entered: exit reason {}, word 32 {:#x}",
            v.run_u32(8),
            v.run_u64(32)
        )),
    }
}

/// `/dev/kvm` and the preferred vCPU target.
fn kvm_and_target() -> Result<(File, u32), String> {
    let kvm = open_rw("/dev/kvm")?;
    let mut init = [0u32; 8];
    ioctl(&kvm, CREATE_VM, 0)
        .map(owned)
        .and_then(|vm| ioctl(&vm, ARM_PREFERRED_TARGET, init.as_mut_ptr() as u64))
        .map_err(|e| format!("KVM_ARM_PREFERRED_TARGET: errno {e}"))?;
    Ok((kvm, init[0]))
}

/// A protected VM with the image in its RAM (changed by `tamper`) and a
/// vCPU; the verify ioctl's result.
#[allow(clippy::type_complexity)]
fn protected_vm(
    image: &[u8],
    sig: &[u8],
    tamper: bool,
) -> Result<(OwnedFd, Result<Vcpu, String>, Result<i64, i32>), String> {
    let (kvm, target) = kvm_and_target()?;
    let vm = owned(
        ioctl(&kvm, CREATE_VM, VM_TYPE_ARM_PROTECTED)
            .map_err(|e| format!("KVM_CREATE_VM: errno {e}"))?,
    );
    let p = sys::mmap(guest::RAM_SIZE as usize, sys::MAP_SHARED_ANON, -1)
        .map_err(|e| format!("mmap: errno {e}"))?;
    // SAFETY: a fresh shared mapping of RAM_SIZE bytes, never unmapped.
    let ram = unsafe { core::slice::from_raw_parts_mut(p, guest::RAM_SIZE as usize) };
    ram[..image.len()].copy_from_slice(image);
    if tamper {
        ram[image.len() / 2] ^= 0x01;
    }
    set_region(
        &vm,
        region(0, 0, guest::RAM_BASE, guest::RAM_SIZE, ram.as_ptr() as u64),
    )
    .map_err(|e| format!("memory slot: errno {e}"))?;
    let verified = ioctl(
        &vm,
        KSERV_VM_VERIFY_IMAGE,
        ptr(&[
            guest::RAM_BASE,
            image.len() as u64,
            sig.as_ptr() as u64,
            sig.len() as u64,
        ]),
    );
    let v = make_vcpu(&vm, 0, target, 1 << 2);
    Ok((vm, v, verified))
}

fn image_before(n: &mut Vec<String>, image: &[u8], sig: &[u8]) -> bool {
    let (_vm, v, verified) = match protected_vm(image, sig, true) {
        Ok(x) => x,
        Err(e) => {
            n.push(format!("UNEXPECTED: {e}"));
            return false;
        }
    };
    let mut ok = true;
    match verified {
        Err(EKEYREJECTED) => n.push("verification: EKEYREJECTED".into()),
        r => {
            n.push(format!("UNEXPECTED: verification {r:?}"));
            ok = false;
        }
    }
    // The poisoned VM gets no vCPU; if it did, it must not run.
    let v = match v {
        Err(e) => {
            n.push(format!("no vCPU for it ({e})"));
            return ok;
        }
        Ok(v) => v,
    };
    let pc = set_reg(&v.fd, REG_PC, guest::RAM_BASE);
    match run_refused(&v) {
        Ok(why) => n.push(format!("KVM_RUN: {why} (PC set: {pc:?})")),
        Err(why) => {
            n.push(format!("UNEXPECTED: KVM_RUN {why}"));
            ok = false;
        }
    }
    ok
}

fn image_after(n: &mut Vec<String>, image: &str, sig: &str) -> bool {
    let mut c = Checks {
        passed: 0,
        failed: 0,
    };
    only_guest(&mut c, &[image.to_string(), sig.to_string()], Mode::Sigbus);
    n.push(format!(
        "kvmapi --sigbus: {} checks passed, {} failed (verification, SIGBUS for reading and \
         writing children, the guest's tests and checksum)",
        c.passed, c.failed
    ));
    c.failed == 0 && c.passed > 0
}

fn pc_outside(n: &mut Vec<String>, image: &[u8], sig: &[u8]) -> bool {
    let (_vm, v, verified) = match protected_vm(image, sig, false) {
        Ok(x) => x,
        Err(e) => {
            n.push(format!("UNEXPECTED: {e}"));
            return false;
        }
    };
    if verified != Ok(0) {
        n.push(format!("UNEXPECTED: verification {verified:?}"));
        return false;
    }
    let v = match v {
        Ok(v) => v,
        Err(e) => {
            n.push(format!("UNEXPECTED: {e}"));
            return false;
        }
    };
    let mut ok = true;
    let past = guest::RAM_BASE + (image.len() as u64).div_ceil(PAGE) * PAGE + PAGE;
    for pc in [
        guest::RAM_BASE - PAGE,
        past,
        guest::RAM_BASE + guest::RAM_SIZE - 4,
    ] {
        let set = set_reg(&v.fd, REG_PC, pc);
        match run_refused(&v) {
            Ok(why) => n.push(format!("PC {pc:#x}: {why}")),
            Err(why) => {
                n.push(format!(
                    "UNEXPECTED: PC {pc:#x} (set: {set:?}): KVM_RUN {why}"
                ));
                ok = false;
            }
        }
    }
    let set = set_reg(&v.fd, REG_PC, guest::RAM_BASE);
    let x0 = set_reg(&v.fd, REG_X0, guest::BOOT_X0);
    match ioctl(&v.fd, RUN, 0) {
        Ok(_) => n.push(format!(
            "PC {:#x} (the image's entry): runs, exit reason {}",
            guest::RAM_BASE,
            v.run_u32(8)
        )),
        r => {
            n.push(format!(
                "UNEXPECTED: PC inside the image (set {set:?}, x0 {x0:?}): KVM_RUN {r:?}"
            ));
            ok = false;
        }
    }
    ok
}
