//! Segment file layout: sizes and offsets as named constants (checked against each other at
//! compile time and against docs/format.md by a test), segment capacities, and file naming.

use crate::record::{self, Frame, FrameError, FRAME_HEADER_LEN, RECORD_ALIGN};
use crate::types::SegmentId;

pub(crate) const HEADER_LEN: u64 = 4096;
pub(crate) const HEADER_USED: usize = 128;
pub(crate) const TRAILER_LEN: u64 = 64;
pub(crate) const MAGIC: [u8; 8] = *b"CAIRNSEG";
pub(crate) const TRAILER_MAGIC: [u8; 8] = *b"CAIRNEND";
/// 2: a sealed segment's event ids moved out of the footer into their own record.
pub(crate) const FORMAT_VERSION: u32 = 2;
pub(crate) const HEADER_SALT: [u8; 8] = *b"cairnHDR";
pub(crate) const TRAILER_SALT: [u8; 8] = *b"cairnTRL";

/// Smallest segment capacity accepted by [`crate::Options`].
pub const SEGMENT_SIZE_MIN: u64 = 64 * 1024;
/// Default segment capacity.
pub const SEGMENT_SIZE_DEFAULT: u64 = 128 * 1024 * 1024;
/// Largest segment capacity (offsets are stored as u32 in the footer).
pub const SEGMENT_SIZE_MAX: u64 = 1 << 32;
/// Capacity of a new log's first segment (or the configured segment size, if smaller). Each
/// next segment doubles its predecessor's capacity up to the configured size, so that a store
/// holding a few events costs about this much disk, and its first open zero-fills this much,
/// while a busy log reaches full-size segments after a few rolls.
pub const SEGMENT_SIZE_START: u64 = 1024 * 1024;

/// Capacity of the segment after one of `prev` bytes (`None`: the first), with segments of at
/// most `max` bytes: double, from [`SEGMENT_SIZE_START`], up to `max`.
pub(crate) fn next_capacity(prev: Option<u64>, max: u64) -> u64 {
    let start = SEGMENT_SIZE_START.min(max);
    prev.map_or(start, |p| p.saturating_mul(2).clamp(start, max))
}

/// Smallest capacity (a multiple of 4096) whose usable space holds `bytes` after the header.
pub(crate) fn capacity_for(bytes: u64) -> u64 {
    (HEADER_LEN + bytes + TRAILER_LEN).next_multiple_of(4096)
}

/// Fixed part of the footer body: first position, count, stream count, reserved.
pub(crate) const FOOTER_FIXED: usize = 24;
/// Footer bytes per record: offset (4), position in its stream table (8).
pub(crate) const FOOTER_PER_RECORD: usize = 4 + 8;
/// Id-record bytes per record: the event id.
pub(crate) const IDS_PER_RECORD: usize = 16;
/// Footer bytes per distinct stream, beyond its name: name length (2), first version (8), count (4).
pub(crate) const FOOTER_PER_STREAM: usize = 2 + 8 + 4;

const _: () = assert!(HEADER_LEN.is_multiple_of(RECORD_ALIGN as u64));
const _: () = assert!(HEADER_USED as u64 <= HEADER_LEN);
const _: () = assert!(TRAILER_LEN.is_multiple_of(RECORD_ALIGN as u64));
const _: () = assert!(SEGMENT_SIZE_MIN > HEADER_LEN + TRAILER_LEN + FRAME_HEADER_LEN as u64 * 16);
const _: () = assert!(SEGMENT_SIZE_START >= SEGMENT_SIZE_MIN && SEGMENT_SIZE_START.is_multiple_of(4096));

/// The file name of a segment: its first position, zero-padded so that name order is log order.
pub(crate) fn file_name(id: SegmentId) -> String {
    format!("{:020}.seg", id.0)
}

/// Parses a segment file name back to its id.
pub(crate) fn parse_file_name(name: &str) -> Option<SegmentId> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(SegmentId)
}

/// Decodes the frame at `offset` of a segment whose usable record area ends at `end`.
pub(crate) fn frame_at(bytes: &[u8], offset: u64, end: u64) -> Result<Frame<'_>, FrameError> {
    let region = &bytes[offset as usize..end as usize];
    record::decode_frame(region, record::EVENT_BODY_MAX.max(region.len().min(u32::MAX as usize)))
}

/// End of the record area: where the trailer begins.
pub(crate) fn usable_end(capacity: u64) -> u64 {
    capacity - TRAILER_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_as_positions() {
        assert_eq!(file_name(SegmentId(42)), "00000000000000000042.seg");
        assert_eq!(parse_file_name("00000000000000000042.seg"), Some(SegmentId(42)));
        assert_eq!(parse_file_name("42.seg"), None);
        assert_eq!(parse_file_name("0000000000000000004x.seg"), None);
    }
}
