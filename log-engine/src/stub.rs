//! The stub an evicted segment leaves in `log/` (tier.rs has the design; docs/format.md
//! "Stub files" every byte): the segment's digest and the byte ranges open needs without the
//! records' bodies, and its crash-safe write.

use std::path::{Path, PathBuf};

use crate::cast::usize_of;
use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::ids::SegmentId;
use crate::mmap::Mapping;
use crate::record;
use crate::segment::{self, HEADER_USED, TRAILER_LEN};

/// The first bytes of every stub file.
pub const STUB_MAGIC: [u8; 8] = *b"CAIRNSTB";
/// The stub format this build writes and reads.
pub const STUB_VERSION: u32 = 1;
/// Bytes before a stub's first range: magic, version, range count, segment id, capacity,
/// the segment's BLAKE3.
pub const STUB_HEADER_LEN: usize = 8 + 4 + 4 + 8 + 8 + 32;
/// Most ranges one stub may list (a segment's header, its `$lifecycle` records, footer and
/// trailer); a larger count is damage.
pub const STUB_RANGES_MAX: u32 = 1 << 20;
/// The file a stub is written to before it is renamed into place (a `.tmp`: a writer's open
/// removes it).
pub(crate) const STUB_TMP: &str = "evict.tmp";

/// A stub's file name: `<first position, 20 digits>.stub`.
pub(crate) fn stub_name(id: SegmentId) -> String {
    format!("{:020}.stub", id.0)
}

/// Parses a stub's file name back to its segment's id.
pub(crate) fn parse_stub_name(name: &str) -> Option<SegmentId> {
    let digits = name.strip_suffix(".stub")?;
    segment::parse_file_name(&format!("{digits}.seg"))
}

/// A stub: segment `id`'s digest and the byte ranges kept from it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Stub {
    pub id: SegmentId,
    pub capacity: u64,
    pub digest: blake3::Hash,
    /// (offset, bytes) in offset order, not overlapping, inside the capacity.
    pub ranges: Vec<(u64, Vec<u8>)>,
}

impl Stub {
    /// The stub of sealed segment `id` whose whole file is `bytes`, keeping the records at
    /// `kept` (sorted offsets) besides the header, footer and trailer.
    pub(crate) fn of(id: SegmentId, bytes: &[u8], kept: &[u64]) -> std::result::Result<Stub, String> {
        let cap = bytes.len() as u64;
        let trailer_at = cap - TRAILER_LEN;
        let trailer = segment::Trailer::decode(&bytes[usize_of(trailer_at)..])
            .ok_or_else(|| format!("segment {id} has no valid trailer: only a sealed segment is evicted"))?;
        let mut ranges = vec![(0, bytes[..HEADER_USED].to_vec())];
        for &at in kept {
            let len = record::frame_len(record::body_len_at(bytes, at)) as u64;
            ranges.push((at, bytes[usize_of(at)..usize_of(at + len)].to_vec()));
        }
        // The footer, not the id record: only segments the idempotency window reaches have
        // their ids read, and those are never evicted.
        let tail = trailer.footer_offset..trailer.footer_offset + trailer.footer_len;
        ranges.push((tail.start, bytes[usize_of(tail.start)..usize_of(tail.end)].to_vec()));
        ranges.push((trailer_at, bytes[usize_of(trailer_at)..].to_vec()));
        Ok(Stub { id, capacity: cap, digest: blake3::hash(bytes), ranges })
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(STUB_HEADER_LEN + self.ranges.iter().map(|(_, b)| 16 + b.len()).sum::<usize>());
        out.extend_from_slice(&STUB_MAGIC);
        out.extend_from_slice(&STUB_VERSION.to_le_bytes());
        let count = u32::try_from(self.ranges.len()).expect("a stub's ranges are bounded by its segment's records");
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&self.id.0.to_le_bytes());
        out.extend_from_slice(&self.capacity.to_le_bytes());
        out.extend_from_slice(self.digest.as_bytes());
        for (at, bytes) in &self.ranges {
            out.extend_from_slice(&at.to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        let check = blake3::hash(&out);
        out.extend_from_slice(check.as_bytes());
        out
    }

    /// Parses a stub, checking its checksum, that it is of segment `id`, and that its ranges
    /// are ordered, apart and inside the capacity. The error says what is wrong.
    pub(crate) fn decode(b: &[u8], id: SegmentId) -> std::result::Result<Stub, String> {
        if b.len() < STUB_HEADER_LEN + 32 {
            return Err(format!("{} bytes is too short for a stub", b.len()));
        }
        let (body, check) = b.split_at(b.len() - 32);
        if blake3::hash(body).as_bytes() != check {
            return Err("its checksum does not match its contents".into());
        }
        let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        if body[..8] != STUB_MAGIC {
            return Err("it does not start with the stub magic CAIRNSTB".into());
        }
        if u32_at(8) != STUB_VERSION {
            return Err(format!("stub format version {} is not {STUB_VERSION}", u32_at(8)));
        }
        let count = u32_at(12);
        if count > STUB_RANGES_MAX {
            return Err(format!("it lists {count} ranges, above the limit of {STUB_RANGES_MAX}"));
        }
        let (stub_id, capacity) = (SegmentId(u64_at(16)), u64_at(24));
        if stub_id != id {
            return Err(format!("it is the stub of segment {stub_id}, not of {id}"));
        }
        let digest = blake3::Hash::from_bytes(body[32..64].try_into().expect("32 bytes"));
        let mut ranges = Vec::with_capacity(usize_of(u64::from(count)));
        let (mut at, mut end) = (STUB_HEADER_LEN, 0u64);
        for i in 0..count {
            if body.len() - at < 16 {
                return Err(format!("range {i} is cut short"));
            }
            let (offset, len) = (u64_at(at), u64_at(at + 8));
            at += 16;
            let inside = offset.checked_add(len).is_some_and(|e| e <= capacity);
            if offset < end || !inside || len > (body.len() - at) as u64 {
                return Err(format!("range {i} ({len} bytes at offset {offset}) overlaps or leaves the segment"));
            }
            ranges.push((offset, body[at..at + usize_of(len)].to_vec()));
            at += usize_of(len);
            end = offset + len;
        }
        if at != body.len() {
            return Err(format!("{} bytes follow its last range", body.len() - at));
        }
        Ok(Stub { id, capacity, digest, ranges })
    }

    /// The read-only map open reads the segment's header, footer and kept records from.
    pub(crate) fn to_map(&self) -> std::io::Result<Mapping> {
        Mapping::of_ranges(self.capacity, &self.ranges)
    }

    /// The map an open log keeps for the evicted segment: [`Stub::to_map`] without the footer
    /// (the seal record). Open decodes the footer into the index and nothing reads it from the
    /// stub again, so an evicted segment holds no copy of it in memory (12 bytes per event:
    /// docs/benchmarks.md).
    pub(crate) fn resident_map(&self) -> std::io::Result<Mapping> {
        let seal = self.ranges.len() - 2;
        let resident: Vec<(u64, Vec<u8>)> =
            self.ranges.iter().enumerate().filter(|(i, _)| *i != seal).map(|(_, r)| r.clone()).collect();
        Mapping::of_ranges(self.capacity, &resident)
    }
}

/// Writes `stub` as `log_dir/<id>.stub`, crash-safe: a temporary file, fdatasync, rename, fsync
/// of the directory.
pub(crate) fn write_stub(fs: &dyn FileSystem, log_dir: &Path, stub: &Stub) -> Result<PathBuf> {
    let tmp = log_dir.join(STUB_TMP);
    let path = log_dir.join(stub_name(stub.id));
    let _ = fs.remove(&tmp);
    let file = fs.create(&tmp).map_err(|e| Error::io("create stub", &tmp, e))?;
    let written = file
        .write_all_at(&stub.encode(), 0)
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io("write stub", &tmp, e))
        .and_then(|()| fs.rename(&tmp, &path).map_err(|e| Error::io("rename stub", &path, e)));
    if let Err(e) = written {
        let _ = fs.remove(&tmp);
        return Err(e);
    }
    fs.sync_dir(log_dir).map_err(|e| Error::io("fsync directory after writing a stub", log_dir, e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Stub {
        Stub {
            id: SegmentId(7),
            capacity: 1 << 20,
            digest: blake3::hash(b"segment"),
            ranges: vec![(0, vec![1; 128]), (4096, vec![2; 64]), ((1 << 20) - 64, vec![3; 64])],
        }
    }

    #[test]
    fn a_stub_round_trips_and_rebuilds_its_ranges_at_their_offsets() {
        let stub = sample();
        assert_eq!(Stub::decode(&stub.encode(), SegmentId(7)).unwrap(), stub);
        let map = stub.to_map().unwrap();
        assert_eq!(map.mapped_len(), 1 << 20);
        assert_eq!(&map.bytes()[4096..4160], &[2; 64]);
        assert!(map.bytes()[4160..8192].iter().all(|b| *b == 0));
    }

    #[test]
    fn the_resident_map_keeps_all_but_the_footer() {
        let stub = sample();
        let map = stub.resident_map().unwrap();
        assert_eq!(map.mapped_len(), 1 << 20);
        assert_eq!(&map.bytes()[..128], &[1; 128], "the header");
        assert_eq!(&map.bytes()[(1 << 20) - 64..], &[3; 64], "the trailer");
        assert!(map.bytes()[4096..4160].iter().all(|b| *b == 0), "the footer is not kept");
    }

    #[test]
    fn every_flipped_bit_of_a_stub_is_refused() {
        let bytes = sample().encode();
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(Stub::decode(&b, SegmentId(7)).is_err(), "bit {i}");
        }
        assert!(Stub::decode(&bytes, SegmentId(8)).unwrap_err().contains("it is the stub of segment"));
        assert!(Stub::decode(&bytes[..bytes.len() - 1], SegmentId(7)).is_err());
    }

    #[test]
    fn stub_names_round_trip() {
        assert_eq!(parse_stub_name(&stub_name(SegmentId(42))), Some(SegmentId(42)));
        assert_eq!(parse_stub_name("42.stub"), None);
        assert_eq!(parse_stub_name(&segment::file_name(SegmentId(42))), None);
    }
}
