//! Which QEMU we run and whether it is new enough.
//!
//! The system tests need QEMU 10 or newer (from Debian's `bookworm-backports`):
//! older releases lack pieces we rely on (Debian bookworm's 7.2 has no
//! `raspi4b` and differs in `virt` details). The binary is
//! `qemu-system-aarch64` from `PATH`, or the one named by `$KCORE_QEMU`.
//! The version is asked once per process and the answer is cached.

use std::ffi::OsString;
use std::fmt;
use std::process::Command;
use std::sync::OnceLock;

use crate::{Error, ErrorKind};

/// The oldest QEMU major version we support.
pub const MIN_QEMU_MAJOR: u32 = 10;

/// The environment variable that overrides the QEMU binary.
pub const QEMU_ENV: &str = "KCORE_QEMU";

/// The QEMU program: `$KCORE_QEMU` or `qemu-system-aarch64`.
pub fn qemu_binary() -> OsString {
    std::env::var_os(QEMU_ENV)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "qemu-system-aarch64".into())
}

/// A QEMU release number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct QemuVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Micro.
    pub micro: u32,
}

impl fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// Parses the first line of `qemu-system-aarch64 --version`, e.g.
/// `QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)`.
pub fn parse_version(output: &str) -> Option<QemuVersion> {
    let rest = output.lines().next()?.split("version ").nth(1)?;
    let number = rest
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?;
    let mut parts = number.split('.').map(|p| p.parse::<u32>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let micro = parts.next().unwrap_or(Ok(0)).ok()?;
    Some(QemuVersion {
        major,
        minor,
        micro,
    })
}

/// Checks that QEMU runs and is version [`MIN_QEMU_MAJOR`] or newer.
pub fn check_qemu() -> Result<QemuVersion, Error> {
    static CHECKED: OnceLock<Result<QemuVersion, String>> = OnceLock::new();
    CHECKED
        .get_or_init(ask_version)
        .clone()
        .map_err(|message| Error::new(ErrorKind::Qemu, message))
}

fn ask_version() -> Result<QemuVersion, String> {
    let bin = qemu_binary();
    let shown = bin.to_string_lossy();
    let hint = "install QEMU 10 from Debian's bookworm-backports \
                (`cargo xtask deps` does it, or `apt-get install -t bookworm-backports qemu-system-arm`), \
                or point $KCORE_QEMU at a qemu-system-aarch64 of version 10 or newer";
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run `{shown} --version`: {e}; {hint}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "`{shown} --version` failed ({}); {hint}",
            out.status
        ));
    }
    let version = parse_version(&text).ok_or_else(|| {
        format!(
            "cannot read the version in `{shown} --version` output {:?}",
            text.trim()
        )
    })?;
    if version.major < MIN_QEMU_MAJOR {
        return Err(format!(
            "{shown} is QEMU {version}, but KCore needs QEMU {MIN_QEMU_MAJOR} or newer; {hint}"
        ));
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_backports_version() {
        let out = "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\n\
                   Copyright (c) 2003-2025 Fabrice Bellard and the QEMU Project developers\n";
        assert_eq!(
            parse_version(out),
            Some(QemuVersion {
                major: 10,
                minor: 0,
                micro: 2
            })
        );
    }

    #[test]
    fn parses_other_shapes() {
        assert_eq!(
            parse_version("QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u13)"),
            Some(QemuVersion {
                major: 7,
                minor: 2,
                micro: 15
            })
        );
        assert_eq!(
            parse_version("QEMU emulator version 11.0.50"),
            Some(QemuVersion {
                major: 11,
                minor: 0,
                micro: 50
            })
        );
        assert_eq!(
            parse_version("QEMU emulator version 9.2"),
            Some(QemuVersion {
                major: 9,
                minor: 2,
                micro: 0
            })
        );
        assert_eq!(parse_version("qemu: command not found"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn versions_order() {
        let v = |major, minor, micro| QemuVersion {
            major,
            minor,
            micro,
        };
        assert!(v(10, 0, 0) > v(9, 2, 3));
        assert!(v(10, 1, 0) > v(10, 0, 9));
    }
}
