//! Bulk reload: `cairn export` writes events as NDJSON, `cairn import` (and `append --ndjson`)
//! reads that NDJSON back.
//!
//! One line format serves both directions: the event JSON of `read -o ndjson` (position,
//! stream, version, id, type, timestamp, metadata, data or data_b64, hash). Reading it back
//! keeps what defines an event (its stream, id, type, data and metadata) and ignores what the
//! target store assigns afresh (position, version, timestamp, hash). An erased event has no
//! payload left and is refused.
//!
//! `import` keeps versions: it cuts its input into batches the same way every time (consecutive
//! lines of one stream, at most [`NDJSON_BATCH_EVENTS`] events and about
//! [`NDJSON_BATCH_BYTES`] bytes) and appends each with the exact expected version its first
//! line's `version` implies (`no_stream` for version 0; `any` for a line without a version).
//! The engine recognises a retried batch with an exact expected version at any age, so importing
//! the same file again writes nothing new, however large; a store whose streams are not at
//! those versions refuses the batch (exit 4) and nothing of it is written. `append --ndjson`
//! ignores the lines' versions (its STREAM and --expected-version decide).

use std::io::{BufRead, Read};
use std::path::Path;

use clap::Args;
use log_engine::{ExpectedVersion, Log, NewEvent, Position, StreamVersion};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::error::{CliError, CliResult, Exit};
use crate::limits::{NDJSON_BATCH_BYTES, NDJSON_BATCH_EVENTS, NDJSON_LINE_MAX};
use crate::output::{self, Format, Out};
use crate::wire::{EventJson, InputError, NewEventJson, Place};

use super::open_reader;
use crate::store::open_writer;

/// Events read per step while exporting a stream.
const EXPORT_PAGE_EVENTS: usize = 1_000;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Export this stream (from --from VERSION on).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub stream: Option<String>,
    /// Export the whole log in position order (from --from POSITION on).
    #[arg(long)]
    pub all: bool,
    /// First version of the stream, or first position of the log with --all.
    #[arg(long, value_name = "VERSION|POSITION", default_value_t = 0)]
    pub from: u64,
}

/// One line of NDJSON input: an event as `read -o ndjson` prints it, or as an append request
/// gives it. The fields the target store assigns are accepted and ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    id: Option<log_engine::Uuid>,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default, deserialize_with = "present_raw")]
    data: Option<Box<RawValue>>,
    data_b64: Option<String>,
    #[serde(default, deserialize_with = "present_raw")]
    metadata: Option<Box<RawValue>>,
    stream: Option<String>,
    #[serde(default)]
    erased: bool,
    // Assigned by the store the event is written to: ignored.
    #[allow(dead_code)]
    position: Option<serde::de::IgnoredAny>,
    /// The event's version in its stream: `import` appends with the expected version it implies.
    version: Option<u64>,
    #[allow(dead_code)]
    timestamp: Option<serde::de::IgnoredAny>,
    #[allow(dead_code)]
    hash: Option<serde::de::IgnoredAny>,
}

/// Keeps an explicit `null` as `null` rather than "absent".
fn present_raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// Parses line `line_no` of standard input into its stream (if it names one) and the event to append.
pub(crate) fn parse_line(text: &str, line_no: u64) -> Result<Parsed, InputError> {
    let line: Line = serde_json::from_str(text)
        .map_err(|e| InputError(format!("line {line_no} of standard input is not a valid event: {e}")))?;
    if line.erased {
        return Err(InputError(format!(
            "line {line_no} is an erased event: its payload is gone and cannot be written"
        )));
    }
    let event = NewEventJson {
        id: line.id,
        event_type: line.event_type.into(),
        data: line.data.as_deref(),
        data_b64: line.data_b64.map(Into::into),
        metadata: line.metadata.as_deref(),
    }
    .into_new_event(Place::Event((line_no - 1) as usize))
    .map_err(|e| InputError(format!("line {line_no} of standard input: {e}")))?;
    Ok(Parsed { stream: line.stream, version: line.version, event })
}

/// One parsed line: the event, and the stream and version its line names, if any.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub stream: Option<String>,
    pub version: Option<u64>,
    pub event: NewEvent,
}

pub fn export(dir: &Path, args: ExportArgs) -> CliResult<Exit> {
    // A reader: export runs beside a writer and from a read-only backup.
    let log = open_reader(dir)?;
    let result = export_from(&log, dir, &args);
    log.close();
    result
}

fn export_from(log: &Log, dir: &Path, args: &ExportArgs) -> CliResult<Exit> {
    let mut out = Out::new();
    let bar = output::progress_counter("exporting");
    match &args.stream {
        None => {
            let mut failed = None;
            log.for_each(Position(args.from), u64::MAX, |event| match out.json_line(&EventJson::from(&event)) {
                Ok(()) => {
                    bar.inc(1);
                    true
                }
                Err(e) => {
                    failed = Some(e);
                    false
                }
            })
            .map_err(|e| CliError::log(dir, e))?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Some(stream) => {
            let mut from = StreamVersion(args.from);
            loop {
                let events = log
                    .read_stream(stream, Some(from), EXPORT_PAGE_EVENTS, log_engine::Direction::Forward)
                    .map_err(|e| CliError::log(dir, e))?;
                for event in &events {
                    out.json_line(&EventJson::from(event))?;
                }
                bar.inc(events.len() as u64);
                match events.last() {
                    Some(last) if events.len() == EXPORT_PAGE_EVENTS => from = StreamVersion(last.version.0 + 1),
                    _ => break,
                }
            }
        }
    }
    bar.finish_and_clear();
    out.flush()?;
    Ok(Exit::Ok)
}

#[derive(Debug, Default, Serialize)]
struct ImportSummary {
    /// Lines read (events offered).
    events: u64,
    /// Events the store did not hold yet.
    written: u64,
    /// Events already in the store under the same id (a repeated import): nothing written.
    already_present: u64,
    batches: u64,
    streams: u64,
}

pub fn import(dir: &Path, format: Format) -> CliResult<Exit> {
    let log = open_writer(dir)?;
    let result = import_into(&log, dir, format);
    log.close();
    result
}

fn import_into(log: &Log, dir: &Path, format: Format) -> CliResult<Exit> {
    let bar = output::progress_counter("importing");
    let mut summary = ImportSummary::default();
    let mut streams = std::collections::HashSet::new();
    let mut reader = std::io::BufReader::new(std::io::stdin().lock()).take(u64::MAX);
    let mut batch: Vec<NewEvent> = Vec::new();
    let mut batch_stream = String::new();
    let mut batch_expected = ExpectedVersion::Any;
    let mut batch_bytes = 0usize;
    let mut line = String::new();
    let mut line_no = 0u64;
    let so_far = |s: &ImportSummary| format!("{} events before it were imported ({} new)", s.events, s.written);
    loop {
        line.clear();
        // Bound each line: a runaway input without newlines must not exhaust memory.
        reader.set_limit(NDJSON_LINE_MAX as u64 + 1);
        let done = reader.read_line(&mut line).map_err(|e| CliError::io("read", "standard input", e))? == 0;
        let mut next = None;
        if !done {
            line_no += 1;
            if line.len() > NDJSON_LINE_MAX {
                return Err(InputError(format!(
                    "line {line_no} of standard input is longer than {NDJSON_LINE_MAX} bytes; {}",
                    so_far(&summary)
                ))
                .into());
            }
            let text = line.trim();
            if !text.is_empty() {
                let parsed =
                    parse_line(text, line_no).map_err(|e| InputError(format!("{}; {}", e.0, so_far(&summary))))?;
                let (stream, version, event) = (parsed.stream, parsed.version, parsed.event);
                let stream = stream.ok_or_else(|| {
                    InputError(format!(
                        "line {line_no} names no stream: import needs the \"stream\" field of `cairn export`; \
                         to append lines without it to one stream, use `cairn append STREAM --ndjson`; {}",
                        so_far(&summary)
                    ))
                })?;
                next = Some((stream, version, event));
            }
        }
        let cut = match &next {
            Some((stream, _, _)) => {
                *stream != batch_stream || batch.len() >= NDJSON_BATCH_EVENTS || batch_bytes >= NDJSON_BATCH_BYTES
            }
            None => done,
        };
        if cut && !batch.is_empty() {
            let n = batch.len() as u64;
            let head_before = log.head().map(|h| h.position);
            let r = log
                .append(&batch_stream, batch_expected, std::mem::take(&mut batch))
                .map_err(|e| CliError::log(dir, e))?;
            // A batch whose ids are all written already is answered with its old positions.
            let new = head_before.is_none_or(|h| r.first_position > h);
            if new {
                summary.written += n;
            } else {
                summary.already_present += n;
            }
            summary.events += n;
            summary.batches += 1;
            batch_bytes = 0;
            bar.inc(n);
        }
        if let Some((stream, version, event)) = next {
            if batch.is_empty() {
                // The version the line had is the version it gets: the batch expects the stream
                // to end just before it. That keeps versions equal to the source's and lets a
                // repeated import be recognised at any age, not only within the engine's
                // idempotency window (as a batch with expected version any would be).
                batch_expected = match version {
                    Some(0) => ExpectedVersion::NoStream,
                    Some(v) => ExpectedVersion::Exact(StreamVersion(v - 1)),
                    None => ExpectedVersion::Any,
                };
            }
            batch_bytes += event.metadata.len() + event.data.as_bytes().len() + event.event_type.len();
            if streams.insert(stream.clone()) {
                summary.streams += 1;
            }
            batch_stream = stream;
            batch.push(event);
        }
        if done {
            break;
        }
    }
    bar.finish_and_clear();
    let mut out = Out::new();
    match format {
        Format::Text => out.line(&format!(
            "imported {} events into {} streams in {} batches: {} written, {} already present",
            summary.events, summary.streams, summary.batches, summary.written, summary.already_present
        ))?,
        Format::Json | Format::Ndjson => out.json_line(&summary)?,
    }
    out.flush()?;
    Ok(Exit::Ok)
}
