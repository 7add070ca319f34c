//! The encrypted golden fixtures (`fixtures/golden-v4/`, `fixtures/golden-v5/`): a small
//! encrypted log, its key (`cairn.key`, the key-encryption key in its text form) and its key
//! store (`keys`), written by the code of its format version and scavenged (husks of encrypted
//! events), with one stream shredded, committed with what was true of it when it was written
//! (`expected.json`). Each version's test (`golden_v4.rs`, `golden_v5.rs`) calls [`check`].

use std::fs;
use std::path::{Path, PathBuf};

use log_engine::{
    DeleteMode, Error, Event, ExpectedVersion, Kek, Keyring, Log, NewEvent, Options, Position, ScavengeOptions, Uuid,
    KEY_STORE_FILE, SEGMENT_SIZE_MIN,
};
use serde_json::{json, Value};

/// One encrypted golden fixture: its directory under `fixtures/`, the format version its
/// segments were written with, the header flags they carry (`None`: a version without flags),
/// and the base of its events' ids.
pub struct Fixture {
    pub dir: &'static str,
    pub version: u32,
    pub flags: Option<u32>,
    pub id_base: u128,
}

impl Fixture {
    fn path(&self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures").join(self.dir)
    }

    fn kek(&self) -> Kek {
        Kek::from_hex(&fs::read_to_string(self.path().join("cairn.key")).unwrap()).unwrap()
    }

    fn options(&self, keys: Option<&Path>) -> Options {
        let keys = keys.map(|path| Keyring::open(path, self.kek()).unwrap());
        Options { segment_size: SEGMENT_SIZE_MIN, keys, ..Options::default() }
    }
}

/// Where the segment header keeps the format version (docs/format.md, "### Header").
const VERSION_AT: usize = 8;
/// Where it keeps the flags (bit 0: encrypted).
const FLAGS_AT: usize = 12;

fn generate(fixture: &Fixture, dir: &Path) -> Value {
    let log = Log::open(dir, fixture.options(Some(&dir.join(KEY_STORE_FILE)))).unwrap();
    let id = |i: u64| Uuid::from_u128(fixture.id_base + u128::from(i));
    let mut i = 0;
    let mut next = |event: NewEvent| {
        i += 1;
        event.with_id(id(i))
    };
    for n in 0..40u64 {
        let note = "cipher ".repeat(250);
        log.append("agent-1", ExpectedVersion::Any, vec![next(NewEvent::json("step", &json!({"n": n, "note": note})))])
            .unwrap();
        let run = NewEvent::json("run", &json!({"n": n})).with_metadata(&json!({"trace": n}));
        log.append("run-3", ExpectedVersion::Any, vec![next(run)]).unwrap();
        let thread = if n % 2 == 0 {
            NewEvent::bytes("blob", vec![u8::try_from(n).unwrap(); 700])
        } else {
            NewEvent::json("big", &json!({"n": n, "text": "a".repeat(6000)}))
        };
        log.append("thread-9", ExpectedVersion::Any, vec![next(thread)]).unwrap();
    }
    log.delete_stream("thread-9", DeleteMode::Soft).unwrap();
    let report = log.scavenge(&ScavengeOptions::default(), &mut |_| {}).unwrap();
    assert!(report.events_husked > 10, "{report:?}");
    log.keys().unwrap().shred("run-3").unwrap();
    log.append("agent-1", ExpectedVersion::Any, vec![next(NewEvent::json("after", &json!({"n": 40})))]).unwrap();
    let events = events_json(&log);
    let head = log.head().unwrap();
    drop(log);
    json!({"events": events, "head": {"position": head.position.0, "hash": head.hash.to_hex()}})
}

fn event_json(e: &Event) -> Value {
    json!({
        "position": e.position.0, "stream": e.stream, "version": e.version.0, "id": e.id.to_string(),
        "type": e.event_type, "timestamp_ms": e.timestamp_ms, "erased": e.erased,
        "metadata": String::from_utf8_lossy(&e.metadata), "data_blake3": blake3::hash(e.data.as_bytes()).to_hex().to_string(),
        "data_len": e.data.as_bytes().len(), "hash": e.hash.to_hex(),
    })
}

fn events_json(log: &Log) -> Value {
    Value::from(log.read_all(Position(0), usize::MAX).unwrap().iter().map(event_json).collect::<Vec<_>>())
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg") || p.file_name().is_some_and(|n| n == "extent"))
        .map(|p| (p.file_name().unwrap().to_str().unwrap().to_string(), fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

/// The fixture's log and key store, copied into a fresh data directory.
fn copy_fixture(fixture: &Fixture, dir: &Path) {
    fs::create_dir_all(dir.join("log")).unwrap();
    for (name, bytes) in files(&fixture.path().join("log")) {
        fs::write(dir.join("log").join(name), bytes).unwrap();
    }
    fs::copy(fixture.path().join(KEY_STORE_FILE), dir.join(KEY_STORE_FILE)).unwrap();
}

/// Today's code reads `fixture` with its key and finds exactly what its `expected.json` says;
/// without the key `verify` passes and a payload read says it needs the key. With
/// `CAIRN_GOLDEN_WRITE` set it writes the fixture afresh first (for today's version only: the
/// version check below fails for any other).
pub fn check(fixture: &Fixture) {
    let fixture_dir = fixture.path();
    if std::env::var_os("CAIRN_GOLDEN_WRITE").is_some() {
        let _ = fs::remove_dir_all(&fixture_dir);
        fs::create_dir_all(fixture_dir.join("log")).unwrap();
        fs::write(fixture_dir.join("cairn.key"), Kek::generate().to_hex() + "\n").unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let expected = generate(fixture, scratch.path());
        for (name, bytes) in files(&scratch.path().join("log")) {
            // The active segment is stored trimmed after its last record: zeros rebuild it.
            let bytes = if name.ends_with(".seg") && bytes.len() as u64 == SEGMENT_SIZE_MIN {
                let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                bytes[..end].to_vec()
            } else {
                bytes
            };
            fs::write(fixture_dir.join("log").join(name), bytes).unwrap();
        }
        fs::copy(scratch.path().join(KEY_STORE_FILE), fixture_dir.join(KEY_STORE_FILE)).unwrap();
        let text = serde_json::to_string_pretty(&expected).unwrap() + "\n";
        fs::write(fixture_dir.join("expected.json"), text).unwrap();
    }
    let expected: Value =
        serde_json::from_str(&fs::read_to_string(fixture_dir.join("expected.json")).unwrap()).unwrap();
    let events = expected["events"].as_array().unwrap();
    assert!(events.iter().filter(|e| e["erased"] == true).count() > 40, "husks and a shredded stream");
    assert!(events.iter().any(|e| e["stream"] == "agent-1" && e["erased"] == false));
    let files_here = files(&fixture_dir.join("log"));
    for (name, bytes) in files_here.iter().filter(|(n, _)| n.ends_with(".seg")) {
        assert_eq!(bytes[VERSION_AT..VERSION_AT + 4], fixture.version.to_le_bytes(), "{name}");
        if let Some(flags) = fixture.flags {
            assert_eq!(bytes[FLAGS_AT..FLAGS_AT + 4], flags.to_le_bytes(), "{name}'s flags (bit 0: encrypted)");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(fixture, dir.path());
    // The trimmed active segment gets its zeros back.
    let (active, _) = files_here.iter().rfind(|(n, _)| n.ends_with(".seg")).unwrap().clone();
    let active_path = dir.path().join("log").join(&active);
    let file = fs::OpenOptions::new().write(true).open(&active_path).unwrap();
    file.set_len(SEGMENT_SIZE_MIN).unwrap();
    drop(file);

    let store = dir.path().join(KEY_STORE_FILE);
    let reader = Log::open_read_only(
        dir.path(),
        Options { keys: Some(Keyring::open_read_only(&store, fixture.kek()).unwrap()), ..fixture.options(None) },
    )
    .unwrap();
    assert_eq!(events_json(&reader), expected["events"]);
    drop(reader);
    for _ in 0..2 {
        let log = Log::open(dir.path(), fixture.options(Some(&store))).unwrap();
        assert_eq!(events_json(&log), expected["events"]);
        let head = log.head().unwrap();
        assert_eq!(json!({"position": head.position.0, "hash": head.hash.to_hex()}), expected["head"]);
        assert!(log.verify(None, |_| {}).unwrap().ok);
    }
    // Without the key: the chain verifies; a payload needs the key.
    let bare = Log::open_read_only(dir.path(), fixture.options(None)).unwrap();
    let report = bare.verify(None, |_| {}).unwrap();
    assert!(report.ok, "{:?}", report.detail);
    let live = events.iter().find(|e| e["erased"] == false).unwrap()["position"].as_u64().unwrap();
    assert!(matches!(bare.read_event(Position(live)), Err(Error::KeyRequired { .. })));
}
