//! `kserv-tools`, KServ's small static userspace helper, built for
//! `aarch64-unknown-linux-musl` and stripped to `build/kserv/kserv-tools`.

use super::cargo;
use crate::cmd;
use crate::paths;
use anyhow::{Context, Result};
use std::fs;
use std::path::PathBuf;
use std::process::Command;

/// KServ's userspace target.
pub const TARGET: &str = "aarch64-unknown-linux-musl";

/// Builds the tools; returns the stripped binary's path.
pub fn build() -> Result<PathBuf> {
    let exe = cargo::build(
        "kserv-tools",
        &["--bin", "kserv-tools"],
        TARGET,
        "kserv-tools",
        "bin",
    )?
    .into_iter()
    .next()
    .context("no kserv-tools executable")?;
    let out = paths::build_dir().join("kserv").join("kserv-tools");
    let tmp = out.with_extension("strip~");
    fs::create_dir_all(paths::build_dir().join("kserv"))?;
    cmd::run(
        Command::new("aarch64-linux-gnu-strip")
            .arg("-o")
            .arg(&tmp)
            .arg(&exe),
    )?;
    let bytes = fs::read(&tmp).with_context(|| format!("cannot read {}", tmp.display()))?;
    fs::remove_file(&tmp).ok();
    let changed = cmd::write_if_changed(&out, &bytes)?;
    cmd::step(
        "tools",
        format!(
            "{} ({} KiB){}",
            cmd::show(&out),
            bytes.len() / 1024,
            cmd::changed_note(changed)
        ),
    );
    Ok(out)
}
