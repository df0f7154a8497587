//! A protected VM's MMIO manifest: the guest-physical ranges its owner lets
//! KServ emulate, signed with its boot image.
//!
//! An access a protected guest makes to a page KServ declared MMIO leaves the
//! VM as an exit carrying its data. So KServ alone must not decide where MMIO
//! is: the image's signer does. `HostVerifyImage` reads a *signature block*
//! from KServ's page: the 64-byte Ed25519 signature, then this manifest; the
//! signature covers the image's bytes followed by the manifest's encoded
//! bytes. After the image verifies, KServ may declare MMIO only inside the
//! manifest's ranges (narrowing, never widening), and no page may be donated
//! there. An image signed without a manifest, or with an empty one, gets no
//! MMIO at all.
//!
//! Encoding (little-endian): magic `"KCMF"`, version `u32` (1), range count
//! `u32` (at most [`MAX_RANGES`]), a reserved `u32` (0), then per range its
//! first guest frame and its page count, `u64` each. Ranges are non-empty,
//! sorted, disjoint and inside a 48-bit IPA space.

/// The first four bytes.
pub const MAGIC: [u8; 4] = *b"KCMF";
/// The only version.
pub const VERSION: u32 = 1;
/// Most ranges a manifest holds (KCore keeps at most that many MMIO ranges
/// per VM).
pub const MAX_RANGES: usize = 16;
/// Bytes before the ranges.
pub const HEADER_LEN: usize = 16;
/// Bytes per range.
pub const RANGE_LEN: usize = 16;
/// The largest encoded manifest.
pub const MAX_LEN: usize = HEADER_LEN + MAX_RANGES * RANGE_LEN;
/// Bytes of the Ed25519 signature that starts a signature block.
pub const SIGNATURE_LEN: usize = 64;
/// The largest signature block: the signature, then the manifest.
pub const MAX_BLOCK_LEN: usize = SIGNATURE_LEN + MAX_LEN;
/// Guest frames lie below this (a 48-bit IPA space).
pub const GFN_LIMIT: u64 = 1 << (48 - 12);

/// The guest-physical space below 1 GiB, where every VM this project
/// builds keeps its devices (`kcore-vmm`'s layout and the test guest's),
/// its RAM starting at 1 GiB: the manifest the build signs its images with.
pub const LOW_DEVICE_SPACE: (u64, u64) = (0, 0x4000_0000 >> 12);

/// A decoded manifest: up to [`MAX_RANGES`] `(first gfn, pages)` ranges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    ranges: [(u64, u64); MAX_RANGES],
    count: usize,
}

/// Why bytes are not a manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestError {
    /// Shorter than its header or its ranges.
    Truncated,
    /// Not `"KCMF"`.
    BadMagic,
    /// A version other than [`VERSION`], or a reserved field set.
    BadVersion,
    /// More than [`MAX_RANGES`] ranges.
    TooMany,
    /// An empty range, one past [`GFN_LIMIT`], or ranges unsorted or
    /// overlapping.
    BadRange,
}

impl Manifest {
    /// A manifest of `ranges` (checked as [`Manifest::decode`] checks them).
    pub fn new(ranges: &[(u64, u64)]) -> Result<Self, ManifestError> {
        if ranges.len() > MAX_RANGES {
            return Err(ManifestError::TooMany);
        }
        let mut m = Manifest::default();
        let mut end = 0u64;
        for (i, &(gfn, pages)) in ranges.iter().enumerate() {
            let last = gfn.checked_add(pages).ok_or(ManifestError::BadRange)?;
            if pages == 0 || last > GFN_LIMIT || (i > 0 && gfn < end) {
                return Err(ManifestError::BadRange);
            }
            end = last;
            m.ranges[i] = (gfn, pages);
        }
        m.count = ranges.len();
        Ok(m)
    }

    /// The ranges, sorted.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges[..self.count]
    }

    /// Bytes [`Manifest::encode`] writes.
    pub const fn encoded_len(&self) -> usize {
        HEADER_LEN + self.count * RANGE_LEN
    }

    /// Writes the encoding into the start of `out`; returns its length, or
    /// `None` if `out` is too short.
    pub fn encode(&self, out: &mut [u8]) -> Option<usize> {
        let len = self.encoded_len();
        let out = out.get_mut(..len)?;
        out[..4].copy_from_slice(&MAGIC);
        out[4..8].copy_from_slice(&VERSION.to_le_bytes());
        out[8..12].copy_from_slice(&(self.count as u32).to_le_bytes());
        out[12..16].fill(0);
        for (i, (gfn, pages)) in self.ranges().iter().enumerate() {
            let at = HEADER_LEN + i * RANGE_LEN;
            out[at..at + 8].copy_from_slice(&gfn.to_le_bytes());
            out[at + 8..at + 16].copy_from_slice(&pages.to_le_bytes());
        }
        Some(len)
    }

    /// Decodes the manifest at the start of `bytes` (which may go on);
    /// returns it and its encoded length.
    pub fn decode(bytes: &[u8]) -> Result<(Self, usize), ManifestError> {
        let word = |at: usize| -> Result<u32, ManifestError> {
            let b = bytes.get(at..at + 4).ok_or(ManifestError::Truncated)?;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let dword = |at: usize| -> Result<u64, ManifestError> {
            let b = bytes.get(at..at + 8).ok_or(ManifestError::Truncated)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Ok(u64::from_le_bytes(a))
        };
        if bytes.get(..4).ok_or(ManifestError::Truncated)? != MAGIC {
            return Err(ManifestError::BadMagic);
        }
        if word(4)? != VERSION || word(12)? != 0 {
            return Err(ManifestError::BadVersion);
        }
        let count = word(8)? as usize;
        if count > MAX_RANGES {
            return Err(ManifestError::TooMany);
        }
        let mut ranges = [(0u64, 0u64); MAX_RANGES];
        for (i, r) in ranges.iter_mut().enumerate().take(count) {
            let at = HEADER_LEN + i * RANGE_LEN;
            *r = (dword(at)?, dword(at + 8)?);
        }
        let m = Manifest::new(&ranges[..count])?;
        Ok((m, m.encoded_len()))
    }

    /// Whether every page of `[gfn, gfn + pages)` lies inside the manifest.
    pub fn covers(&self, gfn: u64, pages: u64) -> bool {
        let Some(end) = gfn.checked_add(pages) else {
            return false;
        };
        // Ranges are sorted and disjoint: walk the request across them.
        let mut at = gfn;
        for &(g, p) in self.ranges() {
            if at >= end {
                break;
            }
            if g <= at && at < g + p {
                at = g + p;
            }
        }
        pages > 0 && at >= end
    }

    /// Whether page `gfn` lies inside the manifest.
    pub fn contains(&self, gfn: u64) -> bool {
        self.covers(gfn, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_junk() {
        let m = Manifest::new(&[(0, 0x10), (0x10, 4), (0x9000, 1)]).unwrap();
        let mut b = [0u8; MAX_LEN + 8];
        let n = m.encode(&mut b).unwrap();
        assert_eq!(n, HEADER_LEN + 3 * RANGE_LEN);
        assert_eq!(Manifest::decode(&b), Ok((m, n)));
        assert_eq!(Manifest::decode(&b[..n - 1]), Err(ManifestError::Truncated));
        let mut bad = b;
        bad[0] = b'X';
        assert_eq!(Manifest::decode(&bad), Err(ManifestError::BadMagic));
        let mut bad = b;
        bad[12] = 1;
        assert_eq!(Manifest::decode(&bad), Err(ManifestError::BadVersion));
        let mut bad = b;
        bad[8] = 17;
        assert_eq!(Manifest::decode(&bad), Err(ManifestError::TooMany));
        assert_eq!(Manifest::new(&[(5, 0)]), Err(ManifestError::BadRange));
        assert_eq!(
            Manifest::new(&[(8, 4), (10, 1)]),
            Err(ManifestError::BadRange),
            "overlap"
        );
        assert_eq!(
            Manifest::new(&[(8, 4), (2, 1)]),
            Err(ManifestError::BadRange)
        );
        assert_eq!(
            Manifest::new(&[(u64::MAX, 2)]),
            Err(ManifestError::BadRange)
        );
        assert_eq!(
            Manifest::new(&[(GFN_LIMIT - 1, 2)]),
            Err(ManifestError::BadRange)
        );
        let empty = Manifest::new(&[]).unwrap();
        let n = empty.encode(&mut b).unwrap();
        assert_eq!(Manifest::decode(&b[..n]), Ok((empty, HEADER_LEN)));
    }

    #[test]
    fn coverage_spans_touching_ranges_only() {
        let m = Manifest::new(&[(0, 0x10), (0x10, 4), (0x9000, 1)]).unwrap();
        assert!(m.covers(0, 0x14), "two touching ranges");
        assert!(m.covers(0x9000, 1));
        assert!(!m.covers(0x13, 2), "past the second");
        assert!(!m.covers(0x8fff, 2));
        assert!(!m.covers(0x9000, 0), "nothing");
        assert!(!m.covers(u64::MAX, 2));
        assert!(m.contains(0x11) && !m.contains(0x14));
        let low = Manifest::new(&[LOW_DEVICE_SPACE]).unwrap();
        assert!(low.covers(0x9000, 1) && !low.contains(0x4_0000));
        assert!(!Manifest::default().contains(0));
    }
}
