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
