//! The BCM2835/BCM2711 auxiliary "mini UART" (`brcm,bcm2835-aux-uart`),
//! transmit side only, polled: the Raspberry Pi 4's console
//! (`stdout-path = "serial1"` in its upstream device tree).
//!
//! The device tree's `reg` is the UART's own block inside the AUX
//! peripheral (AUX + 0x40): `AUX_MU_IO` at +0x00 and `AUX_MU_LSR` at +0x14,
//! whose bit 5 says the transmitter can take a byte ([`super::uart::Uart`]
//! polls it). KCore never touches the baud rate: the firmware set it from
//! the core clock with `enable_uart=1`.

use super::uart::{TxRegs, Uart};
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_bitfields! [u32,
    /// Line status register (AUX_MU_LSR).
    LSR [
        /// The transmit FIFO can accept at least one byte.
        TX_EMPTY OFFSET(5) NUMBITS(1) []
    ]
];

/// The mini UART's registers KCore touches, from its `reg` base.
#[repr(C)]
pub struct Registers {
    /// +0x00 AUX_MU_IO: data.
    io: ReadWrite<u32>,
    _reserved: [u32; 4],
    /// +0x14 AUX_MU_LSR: line status.
    lsr: ReadOnly<u32, LSR::Register>,
}

impl TxRegs for Registers {
    fn ready(&self) -> bool {
        self.lsr.is_set(LSR::TX_EMPTY)
    }
    fn write(&self, b: u8) {
        self.io.set(b as u32);
    }
}

/// A mini UART at a fixed, mapped address (its translated `reg`).
pub type MiniUart = Uart<Registers>;
