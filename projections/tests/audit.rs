//! The audit view through its facade: appending entries, queries by every filter and their
//! combinations, time ranges, order and pagination, and proofs against the log.

mod common;

use common::*;
use log_engine::{ExpectedVersion, NewEvent, Position, Uuid};
use projections::{
    Actor, ActorType, AuditQuery, Category, Level, NewAuditEntry, Order, Projection, Target, TraceContext, Views,
};
use serde_json::json;

fn entry(i: usize) -> NewAuditEntry {
    let actor_kind = if i.is_multiple_of(2) { ActorType::Agent } else { ActorType::User };
    let actor = Actor { kind: actor_kind, id: format!("actor-{}", i % 3), name: None, roles: vec!["ops".into()] };
    let level = [Level::Info, Level::Warn, Level::Error][i % 3];
    let category = [Category::AgentActivity, Category::DataAccess][i % 2];
    NewAuditEntry {
        target: Some(Target { kind: "doc".into(), id: format!("doc-{}", i % 4), name: None, properties: None }),
        context: TraceContext {
            trace_id: Some(format!("trace-{}", i / 5)),
            workflow_id: Some(format!("wf-{}", i % 2)),
            task_id: Some(format!("task-{i}")),
            ..TraceContext::default()
        },
        outcome: Some("success".into()),
        metadata: Some(json!({"i": i})),
        ..NewAuditEntry::new(level, category, "doc.read", actor)
    }
}

/// Appends `n` entries and returns them with their positions.
fn seed(views: &Views, n: usize) -> Vec<(usize, Position, Uuid)> {
    let audit = views.audit();
    let out: Vec<_> = (0..n)
        .map(|i| {
            let a = audit.append(&entry(i), None).unwrap();
            (i, a.position, a.id)
        })
        .collect();
    caught_up(views);
    out
}

/// The entry numbers a query returns (from the metadata `i`).
fn numbers(views: &Views, q: &AuditQuery) -> Vec<usize> {
    let page = views.audit().query(q).unwrap();
    page.entries.iter().map(|e| e.entry.metadata.as_ref().unwrap()["i"].as_u64().unwrap() as usize).collect()
}

#[test]
fn append_answers_id_position_and_hash() {
    let (_dir, log, views) = views();
    let appended = views.audit().append(&entry(0), None).unwrap();
    assert_eq!(appended.stream, "audit:agent_activity");
    assert_eq!(log.hash_at(appended.position).unwrap(), appended.hash);
    at(&views, appended.position);
    let got = views.audit().get(appended.id).unwrap();
    assert_eq!(got.entry, entry(0));
    assert_eq!(got.hash, appended.hash);
    let json = got.to_json();
    assert_eq!(json["actor"]["type"], "agent");
    assert_eq!(json["position"], appended.position.0);
    assert_eq!(json["id"], appended.id.to_string());

    // A retry with the same id is idempotent.
    let id = Uuid::new_v4();
    let first = views.audit().append(&entry(1), Some(id)).unwrap();
    let again = views.audit().append(&entry(1), Some(id)).unwrap();
    assert_eq!(first.position, again.position);

    let mut bad = entry(2);
    bad.event.clear();
    assert_eq!(views.audit().append(&bad, None).unwrap_err().code(), Some("invalid_input"));
    assert_eq!(views.audit().get(Uuid::nil()).unwrap_err().code(), Some("entry_not_found"));
}

#[test]
fn every_filter_matches_exactly_what_it_names() {
    let (_dir, _log, views) = views();
    let n = 40;
    seed(&views, n);
    let all: Vec<usize> = (0..n).collect();
    let expect =
        |pred: &dyn Fn(usize) -> bool| -> Vec<usize> { all.iter().rev().copied().filter(|&i| pred(i)).collect() };
    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery { limit: Some(1000), ..AuditQuery::default() };
        f(&mut q);
        q
    };
    assert_eq!(numbers(&views, &q(|_| {})), expect(&|_| true), "newest first by default");
    assert_eq!(numbers(&views, &q(|q| q.actor = Some("actor-1".into()))), expect(&|i| i % 3 == 1));
    assert_eq!(numbers(&views, &q(|q| q.category = Some(Category::DataAccess))), expect(&|i| i % 2 == 1));
    assert_eq!(numbers(&views, &q(|q| q.level = Some(Level::Error))), expect(&|i| i % 3 == 2));
    assert_eq!(numbers(&views, &q(|q| q.target = Some("doc-3".into()))), expect(&|i| i % 4 == 3));
    assert_eq!(numbers(&views, &q(|q| q.trace_id = Some("trace-2".into()))), expect(&|i| i / 5 == 2));
    assert_eq!(numbers(&views, &q(|q| q.workflow_id = Some("wf-0".into()))), expect(&|i| i % 2 == 0));
    assert_eq!(numbers(&views, &q(|q| q.task_id = Some("task-7".into()))), vec![7]);
    // Agent id falls back to the actor's id when the actor is an agent.
    assert_eq!(numbers(&views, &q(|q| q.agent_id = Some("actor-0".into()))), expect(&|i| i % 2 == 0 && i % 3 == 0));
    let combined = q(|q| {
        q.actor = Some("actor-2".into());
        q.level = Some(Level::Error);
        q.workflow_id = Some("wf-1".into());
    });
    assert_eq!(numbers(&views, &combined), expect(&|i| i % 3 == 2 && i % 2 == 1));
    assert!(numbers(&views, &q(|q| q.actor = Some("nobody".into()))).is_empty());
}

#[test]
fn order_pagination_and_time_ranges() {
    let (_dir, _log, views) = views();
    let n = 23;
    seed(&views, n);
    for order in [Order::Asc, Order::Desc] {
        let mut got = Vec::new();
        let mut after = None;
        loop {
            let q = AuditQuery {
                order,
                limit: Some(5),
                after,
                category: Some(Category::AgentActivity),
                ..Default::default()
            };
            let page = views.audit().query(&q).unwrap();
            assert!(page.entries.len() <= 5);
            got.extend(page.entries.iter().map(|e| e.position));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(got.len(), 12, "every even entry once ({order:?})");
        let sorted = got.windows(2).all(|w| if order == Order::Asc { w[0] < w[1] } else { w[0] > w[1] });
        assert!(sorted, "{order:?} order holds across pages");
    }
    let all = views.audit().query(&AuditQuery { order: Order::Asc, limit: Some(100), ..Default::default() }).unwrap();
    let ts: Vec<u64> = all.entries.iter().map(|e| e.timestamp_ms).collect();
    let (since, until) = (ts[5], ts[15]);
    let window = AuditQuery {
        since: Some(since),
        until: Some(until),
        order: Order::Asc,
        limit: Some(100),
        ..Default::default()
    };
    let page = views.audit().query(&window).unwrap();
    let expected: Vec<u64> = ts.iter().copied().filter(|&t| t >= since && t < until).collect();
    assert_eq!(
        page.entries.iter().map(|e| e.timestamp_ms).collect::<Vec<_>>(),
        expected,
        "since inclusive, until exclusive"
    );
    let bad = AuditQuery { since: Some(10), until: Some(5), ..Default::default() };
    assert_eq!(views.audit().query(&bad).unwrap_err().code(), Some("invalid_input"));
}

#[test]
fn query_strings_deserialize_into_queries() {
    let q: AuditQuery = serde_json::from_value(json!({"actor": "a", "category": "data_access", "level": "warn",
        "order": "asc", "limit": 10, "after": 41}))
    .unwrap();
    assert_eq!(q.category, Some(Category::DataAccess));
    assert_eq!(q.level, Some(Level::Warn));
    assert_eq!(q.order, Order::Asc);
    assert_eq!(q.after, Some(Position(41)));
}

#[test]
fn proofs_verify_against_the_log_and_catch_a_tampered_view() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let views = Views::open(log.clone()).unwrap();
    let seeded = seed(&views, 3);
    let (_, _, id) = seeded[1];
    let proof = views.audit().proof(id).unwrap();
    assert!(proof.verified, "{:?}", proof.detail);
    assert_eq!(proof.to_json()["verified"], true);
    let head = log.head().unwrap().position;

    // Tamper with the view's state (as a corrupted checkpoint would) and start views on it.
    let mut entries = views.runner().read(|all| all.iter().find(|p| p.name() == "audit").unwrap().entries());
    views.stop();
    let bytes = &mut entries[1].1;
    let at = bytes.windows(7).position(|w| w == b"success").expect("the outcome is in the entry");
    bytes[at..at + 7].copy_from_slice(b"failure");
    let mut audit = fresh("audit");
    audit.load(entries).unwrap();
    let mut restored: Vec<(Box<dyn Projection>, Option<Position>)> = vec![(audit, Some(head))];
    for name in ["kv", "meta"] {
        restored.push((fresh(name), None));
    }
    let tampered = Views::start(log.clone(), restored).unwrap();
    caught_up(&tampered);
    let proof = tampered.audit().proof(id).unwrap();
    assert!(!proof.verified, "a changed entry must not verify");
    assert!(proof.detail.unwrap().contains("differs"));
    assert!(tampered.audit().proof(seeded[0].2).unwrap().verified, "untouched entries still verify");
}

#[test]
fn malformed_entries_are_recorded_and_skipped() {
    let (_dir, log, views) = views();
    let bad = log
        .append("audit:security", ExpectedVersion::Any, vec![NewEvent::json("audit.entry", &json!({"level": "loud"}))])
        .unwrap();
    log.append("audit:security", ExpectedVersion::Any, vec![NewEvent::json("Other", &json!({}))]).unwrap();
    let good = views.audit().append(&entry(0), None).unwrap();
    at(&views, good.position);
    let page = views.audit().query(&AuditQuery::default()).unwrap();
    assert_eq!(page.entries.len(), 1);
    let status = views.status();
    assert_eq!(status.views.iter().find(|v| v.name == "audit").unwrap().errors, 1);
    assert_eq!(status.recent_errors[0].position, bad.last_position);
}
