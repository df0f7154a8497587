//! How the shim finds KCore on an ACPI machine: there, KServ's device tree
//! is a stub holding only `/chosen` (a `/hypervisor` node would make Linux
//! turn ACPI off), Linux does not unflatten it, and the shim reads the
//! flattened tree Linux exposes at `/sys/firmware/fdt` instead:
//! [`chosen_abi_version`] finds `/chosen/kcore,abi-version` in it. The
//! version hypercall then confirms KCore is there.
//!
//! The blob comes from the kernel, which checked it at boot; this walk
//! still refuses anything malformed (out-of-bounds offsets, a missing
//! terminator) with `None` rather than trusting it.

use kcore_abi::dt::ABI_VERSION_PROP;

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// The NUL-terminated string at `at`, without the NUL.
fn c_str(b: &[u8], at: usize) -> Option<&[u8]> {
    let rest = b.get(at..)?;
    rest.get(..rest.iter().position(|&c| c == 0)?)
}

/// `/chosen/kcore,abi-version` (`major << 16 | minor`) of the flattened
/// device tree `fdt`, if it has one, as one 32-bit cell.
pub fn chosen_abi_version(fdt: &[u8]) -> Option<u32> {
    if be32(fdt, 0)? != FDT_MAGIC {
        return None;
    }
    let total = (be32(fdt, 4)? as usize).min(fdt.len());
    let fdt = fdt.get(..total)?;
    let structure = be32(fdt, 8)? as usize;
    let strings = be32(fdt, 12)? as usize;
    let mut at = structure;
    let mut depth = 0usize;
    let mut in_chosen = false;
    loop {
        let token = be32(fdt, at)?;
        at = at.checked_add(4)?;
        match token {
            FDT_BEGIN_NODE => {
                let name = c_str(fdt, at)?;
                at = at.checked_add(name.len() + 1)?.next_multiple_of(4);
                depth += 1;
                in_chosen = depth == 2 && name == b"chosen";
            }
            FDT_END_NODE => {
                depth = depth.checked_sub(1)?;
                in_chosen = false;
            }
            FDT_PROP => {
                let len = be32(fdt, at)? as usize;
                let name_off = be32(fdt, at + 4)? as usize;
                let value = at.checked_add(8)?;
                let name = c_str(fdt, strings.checked_add(name_off)?)?;
                if in_chosen && name == ABI_VERSION_PROP.as_bytes() && len == 4 {
                    return be32(fdt, value);
                }
                at = value.checked_add(len)?.next_multiple_of(4);
            }
            FDT_NOP => {}
            FDT_END => return None,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// A tree with `/chosen` (or `/<chosen_name>`) holding `props`, and a
    /// `/hypervisor`-less root with a property before it.
    fn tree(chosen_name: &str, props: &[(&str, &[u8])]) -> Vec<u8> {
        let mut strings = Vec::new();
        let mut s = Vec::new();
        let name_off = |n: &str, strings: &mut Vec<u8>| {
            let off = strings.len() as u32;
            strings.extend_from_slice(n.as_bytes());
            strings.push(0);
            off
        };
        let begin = |s: &mut Vec<u8>, name: &str| {
            s.extend_from_slice(&FDT_BEGIN_NODE.to_be_bytes());
            s.extend_from_slice(name.as_bytes());
            s.push(0);
            s.resize(s.len().next_multiple_of(4), 0);
        };
        let prop = |s: &mut Vec<u8>, off: u32, v: &[u8]| {
            s.extend_from_slice(&FDT_PROP.to_be_bytes());
            s.extend_from_slice(&(v.len() as u32).to_be_bytes());
            s.extend_from_slice(&off.to_be_bytes());
            s.extend_from_slice(v);
            s.resize(s.len().next_multiple_of(4), 0);
        };
        begin(&mut s, "");
        // The same property outside /chosen does not count.
        let off = name_off(ABI_VERSION_PROP, &mut strings);
        prop(&mut s, off, &7u32.to_be_bytes());
        s.extend_from_slice(&FDT_NOP.to_be_bytes());
        begin(&mut s, chosen_name);
        for (n, v) in props {
            let off = name_off(n, &mut strings);
            prop(&mut s, off, v);
        }
        s.extend_from_slice(&FDT_END_NODE.to_be_bytes());
        s.extend_from_slice(&FDT_END_NODE.to_be_bytes());
        s.extend_from_slice(&FDT_END.to_be_bytes());
        let structure = 40 + 16;
        let strings_at = structure + s.len();
        let total = strings_at + strings.len();
        let mut out = Vec::new();
        for v in [FDT_MAGIC, total as u32, structure as u32, strings_at as u32] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.resize(structure, 0);
        out.extend_from_slice(&s);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn finds_the_version_in_chosen_only() {
        let v = 0x000du32.to_be_bytes();
        let t = tree(
            "chosen",
            &[("bootargs", b"quiet\0"), (ABI_VERSION_PROP, &v)],
        );
        assert_eq!(chosen_abi_version(&t), Some(0xd));
        // Not in /chosen, the wrong size, or no such property: none.
        assert_eq!(
            chosen_abi_version(&tree("memory", &[(ABI_VERSION_PROP, &v)])),
            None
        );
        assert_eq!(
            chosen_abi_version(&tree("chosen", &[(ABI_VERSION_PROP, &v[..2])])),
            None
        );
        assert_eq!(
            chosen_abi_version(&tree("chosen", &[("bootargs", b"x\0")])),
            None
        );
    }

    #[test]
    fn malformed_blobs_give_none_and_never_panic() {
        let v = 0x000du32.to_be_bytes();
        let t = tree("chosen", &[(ABI_VERSION_PROP, &v)]);
        assert_eq!(chosen_abi_version(&[]), None);
        let mut bad = t.clone();
        bad[0] ^= 1;
        assert_eq!(chosen_abi_version(&bad), None);
        for cut in 0..t.len() {
            let _ = chosen_abi_version(&t[..cut]);
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..5000 {
            let mut m = t.clone();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let k = (seed as usize) % m.len();
                m[k] = (seed >> 32) as u8;
            }
            let _ = chosen_abi_version(&m);
        }
    }
}
