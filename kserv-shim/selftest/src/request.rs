//! Raw hypercall requests written as text by tests (the module's debugfs `hvc`
//! file): `"<id> [a1 .. a6]"`, every number in hexadecimal with an optional
//! `0x`, separated by blanks. Parsing happens here so it is host-tested; the
//! C glue only copies the bytes in.

/// Why a request was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// No function id.
    Empty,
    /// More than six arguments.
    TooManyArguments,
    /// A word that is not a hexadecimal `u64`.
    BadNumber,
}

/// Most arguments a request may carry (`x1..=x6`, as the ABI passes them).
pub const MAX_ARGS: usize = 6;

/// Parses a request into the registers of the call: `x0` = id, `x1..` the
/// arguments, the rest zero.
pub fn parse(text: &[u8]) -> Result<[u64; 8], ParseError> {
    let mut regs = [0u64; 8];
    let mut n = 0;
    for word in text
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
    {
        if n > MAX_ARGS {
            return Err(ParseError::TooManyArguments);
        }
        regs[n] = parse_hex(word).ok_or(ParseError::BadNumber)?;
        n += 1;
    }
    if n == 0 {
        return Err(ParseError::Empty);
    }
    Ok(regs)
}

/// One hexadecimal `u64`, with or without `0x`/`0X`.
fn parse_hex(word: &[u8]) -> Option<u64> {
    let digits = word
        .strip_prefix(b"0x")
        .or_else(|| word.strip_prefix(b"0X"))
        .unwrap_or(word);
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        Some((acc << 4) | u64::from(char::from(d).to_digit(16)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_alone() {
        assert_eq!(parse(b"c600ffff\n"), Ok([0xC600_FFFF, 0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(parse(b"0"), Ok([0; 8]));
    }

    #[test]
    fn id_and_arguments() {
        assert_eq!(
            parse(b" 0xC6000001\t1 2 3 4 5 FFFFFFFFFFFFFFFF\n"),
            Ok([0xC600_0001, 1, 2, 3, 4, 5, u64::MAX, 0])
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(b" \n"), Err(ParseError::Empty));
        assert_eq!(parse(b"1 2 3 4 5 6 7 8"), Err(ParseError::TooManyArguments));
        assert_eq!(parse(b"xyz"), Err(ParseError::BadNumber));
        assert_eq!(parse(b"0x"), Err(ParseError::BadNumber));
        assert_eq!(parse(b"1 -1"), Err(ParseError::BadNumber));
        assert_eq!(parse(b"10000000000000000"), Err(ParseError::BadNumber));
    }
}
