//! The Arm PrimeCell UART (PL011), transmit side only (Arm DDI 0183).
//!
//! KCore shares the console UART with KServ: it never reprograms baud rate
//! or line control (the firmware or loader did), it only waits for room in
//! the FIFO and writes bytes.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_bitfields! [u32,
    /// Flag register (UARTFR).
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// UART busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) []
    ]
];

/// The PL011 register block (only the registers KCore touches).
#[repr(C)]
pub struct Registers {
    /// 0x000 UARTDR: data.
    dr: ReadWrite<u32>,
    _reserved: [u32; 5],
    /// 0x018 UARTFR: flags.
    fr: ReadOnly<u32, FR::Register>,
}

/// A PL011 at a fixed, mapped address.
pub struct Pl011 {
    regs: *const Registers,
}

// SAFETY: the UART is a device register block; every access is a single
// volatile read or write, and the one `Pl011` instance is used under the
// logger's lock.
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// # Safety
    /// `base` must be the physical (= EL2 virtual, identity-mapped) address of
    /// a PL011 register block that stays mapped as device memory.
    pub const unsafe fn new(base: usize) -> Self {
        Pl011 {
            regs: base as *const Registers,
        }
    }

    fn regs(&self) -> &Registers {
        // SAFETY: `new`'s contract: `regs` points at a mapped PL011 block.
        unsafe { &*self.regs }
    }

    /// Writes one byte, waiting for FIFO space (bounded: a stuck UART drops
    /// the byte rather than hanging KCore).
    pub fn put(&self, b: u8) {
        let r = self.regs();
        for _ in 0..1_000_000 {
            if !r.fr.is_set(FR::TXFF) {
                r.dr.set(b as u32);
                return;
            }
            core::hint::spin_loop();
        }
    }
}

impl core::fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}
