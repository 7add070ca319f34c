//! Publication of committed records from the writer to readers.
//!
//! The writer (writer.rs `Writer::publish`) writes a group's bytes with pwrite, makes them
//! durable, then publishes the new end with `Mapping::publish` (a Release store), then extends
//! the index under its write lock. Readers take the index's read lock, copy a record's location
//! and the segment's `Arc<Mapping>`, release the lock, and read the mapped bytes up to the
//! published length (an Acquire load). A reader must never see an indexed position whose bytes
//! are not yet there.
//!
//! log-engine uses std and parking_lot types, which loom cannot instrument, so this suite has
//! two parts:
//! - a stress test of the real log: one writer appending across segment rolls while reader
//!   threads read the newest indexed position, ranges, streams and the chain, asserting that
//!   every indexed position decodes to exactly the event that was appended;
//! - a loom model of the protocol itself, mirroring the real orderings (bytes, Release store of
//!   the published length, index under a lock; lock, Acquire load, bytes), exhaustively checked,
//!   plus the same model with the Release/Acquire pair weakened to Relaxed, which loom must
//!   catch (proving the model can fail).

mod reliability;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use log_engine::faults::SplitMix;
use log_engine::{Direction, Log, Position};
use reliability::*;

/// Reader threads in the stress test.
const READERS: usize = 3;
/// Batches the writer appends in the stress test.
const STRESS_BATCHES: u64 = if cfg!(debug_assertions) { 400 } else { 3_000 };

#[test]
fn readers_never_see_an_indexed_position_whose_bytes_fail_to_decode() {
    let seed = suite_seed("publication stress");
    let dir = scratch_dir();
    let log = Log::open(dir.path(), options()).unwrap();
    let done = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    std::thread::scope(|s| {
        for r in 0..READERS {
            let log = log.clone();
            let (done, reads) = (&done, &reads);
            s.spawn(move || {
                let mut rng = SplitMix(seed ^ r as u64);
                let mut regenerated: HashMap<Tag, Vec<Planned>> = HashMap::new();
                let mut check = |e: &log_engine::Event| {
                    let meta: serde_json::Value = serde_json::from_slice(&e.metadata).expect("metadata is JSON");
                    let tag = Tag::decode(meta["b"].as_str().expect("tag")).expect("tag");
                    let planned = regenerated.entry(tag).or_insert_with(|| flatten(&batch(seed, tag)));
                    let want = &planned[meta["i"].as_u64().expect("index") as usize];
                    assert_eq!(e.stream, want.stream, "position {}", e.position.0);
                    assert_eq!(e.data, want.event.data, "position {}", e.position.0);
                    reads.fetch_add(1, Ordering::Relaxed);
                };
                // Keep reading while the writer runs, then once more after it stopped.
                let mut last_round = false;
                loop {
                    last_round |= done.load(Ordering::Acquire);
                    if let Some(head) = log.head() {
                        // The newest indexed position: the one just published.
                        let e = log.read_event(head.position).expect("the head decodes");
                        assert_eq!(e.hash, head.hash);
                        check(&e);
                        let from = rng.below(head.position.0 + 1);
                        for e in log.read_all(Position(from), 64).expect("a range decodes") {
                            check(&e);
                        }
                        let stream = SHARED_STREAMS[rng.below(SHARED_STREAMS.len() as u64) as usize];
                        if let Ok(events) = log.read_stream(stream, None, 16, Direction::Backward) {
                            events.iter().for_each(&mut check);
                        }
                    }
                    if last_round {
                        break;
                    }
                }
            });
        }
        let (acks, err) = append_batches(&log, seed, 0, 0, STRESS_BATCHES);
        assert!(err.is_none(), "append: {err:?}");
        assert_eq!(acks.len() as u64, STRESS_BATCHES);
        done.store(true, Ordering::Release);
    });
    assert!(log.segment_files().len() > 2, "the stress test must cross segment rolls");
    assert!(log.verify(None, |_| {}).unwrap().ok);
    eprintln!("publication stress: {} events read and checked while being published", reads.load(Ordering::Relaxed));
}

/// The loom model of the publication protocol.
mod model {
    use loom::sync::atomic::{AtomicU64, AtomicU8, Ordering};
    use loom::sync::{Arc, RwLock};

    /// Records the writer publishes in the model.
    pub const RECORDS: usize = 2;
    /// Bytes per record in the model.
    pub const RECORD_LEN: usize = 2;

    /// A segment: its bytes (written with relaxed stores, like pwrite into the page cache that
    /// the map shows) and its published length.
    pub struct Segment {
        pub bytes: Vec<AtomicU8>,
        pub published: AtomicU64,
    }

    /// One run of the protocol with the given orderings for the publish store and the reader's
    /// load; panics (loom reports the execution) if a reader sees an indexed record whose bytes
    /// are not there, or published bytes that are not written.
    pub fn run(publish: Ordering, load: Ordering) {
        loom::model(move || {
            let segment = Arc::new(Segment {
                bytes: (0..RECORDS * RECORD_LEN).map(|_| AtomicU8::new(0)).collect(),
                published: AtomicU64::new(0),
            });
            // The index: offsets of committed records.
            let index = Arc::new(RwLock::new(Vec::<usize>::new()));

            let writer = {
                let (segment, index) = (segment.clone(), index.clone());
                loom::thread::spawn(move || {
                    for r in 0..RECORDS {
                        let at = r * RECORD_LEN;
                        for (i, b) in segment.bytes[at..at + RECORD_LEN].iter().enumerate() {
                            b.store(expected(r, i), Ordering::Relaxed);
                        }
                        // Mapping::publish: swap(Release) of the new end.
                        segment.published.swap((at + RECORD_LEN) as u64, publish);
                        index.write().unwrap().push(at);
                    }
                })
            };

            // A reader through the index (read_event/read_all/read_stream): lock, copy the
            // location, unlock, then Mapping::bytes (an Acquire load of the published length).
            let newest = index.read().unwrap().last().copied();
            if let Some(at) = newest {
                let len = segment.published.load(load) as usize;
                assert!(at + RECORD_LEN <= len, "indexed record at {at} beyond the published {len} bytes");
                check(&segment, at);
            }
            // A reader of the published prefix alone (a map handed out earlier): every byte
            // below the published length must be written.
            let len = segment.published.load(load) as usize;
            for at in (0..len).step_by(RECORD_LEN) {
                check(&segment, at);
            }
            writer.join().unwrap();
        });
    }

    fn expected(record: usize, i: usize) -> u8 {
        (record * 16 + i + 1) as u8
    }

    fn check(segment: &Segment, at: usize) {
        let r = at / RECORD_LEN;
        for i in 0..RECORD_LEN {
            let b = segment.bytes[at + i].load(Ordering::Relaxed);
            assert_eq!(b, expected(r, i), "record {r} byte {i} read before it was written");
        }
    }
}

#[test]
fn loom_the_publication_protocol_is_race_free_with_release_and_acquire() {
    model::run(loom::sync::atomic::Ordering::Release, loom::sync::atomic::Ordering::Acquire);
}

#[test]
fn loom_catches_the_protocol_with_relaxed_publication() {
    let caught = std::panic::catch_unwind(|| {
        model::run(loom::sync::atomic::Ordering::Relaxed, loom::sync::atomic::Ordering::Relaxed);
    });
    assert!(caught.is_err(), "the loom model must find the stale read that a Relaxed publication allows");
}
