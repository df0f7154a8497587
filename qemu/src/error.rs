//! The one error type of this crate. A failure of a QEMU run is only useful
//! with the console that led to it, so an [`Error`] from a [`crate::Session`]
//! carries the path of the full console log and its last lines
//! ([`TAIL_LINES`]), and its `Display` shows both.

use std::fmt;
use std::path::{Path, PathBuf};

/// How many console lines an error shows.
pub const TAIL_LINES: usize = 150;

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// QEMU is missing, does not run or is too old.
    Qemu,
    /// QEMU could not be started, or its log could not be created.
    Spawn,
    /// An I/O error talking to QEMU.
    Io,
    /// An expected console line or QEMU's exit did not come in time.
    Timeout,
    /// QEMU exited before the expected console line appeared.
    Exited,
    /// A check of the caller on the console output failed
    /// ([`crate::Session::failure`]).
    Check,
}

/// An error, with the console log it happened in when there is one.
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    log: Option<PathBuf>,
    tail: Option<String>,
}

impl Error {
    /// An error without console.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            log: None,
            tail: None,
        }
    }

    /// Attaches the console: the log path and its last lines.
    pub fn with_console(mut self, log: &Path, tail: String) -> Self {
        self.log = Some(log.to_path_buf());
        self.tail = Some(tail);
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the console.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The console log file, if the error comes from a session.
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(tail) = &self.tail {
            let log = self.log.as_deref().unwrap_or(Path::new("?")).display();
            write!(f, "\n----- console (last lines; full log: {log}) -----\n")?;
            f.write_str(tail)?;
            if !tail.is_empty() && !tail.ends_with('\n') {
                f.write_str("\n")?;
            }
            write!(f, "----- end of console (full log: {log}) -----")?;
        }
        Ok(())
    }
}

// `Debug` is what `cargo test` shows for a test returning `Err`: make it as
// readable as `Display`.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_includes_log_and_tail() {
        let e = Error::new(ErrorKind::Timeout, "no banner within 5 s")
            .with_console(Path::new("build/logs/x.log"), "line 1\nline 2".into());
        let s = e.to_string();
        assert!(s.starts_with("no banner within 5 s\n"));
        assert!(s.contains("full log: build/logs/x.log"));
        assert!(s.contains("line 1\nline 2\n----- end of console"));
        assert_eq!(format!("{e:?}"), s);
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert_eq!(e.log_path(), Some(Path::new("build/logs/x.log")));
    }

    #[test]
    fn display_without_console_is_the_message() {
        assert_eq!(
            Error::new(ErrorKind::Qemu, "too old").to_string(),
            "too old"
        );
    }
}
