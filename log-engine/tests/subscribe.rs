//! Subscriptions catch up from disk and then follow live appends with no gap and no duplicate,
//! in position order, while appends run concurrently.

mod common;

use common::*;
use log_engine::{Durability, ExpectedVersion, Filter, Log, Options, Position, StartFrom};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_then_live_sees_every_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options { durability: Durability::None, ..small_options() }).unwrap();
    append_n(&log, "early", 300);
    let mut all = log.subscribe(StartFrom::Position(Position(0)), Filter::default());
    let mut only_b = log.subscribe(
        StartFrom::Position(Position(0)),
        Filter { stream_prefix: Some("live-b".into()), ..Filter::default() },
    );
    let writers: Vec<_> = ["live-a", "live-b"]
        .into_iter()
        .map(|stream| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..400 {
                    log.append_async(stream, ExpectedVersion::Any, vec![event(stream, i)]).await.unwrap();
                }
            })
        })
        .collect();
    for expected in 0..1100u64 {
        let event = all.next().await.unwrap().unwrap();
        assert_eq!(event.position, Position(expected));
    }
    for version in 0..400u64 {
        let event = only_b.next().await.unwrap().unwrap();
        assert_eq!((event.stream.as_str(), event.version.0), ("live-b", version));
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(all.position(), Position(1100));
}

#[tokio::test]
async fn from_end_skips_history_and_ends_when_the_log_closes() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "old", 5);
    let mut sub = log.subscribe(StartFrom::End, Filter::default());
    log.append_async("new", ExpectedVersion::Any, vec![event("new", 0)]).await.unwrap();
    assert_eq!(sub.next().await.unwrap().unwrap().position, Position(5));
    log.clone().close();
    assert!(sub.next().await.is_none());
}

/// A subscription to a fork delivers what a read of the fork returns: the shared prefix it
/// reads (from the source's first readable version when it was forked; those events keep the
/// source's name), then its own events, live ones included. Before, only its own events came.
#[tokio::test]
async fn a_subscription_to_a_fork_delivers_its_shared_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options { durability: Durability::None, ..small_options() }).unwrap();
    append_n(&log, "source", 5);
    let truncated = log_engine::StreamMetadata { truncate_before: Some(1), ..Default::default() };
    log.set_stream_metadata("source", truncated).unwrap();
    log.fork_stream("source", "fork", log_engine::StreamVersion(3)).unwrap();
    append_n(&log, "other", 2);
    append_n(&log, "fork", 1);
    let mut sub = log.subscribe(
        StartFrom::Position(Position(0)),
        Filter { stream: Some("fork".into()), type_prefix: Some("Ti".into()), ..Filter::default() },
    );
    let expected = [("source", 1), ("source", 2), ("source", 3), ("fork", 4), ("fork", 5)];
    let read: Vec<(String, u64)> = log
        .read_stream("fork", None, 100, log_engine::Direction::Forward)
        .unwrap()
        .into_iter()
        .map(|e| (e.stream, e.version.0))
        .collect();
    let mut seen = Vec::new();
    for i in 0..expected.len() {
        if i == 4 {
            // Live: appended after the subscription caught up.
            append_n(&log, "fork", 1);
        }
        let event = sub.next().await.unwrap().unwrap();
        seen.push((event.stream, event.version.0));
    }
    let expected: Vec<(String, u64)> = expected.iter().map(|&(s, v)| (s.to_string(), v)).collect();
    assert_eq!(seen, expected);
    assert_eq!(read, expected[..4], "what a read of the fork returned before the live append");
}
