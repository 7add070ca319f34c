//! What a run collected: one table per workload variant, one cell per system, one summary per
//! repetition (kept by repetition index, so that ratios pair runs taken side by side).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::stats::{median, Measurement, Summary};

/// How a table's numbers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Durable appends: events/s and commit latency.
    Append,
    /// Reads: events/s, and per-read latency where there is one.
    Read,
    /// Reopen time (the latency column holds it).
    Reopen,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub system: String,
    pub runs: Vec<Option<Summary>>,
    pub notes: Vec<String>,
    pub errors: Vec<String>,
}

impl Cell {
    pub fn median(&self) -> Option<Summary> {
        Summary::median_of(&self.runs.iter().flatten().copied().collect::<Vec<_>>())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Short id used in the ratio table and the plot, e.g. `W2 ×64`.
    pub id: String,
    pub title: String,
    pub kind: Kind,
    pub cells: Vec<Cell>,
}

impl Table {
    pub fn new(id: impl Into<String>, title: impl Into<String>, kind: Kind) -> Table {
        Table { id: id.into(), title: title.into(), kind, cells: Vec::new() }
    }

    pub fn cell(&self, system: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.system == system)
    }

    fn cell_mut(&mut self, system: &str) -> &mut Cell {
        if let Some(i) = self.cells.iter().position(|c| c.system == system) {
            return &mut self.cells[i];
        }
        self.cells.push(Cell { system: system.to_string(), runs: Vec::new(), notes: Vec::new(), errors: Vec::new() });
        self.cells.last_mut().expect("just pushed")
    }

    /// Files repetition `rep`'s outcome and prints a progress line.
    pub fn record(&mut self, system: &str, rep: usize, outcome: Result<Measurement>) {
        let id = self.id.clone();
        let cell = self.cell_mut(system);
        while cell.runs.len() <= rep {
            cell.runs.push(None);
        }
        match outcome {
            Ok(m) => {
                let s = m.summary();
                let p50 = s.p50_us.map(|p| format!(", p50 {p:.0} µs")).unwrap_or_default();
                eprintln!("  [{id}] rep {} {system}: {:.0} events/s{p50}", rep + 1, s.events_per_second);
                if let Some(note) = m.note {
                    if !cell.notes.contains(&note) {
                        cell.notes.push(note);
                    }
                }
                cell.runs[rep] = Some(s);
            }
            Err(e) => {
                eprintln!("  [{id}] rep {} {system}: FAILED: {e}", rep + 1);
                let e = e.to_string();
                if !cell.errors.contains(&e) {
                    cell.errors.push(e);
                }
            }
        }
    }

    /// Median over repetitions of `f(a) / f(b)`, pairing runs of the same repetition.
    pub fn paired_ratio(&self, a: &str, b: &str, f: impl Fn(&Summary) -> Option<f64>) -> Option<f64> {
        let (a, b) = (self.cell(a)?, self.cell(b)?);
        let ratios: Vec<f64> = a
            .runs
            .iter()
            .zip(&b.runs)
            .filter_map(|(x, y)| Some(f(x.as_ref()?)? / f(y.as_ref()?)?))
            .filter(|r| r.is_finite())
            .collect();
        median(&ratios)
    }

    /// cairn's throughput over `peer`'s, paired by repetition.
    pub fn throughput_ratio(&self, peer: &str) -> Option<f64> {
        self.paired_ratio("cairn", peer, |s| Some(s.events_per_second))
    }
}

/// Everything a run measured, plus what could not be measured and why.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub tables: Vec<Table>,
    /// (system, reason) for peers that could not start.
    pub skipped: Vec<(String, String)>,
    /// (system, version, concurrency model).
    pub systems: Vec<(String, String, String)>,
    /// Bytes one 256-byte event takes in cairn's log (frame included).
    pub frame_bytes: u64,
    /// When the run started, e.g. `2026-11-22 20:39 UTC`.
    pub started: String,
    /// Wall time of the whole run.
    pub seconds: f64,
}

impl Results {
    pub fn table(&self, id: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.id == id)
    }

    pub fn table_mut(&mut self, id: &str) -> &mut Table {
        self.tables.iter_mut().find(|t| t.id == id).unwrap_or_else(|| panic!("table {id} was never created"))
    }
}
