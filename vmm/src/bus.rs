//! The MMIO bus: which device answers a guest access that exits to the VMM.

use crate::layout::Gpa;
use std::fmt;
use std::sync::{Arc, Mutex};

/// A device with a register window. Offsets are from the window's base;
/// `data` is the access, 1 to 8 bytes, little-endian.
pub trait MmioDevice: Send {
    /// A guest read: fill `data`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// A guest write of `data`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device shared between vCPU threads (and the console input thread).
pub type SharedDevice = Arc<Mutex<dyn MmioDevice>>;

struct Window {
    base: u64,
    size: u64,
    name: &'static str,
    device: SharedDevice,
}

/// Windows overlap or are empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlapError {
    /// The device that did not fit.
    pub name: &'static str,
    /// Its window.
    pub base: Gpa,
}

impl fmt::Display for OverlapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the MMIO window of {} at {} overlaps another or is empty",
            self.name, self.base
        )
    }
}

impl std::error::Error for OverlapError {}

/// The devices by address.
#[derive(Default)]
pub struct MmioBus {
    windows: Vec<Window>,
}

/// What the bus did with an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A device handled it.
    Device(&'static str),
    /// No device there: reads as zero, writes ignored.
    Unclaimed,
}

impl MmioBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `device` at `base..base + size`.
    pub fn insert(
        &mut self,
        name: &'static str,
        base: Gpa,
        size: u64,
        device: SharedDevice,
    ) -> Result<(), OverlapError> {
        let err = OverlapError { name, base };
        let end = base.0.checked_add(size).ok_or(err.clone())?;
        if size == 0
            || self
                .windows
                .iter()
                .any(|w| base.0 < w.base + w.size && w.base < end)
        {
            return Err(err);
        }
        self.windows.push(Window {
            base: base.0,
            size,
            name,
            device,
        });
        Ok(())
    }

    fn find(&self, addr: u64, len: usize) -> Option<(&Window, u64)> {
        self.windows.iter().find_map(|w| {
            let off = addr.checked_sub(w.base)?;
            (off < w.size && off + len as u64 <= w.size).then_some((w, off))
        })
    }

    /// A guest read of `data.len()` bytes at `addr`.
    pub fn read(&self, addr: Gpa, data: &mut [u8]) -> Access {
        match self.find(addr.0, data.len()) {
            Some((w, off)) => {
                match w.device.lock() {
                    Ok(mut d) => d.read(off, data),
                    Err(p) => p.into_inner().read(off, data),
                }
                Access::Device(w.name)
            }
            None => {
                data.fill(0);
                Access::Unclaimed
            }
        }
    }

    /// A guest write of `data` at `addr`.
    pub fn write(&self, addr: Gpa, data: &[u8]) -> Access {
        match self.find(addr.0, data.len()) {
            Some((w, off)) => {
                match w.device.lock() {
                    Ok(mut d) => d.write(off, data),
                    Err(p) => p.into_inner().write(off, data),
                }
                Access::Device(w.name)
            }
            None => Access::Unclaimed,
        }
    }
}

/// Reads a little-endian access of up to 8 bytes as a number.
pub fn le_value(data: &[u8]) -> u64 {
    let mut v = [0u8; 8];
    let n = data.len().min(8);
    v[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(v)
}

/// Fills an access of up to 8 bytes with `value`, little-endian, truncated.
pub fn put_le(data: &mut [u8], value: u64) {
    let v = value.to_le_bytes();
    let n = data.len().min(8);
    data[..n].copy_from_slice(&v[..n]);
    data[n..].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records writes; reads return the offset.
    #[derive(Default)]
    struct Probe {
        writes: Vec<(u64, Vec<u8>)>,
    }

    impl MmioDevice for Probe {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            put_le(data, offset);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.writes.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn dispatch_by_window() {
        let a = Arc::new(Mutex::new(Probe::default()));
        let mut bus = MmioBus::new();
        bus.insert("a", Gpa(0x1000), 0x100, a.clone()).unwrap();
        bus.insert(
            "b",
            Gpa(0x2000),
            0x100,
            Arc::new(Mutex::new(Probe::default())),
        )
        .unwrap();
        let mut d = [0xffu8; 4];
        assert_eq!(bus.read(Gpa(0x1010), &mut d), Access::Device("a"));
        assert_eq!(le_value(&d), 0x10);
        assert_eq!(bus.write(Gpa(0x10fc), &[1, 2, 3, 4]), Access::Device("a"));
        assert_eq!(a.lock().unwrap().writes, vec![(0xfc, vec![1, 2, 3, 4])]);
        // Across the end of the window, or outside any: unclaimed, RAZ/WI.
        assert_eq!(bus.read(Gpa(0x10fe), &mut d), Access::Unclaimed);
        assert_eq!(d, [0; 4]);
        assert_eq!(bus.write(Gpa(0x3000), &[1]), Access::Unclaimed);
        assert_eq!(bus.read(Gpa(0x2000), &mut d), Access::Device("b"));
    }

    #[test]
    fn overlaps_are_refused() {
        let mut bus = MmioBus::new();
        let dev = || -> SharedDevice { Arc::new(Mutex::new(Probe::default())) };
        bus.insert("a", Gpa(0x1000), 0x100, dev()).unwrap();
        assert!(bus.insert("b", Gpa(0x10ff), 0x10, dev()).is_err());
        assert!(bus.insert("c", Gpa(0xf01), 0x100, dev()).is_err());
        assert!(bus.insert("d", Gpa(0x2000), 0, dev()).is_err());
        assert!(bus.insert("e", Gpa(u64::MAX), 2, dev()).is_err());
        assert!(bus.insert("f", Gpa(0x1100), 0x100, dev()).is_ok());
    }

    #[test]
    fn little_endian_helpers() {
        assert_eq!(le_value(&[0x78, 0x56, 0x34, 0x12]), 0x1234_5678);
        let mut d = [0u8; 2];
        put_le(&mut d, 0x1234_5678);
        assert_eq!(d, [0x78, 0x56]);
    }
}
