//! Compare-and-set under contention: many threads increment one key, each with a read of the
//! value and its version followed by a set expecting that version, retrying when another thread
//! won. No update may be lost: the final value equals the number of successful sets, and the
//! key's history has exactly one version per success. The store's own `incr` must hold the
//! same guarantee with no retries by the caller.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use common::*;
use log_engine::{ExpectedVersion, StreamVersion};
use projections::{now_ms, Error};
use serde_json::json;

const THREADS: u64 = 8;
const INCREMENTS: u64 = 40;

#[test]
fn compare_and_set_loses_no_update() {
    let (_dir, _log, views) = views();
    let kv = views.kv();
    kv.set("counter", json!(0), None, ExpectedVersion::NoStream).unwrap();
    let conflicts = AtomicU64::new(0);
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                let mut done = 0;
                while done < INCREMENTS {
                    // Read at least as fresh as the log is now, then try to move it on.
                    caught_up(&views);
                    let current = kv.get("counter", now_ms()).unwrap();
                    let next = current.value.as_i64().unwrap() + 1;
                    match kv.set("counter", json!(next), None, ExpectedVersion::Exact(current.version)) {
                        Ok(_) => done += 1,
                        Err(Error::WrongExpectedVersion { .. }) => {
                            conflicts.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            });
        }
    });
    caught_up(&views);
    let total = THREADS * INCREMENTS;
    let final_value = kv.get("counter", now_ms()).unwrap();
    assert_eq!(final_value.value, json!(total), "every successful compare-and-set counted once");
    assert_eq!(final_value.version, StreamVersion(total));
    eprintln!("{} conflicts resolved by retrying", conflicts.load(Ordering::Relaxed));
}

#[test]
fn concurrent_increments_lose_no_update() {
    let (_dir, _log, views) = views();
    let kv = views.kv();
    let answers = std::sync::Mutex::new(Vec::new());
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..INCREMENTS {
                    let n = kv.incr("hits", 1).unwrap().value;
                    answers.lock().unwrap().push(n);
                }
            });
        }
    });
    caught_up(&views);
    let total = (THREADS * INCREMENTS).cast_signed();
    assert_eq!(kv.get("hits", now_ms()).unwrap().value, json!(total));
    let mut answers = answers.into_inner().unwrap();
    answers.sort_unstable();
    assert_eq!(answers, (1..=total).collect::<Vec<_>>(), "each increment answered a distinct new value");
}
