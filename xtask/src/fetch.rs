//! Debian's arm64 kernel, its headers and busybox, fetched into `.cache/debian/`.
//!
//! KServ is Debian's stock kernel, so the build never pins a version: it
//! resolves the current one from the meta-package (`linux-image-arm64`) at build
//! time, downloads the image and the matching `linux-headers-*-arm64` and
//! `-common` packages with `apt-get download`, and extracts them with
//! `dpkg -x`, once per version. The headers are then made usable for an
//! out-of-tree cross build (`DESIGN.md` section 8): the arm64 headers'
//! `Makefile` includes the extracted `-common` tree instead of `/usr/src`, and
//! `scripts`/`tools` resolve to the host's `linux-kbuild-*` package.
//!
//! [`Series`] selects the kernel line: 6.1 from bookworm (what the stack runs
//! today) or 6.12 from bookworm-backports.

use crate::cmd;
use crate::paths;
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A Debian kernel series KServ can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Series {
    /// Linux 6.1, bookworm's own kernel.
    Linux6_1,
    /// Linux 6.12, from bookworm-backports (a second boot image).
    Linux6_12,
}

impl Series {
    /// The apt release to resolve the meta-package in; `None` for the
    /// default (highest-priority) candidate.
    fn apt_release(self) -> Option<&'static str> {
        match self {
            Series::Linux6_1 => None,
            Series::Linux6_12 => Some("bookworm-backports"),
        }
    }

    /// How every kernel release of the series starts (`6.1.0-56-arm64`).
    fn release_prefix(self) -> &'static str {
        match self {
            Series::Linux6_1 => "6.1.",
            Series::Linux6_12 => "6.12.",
        }
    }

    /// Human name.
    pub fn name(self) -> &'static str {
        match self {
            Series::Linux6_1 => "6.1",
            Series::Linux6_12 => "6.12",
        }
    }

    /// What the names of its build outputs end in: nothing for the default
    /// (6.1), `-6.12` for 6.12 (`build/kcore-6.12.img`).
    pub fn suffix(self) -> String {
        match self {
            Series::Linux6_1 => String::new(),
            other => format!("-{}", other.name()),
        }
    }
}

/// What [`ensure`] provides.
#[derive(Clone, Debug)]
#[allow(
    dead_code,
    reason = "part of the interface for run/test/bench; not every field has a user yet"
)]
pub struct Fetched {
    /// The series this is.
    pub series: Series,
    /// The kernel release (`uname -r`), e.g. `6.1.0-56-arm64`.
    pub release: String,
    /// The Debian package version of the kernel, e.g. `6.1.192-2`.
    pub version: String,
    /// The raw (uncompressed) arm64 kernel `Image`.
    pub image: PathBuf,
    /// The kernel's `.config`.
    pub config: PathBuf,
    /// The device trees the image package carries (`broadcom/...`, ...).
    pub dtb_dir: PathBuf,
    /// The prepared headers: `make -C <kdir> M=... ARCH=arm64 modules`.
    pub kdir: PathBuf,
    /// Debian's statically linked arm64 busybox.
    pub busybox: PathBuf,
    /// busybox's package version.
    pub busybox_version: String,
}

/// The current Debian 6.1 kernel, headers and busybox, fetched if needed.
pub fn ensure() -> Result<Fetched> {
    ensure_series(Series::Linux6_1)
}

/// The current kernel of `series`, its headers and busybox, fetched if needed.
pub fn ensure_series(series: Series) -> Result<Fetched> {
    let fetched = match resolve_and_fetch(series) {
        Ok(f) => f,
        Err(first) => {
            // A stale package list names versions the archive has dropped
            // (security updates replace old kernels): refresh once and retry.
            cmd::step("fetch", format!("{first:#}"));
            cmd::step(
                "fetch",
                "refreshing the package lists (apt-get update) and retrying",
            );
            cmd::run(privileged("apt-get").args(["update", "-q"]))
                .with_context(|| format!("after: {first:#}"))?;
            resolve_and_fetch(series)?
        }
    };
    Ok(fetched)
}

fn resolve_and_fetch(series: Series) -> Result<Fetched> {
    let cache = paths::cache_dir().join("debian");
    let Resolved {
        image_pkg,
        version,
        busybox_version,
    } = resolve(series, &cache)?;
    let release = image_pkg
        .strip_prefix("linux-image-")
        .with_context(|| format!("unexpected kernel package name {image_pkg}"))?
        .to_string();
    if !release.starts_with(series.release_prefix()) {
        bail!(
            "the {} meta-package points at {image_pkg}, not a {} kernel",
            meta_package(series),
            series.name()
        );
    }
    let flavour_less = release
        .strip_suffix("-arm64")
        .with_context(|| format!("kernel release {release} does not end in -arm64"))?;

    // The kernel, its headers and their -common, all of one version.
    let kernel_dir = cache.join(format!("linux-{release}_{}", file_safe(&version)));
    let packages = [
        format!("{image_pkg}:arm64={version}"),
        format!("linux-headers-{release}:arm64={version}"),
        format!("linux-headers-{flavour_less}-common={version}"),
    ];
    let kernel_cached = extract_once(&kernel_dir, &packages, &cache)?;

    let busybox_dir = cache.join(format!("busybox-static_{}", file_safe(&busybox_version)));
    let busybox_cached = extract_once(
        &busybox_dir,
        &[format!("busybox-static:arm64={busybox_version}")],
        &cache,
    )?;

    let kdir = prepare_headers(&kernel_dir, &release, series)?;
    let image = raw_image(&kernel_dir, &release)?;
    let busybox = busybox_dir.join("bin").join("busybox");
    if !busybox.is_file() {
        bail!("busybox-static {busybox_version} has no /bin/busybox");
    }

    cmd::step(
        "fetch",
        format!(
            "Debian {release} ({version}), busybox {busybox_version}{}",
            if kernel_cached && busybox_cached {
                " (cached)"
            } else {
                ""
            }
        ),
    );
    Ok(Fetched {
        series,
        config: kernel_dir.join("boot").join(format!("config-{release}")),
        dtb_dir: kernel_dir
            .join("usr")
            .join("lib")
            .join(format!("linux-image-{release}")),
        release,
        version,
        image,
        kdir,
        busybox,
        busybox_version,
    })
}

/// Debian's Raspberry Pi boot firmware (`raspi-firmware`, bookworm's
/// `non-free-firmware` component, which `scripts/host-deps.sh` adds to apt),
/// fetched into `.cache/debian/` if needed; returns the directory holding
/// `start4.elf` and `fixup4.dat` (`usr/lib/raspi-firmware`).
pub fn raspi_firmware() -> Result<PathBuf> {
    const PACKAGE: &str = "raspi-firmware";
    let cache = paths::cache_dir().join("debian");
    let policy = cmd::output(Command::new("apt-cache").args(["policy", PACKAGE]))?;
    let version = parse_candidate(&policy, PACKAGE).with_context(|| {
        format!(
            "apt has no candidate version of {PACKAGE} (is bookworm's non-free-firmware \
             component in apt's sources? `cargo xtask deps` adds it):\n{policy}"
        )
    })?;
    let dir = cache.join(format!("{PACKAGE}_{}", file_safe(&version)));
    let cached = extract_once(&dir, &[format!("{PACKAGE}={version}")], &cache)?;
    let firmware = dir.join("usr").join("lib").join(PACKAGE);
    for file in ["start4.elf", "fixup4.dat"] {
        if !firmware.join(file).is_file() {
            bail!(
                "{PACKAGE} {version} has no {}",
                firmware.join(file).display()
            );
        }
    }
    cmd::step(
        "fetch",
        format!(
            "Debian {PACKAGE} {version}{}",
            if cached { " (cached)" } else { "" }
        ),
    );
    Ok(firmware)
}

/// Debian's kernel source of `fetched`'s version (`linux-source-6.1`), fetched
/// into `.cache/debian/` if needed; returns the path of its tarball
/// (`usr/src/linux-source-6.1.tar.xz`). [`forget_source`] drops it again.
pub fn linux_source(fetched: &Fetched) -> Result<PathBuf> {
    let cache = paths::cache_dir().join("debian");
    let package = format!("linux-source-{}", fetched.series.name());
    let dir = source_dir(fetched);
    extract_once(&dir, &[format!("{package}={}", fetched.version)], &cache)?;
    let tarball = dir
        .join("usr")
        .join("src")
        .join(format!("{package}.tar.xz"));
    if !tarball.is_file() {
        bail!(
            "{package} {} carries no {}",
            fetched.version,
            tarball.display()
        );
    }
    Ok(tarball)
}

/// Removes what [`linux_source`] fetched (once what was built from it is
/// kept elsewhere).
pub fn forget_source(fetched: &Fetched) -> Result<()> {
    let dir = source_dir(fetched);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(())
}

fn source_dir(fetched: &Fetched) -> PathBuf {
    paths::cache_dir().join("debian").join(format!(
        "linux-source-{}_{}",
        fetched.series.name(),
        file_safe(&fetched.version)
    ))
}

/// What the package lists say the current packages are.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Resolved {
    /// `linux-image-<release>`.
    image_pkg: String,
    /// Its version (the headers are fetched at the same one).
    version: String,
    /// `busybox-static`'s version.
    busybox_version: String,
}

impl Resolved {
    fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.image_pkg, self.version, self.busybox_version
        )
    }

    fn from_text(text: &str) -> Option<Resolved> {
        let mut l = text.lines();
        let r = Resolved {
            image_pkg: l.next()?.to_string(),
            version: l.next()?.to_string(),
            busybox_version: l.next()?.to_string(),
        };
        (l.next().is_none() && !r.image_pkg.is_empty()).then_some(r)
    }
}

/// Resolves the series' current kernel package and versions. `apt-cache` takes
/// a second or more per call where apt keeps no binary cache, so the answer is
/// remembered in `.cache/debian/` together with a fingerprint of apt's lists
/// and reused until those change (`apt-get update`).
fn resolve(series: Series, cache: &Path) -> Result<Resolved> {
    let memo = cache.join(format!("resolved-{}", series.name()));
    let fingerprint = apt_lists_fingerprint();
    let memoised = fingerprint.as_ref().and_then(|fp| {
        let text = fs::read_to_string(&memo).ok()?;
        Resolved::from_text(text.strip_prefix(fp.as_str())?)
    });
    if let Some(r) = memoised {
        return Ok(r);
    }
    let image_pkg = resolve_kernel_package(series)?;
    let image = format!("{image_pkg}:arm64");
    let policy =
        cmd::output(Command::new("apt-cache").args(["policy", &image, "busybox-static:arm64"]))?;
    let candidate = |pkg: &str| {
        parse_candidate(&policy, pkg)
            .with_context(|| format!("apt has no candidate version of {pkg}:\n{policy}"))
    };
    let resolved = Resolved {
        version: candidate(&image)?,
        busybox_version: candidate("busybox-static:arm64")?,
        image_pkg,
    };
    if let Some(fp) = fingerprint {
        fs::create_dir_all(cache).with_context(|| format!("cannot create {}", cache.display()))?;
        fs::write(&memo, fp + &resolved.to_text())
            .with_context(|| format!("cannot write {}", memo.display()))?;
    }
    Ok(resolved)
}

/// Names, sizes and modification times of apt's package lists, as one line;
/// `None` if they cannot be read.
fn apt_lists_fingerprint() -> Option<String> {
    let mut parts: Vec<String> = fs::read_dir("/var/lib/apt/lists")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let m = e.metadata().ok()?;
            let mtime = m
                .modified()
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_nanos();
            m.is_file()
                .then(|| format!("{}:{}:{mtime}", e.file_name().to_string_lossy(), m.len()))
        })
        .collect();
    parts.sort();
    (!parts.is_empty()).then(|| format!("lists {}\n", parts.join(" ")))
}

/// `program` run as root: directly when we are root, else through `sudo`
/// (as `scripts/host-deps.sh` does).
fn privileged(program: &str) -> Command {
    let root = cmd::output(Command::new("id").arg("-u")).is_ok_and(|u| u.trim() == "0");
    if root {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.arg(program);
        c
    }
}

/// `linux-image-arm64`, with the series' release if it has one.
fn meta_package(series: Series) -> String {
    match series.apt_release() {
        Some(r) => format!("linux-image-arm64:arm64/{r}"),
        None => "linux-image-arm64:arm64".to_string(),
    }
}

/// The versioned kernel package the meta-package depends on, e.g.
/// `linux-image-6.1.0-56-arm64`.
fn resolve_kernel_package(series: Series) -> Result<String> {
    let meta = meta_package(series);
    let out =
        cmd::output(Command::new("apt-cache").args(["depends", &meta])).with_context(|| {
            format!("cannot resolve the kernel behind {meta} (is the arm64 architecture added?)")
        })?;
    parse_depends(&out)
        .with_context(|| format!("`apt-cache depends {meta}` names no linux-image package:\n{out}"))
}

/// The first `Depends: linux-image-…` of `apt-cache depends` output, without
/// its architecture qualifier.
fn parse_depends(out: &str) -> Option<String> {
    out.lines().find_map(|l| {
        let dep = l.trim().strip_prefix("Depends:")?.trim();
        let name = dep.split(':').next()?.trim();
        name.starts_with("linux-image-").then(|| name.to_string())
    })
}

/// The candidate version of `package` in `apt-cache policy` output that may
/// cover several packages (each section starts with `<package>:` unindented).
fn parse_candidate(out: &str, package: &str) -> Option<String> {
    let header = format!("{package}:");
    out.lines()
        .skip_while(|l| l.trim_end() != header)
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty() && v != "(none)")
}

/// A package version as part of a file name (epochs carry a colon).
pub(crate) fn file_safe(version: &str) -> String {
    version.replace(':', "%3a")
}

/// Marks a completely extracted directory; holds the package list.
pub(crate) const STAMP: &str = ".kcore-extracted";

/// Downloads `packages` (`name[:arch]=version`) and extracts them all into
/// `dir`, unless `dir` already holds exactly that extraction. Returns whether
/// it did (true = cached).
pub(crate) fn extract_once(dir: &Path, packages: &[String], cache: &Path) -> Result<bool> {
    let want = packages.join("\n") + "\n";
    if fs::read_to_string(dir.join(STAMP)).is_ok_and(|s| s == want) {
        return Ok(true);
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let debs = cache.join("debs").join(&name);
    let staging = cache.join(format!("{name}.partial"));
    for d in [&debs, &staging] {
        if d.exists() {
            fs::remove_dir_all(d).with_context(|| format!("cannot remove {}", d.display()))?;
        }
        fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    cmd::step("fetch", format!("downloading {}", packages.join(" ")));
    cmd::run(
        Command::new("apt-get")
            .arg("download")
            .args(packages)
            .current_dir(&debs),
    )
    .context("apt-get download failed")?;
    let mut found = 0;
    for entry in fs::read_dir(&debs).with_context(|| format!("cannot list {}", debs.display()))? {
        let deb = entry?.path();
        if deb.extension().is_some_and(|e| e == "deb") {
            cmd::run(Command::new("dpkg").arg("-x").arg(&deb).arg(&staging))?;
            found += 1;
        }
    }
    if found != packages.len() {
        bail!(
            "expected {} .deb files in {}, found {found}",
            packages.len(),
            debs.display()
        );
    }
    fs::write(staging.join(STAMP), &want)
        .with_context(|| format!("cannot write the stamp in {}", staging.display()))?;
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    fs::rename(&staging, dir)
        .with_context(|| format!("cannot move {} to {}", staging.display(), dir.display()))?;
    // The extraction is what is kept; the archives can go.
    fs::remove_dir_all(&debs).with_context(|| format!("cannot remove {}", debs.display()))?;
    Ok(false)
}

/// Makes the extracted headers of `release` usable from where they are and
/// returns the directory to pass to `make -C`:
///
/// - the arm64 headers' `Makefile` includes `/usr/src/linux-headers-*-common/
///   Makefile`; point it at the extracted `-common`;
/// - `scripts` and `tools` link to `../../lib/linux-kbuild-<v>/…`, which the
///   headers packages do not carry: make `usr/lib/linux-kbuild-<v>` in the
///   extraction a link to the host's package of that name (installed if
///   missing).
///
/// Idempotent; re-run on every build so a moved checkout keeps working.
fn prepare_headers(root: &Path, release: &str, series: Series) -> Result<PathBuf> {
    let src = root.join("usr").join("src");
    let kdir = src.join(format!("linux-headers-{release}"));
    let makefile = kdir.join("Makefile");
    let original = fs::read_to_string(&makefile)
        .with_context(|| format!("cannot read {}", makefile.display()))?;
    let common_name = original
        .lines()
        .find_map(|l| l.trim().strip_prefix("include "))
        .and_then(|p| p.trim().strip_suffix("/Makefile"))
        .and_then(|p| Path::new(p).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{} does not include a -common Makefile", makefile.display()))?;
    let common = src.join(&common_name);
    if !common.join("Makefile").is_file() {
        bail!("the headers' -common tree {} is missing", common.display());
    }
    cmd::write_if_changed(
        &makefile,
        format!("include {}/Makefile\n", common.display()).as_bytes(),
    )?;

    let scripts_link = fs::read_link(kdir.join("scripts"))
        .with_context(|| format!("{}/scripts is not a symbolic link", kdir.display()))?;
    let kbuild = scripts_link
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n.starts_with("linux-kbuild-"))
        .with_context(|| {
            format!(
                "unexpected {}/scripts link {}",
                kdir.display(),
                scripts_link.display()
            )
        })?;
    let host_kbuild = Path::new("/usr/lib").join(&kbuild);
    if !host_kbuild.join("scripts").is_dir() {
        cmd::step("fetch", format!("installing {kbuild} for the module build"));
        let mut apt = privileged("apt-get");
        apt.args(["install", "-y", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive");
        if let Some(r) = series.apt_release() {
            apt.args(["-t", r]);
        }
        cmd::run(apt.arg(&kbuild)).with_context(|| format!("cannot install {kbuild}"))?;
    }
    let lib = root.join("usr").join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("cannot create {}", lib.display()))?;
    let link = lib.join(&kbuild);
    if fs::read_link(&link).ok().as_deref() != Some(host_kbuild.as_path()) {
        if link.symlink_metadata().is_ok() {
            fs::remove_file(&link).with_context(|| format!("cannot remove {}", link.display()))?;
        }
        std::os::unix::fs::symlink(&host_kbuild, &link).with_context(|| {
            format!(
                "cannot link {} to {}",
                link.display(),
                host_kbuild.display()
            )
        })?;
    }
    if !kdir.join("scripts").join("Makefile.build").is_file() {
        bail!(
            "{}/scripts does not resolve to a kbuild tree",
            kdir.display()
        );
    }
    Ok(kdir)
}

/// The arm64 `Image` magic at offset 0x38.
const IMAGE_MAGIC: &[u8; 4] = b"ARM\x64";

/// The raw kernel `Image`. Debian's arm64 `vmlinuz` is already one (then it is
/// used as is); a gzip-compressed one, or an EFI zboot image (`MZ` + `zimg`)
/// wrapping gzip, is decompressed once to `Image` beside it.
fn raw_image(root: &Path, release: &str) -> Result<PathBuf> {
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{release}"));
    let bytes = fs::read(&vmlinuz).with_context(|| format!("cannot read {}", vmlinuz.display()))?;
    if bytes.get(0x38..0x3c) == Some(IMAGE_MAGIC.as_slice()) {
        return Ok(vmlinuz);
    }
    let out = root.join("Image");
    if fs::read(&out).is_ok_and(|b| b.get(0x38..0x3c) == Some(IMAGE_MAGIC.as_slice())) {
        return Ok(out);
    }
    let compressed: &[u8] = if bytes.starts_with(&[0x1f, 0x8b]) {
        &bytes
    } else if bytes.starts_with(b"MZ") && bytes.get(4..8) == Some(b"zimg".as_slice()) {
        // EFI zboot header: payload offset and size at 8 and 12, the
        // compression's name at 24.
        let word = |at: usize| -> Option<usize> {
            Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize)
        };
        let (off, len) = word(8)
            .zip(word(12))
            .context("truncated EFI zboot header")?;
        let kind = bytes.get(24..32).unwrap_or_default();
        if !kind.starts_with(b"gzip") {
            bail!(
                "{} is an EFI zboot image compressed with {:?}; only gzip is handled",
                vmlinuz.display(),
                kind
            );
        }
        bytes
            .get(off..off + len)
            .context("EFI zboot payload lies outside the file")?
    } else {
        bail!(
            "{} is neither a raw arm64 Image nor a gzip or EFI zboot one",
            vmlinuz.display()
        );
    };
    let packed = root.join("vmlinuz.gz");
    fs::write(&packed, compressed).with_context(|| format!("cannot write {}", packed.display()))?;
    let image = Command::new("gzip")
        .arg("-dc")
        .arg(&packed)
        .output()
        .with_context(|| format!("cannot run gzip on {}", packed.display()))?;
    if !image.status.success() || image.stdout.get(0x38..0x3c) != Some(IMAGE_MAGIC.as_slice()) {
        bail!(
            "decompressing {} did not yield an arm64 Image",
            vmlinuz.display()
        );
    }
    cmd::write_if_changed(&out, &image.stdout)?;
    fs::remove_file(&packed).ok();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_apt_cache_depends() {
        let out = "linux-image-arm64:arm64\n  Depends: linux-image-6.1.0-56-arm64:arm64\n";
        assert_eq!(
            parse_depends(out).as_deref(),
            Some("linux-image-6.1.0-56-arm64")
        );
        let bpo = "linux-image-arm64:arm64\n  Depends: linux-image-6.12.95+deb12-arm64:arm64\n";
        assert_eq!(
            parse_depends(bpo).as_deref(),
            Some("linux-image-6.12.95+deb12-arm64")
        );
        assert_eq!(parse_depends("linux-image-arm64:arm64\n"), None);
    }

    #[test]
    fn parses_apt_cache_policy() {
        let out = "linux-image-6.1.0-56-arm64:arm64:\n  Installed: (none)\n  Candidate: 6.1.192-2\n  \
                   Version table:\n     6.1.192-2 500\n        500 http://x bookworm/main arm64 Packages\n\
                   busybox-static:arm64:\n  Installed: (none)\n  Candidate: 1:1.35.0-4+deb12u1+b1\n  \
                   Version table:\n";
        let busybox = parse_candidate(out, "busybox-static:arm64");
        assert_eq!(busybox.as_deref(), Some("1:1.35.0-4+deb12u1+b1"));
        let image = parse_candidate(out, "linux-image-6.1.0-56-arm64:arm64");
        assert_eq!(image.as_deref(), Some("6.1.192-2"));
        assert_eq!(parse_candidate(out, "other:arm64"), None);
        let none = "x:\n  Installed: (none)\n  Candidate: (none)\n";
        assert_eq!(parse_candidate(none, "x"), None);
        assert_eq!(file_safe("1:1.35.0-4"), "1%3a1.35.0-4");
    }

    #[test]
    fn resolution_memo_round_trips() {
        let r = Resolved {
            image_pkg: "linux-image-6.1.0-56-arm64".into(),
            version: "6.1.192-2".into(),
            busybox_version: "1:1.35.0-4+deb12u1+b1".into(),
        };
        assert_eq!(Resolved::from_text(&r.to_text()), Some(r));
        assert_eq!(Resolved::from_text("a\nb\n"), None);
    }
}
