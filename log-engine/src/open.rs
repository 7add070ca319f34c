//! Open and recovery: everything that reads a log directory into an index. A writer's open and
//! a reader's (and a reader's refresh) go through here, so the checks are made once:
//!
//! 1. list the segment files (a writer removes `.tmp` leftovers);
//! 2. probe every segment on every core: header, and footer if it is sealed;
//! 3. check in segment order that the segments join (position and previous hash), read the id
//!    records the idempotency window needs, and index the sealed footers' streams on every core;
//! 4. scan the newest, unsealed segment record by record (`segment::recover`): a writer cuts a
//!    torn tail, a reader stops before it and says where;
//! 5. check the extent record (no missing newest segment), and for a writer start the active
//!    segment if every segment is sealed.
//!
//! Whatever fails, the damage reported is the earliest in the log, and nothing before the newest
//! segment is touched. Open does not read sealed segments' records: `verify` does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use crate::cast::usize_of;
use crate::dir::{self, DirLock};
use crate::error::{CorruptionKind, Error, FooterDamage, HeaderDamage, Result, VersionGap};
use crate::extent::{self, LiveMark};
use crate::fs::{FileSystem, StorageFile};
use crate::idwindow::{IdWindow, IDEMPOTENCY_WINDOW};
use crate::index::{Index, SegmentState, StreamEntry, StreamIndex};
use crate::lifecycle::LIFECYCLE_STREAM;
use crate::mmap::Mapping;
use crate::options::Options;
use crate::segment::recover::ReadStop;
use crate::segment::{self, Footer, SegmentHeader, HEADER_LEN, SEGMENT_FILE_MIN, SEGMENT_SIZE_MAX};
use crate::segment::{Active, FooterBuilder};
use crate::shared::{cores, Access, Fingerprint, Shared};
use crate::stub;
use crate::tier;
use crate::types::*;
use crate::writer::{self, WriterState};

/// What a writer's open leaves: the data directory's lock (held for the log's lifetime), the
/// index, the writer's starting state, and the `live` file it keeps up to date.
pub(crate) struct Opened {
    pub lock: DirLock,
    pub index: Index,
    pub state: WriterState,
    pub live: LiveMark,
}

/// A writer's open of data directory `dir` (created if needed): checks the options, takes the
/// lock, recovers the log and notes where it stands in `log/live`.
pub(crate) fn open_writer(dir: &Path, options: &Options) -> Result<Opened> {
    options.check()?;
    dir::create_dir_durable(dir)?;
    let lock = DirLock::acquire(dir)?;
    let log_dir = dir::log_dir(dir);
    dir::create_dir_durable(&log_dir)?;
    let (index, state, _) = recover(dir, options, Access::Write)?;
    let state = state.expect("a writer's recovery yields the writer's state");
    let live = LiveMark::open(&log_dir)?;
    live.note(state.active.id, state.active.write_offset);
    Ok(Opened { lock, index, state, live })
}

/// A reader's open of data directory `dir`: nothing is created or written. Returns the index,
/// where the reader stopped short of the newest segment's end, and what the files looked like.
pub(crate) fn open_reader(dir: &Path, options: &Options) -> Result<(Index, Option<ReadStop>, Fingerprint)> {
    if !dir.is_dir() {
        let reason = if dir.exists() { "it is not a directory" } else { "it does not exist" };
        return Err(Error::NotAStore { dir: dir.to_path_buf(), reason });
    }
    if !dir::log_dir(dir).is_dir() {
        return Err(Error::NotAStore { dir: dir.to_path_buf(), reason: "it has no log/ directory" });
    }
    let fingerprint = fingerprint(dir, options.fs.as_ref())?;
    let (index, _, stop) = recover(dir, options, Access::ReadOnly)?;
    Ok((index, stop, fingerprint))
}

/// A reader's [`crate::Log::refresh`]: re-reads the directory when the files changed and
/// shows what a writer has made durable since; returns whether anything new became visible. A
/// writer's handle always sees its own appends and returns `Ok(false)`.
pub(crate) fn refresh(shared: &Shared) -> Result<bool> {
    if shared.access != Access::ReadOnly {
        return Ok(false);
    }
    let mut state = shared.read_state.lock();
    let now = fingerprint(&shared.dir, shared.options.fs.as_ref())?;
    if now == state.1 {
        return Ok(false);
    }
    // The common case, a writer appending to the same segment: only its new records are read.
    // The index is rebuilt aside and swapped in only when it is whole, so a failure changes
    // nothing a reader sees.
    if now.segments == state.1.segments {
        if let Some((next, stop)) = refresh_active(shared, &now)? {
            *state = (stop, now);
            let added = next.is_some();
            if let Some(next) = next {
                shared.head_tx.send_replace(next);
            }
            return Ok(added);
        }
    }
    let (index, _, stop) = recover(&shared.dir, &shared.options, Access::ReadOnly)?;
    let mut current = shared.index.write();
    if index.next_position < current.next_position {
        return Err(Error::Invalid {
            what: format!(
                "the log in {} now ends at position {} but this reader has shown positions up to {}: \
                     it was cut by a repair; open it again",
                shared.dir.display(),
                index.next_position.cast_signed() - 1,
                current.next_position - 1
            ),
        });
    }
    *state = (stop, now);
    if index.next_position == current.next_position {
        return Ok(false);
    }
    let next = index.next_position;
    *current = index;
    drop(current);
    shared.head_tx.send_replace(next);
    Ok(true)
}

/// The segments in `log_dir`, sorted: each id, and whether it is evicted (only its stub is
/// here: tier.rs). A writer (`remove_temps`) deletes `.tmp` files (a segment, extent record or
/// stub being prepared when the process stopped, holding no records) and a stub whose segment
/// file is still there (an eviction stopped before the unlink: the segment is whole).
fn list_segments(fs: &dyn FileSystem, log_dir: &Path, remove_temps: bool) -> Result<Vec<(SegmentId, bool)>> {
    let mut files = Vec::new();
    let mut stubs = Vec::new();
    for path in fs.list(log_dir).map_err(|e| Error::io("list", log_dir, e))? {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if name.ends_with(".tmp") {
            if remove_temps {
                fs.remove(&path).map_err(|e| Error::io("remove", &path, e))?;
            }
        } else if let Some(id) = segment::parse_file_name(&name) {
            files.push(id);
        } else if let Some(id) = stub::parse_stub_name(&name) {
            stubs.push((id, path));
        } else if name != extent::EXTENT_FILE && name != extent::LIVE_FILE {
            tracing::warn!(file = %path.display(), "ignoring a file that is not a segment");
        }
    }
    files.sort_unstable();
    let mut ids: Vec<(SegmentId, bool)> = files.iter().map(|id| (*id, false)).collect();
    for (id, path) in stubs {
        if files.binary_search(&id).is_err() {
            ids.push((id, true));
        } else if remove_temps {
            fs.remove(&path).map_err(|e| Error::io("remove", &path, e))?;
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// What a reader's [`Log::refresh`] compares to know whether anything changed.
pub(crate) fn fingerprint(dir: &Path, fs: &dyn FileSystem) -> Result<Fingerprint> {
    let log_dir = dir::log_dir(dir);
    let segments: Vec<SegmentId> = list_segments(fs, &log_dir, false)?.into_iter().map(|(id, _)| id).collect();
    let newest = segments.last().and_then(|id| {
        let meta = std::fs::metadata(log_dir.join(segment::file_name(*id))).ok()?;
        Some((meta.len(), meta.modified().ok()))
    });
    Ok(Fingerprint { segments, writer_active: dir::writer_active(dir), live: extent::read_live(&log_dir), newest })
}

/// How far a reader may look into the newest segment `id`: while a writer holds the lock, only
/// up to the offset that writer has published as durable (a batch whose fdatasync has not
/// returned must not be shown, and bytes being written must not be read); with no writer,
/// everything (what is complete then is what the next writer's open keeps).
fn reader_limit(dir: &Path, id: SegmentId) -> Option<u64> {
    if !dir::writer_active(dir) {
        return None;
    }
    match extent::read_live(&dir::log_dir(dir)) {
        Some((live, offset)) if live == id => Some(offset),
        // The writer has moved on to a newer segment: this one's records are all durable (the
        // scan stops at the seal record).
        Some((live, _)) if live > id => None,
        // A writer that has not published anything here yet, or one too old to keep the file.
        _ => Some(HEADER_LEN),
    }
}

/// A reader's scan of the newest segment from `start`, as far as [`reader_limit`] allows.
fn scan_for_reader(
    dir: &Path,
    file: &dyn StorageFile,
    header: &SegmentHeader,
    start: (u64, u64),
    path: &Path,
) -> Result<(segment::recover::Scan, Option<ReadStop>)> {
    let limit = reader_limit(dir, header.id);
    let scanned = segment::recover::scan_readable(file, header, start, limit, path)?;
    if limit.is_none() && dir::writer_active(dir) {
        // A writer started during the scan: what it wrote may not be durable yet, so look
        // again, only as far as it has published.
        return segment::recover::scan_readable(file, header, start, reader_limit(dir, header.id), path);
    }
    Ok(scanned)
}

/// A reader's refresh when only the newest segment, still unsealed, can have grown: scans it
/// from where the index ends and appends what is new to the index. Returns the new next
/// position (`None`: nothing new) and where the scan stopped short; `Ok(None)` when something
/// else changed (a roll, a seal), which needs a full open. Only [`Log::refresh`], serialised by
/// the read state's lock, changes a reader's index, so what is read under the read lock still
/// holds when the write lock is taken; everything is checked before anything changes.
pub(crate) fn refresh_active(shared: &Shared, now: &Fingerprint) -> Result<Option<(Option<u64>, Option<ReadStop>)>> {
    let (id, path, data_end, next_position) = {
        let index = shared.index.read();
        let Some(active) = index.segments.last() else { return Ok(None) };
        if active.sealed || now.segments.last() != Some(&active.id) {
            return Ok(None);
        }
        (active.id, active.path.clone(), active.data_end, active.next_position())
    };
    let fs = shared.options.fs.as_ref();
    let file = fs.open_read_only(&path).map_err(|e| Error::io("open segment", &path, e))?;
    let len = file.len().map_err(|e| Error::io("stat segment", &path, e))?;
    let mut b = [0u8; segment::HEADER_USED];
    file.read_exact_at(&mut b, 0).map_err(|e| Error::io("read segment header", &path, e))?;
    let header =
        SegmentHeader::decode(&b).map_err(|kind| Error::Corrupt { segment: id, offset: 0, position: None, kind })?;
    if header.id != id || header.capacity != len {
        return Ok(None);
    }
    let mut trailer = [0u8; usize_of(segment::TRAILER_LEN)];
    file.read_exact_at(&mut trailer, len - segment::TRAILER_LEN).map_err(|e| Error::io("read trailer", &path, e))?;
    if segment::Trailer::decode(&trailer).is_some() {
        return Ok(None);
    }
    let (scan, stop) = scan_for_reader(&shared.dir, &*file, &header, (data_end, next_position), &path)?;
    if scan.records.is_empty() {
        return Ok(Some((None, stop)));
    }
    // Lifecycle events in the new records are folded; only then may a new stream start past 0.
    let lifecycle = scan.records.iter().any(|r| r.stream == LIFECYCLE_STREAM);
    check_streams_continue(&shared.index.read().streams, id, &scan.records, lifecycle)?;
    let map = Arc::new(Mapping::new(file.as_file(), scan.end).map_err(|e| Error::io("map segment", &path, e))?);
    let mut index = shared.index.write();
    // A lifecycle event that does not fold must leave what the reader shows as it was: the
    // streams are kept aside until it has.
    let folded = index.streams.get(LIFECYCLE_STREAM).map_or(0, StreamEntry::next_version);
    let before = lifecycle.then(|| index.streams.clone());
    extend_streams(&mut index.streams, &scan.records);
    let last = scan.records.last().expect("not empty");
    let (next, hash) = (last.position + 1, last.hash);
    let previous = (index.next_position, index.head_hash, index.clock_ms);
    let active = index.active_mut();
    let (old_map, old_end, old_len) = (std::mem::replace(&mut active.map, map), active.data_end, active.offsets.len());
    active.offsets.extend(scan.records.iter().map(|r| u32::try_from(r.offset).expect("offsets fit in u32")));
    active.data_end = scan.end;
    index.next_position = next;
    index.head_hash = hash;
    index.clock_ms = index.clock_ms.max(scan.last_timestamp_ms);
    if let Some(streams) = before {
        if let Err(e) = index.fold_lifecycle(folded) {
            index.streams = streams;
            (index.next_position, index.head_hash, index.clock_ms) = previous;
            let active = index.active_mut();
            active.map = old_map;
            active.offsets.truncate(old_len);
            active.data_end = old_end;
            return Err(e);
        }
    }
    Ok(Some((Some(next), stop)))
}

/// Opens every segment, checks how they join, recovers the newest, and builds the index. A
/// reader (`Access::ReadOnly`) changes nothing on disk, gets no writer state, and gets where it
/// stopped short of the newest segment's end instead of a repair.
pub(crate) fn recover(
    dir: &Path,
    options: &Options,
    access: Access,
) -> Result<(Index, Option<WriterState>, Option<ReadStop>)> {
    let fs = &options.fs;
    let log_dir = dir::log_dir(dir);
    let writer = access == Access::Write;
    let listed = list_segments(fs.as_ref(), &log_dir, writer)?;
    let ids: Vec<SegmentId> = listed.iter().map(|(id, _)| *id).collect();
    let recorded = extent::read_extent(&log_dir)?;
    let mut stop = None;

    let mut index = Index {
        segments: Vec::new(),
        streams: HashMap::default(),
        next_position: 0,
        head_hash: ChainHash::genesis(),
        clock_ms: 0,
        erasures: Default::default(),
        shreds: HashMap::default(),
        newest_encrypted: false,
    };
    let mut recent_ids: Vec<(u64, Uuid)> = Vec::new();
    let mut last_ts = 0u64;
    let mut active = None;
    // Sealed segments' footers, indexed together once all are read (see `index_streams`).
    let mut footers: Vec<(SegmentId, u64, Footer)> = Vec::new();
    // The idempotency window is the last IDEMPOTENCY_WINDOW positions: a sealed segment whose last
    // position lies that far before the newest segment's first cannot hold any of them.
    let window_from = ids.last().map_or(0, |newest| newest.0.saturating_sub(IDEMPOTENCY_WINDOW as u64));
    let probes = probe_segments(&log_dir, options, &listed, access);
    // In a closure so that, whatever fails, the footers read before it are checked first: the
    // earliest damage is the one reported.
    let read_segments = || -> Result<()> {
        for (i, probe) in probes.into_iter().enumerate() {
            let newest = i + 1 == ids.len();
            let Probe { id, path, file, len, header, sealed, cold } = probe?;
            index.newest_encrypted = header.encrypted();
            let corrupt = |offset, kind| Error::Corrupt { segment: id, offset, position: None, kind };
            if id.0 != index.next_position || header.prev_hash != index.head_hash {
                let kind = CorruptionKind::SegmentGap {
                    first_position: Position(id.0),
                    prev_hash: Box::new(header.prev_hash),
                    log_next: Position(index.next_position),
                    log_hash: Box::new(index.head_hash),
                };
                return Err(corrupt(0, kind));
            }
            match sealed? {
                Some((map, sealed)) => {
                    let mut sealed = sealed;
                    let footer_offset = sealed.footer_offset;
                    if sealed.footer.first_position != id.0 {
                        return Err(corrupt(
                            footer_offset,
                            CorruptionKind::footer(FooterDamage::FirstPosition {
                                footer: sealed.footer.first_position,
                                segment: id.0,
                            }),
                        ));
                    }
                    // An evicted segment's stub has no id record: eviction leaves the window's
                    // segments alone (evict.rs).
                    if sealed.seal.position >= window_from && cold.is_none() {
                        // Read here, in segment order, so that damage in the id record is reported
                        // before anything is done to the newest segment.
                        sealed.read_ids(map.bytes()).map_err(|(offset, kind)| corrupt(offset, kind))?;
                        for s in sealed.footer.streams() {
                            recent_ids
                                .extend(s.positions.iter().zip(s.ids).map(|(p, raw)| (*p, Uuid::from_bytes(*raw))));
                        }
                    }
                    let segment::Sealed { seal, mut footer, .. } = sealed;
                    let offsets = std::mem::take(&mut footer.offsets);
                    footers.push((id, footer_offset, footer));
                    index.next_position = seal.position + 1;
                    index.head_hash = seal.hash;
                    last_ts = last_ts.max(seal.timestamp_ms);
                    index.segments.push(SegmentState {
                        id,
                        path,
                        map: Arc::new(map),
                        cold,
                        offsets,
                        data_end: footer_offset,
                        sealed: true,
                    });
                }
                None if cold.is_some() => {
                    // A stub is only ever written for a sealed segment, so this is damage.
                    return Err(corrupt(len - segment::TRAILER_LEN, CorruptionKind::footer(FooterDamage::NotSealed)));
                }
                None if !newest => {
                    return Err(corrupt(len - segment::TRAILER_LEN, CorruptionKind::footer(FooterDamage::NotSealed)));
                }
                None => {
                    // Damage in a footer (or in the sealed segments' lifecycle events) is reported
                    // before anything is done to the newest segment.
                    index.streams = index_streams(&footers)?;
                    index.fold_lifecycle(0)?;
                    footers.clear();
                    let folded = index.streams.get(LIFECYCLE_STREAM).map_or(0, StreamEntry::next_version);
                    let file = file.expect("an unsealed segment's probe keeps its file");
                    let scan = if writer {
                        segment::recover::scan_newest(dir, fs.as_ref(), &*file, &header, options.recovery)?
                    } else {
                        let scanned = scan_for_reader(dir, &*file, &header, (HEADER_LEN, id.0), &path)?;
                        stop = scanned.1;
                        scanned.0
                    };
                    check_streams_continue(&index.streams, id, &scan.records, true)?;
                    extend_streams(&mut index.streams, &scan.records);
                    recent_ids.extend(scan.records.iter().map(|r| (r.position, r.id)));
                    let mut footer = FooterBuilder::default();
                    let mut entries = Vec::new();
                    for run in scan.records.chunk_by(|a, b| a.stream == b.stream) {
                        entries.clear();
                        entries.extend(run.iter().map(|r| (r.offset, r.position, r.id)));
                        footer.push_run(&run[0].stream, run[0].version, &entries);
                    }
                    let map = Arc::new(
                        Mapping::new(file.as_file(), scan.end).map_err(|e| Error::io("map segment", &path, e))?,
                    );
                    index.next_position = id.0 + scan.records.len() as u64;
                    if let Some(last) = scan.records.last() {
                        index.head_hash = last.hash;
                        last_ts = last_ts.max(scan.last_timestamp_ms);
                    }
                    index.segments.push(SegmentState {
                        id,
                        path,
                        map: map.clone(),
                        cold: None,
                        offsets: footer.offsets.clone(),
                        data_end: scan.end,
                        sealed: false,
                    });
                    index.fold_lifecycle(folded)?;
                    active = Some(Active::new(id, Arc::from(file), map, len, scan.end, footer));
                }
            }
        }
        Ok(())
    };
    if let Err(later) = read_segments() {
        let earlier = index_streams(&footers).and_then(|streams| {
            index.streams = streams;
            index.fold_lifecycle(0)
        });
        return Err(earlier.err().unwrap_or(later));
    }

    if !footers.is_empty() {
        // Every segment is sealed.
        index.streams = index_streams(&footers)?;
        index.fold_lifecycle(0)?;
    }
    index.clock_ms = last_ts;
    check_extent(&log_dir, options, access, recorded, ids.last().copied(), index.next_position)?;
    if !writer {
        tracing::debug!(dir = %dir.display(), events = index.next_position, "log opened read-only");
        return Ok((index, None, stop));
    }
    let (active, created) = match active {
        Some(active) => (active, false),
        None => (create_first_active(dir, options, &mut index)?, true),
    };
    // An older directory has no extent record yet; a crash between installing a segment and
    // recording it leaves the record one segment behind; an accepted missing tail leaves it ahead.
    if !created && recorded != Some(active.id) {
        extent::write_extent(fs.as_ref(), &log_dir, active.id, &|| fs.sync_dir(&log_dir))?;
    }
    recent_ids.sort_unstable_by_key(|(p, _)| *p);
    let skip = recent_ids.len().saturating_sub(IDEMPOTENCY_WINDOW);
    recent_ids.drain(..skip);
    let mut window = IdWindow::default();
    window.insert_all(recent_ids.iter().map(|&(p, id)| (id, p)));
    let state = WriterState {
        active,
        next_position: index.next_position,
        last_hash: index.head_hash,
        last_timestamp_ms: last_ts,
        ids: window,
    };
    tracing::info!(dir = %dir.display(), events = index.next_position, segments = index.segments.len(), "log opened");
    Ok((index, Some(state), None))
}

/// Checks that the records scanned from the newest segment `id` continue their streams'
/// versions from `streams` (each record the next version of its stream), before anything is
/// changed: a record that does not is corruption at its offset.
///
/// With `forks` (the lifecycle is folded next), a stream without events in the index (unknown,
/// or known only by a lifecycle change such as its metadata) may start past version 0: a fork's
/// first own event, which the fold checks against the fork point.
fn check_streams_continue(
    streams: &StreamIndex,
    id: SegmentId,
    records: &[segment::recover::Scanned],
    forks: bool,
) -> Result<()> {
    // Each stream's next version; `None` for one whose first record may start anywhere.
    let mut next: HashMap<&str, Option<u64>> = HashMap::new();
    for r in records {
        let expected = next.entry(r.stream.as_str()).or_insert_with(|| match streams.get(r.stream.as_str()) {
            // A stream with a lifecycle state but no events yet may be forked in these records.
            Some(entry) if !(forks && entry.positions.is_empty()) => Some(entry.next_version()),
            _ => (!forks).then_some(0),
        });
        if expected.is_some_and(|v| v != r.version) {
            return Err(Error::Corrupt {
                segment: id,
                offset: r.offset,
                position: Some(Position(r.position)),
                kind: CorruptionKind::VersionGap(Box::new(VersionGap {
                    stream: r.stream.clone(),
                    version: r.version,
                    after: expected.and_then(|v| v.checked_sub(1)),
                })),
            });
        }
        *expected = Some(r.version + 1);
    }
    Ok(())
}

/// Adds checked records ([`check_streams_continue`]) to their streams' position lists.
fn extend_streams(streams: &mut StreamIndex, records: &[segment::recover::Scanned]) {
    for run in records.chunk_by(|a, b| a.stream == b.stream) {
        let entry = match streams.get_mut(run[0].stream.as_str()) {
            Some(entry) => entry,
            None => streams.entry(run[0].stream.clone()).or_default(),
        };
        if entry.positions.is_empty() {
            // A fork's first own event starts past 0 (the fold checks it against the fork).
            entry.base = run[0].version;
        }
        entry.positions.extend(run.iter().map(|r| r.position));
    }
}

/// Refuses to open a log whose newest segment file is older than the newest segment the extent
/// record says was created: that segment (and perhaps more) is missing, and continuing would
/// hand out its positions again. With [`Recovery::AcceptMissingTail`] a writer continues when
/// exactly the newest segment is lost and the surviving log ends where it began.
fn check_extent(
    log_dir: &Path,
    options: &Options,
    access: Access,
    recorded: Option<SegmentId>,
    newest: Option<SegmentId>,
    next_position: u64,
) -> Result<()> {
    let Some(recorded) = recorded else { return Ok(()) };
    if newest.is_some_and(|newest| newest >= recorded) {
        return Ok(());
    }
    let path = log_dir.join(segment::file_name(recorded));
    if next_position < recorded.0 {
        return Err(Error::MissingSegments { path, segment: recorded, next_position, newest });
    }
    if access == Access::Write && options.recovery == Recovery::AcceptMissingTail {
        tracing::error!(segment = %recorded, file = %path.display(),
            "accepting a missing newest segment: its events are lost; the log continues at position {next_position}");
        return Ok(());
    }
    Err(Error::MissingSegment { path, segment: recorded, next_position, newest })
}

/// Each stream's positions, from the sealed segments' footers in segment order. At 100,000
/// streams this is millions of lookups in a map far larger than the caches, so the streams are
/// split by a hash of their name over one thread per core (fewer for a small log, see
/// [`INDEX_ENTRIES_PER_THREAD`]), each building its own map.
fn index_streams(footers: &[(SegmentId, u64, Footer)]) -> Result<StreamIndex> {
    let entries: usize = footers.iter().map(|(_, _, f)| f.streams().len()).sum();
    index_streams_on(footers, cores().min(entries.div_ceil(INDEX_ENTRIES_PER_THREAD)))
}

/// [`index_streams`] on `threads` threads. A stream whose versions do not continue from one
/// footer to the next is corruption of the later footer; of several, the one a single pass would
/// meet first is reported.
fn index_streams_on(footers: &[(SegmentId, u64, Footer)], threads: usize) -> Result<StreamIndex> {
    use std::hash::BuildHasher;
    if footers.is_empty() {
        return Ok(StreamIndex::default());
    }
    let workers = threads.max(1);
    let shard = foldhash::fast::FixedState::default();
    let built: Vec<std::result::Result<StreamIndex, (usize, String, Error)>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..workers)
            .map(|worker| {
                let shard = &shard;
                scope.spawn(move || {
                    let mut streams = StreamIndex::default();
                    for (i, (id, footer_offset, footer)) in footers.iter().enumerate() {
                        let mine = footer.streams().filter(|s| usize_of(shard.hash_one(s.name)) % workers == worker);
                        for s in mine {
                            // One lookup for a known stream; the name is copied only for a new one.
                            let entry = match streams.get_mut(s.name) {
                                Some(entry) => entry,
                                // A fork's own events start after its fork point; that the
                                // fork says so is checked once the lifecycle is folded.
                                None => streams
                                    .entry(s.name.to_string())
                                    .or_insert_with(|| StreamEntry { base: s.first_version, ..Default::default() }),
                            };
                            if entry.next_version() != s.first_version {
                                let kind = CorruptionKind::VersionGap(Box::new(VersionGap {
                                    stream: s.name.to_string(),
                                    version: s.first_version,
                                    after: entry.last_version(),
                                }));
                                let error =
                                    Error::Corrupt { segment: *id, offset: *footer_offset, position: None, kind };
                                return Err((i, s.name.to_string(), error));
                            }
                            entry.positions.extend_from_slice(s.positions);
                        }
                    }
                    Ok(streams)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("indexing footers does not panic")).collect()
    });
    let mut maps = Vec::with_capacity(built.len());
    let mut first_error: Option<(usize, String, Error)> = None;
    for result in built {
        match result {
            Ok(map) => maps.push(map),
            Err(e) => {
                if first_error.as_ref().is_none_or(|f| (e.0, &e.1) < (f.0, &f.1)) {
                    first_error = Some(e);
                }
            }
        }
    }
    if let Some((_, _, error)) = first_error {
        return Err(error);
    }
    let mut streams = maps.pop().unwrap_or_default();
    streams.reserve(maps.iter().map(std::collections::HashMap::len).sum());
    for map in maps {
        streams.extend(map);
    }
    Ok(streams)
}

/// Stream entries of sealed footers per thread that indexes them at open: each thread hashes
/// every entry to find its own, so a small log is indexed on one.
const INDEX_ENTRIES_PER_THREAD: usize = 10_000;

/// What open learns of one segment file before it checks how the segments join.
struct Probe {
    id: SegmentId,
    path: PathBuf,
    /// The open file of an unsealed segment, for recovery; a sealed one is closed once mapped, so
    /// open holds one descriptor per segment only as long as it takes to map it.
    file: Option<Box<dyn StorageFile>>,
    len: u64,
    header: SegmentHeader,
    /// The segment's footer (without ids) and its mapping if it is sealed; damage found there is
    /// reported only after the segment's header has been found to join its predecessor.
    sealed: Result<Option<(Mapping, segment::Sealed)>>,
    /// Set for an evicted segment (probed from its stub).
    cold: Option<Arc<tier::ColdSegment>>,
}

/// The largest stub open reads: a segment's header, footer and id record are far smaller than
/// its capacity, and so are its `$lifecycle` records; a larger file is damage.
const STUB_FILE_MAX: u64 = SEGMENT_SIZE_MAX;

/// Opens every segment, checks its header and reads its footer if it is sealed, on as many
/// threads as there are cores: decoding footers is most of the time open spends on a large log.
/// Results are in `ids` order, so the caller reports the earliest damage first.
fn probe_segments(log_dir: &Path, options: &Options, ids: &[(SegmentId, bool)], access: Access) -> Vec<Result<Probe>> {
    let workers = cores().min(ids.len()).max(1);
    let mut results: Vec<(usize, Result<Probe>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                scope.spawn(move || {
                    (w..ids.len())
                        .step_by(workers)
                        .map(|i| {
                            let (id, evicted) = ids[i];
                            let probe = if evicted {
                                probe_stub(log_dir, options, id)
                            } else {
                                probe_segment(log_dir, options.fs.as_ref(), id, access)
                            };
                            (i, probe)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("probing a segment does not panic")).collect()
    });
    results.sort_unstable_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, probe)| probe).collect()
}

/// An evicted segment's probe: its stub read and checked, and the map rebuilt from it holding
/// the header, footer and kept records at their offsets (tier.rs). The bucket is not asked.
fn probe_stub(log_dir: &Path, options: &Options, id: SegmentId) -> Result<Probe> {
    let fs = options.fs.as_ref();
    let stub_path = log_dir.join(stub::stub_name(id));
    let file = fs.open_read_only(&stub_path).map_err(|e| Error::io("open stub", &stub_path, e))?;
    let len = file.len().map_err(|e| Error::io("stat stub", &stub_path, e))?;
    if len > STUB_FILE_MAX {
        let detail = format!("{len} bytes is larger than a stub may be ({STUB_FILE_MAX})");
        return Err(Error::BadSideFile { path: stub_path, detail });
    }
    let mut bytes = vec![0; usize_of(len)];
    file.read_exact_at(&mut bytes, 0).map_err(|e| Error::io("read stub", &stub_path, e))?;
    let stub = stub::Stub::decode(&bytes, id).map_err(|detail| Error::BadSideFile {
        path: stub_path.clone(),
        detail: format!("not a valid stub: {detail}"),
    })?;
    if !(SEGMENT_FILE_MIN..=SEGMENT_SIZE_MAX).contains(&stub.capacity) || stub.ranges.len() < 3 {
        let detail = format!("not a valid stub: capacity {} and {} ranges", stub.capacity, stub.ranges.len());
        return Err(Error::BadSideFile { path: stub_path, detail });
    }
    let corrupt = |offset, kind| Error::Corrupt { segment: id, offset, position: None, kind };
    let map = stub.to_map().map_err(|e| Error::io("map stub", &stub_path, e))?;
    let header = SegmentHeader::decode(&map.bytes()[..segment::HEADER_USED]).map_err(|k| corrupt(0, k))?;
    if header.id != id || header.capacity != stub.capacity {
        let damage =
            HeaderDamage::Mismatch { id: header.id, capacity: header.capacity, file_id: id, file_len: stub.capacity };
        return Err(corrupt(0, CorruptionKind::SegmentHeader(Box::new(damage))));
    }
    let sealed = match segment::read_sealed(map.bytes(), false) {
        Ok(Some(sealed)) => {
            // Decoded: the index keeps the footer from here on, the map kept does not.
            drop(map);
            Ok(Some((stub.resident_map().map_err(|e| Error::io("map stub", &stub_path, e))?, sealed)))
        }
        Ok(None) => Ok(None),
        Err((offset, kind)) => Err(corrupt(offset, kind)),
    };
    // The ranges between the header and the footer are the records kept (`$lifecycle`'s).
    let kept = stub.ranges[1..stub.ranges.len() - 2].iter().map(|(at, _)| *at).collect();
    let cold =
        tier::ColdSegment { id, capacity: stub.capacity, digest: stub.digest, kept, tiering: options.tiering.clone() };
    let path = log_dir.join(segment::file_name(id));
    Ok(Probe { id, path, file: None, len: stub.capacity, header, sealed, cold: Some(Arc::new(cold)) })
}

fn probe_segment(log_dir: &Path, fs: &dyn FileSystem, id: SegmentId, access: Access) -> Result<Probe> {
    let path = log_dir.join(segment::file_name(id));
    let file = match access {
        Access::Write => fs.open(&path),
        Access::ReadOnly => fs.open_read_only(&path),
    };
    let file = file.map_err(|e| Error::io("open segment", &path, e))?;
    let len = file.len().map_err(|e| Error::io("stat segment", &path, e))?;
    let corrupt = |offset, kind| Error::Corrupt { segment: id, offset, position: None, kind };
    if !(SEGMENT_FILE_MIN..=SEGMENT_SIZE_MAX).contains(&len) {
        let damage = HeaderDamage::FileSize { len, min: SEGMENT_FILE_MIN, max: SEGMENT_SIZE_MAX };
        return Err(corrupt(0, CorruptionKind::SegmentHeader(Box::new(damage))));
    }
    let header = {
        let mut b = [0u8; segment::HEADER_USED];
        file.read_exact_at(&mut b, 0).map_err(|e| Error::io("read segment header", &path, e))?;
        SegmentHeader::decode(&b).map_err(|k| corrupt(0, k))?
    };
    if header.id != id || header.capacity != len {
        let damage = HeaderDamage::Mismatch { id: header.id, capacity: header.capacity, file_id: id, file_len: len };
        return Err(corrupt(0, CorruptionKind::SegmentHeader(Box::new(damage))));
    }
    // A sealed segment keeps this mapping; an unsealed one is dropped again before recovery
    // (which may repair the file) maps it afresh.
    let sealed = Mapping::new(file.as_file(), len).map_err(|e| Error::io("map segment", &path, e)).and_then(|map| {
        // With a cold page cache, faulting a footer in a page at a time is most of open's time.
        let trailer_at = usize_of(len - segment::TRAILER_LEN);
        if let Some(trailer) = segment::Trailer::decode(&map.bytes()[trailer_at..]) {
            map.will_need(trailer.footer_offset, trailer.footer_len);
        }
        match segment::read_sealed(map.bytes(), false) {
            Ok(Some(sealed)) => Ok(Some((map, sealed))),
            Ok(None) => Ok(None),
            Err((offset, kind)) => Err(corrupt(offset, kind)),
        }
    });
    let file = match sealed {
        Ok(Some(_)) => None,
        _ => Some(file),
    };
    Ok(Probe { id, path, file, len, header, sealed, cold: None })
}

/// Starts a new active segment after the newest sealed one (or the first of an empty log).
fn create_first_active(dir: &Path, options: &Options, index: &mut Index) -> Result<Active> {
    let fs = &options.fs;
    let log_dir = dir::log_dir(dir);
    let id = SegmentId(index.next_position);
    let tmp = log_dir.join(dir::SPARE_FILE);
    // Sized like the one after the newest sealed segment (a new log starts small).
    let capacity = segment::next_capacity(index.segments.last().map(|s| s.map.mapped_len()), options.segment_size);
    let header = SegmentHeader {
        version: segment::FORMAT_VERSION,
        id,
        capacity,
        prev_hash: index.head_hash,
        created_ms: writer::now_ms(),
        flags: SegmentHeader::flags_for(options.keys.is_some() || index.newest_encrypted),
    };
    let file = segment::prepare(fs.as_ref(), &tmp, capacity).map_err(|e| Error::io("prepare segment", &tmp, e))?;
    let (active, state) = segment::install(fs.as_ref(), &log_dir, &|| fs.sync_dir(&log_dir), file, &header)
        .inspect_err(|_| {
            // A partial file would hold the space it got while the disk is full.
            let _ = fs.remove(&tmp);
        })?;
    index.segments.push(state);
    Ok(active)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Footers of `streams` streams over `segments` segments, each stream with two events per
    /// segment; `broken` lists (footer, stream) entries whose first version is off by one.
    fn footers(segments: u64, streams: u64, broken: &[(u64, u64)]) -> Vec<(SegmentId, u64, Footer)> {
        (0..segments)
            .map(|seg| {
                let first = seg * streams * 2;
                let mut footer =
                    Footer::new(first, (0..u32::try_from(streams * 2).unwrap()).map(|i| 4096 + 128 * i).collect());
                for s in 0..streams {
                    let off = u64::from(broken.contains(&(seg, s)));
                    let positions = [first + 2 * s, first + 2 * s + 1];
                    footer.push_stream(&format!("s{s:04}"), seg * 2 + off, &positions, &[[0; 16]; 2]);
                }
                (SegmentId(first), 1_000_000 + seg, footer)
            })
            .collect()
    }

    /// However many threads index the footers, the index is the same, and of several broken
    /// entries the earliest footer's first stream in name order is reported.
    #[test]
    fn index_streams_is_the_same_on_any_number_of_threads() {
        let expected = index_streams_on(&footers(3, 500, &[]), 1).unwrap();
        assert_eq!(expected.len(), 500);
        assert_eq!(expected["s0007"].positions, vec![14, 15, 1014, 1015, 2014, 2015]);
        for threads in [1, 2, 8] {
            assert_eq!(index_streams_on(&footers(3, 500, &[]), threads).unwrap(), expected);
            // Broken: streams 420 and 400 in footer 1, then streams 3 and 250 in footer 2.
            let broken = footers(3, 500, &[(2, 3), (1, 420), (1, 400), (2, 250)]);
            match index_streams_on(&broken, threads).unwrap_err() {
                Error::Corrupt { segment, offset, kind: CorruptionKind::VersionGap(gap), .. } => {
                    assert_eq!((segment, offset), (SegmentId(1000), 1_000_001), "{threads} threads");
                    assert_eq!((gap.stream.as_str(), gap.version, gap.after), ("s0400", 3, Some(1)));
                }
                other => panic!("expected a corrupt footer, got {other}"),
            }
        }
        assert!(index_streams_on(&[], 2).unwrap().is_empty());
    }
}
