//! The key-value view (the shared memory store of an agent platform) and its write facade.
//!
//! Every key is its own stream, `kv:<key>`, so a key's version is its stream's version, its
//! history is its stream, compare-and-set is an append with an expected version, and a
//! transaction over several keys is one atomic multi-stream append. The event vocabulary
//! (`kv.set`, `kv.delete`, `kv.incr`, `kv.append`, `kv.push`, `kv.pop`, `kv.sadd`, `kv.srem`)
//! and the Redis differences are documented in `docs/projections.md`.
//!
//! [`KvStore`] turns operations into events; [`KvView`] folds them. Reads take `now_ms` for
//! expiry; writes that depend on the key's state record their `at` time in the event, so the
//! view decides expiry exactly as the write did. Write `kv:` streams only through [`KvStore`]:
//! foreign events on them are skipped and can leave a key's version behind its stream's.

mod ops;
mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use log_engine::{Direction, ExpectedVersion, NewEvent, Position, StreamVersion, STREAM_NAME_LEN_MAX};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

pub use self::ops::{End, TTL_MS_MAX};
pub use self::view::KvView;

use self::ops::{Entry, Op, Output, RawJson, Stored};
use crate::core::{now_ms, Core, Planned};
use crate::error::{Error, Result};

pub(crate) use crate::streams::KV_STREAM_PREFIX as STREAM_PREFIX;
/// Longest key, in UTF-8 bytes (the stream name must fit the log's limit).
pub const KEY_LEN_MAX: usize = STREAM_NAME_LEN_MAX - STREAM_PREFIX.len();
/// Most keys one prefix listing returns.
pub const LIST_LIMIT_MAX: usize = 1000;
/// Most keys in one get-many or set-many.
pub const MANY_KEYS_MAX: usize = 1000;
/// Most operations in one transaction.
pub const TXN_OPS_MAX: usize = 1000;
/// Most entries one history read returns.
pub const HISTORY_LIMIT_MAX: usize = 1000;

/// Most events of a key's stream that a read at a version ([`KvStore::get_at`]) replays: the
/// read folds the key's events from its first, so it is bounded like every other read.
pub const AT_VERSION_EVENTS_MAX: usize = 100_000;

/// A key's value as `get` answers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KvEntry {
    pub key: String,
    pub value: Json,
    pub version: StreamVersion,
    /// Unix ms from which the key reads as absent.
    pub expires_at: Option<u64>,
}

/// Where a write landed: the key's new version and the event's log position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Written {
    pub version: StreamVersion,
    pub position: Position,
}

/// A state-dependent write's answer, and where it was written (`None`: it changed nothing,
/// so nothing was written; for example popping an empty list).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KvWrite<T> {
    pub value: T,
    pub written: Option<Written>,
}

/// One page of a prefix listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyPage {
    pub keys: Vec<String>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// One event of a key's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub version: StreamVersion,
    /// The operation: `set`, `delete`, `incr`, ... (the event type without `kv.`).
    pub op: String,
    /// The operation's argument: the value set or appended, the delta, the values pushed, the
    /// count popped, the members added or removed; `null` for a delete.
    pub value: Json,
    pub timestamp_ms: u64,
    pub position: Position,
    /// The event's payload was erased: `value` is `null`.
    pub erased: bool,
}

/// One operation of a transaction. Deserializes from the HTTP contract's shape,
/// `{"op": "set", "key": "k", "value": ..., "ttl_ms"?: n}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
// deny_unknown_fields: an operation's misspelt field must be refused, not dropped.
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum TxnOp {
    Set {
        key: String,
        value: Json,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_ms: Option<u64>,
    },
    Delete {
        key: String,
    },
    Incr {
        key: String,
        #[serde(default = "one")]
        delta: i64,
    },
    Append {
        key: String,
        value: String,
    },
    Push {
        key: String,
        end: End,
        values: Vec<Json>,
    },
    Pop {
        key: String,
        end: End,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
    },
    Sadd {
        key: String,
        members: Vec<String>,
    },
    Srem {
        key: String,
        members: Vec<String>,
    },
}

fn one() -> i64 {
    1
}

impl TxnOp {
    fn key(&self) -> &str {
        match self {
            TxnOp::Set { key, .. }
            | TxnOp::Delete { key }
            | TxnOp::Incr { key, .. }
            | TxnOp::Append { key, .. }
            | TxnOp::Push { key, .. }
            | TxnOp::Pop { key, .. }
            | TxnOp::Sadd { key, .. }
            | TxnOp::Srem { key, .. } => key,
        }
    }

    /// Checks the JSON values the operation carries (see [`crate::check_value`]).
    fn check_values(&self) -> Result<()> {
        let key = self.key();
        match self {
            TxnOp::Set { value, .. } => Error::check_value(|| format!("the value of key {key:?}"), value),
            TxnOp::Push { values, .. } => {
                values.iter().try_for_each(|v| Error::check_value(|| format!("a value pushed to key {key:?}"), v))
            }
            _ => Ok(()),
        }
    }

    fn op(&self) -> Op {
        match self.clone() {
            TxnOp::Set { value, ttl_ms, .. } => Op::Set { value: RawJson::from_value(&value), ttl_ms },
            TxnOp::Delete { .. } => Op::Delete,
            TxnOp::Incr { delta, .. } => Op::Incr { delta },
            TxnOp::Append { value, .. } => Op::Append { value },
            TxnOp::Push { end, values, .. } => Op::Push { end, values },
            TxnOp::Pop { end, count, .. } => Op::Pop { end, count: count.unwrap_or(1) },
            TxnOp::Sadd { members, .. } => Op::Sadd { members },
            TxnOp::Srem { members, .. } => Op::Srem { members },
        }
    }
}

/// What one transaction operation answered. Serializes as the single-operation HTTP answers:
/// `{"version": v}` for a set, `{"deleted": b}`, `{"value": n}` for an increment, `{"length": n}`,
/// `{"values": [...]}`, `{"added": n}`, `{"removed": n}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnOutput {
    Version(StreamVersion),
    Deleted(bool),
    Value(i64),
    Length(u64),
    Values(Vec<Json>),
    Added(u64),
    Removed(u64),
}

/// A transaction's answers, in the order of its operations, and where it was written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TxnResult {
    pub outputs: Vec<TxnOutput>,
    /// The log position of the transaction's last event; `None` if it changed nothing.
    pub position: Option<Position>,
}

/// The key-value store: writes become events on `kv:<key>` streams; reads come from the
/// [`KvView`]. Cheap to clone, `Send + Sync`. Get one from [`crate::Views::kv`].
///
/// Reads answer from the view as far as it has applied; wait for a write's position first for
/// read-your-writes. Writes that depend on the key's state (everything but `set` and
/// `set_many`) wait for the view to catch up with the key themselves.
#[derive(Clone)]
pub struct KvStore {
    core: Arc<Core>,
}

impl fmt::Debug for KvStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvStore").finish_non_exhaustive()
    }
}

/// The stream of a key.
pub fn key_stream(key: &str) -> String {
    format!("{STREAM_PREFIX}{key}")
}

fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > KEY_LEN_MAX {
        return Err(Error::invalid(format!("a key must be 1 to {KEY_LEN_MAX} bytes; {:?} is {}", key, key.len())));
    }
    if key.chars().any(char::is_control) {
        return Err(Error::invalid(format!("key {key:?} contains control characters")));
    }
    Ok(())
}

fn check_count(what: &'static str, max: usize, actual: usize) -> Result<()> {
    if actual > max {
        return Err(Error::TooLarge { what, max, actual });
    }
    Ok(())
}

impl KvStore {
    pub(crate) fn new(core: Arc<Core>) -> KvStore {
        KvStore { core }
    }

    fn read<R>(&self, f: impl FnOnce(&KvView) -> R) -> R {
        self.core.read::<KvView, R>(f)
    }

    /// Whether the log still shows any event of a key whose stream has retention limits: the
    /// log applies them by its own clock (the newest event's timestamp), and a deleted or
    /// expired stream shows none.
    fn shown(&self, key: &str) -> bool {
        self.core.log.read_stream(&key_stream(key), None, 1, Direction::Backward).is_ok_and(|events| !events.is_empty())
    }

    /// The key's entry if it exists, has not expired at `now_ms`, and its stream's retention
    /// limits (if any) still show it.
    fn live<'a>(&self, kv: &'a KvView, key: &str, now_ms: u64) -> Option<&'a Entry> {
        kv.live(key, now_ms).filter(|_| !kv.limited(key) || self.shown(key))
    }

    /// GET: the key's value, version and expiry. `key_not_found` if absent or expired;
    /// `wrong_type` for a list or set (read those with [`KvStore::range`] and
    /// [`KvStore::members`]).
    pub fn get(&self, key: &str, now_ms: u64) -> Result<KvEntry> {
        validate_key(key)?;
        // Copy the text under the lock; parse it after.
        let found = self.read(|kv| match self.live(kv, key, now_ms) {
            None => Err(Error::KeyNotFound { key: key.to_string() }),
            Some(Entry { value: Stored::Value(v), version, expires_at }) => Ok((v.clone(), *version, *expires_at)),
            Some(other) => {
                Err(Error::WrongType { key: key.to_string(), op: "get", expected: "value", actual: other.value.kind() })
            }
        });
        let (raw, version, expires_at) = found?;
        let value = raw.parse().map_err(|reason| Error::UnreadableValue { key: key.to_string(), reason })?;
        Ok(KvEntry { key: key.to_string(), value, version: StreamVersion(version), expires_at })
    }

    /// GET at a version: the key as it stood right after its write at `version` (the version
    /// `get`, `history` and every write answer), folded from the key's stream, so any version
    /// the log holds can be read. `version_not_found` past the key's newest version;
    /// `key_not_found` if the key held nothing then (deleted or expired); `wrong_type` for a
    /// list or set; `too_large` past [`AT_VERSION_EVENTS_MAX`] events.
    pub fn get_at(&self, key: &str, version: StreamVersion) -> Result<KvEntry> {
        use crate::projection::Projection as _;
        validate_key(key)?;
        let stream = key_stream(key);
        let last = self.core.log.stream_version(&stream).map(|v| v.0);
        if last.is_none_or(|l| version.0 > l) {
            return Err(Error::KeyVersionNotFound { key: key.to_string(), version: version.0, last });
        }
        let count = usize::try_from(version.0).map_or(usize::MAX, |v| v.saturating_add(1));
        if count > AT_VERSION_EVENTS_MAX {
            return Err(Error::TooLarge {
                what: "the events replayed to read a key at a version (AT_VERSION_EVENTS_MAX)",
                max: AT_VERSION_EVENTS_MAX,
                actual: count,
            });
        }
        // A private view of this one key: the same fold as the live view, stopped at `version`.
        let mut view = KvView::new();
        let mut at_ms = 0;
        let mut next = 0;
        while next <= version.0 {
            let page = (version.0 - next + 1).min(HISTORY_LIMIT_MAX as u64) as usize;
            let events = self.core.log.read_stream(&stream, Some(StreamVersion(next)), page, Direction::Forward)?;
            let Some(last_read) = events.last() else { break };
            next = last_read.version.0 + 1;
            for event in events.iter().filter(|e| e.version <= version) {
                // An event the view cannot apply changes nothing, as in the live view.
                let _ = view.apply(event);
                at_ms = event.timestamp_ms;
            }
        }
        match view.live(key, at_ms) {
            None => Err(Error::KeyNotFound { key: key.to_string() }),
            Some(Entry { value: Stored::Value(v), version, expires_at }) => Ok(KvEntry {
                key: key.to_string(),
                value: v.parse().map_err(|reason| Error::UnreadableValue { key: key.to_string(), reason })?,
                version: StreamVersion(*version),
                expires_at: *expires_at,
            }),
            Some(other) => {
                Err(Error::WrongType { key: key.to_string(), op: "get", expected: "value", actual: other.value.kind() })
            }
        }
    }

    /// MGET: each key's value, `None` for a key that is absent, expired, or holds a list or set.
    pub fn get_many(&self, keys: &[String], now_ms: u64) -> Result<Vec<(String, Option<Json>)>> {
        check_count("the number of keys in one get", MANY_KEYS_MAX, keys.len())?;
        keys.iter().try_for_each(|k| validate_key(k))?;
        let raw: Vec<Option<RawJson>> = self.read(|kv| {
            keys.iter()
                .map(|k| match self.live(kv, k, now_ms) {
                    Some(Entry { value: Stored::Value(v), .. }) => Some(v.clone()),
                    _ => None,
                })
                .collect()
        });
        keys.iter()
            .zip(raw)
            .map(|(k, r)| {
                let value = r.map(|r| r.parse()).transpose();
                Ok((k.clone(), value.map_err(|reason| Error::UnreadableValue { key: k.clone(), reason })?))
            })
            .collect()
    }

    /// EXISTS: whether the key holds anything (of any kind) at `now_ms`.
    pub fn exists(&self, key: &str, now_ms: u64) -> Result<bool> {
        validate_key(key)?;
        Ok(self.read(|kv| self.live(kv, key, now_ms).is_some()))
    }

    /// LRANGE: elements `start..=stop` of a list (negative indexes count from the end). A
    /// missing key is an empty list.
    pub fn range(&self, key: &str, start: i64, stop: i64, now_ms: u64) -> Result<Vec<Json>> {
        validate_key(key)?;
        self.read(|kv| match self.live(kv, key, now_ms).map(|e| &e.value) {
            None => Ok(Vec::new()),
            Some(Stored::List(list)) => Ok(ops::list_range(list, start, stop)),
            Some(other) => {
                Err(Error::WrongType { key: key.to_string(), op: "range", expected: "list", actual: other.kind() })
            }
        })
    }

    /// SMEMBERS, sorted. A missing key is an empty set.
    pub fn members(&self, key: &str, now_ms: u64) -> Result<Vec<String>> {
        validate_key(key)?;
        self.read(|kv| match self.live(kv, key, now_ms).map(|e| &e.value) {
            None => Ok(Vec::new()),
            Some(Stored::Set(set)) => Ok(set.iter().cloned().collect()),
            Some(other) => {
                Err(Error::WrongType { key: key.to_string(), op: "members", expected: "set", actual: other.kind() })
            }
        })
    }

    /// Live keys starting with `prefix`, in byte order, after `after` (exclusive), at most
    /// `limit` (clamped to 1..=[`LIST_LIMIT_MAX`]).
    pub fn list(&self, prefix: &str, after: Option<&str>, limit: usize, now_ms: u64) -> Result<KeyPage> {
        let limit = limit.clamp(1, LIST_LIMIT_MAX);
        let (keys, more) = self.read(|kv| kv.keys(prefix, after, limit, now_ms, &|k| self.shown(k)));
        let next = if more { keys.last().cloned() } else { None };
        Ok(KeyPage { keys, next })
    }

    /// The key's events, newest first, at most `limit` (clamped to 1..=[`HISTORY_LIMIT_MAX`]).
    /// Read from the log, so it includes deletes. `key_not_found` if the key was never written.
    pub fn history(&self, key: &str, limit: usize) -> Result<Vec<HistoryEntry>> {
        validate_key(key)?;
        let limit = limit.clamp(1, HISTORY_LIMIT_MAX);
        let events = match self.core.log.read_stream(&key_stream(key), None, limit, Direction::Backward) {
            Ok(events) => events,
            Err(
                log_engine::Error::StreamNotFound { .. }
                | log_engine::Error::StreamDeleted { .. }
                | log_engine::Error::StreamTombstoned { .. },
            ) => return Err(Error::KeyNotFound { key: key.to_string() }),
            Err(e) => return Err(e.into()),
        };
        Ok(events
            .into_iter()
            .map(|e| {
                let data = e.data_json().unwrap_or(Json::Null);
                let op = e.event_type.strip_prefix("kv.").unwrap_or(&e.event_type).to_string();
                let field = match op.as_str() {
                    "set" | "append" => Some("value"),
                    "incr" => Some("delta"),
                    "push" => Some("values"),
                    "pop" => Some("count"),
                    "sadd" | "srem" => Some("members"),
                    "delete" => None,
                    _ => Some(""),
                };
                let value = match field {
                    None => Json::Null,
                    Some("") => data,
                    Some(f) => data.get(f).cloned().unwrap_or(Json::Null),
                };
                let value = if e.erased { Json::Null } else { value };
                HistoryEntry {
                    version: e.version,
                    op,
                    value,
                    timestamp_ms: e.timestamp_ms,
                    position: e.position,
                    erased: e.erased,
                }
            })
            .collect())
    }

    /// SET, with an optional TTL (from the event's timestamp) and an expected version of the
    /// key's stream: `ExpectedVersion::Exact(v)` is compare-and-set on the version `get`
    /// answered. A set clears an earlier TTL, as in Redis.
    pub fn set(&self, key: &str, value: Json, ttl_ms: Option<u64>, expected: ExpectedVersion) -> Result<Written> {
        validate_key(key)?;
        Error::check_value(|| format!("the value of key {key:?}"), &value)?;
        let op = Op::Set { value: RawJson::from_value(&value), ttl_ms };
        op.validate()?;
        let event = NewEvent::json(op.event_type(), &op.to_data(0));
        let done = self.core.append(&key_stream(key), expected, vec![event])?;
        Ok(Written { version: done.last_version, position: done.last_position })
    }

    /// MSET: sets several keys atomically (all or none), each with an optional TTL.
    pub fn set_many(&self, items: Vec<(String, Json, Option<u64>)>) -> Result<Vec<Written>> {
        check_count("the number of keys in one set", MANY_KEYS_MAX, items.len())?;
        if items.is_empty() {
            return Err(Error::invalid("set_many needs at least one key"));
        }
        let mut by_key: BTreeMap<String, Vec<NewEvent>> = BTreeMap::new();
        let mut order = Vec::with_capacity(items.len());
        for (key, value, ttl_ms) in items {
            validate_key(&key)?;
            Error::check_value(|| format!("the value of key {key:?}"), &value)?;
            let op = Op::Set { value: RawJson::from_value(&value), ttl_ms };
            op.validate()?;
            by_key.entry(key.clone()).or_default().push(NewEvent::json(op.event_type(), &op.to_data(0)));
            order.push(key);
        }
        let keys: Vec<String> = by_key.keys().cloned().collect();
        let done = self.core.append_multi(by_key.into_iter().map(|(k, events)| (key_stream(&k), events)).collect())?;
        let last: BTreeMap<&String, Written> = keys
            .iter()
            .zip(&done)
            .map(|(k, d)| (k, Written { version: d.last_version, position: d.last_position }))
            .collect();
        Ok(order.iter().map(|k| last[k]).collect())
    }

    /// DEL, optionally only if the key's stream is at `expected`. Answers whether a live key
    /// was deleted; deleting an absent key writes nothing.
    pub fn delete(&self, key: &str, expected: Option<StreamVersion>) -> Result<KvWrite<bool>> {
        let out = self.single(key, Op::Delete, expected)?;
        Ok(KvWrite { value: matches!(out.value, Output::Deleted(true)), written: out.written })
    }

    /// INCRBY: adds `delta` to an integer value (a missing key counts as 0) and answers the new
    /// value. `not_an_integer` if the value is not an integer; `integer_overflow` past i64.
    pub fn incr(&self, key: &str, delta: i64) -> Result<KvWrite<i64>> {
        let out = self.single(key, Op::Incr { delta }, None)?;
        let Output::Integer(n) = out.value else { unreachable!("incr answers an integer") };
        Ok(KvWrite { value: n, written: out.written })
    }

    /// APPEND to a string value (a missing key counts as ""); answers the length in bytes.
    pub fn append(&self, key: &str, value: &str) -> Result<KvWrite<u64>> {
        let out = self.single(key, Op::Append { value: value.to_string() }, None)?;
        let Output::Length(n) = out.value else { unreachable!("append answers a length") };
        Ok(KvWrite { value: n, written: out.written })
    }

    /// LPUSH / RPUSH: answers the list's new length.
    pub fn push(&self, key: &str, end: End, values: Vec<Json>) -> Result<KvWrite<u64>> {
        values.iter().try_for_each(|v| Error::check_value(|| format!("a value pushed to key {key:?}"), v))?;
        let out = self.single(key, Op::Push { end, values }, None)?;
        let Output::Length(n) = out.value else { unreachable!("push answers a length") };
        Ok(KvWrite { value: n, written: out.written })
    }

    /// LPOP / RPOP of up to `count` elements (default 1), in pop order. A missing key or an
    /// empty list answers no values and writes nothing.
    pub fn pop(&self, key: &str, end: End, count: Option<u64>) -> Result<KvWrite<Vec<Json>>> {
        let out = self.single(key, Op::Pop { end, count: count.unwrap_or(1) }, None)?;
        let Output::Values(values) = out.value else { unreachable!("pop answers values") };
        Ok(KvWrite { value: values, written: out.written })
    }

    /// SADD: answers how many members were not there before.
    pub fn sadd(&self, key: &str, members: Vec<String>) -> Result<KvWrite<u64>> {
        let out = self.single(key, Op::Sadd { members }, None)?;
        let Output::Added(n) = out.value else { unreachable!("sadd answers a count") };
        Ok(KvWrite { value: n, written: out.written })
    }

    /// SREM: answers how many members were removed.
    pub fn srem(&self, key: &str, members: Vec<String>) -> Result<KvWrite<u64>> {
        let out = self.single(key, Op::Srem { members }, None)?;
        let Output::Removed(n) = out.value else { unreachable!("srem answers a count") };
        Ok(KvWrite { value: n, written: out.written })
    }

    /// A state-dependent operation on one key.
    fn single(&self, key: &str, op: Op, expected: Option<StreamVersion>) -> Result<KvWrite<Output>> {
        validate_key(key)?;
        op.validate()?;
        let stream = key_stream(key);
        let at = now_ms();
        let (output, done) = self.core.write::<KvView, Output>(std::slice::from_ref(&stream), |kv, versions| {
            if let Some(expected) = expected {
                if versions[0] != Some(expected) {
                    return Err(Error::WrongExpectedVersion {
                        stream: stream.clone(),
                        expected: ExpectedVersion::Exact(expected),
                        actual: versions[0],
                    });
                }
            }
            let output = ops::plan(key, self.live(kv, key, at), &op)?;
            if !output.changes() {
                return Ok(Planned::nothing(output));
            }
            let event = NewEvent::json(op.event_type(), &op.to_data(at));
            Ok(Planned { output, appends: vec![(stream.clone(), vec![event])] })
        })?;
        let written = done.first().map(|d| Written { version: d.last_version, position: d.last_position });
        Ok(KvWrite { value: output, written })
    }

    /// A transaction: checks the watched keys' versions (`None`: the key must not exist), then
    /// runs `ops` in order, all or nothing, as one atomic append. A watched key that moved
    /// fails it with `wrong_expected_version` naming the key; an operation that fails (a type
    /// error, say) fails it all, and nothing is written.
    pub fn txn(&self, watch: &[(String, Option<StreamVersion>)], ops: Vec<TxnOp>) -> Result<TxnResult> {
        check_count("the number of operations in one transaction", TXN_OPS_MAX, ops.len())?;
        check_count("the number of watched keys in one transaction", MANY_KEYS_MAX, watch.len())?;
        let mut keys = BTreeSet::new();
        for (key, _) in watch {
            validate_key(key)?;
            keys.insert(key.clone());
        }
        for t in &ops {
            t.check_values()?;
        }
        let planned_ops: Vec<(String, Op)> = ops.iter().map(|t| (t.key().to_string(), t.op())).collect();
        for (key, op) in &planned_ops {
            validate_key(key)?;
            op.validate()?;
            keys.insert(key.clone());
        }
        let keys: Vec<String> = keys.into_iter().collect();
        let streams: Vec<String> = keys.iter().map(|k| key_stream(k)).collect();
        let at = now_ms();
        let (outputs, done) = self.core.write::<KvView, Vec<TxnOutput>>(&streams, |kv, versions| {
            for (key, expected) in watch {
                let actual = self.live(kv, key, at).map(|e| StreamVersion(e.version));
                if actual != *expected {
                    return Err(Error::WatchedKeyChanged { key: key.clone(), expected: *expected, actual });
                }
            }
            // Run the operations on copies of the entries they touch: a later operation sees
            // what an earlier one did.
            let mut scratch: BTreeMap<&str, Option<Entry>> = BTreeMap::new();
            let mut events: BTreeMap<&str, Vec<NewEvent>> = BTreeMap::new();
            let mut outputs = Vec::with_capacity(planned_ops.len());
            for (key, op) in &planned_ops {
                let slot = scratch.entry(key).or_insert_with(|| self.live(kv, key, at).cloned());
                let output = ops::plan(key, slot.as_ref(), op)?;
                let i = keys.binary_search(key).expect("every op key is locked");
                let pending = events.entry(key).or_default();
                // The version this op's event will get: after the stream's current version and
                // the events this transaction already put on it.
                let version = versions[i].map_or(0, |v| v.0 + 1) + pending.len() as u64;
                if output.changes() {
                    ops::mutate(slot, op, &output, at, version);
                    pending.push(NewEvent::json(op.event_type(), &op.to_data(at)));
                }
                outputs.push(match output {
                    Output::Set => TxnOutput::Version(StreamVersion(version)),
                    Output::Deleted(d) => TxnOutput::Deleted(d),
                    Output::Integer(n) => TxnOutput::Value(n),
                    Output::Length(n) => TxnOutput::Length(n),
                    Output::Values(v) => TxnOutput::Values(v),
                    Output::Added(n) => TxnOutput::Added(n),
                    Output::Removed(n) => TxnOutput::Removed(n),
                });
            }
            let appends = events
                .into_iter()
                .filter(|(_, events)| !events.is_empty())
                .map(|(key, events)| (key_stream(key), events))
                .collect();
            Ok(Planned { output: outputs, appends })
        })?;
        Ok(TxnResult { outputs, position: done.iter().map(|d| d.last_position).max() })
    }
}
