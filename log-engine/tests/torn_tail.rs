//! A torn tail is cut, never reported as corruption; a torn batch is all-or-nothing.
//!
//! The newest segment is cut (zero-filled) at every byte offset of its last batch: open must
//! recover to the previous complete batch, keep the cut bytes in `torn/`, and continue the chain.
//! A simulated power loss during a multi-event batch must leave all of it or none of it.

mod common;

use common::*;
use log_engine::faults::{FaultFs, Op};
use log_engine::{Error, ExpectedVersion, Log, Options, Position, Recovery, StreamAppend, StreamName};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("log")).unwrap();
    for entry in std::fs::read_dir(from.join("log")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join("log").join(entry.file_name())).unwrap();
    }
}

#[test]
fn cut_at_every_byte_of_the_last_batch_recovers_the_previous_batch() {
    let base = tempfile::tempdir().unwrap();
    let log = open_small(base.path());
    append_n(&log, "agent-1", 20);
    let kept_head = log.head().unwrap();
    let before = log.segment_files().last().unwrap().bytes;
    log.append("agent-1", ExpectedVersion::Any, vec![event("agent-1", 20), event("agent-1", 21), event("agent-1", 22)])
        .unwrap();
    let files = log.segment_files();
    let newest = files.last().unwrap().clone();
    let after = newest.bytes;
    drop(log);
    assert!(after > before);
    let name = newest.path.file_name().unwrap().to_owned();
    // Zeroing only the last frame's zero padding changes nothing.
    let image = std::fs::read(&newest.path).unwrap();
    let meaningful_end =
        before + image[before as usize..after as usize].iter().rposition(|&b| b != 0).unwrap() as u64 + 1;
    let full_head = Log::open(base.path(), small_options()).unwrap().head().unwrap();

    for cut in before..after {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        let seg = std::fs::OpenOptions::new().write(true).open(dir.path().join("log").join(&name)).unwrap();
        seg.write_all_at(&vec![0u8; (after - cut) as usize], cut).unwrap();
        drop(seg);

        let log = Log::open(dir.path(), small_options()).unwrap_or_else(|e| panic!("cut at {cut}: open failed: {e}"));
        let damaged = cut < meaningful_end;
        let (head, events) = if damaged { (kept_head, 20) } else { (full_head, 23) };
        assert_eq!(log.head(), Some(head), "cut at {cut}");
        assert_eq!(log.read_all(Position(0), 100).unwrap().len(), events, "cut at {cut}");
        let torn: Vec<_> = std::fs::read_dir(dir.path().join("torn")).map(|d| d.collect()).unwrap_or_default();
        let cut_bytes_kept = damaged && cut > before;
        assert_eq!(torn.len(), usize::from(cut_bytes_kept), "cut at {cut}: torn bytes kept aside");
        // The log continues from the cut: the chain joins up.
        log.append("agent-1", ExpectedVersion::Any, vec![event("agent-1", 99)]).unwrap();
        assert!(log.verify(None, |_| {}).unwrap().ok, "cut at {cut}");
    }
}

#[test]
fn strict_recovery_refuses_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "a", 3);
    let newest = log.segment_files().last().unwrap().clone();
    drop(log);
    let seg = std::fs::OpenOptions::new().write(true).open(&newest.path).unwrap();
    seg.write_all_at(&[0u8; 16], newest.bytes - 16).unwrap();
    let err = Log::open(dir.path(), Options { recovery: Recovery::Strict, ..small_options() }).unwrap_err();
    assert!(matches!(err, Error::TornTail { .. }), "{err}");
}

#[test]
fn power_loss_during_a_batch_leaves_all_or_nothing() {
    let batch = |n: u64| {
        vec![
            StreamAppend {
                stream: StreamName::new("orders").unwrap(),
                expected: ExpectedVersion::Any,
                events: (0..4).map(|i| event("orders", n * 10 + i)).collect(),
            },
            StreamAppend {
                stream: StreamName::new("payments").unwrap(),
                expected: ExpectedVersion::Any,
                events: (0..3).map(|i| event("payments", n * 10 + i)).collect(),
            },
        ]
    };
    let mut outcomes = [0u32; 2];
    for seed in 0..300u64 {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::new();
        let log = Log::open(dir.path(), Options { fs: Arc::new(fs.clone()), ..small_options() }).unwrap();
        for n in 0..5 {
            log.append_multi(batch(n)).unwrap();
        }
        // The next group's pwrite goes through; the power is cut before its fdatasync.
        let writes_before = fs.count(Op::Write);
        fs.crash_after(1);
        let err = log.append_multi(batch(5)).unwrap_err();
        assert!(matches!(err, Error::Poisoned { .. }), "seed {seed}: {err}");
        assert_eq!(fs.count(Op::Write), writes_before + 1, "seed {seed}");
        drop(log);
        fs.power_loss(seed).unwrap();

        let log = Log::open(dir.path(), small_options()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let events = log.read_all(Position(0), 1000).unwrap().len();
        assert!(events == 35 || events == 42, "seed {seed}: {events} events visible: a partial batch");
        outcomes[usize::from(events == 42)] += 1;
        assert!(log.verify(None, |_| {}).unwrap().ok, "seed {seed}");
    }
    // Both outcomes must occur, or the simulation is not exercising the tear.
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "outcomes {outcomes:?}");
}
