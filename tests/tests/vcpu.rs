//! KServ's `vcpu` test runs `kcore-test-guest` (`tests/guest`) in a protected
//! VM with two vCPUs through the shim's debugfs `guest_run`
//! (`kserv-shim/README.md`): KCore verifies the signed image and runs the
//! vCPUs, KServ emulates the guest's test device, PSCI and SGIs from the
//! exits, runs vCPU *i* on a kernel thread bound to CPU *i*, and afterwards
//! takes every page back. Between runs KServ attacks the started protected
//! vCPUs: it reads and sets their registers and injects hardware-mapped and
//! timer interrupts, each of which KCore must refuse. On the GICv3 `virt`
//! machine with four Cortex-A72 CPUs the test must PASS, `version` after it
//! too (KCore keeps serving), the console must show every test of the guest
//! passing in order and every attack refused, and KCore must report no
//! trouble.

use kcore_qemu::kserv::Verdict;
use kcore_qemu::{Boot, Machine};
use kcore_systests::{Failure, TestResult, batch, kcore_image, kcore_trouble};
use kcore_test_guest::{LINE_PREFIX, TESTS};

/// The names of the guest's PASS/FAIL lines on the console, in order, with
/// their verdicts (`kserv-shim: guest_run: guest: kcore-test-guest: <name>:
/// PASS`).
fn guest_results(lines: &[String]) -> Vec<(String, bool)> {
    let marker = format!("kserv-shim: guest_run: guest: {LINE_PREFIX}");
    lines
        .iter()
        .filter_map(|l| {
            let rest = &l[l.find(&marker)? + marker.len()..];
            let (name, verdict) = rest.split_once(": ")?;
            let pass = verdict.trim_end() == "PASS";
            (pass || verdict.starts_with("FAIL")).then(|| (name.to_string(), pass))
        })
        .collect()
}

#[test]
fn the_test_guest_passes_on_two_vcpus() -> TestResult {
    let name = "vcpu";
    let boot = Boot::Kcore {
        image: kcore_image()?,
    };
    let (report, run) = batch(
        name,
        Machine::virt_gicv3().with_smp(4),
        boot,
        &["vcpu", "version"],
    )?;
    let lines = run.session.lines();
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));

    let order: Vec<&str> = report.tests.iter().map(|t| t.name.as_str()).collect();
    if order != ["vcpu", "version"] || report.verdict("version") != Some(Verdict::Pass) {
        return Err(fail(format!(
            "expected `vcpu` then a passing `version`, got {order:?}"
        )));
    }
    let results = guest_results(&lines);
    let expected: Vec<(String, bool)> = TESTS.iter().map(|t| (t.to_string(), true)).collect();
    if results != expected {
        return Err(fail(format!(
            "the guest's tests on the console: {results:?}, expected every one of {TESTS:?} \
             passing in order"
        )));
    }
    for needle in [
        "kserv-shim: guest_run: attacks: PASS",
        "kserv-shim: guest_run: checksum: PASS",
        "kserv-shim: guest_run: result: PASS",
    ] {
        if !lines.iter().any(|l| l.contains(needle)) {
            return Err(fail(format!("no `{needle}` on the console")));
        }
    }
    if let Some(bad) = lines.iter().find(|l| kcore_trouble(l)) {
        return Err(fail(format!("KCore reported trouble: {bad:?}")));
    }
    Ok(())
}

#[test]
fn console_parsing() {
    let lines: Vec<String> = [
        "[    3.56] kserv-shim: guest_run: guest: kcore-test-guest: x0: PASS",
        "[    3.57] kserv-shim: guest_run: guest: kcore-test-guest: mmu: FAIL no: really",
        "[    3.58] kserv-shim: guest_run: guest: kcore-test-guest: result: 1 passed, 1 failed",
        "[    3.59] kserv-shim: guest_run: checksum: PASS 0x1",
    ]
    .map(String::from)
    .into();
    assert_eq!(
        guest_results(&lines),
        [("x0".to_string(), true), ("mmu".to_string(), false)]
    );
    assert!(kcore_trouble("kcore: error: KCore panic: at src/x.rs:1"));
    assert!(!kcore_trouble(
        "kcore: warning: refused KServ access at IPA 0x1000"
    ));
}
