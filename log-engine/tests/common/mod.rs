//! Helpers shared by the log-engine integration tests.
#![allow(dead_code)]

pub mod golden_encrypted;

use log_engine::{ExpectedVersion, Log, NewEvent, Options};
use std::path::Path;

/// Small segments so that tests cross segment boundaries quickly.
pub const SMALL_SEGMENT: u64 = 64 * 1024;

pub fn small_options() -> Options {
    Options { segment_size: SMALL_SEGMENT, ..Options::default() }
}

pub fn open_small(dir: &Path) -> Log {
    Log::open(dir, small_options()).expect("open")
}

/// A JSON event whose data names its stream and sequence number.
pub fn event(stream: &str, n: u64) -> NewEvent {
    NewEvent::json("Tick", &serde_json::json!({"stream": stream, "n": n, "pad": "x".repeat(100)}))
}

pub fn append_n(log: &Log, stream: &str, n: u64) {
    for i in 0..n {
        log.append(stream, ExpectedVersion::Any, vec![event(stream, i)]).expect("append");
    }
}
