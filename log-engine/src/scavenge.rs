//! The scavenger: the one thing that rewrites a sealed segment. It gives back the space of dead
//! events' payloads while keeping every position and the chain: each dead event becomes a
//! *husk* (record.rs: its header and payload digests), each live record is copied byte for
//! byte, and the footer, id record and trailer are written afresh for the new offsets.
//!
//! An event is *dead* when no stream read can return its payload any more: it is erased
//! (index.rs, `Erasures`), or its stream's lifecycle state ([`Index::readable`]) hides it (before
//! a delete point, a tombstoned stream, below `truncate_before` or `max_count`, older than
//! `max_age_ms`, a stream past its `ttl_ms`) and no fork's readable prefix resolves to it. `$lifecycle` events are never dead: open folds them.
//! Nor are the events of a [`ScavengeOptions::keep_hidden`] stream that only retention hides:
//! the views fold them, and their replay must meet the same payloads.
//! Liveness is measured on the log's clock when the scavenge starts, so what was dead then is
//! a husk for good: a later metadata change that would show it again shows a husk.
//!
//! Crash safety: a segment's new bytes go to `log/scavenge.tmp` (every byte written, 1 MiB and
//! an fdatasync at a time), which is then renamed over the segment and the directory fsynced. A crash
//! leaves the old file or the new one, both complete and sealed, never a mix; open deletes a
//! leftover `*.tmp`. The rewrite runs on the caller's thread, never the writer's; only the
//! swap takes the index's write lock (a rename and a few assignments), so appends wait at most
//! that long. The active segment is never touched.
//!
//! Readers that copied a location before the swap keep decoding the old file through their
//! `Arc<Mapping>`: the rename unlinks it, and an unlinked file's pages stay valid while mapped
//! (mmap.rs, soundness point 3). Its space returns when the last such map is dropped.
//!
//! Not done here: removing whole segments (log-engine knows nothing of checkpoints, so it would
//! need a checkpoint's cover passed in and a durable record of where the log now starts).

use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::cast::usize_of;
use crate::error::{CorruptionKind, Error, FooterDamage, Result};
use crate::index::{committed_frame, with_fetched, Fetched, Index, SegmentState, Stop};
use crate::lifecycle::LIFECYCLE_STREAM;
use crate::log::Log;
use crate::mmap::Mapping;
use crate::record;
use crate::segment::{self, SegmentHeader, Trailer, HEADER_LEN, TRAILER_LEN};
use crate::types::{Position, SegmentId};

/// The file a segment's rewrite is written to before it is renamed over the segment.
pub(crate) const SCAVENGE_FILE: &str = "scavenge.tmp";

/// How often one segment's rewrite is started again because a lifecycle change was published
/// while it was being written (the change may have made a dead event readable again: a fork
/// onto a truncated prefix). Past this the segment is left as it is for the next scavenge.
const SCAVENGE_ATTEMPTS_MAX: u32 = 3;

/// A rewrite is written and fdatasynced this much at a time, so that the disk never holds more
/// of it unwritten than this: an append's fdatasync queues behind at most one such flush, not a
/// whole segment's. 256 KiB rather than 1 MiB: on this project's machine it halved the p99 of
/// durable appends made beside a scavenge (1.1-1.2 ms to 0.56-0.65 ms) for 17% of the scavenge's
/// speed; smaller chunks gained nothing more (docs/benchmarks.md, scavenging).
const SCAVENGE_WRITE_CHUNK: usize = 256 * 1024;

/// What a scavenge does. `Default` rewrites every sealed segment holding an event that is dead
/// and not yet a husk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScavengeOptions {
    /// Stream-name prefixes whose events hidden only by retention (`truncate_before`,
    /// `max_count`, `max_age_ms`) keep their payloads: something folds them that a stream read
    /// does not (a view keeps a key whose older versions `max_count` hides), and a replay from
    /// the log must fold the same bytes. Deleted, tombstoned, expired (`ttl_ms`) and erased
    /// events of these streams are still husked.
    pub keep_hidden: Vec<String>,
}

impl ScavengeOptions {
    /// These options with `prefixes` as [`ScavengeOptions::keep_hidden`].
    #[must_use]
    pub fn keeping_hidden<S: Into<String>>(mut self, prefixes: impl IntoIterator<Item = S>) -> Self {
        self.keep_hidden = prefixes.into_iter().map(Into::into).collect();
        self
    }

    fn keeps_hidden(&self, stream: &str) -> bool {
        self.keep_hidden.iter().any(|prefix| stream.starts_with(prefix.as_str()))
    }
}

/// Progress of a scavenge, reported after each sealed segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScavengeProgress {
    pub segments_done: u64,
    pub segments_total: u64,
    /// Events of the segments done so far.
    pub events_scanned: u64,
    /// Events turned into husks so far (an event already a husk is not counted again).
    pub events_husked: u64,
    /// Bytes of segment files given back so far.
    pub bytes_reclaimed: u64,
}

/// What a scavenge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScavengeReport {
    pub segments_rewritten: u64,
    /// Whole segments removed: always 0 (see the module documentation).
    pub segments_removed: u64,
    pub events_husked: u64,
    /// Bytes of the sealed segment files before and after (the active segment not counted).
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// One bit per position: set for an event some stream read can still return.
struct Liveness {
    bits: Vec<u64>,
    /// The `$lifecycle` stream's next version when this was computed: a change since may have
    /// made an event readable again.
    lifecycle_version: u64,
}

impl Liveness {
    /// Computed under the index's read lock; a stream window that needs an evicted segment's
    /// timestamps starts it again with that segment fetched outside the lock.
    fn of(index: &RwLock<Index>, end: u64, options: &ScavengeOptions) -> Result<Liveness> {
        with_fetched(index, |index, fetched| Liveness::under_lock(index, fetched, end, options))
    }

    fn under_lock(
        index: &Index,
        fetched: &Fetched,
        end: u64,
        options: &ScavengeOptions,
    ) -> std::result::Result<Liveness, Stop> {
        let mut live = Liveness { bits: vec![0; usize_of(end.div_ceil(64))], lifecycle_version: 0 };
        for (name, entry) in &index.streams {
            if name == LIFECYCLE_STREAM {
                live.lifecycle_version = entry.next_version();
                entry.positions.iter().for_each(|&p| live.set(p));
                continue;
            }
            let window =
                if options.keeps_hidden(name) { index.undeleted(name, fetched) } else { index.readable(name, fetched) };
            match window {
                Ok(Some((first, last))) => live.mark_window(index, name, first, last),
                Ok(None) | Err(Stop::Failed(Error::StreamDeleted { .. } | Error::StreamTombstoned { .. })) => {}
                // A fork that has not appended yet has no entry of its own events.
                Err(Stop::Failed(Error::StreamNotFound { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        // An erased event's payload is unreadable however the stream reads it: it is dead.
        for (stream, ranges) in index.erasures.ranges() {
            let Some(entry) = index.streams.get(stream) else { continue };
            for &(lo, hi) in ranges {
                (lo..=hi).filter_map(|v| entry.own_position(v)).for_each(|p| live.clear(p));
            }
        }
        Ok(live)
    }

    fn clear(&mut self, position: u64) {
        if let Some(word) = self.bits.get_mut(usize_of(position / 64)) {
            *word &= !(1 << (position % 64));
        }
    }

    fn set(&mut self, position: u64) {
        if let Some(word) = self.bits.get_mut(usize_of(position / 64)) {
            *word |= 1 << (position % 64);
        }
    }

    fn is_live(&self, position: u64) -> bool {
        self.bits.get(usize_of(position / 64)).is_some_and(|w| w & (1 << (position % 64)) != 0)
    }

    /// Marks versions `first..=last` of `stream`, own or shared through its fork chain (the
    /// walk of [`Index::resolve`], without collecting).
    fn mark_window(&mut self, index: &Index, stream: &str, first: u64, last: u64) {
        let (mut name, mut last) = (stream, last);
        while let Some(entry) = index.streams.get(name) {
            for version in first.max(entry.base)..=last {
                match entry.own_position(version) {
                    Some(p) => self.set(p),
                    None => break,
                }
            }
            match entry.life().and_then(|l| l.forked_from.as_ref()) {
                Some((source, at)) if first < entry.base => {
                    last = last.min(*at);
                    name = source;
                }
                _ => break,
            }
        }
    }
}

/// A segment's rewrite, written and synced under [`SCAVENGE_FILE`], not yet renamed.
struct Rewrite {
    file: Box<dyn crate::fs::StorageFile>,
    map: Arc<Mapping>,
    offsets: Vec<u32>,
    data_end: u64,
    capacity: u64,
    husked: u64,
}

impl Log {
    /// Rewrites every sealed segment holding dead events (see the scavenge module's
    /// documentation) with those events as husks, swaps each in crash-safely and gives the space
    /// back. Blocks the calling thread, never the writer beyond one swap; one scavenge runs at a
    /// time per log (a second waits). `progress` is called after each sealed segment.
    pub fn scavenge(
        &self,
        options: &ScavengeOptions,
        progress: &mut dyn FnMut(&ScavengeProgress),
    ) -> Result<ScavengeReport> {
        let shared = self.shared_arc();
        self.writable()?;
        let _one_at_a_time = shared.scavenging.lock();
        let log_dir = shared.log_dir();
        let fs = shared.options.fs.clone();
        let (targets, sealed_end) = {
            let index = shared.index.read();
            let sealed: Vec<&SegmentState> = index.segments.iter().filter(|s| s.sealed).collect();
            let end = sealed.last().map_or(0, |s| s.next_position());
            // An evicted segment is not rewritten here: its file is in the archive only.
            let local = sealed.iter().filter(|s| s.cold.is_none());
            (local.map(|s| s.id).collect::<Vec<SegmentId>>(), end)
        };
        let mut live = Liveness::of(&shared.index, sealed_end, options)?;
        let mut report = ScavengeReport::default();
        let mut state = ScavengeProgress { segments_total: targets.len() as u64, ..ScavengeProgress::default() };
        for id in targets {
            let mut attempts = 0;
            let (events, before, after, husked) = loop {
                attempts += 1;
                let (map, offsets, path) = {
                    let index = shared.index.read();
                    let s = index.segments.iter().find(|s| s.id == id).expect("sealed segments stay in the index");
                    (s.map.clone(), s.offsets.clone(), s.path.clone())
                };
                let before = map.mapped_len();
                let written = rewrite(fs.as_ref(), &log_dir, id, &map, &offsets, &live, skip_sync(&shared.options));
                let Some(mut rewrite) = written.inspect_err(|_| remove_leftover(fs.as_ref(), &log_dir))? else {
                    break (offsets.len() as u64, before, before, 0);
                };
                let swapped = {
                    let mut index = shared.index.write();
                    let now = index.streams.get(LIFECYCLE_STREAM).map_or(0, crate::index::StreamEntry::next_version);
                    if now == live.lifecycle_version {
                        // Renamed under the lock: a lifecycle change cannot be published between
                        // the check above and the new file taking the segment's name.
                        let tmp = log_dir.join(SCAVENGE_FILE);
                        fs.rename(&tmp, &path).map_err(|e| {
                            remove_leftover(fs.as_ref(), &log_dir);
                            Error::io("rename rewritten segment", &path, e)
                        })?;
                        let s = index.segments.iter_mut().find(|s| s.id == id).expect("sealed segments stay");
                        s.map = rewrite.map.clone();
                        s.offsets = std::mem::take(&mut rewrite.offsets);
                        s.data_end = rewrite.data_end;
                        true
                    } else {
                        false
                    }
                };
                if swapped {
                    // The new name is not durable until the directory is fsynced; until then a
                    // crash leaves the old file, which is as valid as the new one.
                    fs.sync_dir(&log_dir)
                        .map_err(|e| Error::io("fsync directory after renaming a rewritten segment", &log_dir, e))?;
                    drop(rewrite.file);
                    break (offsets.len() as u64, before, rewrite.capacity, rewrite.husked);
                }
                drop(rewrite);
                remove_leftover(fs.as_ref(), &log_dir);
                live = Liveness::of(&shared.index, sealed_end, options)?;
                if attempts >= SCAVENGE_ATTEMPTS_MAX {
                    let size = map.mapped_len();
                    break (offsets.len() as u64, size, size, 0);
                }
            };
            report.bytes_before += before;
            report.bytes_after += after;
            report.events_husked += husked;
            report.segments_rewritten += u64::from(husked > 0);
            state.segments_done += 1;
            state.events_scanned += events;
            state.events_husked += husked;
            state.bytes_reclaimed += before.saturating_sub(after);
            progress(&state);
        }
        Ok(report)
    }
}

/// Best effort: a leftover is also removed by the next writer's open, and the next rewrite
/// replaces it.
fn remove_leftover(fs: &dyn crate::fs::FileSystem, log_dir: &Path) {
    let _ = fs.remove(&log_dir.join(SCAVENGE_FILE));
}

#[cfg(feature = "faults")]
fn skip_sync(options: &crate::Options) -> bool {
    options.sabotage == crate::Sabotage::SkipScavengeSync
}

#[cfg(not(feature = "faults"))]
fn skip_sync(_: &crate::Options) -> bool {
    false
}

/// Writes segment `id`'s rewrite to [`SCAVENGE_FILE`] and makes it durable; `None` when every
/// dead event in it is a husk already (nothing to give back).
fn rewrite(
    fs: &dyn crate::fs::FileSystem,
    log_dir: &Path,
    id: SegmentId,
    map: &Mapping,
    offsets: &[u32],
    live: &Liveness,
    skip_sync: bool,
) -> Result<Option<Rewrite>> {
    let bytes = map.bytes();
    let corrupt = |offset, position: Option<u64>, kind| Error::Corrupt {
        segment: id,
        offset,
        position: position.map(Position),
        kind,
    };
    let header = SegmentHeader::decode(bytes).map_err(|kind| corrupt(0, None, kind))?;
    let sealed =
        segment::read_sealed(bytes, true).map_err(|(offset, kind)| corrupt(offset, None, kind))?.ok_or_else(|| {
            corrupt(map.mapped_len() - TRAILER_LEN, None, CorruptionKind::footer(FooterDamage::LostTrailer))
        })?;
    let first = id.0;
    let needs_husk = |position: u64, kind: u8| record::is_event_kind(kind) && !live.is_live(position);
    // A first pass over the kind bytes only (the second pass checks every frame before using
    // it): most segments of a later scavenge have nothing to do.
    let kind_at = |offset: u32| bytes.get(usize_of(u64::from(offset)) + record::FRAME_KIND_AT).copied();
    let husked = (first..)
        .zip(offsets)
        .filter(|&(position, &offset)| kind_at(offset).is_some_and(|kind| needs_husk(position, kind)))
        .count() as u64;
    if husked == 0 {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(usize_of(map.mapped_len()));
    out.resize(usize_of(HEADER_LEN), 0);
    let mut new_offsets = Vec::with_capacity(offsets.len());
    for (i, &offset) in offsets.iter().enumerate() {
        let position = first + i as u64;
        let frame = committed_frame(bytes, id, u64::from(offset), position)?;
        new_offsets.push(u32::try_from(out.len()).expect("a rewrite is no larger than its segment"));
        if needs_husk(position, frame.header.kind) {
            let husk = record::husk_of(&frame)
                .map_err(|d| corrupt(u64::from(offset), Some(position), CorruptionKind::RecordBody(d)))?;
            out.extend_from_slice(&husk);
        } else {
            out.extend_from_slice(&bytes[usize_of(u64::from(offset))..usize_of(u64::from(offset)) + frame.len]);
        }
    }
    let footer_offset = out.len() as u64;
    let footer = sealed.footer.with_offsets(new_offsets.clone());
    let (seal, footer_len) = segment::encode_seal(&sealed.seal, &footer);
    out.extend_from_slice(&seal);
    // As small as its records allow, so the space of the payloads goes back to the file system.
    let capacity = segment::capacity_for(out.len() as u64 - HEADER_LEN);
    let new_header = SegmentHeader { version: segment::FORMAT_VERSION, capacity, ..header };
    out[..segment::HEADER_USED].copy_from_slice(&new_header.encode());
    let trailer = Trailer { footer_offset, footer_len, ids_len: seal.len() as u64 - footer_len };
    out.resize(usize_of(capacity), 0);
    out[usize_of(capacity - TRAILER_LEN)..].copy_from_slice(&trailer.encode());
    let tmp = log_dir.join(SCAVENGE_FILE);
    let io = |e| Error::io("write rewritten segment", &tmp, e);
    // A leftover of an earlier attempt is replaced.
    let _ = fs.remove(&tmp);
    let file = fs.create(&tmp).map_err(io)?;
    // Every byte written (zeros included, so nothing is sparse: the file is mapped) and synced
    // before it is renamed over the segment: a power loss after the rename must find all of it,
    // since the old file is gone then.
    for (i, chunk) in out.chunks(SCAVENGE_WRITE_CHUNK).enumerate() {
        file.write_all_at(chunk, (i * SCAVENGE_WRITE_CHUNK) as u64)
            .and_then(|()| if skip_sync { Ok(()) } else { file.sync_data() })
            .map_err(io)?;
    }
    // Written once, whole, before it is mapped: its bytes never change (mmap.rs, point 2).
    let map = Mapping::new(file.as_file(), capacity).map_err(|e| Error::io("map rewritten segment", &tmp, e))?;
    // The pair of the encoding's checks: the new file reads back as a sealed segment.
    let check = segment::read_sealed(map.bytes(), true);
    assert!(
        matches!(&check, Ok(Some(s)) if s.footer.offsets == new_offsets && s.seal == sealed.seal),
        "segment {id}'s rewrite does not read back as its footer: {:?}",
        check.err()
    );
    Ok(Some(Rewrite { file, map: Arc::new(map), offsets: new_offsets, data_end: footer_offset, capacity, husked }))
}
