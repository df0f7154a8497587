//! A log line in a fixed buffer, built without `core::fmt` (which compiles
//! to indirect calls: the kernel maps module text with BTI guards on CPUs
//! that have them, and Rust code has no landing pads). Shared by the
//! self-tests' logs.

use kcore_abi::{Error, PageOwner};
use kserv_base::hypercall::{CallError, PageInfo};

/// Bytes a [`Line`] holds; what does not fit is cut.
pub const LINE_BYTES: usize = 256;

/// A log line in a fixed buffer; what does not fit is cut.
pub struct Line {
    buf: [u8; LINE_BYTES],
    len: usize,
}

impl Line {
    /// An empty line.
    pub fn new() -> Self {
        Line {
            buf: [0; LINE_BYTES],
            len: 0,
        }
    }

    /// The bytes so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Appends raw bytes.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            if self.len == self.buf.len() {
                break;
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        self
    }

    /// Appends a string.
    pub fn s(&mut self, s: &str) -> &mut Self {
        self.raw(s.as_bytes())
    }

    fn digits(&mut self, mut v: u64, base: u64) -> &mut Self {
        let mut tmp = [0u8; 20];
        let mut n = 0;
        loop {
            let d = (v % base) as u8;
            tmp[n] = if d < 10 { b'0' + d } else { b'a' + d - 10 };
            n += 1;
            v /= base;
            if v == 0 {
                break;
            }
        }
        while n > 0 {
            n -= 1;
            if self.len == self.buf.len() {
                break;
            }
            self.buf[self.len] = tmp[n];
            self.len += 1;
        }
        self
    }

    /// `0x` and lower-case hex.
    pub fn hex(&mut self, v: u64) -> &mut Self {
        self.s("0x").digits(v, 16)
    }

    /// Decimal.
    pub fn dec(&mut self, v: u64) -> &mut Self {
        self.digits(v, 10)
    }

    /// A signed decimal (an errno, a raw status).
    pub fn signed(&mut self, v: i64) -> &mut Self {
        if v < 0 {
            self.s("-");
        }
        self.dec(v.unsigned_abs())
    }

    /// Why a hypercall failed.
    pub fn err(&mut self, e: CallError) -> &mut Self {
        match e {
            CallError::Kcore(e) => self.s(error_name(e)),
            CallError::UnknownStatus(x0) => self.s("unknown status ").hex(x0),
            CallError::MalformedReply => self.s("malformed reply"),
        }
    }

    /// Who owns a page.
    pub fn owner(&mut self, i: &PageInfo) -> &mut Self {
        self.s(owner_name(i.owner));
        if let Some(vm) = i.vm {
            self.s(" of VM ").hex(vm.0).s(" at gfn ").hex(i.gfn);
        }
        self
    }
}

impl Default for Line {
    fn default() -> Self {
        Line::new()
    }
}

/// The name of an ABI error.
pub fn error_name(e: Error) -> &'static str {
    match e {
        Error::NotSupported => "NotSupported",
        Error::NotRequired => "NotRequired",
        Error::InvalidParameter => "InvalidParameter",
        Error::Denied => "Denied",
        Error::Busy => "Busy",
        Error::NoMemory => "NoMemory",
        Error::NotFound => "NotFound",
        Error::VerificationFailed => "VerificationFailed",
        Error::SelfCheckFailed => "SelfCheckFailed",
    }
}

/// The name of a page owner.
pub fn owner_name(o: PageOwner) -> &'static str {
    match o {
        PageOwner::KCore => "KCore",
        PageOwner::VmTable => "VmTable",
        PageOwner::Host => "Host",
        PageOwner::HostPinned => "HostPinned",
        PageOwner::HostSharedWithGuest => "HostSharedWithGuest",
        PageOwner::Guest => "Guest",
        PageOwner::GuestSharedWithHost => "GuestSharedWithHost",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_not_overflowed() {
        let mut l = Line::new();
        for _ in 0..100 {
            l.s("abc").hex(u64::MAX).dec(u64::MAX);
        }
        assert_eq!(l.bytes().len(), LINE_BYTES);
        let mut l = Line::new();
        l.hex(0).s(" ").dec(0).s(" ").hex(0xabc).s(" ").dec(1234);
        l.s(" ").signed(-22).s(" ").signed(7);
        assert_eq!(l.bytes(), b"0x0 0 0xabc 1234 -22 7");
    }
}
