//! Shared pieces of the reliability suites: a deterministic workload whose every event can be
//! regenerated from the tag it carries, and one checker that every crash suite runs after a
//! reopen.
//!
//! Each append request ("batch") is identified by a [`Tag`] (round, client, sequence number).
//! Its events, streams, ids and payloads are a pure function of the workload seed and the tag,
//! and every event carries its tag, its index in the batch and the batch size in its metadata.
//! So the checker needs only the list of acknowledgements: it can tell, for every event found in
//! the log, which append produced it and whether it is byte-identical to what was appended.
//!
//! What [`check`] asserts (each failure is a sentence in the report, not a panic, so that the
//! broken-build suite can assert that loss *is* reported):
//! - the log reopens (plain `Options`, the real file system);
//! - positions are gapless from 0 and every stream's versions are gapless from 0;
//! - every event is byte-identical to the event its tag says was appended (stream, id, type,
//!   metadata, data), and no batch appears twice;
//! - every batch is all-or-nothing: complete, in order, at consecutive positions;
//! - every acknowledged batch is present at its acknowledged positions ("lost" otherwise);
//! - `Log::verify` checks every event, and the head is the last event.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use log_engine::faults::SplitMix;
use log_engine::{Event, ExpectedVersion, Log, NewEvent, Options, Payload, Position, StreamAppend, StreamName, Uuid};

/// Small segments, so that every suite crosses segment roll, seal and rename paths often.
pub const SEGMENT: u64 = 64 * 1024;
/// Streams shared by all clients (multi-stream appends go here too).
pub const SHARED_STREAMS: [&str; 3] = ["shared-a", "shared-b", "shared-c"];
/// Most events in one generated batch.
pub const BATCH_EVENTS_MAX: u64 = 6;

/// Options for a suite's log: small segments, everything else default.
pub fn options() -> Options {
    Options { segment_size: SEGMENT, ..Options::default() }
}

/// The key-encryption key of the suites' encrypted runs.
pub fn suite_kek() -> log_engine::Kek {
    log_engine::Kek::from_hex(&"c3".repeat(32)).expect("64 hex digits")
}

/// [`options`] with encryption at rest: the key store `dir/keys`, read and written through `fs`
/// like the segments, so that a crash or a power loss reaches it too.
pub fn keyed_options(dir: &Path, fs: std::sync::Arc<dyn log_engine::fs::FileSystem>) -> log_engine::Result<Options> {
    let keys = log_engine::Keyring::open_on(fs.clone(), dir.join(log_engine::KEY_STORE_FILE), suite_kek())?;
    Ok(Options { keys: Some(keys), fs, ..options() })
}

/// The options a checker reopens `dir` with: plain, or keyed on the real file system.
pub fn reopen_options(dir: &Path, encrypted: bool) -> log_engine::Result<Options> {
    if encrypted {
        keyed_options(dir, std::sync::Arc::new(log_engine::fs::OsFs))
    } else {
        Ok(options())
    }
}

/// A scratch directory on a memory file system when there is one: the crash suites simulate
/// durability themselves, so real fdatasyncs would only cost time.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new().prefix("cairn-rel-").tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("a temporary directory")
}

/// A positive number from an environment variable, or the default.
pub fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(default)
}

/// The seed of a suite: from `CAIRN_SEED` when set (to replay a failure), else from the clock.
/// Printed, so that every run can be replayed.
pub fn suite_seed(suite: &str) -> u64 {
    let seed = std::env::var("CAIRN_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
    });
    eprintln!("{suite}: seed {seed} (replay with CAIRN_SEED={seed})");
    seed
}

/// Which append request an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag {
    pub round: u64,
    pub client: u64,
    pub seq: u64,
}

impl Tag {
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.round, self.client, self.seq)
    }

    pub fn decode(s: &str) -> Option<Tag> {
        let mut it = s.split('.').map(|p| p.parse::<u64>().ok());
        let tag = Tag { round: it.next()??, client: it.next()??, seq: it.next()?? };
        it.next().is_none().then_some(tag)
    }
}

/// One generated event, flattened: its stream and what was appended.
#[derive(Debug, Clone)]
pub struct Planned {
    pub stream: String,
    pub event: NewEvent,
}

/// The append request for `tag`: a pure function of the workload seed and the tag.
pub fn batch(seed: u64, tag: Tag) -> Vec<StreamAppend> {
    let mut rng = SplitMix(seed ^ tag.round.wrapping_mul(0x9E37_79B9) ^ (tag.client << 40) ^ (tag.seq << 8));
    rng.next();
    let own = format!("client-{}", tag.client);
    let shape = rng.below(10);
    let streams: Vec<(String, u64)> = match shape {
        0..=5 => vec![(own, 1)],
        6 | 7 => vec![(own, 2 + rng.below(BATCH_EVENTS_MAX - 1))],
        _ => {
            // Several streams in one atomic append.
            let first = rng.below(SHARED_STREAMS.len() as u64) as usize;
            let mut s = vec![(SHARED_STREAMS[first].to_string(), 1 + rng.below(2))];
            s.push((SHARED_STREAMS[(first + 1) % SHARED_STREAMS.len()].to_string(), 1 + rng.below(2)));
            if rng.below(2) == 0 {
                s.push((own, 1));
            }
            s
        }
    };
    let total: u64 = streams.iter().map(|(_, n)| n).sum();
    let mut index = 0;
    streams
        .into_iter()
        .map(|(stream, n)| {
            let events = (0..n)
                .map(|_| {
                    let e = event(&mut rng, tag, index, total);
                    index += 1;
                    e
                })
                .collect();
            StreamAppend {
                stream: StreamName::new(stream).expect("valid name"),
                expected: ExpectedVersion::Any,
                events,
            }
        })
        .collect()
}

fn event(rng: &mut SplitMix, tag: Tag, index: u64, total: u64) -> NewEvent {
    // Mostly small events; some large enough to be compressed, or to fill a segment quickly.
    let len = match rng.below(20) {
        0 => 3000 + rng.below(3000),
        1..=3 => 600 + rng.below(900),
        _ => 20 + rng.below(300),
    } as usize;
    let id = Uuid::from_u64_pair(rng.next(), rng.next());
    let event_type = format!("Type{}", rng.below(5));
    let mut e = if rng.below(3) == 0 {
        let mut bytes = Vec::with_capacity(len);
        while bytes.len() < len {
            bytes.extend_from_slice(&rng.next().to_le_bytes());
        }
        bytes.truncate(len);
        NewEvent::bytes(event_type, bytes)
    } else {
        // Repetitive text compresses: large JSON events take the snappy path.
        let word = ["alpha", "beta", "gamma", "delta"][rng.below(4) as usize];
        NewEvent::json(event_type, &serde_json::json!({"n": rng.next(), "text": word.repeat(len / word.len())}))
    };
    e = e.with_id(id);
    e.with_metadata(&serde_json::json!({"b": tag.encode(), "i": index, "n": total}))
}

/// The events of a batch in position order.
pub fn flatten(appends: &[StreamAppend]) -> Vec<Planned> {
    appends
        .iter()
        .flat_map(|a| a.events.iter().map(|e| Planned { stream: a.stream.as_str().to_string(), event: e.clone() }))
        .collect()
}

/// A digest of a batch's content, printed with acknowledgements so that a parent process can
/// confirm it regenerates the same batch its child appended.
pub fn digest(appends: &[StreamAppend]) -> String {
    let mut h = blake3::Hasher::new();
    for p in flatten(appends) {
        h.update(p.stream.as_bytes());
        h.update(p.event.id.expect("generated events carry ids").as_bytes());
        h.update(p.event.event_type.as_bytes());
        h.update(&p.event.metadata);
        h.update(p.event.data.as_bytes());
    }
    h.finalize().to_hex()[..16].to_string()
}

/// An acknowledged append: its tag, and for each stream-append the first position and count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub tag: Tag,
    pub spans: Vec<(u64, u64)>,
}

impl Ack {
    pub fn new(tag: Tag, results: &[log_engine::AppendResult]) -> Ack {
        Ack {
            tag,
            spans: results.iter().map(|r| (r.first_position.0, r.last_position.0 - r.first_position.0 + 1)).collect(),
        }
    }

    pub fn events(&self) -> u64 {
        self.spans.iter().map(|s| s.1).sum()
    }
}

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct Report {
    /// Events in the reopened log.
    pub events: u64,
    /// Acknowledged events looked for.
    pub acknowledged: u64,
    /// Acknowledged events missing or different, one sentence each.
    pub lost: Vec<String>,
    /// Every other broken property, one sentence each.
    pub violations: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.lost.is_empty() && self.violations.is_empty()
    }

    /// The first few problems, for an assertion message.
    pub fn summary(&self) -> String {
        let mut lines: Vec<String> = Vec::new();
        lines.extend(self.violations.iter().take(5).cloned());
        lines.extend(self.lost.iter().take(5).cloned());
        format!(
            "{} events, {} acknowledged, {} lost, {} other violations:\n  {}",
            self.events,
            self.acknowledged,
            self.lost.len(),
            self.violations.len(),
            lines.join("\n  ")
        )
    }
}

fn tag_of(event: &Event) -> Option<(Tag, u64, u64)> {
    let meta: serde_json::Value = serde_json::from_slice(&event.metadata).ok()?;
    let tag = Tag::decode(meta.get("b")?.as_str()?)?;
    Some((tag, meta.get("i")?.as_u64()?, meta.get("n")?.as_u64()?))
}

/// Reopens the log in `dir` with plain options and checks it against the acknowledgements.
pub fn check(dir: &Path, seed: u64, acks: &[Ack]) -> Report {
    check_with(dir, seed, acks, false)
}

/// [`check`], reopening with the suites' key when `encrypted`.
pub fn check_with(dir: &Path, seed: u64, acks: &[Ack], encrypted: bool) -> Report {
    let mut report = Report { acknowledged: acks.iter().map(Ack::events).sum(), ..Report::default() };
    let log = match reopen_options(dir, encrypted).and_then(|options| Log::open(dir, options)) {
        Ok(log) => log,
        Err(e) => {
            report.violations.push(format!("reopen failed: {e}"));
            return report;
        }
    };
    check_open(&log, seed, acks, &mut report);
    report
}

/// [`check`] on an open log.
pub fn check_open(log: &Log, seed: u64, acks: &[Ack], report: &mut Report) {
    let mut events: Vec<Event> = Vec::new();
    if let Err(e) = log.for_each(Position(0), u64::MAX, |e| {
        events.push(e);
        true
    }) {
        report.violations.push(format!("reading the log failed after {} events: {e}", events.len()));
    }
    report.events = events.len() as u64;
    let mut regenerated: HashMap<Tag, Vec<Planned>> = HashMap::new();
    // tag -> (first position, next expected index)
    let mut batches: BTreeMap<Tag, (u64, u64, u64)> = BTreeMap::new();
    let mut versions: HashMap<String, u64> = HashMap::new();
    for (i, event) in events.iter().enumerate() {
        let p = event.position.0;
        if p != i as u64 {
            report.violations.push(format!("position gap: event {i} has position {p}"));
            break;
        }
        let v = versions.entry(event.stream.clone()).or_default();
        if event.version.0 != *v {
            report.violations.push(format!(
                "stream {} version gap at position {p}: version {} after {}",
                event.stream,
                event.version.0,
                v.cast_signed() - 1
            ));
        }
        *v = event.version.0 + 1;
        let Some((tag, index, total)) = tag_of(event) else {
            report.violations.push(format!("event at position {p} carries no tag: not something that was appended"));
            continue;
        };
        let planned = regenerated.entry(tag).or_insert_with(|| flatten(&batch(seed, tag)));
        match planned.get(index as usize) {
            Some(want) if planned.len() as u64 == total => {
                let same = want.stream == event.stream
                    && Some(event.id) == want.event.id
                    && want.event.event_type == event.event_type
                    && want.event.metadata == event.metadata
                    && same_payload(&want.event.data, &event.data);
                if !same {
                    report.violations.push(format!("event at position {p} (batch {tag:?} #{index}) differs"));
                }
            }
            _ => report.violations.push(format!("event at position {p} claims batch {tag:?} #{index} of {total}")),
        }
        match batches.get_mut(&tag) {
            None if index == 0 => {
                batches.insert(tag, (p, 1, total));
            }
            Some((first, next, _)) if *next == index && *first + index == p => *next += 1,
            _ => report
                .violations
                .push(format!("batch {tag:?}: event #{index} at position {p} is out of order, or the batch repeats")),
        }
    }
    for (tag, (first, seen, total)) in &batches {
        if seen != total {
            report
                .violations
                .push(format!("partial batch {tag:?}: {seen} of {total} events visible from position {first}"));
        }
    }
    for ack in acks {
        let planned = regenerated.entry(ack.tag).or_insert_with(|| flatten(&batch(seed, ack.tag)));
        let mut index = 0u64;
        for &(first, count) in &ack.spans {
            for k in 0..count {
                let p = first + k;
                let found = events.get(p as usize).and_then(tag_of);
                if found.map(|(t, i, _)| (t, i)) != Some((ack.tag, index)) {
                    report.lost.push(format!(
                        "acknowledged event #{index} of batch {:?} at position {p} is {}",
                        ack.tag,
                        if (p as usize) < events.len() { "a different event" } else { "missing" }
                    ));
                }
                index += 1;
            }
        }
        if index != planned.len() as u64 {
            report.violations.push(format!(
                "acknowledgement of {:?} covers {index} of {} events",
                ack.tag,
                planned.len()
            ));
        }
    }
    let verified = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| log.verify(None, |_| {})));
    let Ok(verified) = verified else {
        report.violations.push("verify panicked".to_string());
        return;
    };
    match verified {
        Ok(v) if v.ok && v.events == report.events => {}
        Ok(v) => report.violations.push(format!(
            "verify: ok={} over {} of {} events: {}",
            v.ok,
            v.events,
            report.events,
            v.detail.unwrap_or_default()
        )),
        Err(e) => report.violations.push(format!("verify failed: {e}")),
    }
    let head = log.head().map(|h| (h.position, h.hash));
    let last = events.last().map(|e| (e.position, e.hash));
    if head != last {
        report.violations.push(format!("head {head:?} is not the last event {last:?}"));
    }
}

fn same_payload(a: &Payload, b: &Payload) -> bool {
    a == b
}

/// Appends batches `0..n` of (`round`, `client`) through `log`, returning the acknowledgements,
/// and stops at the first error.
pub fn append_batches(log: &Log, seed: u64, round: u64, client: u64, n: u64) -> (Vec<Ack>, Option<log_engine::Error>) {
    let mut acks = Vec::new();
    for seq in 0..n {
        let tag = Tag { round, client, seq };
        match log.append_multi(batch(seed, tag)) {
            Ok(results) => acks.push(Ack::new(tag, &results)),
            Err(e) => return (acks, Some(e)),
        }
    }
    (acks, None)
}

/// Files in `dir/torn`.
pub fn torn_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("torn"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// Copies a data directory's `log/` (the only part the log owns besides `torn/`).
pub fn copy_log(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("log")).expect("create log dir");
    for entry in std::fs::read_dir(from.join("log")).expect("list log dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join("log").join(entry.file_name())).expect("copy segment");
    }
}

pub mod power;
pub mod scavenge;
pub mod views;
