//! Reading a Durable Stream: pages of messages from an offset, long-poll waits and the SSE
//! feed, all over ordinary stream reads and the log's subscriptions (a wait is a subscription
//! to the one stream from the log's end, woken by its head watch: no polling, no sleeps).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use base64::Engine as _;
use futures_util::stream::{self, Stream};
use log_engine::{Direction, Filter, Log, Payload, StartFrom, StreamVersion, Subscription};
use tokio::time::Instant;

use super::offset::Offset;
use super::state::{Config, EVENT_CLOSED, EVENT_CREATED, EVENT_DELETED, EVENT_STATE};
use crate::http::AppState;

/// Most messages one read answers.
pub const READ_PAGE_EVENTS: usize = crate::limits::READ_LIMIT_MAX;
/// Most payload bytes one read answers (one message more at most: a read always progresses).
pub const READ_PAGE_BYTES: usize = 1024 * 1024;
/// An SSE connection is ended by the server after this long (the protocol asks for about a
/// minute, so that caches can collapse clients); the client reconnects from its last offset.
pub const SSE_CONNECTION_MAX: Duration = Duration::from_secs(60);
/// Cursor intervals are counted from this instant (2024-10-09T00:00:00Z, unix ms), as the
/// protocol's section 8.1 says.
pub const CURSOR_EPOCH_MS: u64 = 1_728_432_000_000;
/// Length of one cursor interval.
pub const CURSOR_INTERVAL_MS: u64 = 20_000;
/// Most intervals a cursor jumps ahead of a client's that is not behind (3600 s of jitter).
const CURSOR_JITTER_INTERVALS_MAX: u64 = 3_600_000 / CURSOR_INTERVAL_MS;

/// One page of a stream from an offset.
#[derive(Debug)]
pub struct Page {
    pub messages: Vec<Payload>,
    /// Where the next read starts (past every event this page looked at).
    pub next: u64,
    /// The page reached the stream's last event.
    pub up_to_date: bool,
    /// Up to date, and the stream is closed: nothing will follow.
    pub closed: bool,
}

/// Reads the messages of stream `name` from version `from` (`None`: the first readable one).
/// Lifecycle events of the stream (`ds.created`, `ds.closed`) and erased messages are skipped
/// but move `next` on.
pub fn read_page(log: &Log, name: &str, from: Option<u64>) -> log_engine::Result<Page> {
    let last = log.stream_version(name).map(|v| v.0);
    let events =
        log.read_stream_bounded(name, from.map(StreamVersion), READ_PAGE_EVENTS, READ_PAGE_BYTES, Direction::Forward)?;
    let mut next = from.unwrap_or(0);
    let mut messages = Vec::with_capacity(events.len());
    // Whether the last event read closes the stream (`None`: it is a message).
    let mut last_closes = None;
    for event in events {
        next = event.version.0 + 1;
        // An erased message's payload is gone: it is skipped (its offset still passes).
        if is_message(&event.event_type) && !event.erased {
            messages.push(event.data);
            last_closes = None;
        } else {
            last_closes = Some(closes(&event));
        }
    }
    let up_to_date = last.is_none_or(|last| next > last);
    let closed = up_to_date
        && match (last_closes, last) {
            (Some(closes), _) => closes,
            (None, _) if !messages.is_empty() => false,
            // Nothing read: the stream's last event says whether it is closed.
            (None, Some(last)) => log
                .read_stream_bounded(name, Some(StreamVersion(last)), 1, 0, Direction::Forward)?
                .first()
                .is_some_and(closes),
            (None, None) => false,
        };
    // A stream closed through cairn's own lifecycle endpoint has no `ds.closed` event, and takes
    // no appends either: up to date, it is closed.
    let closed = closed || (up_to_date && log.stream_state(name).is_ok_and(|s| s.closed));
    Ok(Page { messages, next, up_to_date, closed })
}

/// Whether `event`, the last of a stream, leaves it closed: `ds.closed`, or a snapshot of a
/// closed stream (written after its `ds.closed`, by an erasure).
fn closes(event: &log_engine::Event) -> bool {
    event.event_type == EVENT_CLOSED
        || (event.event_type == EVENT_STATE
            && event.data_json().is_some_and(|d| d.get("closed") == Some(&serde_json::Value::Bool(true))))
}

/// Whether an event of this type is a message (the `ds.*` lifecycle and state events are not).
pub fn is_message(event_type: &str) -> bool {
    event_type != EVENT_CREATED
        && event_type != EVENT_CLOSED
        && event_type != EVENT_DELETED
        && event_type != EVENT_STATE
}

/// The version after the stream's last event: where `offset=now` reads from.
pub fn tail(log: &Log, name: &str) -> u64 {
    log.stream_version(name).map_or(0, |v| v.0 + 1)
}

/// A page's body: JSON mode answers a JSON array of the messages, other modes their bytes.
pub fn body(config: &Config, messages: &[Payload]) -> Vec<u8> {
    if config.is_json() {
        let mut out = Vec::from(&b"["[..]);
        for (i, m) in messages.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json_message(&mut out, m);
        }
        out.push(b']');
        out
    } else {
        messages.iter().flat_map(|m| m.as_bytes().iter().copied()).collect()
    }
}

/// One message as JSON text: a JSON payload as stored; a binary payload (written to the stream
/// through cairn's own API) as a JSON string of its base64.
fn json_message(out: &mut Vec<u8>, message: &Payload) {
    match message {
        Payload::Json(text) => out.extend_from_slice(text),
        Payload::Bytes(bytes) => {
            let text = base64::engine::general_purpose::STANDARD.encode(bytes);
            out.extend_from_slice(serde_json::to_string(&text).expect("a string serializes").as_bytes());
        }
    }
}

/// The `Stream-Cursor` of a live answer: the current interval number, or, when the client's
/// cursor is not behind it, one strictly greater (by a jitter of up to an hour), so cursors
/// never go backwards and cached answers cannot cycle.
pub fn cursor(client: Option<&str>, now_ms: u64) -> String {
    let current = now_ms.saturating_sub(CURSOR_EPOCH_MS) / CURSOR_INTERVAL_MS;
    match client.and_then(|c| c.parse::<u64>().ok()) {
        Some(c) if c >= current => {
            // Jitter needs no strong randomness: it spreads clients, it guards nothing.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::from(d.subsec_nanos()));
            c.saturating_add(1 + nanos % CURSOR_JITTER_INTERVALS_MAX).to_string()
        }
        _ => current.to_string(),
    }
}

/// Waits until stream `name` may have something past what was read: a subscription made
/// before the caller's last read, so nothing committed in between is missed. `false` when the
/// deadline passed or the server is shutting down.
pub async fn wait(state: &AppState, sub: &mut Subscription, deadline: Instant) -> bool {
    let mut shutdown = state.shutdown.clone();
    tokio::select! {
        biased;
        _ = shutdown.wait_for(|stop| *stop) => false,
        next = sub.next() => next.is_some_and(|r| r.is_ok()),
        () = tokio::time::sleep_until(deadline) => false,
    }
}

/// A subscription to stream `name` from the log's end.
pub fn watch(log: &Log, name: &str) -> Subscription {
    log.subscribe(StartFrom::End, Filter { stream: Some(name.to_string()), ..Filter::default() })
}

/// The SSE feed of a stream from version `from`: `data` events (text split into `data:` lines,
/// so a payload can never end an event or forge one; base64 for binary streams; JSON mode as
/// one array) each followed by a `control` event with the next offset and a cursor;
/// `upToDate` once caught up; a final control event with `streamClosed` when the stream is
/// closed; and an end after [`SSE_CONNECTION_MAX`] or at shutdown.
pub fn sse(
    state: Arc<AppState>,
    name: String,
    config: Config,
    from: u64,
    cursor_in: Option<String>,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    struct Feed {
        state: Arc<AppState>,
        name: String,
        config: Config,
        from: u64,
        cursor: Option<String>,
        first: bool,
        done: bool,
        deadline: Instant,
        sub: Option<Subscription>,
    }
    let feed = Feed {
        state,
        name,
        config,
        from,
        cursor: cursor_in,
        first: true,
        done: false,
        deadline: Instant::now() + SSE_CONNECTION_MAX,
        sub: None,
    };
    stream::unfold(feed, |mut feed| async move {
        if feed.done {
            return None;
        }
        loop {
            let log = feed.state.log.clone();
            let (name, from) = (feed.name.clone(), feed.from);
            // The stream was deleted, or the log failed: end the feed; the client's next request
            // learns why.
            let Ok(Ok(page)) = tokio::task::spawn_blocking(move || read_page(&log, &name, Some(from))).await else {
                return None;
            };
            let advanced = page.next > feed.from;
            if !page.messages.is_empty() || feed.first || page.closed {
                feed.first = false;
                feed.from = page.next;
                let mut out = String::new();
                if !page.messages.is_empty() {
                    data_event(&mut out, &feed.config, &page.messages);
                }
                let mut control = serde_json::Map::new();
                control.insert("streamNextOffset".into(), Offset(page.next).to_string().into());
                if page.closed {
                    control.insert("streamClosed".into(), true.into());
                    feed.done = true;
                } else {
                    let cursor = cursor(feed.cursor.as_deref(), super::state::now_ms());
                    control.insert("streamCursor".into(), cursor.clone().into());
                    feed.cursor = Some(cursor);
                }
                if page.up_to_date {
                    control.insert("upToDate".into(), true.into());
                }
                out.push_str("event: control\ndata:");
                out.push_str(&serde_json::Value::Object(control).to_string());
                out.push_str("\n\n");
                return Some((Ok(Bytes::from(out)), feed));
            }
            if advanced {
                feed.from = page.next;
                continue;
            }
            match feed.sub.as_mut() {
                // Subscribe, then read again: an append between the read and the subscription
                // is seen by the second read.
                None => feed.sub = Some(watch(&feed.state.log, &feed.name)),
                Some(sub) => {
                    if !wait(&feed.state, sub, feed.deadline).await {
                        return None;
                    }
                }
            }
        }
    })
}

/// Appends one SSE `data` event holding `messages` to `out`.
fn data_event(out: &mut String, config: &Config, messages: &[Payload]) {
    out.push_str("event: data\n");
    let bytes = body(config, messages);
    if config.is_text() {
        let text = String::from_utf8_lossy(&bytes);
        // Every line break (CRLF, CR or LF) starts a new `data:` line, which SSE joins back
        // with LF: a payload cannot end the event or start another.
        let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
        for line in normalized.split('\n') {
            // SSE drops one space after `data:`: a line that starts with one gets a second.
            out.push_str(if line.starts_with(' ') { "data: " } else { "data:" });
            out.push_str(line);
            out.push('\n');
        }
    } else {
        out.push_str("data:");
        out.push_str(&base64::engine::general_purpose::STANDARD.encode(&bytes));
        out.push('\n');
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_epoch_is_the_protocols() {
        assert_eq!(super::super::state::parse_rfc3339("2024-10-09T00:00:00Z"), Some(CURSOR_EPOCH_MS));
    }

    #[test]
    fn cursors_never_go_backwards() {
        let now = CURSOR_EPOCH_MS + 1000 * CURSOR_INTERVAL_MS + 5;
        assert_eq!(cursor(None, now), "1000");
        assert_eq!(cursor(Some("7"), now), "1000");
        for client in ["1000", "5000"] {
            let next: u64 = cursor(Some(client), now).parse().unwrap();
            assert!(next > client.parse().unwrap(), "{client} -> {next}");
        }
    }

    #[test]
    fn sse_text_cannot_forge_events() {
        let config = Config::of("text/plain");
        let mut out = String::new();
        data_event(&mut out, &config, &[Payload::Bytes(b"a\r\n\r\nevent: control\rdata: x\n\nb".to_vec())]);
        assert_eq!(out, "event: data\ndata:a\ndata:\ndata:event: control\ndata:data: x\ndata:\ndata:b\n\n");
        let mut out = String::new();
        data_event(&mut out, &config, &[Payload::Bytes(b" lead".to_vec())]);
        assert_eq!(out, "event: data\ndata:  lead\n\n");
    }
}
