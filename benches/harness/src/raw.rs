//! The physical limits the engine is measured against, taken in the same run on the same disk:
//! pwrite + fdatasync of exactly the bytes a commit writes, into a preallocated file whose
//! blocks were already written (so no extent conversion or size change reaches the journal),
//! and BLAKE3 over the same event bytes on one core.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{BenchError, Result};
use crate::stats::Measurement;
use crate::systems::Payloads;

/// Size of the baseline file; commits wrap around inside it.
const RAW_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// Zero-filling chunk.
const FILL_CHUNK: usize = 4 * 1024 * 1024;

/// A preallocated, fully written file for raw commits.
#[derive(Debug)]
pub struct RawFile {
    file: File,
    path: PathBuf,
    offset: u64,
}

impl RawFile {
    pub fn create(path: &Path) -> Result<RawFile> {
        let io = |what| move |e| BenchError::io(what, path, e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(io("create the raw baseline file"))?;
        let zeros = vec![0u8; FILL_CHUNK];
        let mut at = 0;
        while at < RAW_FILE_BYTES {
            file.write_all_at(&zeros, at).map_err(io("fill the raw baseline file"))?;
            at += FILL_CHUNK as u64;
        }
        file.sync_all().map_err(io("fsync the raw baseline file"))?;
        Ok(RawFile { file, path: path.to_path_buf(), offset: 0 })
    }

    /// Sequential commits of `commit_bytes` each (pwrite then fdatasync) until `run_for` has
    /// passed; each commit counts as `events_per_commit` events.
    pub fn commits(
        &mut self,
        commit_bytes: usize,
        events_per_commit: u64,
        run_for: Duration,
        payloads: &Payloads,
    ) -> Result<Measurement> {
        let buf: Vec<u8> = (0..).flat_map(|i| payloads.get(i).iter().copied()).take(commit_bytes).collect();
        let mut latencies = Vec::new();
        let start = Instant::now();
        let deadline = start + run_for;
        while Instant::now() < deadline {
            if self.offset + commit_bytes as u64 > RAW_FILE_BYTES {
                self.offset = 0;
            }
            let t = Instant::now();
            self.file.write_all_at(&buf, self.offset).map_err(|e| BenchError::io("pwrite", &self.path, e))?;
            self.file.sync_data().map_err(|e| BenchError::io("fdatasync", &self.path, e))?;
            latencies.push(t.elapsed().as_nanos() as u64);
            self.offset += commit_bytes as u64;
        }
        Ok(Measurement {
            events: latencies.len() as u64 * events_per_commit,
            elapsed: start.elapsed(),
            latencies_ns: latencies,
            note: Some(format!("{commit_bytes} bytes per commit")),
            syncs: None,
            cpu: None,
            reported: None,
        })
    }
}

/// BLAKE3 of each event's bytes (`frame_bytes` of them, as the log stores it), one core:
/// the ceiling for anything that hashes every event, like chain verification.
pub fn blake3_per_event(events: u64, frame_bytes: usize, payloads: &Payloads) -> Measurement {
    let frames: Vec<Vec<u8>> = (0..64u64)
        .map(|i| (0..).flat_map(|j| payloads.get(i * 7 + j).iter().copied()).take(frame_bytes).collect())
        .collect();
    let start = Instant::now();
    let mut acc = [0u8; 32];
    for i in 0..events {
        let h = blake3::hash(&frames[(i % frames.len() as u64) as usize]);
        acc[0] ^= h.as_bytes()[0];
    }
    std::hint::black_box(acc);
    Measurement {
        events,
        elapsed: start.elapsed(),
        latencies_ns: Vec::new(),
        note: Some(format!("{frame_bytes} bytes per event")),
        syncs: None,
        cpu: None,
        reported: None,
    }
}
