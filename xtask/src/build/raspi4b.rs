//! The device tree `cargo xtask run --machine raspi4b` and the `raspi4b`
//! system test boot with (`build/raspi4b/bcm2711-rpi-4-b-qemu.dtb`):
//! Debian's own Raspberry Pi 4 tree, from the arm64 kernel package the
//! build already fetched, edited for what QEMU's `raspi4b` lacks. A Pi boots
//! the unedited tree (`docs/platforms.md`); these edits belong to the test
//! harness only.
//!
//! The edits (`fdtput`, from Debian's `device-tree-compiler`):
//! - `status = "disabled"` on the display pipeline QEMU does not model: the
//!   HDMI interrupt controller, HDMI, its I2C, HVS, pixel valves, VEC, TXP,
//!   DSI and the V3D/VC4 GPU nodes. Linux probes them and takes a
//!   synchronous external abort in `brcmstb_l2_intc_of_init` otherwise.
//! - `/chosen/stdout-path = "serial0:115200n8"`: the PL011, which QEMU
//!   connects to stdio first, so that KCore and KServ share one console.
//!   The unedited tree names the mini UART (`serial1`), which KCore also
//!   drives (`arch/src/el2/miniuart.rs`).

use crate::{cmd, paths};
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The tree in Debian's kernel package, under its `dtb_dir`.
const SOURCE: &str = "broadcom/bcm2711-rpi-4-b.dtb";

/// Nodes QEMU's `raspi4b` does not model and Linux would touch.
const UNMODELLED: [&str; 17] = [
    "/soc/interrupt-controller@7ef00100",
    "/soc/hdmi@7ef00700",
    "/soc/hdmi@7ef05700",
    "/soc/i2c@7ef04500",
    "/soc/i2c@7ef09500",
    "/soc/hvs@7e400000",
    "/soc/pixelvalve@7e206000",
    "/soc/pixelvalve@7e207000",
    "/soc/pixelvalve@7e20a000",
    "/soc/pixelvalve@7e216000",
    "/soc/pixelvalve@7ec12000",
    "/soc/vec@7ec13000",
    "/soc/txp@7e004000",
    "/soc/dsi@7e209000",
    "/soc/dsi@7e700000",
    "/gpu",
    "/scb/gpu@7ec00000",
];

/// Writes the edited tree from `dtb_dir` (Debian's
/// `usr/lib/linux-image-<release>`) and returns its path.
pub fn build(dtb_dir: &Path) -> Result<PathBuf> {
    let source = dtb_dir.join(SOURCE);
    let out = paths::raspi4b_dtb();
    let dir = out.parent().context("the raspi4b tree has no directory")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let staging = dir.join("staging.dtb");
    fs::copy(&source, &staging)
        .with_context(|| format!("copying {} to {}", source.display(), staging.display()))?;
    for node in UNMODELLED {
        cmd::run(
            Command::new("fdtput")
                .args(["-t", "s"])
                .arg(&staging)
                .args([node, "status", "disabled"]),
        )?;
    }
    cmd::run(
        Command::new("fdtput")
            .args(["-t", "s"])
            .arg(&staging)
            .args(["/chosen", "stdout-path", "serial0:115200n8"]),
    )?;
    let bytes = fs::read(&staging).with_context(|| format!("reading {}", staging.display()))?;
    cmd::write_if_changed(&out, &bytes)?;
    fs::remove_file(&staging).ok();
    Ok(out)
}
