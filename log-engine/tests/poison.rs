//! A failed fdatasync or write poisons the log: the failing group is not acknowledged, nothing
//! later is, and a reopen recovers the acknowledged prefix. ENOSPC while preparing a segment is
//! an ordinary error.

mod common;

use common::*;
use log_engine::faults::{FaultFs, Op};
use log_engine::{Error, ExpectedVersion, Log, Options, Position};
use std::sync::Arc;

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

#[test]
fn failed_fdatasync_poisons_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::new();
    let log = Log::open(dir.path(), Options { fs: Arc::new(fs.clone()), ..small_options() }).unwrap();
    append_n(&log, "s", 5);
    fs.inject(Op::Sync, 0, EIO);
    let err = log.append("s", ExpectedVersion::Any, vec![event("s", 5)]).unwrap_err();
    assert!(matches!(err, Error::Poisoned { .. }), "{err}");
    assert!(err.to_string().contains("fdatasync"), "{err}");
    // Sticky: later appends fail at once, even though the file system works again.
    let err = log.append("s", ExpectedVersion::Any, vec![event("s", 6)]).unwrap_err();
    assert!(matches!(err, Error::Poisoned { .. }), "{err}");
    assert!(log.poisoned().is_some());
    // Readers still see exactly the acknowledged events.
    assert_eq!(log.read_all(Position(0), 100).unwrap().len(), 5);
    drop(log);
    let log = Log::open(dir.path(), small_options()).unwrap();
    let events = log.read_all(Position(0), 100).unwrap();
    assert!(events.len() >= 5, "an acknowledged event was lost");
    log.append("s", ExpectedVersion::Any, vec![event("s", 7)]).unwrap();
    assert!(log.verify(None, |_| {}).unwrap().ok);
}

#[test]
fn failed_write_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::new();
    let log = Log::open(dir.path(), Options { fs: Arc::new(fs.clone()), ..small_options() }).unwrap();
    append_n(&log, "s", 2);
    fs.inject(Op::Write, 0, EIO);
    assert!(matches!(log.append("s", ExpectedVersion::Any, vec![event("s", 2)]), Err(Error::Poisoned { .. })));
    assert!(matches!(log.append("s", ExpectedVersion::Any, vec![event("s", 3)]), Err(Error::Poisoned { .. })));
}

#[test]
fn enospc_preparing_a_segment_is_an_ordinary_error() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::new();
    let log = Log::open(dir.path(), Options { fs: Arc::new(fs.clone()), ..small_options() }).unwrap();
    // The first preallocation (the first segment) has happened; fail every later one.
    for _ in 0..1000 {
        fs.inject(Op::Preallocate, 0, ENOSPC);
    }
    let mut acknowledged = 0u64;
    let err = loop {
        match log.append("s", ExpectedVersion::Any, vec![event("s", acknowledged)]) {
            Ok(_) => acknowledged += 1,
            Err(e) => break e,
        }
        assert!(acknowledged < 10_000, "the segment never filled up");
    };
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("No space left on device"), "{err}");
    assert!(log.poisoned().is_none(), "ENOSPC while preparing a segment must not poison");
    assert_eq!(log.read_all(Position(0), 100_000).unwrap().len() as u64, acknowledged);
    drop(log);
    let log = Log::open(dir.path(), small_options()).unwrap();
    assert_eq!(log.read_all(Position(0), 100_000).unwrap().len() as u64, acknowledged);
    // With space back, appends roll over to a new segment.
    log.append("s", ExpectedVersion::Any, vec![event("s", acknowledged)]).unwrap();
    assert!(log.verify(None, |_| {}).unwrap().ok);
}
