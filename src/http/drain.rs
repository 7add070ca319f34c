//! Keep-alive after an early answer: what happens to a request body a handler did not read.
//!
//! Handlers answer before reading the body whenever a check fails first (401, 403, 415, a bad
//! stream name, a declared length above [`REQUEST_BODY_MAX`]), and stop reading it as soon as it
//! crosses that bound (413). Left alone, hyper then tries one read of the rest, and if the body
//! is not all there it closes the connection *after* sending a response that did not say so: a
//! client that reuses the kept-alive connection for its next request sees it dropped, and a
//! non-idempotent call cannot safely be retried.
//!
//! This layer chooses per request, from what the request declared:
//! - A body of at most [`DRAIN_MAX`] declared bytes (and no `Expect: 100-continue`) is drained
//!   *after* the answer is sent, by a task bounded by [`DRAIN_WAIT`]; the connection stays open
//!   for the client's next request. Draining rather than closing keeps the common case (a small
//!   append refused for its token) as cheap as a success, and avoids closing a socket with
//!   unread bytes in it, which makes the kernel send a reset that can destroy the answer
//!   before the client reads it.
//! - Anything else — a larger or undeclared (chunked) body, or a client waiting for
//!   `100 Continue` — is answered with `Connection: close`: reading megabytes that will be
//!   thrown away costs more than a new connection, and the client learns from the answer itself
//!   that it must not reuse the connection.
//!
//! Requests without a body (GETs, `Content-Length: 0`) pass through untouched, and a body the
//! handler read to its end costs one uncontended lock per chunk.
//!
//! The same wrapper applies the two bounds every body shares, whoever reads it:
//! - [`BodyLimits::timeout`] (`BODY_READ_TIMEOUT`): the body must arrive within it from the
//!   first read, or the read fails with [`BodyError::Timeout`] (the handler answers 408 and
//!   the connection is closed). A body shorter than its `Content-Length`, or a chunked body
//!   that never ends, cannot hold a connection and its handler for ever.
//! - [`BodyLimits::budget`] (`BODY_BYTES_IN_FLIGHT_MAX`): every chunk read takes its size
//!   times `BODY_MEMORY_FACTOR` (the raw bytes and the parsed request's copy of them) from one
//!   server-wide semaphore of bytes, held until the request is answered; a chunk that does not
//!   fit fails the read with [`BodyError::Overloaded`] (503 `overloaded`, `Retry-After`).
//!   Bytes are taken as they arrive and only once a handler reads them, which it does only
//!   after authentication: a client that declares a large body and sends nothing holds none.
//!
//! Hand-written on purpose: tower-http's body limit and timeout layers refuse or cut a body,
//! but none drains an unread one after the answer or shares one byte budget across requests.

use std::future::Future as _;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream, HttpBody as _};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::{Stream, StreamExt as _};
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::AppState;
#[cfg(doc)]
use crate::limits::REQUEST_BODY_MAX;

/// The bounds every request body shares (see the module documentation).
#[derive(Debug, Clone)]
pub struct BodyLimits {
    /// Memory all in-flight requests may hold for their bodies; one permit per byte, each body
    /// byte charged `BODY_MEMORY_FACTOR`.
    pub budget: Arc<Semaphore>,
    /// The budget's size in bytes (for metrics and messages).
    pub budget_bytes: usize,
    /// Longest a body may take to arrive once its reading starts.
    pub timeout: Duration,
}

impl BodyLimits {
    pub fn new(budget_bytes: usize, timeout: Duration) -> BodyLimits {
        BodyLimits { budget: Arc::new(Semaphore::new(budget_bytes)), budget_bytes, timeout }
    }

    /// Memory charged to in-flight request bodies right now.
    pub fn in_flight(&self) -> usize {
        self.budget_bytes - self.budget.available_permits()
    }
}

/// Why reading a request body failed, when it is one of the shared bounds (carried inside the
/// body's error so that the reader can answer with the fitting status).
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(
        "the server already holds its budget of {budget} bytes for request bodies (server.body_budget, \
         --body-budget; BODY_BYTES_IN_FLIGHT_MAX by default); retry after the Retry-After delay"
    )]
    Overloaded { budget: usize },
    /// This body alone needs more than the whole budget: no retry can succeed.
    #[error(
        "the request body needs more than the server's whole budget of {budget} bytes for request bodies \
         (each body byte counts {factor}); send a smaller body, or raise server.body_budget (--body-budget)",
        factor = crate::limits::BODY_MEMORY_FACTOR
    )]
    BeyondBudget { budget: usize },
    #[error("the request body did not arrive within {} s (BODY_READ_TIMEOUT)", .after.as_secs_f64())]
    Timeout { after: Duration },
}

/// The error of type `T` somewhere in `error`'s source chain, if any: a body's read fails with
/// an `axum::Error` that wraps what cut it (a [`BodyError`], a length limit).
pub fn find_cause<'a, T: std::error::Error + 'static>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        cause = e.source();
    }
    None
}

/// Largest declared body drained after an early answer; a larger one closes the connection.
pub const DRAIN_MAX: u64 = 64 * 1024;

/// Longest a drain waits for the rest of a body before it gives up and drops the connection.
pub const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// The request body, shared between the handler (which may drop its handle early) and this
/// layer (which finishes it).
struct Unread {
    stream: BodyDataStream,
    /// The body reached its end (or failed, which ends the connection anyway).
    ended: bool,
    /// Reading stopped on one of the shared bounds with bytes left unread.
    cut: bool,
    limits: BodyLimits,
    /// The budget this body's chunks hold, released when the request is answered (or drained).
    held: Option<OwnedSemaphorePermit>,
    /// Set at the first read: the body must have ended by then.
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl Unread {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<axum::body::Bytes, axum::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let timeout = self.limits.timeout;
        let deadline = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        let next = self.stream.poll_next_unpin(cx);
        match next {
            Poll::Pending => {
                if deadline.as_mut().poll(cx).is_ready() {
                    (self.ended, self.cut) = (true, true);
                    return Poll::Ready(Some(Err(axum::Error::new(BodyError::Timeout { after: timeout }))));
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(chunk))) => {
                let charge = chunk.len().saturating_mul(crate::limits::BODY_MEMORY_FACTOR);
                let permits = u32::try_from(charge).unwrap_or(u32::MAX);
                match self.limits.budget.clone().try_acquire_many_owned(permits) {
                    Ok(permit) => {
                        match &mut self.held {
                            Some(held) => held.merge(permit),
                            None => self.held = Some(permit),
                        }
                        Poll::Ready(Some(Ok(chunk)))
                    }
                    Err(_) => {
                        (self.ended, self.cut) = (true, true);
                        let budget = self.limits.budget_bytes;
                        let held = self.held.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
                        let error = if held.saturating_add(charge) > budget {
                            BodyError::BeyondBudget { budget }
                        } else {
                            BodyError::Overloaded { budget }
                        };
                        Poll::Ready(Some(Err(axum::Error::new(error))))
                    }
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                self.ended = true;
                next
            }
        }
    }
}

/// The share of the in-flight budget a request's body holds, for a handler that reads a long
/// body in parts (an NDJSON append): [`BodyBudget::release`] gives back what the bytes read so
/// far hold, once the handler no longer keeps them. Requests without a body get an empty one.
#[derive(Clone, Default)]
pub struct BodyBudget(Option<Arc<Mutex<Unread>>>);

impl BodyBudget {
    /// Gives back the budget the body's bytes read so far hold; later chunks are charged anew.
    pub fn release(&self) {
        if let Some(unread) = &self.0 {
            unread.lock().held = None;
        }
    }
}

impl std::fmt::Debug for BodyBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyBudget").field("tracked", &self.0.is_some()).finish()
    }
}

/// A stream over the shared body, handed to the handler in place of the original.
fn shared_stream(shared: Arc<Mutex<Unread>>) -> impl Stream<Item = Result<axum::body::Bytes, axum::Error>> + Send {
    futures_util::stream::poll_fn(move |cx| shared.lock().poll_next(cx))
}

/// The middleware: see the module documentation.
pub async fn finish_body(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let drainable = declared.is_some_and(|n| n <= DRAIN_MAX) && !parts.headers.contains_key(header::EXPECT);
    let shared = Arc::new(Mutex::new(Unread {
        stream: body.into_data_stream(),
        ended: false,
        cut: false,
        limits: state.body_limits.clone(),
        held: None,
        deadline: None,
    }));
    parts.extensions.insert(BodyBudget(Some(shared.clone())));
    let body = Body::from_stream(shared_stream(shared.clone()));
    let mut response = next.run(Request::from_parts(parts, body)).await;
    let (ended, cut) = {
        let unread = shared.lock();
        (unread.ended, unread.cut)
    };
    if cut {
        // The rest of the body will never be read: the client must not reuse the connection.
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if ended {
        return response;
    }
    if drainable {
        // Holding the body keeps hyper reading it into this task rather than giving up on the
        // connection; once it ends, the connection is ready for the next request.
        tokio::spawn(async move {
            let drain = shared_stream(shared).take_while(|chunk| std::future::ready(chunk.is_ok())).count();
            if tokio::time::timeout(DRAIN_WAIT, drain).await.is_err() {
                tracing::debug!("the rest of a refused request's body did not arrive in time; dropping the connection");
            }
        });
    } else {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
