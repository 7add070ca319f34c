//! Model-based testing: random sequences of appends (expected versions, client ids and
//! idempotent retries, multi-stream batches, large events that roll segments), reads (global,
//! per stream, both directions), subscriptions, close/reopen, and crashes with power loss (idle,
//! or in the middle of an append), run against the log and against a simple in-memory model.
//! After every step the whole log must equal the model. proptest shrinks a failure to a minimal
//! sequence of steps.
//!
//! The model states the contract, not the implementation: an append is checked against the
//! stream's version as `ExpectedVersion` says; a request is all-or-nothing; an event whose id
//! already exists in its stream with the same content (within `IDEMPOTENCY_WINDOW` recent ids)
//! returns the original positions and writes nothing; after a crash every acknowledged event is
//! there and an append that failed is there entirely or not at all.
//!
//! Stream lifecycle is modelled too (delete, tombstone, close, metadata with `truncate_before`
//! and `max_count`, fork, erase): the model copies a fork's prefix and keeps every stream's versions as
//! a plain list, and a stream read must return exactly the window the model's rules leave (an
//! erasure marks the model's events by position, so a fork's shared prefix is erased for every
//! stream that reads it, and every read must show exactly those events erased); a
//! lifecycle change acknowledged before a power cut holds after it, one that was not is there
//! entirely or not at all. (Age and time-to-live limits depend on the clock: tests/lifecycle.rs
//! in log-engine covers them.)
//!
//! Scavenging is modelled as well: the model marks as husks the events in sealed segments that
//! no stream read can return (by the same window rules, a fork's copied prefix keeping its
//! source's events readable, `$lifecycle` events never), and from then on the log must return
//! exactly those with `erased` set and no payload (global reads, stream reads, subscriptions,
//! across reopens and crashes), every other event unchanged, an idempotent retry of a husked
//! event still recognised, and `verify` passing.
//!
//! The runner's seed is printed (`CAIRN_SEED` replays it); `CAIRN_MODEL_CASES` sets the number of
//! sequences.

mod reliability;

use std::collections::HashMap;
use std::sync::Arc;

use log_engine::faults::FaultFs;
use log_engine::{
    DeleteMode, Direction, Error, Event, ExpectedVersion, Filter, Log, NewEvent, Options, Position, ScavengeOptions,
    StartFrom, StreamAppend, StreamMetadata, StreamName, StreamVersion, Uuid, IDEMPOTENCY_WINDOW, LIFECYCLE_STREAM,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use reliability::*;

/// Streams the steps use.
const STREAMS: [&str; 4] = ["s0", "s1", "s2", "s3"];
/// Steps per sequence at most.
const STEPS_MAX: usize = 60;
/// Sequences per run.
const CASES_DEFAULT: u64 = if cfg!(debug_assertions) { 24 } else { 600 };
/// A large event: a few fill a 64 KiB segment, so sequences cross segment rolls (three in one
/// request would not fit in one segment, which the log refuses with `LimitExceeded`).
const LARGE: usize = 20 * 1024;

#[derive(Debug, Clone)]
enum Expect {
    Any,
    NoStream,
    Exists,
    /// The stream's current version plus this (−1: "one behind", a conflict unless absent).
    Relative(i64),
}

#[derive(Debug, Clone)]
enum Step {
    Append {
        stream: usize,
        events: Vec<(u8, bool)>,
        expect: Expect,
    },
    Multi {
        first: usize,
        counts: (u8, u8),
        expect_first: Expect,
    },
    /// Re-send the `nth` (modulo) earlier acknowledged request exactly as it was sent.
    Retry {
        nth: usize,
    },
    ReadStream {
        stream: usize,
        from: u8,
        limit: u8,
        backward: bool,
    },
    Subscribe {
        stream: Option<usize>,
        from: u8,
    },
    Reopen,
    /// Power cut while idle: everything acknowledged must be there.
    Crash {
        seed: u64,
    },
    /// Power cut after `budget` operations of the next append.
    CrashDuringAppend {
        stream: usize,
        budget: u8,
        seed: u64,
    },
    Delete {
        stream: usize,
        tombstone: bool,
    },
    Close {
        stream: usize,
    },
    /// Stream metadata with these limits (0 for `max_count` is refused as bad input).
    Limit {
        stream: usize,
        truncate_before: Option<u8>,
        max_count: Option<u8>,
    },
    Fork {
        source: usize,
        to: usize,
        at: u8,
    },
    /// Erase versions `from..=to` (`None`: the first or the last).
    Erase {
        stream: usize,
        from: Option<u8>,
        to: Option<u8>,
    },
    /// Scavenge the sealed segments (crashes inside one: tests/power_loss.rs).
    Scavenge,
    /// Power cut after `budget` operations of a close (or a soft delete).
    CrashDuringLifecycle {
        stream: usize,
        close: bool,
        budget: u8,
        seed: u64,
    },
}

fn expect_strategy() -> impl Strategy<Value = Expect> {
    prop_oneof![
        3 => Just(Expect::Any),
        1 => Just(Expect::NoStream),
        1 => Just(Expect::Exists),
        3 => (-1i64..=1).prop_map(Expect::Relative),
    ]
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0..STREAMS.len(), prop::collection::vec((any::<u8>(), prop::bool::weighted(0.1)), 1..4), expect_strategy())
            .prop_map(|(stream, events, expect)| Step::Append { stream, events, expect }),
        3 => (0..STREAMS.len(), (1u8..3, 1u8..3), expect_strategy())
            .prop_map(|(first, counts, expect_first)| Step::Multi { first, counts, expect_first }),
        3 => any::<usize>().prop_map(|nth| Step::Retry { nth }),
        2 => (0..STREAMS.len(), any::<u8>(), 1u8..10, any::<bool>())
            .prop_map(|(stream, from, limit, backward)| Step::ReadStream { stream, from, limit, backward }),
        2 => (prop::option::of(0..STREAMS.len()), any::<u8>()).prop_map(|(stream, from)| Step::Subscribe { stream, from }),
        1 => Just(Step::Reopen),
        1 => any::<u64>().prop_map(|seed| Step::Crash { seed }),
        1 => (0..STREAMS.len(), 0u8..6, any::<u64>())
            .prop_map(|(stream, budget, seed)| Step::CrashDuringAppend { stream, budget, seed }),
        4 => lifecycle_step_strategy(),
        1 => Just(Step::Scavenge),
    ]
}

fn lifecycle_step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0..STREAMS.len(), prop::bool::weighted(0.3)).prop_map(|(stream, tombstone)| Step::Delete { stream, tombstone }),
        1 => (0..STREAMS.len()).prop_map(|stream| Step::Close { stream }),
        2 => (0..STREAMS.len(), prop::option::of(0u8..8), prop::option::of(0u8..5))
            .prop_map(|(stream, truncate_before, max_count)| Step::Limit { stream, truncate_before, max_count }),
        2 => (0..STREAMS.len(), 0..STREAMS.len(), 0u8..8).prop_map(|(source, to, at)| Step::Fork { source, to, at }),
        2 => (0..STREAMS.len(), prop::option::of(0u8..8), prop::option::of(0u8..8))
            .prop_map(|(stream, from, to)| Step::Erase { stream, from, to }),
        1 => (0..STREAMS.len(), any::<bool>(), 0u8..6, any::<u64>())
            .prop_map(|(stream, close, budget, seed)| Step::CrashDuringLifecycle { stream, close, budget, seed }),
    ]
}

/// One event of the model.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    stream: String,
    /// `None` for a lifecycle event: the log generates its id.
    id: Option<Uuid>,
    event_type: String,
    data: Vec<u8>,
    /// Erased, or husked by a scavenge: reads show the header only (the model keeps `data`, as
    /// the log keeps the record or the husk's digests, so an idempotent retry is still
    /// recognised).
    erased: bool,
}

/// One stream of the model: the position of every version (a fork's prefix copied), and its
/// lifecycle state.
#[derive(Debug, Default, Clone)]
struct MStream {
    versions: Vec<u64>,
    deleted_before: Option<u64>,
    tombstoned: bool,
    closed: bool,
    metadata: StreamMetadata,
    forked_from: Option<(String, u64)>,
    /// A fork's first readable version: its source's first readable version when it was
    /// forked, or its own first version if the source showed none of the shared ones.
    fork_floor: u64,
}

impl MStream {
    /// The first version a stream read may return (past the last when it returns none): after
    /// the delete point, `truncate_before`, `max_count` and a fork's floor.
    fn first_readable(&self) -> u64 {
        let len = self.versions.len() as u64;
        let mut first = self.deleted_before.unwrap_or(0).max(self.fork_floor);
        first = first.max(self.metadata.truncate_before.unwrap_or(0));
        if let Some(count) = self.metadata.max_count {
            first = first.max(len.saturating_sub(count));
        }
        first
    }
}

/// Why the model refuses a request (the log must refuse it with the matching error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    WrongExpectedVersion,
    Tombstoned,
    Closed,
    NotFound,
    Deleted,
    ForkPastEnd,
    Exists,
    BadMetadata,
    EraseOutOfRange,
    Invalid,
}

fn refused(e: &Error) -> Option<Refused> {
    Some(match e {
        Error::WrongExpectedVersion { .. } => Refused::WrongExpectedVersion,
        Error::StreamTombstoned { .. } => Refused::Tombstoned,
        Error::StreamClosed { .. } => Refused::Closed,
        Error::StreamNotFound { .. } => Refused::NotFound,
        Error::StreamDeleted { .. } => Refused::Deleted,
        Error::ForkPastEnd { .. } => Refused::ForkPastEnd,
        Error::StreamExists { .. } => Refused::Exists,
        Error::InvalidStreamMetadata { .. } => Refused::BadMetadata,
        Error::EraseOutOfRange { .. } => Refused::EraseOutOfRange,
        Error::Invalid { .. } => Refused::Invalid,
        _ => return None,
    })
}

/// The in-memory model: the log as a list, and every stream.
#[derive(Debug, Default)]
struct Model {
    events: Vec<Stored>,
    streams: HashMap<String, MStream>,
}

impl Model {
    fn version(&self, stream: &str) -> Option<u64> {
        self.streams.get(stream).and_then(|s| (s.versions.len() as u64).checked_sub(1))
    }

    fn stream(&self, stream: &str) -> MStream {
        self.streams.get(stream).cloned().unwrap_or_default()
    }

    /// Appends a lifecycle event and applies its change with `apply`.
    fn lifecycle(&mut self, event_type: &str, data: serde_json::Value, stream: &str, apply: impl FnOnce(&mut MStream)) {
        let p = self.events.len() as u64;
        self.streams.entry(LIFECYCLE_STREAM.to_string()).or_default().versions.push(p);
        let data = serde_json::to_vec(&data).unwrap();
        self.events.push(Stored {
            stream: LIFECYCLE_STREAM.into(),
            id: None,
            event_type: event_type.into(),
            data,
            erased: false,
        });
        apply(self.streams.entry(stream.to_string()).or_default());
    }

    fn delete(&mut self, stream: &str, tombstone: bool) -> Result<(), Refused> {
        let s = self.stream(stream);
        if s.tombstoned {
            return Err(Refused::Tombstoned);
        }
        let before = s.versions.len() as u64;
        if before == 0 {
            return Err(Refused::NotFound);
        }
        let event_type = if tombstone { "stream-tombstoned" } else { "stream-deleted" };
        let data = serde_json::json!({"stream": stream, "before_version": before});
        self.lifecycle(event_type, data, stream, |s| {
            s.deleted_before = Some(before);
            s.tombstoned |= tombstone;
        });
        Ok(())
    }

    fn close(&mut self, stream: &str) -> Result<(), Refused> {
        if self.stream(stream).tombstoned {
            return Err(Refused::Tombstoned);
        }
        self.lifecycle("stream-closed", serde_json::json!({"stream": stream}), stream, |s| {
            s.closed = true;
            s.metadata.closed = true;
        });
        Ok(())
    }

    fn set_metadata(&mut self, stream: &str, metadata: &StreamMetadata) -> Result<(), Refused> {
        if metadata.max_count == Some(0) {
            return Err(Refused::BadMetadata);
        }
        if self.stream(stream).tombstoned {
            return Err(Refused::Tombstoned);
        }
        let data = serde_json::json!({"stream": stream, "metadata": metadata});
        self.lifecycle("stream-metadata", data, stream, |s| {
            s.metadata = metadata.clone();
            s.metadata.closed = s.closed;
        });
        Ok(())
    }

    fn fork(&mut self, source: &str, to: &str, at: u64) -> Result<(), Refused> {
        let (from, target) = (self.stream(source), self.stream(to));
        if from.tombstoned {
            return Err(Refused::Tombstoned);
        }
        if from.versions.is_empty() {
            return Err(Refused::NotFound);
        }
        if at >= from.versions.len() as u64 {
            return Err(Refused::ForkPastEnd);
        }
        if from.deleted_before.is_some_and(|d| at < d) {
            return Err(Refused::Deleted);
        }
        if target.tombstoned {
            return Err(Refused::Tombstoned);
        }
        if !target.versions.is_empty() || target.forked_from.is_some() {
            return Err(Refused::Exists);
        }
        // The fork shows none of what its source hid: it starts at the source's first readable
        // version, or past the fork point when that is later (recorded when not 0).
        let first_version = from.first_readable().min(at + 1);
        let mut data = serde_json::json!({"stream": to, "source": source, "at_version": at});
        if first_version > 0 {
            data["first_version"] = first_version.into();
        }
        let prefix = from.versions[..=at as usize].to_vec();
        self.lifecycle("stream-forked", data, to, |s| {
            s.versions = prefix;
            s.forked_from = Some((source.to_string(), at));
            s.fork_floor = first_version;
        });
        Ok(())
    }

    fn erase(&mut self, stream: &str, from: Option<u64>, to: Option<u64>) -> Result<(), Refused> {
        if let (Some(from), Some(to)) = (from, to) {
            if from > to {
                return Err(Refused::Invalid);
            }
        }
        let s = self.stream(stream);
        if s.tombstoned {
            return Err(Refused::Tombstoned);
        }
        let last = (s.versions.len() as u64).checked_sub(1).ok_or(Refused::NotFound)?;
        let (from, to) = (from.unwrap_or(0), to.unwrap_or(last));
        if to > last || from > to {
            return Err(Refused::EraseOutOfRange);
        }
        let data = serde_json::json!({"stream": stream, "from_version": from, "to_version": to, "reason": "model"});
        self.lifecycle("stream-erased", data, stream, |_| {});
        for v in from..=to {
            self.events[s.versions[v as usize] as usize].erased = true;
        }
        Ok(())
    }

    /// The versions a stream read may return, `(first, last)`, as the lifecycle rules say.
    fn readable(&self, stream: &str) -> Result<Option<(u64, u64)>, Refused> {
        let s = self.streams.get(stream).ok_or(Refused::NotFound)?;
        if s.tombstoned {
            return Err(Refused::Tombstoned);
        }
        let last = (s.versions.len() as u64).checked_sub(1).ok_or(Refused::NotFound)?;
        if s.deleted_before.is_some_and(|d| d > last) {
            return Err(Refused::Deleted);
        }
        let first = s.first_readable();
        Ok((first <= last).then_some((first, last)))
    }

    fn expected(&self, stream: &str, e: &Expect) -> ExpectedVersion {
        match e {
            Expect::Any => ExpectedVersion::Any,
            Expect::NoStream => ExpectedVersion::NoStream,
            Expect::Exists => ExpectedVersion::Exists,
            Expect::Relative(d) => {
                let v = self.version(stream).map_or(-1, u64::cast_signed) + d;
                if v < 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(StreamVersion(v.cast_unsigned()))
                }
            }
        }
    }

    /// Where an idempotent retry's events already are, if the request is one.
    fn duplicate(&self, a: &StreamAppend) -> Option<u64> {
        let first = a.events[0].id?;
        let positions = &self.streams.get(a.stream.as_str())?.versions;
        let at = positions.iter().copied().find(|&p| self.events[p as usize].id == Some(first))?;
        // Within the documented window of recent ids.
        if (self.events.len() as u64 - at) as usize > IDEMPOTENCY_WINDOW {
            return None;
        }
        let same = a.events.iter().enumerate().all(|(i, e)| {
            self.events
                .get(at as usize + i)
                .is_some_and(|s| s.stream == a.stream.as_str() && s.id == e.id && s.data == e.data.as_bytes())
        });
        same.then_some(at)
    }

    /// Applies a request as the contract says; `Err` when it must be refused.
    fn append(&mut self, req: &[StreamAppend]) -> Result<Vec<(u64, u64)>, Refused> {
        let mut plans = Vec::new();
        let mut local: HashMap<&str, Option<u64>> = HashMap::new();
        for a in req {
            let name = a.stream.as_str();
            let current = local.get(name).copied().unwrap_or_else(|| self.version(name));
            if let Some(at) = self.duplicate(a) {
                plans.push(Err(at));
                continue;
            }
            let state = self.stream(name);
            if state.tombstoned {
                return Err(Refused::Tombstoned);
            }
            if state.closed {
                return Err(Refused::Closed);
            }
            let ok = match a.expected {
                ExpectedVersion::Any => true,
                ExpectedVersion::NoStream => current.is_none(),
                ExpectedVersion::Exists => current.is_some(),
                ExpectedVersion::Exact(v) => current == Some(v.0),
            };
            if !ok {
                return Err(Refused::WrongExpectedVersion);
            }
            local.insert(name, Some(current.map_or(0, |v| v + 1) + a.events.len() as u64 - 1));
            plans.push(Ok(()));
        }
        let mut spans = Vec::new();
        for (a, plan) in req.iter().zip(plans) {
            match plan {
                Err(at) => spans.push((at, a.events.len() as u64)),
                Ok(()) => {
                    let first = self.events.len() as u64;
                    for e in &a.events {
                        self.push(a.stream.as_str(), e);
                    }
                    spans.push((first, a.events.len() as u64));
                }
            }
        }
        Ok(spans)
    }

    fn push(&mut self, stream: &str, e: &NewEvent) {
        let p = self.events.len() as u64;
        self.streams.entry(stream.to_string()).or_default().versions.push(p);
        self.events.push(Stored {
            stream: stream.to_string(),
            id: Some(e.id.expect("model events carry ids")),
            event_type: e.event_type.clone(),
            data: e.data.as_bytes().to_vec(),
            erased: false,
        });
    }

    /// A scavenge of the segments before `sealed_end`: every event there that no stream's
    /// readable window holds (a fork's window holds its copied prefix) becomes a husk;
    /// lifecycle events never do.
    fn scavenge(&mut self, sealed_end: u64) {
        let mut live = vec![false; self.events.len()];
        for (name, s) in &self.streams {
            if name == LIFECYCLE_STREAM {
                s.versions.iter().for_each(|&p| live[p as usize] = true);
            } else if let Ok(Some((first, last))) = self.readable(name) {
                (first..=last).for_each(|v| live[s.versions[v as usize] as usize] = true);
            }
        }
        for (p, stored) in self.events.iter_mut().enumerate().take(sealed_end as usize) {
            stored.erased |= !live[p];
        }
    }
}

/// Incompressible bytes, so that large events really fill segments.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = log_engine::faults::SplitMix(seed);
    (0..len.div_ceil(8)).flat_map(|_| rng.next().to_le_bytes()).take(len).collect()
}

fn same(event: &Event, stored: &Stored) -> bool {
    let data = match stored.id {
        _ if stored.erased => event.erased && event.metadata.is_empty() && event.data.as_bytes().is_empty(),
        Some(_) => !event.erased && event.data.as_bytes() == stored.data,
        // A lifecycle event's data: the same JSON, whatever the order of its keys.
        None => serde_json::from_slice::<serde_json::Value>(&stored.data).ok() == event.data_json(),
    };
    let data = match stored.erased {
        true => event.erased && event.metadata.is_empty() && event.data.as_bytes().is_empty(),
        false => !event.erased && data,
    };
    event.stream == stored.stream
        && stored.id.is_none_or(|id| event.id == id)
        && event.event_type == stored.event_type
        && data
}

/// The system under test, with the fault layer it runs on.
struct Harness {
    dir: tempfile::TempDir,
    fs: FaultFs,
    log: Option<Log>,
    model: Model,
    sent: Vec<Vec<StreamAppend>>,
    next_id: u64,
    rt: tokio::runtime::Runtime,
}

impl Harness {
    fn new() -> Harness {
        let dir = scratch_dir();
        let fs = FaultFs::new();
        let log = Log::open(dir.path(), Options { fs: Arc::new(fs.clone()), ..options() }).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Harness { dir, fs, log: Some(log), model: Model::default(), sent: Vec::new(), next_id: 1, rt }
    }

    fn log(&self) -> &Log {
        self.log.as_ref().expect("open")
    }

    fn reopen(&mut self) -> Result<(), TestCaseError> {
        self.log = None;
        self.fs = FaultFs::new();
        let options = Options { fs: Arc::new(self.fs.clone()), ..options() };
        let log = Log::open(self.dir.path(), options).map_err(|e| TestCaseError::fail(format!("reopen: {e}")))?;
        self.log = Some(log);
        Ok(())
    }

    fn event(&mut self, byte: u8, large: bool) -> NewEvent {
        self.next_id += 1;
        let data = if large { noise(LARGE, self.next_id) } else { vec![byte; 1 + byte as usize % 40] };
        NewEvent::bytes(format!("T{}", byte % 3), data).with_id(Uuid::from_u64_pair(7, self.next_id))
    }

    /// Sends a request to both; their answers must agree.
    fn append(&mut self, req: Vec<StreamAppend>) -> Result<(), TestCaseError> {
        let got = self.log().append_multi(req.clone());
        let want = self.model.append(&req);
        match (got, want) {
            (Ok(results), Ok(spans)) => {
                let got: Vec<(u64, u64)> =
                    results.iter().map(|r| (r.first_position.0, r.last_position.0 - r.first_position.0 + 1)).collect();
                prop_assert_eq!(got, spans, "positions of {:?}", req);
                self.sent.push(req);
            }
            (Err(e), Err(why)) if refused(&e) == Some(why) => {}
            (got, want) => return Err(TestCaseError::fail(format!("log {got:?}, model {want:?} for {req:?}"))),
        }
        Ok(())
    }

    /// Sends a lifecycle change to both; they must agree on whether it is refused, and why.
    fn change(
        &mut self,
        got: Result<log_engine::LifecycleResult, Error>,
        want: Result<(), Refused>,
    ) -> Result<(), TestCaseError> {
        match (got, want) {
            (Ok(written), Ok(())) => {
                prop_assert_eq!(written.position.0 + 1, self.model.events.len() as u64, "position of a change");
            }
            (Err(e), Err(why)) if refused(&e) == Some(why) => {}
            (got, want) => return Err(TestCaseError::fail(format!("log {got:?}, model {want:?}"))),
        }
        Ok(())
    }

    /// The whole log equals the model.
    fn compare(&self) -> Result<(), TestCaseError> {
        let events = self.log().read_all(Position(0), usize::MAX).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(events.len(), self.model.events.len(), "event count");
        for (e, s) in events.iter().zip(&self.model.events) {
            prop_assert!(same(e, s), "position {}: log {:?}, model {:?}", e.position.0, e, s);
        }
        for name in STREAMS {
            prop_assert_eq!(
                self.log().stream_version(name).map(|v| v.0),
                self.model.version(name),
                "version of {}",
                name
            );
            match (self.log().stream_state(name), self.model.streams.get(name)) {
                (Ok(state), Some(s)) => {
                    prop_assert_eq!(state.last_version.map(|v| v.0), self.model.version(name));
                    prop_assert_eq!(state.deleted_before.map(|v| v.0), s.deleted_before, "{} deleted", name);
                    prop_assert_eq!((state.tombstoned, state.closed), (s.tombstoned, s.closed), "{}", name);
                    prop_assert_eq!(&state.metadata, &s.metadata);
                    let fork = state.forked_from.map(|(source, at)| (source.to_string(), at.0));
                    prop_assert_eq!(&fork, &s.forked_from);
                }
                (Err(Error::StreamNotFound { .. }), None) => {}
                (got, want) => {
                    return Err(TestCaseError::fail(format!("state of {name}: log {got:?}, model {want:?}")))
                }
            }
        }
        let report = self.log().verify(None, |_| {}).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(report.ok, "verify: {:?}", report.detail);
        Ok(())
    }

    fn crash(&mut self, seed: u64) -> Result<(), TestCaseError> {
        self.log = None;
        self.fs.power_loss(seed).map_err(|e| TestCaseError::fail(e.to_string()))?;
        self.reopen()
    }

    fn step(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match step {
            Step::Append { stream, events, expect } => {
                let name = STREAMS[*stream];
                let expected = self.model.expected(name, expect);
                // A batch must fit in one segment: at most two large events per request.
                let events = events.iter().enumerate().map(|(i, &(b, large))| self.event(b, large && i < 2)).collect();
                self.append(vec![StreamAppend { stream: StreamName::new(name).unwrap(), expected, events }])?;
            }
            Step::Multi { first, counts, expect_first } => {
                let (a, b) = (STREAMS[*first], STREAMS[(*first + 1) % STREAMS.len()]);
                let expected = self.model.expected(a, expect_first);
                let ea = (0..counts.0).map(|i| self.event(i, false)).collect();
                let eb = (0..counts.1).map(|i| self.event(i + 50, false)).collect();
                self.append(vec![
                    StreamAppend { stream: StreamName::new(a).unwrap(), expected, events: ea },
                    StreamAppend { stream: StreamName::new(b).unwrap(), expected: ExpectedVersion::Any, events: eb },
                ])?;
            }
            Step::Retry { nth } => {
                if self.sent.is_empty() {
                    return Ok(());
                }
                let req = self.sent[nth % self.sent.len()].clone();
                self.append(req)?;
            }
            Step::ReadStream { stream, from, limit, backward } => {
                let name = STREAMS[*stream];
                let direction = if *backward { Direction::Backward } else { Direction::Forward };
                let from = StreamVersion(u64::from(*from) % 8);
                let limit = u64::from(*limit);
                let got = self.log().read_stream(name, Some(from), limit as usize, direction);
                let window = match self.model.readable(name) {
                    Err(why) => {
                        prop_assert!(
                            got.as_ref().is_err_and(|e| refused(e) == Some(why)),
                            "{:?}, model {:?}",
                            got,
                            why
                        );
                        return self.compare();
                    }
                    Ok(window) => window,
                };
                let versions = &self.model.streams[name].versions;
                let picked: Vec<u64> = match window {
                    None => Vec::new(),
                    Some((first, last)) if *backward => {
                        let hi = from.0.min(last);
                        (first..=hi).rev().take(limit as usize).map(|v| versions[v as usize]).collect()
                    }
                    Some((first, last)) => {
                        (from.0.max(first)..=last).take(limit as usize).map(|v| versions[v as usize]).collect()
                    }
                };
                let got = got.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(got.len(), picked.len());
                for (e, p) in got.iter().zip(picked) {
                    prop_assert_eq!(e.position.0, p);
                    prop_assert!(same(e, &self.model.events[p as usize]));
                }
            }
            Step::Subscribe { stream, from } => {
                let from = u64::from(*from) % (self.model.events.len() as u64 + 1);
                let filter = Filter { stream: stream.map(|s| STREAMS[s].to_string()), ..Filter::default() };
                let want: Vec<&Stored> = self.model.events[from as usize..]
                    .iter()
                    .filter(|s| filter.stream.as_ref().is_none_or(|f| *f == s.stream))
                    .collect();
                let mut sub = self.log().subscribe(StartFrom::Position(Position(from)), filter);
                for w in want {
                    let got = self.rt.block_on(sub.next());
                    let Some(Ok(e)) = got else {
                        return Err(TestCaseError::fail(format!("subscription ended early: {got:?}")));
                    };
                    prop_assert!(same(&e, w), "subscription from {}: {:?} vs {:?}", from, e, w);
                }
            }
            Step::Reopen => self.reopen()?,
            Step::Scavenge => {
                let active = self.log().segment_files().pop().expect("an active segment");
                let sealed_end = active.path.file_stem().and_then(|s| s.to_str()?.parse::<u64>().ok()).expect("a name");
                let report = self.log().scavenge(&ScavengeOptions::default(), &mut |_| {});
                prop_assert!(report.is_ok(), "scavenge: {:?}", report);
                self.model.scavenge(sealed_end);
            }
            Step::Crash { seed } => self.crash(*seed)?,
            Step::Delete { stream, tombstone } => {
                let name = STREAMS[*stream];
                let mode = if *tombstone { DeleteMode::Tombstone } else { DeleteMode::Soft };
                let got = self.log().delete_stream(name, mode);
                let want = self.model.delete(name, *tombstone);
                self.change(got, want)?;
            }
            Step::Close { stream } => {
                let got = self.log().close_stream(STREAMS[*stream]);
                let want = self.model.close(STREAMS[*stream]);
                self.change(got, want)?;
            }
            Step::Limit { stream, truncate_before, max_count } => {
                let metadata = StreamMetadata {
                    truncate_before: truncate_before.map(u64::from),
                    max_count: max_count.map(u64::from),
                    ..StreamMetadata::default()
                };
                let got = self.log().set_stream_metadata(STREAMS[*stream], metadata.clone());
                let want = self.model.set_metadata(STREAMS[*stream], &metadata);
                self.change(got, want)?;
            }
            Step::Fork { source, to, at } => {
                let (source, to, at) = (STREAMS[*source], STREAMS[*to], u64::from(*at));
                let got = self.log().fork_stream(source, to, StreamVersion(at));
                let want = self.model.fork(source, to, at);
                self.change(got, want)?;
            }
            Step::Erase { stream, from, to } => {
                let (from, to) = (from.map(u64::from), to.map(u64::from));
                let got = self.log().erase(STREAMS[*stream], from.map(StreamVersion), to.map(StreamVersion), "model");
                let want = self.model.erase(STREAMS[*stream], from, to);
                self.change(got, want)?;
            }
            Step::CrashDuringLifecycle { stream, close, budget, seed } => {
                let name = STREAMS[*stream];
                self.fs.crash_after(u64::from(*budget));
                let before = self.model.events.len();
                let saved = self.model.streams.get(name).cloned();
                let (got, want) = if *close {
                    (self.log().close_stream(name), self.model.close(name))
                } else {
                    (self.log().delete_stream(name, DeleteMode::Soft), self.model.delete(name, false))
                };
                let acked = got.is_ok();
                self.crash(*seed)?;
                let now = self.log().stats().events as usize;
                match want {
                    // Refused: nothing was written, crash or not.
                    Err(_) => prop_assert_eq!(now, before, "a refused change wrote something"),
                    // Acknowledged: it holds. Not acknowledged: there entirely or not at all.
                    Ok(()) if acked || now > before => prop_assert_eq!(now, before + 1, "acknowledged {}", acked),
                    Ok(()) => {
                        // Not written: take the change back out of the model.
                        self.model.events.pop();
                        self.model.streams.get_mut(LIFECYCLE_STREAM).expect("written").versions.pop();
                        match saved {
                            Some(saved) => self.model.streams.insert(name.to_string(), saved),
                            None => self.model.streams.remove(name),
                        };
                    }
                }
            }
            Step::CrashDuringAppend { stream, budget, seed } => {
                let name = STREAMS[*stream];
                let events = vec![self.event(1, false), self.event(2, false)];
                let req = vec![StreamAppend {
                    stream: StreamName::new(name).unwrap(),
                    expected: ExpectedVersion::Any,
                    events,
                }];
                self.fs.crash_after(u64::from(*budget));
                let acked = self.log().append_multi(req.clone()).is_ok();
                self.crash(*seed)?;
                let before = self.model.events.len();
                let now = self.log().stats().events as usize;
                // Acknowledged: it must be there. Not acknowledged: all of it or nothing.
                if acked || now > before {
                    prop_assert_eq!(now, before + 2, "a partial or lost append after a crash (acknowledged {})", acked);
                    self.model.append(&req).expect("Any cannot conflict");
                    self.sent.push(req);
                }
            }
        }
        self.compare()
    }
}

#[test]
fn the_log_behaves_like_the_model() {
    let seed = suite_seed("model");
    let cases = env_count("CAIRN_MODEL_CASES", CASES_DEFAULT) as u32;
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, rng);
    let result = runner.run(&prop::collection::vec(step_strategy(), 1..STEPS_MAX), |steps| {
        let mut h = Harness::new();
        for step in &steps {
            h.step(step)?;
        }
        Ok(())
    });
    match result {
        Ok(()) => {}
        Err(proptest::test_runner::TestError::Fail(why, steps)) => {
            panic!("model test failed (replay with CAIRN_SEED={seed}): {why}\nminimal sequence of steps: {steps:#?}")
        }
        Err(e) => panic!("model test failed (replay with CAIRN_SEED={seed}): {e}"),
    }
}

/// The idempotency window is a count of recent ids (`IDEMPOTENCY_WINDOW`), whatever the segment
/// size: a retry of a recent append is recognised after a reopen too.
#[test]
fn a_retry_within_the_idempotency_window_is_recognised_after_reopen() {
    let dir = scratch_dir();
    let log = Log::open(dir.path(), options()).unwrap();
    let first = NewEvent::bytes("Once", b"payload".to_vec()).with_id(Uuid::from_u64_pair(1, 1));
    let original = log.append("s0", ExpectedVersion::Any, vec![first.clone()]).unwrap();
    // A few large events: three segments later, far fewer than IDEMPOTENCY_WINDOW ids.
    for i in 0..10u64 {
        let big = NewEvent::bytes("Big", noise(LARGE, i)).with_id(Uuid::from_u64_pair(2, i));
        log.append("s1", ExpectedVersion::Any, vec![big]).unwrap();
    }
    assert!(log.segment_files().len() > 3);
    let retried = log.append("s0", ExpectedVersion::Any, vec![first.clone()]).unwrap();
    assert_eq!(retried, original, "a retry before reopen");
    drop(log);
    let log = Log::open(dir.path(), options()).unwrap();
    let retried = log.append("s0", ExpectedVersion::Any, vec![first]).unwrap();
    assert_eq!(retried.first_position, original.first_position, "a retry after reopen wrote the event again");
    assert_eq!(log.stream_version("s0"), Some(StreamVersion(0)));
}
