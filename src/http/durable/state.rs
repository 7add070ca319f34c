//! What a Durable Stream is in the log, and the per-stream state the server folds from it.
//!
//! A Durable Stream at path `P` is the cairn stream `ds:P`. Its events:
//! - `ds.created` opens an incarnation: JSON data [`Config`] (content type, TTL or expiry, fork
//!   source). Everything before the latest one belongs to an earlier incarnation (deleted) or,
//!   in a fork, to the inherited prefix.
//! - `ds.data`: one message. Raw byte modes store the request body's bytes as the event's binary
//!   data (a body larger than [`DATA_CHUNK_BYTES`] becomes several events of one atomic append);
//!   JSON mode stores each message (after flattening one level of a top-level array) as JSON.
//! - `ds.closed`: the stream takes no more messages. It is written in the same atomic append as
//!   a final message, so a reader never sees the close without that message.
//!
//! - `ds.state`: the stream's protocol state as a whole ([`Snapshot`]: configuration,
//!   incarnation, closed, producers, `Stream-Seq`), written before an erasure of the stream
//!   (`POST /v1/erase`, `cairn erase`), which removes payloads and metadata: the configuration
//!   of an erased `ds.created` and the producer state on erased messages would be lost with
//!   them. Folding it replaces the state folded so far.
//!
//! A stream with a TTL also has an access stream, `$ds-ttl:` and the first 32 hex digits of
//! BLAKE3 of the cairn name ([`access_stream`]): a read that slides the TTL while the stream's
//! last persisted activity is [`Loaded::marker_due`] old writes a `ds.accessed` marker there
//! (JSON data [`AccessMarker`]), so that a restart knows about reads to within half a TTL
//! without a message offset ever moving for a read. [`load`] reads that stream's last event
//! only: finding it costs one indexed read, never a scan.
//!
//! The last event of each append carries the writer's coordination state in its metadata under
//! [`META_KEY`]: `{"producer": [id, epoch, seq], "stream_seq": S}` (each part only when the
//! request sent it). Producer state and `Stream-Seq` are therefore committed atomically with
//! the messages they guard, and [`load`] rebuilds them from the log after a restart: a retry
//! after a crash meets the state its first attempt committed, or none if that attempt did not
//! commit (then it is written once).
//!
//! The server keeps each stream's folded state in a [`Registry`] slot behind an async mutex,
//! held while a write is validated and handed to the log's writer (not while it is fsynced):
//! validation and append are serialised per stream, as the protocol requires of producers,
//! while group commit still batches many streams' appends. A slot is loaded from the log on
//! first use and dropped (reloaded next time) whenever a write fails, the stream is deleted, or
//! cairn's own endpoints write to it (`outside_write` and `lock_outside` in the parent module).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log_engine::{Direction, Event, Log, Payload};
use serde::{Deserialize, Serialize};

/// The cairn stream name of a Durable Streams path is this prefix and the path.
pub const STREAM_PREFIX: &str = "ds:";
/// Event type that opens an incarnation of a stream.
pub const EVENT_CREATED: &str = "ds.created";
/// Event type of one message.
pub const EVENT_DATA: &str = "ds.data";
/// Event type that closes a stream.
pub const EVENT_CLOSED: &str = "ds.closed";
/// Event type that retires a deleted stream whose forks still read it.
pub const EVENT_DELETED: &str = "ds.deleted";
/// Event type of a snapshot of a stream's protocol state ([`Snapshot`]).
pub const EVENT_STATE: &str = "ds.state";
/// Event type of an access marker, on a stream's access stream ([`access_stream`]).
pub const EVENT_ACCESSED: &str = "ds.accessed";
/// The access streams' names start with this (reserved: only the server writes them).
pub const ACCESS_STREAM_PREFIX: &str = "$ds-ttl:";
/// Metadata key of the coordination state on an append's last event.
pub const META_KEY: &str = "ds";
/// Largest binary payload of one `ds.data` event; a larger body is split (one atomic append).
pub const DATA_CHUNK_BYTES: usize = 512 * 1024;
/// Events read per page while folding a stream's state.
const LOAD_PAGE_EVENTS: usize = 1_000;
/// Once the registry holds this many slots, slots nobody uses and that hold nothing are pruned;
/// the next prune waits until the registry has doubled from what the last one left, so a
/// registry of that many live streams costs one scan per doubling, not one per request.
pub const REGISTRY_PRUNE_AT: usize = 65_536;
/// Longest `Stream-TTL`, in seconds: the largest whose milliseconds fit a u64.
pub const TTL_SECONDS_MAX: u64 = u64::MAX / 1000;
/// Longest content type, in bytes (a `ds.created` event's, as stored).
pub const CONTENT_TYPE_LEN_MAX: usize = 256;
/// Largest `Producer-Epoch` and `Producer-Seq` (2^53 - 1, for JavaScript clients).
pub const PRODUCER_NUMBER_MAX: u64 = (1 << 53) - 1;
/// Longest `Stream-Seq` value, in bytes.
pub const STREAM_SEQ_LEN_MAX: usize = 256;
/// Longest `Producer-Id`, in bytes.
pub const PRODUCER_ID_LEN_MAX: usize = 256;

/// The configuration a stream was created with (the data of its `ds.created` event).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Config {
    /// As the creating request sent it.
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// The `Stream-Expires-At` text as sent, echoed on HEAD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// For a fork: the source's path and the offset it was forked at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_offset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_sub_offset: Option<u64>,
}

impl Config {
    /// A stream of `content_type` with no expiry and no fork source.
    pub fn of(content_type: &str) -> Config {
        Config {
            content_type: content_type.to_string(),
            ttl_seconds: None,
            expires_at_ms: None,
            expires_at: None,
            forked_from: None,
            fork_offset: None,
            fork_sub_offset: None,
        }
    }

    /// The media type without parameters, lowercased: what two content types are compared by.
    pub fn essence(&self) -> String {
        essence(&self.content_type)
    }

    /// Whether `content_type` has this stream's essence (compared without allocating: this
    /// runs on every append).
    pub fn same_essence(&self, content_type: &str) -> bool {
        raw_essence(&self.content_type).eq_ignore_ascii_case(raw_essence(content_type))
    }

    /// Whether a stored configuration is one this server could have written: a `ds.created`
    /// event appended through cairn's own API that is not (an unbounded TTL, a content type no
    /// header can carry, a fork source outside `/v1/stream/`) opens no incarnation.
    pub fn valid(&self) -> bool {
        let header_text = |s: &str| s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
        !self.content_type.is_empty()
            && self.content_type.len() <= CONTENT_TYPE_LEN_MAX
            && header_text(&self.content_type)
            && self.ttl_seconds.is_none_or(|t| t <= TTL_SECONDS_MAX)
            && !(self.ttl_seconds.is_some() && self.expires_at_ms.is_some())
            && self.expires_at.as_deref().is_none_or(|t| parse_rfc3339(t) == self.expires_at_ms)
            && self.forked_from.as_deref().is_none_or(|f| f.starts_with("/v1/stream/") && header_text(f))
            && self.fork_offset.as_deref().is_none_or(|o| super::offset::parse(o).is_ok())
    }

    pub fn is_json(&self) -> bool {
        raw_essence(&self.content_type).eq_ignore_ascii_case("application/json")
    }

    /// Whether SSE carries this stream's bytes as text (otherwise base64).
    pub fn is_text(&self) -> bool {
        let e = self.essence();
        e.starts_with("text/") || e == "application/json" || e.ends_with("+json") || e.ends_with("ndjson")
    }
}

/// A media type's essence: before any `;`, trimmed, lowercased.
pub fn essence(content_type: &str) -> String {
    raw_essence(content_type).to_ascii_lowercase()
}

/// [`essence`] before lowercasing.
fn raw_essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// One idempotent producer's committed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Producer {
    pub epoch: u64,
    pub seq: u64,
}

/// The producer headers of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerClaim {
    pub id: String,
    pub epoch: u64,
    pub seq: u64,
}

/// What [`Loaded::check_producer`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerVerdict {
    /// New data: append it.
    Accept,
    /// Already committed: answer 204 with the highest accepted seq.
    Duplicate { seq: u64 },
    /// A newer epoch holds the id: 403 with it.
    StaleEpoch { epoch: u64 },
    /// A seq was skipped: 409 with the expected one.
    Gap { expected: u64 },
    /// A new epoch must start at seq 0: 400.
    EpochNeedsSeqZero,
}

/// The coordination state carried on an append's last event.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Coordination {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<(String, u64, u64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_seq: Option<String>,
}

impl Coordination {
    /// Within the bounds a request's headers have (so it is what this server writes): metadata
    /// appended through cairn's own API beyond them moves no state.
    pub fn valid(&self) -> bool {
        let producer = self.producer.as_ref().is_none_or(|(id, epoch, seq)| {
            !id.is_empty()
                && id.len() <= PRODUCER_ID_LEN_MAX
                && *epoch <= PRODUCER_NUMBER_MAX
                && *seq <= PRODUCER_NUMBER_MAX
        });
        let seq = self.stream_seq.as_ref().is_none_or(|s| !s.is_empty() && s.len() <= STREAM_SEQ_LEN_MAX);
        producer && seq
    }
}

/// A live stream's folded state.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The log position of this incarnation's `ds.created` event: names the incarnation (ETags).
    pub created_position: u64,
    pub closed: bool,
    /// Deleted while forks still read it (a `ds.deleted` event): every request answers 410
    /// until the last fork is deleted, and then the stream is deleted for real.
    pub gone: bool,
    /// The producer tuple of the request that closed the stream, if it sent one.
    pub closed_by: Option<ProducerClaim>,
    pub stream_seq: Option<String>,
    pub producers: HashMap<String, Producer>,
    /// Unix ms of the last write or read (the TTL slides from it). When loaded from the log
    /// with nothing known in memory: [`Loaded::persisted_ms`] plus half the TTL, the latest the
    /// last read can have been (see [`Loaded::slide`]).
    pub last_access_ms: u64,
    /// Unix ms of the stream's last persisted activity: its last event, or its last access
    /// marker, whichever is later (as far as this server knows: a marker handed to the log
    /// counts).
    pub persisted_ms: u64,
}

impl Loaded {
    pub fn new(config: Config, created_position: u64, now_ms: u64) -> Loaded {
        Loaded {
            config,
            created_position,
            closed: false,
            gone: false,
            closed_by: None,
            stream_seq: None,
            producers: HashMap::new(),
            last_access_ms: now_ms,
            persisted_ms: now_ms,
        }
    }

    fn ttl_ms(&self) -> Option<u64> {
        self.config.ttl_seconds.map(|t| t.saturating_mul(1000))
    }

    /// A read at `now_ms` slides the TTL; answers whether it must also be persisted (an access
    /// marker at `now_ms`): when the last persisted activity is half a TTL old or older. So
    /// the last read is never more than half a TTL after the last persisted activity, which
    /// makes `persisted_ms + TTL/2` a bound on it after a restart, at the cost of at most two
    /// markers per TTL of a stream that is read and not written.
    pub fn slide(&mut self, now_ms: u64) -> bool {
        self.last_access_ms = self.last_access_ms.max(now_ms);
        let due = self.marker_due(now_ms);
        if due {
            self.persisted_ms = now_ms;
        }
        due
    }

    /// Whether a read at `now_ms` must write an access marker (see [`Loaded::slide`]).
    pub fn marker_due(&self, now_ms: u64) -> bool {
        self.ttl_ms().is_some_and(|ttl| ttl > 0 && now_ms.saturating_sub(self.persisted_ms) >= ttl / 2)
    }

    /// A write at `now_ms`: it is activity, and persisted.
    pub fn wrote(&mut self, now_ms: u64) {
        self.last_access_ms = self.last_access_ms.max(now_ms);
        self.persisted_ms = self.persisted_ms.max(now_ms);
    }

    /// Whether the stream has expired at `now_ms` (absolute expiry, or its TTL since the last
    /// write or read).
    pub fn expired(&self, now_ms: u64) -> bool {
        let absolute = self.config.expires_at_ms.is_some_and(|at| at <= now_ms);
        let sliding = self
            .config
            .ttl_seconds
            .is_some_and(|ttl| self.last_access_ms.saturating_add(ttl.saturating_mul(1000)) <= now_ms);
        absolute || sliding
    }

    /// The protocol's producer validation (PROTOCOL.md 5.2.1), against committed state.
    pub fn check_producer(&self, claim: &ProducerClaim) -> ProducerVerdict {
        let Some(state) = self.producers.get(&claim.id) else {
            return if claim.seq == 0 { ProducerVerdict::Accept } else { ProducerVerdict::Gap { expected: 0 } };
        };
        if claim.epoch < state.epoch {
            return ProducerVerdict::StaleEpoch { epoch: state.epoch };
        }
        if claim.epoch > state.epoch {
            return if claim.seq == 0 { ProducerVerdict::Accept } else { ProducerVerdict::EpochNeedsSeqZero };
        }
        if claim.seq <= state.seq {
            ProducerVerdict::Duplicate { seq: state.seq }
        } else if claim.seq == state.seq + 1 {
            ProducerVerdict::Accept
        } else {
            ProducerVerdict::Gap { expected: state.seq + 1 }
        }
    }

    /// Applies a committed (or submitted) append's coordination state.
    pub fn apply(&mut self, coordination: &Coordination) {
        if let Some((id, epoch, seq)) = &coordination.producer {
            self.producers.insert(id.clone(), Producer { epoch: *epoch, seq: *seq });
        }
        if let Some(seq) = &coordination.stream_seq {
            self.stream_seq = Some(seq.clone());
        }
    }
}

/// A stream's slot: not yet read from the log, to be read again, or its folded state.
#[derive(Debug, Default)]
pub enum Slot {
    #[default]
    Unloaded,
    /// Folded state a write may have changed: read again from the log on next use, keeping the
    /// time of the last access, which the log holds only to within half a TTL.
    Stale {
        last_access_ms: u64,
    },
    Live(Box<Loaded>),
}

impl Slot {
    /// Drops the folded state (the next request reads it from the log again), keeping the
    /// time of the last access.
    pub fn forget(&mut self) {
        if let Slot::Live(loaded) = self {
            *self = Slot::Stale { last_access_ms: loaded.last_access_ms };
        }
    }
}

/// Every stream's slot, by cairn stream name.
#[derive(Debug)]
pub struct Registry {
    slots: parking_lot::Mutex<Slots>,
}

#[derive(Debug)]
struct Slots {
    map: HashMap<String, Arc<tokio::sync::Mutex<Slot>>>,
    /// The size at which the next prune runs.
    prune_at: usize,
    /// Prunes run so far (a test's measure of the amortisation).
    prunes: u64,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            slots: parking_lot::Mutex::new(Slots { map: HashMap::new(), prune_at: REGISTRY_PRUNE_AT, prunes: 0 }),
        }
    }
}

impl Registry {
    /// The slot of `name` (created empty on first use).
    pub fn slot(&self, name: &str) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock();
        if slots.map.len() >= slots.prune_at {
            // A slot nobody holds and that holds nothing costs a map entry only: drop those (a
            // stale one holds the time of a read the log may not have).
            slots.map.retain(|_, slot| {
                Arc::strong_count(slot) > 1 || slot.try_lock().map_or(true, |s| !matches!(*s, Slot::Unloaded))
            });
            // Live streams stay: the next scan waits until the map has doubled, so each scan is
            // paid for by as many insertions as it visits.
            slots.prune_at = REGISTRY_PRUNE_AT.max(slots.map.len().saturating_mul(2));
            slots.prunes += 1;
        }
        // Looked up by the borrowed name first: a stream's every request after its first
        // allocates nothing here.
        if let Some(slot) = slots.map.get(name) {
            return slot.clone();
        }
        slots.map.entry(name.to_string()).or_default().clone()
    }

    /// How many prunes have run.
    pub fn prunes(&self) -> u64 {
        self.slots.lock().prunes
    }
}

/// The clock Durable Streams measure TTLs and expiry by: the system's, which tests can move
/// ahead.
#[derive(Debug, Default)]
pub struct Clock {
    #[cfg(test)]
    ahead_ms: std::sync::atomic::AtomicU64,
}

impl Clock {
    /// Unix milliseconds now.
    pub fn now_ms(&self) -> u64 {
        #[cfg(test)]
        return now_ms().saturating_add(self.ahead_ms.load(std::sync::atomic::Ordering::Relaxed));
        #[cfg(not(test))]
        now_ms()
    }

    /// Moves this clock `ms` ahead of the system's.
    #[cfg(test)]
    pub fn advance(&self, ms: u64) {
        self.ahead_ms.fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Folds stream `name`'s state from the log: `None` if it does not exist as a Durable Stream
/// (never written, deleted, or holding no valid `ds.created` event). Reads every readable event
/// of the stream once, and the last event of its access stream. Its last access is taken to be
/// half a TTL after its last persisted activity (its last event or access marker): the latest
/// it can have been, so a TTL never ends early, and at most half a TTL late, across a restart.
pub fn load(log: &Log, name: &str) -> log_engine::Result<Option<Loaded>> {
    let state = match log.stream_state(name) {
        Ok(state) => state,
        Err(log_engine::Error::StreamNotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    if state.tombstoned || crate::wire::is_deleted(&state) {
        return Ok(None);
    }
    let mut loaded: Option<Loaded> = None;
    let mut from = None;
    loop {
        let page = match log.read_stream(name, from, LOAD_PAGE_EVENTS, Direction::Forward) {
            Ok(page) => page,
            Err(log_engine::Error::StreamDeleted { .. } | log_engine::Error::StreamTombstoned { .. }) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let Some(last) = page.last() else { break };
        from = Some(log_engine::StreamVersion(last.version.0 + 1));
        for event in &page {
            fold(&mut loaded, event);
        }
        if page.len() < LOAD_PAGE_EVENTS {
            break;
        }
    }
    if let Some(loaded) = loaded.as_mut() {
        if loaded.config.ttl_seconds.is_some() {
            if let Some(at_ms) = last_access_marker(log, name, loaded.created_position)? {
                loaded.persisted_ms = loaded.persisted_ms.max(at_ms);
            }
        }
        loaded.last_access_ms = loaded.persisted_ms.saturating_add(loaded.ttl_ms().unwrap_or(0) / 2);
        // Closed through cairn's own lifecycle endpoint (or its metadata): the log refuses
        // appends, so the protocol says closed too.
        loaded.closed |= state.closed;
    }
    Ok(loaded)
}

/// One event's effect on a stream's state.
fn fold(loaded: &mut Option<Loaded>, event: &Event) {
    if event.event_type == EVENT_CREATED && event.erased {
        // An incarnation whose configuration was erased: nothing to serve until a snapshot
        // (written before the erasure) restores it.
        *loaded = None;
        return;
    }
    if event.event_type == EVENT_STATE {
        let snapshot = match &event.data {
            Payload::Json(text) => serde_json::from_slice::<Snapshot>(text).ok().filter(Snapshot::valid),
            Payload::Bytes(_) => None,
        };
        if let Some(snapshot) = snapshot {
            let persisted_ms =
                loaded.as_ref().map_or(snapshot.persisted_ms, |l| l.persisted_ms.max(snapshot.persisted_ms));
            let mut restored = snapshot.into_loaded();
            restored.persisted_ms = persisted_ms;
            *loaded = Some(restored);
        }
        return;
    }
    if event.event_type == EVENT_CREATED {
        let config = match &event.data {
            Payload::Json(text) => serde_json::from_slice::<Config>(text).ok().filter(Config::valid),
            Payload::Bytes(_) => None,
        };
        if let Some(config) = config {
            *loaded = Some(Loaded::new(config, event.position.0, event.timestamp_ms));
        }
        return;
    }
    let Some(state) = loaded.as_mut() else { return };
    state.persisted_ms = event.timestamp_ms;
    let coordination = coordination_of(event);
    let coordination = if coordination.valid() { coordination } else { Coordination::default() };
    if event.event_type == EVENT_DELETED {
        state.gone = true;
    }
    if event.event_type == EVENT_CLOSED {
        state.closed = true;
        state.closed_by = coordination.producer.as_ref().map(|(id, epoch, seq)| ProducerClaim {
            id: id.clone(),
            epoch: *epoch,
            seq: *seq,
        });
    }
    state.apply(&coordination);
}

/// The data of a `ds.state` event: a stream's whole protocol state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub config: Config,
    /// The incarnation: the position of its `ds.created` event (ETags name it).
    pub created_position: u64,
    #[serde(default)]
    pub closed: bool,
    #[serde(default)]
    pub gone: bool,
    /// The producer tuple of the request that closed the stream, if it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<(String, u64, u64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_seq: Option<String>,
    /// Each producer's (epoch, seq), by id.
    #[serde(default)]
    pub producers: std::collections::BTreeMap<String, (u64, u64)>,
    /// The last persisted activity then (unix ms): a snapshot is not an access.
    pub persisted_ms: u64,
}

impl Snapshot {
    /// Stream `loaded`'s state.
    pub fn of(loaded: &Loaded) -> Snapshot {
        Snapshot {
            config: loaded.config.clone(),
            created_position: loaded.created_position,
            closed: loaded.closed,
            gone: loaded.gone,
            closed_by: loaded.closed_by.as_ref().map(|c| (c.id.clone(), c.epoch, c.seq)),
            stream_seq: loaded.stream_seq.clone(),
            producers: loaded.producers.iter().map(|(id, p)| (id.clone(), (p.epoch, p.seq))).collect(),
            persisted_ms: loaded.persisted_ms,
        }
    }

    /// Within the bounds this server writes (as [`Config::valid`] and [`Coordination::valid`]).
    pub fn valid(&self) -> bool {
        let coordination = |producer: Option<(String, u64, u64)>, stream_seq: Option<String>| {
            Coordination { producer, stream_seq }.valid()
        };
        self.config.valid()
            && coordination(self.closed_by.clone(), self.stream_seq.clone())
            && self.producers.iter().all(|(id, &(epoch, seq))| coordination(Some((id.clone(), epoch, seq)), None))
    }

    fn into_loaded(self) -> Loaded {
        let mut loaded = Loaded::new(self.config, self.created_position, self.persisted_ms);
        loaded.closed = self.closed;
        loaded.gone = self.gone;
        loaded.closed_by = self.closed_by.map(|(id, epoch, seq)| ProducerClaim { id, epoch, seq });
        loaded.stream_seq = self.stream_seq;
        loaded.producers = self.producers.into_iter().map(|(id, (epoch, seq))| (id, Producer { epoch, seq })).collect();
        loaded
    }
}

/// The `ds.state` event that keeps stream `name`'s protocol state through an erasure of
/// versions up to its current last one, if it is a Durable Stream: appended before the
/// erasure, it is past the erased range, and folding it restores what the erasure takes (an
/// erased `ds.created`'s configuration, the producer state on erased messages).
pub fn snapshot_event(log: &Log, name: &str) -> log_engine::Result<Option<log_engine::NewEvent>> {
    Ok(load(log, name)?.map(|loaded| {
        log_engine::NewEvent::json(
            EVENT_STATE,
            &serde_json::to_value(Snapshot::of(&loaded)).expect("a snapshot serializes"),
        )
    }))
}

/// The data of a `ds.accessed` marker.
#[derive(Debug, Serialize, Deserialize)]
pub struct AccessMarker {
    /// The cairn name of the stream read.
    pub stream: String,
    /// Its incarnation (the position of its `ds.created` event): a marker of an earlier one
    /// counts for nothing.
    pub created_position: u64,
    /// When the read was (unix ms, the server's clock).
    pub at_ms: u64,
}

/// The name of stream `name`'s access stream: [`ACCESS_STREAM_PREFIX`] and the first 32 hex
/// digits of BLAKE3 of `name` (a fixed length, so it fits the stream name bound whatever the
/// path; a marker names its stream, so a collision would only be ignored).
pub fn access_stream(name: &str) -> String {
    let hash = blake3::hash(name.as_bytes()).to_hex();
    format!("{ACCESS_STREAM_PREFIX}{}", &hash.as_str()[..32])
}

/// The time of the last access marker of `name`'s incarnation `created_position`, if its
/// access stream's last event is one.
fn last_access_marker(log: &Log, name: &str, created_position: u64) -> log_engine::Result<Option<u64>> {
    let last = match log.read_stream_bounded(&access_stream(name), None, 1, 0, Direction::Backward) {
        Ok(events) => events,
        Err(log_engine::Error::StreamNotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(last
        .first()
        .filter(|e| e.event_type == EVENT_ACCESSED)
        .and_then(Event::data_json)
        .and_then(|data| serde_json::from_value::<AccessMarker>(data).ok())
        .filter(|m| m.stream == name && m.created_position == created_position)
        .map(|m| m.at_ms))
}

/// The coordination state in an event's metadata (none if absent or unreadable).
pub fn coordination_of(event: &Event) -> Coordination {
    #[derive(Deserialize)]
    struct Meta {
        #[serde(rename = "ds")]
        ds: Option<Coordination>,
    }
    serde_json::from_slice::<Meta>(&event.metadata).ok().and_then(|m| m.ds).unwrap_or_default()
}

/// Parses an RFC 3339 timestamp (`2026-01-24T10:00:00Z`, fractional seconds and a `±HH:MM`
/// offset allowed) to unix milliseconds; `None` if it is not one.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &text[start..i.min(start + 3)];
        millis = frac.parse::<i64>().ok()? * 10i64.pow(3 - u32::try_from(frac.len()).ok()?);
    }
    let offset_minutes = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    u64::try_from(seconds * 1000 + millis).ok()
}

/// How long until `at_ms`, for the `Stream-TTL`-style remaining time (zero once past).
pub fn until(at_ms: u64, now_ms: u64) -> Duration {
    Duration::from_millis(at_ms.saturating_sub(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_with_zones_and_fractions() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339("2026-01-24T10:00:00.123Z"), Some(1_769_248_800_123));
        for bad in ["", "not-a-date", "2026-13-01T00:00:00Z", "2026-01-24T10:00:00", "2026-01-24T10:00:00+0100"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    fn claim(epoch: u64, seq: u64) -> ProducerClaim {
        ProducerClaim { id: "p".into(), epoch, seq }
    }

    #[test]
    fn producer_validation_follows_the_protocol() {
        let mut s = Loaded::new(Config::of("text/plain"), 0, 0);
        assert_eq!(s.check_producer(&claim(0, 1)), ProducerVerdict::Gap { expected: 0 });
        assert_eq!(s.check_producer(&claim(0, 0)), ProducerVerdict::Accept);
        s.apply(&Coordination { producer: Some(("p".into(), 1, 3)), stream_seq: None });
        assert_eq!(s.check_producer(&claim(0, 9)), ProducerVerdict::StaleEpoch { epoch: 1 });
        assert_eq!(s.check_producer(&claim(1, 2)), ProducerVerdict::Duplicate { seq: 3 });
        assert_eq!(s.check_producer(&claim(1, 4)), ProducerVerdict::Accept);
        assert_eq!(s.check_producer(&claim(1, 6)), ProducerVerdict::Gap { expected: 4 });
        assert_eq!(s.check_producer(&claim(2, 1)), ProducerVerdict::EpochNeedsSeqZero);
        assert_eq!(s.check_producer(&claim(2, 0)), ProducerVerdict::Accept);
    }

    /// The TTL bound after a restart: the last access is taken to be half a TTL after the last
    /// persisted activity, so a stream expires at most half a TTL late, and never early as
    /// long as reads write a marker once the last one is half a TTL old.
    #[test]
    fn a_loaded_ttl_runs_half_a_ttl_past_the_last_persisted_activity() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), log_engine::Options::default()).unwrap();
        let config = Config { ttl_seconds: Some(10), ..Config::of("text/plain") };
        let created = log_engine::NewEvent::json(EVENT_CREATED, &serde_json::to_value(&config).unwrap());
        log.append("ds:t", log_engine::ExpectedVersion::Any, vec![created]).unwrap();
        let written = log.read_stream("ds:t", None, 1, Direction::Forward).unwrap()[0].timestamp_ms;
        let mut loaded = load(&log, "ds:t").unwrap().unwrap();
        assert_eq!(loaded.persisted_ms, written);
        assert!(!loaded.expired(written + 14_999));
        assert!(loaded.expired(written + 15_000), "at most half a TTL late");
        // Reads persist a marker only once the last persisted activity is half a TTL old.
        assert!(!loaded.slide(written + 4_999));
        assert!(loaded.slide(written + 5_000));
        assert!(!loaded.slide(written + 9_999));
        assert!(loaded.slide(written + 10_000));
    }

    /// Past `REGISTRY_PRUNE_AT` live streams, a prune scans the whole registry and keeps them
    /// all: the next one waits until the registry has doubled, so new streams do not each pay
    /// a scan (they did, one O(n) scan per request).
    #[test]
    fn a_registry_of_live_streams_is_not_scanned_on_every_request() {
        let registry = Registry::default();
        for i in 0..REGISTRY_PRUNE_AT {
            let slot = registry.slot(&format!("live{i}"));
            *slot.try_lock().unwrap() = Slot::Live(Box::new(Loaded::new(Config::of("text/plain"), 0, 0)));
        }
        assert_eq!(registry.prunes(), 0);
        for i in 0..1_000 {
            drop(registry.slot(&format!("new{i}")));
        }
        assert_eq!(registry.prunes(), 1, "one scan, then none until the registry doubles");
        let slot = registry.slot("live0");
        assert!(matches!(*slot.try_lock().unwrap(), Slot::Live(_)), "live streams are kept");
    }
}
