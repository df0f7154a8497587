//! KServ's `vmisolation` test walks a protected VM through its life via
//! `kserv_selftest.ko`'s debugfs `vm_selftest` (`kserv-shim/README.md`):
//! create, donate, KServ's read of a donated page faults, the signed image
//! is accepted and a copy with one flipped byte rejected, a verified page
//! can be neither written nor reclaimed, teardown and reclaim give every
//! page back zeroed.
//! It must PASS, `version` after it too (KCore keeps serving), and KCore's
//! console must show exactly the two refusals the test provokes — at the
//! pages the self-test says it probed — and nothing that looks like a KCore
//! panic or an unexpected exception.

use kcore_qemu::kserv::Verdict;
use kcore_qemu::{Boot, Machine};
use kcore_systests::{Failure, TestResult, batch, kcore_image, kcore_trouble};

/// The pfn in a self-test line such as
/// `kserv-selftest: vm_selftest: read_donated: PASS reader of donated pfn 0x44c81 faulted`.
fn probed_pfn(lines: &[String], step: &str) -> Option<u64> {
    let marker = format!("kserv-selftest: vm_selftest: {step}: PASS ");
    let line = lines.iter().find(|l| l.contains(&marker))?;
    let rest = &line[line.find(" pfn 0x")? + " pfn 0x".len()..];
    let hex: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    u64::from_str_radix(&hex, 16).ok()
}

/// The IPA of a KCore line such as
/// `kcore: warning: refused KServ access at IPA 0x44c81000 (PC 0x...); ...`.
fn refused_ipa(line: &str) -> Option<u64> {
    let rest = &line[line.find("refused KServ access at IPA 0x")? + 30..];
    let hex: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    u64::from_str_radix(&hex, 16).ok()
}

#[test]
fn protected_vm_memory_is_isolated_verified_and_scrubbed() -> TestResult {
    let name = "vm-isolation";
    let boot = Boot::Kcore {
        image: kcore_image()?,
    };
    let (report, run) = batch(
        name,
        Machine::virt_gicv3().with_smp(2),
        boot,
        &["vmisolation", "version"],
    )?;
    let lines = run.session.lines();
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));

    let order: Vec<&str> = report.tests.iter().map(|t| t.name.as_str()).collect();
    if order != ["vmisolation", "version"] || report.verdict("version") != Some(Verdict::Pass) {
        return Err(fail(format!(
            "expected `vmisolation` then a passing `version`, got {order:?}"
        )));
    }
    if !lines
        .iter()
        .any(|l| l.contains("kserv-selftest: vm_selftest: result: PASS"))
    {
        return Err(fail("no `vm_selftest: result: PASS` on the console".into()));
    }
    if let Some(bad) = lines.iter().find(|l| kcore_trouble(l)) {
        return Err(fail(format!("KCore reported trouble: {bad:?}")));
    }

    // KCore reports refusals rate-limited (the 1st, 2nd, 4th, ...): the two
    // faults the self-test provokes are the first two, at its pages.
    let (Some(read), Some(write)) = (
        probed_pfn(&lines, "read_donated"),
        probed_pfn(&lines, "write_verified"),
    ) else {
        return Err(fail(
            "no pfn in the read_donated/write_verified lines".into(),
        ));
    };
    let refused: Vec<u64> = lines.iter().filter_map(|l| refused_ipa(l)).collect();
    if refused != [read << 12, write << 12] {
        let refused: Vec<String> = refused.iter().map(|a| format!("{a:#x}")).collect();
        return Err(fail(format!(
            "KCore refused KServ at IPAs [{}], expected the donated page {:#x} then the \
             verified image page {:#x}",
            refused.join(", "),
            read << 12,
            write << 12
        )));
    }
    Ok(())
}

#[test]
fn console_parsing() {
    let lines: Vec<String> = [
        "[    3.56] kserv-selftest: vm_selftest: read_donated: PASS reader of donated pfn 0x44c81 faulted",
        "[    3.63] kserv-selftest: vm_selftest: write_verified: PASS writer of verified image pfn 0x44b15 faulted",
    ]
    .map(String::from)
    .into();
    assert_eq!(probed_pfn(&lines, "read_donated"), Some(0x44c81));
    assert_eq!(probed_pfn(&lines, "write_verified"), Some(0x44b15));
    assert_eq!(probed_pfn(&lines, "reclaim"), None);
    assert_eq!(
        refused_ipa(
            "kcore: warning: refused KServ access at IPA 0x44c81000 (PC 0xffffaf35ed572120); \
             abort injected (1 so far)"
        ),
        Some(0x44c8_1000)
    );
    assert_eq!(refused_ipa("kcore: KCore v0.1.0 at EL2"), None);
    assert!(kcore_trouble("kcore: error: KCore panic: at src/x.rs:1"));
    assert!(kcore_trouble(
        "x kcore: unexpected exception at EL2: EL2h sync, ESR 0x0"
    ));
    assert!(kcore_trouble("kcore: halting"));
    assert!(!kcore_trouble(
        "kcore: warning: refused KServ access at IPA 0x1000"
    ));
    assert!(!kcore_trouble("[ 1.0] Kernel panic elsewhere"));
}
