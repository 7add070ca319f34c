//! A sealed segment's footer (the seal record's body: every record's offset and, per stream, its
//! positions), its id record, and how they are found through the trailer; and the builder the
//! writer and open keep for the active segment's footer.

use super::header::Trailer;
use super::layout::{FOOTER_FIXED, FOOTER_PER_RECORD, FOOTER_PER_STREAM, HEADER_LEN, IDS_PER_RECORD, TRAILER_LEN};
use std::collections::HashMap;

use uuid::Uuid;

use crate::cast::usize_of;
use crate::error::{CorruptionKind, FooterDamage, SealRecord};
use crate::record::{self, FrameHeader, KIND_IDS, KIND_SEAL, RECORD_ALIGN};

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

    /// The same footer for records moved to `offsets` (a scavenge's rewrite: the same records,
    /// some of them husks, at new offsets).
    pub(crate) fn with_offsets(&self, offsets: Vec<u32>) -> Footer {
        assert_eq!(offsets.len(), self.offsets.len(), "a rewrite keeps every record");
        Footer { offsets, ..self.clone() }
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
        // Narrowed checked: a count or length that did not fit its field would misstate the footer.
        let streams = u32::try_from(self.entries.len()).expect("fewer streams than records in a segment");
        b.extend_from_slice(&streams.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for offset in &self.offsets {
            b.extend_from_slice(&offset.to_le_bytes());
        }
        for s in self.streams() {
            b.extend_from_slice(&u16::try_from(s.name.len()).expect("stream names fit a u16 length").to_le_bytes());
            b.extend_from_slice(s.name.as_bytes());
            b.extend_from_slice(&s.first_version.to_le_bytes());
            let count = u32::try_from(s.positions.len()).expect("fewer events than bytes in a segment");
            b.extend_from_slice(&count.to_le_bytes());
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
    pub(crate) fn attach_ids(&mut self, b: &[u8]) -> Result<(), FooterDamage> {
        if b.len() != IDS_PER_RECORD * self.positions.len() {
            return Err(FooterDamage::IdsLength { bytes: b.len(), events: self.positions.len() });
        }
        self.ids = b.chunks_exact(IDS_PER_RECORD).map(|id| <[u8; 16]>::try_from(id).expect("16 bytes")).collect();
        Ok(())
    }

    /// Decodes and cross-checks a footer body (each stream's `ids` is left empty). `data_end` is
    /// the footer's own offset: every record offset must lie below it.
    pub(crate) fn decode_body(b: &[u8], data_end: u64) -> Result<Footer, FooterDamage> {
        let mut r = Reader { b, at: 0 };
        let first_position = r.u64()?;
        let count = r.u64()?;
        let stream_count = r.u32()? as usize;
        let _reserved = r.u32()?;
        // Bound the counts by the bytes present before allocating for them.
        if count > (b.len() / FOOTER_PER_RECORD) as u64 || stream_count > b.len() / FOOTER_PER_STREAM {
            return Err(FooterDamage::Counts { records: count, streams: stream_count, bytes: b.len() });
        }
        if first_position.checked_add(count).is_none() {
            return Err(FooterDamage::PositionsOverflow { first_position, records: count });
        }
        let count = usize_of(count);
        let mut offsets = Vec::with_capacity(count);
        let mut prev = 0u64;
        for i in 0..count {
            let off = r.u32()?;
            if u64::from(off) < HEADER_LEN || u64::from(off) >= data_end || (i > 0 && u64::from(off) <= prev) {
                return Err(FooterDamage::RecordOffset { record: i, offset: off });
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
            let name = std::str::from_utf8(r.bytes(name_len)?).map_err(|_| FooterDamage::StreamNameUtf8)?;
            if previous.is_some_and(|p| p >= name) {
                return Err(FooterDamage::StreamOrder { stream: name.to_string() });
            }
            previous = Some(name);
            let first_version = r.u64()?;
            let n = r.u32()? as usize;
            if n == 0 || n > count - footer.positions.len() {
                return Err(FooterDamage::StreamEvents { stream: name.to_string(), events: n });
            }
            positions.clear();
            for _ in 0..n {
                let p = r.u64()?;
                if p < first_position || p - first_position >= count as u64 {
                    return Err(FooterDamage::PositionOutside { stream: name.to_string(), position: p });
                }
                if std::mem::replace(&mut listed[usize_of(p - first_position)], true) {
                    return Err(FooterDamage::PositionTwice { position: p });
                }
                positions.push(p);
            }
            footer.push_entry(name, first_version, &positions);
        }
        if footer.positions.len() != count {
            return Err(FooterDamage::EventCount { listed: footer.positions.len() as u64, records: count as u64 });
        }
        if r.at != b.len() {
            return Err(FooterDamage::TrailingBytes { bytes: b.len() - r.at });
        }
        Ok(footer)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], FooterDamage> {
        if self.b.len() - self.at < n {
            return Err(FooterDamage::EndsEarly);
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u64(&mut self) -> Result<u64, FooterDamage> {
        Ok(u64::from_le_bytes(self.bytes(8)?.try_into().expect("8")))
    }
    fn u32(&mut self) -> Result<u32, FooterDamage> {
        Ok(u32::from_le_bytes(self.bytes(4)?.try_into().expect("4")))
    }
    fn u16(&mut self) -> Result<u16, FooterDamage> {
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
        let bad = |d| (self.ids_offset, CorruptionKind::footer(d));
        let region = &bytes[usize_of(self.ids_offset)..usize_of(self.ids_offset + self.ids_len)];
        let ids = record::decode_frame(region, region.len())
            .map_err(|e| bad(FooterDamage::Record { record: SealRecord::Ids, damage: e.into() }))?;
        if ids.header != (FrameHeader { kind: KIND_IDS, ..self.seal }) || ids.len as u64 != self.ids_len {
            return Err(bad(FooterDamage::IdsDisagree));
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
    let Some(trailer) = Trailer::decode(&bytes[usize_of(trailer_at)..]) else {
        return Ok(None);
    };
    let bad = |d| (trailer_at, CorruptionKind::footer(d));
    let ids_offset = trailer.footer_offset.checked_add(trailer.footer_len);
    if trailer.footer_offset < HEADER_LEN
        || trailer.footer_offset % RECORD_ALIGN as u64 != 0
        || ids_offset.and_then(|at| at.checked_add(trailer.ids_len)).is_none_or(|end| end > trailer_at)
    {
        return Err(bad(FooterDamage::TrailerOutside {
            footer_offset: trailer.footer_offset,
            footer_len: trailer.footer_len,
            ids_len: trailer.ids_len,
        }));
    }
    let ids_offset = ids_offset.expect("checked above");
    let region = &bytes[usize_of(trailer.footer_offset)..usize_of(ids_offset)];
    let bad = |d| (trailer.footer_offset, CorruptionKind::footer(d));
    let frame = record::decode_frame(region, region.len())
        .map_err(|e| bad(FooterDamage::Record { record: SealRecord::Seal, damage: e.into() }))?;
    if frame.header.kind != KIND_SEAL || frame.len as u64 != trailer.footer_len {
        return Err(bad(FooterDamage::NotASeal));
    }
    let footer = Footer::decode_body(frame.body, trailer.footer_offset).map_err(bad)?;
    let count = footer.offsets.len() as u64;
    if count == 0
        || frame.header.version != count
        || frame.header.position != footer.first_position + count - 1
        || trailer.ids_len != record::frame_len(IDS_PER_RECORD * usize_of(count)) as u64
    {
        return Err(bad(FooterDamage::SealDisagrees));
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

/// What the writer tracks of the active segment for its footer.
#[derive(Debug, Default)]
pub(crate) struct FooterBuilder {
    pub offsets: Vec<u32>,
    /// Hashed, not ordered: a segment may hold 100,000 streams, and every run staged (or found by
    /// open in the active segment) looks its stream up. Sorted once, at seal.
    pub streams: HashMap<String, SegmentStream, foldhash::fast::RandomState>,
    pub name_bytes: usize,
}

/// One stream's events in the active segment so far.
#[derive(Debug, Default)]
pub(crate) struct SegmentStream {
    first_version: u64,
    positions: Vec<u64>,
    ids: Vec<[u8; 16]>,
}

impl FooterBuilder {
    /// Bytes the seal (footer and id records) will take with this many more records and streams.
    pub(crate) fn seal_len_with(&self, records: usize, new_streams: usize, new_name_bytes: usize) -> u64 {
        Footer::seal_len(
            self.offsets.len() + records,
            self.name_bytes + new_name_bytes,
            self.streams.len() + new_streams,
        ) as u64
    }

    /// Records consecutive events of one stream: (offset, position, id) from `first_version` on.
    pub(crate) fn push_run(&mut self, stream: &str, first_version: u64, run: &[(u64, u64, Uuid)]) {
        self.offsets.extend(run.iter().map(|r| u32::try_from(r.0).expect("segment offsets fit in u32")));
        let s = match self.streams.get_mut(stream) {
            Some(s) => s,
            None => {
                self.name_bytes += stream.len();
                self.streams.entry(stream.to_string()).or_insert(SegmentStream { first_version, ..Default::default() })
            }
        };
        assert_eq!(s.first_version + s.positions.len() as u64, first_version, "stream {stream} version gap in segment");
        s.positions.extend(run.iter().map(|r| r.1));
        s.ids.extend(run.iter().map(|r| *r.2.as_bytes()));
    }

    pub(crate) fn footer(&self, first_position: u64) -> Footer {
        let mut footer = Footer::new(first_position, self.offsets.clone());
        let mut streams: Vec<_> = self.streams.iter().collect();
        streams.sort_unstable_by_key(|(name, _)| *name);
        for (name, s) in streams {
            footer.push_stream(name, s.first_version, &s.positions, &s.ids);
        }
        footer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(Footer::decode_body(&twice, 5000).unwrap_err(), FooterDamage::PositionTwice { position: 10 });
        let mut unsorted = b.clone();
        unsorted[bb + 2..bb + 4].copy_from_slice(b"0b");
        assert_eq!(
            Footer::decode_body(&unsorted, 5000).unwrap_err(),
            FooterDamage::StreamOrder { stream: "0b".to_string() }
        );
        for cut in 0..b.len() {
            assert!(Footer::decode_body(&b[..cut], 5000).is_err(), "cut at {cut}");
        }
    }
}
