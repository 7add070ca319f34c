//! Key-value values and operations: pure functions shared by the view (when it applies an
//! event) and the store (when it plans a write), so a write answers exactly what the view will
//! then hold.
//!
//! An operation runs in two steps: [`plan`] checks it against the key's live entry and computes
//! its answer without changing anything (type errors happen here, before anything is written);
//! [`mutate`] then changes the entry, given the planned answer. Expiry is decided before either
//! step, by the caller, at the operation's `at` time.
//!
//! Redis semantics where they overlap: a list or set that becomes empty is deleted; INCR on a
//! missing key starts from 0 and keeps the key's TTL otherwise; SET clears the TTL; LPUSH of
//! `a b c` leaves `c b a` at the head; popping a missing key answers nothing.

use std::collections::{BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value as Json;

use crate::error::{Error, Result};

/// Longest TTL accepted: 100 years, in milliseconds.
pub const TTL_MS_MAX: u64 = 100 * 365 * 24 * 60 * 60 * 1000;

/// Which end of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    Left,
    Right,
}

/// A JSON value kept as the text it was written as. Most values are only ever set and read
/// back whole, so the view stores the text and parses it only for an operation that looks
/// inside (increment, append) or a read. Always valid JSON, with no surrounding whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct RawJson(String);

impl RawJson {
    pub(crate) fn from_value(value: &Json) -> RawJson {
        // A `Value` always serializes (its map keys are strings); `Value::Null` is only a
        // stand-in that nothing can reach.
        RawJson(serde_json::to_string(value).unwrap_or_else(|_| "null".to_string()))
    }

    /// Takes a raw value from an event, if a reader can parse it back: a raw value is only
    /// skimmed when its event is decoded, so text a full parse refuses (nested too deep, a
    /// number out of range, a lone surrogate) would otherwise be stored and fail every read.
    pub(crate) fn from_raw(raw: &RawValue) -> std::result::Result<RawJson, String> {
        crate::json::check_readable(raw.get().as_bytes()).map_err(|e| format!("the value cannot be stored: {e}"))?;
        Ok(RawJson(raw.get().to_string()))
    }

    /// Text as it is, unchecked: for tests of values older checkpoints may hold.
    #[cfg(test)]
    pub(crate) fn unchecked(text: &str) -> RawJson {
        RawJson(text.to_string())
    }

    /// The value, parsed. Fails only for text that [`RawJson::from_raw`] would refuse, which a
    /// checkpoint written before that check existed may still hold.
    pub(crate) fn parse(&self) -> std::result::Result<Json, String> {
        serde_json::from_str(&self.0).map_err(|e| format!("the stored value cannot be parsed: {e}"))
    }

    fn is_string(&self) -> bool {
        self.0.starts_with('"')
    }

    /// The value as a string, if it is one.
    fn string(&self) -> Option<String> {
        if !self.is_string() {
            return None;
        }
        serde_json::from_str(&self.0).ok()
    }
}

/// What a key holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Stored {
    /// Any JSON value (Redis's "string" type).
    Value(RawJson),
    List(VecDeque<Json>),
    /// Redis set members are strings, so are ours; kept sorted.
    Set(BTreeSet<String>),
}

impl Stored {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Stored::Value(_) => "value",
            Stored::List(_) => "list",
            Stored::Set(_) => "set",
        }
    }
}

/// One key's state in the view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub value: Stored,
    /// The key stream's version of the last event applied to this key.
    pub version: u64,
    /// Unix ms from which the key reads as absent.
    pub expires_at: Option<u64>,
}

impl Entry {
    /// A stand-in left in a slot while its entry is taken out; allocates nothing.
    pub(crate) fn placeholder() -> Entry {
        Entry { value: Stored::Value(RawJson(String::new())), version: 0, expires_at: None }
    }

    pub(crate) fn alive(&self, now_ms: u64) -> bool {
        self.expires_at.is_none_or(|at| now_ms < at)
    }
}

/// An operation on one key, as recorded in its event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    Set { value: RawJson, ttl_ms: Option<u64> },
    Delete,
    Incr { delta: i64 },
    Append { value: String },
    Push { end: End, values: Vec<Json> },
    Pop { end: End, count: u64 },
    Sadd { members: Vec<String> },
    Srem { members: Vec<String> },
}

impl Op {
    /// The event type that records this operation.
    pub(crate) fn event_type(&self) -> &'static str {
        match self {
            Op::Set { .. } => "kv.set",
            Op::Delete => "kv.delete",
            Op::Incr { .. } => "kv.incr",
            Op::Append { .. } => "kv.append",
            Op::Push { .. } => "kv.push",
            Op::Pop { .. } => "kv.pop",
            Op::Sadd { .. } => "kv.sadd",
            Op::Srem { .. } => "kv.srem",
        }
    }

    fn name(&self) -> &'static str {
        &self.event_type()[3..]
    }

    /// Checks what can be checked without the key's state.
    pub(crate) fn validate(&self) -> Result<()> {
        match self {
            Op::Set { ttl_ms: Some(ttl), .. } if *ttl == 0 || *ttl > TTL_MS_MAX => {
                Err(Error::invalid(format!("ttl_ms {ttl} must be between 1 and {TTL_MS_MAX}")))
            }
            Op::Push { values, .. } if values.is_empty() => Err(Error::invalid("push needs at least one value")),
            Op::Sadd { members } | Op::Srem { members } if members.is_empty() => {
                Err(Error::invalid(format!("{} needs at least one member", self.name())))
            }
            _ => Ok(()),
        }
    }

    /// The event data: the operation's arguments, plus `at` for operations whose outcome
    /// depends on whether the key had expired.
    pub(crate) fn to_data(&self, at: u64) -> Json {
        use serde_json::json;
        match self {
            // The store builds a set's value from a `Value` it checked, so it parses back.
            Op::Set { value, ttl_ms: None } => json!({ "value": value.parse().unwrap_or(Json::Null) }),
            Op::Set { value, ttl_ms: Some(ttl) } => {
                json!({ "value": value.parse().unwrap_or(Json::Null), "ttl_ms": ttl })
            }
            Op::Delete => json!({}),
            Op::Incr { delta } => json!({ "delta": delta, "at": at }),
            Op::Append { value } => json!({ "value": value, "at": at }),
            Op::Push { end, values } => json!({ "end": end, "values": values, "at": at }),
            Op::Pop { end, count } => json!({ "end": end, "count": count, "at": at }),
            Op::Sadd { members } => json!({ "members": members, "at": at }),
            Op::Srem { members } => json!({ "members": members, "at": at }),
        }
    }

    /// Decodes an event of type `kv.*`: `None` for a type this view does not know (skipped),
    /// `Some(Err)` for a known type with a bad payload. Returns the op and its `at`, if any.
    pub(crate) fn decode(event_type: &str, data: &[u8]) -> Option<std::result::Result<(Op, Option<u64>), String>> {
        #[derive(Deserialize)]
        struct SetData<'a> {
            #[serde(borrow)]
            value: &'a RawValue,
            ttl_ms: Option<u64>,
        }
        #[derive(Deserialize)]
        struct IncrData {
            delta: i64,
            at: Option<u64>,
        }
        #[derive(Deserialize)]
        struct AppendData {
            value: String,
            at: Option<u64>,
        }
        #[derive(Deserialize)]
        struct PushData {
            end: End,
            values: Vec<Json>,
            at: Option<u64>,
        }
        #[derive(Deserialize)]
        struct PopData {
            end: End,
            count: u64,
            at: Option<u64>,
        }
        #[derive(Deserialize)]
        struct MembersData {
            members: Vec<String>,
            at: Option<u64>,
        }
        fn parse<'a, T: Deserialize<'a>>(data: &'a [u8]) -> std::result::Result<T, String> {
            serde_json::from_slice(data).map_err(|e| format!("bad payload: {e}"))
        }
        let decoded = match event_type.strip_prefix("kv.")? {
            "set" => parse::<SetData>(data)
                .and_then(|d| Ok((Op::Set { value: RawJson::from_raw(d.value)?, ttl_ms: d.ttl_ms }, None))),
            "delete" => Ok((Op::Delete, None)),
            "incr" => parse::<IncrData>(data).map(|d| (Op::Incr { delta: d.delta }, d.at)),
            "append" => parse::<AppendData>(data).map(|d| (Op::Append { value: d.value }, d.at)),
            "push" => parse::<PushData>(data).map(|d| (Op::Push { end: d.end, values: d.values }, d.at)),
            "pop" => parse::<PopData>(data).map(|d| (Op::Pop { end: d.end, count: d.count }, d.at)),
            "sadd" => parse::<MembersData>(data).map(|d| (Op::Sadd { members: d.members }, d.at)),
            "srem" => parse::<MembersData>(data).map(|d| (Op::Srem { members: d.members }, d.at)),
            _ => return None,
        };
        Some(decoded.and_then(|(op, at)| op.validate().map(|()| (op, at)).map_err(|e| e.to_string())))
    }
}

/// What an operation answers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Output {
    Set,
    Deleted(bool),
    Integer(i64),
    /// A string's length in bytes, or a list's length.
    Length(u64),
    Values(Vec<Json>),
    Added(u64),
    Removed(u64),
}

impl Output {
    /// Whether the operation changes the key (if not, the store writes no event).
    pub(crate) fn changes(&self) -> bool {
        match self {
            Output::Deleted(deleted) => *deleted,
            Output::Values(values) => !values.is_empty(),
            Output::Added(n) | Output::Removed(n) => *n > 0,
            Output::Set | Output::Integer(_) | Output::Length(_) => true,
        }
    }
}

fn wrong_type(key: &str, op: &'static str, expected: &'static str, found: &Stored) -> Error {
    Error::WrongType { key: key.to_string(), op, expected, actual: found.kind() }
}

/// Parses a value as Redis would for INCR: a JSON integer, or a string that is exactly the
/// decimal form of a 64-bit integer (no sign but `-`, no leading zeros or spaces).
fn as_integer(value: &RawJson) -> Option<i64> {
    match value.parse().ok()? {
        Json::Number(n) => n.as_i64(),
        Json::String(s) => {
            let n: i64 = s.parse().ok()?;
            (n.to_string() == s).then_some(n)
        }
        _ => None,
    }
}

/// Checks `op` against the key's live entry (`None`: absent or expired) and computes its answer.
pub(crate) fn plan(key: &str, live: Option<&Entry>, op: &Op) -> Result<Output> {
    let value = live.map(|e| &e.value);
    Ok(match op {
        Op::Set { .. } => Output::Set,
        Op::Delete => Output::Deleted(live.is_some()),
        Op::Incr { delta } => {
            let current = match value {
                None => 0,
                Some(Stored::Value(v)) => as_integer(v).ok_or_else(|| Error::NotAnInteger { key: key.to_string() })?,
                Some(other) => return Err(wrong_type(key, "incr", "value", other)),
            };
            let next = current
                .checked_add(*delta)
                .ok_or_else(|| Error::IntegerOverflow { key: key.to_string(), delta: *delta })?;
            Output::Integer(next)
        }
        Op::Append { value: suffix } => match value {
            None => Output::Length(suffix.len() as u64),
            Some(Stored::Value(v)) => match v.string() {
                Some(s) => Output::Length((s.len() + suffix.len()) as u64),
                None => return Err(wrong_type(key, "append", "string value", &Stored::Value(v.clone()))),
            },
            Some(other) => return Err(wrong_type(key, "append", "string value", other)),
        },
        Op::Push { values, .. } => match value {
            None => Output::Length(values.len() as u64),
            Some(Stored::List(list)) => Output::Length((list.len() + values.len()) as u64),
            Some(other) => return Err(wrong_type(key, "push", "list", other)),
        },
        Op::Pop { end, count } => match value {
            None => Output::Values(Vec::new()),
            Some(Stored::List(list)) => {
                let n = (*count).min(list.len() as u64) as usize;
                let popped = match end {
                    End::Left => list.iter().take(n).cloned().collect(),
                    End::Right => list.iter().rev().take(n).cloned().collect(),
                };
                Output::Values(popped)
            }
            Some(other) => return Err(wrong_type(key, "pop", "list", other)),
        },
        Op::Sadd { members } => match value {
            None => Output::Added(members.iter().collect::<BTreeSet<_>>().len() as u64),
            Some(Stored::Set(set)) => {
                let new: BTreeSet<&String> = members.iter().filter(|m| !set.contains(*m)).collect();
                Output::Added(new.len() as u64)
            }
            Some(other) => return Err(wrong_type(key, "sadd", "set", other)),
        },
        Op::Srem { members } => match value {
            None => Output::Removed(0),
            Some(Stored::Set(set)) => {
                let gone: BTreeSet<&String> = members.iter().filter(|m| set.contains(*m)).collect();
                Output::Removed(gone.len() as u64)
            }
            Some(other) => return Err(wrong_type(key, "srem", "set", other)),
        },
    })
}

/// Applies a planned operation to the key's slot (`None`: absent or expired). `ts_ms` is the
/// event's timestamp (a TTL counts from it); `version` the event's stream version.
pub(crate) fn mutate(slot: &mut Option<Entry>, op: &Op, output: &Output, ts_ms: u64, version: u64) {
    match op {
        Op::Set { value, ttl_ms } => {
            *slot = Some(Entry {
                value: Stored::Value(value.clone()),
                version,
                expires_at: ttl_ms.map(|ttl| ts_ms.saturating_add(ttl)),
            });
            return;
        }
        Op::Delete => {
            *slot = None;
            return;
        }
        _ => {}
    }
    let entry = slot.get_or_insert_with(|| Entry {
        value: match op {
            Op::Push { .. } | Op::Pop { .. } => Stored::List(VecDeque::new()),
            Op::Sadd { .. } | Op::Srem { .. } => Stored::Set(BTreeSet::new()),
            _ => Stored::Value(RawJson("null".to_string())),
        },
        version,
        expires_at: None,
    });
    entry.version = version;
    match (op, &mut entry.value) {
        (Op::Incr { .. }, Stored::Value(v)) => {
            let Output::Integer(n) = output else { unreachable!("incr plans an integer") };
            // Keep the kind: a string counter stays a string, as in Redis.
            *v = if v.is_string() { RawJson::from_value(&Json::String(n.to_string())) } else { RawJson(n.to_string()) };
        }
        (Op::Append { value: suffix }, Stored::Value(v)) => {
            let mut s = v.string().unwrap_or_default();
            s.push_str(suffix);
            *v = RawJson::from_value(&Json::String(s));
        }
        (Op::Push { end, values }, Stored::List(list)) => {
            for value in values {
                match end {
                    End::Left => list.push_front(value.clone()),
                    End::Right => list.push_back(value.clone()),
                }
            }
        }
        (Op::Pop { end, count }, Stored::List(list)) => {
            for _ in 0..(*count).min(list.len() as u64) {
                match end {
                    End::Left => list.pop_front(),
                    End::Right => list.pop_back(),
                };
            }
        }
        (Op::Sadd { members }, Stored::Set(set)) => set.extend(members.iter().cloned()),
        (Op::Srem { members }, Stored::Set(set)) => {
            for m in members {
                set.remove(m);
            }
        }
        (op, value) => unreachable!("{} planned against a {}", op.event_type(), value.kind()),
    }
    let now_empty = match &entry.value {
        Stored::List(list) => list.is_empty(),
        Stored::Set(set) => set.is_empty(),
        Stored::Value(_) => false,
    };
    if now_empty {
        // Redis deletes a list or set when its last element goes.
        *slot = None;
    } else if let (Output::Length(n), Some(e)) = (output, slot.as_ref()) {
        let len = match &e.value {
            Stored::Value(v) => v.string().map_or(0, |s| s.len() as u64),
            Stored::List(list) => list.len() as u64,
            other => unreachable!("a length answered for a {}", other.kind()),
        };
        assert_eq!(len, *n, "the planned length and the applied one differ");
    }
}

/// LRANGE index rules: inclusive `start` and `stop`, negative counts from the end, out-of-range
/// indexes are clamped, and `start` after `stop` gives nothing.
pub(crate) fn list_range(list: &VecDeque<Json>, start: i64, stop: i64) -> Vec<Json> {
    let len = i64::try_from(list.len()).unwrap_or(i64::MAX);
    let start = if start < 0 { (len + start).max(0) } else { start };
    let stop = if stop < 0 { len + stop } else { stop.min(len - 1) };
    if start > stop || start >= len {
        return Vec::new();
    }
    let (Ok(start), Ok(stop)) = (usize::try_from(start), usize::try_from(stop)) else { return Vec::new() };
    list.range(start..=stop).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(slot: &mut Option<Entry>, op: Op) -> Result<Output> {
        let out = plan("k", slot.as_ref(), &op)?;
        mutate(slot, &op, &out, 1000, 7);
        Ok(out)
    }

    fn val(v: Json) -> Stored {
        Stored::Value(RawJson::from_value(&v))
    }

    fn list(values: &[i64]) -> VecDeque<Json> {
        values.iter().map(|v| json!(v)).collect()
    }

    #[test]
    fn incr_follows_redis() {
        let mut slot = None;
        assert_eq!(run(&mut slot, Op::Incr { delta: 5 }).unwrap(), Output::Integer(5), "a missing key counts from 0");
        assert_eq!(run(&mut slot, Op::Incr { delta: -7 }).unwrap(), Output::Integer(-2));
        let mut s = Some(Entry { value: val(json!("41")), version: 0, expires_at: Some(99_999) });
        assert_eq!(run(&mut s, Op::Incr { delta: 1 }).unwrap(), Output::Integer(42));
        assert_eq!(s.as_ref().unwrap().value, val(json!("42")), "a string counter stays a string");
        assert_eq!(s.as_ref().unwrap().expires_at, Some(99_999), "incr keeps the TTL");
        for bad in [json!("4.5"), json!(" 1"), json!("01"), json!(1.5), json!({"a": 1}), json!(u64::MAX)] {
            let mut s = Some(Entry { value: val(bad.clone()), version: 0, expires_at: None });
            let err = run(&mut s, Op::Incr { delta: 1 }).unwrap_err();
            assert_eq!(err.code(), Some("not_an_integer"), "{bad}");
        }
        let mut s = Some(Entry { value: val(json!(i64::MAX)), version: 0, expires_at: None });
        assert_eq!(run(&mut s, Op::Incr { delta: 1 }).unwrap_err().code(), Some("integer_overflow"));
        assert_eq!(s.unwrap().value, val(json!(i64::MAX)), "a failed incr changes nothing");
    }

    #[test]
    fn type_errors_name_the_kinds() {
        let mut s = Some(Entry { value: Stored::List(list(&[1])), version: 0, expires_at: None });
        let err = run(&mut s, Op::Incr { delta: 1 }).unwrap_err();
        assert_eq!(err.code(), Some("wrong_type"));
        assert_eq!(err.to_string(), "key \"k\" holds a list, but incr needs a value");
        assert_eq!(run(&mut s, Op::Sadd { members: vec!["a".into()] }).unwrap_err().code(), Some("wrong_type"));
        assert_eq!(run(&mut s, Op::Append { value: "x".into() }).unwrap_err().code(), Some("wrong_type"));
        let mut v = Some(Entry { value: val(json!(3)), version: 0, expires_at: None });
        assert_eq!(run(&mut v, Op::Append { value: "x".into() }).unwrap_err().code(), Some("wrong_type"));
        assert_eq!(
            run(&mut v, Op::Push { end: End::Left, values: vec![json!(1)] }).unwrap_err().code(),
            Some("wrong_type")
        );
        assert_eq!(run(&mut v, Op::Pop { end: End::Left, count: 1 }).unwrap_err().code(), Some("wrong_type"));
        assert_eq!(run(&mut v, Op::Srem { members: vec!["a".into()] }).unwrap_err().code(), Some("wrong_type"));
    }

    #[test]
    fn lists_push_and_pop_at_both_ends() {
        let mut slot = None;
        let push = |end, v: &[i64]| Op::Push { end, values: v.iter().map(|x| json!(x)).collect() };
        assert_eq!(run(&mut slot, push(End::Left, &[1, 2, 3])).unwrap(), Output::Length(3));
        assert_eq!(slot.as_ref().unwrap().value, Stored::List(list(&[3, 2, 1])), "LPUSH a b c leaves c b a");
        assert_eq!(run(&mut slot, push(End::Right, &[4, 5])).unwrap(), Output::Length(5));
        assert_eq!(
            run(&mut slot, Op::Pop { end: End::Left, count: 2 }).unwrap(),
            Output::Values(vec![json!(3), json!(2)])
        );
        assert_eq!(run(&mut slot, Op::Pop { end: End::Right, count: 1 }).unwrap(), Output::Values(vec![json!(5)]));
        assert_eq!(
            run(&mut slot, Op::Pop { end: End::Right, count: 10 }).unwrap(),
            Output::Values(vec![json!(4), json!(1)])
        );
        assert_eq!(slot, None, "an emptied list is deleted");
        assert_eq!(run(&mut slot, Op::Pop { end: End::Left, count: 1 }).unwrap(), Output::Values(vec![]));
        assert!(!Output::Values(vec![]).changes(), "popping nothing writes nothing");
    }

    #[test]
    fn sets_count_distinct_members() {
        let mut slot = None;
        let members = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(run(&mut slot, Op::Sadd { members: members(&["b", "a", "a"]) }).unwrap(), Output::Added(2));
        assert_eq!(run(&mut slot, Op::Sadd { members: members(&["a", "c"]) }).unwrap(), Output::Added(1));
        assert_eq!(run(&mut slot, Op::Srem { members: members(&["a", "a", "z"]) }).unwrap(), Output::Removed(1));
        assert_eq!(slot.as_ref().unwrap().value, Stored::Set(["b", "c"].iter().map(|s| s.to_string()).collect()));
        assert_eq!(run(&mut slot, Op::Srem { members: members(&["b", "c"]) }).unwrap(), Output::Removed(2));
        assert_eq!(slot, None, "an emptied set is deleted");
    }

    #[test]
    fn append_counts_bytes_and_set_clears_ttl() {
        let mut slot = None;
        assert_eq!(run(&mut slot, Op::Append { value: "hé".into() }).unwrap(), Output::Length(3));
        assert_eq!(run(&mut slot, Op::Append { value: "llo".into() }).unwrap(), Output::Length(6));
        let mut s = Some(Entry { value: val(json!(1)), version: 0, expires_at: Some(5) });
        run(&mut s, Op::Set { value: RawJson::from_value(&json!(2)), ttl_ms: None }).unwrap();
        assert_eq!(s.as_ref().unwrap().expires_at, None, "SET without a TTL clears the TTL");
        run(&mut s, Op::Set { value: RawJson::from_value(&json!(2)), ttl_ms: Some(50) }).unwrap();
        assert_eq!(s.unwrap().expires_at, Some(1050), "the TTL counts from the event's timestamp");
    }

    #[test]
    fn lrange_follows_redis_index_rules() {
        let l = list(&[0, 1, 2, 3, 4]);
        let r = |a, b| list_range(&l, a, b).into_iter().map(|v| v.as_i64().unwrap()).collect::<Vec<_>>();
        assert_eq!(r(0, -1), vec![0, 1, 2, 3, 4]);
        assert_eq!(r(1, 2), vec![1, 2]);
        assert_eq!(r(-2, -1), vec![3, 4]);
        assert_eq!(r(-100, 1), vec![0, 1], "a start before the first element is clamped");
        assert_eq!(r(3, 100), vec![3, 4], "a stop past the end is clamped");
        assert_eq!(r(3, 1), Vec::<i64>::new());
        assert_eq!(r(5, 10), Vec::<i64>::new());
        assert_eq!(r(0, -6), Vec::<i64>::new());
        assert!(list_range(&VecDeque::new(), 0, -1).is_empty());
    }

    #[test]
    fn decode_skips_unknown_types_and_rejects_bad_payloads() {
        assert!(Op::decode("kv.frobnicate", b"{}").is_none());
        assert!(Op::decode("ToolCalled", b"{}").is_none());
        assert!(Op::decode("kv.incr", br#"{"delta": "x"}"#).unwrap().is_err());
        assert!(Op::decode("kv.set", br#"{"value": 1, "ttl_ms": 0}"#).unwrap().is_err());
        let (op, at) = Op::decode("kv.pop", br#"{"end": "left", "count": 2, "at": 9}"#).unwrap().unwrap();
        assert_eq!(op, Op::Pop { end: End::Left, count: 2 });
        assert_eq!(at, Some(9));
        for op in [
            Op::Set { value: RawJson::from_value(&json!({"a": [1]})), ttl_ms: Some(5) },
            Op::Delete,
            Op::Incr { delta: -3 },
            Op::Append { value: "s".into() },
            Op::Push { end: End::Right, values: vec![json!(null)] },
            Op::Pop { end: End::Right, count: 1 },
            Op::Sadd { members: vec!["m".into()] },
            Op::Srem { members: vec!["m".into()] },
        ] {
            let data = serde_json::to_vec(&op.to_data(4)).unwrap();
            let (back, _) = Op::decode(op.event_type(), &data).unwrap().unwrap();
            assert_eq!(back, op);
        }
    }
}
