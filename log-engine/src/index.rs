//! The in-memory index: which segments exist, where each position's record lives, and each
//! stream's positions by version with its lifecycle state beside them.
//!
//! It is rebuilt at open from sealed segments' footers and a scan of the active segment, and
//! extended by the writer after every durable commit. Readers take the read lock only to copy
//! out locations; they decode from the mapped segments after releasing it.
//!
//! Lifecycle state (lifecycle.rs) is folded from the `$lifecycle` stream's events: at open by
//! reading that stream's records through the index (so open still reads no other sealed
//! record), at commit from what the writer staged. A fork holds no copy of its source's
//! positions: its entry starts at `base` (the version after the fork point) and versions below
//! it resolve through the source, so a fork costs O(1) in memory and on disk.
//!
//! Erasures are kept apart from the streams' entries, in [`Erasures`]: the version ranges
//! whose payloads reads must mask, by the stream that owns the records (an erasure through a
//! fork's shared prefix lands on its source, so every stream that reads those records sees
//! them erased). Readers take a cheap shared snapshot of it with the locations they copy out.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::cast::usize_of;
use crate::error::{BodyDamage, CorruptionKind, Error, FooterDamage, FrameDamage, IndexMismatch, Result, VersionGap};
use crate::lifecycle::{Change, Life, StreamNow, LIFECYCLE_STREAM};
use crate::mmap::Mapping;
use crate::record::{self, Frame, KIND_CIPHER, KIND_EVENT, KIND_HUSK};
use crate::tier::ColdSegment;
use crate::types::{ChainHash, Event, EventRef, Payload, Position, SegmentId};

/// One segment as readers see it.
#[derive(Debug)]
pub(crate) struct SegmentState {
    pub id: SegmentId,
    pub path: PathBuf,
    /// The file's map; for an evicted segment, its stub's (header, `$lifecycle` records,
    /// footer and trailer, zeros elsewhere: tier.rs), and `cold` reads the rest.
    pub map: Arc<Mapping>,
    /// Set when the segment is evicted to the archive (only a sealed one is).
    pub cold: Option<Arc<ColdSegment>>,
    /// Byte offset of each committed record, by position − id.
    pub offsets: Vec<u32>,
    /// End of the last committed record.
    pub data_end: u64,
    pub sealed: bool,
}

impl SegmentState {
    pub(crate) fn next_position(&self) -> u64 {
        self.id.0 + self.offsets.len() as u64
    }
}

/// One stream in the index: the positions of its own events, and its lifecycle state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct StreamEntry {
    /// The version of `positions[0]`: 0, or for a fork the version after its fork point.
    pub base: u64,
    /// Position of each own version from `base` on.
    pub positions: Vec<u64>,
    /// `None` for a stream no lifecycle event names (the common case costs one pointer).
    pub life: Option<Box<Life>>,
}

impl StreamEntry {
    /// The version the stream's next event gets.
    pub(crate) fn next_version(&self) -> u64 {
        self.base + self.positions.len() as u64
    }

    pub(crate) fn last_version(&self) -> Option<u64> {
        self.next_version().checked_sub(1)
    }

    /// Position of an own version (not one of a fork's shared prefix).
    pub(crate) fn own_position(&self, version: u64) -> Option<u64> {
        let i = usize::try_from(version.checked_sub(self.base)?).ok()?;
        self.positions.get(i).copied()
    }

    pub(crate) fn life(&self) -> Option<&Life> {
        self.life.as_deref()
    }
}

/// Stream name → its entry.
pub(crate) type StreamIndex = HashMap<String, StreamEntry, foldhash::quality::RandomState>;

#[derive(Debug)]
pub(crate) struct Index {
    /// Sorted by id; the last one is the active segment.
    pub segments: Vec<SegmentState>,
    pub streams: StreamIndex,
    /// Position the next committed event gets (= committed event count).
    pub next_position: u64,
    /// Chain hash at `next_position − 1`, or the genesis hash.
    pub head_hash: ChainHash,
    /// Timestamp of the newest event (0 for an empty log): the log's clock, against which
    /// retention and expiry are measured, so that a replay or restore sees what the log saw.
    pub clock_ms: u64,
    /// Erased version ranges; replaced (copy on write) by each erasure, so a reader's snapshot
    /// is one reference count.
    pub erasures: Arc<Erasures>,
    /// Per stream, the newest secret an erasure of the whole stream destroys
    /// (`Change::Erased::shred_through`): a writer's open destroys any still in the key store.
    pub shreds: HashMap<String, u32, foldhash::quality::RandomState>,
    /// Whether the newest segment at open says the log is encrypted (its header's flag).
    pub newest_encrypted: bool,
}

/// Erased versions, by the stream that owns the records: sorted, disjoint, non-adjacent
/// inclusive ranges per stream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Erasures {
    by_stream: HashMap<String, Vec<(u64, u64)>, foldhash::quality::RandomState>,
}

impl Erasures {
    pub(crate) fn is_empty(&self) -> bool {
        self.by_stream.is_empty()
    }

    /// Every stream's erased ranges (by the stream that owns the records).
    pub(crate) fn ranges(&self) -> impl Iterator<Item = (&str, &[(u64, u64)])> {
        self.by_stream.iter().map(|(stream, ranges)| (stream.as_str(), ranges.as_slice()))
    }

    /// Whether version `version` of `stream` (the stream that wrote the record) is erased.
    pub(crate) fn covers(&self, stream: &str, version: u64) -> bool {
        let Some(ranges) = self.by_stream.get(stream) else { return false };
        let i = ranges.partition_point(|&(_, hi)| hi < version);
        ranges.get(i).is_some_and(|&(lo, _)| lo <= version)
    }

    /// Strips the payload of `event` if it is erased: only its header stays readable.
    pub(crate) fn mask(&self, event: &mut Event) {
        if !self.is_empty() && self.covers(&event.stream, event.version.0) {
            event.erased = true;
            event.metadata = Vec::new();
            // As a husk decodes (record.rs), so a read cannot tell which kind of erasure it met.
            event.data = Payload::Bytes(Vec::new());
        }
    }

    /// [`Erasures::mask`] for a borrowed event.
    pub(crate) fn mask_ref(&self, event: &mut EventRef<'_>) {
        if !self.is_empty() && self.covers(event.stream, event.version.0) {
            event.erased = true;
            event.metadata = &[];
            event.data = &[];
            event.data_is_json = false;
        }
    }

    /// Adds `lo..=hi` of `stream`, merging it with the ranges it meets or touches.
    fn add(&mut self, stream: &str, lo: u64, hi: u64) {
        let ranges = self.by_stream.entry(stream.to_string()).or_default();
        let start = ranges.partition_point(|&(_, h)| h.saturating_add(1) < lo);
        let end = ranges.partition_point(|&(l, _)| l <= hi.saturating_add(1));
        let merged = ranges[start..end].iter().fold((lo, hi), |(l, h), &(a, b)| (l.min(a), h.max(b)));
        ranges.splice(start..end, [merged]);
    }
}

/// Where one record lives.
#[derive(Debug, Clone)]
pub(crate) struct Location {
    pub segment: SegmentId,
    /// The segment's map as the index held it (an evicted segment's stub map): read it through
    /// [`Location::map`].
    held: Arc<Mapping>,
    cold: Option<Arc<ColdSegment>>,
    pub offset: u64,
}

impl Location {
    /// The map holding the record: the segment's, or for an evicted segment the stub's (for a
    /// record the stub keeps) or a fetched copy's. Call it without the index's lock held: a
    /// fetch waits on the cold store.
    pub(crate) fn map(&self) -> Result<Arc<Mapping>> {
        match &self.cold {
            Some(cold) if !cold.keeps(self.offset) => cold.map(),
            _ => Ok(self.held.clone()),
        }
    }
}

impl Location {
    /// [`Location::map`] for a computation under the index's lock: never fetches. An evicted
    /// segment's record comes from the stub, the copies `fetched` holds or the cache; otherwise
    /// [`Stop::Cold`] names the segment to fetch once the lock is released ([`with_fetched`]).
    fn map_held(&self, fetched: &Fetched) -> std::result::Result<Arc<Mapping>, Stop> {
        match &self.cold {
            Some(cold) if !cold.keeps(self.offset) => fetched_or_stop(cold, fetched),
            _ => Ok(self.held.clone()),
        }
    }
}

/// An evicted segment's whole file from `fetched` or the cache, or the stop that fetches it.
fn fetched_or_stop(cold: &Arc<ColdSegment>, fetched: &Fetched) -> std::result::Result<Arc<Mapping>, Stop> {
    match fetched.get(cold.id) {
        Some(map) => Ok(map),
        None if fetched.offline => Err(Stop::Failed(Error::Evicted { segment: cold.id })),
        None => cold.cached().ok_or_else(|| Stop::Cold(cold.clone())),
    }
}

/// Why a computation under the index's read lock stopped: an error, or an evicted segment whose
/// records it needs and has not at hand. It never fetches under the lock: the writer publishes
/// under the write lock, so every append would wait on the bucket (up to its timeout).
#[derive(Debug)]
pub(crate) enum Stop {
    Failed(Error),
    Cold(Arc<ColdSegment>),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        Stop::Failed(e)
    }
}

/// Copies of evicted segments fetched, without the lock, for one computation under it.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    maps: Vec<(SegmentId, Arc<Mapping>)>,
    /// Fetch nothing: a record only the archive holds is [`Error::Evicted`].
    offline: bool,
}

impl Fetched {
    /// Nothing fetched, and nothing to fetch: for an answer that must not wait on the archive.
    pub(crate) fn offline() -> Fetched {
        Fetched { maps: Vec::new(), offline: true }
    }

    fn get(&self, id: SegmentId) -> Option<Arc<Mapping>> {
        self.maps.iter().find(|(s, _)| *s == id).map(|(_, m)| m.clone())
    }
}

/// Runs `f` under `index`'s read lock; when it stops for an evicted segment, releases the lock,
/// fetches that segment (into the cache, and kept at hand for `f`) and runs `f` again. Every
/// round adds a segment the previous ones lacked, so it ends within the log's segment count.
pub(crate) fn with_fetched<T>(
    index: &RwLock<Index>,
    mut f: impl FnMut(&Index, &Fetched) -> std::result::Result<T, Stop>,
) -> Result<T> {
    let mut fetched = Fetched::default();
    loop {
        let outcome = f(&index.read(), &fetched);
        match outcome {
            Ok(value) => return Ok(value),
            Err(Stop::Failed(e)) => return Err(e),
            Err(Stop::Cold(cold)) => {
                assert!(fetched.get(cold.id).is_none(), "segment {} was fetched for this computation already", cold.id);
                let map = cold.map()?;
                fetched.maps.push((cold.id, map));
            }
        }
    }
}

/// A segment's map as the index holds it, with what reads an evicted segment's records:
/// copied out under the lock, read ([`Held::readable`]) without it.
#[derive(Clone)]
pub(crate) struct Held {
    pub map: Arc<Mapping>,
    pub cold: Option<Arc<ColdSegment>>,
}

impl Held {
    pub(crate) fn readable(&self) -> Result<Arc<Mapping>> {
        SegmentState::readable_map(&self.map, self.cold.as_ref())
    }
}

impl SegmentState {
    pub(crate) fn held(&self) -> Held {
        Held { map: self.map.clone(), cold: self.cold.clone() }
    }

    /// [`SegmentState::readable_map`] under the index's lock: never fetches ([`Stop`]).
    pub(crate) fn map_held(&self, fetched: &Fetched) -> std::result::Result<Arc<Mapping>, Stop> {
        match &self.cold {
            Some(cold) => fetched_or_stop(cold, fetched),
            None => Ok(self.map.clone()),
        }
    }

    /// The map to read records from: [`Location::map`]'s rule for a whole segment.
    pub(crate) fn readable_map(map: &Arc<Mapping>, cold: Option<&Arc<ColdSegment>>) -> Result<Arc<Mapping>> {
        match cold {
            Some(cold) => cold.map(),
            None => Ok(map.clone()),
        }
    }
}

impl Index {
    /// The segment holding `position`, which must be committed.
    pub(crate) fn segment_of(&self, position: u64) -> Option<&SegmentState> {
        if position >= self.next_position {
            return None;
        }
        let i = self.segments.partition_point(|s| s.id.0 <= position);
        let segment = &self.segments[i.checked_sub(1)?];
        (position < segment.next_position()).then_some(segment)
    }

    pub(crate) fn locate(&self, position: u64) -> Option<Location> {
        let segment = self.segment_of(position)?;
        let offset = u64::from(segment.offsets[usize_of(position - segment.id.0)]);
        Some(Location { segment: segment.id, held: segment.map.clone(), cold: segment.cold.clone(), offset })
    }

    pub(crate) fn head(&self) -> Option<(Position, ChainHash)> {
        self.next_position.checked_sub(1).map(|p| (Position(p), self.head_hash))
    }

    pub(crate) fn active_mut(&mut self) -> &mut SegmentState {
        self.segments.last_mut().expect("an open log always has an active segment")
    }
}

/// Versions `lo..=hi` of a stream resolved to (owning stream, version, position): a fork's
/// shared prefix resolves through its source (and its source's source), so the record found
/// can be checked against the stream that wrote it.
pub(crate) type Resolved = Vec<(String, u64, u64)>;

impl Index {
    /// What the writer checks an append or a change against, as published.
    pub(crate) fn now(&self, stream: &str) -> StreamNow {
        let Some(entry) = self.streams.get(stream) else { return StreamNow::default() };
        let life = entry.life();
        StreamNow {
            last: entry.last_version(),
            tombstoned: life.is_some_and(|l| l.tombstoned),
            closed: life.is_some_and(|l| l.closed),
            forked: life.is_some_and(|l| l.forked_from.is_some()),
            deleted_before: life.and_then(|l| l.deleted_before),
            ttl_ms: life.and_then(|l| l.metadata.ttl_ms),
            truncate_before: life.and_then(|l| l.metadata.truncate_before),
            max_count: life.and_then(|l| l.metadata.max_count),
            fork_floor: life.map_or(0, |l| l.fork_floor),
            last_timestamp_ms: None,
        }
    }

    /// Applies one lifecycle change. `Err` describes a change that cannot follow the index as
    /// it stands (only a damaged log has one: the writer checked it before writing it).
    pub(crate) fn apply(&mut self, change: &Change) -> std::result::Result<(), String> {
        if let Change::Erased { stream, from_version, to_version, shred_through, .. } = change {
            self.erase(stream, *from_version, *to_version)?;
            if let Some(through) = *shred_through {
                let newest = self.shreds.entry(stream.clone()).or_insert(through);
                *newest = (*newest).max(through);
            }
            return Ok(());
        }
        let entry = self.streams.entry(change.stream().to_string()).or_default();
        if let Change::Forked { stream, source, at_version, .. } = change {
            let base = at_version + 1;
            let fresh = entry.base == 0 && entry.positions.is_empty();
            if !(fresh || entry.base == base) || entry.life().is_some_and(|l| l.forked_from.is_some()) {
                return Err(format!(
                    "stream {stream} is forked from {source} at version {at_version}, but it already has \
                     versions from {} on",
                    entry.base
                ));
            }
            entry.base = base;
        }
        let life = entry.life.get_or_insert_with(Box::default);
        match change {
            Change::Deleted { before_version, .. } => {
                life.deleted_before = Some(life.deleted_before.unwrap_or(0).max(*before_version));
            }
            Change::Tombstoned { before_version, .. } => {
                life.tombstoned = true;
                life.deleted_before = Some(life.deleted_before.unwrap_or(0).max(*before_version));
            }
            Change::Closed { .. } => life.closed = true,
            Change::Metadata { metadata, .. } => {
                life.closed |= metadata.closed;
                life.metadata = metadata.clone();
                life.metadata.closed = life.closed;
            }
            Change::Forked { source, at_version, first_version, .. } => {
                life.forked_from = Some((source.clone(), *at_version));
                life.fork_floor = *first_version;
            }
            Change::Erased { .. } => unreachable!("applied above"),
        }
        if life.closed {
            life.metadata.closed = true;
        }
        Ok(())
    }

    /// Records the erasure of versions `lo..=hi` of `stream`, on the streams that own them.
    fn erase(&mut self, stream: &str, lo: u64, hi: u64) -> std::result::Result<(), String> {
        if self.streams.get(stream).and_then(StreamEntry::last_version).is_none_or(|last| hi > last) {
            return Err(format!("stream {stream} is erased from version {lo} to {hi}, but it has no version {hi}"));
        }
        let spans: Vec<(String, u64, u64)> =
            self.owners(stream, lo, hi).into_iter().map(|(owner, lo, hi)| (owner.to_string(), lo, hi)).collect();
        let erasures = Arc::make_mut(&mut self.erasures);
        for (owner, lo, hi) in spans {
            erasures.add(&owner, lo, hi);
        }
        Ok(())
    }

    /// Folds the `$lifecycle` events from version `from` on into the streams' state, reading
    /// them through the index; then checks that every stream that starts past version 0 is a
    /// fork starting right after its fork point (otherwise its first footer entry or record is
    /// a version gap). At open `from` is 0; a reader's refresh passes what it had folded.
    pub(crate) fn fold_lifecycle(&mut self, from: u64) -> Result<()> {
        let positions: Vec<(u64, u64)> = match self.streams.get(LIFECYCLE_STREAM) {
            Some(entry) => (from..entry.next_version()).filter_map(|v| Some((v, entry.own_position(v)?))).collect(),
            None => Vec::new(),
        };
        for (version, position) in positions {
            let location = self.locate(position).expect("indexed positions are committed");
            let corrupt = |kind| Error::Corrupt {
                segment: location.segment,
                offset: location.offset,
                position: Some(Position(position)),
                kind,
            };
            let map = location.map()?;
            let frame = committed_frame(map.bytes(), location.segment, location.offset, position)?;
            // `$lifecycle` events are never encrypted: the index folds them without a key.
            let event =
                record::decode_event(&frame, None).map_err(|d| d.at(location.segment, location.offset, position))?;
            if event.stream != LIFECYCLE_STREAM {
                return Err(corrupt(CorruptionKind::footer(FooterDamage::IndexMismatch(Box::new(IndexMismatch {
                    position,
                    stream: LIFECYCLE_STREAM.to_string(),
                    version,
                    record_stream: event.stream,
                    record_version: event.version.0,
                })))));
            }
            Change::parse(&event.event_type, event.data.as_bytes())
                .and_then(|change| self.apply(&change))
                .map_err(|reason| corrupt(CorruptionKind::RecordBody(BodyDamage::Lifecycle { reason })))?;
        }
        self.check_bases()
    }

    /// Every stream whose own versions start past 0 must be a fork whose next version that is.
    /// A stream that breaks this is corruption where its first own version is listed: the
    /// footer of a sealed segment, or the record in the active one. Of several, the earliest
    /// segment's first stream in name order is reported, as the footers' own check does.
    fn check_bases(&self) -> Result<()> {
        let broken = self
            .streams
            .iter()
            .filter(|(_, entry)| {
                let fork_base = entry.life().and_then(|l| l.forked_from.as_ref()).map_or(0, |(_, at)| at + 1);
                entry.base != fork_base && !entry.positions.is_empty()
            })
            .map(|(name, entry)| (self.segment_of(entry.positions[0]).map(|s| s.id), name, entry))
            .min_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let Some((_, name, entry)) = broken else { return Ok(()) };
        let fork_base = entry.life().and_then(|l| l.forked_from.as_ref()).map_or(0, |(_, at)| at + 1);
        let position = entry.positions[0];
        let segment = self.segment_of(position).expect("indexed positions are committed");
        let (offset, at) = if segment.sealed {
            (segment.data_end, None)
        } else {
            (u64::from(segment.offsets[usize_of(position - segment.id.0)]), Some(Position(position)))
        };
        let gap = VersionGap { stream: name.clone(), version: entry.base, after: fork_base.checked_sub(1) };
        Err(Error::Corrupt {
            segment: segment.id,
            offset,
            position: at,
            kind: CorruptionKind::VersionGap(Box::new(gap)),
        })
    }

    /// Versions `lo..=hi` of `stream` (which must exist and have them), own or shared through a
    /// fork, in ascending order. Walks the fork chain without recursion.
    pub(crate) fn resolve(&self, stream: &str, lo: u64, hi: u64) -> Resolved {
        let mut out = Vec::new();
        for (name, lo, hi) in self.owners(stream, lo, hi).into_iter().rev() {
            let entry = &self.streams[name];
            out.extend((lo..=hi).filter_map(|v| entry.own_position(v).map(|p| (name.to_string(), v, p))));
        }
        out
    }

    /// Versions `lo..=hi` of `stream` split by the stream that owns them, as
    /// `(owner, lo, hi)`: the stream's own versions first, then its fork source's (and that
    /// one's source's) shared prefix.
    pub(crate) fn owners(&self, stream: &str, lo: u64, hi: u64) -> Vec<(&str, u64, u64)> {
        let mut spans = Vec::new();
        let (mut name, mut hi) = (stream, hi);
        while let Some((key, entry)) = self.streams.get_key_value(name) {
            if hi >= entry.base {
                spans.push((key.as_str(), lo.max(entry.base), hi));
            }
            match entry.life().and_then(|l| l.forked_from.as_ref()) {
                Some((source, at)) if lo < entry.base => {
                    hi = hi.min(*at);
                    name = source;
                }
                _ => break,
            }
        }
        spans
    }

    /// Position of one version of `stream`, own or shared through a fork.
    pub(crate) fn position_of(&self, stream: &str, version: u64) -> Option<u64> {
        let mut name = stream;
        loop {
            let entry = self.streams.get(name)?;
            if version >= entry.base {
                return entry.own_position(version);
            }
            let (source, at) = entry.life()?.forked_from.as_ref()?;
            if version > *at {
                return None;
            }
            name = source;
        }
    }

    /// The versions of `stream` a stream read may return now, as `(first, last)` (`None`:
    /// the stream exists but its limits hide every event), after its delete point and its
    /// metadata's limits, measured on the log's clock ([`Index::clock_ms`]). An unknown or
    /// never-written stream is [`Error::StreamNotFound`]; a tombstoned one
    /// [`Error::StreamTombstoned`]; a deleted (or expired) one with nothing after the delete
    /// [`Error::StreamDeleted`].
    ///
    /// Reads event timestamps (for `max_age_ms` and `ttl_ms`) without fetching: see [`Stop`].
    pub(crate) fn readable(&self, stream: &str, fetched: &Fetched) -> std::result::Result<Option<(u64, u64)>, Stop> {
        self.window(stream, Retention::Apply, fetched)
    }

    /// As [`Index::readable`], but with the retention limits of the stream's metadata
    /// (`truncate_before`, `max_count`, `max_age_ms`) not applied: the versions that are gone
    /// only once the stream is deleted, tombstoned, expired by `ttl_ms` or outside its fork
    /// window. The scavenger keeps these for [`crate::ScavengeOptions::keep_hidden`] streams.
    pub(crate) fn undeleted(&self, stream: &str, fetched: &Fetched) -> std::result::Result<Option<(u64, u64)>, Stop> {
        self.window(stream, Retention::Ignore, fetched)
    }

    fn window(
        &self,
        stream: &str,
        retention: Retention,
        fetched: &Fetched,
    ) -> std::result::Result<Option<(u64, u64)>, Stop> {
        let not_found = || Error::StreamNotFound { stream: stream.to_string() };
        let entry = self.streams.get(stream).ok_or_else(not_found)?;
        let Some(life) = entry.life() else {
            return Ok(entry.last_version().map(|last| (0, last)));
        };
        if life.tombstoned {
            return Err(Error::StreamTombstoned { stream: stream.to_string() }.into());
        }
        let last = entry.last_version().ok_or_else(not_found)?;
        let mut first = life.deleted_before.unwrap_or(0);
        if first > last || self.expired(stream, life, last, fetched)? {
            return Err(Error::StreamDeleted { stream: stream.to_string() }.into());
        }
        // A fork shows none of what its source hid when it was forked (its own versions, from
        // `base` on, it shows).
        first = first.max(life.fork_floor.min(entry.base));
        if retention == Retention::Ignore {
            return Ok((first <= last).then_some((first, last)));
        }
        let metadata = &life.metadata;
        first = first.max(metadata.truncate_before.unwrap_or(0));
        if let Some(count) = metadata.max_count {
            first = first.max((last + 1).saturating_sub(count));
        }
        if let (Some(age), true) = (metadata.max_age_ms, first <= last) {
            // The first version young enough: timestamps never decrease along a stream's
            // versions (they follow log order, a fork's shared prefix included).
            let oldest = self.clock_ms.saturating_sub(age);
            let (mut lo, mut hi) = (first, last + 1);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if self.version_timestamp(stream, mid, fetched)? < oldest {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            first = lo;
        }
        Ok((first <= last).then_some((first, last)))
    }

    /// Whether `stream`'s `ttl_ms` has passed since its last event, by the log's clock.
    pub(crate) fn expired(
        &self,
        stream: &str,
        life: &Life,
        last: u64,
        fetched: &Fetched,
    ) -> std::result::Result<bool, Stop> {
        let Some(ttl) = life.metadata.ttl_ms else { return Ok(false) };
        Ok(self.clock_ms.saturating_sub(self.version_timestamp(stream, last, fetched)?) > ttl)
    }

    pub(crate) fn version_timestamp(
        &self,
        stream: &str,
        version: u64,
        fetched: &Fetched,
    ) -> std::result::Result<u64, Stop> {
        let position = self.position_of(stream, version).expect("a stream's versions up to its last are indexed");
        self.timestamp_at(position, fetched)
    }

    /// Timestamp of the committed event at `position`, from its frame (CRC checked). In an
    /// evicted segment it stops for a fetch rather than wait on the archive under the lock.
    fn timestamp_at(&self, position: u64, fetched: &Fetched) -> std::result::Result<u64, Stop> {
        let location = self.locate(position).ok_or(Error::PositionNotFound { position: Position(position) })?;
        let map = location.map_held(fetched)?;
        let frame = committed_frame(map.bytes(), location.segment, location.offset, position)?;
        Ok(frame.header.timestamp_ms)
    }
}

/// Whether [`Index`]'s stream windows apply a stream's retention limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retention {
    Apply,
    Ignore,
}

/// The event (or husk) frame the index says is at `offset`: CRC, kind and position checked.
pub(crate) fn committed_frame(bytes: &[u8], segment: SegmentId, offset: u64, position: u64) -> Result<Frame<'_>> {
    let corrupt = |kind| Error::Corrupt { segment, offset, position: Some(Position(position)), kind };
    let frame =
        record::decode_frame(&bytes[usize_of(offset)..], record::EVENT_BODY_MAX).map_err(|e| corrupt(e.into()))?;
    if !matches!(frame.header.kind, KIND_EVENT | KIND_HUSK | KIND_CIPHER) {
        return Err(corrupt(CorruptionKind::RecordFrame(FrameDamage::NotAnEvent { kind: frame.header.kind })));
    }
    if frame.header.position != position {
        return Err(corrupt(CorruptionKind::PositionGap {
            expected: Position(position),
            found: Position(frame.header.position),
        }));
    }
    Ok(frame)
}
