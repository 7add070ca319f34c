//! `GET /v1/subscribe`: the log as Server-Sent Events, catch-up then live.
//!
//! Invariants:
//! - Each SSE event's `id` is the event's log position, and its `data` the event as one line
//!   of JSON. A client that reconnects with `Last-Event-ID: P` resumes at P + 1: no gap, no
//!   duplicate.
//! - A subscriber reads the log by position (the log engine's [`log_engine::Subscription`]):
//!   the server holds no per-subscriber queue. The SSE body is produced only as fast as the
//!   client's connection takes it, so a slow subscriber simply falls behind and later reads
//!   from the segments; its memory is bounded by one read chunk, and it never slows appenders.
//! - At most [`SUBSCRIBERS_MAX`] subscriptions are open; each ends when the server shuts down.
//! - A one-stream subscription (`?stream=S`) of a stream that is closed (or tombstoned) ends
//!   with an SSE event named `end` once it has delivered every event of S it was asked for:
//!   the server learns of the close from the `$lifecycle` stream (a second subscription, to
//!   that stream only, so it decodes nothing else), and ends only when its subscription of S
//!   is caught up past the close, so no event of S is cut off. S takes no event after its
//!   close, so nothing can follow the marker.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures_util::stream::{self, Stream};
use log_engine::{Filter, Position, StartFrom, Subscription};
use serde::Deserialize;
use tokio::sync::watch;
use utoipa::IntoParams;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Caller, LastEventId, Query};
use super::AppState;
use crate::auth::Permission;
use crate::limits::{SSE_KEEP_ALIVE_COMMENT, SUBSCRIBERS_MAX};
use crate::wire::EventJson;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SubscribeQuery {
    /// A position to start at (inclusive), or `end` for only new events (the default).
    /// Ignored when the request carries `Last-Event-ID`.
    from: Option<String>,
    /// Only this stream.
    stream: Option<String>,
    /// Only streams whose names start with this.
    stream_prefix: Option<String>,
    /// Only events whose types start with this.
    type_prefix: Option<String>,
}

/// One Server-Sent Event of `/v1/subscribe`, field by field as it arrives: `id` is the event's
/// log position, `data` the event as one line of JSON (an [`EventJson`]); an `error` event's
/// `data` is `{"error", "message"}`. Only the document uses this type.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code, reason = "describes the wire format in /openapi.json; the SSE encoder writes it")]
pub struct SseFrame {
    /// The event's log position (absent on an `error` event).
    id: Option<String>,
    /// `message` (the SSE default, for log events), `error`, or `end` (a one-stream
    /// subscription's stream is closed and every event of it was delivered; `data` is
    /// `{"stream", "reason", "last_version"}` and the stream of events ends).
    event: Option<String>,
    /// The event as JSON text.
    data: String,
}

/// The `data` of the `end` event that closes a one-stream subscription.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct EndOfStream {
    /// The subscribed stream.
    pub stream: String,
    /// `closed` or `tombstoned`.
    pub reason: &'static str,
    /// The stream's last version (`null` if it never had an event).
    pub last_version: Option<u64>,
}

/// Counts a subscription for as long as it lives.
struct SubscriberSlot(Arc<AppState>);

impl Drop for SubscriberSlot {
    fn drop(&mut self) {
        self.0.metrics.subscribers.dec();
    }
}

struct Feed {
    sub: Subscription,
    shutdown: watch::Receiver<bool>,
    finished: bool,
    /// For a one-stream subscription: what ends it when its stream is closed.
    end: Option<EndWatch>,
    _slot: SubscriberSlot,
}

/// Watches the `$lifecycle` stream for the close (or tombstone) of one stream.
struct EndWatch {
    log: log_engine::Log,
    stream: String,
    lifecycle: Subscription,
    /// Once the stream is closed: every event of it lies before this position, and the marker.
    closed: Option<(u64, EndOfStream)>,
}

impl EndWatch {
    /// Starts watching `stream` from `start`. The lifecycle subscription is made before the
    /// stream's state is read, so a close lands in one or the other.
    fn new(log: &log_engine::Log, stream: &str, start: Position) -> EndWatch {
        let filter = Filter { stream: Some(log_engine::LIFECYCLE_STREAM.to_string()), ..Filter::default() };
        let lifecycle = log.subscribe(StartFrom::Position(start), filter);
        let mut watch = EndWatch { log: log.clone(), stream: stream.to_string(), lifecycle, closed: None };
        watch.check(None);
        watch
    }

    /// Reads the stream's state; if it takes no more events, every one of them lies before
    /// `bound` (the closing event's position), or, closed before the subscription started,
    /// after the stream's last event.
    fn check(&mut self, bound: Option<u64>) {
        if self.closed.is_some() {
            return;
        }
        let Ok(state) = self.log.stream_state(&self.stream) else { return };
        let reason = match (state.tombstoned, state.closed) {
            (true, _) => "tombstoned",
            (false, true) => "closed",
            (false, false) => return,
        };
        let bound = bound.unwrap_or_else(|| {
            // A stream whose events are no longer readable (deleted, expired) has none to wait for.
            let last = state.last_version.and_then(|v| {
                self.log.read_stream(&self.stream, Some(v), 1, log_engine::Direction::Forward).ok()?.pop()
            });
            last.map_or(0, |e| e.position.0 + 1)
        });
        let marker = EndOfStream { stream: self.stream.clone(), reason, last_version: state.last_version.map(|v| v.0) };
        self.closed = Some((bound, marker));
    }

    /// A lifecycle event arrived: is it about this stream?
    fn saw(&mut self, event: &log_engine::Event) {
        let about_it =
            event.data_json().is_some_and(|d| d.get("stream").and_then(|s| s.as_str()) == Some(&self.stream));
        if about_it {
            self.check(Some(event.position.0));
        }
    }
}

/// Follow the log as Server-Sent Events.
#[utoipa::path(
    get,
    path = "/v1/subscribe",
    tag = "log",
    params(
        SubscribeQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this position (as sent in the SSE `id` field)."),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: one SSE event per log event, `id` = position, `data` = the event as JSON. On a failure an SSE event named `error` carries `{\"error\",\"message\"}` and the stream ends. With `stream=S`, once S is closed (or tombstoned) and every event of it was delivered, an SSE event named `end` carries `{\"stream\",\"reason\",\"last_version\"}` and the stream ends.", content_type = "text/event-stream", body = SseFrame),
        (status = 400, description = "Invalid `from` or `Last-Event-ID`.", body = ErrorBody),
        (status = 403, description = "The token lacks `read` on the stream, the prefix, or the whole log.", body = ErrorBody),
        (status = 503, description = "`too_many_subscribers`.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn subscribe(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    last_event_id: Option<LastEventId>,
    Query(q): Query<SubscribeQuery>,
) -> ApiResult<impl IntoResponse> {
    let resource = q.stream.as_deref().or(q.stream_prefix.as_deref()).unwrap_or("");
    caller.require(Permission::Read, resource)?;
    let from = match (last_event_id, q.from.as_deref()) {
        (Some(LastEventId(p)), _) => StartFrom::Position(Position(p.saturating_add(1))),
        (None, None | Some("end")) => StartFrom::End,
        (None, Some(p)) => StartFrom::Position(Position(p.parse().map_err(|_| {
            ApiError::bad_request("invalid_query", format!("from={p:?} is neither a log position nor \"end\""))
        })?)),
    };
    let open = state.metrics.subscribers.inc();
    let slot = SubscriberSlot(state.clone());
    if usize::try_from(open).is_ok_and(|open| open >= SUBSCRIBERS_MAX) {
        return Err(ApiError::unavailable(
            "too_many_subscribers",
            format!("the server already has {SUBSCRIBERS_MAX} open subscriptions (SUBSCRIBERS_MAX); try again later"),
        ));
    }
    // A one-stream subscription resolves `end` itself: the watch of its close starts there too.
    let from = match (from, &q.stream) {
        (StartFrom::End, Some(_)) => StartFrom::Position(Position(state.log.head().map_or(0, |h| h.position.0 + 1))),
        (from, _) => from,
    };
    let end = match (&q.stream, from) {
        (Some(stream), StartFrom::Position(start)) => Some(EndWatch::new(&state.log, stream, start)),
        _ => None,
    };
    let filter = Filter { stream: q.stream, stream_prefix: q.stream_prefix, type_prefix: q.type_prefix };
    tracing::debug!(principal = caller.name(), ?from, "subscription opened");
    let feed = Feed {
        sub: state.log.subscribe(from, filter),
        shutdown: state.shutdown.clone(),
        finished: false,
        end,
        _slot: slot,
    };
    let keep_alive = KeepAlive::new().interval(state.sse_keep_alive).text(SSE_KEEP_ALIVE_COMMENT);
    Ok(Sse::new(events(feed)).keep_alive(keep_alive))
}

/// The `end` event, if the subscription has delivered every event of its closed stream: it has
/// nothing ready and has read past every event of the stream.
fn end_of_stream(feed: &mut Feed) -> Option<SseEvent> {
    let (bound, _) = feed.end.as_ref()?.closed.as_ref()?;
    if feed.sub.position().0 < *bound {
        return None;
    }
    let (_, marker) = feed.end.take()?.closed?;
    feed.finished = true;
    let json = serde_json::to_string(&marker).expect("the marker serializes");
    Some(SseEvent::default().event("end").data(json))
}

/// What woke a subscription up.
enum Woken {
    Next(Option<log_engine::Result<log_engine::Event>>),
    Lifecycle(Option<log_engine::Result<log_engine::Event>>),
    Shutdown,
}

fn events(feed: Feed) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    use futures_util::FutureExt as _;
    stream::unfold(feed, |mut feed| async move {
        if feed.finished {
            return None;
        }
        let next = loop {
            if feed.end.as_ref().is_some_and(|e| e.closed.is_some()) {
                // Closed: deliver what is ready; once nothing is and the subscription has read
                // past every event of the stream, end. Every such event is committed, so the
                // subscription reaches the bound without waiting for anything new; it stops
                // short only while it steps through events its filter drops.
                let before = feed.sub.position();
                if let Some(next) = feed.sub.next().now_or_never() {
                    break next;
                }
                if let Some(end) = end_of_stream(&mut feed) {
                    return Some((Ok(end), feed));
                }
                if feed.sub.position() > before {
                    tokio::task::yield_now().await;
                    continue;
                }
            }
            let Feed { sub, shutdown, end, .. } = &mut feed;
            let lifecycle = async {
                match end.as_mut() {
                    Some(watch) if watch.closed.is_none() => watch.lifecycle.next().await,
                    _ => std::future::pending().await,
                }
            };
            let woken = tokio::select! {
                // Shutdown first: a subscriber far behind must not hold the server open.
                biased;
                _ = shutdown.wait_for(|stop| *stop) => Woken::Shutdown,
                next = sub.next() => Woken::Next(next),
                changed = lifecycle => Woken::Lifecycle(changed),
            };
            match woken {
                Woken::Shutdown => return None,
                Woken::Next(next) => break next,
                Woken::Lifecycle(Some(Ok(event))) => {
                    if let Some(watch) = feed.end.as_mut() {
                        watch.saw(&event);
                    }
                }
                // The watch failing (the log closing) ends only the watch; the subscription
                // reports its own failures.
                Woken::Lifecycle(_) => feed.end = None,
            }
        };
        let event = match next {
            Some(Ok(event)) => {
                let json = serde_json::to_string(&EventJson::from(&event)).expect("events always serialize");
                SseEvent::default().id(event.position.0.to_string()).data(json)
            }
            Some(Err(e)) => {
                feed.finished = true;
                let error = ApiError::from(e);
                let body = serde_json::json!({ "error": error.code, "message": error.message });
                SseEvent::default().event("error").data(body.to_string())
            }
            None => return None,
        };
        Some((Ok(event), feed))
    })
}
