//! A larger machine than the other tests use, as a server is: `virt` with 8
//! CPUs in two NUMA nodes (each node's RAM a memory node of its own in the
//! tree, its CPUs tagged with the node). KCore must find every CPU's
//! redistributor and bring all 8 up for KServ, and KServ must come up at
//! EL1 on all of them with both nodes and pass `boot`, `hvc`, `hotplug`
//! (every secondary off and on again through KCore's PSCI), `protection`
//! and `vmisolation`.
//!
//! What QEMU cannot show here: one redistributor region per CPU (an ACPI
//! MADT without a GICR structure). A device tree cannot say that a region
//! holds a single redistributor, so Linux (KServ) walks past such a region
//! looking for `GICR_TYPER.Last`; that layout is checked on KCore's side by
//! `kcore/tests/host_stage2.rs` (the regions join into one trapped run) and
//! `firmware/acpi2dt` (256 per-CPU regions through the platform parser).

use kcore_qemu::{Boot, Machine};
use kcore_systests::{Failure, TestResult, batch_within, kcore_image};
use std::time::Duration;

#[test]
fn eight_cpus_in_two_numa_nodes() -> TestResult {
    let name = "server";
    let machine = Machine::virt_gicv3()
        .with_smp(8)
        .with_mem_mib(2048)
        .with_numa(2);
    let boot = Boot::Kcore {
        image: kcore_image()?,
    };
    let (_report, run) = batch_within(
        name,
        machine,
        boot,
        &["boot", "hvc", "hotplug", "protection", "vmisolation"],
        Duration::from_secs(900),
    )?;
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));
    let lines = run.session.lines();
    let has = |s: &str| lines.iter().any(|l| l.contains(s));
    for want in [
        "1 redistributor regions, trapped as 1 runs",
        "8 CPUs (",
        "CPU: All CPU(s) started at EL1",
        "smp: Brought up 2 nodes, 8 CPUs",
    ] {
        if !has(want) {
            return Err(fail(format!("no `{want}` on the console")));
        }
    }
    if let Some(l) = lines.iter().find(|l| {
        l.contains("no GICv3 redistributor found") || l.contains("kcore: warning: ignoring")
    }) {
        return Err(fail(format!("KCore left something out: {l}")));
    }
    Ok(())
}
