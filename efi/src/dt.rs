//! The device tree `kcore.efi` hands KCore: the firmware's tree with two
//! edits, re-emitted token by token into a buffer sized before
//! `ExitBootServices` (nothing here allocates).
//!
//! 1. **Memory.** Every child of the root that describes memory (named
//!    `memory` or `memory@...`, or with `device_type = "memory"`) is dropped,
//!    and one `/memory@<base>` node takes their place, its `reg` holding the
//!    banks the loader read from the EFI memory map (`app::ram_layout`, as
//!    Linux's `reserve_regions` reads it): every write-back region, with
//!    what the firmware keeps after `ExitBootServices` (runtime services,
//!    ACPI tables, reserved memory) in [`Edits::reserve`], so KCore places
//!    its pool elsewhere and KServ's kernel does not allocate it.
//! 2. **`/chosen/bootargs`** becomes the application's load options when
//!    there are any (KCore appends them to the payload's command line, as
//!    it does with any loader's bootargs); `/chosen` is created if missing.
//! 3. **`/chosen`'s UEFI hand-off** ([`Edits::chosen`]: the system table and
//!    memory map as `linux,uefi-*`, `kcore_efi::handoff`) is added, each
//!    property replacing one of the same name, and the memory map's buffer
//!    becomes a `/memreserve/` entry ([`Edits::reserve`]), so neither KCore's
//!    pool nor KServ takes it.
//!
//! Everything else (other nodes and properties, phandles, `/memreserve/`
//! entries, `boot_cpuid_phys`) is copied byte for byte; `FDT_NOP` tokens
//! are dropped. The output is a version 17 tree.

use core::fmt::{self, Write};

use kcore_boot::platform::dtb::{
    FDT_BEGIN_NODE, FDT_END, FDT_END_NODE, FDT_HEADER_SIZE as HEADER_LEN, FDT_MAGIC, FDT_NOP,
    FDT_PROP, FDT_VERSION, align4, cstr,
};

use crate::memmap::Bank;

/// Why the firmware's tree could not be edited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtError {
    /// No FDT magic, or a header that contradicts itself.
    BadHeader,
    /// The tree ends early or a block lies outside it.
    Truncated,
    /// An unknown token, a misplaced one, or an unterminated name.
    BadStructure(&'static str),
    /// A bank does not fit the root's `#address-cells`/`#size-cells`.
    CellsTooSmall,
    /// No bank to describe.
    NoRam,
    /// The output buffer is too small (see [`max_len`]).
    OutputTooSmall,
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtError::BadHeader => f.write_str("not a flattened device tree (bad header)"),
            DtError::Truncated => f.write_str("the device tree is truncated"),
            DtError::BadStructure(what) => write!(f, "malformed device tree: {what}"),
            DtError::CellsTooSmall => {
                f.write_str("a RAM bank does not fit the root's #address-cells/#size-cells")
            }
            DtError::NoRam => f.write_str("no RAM bank to describe"),
            DtError::OutputTooSmall => f.write_str("the device tree buffer is too small"),
        }
    }
}

/// What to change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edits<'a> {
    /// The RAM banks, sorted and disjoint.
    pub banks: &'a [Bank],
    /// The new `/chosen/bootargs`, or `None` to keep the tree's.
    pub bootargs: Option<&'a str>,
    /// Properties `/chosen` gets (at most [`MAX_CHOSEN`]), replacing any of
    /// the same name.
    pub chosen: &'a [(&'a str, &'a [u8])],
    /// `(base, size)` entries added to the memory reservation block.
    pub reserve: &'a [(u64, u64)],
}

/// The most properties [`Edits::chosen`] may hold.
pub const MAX_CHOSEN: usize = 8;
/// Bytes of property names the tree may lack (the memory node's, `bootargs`
/// and those of [`Edits::chosen`]).
const EXTRA_NAMES: usize = 320;

/// The size of the tree whose header starts `header` (at least 40 bytes
/// of it), checked against the magic.
pub fn total_size(header: &[u8]) -> Result<usize, DtError> {
    if be32(header, 0).map_err(|_| DtError::BadHeader)? != FDT_MAGIC {
        return Err(DtError::BadHeader);
    }
    let size = be32(header, 4).map_err(|_| DtError::BadHeader)? as usize;
    if size < HEADER_LEN {
        return Err(DtError::BadHeader);
    }
    Ok(size)
}

/// An output buffer size that always suffices for [`rewrite`] of a tree of
/// `dtb_len` bytes with `banks` banks, `bootargs_len` bytes of bootargs and
/// `chosen_len` bytes of [`Edits::chosen`] values and [`Edits::reserve`]
/// entries.
pub fn max_len(dtb_len: usize, banks: usize, bootargs_len: usize, chosen_len: usize) -> usize {
    // The new memory node (name, device_type, reg), a new /chosen and its
    // bootargs, the new properties (a 12-byte header and padding each),
    // the new strings, the header and the padding of each.
    dtb_len + 512 + banks * 16 + bootargs_len + chosen_len + MAX_CHOSEN * 16 + EXTRA_NAMES
}

/// Writes `dtb` with `edits` applied into `out`; returns the new tree's
/// length.
pub fn rewrite(dtb: &[u8], edits: &Edits<'_>, out: &mut [u8]) -> Result<usize, DtError> {
    if edits.banks.is_empty() {
        return Err(DtError::NoRam);
    }
    if edits.chosen.len() > MAX_CHOSEN {
        return Err(DtError::OutputTooSmall);
    }
    let total = total_size(dtb)?;
    let dtb = dtb.get(..total).ok_or(DtError::Truncated)?;
    let field = |at| be32(dtb, at).map_err(|_| DtError::BadHeader);
    let (off_struct, off_strings, off_rsv) = (field(8)?, field(12)?, field(16)?);
    let (version, boot_cpuid) = (field(20)?, field(28)?);
    let (size_strings, size_struct) = (field(32)?, field(36)?);
    if version < FDT_VERSION {
        return Err(DtError::BadHeader);
    }
    let strings = block(dtb, off_strings, size_strings)?;
    let structure = block(dtb, off_struct, size_struct)?;

    let mut o = Out { buf: out, pos: 0 };
    o.put(&[0; HEADER_LEN])?;
    // The memory reservation block, then the new entries and the (0, 0)
    // end.
    let mut at = off_rsv as usize;
    loop {
        let entry = dtb.get(at..at + 16).ok_or(DtError::Truncated)?;
        at += 16;
        if entry.iter().all(|&b| b == 0) {
            break;
        }
        o.put(entry)?;
    }
    for &(base, size) in edits.reserve {
        o.put(&base.to_be_bytes())?;
        o.put(&size.to_be_bytes())?;
    }
    o.put(&[0; 16])?;
    let struct_start = o.pos;
    let mut names = Names {
        orig: strings,
        extra: [0; EXTRA_NAMES],
        len: 0,
    };
    let mut chosen = [0u32; MAX_CHOSEN];
    for (slot, (name, _)) in chosen.iter_mut().zip(edits.chosen) {
        *slot = names.offset(name.as_bytes())?;
    }
    let names = Props {
        device_type: names.offset(b"device_type")?,
        reg: names.offset(b"reg")?,
        bootargs: names.offset(b"bootargs")?,
        chosen,
        table: names,
    };
    emit_structure(structure, &names, edits, &mut o)?;
    let struct_len = o.pos - struct_start;
    let strings_start = o.pos;
    o.put(strings)?;
    o.put(&names.table.extra[..names.table.len])?;
    let strings_len = o.pos - strings_start;
    let len = o.pos;
    let header = [
        FDT_MAGIC,
        len as u32,
        struct_start as u32,
        strings_start as u32,
        HEADER_LEN as u32,
        FDT_VERSION,
        16,
        boot_cpuid,
        strings_len as u32,
        struct_len as u32,
    ];
    for (i, v) in header.iter().enumerate() {
        o.buf[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    Ok(len)
}

/// The string-table offsets of the properties this module writes.
struct Props<'a> {
    table: Names<'a>,
    device_type: u32,
    reg: u32,
    bootargs: u32,
    /// Those of [`Edits::chosen`], in its order.
    chosen: [u32; MAX_CHOSEN],
}

/// The tree's string table plus the names it lacked.
struct Names<'a> {
    orig: &'a [u8],
    extra: [u8; EXTRA_NAMES],
    len: usize,
}

impl Names<'_> {
    /// The offset of `name`: where the table already holds it (a suffix of a
    /// longer name will do), else after the table.
    fn offset(&mut self, name: &[u8]) -> Result<u32, DtError> {
        let n = name.len() + 1;
        let holds = |table: &[u8]| {
            table
                .windows(n)
                .position(|w| &w[..name.len()] == name && w[name.len()] == 0)
        };
        if let Some(p) = holds(self.orig) {
            return Ok(p as u32);
        }
        if let Some(p) = holds(&self.extra[..self.len]) {
            return Ok((self.orig.len() + p) as u32);
        }
        let slot = self
            .extra
            .get_mut(self.len..self.len + n)
            .ok_or(DtError::OutputTooSmall)?;
        slot[..name.len()].copy_from_slice(name);
        slot[name.len()] = 0;
        let at = self.orig.len() + self.len;
        self.len += n;
        Ok(at as u32)
    }
}

/// A token of the structure block.
#[derive(Clone, Copy)]
enum Token<'a> {
    Begin(&'a [u8]),
    End,
    Prop { name: u32, value: &'a [u8] },
    Nop,
    Finish,
}

#[derive(Clone)]
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn next(&mut self) -> Result<Token<'a>, DtError> {
        let token = be32(self.s, self.pos)?;
        self.pos += 4;
        Ok(match token {
            FDT_BEGIN_NODE => {
                let name = self
                    .s
                    .get(self.pos..)
                    .and_then(cstr)
                    .ok_or(DtError::BadStructure("unterminated node name"))?;
                self.pos = aligned(self.pos + name.len() + 1)?;
                Token::Begin(name)
            }
            FDT_END_NODE => Token::End,
            FDT_PROP => {
                let len = be32(self.s, self.pos)? as usize;
                let name = be32(self.s, self.pos + 4)?;
                let start = self.pos + 8;
                let value = self
                    .s
                    .get(start..start.checked_add(len).ok_or(DtError::Truncated)?)
                    .ok_or(DtError::Truncated)?;
                self.pos = aligned(start + len)?;
                Token::Prop { name, value }
            }
            FDT_NOP => Token::Nop,
            FDT_END => Token::Finish,
            _ => return Err(DtError::BadStructure("unknown token")),
        })
    }

    /// Skips the rest of the node whose `FDT_BEGIN_NODE` was just read.
    fn skip_node(&mut self) -> Result<(), DtError> {
        let mut level = 1;
        while level > 0 {
            match self.next()? {
                Token::Begin(_) => level += 1,
                Token::End => level -= 1,
                Token::Finish => return Err(DtError::BadStructure("unterminated node")),
                Token::Prop { .. } | Token::Nop => {}
            }
        }
        Ok(())
    }

    /// Whether the node whose `FDT_BEGIN_NODE` was just read has
    /// `device_type = "memory"` (its properties come before its children).
    fn is_memory_node(&self, strings: &[u8]) -> Result<bool, DtError> {
        let mut c = self.clone();
        loop {
            match c.next()? {
                Token::Prop { name, value } => {
                    if prop_name(strings, name)? == b"device_type" && value == b"memory\0" {
                        return Ok(true);
                    }
                }
                Token::Nop => {}
                _ => return Ok(false),
            }
        }
    }
}

fn emit_structure(
    structure: &[u8],
    names: &Props<'_>,
    edits: &Edits<'_>,
    o: &mut Out<'_>,
) -> Result<(), DtError> {
    let strings = names.table.orig;
    let mut c = Cursor {
        s: structure,
        pos: 0,
    };
    let (mut depth, mut cells) = (0usize, (2u32, 1u32));
    let (mut in_chosen, mut chosen_seen, mut root_done) = (false, false, false);
    loop {
        match c.next()? {
            Token::Nop => {}
            Token::Begin(name) => {
                if depth == 0 && (root_done || !name.is_empty()) {
                    return Err(DtError::BadStructure("not a single root node"));
                }
                if depth == 1 {
                    let memory = name == b"memory" || name.starts_with(b"memory@");
                    if memory || c.is_memory_node(strings)? {
                        c.skip_node()?;
                        continue;
                    }
                    in_chosen = name == b"chosen";
                    chosen_seen |= in_chosen;
                }
                o.begin_node(name)?;
                depth += 1;
            }
            Token::Prop { name, value } => {
                if depth == 0 {
                    return Err(DtError::BadStructure("a property outside the root"));
                }
                let pname = prop_name(strings, name)?;
                if depth == 1 && pname == b"#address-cells" {
                    cells.0 = be32(value, 0)?;
                }
                if depth == 1 && pname == b"#size-cells" {
                    cells.1 = be32(value, 0)?;
                }
                let replaced = depth == 2
                    && in_chosen
                    && ((pname == b"bootargs" && edits.bootargs.is_some())
                        || edits.chosen.iter().any(|(n, _)| n.as_bytes() == pname));
                if !replaced {
                    o.prop(name, value)?;
                }
            }
            Token::End => {
                match depth {
                    0 => return Err(DtError::BadStructure("unbalanced end of node")),
                    1 => {
                        o.memory_node(edits.banks, cells, names)?;
                        if !chosen_seen && (edits.bootargs.is_some() || !edits.chosen.is_empty()) {
                            o.begin_node(b"chosen")?;
                            o.chosen_props(edits, names)?;
                            o.u32(FDT_END_NODE)?;
                        }
                        root_done = true;
                    }
                    2 if in_chosen => {
                        o.chosen_props(edits, names)?;
                        in_chosen = false;
                    }
                    _ => {}
                }
                o.u32(FDT_END_NODE)?;
                depth -= 1;
            }
            Token::Finish => {
                if depth != 0 || !root_done {
                    return Err(DtError::BadStructure("the tree ends inside a node"));
                }
                return o.u32(FDT_END);
            }
        }
    }
}

/// The output buffer.
struct Out<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Out<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), DtError> {
        let end = self.pos + bytes.len();
        self.buf
            .get_mut(self.pos..end)
            .ok_or(DtError::OutputTooSmall)?
            .copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    fn u32(&mut self, v: u32) -> Result<(), DtError> {
        self.put(&v.to_be_bytes())
    }

    fn pad(&mut self) -> Result<(), DtError> {
        while !self.pos.is_multiple_of(4) {
            self.put(&[0])?;
        }
        Ok(())
    }

    fn begin_node(&mut self, name: &[u8]) -> Result<(), DtError> {
        self.u32(FDT_BEGIN_NODE)?;
        self.put(name)?;
        self.put(&[0])?;
        self.pad()
    }

    fn prop(&mut self, name: u32, value: &[u8]) -> Result<(), DtError> {
        self.u32(FDT_PROP)?;
        self.u32(value.len() as u32)?;
        self.u32(name)?;
        self.put(value)?;
        self.pad()
    }

    fn string_prop(&mut self, name: u32, value: &str) -> Result<(), DtError> {
        self.u32(FDT_PROP)?;
        self.u32(value.len() as u32 + 1)?;
        self.u32(name)?;
        self.put(value.as_bytes())?;
        self.put(&[0])?;
        self.pad()
    }

    /// The bootargs and the other properties `/chosen` gets.
    fn chosen_props(&mut self, edits: &Edits<'_>, names: &Props<'_>) -> Result<(), DtError> {
        if let Some(args) = edits.bootargs {
            self.string_prop(names.bootargs, args)?;
        }
        for (&name, (_, value)) in names.chosen.iter().zip(edits.chosen) {
            self.prop(name, value)?;
        }
        Ok(())
    }

    /// `/memory@<first base>` with `device_type` and `reg` = `banks`.
    fn memory_node(
        &mut self,
        banks: &[Bank],
        (address_cells, size_cells): (u32, u32),
        names: &Props<'_>,
    ) -> Result<(), DtError> {
        self.u32(FDT_BEGIN_NODE)?;
        write!(self, "memory@{:x}", banks[0].base).map_err(|_| DtError::OutputTooSmall)?;
        self.put(&[0])?;
        self.pad()?;
        self.string_prop(names.device_type, "memory")?;
        let fits = |cells: u32, v: u64| cells == 2 || (cells == 1 && v <= u64::from(u32::MAX));
        if !banks
            .iter()
            .all(|b| fits(address_cells, b.end.saturating_sub(1)) && fits(size_cells, b.size()))
        {
            return Err(DtError::CellsTooSmall);
        }
        let cells = address_cells + size_cells;
        self.u32(FDT_PROP)?;
        self.u32(banks.len() as u32 * cells * 4)?;
        self.u32(names.reg)?;
        for b in banks {
            for (cells, v) in [(address_cells, b.base), (size_cells, b.size())] {
                if cells == 2 {
                    self.u32((v >> 32) as u32)?;
                }
                self.u32(v as u32)?;
            }
        }
        self.u32(FDT_END_NODE)
    }
}

impl Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.put(s.as_bytes()).map_err(|_| fmt::Error)
    }
}

fn be32(bytes: &[u8], at: usize) -> Result<u32, DtError> {
    kcore_boot::platform::dtb::be32(bytes, at).ok_or(DtError::Truncated)
}

fn block(dtb: &[u8], offset: u32, size: u32) -> Result<&[u8], DtError> {
    let start = offset as usize;
    dtb.get(start..start + size as usize)
        .ok_or(DtError::Truncated)
}

fn prop_name(strings: &[u8], offset: u32) -> Result<&[u8], DtError> {
    strings
        .get(offset as usize..)
        .and_then(cstr)
        .ok_or(DtError::BadStructure("a property name outside the strings"))
}

/// `v` rounded up to 4, for offsets inside a tree (far below overflow).
fn aligned(v: usize) -> Result<usize, DtError> {
    align4(v).ok_or(DtError::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_fdt::FdtWriter;

    const GIB: u64 = 1 << 30;

    /// A tree shaped like QEMU `virt`'s: 2/2 cells, one memory node holding
    /// all of RAM, `/chosen` with bootargs and stdout-path, a CPU, a
    /// reserved range, and a second memory node found by `device_type`.
    fn qemu_like(cells: u32, bootargs: Option<&str>, chosen: bool) -> Vec<u8> {
        let mut w =
            FdtWriter::new_with_mem_reserv(&[
                vm_fdt::FdtReserveEntry::new(0x4800_0000, 0x1000).expect("reserve")
            ])
            .expect("writer");
        let root = w.begin_node("").expect("root");
        w.property_u32("#address-cells", cells).expect("prop");
        w.property_u32("#size-cells", cells).expect("prop");
        w.property_string("compatible", "linux,dummy-virt")
            .expect("prop");
        let mem = w.begin_node("memory@40000000").expect("node");
        w.property_string("device_type", "memory").expect("prop");
        let reg: &[u64] = if cells == 2 { &[GIB, GIB] } else { &[] };
        w.property_array_u64("reg", reg).expect("prop");
        w.end_node(mem).expect("end");
        let ram = w.begin_node("ram").expect("node");
        w.property_string("device_type", "memory").expect("prop");
        w.end_node(ram).expect("end");
        if chosen {
            let ch = w.begin_node("chosen").expect("node");
            if let Some(args) = bootargs {
                w.property_string("bootargs", args).expect("prop");
            }
            w.property_string("stdout-path", "/pl011@9000000")
                .expect("prop");
            w.end_node(ch).expect("end");
        }
        let cpus = w.begin_node("cpus").expect("node");
        let cpu = w.begin_node("cpu@0").expect("node");
        w.property_string("device_type", "cpu").expect("prop");
        w.end_node(cpu).expect("end");
        w.end_node(cpus).expect("end");
        w.end_node(root).expect("end");
        w.finish().expect("finish")
    }

    /// `dtb` rewritten with `banks` and `bootargs`, which must succeed.
    fn edited(dtb: &[u8], banks: &[Bank], bootargs: Option<&str>) -> Vec<u8> {
        edit(
            dtb,
            &Edits {
                banks,
                bootargs,
                chosen: &[],
                reserve: &[],
            },
        )
        .expect("rewrite")
    }

    fn edit(dtb: &[u8], edits: &Edits<'_>) -> Result<Vec<u8>, DtError> {
        let extra: usize =
            edits.chosen.iter().map(|(_, v)| v.len()).sum::<usize>() + edits.reserve.len() * 16;
        let mut out = vec![0; max_len(dtb.len(), edits.banks.len(), 64, extra)];
        let n = rewrite(dtb, edits, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    const BANKS: [Bank; 2] = [
        Bank {
            base: GIB,
            end: GIB + 0x3000_0000,
        },
        Bank {
            base: GIB + 0x3100_0000,
            end: 2 * GIB - 0x10_0000,
        },
    ];

    fn memory_of(fdt: &fdt::Fdt<'_>) -> Vec<(u64, u64)> {
        fdt.all_nodes()
            .filter(|n| n.name.starts_with("memory") || n.name == "ram")
            .flat_map(|n| n.reg().into_iter().flatten())
            .map(|r| (r.starting_address as u64, r.size.unwrap_or(0) as u64))
            .collect()
    }

    #[test]
    fn memory_nodes_become_the_banks_and_bootargs_are_replaced() {
        let dtb = qemu_like(2, Some("old args"), true);
        let out = edited(&dtb, &BANKS, Some("kserv.tests=hvc"));
        let fdt = fdt::Fdt::new(&out).expect("a valid tree");
        assert_eq!(
            memory_of(&fdt),
            [(GIB, 0x3000_0000), (GIB + 0x3100_0000, GIB - 0x3110_0000)]
        );
        assert!(fdt.find_node("/memory@40000000").is_some());
        assert!(fdt.find_node("/ram").is_none());
        let chosen = fdt.find_node("/chosen").expect("chosen");
        let prop = |n: &str| chosen.property(n).and_then(|p| p.as_str());
        assert_eq!(prop("bootargs"), Some("kserv.tests=hvc"));
        assert_eq!(prop("stdout-path"), Some("/pl011@9000000"));
        assert_eq!(chosen.properties().count(), 2);
        assert!(fdt.find_node("/cpus/cpu@0").is_some());
        let reserved: Vec<_> = fdt
            .memory_reservations()
            .map(|r| (r.address() as u64, r.size()))
            .collect();
        assert_eq!(reserved, [(0x4800_0000, 0x1000)]);
        // Rewriting the result changes nothing more.
        let again = edited(&out, &BANKS, Some("kserv.tests=hvc"));
        assert_eq!(again, out);
    }

    #[test]
    fn bootargs_are_kept_or_chosen_is_created() {
        let dtb = qemu_like(2, Some("old args"), true);
        let kept = edited(&dtb, &BANKS, None);
        let fdt = fdt::Fdt::new(&kept).expect("tree");
        assert_eq!(fdt.chosen().bootargs(), Some("old args"));

        let dtb = qemu_like(2, None, false);
        let created = edited(&dtb, &BANKS[..1], Some("a b"));
        let fdt = fdt::Fdt::new(&created).expect("tree");
        assert_eq!(fdt.chosen().bootargs(), Some("a b"));
        assert_eq!(memory_of(&fdt), [(GIB, 0x3000_0000)]);
    }

    #[test]
    fn the_uefi_hand_off_joins_chosen_and_the_map_is_reserved() {
        let table = 0x5bfe_0018u64.to_be_bytes();
        let start = 0x5a00_0000u64.to_be_bytes();
        let size = 480u32.to_be_bytes();
        let chosen = [
            ("linux,uefi-system-table", &table[..]),
            ("linux,uefi-mmap-start", &start[..]),
            ("linux,uefi-mmap-size", &size[..]),
            ("stdout-path", &b"/pl011@9000000\0"[..]),
        ];
        let reserve = [(0x5a00_0000, 0x3000)];
        for with_chosen in [true, false] {
            let dtb = qemu_like(2, Some("old"), with_chosen);
            let e = Edits {
                banks: &BANKS,
                bootargs: Some("a b"),
                chosen: &chosen,
                reserve: &reserve,
            };
            let out = edit(&dtb, &e).expect("rewrite");
            let fdt = fdt::Fdt::new(&out).expect("a valid tree");
            let node = fdt.find_node("/chosen").expect("chosen");
            let raw = |n: &str| node.property(n).map(|p| p.value.to_vec());
            assert_eq!(raw("linux,uefi-system-table"), Some(table.to_vec()));
            assert_eq!(raw("linux,uefi-mmap-start"), Some(start.to_vec()));
            assert_eq!(raw("linux,uefi-mmap-size"), Some(size.to_vec()));
            assert_eq!(fdt.chosen().bootargs(), Some("a b"));
            // A property of the same name is replaced, not repeated.
            let names: Vec<&str> = node.properties().map(|p| p.name).collect();
            assert_eq!(
                names.iter().filter(|&&n| n == "stdout-path").count(),
                1,
                "{names:?}"
            );
            assert_eq!(names.len(), 5, "{names:?}");
            let reserved: Vec<_> = fdt
                .memory_reservations()
                .map(|r| (r.address() as u64, r.size()))
                .collect();
            assert_eq!(reserved, [(0x4800_0000, 0x1000), (0x5a00_0000, 0x3000)]);
        }
    }

    #[test]
    fn one_cell_trees_take_only_low_banks() {
        let dtb = qemu_like(1, None, true);
        let out = edited(&dtb, &BANKS, None);
        let fdt = fdt::Fdt::new(&out).expect("tree");
        assert_eq!(memory_of(&fdt).len(), 2);
        let high = [Bank {
            base: 4 * GIB,
            end: 5 * GIB,
        }];
        let e = Edits {
            banks: &high,
            bootargs: None,
            chosen: &[],
            reserve: &[],
        };
        assert_eq!(edit(&dtb, &e), Err(DtError::CellsTooSmall));
    }

    #[test]
    fn bad_input_is_an_error_never_a_panic() {
        let dtb = qemu_like(2, Some("x"), true);
        let value = 0x5bfe_0018u64.to_be_bytes();
        let chosen = [("linux,uefi-system-table", &value[..])];
        let e = Edits {
            banks: &BANKS,
            bootargs: Some("y"),
            chosen: &chosen,
            reserve: &[(0x5a00_0000, 0x3000)],
        };
        assert_eq!(edit(&[], &e), Err(DtError::BadHeader));
        assert_eq!(edit(&dtb[..dtb.len() - 8], &e), Err(DtError::Truncated));
        let none = Edits {
            banks: &[],
            bootargs: None,
            chosen: &[],
            reserve: &[],
        };
        assert_eq!(edit(&dtb, &none), Err(DtError::NoRam));
        let many = [("linux,uefi-x", &value[..]); MAX_CHOSEN + 1];
        assert_eq!(
            edit(&dtb, &Edits { chosen: &many, ..e }),
            Err(DtError::OutputTooSmall)
        );
        let mut small = vec![0; dtb.len() / 2];
        assert_eq!(rewrite(&dtb, &e, &mut small), Err(DtError::OutputTooSmall));
        // Every truncation and every single-byte corruption of the header
        // and structure block either rewrites or fails cleanly.
        for cut in 0..dtb.len() {
            let mut t = dtb[..cut].to_vec();
            t.resize(dtb.len(), 0);
            let _ = edit(&t, &e);
        }
        for at in 0..dtb.len() {
            for v in [0x00, 0x01, 0x03, 0x09, 0xff] {
                let mut t = dtb.clone();
                t[at] = v;
                let _ = edit(&t, &e);
            }
        }
        for err in [
            DtError::BadHeader,
            DtError::Truncated,
            DtError::BadStructure("x"),
            DtError::CellsTooSmall,
            DtError::NoRam,
            DtError::OutputTooSmall,
        ] {
            assert!(!err.to_string().is_empty());
        }
    }
}
