//! `cargo xtask security`: runs the attack suite and writes
//! `docs/security.md`.
//!
//! It boots KCore -> KServ under QEMU (`virt`, GICv3, 4 CPUs) with KServ's
//! `attacks` test (`kserv-shim/initramfs/tests/attacks`): a malicious KServ
//! (`kserv_attack.ko` and `kserv-tools attack`) against KCore while a
//! protected Linux guest runs. Each row's `KSERV-ATTACK` lines -- what it
//! expected, printed before it ran, and what happened -- become one row of
//! the table. The file is written even when a row fails (so the failure is
//! on record); the command then exits non-zero.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kcore_qemu::kserv::{self, AttackRow, attack_rows};
use kcore_qemu::{Machine, QemuCommand, Session};

use crate::fetch::Series;
use crate::paths;
use crate::run::{boot_target, log_path};

/// Arguments of `cargo xtask security`.
#[derive(clap::Args, Debug)]
pub struct SecurityArgs {
    /// The hypercall fuzzer's seed (`kserv.attack_seed`).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to write the table.
    #[arg(long, value_name = "PATH", default_value = "docs/security.md")]
    out: PathBuf,
    /// Seconds the run may take (wall-clock).
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    timeout: u64,
    /// Do not build first; use what is in build/.
    #[arg(long)]
    no_build: bool,
}

/// Runs `cargo xtask security`.
pub fn main(args: SecurityArgs) -> anyhow::Result<()> {
    if !args.no_build {
        crate::build::all()?;
    }
    kcore_qemu::check_qemu()?;
    let machine = Machine::virt_gicv3().with_smp(4);
    machine.validate().map_err(anyhow::Error::msg)?;
    let tests = ["attacks", "version"];
    let cmd = QemuCommand::new(machine.clone(), boot_target(Series::Linux6_1, false, None)?)
        .append(&format!(
            "{} kserv.attack_seed={}",
            kserv::batch_args(&tests, machine.smp),
            args.seed
        ));
    let log = log_path("security");
    eprintln!(
        "security: {machine}; the attack suite, fuzzer seed {}; console in {}",
        args.seed,
        log.display()
    );
    let started = Instant::now();
    let mut session = Session::spawn(&cmd, &log)?;
    let report = kserv::run_batch(&mut session, Duration::from_secs(args.timeout))?;
    let lines = session.lines();
    let rows = attack_rows(&lines);
    let secs = started.elapsed().as_secs();
    let suite = report.check(&tests);

    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        paths::root().join(&args.out)
    };
    let text = render(&rows, &machine.to_string(), args.seed, &commit(), secs);
    std::fs::write(&out, text).with_context(|| format!("cannot write {}", out.display()))?;
    let passed = rows.iter().filter(|r| r.passed == Some(true)).count();
    eprintln!(
        "security: {passed} of {} rows as expected, in {secs} s; table in {}",
        rows.len(),
        out.display()
    );
    for r in rows.iter().filter(|r| r.passed != Some(true)) {
        eprintln!("security: row {}: {}", r.name, outcome(r));
    }
    if let Err(problems) = suite {
        bail!("the attacks run failed:\n  - {}", problems.join("\n  - "));
    }
    if rows.is_empty() || passed != rows.len() {
        bail!(
            "not every attack row went as expected (see {})",
            out.display()
        );
    }
    Ok(())
}

/// The checked-out commit, with `+` if the tree has changes.
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(paths::root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
    if dirty { format!("{head}+") } else { head }
}

fn outcome(r: &AttackRow) -> String {
    let verdict = match r.passed {
        Some(true) => "as expected",
        Some(false) => "**NOT as expected**",
        None => "**no outcome reported**",
    };
    if r.observed.is_empty() {
        verdict.to_string()
    } else {
        format!("{verdict}: {}", r.observed)
    }
}

/// Markdown table cells: no pipes or line breaks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn render(rows: &[AttackRow], machine: &str, seed: u64, commit: &str, secs: u64) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Security: the attack suite\n\n\
         <!-- Written by `cargo xtask security`; do not edit by hand. -->\n\n\
         Regenerate with:\n\n\
         ```sh\n\
         cargo xtask security          # --seed N for another fuzzer seed\n\
         ```\n\n\
         KServ plays the attacker (DESIGN.md §1-2): its `attacks` test \
         (`kserv-shim/initramfs/tests/attacks`) starts a protected Linux guest with 2 vCPUs \
         (the victim, which keeps re-checking a file it holds in memory), then runs each row \
         below from a kernel module (`kserv-shim/module/kserv_attack.c`) or a userspace \
         program (`kserv-tools attack`, `kserv-shim/tools/src/kvmapi/attack.rs`). Each row's \
         expected outcome is fixed in that code and printed before the attack runs; the \
         observed outcome is what happened. Rows that fault do so inside KServ (a kthread \
         dies in an Oops, a process of SIGBUS); every other row is a refusal with an error \
         code. After the last row the victim must still hold its data, print its marker and \
         checksum and power off, and KCore's self-check (test images) must find the ownership \
         table agreeing with every stage-2 table, with every page the attacks gave away back \
         and scrubbed. The same run is the system test `attacks` (`cargo xtask test`).\n\n\
         Run: {machine}; fuzzer seed {seed}; commit {commit}; {secs} s of wall-clock time.\n"
    );
    let _ = writeln!(t, "| # | attack | expected | observed |");
    let _ = writeln!(t, "|---|---|---|---|");
    for (i, r) in rows.iter().enumerate() {
        let _ = writeln!(
            t,
            "| {} | `{}` | {} | {} |",
            i + 1,
            r.name,
            cell(&r.expected),
            cell(&outcome(r))
        );
    }
    let passed = rows.iter().filter(|r| r.passed == Some(true)).count();
    let _ = writeln!(
        t,
        "\n{passed} of {} rows went as expected.\n\n\
         ## The suite can fail\n\n\
         A row passes only when its expectation holds, so a KCore that gave in would show. \
         Checked by hand: with KCore's reclaim check removed (a live VM's page may be \
         reclaimed), `reclaim-running` fails, the self-check finds a VM mapping a page it no \
         longer owns (`hw-irq`, `toctou`, `destroy-in-exit` and `fuzz` fail on it), and the \
         victim, its memory scrubbed under it, never answers `stop`. The module takes KCore's ABI \
         from `kcore_abi.h`, which the build generates from `kcore-abi`.\n\n\
         The rows added with the run-page pin and the device rules were run against a KCore \
         with those fixes taken out (the load pins nothing and the put writes wherever the \
         load pointed; no trapped redistributor pages; the ITS and the DMA masters mapped for \
         KServ, though still disabled in its tree): `run-page` fails (the page is never seen \
         pinned, no offer is Busy), `its` fails (`GITS_BASER0` takes KCore's and the victim's \
         addresses, `GITS_CBASER` and `GITS_CTLR` answer), `gic-redist` fails (`PROPBASER` \
         reads back the victim's page, `PENDBASER` KCore's, `EnableLPIs` sets), `dma-masters` \
         fails (fw_cfg's DMA register takes KCore's address, PCIe config space and a \
         virtio-mmio transport answer), and KCore's self-check finds running vCPUs whose run \
         pages are not pinned (`share-race` and `fuzz` fail on it). With KCore's manifest \
         check on `HostDeclareMmio` and its rules for protected secondaries taken out, \
         `mmio-consent` fails (MMIO declared before verification, over the RAM after the \
         image, over the image and past the manifest, all accepted) and `secondary` fails \
         (vCPU 1's PC and `x0` set, and vCPU 1 run before any `CPU_ON`). With KCore's window \
         check on `HostReadGicTable` (`GicTables::allows`) and its MMIO check on \
         `HostSetGicFrames` taken out, `gic-table` fails, and no other row: the victim's private \
         page and a fresh VM's image are read, an ITS is placed before its MMIO was declared and \
         redistributors over the image.\n\n\
         Residue across a reset is the system test `residue` (`cargo xtask test`): a protected \
         guest fills 4 MiB of its memory with 16 random bytes, KServ resets the machine with \
         the guest alive (QEMU keeps RAM, as a warm reset does), and after the second boot no \
         page KServ owns holds those bytes. With KCore's wipe before `SYSTEM_RESET` taken out, \
         the second boot found the bytes in \
         335,616 places (5 MiB of the guest's memory read back by KServ); with it, in none.\n\n\
         ## Devices that write memory\n\n\
         A device that reads or writes memory by physical address is outside every stage 2: \
         if KServ could program it, it could write KCore's memory or a protected VM's. Every \
         register frame of QEMU's `virt` (as the suite runs it) was checked for that power:\n\n\
         | frame | writes memory? | KServ's access |\n\
         |---|---|---|\n\
         | GIC distributor (GICD) | no | mapped |\n\
         | GIC redistributor `RD_base` page (`GICR_PROPBASER`, `GICR_PENDBASER`, `EnableLPIs`; \
         `VLPI_base` on GICv4) | yes: the LPI property and pending tables | trapped: KCore performs \
         each access after `kcore::gic_guard` (table bases read 0 and ignore writes, `EnableLPIs` \
         stays clear); row `gic-redist` |\n\
         | GIC redistributor `SGI_base` | no | mapped |\n\
         | GIC ITS | yes: device, collection and command tables, every ITT | KCore's, disabled in \
         KServ's tree; row `its` |\n\
         | GICv2 GICH, GICV | (KCore's virtual interface) | KCore's |\n\
         | fw_cfg | yes: its DMA interface | KCore's, disabled; row `dma-masters` |\n\
         | PCIe host bridge (ECAM) and the devices behind it (a virtio-net NIC by default) | yes: \
         any device made a bus master | KCore's, disabled; row `dma-masters` |\n\
         | virtio-mmio transports | yes, once a device is attached | KCore's, disabled; row \
         `dma-masters` |\n\
         | PL011 UART, PL031 RTC, PL061 GPIO, flash | no | mapped |\n\n\
         KServ therefore runs without MSIs and without PCI or virtio devices of its own. Giving \
         them back needs what pKVM and Xen use: an SMMU owned by KCore in front of every DMA \
         master, and for MSIs an ITS whose command queue KCore owns and whose every `MAPD` it \
         checks. On a board without an SMMU (the Raspberry Pi 4) DMA remains a platform limit.\n\n\
         {ACPI_SECTION}\n\
         ## What a protected guest still shows KServ\n\n\
         An unmodified protected guest (no pKVM guest calls) shows KServ exactly this, and \
         nothing of its registers or private memory besides:\n\n\
         - MMIO, only inside the ranges its image's signer allowed (the manifest its \
         signature covers; KServ may declare less, never more, and no memory is donated there): \
         for each access the page and offset, the width, the direction, and for a write the \
         value of the one source register; for a read KServ supplies the one destination \
         register.\n\
         - The first touch of each page of RAM: its frame number and whether it was a write or \
         an instruction fetch (KServ must donate it).\n\
         - PSCI calls with their function id and arguments (`CPU_ON` targets, entry points and \
         context ids; `SYSTEM_OFF`), SMCCC version queries, WFI/WFE, the target list of each \
         SGI, the virtual timer's deadline at each exit, and when it exits at all.\n\
         - The pages it shares itself (`MEM_SHARE`), whole.\n\
         - With an ITS (`KVM_DEV_TYPE_ARM_VGIC_ITS`): what it handed its interrupt controller, \
         read-only, 24 bytes at a time through KCore (`HostReadGicTable`): its ITS command \
         queue, device and collection tables, LPI property table and the pending tables of \
         redistributors with LPIs enabled, each only where, and while, the guest's own writes to \
         `GITS_CBASER`, `GITS_BASER0/1`, `GICR_PROPBASER`, `GICR_PENDBASER` and `GICR_CTLR` put \
         it, as KCore recorded them from its MMIO exits (`kcore::gic_tables`). The frames whose \
         registers count are fixed before the first run and lie inside the signed manifest; a \
         write to the same offset of any other frame opens nothing. What KServ says or writes in \
         the run page counts for nothing (row `gic-table`).\n\n\
         A guest built with the pKVM guest ABI's MMIO guard could narrow the first item to \
         the exact pages it maps as devices; KCore does not implement MMIO_GUARD yet.\n\n\
         ## What the rows do not cover yet\n\n\
         - DMA: there is no SMMU support yet: KServ gets no DMA master (above), so no device \
         attack (VM-iodataiso) is made.\n\
         - `toctou` runs on a non-protected VM: its registers are what shows KCore completed the \
         MMIO read from its own record (a protected vCPU's are not readable). The completion \
         path is the same for both kinds of VM.\n\
         - `/dev/mem` on a VM's page is refused by KServ's own kernel (`STRICT_DEVMEM`) before \
         KCore is involved; the `rawmap` row makes the same mapping without those checks.\n\
         - The 200-cycle soak (memory accounting over many VM lives) is \
         `cargo xtask soak` (docs/soak.md), not part of this table.",
        rows.len()
    );
    t.push_str(RPI4_SECTION);
    t
}

/// What KCore keeps from KServ on an ACPI machine (`kcore.efi`), and how
/// the `dma-masters` row holds there, the same on every run.
const ACPI_SECTION: &str = include_str!("security_acpi.md");

/// The Raspberry Pi 4's caveats (no SMMU: what holds there and what does
/// not), the same on every run.
const RPI4_SECTION: &str = include_str!("security_rpi4.md");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_attack_and_escapes_pipes() {
        let rows = vec![
            AttackRow {
                name: "scan".into(),
                expected: "a | b".into(),
                passed: Some(true),
                observed: "ok".into(),
            },
            AttackRow {
                name: "fuzz".into(),
                expected: "calls".into(),
                passed: None,
                observed: String::new(),
            },
        ];
        let t = render(&rows, "virt", 7, "abc", 3);
        assert!(t.contains("| 1 | `scan` | a \\| b | as expected: ok |"));
        assert!(t.contains("| 2 | `fuzz` | calls | **no outcome reported** |"));
        assert!(t.contains("1 of 2 rows went as expected."));
        assert!(t.contains("fuzzer seed 7; commit abc"));
        assert!(t.ends_with(RPI4_SECTION));
    }

    /// docs/security.md is written by `cargo xtask security`; the Pi's
    /// section, which does not depend on the run, is what it would write.
    #[test]
    fn the_doc_carries_the_pi_section() {
        let doc = std::fs::read_to_string(paths::root().join("docs/security.md")).unwrap();
        assert!(
            doc.ends_with(RPI4_SECTION),
            "regenerate or copy the section"
        );
    }
}
