//! KServ's `kvmapi` test drives `/dev/kvm` from userspace as a VMM would
//! (`kserv-tools kvmapi`, `kserv-shim/initramfs/tests/kvmapi`): the KVM API's
//! ioctls and their errnos, then `kcore-test-guest` through `KVM_RUN` in a
//! non-protected and in a protected VM with two vCPUs each, its test device
//! emulated in userspace. On the GICv3 `virt` machine with four Cortex-A72
//! CPUs every check must pass, the guest's every test must pass in both VMs
//! (its ITS tests, LPIs through the VM's ITS, in the non-protected one; a
//! protected VM has no ITS yet, and they say SKIP there), each VM must be
//! torn down with every page back once the tool exits, and `version` must
//! pass afterwards (KCore keeps serving). The same on the GICv2 `virt`
//! machine, where the GICv3-only checks are skipped, the ITS tests in both
//! VMs.

use kcore_qemu::kserv::Verdict;
use kcore_qemu::{Boot, Machine};
use kcore_systests::{Failure, TestResult, batch, kcore_image, kvmapi_shortfall};

#[test]
fn the_kvm_api_runs_the_test_guest() -> TestResult {
    kvmapi("kvmapi", Machine::virt_gicv3().with_smp(4), &[])
}

/// The same on a GICv2 host (QEMU `virt,gic-version=2`): the tool makes a
/// `KVM_DEV_TYPE_ARM_VGIC_V2`, the test guest runs on its GICv2 back end,
/// the GICv3-only checks (ITS, redistributor regions) say they are
/// skipped and why, and the GICv2 CPU interface's registers
/// (`GRP_CPU_REGS`) are set and read back.
#[test]
fn the_kvm_api_runs_the_test_guest_on_a_gicv2_host() -> TestResult {
    kvmapi(
        "kvmapi-gicv2",
        Machine::virt_gicv2().with_smp(2),
        &["its", "redist-regions"],
    )
}

/// KServ's `kvmapi` and `version` tests under KCore on `machine`; each of
/// `skipped` must have a line saying it is skipped as GICv3-only, and on a
/// GICv2 host (some skipped) the `GRP_CPU_REGS` checks must have run.
fn kvmapi(name: &str, machine: Machine, skipped: &[&str]) -> TestResult {
    let boot = Boot::Kcore {
        image: kcore_image()?,
    };
    let (report, run) = batch(name, machine, boot, &["kvmapi", "version"])?;
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));
    let order: Vec<&str> = report.tests.iter().map(|t| t.name.as_str()).collect();
    if order != ["kvmapi", "version"]
        || report.verdict("kvmapi") != Some(Verdict::Pass)
        || report.verdict("version") != Some(Verdict::Pass)
    {
        return Err(fail(format!(
            "expected `kvmapi` and `version` to pass, got {:?}",
            report.tests
        )));
    }
    // Every check of the tool passed, and both guests (non-protected,
    // protected) passed every test.
    if let Some(problem) = kvmapi_shortfall(&report) {
        return Err(fail(problem));
    }
    let lines = run.session.lines();
    for what in skipped {
        let skip = format!("kvmapi: {what}: SKIP GICv3 only");
        if !lines.iter().any(|l| l.contains(&skip)) {
            return Err(fail(format!("no `{skip}` line on the console")));
        }
    }
    // The guest's ITS tests (`<vm>-its`): on a GICv3 host they pass in both
    // VMs (the protected one's tables read through KCore); on a GICv2 host
    // both skip (no ITS).
    let gicv2 = !skipped.is_empty();
    for vm in ["guest", "protected-guest"] {
        let want = if gicv2 {
            format!("kvmapi: {vm}-its: SKIP no ITS")
        } else {
            format!("kvmapi: {vm}-its: PASS")
        };
        if !lines.iter().any(|l| l.contains(&want)) {
            return Err(fail(format!("no `{want}` line on the console")));
        }
    }
    let gicv2_checks = ["gicv2-cpu-get-pmr", "gicv2-cpu-get-bpr", "gicv2-cpu-iidr"];
    for check in gicv2_checks.iter().filter(|_| !skipped.is_empty()) {
        let pass = format!("kvmapi: {check}: PASS");
        if !lines.iter().any(|l| l.contains(&pass)) {
            return Err(fail(format!("no `{pass}` line on the console")));
        }
    }
    Ok(())
}
