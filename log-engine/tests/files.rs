//! What the log leaves on disk: who may read it.
//!
//! Issue 14 item 12: data files and directories were created world-readable (0644/0755). Every
//! file the log creates (segments, the spare segment, the lock file, torn-tail keepsakes) must be
//! readable by its owner only, and every directory (the data directory, `log/`, `torn/`) too.

mod common;

use common::*;
use log_engine::{ExpectedVersion, Log};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Every path under `root`, `root` included.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir() {
            let entries: Vec<_> = std::fs::read_dir(&out[i]).unwrap().map(|e| e.unwrap().path()).collect();
            out.extend(entries);
        }
        i += 1;
    }
    out
}

/// Issue 14 item 12: no file or directory of a data directory is open to group or others.
#[test]
fn data_files_and_directories_are_owner_only() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("data");
    let log = open_small(&dir);
    // Enough to roll over a few 64 KiB segments, so a spare segment is prepared as well.
    append_n(&log, "agent-1", 1500);
    let last = log.segment_files().last().unwrap().clone();
    log.append("agent-1", ExpectedVersion::Any, vec![event("agent-1", 1500), event("agent-1", 1501)]).unwrap();
    let end = log.segment_files().last().unwrap().bytes;
    drop(log);
    // Tear the last batch so that open keeps the cut bytes in torn/.
    let seg = std::fs::OpenOptions::new().write(true).open(&last.path).unwrap();
    seg.write_all_at(&[0u8; 16], end - 40).unwrap();
    drop(seg);
    let log = Log::open(&dir, small_options()).unwrap();
    drop(log);

    let paths = walk(&dir);
    let kinds = |suffix: &str| paths.iter().filter(|p| p.to_string_lossy().ends_with(suffix)).count();
    assert!(kinds(".seg") >= 2, "several segments: {paths:?}");
    assert_eq!(kinds("LOCK"), 1, "{paths:?}");
    assert!(dir.join("torn").is_dir(), "the torn tail was kept: {paths:?}");
    assert!(kinds(".bin") >= 1, "{paths:?}");
    for path in &paths {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}: readable beyond its owner", path.display());
    }
}
