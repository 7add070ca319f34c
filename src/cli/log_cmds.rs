//! The log-level commands: append, read, read-all, tail, streams, head, verify, stats.
//!
//! Each opens the data directory, does one thing with the log engine's API, prints in the chosen
//! format, and closes the log (so that an append is durable and the lock released before the
//! process exits). Output shapes are those of [`crate::wire`], the same as the HTTP API's.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use clap::Args;
use log_engine::{Direction, Filter, Log, NewEvent, Payload, Position, StartFrom, StreamName, StreamVersion, Uuid};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::{CliError, CliResult, Exit};
use crate::limits::{NDJSON_BATCH_BYTES, NDJSON_BATCH_EVENTS, NDJSON_LINE_MAX};
use crate::output::{self, Format, Out};
use crate::wire::{
    self, AppendResponse, EventJson, ExpectedVersionJson, HeadJson, InputError, StreamInfoJson, VerifyJson,
};

use super::open_reader;
use crate::store::{open_writer, StoreError};

/// Events read per step when paging through a stream or the log.
const PAGE_EVENTS: usize = 1_000;

/// How often `cairn tail` looks for what another process appended to the directory: the most
/// a new event waits before it is printed. Looking costs a directory listing and two small
/// reads when nothing changed.
pub(crate) const TAIL_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Debug, Args)]
pub struct AppendArgs {
    /// The stream (e.g. agent-7). Names starting with `$` are reserved.
    pub stream: String,

    /// The event type (e.g. ToolCalled).
    #[arg(long = "type", value_name = "T", required_unless_present = "ndjson")]
    pub event_type: Option<String>,

    /// The event's data as JSON (default {}).
    #[arg(long, value_name = "JSON", conflicts_with_all = ["data_file", "ndjson", "data_deprecated"])]
    pub payload: Option<String>,

    /// The old spelling of --payload: `--data` after `append` arrives here (see
    /// `append_data_as_payload`), with a deprecation warning.
    #[arg(long, value_name = "JSON", hide = true, conflicts_with_all = ["data_file", "ndjson"])]
    pub data_deprecated: Option<String>,

    /// Read the event's data from a file (JSON unless --binary).
    #[arg(long, visible_alias = "payload-file", value_name = "FILE", conflicts_with = "ndjson")]
    pub data_file: Option<PathBuf>,

    /// Store --data-file as opaque bytes rather than JSON.
    #[arg(long, requires = "data_file")]
    pub binary: bool,

    /// The event's metadata, a JSON object.
    #[arg(long, value_name = "JSON", conflicts_with = "ndjson")]
    pub metadata: Option<String>,

    /// The event's id, for idempotent retries (default: a new random id).
    #[arg(long, value_name = "UUID", conflicts_with = "ndjson")]
    pub id: Option<Uuid>,

    /// any, no_stream, exists, or the stream's current last version. With --ndjson it applies
    /// to the first batch.
    #[arg(long, value_name = "any|no_stream|exists|N", default_value = "any")]
    pub expected_version: String,

    /// Read events from stdin, one JSON object per line: {"type", "data" or "data_b64",
    /// "metadata"?, "id"?}, or lines of `read -o ndjson` / `export` (their position, version,
    /// timestamp, hash and stream are ignored); append them in batches.
    #[arg(long)]
    pub ndjson: bool,

    /// Append raw events to a stream a view owns (kv:, audit:, meta:), for repair work. Without
    /// it such streams are refused: write them with `cairn kv`, `cairn audit`, `cairn meta`.
    #[arg(long)]
    pub allow_reserved: bool,
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    pub stream: String,
    /// First version to read (default: the first, or the last with --backward).
    #[arg(long, value_name = "VERSION")]
    pub from: Option<u64>,
    /// Most events to print (default: all).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Newest first.
    #[arg(long)]
    pub backward: bool,
}

#[derive(Debug, Args)]
pub struct ReadAllArgs {
    /// First position to read.
    #[arg(long, value_name = "POSITION", default_value_t = 0)]
    pub from: u64,
    /// Most events to print (default: all).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Follow only this stream.
    pub stream: Option<String>,
    /// Start at this position, or at the end (only new events).
    #[arg(long, value_name = "POSITION|end", default_value = "end")]
    pub from: String,
    /// Follow only streams whose names start with this.
    #[arg(long, value_name = "PREFIX")]
    pub stream_prefix: Option<String>,
    /// Follow only events whose types start with this.
    #[arg(long, value_name = "PREFIX")]
    pub type_prefix: Option<String>,
}

#[derive(Debug, Args)]
pub struct StreamsArgs {
    /// Only streams whose names start with this.
    #[arg(long, value_name = "P", default_value = "")]
    pub prefix: String,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Check from this position on, trusting the stored chain hash just before it.
    #[arg(long, value_name = "POSITION")]
    pub from: Option<u64>,
    #[command(flatten)]
    pub server: super::remote::ServerArgs,
}

pub fn append(dir: &Path, format: Format, args: AppendArgs) -> CliResult<Exit> {
    let expected = ExpectedVersionJson::parse(&args.expected_version)?.0;
    StreamName::new(args.stream.as_str()).map_err(|e| InputError(e.to_string()))?;
    if let Some((prefix, view)) = projections::view_stream_owner(&args.stream).filter(|_| !args.allow_reserved) {
        return Err(InputError(format!(
            "stream {} belongs to the {view} view (streams starting with {prefix:?} are written only through it); \
             pass --allow-reserved to append raw events for repair work",
            args.stream
        ))
        .into());
    }
    if args.ndjson {
        return append_ndjson(dir, format, &args.stream, expected);
    }
    let event = single_event(&args)?;
    let log = open_writer(dir)?;
    let result = log.append(&args.stream, expected, vec![event]).map_err(|e| CliError::log(dir, e));
    log.close();
    let result = AppendResponse::from(&result?);
    let mut out = Out::new();
    match format {
        Format::Text => out.line(&format!(
            "appended to {} at position {} (version {}); chain hash {}",
            result.stream, result.last_position, result.last_version, result.hash
        ))?,
        Format::Json | Format::Ndjson => out.json_line(&result)?,
    }
    out.flush()?;
    Ok(Exit::Ok)
}

fn single_event(args: &AppendArgs) -> CliResult<NewEvent> {
    let event_type = args.event_type.clone().expect("clap requires --type without --ndjson");
    let data = match (&args.payload, &args.data_deprecated, &args.data_file) {
        (Some(text), _, _) => Payload::Json(json_arg("--payload", text)?),
        (None, Some(text), _) => Payload::Json(json_arg("--data", text).map_err(|e| match e {
            // The old meaning caught someone who meant the directory: say how to write that.
            CliError::Input(InputError(m)) if Path::new(text).is_dir() => CliError::Input(InputError(format!(
                "{m}; after `append`, --data is the event's data (deprecated spelling of --payload): to name \
                 the data directory, write --data-dir {text} or put --data {text} before `append`"
            ))),
            other => other,
        })?),
        (None, None, Some(path)) => {
            let bytes = std::fs::read(path).map_err(|e| CliError::io("read the data file", path, e))?;
            if args.binary {
                Payload::Bytes(bytes)
            } else {
                let text = String::from_utf8(bytes).map_err(|_| {
                    InputError(format!("{} is not UTF-8 text; pass --binary to store bytes", path.display()))
                })?;
                Payload::Json(json_arg(&path.display().to_string(), &text)?)
            }
        }
        (None, None, None) => Payload::Json(b"{}".to_vec()),
    };
    let metadata = match &args.metadata {
        Some(text) => {
            let json = json_arg("--metadata", text)?;
            if json.first() != Some(&b'{') {
                return Err(InputError("--metadata must be a JSON object".into()).into());
            }
            json
        }
        None => Vec::new(),
    };
    Ok(NewEvent { id: args.id, event_type, metadata, data })
}

/// Validates JSON text from the command line and compacts it.
fn json_arg(what: &str, text: &str) -> CliResult<Vec<u8>> {
    let raw: Box<RawValue> =
        serde_json::from_str(text).map_err(|e| InputError(format!("{what} is not valid JSON: {e}")))?;
    wire::check_payload(what, raw.get())?;
    Ok(wire::compact_json(raw.get()))
}

#[derive(Debug, Serialize)]
struct NdjsonSummary {
    stream: String,
    events: u64,
    batches: u64,
    first_position: Option<u64>,
    last_position: Option<u64>,
    last_version: Option<u64>,
    hash: Option<String>,
}

fn append_ndjson(dir: &Path, format: Format, stream: &str, expected: log_engine::ExpectedVersion) -> CliResult<Exit> {
    let log = open_writer(dir)?;
    let result = append_ndjson_to(&log, dir, format, stream, expected);
    log.close();
    result
}

fn append_ndjson_to(
    log: &Log,
    dir: &Path,
    format: Format,
    stream: &str,
    mut expected: log_engine::ExpectedVersion,
) -> CliResult<Exit> {
    let mut out = Out::new();
    let bar = output::progress_counter("appending");
    let mut summary = NdjsonSummary {
        stream: stream.to_string(),
        events: 0,
        batches: 0,
        first_position: None,
        last_position: None,
        last_version: None,
        hash: None,
    };
    let stdin = std::io::stdin().lock();
    let mut reader = std::io::BufReader::new(stdin).take(u64::MAX);
    let mut batch: Vec<NewEvent> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut line_no = 0u64;
    let mut line = String::new();
    let already = |summary: &NdjsonSummary| match summary.events {
        0 => "nothing was appended".to_string(),
        n => format!(
            "the {n} events before it were appended (positions {:?} to {:?})",
            summary.first_position.unwrap_or(0),
            summary.last_position.unwrap_or(0)
        ),
    };
    loop {
        line.clear();
        // Bound each line: a runaway input without newlines must not exhaust memory.
        reader.set_limit(NDJSON_LINE_MAX as u64 + 1);
        let read = reader.read_line(&mut line).map_err(|e| CliError::io("read", "standard input", e))?;
        let done = read == 0;
        if !done {
            line_no += 1;
            if line.len() > NDJSON_LINE_MAX {
                return Err(InputError(format!(
                    "line {line_no} of standard input is longer than {NDJSON_LINE_MAX} bytes; {}",
                    already(&summary)
                ))
                .into());
            }
            let text = line.trim();
            if !text.is_empty() {
                // The line's own stream (a line of `read -o ndjson` or `export`) is ignored: the
                // STREAM argument says where the events go.
                let event = super::bulk::parse_line(text, line_no)
                    .map_err(|e| InputError(format!("{}; {}", e.0, already(&summary))))?
                    .event;
                batch_bytes += event.metadata.len() + event.data.as_bytes().len() + event.event_type.len();
                batch.push(event);
            }
        }
        let full = batch.len() >= NDJSON_BATCH_EVENTS || batch_bytes >= NDJSON_BATCH_BYTES;
        if (full || done) && !batch.is_empty() {
            let n = batch.len() as u64;
            let r = log.append(stream, expected, std::mem::take(&mut batch)).map_err(|e| CliError::log(dir, e))?;
            expected = log_engine::ExpectedVersion::Any;
            batch_bytes = 0;
            summary.events += n;
            summary.batches += 1;
            summary.first_position.get_or_insert(r.first_position.0);
            summary.last_position = Some(r.last_position.0);
            summary.last_version = Some(r.last_version.0);
            summary.hash = Some(r.hash.to_hex());
            bar.inc(n);
            if format == Format::Ndjson {
                out.json_line(&AppendResponse::from(&r))?;
            }
        }
        if done {
            break;
        }
    }
    bar.finish_and_clear();
    match format {
        Format::Text => match (summary.first_position, summary.last_position) {
            (Some(first), Some(last)) => out.line(&format!(
                "appended {} events to {} in {} batches (positions {first} to {last}); chain hash {}",
                summary.events,
                stream,
                summary.batches,
                summary.hash.as_deref().unwrap_or("")
            ))?,
            _ => out.line("standard input held no events; nothing was appended")?,
        },
        Format::Json => out.json_line(&summary)?,
        Format::Ndjson => {}
    }
    out.flush()?;
    Ok(Exit::Ok)
}

pub fn read(dir: &Path, format: Format, args: ReadArgs) -> CliResult<Exit> {
    let log = open_reader(dir)?;
    let result = read_stream(&log, dir, format, &args);
    log.close();
    result
}

fn read_stream(log: &Log, dir: &Path, format: Format, args: &ReadArgs) -> CliResult<Exit> {
    let direction = if args.backward { Direction::Backward } else { Direction::Forward };
    let mut left = args.limit.unwrap_or(u64::MAX);
    let mut from = args.from.map(StreamVersion);
    let mut out = Out::new();
    let mut collected = Vec::new();
    let mut next = None;
    while left > 0 {
        let page = (left.min(PAGE_EVENTS as u64)) as usize;
        // Bounded by bytes as well as events (as the server's pages are): a page of large
        // events costs at most READ_BYTES_MAX however many events it asks for.
        let events = log
            .read_stream_bounded(&args.stream, from, page, crate::limits::READ_BYTES_MAX, direction)
            .map_err(|e| CliError::log(dir, e))?;
        let got = events.len();
        for event in &events {
            let json = EventJson::from(event);
            if format == Format::Json {
                collected.push(json);
            } else {
                out.event(format, &json)?;
            }
        }
        left -= got as u64;
        let Some(last) = events.last() else { break };
        next = match direction {
            Direction::Forward => Some(last.version.0 + 1),
            Direction::Backward => last.version.0.checked_sub(1),
        };
        let at_end = match next {
            None => true,
            Some(v) => direction == Direction::Forward && log.stream_version(&args.stream).is_none_or(|l| v > l.0),
        };
        // A page cut short by bytes is not the end: only the stream's last version is.
        if at_end {
            next = None;
            break;
        }
        from = next.map(StreamVersion);
    }
    if format == Format::Json {
        out.json_line(&wire::ReadResponse { events: collected, next })?;
    }
    out.flush()?;
    Ok(Exit::Ok)
}

pub fn read_all(dir: &Path, format: Format, args: ReadAllArgs) -> CliResult<Exit> {
    let log = open_reader(dir)?;
    let limit = args.limit.unwrap_or(u64::MAX);
    let mut out = Out::new();
    let mut collected = Vec::new();
    let mut failed = None;
    let result = log.for_each(Position(args.from), limit, |event| {
        let json = EventJson::from(&event);
        if format == Format::Json {
            collected.push(json);
            true
        } else {
            match out.event(format, &json) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        }
    });
    let head = log.head();
    log.close();
    let seen = result.map_err(|e| CliError::log(dir, e))?;
    if let Some(e) = failed {
        return Err(e);
    }
    if format == Format::Json {
        let end = args.from.saturating_add(seen);
        let next = head.filter(|h| h.position.0 >= end && seen > 0).map(|_| end);
        out.json_line(&wire::ReadResponse { events: collected, next })?;
    }
    out.flush()?;
    Ok(Exit::Ok)
}

pub fn tail(dir: &Path, format: Format, args: TailArgs) -> CliResult<Exit> {
    let from = match args.from.as_str() {
        "end" => StartFrom::End,
        p => StartFrom::Position(Position(
            p.parse().map_err(|_| InputError(format!("--from {p:?} is neither a position nor \"end\"")))?,
        )),
    };
    let filter = Filter { stream: args.stream, stream_prefix: args.stream_prefix, type_prefix: args.type_prefix };
    let log = open_reader(dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io("start the async runtime for", "tail", e))?;
    let result = runtime.block_on(async {
        let mut sub = log.subscribe(from, filter);
        let mut out = Out::new();
        // The reader sees what another process appends only when it looks again.
        let mut poll = tokio::time::interval(TAIL_POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = poll.tick() => {
                    log.refresh().map_err(|e| CliError::log(dir, e))?;
                }
                next = sub.next() => match next {
                    Some(Ok(event)) => {
                        out.event(format, &EventJson::from(&event))?;
                        out.flush()?;
                    }
                    Some(Err(e)) => return Err(CliError::log(dir, e)),
                    None => return Ok(()),
                },
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    });
    drop(runtime);
    log.close();
    result.map(|()| Exit::Ok)
}

pub fn streams(dir: &Path, format: Format, args: StreamsArgs) -> CliResult<Exit> {
    let log = open_reader(dir)?;
    let rows: Vec<StreamInfoJson> = log
        .streams(&args.prefix)
        .iter()
        .map(|s| StreamInfoJson::of(s, log.stream_state(&s.stream).ok().as_ref()))
        .collect();
    log.close();
    let mut out = Out::new();
    match format {
        Format::Text => {
            let width = rows.iter().map(|r| r.stream.len()).max().unwrap_or(6).max(6);
            out.line(&format!("{:<width$}  {:>12}  {:>12}  STATE", "STREAM", "LAST VERSION", "EVENTS"))?;
            for r in &rows {
                let state = if r.closed { "closed" } else { "open" };
                out.line(&format!("{:<width$}  {:>12}  {:>12}  {state}", r.stream, r.last_version, r.events))?;
            }
        }
        Format::Json => out.json_line(&rows)?,
        Format::Ndjson => {
            for r in &rows {
                out.json_line(r)?;
            }
        }
    }
    out.flush()?;
    Ok(Exit::Ok)
}

pub fn head(dir: &Path, format: Format) -> CliResult<Exit> {
    let log = open_reader(dir)?;
    let head = HeadJson::of(log.head());
    log.close();
    let mut out = Out::new();
    match format {
        Format::Text => match head.position {
            Some(p) => out.line(&format!("position {p}\nhash     {}", head.hash))?,
            None => out.line(&format!("the log is empty (genesis hash {})", head.hash))?,
        },
        Format::Json | Format::Ndjson => out.json_line(&head)?,
    }
    out.flush()?;
    Ok(Exit::Ok)
}

pub fn verify(dir: &Path, format: Format, args: VerifyArgs) -> CliResult<Exit> {
    if let Some(remote) = super::remote::Remote::explicit(&args.server)? {
        let path = args.from.map_or_else(|| "/v1/verify".to_string(), |f| format!("/v1/verify?from={f}"));
        let bar = crate::output::progress_bar(0, "verifying on the server");
        let report = remote.post_streamed(&path, &serde_json::json!({}), &mut |p| {
            bar.set_length(p["total"].as_u64().unwrap_or(0));
            bar.set_position(p["checked"].as_u64().unwrap_or(0));
        });
        bar.finish_and_clear();
        return print_verify(format, &report?);
    }
    // A reader: verify runs beside a writer and on read-only copies, and changes nothing.
    let options = log_engine::Options { tiering: crate::store::reader_tiering(dir)?, ..Default::default() };
    let report = match log_engine::Log::open_read_only(dir, options) {
        Ok(log) => {
            let result = verify_open(&log, dir, args.from);
            let stop = log.read_stop();
            log.close();
            let mut report = result?;
            match stop {
                // Damage that a writer's open would refuse is damage, whatever the records
                // before it say.
                Some(stop) if stop.corrupt && report.ok => {
                    report.ok = false;
                    report.first_bad_position = stop.position.map(|p| p.0);
                    report.detail = Some(crate::store::describe_stop(&stop));
                }
                Some(stop) if !stop.corrupt => eprintln!("note: {}", crate::store::describe_stop(&stop)),
                _ => {}
            }
            report
        }
        // Damage found while opening is a verification result too, with the same report shape.
        Err(e) if e.is_corruption() => VerifyJson {
            ok: false,
            events: 0,
            head_position: None,
            head_hash: None,
            first_bad_position: match &e {
                log_engine::Error::Corrupt { position, .. } => position.map(|p| p.0),
                _ => None,
            },
            detail: Some(format!("opening {} failed: {e}", dir.display())),
        },
        Err(source) => return Err(StoreError::open(dir)(source).into()),
    };
    print_verify(format, &report)
}

fn print_verify(format: Format, report: &VerifyJson) -> CliResult<Exit> {
    let mut out = Out::new();
    match format {
        Format::Text if report.ok => out.line(&format!(
            "ok: {} events verified (CRCs and hash chain); head position {}, hash {}",
            report.events,
            report.head_position.map_or("none".into(), |p| p.to_string()),
            report.head_hash.as_deref().unwrap_or("(empty log)")
        ))?,
        Format::Text => out.line(&format!(
            "DAMAGED: first bad position {}; {}",
            report.first_bad_position.map_or("unknown".into(), |p| p.to_string()),
            report.detail.as_deref().unwrap_or("no detail")
        ))?,
        Format::Json | Format::Ndjson => out.json_line(&report)?,
    }
    out.flush()?;
    Ok(if report.ok { Exit::Ok } else { Exit::Integrity })
}

fn verify_open(log: &Log, dir: &Path, from: Option<u64>) -> CliResult<VerifyJson> {
    let head = log.head().map(|h| h.position.0);
    if let Some(from) = from.filter(|&f| head.is_none_or(|h| f > h)) {
        // Checked here, not left to the lookup of the hash before it, which names from - 1.
        let head = head.map_or("the log is empty".to_string(), |h| format!("its head is position {h}"));
        return Err(CliError::NotFound(format!(
            "verify --from {from} is beyond the head of the log in {} ({head}); nothing was verified",
            dir.display()
        )));
    }
    let trusted = match from {
        None | Some(0) => None,
        Some(p) => {
            let position = Position(p - 1);
            let hash = log.hash_at(position).map_err(|e| CliError::log(dir, e))?;
            Some(log_engine::Head { position, hash })
        }
    };
    let total =
        log.head().map_or(0, |h| h.position.0 + 1) - from.unwrap_or(0).min(log.head().map_or(0, |h| h.position.0 + 1));
    let bar = output::progress_bar(total, "verifying");
    let report = log.verify(trusted, |p| bar.set_position(p.checked)).map_err(|e| CliError::log(dir, e))?;
    bar.finish_and_clear();
    Ok(VerifyJson::from(&report))
}

/// Bytes of the regular files under `dir`, at any depth (symbolic links are not followed).
#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub server: super::remote::ServerArgs,
}

pub fn stats(dir: &Path, format: Format, args: StatsArgs) -> CliResult<Exit> {
    let stats = match super::remote::Remote::explicit(&args.server)? {
        Some(remote) => remote.get("/v1/admin/stats")?,
        None => local_stats(dir)?,
    };
    print_stats(format, &stats)
}

fn local_stats(dir: &Path) -> CliResult<crate::store::StatsJson> {
    let log = open_reader(dir)?;
    let checkpoints = snapshotter::Snapshotter::open(&log, snapshotter::Policy::default())
        .and_then(|s| s.list(&log, &mut |_| {}))
        .map_err(StoreError::from);
    let stats = checkpoints.map(|c| crate::store::stats(&log, &c));
    log.close();
    Ok(stats?)
}

fn print_stats(format: Format, stats: &crate::store::StatsJson) -> CliResult<Exit> {
    let mut out = Out::new();
    match format {
        Format::Text => {
            out.line(&format!("events       {}", stats.events))?;
            out.line(&format!("streams      {}", stats.streams))?;
            out.line(&format!("segments     {}", stats.segments))?;
            out.line(&format!("record bytes {}", stats.record_bytes))?;
            out.line(&format!(
                "disk bytes   {} (every file: preallocated segments, the spare segment, checkpoints)",
                stats.disk_bytes
            ))?;
            if let Some(free) = stats.disk_free_bytes {
                out.line(&format!("disk free    {free} (on the data directory's file system)"))?;
            }
            out.line(&format!("checkpoints  {} ({} valid)", stats.checkpoints, stats.checkpoints_valid))?;
            match (&stats.head_position, &stats.head_hash) {
                (Some(p), Some(h)) => out.line(&format!("head         position {p}, hash {h}"))?,
                _ => out.line("head         (empty log)")?,
            }
        }
        Format::Json | Format::Ndjson => out.json_line(stats)?,
    }
    out.flush()?;
    Ok(Exit::Ok)
}
