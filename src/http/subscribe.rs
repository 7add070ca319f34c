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
    /// `message` (the SSE default, for log events) or `error`.
    event: Option<String>,
    /// The event as JSON text.
    data: String,
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
    _slot: SubscriberSlot,
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
        (status = 200, description = "`text/event-stream`: one SSE event per log event, `id` = position, `data` = the event as JSON. On a failure an SSE event named `error` carries `{\"error\",\"message\"}` and the stream ends.", content_type = "text/event-stream", body = SseFrame),
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
    let filter = Filter { stream: q.stream, stream_prefix: q.stream_prefix, type_prefix: q.type_prefix };
    tracing::debug!(principal = caller.name(), ?from, "subscription opened");
    let feed =
        Feed { sub: state.log.subscribe(from, filter), shutdown: state.shutdown.clone(), finished: false, _slot: slot };
    let keep_alive = KeepAlive::new().interval(state.sse_keep_alive).text(SSE_KEEP_ALIVE_COMMENT);
    Ok(Sse::new(events(feed)).keep_alive(keep_alive))
}

fn events(feed: Feed) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    stream::unfold(feed, |mut feed| async move {
        if feed.finished {
            return None;
        }
        let next = tokio::select! {
            // Shutdown first: a subscriber far behind must not hold the server open.
            biased;
            _ = feed.shutdown.wait_for(|stop| *stop) => return None,
            next = feed.sub.next() => next,
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
