//! `kserv-tools kvmapi [GUEST_IMAGE [SIGNATURE]]`: exercises `/dev/kvm`
//! the way a VMM does, ioctl by ioctl, and checks KVM's answers and errnos:
//! the system fd (API version, extensions, VM types), memory slots, vCPU
//! init, `ONE_REG` and `KVM_GET_REG_LIST` on a non-protected vCPU, what a
//! protected vCPU refuses, the vGIC device (on a GICv2 host its CPU
//! interface's registers, [`gicv2`]), the VMM's hardware breakpoints
//! and injected exceptions ([`debug`]), and then runs `kcore-test-guest`
//! (`tests/guest`) through `KVM_RUN` in a non-protected VM with two vCPUs
//! (vCPU 1 on its own thread, started by the guest's PSCI `CPU_ON`) and,
//! on a GICv3 host, an ITS, emulating the guest's test device from
//! `KVM_EXIT_MMIO` exits in userspace (its MSI requests answered with
//! `KVM_SIGNAL_MSI`); with a signature, the same guest again in a protected VM whose
//! image KCore verifies (`KSERV_VM_VERIFY_IMAGE`).
//!
//! Six further modes skip the API checks:
//!
//! - `kvmapi --guest GUEST_IMAGE [SIGNATURE]`: the test guest once (in a
//!   protected VM given a signature);
//! - `kvmapi --cycles N GUEST_IMAGE SIGNATURE`: `N` create/run/destroy
//!   cycles of the test guest, alternately non-protected and protected, each
//!   a child process (`--guest`) whose exit tears its VM down; after each,
//!   where KServ's debugfs offers it, KCore's self-check must pass with no
//!   page left in any guest's stage 2;
//! - `kvmapi --dirty GUEST_IMAGE`: the guest's dirty program in a
//!   non-protected VM with dirty page logging ([`dirty`]); the API checks
//!   run it too;
//! - `kvmapi --eventfd GUEST_IMAGE [SIGNATURE]`: the guest's eventfd program
//!   (`KVM_IOEVENTFD`, `KVM_IRQFD`, see [`eventfd_guest`]), in a protected VM
//!   given a signature; the API checks run it too, in both kinds of VM;
//! - `kvmapi --gicv2-cpu`: only the GICv2 CPU interface's register checks
//!   ([`gicv2`]; the API checks run them on a GICv2 host);
//! - `kvmapi --sigbus GUEST_IMAGE SIGNATURE`: a protected VM whose RAM is a
//!   shared anonymous mapping filled with a pattern and the image; once
//!   `KSERV_VM_VERIFY_IMAGE` donated the image's pages, a forked child that
//!   reads one must die of `SIGBUS`, while one that reads a page past the
//!   image (not donated) must see the pattern; then the guest runs in that
//!   VM as usual. (Shared, so that `fork` does not copy the pinned pages:
//!   for a private mapping it would, reading the donated page in the
//!   kernel.)
//!
//! One line per check, `kvmapi: <check>: PASS` or `kvmapi: <check>: FAIL
//! <why>`, the guest's console as `kvmapi: guest: <line>`, and last
//! `kvmapi: result: <p> passed, <f> failed`; the exit status is 0 only if
//! nothing failed. The ioctls are raw system calls (no libc crate).

pub mod attack;
mod debug;
mod dirty;
mod gicv2;

use crate::kvm::*;
use kcore_test_guest::gic::ITS_TESTS;
use kcore_test_guest::testdev::{self, Width};
use kcore_test_guest::{self as guest, Line, Status};
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::SeqCst};

// ---- checks ---------------------------------------------------------------------------

struct Checks {
    passed: u32,
    failed: u32,
}

impl Checks {
    fn check(&mut self, name: &str, ok: bool, why: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
            println!("kvmapi: {name}: PASS");
        } else {
            self.failed += 1;
            println!("kvmapi: {name}: FAIL {}", why());
        }
    }

    /// `r` must be `Ok(want)`.
    fn ok(&mut self, name: &str, r: Result<i64, i32>, want: i64) {
        self.check(name, r == Ok(want), || {
            format!("got {r:?}, expected Ok({want})")
        });
    }

    /// `r` must fail with `errno`.
    fn errno(&mut self, name: &str, r: Result<i64, i32>, errno: i32) {
        self.check(name, r == Err(errno), || {
            format!("got {r:?}, expected errno {errno}")
        });
    }
}

/// The entry point.
pub fn main(args: &[String]) -> ExitCode {
    let mut c = Checks {
        passed: 0,
        failed: 0,
    };
    match args.first().map(String::as_str) {
        Some("--guest") => only_guest(&mut c, &args[1..], Mode::Plain),
        Some("--sigbus") => only_guest(&mut c, &args[1..], Mode::Sigbus),
        Some("--eventfd") => only_guest(&mut c, &args[1..], Mode::Eventfd),
        Some("--cycles") => cycles(&mut c, &args[1..]),
        Some("--dirty") => only_guest(&mut c, &args[1..], Mode::Dirty),
        Some("--gicv2-cpu") => gicv2::only(&mut c),
        _ => api(&mut c, args),
    }
    println!("kvmapi: result: {} passed, {} failed", c.passed, c.failed);
    if c.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What [`try_run_guest`] does besides running the guest.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing.
    Plain,
    /// Reads of donated memory by forked children (protected VMs only).
    Sigbus,
    /// The guest's eventfd program instead of its tests ([`eventfd_guest`]).
    Eventfd,
    /// The guest's dirty program instead of its tests, non-protected only
    /// ([`dirty::dirty_guest`]).
    Dirty,
}

/// Reads a file; a failed check if it cannot.
fn read_arg(c: &mut Checks, what: &str, path: Option<&String>) -> Option<Vec<u8>> {
    let Some(path) = path else {
        c.check(what, false, || "missing".into());
        return None;
    };
    match std::fs::read(path) {
        Ok(v) => Some(v),
        Err(e) => {
            c.check(what, false, || format!("{path}: {e}"));
            None
        }
    }
}

/// `--guest IMAGE [SIG]`, `--sigbus IMAGE SIG`.
fn only_guest(c: &mut Checks, args: &[String], mode: Mode) {
    let Some(image) = read_arg(c, "image", args.first()) else {
        return;
    };
    let sig = match (args.get(1), mode) {
        (None, Mode::Plain | Mode::Eventfd | Mode::Dirty) => None,
        (path, _) => match read_arg(c, "signature", path) {
            Some(s) => Some(s),
            None => return,
        },
    };
    match OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(kvm) => {
            let mut init = [0u32; 8];
            let target = ioctl(&kvm, CREATE_VM, 0)
                .map(owned)
                .and_then(|vm| ioctl(&vm, ARM_PREFERRED_TARGET, init.as_mut_ptr() as u64));
            match target {
                Ok(_) => run_guest(c, &kvm, init[0], &image, sig.as_deref(), mode),
                Err(e) => c.check("preferred-target", false, || format!("errno {e}")),
            }
        }
        Err(e) => c.check("open", false, || format!("/dev/kvm: {e}")),
    }
}

/// KCore's self-check through KServ's debugfs (test images): `Ok((host,
/// guests, tables))` pages if it passed, `Err` with why not; `None` where
/// there is no debugfs file to ask it through.
fn self_check() -> Option<Result<(u64, u64, u64), String>> {
    const HVC: &str = "/sys/kernel/debug/kserv_selftest/hvc";
    if !std::path::Path::new(HVC).exists() {
        return None;
    }
    let r = std::fs::write(HVC, "c6000010\n")
        .and_then(|()| std::fs::read_to_string(HVC))
        .map_err(|e| format!("{HVC}: {e}"))
        .and_then(|out| {
            let w: Vec<u64> = out
                .split_whitespace()
                .map(|x| u64::from_str_radix(x, 16))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{out:?}: {e}"))?;
            match w[..] {
                [0, host, guests, tables] => Ok((host, guests, tables)),
                [status, ..] => Err(format!("status {status:#x}")),
                [] => Err("no answer".into()),
            }
        });
    Some(r)
}

/// `--cycles N IMAGE SIG`: `N` runs of `--guest`, each a child process,
/// alternately non-protected and protected.
fn cycles(c: &mut Checks, args: &[String]) {
    let n = args.first().and_then(|n| n.parse::<u32>().ok());
    let (Some(n), Some(image), Some(sig)) = (n, args.get(1), args.get(2)) else {
        c.check("cycles", false, || "usage: --cycles N IMAGE SIG".into());
        return;
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return c.check("cycles", false, || format!("own path: {e}")),
    };
    let mut ms_total = [0u128; 2];
    let mut runs = [0u32; 2];
    for i in 0..n {
        let protected = i % 2 == 1;
        let kind = if protected {
            "protected"
        } else {
            "non-protected"
        };
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["kvmapi", "--guest", image]);
        if protected {
            cmd.arg(sig);
        }
        let start = std::time::Instant::now();
        let out = cmd.output();
        let ms = start.elapsed().as_millis();
        let name = format!("cycle-{}", i + 1);
        match out {
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stdout);
                let ok = out.status.success()
                    && text.contains("kvmapi: result: ")
                    && text.contains(" 0 failed");
                c.check(&name, ok, || {
                    let fails: Vec<&str> = text
                        .lines()
                        .filter(|l| l.contains("FAIL") || l.contains("vCPU"))
                        .take(3)
                        .collect();
                    format!("{kind}: {} {}", out.status, fails.join("; "))
                });
                if ok {
                    println!("kvmapi: {name}: {kind} guest ran in {ms} ms");
                    ms_total[usize::from(protected)] += ms;
                    runs[usize::from(protected)] += 1;
                }
            }
            Err(e) => c.check(&name, false, || format!("{}: {e}", exe.display())),
        }
        // The child's exit closed its fds: its VM is gone, every page back.
        if let Some(r) = self_check() {
            c.check(
                &format!("{name}-self-check"),
                matches!(r, Ok((_, 0, _))),
                || format!("{r:?}"),
            );
        }
    }
    for (kind, i) in [("non-protected", 0), ("protected", 1)] {
        if runs[i] > 0 {
            println!(
                "kvmapi: cycles: {} {kind} runs, {} ms each on average",
                runs[i],
                ms_total[i] / u128::from(runs[i])
            );
        }
    }
}

/// The API checks, then the guest (non-protected, and protected given a
/// signature).
fn api(c: &mut Checks, args: &[String]) {
    match OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(kvm) => {
            let target = system(c, &kvm);
            if let Err(e) = vm_checks(c, &kvm, target) {
                c.check("vm", false, || e);
            }
            if let Err(e) = debug::checks(c, &kvm, target) {
                c.check("debug", false, || e);
            }
            if let Some(path) = args.first() {
                match std::fs::read(path) {
                    Ok(image) => {
                        run_guest(c, &kvm, target, &image, None, Mode::Plain);
                        run_guest(c, &kvm, target, &image, None, Mode::Eventfd);
                        run_guest(c, &kvm, target, &image, None, Mode::Dirty);
                        if let Some(sig) = args.get(1) {
                            match std::fs::read(sig) {
                                Ok(sig) => {
                                    run_guest(c, &kvm, target, &image, Some(&sig), Mode::Plain);
                                    run_guest(c, &kvm, target, &image, Some(&sig), Mode::Eventfd);
                                }
                                Err(e) => c.check("signature", false, || format!("{sig}: {e}")),
                            }
                        }
                    }
                    Err(e) => c.check("image", false, || format!("{path}: {e}")),
                }
            }
        }
        Err(e) => c.check("open", false, || format!("/dev/kvm: {e}")),
    }
}

/// The system fd; returns the preferred target.
fn system(c: &mut Checks, kvm: &File) -> u32 {
    c.ok("api-version", ioctl(kvm, GET_API_VERSION, 0), 12);
    c.errno("api-version-arg", ioctl(kvm, GET_API_VERSION, 1), EINVAL);
    c.ok("mmap-size", ioctl(kvm, GET_VCPU_MMAP_SIZE, 0), 4096);
    c.errno("unknown-ioctl", ioctl(kvm, ioc(0, 0x7F, 0), 0), EINVAL);
    for (name, cap, want) in [
        ("cap-user-memory", CAP_USER_MEMORY, 1),
        ("cap-one-reg", CAP_ONE_REG, 1),
        ("cap-psci-0.2", CAP_ARM_PSCI_0_2, 1),
        ("cap-irqchip", CAP_IRQCHIP, 1),
        ("cap-device-ctrl", CAP_DEVICE_CTRL, 1),
        ("cap-immediate-exit", CAP_IMMEDIATE_EXIT, 1),
        ("cap-readonly-mem", CAP_READONLY_MEM, 1),
        ("cap-protected-vm", CAP_ARM_PROTECTED_VM, 1),
        ("cap-irqfd", CAP_IRQFD, 1),
        ("cap-irqfd-resample", CAP_IRQFD_RESAMPLE, 1),
        ("cap-signal-msi", CAP_SIGNAL_MSI, 1),
        ("cap-ioeventfd", CAP_IOEVENTFD, 1),
        ("cap-ioeventfd-any-length", CAP_IOEVENTFD_ANY_LENGTH, 1),
        ("cap-max-vcpus", CAP_MAX_VCPUS, 64),
        ("cap-nr-memslots", CAP_NR_MEMSLOTS, 32767),
        ("cap-vcpu-events", 41, 1),
        ("cap-halt-poll", 182, 1),
        ("cap-unknown", 9999, 0),
    ] {
        c.ok(name, ioctl(kvm, CHECK_EXTENSION, cap), want);
    }
    let ipa = ioctl(kvm, CHECK_EXTENSION, CAP_ARM_VM_IPA_SIZE);
    c.check(
        "cap-ipa-size",
        ipa.is_ok_and(|b| (40..=48).contains(&b)),
        || format!("{ipa:?}"),
    );
    for (name, ty) in [
        ("create-vm-bad-bits", 1 << 8),
        ("create-vm-ipa-31", 31),
        ("create-vm-ipa-too-big", 60),
    ] {
        c.errno(name, ioctl(kvm, CREATE_VM, ty), EINVAL);
    }
    let vm = ioctl(kvm, CREATE_VM, 33).map(owned);
    c.check("create-vm-ipa-33", vm.is_ok(), || {
        format!("{:?}", vm.as_ref().err())
    });
    let vm = ioctl(kvm, CREATE_VM, VM_TYPE_ARM_PROTECTED).map(owned);
    c.check("create-vm-protected", vm.is_ok(), || {
        format!("{:?}", vm.as_ref().err())
    });
    let mut init = [0u32; 8];
    let vm = ioctl(kvm, CREATE_VM, 0).map(owned);
    let r = vm
        .as_ref()
        .map_err(|e| *e)
        .and_then(|vm| ioctl(vm, ARM_PREFERRED_TARGET, init.as_mut_ptr() as u64));
    c.check(
        "preferred-target",
        r == Ok(0) && init[1..] == [0; 7],
        || format!("{r:?} {init:?}"),
    );
    init[0]
}

/// A non-protected and a protected VM, without running them.
fn vm_checks(c: &mut Checks, kvm: &File, target: u32) -> Result<(), String> {
    let vm = owned(ioctl(kvm, CREATE_VM, 0).map_err(|e| format!("KVM_CREATE_VM: errno {e}"))?);
    c.ok(
        "vm-check-extension",
        ioctl(&vm, CHECK_EXTENSION, CAP_MAX_VCPUS),
        64,
    );
    c.errno("vm-unknown-ioctl", ioctl(&vm, ioc(0, 0x7F, 0), 0), EINVAL);
    let mem = anon(4 << 20).map_err(|e| format!("mmap: errno {e}"))?;
    let ua = mem.as_ptr() as u64;
    let gb = 0x4000_0000;
    c.ok(
        "memslot-add",
        set_region(&vm, region(0, 0, gb, 2 << 20, ua)),
        0,
    );
    c.ok(
        "memslot-same",
        set_region(&vm, region(0, 0, gb, 2 << 20, ua)),
        0,
    );
    c.errno(
        "memslot-overlap",
        set_region(&vm, region(1, 0, gb + 0x10_0000, 0x1000, ua)),
        EEXIST,
    );
    c.errno(
        "memslot-resize",
        set_region(&vm, region(0, 0, gb, 1 << 20, ua)),
        EINVAL,
    );
    c.errno(
        "memslot-misaligned",
        set_region(&vm, region(1, 0, 0x5000_0800, 0x1000, ua)),
        EINVAL,
    );
    c.errno(
        "memslot-size",
        set_region(&vm, region(1, 0, 0x5000_0000, 0x1800, ua)),
        EINVAL,
    );
    c.errno(
        "memslot-id",
        set_region(&vm, region(32767, 0, 0x5000_0000, 0x1000, ua)),
        EINVAL,
    );
    // Dirty logging is offered (non-protected VMs): a logging slot, gone
    // again.
    c.ok(
        "memslot-dirty-log",
        set_region(&vm, region(1, 1, 0x5000_0000, 0x1000, ua)),
        0,
    );
    c.ok(
        "memslot-dirty-log-delete",
        set_region(&vm, region(1, 1, 0, 0, 0)),
        0,
    );
    c.errno(
        "memslot-beyond-ipa",
        set_region(&vm, region(1, 0, 1 << 40, 0x1000, ua)),
        EFAULT,
    );
    let rom = ua + (2 << 20);
    c.ok(
        "memslot-readonly",
        set_region(&vm, region(2, 2, 0x5000_0000, 0x1000, rom)),
        0,
    );
    c.ok("memslot-delete", set_region(&vm, region(2, 0, 0, 0, 0)), 0);
    c.errno(
        "memslot-delete-again",
        set_region(&vm, region(2, 0, 0, 0, 0)),
        EINVAL,
    );

    let vcpu =
        owned(ioctl(&vm, CREATE_VCPU, 0).map_err(|e| format!("KVM_CREATE_VCPU: errno {e}"))?);
    c.errno("vcpu-duplicate", ioctl(&vm, CREATE_VCPU, 0), EEXIST);
    c.errno("vcpu-id-too-big", ioctl(&vm, CREATE_VCPU, 64), EINVAL);
    c.errno(
        "one-reg-before-init",
        get_reg(&vcpu, REG_PC).map(|v| v as i64),
        ENOEXEC,
    );
    c.errno("run-before-init", ioctl(&vcpu, RUN, 0), ENOEXEC);
    c.errno("init-wrong-target", vcpu_init(&vcpu, target + 1, 0), EINVAL);
    c.errno(
        "init-unknown-feature",
        vcpu_init(&vcpu, target, 1 << 7),
        ENOENT,
    );
    c.errno("init-el1-32bit", vcpu_init(&vcpu, target, 1 << 1), EINVAL);
    c.ok("init", vcpu_init(&vcpu, target, 1 << 2), 0);
    c.errno(
        "init-other-features",
        vcpu_init(&vcpu, target, 1 << 2 | 1),
        EINVAL,
    );
    let mut list = [0u64; 256];
    list[0] = 1;
    c.errno(
        "reg-list-small",
        ioctl(&vcpu, GET_REG_LIST, list.as_mut_ptr() as u64),
        E2BIG,
    );
    let n = list[0] as usize;
    list[0] = 255;
    c.ok(
        "reg-list",
        ioctl(&vcpu, GET_REG_LIST, list.as_mut_ptr() as u64),
        0,
    );
    let ids = &list[1..1 + n.min(255)];
    // KVM 6.1's 239, then a CCSIDR_EL1 (KVM_REG_ARM_DEMUX) per cache the
    // CPU's CLIDR_EL1 has, last.
    let ccsidrs = ids
        .iter()
        .filter(|&&id| id & 0x0FFF_0000 == 0x0011_0000)
        .count();
    let last = ids
        .iter()
        .skip(239)
        .all(|&id| id & 0x0FFF_0000 == 0x0011_0000);
    c.check(
        "reg-list-count",
        n == 239 + ccsidrs && ccsidrs > 0 && last,
        || format!("n = {n}, {ccsidrs} CCSIDRs"),
    );
    if let Some(&ccsidr) = ids.last() {
        let value = get_reg(&vcpu, ccsidr).unwrap_or(0) & 0xFFFF_FFFF;
        c.ok("ccsidr-set-same", set_reg(&vcpu, ccsidr, value), 0);
        c.errno(
            "ccsidr-set-other",
            set_reg(&vcpu, ccsidr, value ^ 1),
            EINVAL,
        );
    }
    let all = ids.iter().all(|&id| {
        get_reg(&vcpu, id).is_ok() || id & 0x00F0_0000_0000_0000 == 0x0040_0000_0000_0000
    });
    c.check(
        "reg-list-readable",
        all && ids.contains(&REG_PC) && ids.contains(&REG_TIMER_CNT),
        || format!("{ids:x?}"),
    );
    c.check(
        "pstate-reset",
        get_reg(&vcpu, REG_PSTATE) == Ok(0x3C5),
        || format!("{:?}", get_reg(&vcpu, REG_PSTATE)),
    );
    c.check(
        "mpidr",
        get_reg(&vcpu, REG_MPIDR) == Ok(0x8000_0000),
        || format!("{:?}", get_reg(&vcpu, REG_MPIDR)),
    );
    c.ok(
        "set-x5",
        set_reg(&vcpu, core64(10), 0x1234_5678_9abc_def0),
        0,
    );
    c.check(
        "get-x5",
        get_reg(&vcpu, core64(10)) == Ok(0x1234_5678_9abc_def0),
        || format!("{:?}", get_reg(&vcpu, core64(10))),
    );
    c.errno(
        "set-pstate-aarch32",
        set_reg(&vcpu, REG_PSTATE, 0x10),
        EINVAL,
    );
    c.errno(
        "reg-wrong-size",
        get_reg(&vcpu, REG_U32 | 64).map(|v| v as i64),
        EINVAL,
    );
    c.errno(
        "reg-past-kvm-regs",
        get_reg(&vcpu, core64(216)).map(|v| v as i64),
        ENOENT,
    );
    c.errno(
        "reg-unknown-sysreg",
        get_reg(&vcpu, sysreg(3, 0, 0, 0, 1)).map(|v| v as i64),
        ENOENT,
    );
    // The identification registers are KCore's view: AArch64-only guests,
    // read-only (a write must repeat the value).
    let pfr0 = get_reg(&vcpu, sysreg(3, 0, 0, 4, 0));
    c.check(
        "id-aa64pfr0",
        pfr0.is_ok_and(|v| v & 0xFF == 0x11 && (v >> 32) & 0xF == 0),
        || format!("{pfr0:x?}"),
    );
    let value = pfr0.unwrap_or(0);
    let same = [sysreg(3, 0, 0, 4, 0), ptr(&value)];
    c.ok("id-set-same", ioctl(&vcpu, SET_ONE_REG, ptr(&same)), 0);
    let other = value ^ 0xF0000;
    let changed = [sysreg(3, 0, 0, 4, 0), ptr(&other)];
    c.errno(
        "id-set-other",
        ioctl(&vcpu, SET_ONE_REG, ptr(&changed)),
        EINVAL,
    );
    let v = [0x1111_2222_3333_4444u64, 0x5555_6666_7777_8888];
    let one = [REG_U128 | (84 + 4 * 3), v.as_ptr() as u64];
    c.ok("set-v3", ioctl(&vcpu, SET_ONE_REG, ptr(&one)), 0);
    let mut back = [0u64; 2];
    let one = [REG_U128 | (84 + 4 * 3), back.as_mut_ptr() as u64];
    let r = ioctl(&vcpu, GET_ONE_REG, ptr(&one));
    c.check("get-v3", r == Ok(0) && back == v, || {
        format!("{r:?} {back:x?}")
    });
    let fpcr = 0x0300_0000u32;
    let one = [REG_U32 | 213, ptr(&fpcr)];
    c.ok("set-fpcr", ioctl(&vcpu, SET_ONE_REG, ptr(&one)), 0);
    let t0 = get_reg(&vcpu, REG_TIMER_CNT);
    let t1 = get_reg(&vcpu, REG_TIMER_CNT);
    c.check(
        "timer-cnt",
        matches!((t0, t1), (Ok(a), Ok(b)) if b >= a),
        || format!("{t0:?} {t1:?}"),
    );
    c.ok(
        "psci-version",
        get_reg(&vcpu, REG_PSCI_VERSION).map(|v| v as i64),
        0x1_0001,
    );
    // KVM_{GET,SET}_VCPU_EVENTS: nothing pending, taken back as it is;
    // reserved bytes EINVAL.
    let mut events = [u64::MAX; 8];
    c.ok(
        "events-get",
        ioctl(&vcpu, ioc(2, 0x9f, 64), ptr_mut(&mut events)),
        0,
    );
    c.check("events-none-pending", events == [0; 8], || {
        format!("{events:x?}")
    });
    c.ok(
        "events-set-none",
        ioctl(&vcpu, ioc(1, 0xa0, 64), ptr(&events)),
        0,
    );
    events[7] = 1;
    c.errno(
        "events-set-reserved",
        ioctl(&vcpu, ioc(1, 0xa0, 64), ptr(&events)),
        EINVAL,
    );
    c.errno(
        "verify-non-protected",
        ioctl(&vm, KSERV_VM_VERIFY_IMAGE, ptr(&[gb, 4096u64, ua, 80])),
        EINVAL,
    );
    let irq = [1u32 << 24 | 40, 1];
    c.errno("irq-line-no-vgic", ioctl(&vm, IRQ_LINE, ptr(&irq)), ENXIO);
    // The host's kind of vGIC can be made, the other not (the shim offers
    // no GICv2 on a GICv3 host; a GICv2 host cannot run a GICv3).
    let v2 = host_gic_v2(&vm);
    let (other, own) = if v2 {
        (
            ("create-vgic-v3", DEV_VGIC_V3),
            ("create-vgic-v2-test", DEV_VGIC_V2),
        )
    } else {
        (
            ("create-vgic-v2", DEV_VGIC_V2),
            ("create-vgic-v3-test", DEV_VGIC_V3),
        )
    };
    let mut dev = [other.1, 0, 0];
    c.errno(
        other.0,
        ioctl(&vm, CREATE_DEVICE, dev.as_mut_ptr() as u64),
        ENODEV,
    );
    dev = [own.1, 0, CREATE_DEVICE_TEST];
    c.ok(own.0, ioctl(&vm, CREATE_DEVICE, dev.as_mut_ptr() as u64), 0);
    if v2 {
        for what in ["its", "redist-regions"] {
            println!(
                "kvmapi: {what}: SKIP GICv3 only (ITS, LPIs, redistributor regions): the host's GIC is a GICv2"
            );
        }
        gicv2::checks(c, kvm)?;
    } else {
        its_checks(c, &vm)?;
        redist_region_checks(c, kvm)?;
    }

    // A protected VM: registers are KCore's.
    let pvm = owned(
        ioctl(kvm, CREATE_VM, VM_TYPE_ARM_PROTECTED)
            .map_err(|e| format!("protected KVM_CREATE_VM: errno {e}"))?,
    );
    let pv = owned(
        ioctl(&pvm, CREATE_VCPU, 0).map_err(|e| format!("protected KVM_CREATE_VCPU: errno {e}"))?,
    );
    c.ok("protected-init", vcpu_init(&pv, target, 1 << 2), 0);
    c.errno(
        "protected-get-x0",
        get_reg(&pv, REG_X0).map(|v| v as i64),
        EPERM,
    );
    c.ok("protected-set-pc", set_reg(&pv, REG_PC, 0x4000_0000), 0);
    c.ok(
        "protected-set-pstate-reset",
        set_reg(&pv, REG_PSTATE, 0x3C5),
        0,
    );
    c.errno(
        "protected-set-pstate-other",
        set_reg(&pv, REG_PSTATE, 0x3C4),
        EPERM,
    );
    c.errno("protected-set-x1", set_reg(&pv, core64(2), 5), EPERM);
    // No SError or abort of KServ's for it.
    let serror = [1u64, 0, 0, 0, 0, 0, 0, 0];
    c.errno(
        "protected-events-serror",
        ioctl(&pv, ioc(1, 0xa0, 64), ptr(&serror)),
        EPERM,
    );
    c.ok(
        "protected-mpidr",
        get_reg(&pv, REG_MPIDR).map(|v| v as i64),
        0x8000_0000,
    );
    Ok(())
}

/// `KVM_VGIC_V3_ADDR_TYPE_REDIST_REGION` on a fresh VM's GICv3 with two
/// vCPUs: regions in index order, KVM's errors, read back by index.
fn redist_region_checks(c: &mut Checks, kvm: &File) -> Result<(), String> {
    const REGION: u64 = 5;
    let vm = owned(ioctl(kvm, CREATE_VM, 0).map_err(|e| format!("KVM_CREATE_VM: errno {e}"))?);
    for id in 0..2 {
        ioctl(&vm, CREATE_VCPU, id).map_err(|e| format!("KVM_CREATE_VCPU: errno {e}"))?;
    }
    let mut dev = [7u32, 0, 0];
    ioctl(&vm, CREATE_DEVICE, dev.as_mut_ptr() as u64)
        .map_err(|e| format!("KVM_CREATE_DEVICE: errno {e}"))?;
    let gic = owned(i64::from(dev[1]));
    let region = |count: u64, base: u64, index: u64| count << 52 | base | index;
    let set = |v: u64| device_attr(&gic, SET_DEVICE_ATTR, 0, REGION, ptr(&v));
    let get = |index: u64| {
        let mut v = index;
        device_attr(&gic, GET_DEVICE_ATTR, 0, REGION, ptr_mut(&mut v)).map(|_| v as i64)
    };
    let r0 = GICR_BASE;
    let r1 = GICR_BASE + 0x10_0000;
    c.errno("rdreg-index-1-first", set(region(1, r0, 1)), EINVAL);
    c.errno("rdreg-no-count", set(region(0, r0, 0)), EINVAL);
    c.ok("rdreg-0", set(region(1, r0, 0)), 0);
    c.errno("rdreg-skip-index", set(region(1, r1, 2)), EINVAL);
    c.errno("rdreg-overlap", set(region(1, r0, 1)), EINVAL);
    c.errno("rdreg-unaligned", set(region(1, r1 + 0x1000, 1)), EINVAL);
    c.ok("rdreg-1", set(region(1, r1, 1)), 0);
    c.ok("rdreg-read-1", get(1), region(1, r1, 1) as i64);
    c.errno("rdreg-read-2", get(2), ENOENT);
    c.errno(
        "rdreg-legacy-mix",
        device_attr(&gic, SET_DEVICE_ATTR, 0, 3, ptr(&r1)),
        EINVAL,
    );
    Ok(())
}

/// The in-kernel ITS of a non-protected VM (`KVM_DEV_TYPE_ARM_VGIC_ITS`,
/// after its GICv3): its own device fd, its address, registers and
/// controls, and `KVM_SIGNAL_MSI` refused while the guest has not enabled
/// it, all with KVM's values and errnos.
fn its_checks(c: &mut Checks, vm: &OwnedFd) -> Result<(), String> {
    const ITS: u64 = ITS_BASE;
    c.ok(
        "its-msi-devid-before",
        ioctl(vm, CHECK_EXTENSION, CAP_MSI_DEVID),
        0,
    );
    let _gic = make_vgic(vm, None)?;
    let mut dev = [DEV_VGIC_ITS, 0, 0];
    ioctl(vm, CREATE_DEVICE, dev.as_mut_ptr() as u64)
        .map_err(|e| format!("KVM_CREATE_DEVICE ITS: errno {e}"))?;
    let its = owned(i64::from(dev[1]));
    c.ok(
        "its-msi-devid",
        ioctl(vm, CHECK_EXTENSION, CAP_MSI_DEVID),
        1,
    );
    let mut base = 0u64;
    let r = device_attr(&its, GET_DEVICE_ATTR, 0, 4, ptr_mut(&mut base));
    c.check("its-addr-undef", r == Ok(0) && base == u64::MAX, || {
        format!("{r:?} {base:#x}")
    });
    c.errno(
        "its-addr-unaligned",
        device_attr(&its, SET_DEVICE_ATTR, 0, 4, ptr(&(ITS + 0x1000))),
        EINVAL,
    );
    c.ok(
        "its-addr",
        device_attr(&its, SET_DEVICE_ATTR, 0, 4, ptr(&ITS)),
        0,
    );
    c.errno(
        "its-addr-again",
        device_attr(&its, SET_DEVICE_ATTR, 0, 4, ptr(&ITS)),
        EEXIST,
    );
    c.errno(
        "its-addr-other-type",
        device_attr(&its, SET_DEVICE_ATTR, 0, 2, ptr(&ITS)),
        ENODEV,
    );
    c.ok("its-init", device_attr(&its, SET_DEVICE_ATTR, 4, 0, 0), 0);
    for (name, attr) in [
        ("its-has-reset", 4),
        ("its-has-save", 1),
        ("its-has-restore", 2),
    ] {
        c.ok(name, device_attr(&its, HAS_DEVICE_ATTR, 4, attr, 0), 0);
    }
    c.ok("its-reset", device_attr(&its, SET_DEVICE_ATTR, 4, 4, 0), 0);
    for (name, offset, want) in [
        ("its-typer", 0x8, 0x1_EF71u64),
        ("its-iidr", 0x4, 0x4B00_043B),
        ("its-ctlr", 0x0, 1 << 31),
    ] {
        let mut v = 0u64;
        let r = device_attr(&its, GET_DEVICE_ATTR, 8, offset, ptr_mut(&mut v));
        c.check(name, r == Ok(0) && v == want, || format!("{r:?} {v:#x}"));
    }
    c.errno(
        "its-regs-misaligned",
        device_attr(&its, HAS_DEVICE_ATTR, 8, 0x8C, 0),
        EINVAL,
    );
    // The guest never enabled the ITS: EBUSY; no device id or a doorbell
    // outside the frame: EINVAL.
    let msi = |addr: u64, flags: u32| [addr, 2 | u64::from(flags) << 32, 7, 0];
    let doorbell = ITS + guest::gic::ITS_TRANSLATER;
    c.errno(
        "signal-msi-its-disabled",
        ioctl(vm, SIGNAL_MSI, ptr(&msi(doorbell, MSI_VALID_DEVID))),
        EBUSY,
    );
    c.errno(
        "signal-msi-no-devid",
        ioctl(vm, SIGNAL_MSI, ptr(&msi(doorbell, 0))),
        EINVAL,
    );
    c.errno(
        "signal-msi-not-its",
        ioctl(vm, SIGNAL_MSI, ptr(&msi(GICD_BASE, 1))),
        EINVAL,
    );
    Ok(())
}

// ---- running the test guest ------------------------------------------------------------

/// What the test device saw.
#[derive(Default)]
struct Device {
    /// The VM has a GICv2: [`testdev::GIC`] reads [`testdev::GIC_V2`].
    gic_v2: AtomicBool,
    /// The VM's fd + 1 if it has an ITS (0: none): [`testdev::GIC`] has
    /// [`testdev::GIC_ITS`], and writes of [`testdev::MSI`] signal MSIs
    /// through it ...
    its_vm: AtomicI32,
    /// ... the last one's [`testdev::msi_result`] ([`testdev::MSI_NONE`]
    /// before the first), which [`testdev::MSI`] reads.
    msi: AtomicU64,
    scratch: AtomicU64,
    status: AtomicU64,
    checksum: AtomicU64,
    /// The dirty program's VM fd + 1 (0: not that program): its round
    /// reports read the dirty log ([`dirty::check_round`]) ...
    dirty_vm: AtomicI32,
    /// ... with these outcomes, in order.
    rounds: std::sync::Mutex<Vec<Result<(), String>>>,
}

/// Runs a vCPU until the guest turns the machine off; the console lines it
/// printed. `Err` with what went wrong.
fn drive(v: &Vcpu, dev: &Device, idx: usize) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    loop {
        match ioctl(&v.fd, RUN, 0) {
            Ok(_) => {}
            Err(EINTR) => continue,
            Err(e) => return Err(format!("vCPU {idx}: KVM_RUN: errno {e}")),
        }
        match v.run_u32(8) {
            EXIT_MMIO => {
                let (addr, data, len, write) = v.mmio();
                let width = match len {
                    1 => Width::Byte,
                    2 => Width::Half,
                    4 => Width::Word,
                    _ => Width::Double,
                };
                let off = addr.wrapping_sub(testdev::BASE);
                if write {
                    match off {
                        testdev::CONSOLE => match data as u8 {
                            b'\n' => {
                                println!("kvmapi: guest: {line}");
                                lines.push(std::mem::take(&mut line));
                            }
                            b => line.push(char::from(b)),
                        },
                        testdev::STATUS => dev.status.store(data, SeqCst),
                        testdev::CHECKSUM => dev.checksum.store(data, SeqCst),
                        testdev::SCRATCH => dev
                            .scratch
                            .store(testdev::scratch_store(data, width), SeqCst),
                        testdev::MSI => {
                            let vm = dev.its_vm.load(SeqCst);
                            let r = if vm > 0 {
                                let (device, event) = testdev::parse_msi(data);
                                testdev::msi_result(signal_msi(vm - 1, device, event))
                            } else {
                                testdev::MSI_NONE
                            };
                            dev.msi.store(r, SeqCst);
                        }
                        guest::dirty::ROUND if dev.dirty_vm.load(SeqCst) > 0 => {
                            let r = dirty::check_round(dev.dirty_vm.load(SeqCst) - 1, data);
                            if let Ok(mut rounds) = dev.rounds.lock() {
                                rounds.push(r);
                            }
                        }
                        _ => return Err(format!("vCPU {idx}: MMIO write at {addr:#x}")),
                    }
                } else {
                    let value = match off {
                        testdev::SCRATCH => testdev::scratch_load(dev.scratch.load(SeqCst), width),
                        testdev::GIC => {
                            testdev::gic_word(dev.gic_v2.load(SeqCst), dev.its_vm.load(SeqCst) > 0)
                        }
                        testdev::MSI => dev.msi.load(SeqCst),
                        _ => 0,
                    };
                    v.set_run_u64(40, value);
                }
            }
            EXIT_SYSTEM_EVENT => {
                let ty = v.run_u32(32);
                if ty != SYSTEM_EVENT_SHUTDOWN {
                    return Err(format!("vCPU {idx}: system event {ty}"));
                }
                return Ok(lines);
            }
            r => {
                return Err(format!(
                    "vCPU {idx}: exit reason {r}, word {:#x}",
                    v.run_u64(32)
                ));
            }
        }
    }
}

/// The test guest through KVM_RUN (`sig`: in a protected VM).
fn run_guest(
    c: &mut Checks,
    kvm: &File,
    target: u32,
    image: &[u8],
    sig: Option<&[u8]>,
    mode: Mode,
) {
    let tag = match (sig.is_some(), mode) {
        (_, Mode::Dirty) => "dirty",
        (true, Mode::Eventfd) => "protected-eventfd",
        (false, Mode::Eventfd) => "eventfd",
        (true, _) => "protected-guest",
        (false, _) => "guest",
    };
    let r = if mode == Mode::Eventfd {
        eventfd_guest(c, kvm, target, image, sig, tag)
    } else if mode == Mode::Dirty {
        dirty::dirty_guest(c, kvm, target, image)
    } else {
        try_run_guest(c, kvm, target, image, sig, tag, mode)
    };
    if let Err(e) = r {
        c.check(tag, false, || e);
    }
}

fn try_run_guest(
    c: &mut Checks,
    kvm: &File,
    target: u32,
    image: &[u8],
    sig: Option<&[u8]>,
    tag: &str,
    mode: Mode,
) -> Result<(), String> {
    let ty = if sig.is_some() {
        VM_TYPE_ARM_PROTECTED
    } else {
        0
    };
    let vm = owned(ioctl(kvm, CREATE_VM, ty).map_err(|e| format!("KVM_CREATE_VM: errno {e}"))?);
    let ram = if mode == Mode::Sigbus {
        let p = sys::mmap(guest::RAM_SIZE as usize, sys::MAP_SHARED_ANON, -1)
            .map_err(|e| format!("mmap: errno {e}"))?;
        // SAFETY: a fresh shared mapping of RAM_SIZE bytes, never unmapped.
        let ram = unsafe { core::slice::from_raw_parts_mut(p, guest::RAM_SIZE as usize) };
        for (i, w) in ram.chunks_exact_mut(8).enumerate() {
            w.copy_from_slice(&pattern(i).to_le_bytes());
        }
        ram
    } else {
        anon(guest::RAM_SIZE as usize).map_err(|e| format!("mmap: errno {e}"))?
    };
    load_guest(&vm, ram, image)?;
    if let Some(sig) = sig {
        let r = ioctl(
            &vm,
            KSERV_VM_VERIFY_IMAGE,
            ptr(&[
                guest::RAM_BASE,
                image.len() as u64,
                sig.as_ptr() as u64,
                sig.len() as u64,
            ]),
        );
        c.ok(&format!("{tag}-verify"), r, 0);
        if mode == Mode::Sigbus {
            sigbus_probes(c, ram, image.len());
        }
    }
    let v0 = make_vcpu(&vm, 0, target, 1 << 2)?;
    let v1 = make_vcpu(&vm, 1, target, 1 << 2 | 1)?;
    let v2 = host_gic_v2(&vm);
    let gic = make_vgic(&vm, Some(64))?;
    // The bare-metal guest never enables the distributor: its VMM does
    // (GICD_CTLR.EnableGrp1; a GICv2's Enable), as it would restore it.
    let ctlr: u32 = if v2 { 1 } else { 2 };
    device_attr(&gic, SET_DEVICE_ATTR, 1, 0, ptr(&ctlr))
        .map_err(|e| format!("GICD_CTLR: errno {e}"))?;
    // Nor its redistributors (a GICv2's banked GICD_ISENABLER0, by vCPU
    // index): the timers' PPIs (virtual 27, physical 30) enabled on both
    // vCPUs.
    let timer = 1u32 << 27 | 1 << 30;
    let (group, offset) = if v2 { (1, 0x100) } else { (5, 0x1_0100) };
    for vcpu in [0u64, 1] {
        device_attr(
            &gic,
            SET_DEVICE_ATTR,
            group,
            vcpu << 32 | offset,
            ptr(&timer),
        )
        .map_err(|e| format!("ISENABLER0 of vCPU {vcpu}: errno {e}"))?;
    }
    // An ITS on a GICv3 host, in both kinds of VM, for the guest's ITS
    // tests; they learn of it from the test device's GIC word.
    let its = if v2 {
        Err("GICv3 only: the host's GIC is a GICv2".to_string())
    } else {
        make_its(&vm)
    };
    let mut back = 0u32;
    let r = device_attr(&gic, GET_DEVICE_ATTR, 1, 4, ptr_mut(&mut back));
    c.check(
        &format!("{tag}-gicd-typer"),
        r == Ok(0) && back & 0x1F == 1,
        || format!("{r:?} {back:#x}"),
    );
    let mut base = 0u64;
    let [(dist, _), _] = vgic_addresses(v2);
    let r = device_attr(&gic, GET_DEVICE_ATTR, 0, dist, ptr_mut(&mut base));
    c.check(
        &format!("{tag}-gicd-base"),
        r == Ok(0) && base == GICD_BASE,
        || format!("{r:?} {base:#x}"),
    );
    let spi = [1u32 << 24 | 40, 1];
    c.ok(
        &format!("{tag}-irq-line-spi"),
        ioctl(&vm, IRQ_LINE, ptr(&spi)),
        0,
    );
    let bad = [1u32 << 24 | 96, 1];
    c.errno(
        &format!("{tag}-irq-line-bad-spi"),
        ioctl(&vm, IRQ_LINE, ptr(&bad)),
        EINVAL,
    );
    let ppi = [2u32 << 24 | 5 << 16 | 20, 1];
    c.errno(
        &format!("{tag}-irq-line-bad-vcpu"),
        ioctl(&vm, IRQ_LINE, ptr(&ppi)),
        EINVAL,
    );

    set_reg(&v0.fd, REG_PC, guest::RAM_BASE).map_err(|e| format!("PC: errno {e}"))?;
    set_reg(&v0.fd, REG_X0, guest::BOOT_X0).map_err(|e| format!("x0: errno {e}"))?;
    v0.set_immediate_exit(1);
    c.errno(
        &format!("{tag}-immediate-exit"),
        ioctl(&v0.fd, RUN, 0),
        EINTR,
    );
    v0.set_immediate_exit(0);

    let dev = Arc::new(Device::default());
    dev.gic_v2.store(v2, SeqCst);
    if its.is_ok() {
        dev.its_vm.store(vm.as_raw_fd() + 1, SeqCst);
    }
    dev.msi.store(testdev::MSI_NONE, SeqCst);
    let d1 = Arc::clone(&dev);
    // vCPU 1 waits in KVM_RUN until the guest's CPU_ON; when the guest
    // turns the machine off it stays stopped there, and the process's exit
    // ends it (and closes every fd, which tears the VM down).
    std::thread::spawn(move || {
        let r = drive(&v1, &d1, 1);
        if let Err(e) = r {
            println!("kvmapi: {e}");
        }
    });
    let lines = drive(&v0, &dev, 0)?;
    // A reboot: KVM_ARM_VCPU_INIT again resets a non-protected vCPU; a
    // protected one's registers are KCore's, it cannot be reset.
    let r = vcpu_init(&v0.fd, target, 1 << 2);
    if sig.is_some() {
        c.errno(&format!("{tag}-reinit"), r, EPERM);
    } else {
        let (pc, pstate) = (get_reg(&v0.fd, REG_PC), get_reg(&v0.fd, REG_PSTATE));
        c.check(
            &format!("{tag}-reinit"),
            r == Ok(0) && pc == Ok(0) && pstate == Ok(0x3C5),
            || format!("init {r:?}, then PC {pc:x?}, PSTATE {pstate:x?}"),
        );
    }
    let status = Status::from_word(dev.status.load(SeqCst));
    let parsed: Vec<Line<'_>> = lines.iter().filter_map(|l| guest::parse_line(l)).collect();
    let passes = parsed
        .iter()
        .filter(|l| matches!(l, Line::Pass { .. }))
        .count();
    // Only the ITS tests skip, and only without an ITS.
    let skips = parsed
        .iter()
        .filter(
            |l| matches!(l, Line::Skip { name, .. } if its.is_err() && ITS_TESTS.contains(name)),
        )
        .count();
    c.check(
        tag,
        status.all_passed() && passes + skips == guest::TESTS.len(),
        || {
            format!(
                "{} passed, {} failed, {passes} PASS and {skips} SKIP lines of {}",
                status.passed,
                status.failed,
                guest::TESTS.len()
            )
        },
    );
    its_results(c, tag, &parsed, &its, !v2);
    let sum = dev.checksum.load(SeqCst);
    c.check(
        &format!("{tag}-checksum"),
        sum == guest::expected_checksum(),
        || format!("{sum:#x}, expected {:#x}", guest::expected_checksum()),
    );
    Ok(())
}

/// The guest's ITS tests, as check `<tag>-its`: with an ITS every one must
/// pass. Without one each must say SKIP, and so does this check's line
/// (with why there is none), unless the VM should have had one
/// (`expected`: any VM on a GICv3 host), which fails it.
fn its_results(
    c: &mut Checks,
    tag: &str,
    lines: &[Line<'_>],
    its: &Result<OwnedFd, String>,
    expected: bool,
) {
    let name = format!("{tag}-its");
    let line = |test: &str| {
        lines.iter().find(|l| match l {
            Line::Pass { name } | Line::Skip { name, .. } | Line::Fail { name, .. } => {
                *name == test
            }
            Line::Result(_) => false,
        })
    };
    let shown = || {
        ITS_TESTS
            .iter()
            .map(|t| match line(t) {
                Some(Line::Pass { .. }) => format!("{t}: PASS"),
                Some(Line::Skip { why, .. }) => format!("{t}: SKIP {why}"),
                Some(Line::Fail { detail, .. }) => format!("{t}: FAIL {detail}"),
                _ => format!("no {t} line"),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    match its {
        Ok(_) => c.check(
            &name,
            ITS_TESTS
                .iter()
                .all(|t| matches!(line(t), Some(Line::Pass { .. }))),
            shown,
        ),
        Err(why) if expected => c.check(&name, false, || format!("no ITS: {why}")),
        Err(why) => {
            let skipped = ITS_TESTS
                .iter()
                .all(|t| matches!(line(t), Some(Line::Skip { .. })));
            if skipped {
                println!("kvmapi: {name}: SKIP no ITS ({why})");
            } else {
                c.check(&name, false, || {
                    format!("no ITS ({why}), yet the guest's ITS tests ran: {}", shown())
                });
            }
        }
    }
}

// ---- reads of donated memory ----------------------------------------------------------------

/// The pattern `--sigbus` fills guest RAM with: word `i`.
fn pattern(i: usize) -> u64 {
    0x5afe_0000_0000_0000 | (i as u64).wrapping_mul(0x9E37_79B9)
}

const SIGBUS: i32 = 7;

/// Forks a child that reads the word at byte `off` of `ram` and exits 0 if
/// it is `want`, 1 if not; the child's wait status.
fn child_read(ram: &[u8], off: usize, want: u64) -> Result<i32, String> {
    let p = ram[off..off + 8].as_ptr().cast::<u64>();
    match sys::fork().map_err(|e| format!("fork: errno {e}"))? {
        0 => {
            // SAFETY: `p` is inside the (shared) mapping, inherited by this
            // child; a donated page makes the read fault, which is the test.
            let v = unsafe { p.read_volatile() };
            sys::exit_group(i32::from(v != want))
        }
        pid => sys::wait(pid).map_err(|e| format!("wait4: errno {e}")),
    }
}

/// Forks a child that writes the word at byte `off` of `ram` and exits 0
/// if the write completed; the child's wait status.
fn child_write(ram: &[u8], off: usize) -> Result<i32, String> {
    let p = ram[off..off + 8].as_ptr().cast::<u64>().cast_mut();
    match sys::fork().map_err(|e| format!("fork: errno {e}"))? {
        0 => {
            // SAFETY: `p` is inside the (shared, writable) mapping, inherited
            // by this child; a donated page makes the write fault, which is
            // the test.
            unsafe { p.write_volatile(0xbad0_bad0_bad0_bad0) };
            sys::exit_group(0)
        }
        pid => sys::wait(pid).map_err(|e| format!("wait4: errno {e}")),
    }
}

/// A wait status in words.
fn describe(status: i32) -> String {
    match status & 0x7F {
        0 => format!("exited {}", (status >> 8) & 0xFF),
        sig => format!("killed by signal {sig}"),
    }
}

/// After `KSERV_VM_VERIFY_IMAGE` donated the image's pages: a child reading
/// the image dies of SIGBUS, one reading past it sees the pattern.
fn sigbus_probes(c: &mut Checks, ram: &[u8], image_len: usize) {
    let page = 4096;
    let past = image_len.div_ceil(page) * page + page;
    let r = child_read(ram, past, pattern(past / 8));
    c.check("sigbus-undonated-read", r == Ok(0), || match &r {
        Ok(s) => format!("the child reading page {:#x} {}", past / page, describe(*s)),
        Err(e) => e.clone(),
    });
    for (name, off) in [
        ("sigbus-image-first", 0),
        ("sigbus-image-last", (image_len - 1) & !7),
    ] {
        let r = child_read(ram, off, 0);
        c.check(
            name,
            r.as_ref().is_ok_and(|s| s & 0x7F == SIGBUS),
            || match &r {
                Ok(s) => format!(
                    "the child reading donated byte {off:#x} {} (expected SIGBUS)",
                    describe(*s)
                ),
                Err(e) => e.clone(),
            },
        );
        if let Ok(s) = r {
            println!(
                "kvmapi: {name}: the child reading donated byte {off:#x} {}",
                describe(s)
            );
        }
    }
    // Changing the verified image: the writer dies the same way.
    let r = child_write(ram, 0);
    c.check(
        "sigbus-image-write",
        r.as_ref().is_ok_and(|s| s & 0x7F == SIGBUS),
        || match &r {
            Ok(s) => format!(
                "the child writing the image's first word {} (expected SIGBUS)",
                describe(*s)
            ),
            Err(e) => e.clone(),
        },
    );
}

// ---- ioeventfds and irqfds ------------------------------------------------------------------

/// A fresh non-blocking eventfd.
fn eventfd() -> Result<File, String> {
    let fd = sys::eventfd().map_err(|e| format!("eventfd2: errno {e}"))?;
    // SAFETY: a fresh fd this process owns from here on.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Takes an eventfd's counter (0 if nothing was signalled).
fn take_count(e: &File) -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    match (&*e).read(&mut b) {
        Ok(8) => u64::from_le_bytes(b),
        _ => 0,
    }
}

/// Signals an eventfd as a device thread would.
fn signal(e: &File) {
    use std::io::Write;
    let _ = (&*e).write(&1u64.to_le_bytes());
}

/// `KVM_IOEVENTFD`.
fn ioeventfd(
    vm: &OwnedFd,
    datamatch: u64,
    addr: u64,
    len: u32,
    fd: i32,
    flags: u32,
) -> Result<i64, i32> {
    let mut a = [0u64; 8];
    a[0] = datamatch;
    a[1] = addr;
    a[2] = u64::from(len) | u64::from(fd as u32) << 32;
    a[3] = u64::from(flags);
    ioctl(vm, IOEVENTFD, ptr(&a))
}

/// `KVM_IRQFD`.
fn irqfd(vm: &OwnedFd, fd: i32, gsi: u32, flags: u32, resamplefd: i32) -> Result<i64, i32> {
    let a = [fd as u32, gsi, flags, resamplefd as u32, 0, 0, 0, 0];
    ioctl(vm, IRQFD, ptr(&a))
}

/// The guest's eventfd program ([`guest::eventfd`]) on vCPU 0 of a VM with
/// an ioeventfd on the doorbell, an edge irqfd and a resampling one, after
/// KVM's errors for bad arguments; every step's expectations are checked
/// here as the guest reports it. `sig`: in a protected VM.
fn eventfd_guest(
    c: &mut Checks,
    kvm: &File,
    target: u32,
    image: &[u8],
    sig: Option<&[u8]>,
    tag: &str,
) -> Result<(), String> {
    use guest::eventfd::{
        self as ev, DOORBELL, DOORBELL_VALUE, DOORBELLS, EDGE_GSI, LEVEL_GSI, ROM, ROM_WRITE, STEP,
        rom_word,
    };
    let ty = if sig.is_some() {
        VM_TYPE_ARM_PROTECTED
    } else {
        0
    };
    let vm = owned(ioctl(kvm, CREATE_VM, ty).map_err(|e| format!("KVM_CREATE_VM: errno {e}"))?);
    let ram = anon(guest::RAM_SIZE as usize).map_err(|e| format!("mmap: errno {e}"))?;
    load_guest(&vm, ram, image)?;
    // A read-only slot, one page of known words.
    let rom = anon(4096).map_err(|e| format!("mmap: errno {e}"))?;
    for (k, w) in rom.chunks_exact_mut(8).enumerate() {
        w.copy_from_slice(&rom_word(k as u64).to_le_bytes());
    }
    // And one of code, which the guest calls, where it can be mapped
    // (not in a protected VM, whose read-only slots the shim emulates).
    let xrom = anon(4096).map_err(|e| format!("mmap: errno {e}"))?;
    for (k, w) in xrom.chunks_exact_mut(4).zip(ev::XROM_CODE) {
        k.copy_from_slice(&w.to_le_bytes());
    }
    let with_xrom = sig.is_none();
    rom[8 * ev::ROM_XROM_WORD as usize..][..8].copy_from_slice(&u64::from(with_xrom).to_le_bytes());
    set_region(&vm, region(1, 2, ROM, 4096, rom.as_ptr() as u64))
        .map_err(|e| format!("read-only slot: errno {e}"))?;
    if with_xrom {
        set_region(&vm, region(2, 2, ev::XROM, 4096, xrom.as_ptr() as u64))
            .map_err(|e| format!("read-only code slot: errno {e}"))?;
    }
    let mut rom_writes = 0u64;
    if let Some(sig) = sig {
        let r = ioctl(
            &vm,
            KSERV_VM_VERIFY_IMAGE,
            ptr(&[
                guest::RAM_BASE,
                image.len() as u64,
                sig.as_ptr() as u64,
                sig.len() as u64,
            ]),
        );
        c.ok(&format!("{tag}-verify"), r, 0);
    }
    let v = make_vcpu(&vm, 0, target, 1 << 2)?;
    let (doorbell, edge, level, resample) = (eventfd()?, eventfd()?, eventfd()?, eventfd()?);
    let (db, ed, lv, rs) = (
        doorbell.as_raw_fd(),
        edge.as_raw_fd(),
        level.as_raw_fd(),
        resample.as_raw_fd(),
    );
    let addr = testdev::BASE + DOORBELL;
    let name = |n: &str| format!("{tag}-{n}");
    // Before the vGIC exists: no irqfd (EAGAIN), as in KVM.
    c.errno(
        &name("irqfd-no-vgic"),
        irqfd(&vm, ed, EDGE_GSI, 0, 0),
        EAGAIN,
    );
    let v2 = host_gic_v2(&vm);
    let _gic = make_vgic(&vm, None)?;
    // KVM's errors.
    c.errno(
        &name("ioeventfd-len-3"),
        ioeventfd(&vm, 0, addr, 3, db, 0),
        EINVAL,
    );
    c.errno(
        &name("ioeventfd-wraps"),
        ioeventfd(&vm, 0, u64::MAX - 1, 4, db, 0),
        EINVAL,
    );
    c.errno(
        &name("ioeventfd-flags"),
        ioeventfd(&vm, 0, addr, 4, db, 1 << 6),
        EINVAL,
    );
    c.errno(
        &name("ioeventfd-any-len-datamatch"),
        ioeventfd(&vm, 0, addr, 0, db, IOEVENTFD_DATAMATCH),
        EINVAL,
    );
    c.errno(
        &name("ioeventfd-bad-fd"),
        ioeventfd(&vm, 0, addr, 4, 999, 0),
        EBADF,
    );
    c.errno(
        &name("ioeventfd-not-eventfd"),
        ioeventfd(&vm, 0, addr, 4, vm.as_raw_fd(), 0),
        EINVAL,
    );
    c.errno(
        &name("ioeventfd-deassign-none"),
        ioeventfd(&vm, 0, addr, 4, db, IOEVENTFD_DEASSIGN),
        ENOENT,
    );
    c.errno(
        &name("irqfd-flags"),
        irqfd(&vm, ed, EDGE_GSI, 1 << 2, 0),
        EINVAL,
    );
    c.errno(
        &name("irqfd-bad-fd"),
        irqfd(&vm, 999, EDGE_GSI, 0, 0),
        EBADF,
    );
    c.errno(
        &name("irqfd-not-eventfd"),
        irqfd(&vm, vm.as_raw_fd(), EDGE_GSI, 0, 0),
        EINVAL,
    );
    c.errno(
        &name("irqfd-bad-resamplefd"),
        irqfd(&vm, lv, LEVEL_GSI, IRQFD_RESAMPLE, 999),
        EBADF,
    );
    c.ok(
        &name("irqfd-deassign-none"),
        irqfd(&vm, ed, EDGE_GSI, IRQFD_DEASSIGN, 0),
        0,
    );
    // The real ones.
    c.ok(
        &name("ioeventfd"),
        ioeventfd(&vm, DOORBELL_VALUE, addr, 4, db, IOEVENTFD_DATAMATCH),
        0,
    );
    c.errno(
        &name("ioeventfd-collision"),
        ioeventfd(&vm, 0, addr, 4, ed, 0),
        EEXIST,
    );
    c.ok(&name("irqfd-edge"), irqfd(&vm, ed, EDGE_GSI, 0, 0), 0);
    c.errno(&name("irqfd-busy"), irqfd(&vm, ed, LEVEL_GSI, 0, 0), EBUSY);
    c.ok(
        &name("irqfd-resample"),
        irqfd(&vm, lv, LEVEL_GSI, IRQFD_RESAMPLE, rs),
        0,
    );
    set_reg(&v.fd, REG_PC, guest::RAM_BASE).map_err(|e| format!("PC: errno {e}"))?;
    set_reg(&v.fd, REG_X0, guest::EVENTFD_X0).map_err(|e| format!("x0: errno {e}"))?;

    let mut line = String::new();
    let mut plain_doorbells = 0u64;
    let mut xrom_called = false;
    let mut status = None;
    let mut waker = None;
    loop {
        match ioctl(&v.fd, RUN, 0) {
            Ok(_) => {}
            Err(EINTR) => continue,
            Err(e) => return Err(format!("KVM_RUN: errno {e}")),
        }
        match v.run_u32(8) {
            EXIT_MMIO => {
                let (at, data, _, write) = v.mmio();
                let off = at.wrapping_sub(testdev::BASE);
                if !write && off == testdev::GIC {
                    v.set_run_u64(40, gic_word(v2));
                    continue;
                }
                if !write {
                    return Err(format!("an MMIO read at {at:#x}"));
                }
                if at == ROM {
                    // A write to the read-only slot: the VMM's to handle.
                    if data != ROM_WRITE {
                        return Err(format!("the read-only slot's write carried {data:#x}"));
                    }
                    rom_writes += 1;
                    continue;
                }
                match off {
                    testdev::CONSOLE => match data as u8 {
                        b'\n' => {
                            println!("kvmapi: guest: {line}");
                            xrom_called |= line.ends_with(&format!(
                                "read-only slot's code returned {:#x}",
                                ev::XROM_RESULT
                            ));
                            line.clear();
                        }
                        b => line.push(char::from(b)),
                    },
                    DOORBELL => plain_doorbells += 1,
                    testdev::STATUS => status = Some(Status::from_word(data)),
                    STEP => {
                        let (n, _, _) = ev::parse_step(data);
                        match n {
                            1 => {
                                c.check(
                                    &name("readonly-slot-write"),
                                    rom_writes == 1 && rom[..8] == rom_word(0).to_le_bytes(),
                                    || format!("{rom_writes} writes reached the VMM, want 1"),
                                );
                                let got = take_count(&doorbell);
                                c.check(&name("ioeventfd-doorbells"), got == DOORBELLS && plain_doorbells == 1, || {
                                    format!("{got} doorbells signalled, {plain_doorbells} reached the VMM (want {DOORBELLS} and 1)")
                                });
                                signal(&edge);
                            }
                            2 => {
                                let late = edge.try_clone().map_err(|e| format!("dup: {e}"))?;
                                waker = Some(std::thread::spawn(move || {
                                    std::thread::sleep(std::time::Duration::from_millis(100));
                                    signal(&late);
                                }));
                            }
                            3 => signal(&level),
                            4 => {
                                let got = take_count(&resample);
                                c.check(&name("irqfd-resampled"), got == 1, || {
                                    format!("resamplefd counted {got}, want 1")
                                });
                                c.ok(
                                    &name("irqfd-deassign"),
                                    irqfd(&vm, ed, EDGE_GSI, IRQFD_DEASSIGN, 0),
                                    0,
                                );
                                c.ok(
                                    &name("ioeventfd-deassign"),
                                    ioeventfd(
                                        &vm,
                                        DOORBELL_VALUE,
                                        addr,
                                        4,
                                        db,
                                        IOEVENTFD_DATAMATCH | IOEVENTFD_DEASSIGN,
                                    ),
                                    0,
                                );
                                signal(&edge);
                            }
                            5 => {
                                let got = take_count(&doorbell);
                                c.check(&name("ioeventfd-after-deassign"), got == 0 && plain_doorbells == 2, || {
                                    format!("{got} doorbells signalled, {plain_doorbells} reached the VMM (want 0 and 2)")
                                });
                            }
                            n => return Err(format!("step {n}")),
                        }
                    }
                    _ => return Err(format!("an MMIO write at {at:#x}")),
                }
            }
            EXIT_SYSTEM_EVENT => break,
            r => return Err(format!("exit reason {r}, word {:#x}", v.run_u64(32))),
        }
    }
    if let Some(w) = waker {
        let _ = w.join();
    }
    c.check(
        &name("readonly-slot-code"),
        xrom_called == with_xrom,
        || {
            format!(
                "the guest called the read-only slot's code: {xrom_called}, expected {with_xrom}"
            )
        },
    );
    let status = status.unwrap_or_default();
    c.check(
        tag,
        status.passed == ev::GUEST_CHECKS && status.failed == 0,
        || {
            format!(
                "the guest's checks: {} passed, {} failed",
                status.passed, status.failed
            )
        },
    );
    Ok(())
}
