//! Durable Streams offsets: opaque to clients, lexicographically sortable, derived from cairn
//! stream versions.
//!
//! An offset is `VVVVVVVVVVVVVVVV_0000000000000000`: the stream version the next read starts at,
//! zero-padded to [`OFFSET_DIGITS`] decimal digits, an underscore, and a second field of the
//! same width that is always zero (reserved; its width keeps the format that of other Durable
//! Streams servers, so `0000000000000000_0000000000000000` is the start of every stream). Equal
//! widths make string order the version order. Stream versions never repeat (they continue
//! across a soft delete), so an offset names one place in one stream for as long as the stream
//! lives, and a stream re-created after a delete starts past every offset of its predecessor.
//!
//! The sentinels `-1` (the start) and `now` (the tail) are never produced as offsets.

use std::fmt;

/// Digits of each field of an offset.
pub const OFFSET_DIGITS: usize = 16;
/// The largest version an offset can hold (16 decimal digits).
pub const OFFSET_VERSION_MAX: u64 = 9_999_999_999_999_999;

/// A concrete offset: reads from it start at stream version `.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Offset(pub u64);

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        assert!(self.0 <= OFFSET_VERSION_MAX, "version {} does not fit an offset", self.0);
        write!(f, "{:0width$}_{:0width$}", self.0, 0, width = OFFSET_DIGITS)
    }
}

/// What a request's `offset` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// `-1` or no offset: the stream's first readable message.
    Beginning,
    /// `now`: the tail, skipping everything there is.
    Now,
    At(Offset),
}

/// Parses an `offset` query value (or a `Stream-Fork-Offset` header); the error is a sentence.
pub fn parse(text: &str) -> Result<Start, String> {
    match text {
        "-1" => return Ok(Start::Beginning),
        "now" => return Ok(Start::Now),
        _ => {}
    }
    let bad = || {
        format!(
            "offset {text:?} is not an offset this server produced: expected -1, now, or \
             {OFFSET_DIGITS} digits, an underscore and {OFFSET_DIGITS} zeros (as in a Stream-Next-Offset header)"
        )
    };
    let (version, reserved) = text.split_once('_').ok_or_else(bad)?;
    let digits = |s: &str| s.len() == OFFSET_DIGITS && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(version) || !digits(reserved) || reserved.bytes().any(|b| b != b'0') {
        return Err(bad());
    }
    version.parse().map(|v| Start::At(Offset(v))).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_and_sort_as_versions() {
        for v in [0, 1, 9, 10, 99, 12_345, OFFSET_VERSION_MAX] {
            let text = Offset(v).to_string();
            assert_eq!(text.len(), 2 * OFFSET_DIGITS + 1);
            assert_eq!(parse(&text), Ok(Start::At(Offset(v))));
        }
        assert!(Offset(9).to_string() < Offset(10).to_string());
        assert_eq!(Offset(0).to_string(), "0000000000000000_0000000000000000");
    }

    #[test]
    fn sentinels_and_garbage() {
        assert_eq!(parse("-1"), Ok(Start::Beginning));
        assert_eq!(parse("now"), Ok(Start::Now));
        for bad in
            ["", "0", "0,1", "0 1", "abc", "0000000000000001_0000000000000001", "000000000000001_0000000000000000"]
        {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
