//! A scavenge and the views (issue 16 item 7): after erasing, deleting and limiting streams the
//! views fold, and after a scavenge that turned the dead events into husks, the recovery drill
//! still matches: the live views equal a rebuild from the checkpoint plus the tail and a full
//! replay of what remains. A key whose older versions `max_count` hides keeps its value (the
//! scavenge keeps what only retention hides in the views' streams), an erased or deleted key
//! stays absent.

use std::sync::atomic::AtomicBool;

use cairn::store::{scavenge_options, Store};
use log_engine::{DeleteMode, ExpectedVersion, Log, NewEvent, Options, StreamMetadata};
use serde_json::json;
use snapshotter::{CheckpointKind, Policy};

fn open(dir: &std::path::Path) -> Store {
    let log = Log::open(dir, Options { segment_size: 64 * 1024, ..Options::default() }).unwrap();
    Store::open(log, Policy::default(), &mut |_| {}).unwrap().0
}

fn drill(store: &Store, scratch: &std::path::Path) {
    let report = store.drill(scratch, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert!(report.ok && report.mismatches.is_empty(), "the drill found: {:?}", report.mismatches);
    assert_eq!(report.events_lost, 0);
    assert!(report.checkpoint_used.is_some(), "the drill rebuilt from no checkpoint");
}

#[test]
fn the_drill_matches_after_an_erasure_and_after_a_scavenge() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("data"));
    let (log, kv) = (store.log().clone(), store.views().kv());
    // kv:c, newest version only: set 5 then incr 1 is 6 live; a replay that met the set as a
    // husk would fold 1 (or fail).
    kv.set("c", json!(5), None, ExpectedVersion::Any).unwrap();
    log.set_stream_metadata("kv:c", StreamMetadata { max_count: Some(1), ..StreamMetadata::default() }).unwrap();
    kv.incr("c", 1).unwrap();
    kv.set("secret", json!("4111 1111 1111 1111"), None, ExpectedVersion::Any).unwrap();
    kv.set("gone", json!("bye"), None, ExpectedVersion::Any).unwrap();
    kv.set("kept", json!({"a": 1}), None, ExpectedVersion::Any).unwrap();
    let pad = "p".repeat(1000);
    for n in 0..100 {
        let event = NewEvent::json("Big", &json!({"n": n, "pad": pad}));
        log.append("scratch", ExpectedVersion::Any, vec![event]).unwrap();
    }
    store.checkpoint(Some(CheckpointKind::Full)).unwrap();
    log.erase("kv:secret", None, None, "the user asked").unwrap();
    log.delete_stream("kv:gone", DeleteMode::Soft).unwrap();
    log.delete_stream("scratch", DeleteMode::Soft).unwrap();
    // The tail past the checkpoint, and enough to seal the segments holding all of the above.
    kv.incr("c", 10).unwrap();
    for n in 0..100 {
        let event = NewEvent::json("Big", &json!({"n": n, "pad": pad}));
        log.append("filler", ExpectedVersion::Any, vec![event]).unwrap();
    }
    store.catch_up(std::time::Duration::from_secs(30)).unwrap();
    drill(&store, &scratch.path().join("after-erase"));

    let report = log.scavenge(&scavenge_options(), &mut |_| {}).unwrap();
    // The 100 scratch events, the secret and the deleted key at least.
    assert!(report.events_husked >= 102, "{report:?}");
    assert!(report.bytes_after < report.bytes_before, "{report:?}");
    store.catch_up(std::time::Duration::from_secs(30)).unwrap();
    drill(&store, &scratch.path().join("after-scavenge"));
    let now = projections::now_ms();
    assert_eq!(kv.get("c", now).unwrap().value, json!(16));
    assert!(kv.get("secret", now).is_err() && kv.get("gone", now).is_err());
    assert_eq!(kv.get("kept", now).unwrap().value, json!({"a": 1}));
    assert!(log.verify(None, |_| {}).unwrap().ok);
    store.close();
}
