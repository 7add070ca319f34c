//! Recovery of the newest (unsealed) segment at open.
//!
//! The scan decodes records from the header on, checking each CRC, frame and position, and
//! stops at zero-filled space with nothing non-zero after it. Only complete batches count:
//! records after the last BATCH_END belong to an append that was never acknowledged. The chain
//! hash is not recomputed here (that costs a BLAKE3 of every payload and would make open cost
//! several times more); a CRC-valid record with a wrong chain hash can only come from a bug or
//! deliberate tampering, and `Log::verify` reports it.
//!
//! Damage is classified with the durable watermark each record carries (the offset that was
//! already fdatasynced when it was written). Damage at offset X is a *torn tail* when no intact
//! record anywhere after it claims a watermark above X: those bytes were never acknowledged, so
//! they are cut (kept in `torn/` for inspection) and the log continues from the last complete
//! batch. If a later record proves X was durable, it is *corruption*: open fails and names the
//! location. CRC-valid records with a wrong position or an undecodable body are always
//! corruption, and so is a zero-filled hole with intact records after it.
//!
//! Limitation, stated in docs/format.md: damage inside the newest durable group, with nothing
//! written after it, cannot be told from a torn write and is cut as one.

use std::path::Path;

use uuid::Uuid;

use crate::cast::usize_of;
use crate::dir;
use crate::error::{CorruptionKind, Error, FrameDamage, Result};
use crate::fs::{FileSystem, StorageFile};
use crate::mmap::Mapping;
use crate::record::{self, FrameError, EVENT_BODY_MAX, FLAG_BATCH_END, RECORD_ALIGN};
use crate::segment::{self, SegmentHeader, HEADER_LEN};
use crate::types::{Position, Recovery, SegmentId};

/// Where a reader stopped short of the newest segment's end: damage, or a torn or unfinished
/// batch. A writer's open would cut a torn tail there (or, for `corrupt`, refuse to open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadStop {
    pub segment: SegmentId,
    /// Byte offset of the first byte not shown.
    pub offset: u64,
    /// The position the first record not shown would have had.
    pub position: Option<Position>,
    /// True when later records prove the damaged bytes had been acknowledged (corruption);
    /// false for a torn tail, which a writer's open cuts.
    pub corrupt: bool,
    /// What was found there (its `Display` is a sentence fragment).
    pub kind: CorruptionKind,
}

/// One intact record found by the scan.
#[derive(Debug)]
pub(crate) struct Scanned {
    pub offset: u64,
    pub position: u64,
    pub stream: String,
    pub version: u64,
    pub id: Uuid,
    pub hash: crate::types::ChainHash,
}

#[derive(Debug)]
pub(crate) struct Scan {
    /// Records of complete batches, in order.
    pub records: Vec<Scanned>,
    /// End of the last complete batch: where the writer continues.
    pub end: u64,
    pub last_timestamp_ms: u64,
}

struct Damage {
    offset: u64,
    position: Option<u64>,
    kind: CorruptionKind,
    /// A CRC or framing failure, which a torn write can cause. Anything else cannot.
    tearable: bool,
}

/// What one pass over a segment's records found.
struct Walk {
    records: Vec<Scanned>,
    /// Records of complete batches (a prefix of `records`).
    complete: usize,
    complete_end: u64,
    complete_ts: u64,
    last_ts: u64,
    /// Where the pass ended.
    offset: u64,
    damage: Option<Damage>,
}

/// Decodes records from `start` (an offset and the position of the record there) up to
/// `usable_end`, stopping at unwritten space or the first damage. Reads only
/// `bytes[..usable_end]`.
fn walk(bytes: &[u8], start: (u64, u64), usable_end: u64) -> Walk {
    let mut records: Vec<Scanned> = Vec::new();
    let mut complete = 0usize;
    let mut complete_end = start.0;
    let mut last_ts = 0u64;
    let mut complete_ts = 0u64;
    let mut offset = start.0;
    let mut damage: Option<Damage> = None;
    while offset < usable_end {
        let position = start.1 + records.len() as u64;
        let frame = match segment::frame_at(bytes, offset, usable_end) {
            Err(FrameError::Zero) => {
                // Unwritten space, unless something follows: then this is a hole (a lost or
                // zeroed sector), and the watermark rule decides what it is.
                if last_nonzero_end(bytes, offset, usable_end) > offset {
                    damage = Some(Damage {
                        offset,
                        position: Some(position),
                        kind: CorruptionKind::RecordFrame(FrameDamage::ZeroBeforeData),
                        tearable: true,
                    });
                }
                break;
            }
            Err(e) => {
                damage = Some(Damage { offset, position: Some(position), kind: e.into(), tearable: true });
                break;
            }
            Ok(frame) => frame,
        };
        if !record::is_event_kind(frame.header.kind) || frame.body.len() > EVENT_BODY_MAX {
            // A seal record without its trailer: the seal was torn. The footer is derived
            // data, so cutting it loses nothing.
            damage = Some(Damage {
                offset,
                position: Some(position),
                kind: CorruptionKind::RecordFrame(FrameDamage::SealWithoutTrailer),
                tearable: true,
            });
            break;
        }
        if frame.header.position != position {
            damage = Some(Damage {
                offset,
                position: Some(position),
                kind: CorruptionKind::PositionGap {
                    expected: Position(position),
                    found: Position(frame.header.position),
                },
                tearable: false,
            });
            break;
        }
        let (stream, id) = match record::decode_index_fields(&frame) {
            Ok(fields) => fields,
            Err(d) => {
                damage = Some(Damage {
                    offset,
                    position: Some(position),
                    kind: CorruptionKind::RecordBody(d),
                    tearable: false,
                });
                break;
            }
        };
        last_ts = last_ts.max(frame.header.timestamp_ms);
        records.push(Scanned { offset, position, stream, version: frame.header.version, id, hash: frame.header.hash });
        offset += frame.len as u64;
        if frame.header.flags & FLAG_BATCH_END != 0 {
            complete = records.len();
            complete_end = offset;
            complete_ts = last_ts;
        }
    }

    Walk { records, complete, complete_end, complete_ts, last_ts, offset, damage }
}

pub(crate) fn scan_newest(
    dir: &Path,
    fs: &dyn FileSystem,
    file: &dyn StorageFile,
    header: &SegmentHeader,
    mode: Recovery,
) -> Result<Scan> {
    let id = header.id;
    let usable_end = segment::usable_end(header.capacity);
    let path = dir::log_dir(dir).join(segment::file_name(id));
    let probe = Mapping::new(file.as_file(), header.capacity).map_err(|e| Error::io("map segment", &path, e))?;
    let bytes = probe.bytes();

    let Walk { mut records, complete, complete_end, complete_ts, last_ts, offset, damage } =
        walk(bytes, (HEADER_LEN, id.0), usable_end);
    let incomplete = records.len() > complete;
    if damage.is_none() && !incomplete {
        return Ok(Scan { records, end: complete_end, last_timestamp_ms: last_ts });
    }
    // Where the first missing byte is: the damaged frame, or the zeros that cut a batch short.
    let (damage_at, position, kind, tearable) = match damage {
        Some(d) => (d.offset, d.position, d.kind, d.tearable),
        None => {
            (offset, Some(id.0 + records.len() as u64), CorruptionKind::RecordFrame(FrameDamage::BatchEndsEarly), true)
        }
    };
    let proof = if tearable { later_watermark_above(bytes, damage_at, usable_end) } else { None };
    let corrupt = !tearable || proof.is_some();
    let tail_end = last_nonzero_end(bytes, complete_end, usable_end);
    drop(probe);

    if corrupt && mode != Recovery::SalvageNewestSegment {
        let kind = proven(kind, proof);
        return Err(Error::Corrupt { segment: id, offset: damage_at, position: position.map(Position), kind });
    }
    if !corrupt && mode == Recovery::Strict {
        return Err(Error::TornTail { segment: id, offset: complete_end, bytes: tail_end - complete_end });
    }
    cut_tail(dir, fs, file, &path, id, complete_end, tail_end)?;
    if corrupt {
        tracing::error!(segment = %id, offset = damage_at, cut_from = complete_end, bytes = tail_end - complete_end,
            "salvage: cut the newest segment at corruption; acknowledged events after it are lost");
    } else {
        tracing::warn!(segment = %id, offset = complete_end, bytes = tail_end - complete_end, detail = %kind,
            "cut a torn tail; the bytes are kept in torn/");
    }
    records.truncate(complete);
    Ok(Scan { records, end: complete_end, last_timestamp_ms: complete_ts })
}

/// A reader's scan of the newest segment from `start` (an offset where a batch begins, and the
/// position of the record there): the same checks as [`scan_newest`], but it changes nothing.
/// It reads no further than `limit` (a live writer's published, durable offset) when one is
/// given, and where a writer's open would cut a torn tail or refuse, it stops at the last
/// complete batch and says where.
pub(crate) fn scan_readable(
    file: &dyn StorageFile,
    header: &SegmentHeader,
    start: (u64, u64),
    limit: Option<u64>,
    path: &Path,
) -> Result<(Scan, Option<ReadStop>)> {
    let id = header.id;
    let usable_end = segment::usable_end(header.capacity);
    let end = limit.map_or(usable_end, |limit| limit.clamp(start.0, usable_end));
    // Only `end` bytes are readable through this map: beyond a live writer's limit the bytes
    // may be being written.
    let probe = Mapping::new(file.as_file(), end).map_err(|e| Error::io("map segment", path, e))?;
    let bytes = probe.bytes();
    let Walk { mut records, complete, complete_end, complete_ts, offset, damage, .. } = walk(bytes, start, end);
    let stop = if damage.is_none() && records.len() == complete {
        None
    } else {
        let (damage_at, position, kind, tearable) = match damage {
            Some(d) => (d.offset, d.position, d.kind, d.tearable),
            None => (
                offset,
                Some(start.1 + records.len() as u64),
                CorruptionKind::RecordFrame(FrameDamage::BatchEndsEarly),
                true,
            ),
        };
        let proof = if tearable { later_watermark_above(bytes, damage_at, end) } else { None };
        let corrupt = !tearable || proof.is_some();
        let kind = proven(kind, proof);
        Some(ReadStop { segment: id, offset: damage_at, position: position.map(Position), corrupt, kind })
    };
    records.truncate(complete);
    Ok((Scan { records, end: complete_end, last_timestamp_ms: complete_ts }, stop))
}

/// The damage as found, or, when a later record's watermark proves the bytes were durable,
/// that damage below the watermark.
fn proven(kind: CorruptionKind, proof: Option<u64>) -> CorruptionKind {
    match proof {
        Some(watermark) => CorruptionKind::BelowWatermark { watermark, damage: Box::new(kind) },
        None => kind,
    }
}

/// The highest watermark claimed by an intact event record after `damage_at`, if it is above
/// `damage_at` (proof that the damaged bytes had been durable).
fn later_watermark_above(bytes: &[u8], damage_at: u64, usable_end: u64) -> Option<u64> {
    let mut best = None;
    let mut at = damage_at + RECORD_ALIGN as u64;
    while at + record::FRAME_HEADER_LEN as u64 <= usable_end {
        // Cheap reject first: unwritten space has a zero kind byte.
        if record::is_event_kind(bytes[usize_of(at) + 8]) {
            if let Ok(frame) = segment::frame_at(bytes, at, usable_end) {
                if frame.header.watermark > damage_at {
                    best = best.max(Some(frame.header.watermark));
                }
            }
        }
        at += RECORD_ALIGN as u64;
    }
    best
}

/// End (8-aligned) of the last non-zero byte in `[from, to)`, or `from` if all are zero.
/// Compares whole pages against zeros first (a vectorised memcmp): at open this runs over the
/// unwritten rest of the active segment.
fn last_nonzero_end(bytes: &[u8], from: u64, to: u64) -> u64 {
    const PAGE: usize = 4096;
    static ZEROS: [u8; PAGE] = [0; PAGE];
    let region = &bytes[usize_of(from)..usize_of(to)];
    let mut end = region.len();
    while end > 0 {
        let start = end.saturating_sub(PAGE);
        let chunk = &region[start..end];
        if chunk != &ZEROS[..chunk.len()] {
            let i = start + chunk.iter().rposition(|&b| b != 0).expect("the chunk is not all zeros");
            return (from + i as u64 + 1).next_multiple_of(RECORD_ALIGN as u64).min(to);
        }
        end = start;
    }
    from
}

/// Keeps `[from, to)` in `torn/` and zeroes it in the segment, durably.
fn cut_tail(
    dir: &Path,
    fs: &dyn FileSystem,
    file: &dyn StorageFile,
    path: &Path,
    id: crate::types::SegmentId,
    from: u64,
    to: u64,
) -> Result<()> {
    if to <= from {
        return Ok(());
    }
    let mut cut = vec![0u8; usize_of(to - from)];
    file.read_exact_at(&mut cut, from).map_err(|e| Error::io("read torn tail", path, e))?;
    let torn_dir = dir::torn_dir(dir);
    dir::create_dir_durable(&torn_dir)?;
    let keep = torn_dir.join(format!("{id}-{from}.bin"));
    let _ = fs.remove(&keep);
    let kept = fs.create(&keep).map_err(|e| Error::io("create", &keep, e))?;
    kept.write_all_at(&cut, 0).and_then(|()| kept.sync_data()).map_err(|e| Error::io("write", &keep, e))?;
    fs.sync_dir(&torn_dir).map_err(|e| Error::io("fsync directory", &torn_dir, e))?;
    cut.fill(0);
    file.write_all_at(&cut, from).map_err(|e| Error::io("zero torn tail", path, e))?;
    file.sync_data().map_err(|e| Error::io("fdatasync", path, e))?;
    Ok(())
}
