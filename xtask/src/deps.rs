//! Host prerequisites: the Debian packages the build and the tests use
//! (`scripts/host-deps.sh`: QEMU 10, the aarch64 cross binutils and gcc,
//! `linux-kbuild-6.1`, cpio, dtc, kmod, ...) and the Rust targets and
//! components that `rust-toolchain.toml` lists.
//!
//! Idempotent and quick when everything is present: the script checks with
//! `dpkg-query` before it touches apt, and the targets and components are
//! compared with what `rustup` lists as installed before anything is
//! installed.
//!
//! The Rust half names the toolchain file's channel explicitly
//! (`rustup target add --toolchain <channel> ...`). Under `cargo xtask`,
//! cargo's rustup proxy has set `RUSTUP_TOOLCHAIN`, and a bare
//! `rustup toolchain install` in the workspace then installs the channel but
//! ignores the file's `targets` and `components`: a fresh machine was left
//! without them. `cargo xtask test` proves the explicit form works on every
//! run ([`reinstall_check`]).

use crate::cmd;
use crate::paths;
use anyhow::{Context, Result, bail};
use std::fs;
use std::process::Command;

/// Installs whatever is missing: the Debian packages, then the Rust targets
/// and components.
pub fn ensure() -> Result<()> {
    let root = paths::root();
    let script = root.join("scripts").join("host-deps.sh");
    cmd::run_visible(Command::new("bash").arg(&script).current_dir(&root))
        .context("installing the host packages failed")?;
    ensure_rust()
}

/// What `rust-toolchain.toml` asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct Toolchain {
    /// `channel = "..."`: the pinned toolchain.
    pub channel: String,
    /// `targets = [...]`.
    pub targets: Vec<String>,
    /// `components = [...]`.
    pub components: Vec<String>,
}

impl Toolchain {
    /// Reads the workspace's `rust-toolchain.toml`.
    pub fn read() -> Result<Self> {
        let file = paths::root().join("rust-toolchain.toml");
        let toml =
            fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
        Self::parse(&toml).with_context(|| {
            format!(
                "{} must name a `channel` and a `targets` list",
                file.display()
            )
        })
    }

    fn parse(toml: &str) -> Option<Self> {
        Some(Toolchain {
            channel: string_value(toml, "channel")?,
            targets: array_value(toml, "targets")?,
            components: array_value(toml, "components").unwrap_or_default(),
        })
    }
}

/// Installs the Rust targets and components of `rust-toolchain.toml` that
/// the pinned toolchain lacks, and checks that they are there afterwards.
pub fn ensure_rust() -> Result<()> {
    let tc = Toolchain::read()?;
    let missing = missing_targets(&tc)?;
    if !missing.is_empty() {
        cmd::step(
            "deps",
            format!("installing Rust targets {}", missing.join(" ")),
        );
        cmd::run_visible(
            Command::new("rustup")
                .args(["target", "add", "--toolchain", &tc.channel])
                .args(&missing)
                .current_dir(paths::root()),
        )?;
    }
    let missing_comp = missing_components(&tc)?;
    if !missing_comp.is_empty() {
        cmd::step(
            "deps",
            format!("installing Rust components {}", missing_comp.join(" ")),
        );
        cmd::run_visible(
            Command::new("rustup")
                .args(["component", "add", "--toolchain", &tc.channel])
                .args(&missing_comp)
                .current_dir(paths::root()),
        )?;
    }
    let (targets, components) = (missing_targets(&tc)?, missing_components(&tc)?);
    if !targets.is_empty() || !components.is_empty() {
        bail!(
            "rustup left toolchain {} without targets [{}] and components [{}]",
            tc.channel,
            targets.join(" "),
            components.join(" ")
        );
    }
    cmd::step(
        "deps",
        format!(
            "toolchain {}: targets {} and components {} present",
            tc.channel,
            tc.targets.join(", "),
            tc.components.join(", ")
        ),
    );
    Ok(())
}

/// The target [`reinstall_check`] removes: the smallest of the three
/// (`rust-std` only, about 20 MB unpacked; the musl one carries a C runtime).
const CHECK_TARGET: &str = "aarch64-unknown-none";

/// Proves that the install path of the README's commands puts back a Rust
/// target a fresh machine lacks: removes [`CHECK_TARGET`] from the pinned
/// toolchain, runs `cargo xtask deps` through the `cargo` on `PATH` (the
/// rustup proxy, which sets `RUSTUP_TOOLCHAIN` as it does for the README's
/// commands), and requires the target to be installed again.
///
/// On a prepared machine the removal makes the check real: it passes only
/// if the install step works, not because the target was there already.
/// Idempotent: whatever happens, the next `ensure_rust` reinstalls it.
pub fn reinstall_check() -> Result<()> {
    let tc = Toolchain::read()?;
    if !tc.targets.iter().any(|t| t == CHECK_TARGET) {
        bail!("rust-toolchain.toml no longer lists {CHECK_TARGET}; update deps::CHECK_TARGET");
    }
    cmd::step(
        "deps",
        format!("removing {CHECK_TARGET} from toolchain {}", tc.channel),
    );
    cmd::run_visible(
        Command::new("rustup")
            .args(["target", "remove", "--toolchain", &tc.channel, CHECK_TARGET])
            .current_dir(paths::root()),
    )?;
    if !missing_targets(&tc)?.iter().any(|t| t == CHECK_TARGET) {
        bail!("{CHECK_TARGET} is still listed as installed after `rustup target remove`");
    }
    cmd::step(
        "deps",
        "running `cargo xtask deps` as the README's commands do",
    );
    cmd::run_visible(
        Command::new("cargo")
            .args(["xtask", "deps"])
            .current_dir(paths::root()),
    )
    .context("`cargo xtask deps` failed to reinstall a removed target")?;
    let missing = missing_targets(&tc)?;
    if !missing.is_empty() {
        bail!(
            "`cargo xtask deps` left toolchain {} without {}",
            tc.channel,
            missing.join(" ")
        );
    }
    cmd::step(
        "deps",
        format!("{CHECK_TARGET} is back: the install path works"),
    );
    Ok(())
}

/// The toolchain file's targets that `rustup` does not list as installed for
/// its channel.
fn missing_targets(tc: &Toolchain) -> Result<Vec<String>> {
    let installed = cmd::output(
        Command::new("rustup")
            .args(["target", "list", "--installed", "--toolchain", &tc.channel])
            .current_dir(paths::root()),
    )?;
    Ok(tc
        .targets
        .iter()
        .filter(|t| !installed.lines().any(|l| l.trim() == t.as_str()))
        .cloned()
        .collect())
}

/// The toolchain file's components that `rustup` does not list as installed
/// for its channel.
fn missing_components(tc: &Toolchain) -> Result<Vec<String>> {
    let installed = cmd::output(
        Command::new("rustup")
            .args([
                "component",
                "list",
                "--installed",
                "--toolchain",
                &tc.channel,
            ])
            .current_dir(paths::root()),
    )?;
    Ok(tc
        .components
        .iter()
        .filter(|c| !installed.lines().any(|l| component_matches(l.trim(), c)))
        .cloned()
        .collect())
}

/// Whether a line of `rustup component list --installed` (`clippy`, or
/// `clippy-x86_64-unknown-linux-gnu`) is the component `name`. A component
/// whose name merely starts with `name` (`rust-src` for `rust`) does not
/// count: what follows `name-` must be a target triple.
fn component_matches(line: &str, name: &str) -> bool {
    match line.strip_prefix(name) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('-')
            .is_some_and(|triple| triple.split('-').count() >= 3),
        None => false,
    }
}

/// The lines of `toml` from the one that sets `key` on.
fn from_key<'a>(toml: &'a str, key: &str) -> Option<&'a str> {
    let mut offset = 0;
    for line in toml.split_inclusive('\n') {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            let at = offset + (line.len() - t.len()) + key.len();
            let rest = &toml[at..];
            return Some(&rest[rest.find('=')? + 1..]);
        }
        offset += line.len();
    }
    None
}

/// `key = "value"`.
fn string_value(toml: &str, key: &str) -> Option<String> {
    let rest = from_key(toml, key)?.trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

/// `key = ["a", "b"]` (which may span lines).
fn array_value(toml: &str, key: &str) -> Option<Vec<String>> {
    let rest = from_key(toml, key)?.trim_start();
    let rest = rest.strip_prefix('[')?;
    let close = rest.find(']')?;
    Some(
        rest[..close]
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
    fn reads_the_toolchain_file() {
        let toml = "[toolchain]\nchannel = \"1.95.0\"\ncomponents = [\"rustfmt\", \"clippy\"]\ntargets = [\"a\", \"b-c\"]\nprofile = \"minimal\"\n";
        assert_eq!(
            Toolchain::parse(toml),
            Some(Toolchain {
                channel: "1.95.0".into(),
                targets: vec!["a".into(), "b-c".into()],
                components: vec!["rustfmt".into(), "clippy".into()],
            })
        );
        let multi = "[toolchain]\nchannel=\"x\"\ntargets = [\n  \"x\",\n  \"y\",\n]\n";
        assert_eq!(
            Toolchain::parse(multi),
            Some(Toolchain {
                channel: "x".into(),
                targets: vec!["x".into(), "y".into()],
                components: vec![],
            })
        );
        assert_eq!(Toolchain::parse("[toolchain]\n"), None);
        assert_eq!(Toolchain::parse("[toolchain]\nchannel = \"1\"\n"), None);
        // A key that only starts like another is not it.
        assert_eq!(
            string_value("channels = \"no\"\nchannel = \"yes\"\n", "channel").as_deref(),
            Some("yes")
        );
    }

    #[test]
    fn the_workspace_file_names_what_the_build_uses() {
        let tc = Toolchain::read().unwrap();
        assert!(!tc.channel.is_empty());
        for t in [
            "aarch64-unknown-none-softfloat",
            CHECK_TARGET,
            "aarch64-unknown-linux-musl",
        ] {
            assert!(tc.targets.iter().any(|x| x == t), "{t} missing");
        }
        for c in ["rustfmt", "clippy"] {
            assert!(tc.components.iter().any(|x| x == c), "{c} missing");
        }
    }

    #[test]
    fn component_lines() {
        assert!(component_matches("clippy", "clippy"));
        assert!(component_matches(
            "clippy-x86_64-unknown-linux-gnu",
            "clippy"
        ));
        assert!(component_matches(
            "llvm-tools-x86_64-unknown-linux-gnu",
            "llvm-tools"
        ));
        assert!(!component_matches("rust-src", "rust"));
        assert!(!component_matches("rustfmt-x", "rustfmt"));
        assert!(!component_matches("clip", "clippy"));
    }
}
