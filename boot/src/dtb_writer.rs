//! A minimal flattened-devicetree writer (version 17), shared by
//! [`crate::kserv_dt`] (the tree KServ boots with) and the EFI loader's
//! ACPI translation (`firmware/acpi2dt`, the tree KCore boots with).
//!
//! It is written here rather than taken from `vm-fdt`, whose writer refuses
//! node names that real firmware trees contain (`__symbols__`,
//! `__overrides__` on the Raspberry Pi). It checks nothing about the tree's
//! meaning: callers open and close nodes in order and the result is read back
//! through [`crate::platform::parse`] in their tests.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use crate::platform::DtError;
use crate::platform::dtb::{FDT_HEADER_SIZE, FDT_VERSION};

/// A minimal flattened-devicetree writer (version 17): structure block,
/// strings block with each name stored once, memory reservation block.
#[derive(Default)]
pub struct DtbWriter {
    structure: Vec<u8>,
    strings: Vec<u8>,
    string_offsets: BTreeMap<String, u32>,
}

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_END: u32 = 9;
/// `last_comp_version` of the trees written: readers of version 16 can read them.
const FDT_LAST_COMP_VERSION: u32 = 16;

impl DtbWriter {
    fn token(&mut self, t: u32) {
        self.structure.extend_from_slice(&t.to_be_bytes());
    }

    fn pad(&mut self) {
        while !self.structure.len().is_multiple_of(4) {
            self.structure.push(0);
        }
    }

    /// Opens a node named `name` (`""` for the root).
    pub fn begin_node(&mut self, name: &str) {
        self.token(FDT_BEGIN_NODE);
        self.structure.extend_from_slice(name.as_bytes());
        self.structure.push(0);
        self.pad();
    }

    /// Closes the innermost open node.
    pub fn end_node(&mut self) {
        self.token(FDT_END_NODE);
    }

    /// Adds property `name` with the raw `value` to the open node.
    pub fn prop(&mut self, name: &str, value: &[u8]) -> Result<(), DtError> {
        let nameoff = match self.string_offsets.get(name) {
            Some(&off) => off,
            None => {
                let off = u32::try_from(self.strings.len()).map_err(|_| DtError::TooLarge)?;
                self.strings.extend_from_slice(name.as_bytes());
                self.strings.push(0);
                self.string_offsets.insert(String::from(name), off);
                off
            }
        };
        let len = u32::try_from(value.len()).map_err(|_| DtError::TooLarge)?;
        self.token(FDT_PROP);
        self.token(len);
        self.token(nameoff);
        self.structure.extend_from_slice(value);
        self.pad();
        Ok(())
    }

    /// The blob: header, memory reservations, structure, strings.
    pub fn finish(
        mut self,
        reservations: &[(u64, u64)],
        boot_cpuid_phys: u32,
    ) -> Result<Vec<u8>, DtError> {
        self.token(FDT_END);
        let too_large = |_| DtError::TooLarge;
        let off_rsvmap = FDT_HEADER_SIZE;
        let rsvmap_len = reservations
            .len()
            .checked_add(1)
            .and_then(|n| n.checked_mul(16))
            .ok_or(DtError::TooLarge)?;
        let off_struct = off_rsvmap + rsvmap_len;
        let off_strings = off_struct
            .checked_add(self.structure.len())
            .ok_or(DtError::TooLarge)?;
        let total = off_strings
            .checked_add(self.strings.len())
            .ok_or(DtError::TooLarge)?;
        let header = [
            FDT_MAGIC,
            u32::try_from(total).map_err(too_large)?,
            u32::try_from(off_struct).map_err(too_large)?,
            u32::try_from(off_strings).map_err(too_large)?,
            off_rsvmap as u32,
            FDT_VERSION,
            FDT_LAST_COMP_VERSION,
            boot_cpuid_phys,
            u32::try_from(self.strings.len()).map_err(too_large)?,
            u32::try_from(self.structure.len()).map_err(too_large)?,
        ];
        let mut out = Vec::with_capacity(total);
        for word in header {
            out.extend_from_slice(&word.to_be_bytes());
        }
        for &(address, size) in reservations.iter().chain(&[(0, 0)]) {
            out.extend_from_slice(&address.to_be_bytes());
            out.extend_from_slice(&size.to_be_bytes());
        }
        out.extend_from_slice(&self.structure);
        out.extend_from_slice(&self.strings);
        Ok(out)
    }
}
