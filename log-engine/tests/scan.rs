//! `Log::scan`, the borrowed replay: it hands out exactly the events `Log::for_each` copies out
//! (JSON and binary data, a snappy-compressed body, lifecycle events, logically erased events
//! and scavenged husks, with the same masking), honours `from`, `limit` and an early stop, and
//! keeps doing so across a reopen.

mod common;

use common::*;
use log_engine::{
    DeleteMode, Event, EventRef, ExpectedVersion, Log, NewEvent, Position, ScavengeOptions, StreamVersion,
};

fn copied(log: &Log, from: u64, limit: u64) -> Vec<Event> {
    let mut out = Vec::new();
    log.for_each(Position(from), limit, |e| {
        out.push(e);
        true
    })
    .unwrap();
    out
}

fn scanned(log: &Log, from: u64, limit: u64) -> Vec<Event> {
    let mut out = Vec::new();
    log.scan(Position(from), limit, |e: &EventRef<'_>| {
        out.push(e.to_event());
        true
    })
    .unwrap();
    out
}

#[test]
fn scan_reads_what_for_each_reads_of_every_kind_of_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open_small(dir.path());
    // Dead events in what will be sealed segments, for the scavenger to husk.
    append_n(&log, "doomed", 40);
    log.delete_stream("doomed", DeleteMode::Soft).unwrap();
    append_n(&log, "kept", 10);
    log.erase("kept", Some(StreamVersion(2)), Some(StreamVersion(4)), "test").unwrap();
    log.append("bin", ExpectedVersion::Any, vec![NewEvent::bytes("blob", vec![0, 159, 146, 150, 255])]).unwrap();
    // Compressible and above the compression threshold: stored snappy-compressed.
    let big = serde_json::json!({"text": "all work and no play ".repeat(2000)});
    log.append("big", ExpectedVersion::Any, vec![NewEvent::json("Big", &big)]).unwrap();
    // Enough to seal the segments above, so the scavenge rewrites them.
    append_n(&log, "filler", 400);
    let report = log.scavenge(&ScavengeOptions::default(), &mut |_| {}).unwrap();
    assert!(report.events_husked > 0, "{report:?}");
    for round in 0..2 {
        let all = copied(&log, 0, u64::MAX);
        assert_eq!(scanned(&log, 0, u64::MAX), all, "round {round}");
        assert!(all.iter().any(|e| e.erased && e.stream == "doomed"), "husks are in the log");
        assert!(all.iter().any(|e| e.erased && e.stream == "kept"), "logical erasures are in the log");
        assert!(all.iter().any(|e| e.stream == "big" && e.data_json() == Some(big.clone())));
        assert!(all.iter().any(|e| e.stream == "bin" && !e.data.is_json()));
        for (from, limit) in [(0, 1), (3, 17), (39, 5), (all.len() as u64 - 2, 10), (all.len() as u64, 10)] {
            assert_eq!(scanned(&log, from, limit), copied(&log, from, limit), "from {from}, limit {limit}");
        }
        // The callback stops the scan; the count says how many it saw.
        let mut seen = 0;
        let n = log
            .scan(Position(5), u64::MAX, |_| {
                seen += 1;
                seen < 3
            })
            .unwrap();
        assert_eq!((n, seen), (3, 3));
        drop(log);
        log = open_small(dir.path());
    }
}
