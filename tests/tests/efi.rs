//! KCore booted as a UEFI application: `build/kcore.efi` started by
//! Debian's EDK2 on QEMU `virt` from an EFI system partition
//! (`docs/platforms.md`, "UEFI servers").
//!
//! In device-tree mode (`acpi=off`), `kcore.efi` copies the boot image it
//! embeds to a 2 MiB-aligned home, describes only the RAM the EFI memory
//! map leaves free (runtime services and reserved memory are holes), puts
//! its load options in `/chosen/bootargs` and the UEFI hand-off (system
//! table, memory map with runtime services mapped 1:1) in `/chosen`'s
//! `linux,uefi-*`, exits boot services and enters KCore at EL2 with the MMU
//! off. The test checks that KServ comes up at EL1 on all 4 CPUs and passes
//! `hvc`, `protection`, `vmisolation`, `efi` (efivars through the runtime
//! services) and `kvmguest` (the Linux guests, protected and not, through
//! `/dev/kvm`), that the RAM `kcore.efi` described holds KCore's
//! image and pool outside every range it reserved (the firmware's runtime
//! and reserved regions, KServ's memory map), and reports
//! the time from reset to KServ's `/init` (EDK2 and the copy of the image
//! included; EDK2 starts the application from the partition's
//! removable-media path, `EFI/BOOT/BOOTAA64.EFI`, with no UEFI Shell and
//! its 5 s countdown, and the arguments come from `kcore.args`).
//!
//! With ACPI only (`efi_acpi_4_cpus_at_el1`), `kcore.efi` builds KCore's
//! tree from the ACPI tables and KServ runs on ACPI with a stub tree: the
//! test checks KServ's log (its tables, PSCI from ACPI, all CPUs at EL1, no
//! PCI host bridge, the shim finding KCore in `/chosen`), the same tests
//! and KServ's `efi` test (efivars through the runtime services
//! `kcore.efi` mapped 1:1), that `kcore.efi` kept the DSDT's fw_cfg,
//! virtio-mmio transports and PCI host bridge for KCore and left the
//! console UART to KServ, the Linux guests of KServ's `kvmguest` test
//! (protected and not, through `/dev/kvm` on a KServ that runs on ACPI),
//! and then, in the same boot, the whole attack suite: every row must pass, and `dma-masters` must find fw_cfg and a
//! transport under their renamed IDs in KServ's DSDT and fault on both
//! (the suite adds about 93 s of KServ's time; the test took 129 s).
//! Before that boot, `kcore.efi` is started twice on AML that breaks the
//! `acpi` crate's interpreter (`kcore.efi_fault=`, `efi/src/fault.rs`):
//! from the removable-media path on AML that runs for ever, which the 10 s
//! limit must stop, then from the UEFI Shell's `startup.nsh` on AML that
//! panics it; each must say why it stopped and return to the firmware,
//! which goes on (about 30 s more).

use anyhow::Context;
use kcore_qemu::kserv::BatchReport;
use kcore_qemu::kserv::attack_rows;
use kcore_qemu::{Boot, Machine, QemuCommand, Regex};
use kcore_systests::{
    BOOT_TIMEOUT, Failure, SlotSession, TestResult, artefact, batch_command, build_dir,
    kcore_trouble, kvmguest_shortfall,
};
use std::time::Duration;

const TESTS: &[&str] = &["boot", "hvc", "protection", "vmisolation"];

fn efi_boot(esp: &str) -> anyhow::Result<Boot> {
    Ok(Boot::Efi {
        efi: artefact("kcore.efi")?,
        esp: build_dir().join(esp),
    })
}

/// `[base, end)` ranges in the hexadecimal `[0x.., 0x..)` notation of
/// KCore's log, after `prefix` in `line`.
fn ranges_after(line: &str, prefix: &str) -> Vec<(u64, u64)> {
    let Some(rest) = line.split(prefix).nth(1) else {
        return Vec::new();
    };
    let Ok(re) = Regex::new(r"\[0x([0-9a-f]+), 0x([0-9a-f]+)\)") else {
        return Vec::new();
    };
    re.captures_iter(rest)
        .filter_map(|c| {
            let base = u64::from_str_radix(&c[1], 16).ok()?;
            let end = u64::from_str_radix(&c[2], 16).ok()?;
            Some((base, end))
        })
        .collect()
}

/// Boots `machine` through `kcore.efi` (from `build/esp-systest-<name>`)
/// with KServ's `tests`, which must pass within `timeout`, after `failing`
/// starts of `kcore.efi` (`QemuCommand::efi_failing_starts`); checks that
/// KCore started after `kcore.efi`'s hand-off and returns the report, the
/// run and the index of that hand-off line.
fn efi_batch_within(
    name: &str,
    machine: Machine,
    tests: &[&str],
    timeout: Duration,
    failing: &[&str],
) -> anyhow::Result<(BatchReport, SlotSession, usize)> {
    let boot = efi_boot(&format!("esp-systest-{name}"))?;
    let cmd = QemuCommand::new(machine, boot).efi_failing_first(failing);
    let (report, run) = batch_command(name, cmd, tests, timeout)?;
    let lines = run.session.lines();
    let loader = lines
        .iter()
        .position(|l| l.contains("kcore.efi: KCore at "));
    let problem = match (loader, report.kcore_banner) {
        (None, _) => Some("kcore.efi did not report where it put KCore"),
        (_, None) => Some("no KCore banner: KCore did not start"),
        (Some(l), Some(b)) if b < l => Some("KCore's banner came before kcore.efi's hand-off"),
        _ => None,
    };
    match (problem, loader) {
        (None, Some(l)) => Ok((report, run, l)),
        (p, _) => Err(run
            .session
            .failure(format!("{name}: {}", p.unwrap_or("no hand-off")))
            .into()),
    }
}

/// Why KServ's `boot` test does not show `cpus` CPUs online at EL1, if it
/// does not.
fn not_up_at_el1(report: &BatchReport, cpus: usize) -> Option<String> {
    let boot_line = report.tests.iter().find(|t| t.name == "boot");
    let up = format!("{cpus} CPUs online");
    (!boot_line.is_some_and(|t| t.detail.contains(&up) && t.detail.contains("EL1")))
        .then(|| format!("KServ is not up with {cpus} CPUs at EL1: {boot_line:?}"))
}

/// The checks both machines share once the batch passed: KServ up with 4
/// CPUs at EL1, no trouble from KCore; prints the boot time.
fn finish(name: &str, report: &BatchReport, run: &SlotSession) -> TestResult {
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));
    if let Some(problem) = not_up_at_el1(report, 4) {
        return Err(fail(problem));
    }
    let lines = run.session.lines();
    if let Some(l) = lines.iter().find(|l| kcore_trouble(l)) {
        return Err(fail(format!("KCore reported trouble: {l}")));
    }
    let init = report.time.as_ref().context("no KSERV-TIME line")?;
    eprintln!(
        "{name}: reset to KServ's /init in {:.1} s (EDK2, kcore.efi, KCore, Linux), whole run {:.1} s",
        init.millis() / 1000.0,
        run.session.elapsed().as_secs_f64()
    );
    Ok(())
}

#[test]
fn efi_device_tree_4_cpus_at_el1() -> TestResult {
    let name = "efi-dt";
    let tests = [TESTS, &["efi", "kvmguest"]].concat();
    let (report, run, loader) = efi_batch_within(
        name,
        Machine::virt_efi_dt(),
        &tests,
        BOOT_TIMEOUT + Duration::from_secs(120),
        &[],
    )?;
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));
    let lines = run.session.lines();
    let find = |s: &str| lines.iter().position(|l| l.contains(s));
    if !lines[loader].contains("bootargs \"kserv.") {
        return Err(fail(format!(
            "the load options did not become bootargs: {}",
            lines[loader]
        )));
    }
    // Runtime services handed on: KServ's kernel maps them (the `efi`
    // test then reads the variables through them).
    if let Some(problem) = kvmguest_shortfall(&report, &lines) {
        return Err(fail(problem));
    }
    if find("Remapping and enabling EFI services").is_none() {
        return Err(fail(
            "KServ's kernel did not enable EFI runtime services".into(),
        ));
    }
    // kcore.efi describes the machine's memory as Linux reads the EFI map:
    // RAM banks, with what the firmware keeps (runtime services, reserved
    // memory) and KServ's map reserved. KCore's image and pool lie inside
    // a bank and outside every reserved range. (KServ's kernel reads the
    // EFI map itself and adds the variable-store flash as `nomap` memory,
    // which KCore's banks leave out: it is MMIO.)
    let banks: Vec<(u64, u64)> = lines
        .iter()
        .flat_map(|l| ranges_after(l, "kcore.efi: RAM"))
        .collect();
    let reserved: Vec<(u64, u64)> = lines
        .iter()
        .flat_map(|l| ranges_after(l, "kcore.efi: reserved"))
        .collect();
    let owns = find("KCore owns")
        .map(|i| ranges_after(&lines[i], "KCore owns"))
        .unwrap_or_default();
    if banks.is_empty() || reserved.is_empty() || owns.len() != 2 {
        return Err(fail(format!(
            "cannot read kcore.efi's RAM ({banks:x?}) and reserved ranges ({reserved:x?}) or KCore's regions ({owns:x?})"
        )));
    }
    let ram = (1u64 << 30, 2u64 << 30);
    if let Some(b) = banks.iter().find(|b| b.0 < ram.0 || b.1 > ram.1) {
        return Err(fail(format!(
            "kcore.efi described {b:x?}, outside the machine's RAM [{:#x}, {:#x})",
            ram.0, ram.1
        )));
    }
    for r in &owns {
        let in_bank = banks.iter().any(|b| b.0 <= r.0 && r.1 <= b.1);
        let clash = reserved.iter().find(|x| x.0 < r.1 && r.0 < x.1);
        if !in_bank || clash.is_some() {
            return Err(fail(format!(
                "KCore's {r:x?} is not in the RAM kcore.efi described ({banks:x?}) or meets a reserved range ({clash:x?})"
            )));
        }
    }
    finish(name, &report, &run)
}

/// `Machine::virt_efi_acpi()`: EDK2 describes the machine with ACPI only.
/// `kcore.efi` builds KCore's tree from the tables, hands KServ its own
/// MADT/DSDT/FADT/XSDT/RSDP and the EFI memory map, maps runtime services
/// 1:1; KCore gives KServ a stub tree; KServ runs on ACPI at EL1.
#[test]
fn efi_acpi_4_cpus_at_el1() -> TestResult {
    let name = "efi-acpi";
    // The Linux guests, protected and not, through `/dev/kvm` on KServ's
    // ACPI; then the attack suite, in the same boot: its `dma-masters` row
    // must find fw_cfg and a virtio-mmio transport in KServ's DSDT and fault
    // on both (KCore keeps the devices the DSDT describes).
    let tests = [TESTS, &["efi", "kvmguest", "attacks"]].concat();
    // Before the boot, two starts of kcore.efi that must stop while reading
    // AML that breaks the interpreter (`kcore_efi::fault`): the
    // removable-media boot's on AML that loops for ever, then the UEFI
    // Shell's on AML that panics it; each must say so and return to the
    // firmware, which goes on to the next start.
    let (report, run, loader) = efi_batch_within(
        name,
        Machine::virt_efi_acpi(),
        &tests,
        Duration::from_secs(900),
        &["kcore.efi_fault=aml-loop", "kcore.efi_fault=aml-panic"],
    )?;
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));
    let lines = run.session.lines();
    let find = |s: &str| lines.iter().position(|l| l.contains(s));
    let stopped = "kcore.efi: stopped while reading the firmware's AML";
    let stops: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains(stopped))
        .collect();
    let expected_stops = [
        "it ran for more than 10 s without end",
        "out of range for slice",
    ];
    let stops_ok = stops.len() == 2
        && stops
            .iter()
            .zip(expected_stops)
            .all(|(&i, e)| lines[i].contains(e))
        && stops.iter().all(|&i| {
            lines
                .get(i + 1)
                .is_some_and(|l| l.contains("KCore is not started; back to the firmware"))
        })
        && stops[1] < loader;
    if !stops_ok {
        let said: Vec<&String> = stops.iter().map(|&i| &lines[i]).collect();
        return Err(fail(format!(
            "kcore.efi did not stop on the looping and then the panicking AML, each returning to the firmware, before the start that boots: {said:?}"
        )));
    }
    if !lines[loader].contains("4 CPUs from the MADT") {
        return Err(fail(format!(
            "kcore.efi did not read 4 CPUs: {}",
            lines[loader]
        )));
    }
    // KCore's side: the stub tree and KCore's memory reserved in the map.
    if find("kcore: ACPI machine: KServ gets a stub device tree").is_none() {
        return Err(fail(
            "KCore did not give KServ a stub tree after kcore.efi's hand-off".into(),
        ));
    }
    // KServ's side, in its kernel log: ACPI on with KServ's tables (the
    // RSDP kcore.efi wrote), PSCI from the FADT, every CPU at EL1, no PCI
    // host bridge probed (KCore keeps the ECAM), the shim finding KCore
    // through /chosen.
    let expected = [
        "ACPI: RSDP 0x",
        "psci: probing for conduit method from ACPI",
        "CPU: All CPU(s) started at EL1",
        "Remapping and enabling EFI services",
        "kserv-shim: KCore announced in /chosen (ACPI machine)",
        "kserv-shim: kvm: /dev/kvm registered",
    ];
    if let Some(missing) = expected.iter().find(|e| find(e).is_none()) {
        return Err(fail(format!("KServ's log lacks \"{missing}\"")));
    }
    // kcore.efi read the DSDT: fw_cfg, the transports, the PCI host bridge
    // and its ECAM reservation are KCore's.
    for kept in [
        "kcore.efi: KCore keeps \\_SB_.FWCF (QEMU0002): [0x9020000, 0x9020018)",
        "kcore.efi: KCore keeps \\_SB_.VR31 (LNRO0005): [0xa003e00, 0xa004000)",
        "kcore.efi: KCore keeps \\_SB_.PCI0 (PNP0A08)",
    ] {
        if find(kept).is_none() {
            return Err(fail(format!("kcore.efi did not say \"{kept}\"")));
        }
    }
    if let Some(l) = lines.iter().find(|l| l.contains("KCore keeps \\_SB_.COM0")) {
        return Err(fail(format!("KCore took KServ's console: {l}")));
    }
    if let Some(problem) = kvmguest_shortfall(&report, &lines) {
        return Err(fail(problem));
    }
    let rows = attack_rows(&lines);
    if let Some(r) = rows.iter().find(|r| r.passed != Some(true)) {
        return Err(fail(format!(
            "attack row {}: {:?} {}",
            r.name, r.passed, r.observed
        )));
    }
    let dma = rows.iter().find(|r| r.name == "dma-masters");
    let on_acpi = dma.is_some_and(|r| {
        ["renamed KCOR0002", "renamed KCOR0005"]
            .iter()
            .all(|s| r.observed.contains(s))
            && r.observed.matches("faulted").count() >= 2
    });
    if !on_acpi {
        return Err(fail(format!(
            "the dma-masters row did not fault on fw_cfg and a transport found in KServ's DSDT: {dma:?}"
        )));
    }
    if let Some(l) = lines.iter().find(|l| l.contains("PCI host bridge to bus")) {
        return Err(fail(format!(
            "KServ probed the PCI host bridge KCore keeps: {l}"
        )));
    }
    let tables = find("kcore.efi: KServ's ACPI tables: RSDP ")
        .and_then(|i| lines[i].split("RSDP 0x").nth(1))
        .and_then(|r| r.split(',').next())
        .map(|r| r.to_string());
    let rsdp = find("ACPI: RSDP 0x").map(|i| lines[i].to_ascii_lowercase());
    match (tables, rsdp) {
        (Some(t), Some(r)) if r.contains(&t) => {}
        (t, r) => {
            return Err(fail(format!(
                "KServ does not read the RSDP kcore.efi wrote ({t:?} vs {r:?})"
            )));
        }
    }
    finish(name, &report, &run)
}

/// A server's shape through the UEFI/ACPI path: `kcore.efi` on `virt` with
/// 8 CPUs in two NUMA nodes, described by ACPI only (QEMU's MADT with 8
/// GICCs, its SRAT with two memory nodes). KCore's tree comes from the
/// MADT and its RAM banks and ownership table from the EFI memory map; the
/// SRAT reaches KServ untouched. KServ must come up at EL1 on all 8 CPUs,
/// read both nodes from the SRAT and pass `boot`, `hvc`, `hotplug` (every
/// secondary off and on again through KCore's PSCI), `protection` and
/// `vmisolation`.
///
/// Linux 6.1 then runs with one node, as it does booted directly by the
/// same EDK2 (Debian's kernel as the EFI application, no KCore: the same
/// lines): the firmware's memory map lists its flash at `0x4000000` as
/// write-back memory, which no SRAT node holds, and Linux's NUMA setup
/// falls back to one node. The test takes either outcome, the fallback
/// only with that warning.
#[test]
fn efi_acpi_8_cpus_in_two_numa_nodes() -> TestResult {
    let name = "efi-acpi-server";
    let machine = Machine::virt_efi_acpi()
        .with_smp(8)
        .with_mem_mib(2048)
        .with_numa(2);
    let (report, run, loader) = efi_batch_within(
        name,
        machine,
        &["boot", "hvc", "hotplug", "protection", "vmisolation"],
        Duration::from_secs(900),
        &[],
    )?;
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));
    let lines = run.session.lines();
    let has = |s: &str| lines.iter().any(|l| l.contains(s));
    if !lines[loader].contains("8 CPUs from the MADT") {
        return Err(fail(format!(
            "kcore.efi did not read 8 CPUs: {}",
            lines[loader]
        )));
    }
    for want in [
        "kcore: ACPI machine: KServ gets a stub device tree",
        "8 CPUs (",
        "ACPI: SRAT: Node 0 PXM 0 [mem 0x40000000-0x7fffffff]",
        "ACPI: SRAT: Node 1 PXM 1 [mem 0x80000000-0xbfffffff]",
        "CPU: All CPU(s) started at EL1",
    ] {
        if !has(want) {
            return Err(fail(format!("no `{want}` on the console")));
        }
    }
    let flash_fallback = has("smp: Brought up 1 node, 8 CPUs")
        && has("NUMA: Warning: invalid memblk node 16 [mem 0x0000000004000000-0x0000000007ffffff]");
    if !has("smp: Brought up 2 nodes, 8 CPUs") && !flash_fallback {
        return Err(fail(
            "KServ brought up neither both NUMA nodes nor stock Linux's one-node fallback".into(),
        ));
    }
    if let Some(l) = lines.iter().find(|l| {
        l.contains("no GICv3 redistributor found") || l.contains("kcore: warning: ignoring")
    }) {
        return Err(fail(format!("KCore left something out: {l}")));
    }
    if let Some(problem) = not_up_at_el1(&report, 8) {
        return Err(fail(problem));
    }
    if let Some(l) = lines.iter().find(|l| kcore_trouble(l)) {
        return Err(fail(format!("KCore reported trouble: {l}")));
    }
    Ok(())
}
