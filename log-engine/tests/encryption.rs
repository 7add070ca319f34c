//! Encryption at rest (format version 4) against real files: what a user with the key reads,
//! what the bytes on disk hold, what someone without the key can still check, and what a record
//! moved to another place gives.

mod common;

use std::path::Path;
use std::sync::Arc;

use log_engine::{
    Direction, Error, ExpectedVersion, Kek, Keyring, Log, NewEvent, Options, Position, ScavengeOptions, StreamMetadata,
    StreamVersion, Uuid, KEY_STORE_FILE,
};
use serde_json::json;

const MARKER: &str = "ZQXJ-secret-marker";

fn kek() -> Kek {
    Kek::from_hex(&"5a".repeat(32)).unwrap()
}

fn keyed(dir: &Path) -> Options {
    let keys = Keyring::open(dir.join(KEY_STORE_FILE), kek()).unwrap();
    Options { keys: Some(keys), ..common::small_options() }
}

fn marked(n: u64) -> NewEvent {
    NewEvent::json("Said", &json!({"text": format!("{MARKER} {n}"), "pad": "y".repeat(200)}))
        .with_metadata(&json!({"note": format!("{MARKER} meta {n}")}))
}

/// Every file under `dir`, recursively, with its bytes.
fn all_files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_files(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn assert_no_marker(dir: &Path) {
    for (path, bytes) in all_files(dir) {
        assert!(!bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()), "{} holds the marker", path.display());
    }
}

#[test]
fn no_plaintext_reaches_the_disk_and_verify_needs_no_key() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), keyed(dir.path())).unwrap();
        // Enough to seal several 64 KiB segments, with a compressed one among them.
        for n in 0..400 {
            log.append(&format!("agent-{}", n % 3), ExpectedVersion::Any, vec![marked(n)]).unwrap();
        }
        let big = NewEvent::json("Big", &json!({"text": format!("{MARKER} {}", "z".repeat(20_000))}));
        log.append("agent-0", ExpectedVersion::Any, vec![big]).unwrap();
        let events = log.read_stream("agent-1", None, 1000, Direction::Forward).unwrap();
        assert_eq!(events.len(), 133);
        assert!(String::from_utf8_lossy(events[5].data.as_bytes()).contains(&format!("{MARKER} 16")));
        assert!(String::from_utf8_lossy(&events[5].metadata).contains("meta 16"));
        assert!(log.verify(None, |_| {}).unwrap().ok);
    }
    assert!(all_files(&dir.path().join("log")).len() > 4, "the log crossed segments");
    assert_no_marker(dir.path());

    // Reopened with the key (recovery of the active segment included): everything reads back.
    let log = Log::open(dir.path(), keyed(dir.path())).unwrap();
    let all = log.read_all(Position(0), usize::MAX).unwrap();
    assert_eq!(all.len(), 401);
    assert!(String::from_utf8_lossy(all[400].data.as_bytes()).contains(MARKER));
    drop(log);

    // Without the key: verify passes through every record, a payload read says what it needs.
    let bare = Log::open_read_only(dir.path(), common::small_options()).unwrap();
    let report = bare.verify(None, |_| {}).unwrap();
    assert!(report.ok, "{:?}", report.detail);
    assert_eq!(report.events, 401);
    let err = bare.read_event(Position(7)).unwrap_err();
    assert!(matches!(err, Error::KeyRequired { position: Position(7) }), "{err}");
    assert!(err.to_string().contains("position 7") && err.to_string().contains("key"), "{err}");
    drop(bare);
    // A writer without the key opens it too (recovery needs no payload).
    let log = Log::open(dir.path(), common::small_options()).unwrap();
    assert!(log.verify(None, |_| {}).unwrap().ok);
}

/// The frame at `position` in a segment's bytes: its offset and length.
fn find_frame(bytes: &[u8], position: u64) -> (usize, usize) {
    let mut at = 4096;
    loop {
        let body_len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let len = (80 + body_len).next_multiple_of(8);
        let kind = bytes[at + 8];
        let p = u64::from_le_bytes(bytes[at + 16..at + 24].try_into().unwrap());
        assert!(kind != 0, "position {position} not found");
        if p == position {
            return (at, len);
        }
        at += len;
    }
}

fn recrc(frame: &mut [u8]) {
    let mut h = crc32fast::Hasher::new();
    h.update(b"cairnREC");
    h.update(&frame[4..]);
    frame[..4].copy_from_slice(&h.finalize().to_le_bytes());
}

#[test]
fn a_record_moved_to_another_position_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), keyed(dir.path())).unwrap();
        for n in 0..4 {
            // Same-length payloads, so that one body fits exactly in the other's frame.
            log.append("s", ExpectedVersion::Any, vec![NewEvent::json("Said", &json!({"n": n}))]).unwrap();
        }
    }
    let seg = dir.path().join("log").join("00000000000000000000.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    let (a, len_a) = find_frame(&bytes, 1);
    let (b, len_b) = find_frame(&bytes, 2);
    assert_eq!(len_a, len_b);
    // Position 1's body (with its own valid tag) copied into position 2's frame, CRC made good:
    // only the encryption's associated data can tell.
    let body = bytes[a + 80..a + len_a].to_vec();
    bytes[b + 80..b + len_b].copy_from_slice(&body);
    recrc(&mut bytes[b..b + len_b]);
    std::fs::write(&seg, &bytes).unwrap();
    let log = Log::open(dir.path(), keyed(dir.path())).unwrap();
    assert_eq!(log.read_event(Position(1)).unwrap().data.as_bytes(), br#"{"n":1}"#);
    let err = log.read_event(Position(2)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("position 2") && text.contains("does not decrypt"), "{text}");
    let err = log.read_stream("s", None, 10, Direction::Forward).unwrap_err();
    assert!(err.to_string().contains("position 2"), "{err}");
}

#[test]
fn retries_scavenging_and_shredding_work_on_encrypted_events() {
    let dir = tempfile::tempdir().unwrap();
    let options = keyed(dir.path());
    let keys = Arc::clone(options.keys.as_ref().unwrap());
    let log = Log::open(dir.path(), options).unwrap();
    // An idempotent retry is recognised although every write seals with a fresh nonce.
    let id = Uuid::from_u128(42);
    let first = log.append("r", ExpectedVersion::NoStream, vec![marked(0).with_id(id)]).unwrap();
    let again = log.append("r", ExpectedVersion::NoStream, vec![marked(0).with_id(id)]).unwrap();
    assert_eq!(first, again);
    let other = log.append("r", ExpectedVersion::Any, vec![marked(1).with_id(id)]).unwrap_err();
    assert!(matches!(other, Error::IdConflict { .. }), "{other}");

    for n in 0..300 {
        log.append(if n % 2 == 0 { "keep" } else { "gone" }, ExpectedVersion::Any, vec![marked(n)]).unwrap();
    }
    // Scavenging husks encrypted events without the key's help, and the chain still verifies.
    log.set_stream_metadata("keep", StreamMetadata { truncate_before: Some(100), ..StreamMetadata::default() })
        .unwrap();
    let report = log.scavenge(&ScavengeOptions::default(), &mut |_| {}).unwrap();
    assert!(report.events_husked > 50, "{report:?}");
    assert!(log.verify(None, |_| {}).unwrap().ok);
    let kept = log.read_stream("keep", None, 1000, Direction::Forward).unwrap();
    assert_eq!(kept[0].version, StreamVersion(100));
    assert!(String::from_utf8_lossy(kept[0].data.as_bytes()).contains(MARKER));

    // Shredding: the stream's payloads are gone for good, the rest reads, the chain verifies.
    assert_eq!(keys.shred("gone").unwrap(), 1);
    let gone = log.read_stream("gone", None, 1000, Direction::Forward).unwrap();
    assert_eq!(gone.len(), 150);
    assert!(gone.iter().all(|e| e.erased && e.data.as_bytes().is_empty() && e.metadata.is_empty()));
    assert!(!log.read_stream("keep", None, 1, Direction::Forward).unwrap()[0].erased);
    // Written again after shredding: a new secret, readable.
    log.append("gone", ExpectedVersion::Any, vec![marked(999)]).unwrap();
    let last = log.read_stream("gone", None, 1, Direction::Backward).unwrap();
    assert!(!last[0].erased && String::from_utf8_lossy(last[0].data.as_bytes()).contains("999"));
    drop(log);
    let log = Log::open(dir.path(), keyed(dir.path())).unwrap();
    assert!(log.read_stream("gone", None, 1, Direction::Forward).unwrap()[0].erased);
    assert!(log.verify(None, |_| {}).unwrap().ok);
}

/// The real file system, noting which thread opens the key store (every key-store write opens
/// it first).
#[derive(Debug, Default)]
struct KeyStoreWatch {
    threads: std::sync::Mutex<Vec<std::thread::ThreadId>>,
}

impl log_engine::fs::FileSystem for KeyStoreWatch {
    fn open_dir(&self, path: &Path) -> std::io::Result<Box<dyn log_engine::fs::DirHandle>> {
        log_engine::fs::OsFs.open_dir(path)
    }
    fn create(&self, path: &Path) -> std::io::Result<Box<dyn log_engine::fs::StorageFile>> {
        log_engine::fs::OsFs.create(path)
    }
    fn open(&self, path: &Path) -> std::io::Result<Box<dyn log_engine::fs::StorageFile>> {
        if path.ends_with(KEY_STORE_FILE) {
            self.threads.lock().unwrap().push(std::thread::current().id());
        }
        log_engine::fs::OsFs.open(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        log_engine::fs::OsFs.rename(from, to)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        log_engine::fs::OsFs.remove(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        log_engine::fs::OsFs.sync_dir(path)
    }
    fn list(&self, path: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
        log_engine::fs::OsFs.list(path)
    }
}

/// A stream's first encrypted append creates its secret with an fdatasync of the key store:
/// an async caller must not do that on its runtime's thread (every other request on it would
/// wait), yet the secret is durable before the append is acknowledged.
#[test]
fn an_async_first_append_writes_the_key_store_off_the_runtime_thread() {
    let dir = tempfile::tempdir().unwrap();
    let watch = Arc::new(KeyStoreWatch::default());
    let keys = Keyring::open_on(watch.clone(), dir.path().join(KEY_STORE_FILE), kek()).unwrap();
    let log =
        Log::open(dir.path(), Options { keys: Some(keys), fs: watch.clone(), ..common::small_options() }).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for stream in ["a", "b", "a"] {
        runtime.block_on(log.append_async(stream, ExpectedVersion::Any, vec![marked(1)])).unwrap();
    }
    let threads = watch.threads.lock().unwrap().clone();
    assert_eq!(threads.len(), 2, "one key-store write per new stream");
    assert!(!threads.contains(&std::thread::current().id()), "the runtime's thread wrote the key store");
    drop(log);
    let log = Log::open(dir.path(), keyed(dir.path())).unwrap();
    assert_eq!(
        log.read_stream("b", None, 10, Direction::Forward).unwrap()[0].data.as_bytes(),
        marked(1).data.as_bytes()
    );
}

/// A ciphertext replaced in place, its CRC made good, keeps every chain hash (the chain covers
/// the keyed digests in the clear): verify with the key opens every sealed payload and names
/// the position; without the key it can check only the chain.
#[test]
fn verify_with_the_key_authenticates_every_sealed_payload() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), keyed(dir.path())).unwrap();
        for n in 0..4 {
            log.append("s", ExpectedVersion::Any, vec![marked(n)]).unwrap();
        }
        assert!(log.verify(None, |_| {}).unwrap().ok);
    }
    let seg = dir.path().join("log").join("00000000000000000000.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    let (at, len) = find_frame(&bytes, 2);
    let body_len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
    bytes[at + 80 + body_len - 20] ^= 0x40;
    recrc(&mut bytes[at..at + len]);
    std::fs::write(&seg, &bytes).unwrap();

    let log = Log::open(dir.path(), keyed(dir.path())).unwrap();
    let report = log.verify(None, |_| {}).unwrap();
    assert!(!report.ok, "a replaced ciphertext passed verify with the key");
    assert_eq!(report.first_bad_position, Some(Position(2)));
    assert_eq!(report.events, 2);
    let detail = report.detail.unwrap();
    assert!(detail.contains("position 2") && detail.contains("does not decrypt"), "{detail}");
    drop(log);
    let keyless = Log::open_read_only(dir.path(), common::small_options()).unwrap();
    assert!(keyless.verify(None, |_| {}).unwrap().ok, "without the key verify checks the chain only");
}

/// What a reopened log shows of an erasure of the whole stream `run` cut short by a power
/// loss: whether the erasure is in the log, and whether `run`'s secret is destroyed. Asserts
/// that the two go together, and that without the erasure every payload reads back.
fn erasure_and_key_after_power_loss(dir: &Path, events: u64) -> bool {
    let keys = Keyring::open(dir.join(KEY_STORE_FILE), kek()).unwrap();
    let log = Log::open(dir, Options { keys: Some(keys.clone()), ..common::small_options() }).unwrap();
    let erased = log
        .read_all(Position(0), 1000)
        .unwrap()
        .iter()
        .any(|e| e.stream == log_engine::LIFECYCLE_STREAM && e.event_type == "stream-erased");
    let shredded = keys.stream_shredded("run");
    assert_eq!(erased, shredded, "the erasure is in the log: {erased}; the stream's key is destroyed: {shredded}");
    let read = log.read_stream("run", None, 100, Direction::Forward).unwrap();
    assert_eq!(read.len() as u64, events);
    if !erased {
        for e in &read {
            assert!(!e.erased && String::from_utf8_lossy(e.data.as_bytes()).contains(MARKER), "{e:?} was lost");
        }
    }
    assert!(log.verify(None, |_| {}).unwrap().ok);
    erased
}

/// A log on the fault layer, its key store too, with three events on `run`.
fn faulty_log(dir: &Path) -> (log_engine::faults::FaultFs, Log) {
    let fs = log_engine::faults::FaultFs::new();
    let keys = Keyring::open_on(Arc::new(fs.clone()), dir.join(KEY_STORE_FILE), kek()).unwrap();
    let options = Options { fs: Arc::new(fs.clone()), keys: Some(keys), ..common::small_options() };
    let log = Log::open(dir, options).unwrap();
    for n in 0..3 {
        log.append("run", ExpectedVersion::Any, vec![marked(n)]).unwrap();
    }
    (fs, log)
}

/// The power goes at the fdatasync of an erasure of a whole encrypted stream: whatever of it
/// lands, the reopened log either holds the erasure and no key, or neither (every payload reads
/// back). Failed before: the key was destroyed when the erasure was staged, so a lost erasure
/// left payloads no client was told were erased unreadable.
#[test]
fn power_lost_at_a_shredding_erasure_keeps_erasure_and_key_together() {
    let mut outcomes = std::collections::BTreeSet::new();
    for seed in 0..16 {
        let dir = tempfile::tempdir().unwrap();
        let (fs, log) = faulty_log(dir.path());
        fs.crash_at(log_engine::faults::Op::Sync, ".seg", 0);
        let err = log.erase("run", None, None, "request 7").unwrap_err();
        assert!(matches!(err, Error::Poisoned { .. }), "{err}");
        drop(log);
        fs.power_loss(seed).unwrap();
        outcomes.insert(erasure_and_key_after_power_loss(dir.path(), 3));
    }
    assert_eq!(outcomes.len(), 2, "the seeds kept the erasure in some runs and lost it in others");
}

/// The power goes after the erasure is durable, before its key is destroyed: the next open
/// destroys it. Failed before: the key went (or failed to go) before the erasure was durable.
#[test]
fn a_key_whose_erasure_is_durable_is_destroyed_by_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let (fs, log) = faulty_log(dir.path());
    fs.inject_at(log_engine::faults::Op::Create, "keys.tmp", 0, 28);
    // Acknowledged: the erasure is durable; the key store's rewrite failed (ENOSPC).
    log.erase("run", None, None, "request 7").unwrap();
    // The key is still live, and the next open destroys it: an append sealed with it now would
    // be acknowledged and then lost, so nothing more is acknowledged until that open. Failed
    // before: the append was acknowledged, and unreadable after the reopen.
    let err = log.append("run", ExpectedVersion::Any, vec![marked(8)]).unwrap_err();
    assert!(matches!(err, Error::Poisoned { .. }), "{err}");
    drop(log);
    fs.power_loss(7).unwrap();
    assert!(erasure_and_key_after_power_loss(dir.path(), 3), "the acknowledged erasure holds");
    // Written again: a new secret, readable.
    let keys = Keyring::open(dir.path().join(KEY_STORE_FILE), kek()).unwrap();
    let log = Log::open(dir.path(), Options { keys: Some(keys), ..common::small_options() }).unwrap();
    let again = log.append("run", ExpectedVersion::Any, vec![marked(9)]).unwrap();
    let event = log.read_event(again.first_position).unwrap();
    assert!(!event.erased && String::from_utf8_lossy(event.data.as_bytes()).contains(MARKER));
}

/// A writer without a key on an encrypted log whose key store lives outside the directory
/// (`--key-store`), so that nothing beside the segments says the log is encrypted: the newest
/// segment's header does, and the writer appends nothing (sync or async), naming the
/// directory, while lifecycle changes (never encrypted) still work. The segments it creates say
/// so too. Failed before: the events were written in the clear beside the encrypted ones.
#[test]
fn a_keyless_writer_appends_nothing_to_an_encrypted_log_whose_store_is_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let store = elsewhere.path().join(KEY_STORE_FILE);
    let keyed = || Options { keys: Some(Keyring::open(&store, kek()).unwrap()), ..common::small_options() };
    let log = Log::open(dir.path(), keyed()).unwrap();
    log.append("run", ExpectedVersion::Any, vec![marked(0)]).unwrap();
    assert!(!log.append_needs_key());
    drop(log);

    let log = Log::open(dir.path(), common::small_options()).unwrap();
    assert!(log.append_needs_key());
    let err = log.append("run", ExpectedVersion::Any, vec![marked(1)]).unwrap_err();
    assert!(matches!(err, Error::AppendNeedsKey { .. }), "{err}");
    assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let err = runtime.block_on(log.append_async("run", ExpectedVersion::Any, vec![marked(2)])).unwrap_err();
    assert!(matches!(err, Error::AppendNeedsKey { .. }), "{err}");
    // Lifecycle changes roll the log over into new segments, which keep the flag.
    let segments = log.segment_files().len();
    for n in 0..600u64 {
        let metadata = StreamMetadata { max_count: Some(n + 1), ..StreamMetadata::default() };
        log.set_stream_metadata("run", metadata).unwrap();
    }
    assert!(log.segment_files().len() > segments, "the changes filled a segment");
    drop(log);
    assert_no_marker(dir.path());

    let log = Log::open(dir.path(), common::small_options()).unwrap();
    assert!(log.append_needs_key(), "a segment made by a keyless writer of an encrypted log says it is encrypted");
    drop(log);
    let log = Log::open(dir.path(), keyed()).unwrap();
    let read = log.read_stream("run", None, 10, Direction::Forward).unwrap();
    assert_eq!(read.len(), 1);
    assert!(String::from_utf8_lossy(read[0].data.as_bytes()).contains(&format!("{MARKER} 0")));
    assert!(log.verify(None, |_| {}).unwrap().ok);
}
