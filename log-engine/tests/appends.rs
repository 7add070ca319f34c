//! Append semantics: expected versions (checked atomically by the writer, even under
//! contention), idempotent retries by event id, atomic multi-stream appends, and limits that
//! reject bad input without writing anything; blocking appenders that commit on their own
//! thread mixed with queued and async ones, every acknowledged event durable and in order.

mod common;

use common::*;
use log_engine::{
    Error, ExpectedVersion, Log, NewEvent, Options, Position, StreamAppend, StreamName, StreamVersion, Uuid,
    BATCH_EVENTS_MAX, EVENT_SIZE_MAX,
};
use std::sync::atomic::{AtomicU64, Ordering};

#[test]
fn expected_version_rules() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    let wrong = |r: Result<_, Error>| match r {
        Err(Error::WrongExpectedVersion { actual, .. }) => actual,
        other => panic!("expected a wrong-expected-version error, got {other:?}"),
    };
    assert_eq!(wrong(log.append("s", ExpectedVersion::Exists, vec![event("s", 0)])), None);
    assert_eq!(wrong(log.append("s", ExpectedVersion::Exact(StreamVersion(0)), vec![event("s", 0)])), None);
    log.append("s", ExpectedVersion::NoStream, vec![event("s", 0)]).unwrap();
    assert_eq!(wrong(log.append("s", ExpectedVersion::NoStream, vec![event("s", 1)])), Some(StreamVersion(0)));
    log.append("s", ExpectedVersion::Exists, vec![event("s", 1)]).unwrap();
    log.append("s", ExpectedVersion::Exact(StreamVersion(1)), vec![event("s", 2)]).unwrap();
    assert_eq!(
        wrong(log.append("s", ExpectedVersion::Exact(StreamVersion(1)), vec![event("s", 3)])),
        Some(StreamVersion(2))
    );
    assert_eq!(log.stream_version("s"), Some(StreamVersion(2)));
    let err = log.append("s", ExpectedVersion::Exact(StreamVersion(7)), vec![event("s", 3)]).unwrap_err();
    assert_eq!(err.to_string(), "wrong expected version for stream s: expected 7, the stream is at version 2");
}

#[test]
fn concurrent_compare_and_append_never_both_win() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options { durability: log_engine::Durability::None, ..small_options() }).unwrap();
    let wins = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let log = &log;
            let wins = &wins;
            s.spawn(move || {
                for i in 0..200 {
                    let expected = match log.stream_version("counter") {
                        Some(v) => ExpectedVersion::Exact(v),
                        None => ExpectedVersion::NoStream,
                    };
                    match log.append("counter", expected, vec![event("counter", t * 1000 + i)]) {
                        Ok(_) => {
                            wins.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(Error::WrongExpectedVersion { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    // Every successful append extended the stream by exactly one; no two won the same version.
    let events = log.read_stream("counter", None, 10_000, log_engine::Direction::Forward).unwrap();
    assert_eq!(events.len() as u64, wins.load(Ordering::Relaxed));
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.version, StreamVersion(i as u64));
    }
}

#[test]
fn idempotent_retry_returns_the_original_positions_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    let id = Uuid::new_v4();
    let first = log.append("agent", ExpectedVersion::NoStream, vec![event("agent", 1).with_id(id)]).unwrap();
    append_n(&log, "other", 3);
    // The retry carries the original expected version: still recognised, nothing written.
    let retry = log.append("agent", ExpectedVersion::NoStream, vec![event("agent", 1).with_id(id)]).unwrap();
    assert_eq!(retry, first);
    assert_eq!(log.head().unwrap().position, Position(3));
    // Same id, different content: a clear error.
    let err = log.append("agent", ExpectedVersion::Any, vec![event("agent", 2).with_id(id)]).unwrap_err();
    assert!(matches!(err, Error::IdConflict { .. }), "{err}");
    assert!(err.to_string().contains("with different content"), "{err}");
    // A multi-event retry after a reopen, recognised by its exact expected version.
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let batch = || ids.iter().enumerate().map(|(i, id)| event("agent", 10 + i as u64).with_id(*id)).collect::<Vec<_>>();
    let original = log.append("agent", ExpectedVersion::Exact(StreamVersion(0)), batch()).unwrap();
    drop(log);
    let log = open_small(dir.path());
    let retry = log.append("agent", ExpectedVersion::Exact(StreamVersion(0)), batch()).unwrap();
    assert_eq!(retry, original);
    assert_eq!(log.head().unwrap().position, original.last_position);
}

#[test]
fn multi_stream_append_is_atomic_under_a_failed_check() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    log.append("b", ExpectedVersion::Any, vec![event("b", 0)]).unwrap();
    let request = vec![
        StreamAppend {
            stream: StreamName::new("a").unwrap(),
            expected: ExpectedVersion::NoStream,
            events: vec![event("a", 0)],
        },
        StreamAppend {
            stream: StreamName::new("b").unwrap(),
            expected: ExpectedVersion::NoStream,
            events: vec![event("b", 1)],
        },
    ];
    let err = log.append_multi(request).unwrap_err();
    assert!(matches!(&err, Error::WrongExpectedVersion { stream, .. } if stream == "b"), "{err}");
    assert_eq!(log.stream_version("a"), None, "the failed request wrote part of itself");
    let ok = log
        .append_multi(vec![
            StreamAppend {
                stream: StreamName::new("a").unwrap(),
                expected: ExpectedVersion::NoStream,
                events: vec![event("a", 0)],
            },
            StreamAppend {
                stream: StreamName::new("b").unwrap(),
                expected: ExpectedVersion::Exact(StreamVersion(0)),
                events: vec![event("b", 1)],
            },
        ])
        .unwrap();
    assert_eq!(ok.len(), 2);
    assert_eq!(ok[1].first_position, Position(2));
}

#[test]
fn bad_input_is_rejected_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    log.append("s", ExpectedVersion::Any, vec![event("s", 0)]).unwrap();
    let head = log.head();
    let too_long = "x".repeat(log_engine::STREAM_NAME_LEN_MAX + 1);
    for name in ["", "$system", "tab\there", too_long.as_str()] {
        let err = log.append(name, ExpectedVersion::Any, vec![event("s", 1)]).unwrap_err();
        assert!(matches!(err, Error::InvalidStreamName { .. }), "{name:?}: {err}");
    }
    let huge = NewEvent::bytes("Big", vec![0u8; EVENT_SIZE_MAX]);
    assert!(matches!(log.append("s", ExpectedVersion::Any, vec![huge]), Err(Error::LimitExceeded { .. })));
    let many = (0..=BATCH_EVENTS_MAX as u64).map(|i| event("s", i)).collect();
    assert!(matches!(log.append("s", ExpectedVersion::Any, many), Err(Error::LimitExceeded { .. })));
    let bad_json = NewEvent { data: log_engine::Payload::Json(b"{not json".to_vec()), ..event("s", 1) };
    assert!(matches!(log.append("s", ExpectedVersion::Any, vec![bad_json]), Err(Error::Invalid { .. })));
    let bad_meta = NewEvent { metadata: b"[1,2]".to_vec(), ..event("s", 1) };
    assert!(matches!(log.append("s", ExpectedVersion::Any, vec![bad_meta]), Err(Error::Invalid { .. })));
    assert!(matches!(log.append("s", ExpectedVersion::Any, vec![]), Err(Error::Invalid { .. })));
    assert!(matches!(
        log.append("s", ExpectedVersion::Any, vec![NewEvent::bytes("", vec![])]),
        Err(Error::Invalid { .. })
    ));
    assert_eq!(log.head(), head, "a rejected request wrote something");
}

#[test]
fn a_large_event_is_compressed_and_reads_back_identical() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options { segment_size: 4 * 1024 * 1024, ..Options::default() }).unwrap();
    let data = serde_json::json!({"text": "the same sentence again. ".repeat(20_000)});
    log.append("docs", ExpectedVersion::Any, vec![NewEvent::json("Doc", &data)]).unwrap();
    let stats = log.stats();
    assert!(stats.record_bytes < 100_000, "stored {} bytes for a 500 KB compressible event", stats.record_bytes);
    assert_eq!(log.read_event(Position(0)).unwrap().data_json().unwrap(), data);
}

/// The metrics the server exports add up: every appended event is counted once, every
/// fdatasync lands in one latency bucket and one batch-size bucket, and a sync covers groups.
#[test]
fn metrics_account_for_every_event_and_sync() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(open_small(dir.path()));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let stream = format!("agent-{t}");
                for n in 0..50 {
                    log.append(&stream, ExpectedVersion::Any, vec![event(&stream, n)]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let m = log.metrics();
    assert_eq!(m.events, 400);
    assert!(m.fsyncs >= 1 && m.fsyncs <= m.commits, "{} fsyncs for {} groups", m.fsyncs, m.commits);
    assert_eq!(m.fsync_buckets.len(), log_engine::FSYNC_BUCKETS_US.len() + 1);
    assert_eq!(m.fsync_buckets.iter().sum::<u64>(), m.fsyncs);
    assert_eq!(m.sync_batch_buckets.len(), log_engine::SYNC_BATCH_BUCKETS.len() + 1);
    assert_eq!(m.sync_batch_buckets.iter().sum::<u64>(), m.fsyncs);
    // Every event was made durable by a sync (none is acknowledged otherwise in Sync mode).
    assert_eq!(m.events_synced, 400);
}

/// Blocking appenders commit on their own thread when the writer is idle and queue behind it
/// otherwise; async appenders and lifecycle changes always queue. Mixed, durable, across segment
/// rolls: every acknowledged append is in the log after a reopen, at the positions it was told,
/// the streams gapless, the chain verified.
#[test]
fn direct_and_queued_commits_mixed_keep_every_acknowledged_append_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let acked: Vec<(String, u64)> = std::thread::scope(|s| {
        let mut threads = Vec::new();
        for t in 0..4u64 {
            let log = &log;
            threads.push(s.spawn(move || {
                let stream = format!("blocking-{t}");
                (0..60)
                    .map(|i| {
                        (
                            stream.clone(),
                            log.append(&stream, ExpectedVersion::Any, vec![event(&stream, i)])
                                .unwrap()
                                .first_position
                                .0,
                        )
                    })
                    .collect::<Vec<_>>()
            }));
        }
        let async_log = log.clone();
        threads.push(s.spawn(move || {
            runtime.block_on(async {
                let mut tasks = Vec::new();
                for t in 0..8u64 {
                    let log = async_log.clone();
                    tasks.push(tokio::spawn(async move {
                        let stream = format!("async-{t}");
                        let mut out = Vec::new();
                        for i in 0..30 {
                            let r =
                                log.append_async(&stream, ExpectedVersion::Any, vec![event(&stream, i)]).await.unwrap();
                            out.push((stream.clone(), r.first_position.0));
                        }
                        out
                    }));
                }
                let mut all = Vec::new();
                for task in tasks {
                    all.extend(task.await.unwrap());
                }
                all
            })
        }));
        let log = &log;
        threads.push(s.spawn(move || {
            for i in 0..10 {
                let stream = format!("doomed-{i}");
                log.append(&stream, ExpectedVersion::NoStream, vec![event(&stream, 0)]).unwrap();
                log.delete_stream(&stream, log_engine::DeleteMode::Soft).unwrap();
            }
            Vec::new()
        }));
        threads.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(acked.len(), 4 * 60 + 8 * 30);
    let head = log.head().unwrap().position.0;
    drop(log);
    let log = open_small(dir.path());
    assert_eq!(log.head().unwrap().position.0, head, "everything acknowledged survives the reopen");
    for (stream, position) in &acked {
        assert_eq!(&log.read_event(Position(*position)).unwrap().stream, stream, "position {position}");
    }
    for stream in (0..4).map(|t| format!("blocking-{t}")).chain((0..8).map(|t| format!("async-{t}"))) {
        let events = log.read_stream(&stream, None, 1000, log_engine::Direction::Forward).unwrap();
        let n: Vec<u64> = events.iter().map(|e| e.data_json().unwrap()["n"].as_u64().unwrap()).collect();
        assert_eq!(n, (0..n.len() as u64).collect::<Vec<_>>(), "stream {stream} in its appender's order");
    }
    assert!(log.verify(None, |_| {}).unwrap().ok);
}
