//! The input format of the `view_apply` fuzz target, shared with `tests/fuzz_corpus.rs` (which
//! writes and checks its seeds): a sequence of events for the views, each
//!
//! ```text
//! stream   u8 len, bytes   (empty: "kv:k" — the key most attacks need)
//! type     u8 len, bytes
//! data     u16le len, bytes; a length with the top bit set means binary data
//! metadata u8 len, bytes
//! ```
//!
//! Names and types are taken as UTF-8 (lossily); the payloads as the raw bytes a log could hold
//! (the log checks neither). Positions, stream versions and timestamps are assigned in order,
//! as the log would. A truncated record ends the input.

// Each includer uses part: the fuzz target decodes, tests/fuzz_corpus.rs also encodes.
#![allow(dead_code)]

use std::collections::HashMap;

use log_engine::{ChainHash, Event, Payload, Position, StreamVersion, Uuid};

/// The stream an empty stream field stands for.
pub const DEFAULT_STREAM: &str = "kv:k";
/// Most events decoded from one input: bounds the work of one run.
pub const EVENTS_MAX: usize = 256;
/// Set in a data length: the data is binary, not JSON.
const BINARY: u16 = 0x8000;

/// One event as the fuzzer describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub stream: String,
    pub event_type: String,
    pub data: Vec<u8>,
    pub binary: bool,
    pub metadata: Vec<u8>,
}

/// Encodes events in the input format (for seeds).
pub fn encode(specs: &[Spec]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in specs {
        let stream = if s.stream == DEFAULT_STREAM { "" } else { s.stream.as_str() };
        out.push(stream.len().min(255) as u8);
        out.extend_from_slice(&stream.as_bytes()[..stream.len().min(255)]);
        out.push(s.event_type.len().min(255) as u8);
        out.extend_from_slice(&s.event_type.as_bytes()[..s.event_type.len().min(255)]);
        let len = s.data.len().min(0x7fff);
        out.extend_from_slice(&(len as u16 | if s.binary { BINARY } else { 0 }).to_le_bytes());
        out.extend_from_slice(&s.data[..len]);
        out.push(s.metadata.len().min(255) as u8);
        out.extend_from_slice(&s.metadata[..s.metadata.len().min(255)]);
    }
    out
}

/// Decodes an input into events with the positions, versions and timestamps a log would give.
pub fn decode(mut input: &[u8]) -> Vec<Event> {
    fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if input.len() < n {
            return None;
        }
        let (head, rest) = input.split_at(n);
        *input = rest;
        Some(head)
    }
    fn record(input: &mut &[u8]) -> Option<Spec> {
        let n = take(input, 1)?[0] as usize;
        let stream = String::from_utf8_lossy(take(input, n)?).into_owned();
        let n = take(input, 1)?[0] as usize;
        let event_type = String::from_utf8_lossy(take(input, n)?).into_owned();
        let len = u16::from_le_bytes(take(input, 2)?.try_into().ok()?);
        let data = take(input, (len & !BINARY) as usize)?.to_vec();
        let n = take(input, 1)?[0] as usize;
        let metadata = take(input, n)?.to_vec();
        let stream = if stream.is_empty() { DEFAULT_STREAM.to_string() } else { stream };
        Some(Spec { stream, event_type, data, binary: len & BINARY != 0, metadata })
    }
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut events = Vec::new();
    while events.len() < EVENTS_MAX {
        let Some(spec) = record(&mut input) else { break };
        let version = versions.entry(spec.stream.clone()).or_insert(0);
        let position = events.len() as u64;
        events.push(Event {
            position: Position(position),
            stream: spec.stream,
            version: StreamVersion(*version),
            id: Uuid::from_u128(u128::from(position) + 1),
            event_type: spec.event_type,
            // Time moves on by a second per event, so TTLs and heartbeats expire within a run.
            timestamp_ms: 1_700_000_000_000 + position * 1_000,
            metadata: spec.metadata,
            data: if spec.binary { Payload::Bytes(spec.data) } else { Payload::Json(spec.data) },
            hash: ChainHash::genesis(),
            erased: false,
        });
        *version += 1;
    }
    events
}
