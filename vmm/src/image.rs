//! The arm64 Linux `Image` header (Linux `Documentation/arm64/booting.rst`),
//! read to place the kernel before `linux-loader` copies it in.

use std::fmt;

/// Length of the header.
pub const HEADER_LEN: usize = 64;
/// `ARM\x64` at offset 0x38.
pub const MAGIC: u32 = 0x644d_5241;
/// `text_offset` of kernels older than 3.17 (whose `image_size` is 0).
const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;

/// What the header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset of the image from a 2 MiB aligned base.
    pub text_offset: u64,
    /// Bytes the kernel occupies from its first byte, bss included.
    pub image_size: u64,
    /// Header flags (bit 0: big-endian; bits 2:1 page size; bit 3 placement).
    pub flags: u64,
}

/// Why a file is not a kernel we can boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Shorter than the header.
    TooShort(usize),
    /// No `ARM\x64` magic (a compressed `vmlinuz`, an ELF `vmlinux`, ...).
    BadMagic(u32),
    /// A big-endian kernel.
    BigEndian,
    /// `text_offset` of 2 MiB or more, or not 4 KiB aligned.
    BadTextOffset(u64),
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::TooShort(n) => {
                write!(f, "{n} bytes: too short for an arm64 Image header")
            }
            ImageError::BadMagic(m) => write!(
                f,
                "no arm64 Image magic (found {m:#010x}, expected `ARM\\x64`): pass an \
                 uncompressed arm64 `Image`"
            ),
            ImageError::BigEndian => write!(f, "a big-endian kernel; the guest is little-endian"),
            ImageError::BadTextOffset(t) => write!(f, "text_offset {t:#x} is not usable"),
        }
    }
}

impl std::error::Error for ImageError {}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

impl ImageHeader {
    /// Parses the first bytes of an `Image` (at least [`HEADER_LEN`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        if bytes.len() < HEADER_LEN {
            return Err(ImageError::TooShort(bytes.len()));
        }
        let mut m = [0u8; 4];
        m.copy_from_slice(&bytes[0x38..0x3c]);
        let magic = u32::from_le_bytes(m);
        if magic != MAGIC {
            return Err(ImageError::BadMagic(magic));
        }
        let (mut text_offset, image_size, flags) =
            (le64(bytes, 8), le64(bytes, 16), le64(bytes, 24));
        if image_size == 0 {
            // Before 3.17 the fields were not set: booting.rst says to assume
            // the old fixed text_offset.
            text_offset = LEGACY_TEXT_OFFSET;
        }
        if flags & 1 != 0 {
            return Err(ImageError::BigEndian);
        }
        if text_offset >= crate::layout::SZ_2M || !text_offset.is_multiple_of(crate::layout::PAGE) {
            return Err(ImageError::BadTextOffset(text_offset));
        }
        Ok(ImageHeader {
            text_offset,
            image_size,
            flags,
        })
    }

    /// The footprint to reserve for a file of `file_len` bytes: `image_size`,
    /// or for old kernels without one the file plus 8 MiB for its bss.
    pub fn footprint(&self, file_len: u64) -> u64 {
        if self.image_size == 0 {
            file_len.saturating_add(8 * crate::layout::MIB)
        } else {
            self.image_size.max(file_len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text_offset: u64, image_size: u64, flags: u64) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&flags.to_le_bytes());
        h[0x38..0x3c].copy_from_slice(b"ARMd");
        h
    }

    #[test]
    fn debian_header() {
        let h = ImageHeader::parse(&header(0, 0x0201_0000, 0xa)).unwrap();
        assert_eq!(
            h,
            ImageHeader {
                text_offset: 0,
                image_size: 0x0201_0000,
                flags: 0xa
            }
        );
        assert_eq!(h.footprint(32_956_352), 0x0201_0000);
    }

    #[test]
    fn legacy_header_gets_the_old_text_offset() {
        let h = ImageHeader::parse(&header(0, 0, 0)).unwrap();
        assert_eq!(h.text_offset, 0x8_0000);
        assert_eq!(h.footprint(1000), 1000 + 8 * crate::layout::MIB);
    }

    #[test]
    fn refusals() {
        assert_eq!(ImageHeader::parse(&[0; 10]), Err(ImageError::TooShort(10)));
        let mut gz = header(0, 1, 0);
        gz[0x38] = 0x1f;
        assert!(matches!(
            ImageHeader::parse(&gz),
            Err(ImageError::BadMagic(_))
        ));
        assert_eq!(
            ImageHeader::parse(&header(0, 1, 1)),
            Err(ImageError::BigEndian)
        );
        assert_eq!(
            ImageHeader::parse(&header(0x20_0000, 1, 0)),
            Err(ImageError::BadTextOffset(0x20_0000))
        );
        assert_eq!(
            ImageHeader::parse(&header(0x123, 1, 0)),
            Err(ImageError::BadTextOffset(0x123))
        );
    }
}
