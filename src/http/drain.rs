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

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream, HttpBody as _};
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::{Stream, StreamExt as _};
use parking_lot::Mutex;

#[cfg(doc)]
use crate::limits::REQUEST_BODY_MAX;

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
}

impl Unread {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<axum::body::Bytes, axum::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let next = self.stream.poll_next_unpin(cx);
        if matches!(next, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.ended = true;
        }
        next
    }
}

/// A stream over the shared body, handed to the handler in place of the original.
fn shared_stream(shared: Arc<Mutex<Unread>>) -> impl Stream<Item = Result<axum::body::Bytes, axum::Error>> + Send {
    futures_util::stream::poll_fn(move |cx| shared.lock().poll_next(cx))
}

/// The middleware: see the module documentation.
pub async fn finish_body(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let drainable = declared.is_some_and(|n| n <= DRAIN_MAX) && !parts.headers.contains_key(header::EXPECT);
    let shared = Arc::new(Mutex::new(Unread { stream: body.into_data_stream(), ended: false }));
    let body = Body::from_stream(shared_stream(shared.clone()));
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if shared.lock().ended {
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
