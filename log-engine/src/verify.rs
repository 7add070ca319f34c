//! Verification: every record's CRC, the position sequence, the chain hash, and each sealed
//! segment's footer, from the start of the log or from a trusted (position, hash) pair.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::cast::usize_of;
use crate::error::{CorruptionKind, Error, FooterDamage, FrameDamage, HeaderDamage, Result};
use crate::index::{Held, SegmentState};
use crate::keys::Keyring;
use crate::log::{committed_frame, Log};
use crate::mmap::Mapping;
use crate::record::{self, KIND_CIPHER, KIND_HUSK};
use crate::segment::{self, FooterStream, SegmentHeader};
use crate::tier::ColdSegment;
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
    ///
    /// Segments are checked in parallel, each from the previous-segment hash in its header;
    /// the headers are then checked to join the segments into one chain. The report is the
    /// same as a front-to-back scan's: the first bad position, and the events before it.
    pub fn verify(&self, trusted: Option<Head>, mut progress: impl FnMut(VerifyProgress)) -> Result<VerifyReport> {
        let shared = self.shared_arc();
        let (spans, head) = {
            let index = shared.index.read();
            let spans: Vec<(SegmentId, Held, Vec<u32>, bool)> =
                index.segments.iter().map(|s| (s.id, s.held(), s.offsets.clone(), s.sealed)).collect();
            (spans, index.head().map(|(position, hash)| Head { position, hash }))
        };
        let total = head.map_or(0, |h| h.position.0 + 1);
        let (start, first_prev) = match trusted {
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
        let jobs: Vec<Span> = spans
            .into_iter()
            .filter(|(segment, _, offsets, _)| !offsets.is_empty() && segment.0 + offsets.len() as u64 > start)
            .enumerate()
            .map(|(i, (segment, Held { map, cold }, offsets, sealed))| Span {
                cold,
                from: start.max(segment.0),
                // Only the first span may start from a hash not in its header (mid-segment).
                given: (i == 0).then_some(first_prev),
                segment,
                map,
                offsets,
                sealed,
                keys: shared.options.keys.clone(),
            })
            .collect();
        let next = AtomicUsize::new(0);
        let first_failed = AtomicUsize::new(usize::MAX);
        // Workers send progress (events checked since their last message) here; this thread
        // only draws it, since the callback is not `Send`.
        let (progress_tx, progress_rx) = std::sync::mpsc::channel::<u64>();
        let work = |progress_tx: std::sync::mpsc::Sender<u64>| {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                // A span after a failed one cannot change the report.
                if i >= jobs.len() || i > first_failed.load(Ordering::Relaxed) {
                    return done;
                }
                let outcome = check_span(&jobs[i], &progress_tx);
                if outcome.error.is_some() {
                    first_failed.fetch_min(i, Ordering::Relaxed);
                }
                done.push((i, outcome));
            }
        };
        let threads = crate::shared::cores().min(jobs.len()).max(1);
        let mut outcomes: Vec<Option<Outcome>> = (0..jobs.len()).map(|_| None).collect();
        let mut drawn = 0u64;
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let tx = progress_tx.clone();
                    scope.spawn(move || work(tx))
                })
                .collect();
            drop(progress_tx);
            // Ends when every worker has finished (and dropped its sender).
            for checked in progress_rx {
                drawn += checked;
                progress(VerifyProgress { checked: drawn, total: total - start });
            }
            for worker in workers {
                // A panic here is a bug in verify: let it surface on the caller's thread.
                let done = worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                for (i, outcome) in done {
                    outcomes[i] = Some(outcome);
                }
            }
        });
        let mut prev = first_prev;
        for (job, outcome) in jobs.iter().zip(outcomes) {
            // Spans after the first failure were skipped.
            let Some(outcome) = outcome else { break };
            if let Some(header_prev) = outcome.header_prev {
                if header_prev != prev {
                    report.ok = false;
                    report.first_bad_position = Some(Position(job.from));
                    report.detail = Some(
                        Error::Corrupt {
                            segment: job.segment,
                            offset: 0,
                            position: Some(Position(job.from)),
                            kind: CorruptionKind::SegmentHeader(Box::new(HeaderDamage::PrevHash {
                                stored: Box::new(header_prev),
                                chain: Box::new(prev),
                            })),
                        }
                        .to_string(),
                    );
                    break;
                }
            }
            report.events += outcome.events;
            if let Some((position, e)) = outcome.error {
                // An evicted segment that could not be fetched is no verdict on the log.
                if e.is_cold_unavailable() {
                    return Err(e);
                }
                report.ok = false;
                report.first_bad_position = Some(Position(position));
                report.detail = Some(e.to_string());
                break;
            }
            prev = outcome.last;
        }
        // After damage, spans past it may have been counted above; the bar never goes back.
        if report.events >= drawn {
            progress(VerifyProgress { checked: report.events, total: total - start });
        }
        Ok(report)
    }
}

/// One segment's part of a verification (also a replica's check of a shipped sealed segment:
/// mirror.rs).
pub(crate) struct Span {
    pub segment: SegmentId,
    pub map: Arc<Mapping>,
    /// Set for an evicted segment: its records are read from a fetched copy, checked against
    /// the stub's digest before anything here reads it (tier.rs).
    pub cold: Option<Arc<ColdSegment>>,
    pub offsets: Vec<u32>,
    pub sealed: bool,
    /// First position to check.
    pub from: u64,
    /// The hash before `from`, when known (the first span); otherwise the header's is used.
    pub given: Option<ChainHash>,
    /// With the log's key store, every encrypted record's tag is checked too.
    pub keys: Option<Arc<Keyring>>,
}

/// What checking one span found.
pub(crate) struct Outcome {
    /// The header's previous-segment hash, when the span starts at the segment's first record.
    pub header_prev: Option<ChainHash>,
    /// Events that passed, before `error`.
    pub events: u64,
    /// Chain hash of the last event that passed.
    pub last: ChainHash,
    /// The first bad position in the span, and what was wrong.
    pub error: Option<(u64, Error)>,
}

/// Checks one span's records (frame, CRC, position, chain) and, for a sealed segment, its seal
/// and that its footer's stream table (which open trusts for the index) matches the records.
pub(crate) fn check_span(span: &Span, progress: &std::sync::mpsc::Sender<u64>) -> Outcome {
    let segment = span.segment;
    let first = segment.0;
    let end = first + span.offsets.len() as u64;
    let map = match SegmentState::readable_map(&span.map, span.cold.as_ref()) {
        Ok(map) => map,
        Err(error) => {
            return Outcome {
                header_prev: None,
                events: 0,
                last: ChainHash::genesis(),
                error: Some((span.from, error)),
            }
        }
    };
    let bytes = map.bytes();
    let header = SegmentHeader::decode(bytes);
    // Husks exist from format version 3 on. (A span starting mid-segment from a trusted hash
    // does not check the header; its records are then taken as the current version's.)
    let husks_allowed = header.as_ref().map_or(true, |h| h.version >= segment::FORMAT_VERSION_HUSKS);
    // Encrypted events likewise from version 4 on.
    let ciphers_allowed = header.as_ref().map_or(true, |h| h.version >= segment::FORMAT_VERSION_CIPHER);
    let header_prev = if span.from == first {
        match header {
            Ok(header) => Some(header.prev_hash),
            Err(kind) => {
                let error = Error::Corrupt { segment, offset: 0, position: Some(Position(first)), kind };
                return Outcome {
                    header_prev: None,
                    events: 0,
                    last: ChainHash::genesis(),
                    error: Some((first, error)),
                };
            }
        }
    } else {
        None
    };
    // A sealed segment's seal and footer; damage there is reported after the records' own.
    let sealed = span.sealed.then(|| segment::read_sealed(bytes, true));
    let has_footer = matches!(sealed, Some(Ok(Some(_))));
    let streams: HashMap<&str, FooterStream<'_>, foldhash::fast::RandomState> = match &sealed {
        Some(Ok(Some(sealed))) => sealed.footer.streams().map(|s| (s.name, s)).collect(),
        _ => HashMap::default(),
    };
    let mut prev = span.given.or(header_prev).expect("a span starts at its segment's start or has a given hash");
    let mut outcome = Outcome { header_prev, events: 0, last: prev, error: None };
    let mut offset = u64::from(span.offsets[usize_of(span.from - first)]);
    let mut unreported = 0u64;
    for position in span.from..end {
        let expected_offset = u64::from(span.offsets[usize_of(position - first)]);
        let corrupt = |offset, kind| Error::Corrupt { segment, offset, position: Some(Position(position)), kind };
        let result = if offset != expected_offset {
            let kind = CorruptionKind::footer(FooterDamage::Offset { index: expected_offset, records: offset });
            Err(corrupt(offset, kind))
        } else {
            committed_frame(bytes, segment, offset, position).and_then(|frame| {
                if frame.header.kind == KIND_HUSK && !husks_allowed {
                    return Err(corrupt(offset, CorruptionKind::RecordFrame(FrameDamage::Kind(KIND_HUSK))));
                }
                if frame.header.kind == KIND_CIPHER && !ciphers_allowed {
                    return Err(corrupt(offset, CorruptionKind::RecordFrame(FrameDamage::Kind(KIND_CIPHER))));
                }
                let version = frame.header.version;
                let mut listed = Ok(());
                let hash = record::frame_chain_hash(&prev, &frame, |stream, id| {
                    if has_footer {
                        listed = footer_lists(&streams, stream, version, position, id);
                    }
                });
                match hash {
                    Ok(hash) if hash != frame.header.hash => Err(corrupt(
                        offset,
                        CorruptionKind::ChainMismatch { stored: Box::new(frame.header.hash), computed: Box::new(hash) },
                    )),
                    Ok(hash) => match listed {
                        // A key the given store lacks (an older copy of it, a retired
                        // generation) is no evidence of damage: only a tag that fails with the
                        // right key is; the chain above still covered the record.
                        Ok(()) => match span.keys.as_deref().map(|keys| record::authenticate(&frame, keys)) {
                            Some(Err(record::DecodeError::Key(_))) | Some(Ok(())) | None => Ok((hash, frame.len)),
                            Some(Err(e)) => Err(e.at(segment, offset, position)),
                        },
                        Err(damage) => Err(corrupt(offset, CorruptionKind::footer(damage))),
                    },
                    Err(damage) => Err(corrupt(offset, CorruptionKind::RecordBody(damage))),
                }
            })
        };
        match result {
            Ok((hash, len)) => {
                prev = hash;
                offset += len as u64;
                outcome.events += 1;
                unreported += 1;
                if unreported == 65_536 {
                    // The receiver lives until every worker is done.
                    let _ = progress.send(unreported);
                    unreported = 0;
                }
            }
            Err(e) => {
                outcome.error = Some((position, e));
                break;
            }
        }
    }
    if unreported > 0 {
        let _ = progress.send(unreported);
    }
    outcome.last = prev;
    if outcome.error.is_none() {
        if let Some(sealed) = sealed {
            let whole = span.from == first;
            if let Err((off, kind)) = check_seal(sealed, offset, prev, whole.then_some(span.offsets.len())) {
                let error = Error::Corrupt { segment, offset: off, position: Some(Position(end - 1)), kind };
                outcome.error = Some((end - 1, error));
            }
        }
    }
    outcome
}

/// Whether the footer lists the event at `position` as `version` of `stream` with `id`.
fn footer_lists(
    streams: &HashMap<&str, FooterStream<'_>, foldhash::fast::RandomState>,
    stream: &str,
    version: u64,
    position: u64,
    id: &[u8; 16],
) -> std::result::Result<(), FooterDamage> {
    let listed = streams.get(stream).and_then(|s| {
        let at = usize::try_from(version.checked_sub(s.first_version)?).ok()?;
        Some((*s.positions.get(at)?, *s.ids.get(at)?))
    });
    let stream = stream.to_string();
    match listed {
        Some((p, listed_id)) if p == position && listed_id == *id => Ok(()),
        Some((listed, _)) if listed != position => Err(FooterDamage::Misplaced { stream, version, listed, position }),
        Some(_) => Err(FooterDamage::OtherId { stream, version }),
        None => Err(FooterDamage::Unlisted { stream, version }),
    }
}

/// The seal record right after a sealed segment's last record must carry the last hash; when
/// the whole segment was checked, its footer must list exactly its `records` events.
fn check_seal(
    sealed: std::result::Result<Option<segment::Sealed>, (u64, CorruptionKind)>,
    offset: u64,
    last: ChainHash,
    records: Option<usize>,
) -> std::result::Result<(), (u64, CorruptionKind)> {
    match sealed? {
        Some(sealed) if sealed.footer_offset == offset && sealed.seal.hash == last => {
            let listed = sealed.footer.events_listed();
            match records {
                Some(records) if listed != records => Err((
                    sealed.footer_offset,
                    CorruptionKind::footer(FooterDamage::EventCount { listed: listed as u64, records: records as u64 }),
                )),
                _ => Ok(()),
            }
        }
        Some(_) => Err((offset, CorruptionKind::footer(FooterDamage::SealNotLast))),
        None => Err((offset, CorruptionKind::footer(FooterDamage::LostTrailer))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SealRecord;
    use crate::{Durability, ExpectedVersion, NewEvent, Options, SEGMENT_SIZE_MIN};
    use std::os::unix::fs::FileExt;

    /// A log of 64 KiB segments appended to (round-robin over `streams`) until its first segment
    /// is sealed.
    fn two_segments(streams: &[&str]) -> (tempfile::TempDir, Options, Log) {
        let dir = tempfile::tempdir().unwrap();
        let options = Options { segment_size: SEGMENT_SIZE_MIN, durability: Durability::None, ..Default::default() };
        let log = Log::open(dir.path(), options.clone()).unwrap();
        while log.segment_files().len() < 2 {
            for stream in streams {
                log.append(stream, ExpectedVersion::Any, vec![NewEvent::bytes("t", vec![1u8; 200])]).unwrap();
            }
        }
        (dir, options, log)
    }

    /// Rewrites the seal of the sealed segment at `path`, CRC-valid, after `change` has had its
    /// way with each stream's first version and ids. Returns the footer's offset.
    fn forge_footer(
        path: &std::path::Path,
        mut change: impl FnMut(segment::FooterStream, &mut u64, &mut Vec<[u8; 16]>),
    ) -> u64 {
        let bytes = std::fs::read(path).unwrap();
        let sealed = segment::read_sealed(&bytes, true).unwrap().unwrap();
        let mut forged = segment::Footer::new(sealed.footer.first_position, sealed.footer.offsets.clone());
        for s in sealed.footer.streams() {
            let (mut first_version, mut ids) = (s.first_version, s.ids.to_vec());
            change(s, &mut first_version, &mut ids);
            forged.push_stream(s.name, first_version, s.positions, &ids);
        }
        let (frame, _) = segment::encode_seal(&sealed.seal, &forged);
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.write_all_at(&frame, sealed.footer_offset).unwrap();
        sealed.footer_offset
    }

    /// Bytes appended to the active segment as a torn tail, which open cuts if it gets that far.
    const TAIL: [u8; 100] = [0xab; 100];

    fn tear(active: &crate::SegmentFile) {
        let file = std::fs::OpenOptions::new().write(true).open(&active.path).unwrap();
        file.write_all_at(&TAIL, active.bytes).unwrap();
    }

    fn assert_tail_kept(active: &crate::SegmentFile) {
        let after = std::fs::read(&active.path).unwrap();
        assert_eq!(&after[usize_of(active.bytes)..usize_of(active.bytes) + TAIL.len()], &TAIL, "the tail was cut");
    }

    /// Open builds each stream's index from the sealed footers: a CRC-valid footer whose stream
    /// does not continue its versions is corruption, reported at that footer before anything is
    /// done to the newest segment, and before damage found in a later segment.
    #[test]
    fn a_footer_that_breaks_a_streams_versions_fails_open() {
        let (dir, options, log) = two_segments(&["agent-a", "agent-b", "agent-c"]);
        let files = log.segment_files();
        let (path, active) = (files[0].path.clone(), files[1].clone());
        drop(log);
        let footer_offset = forge_footer(&path, |s, first_version, _| {
            if s.name != "agent-a" {
                *first_version += 2;
            }
        });
        tear(&active);

        let reported_at_the_footer = |err: Error| match err {
            Error::Corrupt { segment, offset, kind: CorruptionKind::VersionGap(gap), .. } => {
                assert_eq!((segment, offset), (crate::SegmentId(0), footer_offset));
                assert_eq!((gap.stream.as_str(), gap.version, gap.after), ("agent-b", 2, None));
            }
            other => panic!("expected a corrupt footer, got {other}"),
        };
        reported_at_the_footer(Log::open(dir.path(), options.clone()).unwrap_err());
        assert_tail_kept(&active);

        // Damage in the newer segment's header is found later in the log: still the footer first.
        let file = std::fs::OpenOptions::new().write(true).open(&active.path).unwrap();
        file.write_all_at(&[0xff], 16).unwrap();
        reported_at_the_footer(Log::open(dir.path(), options).unwrap_err());
    }

    /// Open builds the stream index from sealed footers without reading records. A footer that
    /// passes its CRC but disagrees with the records (a bug, or a forgery) must fail verify.
    #[test]
    fn a_crc_valid_footer_that_misstates_an_id_fails_verify() {
        let (dir, options, log) = two_segments(&["agent-a", "agent-b"]);
        let path = log.segment_files()[0].path.clone();
        assert!(log.verify(None, |_| {}).unwrap().ok);
        drop(log);

        let mut misstated = 0;
        forge_footer(&path, |s, _, ids| {
            if s.name == "agent-b" {
                misstated = s.positions[3];
                ids[3][0] ^= 1;
            }
        });

        let log = Log::open(dir.path(), options).unwrap();
        let report = log.verify(None, |_| {}).unwrap();
        assert!(!report.ok);
        assert_eq!(report.first_bad_position, Some(Position(misstated)));
        let detail = report.detail.unwrap();
        assert!(detail.contains("another id for version 3 of stream agent-b"), "{detail}");
    }

    /// A sealed segment's ids have their own record and CRC, read by open only for the newest
    /// segments. A flipped bit there is found by verify, and by open when open needs those ids.
    #[test]
    fn a_damaged_id_record_is_reported_by_verify_and_by_open() {
        let (dir, options, log) = two_segments(&["agent-a"]);
        let files = log.segment_files();
        let (path, active) = (files[0].path.clone(), files[1].clone());
        let bytes = std::fs::read(&path).unwrap();
        let sealed = segment::read_sealed(&bytes, true).unwrap().unwrap();
        let id_byte = sealed.ids_offset + record::FRAME_HEADER_LEN as u64 + 5;
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        file.write_all_at(&[bytes[usize_of(id_byte)] ^ 0x10], id_byte).unwrap();
        drop(file);

        // The open log reads the segment through its mapping, which sees the damage.
        let report = log.verify(None, |_| {}).unwrap();
        assert!(!report.ok);
        assert_eq!(report.first_bad_position, Some(Position(sealed.seal.position)));
        let detail = report.detail.unwrap();
        assert!(detail.contains("id record") && detail.contains("CRC"), "{detail}");
        drop(log);

        tear(&active);

        // It is the newest sealed segment, so open needs its ids for the idempotency window, and
        // it reports them before it repairs anything later in the log.
        let err = Log::open(dir.path(), options).unwrap_err();
        assert!(err.is_corruption());
        match &err {
            Error::Corrupt { kind: CorruptionKind::Footer(damage), .. } => assert!(
                matches!(
                    **damage,
                    FooterDamage::Record { record: SealRecord::Ids, damage: CorruptionKind::RecordCrc { .. } }
                ),
                "{damage}"
            ),
            other => panic!("expected a damaged id record, got {other}"),
        }
        let err = err.to_string();
        assert!(err.contains("corruption in segment 0") && err.contains("id record"), "{err}");
        assert_tail_kept(&active);
        assert!(!crate::dir::torn_dir(dir.path()).exists());
    }
}
