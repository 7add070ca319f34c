//! [`KvView`]: the key-value projection. Folds `kv.*` events of `kv:<key>` streams into a map
//! of keys to values.
//!
//! Invariants: a key's entry is a function of its stream's events alone; expiry is decided at
//! each event's `at` (or its timestamp), never the clock, so replays agree; expired keys stay in
//! the map (reads treat them as absent) until an event on the key replaces or removes them.
//! Entries of the projection are `key bytes → rmp(Entry)`.
//!
//! Layout, for speed: point operations go to a hash map; an ordered set of the same keys (the
//! strings are shared) serves prefix listing and is touched only when a key appears or goes.
//! Change tracking is by epoch: each slot records the epoch of its last write and `mark` starts
//! a new epoch, so tracking costs nothing per write; removals are kept in a set. The price is
//! that `changes_since_mark` scans every key (milliseconds per million keys, once per
//! checkpoint).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use log_engine::{Event, Payload};

use super::ops::{self, Entry, Op, Stored};
use crate::changes;
use crate::projection::{ApplyError, Changes, LoadError, Projection};
use crate::streams::KV_STREAM_PREFIX as STREAM_PREFIX;

/// Epoch of slots that are not pending in any change set (loaded, or written before a mark).
const CLEAN: u64 = 0;

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
}

impl Default for KvView {
    fn default() -> KvView {
        KvView { keys: HashMap::new(), ordered: BTreeSet::new(), removed: HashSet::new(), epoch: CLEAN + 1 }
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

    /// Live keys starting with `prefix` and sorted after `after`, at most `limit`, and whether
    /// more follow.
    pub(crate) fn keys(&self, prefix: &str, after: Option<&str>, limit: usize, now_ms: u64) -> (Vec<String>, bool) {
        let lower = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut live = self
            .ordered
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(|k| k.starts_with(prefix))
            .filter(|k| self.keys[&***k].entry.alive(now_ms));
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
        let Some(key) = event.stream.strip_prefix(STREAM_PREFIX) else { return Ok(()) };
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
        self.ordered.iter().map(|k| (k.as_bytes().to_vec(), changes::encode(&self.keys[&**k].entry))).collect()
    }

    /// The canonical digest, entry by entry: an incremental checkpoint takes it while the views
    /// are paused, and the whole state as a list would cost its size again in memory.
    fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
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
        upserts.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut removals: Vec<Vec<u8>> = self.removed.iter().map(|k| k.as_bytes().to_vec()).collect();
        removals.sort_unstable();
        Changes { upserts, removals }
    }

    fn mark(&mut self) {
        self.epoch += 1;
        self.removed.clear();
    }

    fn load(&mut self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), LoadError> {
        let mut decoded = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let entry: Entry = changes::decode(KvView::NAME, &k, &v)?;
            decoded.push((utf8_key(&k)?, entry));
        }
        self.clear();
        for (key, entry) in decoded {
            self.insert_clean(key, entry);
        }
        Ok(())
    }

    fn apply_changes(&mut self, changes: &Changes) -> Result<(), LoadError> {
        let mut decoded = Vec::with_capacity(changes.upserts.len());
        for (k, v) in &changes.upserts {
            decoded.push((utf8_key(k)?, changes::decode::<Entry>(KvView::NAME, k, v)?));
        }
        for k in &changes.removals {
            self.remove_clean(&utf8_key(k)?);
        }
        for (key, entry) in decoded {
            self.insert_clean(key, entry);
        }
        // The restored state is the mark: nothing written before counts as pending.
        for slot in self.keys.values_mut() {
            slot.epoch = CLEAN;
        }
        self.removed.clear();
        Ok(())
    }
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
