//! Damaged copies of the boot image, for the malformed-payload tests.
//!
//! Reads just enough of the payload header (`docs/boot-image.md`: magic
//! `KCPAYLD\0` at a 4 KiB boundary after KCore, `total_size` at offset 16,
//! 24-byte entries from offset 32 with kind 1 = the KServ kernel) to damage
//! the image at a chosen place. This is a second, independent reading of the
//! format: the packer and KCore use `kcore-payload`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The payload header's magic.
pub const MAGIC: &[u8; 8] = b"KCPAYLD\0";

/// Where the payload and its kernel lie in a boot image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// File offset of the payload header.
    pub header: usize,
    /// `total_size` of the payload.
    pub total_size: usize,
    /// File offset of the KServ kernel.
    pub kernel: usize,
    /// Size of the KServ kernel.
    pub kernel_size: usize,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?)).ok()
}

/// Finds the payload in `image`.
pub fn layout(image: &[u8]) -> anyhow::Result<Layout> {
    let header = (0..image.len())
        .step_by(4096)
        .find(|&at| image.get(at..at + 8) == Some(MAGIC.as_slice()))
        .context("no payload header (KCPAYLD) at any 4 KiB boundary of the boot image")?;
    let field =
        |what: &str, v: Option<usize>| v.with_context(|| format!("payload header: no {what}"));
    let total_size = field("total_size", u64_at(image, header + 16))?;
    let count = field(
        "entry count",
        u32_at(image, header + 12).map(|c| c as usize),
    )?;
    let mut kernel = None;
    for i in 0..count.min(8) {
        let entry = header + 32 + 24 * i;
        if u32_at(image, entry) == Some(1) {
            let offset = field("kernel offset", u64_at(image, entry + 8))?;
            let size = field("kernel size", u64_at(image, entry + 16))?;
            kernel = Some((header + offset, size));
        }
    }
    let Some((kernel, kernel_size)) = kernel else {
        bail!("the payload has no kernel entry")
    };
    if header + total_size > image.len() || kernel + kernel_size > image.len() || kernel_size == 0 {
        bail!(
            "the payload header does not fit the file ({} bytes)",
            image.len()
        );
    }
    Ok(Layout {
        header,
        total_size,
        kernel,
        kernel_size,
    })
}

/// The ways a test damages the boot image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The file ends in the middle of the payload.
    Truncated,
    /// One byte in the middle of the KServ kernel is inverted.
    FlippedKernelByte,
    /// The payload magic is zeroed: no payload is found at all.
    ZeroedMagic,
}

impl Damage {
    /// A short name for files and logs.
    pub fn name(self) -> &'static str {
        match self {
            Damage::Truncated => "truncated",
            Damage::FlippedKernelByte => "flipped-kernel-byte",
            Damage::ZeroedMagic => "zeroed-magic",
        }
    }

    /// Returns a damaged copy of `image`.
    pub fn apply(self, image: &[u8]) -> anyhow::Result<Vec<u8>> {
        let l = layout(image)?;
        let mut out = image.to_vec();
        match self {
            Damage::Truncated => out.truncate(l.header + l.total_size / 2),
            Damage::FlippedKernelByte => out[l.kernel + l.kernel_size / 2] ^= 0xff,
            Damage::ZeroedMagic => out[l.header..l.header + 8].fill(0),
        }
        Ok(out)
    }
}

/// Writes a damaged copy of `image` to `dir/kcore-<damage>.img`.
pub fn write_damaged(image: &Path, damage: Damage, dir: &Path) -> anyhow::Result<PathBuf> {
    let bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    let damaged = damage
        .apply(&bytes)
        .with_context(|| format!("damaging {}", image.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("kcore-{}.img", damage.name()));
    std::fs::write(&path, damaged).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 8 KiB of "KCore", a payload header with a cmdline and a kernel.
    fn sample() -> Vec<u8> {
        let mut img = vec![0x11u8; 8192];
        let mut hdr = Vec::new();
        hdr.extend_from_slice(MAGIC);
        hdr.extend_from_slice(&1u32.to_le_bytes());
        hdr.extend_from_slice(&2u32.to_le_bytes());
        hdr.extend_from_slice(&(8192u64 + 1000).to_le_bytes());
        hdr.extend_from_slice(&0u64.to_le_bytes());
        for (kind, offset, size) in [(3u32, 80u64, 10u64), (1, 8192, 1000)] {
            hdr.extend_from_slice(&kind.to_le_bytes());
            hdr.extend_from_slice(&0u32.to_le_bytes());
            hdr.extend_from_slice(&offset.to_le_bytes());
            hdr.extend_from_slice(&size.to_le_bytes());
        }
        hdr.resize(8192, 0);
        img.extend_from_slice(&hdr);
        img.extend(std::iter::repeat_n(0x22u8, 1000));
        img
    }

    #[test]
    fn finds_the_layout() {
        let l = layout(&sample()).map_err(|e| e.to_string());
        assert_eq!(
            l,
            Ok(Layout {
                header: 8192,
                total_size: 9192,
                kernel: 16384,
                kernel_size: 1000
            })
        );
    }

    #[test]
    fn damages() {
        let img = sample();
        let t = Damage::Truncated.apply(&img).unwrap_or_default();
        assert_eq!(t.len(), 8192 + 9192 / 2);
        let f = Damage::FlippedKernelByte.apply(&img).unwrap_or_default();
        assert_eq!(f.len(), img.len());
        let diff: Vec<usize> = (0..img.len()).filter(|&i| img[i] != f[i]).collect();
        assert_eq!(diff, [16384 + 500]);
        assert_eq!(f[16884], 0x22 ^ 0xff);
        let z = Damage::ZeroedMagic.apply(&img).unwrap_or_default();
        assert_eq!(&z[8192..8200], &[0; 8]);
        assert!(layout(&z).is_err());
    }

    #[test]
    fn rejects_images_without_payload() {
        assert!(layout(&[0u8; 10000]).is_err());
    }
}
