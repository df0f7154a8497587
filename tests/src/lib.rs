//! Shared pieces of the QEMU system tests (`tests/tests/*.rs`).
//!
//! The tests boot the artefacts of `cargo xtask build` from `build/` (or the
//! directory named by `$KCORE_BUILD_DIR`) and fail with a hint to build when
//! they are missing. Each QEMU run has a timeout, logs its console to
//! `build/logs/systest-<name>.log` and, on failure, shows the end of it.
//! The machines have 2 host cores to share, so at most [`MAX_QEMUS`] QEMUs
//! run at once on the machine, whatever `--test-threads` says and however
//! many test processes run (`$KCORE_QEMU_JOBS` changes the number; see
//! [`QemuSlot`]). `cargo xtask test` runs every test in its own process, the
//! slowest first, as many at once as there are slots; by hand, run them with
//! `cargo test -p kcore-systests -- --test-threads=2`.

pub mod image;

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use kcore_qemu::kserv::{self, BatchReport};
use kcore_qemu::{Boot, Machine, Pattern, QemuCommand, Session};
use kcore_test_guest::TESTS as GUEST_TESTS;

/// How many QEMUs may run at once by default.
pub const MAX_QEMUS: usize = 2;

/// Wall-clock limit for a boot to KServ's `/init`, its tests and power-off
/// (TCG, up to 4 vCPUs, two QEMUs sharing two host cores).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

/// Wall-clock limit for KCore to report a bad payload and power off.
pub const HALT_TIMEOUT: Duration = Duration::from_secs(90);

/// What a system test returns. Its failure prints as the error chain with the
/// console tail, without the backtrace `anyhow` would add under
/// `RUST_BACKTRACE=1` (it only shows test-harness frames).
pub type TestResult = Result<(), Failure>;

/// A failed system test: any error, shown readably by `cargo test`.
pub struct Failure(anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.into())
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

/// The build directory: `$KCORE_BUILD_DIR` or the workspace's `build/`.
pub fn build_dir() -> PathBuf {
    match std::env::var_os("KCORE_BUILD_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            manifest.parent().unwrap_or(manifest).join("build")
        }
    }
}

/// `build/<relative>`, which must exist.
pub fn artefact(relative: &str) -> anyhow::Result<PathBuf> {
    let path = build_dir().join(relative);
    if !path.is_file() {
        bail!(
            "{} is missing: run `cargo xtask build` first (the system tests boot its artefacts)",
            path.display()
        );
    }
    Ok(path)
}

/// The boot image `build/kcore.img`.
pub fn kcore_image() -> anyhow::Result<PathBuf> {
    artefact("kcore.img")
}

/// The boot image whose KServ is Debian's 6.12, `build/kcore-6.12.img`.
pub fn kcore_image_6_12() -> anyhow::Result<PathBuf> {
    artefact("kcore-6.12.img")
}

/// Debian's kernel with KServ's initramfs and command line, booted directly
/// at EL2.
pub fn direct_boot() -> anyhow::Result<Boot> {
    let kernel = artefact("kserv/Image")?;
    let initrd = artefact("kserv/initramfs.cpio")?;
    let cmdline_path = artefact("kserv/cmdline")?;
    let cmdline = std::fs::read_to_string(&cmdline_path)
        .with_context(|| format!("reading {}", cmdline_path.display()))?;
    Ok(Boot::Direct {
        kernel,
        initrd: Some(initrd),
        cmdline: cmdline.trim().to_string(),
    })
}

/// `build/logs/systest-<name>.log`.
pub fn log_path(name: &str) -> PathBuf {
    build_dir().join("logs").join(format!("systest-{name}.log"))
}

/// Permission to run one QEMU: an exclusive lock on one of the files
/// `0`..`n-1` in [`slots_dir`], released on drop or when the process ends.
/// The locks are the operating system's (`flock`), so the limit holds across
/// every test process at once: `cargo xtask test` runs the test binaries side
/// by side and they share the machine's [`MAX_QEMUS`] (or `$KCORE_QEMU_JOBS`).
pub struct QemuSlot {
    _lock: File,
}

/// `build/logs/qemu-slots`, where the slot files live.
pub fn slots_dir() -> PathBuf {
    build_dir().join("logs").join("qemu-slots")
}

/// How often a test waiting for a slot tries again.
const SLOT_POLL: Duration = Duration::from_millis(200);

fn max_qemus() -> usize {
    std::env::var("KCORE_QEMU_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(MAX_QEMUS)
}

impl QemuSlot {
    /// Waits until one of the machine's QEMU slots is free and takes it.
    pub fn acquire() -> anyhow::Result<Self> {
        Self::acquire_in(&slots_dir(), max_qemus())
    }

    /// Waits for one of the `count` slot files in `dir`.
    fn acquire_in(dir: &Path, count: usize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        loop {
            if let Some(slot) = Self::try_acquire_in(dir, count)? {
                return Ok(slot);
            }
            std::thread::sleep(SLOT_POLL);
        }
    }

    /// Takes a free slot of the `count` in `dir`, if there is one.
    fn try_acquire_in(dir: &Path, count: usize) -> anyhow::Result<Option<Self>> {
        for i in 0..count {
            let path = dir.join(i.to_string());
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            match file.try_lock() {
                Ok(()) => return Ok(Some(QemuSlot { _lock: file })),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()));
                }
            }
        }
        Ok(None)
    }
}

/// A session that holds its [`QemuSlot`]; QEMU is killed before the slot is
/// released.
pub struct SlotSession {
    /// The session.
    pub session: Session,
    _slot: QemuSlot,
}

/// Starts `cmd` once a QEMU slot is free, logging to [`log_path`]`(name)`.
pub fn spawn(name: &str, cmd: &QemuCommand) -> anyhow::Result<SlotSession> {
    let slot = QemuSlot::acquire()?;
    let session = Session::spawn(cmd, log_path(name))?;
    Ok(SlotSession {
        session,
        _slot: slot,
    })
}

/// Boots `boot` on `machine` in batch mode with `tests`, waits for
/// `KSERV-DONE` and QEMU's power-off (on a machine that cannot power off,
/// KCore's word that it parked every CPU, then ends QEMU), and checks that
/// every test passed.
/// Returns the report and the console lines for further checks.
pub fn batch(
    name: &str,
    machine: Machine,
    boot: Boot,
    tests: &[&str],
) -> anyhow::Result<(BatchReport, SlotSession)> {
    batch_within(name, machine, boot, tests, BOOT_TIMEOUT)
}

/// [`batch`] for tests that take longer: `KSERV-DONE` must come within
/// `timeout` of QEMU's start (rather than [`BOOT_TIMEOUT`]).
pub fn batch_within(
    name: &str,
    machine: Machine,
    boot: Boot,
    tests: &[&str],
    timeout: Duration,
) -> anyhow::Result<(BatchReport, SlotSession)> {
    batch_appending(name, machine, boot, tests, timeout, "")
}

/// [`batch_within`] with `extra` kernel arguments before the batch ones
/// (after the payload's command line and the machine's own).
pub fn batch_appending(
    name: &str,
    machine: Machine,
    boot: Boot,
    tests: &[&str],
    timeout: Duration,
    extra: &str,
) -> anyhow::Result<(BatchReport, SlotSession)> {
    let cmd = QemuCommand::new(machine, boot).append(extra);
    batch_command(name, cmd, tests, timeout)
}

/// [`batch_within`] on a prepared command (its batch arguments are added
/// here).
pub fn batch_command(
    name: &str,
    cmd: QemuCommand,
    tests: &[&str],
    timeout: Duration,
) -> anyhow::Result<(BatchReport, SlotSession)> {
    let machine = cmd.machine.clone();
    let cmd = cmd.append(&kserv::batch_args(tests, machine.smp));
    let mut run = spawn(name, &cmd)?;
    let report = kserv::run_batch_on(&mut run.session, &machine, timeout)?;
    if let Err(problems) = report.check(tests) {
        return Err(run
            .session
            .failure(format!(
                "{name}: {}\n  - {}",
                machine,
                problems.join("\n  - ")
            ))
            .into());
    }
    Ok((report, run))
}

/// Boots `build/kcore.img` on `machine` with KServ's `reset` test: KServ
/// comes up, Linux says "reboot: Restarting system", each line of `then`
/// follows in turn, and QEMU (run with `-no-reboot`) exits by itself,
/// successfully.
pub fn expect_reset(name: &str, machine: Machine, then: &[&str]) -> TestResult {
    let cmd = QemuCommand::new(
        machine,
        Boot::Kcore {
            image: kcore_image()?,
        },
    )
    .append("kserv.mode=batch kserv.tests=reset");
    let mut run = spawn(name, &cmd)?;
    let s = &mut run.session;
    s.wait_for("kserv-shim: KCore ABI version", BOOT_TIMEOUT)?;
    s.wait_for("reboot: Restarting system", Duration::from_secs(60))?;
    for line in then {
        s.wait_for(*line, Duration::from_secs(30))?;
    }
    let status = s.wait_exit(Duration::from_secs(60))?;
    if !status.success() {
        return Err(Failure::from(
            s.failure(format!("{name}: QEMU exited with {status}")),
        ));
    }
    Ok(())
}

/// Fails if any non-blank console line repeats more than `max_repeats`
/// times: the sign of an exception or error loop.
pub fn check_no_repeats(lines: &[String], max_repeats: usize) -> Result<(), String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for line in lines {
        let line = line.trim();
        if !line.is_empty() {
            *counts.entry(line).or_default() += 1;
        }
    }
    let mut spam: Vec<(&str, usize)> = counts
        .into_iter()
        .filter(|&(_, n)| n > max_repeats)
        .collect();
    spam.sort();
    if spam.is_empty() {
        Ok(())
    } else {
        let shown: Vec<String> = spam
            .iter()
            .take(5)
            .map(|(l, n)| format!("{n}x {l:?}"))
            .collect();
        Err(format!(
            "console lines repeat (an exception loop?): {}",
            shown.join(", ")
        ))
    }
}

/// A regex for a KCore line saying `message`, with or without a log-level tag
/// (`kcore: bad ...` or `kcore: error: bad ...`).
pub fn kcore_line(message: &str) -> String {
    format!(r"kcore: (?:[a-z]+: )?{message}")
}

/// Boots `cmd` and expects KCore to refuse to go on: it prints `message` (a
/// regex) and `halting`, powers the machine off (QEMU exits successfully by
/// itself), Linux never starts and the console shows no error loop.
pub fn expect_clean_stop(name: &str, cmd: &QemuCommand, message: &str) -> TestResult {
    let mut run = spawn(name, cmd)?;
    let s = &mut run.session;
    s.wait_for(Pattern::regex(&kcore_line(message))?, HALT_TIMEOUT)?;
    s.wait_for(
        Pattern::regex(&kcore_line("halting"))?,
        Duration::from_secs(30),
    )?;
    let status = s.wait_exit(Duration::from_secs(30))?;
    let lines = s.lines();
    let fail = |what: String| Failure::from(s.failure(format!("{name}: {what}")));
    if !status.success() {
        return Err(fail(format!(
            "QEMU exited with {status} (expected a PSCI SYSTEM_OFF)"
        )));
    }
    if lines.iter().any(|l| l.contains(kserv::LINUX_BANNER)) {
        return Err(fail("Linux started".into()));
    }
    check_no_repeats(&lines, 3).map_err(&fail)?;
    let kcore_lines = lines.iter().filter(|l| l.contains("kcore:")).count();
    if kcore_lines > 64 {
        return Err(fail(format!(
            "{kcore_lines} lines from KCore: an error loop?"
        )));
    }
    Ok(())
}

/// Whether a console line is KCore reporting trouble that must never appear:
/// an error, its panic handler, an exception it did not expect, or a stop.
pub fn kcore_trouble(line: &str) -> bool {
    let Some(at) = line.find(kserv::KCORE_PREFIX) else {
        return false;
    };
    let msg = &line[at + kserv::KCORE_PREFIX.len()..];
    msg.starts_with("error:")
        || ["panic", "unexpected exception", "halting"]
            .iter()
            .any(|w| msg.contains(w))
}

/// Whether a console line is the kernel reporting trouble: a `WARNING`, an
/// oops, a `BUG` or a call trace.
pub fn kernel_trouble(line: &str) -> bool {
    [
        "WARNING: ",
        "Internal error: Oops",
        "Unable to handle kernel",
        "BUG: ",
        "Call trace:",
    ]
    .iter()
    .any(|w| line.contains(w))
}

/// What is wrong with KServ's `kvmapi` result in `report`, if anything:
/// every check of `kserv-tools kvmapi` must pass, and both runs of the test
/// guest (non-protected, protected) every one of its tests.
pub fn kvmapi_shortfall(report: &BatchReport) -> Option<String> {
    let detail = report.detail("kvmapi");
    let guests = format!(
        "2 guest runs (non-protected, protected) passed all {} tests",
        GUEST_TESTS.len()
    );
    (!detail.contains(" 0 failed") || !detail.contains(&guests))
        .then(|| format!("`kvmapi` says `{detail}`, expected `0 failed` and `{guests}`"))
}

/// The guest runs of KServ's `kvmguest` test, as its console lines name
/// them (`kvmguest <run>| ...`).
pub const KVMGUEST_RUNS: [&str; 3] = ["pl011", "virtio", "protected"];

/// What is missing from KServ's `kvmguest` test, if anything: its result
/// must name the protected guest, and each of its three guest runs
/// (`pl011`, `virtio`, `protected`) must relay the guest's greeting, its
/// end and the VMM's clean exit to the console `lines`.
pub fn kvmguest_shortfall(report: &BatchReport, lines: &[String]) -> Option<String> {
    let detail = report.detail("kvmguest");
    if !detail.contains("protected") {
        return Some(format!(
            "kvmguest did not boot the protected guest: {detail}"
        ));
    }
    KVMGUEST_RUNS.iter().find_map(|run| {
        let markers = [
            "KCORE-GUEST: hello from",
            "KCORE-GUEST: done",
            "kvmguest-exit 0",
        ];
        missing_marker(lines, &format!("kvmguest {run}| "), &markers)
            .map(|m| format!("no `{m}` line on the console"))
    })
}

/// KServ's `kvmguest` and `version` tests under KCore on `machine`, done
/// within `timeout` of QEMU's start (`kvmguest_shortfall` must find nothing
/// missing, KCore must report no trouble); `name` names the run's log.
pub fn linux_guests(name: &str, machine: Machine, timeout: Duration) -> TestResult {
    let boot = Boot::Kcore {
        image: kcore_image()?,
    };
    linux_guests_booted(name, machine, boot, timeout)
}

/// [`linux_guests`] with KCore booted by `boot` (`kcore.efi` from an ESP,
/// say).
pub fn linux_guests_booted(
    name: &str,
    machine: Machine,
    boot: Boot,
    timeout: Duration,
) -> TestResult {
    let (report, run) = batch_within(name, machine, boot, &["kvmguest", "version"], timeout)?;
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));
    let lines = run.session.lines();
    if let Some(problem) = kvmguest_shortfall(&report, &lines) {
        return Err(fail(problem));
    }
    if let Some(bad) = lines.iter().find(|l| kcore_trouble(l)) {
        return Err(fail(format!("KCore reported trouble: {bad:?}")));
    }
    Ok(())
}

/// The first of `markers` that no console line prefixed `prefix` carries,
/// as `prefix` + marker (a guest's console relayed by a KServ test).
pub fn missing_marker(lines: &[String], prefix: &str, markers: &[&str]) -> Option<String> {
    markers
        .iter()
        .find(|m| !lines.iter().any(|l| l.contains(prefix) && l.contains(*m)))
        .map(|m| format!("{prefix}{m}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_lines_are_spam() {
        let lines: Vec<String> = ["a", "b", "a", "", "", "", "a"].map(String::from).into();
        assert!(check_no_repeats(&lines, 3).is_ok());
        let err = check_no_repeats(&lines, 2).err().unwrap_or_default();
        assert!(err.contains("3x \"a\""), "{err}");
    }

    #[test]
    fn kernel_trouble_lines() {
        assert!(kernel_trouble(
            "[    4.1] WARNING: CPU: 1 PID: 80 at mm/page_alloc.c:4426"
        ));
        assert!(kernel_trouble("[    5.0] Call trace:"));
        assert!(kernel_trouble(
            "[    5.0] Internal error: Oops: 0000000096000004 [#1] SMP"
        ));
        assert!(!kernel_trouble(
            "[    4.6] kserv_shim: loading out-of-tree module taints kernel."
        ));
        assert!(!kernel_trouble("KSERV-TEST boot: PASS 4 CPUs online"));
    }

    #[test]
    fn slots_limit_concurrency_across_processes() {
        // Locks on separately opened files conflict as separate processes'
        // would (`flock` is per open file).
        let dir = std::env::temp_dir().join(format!("kcore-slots-{}", std::process::id()));
        let a = QemuSlot::acquire_in(&dir, 2).expect("first slot");
        let b = QemuSlot::acquire_in(&dir, 2).expect("second slot");
        assert!(
            QemuSlot::try_acquire_in(&dir, 2).expect("trying").is_none(),
            "a third QEMU must wait"
        );
        drop(a);
        let c = QemuSlot::try_acquire_in(&dir, 2).expect("trying again");
        assert!(c.is_some(), "a freed slot is taken again");
        drop((b, c));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
