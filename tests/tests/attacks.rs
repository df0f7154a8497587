//! The attack suite: KServ's `attacks` test plays a malicious KServ against
//! KCore while a protected Linux guest runs (kserv_attack.ko and
//! `kserv-tools attack`): its memory through the linear map, a fresh kernel
//! mapping, `/dev/mem` and a raw user mapping; KCore's memory; foreign,
//! double and racing donations and shares; reclaim of the running VM;
//! images changed before and after verification; a first PC outside the
//! image; the running vCPUs' registers; hardware-mapped interrupts; the run
//! page rewritten between exit and entry and during entry; the run page
//! offered away while its vCPU runs; the GIC's ITS and redistributor table
//! registers aimed at KCore's and the victim's memory; teardown during
//! exits; SDEI and other non-PSCI SMCs; 100,000 random hypercalls from 2
//! CPUs. On a GICv2 host (QEMU `virt,gic-version=2`) the ITS and redistributor rows are not applicable
//! (and must say so) and KCore's own GICv2 frames take their place: a fresh
//! mapping of GICH or GICV faults in KServ. Every row must be there
//! and pass, the victim must keep its memory and finish with its marker and
//! checksum, KCore's self-check must agree afterwards, KServ's `version`
//! test must still find KCore answering, and KCore must report no trouble.
//! `cargo xtask security` runs the same test and writes docs/security.md.

use kcore_qemu::kserv::attack_rows;
use kcore_qemu::{Boot, Machine};
use kcore_systests::{Failure, TestResult, batch_within, kcore_image, kcore_trouble};
use std::time::Duration;

/// Every row the suite must report on a GICv3 host, in order.
const ROWS: [&str; 29] = [
    "scan",
    "linear-read",
    "linear-write",
    "vmap",
    "kcore-map",
    "devmem",
    "rawmap",
    "donate-foreign",
    "donate-twice",
    "share-race",
    "reclaim-running",
    "image-before",
    "image-after",
    "pc-outside",
    "regs",
    "hw-irq",
    "toctou",
    "run-page",
    "its",
    "gic-redist",
    "dma-masters",
    "mmio-consent",
    "gic-table",
    "secondary",
    "smc",
    "destroy-in-exit",
    "fuzz",
    "victim",
    "self-check",
];

/// The rows a GICv2 host runs instead of the GICv3-only ones, and those it
/// reports as not applicable.
const GICV2_ROWS: [(&str, &str); 2] = [("its", "gich"), ("gic-redist", "gicv")];

#[test]
fn every_attack_is_refused_or_faults_in_kserv() -> TestResult {
    attacks("attacks", Machine::virt_gicv3().with_smp(4), false)
}

/// The same on a GICv2 host.
#[test]
fn every_attack_is_refused_or_faults_in_kserv_on_a_gicv2_host() -> TestResult {
    attacks("attacks-gicv2", Machine::virt_gicv2().with_smp(4), true)
}

/// KServ's `attacks` and `version` tests under KCore on `machine`, whose
/// GIC is a GICv2 if `gicv2`.
fn attacks(name: &str, machine: Machine, gicv2: bool) -> TestResult {
    let boot = Boot::Kcore {
        image: kcore_image()?,
    };
    let (_report, run) = batch_within(
        name,
        machine,
        boot,
        &["attacks", "version"],
        Duration::from_secs(900),
    )?;
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));
    let lines = run.session.lines();
    let rows = attack_rows(&lines);
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    let (want, not_applicable): (Vec<&str>, Vec<&str>) = if gicv2 {
        let swap = |r: &'static str| {
            GICV2_ROWS
                .iter()
                .find(|(v3, _)| *v3 == r)
                .map_or(r, |(_, v2)| *v2)
        };
        (
            ROWS.iter().map(|r| swap(r)).collect(),
            GICV2_ROWS.iter().map(|(v3, _)| *v3).collect(),
        )
    } else {
        (
            ROWS.to_vec(),
            GICV2_ROWS.iter().map(|(_, v2)| *v2).collect(),
        )
    };
    if names != want {
        return Err(fail(format!("rows {names:?}, expected {want:?}")));
    }
    if let Some(r) = not_applicable.iter().find(|r| {
        !lines.iter().any(|l| {
            l.contains(&format!(
                "KSERV-ATTACK {r} not-applicable the host's GIC is"
            ))
        })
    }) {
        return Err(fail(format!("no line saying row {r} is not applicable")));
    }
    if let Some(r) = rows.iter().find(|r| r.passed != Some(true)) {
        return Err(fail(format!(
            "row {}: {:?} {}",
            r.name, r.passed, r.observed
        )));
    }
    let fuzz = rows
        .iter()
        .find(|r| r.name == "fuzz")
        .map(|r| r.observed.as_str());
    if !fuzz.is_some_and(|o| o.contains("100000 calls from 2 CPUs")) {
        return Err(fail(format!("the fuzzer's report: {fuzz:?}")));
    }
    if let Some(bad) = lines.iter().find(|l| kcore_trouble(l)) {
        return Err(fail(format!("KCore reported trouble: {bad:?}")));
    }
    Ok(())
}
