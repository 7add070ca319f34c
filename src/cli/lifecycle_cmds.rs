//! The stream lifecycle commands: delete (soft or tombstone), close, fork, erase, metadata,
//! and scavenge, which gives back the space of what they made dead.
//!
//! Each change opens the data directory as its writer, asks the log engine for the change (one
//! event on the reserved `$lifecycle` stream), and prints what the HTTP API answers for it
//! (the shapes of [`crate::http::lifecycle`]). `metadata` without `--set` only reads.

use std::path::Path;

use clap::Args;
use log_engine::{DeleteMode, StreamVersion};

use crate::error::{CliError, CliResult, Exit};
use crate::http::lifecycle::{
    checkpoints_before, set_metadata, EraseJson, EraseRequest, ForkJson, LifecycleJson, MetadataRequest,
    StreamStateJson,
};
use crate::http::scavenge::{ScavengeJob, ScavengeReportJson};
use crate::output::{self, Format, Out};
use crate::store::open_writer;
use crate::wire::InputError;

use super::open_reader;
use super::remote::{Remote, ServerArgs};

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The stream to delete.
    pub stream: String,

    /// Delete it for good: later appends are refused (without it the delete is soft: reads
    /// say the stream is deleted until it is written again, and versions continue).
    #[arg(long)]
    pub tombstone: bool,
}

#[derive(Debug, Args)]
pub struct CloseArgs {
    /// The stream to close.
    pub stream: String,
}

#[derive(Debug, Args)]
pub struct ForkArgs {
    /// The source stream.
    pub stream: String,

    /// The new stream (it must have no events).
    #[arg(long, value_name = "NEW")]
    pub to: String,

    /// The source's last version the fork shares.
    #[arg(long = "at", value_name = "V")]
    pub at_version: u64,
}

#[derive(Debug, Args)]
pub struct EraseArgs {
    /// The stream whose events to erase.
    pub stream: String,

    /// The first version erased (default: the first).
    #[arg(long = "from", value_name = "V")]
    pub from_version: Option<u64>,

    /// The last version erased (default: the last).
    #[arg(long = "to", value_name = "V")]
    pub to_version: Option<u64>,

    /// Why: kept in the log and the audit entry for good.
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct MetadataArgs {
    /// The stream.
    pub stream: String,

    /// Replace the stream's metadata: a JSON object with any of max_age_ms, max_count,
    /// truncate_before, ttl_ms, closed (absent limits are no limits).
    #[arg(long, value_name = "JSON")]
    pub set: Option<String>,
}

/// Refuses a change of a stream whose view does not follow the lifecycle (as the server does).
fn check_changeable(stream: &str) -> CliResult<()> {
    match crate::http::lifecycle::view_refuses_changes(stream) {
        Some(why) => Err(CliError::Input(InputError(why))),
        None => Ok(()),
    }
}

/// Prints a lifecycle change's answer: a sentence, or its JSON.
fn print_change(format: Format, json: &impl serde::Serialize, sentence: String) -> CliResult<Exit> {
    let mut out = Out::new();
    match format {
        Format::Text => out.line(&sentence)?,
        Format::Json | Format::Ndjson => out.json_line(json)?,
    }
    out.flush()?;
    Ok(Exit::Ok)
}

pub fn delete(dir: &Path, format: Format, args: DeleteArgs) -> CliResult<Exit> {
    check_changeable(&args.stream)?;
    let mode = if args.tombstone { DeleteMode::Tombstone } else { DeleteMode::Soft };
    let log = open_writer(dir)?;
    let result = log.delete_stream(&args.stream, mode).map_err(|e| CliError::log(dir, e));
    log.close();
    let answer = LifecycleJson::of(&args.stream, &result?);
    let how = if args.tombstone { "deleted for good (tombstoned)" } else { "deleted" };
    let sentence = format!("stream {} {how} at position {}", answer.stream, answer.position);
    print_change(format, &answer, sentence)
}

pub fn close(dir: &Path, format: Format, args: CloseArgs) -> CliResult<Exit> {
    check_changeable(&args.stream)?;
    let log = open_writer(dir)?;
    let result = log.close_stream(&args.stream).map_err(|e| CliError::log(dir, e));
    log.close();
    let answer = LifecycleJson::of(&args.stream, &result?);
    let sentence = format!("stream {} closed at position {}: it takes no more appends", answer.stream, answer.position);
    print_change(format, &answer, sentence)
}

pub fn fork(dir: &Path, format: Format, args: ForkArgs) -> CliResult<Exit> {
    if let Some(why) = crate::http::lifecycle::fork_refused(&args.to) {
        return Err(CliError::Input(InputError(why)));
    }
    let log = open_writer(dir)?;
    let result =
        log.fork_stream(&args.stream, &args.to, StreamVersion(args.at_version)).map_err(|e| CliError::log(dir, e));
    log.close();
    let answer = ForkJson::of(&args.stream, &args.to, args.at_version, &result?);
    let sentence = format!(
        "stream {} forked from {} at version {} (position {})",
        answer.stream, answer.source, answer.at_version, answer.position
    );
    print_change(format, &answer, sentence)
}

pub fn erase(dir: &Path, format: Format, args: EraseArgs) -> CliResult<Exit> {
    check_changeable(&args.stream)?;
    let request = EraseRequest {
        stream: args.stream,
        from_version: args.from_version,
        to_version: args.to_version,
        reason: args.reason,
    };
    let log = open_writer(dir)?;
    let result = crate::http::lifecycle::erase(&log, request, None).map_err(|e| CliError::log(dir, e));
    let rows = snapshotter::Snapshotter::open(&log, snapshotter::Policy::default())
        .and_then(|s| s.list(&log, &mut |_| {}))
        .map_err(crate::store::StoreError::from);
    log.close();
    let mut answer: EraseJson = result?;
    answer.checkpoints_before = checkpoints_before(&rows?, answer.position);
    let mut sentence = format!(
        "erased versions {} to {} of stream {} at position {}: they read as erased from now on",
        answer.from_version, answer.to_version, answer.stream, answer.position
    );
    if answer.key_destroyed {
        sentence.push_str("\nthe stream's key was destroyed: its payloads are unreadable in every copy of the log");
    }
    if answer.checkpoints_before > 0 {
        sentence.push_str(&format!(
            "\nnote: {} checkpoint(s) taken before the erasure may still hold the payloads in their view state",
            answer.checkpoints_before
        ));
    }
    print_change(format, &answer, sentence)
}

pub fn metadata(dir: &Path, format: Format, args: MetadataArgs) -> CliResult<Exit> {
    match args.set {
        None => {
            let log = open_reader(dir)?;
            let state = log.stream_state(&args.stream).map_err(|e| CliError::log(dir, e));
            log.close();
            let state = StreamStateJson::from(&state?);
            let mut out = Out::new();
            match format {
                Format::Text => {
                    for line in describe(&state) {
                        out.line(&line)?;
                    }
                }
                Format::Json | Format::Ndjson => out.json_line(&state)?,
            }
            out.flush()?;
            Ok(Exit::Ok)
        }
        Some(text) => {
            check_changeable(&args.stream)?;
            let request: MetadataRequest = serde_json::from_str(&text).map_err(|e| {
                CliError::Input(InputError(format!(
                    "--set must be a JSON object with max_age_ms, max_count, truncate_before, ttl_ms or closed \
                     (non-negative integers, closed a boolean): {e}"
                )))
            })?;
            let log = open_writer(dir)?;
            let result = set_metadata(&log, &args.stream, request).map_err(|e| CliError::log(dir, e));
            log.close();
            let answer = LifecycleJson::of(&args.stream, &result?);
            let sentence = format!("stream {} metadata set at position {}", answer.stream, answer.position);
            print_change(format, &answer, sentence)
        }
    }
}

/// The state as `name  value` lines.
fn describe(s: &StreamStateJson) -> Vec<String> {
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    let state = match (s.tombstoned, s.deleted, s.closed) {
        (true, _, _) => "tombstoned",
        (_, true, _) => "deleted",
        (_, _, true) => "closed",
        _ => "open",
    };
    let mut lines = vec![
        format!("stream           {}", s.stream),
        format!("state            {state}"),
        format!("last_version     {}", opt(s.last_version)),
        format!("deleted_before   {}", opt(s.deleted_before)),
        format!("max_age_ms       {}", opt(s.max_age_ms)),
        format!("max_count        {}", opt(s.max_count)),
        format!("truncate_before  {}", opt(s.truncate_before)),
        format!("ttl_ms           {}", opt(s.ttl_ms)),
    ];
    if let Some(f) = &s.forked_from {
        lines.push(format!("forked_from      {} at version {}", f.stream, f.at_version));
    }
    lines
}

#[derive(Debug, Args)]
pub struct ScavengeArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `cairn scavenge`: through the server when one holds the directory (as `backup` does),
/// otherwise on the directory itself, with the options the server uses
/// ([`crate::store::scavenge_options`]).
pub fn scavenge(dir: &Path, format: Format, args: ScavengeArgs) -> CliResult<Exit> {
    let report = match Remote::explicit(&args.server)? {
        Some(remote) => scavenge_remote(&remote)?,
        None => match open_writer(dir) {
            Ok(log) => {
                let report = scavenge_local(&log);
                log.close();
                report?
            }
            Err(e) => scavenge_remote(&Remote::after_open_error(dir, &args.server, e.into())?)?,
        },
    };
    let mut out = Out::new();
    match format {
        Format::Text => out.line(&format!(
            "scavenged: {} events husked in {} rewritten segments; sealed segments {} -> {} bytes ({} bytes given back)",
            report.events_husked,
            report.segments_rewritten,
            report.bytes_before,
            report.bytes_after,
            report.bytes_reclaimed
        ))?,
        Format::Json | Format::Ndjson => out.json_line(&report)?,
    }
    out.flush()?;
    Ok(Exit::Ok)
}

fn scavenge_local(log: &log_engine::Log) -> CliResult<ScavengeReportJson> {
    let bar = output::progress_bar(0, "scavenging segments");
    let report = log.scavenge(&crate::store::scavenge_options(), &mut |p| {
        bar.set_length(p.segments_total);
        bar.set_position(p.segments_done);
    });
    bar.finish_and_clear();
    Ok(ScavengeReportJson::from(&report.map_err(|e| CliError::Store(crate::store::StoreError::Log(e)))?))
}

fn scavenge_remote(remote: &Remote) -> CliResult<ScavengeReportJson> {
    let bar = output::progress_bar(0, "scavenging on the server");
    let job: CliResult<ScavengeJob> = remote.post_streamed("/v1/admin/scavenge", &serde_json::json!({}), &mut |p| {
        let number = |k: &str| p.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        bar.set_length(number("segments_total"));
        bar.set_position(number("segments_done"));
    });
    bar.finish_and_clear();
    let job = job?;
    job.report.ok_or_else(|| CliError::Server(format!("the server's scavenge job {} ended without a report", job.id)))
}
