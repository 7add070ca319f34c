//! Verification: every record's CRC, the position sequence, the chain hash, and each sealed
//! segment's footer, from the start of the log or from a trusted (position, hash) pair.

use std::sync::Arc;

use crate::error::{CorruptionKind, Error, Result};
use crate::log::{decode_committed, Log};
use crate::mmap::Mapping;
use crate::record;
use crate::types::{ChainHash, Head, Position, SegmentId};

/// What [`Log::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub ok: bool,
    /// Events whose CRC and chain hash were checked.
    pub events: u64,
    pub head: Option<Head>,
    pub first_bad_position: Option<Position>,
    /// What was wrong and where, as a sentence.
    pub detail: Option<String>,
}

/// Progress of a verification, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyProgress {
    pub checked: u64,
    pub total: u64,
}

impl Log {
    /// Checks CRCs and the chain from `trusted` (whose hash is taken as given) or from
    /// position 0. Damage is a report, not an `Err`; `Err` means the check itself failed.
    pub fn verify(&self, trusted: Option<Head>, mut progress: impl FnMut(VerifyProgress)) -> Result<VerifyReport> {
        let shared = self.shared_arc();
        let (spans, head) = {
            let index = shared.index.read();
            let spans: Vec<(SegmentId, Arc<Mapping>, Vec<u32>, bool)> =
                index.segments.iter().map(|s| (s.id, s.map.clone(), s.offsets.clone(), s.sealed)).collect();
            (spans, index.head().map(|(position, hash)| Head { position, hash }))
        };
        let total = head.map_or(0, |h| h.position.0 + 1);
        let (start, mut prev) = match trusted {
            Some(t) => {
                if t.position.0 >= total {
                    return Err(Error::PositionNotFound { position: t.position });
                }
                (t.position.0 + 1, t.hash)
            }
            None => (0, ChainHash::genesis()),
        };
        let mut report = VerifyReport { ok: true, events: 0, head, first_bad_position: None, detail: None };
        if let Some(t) = trusted {
            let stored = self.read_event(t.position);
            if stored.as_ref().map(|e| e.hash).ok() != Some(t.hash) {
                report.ok = false;
                report.first_bad_position = Some(t.position);
                report.detail = Some(format!("the stored hash at position {} is not the trusted one", t.position));
                return Ok(report);
            }
        }
        let fail = |report: &mut VerifyReport, position: u64, e: Error| {
            report.ok = false;
            report.first_bad_position = Some(Position(position));
            report.detail = Some(e.to_string());
        };
        for (segment, map, offsets, sealed) in spans {
            let first = segment.0;
            let end = first + offsets.len() as u64;
            if offsets.is_empty() || end <= start {
                continue;
            }
            let bytes = map.bytes();
            let mut offset = u64::from(offsets[(start.max(first) - first) as usize]);
            for position in start.max(first)..end {
                let expected_offset = u64::from(offsets[(position - first) as usize]);
                if offset != expected_offset {
                    let kind =
                        CorruptionKind::Footer(format!("index says offset {expected_offset}, records say {offset}"));
                    fail(
                        &mut report,
                        position,
                        Error::Corrupt { segment, offset, position: Some(Position(position)), kind },
                    );
                    return Ok(report);
                }
                let event = match decode_committed(bytes, segment, offset, position) {
                    Ok(event) => event,
                    Err(e) => {
                        fail(&mut report, position, e);
                        return Ok(report);
                    }
                };
                if record::event_chain_hash(&prev, &event) != event.hash {
                    let e = Error::Corrupt {
                        segment,
                        offset,
                        position: Some(Position(position)),
                        kind: CorruptionKind::ChainMismatch,
                    };
                    fail(&mut report, position, e);
                    return Ok(report);
                }
                prev = event.hash;
                offset += record::frame_len(record::body_len_at(bytes, offset)) as u64;
                report.events += 1;
                if report.events.is_multiple_of(65_536) {
                    progress(VerifyProgress { checked: report.events, total: total - start });
                }
            }
            if sealed {
                if let Err((off, kind)) = check_seal(bytes, offset, prev) {
                    fail(
                        &mut report,
                        end - 1,
                        Error::Corrupt { segment, offset: off, position: Some(Position(end - 1)), kind },
                    );
                    return Ok(report);
                }
            }
        }
        progress(VerifyProgress { checked: report.events, total: total - start });
        Ok(report)
    }
}

/// The seal record right after a sealed segment's last record must carry the last hash.
fn check_seal(bytes: &[u8], offset: u64, last: ChainHash) -> Result<(), (u64, CorruptionKind)> {
    match crate::segment::read_sealed(bytes, false)? {
        Some((seal, _, footer_offset)) if footer_offset == offset && seal.hash == last => Ok(()),
        Some(_) => Err((offset, CorruptionKind::Footer("seal record does not match the segment's records".into()))),
        None => Err((offset, CorruptionKind::Footer("sealed segment lost its trailer".into()))),
    }
}
