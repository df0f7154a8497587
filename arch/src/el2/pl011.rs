//! The Arm PrimeCell UART (PL011), transmit side only (Arm DDI 0183): the
//! registers [`super::uart::Uart`] polls and writes.

use super::uart::{TxRegs, Uart};
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

impl TxRegs for Registers {
    fn ready(&self) -> bool {
        !self.fr.is_set(FR::TXFF)
    }
    fn write(&self, b: u8) {
        self.dr.set(b as u32);
    }
}

/// A PL011 at a fixed, mapped address.
pub type Pl011 = Uart<Registers>;
