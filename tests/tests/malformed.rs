//! A damaged boot image must be refused cleanly: KCore reports the bad (or
//! missing) payload, says it halts and powers the machine off, so QEMU exits
//! by itself; Linux never starts and the console shows no exception loop.
//! Each case boots a damaged copy of `build/kcore.img` (written to
//! `build/systests/`).

use std::time::Duration;

use kcore_qemu::kserv::LINUX_BANNER;
use kcore_qemu::{Boot, Machine, Pattern, QemuCommand};
use kcore_systests::image::{Damage, write_damaged};
use kcore_systests::{
    Failure, HALT_TIMEOUT, TestResult, build_dir, check_no_repeats, kcore_image, spawn,
};

/// A regex for a KCore line saying `message`, with or without a log-level tag
/// (`kcore: bad ...` or `kcore: error: bad ...`).
fn kcore_line(message: &str) -> String {
    format!(r"kcore: (?:[a-z]+: )?{message}")
}

fn refused(damage: Damage, message: &str) -> TestResult {
    let name = format!("malformed-{}", damage.name());
    let image = write_damaged(&kcore_image()?, damage, &build_dir().join("systests"))?;
    let cmd = QemuCommand::new(Machine::virt_gicv3(), Boot::Kcore { image });
    let mut run = spawn(&name, &cmd)?;
    let s = &mut run.session;
    s.wait_for("kcore: KCore v", HALT_TIMEOUT)?;
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
    if lines.iter().any(|l| l.contains(LINUX_BANNER)) {
        return Err(fail("Linux started from a damaged payload".into()));
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

#[test]
fn truncated_payload() -> TestResult {
    refused(Damage::Truncated, "bad KServ payload:")
}

#[test]
fn flipped_byte_in_kernel() -> TestResult {
    refused(Damage::FlippedKernelByte, "bad KServ payload:")
}

#[test]
fn zeroed_payload_magic() -> TestResult {
    refused(Damage::ZeroedMagic, "(?:no|bad) KServ payload")
}
