//! `--timestamps`: every line of the guest's console output prefixed with
//! `@<ticks> `, the host's virtual counter (`CNTVCT_EL0`) when the line's
//! first byte reached the VMM, counted from when the VMM started building
//! the VM. The VMM sees each console byte the moment the guest writes it (a
//! PL011 write is an exit), so the difference between two lines is the
//! guest's time between them, and a line's stamp is the time from the
//! VMM's start to it: what `cargo xtask bench` reads for the boot to the
//! guest's init and for its in-guest workload (`docs/benchmarks.md`).
//! Under QEMU's `-icount` the counter counts instructions.

use std::io::{self, Write};

/// A [`Write`] that stamps each line with `clock() - start`.
pub struct Timestamped<W, C> {
    out: W,
    clock: C,
    start: u64,
    /// The next byte starts a line.
    line_start: bool,
}

impl<W: Write, C: FnMut() -> u64> Timestamped<W, C> {
    /// Stamps lines written to `out` with `clock()` less its value now.
    pub fn new(out: W, mut clock: C) -> Self {
        let start = clock();
        Timestamped {
            out,
            clock,
            start,
            line_start: true,
        }
    }
}

impl<W: Write, C: FnMut() -> u64> Write for Timestamped<W, C> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for piece in buf.split_inclusive(|&b| b == b'\n') {
            if self.line_start {
                let now = (self.clock)().wrapping_sub(self.start);
                write!(self.out, "@{now} ")?;
            }
            self.out.write_all(piece)?;
            self.line_start = piece.ends_with(b"\n");
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The host's virtual counter and its frequency, `(CNTVCT_EL0,
/// CNTFRQ_EL0)`; Linux lets EL0 read both.
#[cfg(target_arch = "aarch64")]
pub fn counter() -> (u64, u64) {
    let (count, freq): (u64, u64);
    // SAFETY: reads of the generic timer's counter and frequency, which
    // Linux enables for EL0 (CNTKCTL_EL1.EL0VCTEN); no memory is touched.
    // The ISB keeps the read from being taken early.
    unsafe {
        core::arch::asm!(
            "isb",
            "mrs {count}, cntvct_el0",
            "mrs {freq}, cntfrq_el0",
            count = out(reg) count,
            freq = out(reg) freq,
            options(nomem, nostack, preserves_flags),
        );
    }
    (count, freq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_gets_the_time_of_its_first_byte() {
        let mut t = 100u64;
        let mut out = Vec::new();
        {
            let mut w = Timestamped::new(&mut out, || {
                t += 5;
                t
            });
            // Started at 105; each line start reads the clock once more.
            w.write_all(b"boot\r\nin").unwrap();
            w.write_all(b"it\n").unwrap();
            w.write_all(b"").unwrap();
            w.write_all(b"\nlast").unwrap();
            w.flush().unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "@5 boot\r\n@10 init\n@15 \n@20 last"
        );
    }
}
