//! KServ's `protection` test plays a malicious KServ against KCore's memory
//! (reading and mapping what stage 2 must hide); it must PASS (every attempt
//! refused or faulted inside KServ), and KCore must keep serving afterwards:
//! the `version` hypercall test that runs after it passes too.

use kcore_qemu::kserv::Verdict;
use kcore_qemu::{Boot, Machine};
use kcore_systests::{TestResult, batch, kcore_image};

#[test]
fn kserv_cannot_touch_kcore_and_kcore_keeps_answering() -> TestResult {
    let name = "protection";
    let boot = Boot::Kcore {
        image: kcore_image()?,
    };
    let (report, run) = batch(
        name,
        Machine::virt_gicv3(),
        boot,
        &["protection", "version"],
    )?;
    let order: Vec<&str> = report.tests.iter().map(|t| t.name.as_str()).collect();
    if order != ["protection", "version"] || report.verdict("version") != Some(Verdict::Pass) {
        return Err(run
            .session
            .failure(format!(
                "{name}: expected `protection` then a passing `version`, got {order:?}"
            ))
            .into());
    }
    // KCore reports refusals rate-limited (the 1st, 2nd, 4th, ...): one probe
    // gives at most two lines, and at least one.
    let refusals = run
        .session
        .lines()
        .iter()
        .filter(|l| l.contains("refused KServ access"))
        .count();
    if !(1..=2).contains(&refusals) {
        return Err(run
            .session
            .failure(format!(
                "{name}: {refusals} refusal reports from KCore (expected 1 or 2)"
            ))
            .into());
    }
    Ok(())
}
