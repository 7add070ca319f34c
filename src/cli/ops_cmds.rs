//! The operator commands: `checkpoint`, `checkpoints`, `backup`, `restore`, `drill`.
//!
//! `backup` and `drill` work while `cairn serve` holds the directory: they ask the server
//! ([`super::remote`]). `restore --to` then copies through a reader (no lock) instead: the copy
//! is the log as it was durable when the reader opened it, cut at a batch boundary.
//!
//! `restore` and `drill` catch SIGINT and SIGTERM while they copy (see `interrupt`): the copy
//! stops, nothing partial is left, and they exit 130.
//!
//! Exit codes: 3 when `checkpoints` lists a checkpoint that is not valid, when a restored copy
//! does not verify, and when a drill finds damage, loss or a digest mismatch.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;
use snapshotter::{CheckpointKind, Overwrite, Progress, Stage};

use super::remote::{Remote, ServerArgs};
use super::view_cmds::{open_store, open_store_read_only};
use crate::error::{CliError, CliResult, Exit};
use crate::interrupt::Interrupt;
use crate::output::{self, Format, Out};
use crate::store::StoreError;
use crate::wire::InputError;

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// A full checkpoint (default: what the policy asks for next, incremental when there is a
    /// full one to build on).
    #[arg(long)]
    pub full: bool,
}

#[derive(Debug, Args)]
pub struct CheckpointsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to: `file:///DIR` or a path (a directory; created if missing).
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Copy only the segments and checkpoints the destination lacks.
    #[arg(long)]
    pub incremental: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The directory to restore into (a data directory that opens on its own).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Restore the newest backup (or archive) at this URL (`s3://BUCKET/PREFIX`, `file:///DIR`
    /// or a path) instead of copying the local data directory; with --at or --at-time, as of
    /// that point.
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,
    /// Restore as of this log position: the copy's log ends with the atomic batch that holds
    /// it, and only checkpoints at or before it are copied.
    #[arg(long, value_name = "POSITION", conflicts_with = "at_time")]
    pub at: Option<u64>,
    /// Restore as of this time (RFC 3339, UTC: `2026-12-07T11:30:00Z`): the copy ends with the
    /// last event stamped at or before it (event timestamps never decrease in the log, so this
    /// is a binary search), as `--at` that event's position would.
    #[arg(long, value_name = "RFC3339", value_parser = parse_time_ms)]
    pub at_time: Option<u64>,
    /// Replace the target if it is a cairn data directory (an earlier copy); any other
    /// non-empty directory is refused.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// Where to restore the copy (absent or empty); kept for inspection. Default: a temporary
    /// directory, removed afterwards. Not with a server (its drill uses a temporary directory).
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// Drill the newest backup (or archive) at this URL (`s3://BUCKET/PREFIX`, `file:///DIR` or
    /// a path) instead of the local store: restore it (every object checked), then drill the
    /// restored store. Needs no data directory and no server.
    #[arg(long, value_name = "URL", conflicts_with_all = ["server", "token", "ca_file"])]
    pub from: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// A progress callback that shows each stage on one bar (hidden unless stderr is a terminal).
fn staged_progress() -> (indicatif::ProgressBar, impl FnMut(Progress)) {
    let bar = output::progress_bar(0, "working");
    let shown = bar.clone();
    let mut stage = None;
    let callback = move |p: Progress| {
        if stage != Some(p.stage) {
            stage = Some(p.stage);
            shown.set_message(crate::store::stage_name(p.stage));
            shown.set_length(p.total);
        }
        shown.set_position(p.done);
    };
    (bar, callback)
}

pub fn checkpoint(dir: &Path, format: Format, args: CheckpointArgs) -> CliResult<Exit> {
    let store = open_store(dir)?;
    let result = store.checkpoint(args.full.then_some(CheckpointKind::Full));
    store.close();
    let info = result?;
    let mut out = Out::new();
    match format {
        Format::Text => out.line(&format!(
            "checkpoint {} ({}) at position {}: hash {}, {} bytes in {}",
            info.sequence,
            info.kind,
            info.position,
            info.hash,
            info.file_bytes,
            info.file.display()
        ))?,
        Format::Json | Format::Ndjson => out.json_line(&info)?,
    }
    out.flush()?;
    Ok(Exit::Ok)
}

pub fn checkpoints(dir: &Path, format: Format, args: CheckpointsArgs) -> CliResult<Exit> {
    // Rows as `GET /v1/checkpoints` answers them, whether listed here or by a server.
    let rows: Vec<serde_json::Value> = match Remote::explicit(&args.server)? {
        Some(remote) => {
            let answer: serde_json::Value = remote.get("/v1/checkpoints")?;
            answer["checkpoints"].as_array().cloned().unwrap_or_default()
        }
        None => {
            let log = super::open_reader(dir)?;
            let (bar, mut progress) = staged_progress();
            let rows = snapshotter::Snapshotter::open(&log, snapshotter::Policy::default())
                .and_then(|s| s.list(&log, &mut progress))
                .map_err(StoreError::from);
            bar.finish_and_clear();
            log.close();
            rows?
                .iter()
                .map(|r| serde_json::to_value(crate::http::checkpoints::CheckpointRowJson::from(r)))
                .collect::<Result<_, _>>()
                .map_err(|e| CliError::Server(format!("a checkpoint row does not serialize: {e}")))?
        }
    };
    let all_valid = rows.iter().all(|r| r["status"] == "valid");
    let mut out = Out::new();
    match format {
        Format::Text => {
            if rows.is_empty() {
                out.line("no checkpoints (take one with `cairn checkpoint`)")?;
            }
            out.line(&format!(
                "{:>6}  {:<11}  {:>12}  {:<24}  {:>10}  STATUS",
                "SEQ", "KIND", "POSITION", "CREATED", "BYTES"
            ))?;
            for r in &rows {
                let info = &r["info"];
                let (kind, position, created, bytes) = if info.is_object() {
                    (
                        info["kind"].as_str().unwrap_or("?").to_string(),
                        info["position"].to_string(),
                        crate::wire::timestamp(info["created_ms"].as_u64().unwrap_or(0)),
                        info["file_bytes"].to_string(),
                    )
                } else {
                    ("?".into(), "?".into(), "?".into(), "?".into())
                };
                let status = match (r["status"].as_str().unwrap_or("?"), r["detail"].as_str()) {
                    ("valid", _) => "valid".to_string(),
                    (status, detail) => {
                        format!("{}: {}", status.replace('_', " ").to_uppercase(), detail.unwrap_or("no detail"))
                    }
                };
                out.line(&format!(
                    "{:>6}  {kind:<11}  {position:>12}  {created:<24}  {bytes:>10}  {status}",
                    r["sequence"].as_u64().unwrap_or(0)
                ))?;
            }
        }
        Format::Json => out.json_line(&json!({ "checkpoints": rows }))?,
        Format::Ndjson => {
            for r in &rows {
                out.json_line(r)?;
            }
        }
    }
    out.flush()?;
    Ok(if all_valid { Exit::Ok } else { Exit::Integrity })
}

/// An RFC 3339 time (UTC) as unix milliseconds.
pub(crate) fn parse_time_ms(text: &str) -> Result<u64, String> {
    let time = humantime::parse_rfc3339_weak(text)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time such as 2026-12-07T11:30:00Z: {e}"))?;
    let since = time.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("{text:?} is before 1970"))?;
    u64::try_from(since.as_millis()).map_err(|_| format!("{text:?} is too far in the future"))
}

/// The position `--at-time` names in `log`: the last event stamped at or before it.
pub(crate) fn position_at_time(log: &log_engine::Log, at_ms: u64, what: &str) -> CliResult<u64> {
    match snapshotter::position_at_time(log, at_ms).map_err(StoreError::from)? {
        Some(position) => Ok(position.0),
        None => Err(InputError(format!(
            "{what} holds no event stamped at or before {}; nothing was copied",
            crate::wire::timestamp(at_ms)
        ))
        .into()),
    }
}

pub fn restore(dir: &Path, format: Format, args: RestoreArgs) -> CliResult<Exit> {
    match args.from.clone() {
        Some(from) if args.at.is_none() && args.at_time.is_none() => restore_from(&from, format, &args),
        Some(from) => restore_from_at(&from, format, args),
        None => {
            let log = match crate::store::open_writer_to_copy(dir) {
                Ok(log) => log,
                // A server (or another writer) holds the directory: copy what is durable
                // through a reader, which takes no lock.
                Err(StoreError::Open { source: log_engine::Error::Locked { .. }, .. }) => super::open_reader(dir)?,
                Err(e) => return Err(e.into()),
            };
            restore_log(log, &format!("the log in {}", dir.display()), format, args, None)
        }
    }
}

/// `restore --from URL --at P | --at-time T`: the newest backup at URL is restored whole into a
/// directory of its own beside the target (every object checked, the chain verified, its head
/// the manifest's), and the target is then cut from that copy as `restore --at` cuts a local
/// store; the whole copy is removed afterwards. So a point-in-time restore needs room for the
/// backup twice, briefly.
fn restore_from_at(from: &str, format: Format, args: RestoreArgs) -> CliResult<Exit> {
    let name = args.to.file_name().map_or_else(|| "restore".into(), |n| n.to_string_lossy().into_owned());
    let parent = match args.to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let whole = parent.join(format!(".{name}.pitr-source-{}", std::process::id()));
    let fetched = restore_backup(from, &whole, Overwrite::Refuse);
    let result = fetched.and_then(|(location, _)| {
        let log = crate::store::open_copy(&whole)?;
        restore_log(log, &format!("the backup at {}", location.url), format, args, Some(whole.clone()))
    });
    if whole.exists() {
        std::fs::remove_dir_all(&whole).map_err(|e| CliError::io("remove the whole restored copy", &whole, e))?;
    }
    result
}

/// Copies `log` (described as `what` in messages) into `args.to`, as of `--at`/`--at-time`,
/// then verifies the copy and prints what was made. `log` is closed before returning; `cleanup`
/// is a directory of the command's own, removed if a signal ends the command.
fn restore_log(
    log: log_engine::Log,
    what: &str,
    format: Format,
    mut args: RestoreArgs,
    cleanup: Option<PathBuf>,
) -> CliResult<Exit> {
    if let Some(at_ms) = args.at_time {
        match position_at_time(&log, at_ms, what) {
            Ok(position) => args.at = Some(position),
            Err(e) => {
                log.close();
                return Err(e);
            }
        }
    }
    if let Some(at) = args.at {
        let head = log.head().map(|h| h.position.0);
        if head.is_none_or(|h| at > h) {
            log.close();
            return Err(InputError(format!(
                "restore --at {at} is beyond the head of {what} ({}); nothing was copied",
                head.map_or("the log is empty".to_string(), |h| format!("its head is position {h}"))
            ))
            .into());
        }
    }
    let interrupt = match Interrupt::install(cleanup) {
        Ok(interrupt) => interrupt,
        Err(e) => {
            log.close();
            return Err(e);
        }
    };
    let (bar, mut progress) = staged_progress();
    let overwrite = if args.force { Overwrite::Force } else { Overwrite::Refuse };
    let at = args.at.map(log_engine::Position);
    let copied =
        snapshotter::restore_to_cancellable(&log, &args.to, at, overwrite, interrupt.cancel_flag(), &mut progress)
            .map_err(StoreError::from);
    log.close();
    if copied.is_ok() {
        // From here the target is a complete copy: a signal ends the process at once.
        interrupt.commit();
    }
    let copied = match copied {
        Ok(c) => c,
        Err(e) => {
            bar.finish_and_clear();
            return Err(e.into());
        }
    };
    // Prove the copy: it must open on its own and verify (read-only: an encrypted copy has no
    // key store of its own, and verify needs none).
    let copy = crate::store::open_copy(&copied.dir)?;
    let report = copy.verify(None, |p| {
        progress(Progress { stage: Stage::VerifyLog, done: p.checked, total: p.total });
    });
    copy.close();
    bar.finish_and_clear();
    let report = report.map_err(|e| CliError::log(&copied.dir, e))?;
    let summary = json!({
        "dir": copied.dir,
        "segments": copied.segments,
        "checkpoints": copied.checkpoints,
        "head_position": copied.head.map(|h| h.position.0),
        "head_hash": copied.head.map(|h| h.hash.to_hex()),
        "verified": report.ok,
        "events_verified": report.events,
    });
    let mut out = Out::new();
    match format {
        Format::Text => out.line(&format!(
            "restored {} segments and {} checkpoints into {} (head position {}); the copy {}",
            copied.segments,
            copied.checkpoints,
            copied.dir.display(),
            copied.head.map_or("none".into(), |h| h.position.to_string()),
            if report.ok {
                format!("verifies: {} events", report.events)
            } else {
                format!("DOES NOT VERIFY: {}", report.detail.as_deref().unwrap_or("no detail"))
            }
        ))?,
        Format::Json | Format::Ndjson => out.json_line(&summary)?,
    }
    out.flush()?;
    Ok(if report.ok { Exit::Ok } else { Exit::Integrity })
}

pub fn drill(dir: &Path, format: Format, args: DrillArgs) -> CliResult<Exit> {
    if let Some(from) = &args.from {
        return drill_from(from, format, args.scratch);
    }
    if let Some(remote) = Remote::explicit(&args.server)? {
        return drill_remote(&remote, format, args.scratch.as_deref());
    }
    match open_store(dir) {
        Ok(store) => drill_local(store, format, args.scratch, None),
        Err(e) => drill_remote(&Remote::after_open_error(dir, &args.server, e)?, format, args.scratch.as_deref()),
    }
}

/// `drill --from URL`: restores the newest backup at URL into a temporary directory (every
/// object checked against the manifest, the chain verified to the manifest's head), opens it as
/// a store (its views restored from its checkpoints and the tail), and drills that store. The
/// temporary directory holds the restored store and the drill's own copy, and is removed
/// afterwards (a `--scratch` copy is kept).
fn drill_from(from: &str, format: Format, scratch: Option<PathBuf>) -> CliResult<Exit> {
    let root = crate::store::temp_scratch();
    std::fs::create_dir(&root).map_err(|e| CliError::io("create the drill's temporary directory", &root, e))?;
    let store_dir = root.join("store");
    let started = std::time::Instant::now();
    // The fetched copy is only read: its views are rebuilt on a reader (an encrypted backup's
    // copy is read with the log's own key store, --key-store, and never writes it).
    let opened =
        restore_backup(from, &store_dir, Overwrite::Refuse).and_then(|r| Ok((r, open_store_read_only(&store_dir)?)));
    let ((location, restored), store) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&root);
            return Err(e);
        }
    };
    let fetch_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if format == Format::Text {
        let mut out = Out::new();
        out.line(&format!(
            "restored {} ({}, head position {}) in {fetch_ms} ms; drilling the restored store",
            location.url,
            restored.manifest,
            restored.head_position.map_or("none".into(), |p| p.to_string()),
        ))?;
        out.flush()?;
    }
    let kept = scratch.is_some();
    let result = drill_local(store, format, scratch, Some((root.clone(), kept)));
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn drill_remote(remote: &Remote, format: Format, scratch: Option<&Path>) -> CliResult<Exit> {
    if scratch.is_some() {
        return Err(InputError(
            "--scratch names a directory of this machine; a server's drill uses a temporary directory of its own"
                .to_string(),
        )
        .into());
    }
    let bar = output::progress_bar(0, "drill on the server");
    let report: CliResult<snapshotter::DrillReport> =
        remote.post_streamed("/v1/admin/drill", &json!({}), &mut |p| show_remote_progress(&bar, &p, "stage"));
    bar.finish_and_clear();
    print_drill(format, &report?, false)
}

/// Moves `bar` to a progress line of the server's.
fn show_remote_progress(bar: &indicatif::ProgressBar, line: &serde_json::Value, stage_field: &str) {
    let number = |k: &str| line.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    if let Some(stage) = line.get(stage_field).and_then(|s| s.as_str()) {
        bar.set_message(stage.to_string());
    }
    let (done, total) = if line.get("files_total").is_some() {
        (number("files_done"), number("files_total"))
    } else {
        (number("done"), number("total"))
    };
    bar.set_length(total);
    bar.set_position(done);
}

/// Drills `store` into `scratch`. `own`: the command's temporary directory (removed on a
/// signal and at the end) and whether the scratch copy is the user's, kept and named at the end.
fn drill_local(
    store: crate::store::Store,
    format: Format,
    scratch: Option<PathBuf>,
    own: Option<(PathBuf, bool)>,
) -> CliResult<Exit> {
    // A scratch of our own lives in a fresh directory of its own: the copy's staging directory
    // goes beside the scratch, so removing that one directory removes everything.
    let (scratch, temporary, kept) = match (scratch, own) {
        (Some(s), Some((root, kept))) => (s, Some(root), kept),
        (Some(s), None) => (s, None, true),
        (None, Some((root, _))) => (root.join("copy"), Some(root), false),
        (None, None) => {
            let root = crate::store::temp_scratch();
            if let Err(e) = std::fs::create_dir(&root) {
                store.close();
                return Err(CliError::io("create the drill's temporary directory", &root, e));
            }
            (root.join("copy"), Some(root), false)
        }
    };
    let interrupt = match Interrupt::install(temporary.clone()) {
        Ok(interrupt) => interrupt,
        Err(e) => {
            store.close();
            if let Some(root) = &temporary {
                let _ = std::fs::remove_dir_all(root);
            }
            return Err(e);
        }
    };
    let (bar, mut staged) = staged_progress();
    let mut progress = |p: Progress| {
        if !matches!(p.stage, Stage::CopyLog | Stage::CopyCheckpoints) {
            // The copy is complete: a signal from now on ends the drill at once.
            interrupt.commit();
        }
        staged(p);
    };
    let result = store.drill(&scratch, interrupt.cancel_flag(), &mut progress);
    bar.finish_and_clear();
    store.close();
    interrupt.remove_cleanup();
    print_drill(format, &result?, kept)
}

fn print_drill(format: Format, report: &snapshotter::DrillReport, kept: bool) -> CliResult<Exit> {
    let mut out = Out::new();
    match format {
        Format::Text => {
            out.line(&format!("recovery drill: {}", if report.ok { "ok" } else { "FAILED" }))?;
            out.line(&format!("  events lost                 {}", report.events_lost))?;
            out.line(&format!("  events verified in the copy {}", report.events_verified))?;
            out.line(&format!("  checkpoints verified        {}", report.checkpoints_verified))?;
            out.line(&format!("  restore                     {} ms", report.restore_ms))?;
            out.line(&format!(
                "  rebuild from checkpoint     {} ms ({} events replayed{})",
                report.rebuild_from_checkpoint_ms,
                report.events_replayed_from_checkpoint,
                report
                    .checkpoint_used
                    .map_or(", no checkpoint usable".to_string(), |s| format!(" after checkpoint {s}"))
            ))?;
            out.line(&format!(
                "  rebuild from position 0     {} ms ({} events replayed)",
                report.rebuild_from_zero_ms, report.events_replayed_from_zero
            ))?;
            for m in &report.mismatches {
                out.line(&format!("  MISMATCH: {}", m.detail))?;
            }
            if kept {
                out.line(&format!("  scratch copy kept in {}", report.scratch.display()))?;
            }
        }
        Format::Json | Format::Ndjson => out.json_line(report)?,
    }
    out.flush()?;
    Ok(if report.ok { Exit::Ok } else { Exit::Integrity })
}

pub fn backup(dir: &Path, format: Format, args: BackupArgs) -> CliResult<Exit> {
    let report = match Remote::explicit(&args.server)? {
        Some(remote) => backup_remote(&remote, &args)?,
        None => match crate::store::open_writer_to_copy(dir) {
            Ok(log) => {
                let report = backup_local(&log, &args);
                log.close();
                report?
            }
            Err(e) => backup_remote(&Remote::after_open_error(dir, &args.server, e.into())?, &args)?,
        },
    };
    let mut out = Out::new();
    match format {
        Format::Text => out.line(&format!(
            "backed up {} segments and {} checkpoints to {} (head position {}; {} objects written, {} present already, {} bytes); manifest {}",
            report.segments,
            report.checkpoints,
            report.url,
            report.head_position.map_or("none: the log is empty".into(), |p| p.to_string()),
            report.objects_written,
            report.objects_present,
            report.bytes_written,
            report.manifest
        ))?,
        Format::Json | Format::Ndjson => out.json_line(&report)?,
    }
    out.flush()?;
    Ok(Exit::Ok)
}

fn backup_local(log: &log_engine::Log, args: &BackupArgs) -> CliResult<crate::backup::BackupReport> {
    let location = crate::backup::Location::parse(&args.to).map_err(crate::backup::BackupError::from)?;
    let rt = client_runtime()?;
    let bar = output::progress_bar(0, "backing up");
    let options = crate::backup::BackupOptions { incremental: args.incremental };
    let report = crate::backup::take(log, &location, options, rt.handle(), &mut |p| {
        bar.set_message(format!("backing up {}", p.stage));
        bar.set_length(p.files_total);
        bar.set_position(p.files_done);
    });
    bar.finish_and_clear();
    Ok(report?)
}

fn backup_remote(remote: &Remote, args: &BackupArgs) -> CliResult<crate::backup::BackupReport> {
    // The server resolves a relative path against its own working directory: refuse it here,
    // before anything is sent, as the server would.
    crate::backup::Location::parse_absolute(&args.to).map_err(crate::backup::BackupError::from)?;
    let bar = output::progress_bar(0, "backup on the server");
    let body = json!({"to": args.to, "incremental": args.incremental});
    let report = remote.post_streamed("/v1/admin/backup", &body, &mut |p| show_remote_progress(&bar, &p, "stage"));
    bar.finish_and_clear();
    report
}

/// The runtime the object store's futures run on in a command (one worker drives their I/O).
fn client_runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| CliError::Server(format!("cannot start the runtime for the backup's storage: {e}")))
}

/// Restores the newest backup at `from` into `to`, with a progress bar.
fn restore_backup(
    from: &str,
    to: &Path,
    overwrite: Overwrite,
) -> CliResult<(crate::backup::Location, crate::backup::RestoreReport)> {
    let location = crate::backup::Location::parse(from).map_err(crate::backup::BackupError::from)?;
    let rt = client_runtime()?;
    let bar = output::progress_bar(0, "restoring");
    let report = crate::backup::restore(&location, to, overwrite, rt.handle(), &mut |p| {
        bar.set_message(format!("restoring {}", p.stage));
        bar.set_length(p.files_total);
        bar.set_position(p.files_done);
    });
    bar.finish_and_clear();
    Ok((location, report?))
}

fn restore_from(from: &str, format: Format, args: &RestoreArgs) -> CliResult<Exit> {
    let overwrite = if args.force { Overwrite::Force } else { Overwrite::Refuse };
    let (location, report) = restore_backup(from, &args.to, overwrite)?;
    let mut out = Out::new();
    match format {
        Format::Text => out.line(&format!(
            "restored {} segments and {} checkpoints from {} ({}) into {}; the copy verifies: {} events, head position {}",
            report.segments,
            report.checkpoints,
            location.url,
            report.manifest,
            report.dir.display(),
            report.events_verified,
            report.head_position.map_or("none".into(), |p| p.to_string()),
        ))?,
        Format::Json | Format::Ndjson => out.json_line(&report)?,
    }
    out.flush()?;
    Ok(Exit::Ok)
}

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Add a key generation: every event appended from now on is sealed with it; events
    /// sealed before stay readable with theirs. Needs the key (--key-file, CAIRN_KEY_FILE or
    /// CAIRN_KEY).
    Rotate(KeysRotateArgs),
}

#[derive(Debug, Args)]
pub struct KeysRotateArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `cairn keys rotate`: through the server when one holds the directory (as `scavenge` does),
/// otherwise on the directory's key store itself.
pub fn keys(dir: &Path, format: Format, command: KeysCommand) -> CliResult<Exit> {
    let KeysCommand::Rotate(args) = command;
    let remote_rotate = |remote: &Remote| remote.post::<crate::http::keys::RotateJson>("/v1/admin/keys/rotate");
    let remote = match Remote::explicit(&args.server)? {
        Some(remote) => Some(remote),
        None => Remote::running_in(dir, &args.server)?,
    };
    let rotated = match remote {
        Some(remote) => remote_rotate(&remote)?,
        None => match crate::store::open_writer(dir) {
            Ok(log) => {
                let rotated = crate::http::keys::rotate(&log);
                log.close();
                rotated.map_err(|e| match e {
                    crate::http::keys::RotateError::NotEncrypted => CliError::from(InputError(
                        "the log is not encrypted, or no key was given: pass --key-file FILE (or CAIRN_KEY_FILE, \
                         CAIRN_KEY) to rotate its key"
                            .into(),
                    )),
                    crate::http::keys::RotateError::Log(e) => CliError::log(dir, e),
                })?
            }
            Err(e) => remote_rotate(&Remote::after_open_error(dir, &args.server, e.into())?)?,
        },
    };
    let mut out = Out::new();
    match format {
        Format::Text => out.line(&format!(
            "rotated: new events are sealed with key generation {}; the key store holds generations {:?}",
            rotated.generation, rotated.generations
        ))?,
        Format::Json | Format::Ndjson => out.json_line(&rotated)?,
    }
    out.flush()?;
    Ok(Exit::Ok)
}
