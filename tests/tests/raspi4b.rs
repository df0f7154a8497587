//! KCore on QEMU's Raspberry Pi 4 (`raspi4b`): no PSCI firmware (an `SMC`
//! at EL2 would fall into QEMU's empty EL3 and never return), CPUs behind a
//! spin table, the console behind `/soc`'s `ranges` and a GIC-400. Boots
//! `build/kcore.img` with the tree the build edits for QEMU
//! (`build/raspi4b/`, `xtask/src/build/raspi4b.rs`) and checks that KCore
//! prints, releases the three secondary CPUs into its pen, and that KServ
//! reaches `/init` with 4 CPUs at EL1 and passes `hvc`, `hotplug` (CPU_OFF
//! back to the pen, AFFINITY_INFO from KCore's own state, CPU_ON from the
//! pen), `protection` and `vmisolation`. The run ends with KServ's
//! `SYSTEM_OFF`, which parks the CPUs (the board has no power-off), and the
//! harness then ends QEMU. A second run checks `SYSTEM_RESET` through the PM
//! watchdog. A third opens the SD-card image (`build/rpi4-sd.img`): its MBR,
//! every file of its FAT partition and the config lines, then boots the
//! `kcore.img` it holds to KServ's `boot` test. A fourth boots Linux guests
//! through the shim's `/dev/kvm` on the Pi's GIC-400 (KServ's `kvmguest`:
//! 2 vCPUs, 128 MiB each, PL011, virtio and protected).

use anyhow::{Context, bail, ensure};
use kcore_qemu::kserv::PARKED_MARKER;
use kcore_qemu::{Boot, Machine, QemuCommand};
use kcore_systests::{
    BOOT_TIMEOUT, Failure, TestResult, artefact, batch, batch_appending, build_dir, expect_reset,
    kcore_image, kcore_trouble, linux_guests, spawn,
};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const TESTS: &[&str] = &["boot", "hvc", "hotplug", "protection", "vmisolation"];

#[test]
fn raspi4b_spin_table_4_cpus_at_el1() -> TestResult {
    let name = "raspi4b";
    let machine = Machine::raspi4b(artefact("raspi4b/bcm2711-rpi-4-b-qemu.dtb")?);
    let boot = Boot::Kcore {
        image: kcore_image()?,
    };
    let (report, run) = batch(name, machine, boot, TESTS)?;
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));
    let lines = run.session.lines();
    let has = |s: &str| lines.iter().any(|l| l.contains(s));
    if report.kcore_banner.is_none() {
        return Err(fail("no KCore banner: KCore did not print".into()));
    }
    if !has("kcore: no PSCI firmware: 3 secondary CPUs released from the spin table") {
        return Err(fail(
            "KCore did not release 3 CPUs from the spin table".into(),
        ));
    }
    if !has("kcore: the spin table's page [0x0, 0x1000) is KCore's") {
        return Err(fail("the stub's page 0 was not made KCore's".into()));
    }
    let boot_line = report.tests.iter().find(|t| t.name == "boot");
    if !boot_line.is_some_and(|t| t.detail.contains("4 CPUs online") && t.detail.contains("EL1")) {
        return Err(fail(format!(
            "KServ is not up with 4 CPUs at EL1: {boot_line:?}"
        )));
    }
    if !report.parked {
        return Err(fail("KCore did not park the CPUs at SYSTEM_OFF".into()));
    }
    if let Some(l) = lines.iter().find(|l| kcore_trouble(l)) {
        return Err(fail(format!("KCore reported trouble: {l}")));
    }
    Ok(())
}

/// Linux guests through `/dev/kvm` on the Pi's GIC-400 (GICv2: 4 list
/// registers, maintenance PPI 9, GICV behind `/soc`'s `ranges`): KServ's
/// `kvmguest` — the guest with 2 vCPUs and 128 MiB, non-protected with the
/// PL011 console, with virtio console and disk, and protected — in QEMU's
/// 960 MiB beside KServ. About 160 s alone (the guests boot under TCG on
/// the Pi's Cortex-A72); it timed out at 240 s beside builds and another
/// QEMU, so 600 s are allowed.
#[test]
fn raspi4b_linux_guests_on_the_gic_400() -> TestResult {
    linux_guests(
        "raspi4b-kvmguest",
        Machine::raspi4b(artefact("raspi4b/bcm2711-rpi-4-b-qemu.dtb")?),
        Duration::from_secs(600),
    )
}

/// KServ's `SYSTEM_RESET` on `raspi4b` (no firmware): KCore wipes the VMs
/// and arms the PM watchdog it found in the tree; QEMU's model of the
/// watchdog resets the board, and QEMU (run with `-no-reboot`) exits.
#[test]
fn raspi4b_system_reset_through_the_pm_watchdog() -> TestResult {
    expect_reset(
        "raspi4b-reset",
        Machine::raspi4b(artefact("raspi4b/bcm2711-rpi-4-b-qemu.dtb")?),
        &["kcore: system reset through the PM watchdog"],
    )
}

/// KServ's `SYSTEM_OFF` while another of its CPUs keeps running
/// (KServ's `rogueoff` test: `kserv_attack.ko` loops on another CPU with
/// interrupts off, printing every 100 ms, and calls `SYSTEM_OFF` without
/// stopping it first). KCore revokes KServ's stage 2 on every CPU, so
/// nothing of KServ's may print after KCore's parked line: the run goes on
/// for 3 s more (30 lines' worth) and the console is checked.
#[test]
fn raspi4b_system_off_stops_every_cpu() -> TestResult {
    const ROGUE: &str = "kserv-attack: rogue CPU ";
    let name = "raspi4b-rogueoff";
    let machine = Machine::raspi4b(artefact("raspi4b/bcm2711-rpi-4-b-qemu.dtb")?);
    let cmd = QemuCommand::new(
        machine,
        Boot::Kcore {
            image: kcore_image()?,
        },
    )
    .append("kserv.mode=batch kserv.tests=rogueoff");
    let mut run = spawn(name, &cmd)?;
    let s = &mut run.session;
    let early = "KSERV-TEST rogueoff: ";
    let (i, m) = s.wait_for_any(&[ROGUE.into(), early.into()], BOOT_TIMEOUT)?;
    if i == 1 {
        return Err(Failure::from(
            s.failure(format!("{name}: before any rogue line: {}", m.line)),
        ));
    }
    s.wait_for(PARKED_MARKER, Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs(3));
    let lines = s.lines();
    let fail = |what: String| Failure::from(s.failure(format!("{name}: {what}")));
    let Some(at) = lines.iter().rposition(|l| l.contains(PARKED_MARKER)) else {
        return Err(fail("KCore's parked line went missing".into()));
    };
    let before = lines[..at].iter().filter(|l| l.contains(ROGUE)).count();
    let after: Vec<&String> = lines[at + 1..]
        .iter()
        .filter(|l| !l.trim().is_empty())
        .collect();
    if before < 3 || !after.is_empty() {
        return Err(fail(format!(
            "{before} rogue lines before KCore parked the CPUs (3 or more expected), and \
             after it: {after:?}"
        )));
    }
    if let Some(l) = lines.iter().find(|l| kcore_trouble(l)) {
        return Err(fail(format!("KCore reported trouble: {l}")));
    }
    Ok(())
}

/// The files of the card's FAT partition.
const CARD_FILES: [&str; 6] = [
    "bcm2711-rpi-4-b.dtb",
    "cmdline.txt",
    "config.txt",
    "fixup4.dat",
    "kcore.img",
    "start4.elf",
];

/// KServ's command line on the card's `kcore.img` (xtask `rpi4_sd.rs`).
const PI_CMDLINE: &str = "console=ttyS1,115200 earlycon rdinit=/init kserv.demo=0";

/// The first partition of an MBR disk: its byte offset, after checking that
/// it is the only one, bootable, FAT32 (0x0c) and inside the image.
fn fat_partition(image: &[u8]) -> anyhow::Result<u64> {
    let mbr = image.get(..512).context("shorter than a sector")?;
    ensure!(mbr[510..] == [0x55, 0xaa], "no MBR signature");
    let entry = |i: usize| &mbr[446 + 16 * i..446 + 16 * (i + 1)];
    let e = entry(0);
    ensure!(e[0] == 0x80, "partition 1 is not bootable: {:#x}", e[0]);
    ensure!(
        e[4] == 0x0c,
        "partition 1 is of type {:#x}, not FAT32 LBA",
        e[4]
    );
    let word = |b: &[u8]| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let (start, sectors) = (word(&e[8..12]), word(&e[12..16]));
    ensure!(
        sectors >= 128 * 2048 && (start + sectors) * 512 <= image.len() as u64,
        "partition 1 ({start}+{sectors} sectors) is under 128 MiB or outside the image"
    );
    ensure!(
        (1..4).all(|i| entry(i).iter().all(|&b| b == 0)),
        "more than one partition"
    );
    // The FAT32 boot sector's signature and file system type.
    let boot = image
        .get(start as usize * 512..start as usize * 512 + 512)
        .context("no boot sector")?;
    ensure!(
        boot[510..] == [0x55, 0xaa] && &boot[82..90] == b"FAT32   ",
        "not FAT32"
    );
    Ok(start * 512)
}

/// Runs an mtools command on `image` at byte `offset`.
fn mtools(program: &str, image: &Path, offset: u64, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .arg("-i")
        .arg(format!("{}@@{offset}", image.display()))
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program} (mtools)"))?;
    if !out.status.success() {
        bail!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Copies every file off the card into `dir` after checking the list, and
/// checks each one.
fn check_card(card: &Path, dir: &Path) -> anyhow::Result<()> {
    let image = fs::read(card).with_context(|| format!("cannot read {}", card.display()))?;
    let offset = fat_partition(&image)?;
    let mut names: Vec<String> = mtools("mdir", card, offset, &["-b", "::"])?
        .lines()
        .map(|l| l.trim().trim_start_matches("::/").to_string())
        .filter(|l| !l.is_empty())
        .collect();
    names.sort();
    ensure!(
        names == CARD_FILES,
        "the card holds {names:?}, not {CARD_FILES:?}"
    );
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::create_dir_all(dir)?;
    for name in CARD_FILES {
        let to = dir.join(name);
        mtools(
            "mcopy",
            card,
            offset,
            &[&format!("::{name}"), &to.to_string_lossy()],
        )?;
    }
    let read = |name: &str| fs::read(dir.join(name));
    let config = String::from_utf8(read("config.txt")?)?;
    for line in [
        "arm_64bit=1",
        "enable_gic=1",
        "enable_uart=1",
        "kernel=kcore.img",
        "device_tree=bcm2711-rpi-4-b.dtb",
    ] {
        ensure!(
            config.lines().any(|l| l.trim() == line),
            "config.txt lacks {line}:\n{config}"
        );
    }
    let cmdline = String::from_utf8(read("cmdline.txt")?)?;
    ensure!(
        cmdline.split_whitespace().last() == Some("console=ttyS1,115200"),
        "cmdline.txt does not end with the mini UART's console: {cmdline:?}"
    );
    for (name, magic) in [
        ("start4.elf", &b"\x7fELF"[..]),
        ("bcm2711-rpi-4-b.dtb", &[0xd0, 0x0d, 0xfe, 0xed][..]),
    ] {
        ensure!(
            read(name)?.starts_with(magic),
            "{name} does not start with {magic:02x?}"
        );
    }
    ensure!(
        read("fixup4.dat")?.len() > 1024,
        "fixup4.dat is nearly empty"
    );
    // Debian's tree, unedited: the mini UART as stdout-path.
    let dtb = dir.join("bcm2711-rpi-4-b.dtb");
    let stdout = Command::new("fdtget")
        .arg(&dtb)
        .args(["/chosen", "stdout-path"])
        .output()?;
    ensure!(
        String::from_utf8_lossy(&stdout.stdout).trim() == "serial1:115200n8",
        "the card's tree is not Debian's: stdout-path {:?}",
        String::from_utf8_lossy(&stdout.stdout)
    );
    let kcore = read("kcore.img")?;
    ensure!(
        kcore.get(0x38..0x3c) == Some(b"ARM\x64".as_slice()),
        "kcore.img has no Image header"
    );
    let built = fs::read(build_dir().join("rpi4").join("kcore.img"))?;
    ensure!(
        kcore == built,
        "the card's kcore.img is not build/rpi4/kcore.img"
    );
    Ok(())
}

/// `build/rpi4-sd.img`: one bootable FAT32 partition with the firmware,
/// Debian's tree, `config.txt`, `cmdline.txt` and `kcore.img`; the
/// `kcore.img` taken off the card boots under `raspi4b` (with the
/// harness's tree) to KServ's `boot` test, with the Pi's command line in
/// front. `console=ttyAMA0` is appended so that KServ's console reaches
/// QEMU's stdio (the card names the mini UART, which the harness does not
/// connect); the test checks that the mini UART is `ttyS1`, as the card's
/// command line says.
#[test]
fn raspi4b_sd_card_image() -> TestResult {
    let name = "raspi4b-sd";
    let card = artefact("rpi4-sd.img")?;
    let dir = build_dir().join("rpi4").join("from-card");
    check_card(&card, &dir)?;
    let machine = Machine::raspi4b(artefact("raspi4b/bcm2711-rpi-4-b-qemu.dtb")?);
    let boot = Boot::Kcore {
        image: dir.join("kcore.img"),
    };
    let (report, run) = batch_appending(
        name,
        machine,
        boot,
        &["boot"],
        BOOT_TIMEOUT,
        "console=ttyAMA0",
    )?;
    let fail = |what: String| Failure::from(run.session.failure(format!("{name}: {what}")));
    let lines = run.session.lines();
    let cmdline = lines
        .iter()
        .find_map(|l| l.split("Kernel command line: ").nth(1));
    if !cmdline.is_some_and(|c| c.starts_with(PI_CMDLINE)) {
        return Err(fail(format!(
            "KServ's command line is not the Pi's: {cmdline:?}"
        )));
    }
    if !lines.iter().any(|l| l.contains("ttyS1 at MMIO 0xfe215040")) {
        return Err(fail("the mini UART is not ttyS1".into()));
    }
    if report.kcore_banner.is_none() || !report.parked {
        return Err(fail(
            "no KCore banner, or the CPUs were not parked at the end".into(),
        ));
    }
    Ok(())
}
