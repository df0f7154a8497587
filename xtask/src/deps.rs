//! Host prerequisites: the Debian packages the build and the tests use
//! (`scripts/host-deps.sh`: QEMU 10, the aarch64 cross binutils and gcc,
//! `linux-kbuild-6.1`, cpio, dtc, kmod, ...) and the Rust targets that
//! `rust-toolchain.toml` lists.
//!
//! Idempotent and quick when everything is present: the script checks with
//! `dpkg-query` before it touches apt, and the targets are compared with
//! `rustup target list --installed` before anything is installed.

use crate::build::cmd;
use crate::paths;
use anyhow::{Context, Result, bail};
use std::fs;
use std::process::Command;

/// Installs whatever is missing.
pub fn ensure() -> Result<()> {
    let root = paths::root();
    let script = root.join("scripts").join("host-deps.sh");
    cmd::run_visible(Command::new("bash").arg(&script).current_dir(&root))
        .context("installing the host packages failed")?;

    let toolchain_file = root.join("rust-toolchain.toml");
    let toml = fs::read_to_string(&toolchain_file)
        .with_context(|| format!("cannot read {}", toolchain_file.display()))?;
    let wanted = toolchain_targets(&toml).with_context(|| {
        format!(
            "cannot find the `targets` list in {}",
            toolchain_file.display()
        )
    })?;
    let mut missing = missing_targets(&wanted)?;
    if !missing.is_empty() {
        cmd::step(
            "deps",
            format!("installing Rust targets {}", missing.join(" ")),
        );
        // In the workspace root, rustup installs the toolchain file's channel,
        // components and targets.
        cmd::run_visible(
            Command::new("rustup")
                .args(["toolchain", "install"])
                .current_dir(&root),
        )?;
        missing = missing_targets(&wanted)?;
        if !missing.is_empty() {
            bail!(
                "`rustup toolchain install` left Rust targets missing: {}",
                missing.join(" ")
            );
        }
    }
    cmd::step(
        "deps",
        format!(
            "host packages and Rust targets ({}) present",
            wanted.join(", ")
        ),
    );
    Ok(())
}

/// The `wanted` targets that `rustup` does not list as installed for the
/// workspace's toolchain.
fn missing_targets(wanted: &[String]) -> Result<Vec<String>> {
    let installed = cmd::output(
        Command::new("rustup")
            .args(["target", "list", "--installed"])
            .current_dir(paths::root()),
    )?;
    Ok(wanted
        .iter()
        .filter(|t| !installed.lines().any(|l| l.trim() == t.as_str()))
        .cloned()
        .collect())
}

/// The `targets = [...]` array of a `rust-toolchain.toml` (which may span
/// lines). `None` when there is no such key.
fn toolchain_targets(toml: &str) -> Option<Vec<String>> {
    let start = toml
        .lines()
        .position(|l| l.trim_start().starts_with("targets"))?;
    let rest: String = toml.lines().skip(start).collect::<Vec<_>>().join("\n");
    let open = rest.find('[')?;
    let close = rest[open..].find(']')? + open;
    Some(
        rest[open + 1..close]
            .split(',')
            .map(|t| t.trim().trim_matches('"').to_string())
            .filter(|t| !t.is_empty())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_targets_array() {
        let toml = "[toolchain]\nchannel = \"1.95.0\"\ntargets = [\"a\", \"b-c\"]\nprofile = \"minimal\"\n";
        assert_eq!(
            toolchain_targets(toml),
            Some(vec!["a".to_string(), "b-c".to_string()])
        );
        let multi = "[toolchain]\ntargets = [\n  \"x\",\n  \"y\",\n]\n";
        assert_eq!(
            toolchain_targets(multi),
            Some(vec!["x".to_string(), "y".to_string()])
        );
        assert_eq!(toolchain_targets("[toolchain]\n"), None);
    }
}
