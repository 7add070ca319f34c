//! The key-value store through its public facade: every operation, its answers, and its errors
//! (Redis semantics where they overlap), read back from the view.

mod common;

use common::*;
use log_engine::{ExpectedVersion, NewEvent, StreamVersion};
use projections::{now_ms, End, Error, TxnOp, TxnOutput};
use serde_json::json;

#[test]
fn set_get_exists_delete() {
    let (_dir, _log, views) = views();
    let kv = views.kv();
    let w = kv.set("session/42", json!({"step": 1}), None, ExpectedVersion::Any).unwrap();
    assert_eq!(w.version, StreamVersion(0));
    at(&views, w.position);
    let got = kv.get("session/42", now_ms()).unwrap();
    assert_eq!(got.value, json!({"step": 1}));
    assert_eq!(got.version, StreamVersion(0));
    assert_eq!(got.expires_at, None);
    assert!(kv.exists("session/42", now_ms()).unwrap());

    let w = kv.set("session/42", json!({"step": 2}), None, ExpectedVersion::Any).unwrap();
    assert_eq!(w.version, StreamVersion(1), "a key's version is its stream's version");
    at(&views, w.position);
    assert_eq!(kv.get("session/42", now_ms()).unwrap().value, json!({"step": 2}));

    let deleted = kv.delete("session/42", None).unwrap();
    assert!(deleted.value);
    let written = deleted.written.expect("a delete of a live key writes");
    at(&views, written.position);
    let err = kv.get("session/42", now_ms()).unwrap_err();
    assert_eq!(err.code(), Some("key_not_found"));
    assert_eq!(err.to_string(), "key \"session/42\" not found");
    assert!(!kv.exists("session/42", now_ms()).unwrap());
    let again = kv.delete("session/42", None).unwrap();
    assert_eq!((again.value, again.written), (false, None), "deleting an absent key writes nothing");
}

#[test]
fn compare_and_set_and_expected_versions() {
    let (_dir, _log, views) = views();
    let kv = views.kv();
    let w = kv.set("k", json!(1), None, ExpectedVersion::NoStream).unwrap();
    let err = kv.set("k", json!(2), None, ExpectedVersion::NoStream).unwrap_err();
    assert_eq!(err.code(), Some("wrong_expected_version"));
    assert_eq!(err.key(), Some("k"));
    let err = kv.set("k", json!(2), None, ExpectedVersion::Exact(StreamVersion(5))).unwrap_err();
    match err {
        Error::WrongExpectedVersion { actual, .. } => assert_eq!(actual, Some(StreamVersion(0))),
        other => panic!("expected a version conflict, got {other}"),
    }
    let w2 = kv.set("k", json!(2), None, ExpectedVersion::Exact(w.version)).unwrap();
    assert_eq!(w2.version, StreamVersion(1));
    let err = kv.delete("k", Some(StreamVersion(0))).unwrap_err();
    assert_eq!(err.code(), Some("wrong_expected_version"));
    at(&views, w2.position);
    assert_eq!(kv.get("k", now_ms()).unwrap().value, json!(2), "a failed delete changes nothing");
    assert!(kv.delete("k", Some(StreamVersion(1))).unwrap().value);
}

#[test]
fn ttl_counts_from_the_event_time_and_set_clears_it() {
    let (_dir, _log, views) = views();
    let kv = views.kv();
    let w = kv.set("lease", json!("held"), Some(60_000), ExpectedVersion::Any).unwrap();
    at(&views, w.position);
    let got = kv.get("lease", now_ms()).unwrap();
    let expires_at = got.expires_at.expect("a TTL gives an expiry");
    let history = kv.history("lease", 10).unwrap();
    assert_eq!(expires_at, history[0].timestamp_ms + 60_000, "the TTL counts from the event's timestamp");
    assert!(kv.get("lease", expires_at - 1).is_ok());
    assert_eq!(kv.get("lease", expires_at).unwrap_err().code(), Some("key_not_found"), "expired keys read as absent");
    assert!(!kv.exists("lease", expires_at).unwrap());
    assert!(kv.list("", None, 10, expires_at).unwrap().keys.is_empty(), "listing skips expired keys");
    let w = kv.set("lease", json!("held"), None, ExpectedVersion::Any).unwrap();
    at(&views, w.position);
    assert_eq!(kv.get("lease", now_ms()).unwrap().expires_at, None);
    assert_eq!(kv.set("x", json!(1), Some(0), ExpectedVersion::Any).unwrap_err().code(), Some("invalid_input"));
}

#[test]
fn incr_follows_redis_and_rejects_non_integers() {
    let (_dir, _log, views) = views();
    let kv = views.kv();
    assert_eq!(kv.incr("n", 5).unwrap().value, 5, "a missing key counts from 0");
    assert_eq!(kv.incr("n", -2).unwrap().value, 3);
    let w = kv.incr("n", 10).unwrap().written.unwrap();
    at(&views, w.position);
    assert_eq!(kv.get("n", now_ms()).unwrap().value, json!(13));
    kv.set("s", json!("abc"), None, ExpectedVersion::Any).unwrap();
    let err = kv.incr("s", 1).unwrap_err();
    assert_eq!(err.code(), Some("not_an_integer"));
    kv.set("big", json!(i64::MAX), None, ExpectedVersion::Any).unwrap();
    assert_eq!(kv.incr("big", 1).unwrap_err().code(), Some("integer_overflow"));
    kv.push("l", End::Right, vec![json!(1)]).unwrap();
    assert_eq!(kv.incr("l", 1).unwrap_err().code(), Some("wrong_type"));
}

#[test]
fn append_lists_and_sets() {
    let (_dir, _log, views) = views();
    let kv = views.kv();
    assert_eq!(kv.append("greeting", "hello").unwrap().value, 5);
    assert_eq!(kv.append("greeting", ", world").unwrap().value, 12);

    assert_eq!(kv.push("q", End::Right, vec![json!("a"), json!("b")]).unwrap().value, 2);
    assert_eq!(kv.push("q", End::Left, vec![json!("x"), json!("y")]).unwrap().value, 4);
    caught_up(&views);
    assert_eq!(kv.range("q", 0, -1, now_ms()).unwrap(), vec![json!("y"), json!("x"), json!("a"), json!("b")]);
    assert_eq!(kv.range("q", -2, 10, now_ms()).unwrap(), vec![json!("a"), json!("b")]);
    assert_eq!(kv.get("q", now_ms()).unwrap_err().code(), Some("wrong_type"), "GET on a list is a type error");
    assert_eq!(kv.pop("q", End::Left, None).unwrap().value, vec![json!("y")]);
    assert_eq!(kv.pop("q", End::Right, Some(2)).unwrap().value, vec![json!("b"), json!("a")]);
    assert_eq!(kv.pop("q", End::Right, Some(5)).unwrap().value, vec![json!("x")]);
    let empty = kv.pop("q", End::Left, None).unwrap();
    assert!(empty.value.is_empty() && empty.written.is_none(), "popping an empty list answers nothing");
    caught_up(&views);
    assert!(!kv.exists("q", now_ms()).unwrap(), "an emptied list is deleted");
    assert!(kv.range("missing", 0, -1, now_ms()).unwrap().is_empty());

    assert_eq!(kv.sadd("tags", vec!["b".into(), "a".into(), "b".into()]).unwrap().value, 2);
    assert_eq!(kv.sadd("tags", vec!["a".into(), "c".into()]).unwrap().value, 1);
    assert_eq!(kv.srem("tags", vec!["a".into(), "zzz".into()]).unwrap().value, 1);
    caught_up(&views);
    assert_eq!(kv.members("tags", now_ms()).unwrap(), vec!["b".to_string(), "c".to_string()]);
    assert_eq!(kv.members("greeting", now_ms()).unwrap_err().code(), Some("wrong_type"));
    assert_eq!(kv.sadd("greeting", vec!["a".into()]).unwrap_err().code(), Some("wrong_type"));
    assert_eq!(kv.push("tags", End::Left, vec![json!(1)]).unwrap_err().code(), Some("wrong_type"));
    assert_eq!(kv.append("tags", "x").unwrap_err().code(), Some("wrong_type"));
    assert_eq!(kv.srem("nothing", vec!["a".into()]).unwrap().written, None);
    assert_eq!(kv.push("q", End::Left, vec![]).unwrap_err().code(), Some("invalid_input"));
}

#[test]
fn many_keys_at_once_and_prefix_listing() {
    let (_dir, _log, views) = views();
    let kv = views.kv();
    let written = kv
        .set_many(vec![
            ("agent/1".into(), json!(1), None),
            ("agent/2".into(), json!(2), Some(60_000)),
            ("task/1".into(), json!(3), None),
            ("agent/1".into(), json!(11), None),
        ])
        .unwrap();
    assert_eq!(written.len(), 4);
    assert_eq!(written[0], written[3], "a key set twice answers its last write");
    assert_eq!(written[0].version, StreamVersion(1));
    caught_up(&views);
    let got = kv.get_many(&["agent/1".into(), "nope".into(), "agent/2".into()], now_ms()).unwrap();
    assert_eq!(
        got,
        vec![("agent/1".into(), Some(json!(11))), ("nope".into(), None), ("agent/2".into(), Some(json!(2)))]
    );

    for i in 0..25 {
        kv.set(&format!("agent/{i:02}"), json!(i), None, ExpectedVersion::Any).unwrap();
    }
    caught_up(&views);
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = kv.list("agent/", after.as_deref(), 10, now_ms()).unwrap();
        assert!(page.keys.len() <= 10);
        seen.extend(page.keys.clone());
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 27, "25 new keys plus agent/1 and agent/2");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "keys come in order, each once");
    assert!(seen.iter().all(|k| k.starts_with("agent/")));
    assert_eq!(kv.list("task/", None, 10, now_ms()).unwrap().keys, vec!["task/1".to_string()]);
}

#[test]
fn history_reads_the_key_stream() {
    let (_dir, _log, views) = views();
    let kv = views.kv();
    kv.set("h", json!("a"), None, ExpectedVersion::Any).unwrap();
    kv.append("h", "b").unwrap();
    let last = kv.delete("h", None).unwrap().written.unwrap();
    let history = kv.history("h", 10).unwrap();
    let ops: Vec<&str> = history.iter().map(|h| h.op.as_str()).collect();
    assert_eq!(ops, vec!["delete", "append", "set"], "newest first");
    assert_eq!(history[0].position, last.position);
    assert_eq!(history[1].value, json!("b"));
    assert_eq!(history[2].value, json!("a"));
    assert_eq!(kv.history("h", 1).unwrap().len(), 1);
    assert_eq!(kv.history("never", 10).unwrap_err().code(), Some("key_not_found"));
}

#[test]
fn transactions_are_all_or_nothing_and_guarded_by_watches() {
    let (_dir, log, views) = views();
    let kv = views.kv();
    let w = kv.set("balance/a", json!(100), None, ExpectedVersion::Any).unwrap();
    kv.set("balance/b", json!(5), None, ExpectedVersion::Any).unwrap();
    let ops: Vec<TxnOp> = serde_json::from_value(json!([
        {"op": "incr", "key": "balance/a", "delta": -30},
        {"op": "incr", "key": "balance/b", "delta": 30},
        {"op": "push", "key": "transfers", "end": "right", "values": ["a->b 30"]},
        {"op": "set", "key": "last", "value": "a->b"},
        {"op": "incr", "key": "balance/a", "delta": -1}
    ]))
    .unwrap();
    let result = kv.txn(&[("balance/a".into(), Some(w.version)), ("fresh".into(), None)], ops.clone()).unwrap();
    assert_eq!(
        result.outputs,
        vec![
            TxnOutput::Value(70),
            TxnOutput::Value(35),
            TxnOutput::Length(1),
            TxnOutput::Version(StreamVersion(0)),
            TxnOutput::Value(69)
        ],
        "a later op sees an earlier one"
    );
    at(&views, result.position.unwrap());
    assert_eq!(kv.get("balance/a", now_ms()).unwrap().value, json!(69));
    assert_eq!(kv.get("balance/a", now_ms()).unwrap().version, StreamVersion(2));
    assert_eq!(serde_json::to_value(&result.outputs[0]).unwrap(), json!({"value": 70}));

    // The watched key moved: nothing is written.
    let head = log.head().unwrap().position;
    let err = kv.txn(&[("balance/a".into(), Some(w.version))], ops.clone()).unwrap_err();
    assert_eq!(err.code(), Some("wrong_expected_version"));
    assert_eq!(err.key(), Some("balance/a"));
    assert_eq!(log.head().unwrap().position, head);

    // One failing op fails the whole transaction.
    let bad: Vec<TxnOp> = serde_json::from_value(json!([
        {"op": "incr", "key": "balance/a", "delta": 1},
        {"op": "incr", "key": "last"}
    ]))
    .unwrap();
    assert_eq!(kv.txn(&[], bad).unwrap_err().code(), Some("not_an_integer"));
    assert_eq!(log.head().unwrap().position, head, "a failed transaction writes nothing");
    assert_eq!(kv.get("balance/a", now_ms()).unwrap().value, json!(69));
}

#[test]
fn bad_keys_are_rejected_before_anything_is_written() {
    let (_dir, log, views) = views();
    let kv = views.kv();
    for key in ["", "a\nb", &"k".repeat(projections::KEY_LEN_MAX + 1)] {
        assert_eq!(kv.set(key, json!(1), None, ExpectedVersion::Any).unwrap_err().code(), Some("invalid_input"));
        assert_eq!(kv.incr(key, 1).unwrap_err().code(), Some("invalid_input"));
        assert_eq!(kv.get(key, now_ms()).unwrap_err().code(), Some("invalid_input"));
    }
    assert!(kv.set(&"k".repeat(projections::KEY_LEN_MAX), json!(1), None, ExpectedVersion::Any).is_ok());
    assert_eq!(log.head().unwrap().position.0, 0, "only the valid key was written");
}

#[test]
fn foreign_events_on_key_streams_are_skipped_or_recorded() {
    let (_dir, log, views) = views();
    let kv = views.kv();
    kv.set("k", json!(1), None, ExpectedVersion::Any).unwrap();
    // Not a kv event: skipped. A kv event with a bad payload: recorded as an apply error.
    log.append("kv:k", ExpectedVersion::Any, vec![NewEvent::json("Noted", &json!({}))]).unwrap();
    let bad =
        log.append("kv:k", ExpectedVersion::Any, vec![NewEvent::json("kv.incr", &json!({"delta": "x"}))]).unwrap();
    let w = kv.incr("k", 2).unwrap().written.unwrap();
    at(&views, w.position);
    assert_eq!(kv.get("k", now_ms()).unwrap().value, json!(3));
    let status = views.status();
    let kv_status = status.views.iter().find(|v| v.name == "kv").unwrap();
    assert_eq!(kv_status.errors, 1);
    assert_eq!(status.recent_errors[0].position, bad.last_position);
    assert!(status.recent_errors[0].message.contains("bad payload"), "{}", status.recent_errors[0].message);
}
