//! Tiering in the engine (tier.rs, evict.rs): sealed segments evicted with a stub left behind,
//! read back through a cold store kept in a local directory (the binary's is the archive's
//! bucket: tests/s3_tier.rs). Every event reads back, verify passes from genesis across tiers,
//! open needs only the stubs, a tampered copy is refused, an unreachable store fails a cold read
//! with an error while hot reads and appends go on, a fetch for a retention window waits on the
//! archive without holding what appends need, and an eviction stopped between the stub and the
//! unlink reopens whole.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use log_engine::faults::{FaultFs, Op};
use log_engine::{
    ColdStore, Direction, Error, Event, ExpectedVersion, Log, NewEvent, Options, Position, SegmentId, StreamChange,
    StreamMetadata, Tiering, EVENT_STREAM_CLOSED, IDEMPOTENCY_WINDOW, LIFECYCLE_STREAM, LOG_DIR,
};

/// The archive of these tests: a directory of whole segment files, which can be made
/// unreachable.
#[derive(Debug)]
struct DirStore {
    dir: PathBuf,
    down: AtomicBool,
    gate: Gate,
}

/// Holds fetches while closed: a bucket that answers slowly, for as long as a test needs.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    closed: bool,
    /// A fetch is waiting at the gate.
    waiting: bool,
    /// A fetch gave up waiting (the bound below) before the test opened the gate.
    outwaited: bool,
}

/// How long a held fetch waits for the test before it goes on regardless: not a timing under
/// test, only a bound so that a test whose opening never comes fails instead of hanging.
const GATE_BOUND: Duration = Duration::from_secs(20);

impl Gate {
    fn close(&self) {
        self.state.lock().unwrap().closed = true;
    }

    /// Called by a fetch: waits while the gate is closed.
    fn pass(&self) {
        let mut state = self.state.lock().unwrap();
        state.waiting = true;
        self.changed.notify_all();
        let (mut state, wait) = self.changed.wait_timeout_while(state, GATE_BOUND, |s| s.closed).unwrap();
        state.outwaited |= wait.timed_out();
        state.waiting = false;
    }

    /// Waits (bounded) until a fetch is held at the gate.
    fn held(&self) {
        let state = self.state.lock().unwrap();
        let (state, _) = self.changed.wait_timeout_while(state, GATE_BOUND, |s| !s.waiting).unwrap();
        assert!(state.waiting, "no fetch reached the gate");
    }

    /// Opens the gate; returns whether a fetch had given up waiting for it.
    fn open(&self) -> bool {
        let mut state = self.state.lock().unwrap();
        state.closed = false;
        self.changed.notify_all();
        state.outwaited
    }
}

impl ColdStore for DirStore {
    fn fetch(&self, id: SegmentId, _digest: &blake3::Hash, to: &Path) -> Result<(), String> {
        self.gate.pass();
        if self.down.load(Ordering::SeqCst) {
            return Err("the archive is unreachable".into());
        }
        std::fs::copy(self.dir.join(name(id)), to).map(|_| ()).map_err(|e| e.to_string())
    }

    fn name(&self, id: SegmentId, _digest: &blake3::Hash) -> String {
        self.dir.join(name(id)).display().to_string()
    }
}

fn name(id: SegmentId) -> String {
    format!("{:020}.seg", id.0)
}

struct Fixture {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    store: Arc<DirStore>,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let archive = tmp.path().join("archive");
        std::fs::create_dir_all(&archive).unwrap();
        let store = Arc::new(DirStore { dir: archive, down: AtomicBool::new(false), gate: Gate::default() });
        Fixture { _tmp: tmp, data, store }
    }

    fn options(&self, cache_bytes: u64) -> Options {
        let tiering = Tiering::new(self.store.clone(), self.data.join("cold-cache"), cache_bytes);
        Options { segment_size: 1 << 20, tiering: Some(tiering), ..Options::default() }
    }

    fn log_dir(&self) -> PathBuf {
        self.data.join(LOG_DIR)
    }

    /// Archives segment `id` (copies its file) and returns its digest, as the archiver would.
    fn archive(&self, log: &Log, id: SegmentId) -> blake3::Hash {
        let snapshot = log.segment_snapshot(id).unwrap();
        let bytes = snapshot.bytes().unwrap();
        std::fs::write(self.store.dir.join(name(id)), bytes).unwrap();
        blake3::hash(bytes)
    }
}

/// A log past the idempotency window: a closed stream (a `$lifecycle` record in the first
/// segment), then enough events that the older segments fall out of the window.
fn fill(log: &Log) {
    log.append("closed", ExpectedVersion::Any, vec![NewEvent::json("Opened", &serde_json::json!({}))]).unwrap();
    log.change_stream(StreamChange::Close { stream: "closed".into() }, None).unwrap();
    let total = IDEMPOTENCY_WINDOW as u64 + 40_000;
    let mut n = 0;
    while n < total {
        let batch: Vec<NewEvent> =
            (n..n + 5_000).map(|i| NewEvent::json("Tick", &serde_json::json!({ "n": i }))).collect();
        log.append(&format!("s{}", n % 7), ExpectedVersion::Any, batch).unwrap();
        n += 5_000;
    }
}

fn all(log: &Log) -> Vec<Event> {
    let head = log.head().unwrap().position.0;
    let mut out = Vec::new();
    log.for_each(Position(0), head + 1, |e| {
        out.push(e);
        true
    })
    .unwrap();
    out
}

/// Evicts every segment the log lets go (sealed, out of the idempotency window), archiving each
/// first; returns their ids.
fn evict_all(f: &Fixture, log: &Log) -> Vec<SegmentId> {
    let mut evicted = Vec::new();
    for snapshot in log.segment_snapshots() {
        if !snapshot.file().sealed {
            continue;
        }
        let digest = f.archive(log, snapshot.id());
        // The stream "closed" is kept in the stubs, as the server keeps `$auth:tokens`.
        if log.evict(snapshot.id(), &digest, &["closed"]).unwrap() {
            evicted.push(snapshot.id());
        }
    }
    evicted
}

#[test]
fn evicted_segments_read_back_verify_and_reopen_from_their_stubs() {
    let f = Fixture::new();
    let log = Log::open(&f.data, f.options(u64::MAX)).unwrap();
    fill(&log);
    let before = all(&log);
    let evicted = evict_all(&f, &log);
    assert!(evicted.len() >= 2, "{evicted:?}");
    assert_eq!(evicted[0], SegmentId(0), "the segment holding the $lifecycle record is evicted too");
    for id in &evicted {
        assert!(!f.log_dir().join(name(*id)).exists(), "segment {id}'s file is gone");
        assert!(f.log_dir().join(format!("{:020}.stub", id.0)).exists());
    }
    let stats = log.tier_stats();
    assert_eq!(stats.segments_evicted, evicted.len() as u64);
    assert!(stats.segments_local >= 1);

    assert_eq!(all(&log), before, "every event reads back across tiers");
    let report = log.verify(None, |_| {}).unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.events, before.len() as u64);
    let stats = log.tier_stats();
    assert_eq!(stats.cache_misses, evicted.len() as u64);
    assert!(stats.cache_hits > 0);
    let snapshot = log.segment_snapshot(evicted[1]).unwrap();
    assert!(snapshot.is_evicted());
    assert_eq!(
        blake3::hash(snapshot.bytes().unwrap()),
        blake3::hash(&std::fs::read(f.store.dir.join(name(evicted[1]))).unwrap())
    );
    // Appends go on beside evicted segments.
    log.append("after", ExpectedVersion::Any, vec![NewEvent::json("Later", &serde_json::json!({}))]).unwrap();
    drop(log);

    // Open reads only the stubs: with the archive down it opens, folds the lifecycle record
    // kept in a stub (the stream is still closed) and reads everything local.
    f.store.down.store(true, Ordering::SeqCst);
    let log = Log::open(&f.data, f.options(u64::MAX)).unwrap();
    let refused = log.append("closed", ExpectedVersion::Any, vec![NewEvent::json("X", &serde_json::json!({}))]);
    assert!(matches!(refused, Err(Error::StreamClosed { .. })), "{refused:?}");
    let head = log.head().unwrap().position;
    assert_eq!(log.read_event(head).unwrap().event_type, "Later");
    let kept = log.read_event(Position(1)).unwrap();
    assert_eq!(
        (kept.stream.as_str(), kept.event_type.as_str()),
        (LIFECYCLE_STREAM, EVENT_STREAM_CLOSED),
        "read from the stub"
    );
    let events = log.read_stream("closed", None, 10, Direction::Forward).unwrap();
    assert_eq!(events[0].event_type, "Opened", "a stream the caller keeps reads from the stub");
    let cold = log.read_event(Position(5)).unwrap_err();
    match &cold {
        Error::ColdUnavailable { segment, object, detail } => {
            assert_eq!(*segment, SegmentId(0));
            assert!(object.ends_with(&name(SegmentId(0))), "{object}");
            assert!(detail.contains("unreachable"), "{detail}");
        }
        other => panic!("expected an unavailable archive, got {other}"),
    }
    assert!(cold.to_string().contains(&format!("segment {} is evicted and fetching it", SegmentId(0))), "{cold}");
    let verified = log.verify(None, |_| {}).unwrap_err();
    assert!(verified.is_cold_unavailable(), "no integrity verdict without the archive: {verified}");
    log.append("hot", ExpectedVersion::Any, vec![NewEvent::json("StillWrites", &serde_json::json!({}))]).unwrap();

    f.store.down.store(false, Ordering::SeqCst);
    assert_eq!(all(&log)[..before.len()], before[..], "the archive back, every event reads again");
    assert!(log.verify(None, |_| {}).unwrap().ok);
    drop(log);

    // Without tiering configured the log still opens; an evicted event says why it cannot be read.
    let log = Log::open(&f.data, Options { segment_size: 1 << 20, ..Options::default() }).unwrap();
    assert!(matches!(log.read_event(Position(5)), Err(Error::Evicted { segment: SegmentId(0) })));
    drop(log);
    let read_only = Log::open_read_only(&f.data, f.options(u64::MAX)).unwrap();
    assert_eq!(read_only.read_event(Position(5)).unwrap(), before[5], "a reader reads across tiers too");
}

/// A stream read whose `max_age_ms` window reaches into an evicted segment (its edge is found by
/// the events' timestamps) fetches that segment without holding the index's lock: while the
/// fetch waits on the archive, an append completes (its publish takes that lock for writing).
/// The same for a `ttl_ms` stream's state, whose last event is evicted, and for a copy's cut
/// inside an evicted segment. Failed before: these read the evicted records under the read
/// lock, so the append waited for the fetch.
#[test]
fn a_cold_fetch_for_a_retention_window_never_holds_up_appends() {
    let f = Fixture::new();
    let log = Log::open(&f.data, f.options(u64::MAX)).unwrap();
    log.append("expiring", ExpectedVersion::Any, vec![NewEvent::json("Once", &serde_json::json!({}))]).unwrap();
    fill(&log);
    let day = Some(86_400_000);
    for (stream, metadata) in [
        ("s0", StreamMetadata { max_age_ms: day, ..StreamMetadata::default() }),
        ("expiring", StreamMetadata { ttl_ms: day, ..StreamMetadata::default() }),
    ] {
        log.change_stream(StreamChange::SetMetadata { stream: stream.into(), metadata }, None).unwrap();
    }
    let evicted = evict_all(&f, &log);
    assert_eq!(evicted[0], SegmentId(0));
    drop(log);

    type Probe = Box<dyn Fn(&Log) + Send>;
    let probes: [(&str, Probe); 3] = [
        (
            "a max_age_ms read",
            Box::new(|log: &Log| {
                let events = log.read_stream("s0", None, 3, Direction::Forward).unwrap();
                assert_eq!(events[0].version.0, 0, "a day old at most: every event is readable");
            }),
        ),
        (
            "a ttl_ms stream's state",
            Box::new(|log: &Log| {
                let state = log.stream_state("expiring").unwrap();
                assert_eq!(state.deleted_before, None, "not expired");
            }),
        ),
        (
            "a copy cut inside an evicted segment",
            Box::new(|log: &Log| {
                let (files, cut) = log.segment_snapshots_through(Position(5)).unwrap();
                assert_eq!((files.len(), files[0].id()), (1, SegmentId(0)));
                assert!(cut >= Position(5), "cut at a batch end: {cut:?}");
            }),
        ),
    ];
    for (i, (what, probe)) in probes.into_iter().enumerate() {
        // Opened afresh: an empty cache, so the probe fetches.
        let log = Arc::new(Log::open(&f.data, f.options(u64::MAX)).unwrap());
        f.store.gate.close();
        let reader = {
            let log = log.clone();
            std::thread::spawn(move || probe(&log))
        };
        f.store.gate.held();
        log.append("hot", ExpectedVersion::Any, vec![NewEvent::json("WhileFetching", &serde_json::json!({ "i": i }))])
            .unwrap();
        let outwaited = f.store.gate.open();
        reader.join().unwrap();
        assert!(!outwaited, "{what}: the append waited for the cold fetch to end");
        assert_eq!(log.tier_stats().cache_misses, 1, "{what}: one fetch");
    }
}

#[test]
fn a_tampered_archived_copy_is_refused_naming_it() {
    let f = Fixture::new();
    let log = Log::open(&f.data, f.options(u64::MAX)).unwrap();
    fill(&log);
    let evicted = evict_all(&f, &log);
    let copy = f.store.dir.join(name(evicted[1]));
    let mut bytes = std::fs::read(&copy).unwrap();
    bytes[5000] ^= 1;
    std::fs::write(&copy, &bytes).unwrap();
    let err = log.read_event(Position(evicted[1].0)).unwrap_err();
    match &err {
        Error::ColdTampered { segment, object, .. } => {
            assert_eq!(*segment, evicted[1]);
            assert!(object.ends_with(&name(evicted[1])), "{object}");
        }
        other => panic!("expected a refused copy, got {other}"),
    }
    assert!(err.is_corruption());
    // A truncated copy likewise.
    std::fs::write(&copy, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(log.read_event(Position(evicted[1].0)), Err(Error::ColdTampered { .. })));
    // Nothing is left in the cache directory.
    let left: Vec<_> = std::fs::read_dir(f.data.join("cold-cache")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_cache_keeps_its_bound_and_evict_refuses_what_it_must_not_touch() {
    let f = Fixture::new();
    let log = Log::open(&f.data, f.options(1)).unwrap();
    fill(&log);
    let before = all(&log);
    let segments = log.segment_snapshots();
    let active = segments.last().unwrap().id();
    let newest_sealed = segments[segments.len() - 2].id();
    let digest = f.archive(&log, newest_sealed);
    assert!(!log.evictable(newest_sealed));
    assert!(!log.evict(newest_sealed, &digest, &[]).unwrap(), "the idempotency window reaches it");
    assert!(log.evictable(SegmentId(0)));
    assert!(!log.evict(active, &blake3::hash(b""), &[]).unwrap(), "never the active segment");
    let wrong = log.evict(SegmentId(0), &blake3::hash(b"another file"), &[]).unwrap_err();
    assert!(wrong.to_string().contains("not the archived copy's"), "{wrong}");
    assert!(f.log_dir().join(name(SegmentId(0))).exists(), "a refused eviction changes nothing");

    let evicted = evict_all(&f, &log);
    assert!(!log.evict(evicted[0], &f.archive(&log, evicted[0]), &[]).unwrap(), "evicted already");
    assert_eq!(all(&log), before);
    let stats = log.tier_stats();
    assert_eq!(stats.cache_segments, 1, "a 1-byte bound keeps only the copy being read");
    assert_eq!(stats.cache_misses, evicted.len() as u64);
    // A scavenge leaves evicted segments alone.
    log.scavenge(&Default::default(), &mut |_| {}).unwrap();
    assert_eq!(all(&log), before);
}

#[test]
fn an_eviction_stopped_before_the_unlink_reopens_with_the_segment_local() {
    let f = Fixture::new();
    let log = Log::open(&f.data, f.options(u64::MAX)).unwrap();
    fill(&log);
    let before = all(&log);
    let digest = f.archive(&log, SegmentId(0));
    let file = std::fs::read(f.log_dir().join(name(SegmentId(0)))).unwrap();
    assert!(log.evict(SegmentId(0), &digest, &[]).unwrap());
    drop(log);
    // The crash: the stub durable, the segment file not yet unlinked; and a stub being written.
    std::fs::write(f.log_dir().join(name(SegmentId(0))), &file).unwrap();
    std::fs::write(f.log_dir().join("evict.tmp"), b"partial").unwrap();
    f.store.down.store(true, Ordering::SeqCst);
    let log = Log::open(&f.data, f.options(u64::MAX)).unwrap();
    assert!(!f.log_dir().join(format!("{:020}.stub", 0)).exists(), "the stub beside its segment is removed");
    assert!(!f.log_dir().join("evict.tmp").exists());
    assert_eq!(log.tier_stats().segments_evicted, 0);
    assert_eq!(all(&log), before, "read locally, the archive down");
    assert!(log.verify(None, |_| {}).unwrap().ok);
}

#[test]
fn a_damaged_stub_fails_the_open_naming_it() {
    let f = Fixture::new();
    let log = Log::open(&f.data, f.options(u64::MAX)).unwrap();
    fill(&log);
    let evicted = evict_all(&f, &log);
    drop(log);
    let stub = f.log_dir().join(format!("{:020}.stub", evicted[0].0));
    let mut bytes = std::fs::read(&stub).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&stub, &bytes).unwrap();
    let err = Log::open(&f.data, f.options(u64::MAX)).unwrap_err();
    assert!(err.to_string().contains(&stub.display().to_string()), "{err}");
    assert!(err.is_corruption());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A power cut at every step of an eviction (each followed by power losses that keep, drop or
/// tear what was not durable: faults.rs) leaves the segment local or evicted, never neither,
/// and every event readable and verified.
#[test]
fn a_power_cut_at_any_step_of_an_eviction_leaves_the_segment_or_its_stub() {
    let f = Fixture::new();
    let log = Log::open(&f.data, f.options(u64::MAX)).unwrap();
    fill(&log);
    let digest = f.archive(&log, SegmentId(0));
    let first_segment_events = log.segment_snapshots()[1].id().0;
    let read_first =
        |log: &Log| -> Vec<Event> { (0..first_segment_events).map(|p| log.read_event(Position(p)).unwrap()).collect() };
    let before = read_first(&log);
    let head = log.head().unwrap();
    drop(log);
    let mut outcomes = [0u32; 2];
    // Each step of the eviction, counted on its own file (immune to the writer's background
    // work), then no cut at all.
    let segment = name(SegmentId(0));
    let steps: Vec<Option<(Op, &str, u64)>> = vec![
        Some((Op::Create, "evict.tmp", 0)),
        Some((Op::Write, "evict.tmp", 0)),
        Some((Op::Sync, "evict.tmp", 0)),
        Some((Op::Rename, ".stub", 0)),
        Some((Op::SyncDir, LOG_DIR, 0)),
        Some((Op::Remove, &segment, 0)),
        Some((Op::SyncDir, LOG_DIR, 1)),
        None,
    ];
    for (step, cut) in steps.iter().enumerate() {
        for seed in 0..2 {
            let copy = f._tmp.path().join(format!("crash-{step}-{seed}"));
            copy_dir(&f.data, &copy);
            let fs = FaultFs::new();
            let tiering = Tiering::new(f.store.clone(), copy.join("cold-cache"), u64::MAX);
            let options = Options { fs: Arc::new(fs.clone()), tiering: Some(tiering.clone()), ..f.options(u64::MAX) };
            let log = Log::open(&copy, options).unwrap();
            if let Some((op, path, skip)) = cut {
                fs.crash_at(*op, path, *skip);
            }
            // Fails once the power is off (the machine stays off), or completes.
            let evicted = log.evict(SegmentId(0), &digest, &[]);
            assert_eq!(evicted.is_ok(), cut.is_none(), "step {step}: {evicted:?}");
            drop(log);
            fs.power_loss(step as u64 * 10 + seed).unwrap();

            let what = format!("power cut at step {step} ({cut:?}), loss seed {seed}");
            let options = Options { tiering: Some(tiering), ..f.options(u64::MAX) };
            let log = Log::open(&copy, options).unwrap_or_else(|e| panic!("{what}: {e}"));
            let stats = log.tier_stats();
            let local = copy.join(LOG_DIR).join(name(SegmentId(0))).exists();
            assert_eq!(stats.segments_evicted == 0, local, "{what}: {stats:?}");
            outcomes[usize::from(!local)] += 1;
            assert_eq!(read_first(&log), before, "{what}");
            assert_eq!(log.head(), Some(head), "{what}");
            assert!(log.verify(None, |_| {}).unwrap().ok, "{what}");
            drop(log);
            std::fs::remove_dir_all(&copy).unwrap();
        }
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "both the local and the evicted outcome are reached: {outcomes:?}");
}
