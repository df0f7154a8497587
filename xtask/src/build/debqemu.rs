//! Debian's own QEMU as a VMM in KServ (the KServ test `debqemu`).
//!
//! Two builds of `qemu-system-arm:arm64`: bookworm's (QEMU 7.2, the version of
//! the `bookworm` release and its security updates) and bookworm-backports'
//! (QEMU 10.0), each with the arm64 shared libraries it runs on, fetched once
//! per version into `.cache/debian/qemu-system-arm_<version>/`. Which
//! packages: the closure of `qemu-system-arm`'s `Depends` over library
//! packages (`lib*`, `zlib*`), resolved with `apt-cache depends` on arm64 (the
//! libraries at their bookworm versions: the backport asks for none newer).
//! Which files: the closure of `usr/bin/qemu-system-aarch64`'s `DT_NEEDED`
//! entries over what those packages hold (read with `aarch64-linux-gnu-readelf`);
//! a library no package supplies fails the build.
//!
//! The files go into a separate cpio fragment, `build/kserv/debqemu.cpio`
//! (about 110 MB): normal boots do not carry it. Linux unpacks concatenated
//! archives in turn, so `build/kserv/initramfs-debqemu.cpio` is KServ's
//! initramfs followed by the fragment (booted directly at EL2, the stock-KVM
//! column) and `build/kcore-debqemu.img` the boot image packed with it (the
//! KCore column). Layout of the fragment, bookworm's as Debian installs it,
//! the backport's the same under `/opt/qemu-bpo` (run through its own
//! dynamic loader, `--library-path` naming its directories):
//!
//! ```text
//! /usr/bin/qemu-system-aarch64
//! /lib/ld-linux-aarch64.so.1 -> aarch64-linux-gnu/ld-linux-aarch64.so.1
//! /lib/aarch64-linux-gnu/<soname>, /usr/lib/aarch64-linux-gnu/<soname>
//! /opt/qemu-bpo/usr/bin/qemu-system-aarch64
//! /opt/qemu-bpo/lib/aarch64-linux-gnu/<soname>, /opt/qemu-bpo/usr/lib/aarch64-linux-gnu/<soname>
//! ```
//!
//! Each library is stored under its soname (what `DT_NEEDED` names), with the
//! contents of the file the package's symbolic link resolves to.

use super::cpio::{Entry, archive};
use crate::fetch;
use crate::{cmd, paths};
use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The package.
const PACKAGE: &str = "qemu-system-arm";

/// A build of the package: the suite it is taken from and where in KServ's
/// root it goes.
struct Suite {
    /// The suite (its `-security` and `-updates` count as it).
    release: &'static str,
    /// The directory the package's tree goes under (`""`: `/`).
    prefix: &'static str,
}

/// bookworm's QEMU at `/`, the backport's under `/opt/qemu-bpo`.
const SUITES: [Suite; 2] = [
    Suite {
        release: "bookworm",
        prefix: "",
    },
    Suite {
        release: "bookworm-backports",
        prefix: "opt/qemu-bpo",
    },
];
/// The binary the test runs.
const BINARY: &str = "usr/bin/qemu-system-aarch64";
/// The directories the dynamic loader is told to search
/// (`LD_LIBRARY_PATH` in the test), Debian's multiarch ones.
const LIB_DIRS: &[&str] = &["lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu"];

/// What the build produced.
pub struct DebQemu {
    /// `build/kserv/initramfs-debqemu.cpio`.
    pub initramfs: PathBuf,
}

/// `build/kserv/initramfs-debqemu.cpio`: `initramfs` followed by the QEMU
/// fragment. Prints one step line.
pub fn build(initramfs: &Path) -> Result<DebQemu> {
    let mut entries = Vec::new();
    let mut what = Vec::new();
    for suite in &SUITES {
        let (version, root, cached) = ensure_extracted(suite.release)?;
        let mine = fragment_entries(&root, suite.prefix)?;
        what.push(format!(
            "{version}{}, {} files",
            if cached { " cached" } else { "" },
            mine.iter()
                .filter(|e| matches!(e, Entry::File { .. }))
                .count(),
        ));
        entries.extend(mine);
    }
    let fragment = archive(&entries);
    let kserv = paths::build_dir().join("kserv");
    let mut changed = cmd::write_if_changed(&kserv.join("debqemu.cpio"), &fragment)?;
    let mut combined =
        fs::read(initramfs).with_context(|| format!("cannot read {}", initramfs.display()))?;
    combined.extend_from_slice(&fragment);
    let out = kserv.join("initramfs-debqemu.cpio");
    changed |= cmd::write_if_changed(&out, &combined)?;
    cmd::step(
        "debqemu",
        format!(
            "{} (Debian {PACKAGE} {}: {} KiB; with KServ's initramfs {} KiB){}",
            cmd::show(&out),
            what.join(" and "),
            fragment.len() / 1024,
            combined.len() / 1024,
            cmd::changed_note(changed)
        ),
    );
    Ok(DebQemu { initramfs: out })
}

/// The `release` version of the package, its extraction directory and
/// whether that was already there.
fn ensure_extracted(release: &str) -> Result<(String, PathBuf, bool)> {
    let cache = paths::cache_dir().join("debian");
    let version = release_version(release)?;
    let dir = cache.join(format!("{PACKAGE}_{}", fetch::file_safe(&version)));
    let top = format!("{PACKAGE}:arm64={version}");
    // The stamp lists the packages, this one first: once extracted, the
    // closure is not resolved again.
    if fs::read_to_string(dir.join(fetch::STAMP)).is_ok_and(|s| s.lines().next() == Some(&top)) {
        return Ok((version, dir, true));
    }
    let mut packages = vec![top.clone()];
    packages.extend(
        library_closure(&top)?
            .into_iter()
            .map(|p| format!("{p}:arm64")),
    );
    let cached = fetch::extract_once(&dir, &packages, &cache)?;
    Ok((version, dir, cached))
}

/// The version `apt-cache policy` lists for the package from `release` itself
/// (or its security or point-release updates): `bookworm` is never a
/// backport's.
fn release_version(release: &str) -> Result<String> {
    let spec = format!("{PACKAGE}:arm64");
    let out = cmd::output(Command::new("apt-cache").args(["policy", &spec]))?;
    parse_release_version(&out, release).with_context(|| {
        format!("apt knows no {release} version of {spec} (is arm64 added?):\n{out}")
    })
}

/// The first (highest) version in `apt-cache policy` output's version table
/// with a source line of `release`, `release-security` or `release-updates`.
fn parse_release_version(out: &str, release: &str) -> Option<String> {
    let mut version: Option<&str> = None;
    let mut in_table = false;
    for line in out.lines() {
        let t = line.trim();
        if t.starts_with("Version table:") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        let words: Vec<&str> = t.trim_start_matches("*** ").split_whitespace().collect();
        // A version line: "<version> <priority>"; a source line:
        // "<priority> <uri> <suite>/<component> <arch> Packages".
        if words.len() == 2 && words[1].parse::<i32>().is_ok() {
            version = Some(words[0]);
        } else if let (Some(v), Some(suite)) = (version, words.get(2)) {
            let suite = suite.split('/').next().unwrap_or_default();
            let ok = [
                release.to_string(),
                format!("{release}-security"),
                format!("{release}-updates"),
            ];
            if ok.iter().any(|r| r == suite) {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// The library packages (`lib*`, `zlib*`) `top` depends on, directly or
/// through each other, as arm64 package names without the architecture.
fn library_closure(top: &str) -> Result<BTreeSet<String>> {
    let mut all = BTreeSet::new();
    let mut frontier = vec![top.to_string()];
    while !frontier.is_empty() {
        let out = cmd::output(
            Command::new("apt-cache")
                .args([
                    "depends",
                    "--no-recommends",
                    "--no-suggests",
                    "--no-conflicts",
                    "--no-breaks",
                    "--no-replaces",
                    "--no-enhances",
                ])
                .args(&frontier),
        )?;
        frontier = parse_library_depends(&out)
            .into_iter()
            .filter(|p| all.insert(p.clone()))
            .map(|p| format!("{p}:arm64"))
            .collect();
    }
    Ok(all)
}

/// The `Depends:` of `apt-cache depends` output naming library packages
/// (virtual ones, `<...>`, left out), without `:arm64`.
fn parse_library_depends(out: &str) -> BTreeSet<String> {
    out.lines()
        .filter_map(|l| {
            let dep = l.trim().trim_start_matches('|').strip_prefix("Depends:")?;
            let name = dep.trim();
            if name.starts_with('<') {
                return None;
            }
            let name = name.strip_suffix(":arm64").unwrap_or(name);
            (name.starts_with("lib") || name.starts_with("zlib")).then(|| name.to_string())
        })
        .collect()
}

/// The `DT_NEEDED` sonames of an arm64 ELF file.
fn needed(elf: &Path) -> Result<Vec<String>> {
    let out = cmd::output(
        Command::new("aarch64-linux-gnu-readelf")
            .arg("-dW")
            .arg(elf),
    )?;
    Ok(parse_needed(&out))
}

fn parse_needed(readelf: &str) -> Vec<String> {
    readelf
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| {
            let (_, rest) = l.split_once('[')?;
            Some(rest.split_once(']')?.0.to_string())
        })
        .collect()
}

fn dir(path: &str) -> Entry {
    Entry::Dir {
        path: path.into(),
        mode: 0o755,
    }
}

/// `path` under `prefix`.
fn under(prefix: &str, path: &str) -> String {
    if prefix.is_empty() {
        path.to_string()
    } else {
        format!("{prefix}/{path}")
    }
}

/// The fragment's entries: the binary and the `DT_NEEDED` closure under
/// `root`, placed under `prefix`; with no prefix also `/lib`'s link to the
/// dynamic loader (a prefixed build is run through its own).
fn fragment_entries(root: &Path, prefix: &str) -> Result<Vec<Entry>> {
    let read = |p: &Path| fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let mut parents = Vec::new();
    let mut at = String::new();
    for part in prefix.split('/').filter(|p| !p.is_empty()) {
        at = under(&at, part);
        parents.push(at.clone());
    }
    let mut e: Vec<Entry> = parents
        .iter()
        .map(|p| dir(p))
        .chain(
            ["usr", "usr/bin", "lib", "usr/lib"]
                .into_iter()
                .chain(LIB_DIRS.iter().copied())
                .map(|d| dir(&under(prefix, d))),
        )
        .collect();
    let binary = root.join(BINARY);
    e.push(Entry::File {
        path: under(prefix, BINARY),
        mode: 0o755,
        data: read(&binary)?,
    });
    let mut seen = BTreeSet::new();
    let mut todo = vec![binary];
    while let Some(elf) = todo.pop() {
        for soname in needed(&elf)? {
            if !seen.insert(soname.clone()) {
                continue;
            }
            let Some(rel) = LIB_DIRS
                .iter()
                .map(|d| format!("{d}/{soname}"))
                .find(|p| root.join(p).exists())
            else {
                bail!(
                    "{} needs {soname}, which no fetched package supplies (in {})",
                    elf.display(),
                    root.display()
                );
            };
            let path = root.join(&rel);
            e.push(Entry::File {
                path: under(prefix, &rel),
                mode: 0o755,
                data: read(&path)?,
            });
            todo.push(path);
        }
    }
    // The program interpreter, where the binary's PT_INTERP names it.
    if !seen.contains("ld-linux-aarch64.so.1") {
        bail!(
            "{} does not need ld-linux-aarch64.so.1",
            root.join(BINARY).display()
        );
    }
    if prefix.is_empty() {
        e.push(Entry::Symlink {
            path: "lib/ld-linux-aarch64.so.1".into(),
            target: "aarch64-linux-gnu/ld-linux-aarch64.so.1".into(),
        });
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_release_version_not_the_backport() {
        let out = "qemu-system-arm:arm64:\n  Installed: (none)\n  Candidate: 1:7.2+dfsg-7+deb12u18+b3\n  \
                   Version table:\n     1:10.0.2+ds-2+deb13u1~bpo12+1 100\n        100 http://x \
                   bookworm-backports/main arm64 Packages\n     1:7.2+dfsg-7+deb12u18+b3 500\n        \
                   500 http://x bookworm/main arm64 Packages\n     1:7.2+dfsg-7+deb12u15 500\n        \
                   500 http://y bookworm-security/main arm64 Packages\n";
        assert_eq!(
            parse_release_version(out, "bookworm").as_deref(),
            Some("1:7.2+dfsg-7+deb12u18+b3")
        );
        assert_eq!(
            parse_release_version(out, "bookworm-backports").as_deref(),
            Some("1:10.0.2+ds-2+deb13u1~bpo12+1")
        );
        assert_eq!(parse_release_version(out, "trixie"), None);
        let installed = "x:\n  Version table:\n *** 2.0 500\n        500 http://x bookworm-security/main arm64 \
                         Packages\n        100 /var/lib/dpkg/status\n";
        assert_eq!(
            parse_release_version(installed, "bookworm").as_deref(),
            Some("2.0")
        );
    }

    #[test]
    fn keeps_library_depends_only() {
        let out = "qemu-system-arm:arm64\n  Depends: libaio1:arm64\n  Depends: qemu-system-common:arm64\n  \
                   Depends: <qemu-system-data:arm64>\n    qemu-system-data\n  |Depends: zlib1g:arm64\n  \
                   Depends: libc6\n  Recommends: libfoo:arm64\n";
        let got: Vec<String> = parse_library_depends(out).into_iter().collect();
        assert_eq!(got, ["libaio1", "libc6", "zlib1g"]);
    }

    #[test]
    fn reads_needed_entries() {
        let out = " 0x0000000000000001 (NEEDED)             Shared library: [libfdt.so.1]\n \
                   0x000000000000000e (SONAME)             Library soname: [libx.so.2]\n \
                   0x0000000000000001 (NEEDED)             Shared library: [ld-linux-aarch64.so.1]\n";
        assert_eq!(parse_needed(out), ["libfdt.so.1", "ld-linux-aarch64.so.1"]);
    }
}
