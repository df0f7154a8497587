//! The lives of VMs on KCore: KServ's `kvmlife` test runs a protected and a
//! non-protected Linux guest at once (each with 2 vCPUs, each printing its
//! marker and the expected checksum), kills a protected guest's VMM while
//! its kernel boots (the VM must be torn down with every page back), has
//! forked children read donated memory (SIGBUS), and then runs 20
//! create/run/destroy cycles of the test guest and 6 of the Linux guest
//! (alternately protected and not; `cargo xtask soak` runs 200 of each): afterwards KCore's
//! self-check finds no page in any guest's stage 2, every pinned page is
//! unpinned, no teardown kept a page and KServ's free memory is back at its
//! baseline. KServ's `version` test afterwards shows KCore still serving;
//! KCore must report no trouble.

use kcore_qemu::{Boot, Machine};
use kcore_systests::{
    Failure, TestResult, batch_within, kcore_image, kcore_trouble, missing_marker,
};
use std::time::Duration;

#[test]
fn two_vms_a_killed_vmm_sigbus_and_vm_cycles() -> TestResult {
    let name = "kvm-life";
    let boot = Boot::Kcore {
        image: kcore_image()?,
    };
    let (report, run) = batch_within(
        name,
        Machine::virt_gicv3().with_smp(4),
        boot,
        &["kvmlife", "version"],
        Duration::from_secs(1800),
    )?;
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));
    let detail = report.detail("kvmlife");
    for what in [
        "2 Linux guests at once",
        "torn down, guests 0",
        "SIGBUS",
        "20 test-guest cycles",
        "then 6 Linux guest cycles",
        "pins balanced",
    ] {
        if !detail.contains(what) {
            return Err(fail(format!("kvmlife's report lacks `{what}`: {detail}")));
        }
    }
    let lines = run.session.lines();
    for run_name in ["both-protected", "both-plain"] {
        let prefix = format!("kvmlife {run_name}| ");
        let markers = [
            "KCORE-GUEST: hello from",
            "KCORE-GUEST: done",
            "kvmlife-exit 0",
        ];
        if let Some(m) = missing_marker(&lines, &prefix, &markers) {
            return Err(fail(format!("no `{m}` line on the console")));
        }
    }
    if let Some(bad) = lines.iter().find(|l| kcore_trouble(l)) {
        return Err(fail(format!("KCore reported trouble: {bad:?}")));
    }
    Ok(())
}
