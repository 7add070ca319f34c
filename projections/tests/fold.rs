//! The generic fold: a user aggregate rebuilt from one stream up to a version, across more
//! events than one read chunk.

mod common;

use common::*;
use log_engine::{ExpectedVersion, NewEvent, StreamVersion};
use projections::{fold, FOLD_CHUNK_EVENTS};
use serde_json::json;

#[test]
fn folds_a_stream_up_to_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let n = FOLD_CHUNK_EVENTS as u64 * 2 + 17;
    for i in 0..n {
        log.append("cart-1", ExpectedVersion::Any, vec![NewEvent::json("ItemAdded", &json!({"price": i}))]).unwrap();
        log.append("other", ExpectedVersion::Any, vec![NewEvent::json("Noise", &json!({}))]).unwrap();
    }
    let sum = |until| {
        fold(&log, "cart-1", until, (0u64, 0u64), |(sum, count), e| {
            (sum + e.data_json().unwrap()["price"].as_u64().unwrap(), count + 1)
        })
        .unwrap()
    };
    let all = sum(None);
    assert_eq!(all.state, (n * (n - 1) / 2, n), "every event once, in order, across chunks");
    assert_eq!(all.version, Some(StreamVersion(n - 1)));
    let part = sum(Some(StreamVersion(FOLD_CHUNK_EVENTS as u64)));
    let m = FOLD_CHUNK_EVENTS as u64 + 1;
    assert_eq!(part.state, (m * (m - 1) / 2, m), "until is inclusive");
    assert_eq!(
        part.position,
        Some(
            log.read_stream("cart-1", Some(StreamVersion(m - 1)), 1, log_engine::Direction::Forward).unwrap()[0]
                .position
        )
    );
    assert_eq!(sum(Some(StreamVersion(n + 100))).state.1, n, "a version past the end folds everything");
    assert_eq!(sum(Some(StreamVersion(0))).state, (0, 1));

    let order = fold(&log, "cart-1", Some(StreamVersion(4)), Vec::new(), |mut v, e| {
        v.push(e.version.0);
        v
    })
    .unwrap();
    assert_eq!(order.state, vec![0, 1, 2, 3, 4]);
    let err = fold(&log, "nope", None, 0, |s, _| s).unwrap_err();
    assert!(matches!(err, projections::Error::Log(log_engine::Error::StreamNotFound { .. })), "{err}");
}
