//! How the CLI prints: the `-o text|json|ndjson` formats, event lines, and progress bars.
//!
//! Invariants: data goes to stdout, progress and logs to stderr; progress bars are drawn only
//! when stderr is a terminal; no colour is ever written (so `NO_COLOR` is honoured by
//! construction) and the `json` format prints exactly one JSON document.

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::error::{CliError, CliResult};
use crate::wire::EventJson;

/// Output format of a command (`-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON document.
    Json,
    /// One JSON object per event (or per line of output).
    Ndjson,
}

/// Buffered stdout that turns a closed pipe (`cairn read-all | head`) into a quiet stop.
#[derive(Debug)]
pub struct Out {
    inner: io::BufWriter<io::StdoutLock<'static>>,
}

impl Default for Out {
    fn default() -> Self {
        Out::new()
    }
}

impl Out {
    pub fn new() -> Out {
        Out { inner: io::BufWriter::with_capacity(64 * 1024, io::stdout().lock()) }
    }

    pub fn line(&mut self, text: &str) -> CliResult {
        writeln!(self.inner, "{text}").map_err(stdout_error)
    }

    /// One compact JSON document on its own line.
    pub fn json_line<T: Serialize>(&mut self, value: &T) -> CliResult {
        serde_json::to_writer(&mut self.inner, value).map_err(|e| stdout_error(e.into()))?;
        self.inner.write_all(b"\n").map_err(stdout_error)
    }

    /// One indented JSON document.
    pub fn json_pretty<T: Serialize>(&mut self, value: &T) -> CliResult {
        serde_json::to_writer_pretty(&mut self.inner, value).map_err(|e| stdout_error(e.into()))?;
        self.inner.write_all(b"\n").map_err(stdout_error)
    }

    pub fn flush(&mut self) -> CliResult {
        self.inner.flush().map_err(stdout_error)
    }

    /// Prints an event in the chosen format (`Json` prints it as one compact line, for callers
    /// that stream; callers that print one document collect events themselves).
    pub fn event(&mut self, format: Format, event: &EventJson) -> CliResult {
        match format {
            Format::Text => self.line(&event_text(event)),
            Format::Json | Format::Ndjson => self.json_line(event),
        }
    }
}

fn stdout_error(e: io::Error) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        // The reader has what it wanted (`| head`): stop quietly, successfully.
        return CliError::StdoutClosed;
    }
    CliError::io("write to", "standard output", e)
}

/// One line per event: `position  stream@version  type  timestamp  data`.
pub fn event_text(e: &EventJson) -> String {
    let data = match (&e.data, &e.data_b64) {
        _ if e.erased => "(erased)".to_string(),
        (Some(d), _) => d.get().to_string(),
        (None, Some(b)) => format!("(binary, base64) {b}"),
        (None, None) => String::new(),
    };
    let metadata = e.metadata.as_ref().map_or("{}", |m| m.get());
    let metadata = if metadata == "{}" { String::new() } else { format!("  metadata={metadata}") };
    format!("{:>8}  {}@{}  {}  {}  {}{}", e.position, e.stream, e.version, e.event_type, e.timestamp, data, metadata)
}

/// A progress bar on stderr for a job of `total` steps; hidden unless stderr is a terminal.
pub fn progress_bar(total: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), draw_target());
    bar.set_style(with_rate(
        ProgressStyle::with_template("{msg} [{bar:40}] {human_pos}/{human_len} ({rate}, {eta} left)")
            .expect("the template is valid")
            .progress_chars("=> "),
    ));
    bar.set_message(message);
    bar
}

/// A spinner with a running count, for jobs of unknown size; hidden unless stderr is a terminal.
pub fn progress_counter(message: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, draw_target());
    bar.set_style(with_rate(
        ProgressStyle::with_template("{spinner} {msg}: {human_pos} ({rate})").expect("the template is valid"),
    ));
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Adds `{rate}`: items per second in whole units (indicatif's own `{per_sec}` prints four
/// decimals, "1234.5678/s", which is noise).
fn with_rate(style: ProgressStyle) -> ProgressStyle {
    style.with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = write!(w, "{:.0}/s", state.per_sec());
    })
}

fn draw_target() -> ProgressDrawTarget {
    if io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// True when log lines on stderr may use ANSI colour.
pub fn stderr_colour() -> bool {
    io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    #[test]
    fn event_text_shows_stream_version_type_and_data() {
        let e = EventJson {
            position: 41,
            stream: "agent-7".into(),
            version: 3,
            id: uuid::Uuid::nil(),
            event_type: "ToolCalled".into(),
            timestamp: "2026-11-22T16:11:51.123Z".into(),
            metadata: Some(RawValue::from_string("{\"run\":1}".into()).unwrap()),
            data: Some(RawValue::from_string("{\"tool\":\"search\"}".into()).unwrap()),
            data_b64: None,
            hash: "00".into(),
            erased: false,
        };
        let line = event_text(&e);
        assert!(line.contains("agent-7@3  ToolCalled"), "{line}");
        assert!(line.contains("{\"tool\":\"search\"}"), "{line}");
        assert!(line.contains("metadata={\"run\":1}"), "{line}");
        let erased = EventJson { metadata: None, data: None, erased: true, ..e };
        let line = event_text(&erased);
        assert!(line.contains("agent-7@3  ToolCalled") && line.ends_with("(erased)"), "{line}");
    }
}
