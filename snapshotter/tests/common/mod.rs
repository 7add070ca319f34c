//! Helpers shared by the snapshotter integration tests: two small deterministic projections,
//! a seeded workload generator, and shortcuts for logs and digests.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use log_engine::{Event, ExpectedVersion, Log, NewEvent, Options, Position, StreamAppend, StreamName};
use projections::{ApplyError, Changes, LoadError, Projection};

/// Small segments so that tests cross segment boundaries (and copy sealed segments).
pub const SMALL_SEGMENT: u64 = 64 * 1024;

pub fn open_log(dir: &Path) -> Log {
    Log::open(dir, Options { segment_size: SMALL_SEGMENT, ..Options::default() }).expect("open log")
}

/// A keyed map with change tracking since the last mark: the shape every test view shares.
#[derive(Debug, Default)]
pub struct Tracked {
    state: BTreeMap<Vec<u8>, Vec<u8>>,
    touched: BTreeSet<Vec<u8>>,
}

impl Tracked {
    fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        self.state.get(key)
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.touched.insert(key.clone());
        self.state.insert(key, value);
    }

    fn remove(&mut self, key: &[u8]) {
        self.touched.insert(key.to_vec());
        self.state.remove(key);
    }

    fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.state.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn changes(&self) -> Changes {
        let mut changes = Changes::default();
        for key in &self.touched {
            match self.state.get(key) {
                Some(v) => changes.upserts.push((key.clone(), v.clone())),
                None => changes.removals.push(key.clone()),
            }
        }
        changes
    }

    fn load(&mut self, entries: Vec<(Vec<u8>, Vec<u8>)>) {
        self.state = entries.into_iter().collect();
        self.touched.clear();
    }

    fn apply_changes(&mut self, changes: &Changes) {
        for key in &changes.removals {
            self.state.remove(key);
        }
        for (k, v) in &changes.upserts {
            self.state.insert(k.clone(), v.clone());
        }
    }
}

/// Per stream: how many `Tick`s since the last `Reset`, and the last tick's `n`.
/// `Reset` removes the stream's entry; `Bad` is an event it understands but refuses.
#[derive(Debug, Default)]
pub struct StreamCounts(pub Tracked);

impl Projection for StreamCounts {
    fn name(&self) -> &'static str {
        "stream_counts"
    }

    fn apply(&mut self, event: &Event) -> Result<(), ApplyError> {
        let key = event.stream.as_bytes();
        match event.event_type.as_str() {
            "Tick" => {
                let n = event.data_json().and_then(|d| d["n"].as_u64()).ok_or_else(|| ApplyError::new("no n"))?;
                let count = self.0.get(key).map_or(0, |v| u64::from_le_bytes(v[..8].try_into().unwrap())) + 1;
                let mut value = count.to_le_bytes().to_vec();
                value.extend_from_slice(&n.to_le_bytes());
                self.0.put(key.to_vec(), value);
            }
            "Reset" => self.0.remove(key),
            "Bad" => return Err(ApplyError::new("refused on purpose")),
            _ => {}
        }
        Ok(())
    }

    fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.0.entries()
    }

    fn changes_since_mark(&self) -> Changes {
        self.0.changes()
    }

    fn mark(&mut self) {
        self.0.touched.clear();
    }

    fn load(&mut self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), LoadError> {
        self.0.load(entries);
        Ok(())
    }

    fn apply_changes(&mut self, changes: &Changes) -> Result<(), LoadError> {
        self.0.apply_changes(changes);
        Ok(())
    }
}

/// Events per type.
#[derive(Debug, Default)]
pub struct TypeCounts(pub Tracked);

impl Projection for TypeCounts {
    fn name(&self) -> &'static str {
        "type_counts"
    }

    fn apply(&mut self, event: &Event) -> Result<(), ApplyError> {
        let key = event.event_type.as_bytes();
        let count = self.0.get(key).map_or(0, |v| u64::from_le_bytes(v[..8].try_into().unwrap())) + 1;
        self.0.put(key.to_vec(), count.to_le_bytes().to_vec());
        Ok(())
    }

    fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.0.entries()
    }

    fn changes_since_mark(&self) -> Changes {
        self.0.changes()
    }

    fn mark(&mut self) {
        self.0.touched.clear();
    }

    fn load(&mut self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), LoadError> {
        self.0.load(entries);
        Ok(())
    }

    fn apply_changes(&mut self, changes: &Changes) -> Result<(), LoadError> {
        self.0.apply_changes(changes);
        Ok(())
    }
}

/// A fresh, empty set of the test views.
pub fn views() -> Vec<Box<dyn Projection>> {
    vec![Box::new(TypeCounts::default()), Box::new(StreamCounts::default())]
}

/// Each view's name and digest, sorted by name.
pub fn digests(views: &[Box<dyn Projection>]) -> Vec<(&'static str, [u8; 32])> {
    let mut d: Vec<_> = views.iter().map(|v| (v.name(), v.digest())).collect();
    d.sort();
    d
}

/// Digests of fresh views replayed from 0 through `through`.
pub fn replayed_digests(log: &Log, through: Position) -> Vec<(&'static str, [u8; 32])> {
    let mut v = views();
    snapshotter::replay(log, &mut v, Position(0), through, &mut |_| {}).expect("replay");
    digests(&v)
}

/// SplitMix64: a small seeded generator, so every run can be repeated from its printed seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from `SNAPSHOTTER_SEED` if set, else from the clock; prints the seed.
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("SNAPSHOTTER_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
        eprintln!("{test}: seed {seed} (rerun with SNAPSHOTTER_SEED={seed})");
        Rng(seed)
    }

    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Appends `n` events over `streams` streams in batches: mostly `Tick`s, some `Reset`s and
/// `Bad`s. Returns the last position.
pub fn append_workload(log: &Log, rng: &mut Rng, n: u64, streams: u64) -> Position {
    let mut left = n;
    let mut last = None;
    while left > 0 {
        let batch = left.min(1 + rng.below(50));
        let mut appends: BTreeMap<u64, Vec<NewEvent>> = BTreeMap::new();
        for _ in 0..batch {
            let stream = rng.below(streams);
            let roll = rng.below(100);
            let event = if roll < 5 {
                NewEvent::json("Reset", &serde_json::json!({}))
            } else if roll < 7 {
                NewEvent::json("Bad", &serde_json::json!({}))
            } else {
                NewEvent::json("Tick", &serde_json::json!({"n": rng.next() % 1000}))
            };
            appends.entry(stream).or_default().push(event);
        }
        let appends = appends
            .into_iter()
            .map(|(s, events)| StreamAppend {
                stream: StreamName::new(format!("agent-{s}")).unwrap(),
                expected: ExpectedVersion::Any,
                events,
            })
            .collect();
        let results = log.append_multi(appends).expect("append");
        last = results.iter().map(|r| r.last_position).max();
        left -= batch;
    }
    last.expect("n > 0")
}

/// Appends, then applies the new events to `views`. Returns the new last position.
pub fn grow(log: &Log, views: &mut [Box<dyn Projection>], rng: &mut Rng, n: u64, streams: u64) -> Position {
    let from = log.head().map_or(Position(0), |h| Position(h.position.0 + 1));
    let last = append_workload(log, rng, n, streams);
    snapshotter::replay(log, views, from, last, &mut |_| {}).expect("replay new events");
    last
}
