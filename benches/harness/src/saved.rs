//! benchmarks.json: a run's numbers and everything its report states about the run (the sizes,
//! the machine, when it started and how long it took), written beside benchmarks.md at the end
//! of every run. `--report-from` renders benchmarks.md and benchmarks.svg from it alone, so the
//! analysis can be written after seeing a 30-minute run's numbers without running it again.
//!
//! It keeps what the report reads: per-repetition [`Summary`](crate::stats::Summary) values
//! (rates, percentiles, CPU, sync counters), notes and errors, never raw latency samples. The
//! goals are written too, for readers of the file; `--report-from` recomputes them from the
//! numbers, exactly as the run did. A file of another [`FORMAT`] is refused by name, never half
//! read. Every `f64` reads back bit for bit (serde_json's `float_roundtrip`), and the run checks
//! that the file it wrote renders the report it wrote.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};
use crate::machine::Machine;
use crate::report::{self, Goal, Regeneration};
use crate::results::Results;
use crate::workloads::Scale;

/// Version of the file's layout; bump it when a field changes meaning or goes away.
pub const FORMAT: u32 = 1;

/// File name of a saved run, beside benchmarks.md.
pub const FILE_NAME: &str = "benchmarks.json";

/// What one run measured and the facts its report states about it.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedRun {
    /// Always [`FORMAT`] when written; checked before anything else is read.
    pub format: u32,
    pub scale: Scale,
    pub machine: Machine,
    pub results: Results,
    /// The verdicts as the run computed them, for readers of the file (not read back).
    #[serde(skip_deserializing)]
    pub goals: Vec<Goal>,
}

/// The first thing read from a file, so that another version is named rather than misread.
#[derive(Deserialize)]
struct Header {
    format: u32,
}

impl SavedRun {
    pub fn new(results: Results, machine: Machine, scale: Scale) -> SavedRun {
        let goals = report::goals(&results, &scale);
        SavedRun { format: FORMAT, scale, machine, results, goals }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a saved run has string keys only and always serializes")
    }

    /// Parses a saved run; `path` only names the file in errors.
    pub fn from_json(json: &str, path: &Path) -> Result<SavedRun> {
        let bad = |detail: String| BenchError::Saved { path: path.to_path_buf(), detail };
        let header: Header = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
        if header.format != FORMAT {
            return Err(bad(format!(
                "it is format {}, and this harness reads format {FORMAT} only (check out the harness that wrote it)",
                header.format
            )));
        }
        serde_json::from_str(json).map_err(|e| bad(e.to_string()))
    }

    /// Writes `out/benchmarks.json` (creating `out`) and returns its path.
    pub fn write(&self, out: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(out).map_err(|e| BenchError::io("create the output directory", out, e))?;
        let path = out.join(FILE_NAME);
        std::fs::write(&path, self.to_json()).map_err(|e| BenchError::io("write the saved run", &path, e))?;
        Ok(path)
    }

    pub fn read(path: &Path) -> Result<SavedRun> {
        let json = std::fs::read_to_string(path).map_err(|e| BenchError::io("read the saved run", path, e))?;
        SavedRun::from_json(&json, path)
    }
}

/// `--report-from`: writes benchmarks.md and benchmarks.svg into `out` from the saved run at
/// `file`, with the current analysis, without running anything.
pub fn regenerate(file: &Path, out: &Path) -> Result<()> {
    let saved = SavedRun::read(file)?;
    let from = file.file_name().map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned());
    let note = Regeneration { on: crate::run::utc_now(), from };
    let md = report::write(out, &saved, Some(&note))?;
    eprintln!(
        "wrote {} and benchmarks.svg from {} (a --{} run started {})",
        md.display(),
        file.display(),
        saved.scale.name,
        saved.results.started
    );
    report::print_goals(&saved);
    Ok(())
}

/// After a run: warns when the file just written would not render the same report (a value
/// JSON cannot hold, such as a non-finite rate), so that a broken file is noticed now and not
/// after the next analysis is written. A warning only: the run's own report is already written.
pub fn check_reproducible(path: &Path, saved: &SavedRun) {
    match SavedRun::read(path) {
        Ok(back) if report::render(&back, None) == report::render(saved, None) => {}
        Ok(_) => eprintln!("warning: {} does not render the same report; --report-from would differ", path.display()),
        Err(e) => eprintln!("warning: --report-from could not use the saved run: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::results::{Cell, Kind, Table};
    use crate::stats::Summary;

    fn summary(events_per_second: f64, p50_us: Option<f64>) -> Summary {
        Summary {
            events_per_second,
            p50_us,
            p99_us: p50_us.map(|p| p * 3.1),
            p999_us: None,
            seconds: 0.5,
            events_per_sync: Some(17.25),
            sync_us: Some(812.0),
            cpu_us_per_event: Some(0.1 + 0.2),
            cpu_seconds: Some(1.0 / 3.0),
        }
    }

    fn small_run() -> SavedRun {
        let cell = |system: &str, runs: Vec<Option<Summary>>| Cell {
            system: system.into(),
            runs,
            notes: vec!["53 events per fdatasync | batched".into()],
            errors: Vec::new(),
        };
        let mut w1 = Table::new("W1", "1 appender, 1 event per commit", Kind::Append);
        w1.cells.push(cell("cairn", vec![Some(summary(1234.567, Some(801.3))), None, Some(summary(999.9, Some(0.7)))]));
        w1.cells.push(Cell {
            errors: vec!["redis could not start: no redis-server on PATH".into()],
            ..cell("redis", vec![Some(summary(1e-7, None))])
        });
        let mut reopen = Table::new("W6 warm", "reopen after SIGKILL at 300,000 events, page cache warm", Kind::Reopen);
        reopen.cells.push(cell("cairn", vec![Some(summary(4.2e6, Some(123_456.789)))]));
        let results = Results {
            tables: vec![w1, reopen],
            skipped: vec![("postgres".into(), "initdb is not installed".into())],
            systems: vec![("cairn".into(), "log-engine 0.1.0".into(), "one writer thread".into())],
            frame_bytes: 337,
            started: "2026-11-22 20:39 UTC".into(),
            seconds: 271.828,
        };
        let machine = Machine {
            cpu: "Some CPU @ 2.00GHz".into(),
            cores: 2,
            memory: "7.8 GiB".into(),
            kernel: "6.1.0".into(),
            filesystem: "ext4 on /dev/vda (mounted at /, rw,relatime)".into(),
            rustc: "rustc 1.89.0".into(),
        };
        SavedRun::new(results, machine, Scale::FULL)
    }

    #[test]
    fn a_saved_run_reads_back_equal_and_renders_the_same_report() {
        let run = small_run();
        let back = SavedRun::from_json(&run.to_json(), Path::new("benchmarks.json")).expect("reads back");
        assert_eq!(back.format, FORMAT);
        assert_eq!(back.results, run.results);
        assert_eq!(back.machine, run.machine);
        assert_eq!(back.scale, run.scale);
        assert_eq!(report::render(&back, None), report::render(&run, None));
        assert_eq!(crate::svg::render(&back.results), crate::svg::render(&run.results));
    }

    #[test]
    fn the_file_keeps_the_goals_as_computed() {
        let json: serde_json::Value = serde_json::from_str(&small_run().to_json()).expect("valid JSON");
        let goals = json["goals"].as_array().expect("goals are written");
        assert_eq!(goals.len(), report::goals(&small_run().results, &Scale::FULL).len());
        assert!(goals.iter().any(|g| g["what"].as_str().is_some_and(|w| w.starts_with("W1:"))));
    }

    #[test]
    fn a_regenerated_report_keeps_the_run_header_and_adds_one_line() {
        let run = small_run();
        let note = Regeneration { on: "2026-11-23 09:00 UTC".into(), from: "benchmarks.json".into() };
        let original = report::render(&run, None);
        let regenerated = report::render(&run, Some(&note));
        assert!(original.contains("-- --full` (started 2026-11-22 20:39 UTC, took 272 s)"));
        let added: Vec<&str> = regenerated.lines().filter(|l| !original.lines().any(|o| o == *l)).collect::<Vec<_>>();
        assert_eq!(added.len(), 1, "added lines: {added:?}");
        assert!(added[0].starts_with("Regenerated on 2026-11-23 09:00 UTC from `benchmarks.json`"));
        assert_eq!(regenerated.replace(&format!("{}\n\n", added[0]), ""), original);
    }

    #[test]
    fn another_format_version_is_refused_by_name() {
        let json = small_run().to_json().replacen(&format!("\"format\": {FORMAT}"), "\"format\": 99", 1);
        let e = SavedRun::from_json(&json, Path::new("/tmp/old/benchmarks.json")).expect_err("format 99");
        let msg = e.to_string();
        assert!(msg.contains("/tmp/old/benchmarks.json") && msg.contains("format 99"), "{msg}");
    }

    #[test]
    fn an_unknown_scale_or_a_truncated_file_is_refused() {
        let json = small_run().to_json();
        let renamed = json.replacen("\"name\": \"full\"", "\"name\": \"huge\"", 1);
        let e = SavedRun::from_json(&renamed, Path::new("b.json")).expect_err("unknown scale");
        assert!(e.to_string().contains("unknown scale name \"huge\""), "{e}");
        let e = SavedRun::from_json(&json[..json.len() / 2], Path::new("b.json")).expect_err("truncated");
        assert!(e.to_string().starts_with("b.json is not a saved run"), "{e}");
    }
}
