//! KServ on Debian's 6.12 (bookworm-backports) instead of 6.1: KCore boots
//! `build/kcore-6.12.img`, whose kernel is Debian's stock 6.12 arm64 `Image`
//! and whose initramfs carries the modules built against 6.12's headers and
//! 6.12's `Image` as the `kvmguest` guest. On the GICv3 `virt` machine with
//! four Cortex-A72 CPUs, KServ's `boot`, `version`, `kvmapi` and `kvmguest`
//! tests must all pass in one boot, with the same checks as on 6.1
//! (`kvmapi.rs`, `kvm_guest.rs`); the kernel, KServ's and the guest's, must
//! be 6.12, the shim must load, and neither KCore nor the kernel may report
//! trouble (a warning, an oops, a call trace).

use std::time::Duration;

use kcore_qemu::{Boot, Machine};
use kcore_systests::{
    Failure, KVMGUEST_RUNS, TestResult, batch_within, kcore_image_6_12, kcore_trouble,
    kernel_trouble, kvmapi_shortfall, kvmguest_shortfall,
};

/// `kvmguest` boots three Linux guests: 6.12's larger kernel takes about
/// 2.5 minutes for the four tests alone on an idle machine.
const TIMEOUT: Duration = Duration::from_secs(600);

#[test]
fn kserv_on_debian_6_12_runs_the_kvm_api_and_linux_guests() -> TestResult {
    let name = "kserv-6.12";
    let boot = Boot::Kcore {
        image: kcore_image_6_12()?,
    };
    let (report, run) = batch_within(
        name,
        Machine::virt_gicv3().with_smp(4),
        boot,
        &["boot", "version", "kvmapi", "kvmguest"],
        TIMEOUT,
    )?;
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));
    let lines = run.session.lines();
    // KServ's banner comes first; the guests' come later, relayed.
    let first_banner = lines.iter().find(|l| l.contains("Linux version "));
    if !first_banner.is_some_and(|l| l.contains("Linux version 6.12.")) {
        return Err(fail(format!(
            "KServ's kernel is not Linux 6.12: {first_banner:?}"
        )));
    }
    if !lines
        .iter()
        .any(|l| l.contains("KSERV-INIT: insmod kserv_shim.ko: ok"))
    {
        return Err(fail("kserv_shim.ko did not load".into()));
    }
    if let Some(problem) = kvmapi_shortfall(&report) {
        return Err(fail(problem));
    }
    if let Some(problem) = kvmguest_shortfall(&report, &lines) {
        return Err(fail(problem));
    }
    for guest in KVMGUEST_RUNS {
        let prefix = format!("kvmguest {guest}| ");
        if !lines
            .iter()
            .any(|l| l.contains(&prefix) && l.contains("KCORE-GUEST: hello from 6.12."))
        {
            return Err(fail(format!(
                "the `{guest}` guest of kvmguest did not run Linux 6.12"
            )));
        }
    }
    if let Some(bad) = lines.iter().find(|l| kcore_trouble(l)) {
        return Err(fail(format!("KCore reported trouble: {bad:?}")));
    }
    if let Some(bad) = lines.iter().find(|l| kernel_trouble(l)) {
        return Err(fail(format!("the kernel reported trouble: {bad:?}")));
    }
    Ok(())
}
