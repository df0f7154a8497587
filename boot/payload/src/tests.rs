//! Host tests of the payload format: round trips, one test per validation
//! rule (each asserts the exact error, so it fails if the rule is removed),
//! truncation, byte flips and a deterministic random mutation loop.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::*;

/// A payload offset that puts the kernel only 12 KiB into small payloads.
const SMALL_OFFSET: u64 = KERNEL_ALIGN - 0x3000;

/// A fake arm64 `Image` of `len` bytes (at least 64) with `image_size`.
fn fake_kernel(len: usize, image_size: u64) -> Vec<u8> {
    let mut k: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    k[0..4].copy_from_slice(&0x1400_0010u32.to_le_bytes()); // b +0x40
    k[4..8].fill(0);
    k[8..16].copy_from_slice(&0u64.to_le_bytes());
    k[16..24].copy_from_slice(&image_size.to_le_bytes());
    k[24..32].copy_from_slice(&0b1010u64.to_le_bytes());
    k[32..56].fill(0);
    k[56..60].copy_from_slice(&IMAGE_MAGIC.to_le_bytes());
    k[60..64].fill(0);
    k
}

fn initrd(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 + 1) as u8).collect()
}

/// A small payload with all three components.
fn full() -> Vec<u8> {
    build(
        SMALL_OFFSET,
        &fake_kernel(4096, 0x8000),
        Some(&initrd(0x180)),
        Some("console=ttyAMA0 quiet"),
        None,
    )
    .unwrap()
}

/// A test key: any 32 bytes (the payload checks only the length).
const KEY: [u8; 32] = *b"an Ed25519 public key, 32 bytes!";

/// [`full`] plus a VM verification key: entries kernel, key, command line,
/// initramfs.
fn full_with_key() -> Vec<u8> {
    build(
        SMALL_OFFSET,
        &fake_kernel(4096, 0x8000),
        Some(&initrd(0x180)),
        Some("console=ttyAMA0 quiet"),
        Some(&KEY),
    )
    .unwrap()
}

fn get_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().unwrap())
}

fn set_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn set_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Offset of field `field` (0 kind, 4 reserved, 8 offset, 16 size) of entry `i`.
fn entry(i: usize, field: usize) -> usize {
    HEADER_SIZE as usize + ENTRY_SIZE as usize * i + field
}

/// Index of the entry of `kind` in a built payload.
fn index_of(buf: &[u8], kind: Kind) -> usize {
    (0..8)
        .find(|&i| buf[entry(i, 0)..entry(i, 4)] == kind.raw().to_le_bytes())
        .unwrap()
}

/// Recomputes the checksum after a deliberate edit, so that the check under
/// test, not the checksum, is what refuses the payload.
fn reseal(buf: &mut [u8]) {
    let total = get_u64(buf, 16) as usize;
    let sum = payload_checksum(&buf[..total.min(buf.len())]);
    set_u64(buf, CHECKSUM_OFFSET, sum);
}

fn edited(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut buf = full();
    f(&mut buf);
    reseal(&mut buf);
    buf
}

// ---- round trips ----------------------------------------------------------

#[test]
fn round_trip_all_components() {
    let kernel = fake_kernel(5000, 0x9000);
    let rd = initrd(0x1234);
    for offset in [
        0,
        0x1000,
        SMALL_OFFSET,
        KERNEL_ALIGN,
        0x34_5000,
        7 * KERNEL_ALIGN - 0x1000,
    ] {
        let buf = build(offset, &kernel, Some(&rd), Some("root=/dev/vda rw"), None).unwrap();
        let p = parse(&buf).unwrap();
        assert_eq!(p.total_size, buf.len() as u64);
        assert_eq!(p.kernel.bytes, &kernel[..]);
        assert_eq!(
            (offset + p.kernel.offset) % KERNEL_ALIGN,
            0,
            "offset {offset:#x}"
        );
        assert_eq!(
            p.kernel.offset + kernel.len() as u64,
            p.total_size,
            "kernel is last"
        );
        let i = p.initramfs.unwrap();
        assert_eq!(i.bytes, &rd[..]);
        assert_eq!(i.offset % PAGE_ALIGN, 0);
        assert_eq!(p.cmdline, Some("root=/dev/vda rw"));
        // The command line sits right after the entry table, NUL-terminated.
        let c = (HEADER_SIZE + 3 * ENTRY_SIZE) as usize;
        assert_eq!(&buf[c..c + 16], b"root=/dev/vda rw");
        assert_eq!(buf[c + 16], 0);
        assert_eq!(
            boot_image_size(offset, &p).unwrap(),
            offset + p.kernel.offset + 0x9000
        );
    }
}

#[test]
fn round_trip_optional_components_absent() {
    let kernel = fake_kernel(256, 0x1000);
    let p_buf = build(0, &kernel, None, None, None).unwrap();
    let p = parse(&p_buf).unwrap();
    assert_eq!(p.kernel.offset, KERNEL_ALIGN);
    assert_eq!(p.initramfs, None);
    assert_eq!(p.cmdline, None);
    assert_eq!(p.vm_verify_key, None);

    let buf = build(SMALL_OFFSET, &kernel, None, Some(""), None).unwrap();
    let p = parse(&buf).unwrap();
    assert_eq!(p.cmdline, Some(""));
    assert_eq!(p.kernel.offset, 0x3000);

    let buf = build(SMALL_OFFSET, &kernel, Some(b"x"), None, None).unwrap();
    let p = parse(&buf).unwrap();
    assert_eq!(p.initramfs.unwrap().bytes, b"x");
    assert_eq!(p.cmdline, None);
}

#[test]
fn round_trip_with_a_vm_verify_key() {
    let buf = full_with_key();
    let p = parse(&buf).unwrap();
    assert_eq!(p.vm_verify_key, Some(&KEY));
    assert_eq!(p.cmdline, Some("console=ttyAMA0 quiet"));
    assert_eq!(p.initramfs.unwrap().bytes, &initrd(0x180)[..]);
    assert_eq!(
        p.kernel.bytes,
        &fake_kernel(4096, 0x8000)[..],
        "the kernel is unchanged"
    );
    // The key sits right after the entry table, the command line after it.
    let table_end = (HEADER_SIZE + 4 * ENTRY_SIZE) as usize;
    assert_eq!(get_u64(&buf, 12) as u32, 4, "entry count");
    let k = index_of(&buf, Kind::VmVerifyKey);
    assert_eq!(get_u64(&buf, entry(k, 8)), table_end as u64);
    assert_eq!(get_u64(&buf, entry(k, 16)), VM_VERIFY_KEY_SIZE);
    assert_eq!(&buf[table_end..table_end + 32], &KEY);
    assert_eq!(
        &buf[table_end + 32..table_end + 53],
        b"console=ttyAMA0 quiet"
    );
    // Key alone with the kernel.
    let kernel = fake_kernel(64, 64);
    let buf = build(0, &kernel, None, None, Some(&KEY)).unwrap();
    let p = parse(&buf).unwrap();
    assert_eq!(p.vm_verify_key, Some(&KEY));
    assert_eq!((p.initramfs, p.cmdline), (None, None));
}

#[test]
fn max_length_cmdline_round_trips() {
    let long: String = "a".repeat(MAX_CMDLINE as usize);
    let buf = build(SMALL_OFFSET, &fake_kernel(64, 64), None, Some(&long), None).unwrap();
    assert_eq!(parse(&buf).unwrap().cmdline, Some(long.as_str()));
}

#[test]
fn parse_accepts_memory_longer_than_the_payload() {
    let mut mem = full();
    let len = mem.len();
    mem.extend(core::iter::repeat_n(0xAA, 1 << 16));
    let p = parse(&mem).unwrap();
    assert_eq!(p.total_size, len as u64);
}

#[test]
fn boot_image_size_covers_a_kernel_larger_than_its_image_size() {
    let buf = build(SMALL_OFFSET, &fake_kernel(4096, 64), None, None, None).unwrap();
    let p = parse(&buf).unwrap();
    assert_eq!(
        boot_image_size(SMALL_OFFSET, &p).unwrap(),
        KERNEL_ALIGN + 4096
    );
    assert_eq!(boot_image_size(u64::MAX - 10, &p), Err(Error::TooLarge));
    let mut bad = p;
    bad.kernel.bytes = &buf[..10];
    assert!(matches!(
        boot_image_size(0, &bad),
        Err(Error::BadKernelHeader(_))
    ));
}

// ---- checksum ---------------------------------------------------------------

#[test]
fn checksum_definition() {
    assert_eq!(checksum(&[]), 0xcbf2_9ce4_8422_2325);
    let w = 0x0123_4567_89ab_cdefu64;
    let expect = (0xcbf2_9ce4_8422_2325u64 ^ w).wrapping_mul(0x100_0000_01B3);
    assert_eq!(checksum(&w.to_le_bytes()), expect);
    // The tail is zero-padded to a whole word.
    assert_eq!(checksum(b"abc"), checksum(b"abc\0\0\0\0\0"));
    assert_ne!(checksum(b"abc"), checksum(b"abd"));
    // A zero word still advances the hash.
    assert_ne!(checksum(&[0; 8]), checksum(&[]));
}

#[test]
fn payload_checksum_reads_the_checksum_field_as_zero() {
    let mut a = [0x5Au8; 48];
    let b = a;
    a[24..32].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(payload_checksum(&a), payload_checksum(&b));
    let mut c = b;
    c[24..32].fill(0);
    assert_eq!(payload_checksum(&b), checksum(&c));
    assert_ne!(checksum(&a), checksum(&b));
}

// ---- one test per validation rule -------------------------------------------

#[test]
fn rule_magic_absent_is_no_payload() {
    assert_eq!(parse(&[0; 4096]), Err(Error::NoPayload));
    assert_eq!(parse(&[]), Err(Error::NoPayload));
    assert_eq!(parse(b"KCPAYL"), Err(Error::NoPayload));
    assert_eq!(parse(&[0xff; 64]), Err(Error::NoPayload));
}

#[test]
fn rule_damaged_magic_is_corrupt() {
    let mut buf = full();
    buf[3] ^= 0x20;
    let mut found = MAGIC;
    found[3] ^= 0x20;
    assert_eq!(parse(&buf), Err(Error::CorruptMagic { found }));
}

#[test]
fn rule_version() {
    let buf = edited(|b| set_u32(b, 8, 2));
    assert_eq!(parse(&buf), Err(Error::BadVersion { found: 2 }));
}

#[test]
fn rule_entry_count_range() {
    for count in [0, 9, u32::MAX] {
        let buf = edited(|b| set_u32(b, 12, count));
        assert_eq!(parse(&buf), Err(Error::BadEntryCount { count }));
    }
}

#[test]
fn rule_total_size_within_memory() {
    let buf = full();
    let len = buf.len() as u64;
    assert_eq!(
        parse(&buf[..buf.len() - 1]),
        Err(Error::Truncated {
            needed: len,
            available: len - 1
        })
    );
    assert_eq!(
        parse(&buf[..40]),
        Err(Error::Truncated {
            needed: 32 + 72,
            available: 40
        })
    );
    assert_eq!(
        parse(&buf[..20]),
        Err(Error::Truncated {
            needed: 32,
            available: 20
        })
    );
    let buf = edited(|b| set_u64(b, 16, u64::MAX));
    assert_eq!(
        parse(&buf),
        Err(Error::Truncated {
            needed: u64::MAX,
            available: len
        })
    );
}

#[test]
fn rule_total_size_is_the_end_of_the_last_component() {
    // Smaller than the entry table.
    let buf = edited(|b| set_u64(b, 16, 50));
    assert_eq!(
        parse(&buf),
        Err(Error::BadTotalSize {
            total_size: 50,
            expected: 104
        })
    );
    // Larger than the end of the last component.
    let mut buf = full();
    let len = buf.len() as u64;
    buf.extend([0u8; 16]);
    set_u64(&mut buf, 16, len + 16);
    reseal(&mut buf);
    assert_eq!(
        parse(&buf),
        Err(Error::BadTotalSize {
            total_size: len + 16,
            expected: len
        })
    );
}

#[test]
fn rule_checksum() {
    let good = full();
    let expected = get_u64(&good, CHECKSUM_OFFSET);
    let mut buf = good.clone();
    let last = buf.len() - 1;
    buf[last] ^= 1;
    let computed = payload_checksum(&buf);
    assert_eq!(
        parse(&buf),
        Err(Error::ChecksumMismatch { expected, computed })
    );
}

#[test]
fn rule_kind_known() {
    let buf = edited(|b| set_u32(b, entry(2, 0), 7));
    assert_eq!(
        parse(&buf),
        Err(Error::BadEntry {
            index: 2,
            reason: EntryProblem::UnknownKind(7)
        })
    );
    let buf = edited(|b| set_u32(b, entry(0, 0), 0));
    assert_eq!(
        parse(&buf),
        Err(Error::BadEntry {
            index: 0,
            reason: EntryProblem::UnknownKind(0)
        })
    );
}

#[test]
fn rule_kind_unique() {
    let full = full();
    let i = index_of(&full, Kind::Initramfs);
    // The initramfs, relabelled, would be a second kernel.
    let buf = edited(|b| set_u32(b, entry(i, 0), Kind::Kernel.raw()));
    let reason = EntryProblem::DuplicateKind(Kind::Kernel);
    assert_eq!(
        parse(&buf),
        Err(Error::BadEntry {
            index: i as u32,
            reason
        })
    );
}

#[test]
fn rule_reserved_zero() {
    let buf = edited(|b| set_u32(b, entry(1, 4), 0x100));
    let reason = EntryProblem::ReservedNotZero(0x100);
    assert_eq!(parse(&buf), Err(Error::BadEntry { index: 1, reason }));
}

#[test]
fn rule_offset_size_overflow() {
    let buf = edited(|b| set_u64(b, entry(0, 8), u64::MAX - 8));
    assert_eq!(
        parse(&buf),
        Err(Error::BadEntry {
            index: 0,
            reason: EntryProblem::OffsetOverflow
        })
    );
}

#[test]
fn rule_inside_total_size() {
    let full = full();
    let total_size = full.len() as u64;
    let k = index_of(&full, Kind::Kernel);
    let buf = edited(|b| set_u64(b, entry(k, 16), 4097));
    let end = 0x3000 + 4097;
    let reason = EntryProblem::OutsidePayload { end, total_size };
    assert_eq!(
        parse(&buf),
        Err(Error::BadEntry {
            index: k as u32,
            reason
        })
    );
}

#[test]
fn rule_not_over_the_header_or_entry_table() {
    let full = full();
    let c = index_of(&full, Kind::Cmdline);
    for offset in [0, 24, 103] {
        let buf = edited(|b| set_u64(b, entry(c, 8), offset));
        let reason = EntryProblem::OverlapsHeader;
        assert_eq!(
            parse(&buf),
            Err(Error::BadEntry {
                index: c as u32,
                reason
            }),
            "{offset}"
        );
    }
}

#[test]
fn rule_initramfs_aligned() {
    let full = full();
    let i = index_of(&full, Kind::Initramfs);
    let buf = edited(|b| {
        set_u64(b, entry(i, 8), 0x1008);
        set_u64(b, entry(i, 16), 0x100);
    });
    let reason = EntryProblem::Misaligned {
        offset: 0x1008,
        align: PAGE_ALIGN,
    };
    assert_eq!(
        parse(&buf),
        Err(Error::BadEntry {
            index: i as u32,
            reason
        })
    );
}

#[test]
fn rule_initramfs_not_empty() {
    let full = full();
    let i = index_of(&full, Kind::Initramfs);
    let buf = edited(|b| set_u64(b, entry(i, 16), 0));
    assert_eq!(
        parse(&buf),
        Err(Error::BadEntry {
            index: i as u32,
            reason: EntryProblem::Empty
        })
    );
}

#[test]
fn rule_components_do_not_overlap() {
    let full = full();
    let c = index_of(&full, Kind::Cmdline);
    // Move the command line into the initramfs.
    let buf = edited(|b| set_u64(b, entry(c, 8), 0x1010));
    assert_eq!(
        parse(&buf),
        Err(Error::Overlap {
            first: Kind::Cmdline,
            second: Kind::Initramfs
        })
    );
    // The initramfs over the kernel.
    let i = index_of(&full, Kind::Initramfs);
    let buf = edited(|b| set_u64(b, entry(i, 16), 0x2001));
    assert_eq!(
        parse(&buf),
        Err(Error::Overlap {
            first: Kind::Kernel,
            second: Kind::Initramfs
        })
    );
}

#[test]
fn rule_kernel_required() {
    let mut buf = build(SMALL_OFFSET, &fake_kernel(64, 64), None, Some("x"), None).unwrap();
    // The kernel entry, relabelled, is a perfectly good initramfs.
    set_u32(&mut buf, entry(0, 0), Kind::Initramfs.raw());
    reseal(&mut buf);
    assert_eq!(parse(&buf), Err(Error::MissingKernel));
}

#[test]
fn rule_kernel_image_header_valid() {
    let buf = edited(|b| {
        let at = 0x3000 + 0x38;
        b[at] = b'X';
    });
    let found = u32::from_le_bytes([b'X', b'R', b'M', 0x64]);
    assert_eq!(
        parse(&buf),
        Err(Error::BadKernelHeader(ImageHeaderError::BadMagic { found }))
    );
    let mut short = build(SMALL_OFFSET, &fake_kernel(64, 64), None, None, None).unwrap();
    set_u64(&mut short, entry(0, 16), 63);
    set_u64(&mut short, 16, 0x3000 + 63);
    short.pop();
    reseal(&mut short);
    assert_eq!(
        parse(&short),
        Err(Error::BadKernelHeader(ImageHeaderError::TooShort {
            len: 63
        }))
    );
}

#[test]
fn rule_vm_verify_key_is_32_bytes() {
    let full = full_with_key();
    let k = index_of(&full, Kind::VmVerifyKey);
    for size in [0, 1, 31, 33, 64] {
        let mut buf = full.clone();
        set_u64(&mut buf, entry(k, 16), size);
        reseal(&mut buf);
        assert_eq!(
            parse(&buf),
            Err(Error::BadEntry {
                index: k as u32,
                reason: EntryProblem::BadSize {
                    size,
                    expected: VM_VERIFY_KEY_SIZE
                }
            }),
            "size {size}"
        );
    }
}

#[test]
fn rule_vm_verify_key_unique() {
    let full = full_with_key();
    let c = index_of(&full, Kind::Cmdline);
    assert!(c > index_of(&full, Kind::VmVerifyKey));
    let mut buf = full.clone();
    set_u32(&mut buf, entry(c, 0), Kind::VmVerifyKey.raw());
    reseal(&mut buf);
    assert_eq!(
        parse(&buf),
        Err(Error::BadEntry {
            index: c as u32,
            reason: EntryProblem::DuplicateKind(Kind::VmVerifyKey)
        })
    );
}

#[test]
fn rule_vm_verify_key_inside_and_clear_of_others() {
    let full = full_with_key();
    let k = index_of(&full, Kind::VmVerifyKey);
    // Over the entry table.
    let mut buf = full.clone();
    set_u64(&mut buf, entry(k, 8), 8);
    reseal(&mut buf);
    assert_eq!(
        parse(&buf),
        Err(Error::BadEntry {
            index: k as u32,
            reason: EntryProblem::OverlapsHeader
        })
    );
    // Into the command line.
    let mut buf = full.clone();
    set_u64(&mut buf, entry(k, 8), HEADER_SIZE + 4 * ENTRY_SIZE + 16);
    reseal(&mut buf);
    assert!(matches!(parse(&buf), Err(Error::Overlap { .. })));
}

/// Replaces the command line of `full()` by `bytes` of the same length.
fn with_cmdline_bytes(bytes: &[u8]) -> Vec<u8> {
    edited(|b| {
        let c = index_of(b, Kind::Cmdline);
        let off = get_u64(b, entry(c, 8)) as usize;
        b[off..off + bytes.len()].copy_from_slice(bytes);
    })
}

#[test]
fn rule_cmdline_at_most_4k() {
    let long: String = "b".repeat(MAX_CMDLINE as usize);
    let mut buf = build(SMALL_OFFSET, &fake_kernel(64, 64), None, Some(&long), None).unwrap();
    set_u64(&mut buf, entry(1, 16), MAX_CMDLINE + 1);
    reseal(&mut buf);
    assert_eq!(
        parse(&buf),
        Err(Error::CmdlineTooLong {
            len: MAX_CMDLINE + 1
        })
    );
}

#[test]
fn rule_cmdline_utf8() {
    let buf = with_cmdline_bytes(b"con\xffole");
    assert_eq!(parse(&buf), Err(Error::CmdlineNotUtf8 { valid_up_to: 3 }));
}

#[test]
fn rule_cmdline_no_interior_nul() {
    let buf = with_cmdline_bytes(b"cons\0le");
    assert_eq!(parse(&buf), Err(Error::CmdlineHasNul { at: 4 }));
}

// ---- the kernel's Image header ------------------------------------------------

#[test]
fn image_header_accepts_a_valid_kernel() {
    let k = fake_kernel(64, 0x1_0000);
    assert_eq!(
        parse_image_header(&k),
        Ok(ImageHeader {
            text_offset: 0,
            image_size: 0x1_0000,
            flags: 0b1010
        })
    );
    // Page size "unspecified" is accepted too, and text_offset just below 2 MiB.
    let mut k = fake_kernel(64, 64);
    k[24..32].copy_from_slice(&0u64.to_le_bytes());
    k[8..16].copy_from_slice(&(KERNEL_ALIGN - 1).to_le_bytes());
    assert!(parse_image_header(&k).is_ok());
}

#[test]
fn image_header_rules() {
    use ImageHeaderError as E;
    assert_eq!(
        parse_image_header(&fake_kernel(64, 64)[..63]),
        Err(E::TooShort { len: 63 })
    );
    let mut k = fake_kernel(64, 64);
    k[0x3b] = 0x65;
    assert_eq!(
        parse_image_header(&k),
        Err(E::BadMagic { found: 0x654d_5241 })
    );
    let mut k = fake_kernel(64, 64);
    k[24] |= 1;
    assert_eq!(parse_image_header(&k), Err(E::BigEndian));
    for field in [2u8, 3] {
        let mut k = fake_kernel(64, 64);
        k[24..32].copy_from_slice(&(u64::from(field) << 1 | 8).to_le_bytes());
        assert_eq!(
            parse_image_header(&k),
            Err(E::UnsupportedPageSize { field })
        );
    }
    for image_size in [0, 63] {
        let k = fake_kernel(64, image_size);
        assert_eq!(
            parse_image_header(&k),
            Err(E::ImageSizeTooSmall { image_size })
        );
    }
    let mut k = fake_kernel(64, 64);
    k[8..16].copy_from_slice(&KERNEL_ALIGN.to_le_bytes());
    assert_eq!(
        parse_image_header(&k),
        Err(E::TextOffsetTooLarge {
            text_offset: KERNEL_ALIGN
        })
    );
}

// ---- the builder's own checks -----------------------------------------------------

#[test]
fn build_refuses_bad_input() {
    let k = fake_kernel(64, 64);
    assert_eq!(
        build(0x800, &k, None, None, None),
        Err(Error::MisalignedPayloadOffset { offset: 0x800 })
    );
    assert_eq!(
        build(0, &k[..32], None, None, None),
        Err(Error::BadKernelHeader(ImageHeaderError::TooShort {
            len: 32
        }))
    );
    let long: String = "c".repeat(MAX_CMDLINE as usize + 1);
    assert_eq!(
        build(0, &k, None, Some(&long), None),
        Err(Error::CmdlineTooLong { len: 4097 })
    );
    assert_eq!(
        build(0, &k, None, Some("a\0b"), None),
        Err(Error::CmdlineHasNul { at: 1 })
    );
    assert_eq!(
        build(0, &k, Some(&[]), Some("x"), None),
        Err(Error::BadEntry {
            index: 2,
            reason: EntryProblem::Empty
        })
    );
    assert_eq!(build(!0xfff, &k, None, None, None), Err(Error::TooLarge));
}

// ---- damage never panics and never passes -----------------------------------------

#[test]
fn every_truncation_is_refused() {
    for buf in [full(), full_with_key()] {
        for cut in 0..buf.len() {
            let r = parse(&buf[..cut]);
            assert!(r.is_err(), "cut at {cut} accepted");
        }
    }
}

#[test]
fn every_single_byte_flip_is_refused() {
    every_single_byte_flip_of_is_refused(&full(), 104);
    every_single_byte_flip_of_is_refused(&full_with_key(), 128 + 32);
}

/// Flips every bit of `buf[..dense]` (header, entry table, key) and one bit
/// of every other byte.
fn every_single_byte_flip_of_is_refused(buf: &[u8], dense: usize) {
    for at in 0..buf.len() {
        // Every bit of the header and entry table; one bit elsewhere.
        let masks: &[u8] = if at < dense {
            &[0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80]
        } else {
            &[0x01]
        };
        for &mask in masks {
            let mut b = buf.to_vec();
            b[at] ^= mask;
            assert!(parse(&b).is_err(), "flip {mask:#x} at {at:#x} accepted");
        }
    }
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Values that sit on the edges of the checks.
const EDGES: [u64; 12] = [
    0,
    1,
    7,
    8,
    32,
    104,
    0x1000,
    0x1001,
    0x3000,
    u64::MAX,
    u64::MAX - 1,
    1 << 63,
];

/// Checks what an accepted payload promises.
fn check_accepted(mem: &[u8], p: &Payload<'_>) {
    assert!(p.total_size <= mem.len() as u64);
    assert!(parse_image_header(p.kernel.bytes).is_ok());
    assert!(p.kernel.offset + p.kernel.bytes.len() as u64 <= p.total_size);
    if let Some(i) = p.initramfs {
        assert_eq!(i.offset % PAGE_ALIGN, 0);
        assert!(!i.bytes.is_empty());
    }
    if let Some(c) = p.cmdline {
        assert!(c.len() as u64 <= MAX_CMDLINE && !c.contains('\0'));
    }
    if let Some(k) = p.vm_verify_key {
        let mem = mem.as_ptr_range();
        assert!(mem.contains(&k.as_ptr()), "the key points into the payload");
    }
}

#[test]
fn random_bytes_and_mutations_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let bases = [full(), full_with_key()];
    let mut accepted = 0;
    for round in 0..20_000 {
        let mut buf = match round % 4 {
            // Pure noise behind a valid magic, so that the later checks run.
            0 => {
                let len = rng.below(300);
                let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                if b.len() >= 8 {
                    b[..8].copy_from_slice(&MAGIC);
                }
                b
            }
            n => bases[n % 2].clone(),
        };
        let edits = 1 + rng.below(4);
        for _ in 0..edits {
            if buf.len() < 32 {
                break;
            }
            match rng.below(4) {
                // A header or entry field set to an edge value.
                0 => {
                    let at = rng.below(104 / 4) * 4;
                    let v = EDGES[rng.below(EDGES.len())];
                    let len = buf.len();
                    if rng.below(2) == 0 {
                        set_u32(&mut buf, at.min(len - 4), v as u32);
                    } else {
                        set_u64(&mut buf, (at & !7).min(len - 8), v);
                    }
                }
                // A random byte anywhere.
                1 => {
                    let at = rng.below(buf.len());
                    buf[at] = rng.next() as u8;
                }
                // A truncation.
                2 => {
                    let cut = rng.below(buf.len());
                    buf.truncate(cut);
                }
                // A small entry count, so more entries get decoded.
                _ => set_u32(&mut buf, 12, 1 + rng.below(8) as u32),
            }
        }
        // Half the time the checksum is fixed, so the entry checks run.
        if rng.below(2) == 0 && buf.len() >= 32 {
            reseal(&mut buf);
        }
        if let Ok(p) = parse(&buf) {
            check_accepted(&buf, &p);
            accepted += 1;
        }
    }
    // Some edits (a reserved padding byte, then resealed) leave a valid payload.
    assert!(accepted > 0);
}

#[test]
fn every_error_has_a_message() {
    let errors = [
        Error::NoPayload,
        Error::CorruptMagic {
            found: *b"KCPAYLX\0",
        },
        Error::BadVersion { found: 9 },
        Error::BadEntryCount { count: 0 },
        Error::Truncated {
            needed: 10,
            available: 5,
        },
        Error::BadTotalSize {
            total_size: 1,
            expected: 2,
        },
        Error::ChecksumMismatch {
            expected: 1,
            computed: 2,
        },
        Error::BadEntry {
            index: 0,
            reason: EntryProblem::UnknownKind(5),
        },
        Error::BadEntry {
            index: 0,
            reason: EntryProblem::DuplicateKind(Kind::Kernel),
        },
        Error::BadEntry {
            index: 0,
            reason: EntryProblem::ReservedNotZero(1),
        },
        Error::BadEntry {
            index: 0,
            reason: EntryProblem::OffsetOverflow,
        },
        Error::BadEntry {
            index: 0,
            reason: EntryProblem::OutsidePayload {
                end: 1,
                total_size: 0,
            },
        },
        Error::BadEntry {
            index: 0,
            reason: EntryProblem::OverlapsHeader,
        },
        Error::BadEntry {
            index: 0,
            reason: EntryProblem::Misaligned {
                offset: 1,
                align: 2,
            },
        },
        Error::BadEntry {
            index: 0,
            reason: EntryProblem::Empty,
        },
        Error::BadEntry {
            index: 0,
            reason: EntryProblem::BadSize {
                size: 31,
                expected: 32,
            },
        },
        Error::Overlap {
            first: Kind::Cmdline,
            second: Kind::Initramfs,
        },
        Error::MissingKernel,
        Error::BadKernelHeader(ImageHeaderError::TooShort { len: 1 }),
        Error::BadKernelHeader(ImageHeaderError::BadMagic { found: 1 }),
        Error::BadKernelHeader(ImageHeaderError::BigEndian),
        Error::BadKernelHeader(ImageHeaderError::UnsupportedPageSize { field: 2 }),
        Error::BadKernelHeader(ImageHeaderError::UnsupportedPageSize { field: 3 }),
        Error::BadKernelHeader(ImageHeaderError::ImageSizeTooSmall { image_size: 0 }),
        Error::BadKernelHeader(ImageHeaderError::TextOffsetTooLarge { text_offset: 1 }),
        Error::CmdlineTooLong { len: 5000 },
        Error::CmdlineNotUtf8 { valid_up_to: 0 },
        Error::CmdlineHasNul { at: 0 },
        Error::MisalignedPayloadOffset { offset: 1 },
        Error::TooLarge,
    ];
    for e in errors {
        let msg = format!("{e}");
        assert!(msg.len() > 10 && !msg.ends_with('\n'), "{e:?}: {msg:?}");
    }
    assert!(format!("{}", Error::NoPayload).contains("no KServ payload"));
}

#[test]
fn image_header_errors_convert() {
    let e: Error = ImageHeaderError::BigEndian.into();
    assert_eq!(e, Error::BadKernelHeader(ImageHeaderError::BigEndian));
}

#[test]
fn kinds_round_trip() {
    for k in Kind::ALL {
        assert_eq!(Kind::from_raw(k.raw()), Some(k));
    }
    assert_eq!(Kind::from_raw(0), None);
    assert_eq!(Kind::from_raw(4), Some(Kind::VmVerifyKey));
    assert_eq!(Kind::from_raw(5), None);
    for k in Kind::ALL {
        assert!(!k.name().is_empty());
    }
}

/// The checksum as docs/boot-image.md defines it, one byte at a time.
fn reference_checksum(bytes: &[u8], zero_word: Option<usize>) -> u64 {
    let mut padded = bytes.to_vec();
    while !padded.len().is_multiple_of(8) {
        padded.push(0);
    }
    let mut h = CHECKSUM_BASIS;
    for (i, c) in padded.chunks(8).enumerate() {
        let mut w = 0u64;
        for (k, b) in c.iter().enumerate() {
            w |= (*b as u64) << (8 * k);
        }
        if zero_word == Some(i) {
            w = 0;
        }
        h = (h ^ w).wrapping_mul(CHECKSUM_PRIME);
    }
    h
}

#[test]
fn checksum_is_the_same_aligned_or_not() {
    // A u64 buffer guarantees an 8-byte aligned start for the fast path;
    // offsetting by one byte takes the byte-wise path.
    let words: Vec<u64> = (0..1000u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();
    let aligned: &[u8] = bytemuck::cast_slice(&words);
    let mut shifted = Vec::with_capacity(aligned.len() + 1);
    shifted.push(0xEE);
    shifted.extend_from_slice(aligned);
    for len in [0, 1, 7, 8, 9, 31, 32, 33, 4000, 7999, 8000] {
        let a = &aligned[..len];
        let b = &shifted[1..1 + len];
        assert_eq!(
            checksum(a),
            reference_checksum(a, None),
            "aligned, len {len}"
        );
        assert_eq!(
            checksum(b),
            reference_checksum(b, None),
            "unaligned, len {len}"
        );
        assert_eq!(
            payload_checksum(a),
            reference_checksum(a, Some(CHECKSUM_WORD)),
            "len {len}"
        );
        assert_eq!(
            payload_checksum(b),
            reference_checksum(b, Some(CHECKSUM_WORD)),
            "len {len}"
        );
    }
}
