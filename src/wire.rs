//! The JSON shapes of the contract (events, append requests and results, reads, head, verify),
//! shared by the CLI's `-o json` output and the HTTP API, and their conversion to and from the
//! log engine's types.
//!
//! Invariants:
//! - An event's `data` and `metadata` are stored as compact JSON text exactly as the client
//!   wrote them (whitespace outside strings removed, nothing else changed: no number is
//!   re-rounded, no key re-ordered), and returned as that text. Compact text keeps NDJSON and
//!   SSE lines single-line.
//! - Binary payloads travel as `data_b64` (standard base64 with padding) in both directions.
//! - Every conversion error is an [`InputError`] whose message names the event (by index) and
//!   the field.
//!
//! This module does no I/O and checks no permissions.

use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use log_engine::{AppendResult, Event, ExpectedVersion, NewEvent, Payload, StreamVersion, Uuid, VerifyReport};
use serde::de::Deserializer;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// Bad input in a request or on the command line: the message says which field of which event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-22T16:11:51.123Z`.
pub fn timestamp(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Removes JSON whitespace outside strings from text that is already valid JSON.
///
/// Why not re-serialize through `serde_json::Value`: that would round large numbers to `f64`
/// and is slower; this keeps every byte of every token.
pub fn compact_json(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    if !bytes.iter().any(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t')) {
        return bytes.to_vec();
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
            out.push(b);
        } else if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            out.push(b);
        }
    }
    out
}

/// Refuses JSON text cairn could not read back as written (nested deeper than
/// [`projections::JSON_DEPTH_MAX`], a number outside the `f64` range, a lone surrogate): `what`
/// names the field in the message.
pub fn check_payload(what: &str, text: &str) -> Result<(), InputError> {
    projections::check_json(text.as_bytes()).map_err(|e| InputError(format!("{what} cannot be stored: {e}")))
}

/// Numbers of at most this many bytes and without an exponent are finite as an `f64`
/// (below 1e300), so only longer ones, or ones with an exponent, need [`check_payload`].
const NUMBER_LEN_SAFE: usize = 300;

/// The text cairn stores for a payload given as JSON text: `text` compacted (see
/// [`compact_json`]), after the checks of [`check_payload`]; `what` names the field in the
/// message.
///
/// `text` must already be well-formed JSON (a parsed `RawValue`). One read-only pass over it
/// finds whatever could break a rule: a `\u` escape (a lone surrogate is only possible there),
/// a number with an exponent or longer than [`NUMBER_LEN_SAFE`], nesting past
/// [`projections::JSON_DEPTH_MAX`]. Only text holding one of those goes through the full
/// [`check_payload`]; the answer is the same either way, and the common payload is read once.
pub fn stored_json(text: &str, what: impl FnOnce() -> String) -> Result<Vec<u8>, InputError> {
    let bytes = text.as_bytes();
    let (mut depth, mut number_len) = (0usize, 0usize);
    let (mut in_string, mut escaped, mut suspect, mut spaced) = (false, false, false, false);
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
                suspect |= b == b'u';
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        // A number starts with a digit or '-'; true, false and null hold neither.
        if matches!(b, b'0'..=b'9' | b'-') || (number_len > 0 && matches!(b, b'.' | b'+' | b'e' | b'E')) {
            number_len += 1;
            suspect |= matches!(b, b'e' | b'E') || number_len > NUMBER_LEN_SAFE;
            continue;
        }
        number_len = 0;
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                suspect |= depth > projections::JSON_DEPTH_MAX;
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b' ' | b'\n' | b'\r' | b'\t' => spaced = true,
            _ => {}
        }
    }
    if suspect {
        check_payload(&what(), text)?;
    }
    Ok(if spaced { compact_json(text) } else { bytes.to_vec() })
}

/// An expected version as the contract spells it: `"any"`, `"no_stream"`, `"exists"`, or the
/// stream's current last version as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(from = "ExpectedVersionWire")]
pub struct ExpectedVersionJson(pub ExpectedVersion);

impl ExpectedVersionJson {
    /// Parses the command-line spelling (`any`, `no_stream`, `exists` or a number).
    pub fn parse(text: &str) -> Result<ExpectedVersionJson, InputError> {
        Ok(ExpectedVersionJson(match text {
            "any" => ExpectedVersion::Any,
            "no_stream" => ExpectedVersion::NoStream,
            "exists" => ExpectedVersion::Exists,
            n => ExpectedVersion::Exact(StreamVersion(n.parse().map_err(|_| {
                InputError(format!(
                    "expected version {n:?} is not one of any, no_stream, exists or a non-negative integer"
                ))
            })?)),
        }))
    }
}

impl Serialize for ExpectedVersionJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ExpectedVersion::Any => s.serialize_str("any"),
            ExpectedVersion::NoStream => s.serialize_str("no_stream"),
            ExpectedVersion::Exists => s.serialize_str("exists"),
            ExpectedVersion::Exact(v) => s.serialize_u64(v.0),
        }
    }
}

/// The JSON spellings of an expected version, as serde reads them.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "an expected version must be \"any\", \"no_stream\", \"exists\" or a non-negative integer (the stream's last version)"
)]
enum ExpectedVersionWire {
    Named(NamedExpectedVersion),
    Version(u64),
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum NamedExpectedVersion {
    Any,
    NoStream,
    Exists,
}

impl From<ExpectedVersionWire> for ExpectedVersionJson {
    fn from(wire: ExpectedVersionWire) -> ExpectedVersionJson {
        ExpectedVersionJson(match wire {
            ExpectedVersionWire::Named(NamedExpectedVersion::Any) => ExpectedVersion::Any,
            ExpectedVersionWire::Named(NamedExpectedVersion::NoStream) => ExpectedVersion::NoStream,
            ExpectedVersionWire::Named(NamedExpectedVersion::Exists) => ExpectedVersion::Exists,
            ExpectedVersionWire::Version(v) => ExpectedVersion::Exact(StreamVersion(v)),
        })
    }
}

impl utoipa::PartialSchema for ExpectedVersionJson {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["any", "no_stream", "exists"])))
            .item(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)))
            .description(Some(
                "What the stream must look like: \"any\" (default), \"no_stream\", \"exists\", or its current last version.",
            ))
            .into()
    }
}

impl ToSchema for ExpectedVersionJson {}

/// Deserializes a field that is present as its raw JSON text, borrowed from the request, so
/// that an explicit `null` is kept as `null` rather than read as "absent".
fn present_raw<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<&'a RawValue>, D::Error> {
    <&'a RawValue>::deserialize(d).map(Some)
}

/// Deserializes an optional string borrowed from the request when it holds no escape (a
/// base64 payload never does, unless a client escapes its `/` as `\/`), copied otherwise.
fn optional_text<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    struct Text;
    impl<'de> serde::de::Visitor<'de> for Text {
        type Value = Cow<'de, str>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
            Ok(Cow::Borrowed(v))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Cow<'de, str>, E> {
            Ok(Cow::Owned(v.to_owned()))
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Cow<'de, str>, E> {
            Ok(Cow::Owned(v))
        }
    }
    d.deserialize_str(Text).map(Some)
}

/// An event in an append request, borrowing its type and payloads from the request's bytes:
/// a payload goes from the body to the record encoder as the client's text, checked and
/// compacted once, never re-parsed into a `serde_json::Value`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEventJson<'a> {
    /// Client-chosen id; a retry with the same id and content is answered with the original
    /// positions and writes nothing. Generated when absent.
    #[schema(value_type = Option<String>, format = "uuid")]
    pub id: Option<Uuid>,
    #[serde(rename = "type", borrow)]
    #[schema(value_type = String)]
    pub event_type: Cow<'a, str>,
    /// Any JSON value; `{}` when neither `data` nor `data_b64` is given.
    #[serde(default, borrow, deserialize_with = "present_raw")]
    #[schema(value_type = Option<Value>)]
    pub data: Option<&'a RawValue>,
    /// A binary payload, base64 (standard alphabet, padded). Exclusive with `data`.
    #[serde(default, borrow, deserialize_with = "optional_text")]
    #[schema(value_type = Option<String>)]
    pub data_b64: Option<Cow<'a, str>>,
    /// A JSON object.
    #[serde(default, borrow, deserialize_with = "present_raw")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<&'a RawValue>,
}

/// Where an event sits in its request, for error messages: `event 3` (0-based) of a JSON
/// body's `events`, `line 12` (1-based) of an NDJSON body or of standard input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Event(usize),
    Line(u64),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Event(i) => write!(f, "event {i}"),
            Place::Line(n) => write!(f, "line {n}"),
        }
    }
}

impl NewEventJson<'_> {
    /// Converts to the log's type; `place` names the event in error messages.
    pub fn into_new_event(self, place: Place) -> Result<NewEvent, InputError> {
        let data = match (self.data, self.data_b64) {
            (Some(_), Some(_)) => {
                return Err(InputError(format!("{place} has both data and data_b64; give one of them")))
            }
            (Some(raw), None) => Payload::Json(stored_json(raw.get(), || format!("data of {place}"))?),
            (None, Some(b64)) => Payload::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|e| InputError(format!("data_b64 of {place} is not valid base64: {e}")))?,
            ),
            (None, None) => Payload::Json(b"{}".to_vec()),
        };
        let metadata = match self.metadata {
            None => Vec::new(),
            Some(raw) if raw.get().starts_with('{') => stored_json(raw.get(), || format!("metadata of {place}"))?,
            Some(_) => return Err(InputError(format!("metadata of {place} must be a JSON object"))),
        };
        Ok(NewEvent { id: self.id, event_type: self.event_type.into_owned(), metadata, data })
    }
}

/// `POST /v1/streams/{stream}/events`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendRequest<'a> {
    #[serde(default)]
    pub expected_version: ExpectedVersionJson,
    #[serde(borrow)]
    pub events: Vec<NewEventJson<'a>>,
}

/// One stream's part of `POST /v1/append`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamAppendJson<'a> {
    #[serde(borrow)]
    #[schema(value_type = String)]
    pub stream: Cow<'a, str>,
    #[serde(default)]
    pub expected_version: ExpectedVersionJson,
    #[serde(borrow)]
    pub events: Vec<NewEventJson<'a>>,
}

/// `POST /v1/append`: appends to several streams atomically.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MultiAppendRequest<'a> {
    #[serde(borrow)]
    pub appends: Vec<StreamAppendJson<'a>>,
}

/// What an append wrote (or, for an idempotent retry, had written).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct AppendResponse {
    pub stream: String,
    pub first_position: u64,
    pub last_position: u64,
    pub first_version: u64,
    pub last_version: u64,
    /// Chain hash at `last_position`, 64 hex characters.
    pub hash: String,
}

impl From<&AppendResult> for AppendResponse {
    fn from(r: &AppendResult) -> AppendResponse {
        AppendResponse {
            stream: r.stream.to_string(),
            first_position: r.first_position.0,
            last_position: r.last_position.0,
            first_version: r.first_version.0,
            last_version: r.last_version.0,
            hash: r.hash.to_hex(),
        }
    }
}

/// The answer to an NDJSON append: what the whole body wrote, over all its batches.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct NdjsonAppendResponse {
    pub stream: String,
    /// Events written (or, for an idempotent retry, found already written).
    pub count: u64,
    /// Appends the events were committed in, each atomic and durable before the next began.
    pub batches: u64,
    pub first_position: u64,
    pub last_position: u64,
    pub first_version: u64,
    pub last_version: u64,
    /// Chain hash at `last_position`, 64 hex characters.
    pub hash: String,
}

impl NdjsonAppendResponse {
    /// The summary after a first batch.
    pub fn first(batch: &AppendResult, count: u64) -> NdjsonAppendResponse {
        NdjsonAppendResponse {
            stream: batch.stream.to_string(),
            count,
            batches: 1,
            first_position: batch.first_position.0,
            last_position: batch.last_position.0,
            first_version: batch.first_version.0,
            last_version: batch.last_version.0,
            hash: batch.hash.to_hex(),
        }
    }

    /// Adds a later batch of `count` events.
    pub fn add(&mut self, batch: &AppendResult, count: u64) {
        self.count += count;
        self.batches += 1;
        self.last_position = batch.last_position.0;
        self.last_version = batch.last_version.0;
        self.hash = batch.hash.to_hex();
    }
}

/// The 200 answer of `POST /v1/streams/{stream}/events`: an [`AppendResponse`] for a JSON or
/// MessagePack body, an [`NdjsonAppendResponse`] (the same fields plus `count` and `batches`)
/// for an NDJSON one. Documented as `anyOf`: the NDJSON summary also satisfies the first.
#[derive(Debug)]
pub struct AppendAnswer;

impl utoipa::PartialSchema for AppendAnswer {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, Ref};
        AnyOfBuilder::new()
            .item(Ref::from_schema_name("AppendResponse"))
            .item(Ref::from_schema_name("NdjsonAppendResponse"))
            .into()
    }
}

impl ToSchema for AppendAnswer {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        schemas.push(("AppendResponse".into(), <AppendResponse as utoipa::PartialSchema>::schema()));
        schemas.push(("NdjsonAppendResponse".into(), <NdjsonAppendResponse as utoipa::PartialSchema>::schema()));
    }
}

/// The answer to `POST /v1/append`, one result per stream in request order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MultiAppendResponse {
    pub results: Vec<AppendResponse>,
}

/// A committed event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventJson {
    pub position: u64,
    pub stream: String,
    pub version: u64,
    #[schema(value_type = String, format = "uuid")]
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    /// Server time at append, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    /// The metadata object (absent for an erased event).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Box<RawValue>>,
    /// The JSON payload (absent for a binary payload and for an erased event).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub data: Option<Box<RawValue>>,
    /// The binary payload, base64 (absent for a JSON payload and for an erased event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_b64: Option<String>,
    /// Chain hash at this position, 64 hex characters.
    pub hash: String,
    /// `true` when the event's payload was erased: the header above is all that remains, and
    /// `metadata`, `data` and `data_b64` are absent. Absent for an ordinary event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub erased: bool,
}

/// Stored JSON text as a raw value; `fallback` when the bytes are not JSON (which the log's
/// append-time validation rules out).
fn raw_json(bytes: &[u8], fallback: &str) -> Box<RawValue> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|s| !s.is_empty())
        .and_then(|s| RawValue::from_string(s.to_string()).ok())
        .unwrap_or_else(|| RawValue::from_string(fallback.to_string()).expect("the fallback is valid JSON"))
}

impl From<&Event> for EventJson {
    fn from(e: &Event) -> EventJson {
        let (metadata, data, data_b64) = match &e.data {
            // An erased event has no payload to show: only its header remains.
            _ if e.erased => (None, None, None),
            Payload::Json(text) => {
                match std::str::from_utf8(text).ok().and_then(|s| RawValue::from_string(s.into()).ok()) {
                    Some(raw) => (Some(raw_json(&e.metadata, "{}")), Some(raw), None),
                    None => (
                        Some(raw_json(&e.metadata, "{}")),
                        None,
                        Some(base64::engine::general_purpose::STANDARD.encode(text)),
                    ),
                }
            }
            Payload::Bytes(bytes) => {
                (Some(raw_json(&e.metadata, "{}")), None, Some(base64::engine::general_purpose::STANDARD.encode(bytes)))
            }
        };
        EventJson {
            position: e.position.0,
            stream: e.stream.clone(),
            version: e.version.0,
            id: e.id,
            event_type: e.event_type.clone(),
            timestamp: timestamp(e.timestamp_ms),
            metadata,
            data,
            data_b64,
            hash: e.hash.to_hex(),
            erased: e.erased,
        }
    }
}

impl EventJson {
    /// Bytes of payload this event adds to a response, for [`crate::limits::READ_BYTES_MAX`].
    pub fn payload_len(&self) -> usize {
        self.metadata.as_ref().map_or(0, |m| m.get().len())
            + self.data.as_ref().map_or(0, |d| d.get().len())
            + self.data_b64.as_ref().map_or(0, String::len)
    }
}

/// A page of events: `next` is where to continue (a stream version for stream reads, a log
/// position for global reads), `null` when there is nothing more now.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadResponse {
    pub events: Vec<EventJson>,
    pub next: Option<u64>,
}

/// One row of `GET /v1/streams`: the streams a read finds (deleted, expired and tombstoned
/// streams are left out).
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct StreamInfoJson {
    pub stream: String,
    pub last_version: u64,
    /// Events by version (a stream with retention limits may read fewer).
    pub events: u64,
    /// `true` for a closed stream (appends are refused: `409 stream_closed`); absent otherwise,
    /// as `"erased": true` is on an event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closed: bool,
}

/// True if a soft delete (or an expiry) hides every event the stream has: reads answer
/// `stream_deleted` until it is written again.
pub fn is_deleted(state: &log_engine::StreamState) -> bool {
    state.deleted_before.is_some_and(|d| state.last_version.is_none_or(|last| d > last))
}

impl StreamInfoJson {
    /// A row of the listing, closed or not as the stream's state says (`None`: no state).
    pub fn of(info: &log_engine::StreamInfo, state: Option<&log_engine::StreamState>) -> StreamInfoJson {
        StreamInfoJson {
            stream: info.stream.clone(),
            last_version: info.last_version.0,
            events: info.events,
            closed: state.is_some_and(|s| s.closed),
        }
    }
}

/// `GET /v1/head`: the newest event's position and chain hash. For an empty log the position
/// is `null` and the hash is the chain's genesis value.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct HeadJson {
    pub position: Option<u64>,
    pub hash: String,
}

impl HeadJson {
    pub fn of(head: Option<log_engine::Head>) -> HeadJson {
        match head {
            Some(h) => HeadJson { position: Some(h.position.0), hash: h.hash.to_hex() },
            None => HeadJson { position: None, hash: log_engine::ChainHash::genesis().to_hex() },
        }
    }
}

/// The result of a verification (`cairn verify -o json`, `POST /v1/verify`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct VerifyJson {
    pub ok: bool,
    /// Events whose CRC and chain hash were checked.
    pub events: u64,
    pub head_position: Option<u64>,
    pub head_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub first_bad_position: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
}

impl From<&VerifyReport> for VerifyJson {
    fn from(r: &VerifyReport) -> VerifyJson {
        VerifyJson {
            ok: r.ok,
            events: r.events,
            head_position: r.head.map(|h| h.position.0),
            head_hash: r.head.map(|h| h.hash.to_hex()),
            first_bad_position: r.first_bad_position.map(|p| p.0),
            detail: r.detail.clone(),
        }
    }
}

/// A view record as the API shows it: serialized, with the views' `timestamp_ms` fields named
/// `timestamp` (unix milliseconds), at any depth.
pub fn view_json(value: &impl Serialize) -> serde_json::Value {
    fn rename(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(ts) = map.remove("timestamp_ms") {
                    map.insert("timestamp".into(), ts);
                }
                map.values_mut().for_each(rename);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(rename),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(value).expect("view records serialize");
    rename(&mut v);
    v
}

// Read replicas: the leader's segment listing (src/http/replication.rs, src/replica.rs).

/// One segment file of the leader's log and how much of it may be shipped.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SegmentJson {
    /// The segment's id: its first position (also its file name, zero-padded).
    pub id: u64,
    /// Sealed segments never change again (unless a scavenger rewrites them whole).
    pub sealed: bool,
    /// Bytes that may be shipped: the whole file if sealed, else the durable, published prefix.
    pub bytes: u64,
    /// The file's size (its header's capacity).
    pub capacity: u64,
}

/// The leader's segments, oldest first, and its head.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SegmentsJson {
    pub segments: Vec<SegmentJson>,
    /// The last position and its chain hash, as `GET /v1/head` answers them.
    pub head: HeadJson,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An erased event shows its header and `"erased": true`, never a payload field; an
    /// ordinary event has no `erased` field at all.
    #[test]
    fn an_erased_event_reads_as_its_header_only() {
        let mut event = log_engine::Event {
            position: log_engine::Position(41),
            stream: "agent-7".into(),
            version: log_engine::StreamVersion(3),
            id: Uuid::nil(),
            event_type: "ToolCalled".into(),
            timestamp_ms: 0,
            metadata: br#"{"run":1}"#.to_vec(),
            data: Payload::Json(br#"{"secret":1}"#.to_vec()),
            hash: log_engine::ChainHash::genesis(),
            erased: false,
        };
        let plain = serde_json::to_value(EventJson::from(&event)).unwrap();
        assert!(plain.get("erased").is_none() && plain["data"]["secret"] == 1, "{plain}");
        event.erased = true;
        let erased = serde_json::to_value(EventJson::from(&event)).unwrap();
        let mut keys: Vec<&str> = erased.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["erased", "hash", "id", "position", "stream", "timestamp", "type", "version"], "{erased}");
        assert_eq!(erased["erased"], true);
    }

    /// Every bad value gets the same sentence naming the four spellings, wherever it sits.
    #[test]
    fn a_bad_expected_version_says_what_it_may_be() {
        for bad in ["\"latest\"", "-1", "1.5", "null", "[0]"] {
            let message = serde_json::from_str::<ExpectedVersionJson>(bad).unwrap_err().to_string();
            assert!(
                message.starts_with(
                    "an expected version must be \"any\", \"no_stream\", \"exists\" or a non-negative integer"
                ),
                "{bad}: {message}"
            );
        }
    }

    #[test]
    fn compact_json_keeps_strings_and_numbers_exactly() {
        let text = "{ \"a b\" : [1.50, 123456789012345678901234567890 ],\n \"s\": \"x \\\" y\\\\\" }";
        let compact = String::from_utf8(compact_json(text)).unwrap();
        assert_eq!(compact, "{\"a b\":[1.50,123456789012345678901234567890],\"s\":\"x \\\" y\\\\\"}");
        let before: serde_json::Value = serde_json::from_str(text).unwrap();
        let after: serde_json::Value = serde_json::from_str(&compact).unwrap();
        assert_eq!(before, after);
    }

    /// The one-pass check answers exactly as the full check plus compaction does, on text
    /// that needs the full check and on text that does not.
    #[test]
    fn stored_json_answers_as_the_full_check_and_compaction() {
        let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        let long_number = format!("[{}]", "9".repeat(400));
        let cases = [
            r#"{"a": 1, "b": [true, false, null], "c": "x y"}"#,
            r#"{"n": 1.5e3}"#,
            r#"[1e999999]"#,
            r#"[-1E-400]"#,
            r#""\ud800""#,
            r#""\ud83d\ude00 é \" \\u""#,
            r#"{"truee": "1e999", "falsE": -12.5}"#,
            &deep(64),
            &deep(65),
            &long_number,
            "[1,\n 2 ,\t3]",
            "-0",
        ];
        for text in cases {
            let expected = check_payload("data of event 0", text).map(|()| compact_json(text));
            assert_eq!(stored_json(text, || "data of event 0".into()), expected, "{text}");
        }
    }

    #[test]
    fn expected_version_round_trips_every_spelling() {
        for text in ["\"any\"", "\"no_stream\"", "\"exists\"", "7"] {
            let v: ExpectedVersionJson = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&v).unwrap(), text);
        }
        assert!(serde_json::from_str::<ExpectedVersionJson>("-1").is_err());
        assert!(serde_json::from_str::<ExpectedVersionJson>("\"latest\"").is_err());
        assert_eq!(ExpectedVersionJson::parse("3").unwrap().0, ExpectedVersion::Exact(StreamVersion(3)));
        assert!(ExpectedVersionJson::parse("three").is_err());
    }

    #[test]
    fn explicit_null_data_is_kept_and_absent_data_is_an_empty_object() {
        let e: NewEventJson = serde_json::from_str(r#"{"type":"T","data":null}"#).unwrap();
        assert_eq!(e.into_new_event(Place::Event(0)).unwrap().data, Payload::Json(b"null".to_vec()));
        let e: NewEventJson = serde_json::from_str(r#"{"type":"T"}"#).unwrap();
        assert_eq!(e.into_new_event(Place::Event(0)).unwrap().data, Payload::Json(b"{}".to_vec()));
    }

    #[test]
    fn binary_data_round_trips_through_base64() {
        let e: NewEventJson = serde_json::from_str(r#"{"type":"T","data_b64":"AAEC/w=="}"#).unwrap();
        assert_eq!(e.into_new_event(Place::Event(0)).unwrap().data, Payload::Bytes(vec![0, 1, 2, 255]));
    }

    #[test]
    fn bad_events_are_rejected_with_their_index() {
        let both: NewEventJson = serde_json::from_str(r#"{"type":"T","data":1,"data_b64":"AA=="}"#).unwrap();
        assert!(both.into_new_event(Place::Event(3)).unwrap_err().0.contains("event 3"));
        let meta: NewEventJson = serde_json::from_str(r#"{"type":"T","metadata":[1]}"#).unwrap();
        assert!(meta.into_new_event(Place::Event(1)).unwrap_err().0.contains("metadata of event 1"));
        let b64: NewEventJson = serde_json::from_str(r#"{"type":"T","data_b64":"%%%"}"#).unwrap();
        assert!(b64.into_new_event(Place::Event(0)).is_err());
        assert!(serde_json::from_str::<NewEventJson>(r#"{"type":"T","extra":1}"#).is_err());
    }

    #[test]
    fn timestamps_are_rfc3339_with_milliseconds() {
        assert_eq!(timestamp(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
