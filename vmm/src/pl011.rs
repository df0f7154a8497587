//! An Arm PL011 UART (PrimeCell UART, Arm DDI 0183G), enough for Linux's
//! `amba-pl011` driver and its earlycon: the transmitter is infinitely fast
//! (every byte written goes straight to the output), the receiver has the
//! 16-entry FIFO (1 entry with the FIFOs disabled) fed from the VMM's stdin.
//!
//! Interrupts (§3.4): RXRIS while the receive FIFO holds data (this model
//! has no receive timeout, so RX stands for both), TXRIS set by each write
//! to UARTDR (the FIFO drains at once, crossing its trigger level) and
//! cleared through UARTICR. The output line is `UARTRIS & UARTIMSC != 0`,
//! level-triggered. Baud rate, line control and DMA registers are stored
//! and read back but have no effect.

use crate::bus::{MmioDevice, le_value, put_le};
use crate::irq::{IrqLine, LevelIrq};
use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;

/// Register offsets (Arm DDI 0183G, table 3-1).
mod reg {
    pub const DR: u64 = 0x000;
    pub const RSR_ECR: u64 = 0x004;
    pub const FR: u64 = 0x018;
    pub const ILPR: u64 = 0x020;
    pub const IBRD: u64 = 0x024;
    pub const FBRD: u64 = 0x028;
    pub const LCR_H: u64 = 0x02c;
    pub const CR: u64 = 0x030;
    pub const IFLS: u64 = 0x034;
    pub const IMSC: u64 = 0x038;
    pub const RIS: u64 = 0x03c;
    pub const MIS: u64 = 0x040;
    pub const ICR: u64 = 0x044;
    pub const DMACR: u64 = 0x048;
    /// UARTPeriphID0..3 and UARTPCellID0..3.
    pub const ID_START: u64 = 0xfe0;
}

/// UARTFR bits (§3.3.3).
mod fr {
    /// Receive FIFO empty.
    pub const RXFE: u32 = 1 << 4;
    /// Receive FIFO full.
    pub const RXFF: u32 = 1 << 6;
    /// Transmit FIFO empty.
    pub const TXFE: u32 = 1 << 7;
}

/// Interrupt bits of UARTIMSC/RIS/MIS/ICR (§3.3.12).
pub mod int {
    /// Receive.
    pub const RX: u32 = 1 << 4;
    /// Transmit.
    pub const TX: u32 = 1 << 5;
    /// Receive timeout.
    pub const RT: u32 = 1 << 6;
    /// Every interrupt bit.
    pub const ALL: u32 = 0x7ff;
}

/// UARTLCR_H.FEN: FIFOs enabled.
const LCR_H_FEN: u32 = 1 << 4;
/// UARTCR after reset: TXE and RXE set.
const CR_RESET: u32 = 0x300;
/// UARTIFLS after reset: both trigger levels at half full.
const IFLS_RESET: u32 = 0x12;
/// Receive FIFO depth.
const FIFO_DEPTH: usize = 16;
/// UARTPeriphID0..3 (part 0x011, designer Arm, revision r1p5) and
/// UARTPCellID0..3, as Linux's AMBA bus reads them to bind the driver.
const IDS: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// The UART.
pub struct Pl011 {
    out: Box<dyn Write + Send>,
    irq: LevelIrq,
    rx: VecDeque<u8>,
    /// Bytes that did not fit the receive FIFO, delivered as it drains.
    backlog: VecDeque<u8>,
    ris: u32,
    imsc: u32,
    cr: u32,
    lcr_h: u32,
    ifls: u32,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    dmacr: u32,
}

impl Pl011 {
    /// A UART after reset, writing to `out`, interrupting on `irq`.
    pub fn new(out: Box<dyn Write + Send>, irq: Arc<dyn IrqLine>) -> Self {
        Pl011 {
            out,
            irq: LevelIrq::new(irq),
            rx: VecDeque::new(),
            backlog: VecDeque::new(),
            ris: 0,
            imsc: 0,
            cr: CR_RESET,
            lcr_h: 0,
            ifls: IFLS_RESET,
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            dmacr: 0,
        }
    }

    fn fifo_depth(&self) -> usize {
        if self.lcr_h & LCR_H_FEN != 0 {
            FIFO_DEPTH
        } else {
            1
        }
    }

    /// Moves backlog into the FIFO as far as it has room.
    fn refill(&mut self) {
        while self.rx.len() < self.fifo_depth() {
            match self.backlog.pop_front() {
                Some(b) => self.rx.push_back(b),
                None => break,
            }
        }
    }

    fn update(&mut self) {
        if self.rx.is_empty() {
            self.ris &= !int::RX;
        } else {
            self.ris |= int::RX;
        }
        self.irq.update(self.ris & self.imsc != 0);
    }

    /// Input from the console: queued behind what is already waiting.
    pub fn push_input(&mut self, bytes: &[u8]) {
        self.backlog.extend(bytes);
        self.refill();
        self.update();
    }

    fn flags(&self) -> u32 {
        let mut f = fr::TXFE;
        if self.rx.is_empty() {
            f |= fr::RXFE;
        }
        if self.rx.len() >= self.fifo_depth() {
            f |= fr::RXFF;
        }
        f
    }

    fn read_reg(&mut self, offset: u64) -> u32 {
        match offset {
            reg::DR => {
                let b = self.rx.pop_front().map_or(0, u32::from);
                self.refill();
                self.update();
                b
            }
            reg::RSR_ECR => 0,
            reg::FR => self.flags(),
            reg::ILPR => self.ilpr,
            reg::IBRD => self.ibrd,
            reg::FBRD => self.fbrd,
            reg::LCR_H => self.lcr_h,
            reg::CR => self.cr,
            reg::IFLS => self.ifls,
            reg::IMSC => self.imsc,
            reg::RIS => self.ris,
            reg::MIS => self.ris & self.imsc,
            reg::DMACR => self.dmacr,
            o if (reg::ID_START..reg::ID_START + 0x20).contains(&o) && o % 4 == 0 => {
                u32::from(IDS[((o - reg::ID_START) / 4) as usize])
            }
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, value: u32) {
        match offset {
            reg::DR => {
                // A console that went away must not stop the guest.
                let _ = self.out.write_all(&[value as u8]);
                let _ = self.out.flush();
                self.ris |= int::TX;
            }
            reg::ILPR => self.ilpr = value & 0xff,
            reg::IBRD => self.ibrd = value & 0xffff,
            reg::FBRD => self.fbrd = value & 0x3f,
            reg::LCR_H => {
                self.lcr_h = value & 0xff;
                // Switching the FIFOs flushes them; keep the input (move it
                // back to the backlog) so no keystroke is lost.
                while let Some(b) = self.rx.pop_back() {
                    self.backlog.push_front(b);
                }
                self.refill();
            }
            reg::CR => self.cr = value & 0xffff,
            reg::IFLS => self.ifls = value & 0x3f,
            reg::IMSC => self.imsc = value & int::ALL,
            reg::ICR => self.ris &= !(value & int::ALL),
            reg::DMACR => self.dmacr = value & 0x7,
            _ => {}
        }
        self.update();
    }
}

impl MmioDevice for Pl011 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = self.read_reg(offset);
        put_le(data, u64::from(v));
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        self.write_reg(offset, le_value(data) as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::LevelRecorder;
    use std::sync::Mutex;

    /// Output shared with the test.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn uart() -> (Pl011, Sink, Arc<LevelRecorder>) {
        let sink = Sink::default();
        let irq = Arc::new(LevelRecorder::default());
        (Pl011::new(Box::new(sink.clone()), irq.clone()), sink, irq)
    }

    fn rd(u: &mut Pl011, off: u64) -> u32 {
        let mut d = [0u8; 4];
        u.read(off, &mut d);
        u32::from_le_bytes(d)
    }

    fn wr(u: &mut Pl011, off: u64, v: u32) {
        u.write(off, &v.to_le_bytes());
    }

    #[test]
    fn primecell_ids_bind_the_linux_driver() {
        let (mut u, _, _) = uart();
        let ids: Vec<u32> = (0..8).map(|i| rd(&mut u, 0xfe0 + 4 * i)).collect();
        // AMBA id 0x00041011 (PL011), cell id 0xb105f00d.
        assert_eq!(ids, [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
    }

    #[test]
    fn transmit_goes_out_at_once() {
        let (mut u, sink, irq) = uart();
        assert_eq!(
            rd(&mut u, reg::FR) & (fr::TXFE | fr::RXFE),
            fr::TXFE | fr::RXFE
        );
        for b in b"hi\n" {
            u.write(reg::DR, &[*b]);
        }
        assert_eq!(*sink.0.lock().unwrap(), b"hi\n");
        // TX raised but masked: the line stays low.
        assert_eq!(rd(&mut u, reg::RIS) & int::TX, int::TX);
        assert!(!irq.level());
        // Unmasking raises the line, ICR lowers it until the next write.
        wr(&mut u, reg::IMSC, int::TX);
        assert!(irq.level());
        assert_eq!(rd(&mut u, reg::MIS), int::TX);
        wr(&mut u, reg::ICR, int::TX);
        assert!(!irq.level());
        wr(&mut u, reg::DR, u32::from(b'x'));
        assert!(irq.level());
    }

    #[test]
    fn receive_fifo_and_interrupt() {
        let (mut u, _, irq) = uart();
        wr(&mut u, reg::IMSC, int::RX | int::RT);
        // FIFOs off: one byte at a time, the rest waits.
        u.push_input(b"ab");
        assert!(irq.level());
        assert_eq!(rd(&mut u, reg::FR) & (fr::RXFE | fr::RXFF), fr::RXFF);
        assert_eq!(rd(&mut u, reg::DR), u32::from(b'a'));
        assert!(irq.level());
        assert_eq!(rd(&mut u, reg::DR), u32::from(b'b'));
        assert!(!irq.level());
        assert_ne!(rd(&mut u, reg::FR) & fr::RXFE, 0);
        // Reading an empty FIFO gives 0.
        assert_eq!(rd(&mut u, reg::DR), 0);
        // FIFOs on: 16 entries.
        wr(&mut u, reg::LCR_H, LCR_H_FEN | 0x60);
        u.push_input(&[b'z'; 20]);
        assert_eq!(u.rx.len(), 16);
        assert_ne!(rd(&mut u, reg::FR) & fr::RXFF, 0);
        for _ in 0..20 {
            assert_eq!(rd(&mut u, reg::DR), u32::from(b'z'));
        }
        assert!(!irq.level());
        assert_eq!(irq.levels.lock().unwrap().iter().filter(|l| **l).count(), 2);
    }

    #[test]
    fn control_registers_read_back() {
        let (mut u, _, _) = uart();
        assert_eq!(rd(&mut u, reg::CR), CR_RESET);
        assert_eq!(rd(&mut u, reg::IFLS), IFLS_RESET);
        wr(&mut u, reg::IBRD, 0x1_0027);
        wr(&mut u, reg::FBRD, 0xff);
        wr(&mut u, reg::CR, 0x301);
        assert_eq!(rd(&mut u, reg::IBRD), 0x27);
        assert_eq!(rd(&mut u, reg::FBRD), 0x3f);
        assert_eq!(rd(&mut u, reg::CR), 0x301);
        // Unknown offsets read as zero and ignore writes.
        wr(&mut u, 0x800, 5);
        assert_eq!(rd(&mut u, 0x800), 0);
    }
}
