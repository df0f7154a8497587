//! Format of the KServ payload packed after KCore in the boot image.
//!
//! This crate owns the byte layout of `docs/boot-image.md` ("Payload header"):
//! the header and entry table, the checksum, the validation KCore performs
//! before it trusts any byte of the payload ([`parse`]), the check of the KServ
//! kernel's own arm64 `Image` header ([`parse_image_header`]), and, under the
//! `alloc` feature, the builder the packer in `xtask` uses ([`build`]). Besides
//! KServ's kernel, initramfs and command line, a payload may carry the Ed25519
//! public key KCore checks protected VMs' images against ([`Kind::VmVerifyKey`]).
//! Parsing
//! works on a plain byte slice, never panics and allocates nothing, so the very
//! same code runs at EL2 and in host tests.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(any(feature = "alloc", test))]
extern crate alloc;

#[cfg(any(feature = "alloc", test))]
mod builder;
#[cfg(any(feature = "alloc", test))]
pub use builder::{boot_image_size, build};

use core::fmt;

/// The first 8 bytes of a payload header.
pub const MAGIC: [u8; 8] = *b"KCPAYLD\0";
/// The payload format this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the fixed part of the header, before the entry table.
pub const HEADER_SIZE: u64 = 32;
/// Size of one entry of the entry table.
pub const ENTRY_SIZE: u64 = 24;
/// Largest entry count a header may declare.
pub const MAX_ENTRIES: u32 = 8;
/// Byte offset of the checksum inside the header.
pub const CHECKSUM_OFFSET: usize = 24;
/// Largest KServ command line, in bytes, without its NUL terminator.
pub const MAX_CMDLINE: u64 = 4096;
/// Alignment of the payload header in the boot image, and of the initramfs
/// inside the payload.
pub const PAGE_ALIGN: u64 = 4096;
/// Alignment of the KServ kernel's absolute file offset in the boot image.
pub const KERNEL_ALIGN: u64 = 2 << 20;
/// Size of the VM image verification key (an Ed25519 public key).
pub const VM_VERIFY_KEY_SIZE: u64 = 32;

/// Initial value of the checksum (the 64-bit FNV offset basis).
const CHECKSUM_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// Multiplier of the checksum (the 64-bit FNV prime).
const CHECKSUM_PRIME: u64 = 0x0000_0100_0000_01B3;
/// Index of the checksum field when the header is read as `u64` words.
const CHECKSUM_WORD: usize = CHECKSUM_OFFSET / 8;

/// What a payload component holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Kind {
    /// The KServ kernel, an arm64 Linux `Image` (required).
    Kernel = 1,
    /// The KServ initramfs (optional).
    Initramfs = 2,
    /// The KServ command line, UTF-8 without its NUL terminator (optional).
    Cmdline = 3,
    /// The Ed25519 public key protected VMs' images are verified against,
    /// exactly 32 bytes (optional; without it KCore verifies no image).
    VmVerifyKey = 4,
}

impl Kind {
    /// Every kind this format version defines.
    pub const ALL: [Kind; 4] = [
        Kind::Kernel,
        Kind::Initramfs,
        Kind::Cmdline,
        Kind::VmVerifyKey,
    ];

    /// Decodes the `kind` field of an entry.
    pub const fn from_raw(raw: u32) -> Option<Kind> {
        match raw {
            1 => Some(Kind::Kernel),
            2 => Some(Kind::Initramfs),
            3 => Some(Kind::Cmdline),
            4 => Some(Kind::VmVerifyKey),
            _ => None,
        }
    }

    /// The value of the `kind` field of an entry.
    pub const fn raw(self) -> u32 {
        self as u32
    }

    /// A human name for messages.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Kernel => "kernel",
            Kind::Initramfs => "initramfs",
            Kind::Cmdline => "command line",
            Kind::VmVerifyKey => "VM verification key",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One component of a validated payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Component<'a> {
    /// Offset of the component from the payload header's first byte.
    pub offset: u64,
    /// The component's bytes.
    pub bytes: &'a [u8],
}

/// A validated payload: every field has passed all checks of [`parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payload<'a> {
    /// Bytes from the header's first byte to the end of the last component.
    pub total_size: u64,
    /// The KServ kernel; its arm64 `Image` header is valid.
    pub kernel: Component<'a>,
    /// The KServ initramfs, if the payload has one.
    pub initramfs: Option<Component<'a>>,
    /// The KServ command line, if the payload has one.
    pub cmdline: Option<&'a str>,
    /// The Ed25519 public key for protected VMs' images, if the payload has
    /// one. Only its length is checked here; KCore validates the point.
    pub vm_verify_key: Option<&'a [u8; 32]>,
}

/// The fields of an arm64 Linux `Image` header that KCore uses
/// (Linux `Documentation/arch/arm64/booting.rst`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset of the image from a 2 MiB aligned base (0 for modern kernels).
    pub text_offset: u64,
    /// Bytes of memory the image uses from its load address, bss included.
    pub image_size: u64,
    /// Informative flags: bit 0 endianness, bits 1-2 page size, bit 3 placement.
    pub flags: u64,
}

/// Size of the arm64 `Image` header.
pub const IMAGE_HEADER_SIZE: usize = 64;
/// The arm64 `Image` magic `ARM\x64`, read little-endian at offset 0x38.
pub const IMAGE_MAGIC: u32 = 0x644d_5241;
/// Offset of the magic in the arm64 `Image` header.
const IMAGE_MAGIC_OFFSET: usize = 0x38;
/// `text_offset` must be below this.
const MAX_TEXT_OFFSET: u64 = 2 << 20;

/// Why an arm64 `Image` header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageHeaderError {
    /// Fewer than 64 bytes.
    TooShort {
        /// Bytes available.
        len: u64,
    },
    /// The magic at 0x38 is not `ARM\x64`.
    BadMagic {
        /// The little-endian word found there.
        found: u32,
    },
    /// Flag bit 0 says the kernel is big-endian.
    BigEndian,
    /// The page size field (flag bits 1-2) is neither unspecified nor 4 KiB.
    UnsupportedPageSize {
        /// The 2-bit field.
        field: u8,
    },
    /// `image_size` is below the size of the header itself (0 means a kernel
    /// older than 3.17, which does not state its footprint).
    ImageSizeTooSmall {
        /// The `image_size` field.
        image_size: u64,
    },
    /// `text_offset` is not below 2 MiB.
    TextOffsetTooLarge {
        /// The `text_offset` field.
        text_offset: u64,
    },
}

impl fmt::Display for ImageHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ImageHeaderError::TooShort { len } => {
                write!(
                    f,
                    "{len} bytes are too short for the 64-byte arm64 Image header"
                )
            }
            ImageHeaderError::BadMagic { found } => write!(
                f,
                "no arm64 Image magic at 0x38 (found {found:#010x}, expected {IMAGE_MAGIC:#010x})"
            ),
            ImageHeaderError::BigEndian => f.write_str("the kernel is big-endian"),
            ImageHeaderError::UnsupportedPageSize { field } => {
                let size = match field {
                    2 => "16 KiB",
                    _ => "64 KiB",
                };
                write!(
                    f,
                    "the kernel needs {size} pages; only 4 KiB pages are supported"
                )
            }
            ImageHeaderError::ImageSizeTooSmall { image_size } => write!(
                f,
                "image_size {image_size:#x} is smaller than the header (a kernel before 3.17?)"
            ),
            ImageHeaderError::TextOffsetTooLarge { text_offset } => {
                write!(f, "text_offset {text_offset:#x} is not below 2 MiB")
            }
        }
    }
}

/// Why an entry of the entry table was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryProblem {
    /// The `kind` field is not a [`Kind`].
    UnknownKind(u32),
    /// A previous entry has the same kind.
    DuplicateKind(Kind),
    /// The `reserved` field is not zero.
    ReservedNotZero(u32),
    /// `offset + size` overflows.
    OffsetOverflow,
    /// The component ends past `total_size`.
    OutsidePayload {
        /// End of the component.
        end: u64,
        /// The header's `total_size`.
        total_size: u64,
    },
    /// The component overlaps the header or the entry table.
    OverlapsHeader,
    /// The component's offset is not aligned as the format requires.
    Misaligned {
        /// The offset found.
        offset: u64,
        /// The alignment required.
        align: u64,
    },
    /// An initramfs of zero bytes.
    Empty,
    /// A component whose kind has a fixed size has another size.
    BadSize {
        /// The size found.
        size: u64,
        /// The size the kind requires.
        expected: u64,
    },
}

impl fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EntryProblem::UnknownKind(k) => write!(f, "unknown kind {k}"),
            EntryProblem::DuplicateKind(k) => write!(f, "a second {k} entry"),
            EntryProblem::ReservedNotZero(r) => write!(f, "reserved field is {r:#x}, not 0"),
            EntryProblem::OffsetOverflow => f.write_str("offset + size overflows"),
            EntryProblem::OutsidePayload { end, total_size } => write!(
                f,
                "component ends at {end:#x}, past the payload's total size {total_size:#x}"
            ),
            EntryProblem::OverlapsHeader => {
                f.write_str("component overlaps the header or the entry table")
            }
            EntryProblem::Misaligned { offset, align } => {
                write!(f, "offset {offset:#x} is not a multiple of {align:#x}")
            }
            EntryProblem::Empty => f.write_str("the component is empty"),
            EntryProblem::BadSize { size, expected } => {
                write!(f, "the component is {size} bytes, not {expected}")
            }
        }
    }
}

/// Why a payload was refused (by [`parse`]) or could not be built (by
/// `build`). Every message names the problem in terms of the file, so that a
/// broken boot image can be diagnosed from KCore's console alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No payload header: the magic is absent (KCore was booted alone).
    NoPayload,
    /// Something that looks like a damaged magic (at least half of its bytes
    /// match): the image was damaged rather than built without a payload.
    CorruptMagic {
        /// The 8 bytes found.
        found: [u8; 8],
    },
    /// A format version this KCore does not read.
    BadVersion {
        /// The version found.
        found: u32,
    },
    /// An entry count outside `1..=8`.
    BadEntryCount {
        /// The count found.
        count: u32,
    },
    /// The payload is longer than the memory holding it.
    Truncated {
        /// Bytes the header says the payload has (or at least needs).
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// `total_size` does not equal the end of the last component.
    BadTotalSize {
        /// The header's `total_size`.
        total_size: u64,
        /// Where the last component ends (or the end of the entry table if
        /// that is larger).
        expected: u64,
    },
    /// The checksum does not match the payload's bytes.
    ChecksumMismatch {
        /// The value in the header.
        expected: u64,
        /// The value computed over the payload.
        computed: u64,
    },
    /// An entry of the entry table is invalid.
    BadEntry {
        /// Index of the entry in the table.
        index: u32,
        /// What is wrong with it.
        reason: EntryProblem,
    },
    /// Two components overlap.
    Overlap {
        /// One of them.
        first: Kind,
        /// The other one.
        second: Kind,
    },
    /// There is no kernel entry.
    MissingKernel,
    /// The kernel's arm64 `Image` header is invalid.
    BadKernelHeader(ImageHeaderError),
    /// The command line is longer than [`MAX_CMDLINE`] bytes.
    CmdlineTooLong {
        /// Its length.
        len: u64,
    },
    /// The command line is not UTF-8.
    CmdlineNotUtf8 {
        /// Length of its valid prefix.
        valid_up_to: u64,
    },
    /// The command line contains a NUL byte.
    CmdlineHasNul {
        /// Offset of the NUL inside the command line.
        at: u64,
    },
    /// `build` was asked to place the payload at an offset that is not
    /// 4 KiB aligned.
    MisalignedPayloadOffset {
        /// The offset given.
        offset: u64,
    },
    /// `build` would produce a payload whose offsets do not fit in 64 bits
    /// or in memory.
    TooLarge,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::NoPayload => {
                f.write_str("no KServ payload after KCore (magic \"KCPAYLD\" absent)")
            }
            Error::CorruptMagic { found } => {
                write!(
                    f,
                    "payload magic is damaged (found {found:02x?}): corrupt boot image"
                )
            }
            Error::BadVersion { found } => write!(
                f,
                "payload format version {found} is not supported (expected {FORMAT_VERSION})"
            ),
            Error::BadEntryCount { count } => {
                write!(
                    f,
                    "payload has {count} entries (expected 1..={MAX_ENTRIES})"
                )
            }
            Error::Truncated { needed, available } => write!(
                f,
                "payload truncated: needs {needed:#x} bytes, only {available:#x} available"
            ),
            Error::BadTotalSize {
                total_size,
                expected,
            } => write!(
                f,
                "payload total size {total_size:#x} does not match the end of its last \
                 component {expected:#x}"
            ),
            Error::ChecksumMismatch { expected, computed } => write!(
                f,
                "payload checksum mismatch (header {expected:#018x}, computed {computed:#018x}): \
                 damaged or truncated boot image"
            ),
            Error::BadEntry { index, reason } => write!(f, "payload entry {index}: {reason}"),
            Error::Overlap { first, second } => {
                write!(f, "payload components overlap: {first} and {second}")
            }
            Error::MissingKernel => f.write_str("payload has no KServ kernel"),
            Error::BadKernelHeader(e) => write!(f, "KServ kernel: {e}"),
            Error::CmdlineTooLong { len } => write!(
                f,
                "KServ command line is {len} bytes (at most {MAX_CMDLINE} allowed)"
            ),
            Error::CmdlineNotUtf8 { valid_up_to } => {
                write!(
                    f,
                    "KServ command line is not UTF-8 after byte {valid_up_to}"
                )
            }
            Error::CmdlineHasNul { at } => {
                write!(f, "KServ command line contains a NUL byte at {at}")
            }
            Error::MisalignedPayloadOffset { offset } => {
                write!(f, "payload file offset {offset:#x} is not 4 KiB aligned")
            }
            Error::TooLarge => f.write_str("payload too large"),
        }
    }
}

impl From<ImageHeaderError> for Error {
    fn from(e: ImageHeaderError) -> Self {
        Error::BadKernelHeader(e)
    }
}

/// The checksum of `docs/boot-image.md` over `bytes`: the bytes taken as
/// little-endian `u64` words, the tail zero-padded to a whole word,
/// `h = 0xcbf2_9ce4_8422_2325; for w: h = (h ^ w) * 0x100_0000_01B3`.
pub fn checksum(bytes: &[u8]) -> u64 {
    checksum_words(bytes, None)
}

/// The checksum a payload header carries: [`checksum`] of the payload bytes
/// `[0, total_size)` with the 8 checksum bytes (24..32) read as zero.
pub fn payload_checksum(payload: &[u8]) -> u64 {
    checksum_words(payload, Some(CHECKSUM_WORD))
}

fn checksum_words(bytes: &[u8], zero_word: Option<usize>) -> u64 {
    fn fold(h: u64, words: impl Iterator<Item = u64>) -> u64 {
        words.fold(h, |h, w| (h ^ w).wrapping_mul(CHECKSUM_PRIME))
    }
    // Four words per iteration: the same sequential function, with a quarter
    // of the loop overhead.
    fn fold_words(h: u64, words: &[u64]) -> u64 {
        let p = CHECKSUM_PRIME;
        let mut quads = words.chunks_exact(4);
        let mut h = h;
        for q in quads.by_ref() {
            if let [a, b, c, d] = q {
                h = (h ^ u64::from_le(*a)).wrapping_mul(p);
                h = (h ^ u64::from_le(*b)).wrapping_mul(p);
                h = (h ^ u64::from_le(*c)).wrapping_mul(p);
                h = (h ^ u64::from_le(*d)).wrapping_mul(p);
            }
        }
        fold(h, quads.remainder().iter().map(|w| u64::from_le(*w)))
    }
    let (body, tail) = bytes.split_at(bytes.len() / 8 * 8);
    let n = body.len() / 8;
    // The word read as zero splits the body in two runs.
    let (before, after) = match zero_word {
        Some(z) if z < n => (z, z + 1),
        _ => (n, n),
    };
    let mut h = CHECKSUM_BASIS;
    // KCore checksums tens of MiB at boot, 4 KiB aligned: read them as words
    // (byte loads cost eight times the instructions with strict alignment).
    match bytemuck::try_cast_slice::<u8, u64>(body) {
        Ok(words) => {
            h = fold_words(h, &words[..before]);
            if after > before {
                h = fold(h, core::iter::once(0));
            }
            h = fold_words(h, &words[after..]);
        }
        Err(_) => {
            let word = |c: &[u8]| {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                u64::from_le_bytes(w)
            };
            h = fold(h, body[..before * 8].chunks_exact(8).map(word));
            if after > before {
                h = fold(h, core::iter::once(0));
            }
            h = fold(h, body[after * 8..].chunks_exact(8).map(word));
        }
    }
    if !tail.is_empty() {
        let mut w = [0u8; 8];
        w[..tail.len()].copy_from_slice(tail);
        let last = if zero_word == Some(n) {
            0
        } else {
            u64::from_le_bytes(w)
        };
        h = fold(h, core::iter::once(last));
    }
    h
}

/// Reads a little-endian `u32` at `at`, or `None` past the end.
fn read_u32(bytes: &[u8], at: u64) -> Option<u32> {
    let at = usize::try_from(at).ok()?;
    let b = bytes.get(at..at.checked_add(4)?)?;
    let mut w = [0u8; 4];
    w.copy_from_slice(b);
    Some(u32::from_le_bytes(w))
}

/// Reads a little-endian `u64` at `at`, or `None` past the end.
fn read_u64(bytes: &[u8], at: u64) -> Option<u64> {
    let at = usize::try_from(at).ok()?;
    let b = bytes.get(at..at.checked_add(8)?)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    Some(u64::from_le_bytes(w))
}

/// `bytes[start..start + len]`, or `None` if that is out of range.
fn sub(bytes: &[u8], start: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(start).ok()?;
    let len = usize::try_from(len).ok()?;
    bytes.get(start..start.checked_add(len)?)
}

/// Validates an arm64 Linux `Image` header at the start of `image`.
pub fn parse_image_header(image: &[u8]) -> Result<ImageHeader, ImageHeaderError> {
    let too_short = ImageHeaderError::TooShort {
        len: image.len() as u64,
    };
    if image.len() < IMAGE_HEADER_SIZE {
        return Err(too_short);
    }
    let magic = read_u32(image, IMAGE_MAGIC_OFFSET as u64).ok_or(too_short)?;
    let text_offset = read_u64(image, 8).ok_or(too_short)?;
    let image_size = read_u64(image, 16).ok_or(too_short)?;
    let flags = read_u64(image, 24).ok_or(too_short)?;
    if magic != IMAGE_MAGIC {
        return Err(ImageHeaderError::BadMagic { found: magic });
    }
    if flags & 1 != 0 {
        return Err(ImageHeaderError::BigEndian);
    }
    let page_size = ((flags >> 1) & 0b11) as u8;
    if page_size > 1 {
        return Err(ImageHeaderError::UnsupportedPageSize { field: page_size });
    }
    if image_size < IMAGE_HEADER_SIZE as u64 {
        return Err(ImageHeaderError::ImageSizeTooSmall { image_size });
    }
    if text_offset >= MAX_TEXT_OFFSET {
        return Err(ImageHeaderError::TextOffsetTooLarge { text_offset });
    }
    Ok(ImageHeader {
        text_offset,
        image_size,
        flags,
    })
}

/// Validates the payload that starts at `mem[0]` and returns its components.
///
/// `mem` runs from the payload header to the end of the RAM bank, so it may be
/// much longer than the payload. Checks, in order: magic, version, entry
/// count, that the header, entry table and `total_size` fit in `mem`, the
/// checksum, then every entry (kind known and unique, reserved zero, offset
/// and size without overflow, inside `total_size`, clear of the header and
/// entry table, aligned, of the size the kind requires), that `total_size`
/// ends at the last component, that no components overlap, that there is a
/// kernel with a valid arm64 `Image` header, and that the command line is
/// short, UTF-8 and free of NUL bytes.
///
/// The 2 MiB alignment of the kernel's absolute file offset is not checked:
/// it depends on where the payload sits, which `mem` does not say, and KCore
/// moves a kernel that ends up misaligned in memory anyway.
pub fn parse(mem: &[u8]) -> Result<Payload<'_>, Error> {
    let available = mem.len() as u64;
    let Some(magic) = mem.get(..MAGIC.len()) else {
        return Err(Error::NoPayload);
    };
    if magic != MAGIC {
        let matching = magic
            .iter()
            .zip(MAGIC.iter())
            .filter(|(a, b)| a == b)
            .count();
        if matching * 2 < MAGIC.len() {
            return Err(Error::NoPayload);
        }
        let mut found = [0u8; 8];
        found.copy_from_slice(magic);
        return Err(Error::CorruptMagic { found });
    }
    let truncated = |needed: u64| Error::Truncated { needed, available };
    let version = read_u32(mem, 8).ok_or(truncated(HEADER_SIZE))?;
    let count = read_u32(mem, 12).ok_or(truncated(HEADER_SIZE))?;
    let total_size = read_u64(mem, 16).ok_or(truncated(HEADER_SIZE))?;
    let stored_checksum = read_u64(mem, 24).ok_or(truncated(HEADER_SIZE))?;
    if version != FORMAT_VERSION {
        return Err(Error::BadVersion { found: version });
    }
    if !(1..=MAX_ENTRIES).contains(&count) {
        return Err(Error::BadEntryCount { count });
    }
    // At most 8 entries: cannot overflow.
    let table_end = HEADER_SIZE + ENTRY_SIZE * u64::from(count);
    if table_end > available {
        return Err(truncated(table_end));
    }
    if total_size > available {
        return Err(truncated(total_size));
    }
    if total_size < table_end {
        return Err(Error::BadTotalSize {
            total_size,
            expected: table_end,
        });
    }
    let payload = sub(mem, 0, total_size).ok_or(truncated(total_size))?;
    let computed = payload_checksum(payload);
    if computed != stored_checksum {
        return Err(Error::ChecksumMismatch {
            expected: stored_checksum,
            computed,
        });
    }

    // (kind, offset, end) of every entry, in table order.
    let mut seen: [Option<(Kind, u64, u64)>; MAX_ENTRIES as usize] = [None; MAX_ENTRIES as usize];
    let mut last_end = table_end;
    for index in 0..count {
        let (previous, rest) = seen.split_at_mut(index as usize);
        let Some(slot) = rest.first_mut() else { break };
        let at = HEADER_SIZE + ENTRY_SIZE * u64::from(index);
        let bad = |reason| Error::BadEntry { index, reason };
        let raw_kind = read_u32(payload, at).ok_or(truncated(table_end))?;
        let reserved = read_u32(payload, at + 4).ok_or(truncated(table_end))?;
        let offset = read_u64(payload, at + 8).ok_or(truncated(table_end))?;
        let size = read_u64(payload, at + 16).ok_or(truncated(table_end))?;
        let kind = Kind::from_raw(raw_kind).ok_or(bad(EntryProblem::UnknownKind(raw_kind)))?;
        if previous.iter().flatten().any(|(k, _, _)| *k == kind) {
            return Err(bad(EntryProblem::DuplicateKind(kind)));
        }
        if reserved != 0 {
            return Err(bad(EntryProblem::ReservedNotZero(reserved)));
        }
        let end = offset
            .checked_add(size)
            .ok_or(bad(EntryProblem::OffsetOverflow))?;
        if end > total_size {
            return Err(bad(EntryProblem::OutsidePayload { end, total_size }));
        }
        if offset < table_end {
            return Err(bad(EntryProblem::OverlapsHeader));
        }
        let align = match kind {
            Kind::Initramfs => PAGE_ALIGN,
            Kind::Kernel | Kind::Cmdline | Kind::VmVerifyKey => 1,
        };
        if !offset.is_multiple_of(align) {
            return Err(bad(EntryProblem::Misaligned { offset, align }));
        }
        if kind == Kind::Initramfs && size == 0 {
            return Err(bad(EntryProblem::Empty));
        }
        if kind == Kind::VmVerifyKey && size != VM_VERIFY_KEY_SIZE {
            return Err(bad(EntryProblem::BadSize {
                size,
                expected: VM_VERIFY_KEY_SIZE,
            }));
        }
        *slot = Some((kind, offset, end));
        last_end = last_end.max(end);
    }
    // Overlaps, pairwise over at most 8 entries; empty components overlap
    // nothing.
    for (i, a) in seen.iter().enumerate() {
        let Some((kind_a, start_a, end_a)) = *a else {
            continue;
        };
        for (kind_b, start_b, end_b) in seen.iter().skip(i + 1).flatten() {
            if start_a < end_a && start_b < end_b && start_a < *end_b && *start_b < end_a {
                return Err(Error::Overlap {
                    first: kind_a,
                    second: *kind_b,
                });
            }
        }
    }
    if last_end != total_size {
        return Err(Error::BadTotalSize {
            total_size,
            expected: last_end,
        });
    }

    let component = |kind: Kind| -> Option<Component<'_>> {
        let (_, offset, end) = seen.iter().flatten().find(|(k, _, _)| *k == kind)?;
        Some(Component {
            offset: *offset,
            bytes: sub(payload, *offset, end - offset)?,
        })
    };
    let kernel = component(Kind::Kernel).ok_or(Error::MissingKernel)?;
    parse_image_header(kernel.bytes).map_err(Error::BadKernelHeader)?;
    let initramfs = component(Kind::Initramfs);
    let cmdline = match component(Kind::Cmdline) {
        Some(c) => Some(check_cmdline(c.bytes)?),
        None => None,
    };
    // The entry check above fixed the size at 32 bytes.
    let vm_verify_key =
        component(Kind::VmVerifyKey).and_then(|c| <&[u8; 32]>::try_from(c.bytes).ok());
    Ok(Payload {
        total_size,
        kernel,
        initramfs,
        cmdline,
        vm_verify_key,
    })
}

/// Checks a command line's length, encoding and absence of NUL bytes.
fn check_cmdline(bytes: &[u8]) -> Result<&str, Error> {
    let len = bytes.len() as u64;
    if len > MAX_CMDLINE {
        return Err(Error::CmdlineTooLong { len });
    }
    let s = core::str::from_utf8(bytes).map_err(|e| Error::CmdlineNotUtf8 {
        valid_up_to: e.valid_up_to() as u64,
    })?;
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(Error::CmdlineHasNul { at: at as u64 });
    }
    Ok(s)
}

#[cfg(test)]
mod tests;
