//! Segment files: layout constants, the header, the seal footer and trailer, and the recovery
//! scan of the newest segment.
//!
//! Lifecycle: *prepared* (a zero-filled `.tmp` file) → *active* (header written, renamed to
//! `<first position>.seg`, records appended by the writer) → *sealed* (footer and trailer written
//! after the last record; never written again). Only the newest segment may be active.
//!
//! Segment file layout (little-endian; see docs/format.md):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 4096 | header (128 bytes used, rest zero) |
//! | 4096 | … | records (record.rs), each 8-byte aligned |
//! | after the last record | … | seal footer: a record of kind 2 (sealed segments only) |
//! | after the seal record | … | event ids: a record of kind 3 (sealed segments only) |
//! | capacity − 64 | 64 | trailer: locates the footer (sealed segments only) |

use crate::error::CorruptionKind;
use crate::record::{self, Frame, FrameError, FrameHeader, FRAME_HEADER_LEN, KIND_IDS, KIND_SEAL, RECORD_ALIGN};
use crate::types::{ChainHash, SegmentId};

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

/// The segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub id: SegmentId,
    pub capacity: u64,
    /// Chain hash at `id - 1` (the genesis hash for the first segment).
    pub prev_hash: ChainHash,
    pub created_ms: u64,
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> [u8; HEADER_USED] {
        let mut b = [0u8; HEADER_USED];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[16..24].copy_from_slice(&self.id.0.to_le_bytes());
        b[24..32].copy_from_slice(&self.capacity.to_le_bytes());
        b[32..64].copy_from_slice(&self.prev_hash.0);
        b[64..72].copy_from_slice(&self.created_ms.to_le_bytes());
        let crc = salted_crc(&HEADER_SALT, &b[..HEADER_USED - 4]);
        b[HEADER_USED - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Result<SegmentHeader, CorruptionKind> {
        let bad = |d: &str| CorruptionKind::SegmentHeader(d.to_string());
        if b.len() < HEADER_USED {
            return Err(bad("file shorter than a header"));
        }
        if b[0..8] != MAGIC {
            return Err(bad("bad magic (not a cairn segment)"));
        }
        let crc = u32::from_le_bytes(b[HEADER_USED - 4..HEADER_USED].try_into().expect("4 bytes"));
        if crc != salted_crc(&HEADER_SALT, &b[..HEADER_USED - 4]) {
            return Err(bad("header CRC mismatch"));
        }
        let version = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(CorruptionKind::SegmentHeader(format!(
                "format version {version}; this build reads version {FORMAT_VERSION}"
            )));
        }
        let mut prev = [0u8; 32];
        prev.copy_from_slice(&b[32..64]);
        Ok(SegmentHeader {
            id: SegmentId(u64_at(b, 16)),
            capacity: u64_at(b, 24),
            prev_hash: ChainHash(prev),
            created_ms: u64_at(b, 64),
        })
    }
}

pub(crate) fn salted_crc(salt: &[u8], bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(salt);
    h.update(bytes);
    h.finalize()
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The trailer: the last 64 bytes of a sealed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trailer {
    pub footer_offset: u64,
    pub footer_len: u64,
    /// Length of the id record, which starts at `footer_offset + footer_len`.
    pub ids_len: u64,
}

impl Trailer {
    pub(crate) fn encode(&self) -> [u8; TRAILER_LEN as usize] {
        let mut b = [0u8; TRAILER_LEN as usize];
        b[0..8].copy_from_slice(&TRAILER_MAGIC);
        b[8..16].copy_from_slice(&self.footer_offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.footer_len.to_le_bytes());
        b[24..32].copy_from_slice(&self.ids_len.to_le_bytes());
        let crc = salted_crc(&TRAILER_SALT, &b[..TRAILER_LEN as usize - 4]);
        b[TRAILER_LEN as usize - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// `None` when the trailer area is not a valid trailer (the segment is not sealed).
    pub(crate) fn decode(b: &[u8]) -> Option<Trailer> {
        if b.len() != TRAILER_LEN as usize || b[0..8] != TRAILER_MAGIC {
            return None;
        }
        let crc = u32_at(b, TRAILER_LEN as usize - 4);
        if crc != salted_crc(&TRAILER_SALT, &b[..TRAILER_LEN as usize - 4]) {
            return None;
        }
        Some(Trailer { footer_offset: u64_at(b, 8), footer_len: u64_at(b, 16), ids_len: u64_at(b, 24) })
    }
}

/// One stream's events within a segment, as the footer records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FooterStream<'a> {
    pub name: &'a str,
    pub first_version: u64,
    /// Position of each of the stream's events here, in version order.
    pub positions: &'a [u64],
    /// Their ids, or nothing if the id record was not read.
    pub ids: &'a [[u8; 16]],
}

/// Where one stream's name and events lie in a [`Footer`]'s shared buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: std::ops::Range<usize>,
    first_version: u64,
    events: std::ops::Range<usize>,
}

/// What a sealed segment's footer holds: enough to index the segment without reading it. The
/// event ids are kept in a record of their own after the footer, with their own CRC, so that open
/// reads them only for the few newest segments the idempotency window needs.
///
/// The streams' names, positions and ids are kept in three buffers shared by all streams, so that
/// decoding a footer of a hundred thousand streams allocates a handful of times, not per stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Footer {
    pub first_position: u64,
    /// Byte offset of each record, by position − first_position.
    pub offsets: Vec<u32>,
    /// One per stream with events in the segment, in name order.
    entries: Vec<Entry>,
    names: String,
    /// Every stream's positions, stream after stream in entry order.
    positions: Vec<u64>,
    /// The ids of the events in `positions`, in the same order; empty until read.
    ids: Vec<[u8; 16]>,
}

impl Footer {
    /// A footer with no streams yet: add them with [`Footer::push_stream`].
    pub(crate) fn new(first_position: u64, offsets: Vec<u32>) -> Footer {
        Footer { first_position, offsets, ..Footer::default() }
    }

    /// Adds a stream's events; streams must be added in name order, each with an id per position.
    pub(crate) fn push_stream(&mut self, name: &str, first_version: u64, positions: &[u64], ids: &[[u8; 16]]) {
        assert!(self.entries.last().is_none_or(|e| &self.names[e.name.clone()] < name), "footer streams in name order");
        assert_eq!(positions.len(), ids.len(), "an id for each position");
        assert_eq!(self.ids.len(), self.positions.len(), "ids for every stream or none");
        self.push_entry(name, first_version, positions);
        self.ids.extend_from_slice(ids);
    }

    fn push_entry(&mut self, name: &str, first_version: u64, positions: &[u64]) {
        let (names, events) = (self.names.len(), self.positions.len());
        self.names.push_str(name);
        self.positions.extend_from_slice(positions);
        self.entries.push(Entry { name: names..self.names.len(), first_version, events: events..self.positions.len() });
    }

    /// The streams, in name order.
    pub(crate) fn streams(&self) -> impl ExactSizeIterator<Item = FooterStream<'_>> {
        self.entries.iter().map(|e| FooterStream {
            name: &self.names[e.name.clone()],
            first_version: e.first_version,
            positions: &self.positions[e.events.clone()],
            ids: self.ids.get(e.events.clone()).unwrap_or_default(),
        })
    }

    /// Events the stream entries list (a valid footer lists each of its records once).
    pub(crate) fn events_listed(&self) -> usize {
        self.positions.len()
    }

    /// Footer body bytes for the given shape.
    pub(crate) fn body_len(records: usize, stream_name_bytes: usize, streams: usize) -> usize {
        FOOTER_FIXED + FOOTER_PER_RECORD * records + FOOTER_PER_STREAM * streams + stream_name_bytes
    }

    /// Bytes of the footer and id records together, for the given shape; the writer tracks this
    /// to reserve space for the seal.
    pub(crate) fn seal_len(records: usize, stream_name_bytes: usize, streams: usize) -> usize {
        record::frame_len(Footer::body_len(records, stream_name_bytes, streams))
            + record::frame_len(IDS_PER_RECORD * records)
    }

    pub(crate) fn encode_body(&self) -> Vec<u8> {
        let len = Footer::body_len(self.offsets.len(), self.names.len(), self.entries.len());
        let mut b = Vec::with_capacity(len);
        b.extend_from_slice(&self.first_position.to_le_bytes());
        b.extend_from_slice(&(self.offsets.len() as u64).to_le_bytes());
        b.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for offset in &self.offsets {
            b.extend_from_slice(&offset.to_le_bytes());
        }
        for s in self.streams() {
            b.extend_from_slice(&(s.name.len() as u16).to_le_bytes());
            b.extend_from_slice(s.name.as_bytes());
            b.extend_from_slice(&s.first_version.to_le_bytes());
            b.extend_from_slice(&(s.positions.len() as u32).to_le_bytes());
            for p in s.positions {
                b.extend_from_slice(&p.to_le_bytes());
            }
        }
        assert_eq!(b.len(), len, "footer length accounting");
        b
    }

    /// The id record's body: every stream's ids, in the footer's stream order.
    pub(crate) fn encode_ids(&self) -> Vec<u8> {
        assert_eq!(self.ids.len(), self.offsets.len(), "id record length accounting");
        self.ids.concat()
    }

    /// Fills each stream's `ids` from an id record's body.
    pub(crate) fn attach_ids(&mut self, b: &[u8]) -> Result<(), String> {
        if b.len() != IDS_PER_RECORD * self.positions.len() {
            return Err(format!("id record holds {} bytes for {} events", b.len(), self.positions.len()));
        }
        self.ids = b.chunks_exact(IDS_PER_RECORD).map(|id| <[u8; 16]>::try_from(id).expect("16 bytes")).collect();
        Ok(())
    }

    /// Decodes and cross-checks a footer body (each stream's `ids` is left empty). `data_end` is
    /// the footer's own offset: every record offset must lie below it.
    pub(crate) fn decode_body(b: &[u8], data_end: u64) -> Result<Footer, String> {
        let mut r = Reader { b, at: 0 };
        let first_position = r.u64()?;
        let count = r.u64()?;
        let stream_count = r.u32()? as usize;
        let _reserved = r.u32()?;
        // Bound the counts by the bytes present before allocating for them.
        if count > (b.len() / FOOTER_PER_RECORD) as u64 || stream_count > b.len() / FOOTER_PER_STREAM {
            return Err(format!(
                "counts ({count} records, {stream_count} streams) exceed the footer's {} bytes",
                b.len()
            ));
        }
        if first_position.checked_add(count).is_none() {
            return Err(format!("{count} records from position {first_position} overflow"));
        }
        let count = count as usize;
        let mut offsets = Vec::with_capacity(count);
        let mut prev = 0u64;
        for i in 0..count {
            let off = r.u32()?;
            if u64::from(off) < HEADER_LEN || u64::from(off) >= data_end || (i > 0 && u64::from(off) <= prev) {
                return Err(format!("record offset {off} of record {i} out of order or out of bounds"));
            }
            prev = u64::from(off);
            offsets.push(off);
        }
        let mut footer = Footer::new(first_position, offsets);
        footer.entries.reserve(stream_count);
        footer.positions.reserve(count);
        // Each position belongs to exactly one stream: the id record's order depends on it.
        let mut listed = vec![false; count];
        let mut previous: Option<&str> = None;
        let mut positions = Vec::new();
        for _ in 0..stream_count {
            let name_len = r.u16()? as usize;
            let name = std::str::from_utf8(r.bytes(name_len)?).map_err(|_| "stream name is not UTF-8".to_string())?;
            if previous.is_some_and(|p| p >= name) {
                return Err(format!("stream {name:?} is out of order or listed twice"));
            }
            previous = Some(name);
            let first_version = r.u64()?;
            let n = r.u32()? as usize;
            if n == 0 || n > count - footer.positions.len() {
                return Err(format!("stream {name:?} claims {n} events"));
            }
            positions.clear();
            for _ in 0..n {
                let p = r.u64()?;
                if p < first_position || p - first_position >= count as u64 {
                    return Err(format!("stream {name:?} lists position {p} outside the segment"));
                }
                if std::mem::replace(&mut listed[(p - first_position) as usize], true) {
                    return Err(format!("position {p} is listed twice"));
                }
                positions.push(p);
            }
            footer.push_entry(name, first_version, &positions);
        }
        if footer.positions.len() != count {
            return Err(format!("streams list {} events, the segment has {count}", footer.positions.len()));
        }
        if r.at != b.len() {
            return Err(format!("{} trailing bytes", b.len() - r.at));
        }
        Ok(footer)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.b.len() - self.at < n {
            return Err("footer ends early".to_string());
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.bytes(8)?.try_into().expect("8")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.bytes(4)?.try_into().expect("4")))
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.bytes(2)?.try_into().expect("2")))
    }
}

/// A sealed segment's seal record, its decoded footer, and where the footer lies.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub seal: FrameHeader,
    pub footer: Footer,
    pub footer_offset: u64,
    /// Where the id record lies (right after the seal record) and its length.
    pub ids_offset: u64,
    pub ids_len: u64,
}

impl Sealed {
    /// Reads the id record into each stream's `ids`.
    pub(crate) fn read_ids(&mut self, bytes: &[u8]) -> Result<(), (u64, CorruptionKind)> {
        let bad = |d: String| (self.ids_offset, CorruptionKind::Footer(format!("id record: {d}")));
        let region = &bytes[self.ids_offset as usize..(self.ids_offset + self.ids_len) as usize];
        let ids = record::decode_frame(region, region.len()).map_err(|e| bad(e.to_string()))?;
        if ids.header != (FrameHeader { kind: KIND_IDS, ..self.seal }) || ids.len as u64 != self.ids_len {
            return Err(bad("does not match the seal record".into()));
        }
        self.footer.attach_ids(ids.body).map_err(bad)
    }
}

/// The bytes a seal writes after a segment's last record: the seal record (footer body) and the
/// id record. Returns them and the seal record's length, for the trailer.
pub(crate) fn encode_seal(seal: &FrameHeader, footer: &Footer) -> (Vec<u8>, u64) {
    let (body, ids) = (footer.encode_body(), footer.encode_ids());
    let mut bytes = Vec::with_capacity(record::frame_len(body.len()) + record::frame_len(ids.len()));
    record::encode_frame(&mut bytes, seal, &body);
    let footer_len = bytes.len() as u64;
    record::encode_frame(&mut bytes, &FrameHeader { kind: KIND_IDS, ..*seal }, &ids);
    (bytes, footer_len)
}

/// Reads a sealed segment's footer through its trailer, and its id record when `with_ids` is set
/// (otherwise each stream's `ids` is left empty and the id record is not read). `Ok(None)`: no
/// valid trailer, the segment was not sealed. `Err`: a trailer exists but what it points at is
/// damaged.
pub(crate) fn read_sealed(bytes: &[u8], with_ids: bool) -> Result<Option<Sealed>, (u64, CorruptionKind)> {
    let cap = bytes.len() as u64;
    let trailer_at = cap - TRAILER_LEN;
    let Some(trailer) = Trailer::decode(&bytes[trailer_at as usize..]) else {
        return Ok(None);
    };
    let bad = |d: String| (trailer_at, CorruptionKind::Footer(d));
    let ids_offset = trailer.footer_offset.checked_add(trailer.footer_len);
    if trailer.footer_offset < HEADER_LEN
        || trailer.footer_offset % RECORD_ALIGN as u64 != 0
        || ids_offset.and_then(|at| at.checked_add(trailer.ids_len)).is_none_or(|end| end > trailer_at)
    {
        return Err(bad(format!(
            "trailer points at {}+{}+{}, outside the segment",
            trailer.footer_offset, trailer.footer_len, trailer.ids_len
        )));
    }
    let ids_offset = ids_offset.expect("checked above");
    let region = &bytes[trailer.footer_offset as usize..ids_offset as usize];
    let frame = record::decode_frame(region, region.len())
        .map_err(|e| (trailer.footer_offset, CorruptionKind::Footer(e.to_string())))?;
    if frame.header.kind != KIND_SEAL || frame.len as u64 != trailer.footer_len {
        return Err((trailer.footer_offset, CorruptionKind::Footer("trailer does not point at a seal record".into())));
    }
    let footer = Footer::decode_body(frame.body, trailer.footer_offset)
        .map_err(|d| (trailer.footer_offset, CorruptionKind::Footer(d)))?;
    let count = footer.offsets.len() as u64;
    if count == 0
        || frame.header.version != count
        || frame.header.position != footer.first_position + count - 1
        || trailer.ids_len != record::frame_len(IDS_PER_RECORD * count as usize) as u64
    {
        return Err((trailer.footer_offset, CorruptionKind::Footer("seal record disagrees with its footer".into())));
    }
    let mut sealed = Sealed {
        seal: frame.header,
        footer,
        footer_offset: trailer.footer_offset,
        ids_offset,
        ids_len: trailer.ids_len,
    };
    if with_ids {
        sealed.read_ids(bytes)?;
    }
    Ok(Some(sealed))
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
    fn header_round_trip_and_every_bit_flip() {
        let h = SegmentHeader { id: SegmentId(42), capacity: 1 << 20, prev_hash: ChainHash::genesis(), created_ms: 7 };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b).unwrap(), h);
        for bit in 0..HEADER_USED * 8 {
            let mut d = b;
            d[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&d).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn names_sort_as_positions() {
        assert_eq!(file_name(SegmentId(42)), "00000000000000000042.seg");
        assert_eq!(parse_file_name("00000000000000000042.seg"), Some(SegmentId(42)));
        assert_eq!(parse_file_name("42.seg"), None);
        assert_eq!(parse_file_name("0000000000000000004x.seg"), None);
    }

    fn footer() -> Footer {
        let mut f = Footer::new(10, vec![4096, 4200, 4400]);
        f.push_stream("a", 3, &[10, 12], &[[1; 16], [2; 16]]);
        f.push_stream("bb", 0, &[11], &[[3; 16]]);
        f
    }

    #[test]
    fn footer_round_trip_and_damage() {
        let f = footer();
        let b = f.encode_body();
        assert_eq!(b.len(), Footer::body_len(3, 3, 2));
        let mut decoded = Footer::decode_body(&b, 5000).unwrap();
        assert!(decoded.streams().all(|s| s.ids.is_empty()));
        assert_eq!(decoded.offsets, f.offsets);
        let ids = f.encode_ids();
        assert_eq!(ids.len(), 3 * IDS_PER_RECORD);
        decoded.attach_ids(&ids).unwrap();
        assert_eq!(decoded, f);
        // An id record of the wrong length is refused.
        assert!(decoded.attach_ids(&ids[..ids.len() - 16]).is_err());
        // An offset at or beyond the footer's own position is refused.
        assert!(Footer::decode_body(&b, 4400).is_err());
        // A CRC-valid footer whose stream entries could pair ids with the wrong events: stream
        // "bb" (its entry at byte 67) claiming stream "a"'s position 10, or sorted before "a".
        let bb = 24 + 3 * 4 + (2 + 1 + 8 + 4 + 2 * 8);
        let mut twice = b.clone();
        twice[bb + 2 + 2 + 8 + 4..bb + 2 + 2 + 8 + 4 + 8].copy_from_slice(&10u64.to_le_bytes());
        assert_eq!(Footer::decode_body(&twice, 5000).unwrap_err(), "position 10 is listed twice");
        let mut unsorted = b.clone();
        unsorted[bb + 2..bb + 4].copy_from_slice(b"0b");
        assert!(Footer::decode_body(&unsorted, 5000).unwrap_err().contains("out of order"));
        for cut in 0..b.len() {
            assert!(Footer::decode_body(&b[..cut], 5000).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn trailer_round_trip_and_every_bit_flip() {
        let t = Trailer { footer_offset: 8192, footer_len: 400, ids_len: 128 };
        let b = t.encode();
        assert_eq!(Trailer::decode(&b), Some(t));
        for bit in 0..b.len() * 8 {
            let mut d = b;
            d[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(Trailer::decode(&d), None, "bit {bit}");
        }
    }
}
