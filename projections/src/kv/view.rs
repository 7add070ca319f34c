//! [`KvView`]: the key-value projection. Folds `kv.*` events of `kv:<key>` streams into a
//! sorted map of keys to values.
//!
//! Invariants: a key's entry is a function of its stream's events alone; expiry is decided at
//! each event's `at` (or its timestamp), never the clock, so replays agree; expired keys stay in
//! the map (reads treat them as absent) until an event on the key replaces or removes them.
//! Entries of the projection are `key bytes → rmp(Entry)`.

use std::collections::BTreeMap;

use log_engine::{Event, Payload};

use super::ops::{self, Entry, Op, Stored};
use super::STREAM_PREFIX;
use crate::changes::{self, Touched};
use crate::projection::{ApplyError, Changes, LoadError, Projection};

/// The key-value view. Create it empty with [`KvView::new`] and hand it to a
/// [`crate::Runner`] (or use [`crate::Views`], which does both).
#[derive(Debug, Default)]
pub struct KvView {
    keys: BTreeMap<String, Entry>,
    touched: Touched,
}

impl KvView {
    /// The projection's name in checkpoints and status reports.
    pub const NAME: &'static str = "kv";

    pub fn new() -> KvView {
        KvView::default()
    }

    /// The key's entry if it exists and has not expired at `now_ms`.
    pub(crate) fn live(&self, key: &str, now_ms: u64) -> Option<&Entry> {
        self.keys.get(key).filter(|e| e.alive(now_ms))
    }

    /// Live keys starting with `prefix` and sorted after `after`, at most `limit`, and whether
    /// more follow.
    pub(crate) fn keys(&self, prefix: &str, after: Option<&str>, limit: usize, now_ms: u64) -> (Vec<String>, bool) {
        use std::ops::Bound;
        let lower = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut keys = Vec::new();
        let mut live = self
            .keys
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, e)| e.alive(now_ms));
        for (key, _) in live.by_ref().take(limit) {
            keys.push(key.clone());
        }
        (keys, live.next().is_some())
    }
}

impl Projection for KvView {
    fn name(&self) -> &'static str {
        KvView::NAME
    }

    fn apply(&mut self, event: &Event) -> Result<(), ApplyError> {
        let Some(key) = event.stream.strip_prefix(STREAM_PREFIX) else { return Ok(()) };
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
            let entry =
                Entry { value: Stored::Value(value), version, expires_at: ttl_ms.map(|t| ts.saturating_add(t)) };
            match self.keys.get_mut(key) {
                Some(slot) => *slot = entry,
                None => {
                    self.keys.insert(key.to_string(), entry);
                }
            }
            self.touched.touch(key.as_bytes());
            return Ok(());
        }
        // `at` may not lie after the event: a writer cannot push expiry decisions into the future.
        let at = at.map_or(ts, |at| at.min(ts));
        let (owned_key, entry) = match self.keys.remove_entry(key) {
            Some((k, e)) => (k, Some(e)),
            None => (key.to_string(), None),
        };
        let mut live = entry.filter(|e| e.alive(at));
        match ops::plan(key, live.as_ref(), &op) {
            Ok(output) => ops::mutate(&mut live, &op, &output, ts, version),
            Err(e) => {
                // Only an existing entry can fail an operation; put it back unchanged.
                let entry = live.expect("an absent key fails no operation");
                self.keys.insert(owned_key, entry);
                return Err(ApplyError::new(e.to_string()));
            }
        }
        self.touched.touch(owned_key.as_bytes());
        if let Some(entry) = live {
            self.keys.insert(owned_key, entry);
        }
        Ok(())
    }

    fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.keys.iter().map(|(k, e)| (k.as_bytes().to_vec(), changes::encode(e))).collect()
    }

    fn changes_since_mark(&self) -> Changes {
        self.touched.changes(|k| std::str::from_utf8(k).ok().and_then(|k| self.keys.get(k)).map(changes::encode))
    }

    fn mark(&mut self) {
        self.touched.clear();
    }

    fn load(&mut self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), LoadError> {
        let mut keys = BTreeMap::new();
        for (k, v) in entries {
            let entry: Entry = changes::decode(KvView::NAME, &k, &v)?;
            keys.insert(utf8_key(&k)?, entry);
        }
        self.keys = keys;
        self.touched.clear();
        Ok(())
    }

    fn apply_changes(&mut self, changes: &Changes) -> Result<(), LoadError> {
        let mut decoded = Vec::with_capacity(changes.upserts.len());
        for (k, v) in &changes.upserts {
            decoded.push((utf8_key(k)?, changes::decode::<Entry>(KvView::NAME, k, v)?));
        }
        for k in &changes.removals {
            self.keys.remove(&utf8_key(k)?);
        }
        self.keys.extend(decoded);
        self.touched.clear();
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
        let e = kv.keys.get("n").unwrap();
        assert_eq!((e.value.clone(), e.expires_at), (Stored::Value(json!(42)), Some(1_100)));
        // An increment without `at` is decided at its timestamp: the key had expired.
        kv.apply(&event(2, "n", 2, "kv.incr", 1_300, json!({"delta": 2}))).unwrap();
        let e = kv.keys.get("n").unwrap();
        assert_eq!((e.value.clone(), e.expires_at, e.version), (Stored::Value(json!(2)), None, 2));
        // An `at` after the event's own time is clamped to it.
        kv.apply(&event(3, "t", 0, "kv.set", 2_000, json!({"value": 1, "ttl_ms": 10}))).unwrap();
        kv.apply(&event(4, "t", 1, "kv.incr", 2_005, json!({"delta": 1, "at": 9_999}))).unwrap();
        assert_eq!(kv.keys.get("t").unwrap().value, Stored::Value(json!(2)), "alive at 2_005");
    }

    #[test]
    fn a_failed_apply_leaves_the_state_as_it_was() {
        let mut kv = KvView::new();
        kv.apply(&event(0, "l", 0, "kv.push", 10, json!({"end": "left", "values": [1]}))).unwrap();
        let before = kv.entries();
        kv.mark();
        let err = kv.apply(&event(1, "l", 1, "kv.incr", 11, json!({"delta": 1}))).unwrap_err();
        assert!(err.message.contains("holds a list"), "{}", err.message);
        assert_eq!(kv.entries(), before);
        assert!(kv.changes_since_mark().is_empty());
        assert!(kv.apply(&event(2, "l", 2, "kv.set", 12, json!({"nope": 1}))).is_err());
        assert!(kv.apply(&event(3, "l", 3, "kv.unknown", 12, json!({}))).is_ok(), "unknown kv types are skipped");
        assert_eq!(kv.entries(), before);
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
        assert!(copy.load(vec![(b"x".to_vec(), b"not rmp".to_vec())]).is_err());
    }
}
