//! Shared by the fuzz targets: scratch directories on a memory file system, the options every
//! target opens with (small segments; the fault layer, whose fdatasync is free), and the
//! invariants a log that opened must keep.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use log_engine::faults::FaultFs;
use log_engine::{Error, ExpectedVersion, Log, NewEvent, Options, Position};

/// Segment size of every fuzzed log.
pub const SEGMENT: u64 = 64 * 1024;
/// Start of the record area (docs/format.md).
pub const HEADER_LEN: usize = 4096;

pub fn options() -> Options {
    Options { segment_size: SEGMENT, fs: Arc::new(FaultFs::new()), ..Options::default() }
}

pub fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let builder =
        tempfile::Builder::new().prefix("cairn-fuzz-").tempdir_in(if shm.is_dir() { shm } else { Path::new("/tmp") });
    builder.expect("a scratch directory")
}

pub fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join("log").join(format!("{first:020}.seg"))
}

/// An open log must be consistent: every event reads, positions are gapless, the chain
/// verifies, and it accepts an append and reopens with it. Returns the events read.
pub fn assert_consistent(dir: &Path, log: Log) -> Vec<log_engine::Event> {
    let mut events = Vec::new();
    let read = log.for_each(Position(0), u64::MAX, |e| {
        events.push(e);
        true
    });
    if let Err(e) = read {
        // Sealed segments are trusted at open and checked on read: damage there is reported.
        assert!(e.is_corruption(), "a read failed with something other than a corruption report: {e}");
        return events;
    }
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.position.0, i as u64, "positions are gapless");
    }
    let report = log.verify(None, |_| {}).expect("verify runs");
    if !report.ok {
        assert!(report.detail.is_some(), "a failed verification says where");
        return events;
    }
    let n = events.len() as u64;
    log.append("fuzz", ExpectedVersion::Any, vec![NewEvent::bytes("After", b"x".to_vec())])
        .expect("a consistent log accepts an append");
    drop(log);
    let log = Log::open(dir, options()).expect("a log that opened and took an append reopens");
    assert_eq!(log.stats().events, n + 1);
    events
}

/// Open may refuse damaged input, but only with a corruption report.
pub fn assert_refusal_is_a_report(e: &Error) {
    assert!(e.is_corruption(), "open failed with something other than a corruption report: {e}");
}
