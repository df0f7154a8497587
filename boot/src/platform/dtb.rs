//! The guard in front of the `fdt` crate: a device tree blob is handed to
//! `fdt` only after [`Dtb::check`] (or [`sanitized_copy`], which KCore runs
//! with its MMU still off) has validated its header, the memory reservation
//! block, every block offset and size, and every token, name and property of
//! the structure block, because `fdt` indexes and `expect`s its way through
//! malformed input. `FDT_NOP` tokens, which `fdt` mis-parses, are removed on
//! the way. The header constants and [`be32`] are shared with the writer of
//! KServ's tree ([`crate::kserv_dt`]).

use alloc::borrow::Cow;
use alloc::vec::Vec;

use fdt::Fdt;

use super::DtError;

/// The header's magic.
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// Structure-block token: a node starts (its name follows).
pub const FDT_BEGIN_NODE: u32 = 1;
/// Structure-block token: a node ends.
pub const FDT_END_NODE: u32 = 2;
/// Structure-block token: a property (length, name offset, value).
pub const FDT_PROP: u32 = 3;
/// Structure-block token: nothing.
pub const FDT_NOP: u32 = 4;
/// Structure-block token: the block ends.
pub const FDT_END: u32 = 9;
/// Size of the version-17 header.
pub const FDT_HEADER_SIZE: usize = 40;
/// The format version KCore reads and writes.
pub const FDT_VERSION: u32 = 17;
/// Deepest node nesting accepted (the `fdt` crate's own limit is 64).
pub const MAX_DEPTH: u32 = 32;

/// Big-endian `u32` at `at`, `None` past the end.
pub fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    let mut w = [0u8; 4];
    w.copy_from_slice(b);
    Some(u32::from_be_bytes(w))
}

/// Big-endian `u64` at `at`, `None` past the end.
fn be64(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(8)?)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    Some(u64::from_be_bytes(w))
}

/// `x` rounded up to a multiple of 4, `None` on overflow.
pub fn align4(x: usize) -> Option<usize> {
    Some(x.checked_add(3)? & !3)
}

/// `bytes[start..start + len]`, `None` if out of range.
fn sub(bytes: &[u8], start: usize, len: usize) -> Option<&[u8]> {
    bytes.get(start..start.checked_add(len)?)
}

/// The NUL-terminated string at the start of `bytes`, without its NUL.
pub fn cstr(bytes: &[u8]) -> Option<&[u8]> {
    let end = bytes.iter().position(|&b| b == 0)?;
    bytes.get(..end)
}

/// A device tree blob that passed [`Dtb::check`]: the `fdt` crate can walk it
/// without hitting any of its panics.
pub(crate) struct Dtb<'a> {
    /// The blob, cut to `totalsize`; a copy when `FDT_NOP` tokens had to be
    /// removed (the `fdt` crate mis-parses them in several places).
    blob: Cow<'a, [u8]>,
    /// The `/memreserve/` entries `(address, size)`, in order.
    pub(crate) reservations: Vec<(u64, u64)>,
    /// The header's `boot_cpuid_phys`.
    pub(crate) boot_cpuid_phys: u32,
}

/// Header field offsets.
mod hdr {
    pub const TOTALSIZE: usize = 4;
    pub const OFF_DT_STRUCT: usize = 8;
    pub const OFF_DT_STRINGS: usize = 12;
    pub const OFF_MEM_RSVMAP: usize = 16;
    pub const VERSION: usize = 20;
    pub const LAST_COMP_VERSION: usize = 24;
    pub const BOOT_CPUID_PHYS: usize = 28;
    pub const SIZE_DT_STRINGS: usize = 32;
    pub const SIZE_DT_STRUCT: usize = 36;
}

/// Where the blocks of a validated blob are.
struct Layout<'a> {
    /// The blob, cut to `totalsize`.
    blob: &'a [u8],
    off_rsvmap: usize,
    off_struct: usize,
    size_struct: usize,
    boot_cpuid_phys: u32,
    /// `FDT_NOP` tokens in the structure block.
    nops: usize,
}

/// The `/memreserve/` entries of a blob whose reservation block `check_layout`
/// validated, in order.
fn reservations(blob: &[u8], off_rsvmap: usize) -> impl Iterator<Item = (u64, u64)> + '_ {
    (0..)
        .map(move |i| {
            let at = off_rsvmap + 16 * i;
            (be64(blob, at).unwrap_or(0), be64(blob, at + 8).unwrap_or(0))
        })
        .take_while(|&e| e != (0, 0))
}

/// Validates `dtb` completely without allocating: header, memory
/// reservation block, block bounds, and every token of the structure block
/// (nesting, names, property lengths and name offsets).
fn check_layout(dtb: &[u8]) -> Result<Layout<'_>, DtError> {
    let available = dtb.len() as u64;
    let truncated = |needed: u64| DtError::Truncated { needed, available };
    let magic = be32(dtb, 0).ok_or(truncated(FDT_HEADER_SIZE as u64))?;
    if magic != FDT_MAGIC {
        return Err(DtError::BadMagic { found: magic });
    }
    let field = |at| be32(dtb, at).ok_or(truncated(FDT_HEADER_SIZE as u64));
    let totalsize = field(hdr::TOTALSIZE)? as usize;
    let off_struct = field(hdr::OFF_DT_STRUCT)? as usize;
    let off_strings = field(hdr::OFF_DT_STRINGS)? as usize;
    let off_rsvmap = field(hdr::OFF_MEM_RSVMAP)? as usize;
    let version = field(hdr::VERSION)?;
    let last_compatible = field(hdr::LAST_COMP_VERSION)?;
    let boot_cpuid_phys = field(hdr::BOOT_CPUID_PHYS)?;
    let size_strings = field(hdr::SIZE_DT_STRINGS)? as usize;
    let size_struct = field(hdr::SIZE_DT_STRUCT)? as usize;
    if totalsize as u64 > available {
        return Err(truncated(totalsize as u64));
    }
    if version < FDT_VERSION || last_compatible > FDT_VERSION {
        return Err(DtError::UnsupportedVersion {
            version,
            last_compatible,
        });
    }
    let blob = dtb.get(..totalsize).ok_or(truncated(totalsize as u64))?;
    if totalsize < FDT_HEADER_SIZE {
        return Err(DtError::BadLayout("totalsize is smaller than the header"));
    }

    // Memory reservation block: 16-byte entries up to a (0, 0) entry.
    if off_rsvmap < FDT_HEADER_SIZE || !off_rsvmap.is_multiple_of(8) {
        return Err(DtError::BadLayout("memory reservation block is misplaced"));
    }
    let mut at = off_rsvmap;
    loop {
        let entry = (
            be64(blob, at),
            at.checked_add(8).and_then(|a| be64(blob, a)),
        );
        let (Some(address), Some(size)) = entry else {
            return Err(DtError::BadLayout(
                "memory reservation block runs past totalsize",
            ));
        };
        if address == 0 && size == 0 {
            break;
        }
        at += 16;
    }

    if off_struct < FDT_HEADER_SIZE
        || !off_struct.is_multiple_of(4)
        || !size_struct.is_multiple_of(4)
    {
        return Err(DtError::BadLayout("structure block is misaligned"));
    }
    let structure = sub(blob, off_struct, size_struct)
        .ok_or(DtError::BadLayout("structure block runs past totalsize"))?;
    if off_strings < FDT_HEADER_SIZE {
        return Err(DtError::BadLayout("strings block overlaps the header"));
    }
    let strings = sub(blob, off_strings, size_strings)
        .ok_or(DtError::BadLayout("strings block runs past totalsize"))?;

    let nops = check_structure(structure, strings)?;
    Ok(Layout {
        blob,
        off_rsvmap,
        off_struct,
        size_struct,
        boot_cpuid_phys,
        nops,
    })
}

/// Validates `dtb` (as [`parse`] does) and copies it into `out` with its
/// `FDT_NOP` tokens removed, without allocating; returns the copy's length.
/// KCore calls this with its MMU still off, so that it only ever hands the
/// `fdt` crate a checked, NOP-free tree.
pub fn sanitized_copy(dtb: &[u8], out: &mut [u8]) -> Result<usize, DtError> {
    let layout = check_layout(dtb)?;
    let len = layout.blob.len();
    let out = out.get_mut(..len).ok_or(DtError::Truncated {
        needed: len as u64,
        available: 0,
    })?;
    out.copy_from_slice(layout.blob);
    if layout.nops > 0 {
        remove_nops(out, layout.off_struct, layout.size_struct)?;
    }
    Ok(len)
}

impl<'a> Dtb<'a> {
    /// Validates `dtb` completely (see [`check_layout`]). Only blobs that
    /// pass reach `fdt`.
    pub(crate) fn check(dtb: &'a [u8]) -> Result<Dtb<'a>, DtError> {
        let layout = check_layout(dtb)?;
        let reservations = reservations(layout.blob, layout.off_rsvmap).collect();
        let blob = if layout.nops == 0 {
            Cow::Borrowed(layout.blob)
        } else {
            let mut copy = layout.blob.to_vec();
            remove_nops(&mut copy, layout.off_struct, layout.size_struct)?;
            Cow::Owned(copy)
        };
        Ok(Dtb {
            blob,
            reservations,
            boot_cpuid_phys: layout.boot_cpuid_phys,
        })
    }

    /// The `fdt` view of the checked blob.
    pub(crate) fn fdt(&self) -> Result<Fdt<'_>, DtError> {
        Fdt::new(&self.blob).map_err(|_| DtError::BadLayout("rejected by the FDT parser"))
    }
}

/// Walks every token of the structure block. Returns how many `FDT_NOP`
/// tokens it holds.
fn check_structure(s: &[u8], strings: &[u8]) -> Result<usize, DtError> {
    let bad = |offset: usize, reason| DtError::BadStructure {
        offset: offset as u64,
        reason,
    };
    let mut nops = 0usize;
    let mut pos = 0usize;
    let mut depth = 0u32;
    let mut seen_root = false;
    // Whether the innermost open node may still have properties (not once a
    // child node has started).
    let mut props_allowed = false;
    loop {
        let at = pos;
        let token = be32(s, at).ok_or(bad(at, "the block ends without FDT_END"))?;
        pos = at + 4;
        match token {
            FDT_BEGIN_NODE => {
                if depth == 0 && seen_root {
                    return Err(bad(at, "a second root node"));
                }
                let rest = s.get(pos..).unwrap_or_default();
                let name = cstr(rest).ok_or(bad(at, "node name is not NUL-terminated"))?;
                let name =
                    core::str::from_utf8(name).map_err(|_| bad(at, "node name is not UTF-8"))?;
                if depth == 0 && !name.is_empty() {
                    return Err(bad(at, "the root node has a name"));
                }
                if depth > 0 && name.is_empty() {
                    return Err(bad(at, "a node without a name"));
                }
                if name.contains('/') {
                    return Err(bad(at, "node name contains '/'"));
                }
                pos = pos
                    .checked_add(name.len() + 1)
                    .and_then(align4)
                    .ok_or(bad(at, "node name runs past the block"))?;
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(DtError::TooDeep { limit: MAX_DEPTH });
                }
                seen_root = true;
                props_allowed = true;
            }
            FDT_PROP => {
                if depth == 0 {
                    return Err(bad(at, "a property outside any node"));
                }
                if !props_allowed {
                    return Err(bad(at, "a property after a child node"));
                }
                let len = be32(s, pos).ok_or(bad(at, "property header runs past the block"))?;
                let nameoff =
                    be32(s, pos + 4).ok_or(bad(at, "property header runs past the block"))?;
                let value_at = pos + 8;
                sub(s, value_at, len as usize)
                    .ok_or(bad(at, "property value runs past the block"))?;
                let name = strings
                    .get(nameoff as usize..)
                    .and_then(cstr)
                    .ok_or(bad(at, "property name lies outside the strings block"))?;
                if name.is_empty() || core::str::from_utf8(name).is_err() {
                    return Err(bad(at, "property name is empty or not UTF-8"));
                }
                if (name == b"#address-cells" || name == b"#size-cells") && len != 4 {
                    return Err(bad(at, "#address-cells or #size-cells is not one cell"));
                }
                pos = value_at
                    .checked_add(len as usize)
                    .and_then(align4)
                    .ok_or(bad(at, "property value runs past the block"))?;
            }
            FDT_END_NODE => {
                if depth == 0 {
                    return Err(bad(at, "FDT_END_NODE without a node to end"));
                }
                depth -= 1;
                props_allowed = false;
            }
            FDT_NOP => nops += 1,
            FDT_END => {
                if !seen_root {
                    return Err(bad(at, "no root node"));
                }
                if depth != 0 {
                    return Err(bad(at, "FDT_END inside a node"));
                }
                return Ok(nops);
            }
            _ => return Err(bad(at, "unknown token")),
        }
    }
}

/// Removes the `FDT_NOP` tokens from the structure block of a blob that
/// [`check_layout`] accepted, in place: later tokens move down, the freed
/// tail of the block is zeroed and `size_dt_struct` shrinks to match.
fn remove_nops(blob: &mut [u8], off_struct: usize, size_struct: usize) -> Result<(), DtError> {
    let layout = || DtError::BadLayout("structure block");
    let block = blob
        .get_mut(off_struct..off_struct + size_struct)
        .ok_or_else(layout)?;
    let (mut read, mut write) = (0usize, 0usize);
    loop {
        let token = be32(block, read).ok_or_else(layout)?;
        let len = match token {
            FDT_BEGIN_NODE => {
                let name = block.get(read + 4..).and_then(cstr).ok_or_else(layout)?;
                align4(4 + name.len() + 1).ok_or_else(layout)?
            }
            FDT_PROP => {
                let value = be32(block, read + 4).ok_or_else(layout)? as usize;
                align4(12 + value).ok_or_else(layout)?
            }
            _ => 4,
        };
        if read + len > block.len() {
            return Err(layout());
        }
        if token != FDT_NOP {
            block.copy_within(read..read + len, write);
            write += len;
        }
        read += len;
        if token == FDT_END {
            break;
        }
    }
    block.get_mut(write..).ok_or_else(layout)?.fill(0);
    let size = (write as u32).to_be_bytes();
    blob.get_mut(hdr::SIZE_DT_STRUCT..hdr::SIZE_DT_STRUCT + 4)
        .ok_or_else(layout)?
        .copy_from_slice(&size);
    Ok(())
}
