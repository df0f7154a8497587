//! The VMM's own console: the guest's output goes to stdout, stdin goes to
//! the guest's console device. On a terminal stdin is switched to raw mode
//! (every key reaches the guest, Ctrl-C included); `Ctrl-A x` then quits the
//! VMM and `Ctrl-A Ctrl-A` sends one Ctrl-A, as in QEMU.

use std::io::Read;
use std::os::fd::AsRawFd;
use vmm_sys_util::terminal::Terminal;

/// Where console input goes (the PL011 or the virtio console).
pub trait ConsoleInput: Send {
    /// Delivers `bytes` to the guest (buffered while it is not reading).
    fn push_input(&mut self, bytes: &[u8]);
}

/// Ctrl-A.
pub const ESCAPE: u8 = 0x01;

/// What a chunk of input amounts to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filtered {
    /// The bytes for the guest.
    pub bytes: Vec<u8>,
    /// The user asked to quit (`Ctrl-A x`).
    pub quit: bool,
}

/// The `Ctrl-A` escape state across reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct EscapeFilter {
    pending: bool,
}

impl EscapeFilter {
    /// Filters one chunk of input.
    pub fn feed(&mut self, input: &[u8]) -> Filtered {
        let mut out = Filtered::default();
        for &b in input {
            if self.pending {
                self.pending = false;
                match b {
                    b'x' | b'X' => {
                        out.quit = true;
                        return out;
                    }
                    ESCAPE => out.bytes.push(ESCAPE),
                    // Not an escape we know: pass both through.
                    _ => out.bytes.extend([ESCAPE, b]),
                }
            } else if b == ESCAPE {
                self.pending = true;
            } else {
                out.bytes.push(b);
            }
        }
        out
    }
}

/// Hands what `input` yields to `deliver` until end of file or a read error
/// (with the escape handling when `escapes`); returns whether the user asked
/// to quit.
pub fn pump(mut input: impl Read, escapes: bool, mut deliver: impl FnMut(&[u8])) -> bool {
    let mut filter = EscapeFilter::default();
    let mut buf = [0u8; 256];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        if !escapes {
            deliver(&buf[..n]);
            continue;
        }
        let f = filter.feed(&buf[..n]);
        if !f.bytes.is_empty() {
            deliver(&f.bytes);
        }
        if f.quit {
            return true;
        }
    }
}

/// Whether `fd` is a terminal.
pub fn is_tty(fd: &impl AsRawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    unsafe { libc::isatty(fd.as_raw_fd()) == 1 }
}

/// Stdin in raw mode while this lives (only if stdin is a terminal).
pub struct RawStdin(());

impl RawStdin {
    /// Switches a terminal stdin to raw mode; `None` if stdin is no
    /// terminal or refuses.
    pub fn enable() -> Option<Self> {
        let stdin = std::io::stdin();
        (is_tty(&stdin) && stdin.lock().set_raw_mode().is_ok()).then_some(RawStdin(()))
    }
}

impl Drop for RawStdin {
    fn drop(&mut self) {
        let _ = std::io::stdin().lock().set_canon_mode();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let mut f = EscapeFilter::default();
        assert_eq!(f.feed(b"ls\n").bytes, b"ls\n");
        assert_eq!(
            f.feed(&[ESCAPE, ESCAPE, b'a']),
            Filtered {
                bytes: vec![ESCAPE, b'a'],
                quit: false
            }
        );
        // Split across reads.
        assert_eq!(f.feed(&[b'q', ESCAPE]).bytes, b"q");
        assert_eq!(
            f.feed(b"x"),
            Filtered {
                bytes: vec![],
                quit: true
            }
        );
        let mut f = EscapeFilter::default();
        assert_eq!(f.feed(&[ESCAPE, b'c']).bytes, vec![ESCAPE, b'c']);
    }

    #[test]
    fn pump_until_eof_or_quit() {
        let mut got = Vec::new();
        assert!(!pump(&b"abc"[..], true, |b| got.extend_from_slice(b)));
        assert_eq!(got, b"abc");
        let mut got = Vec::new();
        assert!(pump(&[b'a', ESCAPE, b'x', b'b'][..], true, |b| got
            .extend_from_slice(b)));
        assert_eq!(got, b"a");
        // Not a terminal: no escapes.
        let mut got = Vec::new();
        assert!(!pump(&[ESCAPE, b'x'][..], false, |b| got.extend_from_slice(b)));
        assert_eq!(got, [ESCAPE, b'x']);
    }
}
