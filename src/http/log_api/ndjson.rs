//! NDJSON appends: `POST /v1/streams/{stream}/events` with an `application/x-ndjson` body, one
//! event object per line (the shape of an element of a JSON append's `events`), appended in
//! batches as the body arrives and answered once with a summary.
//!
//! What a client can rely on:
//! - Lines are cut into batches of at most [`NDJSON_BATCH_EVENTS`] events or about
//!   [`NDJSON_BATCH_BYTES`] bytes; each batch is one atomic append with expected version any,
//!   durable (fdatasync) before the next one is handed to the log, so batches land in line
//!   order and a refused batch is the last one the request touches.
//! - A request that fails (a line that is not an event or breaks a rule, a line or body past
//!   its bound, a body that breaks off, a batch the log refuses) writes nothing of the batch
//!   that holds the failure and nothing after it; every batch before it is durable. The error
//!   answer says so in its message and carries `line` (the failing line, or the first line of
//!   the refused batch) and `durable` (the summary of what was written, `null` if nothing).
//!   Lines that carry `id`s can be resent whole: the durable batches answer as idempotent
//!   retries.
//! - While one batch commits, the next is read and parsed: one batch in flight, so the server
//!   holds about two batches of a body however long it is; the body's share of the in-flight
//!   budget is given back as each batch becomes durable.
//! - A body to a Durable Stream (`ds:`) takes the stream's protocol slot per batch, from its
//!   hand-over until it is durable (`durable::lock_outside`), never while the body is read: a
//!   slow client delays the protocol's requests to the stream by one commit at most, and each
//!   batch counts for them as soon as it is durable.
//!
//! Bounds: [`NDJSON_LINE_MAX`] bytes per line, [`NDJSON_EVENTS_MAX`] events and
//! [`NDJSON_BODY_MAX`] bytes per request; the body timeout (`--body-timeout`) bounds the whole
//! body as for any request.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use futures_util::StreamExt as _;
use log_engine::{AppendResult, ExpectedVersion, NewEvent, StreamAppend, StreamName};

use super::convert_event;
use crate::http::drain::BodyBudget;
use crate::http::durable;
use crate::http::error::ApiError;
use crate::http::extract::{Caller, RequestBody};
use crate::http::AppState;
use crate::limits::{NDJSON_BATCH_BYTES, NDJSON_BATCH_EVENTS, NDJSON_BODY_MAX, NDJSON_EVENTS_MAX, NDJSON_LINE_MAX};
use crate::wire::{NdjsonAppendResponse, NewEventJson, Place};

/// Appends an NDJSON body to `stream`; see the module documentation.
pub(super) async fn append(
    state: &AppState,
    caller: &Caller,
    stream: StreamName,
    body: RequestBody,
) -> Result<NdjsonAppendResponse, ApiError> {
    if let Some(n) = body.declared_length().filter(|&n| n > NDJSON_BODY_MAX as u64) {
        return Err(body_too_large(&n));
    }
    let mut run = Run {
        state,
        caller,
        stream,
        written: None,
        in_flight: None,
        batch: Batch::default(),
        lines: 0,
        events: 0,
        bytes: 0,
    };
    let (chunks, budget) = body.into_stream();
    let read = run.read(chunks, &budget).await;
    let finished = match read {
        Ok(()) => run.finish(&budget).await,
        Err(failure) => Err(failure),
    };
    match finished {
        Ok(summary) => Ok(summary),
        Err(failure) => Err(run.fail(failure).await),
    }
}

/// The append of one batch, handed to the log and not yet answered.
type Commit<'a> = Pin<Box<dyn Future<Output = Result<Vec<AppendResult>, ApiError>> + Send + 'a>>;

/// Lines parsed and not yet handed to the log.
#[derive(Default)]
struct Batch {
    events: Vec<NewEvent>,
    bytes: usize,
    first_line: u64,
}

/// A batch the log is committing.
struct InFlight<'a> {
    commit: Commit<'a>,
    count: u64,
    first_line: u64,
}

/// Why the request stops: the answer, and the first line it concerns.
struct Failure {
    error: Box<ApiError>,
    line: u64,
}

/// One NDJSON request in progress.
struct Run<'a> {
    state: &'a AppState,
    caller: &'a Caller,
    stream: StreamName,
    /// What the durable batches wrote.
    written: Option<NdjsonAppendResponse>,
    in_flight: Option<InFlight<'a>>,
    batch: Batch,
    /// Lines seen so far (blank ones included: line numbers are the body's).
    lines: u64,
    /// Events parsed so far.
    events: u64,
    /// Body bytes read so far.
    bytes: usize,
}

impl<'a> Run<'a> {
    /// Reads the body to its end, parsing each line and handing over each full batch.
    async fn read(
        &mut self,
        mut chunks: impl futures_util::Stream<Item = Result<axum::body::Bytes, ApiError>> + Unpin,
        budget: &BodyBudget,
    ) -> Result<(), Failure> {
        // The start of a line that continues in the next chunk.
        let mut partial: Vec<u8> = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|error| Failure { error: Box::new(error), line: self.lines + 1 })?;
            self.bytes += chunk.len();
            if self.bytes > NDJSON_BODY_MAX {
                return Err(Failure {
                    error: Box::new(body_too_large(&format!("more than {NDJSON_BODY_MAX}"))),
                    line: self.lines + 1,
                });
            }
            let mut rest = &chunk[..];
            while let Some(end) = rest.iter().position(|&b| b == b'\n') {
                if partial.is_empty() {
                    self.line(&rest[..end], budget).await?;
                } else {
                    partial.extend_from_slice(&rest[..end]);
                    let line = std::mem::take(&mut partial);
                    self.line(&line, budget).await?;
                }
                rest = &rest[end + 1..];
            }
            partial.extend_from_slice(rest);
            if partial.len() > NDJSON_LINE_MAX {
                return Err(self.line_too_long(partial.len()));
            }
        }
        // The last line needs no newline.
        if !partial.is_empty() {
            self.line(&partial, budget).await?;
        }
        Ok(())
    }

    /// One line: parsed into the batch, which is handed over once full. Blank lines are skipped.
    async fn line(&mut self, text: &[u8], budget: &BodyBudget) -> Result<(), Failure> {
        if text.len() > NDJSON_LINE_MAX {
            return Err(self.line_too_long(text.len()));
        }
        self.lines += 1;
        let line = self.lines;
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        self.events += 1;
        if self.events > NDJSON_EVENTS_MAX as u64 {
            let error = ApiError::too_large(
                "too_many_events",
                format!(
                    "line {line} is event number {} of the NDJSON body, above the limit of {NDJSON_EVENTS_MAX} (NDJSON_EVENTS_MAX)",
                    self.events
                ),
            );
            return Err(Failure { error: Box::new(error), line });
        }
        let fail = |error| Failure { error: Box::new(error), line };
        let event: NewEventJson<'_> = serde_json::from_slice(text).map_err(|e| {
            fail(ApiError::bad_request("invalid_body", format!("line {line} of the NDJSON body is not an event: {e}")))
        })?;
        let event = convert_event(self.caller, self.stream.as_str(), event, Place::Line(line)).map_err(fail)?;
        if self.batch.events.is_empty() {
            self.batch.first_line = line;
        }
        self.batch.bytes += event.event_type.len() + event.metadata.len() + event.data.as_bytes().len();
        self.batch.events.push(event);
        if self.batch.events.len() >= NDJSON_BATCH_EVENTS || self.batch.bytes >= NDJSON_BATCH_BYTES {
            self.hand_over(budget).await?;
        }
        Ok(())
    }

    /// Waits for the batch in flight, then hands the current batch to the log and returns as
    /// soon as the log has taken it, so the next batch is read while this one commits.
    async fn hand_over(&mut self, budget: &BodyBudget) -> Result<(), Failure> {
        self.settle(budget).await?;
        let batch = std::mem::take(&mut self.batch);
        let count = batch.events.len() as u64;
        let append = StreamAppend { stream: self.stream.clone(), expected: ExpectedVersion::Any, events: batch.events };
        let lock = durable::lock_outside(self.state, &[self.stream.as_str()]).await;
        let state = self.state;
        let mut commit: Commit<'a> = if lock.is_empty() {
            Box::pin(async move { state.log.append_multi_async(vec![append]).await.map_err(ApiError::from) })
        } else {
            // The commit holds the Durable Stream's slot, in a task of its own: a client that
            // goes away cannot release the slot before the batch has committed or failed.
            let log = state.log.clone();
            let task = tokio::spawn(async move {
                let result = log.append_multi_async(vec![append]).await;
                drop(lock);
                result
            });
            Box::pin(async move {
                task.await
                    .map_err(|e| ApiError::internal(format!("an NDJSON batch to a durable stream failed: {e}")))?
                    .map_err(ApiError::from)
            })
        };
        // The first poll hands the batch to the writer (or refuses it at once).
        match std::future::poll_fn(|cx| Poll::Ready(commit.as_mut().poll(cx))).await {
            Poll::Ready(result) => self.record(result, count, batch.first_line, budget),
            Poll::Pending => {
                self.in_flight = Some(InFlight { commit, count, first_line: batch.first_line });
                Ok(())
            }
        }
    }

    /// Waits for the batch in flight, if any, and counts it.
    async fn settle(&mut self, budget: &BodyBudget) -> Result<(), Failure> {
        match self.in_flight.take() {
            None => Ok(()),
            Some(flight) => {
                let result = flight.commit.await;
                self.record(result, flight.count, flight.first_line, budget)
            }
        }
    }

    /// Counts a batch the log answered; a refusal stops the request.
    fn record(
        &mut self,
        result: Result<Vec<AppendResult>, ApiError>,
        count: u64,
        first_line: u64,
        budget: &BodyBudget,
    ) -> Result<(), Failure> {
        let batch = match result {
            Ok(mut results) => results.pop().expect("one result per stream"),
            Err(e) => return Err(Failure { error: Box::new(e), line: first_line }),
        };
        match &mut self.written {
            None => self.written = Some(NdjsonAppendResponse::first(&batch, count)),
            Some(written) => written.add(&batch, count),
        }
        self.state.metrics.record_append(count as usize);
        // Durable: the bytes read so far no longer need their share of the budget.
        budget.release();
        Ok(())
    }

    /// After the body's end: hands over the last batch and waits for it.
    async fn finish(&mut self, budget: &BodyBudget) -> Result<NdjsonAppendResponse, Failure> {
        if !self.batch.events.is_empty() {
            self.hand_over(budget).await?;
        }
        self.settle(budget).await?;
        self.written.clone().ok_or_else(|| Failure {
            error: Box::new(ApiError::bad_request(
                "invalid_input",
                format!("the NDJSON body for stream {} holds no events (one event object per line)", self.stream),
            )),
            line: self.lines,
        })
    }

    /// The answer to a failed request: the failure, or the in-flight batch's refusal if that
    /// comes first in the body, with what is durable.
    async fn fail(mut self, failure: Failure) -> ApiError {
        let failure = match self.in_flight.take() {
            Some(flight) => match flight.commit.await {
                Ok(mut results) => {
                    let batch = results.pop().expect("one result per stream");
                    match &mut self.written {
                        None => self.written = Some(NdjsonAppendResponse::first(&batch, flight.count)),
                        Some(written) => written.add(&batch, flight.count),
                    }
                    self.state.metrics.record_append(flight.count as usize);
                    failure
                }
                Err(e) => Failure { error: Box::new(e), line: flight.first_line },
            },
            None => failure,
        };
        // Nothing from the failing batch is written: it starts at its first line (or at the
        // failing line when that would have started one).
        let unwritten_from = if self.batch.events.is_empty() || failure.line < self.batch.first_line {
            failure.line
        } else {
            self.batch.first_line
        };
        let mut error = *failure.error;
        let durable = match &self.written {
            None => "nothing of this request was written".to_string(),
            Some(w) => format!(
                "the {} events before line {unwritten_from} are durable (positions {} to {}, versions {} to {}); \
                 nothing from line {unwritten_from} on was written",
                w.count, w.first_position, w.last_position, w.first_version, w.last_version
            ),
        };
        error.message = format!("{} ({durable})", error.message);
        error.with("line", failure.line).with("durable", &self.written)
    }

    fn line_too_long(&self, len: usize) -> Failure {
        let line = self.lines + 1;
        let error = ApiError::too_large(
            "event_too_large",
            format!("line {line} of the NDJSON body is {len} bytes or more, above the limit of {NDJSON_LINE_MAX} (NDJSON_LINE_MAX)"),
        );
        Failure { error: Box::new(error), line }
    }
}

fn body_too_large(n: &dyn std::fmt::Display) -> ApiError {
    ApiError::too_large(
        "body_too_large",
        format!("the NDJSON body is {n} bytes, above the limit of {NDJSON_BODY_MAX} (NDJSON_BODY_MAX)"),
    )
}
