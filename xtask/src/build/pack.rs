//! Packing the boot image, `build/kcore.img`, as `docs/boot-image.md`
//! describes: KCore's flat binary, zero-filled to the footprint its own `Image`
//! header states (`image_size`), then the KServ payload built by
//! `kcore_payload::build` (with the public key protected VMs' images are
//! verified against, when given); finally KCore's `image_size` is rewritten to the
//! footprint of the whole boot image, so a loader that honours it leaves room
//! for the KServ kernel's bss too.

use anyhow::{Result, anyhow, bail};

/// Offset of `image_size` in the arm64 `Image` header.
const IMAGE_SIZE_OFFSET: usize = 16;
/// Offset and value of the arm64 `Image` magic.
const MAGIC_OFFSET: usize = 0x38;
const MAGIC: &[u8; 4] = b"ARM\x64";
/// The payload header starts 4 KiB aligned.
const PAGE: u64 = 4096;

/// Sizes of a packed image, for the build's report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// KCore's footprint: where the payload starts.
    pub kcore_footprint: u64,
    /// File offset of the KServ kernel.
    pub kernel_offset: u64,
    /// The `image_size` written into KCore's header.
    pub image_size: u64,
}

/// Packs KCore (`kcore`, a flat binary starting with its `Image` header) and
/// the KServ payload, with the VM image verification key, into one boot image.
pub fn boot_image(
    kcore: &[u8],
    kernel: &[u8],
    initramfs: Option<&[u8]>,
    cmdline: Option<&str>,
    vm_verify_key: Option<&[u8; 32]>,
) -> Result<(Vec<u8>, Layout)> {
    if kcore.get(MAGIC_OFFSET..MAGIC_OFFSET + 4) != Some(MAGIC.as_slice()) {
        bail!(
            "KCore's binary does not start with an arm64 Image header (no ARM\\x64 magic at 0x38)"
        );
    }
    let footprint = read_u64(kcore, IMAGE_SIZE_OFFSET)?;
    if footprint < kcore.len() as u64 {
        bail!(
            "KCore's image_size {footprint:#x} is smaller than its binary ({:#x} bytes)",
            kcore.len()
        );
    }
    if !footprint.is_multiple_of(PAGE) {
        bail!(
            "KCore's image_size {footprint:#x} is not 4 KiB aligned (the linker script must align __kcore_end)"
        );
    }
    let payload = kcore_payload::build(footprint, kernel, initramfs, cmdline, vm_verify_key)
        .map_err(|e| anyhow!("cannot build the KServ payload: {e}"))?;
    let parsed = kcore_payload::parse(&payload)
        .map_err(|e| anyhow!("the payload just built does not parse: {e}"))?;
    let image_size = kcore_payload::boot_image_size(footprint, &parsed)
        .map_err(|e| anyhow!("cannot compute the boot image's footprint: {e}"))?;
    let layout = Layout {
        kcore_footprint: footprint,
        kernel_offset: footprint + parsed.kernel.offset,
        image_size,
    };

    let mut out = Vec::with_capacity(footprint as usize + payload.len());
    out.extend_from_slice(kcore);
    out.resize(footprint as usize, 0);
    out.extend_from_slice(&payload);
    out[IMAGE_SIZE_OFFSET..IMAGE_SIZE_OFFSET + 8].copy_from_slice(&image_size.to_le_bytes());
    Ok((out, layout))
}

fn read_u64(bytes: &[u8], at: usize) -> Result<u64> {
    let b = bytes
        .get(at..at + 8)
        .ok_or_else(|| anyhow!("KCore's binary is too short for an Image header"))?;
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    Ok(u64::from_le_bytes(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal arm64 Image: header with `image_size`, then `len` bytes.
    fn fake_image(len: usize, image_size: u64) -> Vec<u8> {
        let mut v = vec![0u8; len];
        v[0..4].copy_from_slice(&0x1400_0010u32.to_le_bytes()); // b +0x40
        v[16..24].copy_from_slice(&image_size.to_le_bytes());
        v[24..32].copy_from_slice(&0b1010u64.to_le_bytes());
        v[MAGIC_OFFSET..MAGIC_OFFSET + 4].copy_from_slice(MAGIC);
        v
    }

    #[test]
    fn packs_as_documented() {
        let kcore = fake_image(0x3000, 0x5000);
        let kernel = fake_image(0x10000, 0x40000);
        let initramfs = vec![7u8; 5000];
        let key = [0x5a; 32];
        let (img, layout) = boot_image(
            &kcore,
            &kernel,
            Some(&initramfs),
            Some("console=ttyAMA0"),
            Some(&key),
        )
        .expect("packs");
        assert_eq!(layout.kcore_footprint, 0x5000);
        assert_eq!(
            &img[..0x3000],
            {
                let mut k = kcore.clone();
                k[16..24].copy_from_slice(&layout.image_size.to_le_bytes());
                k
            }
            .as_slice()
        );
        assert!(
            img[0x3000..0x5000].iter().all(|&b| b == 0),
            "zero fill up to the footprint"
        );
        assert_eq!(&img[0x5000..0x5008], b"KCPAYLD\0");
        assert_eq!(
            layout.kernel_offset % (2 << 20),
            0,
            "kernel 2 MiB aligned in the file"
        );
        let k = layout.kernel_offset as usize;
        assert_eq!(&img[k..], kernel.as_slice(), "kernel last");
        assert_eq!(layout.image_size, layout.kernel_offset + 0x40000);
        assert_eq!(read_u64(&img, 16).ok(), Some(layout.image_size));
        let parsed = kcore_payload::parse(&img[0x5000..]).expect("payload parses");
        assert_eq!(parsed.cmdline, Some("console=ttyAMA0"));
        assert_eq!(
            parsed.initramfs.map(|c| c.bytes),
            Some(initramfs.as_slice())
        );
        assert_eq!(parsed.vm_verify_key, Some(&key));
        let (img, _) = boot_image(&kcore, &kernel, None, None, None).expect("packs");
        let parsed = kcore_payload::parse(&img[0x5000..]).expect("payload parses");
        assert_eq!(parsed.vm_verify_key, None);
    }

    #[test]
    fn refuses_bad_kcore_headers() {
        let kernel = fake_image(0x1000, 0x2000);
        assert!(
            boot_image(&[0u8; 0x100], &kernel, None, None, None).is_err(),
            "no magic"
        );
        assert!(
            boot_image(&fake_image(0x3000, 0x2000), &kernel, None, None, None).is_err(),
            "footprint below size"
        );
        assert!(
            boot_image(&fake_image(0x3000, 0x3100), &kernel, None, None, None).is_err(),
            "unaligned footprint"
        );
    }
}
