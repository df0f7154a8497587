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
//! exits; 100,000 random hypercalls from 2 CPUs. Every row must be there
//! and pass, the victim must keep its memory and finish with its marker and
//! checksum, KCore's self-check must agree afterwards, KServ's `version`
//! test must still find KCore answering, and KCore must report no trouble.
//! `cargo xtask security` runs the same test and writes docs/security.md.

use kcore_qemu::kserv::attack_rows;
use kcore_qemu::{Boot, Machine};
use kcore_systests::{Failure, TestResult, batch_within, kcore_image, kcore_trouble};
use std::time::Duration;

/// Every row the suite must report, in order.
const ROWS: [&str; 27] = [
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
    "secondary",
    "destroy-in-exit",
    "fuzz",
    "victim",
    "self-check",
];

#[test]
fn every_attack_is_refused_or_faults_in_kserv() -> TestResult {
    let name = "attacks";
    let boot = Boot::Kcore {
        image: kcore_image()?,
    };
    let (_report, run) = batch_within(
        name,
        Machine::virt_gicv3().with_smp(4),
        boot,
        &["attacks", "version"],
        Duration::from_secs(900),
    )?;
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));
    let lines = run.session.lines();
    let rows = attack_rows(&lines);
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    if names != ROWS {
        return Err(fail(format!("rows {names:?}, expected {ROWS:?}")));
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
