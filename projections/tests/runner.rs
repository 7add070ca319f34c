//! The runner: catch-up then live following, read-your-writes waits, starting from positions
//! loaded elsewhere, consistent cuts while paused, apply errors that stop nothing, clean stops,
//! and the synchronous rebuild.

mod common;

use std::time::Duration;

use common::*;
use log_engine::{Event, ExpectedVersion, Log, NewEvent, Position};
use projections::{rebuild, rebuild_with_progress, ApplyError, Changes, KvView, LoadError, Projection, Runner, Views};
use serde_json::json;

fn set(log: &Log, key: &str, value: i64) -> Position {
    log.append(&format!("kv:{key}"), ExpectedVersion::Any, vec![NewEvent::json("kv.set", &json!({"value": value}))])
        .unwrap()
        .last_position
}

fn kv_digest_at(log: &Log, up_to: Option<Position>) -> [u8; 32] {
    let mut fresh: Vec<Box<dyn Projection>> = vec![Box::new(KvView::new())];
    rebuild(log, &mut fresh, None, up_to).unwrap();
    fresh[0].digest()
}

/// Counts events; fails on `Boom` events.
#[derive(Default)]
struct Counter {
    seen: u64,
}

impl Projection for Counter {
    fn name(&self) -> &'static str {
        "counter"
    }
    fn apply(&mut self, event: &Event) -> Result<(), ApplyError> {
        if event.event_type == "Boom" {
            return Err(ApplyError::new("boom"));
        }
        assert!(event.event_type != "Panic", "a projection bug");
        self.seen += 1;
        Ok(())
    }
    fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![(b"seen".to_vec(), self.seen.to_le_bytes().to_vec())]
    }
    fn changes_since_mark(&self) -> Changes {
        Changes { upserts: self.entries(), removals: vec![] }
    }
    fn mark(&mut self) {}
    fn load(&mut self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), LoadError> {
        self.seen = u64::from_le_bytes(entries[0].1.clone().try_into().unwrap());
        Ok(())
    }
    fn apply_changes(&mut self, changes: &Changes) -> Result<(), LoadError> {
        self.load(changes.upserts.clone())
    }
}

#[test]
fn catches_up_then_follows_live_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    for i in 0..3000 {
        set(&log, &format!("k{}", i % 100), i);
    }
    let runner = Runner::start(log.clone(), vec![(Box::new(KvView::new()), None)]).unwrap();
    runner.wait_for(Position(2999), WAIT).unwrap();
    let last = set(&log, "live", 1);
    runner.wait_for(last, WAIT).unwrap();
    let live = runner.read(|views| views[0].digest());
    assert_eq!(live, kv_digest_at(&log, None), "incremental and rebuilt state agree");
    let status = runner.status();
    assert_eq!(status.applied_through, Some(last));
    assert_eq!(status.views[0].lag, 0);
    assert_eq!(status.stopped, None);
}

#[test]
fn waiting_for_a_position_not_yet_written_times_out() {
    let (_dir, log, views) = views();
    let p = set(&log, "a", 1);
    at(&views, p);
    let err = views.wait_for(Position(p.0 + 10), Duration::from_millis(20)).unwrap_err();
    assert_eq!(err.code(), Some("timeout"));
    assert!(err.to_string().contains(&format!("position {}", p.0 + 10)), "{err}");
}

#[test]
fn async_waits_see_writes_made_after_they_began() {
    let (_dir, log, views) = views();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let waiter = {
            let views = views.clone();
            tokio::spawn(async move { views.wait_for_async(Position(4), WAIT).await })
        };
        for i in 0..5 {
            set(&log, "k", i);
        }
        waiter.await.unwrap().unwrap();
        let err = views.wait_for_async(Position(99), Duration::from_millis(20)).await.unwrap_err();
        assert_eq!(err.code(), Some("timeout"));
    });
    assert_eq!(views.kv().get("k", projections::now_ms()).unwrap().value, json!(4));
}

#[test]
fn starts_from_mixed_positions_and_pauses_at_one_common_cut() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    for i in 0..500 {
        set(&log, &format!("k{}", i % 7), i);
    }
    // A kv view loaded to position 199 (as a checkpoint restore would), a counter from scratch.
    let mut restored: Vec<Box<dyn Projection>> = vec![Box::new(KvView::new())];
    rebuild(&log, &mut restored, None, Some(Position(199))).unwrap();
    let kv = restored.pop().unwrap();
    let runner =
        Runner::start(log.clone(), vec![(kv, Some(Position(199))), (Box::new(Counter::default()), None)]).unwrap();
    let (digest, seen, at) = runner
        .with_paused(|views, applied| {
            // Appends made while paused are not applied meanwhile.
            let before = views[0].digest();
            let p = set(&log, "during-pause", 1);
            assert_eq!(views[0].digest(), before);
            assert!(applied < Some(p));
            let seen = u64::from_le_bytes(views[1].entries()[0].1.clone().try_into().unwrap());
            (before, seen, applied)
        })
        .unwrap();
    let at = at.expect("the views have applied something");
    assert_eq!(seen, at.0 + 1, "the counter saw every event up to the cut");
    assert_eq!(digest, kv_digest_at(&log, Some(at)), "the kv view is exactly the state at the cut");
    runner.wait_for(Position(500), WAIT).unwrap();
    assert_eq!(runner.read(|v| v[0].digest()), kv_digest_at(&log, None));
    runner.stop();
}

#[test]
fn an_apply_error_is_recorded_and_stops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    set(&log, "a", 1);
    let boom = log.append("other", ExpectedVersion::Any, vec![NewEvent::json("Boom", &json!({}))]).unwrap();
    let last = set(&log, "b", 2);
    let runner =
        Runner::start(log.clone(), vec![(Box::new(Counter::default()), None), (Box::new(KvView::new()), None)])
            .unwrap();
    runner.wait_for(last, WAIT).unwrap();
    let status = runner.status();
    assert_eq!(status.views[0].errors, 1);
    assert_eq!(status.views[0].applied_through, Some(last), "the failing view went on");
    assert_eq!(status.views[1].errors, 0);
    let e = &status.recent_errors[0];
    assert_eq!((e.projection, e.position, e.event_type.as_str()), ("counter", boom.last_position, "Boom"));
    assert_eq!(
        e.to_string(),
        format!(
            "projection counter could not apply the Boom event at position {} (stream other): boom",
            boom.last_position
        )
    );
    assert_eq!(runner.read(|v| v[0].entries()[0].1.clone()), 2u64.to_le_bytes().to_vec());
}

#[test]
fn stopping_keeps_views_readable_and_fails_later_waits() {
    let (_dir, log, views) = views();
    let p = set(&log, "a", 1);
    at(&views, p);
    views.stop();
    views.stop();
    let status = views.status();
    assert!(status.stopped.as_deref().unwrap().contains("stopped"));
    assert_eq!(views.kv().get("a", projections::now_ms()).unwrap().value, json!(1));
    let later = set(&log, "a", 2);
    assert_eq!(views.wait_for(later, WAIT).unwrap_err().code(), Some("unavailable"));
    views.wait_for(p, WAIT).expect("a position already applied is still reached");
}

#[test]
fn closing_the_log_stops_the_runner() {
    let (_dir, log, views) = views();
    let p = set(&log, "a", 1);
    at(&views, p);
    log.close();
    let err = views.wait_for(Position(p.0 + 1), WAIT).unwrap_err();
    assert_eq!(err.code(), Some("unavailable"));
    assert!(views.status().stopped.unwrap().contains("closed"));
}

#[test]
fn start_rejects_positions_beyond_the_head_and_duplicate_names() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let err = Runner::start(log.clone(), vec![(Box::new(KvView::new()), Some(Position(0)))]).unwrap_err();
    assert!(err.to_string().contains("beyond the log's head"), "{err}");
    let err =
        Runner::start(log.clone(), vec![(Box::new(KvView::new()), None), (Box::new(KvView::new()), None)]).unwrap_err();
    assert!(err.to_string().contains("two projections are named kv"), "{err}");
    let err = Views::start(log, vec![(Box::new(KvView::new()), None)]).unwrap_err();
    assert!(err.to_string().contains("audit"), "{err}");
}

#[test]
fn rebuild_replays_a_range_and_reports_progress() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let mut empty: Vec<Box<dyn Projection>> = vec![Box::new(KvView::new())];
    assert_eq!(rebuild(&log, &mut empty, None, None).unwrap().events, 0, "an empty log rebuilds to nothing");
    for i in 0..100 {
        set(&log, "k", i);
    }
    log.append("kv:k", ExpectedVersion::Any, vec![NewEvent::json("kv.set", &json!({"no": 1}))]).unwrap();
    let mut views: Vec<Box<dyn Projection>> = vec![Box::new(KvView::new())];
    let mut reports = Vec::new();
    let done =
        rebuild_with_progress(&log, &mut views, None, Some(Position(49)), |at, target| reports.push((at, target)))
            .unwrap();
    assert_eq!((done.applied_through, done.events), (Some(Position(49)), 50));
    assert_eq!(reports.last(), Some(&(Position(49), Position(49))));
    let done = rebuild(&log, &mut views, Some(Position(49)), None).unwrap();
    assert_eq!((done.applied_through, done.events, done.error_count), (Some(Position(100)), 51, 1));
    assert_eq!(done.errors[0].position, Position(100));
    assert_eq!(views[0].digest(), kv_digest_at(&log, None), "two steps give the state of one");
    assert!(rebuild(&log, &mut views, Some(Position(100)), Some(Position(200))).is_err(), "beyond the head");
    assert!(rebuild(&log, &mut views, Some(Position(100)), Some(Position(5))).is_err(), "views already past");
}

/// issue 14 item 1: a projection that panics on an event (a bug, or a payload it did not
/// expect) must not stop every view on every start: the event is recorded as that view's apply
/// error, skipped, and the runner goes on.
#[test]
fn a_panicking_projection_skips_the_event_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let p = log.append("other", ExpectedVersion::Any, vec![NewEvent::json("Panic", &json!({}))]).unwrap();
    let q = log.append("other", ExpectedVersion::Any, vec![NewEvent::json("Fine", &json!({}))]).unwrap();
    let runner = Runner::start(log.clone(), vec![(Box::new(Counter::default()), None)]).unwrap();
    runner.wait_for(q.last_position, WAIT).unwrap();
    let status = runner.status();
    assert_eq!(status.stopped, None);
    assert_eq!(status.views[0].errors, 1);
    let last = status.views[0].last_error.clone().unwrap();
    assert_eq!(last.position, p.last_position);
    assert!(last.message.contains("panicked") && last.message.contains("a projection bug"), "{}", last.message);
    let seen = runner.read(|views| views[0].entries());
    assert_eq!(seen, vec![(b"seen".to_vec(), 1u64.to_le_bytes().to_vec())], "the later event applied");
}
