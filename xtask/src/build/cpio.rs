//! A writer for the `newc` cpio format (the one the Linux kernel unpacks as an
//! initramfs: `Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Written here rather than with `cpio -o` so the archive can hold device
//! nodes (`/dev/console`, which the kernel opens for init's stdio before any
//! devtmpfs exists) without root, and so it is reproducible: every entry is
//! owned by root with a zero timestamp and inode numbers in order.

/// One archive member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A directory.
    Dir {
        /// Path without a leading `/`.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// A regular file.
    File {
        /// Path without a leading `/`.
        path: String,
        /// Permission bits.
        mode: u32,
        /// Contents.
        data: Vec<u8>,
    },
    /// A symbolic link.
    Symlink {
        /// Path without a leading `/`.
        path: String,
        /// Where it points.
        target: String,
    },
    /// A character device node.
    CharDev {
        /// Path without a leading `/`.
        path: String,
        /// Permission bits.
        mode: u32,
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Serialises `entries`, in order, followed by the trailer.
pub fn archive(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        let (path, mode, data, rdev): (&str, u32, &[u8], (u32, u32)) = match e {
            Entry::Dir { path, mode } => (path, S_IFDIR | mode, &[], (0, 0)),
            Entry::File { path, mode, data } => (path, S_IFREG | mode, data, (0, 0)),
            Entry::Symlink { path, target } => (path, S_IFLNK | 0o777, target.as_bytes(), (0, 0)),
            Entry::CharDev {
                path,
                mode,
                major,
                minor,
            } => (path, S_IFCHR | mode, &[], (*major, *minor)),
        };
        let nlink = if matches!(e, Entry::Dir { .. }) { 2 } else { 1 };
        member(&mut out, ino, mode, nlink, rdev, path, data);
    }
    member(&mut out, 0, 0, 1, (0, 0), "TRAILER!!!", &[]);
    out
}

/// Appends one header, name and data, each padded to 4 bytes.
fn member(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    rdev: (u32, u32),
    name: &str,
    data: &[u8],
) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime
        data.len() as u32,
        0, // devmajor
        0, // devminor
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member as read back: name, mode, rdev, data.
    type Member = (String, u32, (u32, u32), Vec<u8>);

    /// Reads a newc archive back.
    fn read(mut a: &[u8]) -> Vec<Member> {
        let mut v = Vec::new();
        let mut at = 0usize;
        loop {
            assert_eq!(&a[..6], b"070701");
            let field = |i: usize| {
                u32::from_str_radix(
                    std::str::from_utf8(&a[6 + 8 * i..14 + 8 * i]).unwrap_or(""),
                    16,
                )
            };
            let (mode, size, rmaj, rmin, namesize) = (
                field(1).unwrap_or(0),
                field(6).unwrap_or(0),
                field(9).unwrap_or(0),
                field(10).unwrap_or(0),
                field(11).unwrap_or(0),
            );
            let name = String::from_utf8_lossy(&a[110..110 + namesize as usize - 1]).into_owned();
            let data_at = (110 + namesize as usize).next_multiple_of(4);
            let data = a[data_at..data_at + size as usize].to_vec();
            let next = (data_at + size as usize).next_multiple_of(4);
            assert_eq!((at + next) % 4, 0);
            at += next;
            a = &a[next..];
            if name == "TRAILER!!!" {
                assert!(a.is_empty());
                return v;
            }
            v.push((name, mode, (rmaj, rmin), data));
        }
    }

    #[test]
    fn round_trips() {
        let entries = vec![
            Entry::Dir {
                path: "bin".into(),
                mode: 0o755,
            },
            Entry::File {
                path: "bin/x".into(),
                mode: 0o755,
                data: b"hello".to_vec(),
            },
            Entry::Symlink {
                path: "bin/sh".into(),
                target: "x".into(),
            },
            Entry::CharDev {
                path: "dev/console".into(),
                mode: 0o600,
                major: 5,
                minor: 1,
            },
        ];
        let a = archive(&entries);
        assert_eq!(
            read(&a),
            vec![
                ("bin".to_string(), 0o040755, (0, 0), vec![]),
                ("bin/x".to_string(), 0o100755, (0, 0), b"hello".to_vec()),
                ("bin/sh".to_string(), 0o120777, (0, 0), b"x".to_vec()),
                ("dev/console".to_string(), 0o020600, (5, 1), vec![]),
            ]
        );
        assert_eq!(archive(&entries), a, "reproducible");
    }
}
