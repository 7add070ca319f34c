//! [`KvView`]: the key-value projection. Folds `kv.*` events of `kv:<key>` streams into a map
//! of keys to values.
//!
//! Invariants: a key's entry is a function of its stream's events and of the `$lifecycle`
//! events about that stream; expiry is decided at each event's `at` (or its timestamp), never
//! the clock, so replays agree; expired keys stay in the map (reads treat them as absent) until
//! an event on the key replaces or removes them. Entries of the projection are
//! `key bytes → rmp(Entry)`, and for each key whose stream has retention limits,
//! `LIFE_ENTRY_PREFIX key bytes → rmp(KeyLife)` (a prefix no key can start with), so a view with
//! no such key has exactly the entries and digest it had before stream lifecycles existed.
//!
//! The stream lifecycle (the log's `$lifecycle` events): deleting or tombstoning a key's stream
//! removes the key, so a later write starts it afresh, as stream reads then show only what was
//! written after the delete. Retention limits (`ttl_ms`, `max_age_ms`, `truncate_before`) are
//! recorded per key: the next write after they hid every earlier event starts the key afresh
//! too, and reads of such a key ask the log whether it still shows any event (the log applies
//! the limits by its own clock; see [`super::KvStore`]). `max_count` never hides a stream's
//! newest event, so it does not change a key.
//!
//! Layout, for speed: point operations go to a hash map; an ordered set of the same keys (the
//! strings are shared) serves prefix listing and is touched only when a key appears or goes.
//! Change tracking is by epoch: each slot records the epoch of its last write and `mark` starts
//! a new epoch, so tracking costs nothing per write; removals are kept in a set. The price is
//! that `changes_since_mark` scans every key (milliseconds per million keys, once per
//! checkpoint).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use log_engine::{Event, Payload};
use serde::{Deserialize, Serialize};

use super::ops::{self, Entry, Op, Stored};
use crate::changes;
use crate::projection::{ApplyError, Changes, LoadError, Projection};
use crate::streams::KV_STREAM_PREFIX as STREAM_PREFIX;

/// Epoch of slots that are not pending in any change set (loaded, or written before a mark).
const CLEAN: u64 = 0;

/// The entry-key prefix of a [`KeyLife`]: a key cannot start with it (keys hold no control
/// characters), and it sorts before every key.
const LIFE_ENTRY_PREFIX: &[u8] = b"\0life\0";

/// The retention limits of a key's stream that can hide all of its events, as its last
/// `stream-metadata` event set them, and when the key last changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeyLife {
    pub ttl_ms: Option<u64>,
    pub max_age_ms: Option<u64>,
    pub truncate_before: Option<u64>,
    /// The timestamp of the key's last event, or of the metadata event if the key has had
    /// none since its limits were set.
    pub last_ms: u64,
}

impl KeyLife {
    /// True if the limits hid every earlier event of the key by the time of `event` (which is
    /// the key's next one): the key starts afresh with it. (A `ttl_ms` expiry needs no rule
    /// here: the log writes it as a `stream-deleted` event before the append that follows it.)
    fn hid_everything_before(&self, event: &Event, version_now: Option<u64>) -> bool {
        let quiet = event.timestamp_ms.saturating_sub(self.last_ms);
        self.max_age_ms.is_some_and(|a| quiet >= a)
            || self.truncate_before.is_some_and(|t| version_now.is_some_and(|v| v < t))
    }
}

#[derive(Debug)]
struct Slot {
    entry: Entry,
    /// The change epoch of the last write.
    epoch: u64,
}

/// The key-value view. Create it empty with [`KvView::new`] and hand it to a
/// [`crate::Runner`] (or use [`crate::Views`], which does both).
#[derive(Debug)]
pub struct KvView {
    keys: HashMap<Arc<str>, Slot>,
    ordered: BTreeSet<Arc<str>>,
    /// Keys removed in the current epoch (and not written again since).
    removed: HashSet<Arc<str>>,
    /// The current change epoch; always above [`CLEAN`].
    epoch: u64,
    /// Keys whose streams have retention limits that can hide every event.
    lives: BTreeMap<String, KeyLife>,
    /// Keys whose [`KeyLife`] changed (or went) since the mark.
    lives_changed: BTreeSet<String>,
}

impl Default for KvView {
    fn default() -> KvView {
        KvView {
            keys: HashMap::new(),
            ordered: BTreeSet::new(),
            removed: HashSet::new(),
            epoch: CLEAN + 1,
            lives: BTreeMap::new(),
            lives_changed: BTreeSet::new(),
        }
    }
}

impl KvView {
    /// The projection's name in checkpoints and status reports.
    pub const NAME: &'static str = "kv";

    pub fn new() -> KvView {
        KvView::default()
    }

    /// The key's entry if it exists and has not expired at `now_ms`.
    pub(crate) fn live(&self, key: &str, now_ms: u64) -> Option<&Entry> {
        self.keys.get(key).map(|s| &s.entry).filter(|e| e.alive(now_ms))
    }

    /// True if the key's stream has retention limits: whether it still shows an event is the
    /// log's to say.
    pub(crate) fn limited(&self, key: &str) -> bool {
        !self.lives.is_empty() && self.lives.contains_key(key)
    }

    /// Live keys starting with `prefix` and sorted after `after`, at most `limit`, and whether
    /// more follow; a key with retention limits only if `shown` says the log still shows it.
    pub(crate) fn keys(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        now_ms: u64,
        shown: &dyn Fn(&str) -> bool,
    ) -> (Vec<String>, bool) {
        let lower = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut live = self
            .ordered
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(|k| k.starts_with(prefix))
            .filter(|k| self.keys[&***k].entry.alive(now_ms) && (!self.limited(k) || shown(k)));
        let keys: Vec<String> = live.by_ref().take(limit).map(|k| k.to_string()).collect();
        (keys, live.next().is_some())
    }

    /// Stores a key's new entry (or removes the key), recording the change.
    fn put(&mut self, key: &str, entry: Option<Entry>) {
        let epoch = self.epoch;
        match (self.keys.get_mut(key), entry) {
            (Some(slot), Some(entry)) => *slot = Slot { entry, epoch },
            (None, Some(entry)) => {
                let key: Arc<str> = Arc::from(key);
                if !self.removed.is_empty() {
                    self.removed.remove(&key);
                }
                self.ordered.insert(key.clone());
                self.keys.insert(key, Slot { entry, epoch });
            }
            (Some(_), None) => {
                if let Some((key, _)) = self.keys.remove_entry(key) {
                    self.ordered.remove(&key);
                    self.removed.insert(key);
                }
            }
            (None, None) => {}
        }
    }

    /// Applies a `kv.*` event to its key; skips other types (`Ok`).
    fn apply_op(&mut self, key: &str, event: &Event) -> Result<(), ApplyError> {
        if !event.event_type.starts_with("kv.") {
            return Ok(());
        }
        let Payload::Json(data) = &event.data else {
            return Err(ApplyError::new(format!("a {} event must carry JSON data", event.event_type)));
        };
        let Some(decoded) = Op::decode(&event.event_type, data) else { return Ok(()) };
        let (op, at) = decoded.map_err(ApplyError::new)?;
        let ts = event.timestamp_ms;
        let version = event.version.0;
        if let Op::Set { value, ttl_ms } = op {
            // Fast path: a set does not depend on the old entry.
            let expires_at = ttl_ms.map(|t| ts.saturating_add(t));
            self.put(key, Some(Entry { value: Stored::Value(value), version, expires_at }));
            return Ok(());
        }
        // `at` may not lie after the event: a writer cannot push expiry decisions into the future.
        let at = at.map_or(ts, |at| at.min(ts));
        // Take the entry out of its slot (a list may be long: no copy), and put it back if the
        // operation fails. An expired entry is dropped: the operation starts from nothing.
        let taken = self.keys.get_mut(key).map(|s| std::mem::replace(&mut s.entry, Entry::placeholder()));
        let mut live = taken.filter(|e| e.alive(at));
        match ops::plan(key, live.as_ref(), &op) {
            Ok(output) => {
                ops::mutate(&mut live, &op, &output, ts, version);
                self.put(key, live);
                Ok(())
            }
            Err(e) => {
                // Only a live entry fails an operation, so there is one to put back.
                if let (Some(entry), Some(slot)) = (live, self.keys.get_mut(key)) {
                    slot.entry = entry;
                }
                Err(ApplyError::new(e.to_string()))
            }
        }
    }

    /// Applies a `$lifecycle` event about a `kv:` stream: a delete or tombstone removes the key,
    /// metadata records (or clears) its limits, an erasure from a version at or before the
    /// key's current one removes it (its value may hold an erased payload: a `set` erased under
    /// a later `incr` still shows in the sum; and a replay, which meets those events erased,
    /// reaches the same absent key). Anything else, or about another stream, is
    /// skipped: only the log writes these events.
    fn apply_lifecycle(&mut self, event: &Event) {
        let Some(data) = event.data_json() else { return };
        let Some(key) = data.get("stream").and_then(|s| s.as_str()).and_then(|s| s.strip_prefix(STREAM_PREFIX)) else {
            return;
        };
        match event.event_type.as_str() {
            log_engine::EVENT_STREAM_DELETED | log_engine::EVENT_STREAM_TOMBSTONED => self.put(key, None),
            log_engine::EVENT_STREAM_ERASED => {
                let from = data.get("from_version").and_then(serde_json::Value::as_u64).unwrap_or(0);
                if self.keys.get(key).is_some_and(|s| s.entry.version >= from) {
                    self.put(key, None);
                }
            }
            log_engine::EVENT_STREAM_METADATA => {
                let limit =
                    |name: &str| data.get("metadata").and_then(|m| m.get(name)).and_then(serde_json::Value::as_u64);
                let (ttl_ms, max_age_ms, truncate_before) =
                    (limit("ttl_ms"), limit("max_age_ms"), limit("truncate_before"));
                if ttl_ms.is_none() && max_age_ms.is_none() && truncate_before.is_none() {
                    if self.lives.remove(key).is_some() {
                        self.lives_changed.insert(key.to_string());
                    }
                    return;
                }
                let last_ms = self.lives.get(key).map_or(event.timestamp_ms, |l| l.last_ms);
                self.lives.insert(key.to_string(), KeyLife { ttl_ms, max_age_ms, truncate_before, last_ms });
                self.lives_changed.insert(key.to_string());
            }
            _ => {}
        }
    }

    /// Before a key's event is applied: if its stream's limits hid every earlier event, the key
    /// starts afresh; either way the key's last change moves to this event.
    fn follow_limits(&mut self, key: &str, event: &Event) {
        let Some(life) = self.lives.get(key) else { return };
        let version_now = self.keys.get(key).map(|s| s.entry.version);
        if life.hid_everything_before(event, version_now) {
            self.put(key, None);
        }
        if let Some(life) = self.lives.get_mut(key) {
            life.last_ms = event.timestamp_ms;
        }
        self.lives_changed.insert(key.to_string());
    }

    /// Sets a present key's version to its stream's, recording the change.
    fn follow_version(&mut self, key: &str, version: u64) {
        let epoch = self.epoch;
        if let Some(slot) = self.keys.get_mut(key) {
            slot.entry.version = version;
            slot.epoch = epoch;
        }
    }

    fn clear(&mut self) {
        *self = KvView::new();
    }

    /// Inserts a loaded entry: not a pending change.
    fn insert_clean(&mut self, key: String, entry: Entry) {
        let key: Arc<str> = Arc::from(key);
        self.removed.remove(&key);
        self.ordered.insert(key.clone());
        self.keys.insert(key, Slot { entry, epoch: CLEAN });
    }

    fn remove_clean(&mut self, key: &str) {
        if let Some((key, _)) = self.keys.remove_entry(key) {
            self.ordered.remove(&key);
        }
    }
}

impl Projection for KvView {
    fn name(&self) -> &'static str {
        KvView::NAME
    }

    fn apply(&mut self, event: &Event) -> Result<(), ApplyError> {
        if event.stream == log_engine::LIFECYCLE_STREAM {
            self.apply_lifecycle(event);
            return Ok(());
        }
        let Some(key) = event.stream.strip_prefix(STREAM_PREFIX) else { return Ok(()) };
        if !self.lives.is_empty() {
            self.follow_limits(key, event);
        }
        if event.erased {
            // Its operation is gone; the `stream-erased` event that follows removes whatever
            // it touched. The key's version still moves on with its stream.
            self.follow_version(key, event.version.0);
            return Ok(());
        }
        let applied = self.apply_op(key, event);
        if applied.is_err() || self.keys.get(key).is_some_and(|s| s.entry.version != event.version.0) {
            // A key's version is its stream's version, whatever the event was: one this view
            // skips or cannot apply still moves the stream on, and a compare-and-set against a
            // version left behind would fail forever.
            self.follow_version(key, event.version.0);
        }
        applied
    }

    fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let lives = self.lives.iter().map(|(k, life)| (life_entry_key(k), changes::encode(life)));
        lives
            .chain(self.ordered.iter().map(|k| (k.as_bytes().to_vec(), changes::encode(&self.keys[&**k].entry))))
            .collect()
    }

    /// The canonical digest, entry by entry: an incremental checkpoint takes it while the views
    /// are paused, and the whole state as a list would cost its size again in memory.
    fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        // The limits' entries sort first (their prefix starts with a NUL byte).
        for (k, life) in &self.lives {
            crate::projection::digest_entry(&mut h, &life_entry_key(k), &changes::encode(life));
        }
        for k in &self.ordered {
            crate::projection::digest_entry(&mut h, k.as_bytes(), &changes::encode(&self.keys[&**k].entry));
        }
        *h.finalize().as_bytes()
    }

    fn changes_since_mark(&self) -> Changes {
        let mut upserts: Vec<(Vec<u8>, Vec<u8>)> = self
            .keys
            .iter()
            .filter(|(_, s)| s.epoch == self.epoch)
            .map(|(k, s)| (k.as_bytes().to_vec(), changes::encode(&s.entry)))
            .collect();
        let mut removals: Vec<Vec<u8>> = self.removed.iter().map(|k| k.as_bytes().to_vec()).collect();
        for k in &self.lives_changed {
            match self.lives.get(k) {
                Some(life) => upserts.push((life_entry_key(k), changes::encode(life))),
                None => removals.push(life_entry_key(k)),
            }
        }
        upserts.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        removals.sort_unstable();
        Changes { upserts, removals }
    }

    fn mark(&mut self) {
        self.epoch += 1;
        self.removed.clear();
        self.lives_changed.clear();
    }

    fn load(&mut self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), LoadError> {
        let mut decoded = Vec::with_capacity(entries.len());
        let mut lives = BTreeMap::new();
        for (k, v) in entries {
            if let Some(key) = k.strip_prefix(LIFE_ENTRY_PREFIX) {
                lives.insert(utf8_key(key)?, changes::decode::<KeyLife>(KvView::NAME, &k, &v)?);
                continue;
            }
            let entry: Entry = changes::decode(KvView::NAME, &k, &v)?;
            decoded.push((utf8_key(&k)?, entry));
        }
        self.clear();
        for (key, entry) in decoded {
            self.insert_clean(key, entry);
        }
        self.lives = lives;
        Ok(())
    }

    fn apply_changes(&mut self, changes: &Changes) -> Result<(), LoadError> {
        let mut decoded = Vec::with_capacity(changes.upserts.len());
        let mut lives = Vec::new();
        for (k, v) in &changes.upserts {
            if let Some(key) = k.strip_prefix(LIFE_ENTRY_PREFIX) {
                lives.push((utf8_key(key)?, changes::decode::<KeyLife>(KvView::NAME, k, v)?));
                continue;
            }
            decoded.push((utf8_key(k)?, changes::decode::<Entry>(KvView::NAME, k, v)?));
        }
        for k in &changes.removals {
            match k.strip_prefix(LIFE_ENTRY_PREFIX) {
                Some(key) => {
                    self.lives.remove(&utf8_key(key)?);
                }
                None => self.remove_clean(&utf8_key(k)?),
            }
        }
        for (key, entry) in decoded {
            self.insert_clean(key, entry);
        }
        self.lives.extend(lives);
        // The restored state is the mark: nothing written before counts as pending.
        for slot in self.keys.values_mut() {
            slot.epoch = CLEAN;
        }
        self.removed.clear();
        self.lives_changed.clear();
        Ok(())
    }
}

/// The entry key of a key's [`KeyLife`].
fn life_entry_key(key: &str) -> Vec<u8> {
    [LIFE_ENTRY_PREFIX, key.as_bytes()].concat()
}

fn utf8_key(k: &[u8]) -> Result<String, LoadError> {
    String::from_utf8(k.to_vec()).map_err(|_| LoadError {
        projection: KvView::NAME.to_string(),
        message: format!("entry key {} is not UTF-8", String::from_utf8_lossy(k)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use log_engine::{ChainHash, Position, StreamVersion, Uuid};
    use serde_json::json;

    fn val(v: serde_json::Value) -> Stored {
        Stored::Value(ops::RawJson::from_value(&v))
    }

    fn event(position: u64, key: &str, version: u64, event_type: &str, ts: u64, data: serde_json::Value) -> Event {
        Event {
            position: Position(position),
            stream: format!("kv:{key}"),
            version: StreamVersion(version),
            id: Uuid::nil(),
            event_type: event_type.to_string(),
            timestamp_ms: ts,
            metadata: b"{}".to_vec(),
            data: Payload::Json(serde_json::to_vec(&data).unwrap()),
            hash: ChainHash::genesis(),
            erased: false,
        }
    }

    #[test]
    fn expiry_is_decided_at_the_events_time_not_the_clock() {
        let mut kv = KvView::new();
        kv.apply(&event(0, "n", 0, "kv.set", 1_000, json!({"value": 40, "ttl_ms": 100}))).unwrap();
        assert_eq!(kv.live("n", 1_099).map(|e| e.expires_at), Some(Some(1_100)));
        assert!(kv.live("n", 1_100).is_none(), "expired at expires_at");
        // The increment's writer saw the key alive at 1_050: it counts from 40 and keeps the TTL.
        kv.apply(&event(1, "n", 1, "kv.incr", 1_200, json!({"delta": 2, "at": 1_050}))).unwrap();
        let e = kv.keys.get("n").unwrap().entry.clone();
        assert_eq!((e.value.clone(), e.expires_at), (val(json!(42)), Some(1_100)));
        // An increment without `at` is decided at its timestamp: the key had expired.
        kv.apply(&event(2, "n", 2, "kv.incr", 1_300, json!({"delta": 2}))).unwrap();
        let e = kv.keys.get("n").unwrap().entry.clone();
        assert_eq!((e.value.clone(), e.expires_at, e.version), (val(json!(2)), None, 2));
        // An `at` after the event's own time is clamped to it.
        kv.apply(&event(3, "t", 0, "kv.set", 2_000, json!({"value": 1, "ttl_ms": 10}))).unwrap();
        kv.apply(&event(4, "t", 1, "kv.incr", 2_005, json!({"delta": 1, "at": 9_999}))).unwrap();
        assert_eq!(kv.keys.get("t").unwrap().entry.value, val(json!(2)), "alive at 2_005");
    }

    #[test]
    fn a_failed_apply_changes_nothing_but_the_keys_version() {
        let mut kv = KvView::new();
        kv.apply(&event(0, "l", 0, "kv.push", 10, json!({"end": "left", "values": [1]}))).unwrap();
        let list = kv.keys.get("l").unwrap().entry.value.clone();
        kv.mark();
        let err = kv.apply(&event(1, "l", 1, "kv.incr", 11, json!({"delta": 1}))).unwrap_err();
        assert!(err.message.contains("holds a list"), "{}", err.message);
        let changes = kv.changes_since_mark();
        assert_eq!(changes.upserts.len(), 1, "the version moved: a checkpoint must carry it");
        assert!(kv.apply(&event(2, "l", 2, "kv.set", 12, json!({"nope": 1}))).is_err());
        assert!(kv.apply(&event(3, "l", 3, "kv.unknown", 12, json!({}))).is_ok(), "unknown kv types are skipped");
        assert!(kv.apply(&event(4, "l", 4, "Raw", 12, json!({}))).is_ok(), "other types are skipped");
        let e = &kv.keys.get("l").unwrap().entry;
        assert_eq!(e.value, list, "the value is untouched");
        assert_eq!(e.version, 4, "issue 23 item 7: the key's version follows its stream's");
    }

    fn raw_event(position: u64, key: &str, version: u64, event_type: &str, data: &str) -> Event {
        let mut e = event(position, key, version, event_type, 1_000, json!(null));
        e.data = Payload::Json(data.as_bytes().to_vec());
        e
    }

    /// issue 14 item 1: a value the view could skim but not parse (nested past the parser's
    /// recursion limit, `1e999999`, a lone surrogate) is refused when its set is applied, so the
    /// increment that follows counts from the previous value instead of panicking.
    #[test]
    fn undigestible_values_are_apply_errors_not_panics() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        for bad in [deep.as_str(), "1e999999", r#""\ud800""#, r#"{"\udfff": 1}"#, "-1e400"] {
            let mut kv = KvView::new();
            kv.apply(&raw_event(0, "k", 0, "kv.set", r#"{"value": 41}"#)).unwrap();
            let err = kv.apply(&raw_event(1, "k", 1, "kv.set", &format!(r#"{{"value": {bad}}}"#))).unwrap_err();
            assert!(err.message.contains("cannot be stored"), "{bad}: {}", err.message);
            kv.apply(&raw_event(2, "k", 2, "kv.incr", r#"{"delta": 1}"#)).unwrap();
            let e = &kv.keys.get("k").unwrap().entry;
            assert_eq!((e.value.clone(), e.version), (val(json!(42)), 2), "{bad}");
        }
    }

    /// A checkpoint written before values were checked may hold one that does not parse: reads
    /// and increments fail with an error, never a panic.
    #[test]
    fn an_unreadable_stored_value_fails_operations_without_panicking() {
        let mut kv = KvView::new();
        let bad = Entry { value: Stored::Value(ops::RawJson::unchecked("1e999999")), version: 0, expires_at: None };
        kv.load(vec![(b"k".to_vec(), changes::encode(&bad))]).unwrap();
        let err = kv.apply(&raw_event(1, "k", 1, "kv.incr", r#"{"delta": 1}"#)).unwrap_err();
        assert!(err.message.contains("not an integer"), "{}", err.message);
        assert!(kv.apply(&raw_event(2, "k", 2, "kv.append", r#"{"value": "x"}"#)).is_err());
    }

    fn lifecycle(position: u64, event_type: &str, ts: u64, data: serde_json::Value) -> Event {
        let mut e = event(position, "-", 0, event_type, ts, data);
        e.stream = log_engine::LIFECYCLE_STREAM.to_string();
        e
    }

    /// Issue 16 item 7: an erasure from a version at or before the key's current one removes
    /// the key (and a checkpoint carries the removal); a replay, meeting the erased events
    /// masked, folds them without failing and reaches the same state.
    #[test]
    fn an_erased_value_is_an_absent_key_live_and_replayed() {
        let erased_from = |v: u64| {
            lifecycle(
                9,
                "stream-erased",
                12,
                json!({"stream": "kv:n", "from_version": v, "to_version": v, "reason": "r"}),
            )
        };
        let events = vec![
            event(0, "n", 0, "kv.set", 10, json!({"value": 40})),
            event(1, "n", 1, "kv.incr", 10, json!({"delta": 2})),
            event(2, "m", 0, "kv.set", 10, json!({"value": 1})),
        ];
        let mut live = KvView::new();
        for e in &events {
            live.apply(e).unwrap();
        }
        live.mark();
        live.apply(&erased_from(0)).unwrap();
        assert!(live.live("n", 12).is_none() && live.live("m", 12).is_some());
        assert_eq!(live.changes_since_mark().removals, vec![b"n".to_vec()], "a checkpoint carries the erasure");
        let mut replayed = KvView::new();
        for e in &events {
            let mut e = e.clone();
            if e.stream == "kv:n" && e.version.0 == 0 {
                e.erased = true;
                e.data = Payload::Bytes(Vec::new());
            }
            replayed.apply(&e).unwrap();
        }
        replayed.apply(&erased_from(0)).unwrap();
        assert_eq!(replayed.digest(), live.digest(), "replay reaches the live state");
        // An erasure of versions after the key's current one changes nothing.
        let mut later = KvView::new();
        later.apply(&events[2]).unwrap();
        later
            .apply(&lifecycle(
                9,
                "stream-erased",
                12,
                json!({"stream": "kv:m", "from_version": 1, "to_version": 1, "reason": "r"}),
            ))
            .unwrap();
        assert!(later.live("m", 12).is_some());
    }

    /// Issue 16 item 7: deleting or tombstoning a key's stream removes the key, and a write
    /// after a soft delete starts it afresh; other streams' lifecycle events change nothing.
    #[test]
    fn a_deleted_stream_is_an_absent_key_and_starts_afresh() {
        let mut kv = KvView::new();
        kv.apply(&event(0, "n", 0, "kv.incr", 10, json!({"delta": 40}))).unwrap();
        kv.apply(&event(1, "m", 0, "kv.set", 10, json!({"value": 1}))).unwrap();
        kv.mark();
        kv.apply(&lifecycle(2, "stream-deleted", 11, json!({"stream": "kv:n", "before_version": 1}))).unwrap();
        kv.apply(&lifecycle(3, "stream-tombstoned", 11, json!({"stream": "agent-1", "before_version": 1}))).unwrap();
        assert!(kv.live("n", 12).is_none());
        assert!(kv.live("m", 12).is_some(), "another stream's delete changes nothing");
        assert_eq!(kv.changes_since_mark().removals, vec![b"n".to_vec()], "a checkpoint carries the delete");
        kv.apply(&event(4, "n", 1, "kv.incr", 13, json!({"delta": 2}))).unwrap();
        let e = &kv.keys.get("n").unwrap().entry;
        assert_eq!((e.value.clone(), e.version), (val(json!(2)), 1), "counts from nothing; versions continue");
        kv.apply(&lifecycle(5, "stream-tombstoned", 14, json!({"stream": "kv:m", "before_version": 1}))).unwrap();
        assert!(kv.live("m", 15).is_none());
    }

    /// Retention limits are state: recorded by `stream-metadata`, in the entries (so
    /// checkpoints carry them) only for the keys that have them, and a write after they hid
    /// every earlier event starts the key afresh.
    #[test]
    fn limits_are_recorded_checkpointed_and_restart_a_key_they_emptied() {
        let mut kv = KvView::new();
        kv.apply(&event(0, "a", 0, "kv.incr", 1_000, json!({"delta": 1}))).unwrap();
        let plain = (kv.entries(), kv.digest());
        kv.mark();
        let metadata = |age: Option<u64>| json!({"stream": "kv:a", "metadata": {"max_age_ms": age, "max_count": null, "truncate_before": null, "ttl_ms": null, "closed": false}});
        kv.apply(&lifecycle(1, "stream-metadata", 1_100, metadata(Some(500)))).unwrap();
        assert!(kv.limited("a") && !kv.limited("b"));
        let changes = kv.changes_since_mark();
        assert_eq!(changes.upserts.len(), 1);
        assert!(changes.upserts[0].0.starts_with(LIFE_ENTRY_PREFIX));
        let mut copy = KvView::new();
        copy.load(kv.entries()).unwrap();
        assert_eq!((copy.digest(), copy.limited("a")), (kv.digest(), true), "the limits survive a checkpoint");
        let listed = crate::digest_entries(kv.entries().iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
        assert_eq!(kv.digest(), listed);
        let mut incremental = KvView::new();
        incremental.load(plain.0.clone()).unwrap();
        incremental.apply_changes(&changes).unwrap();
        assert_eq!(incremental.digest(), kv.digest());

        // Quiet for less than the maximum age (counted from the metadata, the key's last event
        // being older): the key goes on.
        kv.apply(&event(2, "a", 1, "kv.incr", 1_500, json!({"delta": 1}))).unwrap();
        assert_eq!(kv.keys.get("a").unwrap().entry.value, val(json!(2)));
        // Quiet for the maximum age: everything before was hidden; the key starts afresh.
        kv.apply(&event(3, "a", 2, "kv.incr", 2_000, json!({"delta": 1}))).unwrap();
        assert_eq!(kv.keys.get("a").unwrap().entry.value, val(json!(1)));
        // No limits left: the entry goes, and the view is as it would be without them.
        kv.mark();
        kv.apply(&lifecycle(4, "stream-metadata", 2_100, metadata(None))).unwrap();
        assert!(!kv.limited("a"));
        assert_eq!(kv.changes_since_mark().removals.len(), 1);
        assert!(kv.entries().iter().all(|(k, _)| !k.starts_with(LIFE_ENTRY_PREFIX)));
        let mut restored = KvView::new();
        restored.load(plain.0).unwrap();
        assert_eq!(restored.digest(), plain.1, "a view without limits digests as it always did");
    }

    #[test]
    fn changes_report_upserts_and_removals_since_the_mark() {
        let mut kv = KvView::new();
        kv.apply(&event(0, "a", 0, "kv.set", 1, json!({"value": 1}))).unwrap();
        kv.apply(&event(1, "b", 0, "kv.set", 1, json!({"value": 2}))).unwrap();
        kv.mark();
        kv.apply(&event(2, "a", 1, "kv.delete", 2, json!({}))).unwrap();
        kv.apply(&event(3, "c", 0, "kv.set", 2, json!({"value": 3}))).unwrap();
        let changes = kv.changes_since_mark();
        assert_eq!(changes.removals, vec![b"a".to_vec()]);
        assert_eq!(changes.upserts.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), vec![b"c".to_vec()]);
        let mut copy = KvView::new();
        copy.load(kv.entries()).unwrap();
        assert_eq!(copy.digest(), kv.digest());
        let entries = kv.entries();
        let listed = crate::digest_entries(entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
        assert_eq!(kv.digest(), listed, "the entry-by-entry digest is the canonical one");
        assert!(copy.load(vec![(b"x".to_vec(), b"not rmp".to_vec())]).is_err());
    }
}
