//! KCore booted as a UEFI application: `build/kcore.efi` started by
//! Debian's EDK2 on QEMU `virt` from an EFI system partition
//! (`docs/platforms.md`, "UEFI servers").
//!
//! In device-tree mode (`acpi=off`), `kcore.efi` copies the boot image it
//! embeds to a 2 MiB-aligned home, describes only the RAM the EFI memory
//! map leaves free (runtime services and reserved memory are holes), puts
//! its load options in `/chosen/bootargs`, exits boot services and enters
//! KCore at EL2 with the MMU off. The test checks that KServ comes up at
//! EL1 on all 4 CPUs and passes `hvc`, `protection` and `vmisolation`,
//! that the RAM `kcore.efi` described leaves memory out (the firmware's
//! runtime and reserved regions) and holds KCore's image and pool and all
//! of KServ's memory, and reports
//! the time from reset to KServ's `/init` (EDK2, the UEFI Shell's 5 s
//! countdown and the copy of the image included).
//!
//! With ACPI only, `kcore.efi` must refuse cleanly: a message naming ACPI
//! and a return to the firmware, without exiting boot services.

use anyhow::Context;
use kcore_qemu::{Boot, Machine, QemuCommand, Regex};
use kcore_systests::{
    BOOT_TIMEOUT, Failure, TestResult, artefact, batch, build_dir, kcore_trouble, spawn,
};

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

#[test]
fn efi_device_tree_4_cpus_at_el1() -> TestResult {
    let name = "efi-dt";
    let machine = Machine::virt_efi_dt();
    let (report, run) = batch(name, machine, efi_boot("esp-systest-efi-dt")?, TESTS)?;
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));
    let lines = run.session.lines();
    let find = |s: &str| lines.iter().position(|l| l.contains(s));
    let Some(loader) = find("kcore.efi: KCore at ") else {
        return Err(fail("kcore.efi did not report where it put KCore".into()));
    };
    if !lines[loader].contains("bootargs \"kserv.") {
        return Err(fail(format!(
            "the load options did not become bootargs: {}",
            lines[loader]
        )));
    }
    let Some(banner) = report.kcore_banner else {
        return Err(fail("no KCore banner: KCore did not start".into()));
    };
    if banner < loader {
        return Err(fail(
            "KCore's banner came before kcore.efi's hand-off".into(),
        ));
    }
    let boot_line = report.tests.iter().find(|t| t.name == "boot");
    if !boot_line.is_some_and(|t| t.detail.contains("4 CPUs online") && t.detail.contains("EL1")) {
        return Err(fail(format!(
            "KServ is not up with 4 CPUs at EL1: {boot_line:?}"
        )));
    }
    // The RAM kcore.efi described leaves out what the firmware keeps
    // (runtime services, reserved memory): less than the machine's 1 GiB.
    // KCore's image and pool, and all the memory KServ's kernel sees, lie
    // inside it.
    let banks: Vec<(u64, u64)> = lines
        .iter()
        .flat_map(|l| ranges_after(l, "kcore.efi: RAM"))
        .collect();
    let owns = find("KCore owns")
        .map(|i| ranges_after(&lines[i], "KCore owns"))
        .unwrap_or_default();
    let kserv: Vec<(u64, u64)> = lines
        .iter()
        .filter_map(|l| l.split("node   0: [mem 0x").nth(1))
        .filter_map(|r| {
            let (base, end) = r.trim_end_matches(']').split_once("-0x")?;
            let base = u64::from_str_radix(base, 16).ok()?;
            let last = u64::from_str_radix(end, 16).ok()?;
            Some((base, last + 1))
        })
        .collect();
    if banks.is_empty() || owns.len() != 2 || kserv.is_empty() {
        return Err(fail(format!(
            "cannot read kcore.efi's RAM ({banks:x?}), KCore's regions ({owns:x?}) or KServ's memory ({kserv:x?})"
        )));
    }
    let described: u64 = banks.iter().map(|b| b.1 - b.0).sum();
    let ram = (1u64 << 30, 2u64 << 30);
    if described >= ram.1 - ram.0 || banks.iter().any(|b| b.0 < ram.0 || b.1 > ram.1) {
        return Err(fail(format!(
            "kcore.efi described {described:#x} bytes ({banks:x?}), not the free part of [{:#x}, {:#x})",
            ram.0, ram.1
        )));
    }
    for r in owns.iter().chain(&kserv) {
        if !banks.iter().any(|b| b.0 <= r.0 && r.1 <= b.1) {
            return Err(fail(format!(
                "{r:x?} (KCore's or KServ's) is not in the RAM kcore.efi described ({banks:x?})"
            )));
        }
    }
    if let Some(l) = lines.iter().find(|l| kcore_trouble(l)) {
        return Err(fail(format!("KCore reported trouble: {l}")));
    }
    let init = report.time.as_ref().context("no KSERV-TIME line")?;
    eprintln!(
        "{name}: reset to KServ's /init in {:.1} s (EDK2, the Shell's countdown, kcore.efi, KCore, Linux), whole run {:.1} s",
        init.millis() / 1000.0,
        run.session.elapsed().as_secs_f64()
    );
    Ok(())
}

#[test]
fn efi_acpi_only_is_refused_cleanly() -> TestResult {
    let name = "efi-acpi";
    let cmd = QemuCommand::new(Machine::virt_efi_acpi(), efi_boot("esp-systest-efi-acpi")?);
    let mut run = spawn(name, &cmd)?;
    run.session
        .wait_for("kcore.efi: KCore boot loader", BOOT_TIMEOUT)?;
    let refusal = run.session.wait_for(
        "kcore.efi: the firmware describes this machine with ACPI only",
        BOOT_TIMEOUT,
    )?;
    // The refusal comes before anything is allocated or exited: the
    // application returns to the Shell with boot services running.
    let lines = run.session.lines();
    if lines
        .iter()
        .any(|l| l.contains("exiting boot services") || l.contains("kcore: KCore"))
    {
        return Err(Failure::from(run.session.failure(format!(
            "{name}: kcore.efi went on after refusing: {}",
            refusal.line
        ))));
    }
    run.session.kill();
    Ok(())
}
