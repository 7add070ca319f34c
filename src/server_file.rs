//! The address a running `cairn serve` records in its data directory
//! ([`snapshotter::SERVER_FILE`], `server.json`: `{"url", "pid"}`), so that commands run beside
//! it (`backup`, `drill`, `stats`, ...) reach it over HTTP instead of failing on its lock.
//!
//! The server writes the file once it is bound (tmp + rename, so a reader never sees half of
//! it) and removes it when it stops cleanly. A server killed outright leaves it behind: the file
//! is believed only while its process is alive and the directory's lock is held, so a stale one
//! is detected (and said) instead of sending a command to a dead address or another process.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRecord {
    /// The base URL to reach the server at, e.g. `http://127.0.0.1:7070`.
    pub url: String,
    /// The server's process id.
    pub pid: u32,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(snapshotter::SERVER_FILE)
}

/// Records that this process serves `dir` at `url`.
pub fn record(dir: &Path, url: &str) -> std::io::Result<()> {
    let record = ServerRecord { url: url.to_string(), pid: std::process::id() };
    let tmp = dir.join(format!(".{}.tmp", snapshotter::SERVER_FILE));
    std::fs::write(&tmp, serde_json::to_vec(&record).expect("a record serializes"))?;
    std::fs::rename(&tmp, path(dir))
}

/// Removes the record, if it is this process's.
pub fn remove(dir: &Path) {
    if read(dir).is_ok_and(|r| r.pid == std::process::id()) {
        let _ = std::fs::remove_file(path(dir));
    }
}

fn read(dir: &Path) -> Result<ServerRecord, String> {
    let bytes = std::fs::read(path(dir)).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// The server that holds `dir`, found through its record: `Ok(None)` when there is no record;
/// an error saying why when the record is stale or unreadable.
pub fn discover(dir: &Path) -> Result<Option<ServerRecord>, String> {
    let file = path(dir);
    if !file.exists() {
        return Ok(None);
    }
    let record = read(dir).map_err(|e| format!("the server record {} cannot be read: {e}", file.display()))?;
    let alive = rustix::process::Pid::from_raw(i32::try_from(record.pid).unwrap_or(0))
        .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok());
    if !alive {
        return Err(format!(
            "the server record {} is stale: process {} that wrote it is gone (a server killed without a clean stop \
             leaves it; the next `cairn serve` replaces it)",
            file.display(),
            record.pid
        ));
    }
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_found_while_its_process_lives_and_removed_by_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(discover(dir.path()), Ok(None));
        record(dir.path(), "http://127.0.0.1:1").unwrap();
        let found = discover(dir.path()).unwrap().unwrap();
        assert_eq!((found.url.as_str(), found.pid), ("http://127.0.0.1:1", std::process::id()));
        remove(dir.path());
        assert_eq!(discover(dir.path()), Ok(None));
    }

    #[test]
    fn a_record_of_a_dead_process_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        // Process ids are below 2^22 on Linux: this one is never alive.
        let record = ServerRecord { url: "http://127.0.0.1:1".into(), pid: (1 << 22) + 7 };
        std::fs::write(path(dir.path()), serde_json::to_vec(&record).unwrap()).unwrap();
        let e = discover(dir.path()).unwrap_err();
        assert!(e.contains("stale"), "{e}");
    }
}
