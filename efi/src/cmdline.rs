//! The load options → KServ's bootargs.
//!
//! An EFI application gets its command line as UCS-2 load options: the
//! UEFI Shell passes the whole command line it ran (`\kcore.efi
//! kserv.tests=hvc`, program first), a boot entry made with `efibootmgr
//! --unicode` or GRUB's `chainloader` passes only what follows. The first
//! word is dropped when it names an `.efi` file. What remains becomes
//! `/chosen/bootargs`, which KCore appends to the payload's own command
//! line (`docs/boot-image.md`).
//!
//! Started with no load options (the firmware's removable-media path,
//! `\EFI\BOOT\BOOTAA64.EFI`), the application takes them from the file
//! [`ARGS_FILE`] at the root of its partition instead ([`from_file`]).

use alloc::string::String;
use alloc::vec::Vec;

/// The bootargs carried by `options` (UCS-2, up to the first NUL), words
/// separated by one space, or `None` when there are none. Characters that
/// are not valid UTF-16 become U+FFFD.
pub fn bootargs(options: &[u16]) -> Option<String> {
    let end = options
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(options.len());
    let text: String = char::decode_utf16(options[..end].iter().copied())
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    let mut words = text.split_whitespace().peekable();
    if words.peek().is_some_and(|w| {
        w.len() > 4
            && w.is_char_boundary(w.len() - 4)
            && w[w.len() - 4..].eq_ignore_ascii_case(".efi")
    }) {
        words.next();
    }
    let args = words.collect::<Vec<_>>().join(" ");
    (!args.is_empty()).then_some(args)
}

/// The file at the root of the application's partition whose text is the
/// bootargs when the load options give none.
pub const ARGS_FILE: &str = "\\kcore.args";

/// The bootargs in the bytes of [`ARGS_FILE`]: UTF-8 text, its words (lines
/// included) separated by one space; `None` when there are none or the
/// text is not UTF-8 or holds a NUL.
pub fn from_file(bytes: &[u8]) -> Option<String> {
    let text = core::str::from_utf8(bytes)
        .ok()
        .filter(|t| !t.contains('\0'))?;
    let args = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!args.is_empty()).then_some(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_file_text_becomes_bootargs() {
        assert_eq!(
            from_file(b"kserv.mode=batch\r\n  kserv.tests=hvc\n").as_deref(),
            Some("kserv.mode=batch kserv.tests=hvc")
        );
        assert_eq!(from_file(b" \r\n"), None);
        assert_eq!(from_file(b""), None);
        assert_eq!(from_file(b"a\0b"), None);
        assert_eq!(from_file(&[0xff, 0x41]), None);
    }

    fn ucs2(s: &str) -> Vec<u16> {
        s.encode_utf16().collect()
    }

    #[test]
    fn the_shell_s_program_name_is_dropped() {
        let mut opts = ucs2("\\kcore.efi  kserv.tests=hvc,protection\tkserv.mode=batch");
        opts.extend([0, b'x' as u16]);
        assert_eq!(
            bootargs(&opts).as_deref(),
            Some("kserv.tests=hvc,protection kserv.mode=batch")
        );
        assert_eq!(bootargs(&ucs2("FS0:\\EFI\\KCORE.EFI")), None);
    }

    #[test]
    fn boot_entry_options_are_kept_whole() {
        assert_eq!(
            bootargs(&ucs2("console=ttyAMA0 quiet")).as_deref(),
            Some("console=ttyAMA0 quiet")
        );
        assert_eq!(bootargs(&[]), None);
        assert_eq!(bootargs(&[0]), None);
        assert_eq!(bootargs(&ucs2("   ")), None);
    }

    #[test]
    fn bad_utf16_is_replaced() {
        assert_eq!(
            bootargs(&[0xd800, b'a' as u16]).as_deref(),
            Some("\u{fffd}a")
        );
        assert_eq!(bootargs(&ucs2("é.efi x")).as_deref(), Some("x"));
    }
}
