//! `cairn repair`: the operator's way out of damage that the open path refuses.
//!
//! Two repairs, each one of the engine's explicit recovery modes (`log_engine::Recovery`):
//! - Damage in the newest segment (a flipped byte, a zeroed sector below the durable
//!   watermark), or a torn tail: `SalvageNewestSegment` cuts the segment at the end of the last
//!   good batch, keeps the cut bytes in `torn/<segment>-<offset>.bin`, and the log continues
//!   from there.
//! - A lost newest segment (`--accept-missing-tail`): `AcceptMissingTail` continues the log where
//!   the lost segment began, after checking that no checkpoint proves the log reached further
//!   (then continuing would hand out used positions again, and repair refuses).
//!
//! It looks first as a reader (no lock, no writes) to learn what is wrong, then opens as the
//! writer, so it refuses to run while another process writes the directory. It asks nothing and
//! prints exactly what it cut. Damage inside a sealed segment is not something to cut away:
//! `cairn verify` reports it, and a backup restores it.

use std::path::Path;

use clap::Args;
use log_engine::{Error as LogError, Log, Options, Recovery};
use serde::Serialize;

use crate::error::{CliError, CliResult, Exit};
use crate::output::{Format, Out};
use crate::store::StoreError;

#[derive(Debug, Args)]
pub struct RepairArgs {
    /// Accept that the newest segment file is lost (its events are gone) and continue the log
    /// where it began. Refused when more than one segment is missing or a checkpoint proves the
    /// log reached further.
    #[arg(long)]
    pub accept_missing_tail: bool,
}

/// What repair did, for `-o json`.
#[derive(Debug, Serialize)]
struct RepairJson {
    /// False when there was nothing to repair.
    repaired: bool,
    /// `damage`, `torn_tail` or `missing_segment`; absent when nothing was repaired.
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    /// The segment cut, or the missing segment's first position, as its file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    segment: Option<String>,
    /// Byte offset in the segment from which everything was cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    /// The first position that is gone (the log continues from it).
    #[serde(skip_serializing_if = "Option::is_none")]
    first_lost_position: Option<u64>,
    /// Bytes cut, and where they are kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_cut: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kept_in: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    head_position: Option<u64>,
}

pub fn repair(dir: &Path, format: Format, args: RepairArgs) -> CliResult<Exit> {
    let open_error = |source| CliError::from(StoreError::Open { dir: dir.to_path_buf(), source });
    let mut report = RepairJson {
        repaired: false,
        kind: None,
        segment: None,
        offset: None,
        first_lost_position: None,
        bytes_cut: None,
        kept_in: None,
        detail: None,
        head_position: None,
    };
    // Look first, as a reader: what is wrong, and where the good events end.
    let recovery = match Log::open_read_only(dir, Options::default()) {
        Err(LogError::MissingSegment { path, segment, next_position, newest }) => {
            if !args.accept_missing_tail {
                return Err(open_error(LogError::MissingSegment { path, segment, next_position, newest }));
            }
            // A checkpoint at or beyond the lost segment's first position proves the log
            // reached there: continuing at that position would hand used positions out again.
            let highest = snapshotter::Snapshotter::highest_position(dir).map_err(StoreError::from)?;
            if let Some(checkpoint) = highest.filter(|p| p.0 >= segment.0) {
                return Err(CliError::Integrity(format!(
                    "segment file {} is missing, and a checkpoint at position {checkpoint} proves the log reached at \
                     least that far: continuing the log at position {segment} would hand out positions that were \
                     used. Restore the data directory from a backup",
                    path.display()
                )));
            }
            report.kind = Some("missing_segment");
            report.segment = Some(segment.to_string());
            report.first_lost_position = Some(segment.0);
            report.detail = Some(format!("segment file {} was missing; its events are lost", path.display()));
            Recovery::AcceptMissingTail
        }
        Err(source) => return Err(open_error(source)),
        Ok(reader) => {
            let stop = reader.read_stop();
            let end = reader.segment_files().last().map(|f| f.bytes);
            reader.close();
            let Some(stop) = stop else {
                let mut out = Out::new();
                match format {
                    Format::Text => out.line(&format!(
                        "nothing to repair: the newest segment of {} ends with a complete batch",
                        dir.display()
                    ))?,
                    Format::Json | Format::Ndjson => out.json_line(&report)?,
                }
                out.flush()?;
                return Ok(Exit::Ok);
            };
            report.kind = Some(if stop.corrupt { "damage" } else { "torn_tail" });
            report.segment = Some(stop.segment.to_string());
            report.offset = end;
            report.first_lost_position = stop.position.map(|p| p.0);
            report.detail = Some(format!("at byte offset {}: {}", stop.offset, stop.kind));
            if let Some(end) = end {
                let kept = dir.join("torn").join(format!("{}-{end}.bin", stop.segment));
                report.kept_in = Some(kept.display().to_string());
            }
            Recovery::SalvageNewestSegment
        }
    };
    // Now as the writer (which refuses while another process holds the lock): the engine cuts,
    // keeping the bytes aside, or continues after the missing segment.
    let log = Log::open(dir, Options { recovery, ..Options::default() }).map_err(open_error)?;
    report.head_position = log.head().map(|h| h.position.0);
    log.close();
    report.repaired = true;
    if let Some(kept) = &report.kept_in {
        report.bytes_cut = std::fs::metadata(kept).ok().map(|m| m.len());
    }

    let mut out = Out::new();
    match format {
        Format::Text => {
            let head =
                report.head_position.map_or("the log is now empty".to_string(), |p| format!("head position {p}"));
            match report.kind {
                Some("missing_segment") => out.line(&format!(
                    "repaired {}: accepted the loss of segment {} ({}); the log continues at position {}; {head}",
                    dir.display(),
                    report.segment.as_deref().unwrap_or_default(),
                    report.detail.as_deref().unwrap_or_default(),
                    report.first_lost_position.unwrap_or_default()
                ))?,
                _ => out.line(&format!(
                    "repaired {}: cut segment {} from byte offset {} ({} bytes, kept in {}); {}; events from position {} \
                     on in that segment are gone; {head}",
                    dir.display(),
                    report.segment.as_deref().unwrap_or_default(),
                    report.offset.unwrap_or_default(),
                    report.bytes_cut.unwrap_or_default(),
                    report.kept_in.as_deref().unwrap_or("torn/"),
                    report.detail.as_deref().unwrap_or_default(),
                    report.first_lost_position.map_or("?".to_string(), |p| p.to_string()),
                ))?,
            }
        }
        Format::Json | Format::Ndjson => out.json_line(&report)?,
    }
    out.flush()?;
    Ok(Exit::Ok)
}
