//! Transmit-only, polled UARTs: what KCore's console needs from a UART
//! whatever its model. A model gives its register block ([`TxRegs`]: can
//! it take a byte, write one); [`Uart`] adds the bounded wait and `\r\n`.
//! KCore shares the console with KServ: it never reprograms baud rate or
//! line control (the firmware or loader did).

use core::marker::PhantomData;

/// A UART model's transmit registers.
pub trait TxRegs {
    /// Whether the transmitter can take a byte now.
    fn ready(&self) -> bool;
    /// Writes one byte.
    fn write(&self, b: u8);
}

/// A UART of model `R` at a fixed, mapped address.
pub struct Uart<R> {
    regs: *const R,
    _model: PhantomData<R>,
}

// SAFETY: the UART is a device register block; every access is a single
// volatile read or write, and the one instance is used under the logger's
// lock.
unsafe impl<R> Send for Uart<R> {}

impl<R: TxRegs> Uart<R> {
    /// # Safety
    /// `base` must be the physical (= EL2 virtual, identity-mapped) address
    /// of a register block of model `R` that stays mapped as device memory.
    pub const unsafe fn new(base: usize) -> Self {
        Uart {
            regs: base as *const R,
            _model: PhantomData,
        }
    }

    fn regs(&self) -> &R {
        // SAFETY: `new`'s contract: `regs` points at a mapped block.
        unsafe { &*self.regs }
    }

    /// Writes one byte, waiting for room (bounded: a stuck UART drops the
    /// byte rather than hanging KCore).
    pub fn put(&self, b: u8) {
        let r = self.regs();
        for _ in 0..1_000_000 {
            if r.ready() {
                r.write(b);
                return;
            }
            core::hint::spin_loop();
        }
    }
}

impl<R: TxRegs> core::fmt::Write for Uart<R> {
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
