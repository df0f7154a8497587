//! Helpers shared by the `kcore-boot` host tests: fixtures, a small
//! deterministic random generator, a structure-block walker for surgical edits
//! of blobs, and a flattened view of a tree for comparisons.
#![allow(dead_code, clippy::unwrap_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::path::PathBuf;

pub const QEMU_FIXTURES: [&str; 3] = [
    "qemu-virt-gicv3-a72.dtb",
    "qemu-virt-gicv2-a72.dtb",
    "qemu-virt-gicv3-max.dtb",
];
pub const ALL_FIXTURES: [&str; 5] = [
    "qemu-virt-gicv3-a72.dtb",
    "qemu-virt-gicv2-a72.dtb",
    "qemu-virt-gicv3-max.dtb",
    "pi4-like.dtb",
    "server-like.dtb",
];

pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// xorshift64*: deterministic, so a failure reproduces.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

pub fn set_be32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Header field offsets.
pub const TOTALSIZE: usize = 4;
pub const OFF_DT_STRUCT: usize = 8;
pub const OFF_DT_STRINGS: usize = 12;
pub const OFF_MEM_RSVMAP: usize = 16;
pub const VERSION: usize = 20;
pub const SIZE_DT_STRINGS: usize = 32;
pub const SIZE_DT_STRUCT: usize = 36;

/// One token of a structure block: absolute offset in the blob, token,
/// node or property name, absolute offset of the next token.
#[derive(Debug, Clone)]
pub struct Token {
    pub at: usize,
    pub kind: u32,
    pub name: String,
    pub next: usize,
}

/// Every token of a well-formed blob, with node paths tracked for names.
pub fn tokens(blob: &[u8]) -> Vec<Token> {
    let off_struct = be32(blob, OFF_DT_STRUCT) as usize;
    let off_strings = be32(blob, OFF_DT_STRINGS) as usize;
    let mut out = Vec::new();
    let mut pos = off_struct;
    loop {
        let kind = be32(blob, pos);
        let (name, next) = match kind {
            1 => {
                let end = blob[pos + 4..].iter().position(|&b| b == 0).unwrap();
                let name = String::from_utf8(blob[pos + 4..pos + 4 + end].to_vec()).unwrap();
                (name, (pos + 4 + end + 1 + 3) & !3)
            }
            3 => {
                let len = be32(blob, pos + 4) as usize;
                let nameoff = be32(blob, pos + 8) as usize;
                let s = &blob[off_strings + nameoff..];
                let end = s.iter().position(|&b| b == 0).unwrap();
                (
                    String::from_utf8(s[..end].to_vec()).unwrap(),
                    (pos + 12 + len + 3) & !3,
                )
            }
            2 | 4 => (String::new(), pos + 4),
            9 => {
                out.push(Token {
                    at: pos,
                    kind,
                    name: String::new(),
                    next: pos + 4,
                });
                return out;
            }
            t => panic!("token {t} at {pos:#x}"),
        };
        out.push(Token {
            at: pos,
            kind,
            name,
            next,
        });
        pos = next;
    }
}

/// Absolute offset of property `prop` of node `path` (e.g. "/psci").
pub fn find_prop(blob: &[u8], path: &str, prop: &str) -> Token {
    let mut stack: Vec<String> = Vec::new();
    for t in tokens(blob) {
        match t.kind {
            1 => stack.push(t.name.clone()),
            2 => {
                stack.pop();
            }
            3 if t.name == prop && join(&stack) == path => return t,
            _ => {}
        }
    }
    panic!("{path}:{prop} not found")
}

/// The `[begin, end)` byte range of node `path`'s BEGIN_NODE..END_NODE.
pub fn find_node(blob: &[u8], path: &str) -> (usize, usize) {
    let mut stack: Vec<(String, usize)> = Vec::new();
    for t in tokens(blob) {
        match t.kind {
            1 => stack.push((t.name.clone(), t.at)),
            2 => {
                let names: Vec<String> = stack.iter().map(|(n, _)| n.clone()).collect();
                let (_, begin) = stack.pop().unwrap();
                if join(&names) == path {
                    return (begin, t.next);
                }
            }
            _ => {}
        }
    }
    panic!("{path} not found")
}

fn join(stack: &[String]) -> String {
    let parts: Vec<&str> = stack.iter().skip(1).map(String::as_str).collect();
    format!("/{}", parts.join("/"))
}

/// Overwrites `[from, to)` with FDT_NOP tokens, as libfdt's `fdt_nop_*` do.
pub fn nop_out(blob: &mut [u8], from: usize, to: usize) {
    for at in (from..to).step_by(4) {
        set_be32(blob, at, 4);
    }
}

/// A node's properties `(name, value)` in document order.
pub type Props = Vec<(String, Vec<u8>)>;

/// A tree as `path -> properties` in document order, plus the memory
/// reservations and `boot_cpuid_phys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flat {
    pub nodes: Vec<(String, Props)>,
    pub reservations: Vec<(u64, u64)>,
    pub boot_cpuid_phys: u32,
}

impl Flat {
    pub fn node(&self, path: &str) -> Option<&Props> {
        self.nodes.iter().find(|(p, _)| p == path).map(|(_, v)| v)
    }
    pub fn prop(&self, path: &str, name: &str) -> Option<&[u8]> {
        self.node(path)?
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
    pub fn paths(&self) -> Vec<&str> {
        self.nodes.iter().map(|(p, _)| p.as_str()).collect()
    }
    /// Properties of a node as a sorted map (order is not meaningful).
    pub fn props_map(&self, path: &str) -> BTreeMap<String, Vec<u8>> {
        self.node(path).into_iter().flatten().cloned().collect()
    }
}

/// Flattens a well-formed blob with the `fdt` crate (independently of the
/// code under test).
pub fn flatten(blob: &[u8]) -> Flat {
    let fdt = fdt::Fdt::new(blob).unwrap();
    let mut nodes = Vec::new();
    let root = fdt.find_node("/").unwrap();
    walk(root, String::new(), &mut nodes);
    let reservations = fdt
        .memory_reservations()
        .map(|r| (r.address() as u64, r.size() as u64))
        .collect();
    Flat {
        nodes,
        reservations,
        boot_cpuid_phys: be32(blob, 28),
    }
}

fn walk(node: fdt::node::FdtNode<'_, '_>, path: String, out: &mut Vec<(String, Props)>) {
    let shown = if path.is_empty() {
        "/".to_string()
    } else {
        path.clone()
    };
    let props = node
        .properties()
        .map(|p| (p.name.to_string(), p.value.to_vec()))
        .collect();
    out.push((shown, props));
    for c in node.children() {
        walk(c, format!("{path}/{}", c.name), out);
    }
}

/// A string property's value.
pub fn s(v: &str) -> Vec<u8> {
    let mut b = v.as_bytes().to_vec();
    b.push(0);
    b
}

/// Runs `dtc -I dtb -O dts` on `blob`; `None` if `dtc` is not installed.
pub fn dtc_accepts(blob: &[u8]) -> Option<Result<(), String>> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = match Command::new("dtc")
        .args(["-q", "-I", "dtb", "-O", "dts", "-o", "/dev/null", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(_) => return None,
    };
    child.stdin.take().unwrap().write_all(blob).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Some(Ok(()))
    } else {
        Some(Err(String::from_utf8_lossy(&out.stderr).into_owned()))
    }
}

/// Builds a tree with `vm-fdt` (an independent writer) for synthetic cases.
pub fn synth(f: impl FnOnce(&mut vm_fdt::FdtWriter)) -> Vec<u8> {
    let mut w = vm_fdt::FdtWriter::new().unwrap();
    f(&mut w);
    w.finish().unwrap()
}
