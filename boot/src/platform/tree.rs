//! An index over a device tree that passed [`Dtb::check`]: every node with
//! its properties, parent and children ([`Tree`]), path and alias lookup,
//! typed property reads that name the node and property when they fail, and
//! `reg` decoding with translation to CPU physical addresses through the
//! `ranges` of every ancestor bus. [`super::parse`] and
//! [`crate::kserv_dt::build`] both read the tree through it.

use alloc::string::String;
use alloc::vec::Vec;

use fdt::Fdt;
use fdt::node::FdtNode;

use super::DtError;
#[cfg(doc)]
use super::dtb::Dtb;
use super::dtb::{MAX_DEPTH, be32};
use kcore::addr::MemRange;

/// One node of a [`Tree`].
pub(crate) struct TreeNode<'b, 'a> {
    /// The node, as the `fdt` crate sees it.
    pub(crate) node: FdtNode<'b, 'a>,
    /// Its properties `(name, value)`, in order (read once: the `fdt` crate
    /// re-parses them on every lookup).
    pub(crate) props: Vec<(&'a str, &'a [u8])>,
    /// Index of the parent (`None` for the root).
    pub(crate) parent: Option<usize>,
    /// Indices of the children, in tree order.
    pub(crate) children: Vec<usize>,
}

/// All nodes of a checked tree in document order; index 0 is the root.
pub(crate) struct Tree<'b, 'a> {
    pub(crate) nodes: Vec<TreeNode<'b, 'a>>,
}

/// Index of the root node in a [`Tree`].
pub(crate) const ROOT: usize = 0;

/// Default `#address-cells` when a node has none (Devicetree spec 2.3.5).
const DEFAULT_ADDRESS_CELLS: u32 = 2;
/// Default `#size-cells` when a node has none.
const DEFAULT_SIZE_CELLS: u32 = 1;

impl<'b, 'a> Tree<'b, 'a> {
    /// Indexes every node of `fdt`, which must come from a checked [`Dtb`].
    pub(crate) fn new(fdt: &'b Fdt<'a>) -> Result<Self, DtError> {
        let root = fdt.all_nodes().next().ok_or(DtError::BadStructure {
            offset: 0,
            reason: "no root node",
        })?;
        let mut tree = Tree { nodes: Vec::new() };
        tree.add(root, None, 0)?;
        Ok(tree)
    }

    fn add(
        &mut self,
        node: FdtNode<'b, 'a>,
        parent: Option<usize>,
        depth: u32,
    ) -> Result<(), DtError> {
        if depth >= MAX_DEPTH {
            return Err(DtError::TooDeep { limit: MAX_DEPTH });
        }
        let index = self.nodes.len();
        let props = node.properties().map(|p| (p.name, p.value)).collect();
        self.nodes.push(TreeNode {
            node,
            props,
            parent,
            children: Vec::new(),
        });
        if let Some(p) = parent.and_then(|p| self.nodes.get_mut(p)) {
            p.children.push(index);
        }
        for child in node.children() {
            self.add(child, Some(index), depth + 1)?;
        }
        Ok(())
    }

    fn get(&self, i: usize) -> Option<&TreeNode<'b, 'a>> {
        self.nodes.get(i)
    }

    /// The node's name (`""` for the root).
    pub(crate) fn name(&self, i: usize) -> &'a str {
        match self.get(i) {
            Some(n) if n.parent.is_some() => n.node.name,
            _ => "",
        }
    }

    /// The node's parent.
    pub(crate) fn parent(&self, i: usize) -> Option<usize> {
        self.get(i).and_then(|n| n.parent)
    }

    /// The node's children, in tree order.
    pub(crate) fn children(&self, i: usize) -> &[usize] {
        self.get(i)
            .map(|n| n.children.as_slice())
            .unwrap_or_default()
    }

    /// The node's full path, for messages.
    pub(crate) fn path(&self, i: usize) -> String {
        let mut parts = Vec::new();
        let mut cur = Some(i);
        while let Some(c) = cur {
            if self.parent(c).is_some() {
                parts.push(self.name(c));
            }
            cur = self.parent(c);
        }
        if parts.is_empty() {
            return String::from("/");
        }
        let mut path = String::new();
        for p in parts.iter().rev() {
            path.push('/');
            path.push_str(p);
        }
        path
    }

    /// The node's properties `(name, value)`, in order.
    pub(crate) fn props(&self, i: usize) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        self.get(i)
            .map(|n| n.props.as_slice())
            .unwrap_or_default()
            .iter()
            .copied()
    }

    /// The value of property `name` of node `i`.
    pub(crate) fn prop(&self, i: usize, name: &str) -> Option<&'a [u8]> {
        self.props(i).find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Whether property `name` holds exactly the string `value`.
    pub(crate) fn prop_is(&self, i: usize, name: &str, value: &str) -> bool {
        self.prop(i, name)
            .is_some_and(|v| string_value(v) == Some(value.as_bytes()))
    }

    /// Property `name` as a string: `None` if absent, an error if it is not a
    /// NUL-terminated UTF-8 string.
    pub(crate) fn string(&self, i: usize, name: &'static str) -> Result<Option<&'a str>, DtError> {
        let Some(v) = self.prop(i, name) else {
            return Ok(None);
        };
        string_value(v)
            .and_then(|s| core::str::from_utf8(s).ok())
            .map(Some)
            .ok_or_else(|| self.bad(i, name, "is not a NUL-terminated UTF-8 string"))
    }

    /// Property `name` as one `u32` cell, `None` if absent.
    pub(crate) fn u32_prop(&self, i: usize, name: &'static str) -> Result<Option<u32>, DtError> {
        match self.prop(i, name) {
            None => Ok(None),
            Some(v) if v.len() == 4 => Ok(be32(v, 0)),
            Some(_) => Err(self.bad(i, name, "is not one 32-bit cell")),
        }
    }

    /// A [`DtError::BadProperty`] for node `i`.
    pub(crate) fn bad(&self, i: usize, property: &'static str, reason: &'static str) -> DtError {
        DtError::BadProperty {
            node: self.path(i),
            property,
            reason,
        }
    }

    /// Whether one of the node's `compatible` strings satisfies `pred`.
    pub(crate) fn compatible_with(&self, i: usize, pred: impl Fn(&[u8]) -> bool) -> bool {
        self.prop(i, "compatible")
            .is_some_and(|v| v.split(|&b| b == 0).filter(|s| !s.is_empty()).any(pred))
    }

    /// Whether the node is compatible with `compat`.
    pub(crate) fn is_compatible(&self, i: usize, compat: &str) -> bool {
        self.compatible_with(i, |c| c == compat.as_bytes())
    }

    /// Whether the node's `status` says it is usable ("okay", "ok" or absent).
    pub(crate) fn is_available(&self, i: usize) -> bool {
        match self.prop(i, "status") {
            None => true,
            Some(v) => matches!(string_value(v), Some(b"okay") | Some(b"ok")),
        }
    }

    /// `(#address-cells, #size-cells)` that node `i` gives its children.
    pub(crate) fn cells(&self, i: usize) -> (u32, u32) {
        let get = |name, default| {
            self.prop(i, name)
                .and_then(|v| be32(v, 0))
                .unwrap_or(default)
        };
        (
            get("#address-cells", DEFAULT_ADDRESS_CELLS),
            get("#size-cells", DEFAULT_SIZE_CELLS),
        )
    }

    /// The child of `i` called `name`: an exact match, else (for a name
    /// without a unit address) the first child whose name before `@` matches.
    pub(crate) fn child(&self, i: usize, name: &str) -> Option<usize> {
        let children = self.children(i);
        children
            .iter()
            .copied()
            .find(|&c| self.name(c) == name)
            .or_else(|| {
                if name.contains('@') {
                    return None;
                }
                children
                    .iter()
                    .copied()
                    .find(|&c| self.name(c).split('@').next() == Some(name))
            })
    }

    /// The node at absolute `path`.
    pub(crate) fn find_path(&self, path: &str) -> Option<usize> {
        if !path.starts_with('/') {
            return None;
        }
        path.split('/')
            .filter(|c| !c.is_empty())
            .try_fold(ROOT, |cur, c| self.child(cur, c))
    }

    /// The node a path or an alias names (`stdout-path` style, options after
    /// `:` already removed). Aliases resolve one level, as the spec defines.
    pub(crate) fn resolve(&self, path_or_alias: &str) -> Option<usize> {
        if path_or_alias.starts_with('/') {
            return self.find_path(path_or_alias);
        }
        let aliases = self.child(ROOT, "aliases")?;
        let target = self.prop(aliases, path_or_alias).and_then(string_value)?;
        let target = core::str::from_utf8(target).ok()?;
        self.find_path(target)
    }

    /// The `reg` entries of node `i` as `(address, size)` in its parent's
    /// address space (untranslated).
    pub(crate) fn raw_reg(&self, i: usize) -> Result<Vec<(u64, u64)>, DtError> {
        let parent = self.parent(i).unwrap_or(ROOT);
        let (ac, sc) = self.cells(parent);
        let unsupported = || DtError::UnsupportedCells {
            node: self.path(i),
            address_cells: ac,
            size_cells: sc,
        };
        if !(1..=2).contains(&ac) || sc > 2 {
            return Err(unsupported());
        }
        let value = self
            .prop(i, "reg")
            .ok_or_else(|| DtError::MissingProperty {
                node: self.path(i),
                property: "reg",
            })?;
        let entry = 4 * (ac + sc) as usize;
        if value.is_empty() || value.len() % entry != 0 {
            return Err(self.bad(i, "reg", "is not a whole number of (address, size) entries"));
        }
        Ok(value
            .chunks_exact(entry)
            .map(|e| (read_cells(e, 0, ac), read_cells(e, ac as usize * 4, sc)))
            .collect())
    }

    /// The `reg` entries of node `i` translated to CPU physical addresses
    /// through the `ranges` of every ancestor bus, leaving out empty ones
    /// (memory and reserved regions: an entry of size 0 describes nothing).
    pub(crate) fn reg(&self, i: usize) -> Result<Vec<MemRange>, DtError> {
        self.reg_entries(i, false)
    }

    /// [`Tree::reg`] for a device whose entries are told apart by their
    /// position (a GIC's distributor, redistributors, CPU interface...): an
    /// empty entry is an error rather than left out.
    pub(crate) fn device_reg(&self, i: usize) -> Result<Vec<MemRange>, DtError> {
        self.reg_entries(i, true)
    }

    fn reg_entries(&self, i: usize, device: bool) -> Result<Vec<MemRange>, DtError> {
        let mut out = Vec::new();
        for (address, size) in self.raw_reg(i)? {
            if size == 0 {
                if device {
                    return Err(self.bad(i, "reg", "has an empty entry"));
                }
                continue;
            }
            let base = self.translate(i, address, size)?;
            let region = MemRange::new(base, size).ok_or_else(|| DtError::RegionOverflow {
                node: self.path(i),
                base,
                size,
            })?;
            out.push(region);
        }
        Ok(out)
    }

    /// Maps `[address, address + size)` of node `i`'s parent bus to the root's
    /// address space.
    fn translate(&self, i: usize, address: u64, size: u64) -> Result<u64, DtError> {
        let untranslatable = |address, reason| DtError::Untranslatable {
            node: self.path(i),
            address,
            reason,
        };
        let mut address = address;
        let mut bus = self.parent(i).unwrap_or(ROOT);
        while let Some(up) = self.parent(bus) {
            let Some(ranges) = self.prop(bus, "ranges") else {
                return Err(untranslatable(address, "a parent bus has no `ranges`"));
            };
            if !ranges.is_empty() {
                let (child_ac, child_sc) = self.cells(bus);
                let (parent_ac, _) = self.cells(up);
                if !(1..=2).contains(&child_ac)
                    || !(1..=2).contains(&parent_ac)
                    || !(1..=2).contains(&child_sc)
                {
                    return Err(untranslatable(
                        address,
                        "a parent bus's `ranges` has unsupported cell sizes",
                    ));
                }
                let entry = 4 * (child_ac + parent_ac + child_sc) as usize;
                if ranges.len() % entry != 0 {
                    return Err(self.bad(bus, "ranges", "is not a whole number of entries"));
                }
                let mapped = ranges.chunks_exact(entry).find_map(|e| {
                    let child = read_cells(e, 0, child_ac);
                    let parent = read_cells(e, child_ac as usize * 4, parent_ac);
                    let len = read_cells(e, (child_ac + parent_ac) as usize * 4, child_sc);
                    let offset = address.checked_sub(child)?;
                    if offset.checked_add(size)? > len {
                        return None;
                    }
                    parent.checked_add(offset)
                });
                address = mapped.ok_or_else(|| {
                    untranslatable(address, "no entry of a parent bus's `ranges` covers it")
                })?;
            }
            bus = up;
        }
        Ok(address)
    }
}

/// `cells` big-endian cells at byte `at` of `bytes` as one number (at most 2
/// cells; missing bytes read as zero, which callers rule out by length).
pub(crate) fn read_cells(bytes: &[u8], at: usize, cells: u32) -> u64 {
    (0..cells as usize).fold(0u64, |acc, k| {
        (acc << 32) | u64::from(be32(bytes, at + 4 * k).unwrap_or(0))
    })
}

/// A string property's bytes without the NUL terminator, `None` if the value
/// is not exactly one NUL-terminated string.
pub(crate) fn string_value(v: &[u8]) -> Option<&[u8]> {
    let (last, s) = v.split_last()?;
    (*last == 0 && !s.contains(&0)).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_values() {
        assert_eq!(string_value(b"psci\0"), Some(&b"psci"[..]));
        assert_eq!(string_value(b"\0"), Some(&b""[..]));
        assert_eq!(string_value(b"psci"), None);
        assert_eq!(string_value(b"a\0b\0"), None);
        assert_eq!(string_value(b""), None);
    }

    #[test]
    fn read_cells_combines_big_endian() {
        assert_eq!(read_cells(&[0, 0, 0, 1, 0, 0, 0, 2], 0, 2), 0x1_0000_0002);
        assert_eq!(read_cells(&[0, 0, 0, 1, 0, 0, 0, 2], 4, 1), 2);
        assert_eq!(read_cells(&[], 0, 0), 0);
    }
}
