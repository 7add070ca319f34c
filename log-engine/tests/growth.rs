//! A store costs what it holds.
//!
//! Issue 23 item 6: every data directory cost 128 MiB of disk (256 MiB once the spare segment
//! existed), zero-filled before the first append. The first segment is now small
//! (`SEGMENT_SIZE_START`, 1 MiB) and each next one doubles up to the configured segment size; a
//! request larger than the next segment gets a segment large enough for it.

mod common;

use common::event;
use log_engine::{Direction, ExpectedVersion, Log, NewEvent, Options, Position, SEGMENT_SIZE_START};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes allocated on disk to every file under `dir` (what `du` counts).
fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(p) = pending.pop() {
        let meta = std::fs::metadata(&p).unwrap();
        if meta.is_dir() {
            pending.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            total += meta.blocks() * 512;
        }
    }
    total
}

/// Issue 23 item 6: a fresh store with a few events takes about a megabyte, not 128 MiB.
#[test]
fn a_fresh_store_with_a_few_events_uses_little_disk() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options::default()).unwrap();
    for n in 0..20 {
        log.append("agent-7", ExpectedVersion::Any, vec![event("agent-7", n)]).unwrap();
    }
    drop(log);
    let used = disk_usage(dir.path());
    assert!(used <= 2 * SEGMENT_SIZE_START, "a store of 20 events uses {used} bytes of disk");
    let log = Log::open(dir.path(), Options::default()).unwrap();
    assert_eq!(log.read_all(Position(0), 100).unwrap().len(), 20);
}

/// Segments double from the small first one up to the configured size, and a request larger
/// than the next segment (the first append, even) gets one that holds it.
#[test]
fn segments_grow_to_the_configured_size_and_fit_large_requests() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options { segment_size: 4 * SEGMENT_SIZE_START, ..Options::default() };
    let log = Log::open(dir.path(), options()).unwrap();
    // A first request of ~1.5 MiB does not fit the 1 MiB first segment: it gets a larger one.
    // Incompressible, so that the request stays that large.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    let big: Vec<NewEvent> = (0..3).map(|_| NewEvent::bytes("Blob", noise(500 * 1024))).collect();
    log.append("blobs", ExpectedVersion::NoStream, big).unwrap();
    let mut n = 0;
    while log.segment_files().len() < 5 {
        let batch = (0..50).map(|i| event("agent", n + i)).collect();
        log.append("agent", ExpectedVersion::Any, batch).unwrap();
        n += 50;
    }
    let sizes: Vec<u64> = log.segment_files().iter().map(|f| std::fs::metadata(&f.path).unwrap().len()).collect();
    let mib = SEGMENT_SIZE_START;
    assert_eq!(sizes[0], 2 * mib, "the empty 1 MiB first segment was replaced by one that fits: {sizes:?}");
    assert_eq!(&sizes[1..], &[4 * mib, 4 * mib, 4 * mib, 4 * mib], "{sizes:?}");
    let total = 3 + n as usize;
    assert_eq!(log.read_all(Position(0), total + 10).unwrap().len(), total);
    drop(log);
    let log = Log::open(dir.path(), options()).unwrap();
    assert_eq!(log.read_stream("blobs", None, 10, Direction::Forward).unwrap().len(), 3);
    assert_eq!(log.read_all(Position(0), total + 10).unwrap().len(), total);
    assert!(log.verify(None, |_| {}).unwrap().ok);
}

/// With a configured size above the start, segments double: 1, 2, 4, 8 MiB.
#[test]
fn segments_double_from_the_start_size() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options { segment_size: 8 * SEGMENT_SIZE_START, ..Options::default() }).unwrap();
    let mut n = 0;
    while log.segment_files().len() < 4 {
        let batch = (0..100).map(|i| event("agent", n + i)).collect();
        log.append("agent", ExpectedVersion::Any, batch).unwrap();
        n += 100;
    }
    let sizes: Vec<u64> = log.segment_files().iter().map(|f| std::fs::metadata(&f.path).unwrap().len()).collect();
    let mib = SEGMENT_SIZE_START;
    assert_eq!(sizes, vec![mib, 2 * mib, 4 * mib, 8 * mib]);
}
