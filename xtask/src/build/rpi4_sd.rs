//! The Raspberry Pi 4 SD-card image, `build/rpi4-sd.img` (`cargo xtask
//! image rpi4`, also written by every `cargo xtask build`): an MBR disk with
//! one bootable FAT32 partition (type 0x0c, 256 MiB from 1 MiB on), which is
//! what the Pi's boot ROM and firmware read. The partition holds:
//!
//! - `start4.elf` and `fixup4.dat`, the VideoCore firmware, from Debian's
//!   `raspi-firmware` ([`crate::fetch::raspi_firmware`]);
//! - `bcm2711-rpi-4-b.dtb`, Debian's own tree from the arm64 kernel package,
//!   unedited (its `stdout-path` is `serial1`, the mini UART);
//! - `config.txt` ([`CONFIG_TXT`]): 64-bit, the GIC on, the mini UART on,
//!   `kernel=kcore.img` and the tree by name;
//! - `cmdline.txt` ([`CMDLINE_TXT`]), which the firmware puts in
//!   `/chosen/bootargs` and KCore appends after the payload's command line:
//!   shipped so that the firmware's own default (which names other consoles)
//!   does not end up last, since the last `console=` is `/dev/console`;
//! - `kcore.img`: KCore and the normal KServ payload (the initramfs with the
//!   shim and the test tools, as in `build/kcore.img`) packed with
//!   [`RPI4_CMDLINE`] (`build/rpi4/kcore.img`).
//!
//! The FAT is written with mtools (`mformat`, `mcopy`; `scripts/host-deps.sh`
//! installs them) into the image file at the partition's offset; the MBR is
//! written here. The system test `raspi4b` reads the image back (MBR, every
//! file, the config lines) and boots the `kcore.img` it holds.

use crate::{cmd, paths};
use anyhow::{Context, Result, bail};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

/// KServ's command line on a Pi: the console on the mini UART, which
/// Linux's `8250_bcm2835aux` names `ttyS1` after the tree's `serial1` alias,
/// at the 115200 baud the firmware set with `enable_uart=1`; early output
/// through the tree's `stdout-path` (the same UART); the initramfs' `/init`,
/// which ends in a shell, without first booting the protected demo guest
/// (`kserv.demo=0`: KCore runs no guests on the Pi's GIC-400 yet,
/// `docs/platforms.md`). No `panic=-1`: a panic stays on the console rather
/// than resetting the board.
pub const RPI4_CMDLINE: &str = "console=ttyS1,115200 earlycon rdinit=/init kserv.demo=0";

/// `config.txt`. `device_tree=` names the tree the firmware loads (and edits)
/// for the kernel; the rest is BOARDS.md A.2.1.
pub const CONFIG_TXT: &str = "\
# KCore/KServ on a Raspberry Pi 4 (docs/platforms.md).
arm_64bit=1
enable_gic=1
enable_uart=1
kernel=kcore.img
device_tree=bcm2711-rpi-4-b.dtb
";

/// `cmdline.txt`: what the firmware passes in `/chosen/bootargs`, appended by
/// KCore after [`RPI4_CMDLINE`].
pub const CMDLINE_TXT: &str = "console=ttyS1,115200\n";

/// The tree in Debian's kernel package, under its `dtb_dir`, and its name on
/// the card.
const DTB_SOURCE: &str = "broadcom/bcm2711-rpi-4-b.dtb";
const DTB_NAME: &str = "bcm2711-rpi-4-b.dtb";

/// Sector size, the partition's first sector (1 MiB, aligned for SD cards'
/// erase blocks) and its length (256 MiB).
const SECTOR: u64 = 512;
const PART_START: u32 = 2048;
const PART_SECTORS: u32 = 256 * 2048;
/// FAT32 with LBA addressing.
const PART_TYPE: u8 = 0x0c;
/// The MBR's disk signature and the volume's serial number ("KCOR").
const DISK_ID: u32 = 0x4b43_4f52;

/// What [`build`] needs.
pub struct Inputs<'a> {
    /// Debian's kernel package's device trees (`Fetched::dtb_dir`).
    pub dtb_dir: &'a Path,
    /// `raspi-firmware`'s `usr/lib/raspi-firmware`.
    pub firmware: &'a Path,
    /// The Pi's boot image (`build/rpi4/kcore.img`).
    pub kcore_img: &'a Path,
}

/// Writes `build/rpi4-sd.img` from `inputs` unless it already holds exactly
/// those files (a stamp beside it names them by size and modification time),
/// and returns its path.
pub fn build(inputs: &Inputs<'_>) -> Result<PathBuf> {
    let out = paths::rpi4_sd_image();
    let dir = paths::rpi4_dir();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = dir.join("config.txt");
    let cmdline = dir.join("cmdline.txt");
    cmd::write_if_changed(&config, CONFIG_TXT.as_bytes())?;
    cmd::write_if_changed(&cmdline, CMDLINE_TXT.as_bytes())?;
    let files: [(PathBuf, &str); 6] = [
        (inputs.firmware.join("start4.elf"), "start4.elf"),
        (inputs.firmware.join("fixup4.dat"), "fixup4.dat"),
        (inputs.dtb_dir.join(DTB_SOURCE), DTB_NAME),
        (config, "config.txt"),
        (cmdline, "cmdline.txt"),
        (inputs.kcore_img.to_path_buf(), "kcore.img"),
    ];
    let mut want = String::new();
    let mut total = 0;
    for (from, name) in &files {
        let m = fs::metadata(from).with_context(|| format!("cannot read {}", from.display()))?;
        total += m.len();
        let mtime = m
            .modified()?
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        want += &format!("{name} {} {} {mtime}\n", from.display(), m.len());
    }
    let stamp = dir.join("sd-image.stamp");
    if out.is_file() && fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        cmd::step("sd-image", format!("{} (unchanged)", cmd::show(&out)));
        return Ok(out);
    }

    if total > u64::from(PART_SECTORS) * SECTOR * 9 / 10 {
        bail!("the Pi's files ({total} bytes) do not fit the 256 MiB partition");
    }
    let staging = dir.join("rpi4-sd.img.partial");
    let len = (u64::from(PART_START) + u64::from(PART_SECTORS)) * SECTOR;
    let file = fs::File::create(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    file.set_len(len)
        .with_context(|| format!("cannot size {}", staging.display()))?;
    drop(file);
    let image = format!("{}@@{}", staging.display(), u64::from(PART_START) * SECTOR);
    cmd::run(
        Command::new("mformat")
            .args(["-i", &image, "-F", "-v", "KCORE-RPI4"])
            .args(["-T", &PART_SECTORS.to_string()])
            .args(["-H", &PART_START.to_string()])
            .args(["-h", "64", "-s", "32"])
            .args(["-N", &format!("{DISK_ID:08x}")])
            .arg("::"),
    )
    .context("mformat (mtools) failed")?;
    for (from, name) in &files {
        cmd::run(
            Command::new("mcopy")
                .args(["-m", "-i", &image])
                .arg(from)
                .arg(format!("::{name}")),
        )
        .with_context(|| format!("mcopy of {} failed", from.display()))?;
    }
    // The first sector only: mformat left it alone (the FAT starts 1 MiB in).
    fs::OpenOptions::new()
        .write(true)
        .open(&staging)
        .and_then(|mut f| f.write_all(&mbr()))
        .with_context(|| format!("cannot write the MBR of {}", staging.display()))?;
    fs::rename(&staging, &out)
        .with_context(|| format!("cannot move {} to {}", staging.display(), out.display()))?;
    fs::write(&stamp, want).with_context(|| format!("cannot write {}", stamp.display()))?;
    cmd::step(
        "sd-image",
        format!(
            "{} ({} MiB, FAT32 partition at {} MiB: {} files, {} MiB)",
            cmd::show(&out),
            len >> 20,
            (u64::from(PART_START) * SECTOR) >> 20,
            files.len(),
            total >> 20
        ),
    );
    Ok(out)
}

/// The master boot record: no boot code, the disk signature, one bootable
/// partition entry (CHS fields at their "use LBA" maximum), three empty
/// entries and the 0x55aa signature.
fn mbr() -> [u8; 512] {
    let mut m = [0u8; 512];
    m[440..444].copy_from_slice(&DISK_ID.to_le_bytes());
    let e = &mut m[446..462];
    e[0] = 0x80;
    e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[4] = PART_TYPE;
    e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[8..12].copy_from_slice(&PART_START.to_le_bytes());
    e[12..16].copy_from_slice(&PART_SECTORS.to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xaa;
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbr_has_one_bootable_fat32_partition() {
        let m = mbr();
        assert_eq!(&m[510..], &[0x55, 0xaa]);
        assert_eq!(m[446], 0x80, "bootable");
        assert_eq!(m[446 + 4], 0x0c, "FAT32 LBA");
        assert_eq!(&m[446 + 8..446 + 12], &2048u32.to_le_bytes());
        assert_eq!(&m[446 + 12..446 + 16], &(256u32 * 2048).to_le_bytes());
        assert!(m[462..510].iter().all(|&b| b == 0), "one entry only");
        assert!(m[..440].iter().all(|&b| b == 0), "no boot code");
    }
}
