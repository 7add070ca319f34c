//! Online backup under load (issue 21): a real `cairn serve` takes 16 concurrent appenders while
//! `cairn backup` (run beside it, so it finds the server through the address recorded in the
//! data directory and asks it) copies the store. The backup, restored with `cairn restore
//! --from` onto an empty directory, verifies, ends at exactly the position and chain hash its
//! report names, and holds every event acknowledged before the backup was asked for, each at
//! its acknowledged position, stream and version. The appenders go on after the backup, so the
//! copy is shown to be a prefix of a log that kept growing, not a copy of a stopped one.
//! A backup during which a scavenge rewrites the segments it listed (the head's segment sealed,
//! as in a store restored from an archive, so it is listed with a cut offset) still restores.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use log_engine::{Log, Options, Position};
use serde_json::{json, Value};
use support::{cairn, Server};

const APPENDERS: usize = 16;
/// Acknowledged events before the backup is asked for, and again after it returns.
const BEFORE: usize = 400;
const AFTER: usize = 200;

/// Every acknowledged append: position → (stream, version), and a count to wait on.
#[derive(Default)]
struct Acks {
    events: Mutex<BTreeMap<u64, (String, u64)>>,
    grew: Condvar,
}

impl Acks {
    fn wait_for(&self, count: usize) -> BTreeMap<u64, (String, u64)> {
        let mut events = self.events.lock().unwrap();
        while events.len() < count {
            events = self.grew.wait(events).unwrap();
        }
        events.clone()
    }
}

#[test]
fn an_online_backup_under_concurrent_appends_restores_every_acknowledged_event() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start(&data, &[]);
    let acks = Arc::new(Acks::default());
    let stop = Arc::new(AtomicBool::new(false));
    let appenders: Vec<_> = (0..APPENDERS)
        .map(|w| {
            let (acks, stop, url) = (acks.clone(), stop.clone(), server.url(&format!("/v1/streams/w-{w}/events")));
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let body = json!({"events": [{"type": "Tick", "data": {"w": w, "n": n}}]});
                    let answer: Value =
                        client.post(&url).json(&body).send().unwrap().error_for_status().unwrap().json().unwrap();
                    let position = answer["first_position"].as_u64().unwrap();
                    let version = answer["first_version"].as_u64().unwrap();
                    acks.events.lock().unwrap().insert(position, (format!("w-{w}"), version));
                    acks.grew.notify_all();
                    n += 1;
                }
            })
        })
        .collect();

    // Everything acknowledged before the backup is asked for must be in it.
    let acknowledged = acks.wait_for(BEFORE);
    let backup = tmp.path().join("backup");
    let (code, stdout, stderr) = cairn(&data, &["backup", "--to", backup.to_str().unwrap(), "-o", "json"]);
    assert_eq!(code, 0, "backup failed: {stderr}");
    assert!(stderr.contains("asking it"), "the backup went through the running server: {stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let cut = report["head_position"].as_u64().expect("the backup holds events");

    // The appenders go on past the cut, then stop.
    let total = acks.events.lock().unwrap().len();
    acks.wait_for(total + AFTER);
    stop.store(true, Ordering::SeqCst);
    for a in appenders {
        a.join().unwrap();
    }
    let (_, live_head) = server.get("/v1/head");
    assert!(live_head["position"].as_u64().unwrap() > cut, "the log grew past the backup's cut");
    let (status, cut_event) = server.get(&format!("/v1/events?from={cut}&limit=1"));
    assert_eq!(status, 200);
    assert_eq!(cut_event["events"][0]["hash"], report["head_hash"], "the backup ends at the live log's hash there");
    assert!(server.stop().success());

    let restored = tmp.path().join("restored");
    let (code, _, stderr) =
        cairn(tmp.path(), &["restore", "--from", backup.to_str().unwrap(), "--to", restored.to_str().unwrap()]);
    assert_eq!(code, 0, "restore failed: {stderr}");
    let (code, stdout, stderr) = cairn(&restored, &["verify", "-o", "json"]);
    assert_eq!(code, 0, "the restored copy verifies: {stdout} {stderr}");

    let copy = Log::open(&restored, Options::default()).unwrap();
    let head = copy.head().unwrap();
    assert_eq!(head.position, Position(cut));
    assert_eq!(json!(head.hash.to_hex()), report["head_hash"]);
    for (position, (stream, version)) in &acknowledged {
        assert!(*position <= cut, "acknowledged before the backup was asked for, so before its cut");
        let event = copy.read_event(Position(*position)).unwrap();
        assert_eq!((&event.stream, event.version.0), (stream, *version), "position {position}");
    }
    copy.close();
}

#[test]
fn a_backup_copies_the_segments_as_listed_although_a_scavenge_rewrote_them_meanwhile() {
    use log_engine::{DeleteMode, ExpectedVersion, NewEvent, ScavengeOptions};
    let tmp = tempfile::tempdir().unwrap();
    let small = || Options { segment_size: 64 * 1024, ..Options::default() };
    // A store whose every segment is sealed (as one restored from an archive): its writer starts
    // an empty active segment, so the head lies in a sealed segment, which the backup lists cut.
    let source = tmp.path().join("source");
    let log = Log::open(&source, small()).unwrap();
    for n in 0..300u64 {
        for stream in ["keep", "drop"] {
            let event = NewEvent::json("Step", &json!({"n": n, "pad": "z".repeat(500)}));
            log.append(stream, ExpectedVersion::Any, vec![event]).unwrap();
        }
    }
    let sealed_count = || log.segment_files().iter().filter(|f| f.sealed).count();
    let before_delete = sealed_count();
    log.delete_stream("drop", DeleteMode::Soft).unwrap();
    // Just enough events after the deletion to seal its segment: the last sealed segment, where
    // the head will be, then holds events of `drop` (dead) and is rewritten by the scavenge.
    while sealed_count() == before_delete {
        let event = NewEvent::json("Step", &json!({"pad": "z".repeat(500)}));
        log.append("keep", ExpectedVersion::Any, vec![event]).unwrap();
    }
    let sealed: Vec<_> = log.segment_files().into_iter().filter(|f| f.sealed).map(|f| f.path).collect();
    assert!(sealed.len() >= 3, "the test needs sealed segments");
    drop(log);
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("log")).unwrap();
    for path in &sealed {
        std::fs::copy(path, data.join("log").join(path.file_name().unwrap())).unwrap();
    }
    let log = Log::open(&data, small()).unwrap();
    let head = log.head().unwrap();
    let before = log.read_all(Position(0), usize::MAX).unwrap();

    let backup = tmp.path().join("backup");
    let at = cairn::backup::Location::parse(backup.to_str().unwrap()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut scavenged = None;
    let report = cairn::backup::take(&log, &at, cairn::backup::BackupOptions::default(), runtime.handle(), &mut |_| {
        if scavenged.is_none() {
            scavenged = Some(log.scavenge(&ScavengeOptions::default(), &mut |_| {}).unwrap());
        }
    })
    .unwrap();
    assert!(scavenged.unwrap().segments_rewritten >= 2, "the scavenge rewrote listed segments");
    let last = sealed.last().unwrap().file_name().unwrap();
    assert_ne!(
        std::fs::metadata(data.join("log").join(last)).unwrap().len(),
        std::fs::metadata(sealed.last().unwrap()).unwrap().len(),
        "the head's segment was rewritten"
    );
    assert_eq!(report.head_position, Some(head.position.0));
    drop(log);

    let restored = tmp.path().join("restored");
    let (code, out, err) =
        cairn(tmp.path(), &["restore", "--from", backup.to_str().unwrap(), "--to", restored.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let copy = Log::open(&restored, Options::default()).unwrap();
    assert_eq!(copy.head(), Some(head));
    let held = copy.read_all(Position(0), usize::MAX).unwrap();
    assert_eq!(held.len(), before.len());
    for (copied, original) in held.iter().zip(&before) {
        assert_eq!((copied.position, copied.hash), (original.position, original.hash));
    }
}
