//! HTTP request decoding: arbitrary bytes through the `cairn` server's real request decoders —
//! bounded body reading (JSON, or MessagePack transcoded to JSON), the append request shapes
//! (`POST /v1/streams/{stream}/events`, `POST /v1/append`) and their conversion to the log's
//! `NewEvent`s, expected versions in both spellings, query strings of the log and subscribe
//! endpoints, `?min_position=`, and `Last-Event-ID`.
//!
//! The first input byte picks the decoder; the rest is its input. Every decoder must answer
//! with a value or a 4xx error (never panic, hang, or allocate beyond libFuzzer's limit), and
//! what it accepts must be what it says: an event's stored JSON `data`/`metadata` is valid JSON
//! equal to what the client sent, metadata is an object, and base64 payloads decode to bytes
//! that re-encode to the same text.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::{header, HeaderMap, HeaderValue, Request};
use base64::Engine as _;
use cairn::http::error::ApiError;
use cairn::http::extract::{parse_json, read_body_or_empty, LastEventId, Query, RequestBody};
use cairn::http::log_api::{ReadAllQuery, ReadStreamQuery, StreamsQuery, VerifyQuery};
use cairn::http::subscribe::SubscribeQuery;
use cairn::http::views::MinPosition;
use cairn::wire::{AppendRequest, ExpectedVersionJson, MultiAppendRequest, NewEventJson, Place};
use libfuzzer_sys::fuzz_target;
use log_engine::Payload;
use serde::de::DeserializeOwned;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("a runtime"))
}

/// A rejection must be a client error with a code and a sentence.
fn assert_client_error(e: &ApiError) {
    assert!(e.status.is_client_error(), "a bad request got {} {}: {}", e.status, e.code, e.message);
    assert!(!e.code.is_empty() && !e.message.is_empty());
}

/// The headers of a body: a `Content-Type` and an optional declared length.
fn body_headers(content_type: &str, declared: Option<u64>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
    if let Some(n) = declared {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    headers
}

/// The bytes delivered in chunks.
fn chunked(body: &[u8]) -> Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body.chunks(97).map(|c| Ok(c.to_vec())).collect();
    Body::from_stream(futures_util::stream::iter(chunks))
}

/// An append body as the append handlers read it: whole (into `bytes`), then parsed into types
/// that borrow from it.
fn read_append<'a, T: serde::Deserialize<'a>>(bytes: &'a mut Option<axum::body::Bytes>, content_type: &str, body: &[u8]) -> Option<T> {
    let headers = body_headers(content_type, None);
    match runtime().block_on(RequestBody::new(&headers, chunked(body)).read_json(true)) {
        Ok(read) => *bytes = Some(read),
        Err(e) => {
            assert_client_error(&e);
            return None;
        }
    }
    let bytes: &'a Option<axum::body::Bytes> = bytes;
    match parse_json::<T>(bytes.as_deref().expect("just read")) {
        Ok(value) => Some(value),
        Err(e) => {
            assert_client_error(&e);
            None
        }
    }
}

/// Converts every event as the append handlers do and checks what the conversion kept.
fn check_events(events: Vec<NewEventJson>) {
    for (i, event) in events.into_iter().enumerate() {
        let sent_data = event.data.as_ref().map(|r| r.get().to_string());
        let sent_b64 = event.data_b64.as_deref().map(str::to_string);
        let sent_metadata = event.metadata.as_ref().map(|r| r.get().to_string());
        let Ok(new) = event.into_new_event(Place::Event(i)) else { continue };
        match (&new.data, sent_data, sent_b64) {
            (Payload::Json(stored), Some(sent), None) => same_json(stored, &sent),
            (Payload::Json(stored), None, None) => assert_eq!(stored, b"{}"),
            (Payload::Bytes(bytes), None, Some(b64)) => {
                assert_eq!(base64::engine::general_purpose::STANDARD.encode(bytes), b64, "base64 round trip")
            }
            (payload, data, b64) => panic!("event {i}: data {data:?}, data_b64 {b64:?} became {payload:?}"),
        }
        match sent_metadata {
            None => assert!(new.metadata.is_empty()),
            Some(sent) => {
                same_json(&new.metadata, &sent);
                let value: serde_json::Value = serde_json::from_slice(&new.metadata).unwrap();
                assert!(value.is_object(), "metadata that is not an object was accepted: {sent}");
            }
        }
    }
}

/// `stored` (compacted) is valid JSON with the same meaning as `sent`.
fn same_json(stored: &[u8], sent: &str) {
    let stored: serde_json::Value = serde_json::from_slice(stored)
        .unwrap_or_else(|e| panic!("stored JSON does not parse ({e}): {:?}", String::from_utf8_lossy(stored)));
    let sent: serde_json::Value = serde_json::from_str(sent).expect("the decoder accepted it");
    assert_eq!(stored, sent, "compaction changed the JSON");
}

/// A query extractor over `/x?QUERY`.
fn query<T: DeserializeOwned + Send>(parts: &mut axum::http::request::Parts) {
    if let Err(e) = runtime().block_on(Query::<T>::from_request_parts(parts, &())) {
        assert_client_error(&e);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 8 {
        0 => {
            let mut bytes = None;
            if let Some(r) = read_append::<AppendRequest>(&mut bytes, "application/json", rest) {
                check_events(r.events);
            }
        }
        1 => {
            let mut bytes = None;
            if let Some(r) = read_append::<MultiAppendRequest>(&mut bytes, "application/json; charset=utf-8", rest) {
                for append in r.appends {
                    check_events(append.events);
                }
            }
        }
        2 => {
            let mut bytes = None;
            if let Some(r) = read_append::<AppendRequest>(&mut bytes, "application/msgpack", rest) {
                check_events(r.events);
            }
        }
        3 => {
            let mut bytes = None;
            if let Some(r) = read_append::<MultiAppendRequest>(&mut bytes, "application/vnd.msgpack", rest) {
                for append in r.appends {
                    check_events(append.events);
                }
            }
        }
        4 => {
            // A declared length that may lie, and the optional-body reader.
            let declared = rest.first().map(|&b| (b as u64) << (b % 40));
            let mut headers = HeaderMap::new();
            if let Some(n) = declared {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            let body = Body::from(rest.get(1..).unwrap_or_default().to_vec());
            if let Err(e) = runtime().block_on(read_body_or_empty(&headers, body)) {
                assert_client_error(&e);
            }
        }
        5 => {
            let Ok(text) = std::str::from_utf8(rest) else { return };
            if let Ok(v) = ExpectedVersionJson::parse(text) {
                // The CLI spelling and the JSON spelling agree.
                let json = serde_json::to_string(&v).unwrap();
                assert_eq!(serde_json::from_str::<ExpectedVersionJson>(&json).unwrap(), v);
            }
            let _ = serde_json::from_str::<ExpectedVersionJson>(text);
        }
        6 => {
            let Ok(text) = std::str::from_utf8(rest) else { return };
            let Ok(request) = Request::builder().uri(format!("/x?{text}")).body(()) else { return };
            let (mut parts, ()) = request.into_parts();
            query::<ReadStreamQuery>(&mut parts);
            query::<ReadAllQuery>(&mut parts);
            query::<StreamsQuery>(&mut parts);
            query::<VerifyQuery>(&mut parts);
            query::<SubscribeQuery>(&mut parts);
            query::<MinPosition>(&mut parts);
        }
        _ => {
            let Ok(value) = HeaderValue::from_bytes(rest) else { return };
            let Ok(request) = Request::builder().uri("/v1/subscribe").header("last-event-id", value).body(()) else {
                return;
            };
            let (mut parts, ()) = request.into_parts();
            match runtime().block_on(<LastEventId as OptionalFromRequestParts<()>>::from_request_parts(&mut parts, &()))
            {
                Ok(Some(LastEventId(p))) => {
                    assert_eq!(std::str::from_utf8(rest).unwrap().trim().parse::<u64>().unwrap(), p)
                }
                Ok(None) => unreachable!("the header is present"),
                Err(e) => assert_client_error(&e),
            }
        }
    }
});
