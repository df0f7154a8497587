//! The RAM banks of KCore's tree and the UEFI page size.
//!
//! How the map becomes banks and reserved ranges is `kcore_acpi::banks`
//! (Linux's `reserve_regions`), shared by both modes of `kcore.efi`: every
//! write-back descriptor except MMIO is RAM, and what the firmware keeps after
//! `ExitBootServices` (runtime services code and data, ACPI tables and NVS,
//! reserved and unusable memory) is reserved, so KCore never places its
//! pool there (`boot/src/pool.rs`) and KServ's kernel never allocates it.
//! The memory holding `kcore.img` is loader data, usable RAM inside a bank,
//! as KCore expects (it reserves its own image and pool from KServ).

/// The UEFI page size.
pub const EFI_PAGE: u64 = 4096;

/// A range of RAM, `[base, end)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bank {
    /// First byte.
    pub base: u64,
    /// One past the last byte.
    pub end: u64,
}

impl Bank {
    /// Bytes in the bank.
    pub fn size(&self) -> u64 {
        self.end.saturating_sub(self.base)
    }
}
