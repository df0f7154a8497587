//! Where `kcore.img` goes.
//!
//! `kcore.img` starts with an arm64 `Image` header (`docs/boot-image.md`)
//! whose `image_size` covers KCore, its payload and the KServ kernel's bss.
//! Like any Linux `Image` loader, `kcore.efi` places it `text_offset` above
//! a 2 MiB boundary. It also sets aside the room after that footprint where
//! KCore writes KServ's device tree (at the next 2 MiB boundary, at most
//! the tree it was given plus [`DT_SLACK`]), so that the
//! whole range is one allocation of loader data: RAM in one bank
//! ([`crate::memmap`]) that no firmware data lives in.

use kcore_payload::{ImageHeaderError, parse_image_header};

/// Alignment of the base the image is placed above.
pub const IMAGE_ALIGN: u64 = 2 << 20;
/// What KCore may add to the tree it was given when it writes KServ's.
pub use kcore_boot::pool::DT_SLACK;

/// The memory `kcore.img` needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Offset of the image from its 2 MiB aligned base.
    pub text_offset: u64,
    /// Bytes from the base to the end of the device-tree room.
    pub reserve: u64,
}

impl Layout {
    /// Bytes to allocate at any 4 KiB-aligned address so that an aligned
    /// base with [`Self::reserve`] bytes after it lies inside.
    pub fn alloc_bytes(&self) -> u64 {
        self.reserve + IMAGE_ALIGN
    }

    /// The image's address inside an allocation at `alloc_base`.
    pub fn image_address(&self, alloc_base: u64) -> u64 {
        alloc_base.next_multiple_of(IMAGE_ALIGN) + self.text_offset
    }
}

/// The layout for the image `img` and a device tree of `dt_len` bytes.
pub fn layout(img: &[u8], dt_len: u64) -> Result<Layout, ImageHeaderError> {
    let header = parse_image_header(img)?;
    let footprint = header
        .text_offset
        .saturating_add(header.image_size.max(img.len() as u64));
    let reserve = footprint
        .next_multiple_of(IMAGE_ALIGN)
        .saturating_add((dt_len + DT_SLACK).next_multiple_of(4096));
    Ok(Layout {
        text_offset: header.text_offset,
        reserve,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn image(text_offset: u64, image_size: u64, len: usize) -> Vec<u8> {
        let mut img = vec![0; len];
        img[8..16].copy_from_slice(&text_offset.to_le_bytes());
        img[16..24].copy_from_slice(&image_size.to_le_bytes());
        img[24..32].copy_from_slice(&0xau64.to_le_bytes());
        img[0x38..0x3c].copy_from_slice(b"ARM\x64");
        img
    }

    #[test]
    fn the_footprint_and_the_device_tree_room_are_reserved() {
        // A boot image of 70 MiB whose kernel's bss reaches 90.5 MiB.
        let img = image(0, 90 * MIB + MIB / 2, 70 * MIB as usize);
        let l = layout(&img, 8192).expect("layout");
        assert_eq!(l.text_offset, 0);
        assert_eq!(l.reserve, 92 * MIB + 8192 + DT_SLACK);
        assert_eq!(l.alloc_bytes(), 94 * MIB + 8192 + DT_SLACK);
        assert_eq!(l.image_address(0x4010_3000), 0x4020_0000);
        assert_eq!(l.image_address(0x4020_0000), 0x4020_0000);
        // Allocated anywhere, the image and its room fit the allocation.
        for base in [0x4000_0000u64, 0x4000_1000, 0x401f_f000] {
            let start = l.image_address(base);
            assert!(start + l.reserve <= base + l.alloc_bytes());
        }
    }

    #[test]
    fn text_offset_and_a_file_longer_than_image_size_count() {
        let img = image(0x8_0000, 0x1000, 3 * MIB as usize);
        let l = layout(&img, 100).expect("layout");
        assert_eq!(l.text_offset, 0x8_0000);
        assert_eq!(l.reserve, 4 * MIB + 4096 * 17);
        assert_eq!(l.image_address(0x4000_0000), 0x4008_0000);
    }

    #[test]
    fn refuses_what_is_not_an_image() {
        assert!(layout(&[0; 16], 0).is_err());
        let mut img = image(0, 4096, 4096);
        img[0x38] = b'X';
        assert!(layout(&img, 0).is_err());
    }
}
