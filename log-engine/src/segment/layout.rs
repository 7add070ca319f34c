//! Segment file layout: sizes and offsets as named constants (checked against each other at
//! compile time and against docs/format.md by a test), segment capacities, and file naming.

use crate::cast::usize_of;
use crate::field::{contiguous, Field};
use crate::record::{self, Frame, FrameError, FRAME_HEADER_LEN, RECORD_ALIGN};
use crate::types::SegmentId;

/// The header's region at the start of a segment file; records start after it.
pub(crate) const HEADER_LEN: u64 = 4096;

// The header's fields, in docs/format.md's order ("### Header").
pub(crate) const HEADER_MAGIC: Field = Field::first(8);
pub(crate) const HEADER_VERSION: Field = HEADER_MAGIC.then(4);
/// Flags (format version 5; reserved, zero, before): [`HEADER_FLAG_ENCRYPTED`].
pub(crate) const HEADER_FLAGS: Field = HEADER_VERSION.then(4);
pub(crate) const HEADER_ID: Field = HEADER_FLAGS.then(8);
pub(crate) const HEADER_CAPACITY: Field = HEADER_ID.then(8);
pub(crate) const HEADER_PREV_HASH: Field = HEADER_CAPACITY.then(32);
pub(crate) const HEADER_CREATED: Field = HEADER_PREV_HASH.then(8);
const HEADER_RESERVED_2: Field = HEADER_CREATED.then(52);
/// CRC of every header byte before it.
pub(crate) const HEADER_CRC: Field = HEADER_RESERVED_2.then(4);
pub(crate) const HEADER_FIELDS: [Field; 9] = [
    HEADER_MAGIC,
    HEADER_VERSION,
    HEADER_FLAGS,
    HEADER_ID,
    HEADER_CAPACITY,
    HEADER_PREV_HASH,
    HEADER_CREATED,
    HEADER_RESERVED_2,
    HEADER_CRC,
];
/// Bytes of the header region the header uses; the rest is zero.
pub(crate) const HEADER_USED: usize = HEADER_CRC.end();

// The trailer's fields, in docs/format.md's order ("### Trailer").
pub(crate) const TRAILER_MAGIC_FIELD: Field = Field::first(8);
pub(crate) const TRAILER_FOOTER_OFFSET: Field = TRAILER_MAGIC_FIELD.then(8);
pub(crate) const TRAILER_FOOTER_LEN: Field = TRAILER_FOOTER_OFFSET.then(8);
pub(crate) const TRAILER_IDS_LEN: Field = TRAILER_FOOTER_LEN.then(8);
const TRAILER_RESERVED: Field = TRAILER_IDS_LEN.then(28);
/// CRC of every trailer byte before it.
pub(crate) const TRAILER_CRC: Field = TRAILER_RESERVED.then(4);
pub(crate) const TRAILER_FIELDS: [Field; 6] =
    [TRAILER_MAGIC_FIELD, TRAILER_FOOTER_OFFSET, TRAILER_FOOTER_LEN, TRAILER_IDS_LEN, TRAILER_RESERVED, TRAILER_CRC];
/// The trailer: the last bytes of a sealed segment.
pub(crate) const TRAILER_LEN: u64 = TRAILER_CRC.end() as u64;
pub(crate) const MAGIC: [u8; 8] = *b"CAIRNSEG";
pub(crate) const TRAILER_MAGIC: [u8; 8] = *b"CAIRNEND";
/// The version this build writes. 5: the header's flags (a segment written with a key says
/// so, and so does every later segment of its log). 4: encrypted event records (kind 5), written when the log
/// has a key store. 3: husk records (kind 4), written only by a scavenge's
/// rewrite of a sealed segment. 2: a sealed segment's event ids moved out of the footer into
/// their own record.
pub(crate) const FORMAT_VERSION: u32 = 5;
/// The oldest version this build reads: a version 2 segment is a version 3 segment without
/// husks, so it is read as it is, never rewritten on open.
pub(crate) const FORMAT_VERSION_OLDEST: u32 = 2;
/// The first version whose segments may hold husk records; in an older segment a husk is a
/// record of unknown kind.
pub(crate) const FORMAT_VERSION_HUSKS: u32 = 3;
/// The first version whose segments may hold encrypted events.
pub(crate) const FORMAT_VERSION_CIPHER: u32 = 4;
/// The first version whose header holds flags.
pub(crate) const FORMAT_VERSION_FLAGS: u32 = 5;
/// Header flag: the log is encrypted. Set on every segment created by a writer with a key
/// store, and by any writer on a log whose newest segment has it: a writer without a key
/// appends nothing to such a log (its events would be written in the clear).
pub(crate) const HEADER_FLAG_ENCRYPTED: u32 = 1;
/// Every flag this build knows; a header with another one set is refused.
pub(crate) const HEADER_FLAGS_KNOWN: u32 = HEADER_FLAG_ENCRYPTED;
pub(crate) const HEADER_SALT: [u8; 8] = *b"cairnHDR";
pub(crate) const TRAILER_SALT: [u8; 8] = *b"cairnTRL";

/// Smallest segment capacity accepted by [`crate::Options`].
pub const SEGMENT_SIZE_MIN: u64 = 64 * 1024;
/// Smallest segment file a reader accepts: a header's region and one page for records and the
/// trailer. Only a scavenge's rewrite of a sealed segment (its records shrunk to husks) makes a
/// file smaller than [`SEGMENT_SIZE_MIN`]; the writer never does.
pub(crate) const SEGMENT_FILE_MIN: u64 = HEADER_LEN + 4096;

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
pub(crate) const fn capacity_for(bytes: u64) -> u64 {
    (HEADER_LEN + bytes + TRAILER_LEN).next_multiple_of(4096)
}

// The footer body's fixed part, in docs/format.md's order ("### Seal record and footer body").
pub(crate) const FOOTER_FIRST_POSITION: Field = Field::first(8);
pub(crate) const FOOTER_COUNT: Field = FOOTER_FIRST_POSITION.then(8);
pub(crate) const FOOTER_STREAMS: Field = FOOTER_COUNT.then(4);
const FOOTER_RESERVED: Field = FOOTER_STREAMS.then(4);
pub(crate) const FOOTER_FIXED_FIELDS: [Field; 4] =
    [FOOTER_FIRST_POSITION, FOOTER_COUNT, FOOTER_STREAMS, FOOTER_RESERVED];
/// Fixed part of the footer body: first position, count, stream count, reserved.
pub(crate) const FOOTER_FIXED: usize = FOOTER_RESERVED.end();
/// Footer bytes per record: offset (4), position in its stream table (8).
pub(crate) const FOOTER_PER_RECORD: usize = 4 + 8;
/// Id-record bytes per record: the event id.
pub(crate) const IDS_PER_RECORD: usize = 16;
/// Footer bytes per distinct stream, beyond its name: name length (2), first version (8), count (4).
pub(crate) const FOOTER_PER_STREAM: usize = 2 + 8 + 4;

const _: () = assert!(contiguous(&HEADER_FIELDS, HEADER_USED) && HEADER_USED == 128);
const _: () = assert!(contiguous(&TRAILER_FIELDS, usize_of(TRAILER_LEN)) && TRAILER_LEN == 64);
const _: () = assert!(contiguous(&FOOTER_FIXED_FIELDS, FOOTER_FIXED) && FOOTER_FIXED == 24);
// Offsets in a footer are u32, stream name lengths u16, counts u64 and u32 (docs/format.md).
const _: () = assert!(FOOTER_PER_RECORD == 4 + 8 && FOOTER_PER_STREAM == 2 + 8 + 4 && IDS_PER_RECORD == 16);
const _: () = assert!(SEGMENT_SIZE_MAX <= u32::MAX as u64 + 1);
// A footer stores a stream name's length in 2 bytes.
const _: () = assert!(crate::types::STREAM_NAME_LEN_MAX <= u16::MAX as usize);
const _: () = assert!(HEADER_LEN.is_multiple_of(RECORD_ALIGN as u64));
const _: () = assert!(HEADER_USED as u64 <= HEADER_LEN);
const _: () = assert!(TRAILER_LEN.is_multiple_of(RECORD_ALIGN as u64));
const _: () = assert!(SEGMENT_SIZE_MIN > HEADER_LEN + TRAILER_LEN + FRAME_HEADER_LEN as u64 * 16);
const _: () = assert!(SEGMENT_FILE_MIN == capacity_for(1) && SEGMENT_FILE_MIN <= SEGMENT_SIZE_MIN);
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
    let region = &bytes[usize_of(offset)..usize_of(end)];
    record::decode_frame(region, record::EVENT_BODY_MAX.max(region.len().min(u32::MAX as usize)))
}

/// End of the record area: where the trailer begins.
pub(crate) fn usable_end(capacity: u64) -> u64 {
    capacity - TRAILER_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout tables of docs/format.md are the constants' (a format change updates both).
    #[test]
    fn layout_matches_docs_format_md() {
        use crate::field::doc;
        doc::assert_fields("### Header", &HEADER_FIELDS);
        doc::assert_fields("### Trailer", &TRAILER_FIELDS);
        let segment = doc::table("## Segment file");
        assert_eq!(segment[0][..2], [0.to_string(), HEADER_LEN.to_string()], "the header's region");
        assert_eq!(segment[1][0], HEADER_LEN.to_string(), "records start after the header's region");
        let trailer = segment.last().expect("the trailer's row");
        assert_eq!(trailer[..2], [format!("capacity − {TRAILER_LEN}"), TRAILER_LEN.to_string()]);
        let footer: Vec<String> = doc::table("### Seal record and footer body").iter().map(|r| r[0].clone()).collect();
        let fixed: Vec<String> = FOOTER_FIXED_FIELDS.iter().map(|f| f.len.to_string()).collect();
        assert_eq!(footer[..4], fixed[..], "the footer's fixed part");
        assert_eq!(footer[4], "4 × N", "a u32 offset per record");
    }

    #[test]
    fn names_sort_as_positions() {
        assert_eq!(file_name(SegmentId(42)), "00000000000000000042.seg");
        assert_eq!(parse_file_name("00000000000000000042.seg"), Some(SegmentId(42)));
        assert_eq!(parse_file_name("42.seg"), None);
        assert_eq!(parse_file_name("0000000000000000004x.seg"), None);
    }
}
