//! Malformed device trees: every one must give an `Err` with a message, never
//! a panic, from both `platform::parse` and `kserv_dt::build`.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use common::*;
use kcore::addr::MemRange;
use kcore_boot::kserv_dt::{self, KservDtEdits};
use kcore_boot::platform::{DtError, parse};

const EDITS: KservDtEdits<'static> = KservDtEdits {
    kcore_regions: &[MemRange::new(0x4000_0000, 0x20_0000).unwrap()],
    initrd: Some(MemRange::new(0x4800_0000, 0x10_0000).unwrap()),
    payload_cmdline: Some("console=ttyAMA0"),
    abi_version: 1,
    uefi_mmap_size: None,
};

/// Runs both entry points on `blob`; they must not panic. Returns whether
/// `parse` accepted it, and checks that a tree `parse` accepts builds into
/// one that `parse` accepts too.
fn exercise(blob: &[u8]) -> bool {
    let parsed = parse(blob);
    let built = kserv_dt::build(blob, &EDITS);
    if let Err(e) = &parsed {
        assert!(!format!("{e}").is_empty());
    }
    if let (Ok(_), Ok(out)) = (&parsed, &built) {
        parse(out).unwrap_or_else(|e| panic!("build output does not parse: {e}"));
    }
    if let Ok(out) = &built {
        // Whatever build writes is at least a well-formed tree.
        fdt::Fdt::new(out).unwrap();
        assert!(kserv_dt::build(out, &EDITS).is_ok());
    }
    parsed.is_ok()
}

/// Runs both entry points on `blob`; they must not panic, and every error
/// must have a message.
fn no_panic(blob: &[u8]) {
    if let Err(e) = parse(blob) {
        assert!(!format!("{e}").is_empty());
    }
    if let Err(e) = kserv_dt::build(blob, &EDITS) {
        assert!(!format!("{e}").is_empty());
    }
}

#[test]
fn header_errors_are_precise() {
    let good = fixture("qemu-virt-gicv3-a72.dtb");
    let len = good.len() as u64;
    assert_eq!(
        parse(&[]).unwrap_err(),
        DtError::Truncated {
            needed: 40,
            available: 0
        }
    );
    assert_eq!(
        parse(&good[..20]).unwrap_err(),
        DtError::Truncated {
            needed: 40,
            available: 20
        }
    );
    assert_eq!(
        parse(&[0u8; 64]).unwrap_err(),
        DtError::BadMagic { found: 0 }
    );
    assert_eq!(
        parse(&good[..good.len() - 1]).unwrap_err(),
        DtError::Truncated {
            needed: len,
            available: len - 1
        }
    );
    let mut b = good.clone();
    set_be32(&mut b, VERSION, 16);
    assert!(matches!(
        parse(&b),
        Err(DtError::UnsupportedVersion { version: 16, .. })
    ));
    let edits: [(usize, u32); 7] = [
        (TOTALSIZE, 20),
        (OFF_DT_STRUCT, 2),
        (OFF_DT_STRUCT, len as u32),
        (SIZE_DT_STRUCT, u32::MAX - 3),
        (OFF_DT_STRINGS, u32::MAX),
        (SIZE_DT_STRINGS, len as u32),
        (OFF_MEM_RSVMAP, len as u32 - 8),
    ];
    for (field, value) in edits {
        let mut b = good.clone();
        set_be32(&mut b, field, value);
        let e = parse(&b).unwrap_err();
        assert!(
            matches!(e, DtError::BadLayout(_)),
            "{field}={value:#x}: {e:?}"
        );
        assert!(kserv_dt::build(&b, &EDITS).is_err());
    }
}

/// A blob whose structure block is `words` (plus strings), for token errors.
fn raw_tree(words: &[u32], strings: &[u8]) -> Vec<u8> {
    let mut s = Vec::new();
    for w in words {
        s.extend_from_slice(&w.to_be_bytes());
    }
    let off_struct = 40 + 16;
    let off_strings = off_struct + s.len();
    let total = off_strings + strings.len();
    let header = [
        0xd00d_feed,
        total as u32,
        off_struct as u32,
        off_strings as u32,
        40,
        17,
        16,
        0,
        strings.len() as u32,
        s.len() as u32,
    ];
    let mut b = Vec::new();
    for h in header {
        b.extend_from_slice(&h.to_be_bytes());
    }
    b.extend_from_slice(&[0; 16]);
    b.extend_from_slice(&s);
    b.extend_from_slice(strings);
    b
}

const BEGIN: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const END: u32 = 9;
/// "ab\0\0" as a name word.
const NAME_AB: u32 = 0x6162_0000;

#[test]
fn structure_errors_are_precise() {
    let strings = b"reg\0#address-cells\0";
    let minimal = raw_tree(&[BEGIN, 0, END_NODE, END], strings);
    assert!(parse(&minimal).is_ok());
    let cases: [(&[u32], &str); 12] = [
        (&[BEGIN, 0, END_NODE], "the block ends without FDT_END"),
        (&[BEGIN, 0, END], "FDT_END inside a node"),
        (&[END], "no root node"),
        (
            &[BEGIN, 0, END_NODE, END_NODE, END],
            "FDT_END_NODE without a node to end",
        ),
        (
            &[BEGIN, 0, END_NODE, BEGIN, 0, END_NODE, END],
            "a second root node",
        ),
        (&[BEGIN, NAME_AB, END_NODE, END], "the root node has a name"),
        (
            &[BEGIN, 0, BEGIN, 0, END_NODE, END_NODE, END],
            "a node without a name",
        ),
        (
            &[
                BEGIN, 0, BEGIN, NAME_AB, END_NODE, PROP, 0, 0, END_NODE, END,
            ],
            "a property after a child node",
        ),
        (
            &[BEGIN, 0, PROP, 100, 0, END_NODE, END],
            "property value runs past the block",
        ),
        (
            &[BEGIN, 0, PROP, 0, 100, END_NODE, END],
            "property name lies outside the strings block",
        ),
        (
            &[BEGIN, 0, PROP, 8, 4, 0, 2, END_NODE, END],
            "#address-cells or #size-cells is not one cell",
        ),
        (&[BEGIN, 0, 7, END_NODE, END], "unknown token"),
    ];
    for (words, reason) in cases {
        let b = raw_tree(words, strings);
        match parse(&b) {
            Err(DtError::BadStructure { reason: r, .. }) => assert_eq!(r, reason, "{words:x?}"),
            other => panic!("{words:x?}: {other:?}"),
        }
        assert!(kserv_dt::build(&b, &EDITS).is_err());
    }
    // A node name without its NUL.
    let b = raw_tree(&[BEGIN, 0x6161_6161], strings);
    assert!(matches!(
        parse(&b),
        Err(DtError::BadStructure {
            reason: "node name is not NUL-terminated",
            ..
        })
    ));
    // A property before any node.
    let b = raw_tree(&[PROP, 0, 0, END], strings);
    assert!(matches!(
        parse(&b),
        Err(DtError::BadStructure {
            reason: "a property outside any node",
            ..
        })
    ));
    // A property name that is not UTF-8.
    let b = raw_tree(&[BEGIN, 0, PROP, 0, 0, END_NODE, END], b"\xff\0");
    assert!(matches!(
        parse(&b),
        Err(DtError::BadStructure {
            reason: "property name is empty or not UTF-8",
            ..
        })
    ));
}

#[test]
fn deep_nesting_is_refused() {
    let mut words = vec![BEGIN, 0];
    for _ in 0..40 {
        words.extend([BEGIN, NAME_AB]);
    }
    words.extend([END_NODE; 41]);
    words.push(END);
    let b = raw_tree(&words, b"");
    assert_eq!(parse(&b).unwrap_err(), DtError::TooDeep { limit: 32 });
    // 31 levels below the root are fine.
    let mut words = vec![BEGIN, 0];
    for _ in 0..31 {
        words.extend([BEGIN, NAME_AB]);
    }
    words.extend([END_NODE; 32]);
    words.push(END);
    assert!(parse(&raw_tree(&words, b"")).is_ok());
}

#[test]
fn every_truncation_is_refused() {
    for name in ALL_FIXTURES {
        let good = fixture(name);
        for cut in 0..good.len() {
            assert!(parse(&good[..cut]).is_err(), "{name} cut at {cut}");
        }
    }
}

#[test]
fn truncations_with_a_consistent_header_never_panic() {
    // Cut the blob and shrink totalsize (and the block sizes) to match, so the
    // cut reaches the structure walk instead of the totalsize check.
    for name in ALL_FIXTURES {
        let good = fixture(name);
        let off_struct = be32(&good, OFF_DT_STRUCT) as usize;
        for cut in (off_struct..good.len()).step_by(3) {
            let mut b = good[..cut].to_vec();
            set_be32(&mut b, TOTALSIZE, cut as u32);
            let size_struct = (be32(&good, SIZE_DT_STRUCT) as usize).min(cut - off_struct);
            set_be32(&mut b, SIZE_DT_STRUCT, size_struct as u32 & !3);
            let off_strings = be32(&good, OFF_DT_STRINGS) as usize;
            let size_strings = cut
                .saturating_sub(off_strings)
                .min(be32(&good, SIZE_DT_STRINGS) as usize);
            set_be32(&mut b, SIZE_DT_STRINGS, size_strings as u32);
            exercise(&b);
        }
    }
}

#[test]
fn every_byte_flip_is_handled() {
    // Every bit of every header, every byte of the smallest fixture, every
    // 5th byte of the others (each flip runs both entry points).
    for name in ALL_FIXTURES {
        let good = fixture(name);
        let step = if name == "pi4-like.dtb" { 1 } else { 5 };
        for at in 0..good.len() {
            let masks: &[u8] = match at {
                0..40 => &[0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80],
                _ if at % step == 0 => &[0x01],
                _ => &[],
            };
            for &mask in masks {
                let mut b = good.clone();
                b[at] ^= mask;
                no_panic(&b);
            }
        }
    }
}

#[test]
fn random_mutations_never_panic() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let interesting = [
        0u32,
        1,
        2,
        3,
        4,
        5,
        8,
        0x28,
        0xff,
        0x1000,
        0x7fff_ffff,
        0xffff_fff0,
        u32::MAX,
    ];
    let fixtures: Vec<Vec<u8>> = ALL_FIXTURES.iter().map(|n| fixture(n)).collect();
    let mut accepted = 0;
    for round in 0..1500 {
        let mut b = fixtures[round % fixtures.len()].clone();
        for _ in 0..1 + rng.below(3) {
            match rng.below(3) {
                // An aligned word (a token, a length, a cell, a header field).
                0 => {
                    let at = rng.below(b.len() / 4) * 4;
                    let v = interesting[rng.below(interesting.len())];
                    set_be32(&mut b, at, v);
                }
                // A random byte.
                1 => {
                    let at = rng.below(b.len());
                    b[at] = rng.next() as u8;
                }
                // A word of the structure block set to a token value.
                _ => {
                    let off = be32(&b, OFF_DT_STRUCT) as usize;
                    if off < b.len() {
                        let at = off + rng.below((b.len() - off) / 4) * 4;
                        if at + 4 <= b.len() {
                            set_be32(&mut b, at, [1, 2, 3, 4, 9][rng.below(5)]);
                        }
                    }
                }
            }
        }
        accepted += usize::from(exercise(&b));
    }
    // Most single-word damage to a value (not a token) still parses.
    assert!(accepted > 0);
}

/// Walks `blob` with the `fdt` crate alone, the way `Tree` does.
fn walk_with_fdt_alone(blob: &[u8]) {
    let f = fdt::Fdt::new(blob).unwrap();
    for n in f.all_nodes() {
        let _ = n.properties().count();
        let _ = n.children().count();
    }
}

#[test]
fn the_guard_is_load_bearing() {
    // Inputs on which the `fdt` crate, unguarded, panics.
    const NOP: u32 = 4;
    let nop_between_children = raw_tree(
        &[
            BEGIN, 0, BEGIN, NAME_AB, BEGIN, NAME_AB, END_NODE, NOP, BEGIN, NAME_AB, END_NODE,
            END_NODE, END_NODE, END,
        ],
        b"",
    );
    let bad_name_offset = raw_tree(&[BEGIN, 0, PROP, 0, 100, END_NODE, END], b"reg\0");
    let short_value = raw_tree(&[BEGIN, 0, PROP, 100, 0, END_NODE, END], b"reg\0");
    for (blob, guarded_ok) in [
        (nop_between_children, true),
        (bad_name_offset, false),
        (short_value, false),
    ] {
        let unguarded = std::panic::catch_unwind(|| walk_with_fdt_alone(&blob));
        assert!(
            unguarded.is_err(),
            "the fdt crate no longer panics here: {blob:x?}"
        );
        assert_eq!(parse(&blob).is_ok(), guarded_ok);
        assert_eq!(kserv_dt::build(&blob, &EDITS).is_ok(), guarded_ok);
    }
}
