//! Issue 14 item 2 (engine part): about a thousand idle connections exhausted the process's file
//! descriptors, the next segment roll's directory fsync failed with EMFILE, and the log was
//! poisoned (every append refused until a restart). Running out of descriptors is not a failed
//! fdatasync of written data: appends that need one may fail with
//! `Error::TooManyOpenFiles`, but the log is never poisoned, and appends succeed again once
//! descriptors are released.
//!
//! This file holds one test on purpose: it lowers the process's descriptor limit, which would
//! disturb other tests running beside it in the same binary.

mod common;

use common::*;
use log_engine::{Error, ExpectedVersion, Log, Position};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors the test leaves the process (after opening the log) before it takes the rest.
const SOFT_LIMIT: u64 = 256;

#[test]
fn running_out_of_file_descriptors_never_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "agent", 10);
    let mut acknowledged = 10u64;

    let saved = getrlimit(Resource::Nofile);
    setrlimit(Resource::Nofile, Rlimit { current: Some(SOFT_LIMIT), maximum: saved.maximum }).unwrap();
    // Take every descriptor left, as idle connections would.
    let mut hog = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => hog.push(f),
            Err(e) if e.raw_os_error() == Some(24) => break,
            Err(e) => panic!("unexpected error while exhausting descriptors: {e}"),
        }
        assert!(hog.len() < SOFT_LIMIT as usize, "the descriptor limit did not hold");
    }
    // Appends across several segment rolls (64 KiB segments, ~250 events each).
    let mut refused = 0;
    for n in 0..1500 {
        match log.append("agent", ExpectedVersion::Any, vec![event("agent", n)]) {
            Ok(_) => acknowledged += 1,
            Err(e @ Error::TooManyOpenFiles { .. }) => {
                refused += 1;
                assert!(e.to_string().contains("too many open files"), "{e}");
            }
            Err(e) => {
                drop(hog);
                setrlimit(Resource::Nofile, saved).unwrap();
                panic!("append {n} failed with something other than TooManyOpenFiles: {e}");
            }
        }
        assert!(log.poisoned().is_none(), "append {n}: running out of descriptors poisoned the log");
    }
    drop(hog);
    setrlimit(Resource::Nofile, saved).unwrap();
    eprintln!("with descriptors exhausted: {acknowledged} appends acknowledged, {refused} refused");

    // Descriptors are back: appends go on, and nothing acknowledged is missing.
    log.append("agent", ExpectedVersion::Any, vec![event("agent", 9999)]).unwrap();
    acknowledged += 1;
    assert_eq!(log.read_all(Position(0), 100_000).unwrap().len() as u64, acknowledged);
    assert!(log.segment_files().len() >= 2, "the appends rolled over to new segments");
    drop(log);
    let log = Log::open(dir.path(), small_options()).unwrap();
    assert_eq!(log.read_all(Position(0), 100_000).unwrap().len() as u64, acknowledged);
    assert!(log.verify(None, |_| {}).unwrap().ok);
}
