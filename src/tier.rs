//! Tiering for `cairn serve --archive URL`: evicted segments are read back from the archive
//! (the engine's `log_engine::ColdStore`, implemented over the `bucket` crate), and the
//! archiver evicts sealed segments by age or local size budget ([`TierPolicy`], applied in
//! archive.rs once a segment's archived object is confirmed).
//!
//! The bucket's blocking client owns a tokio runtime, which must neither run nor be dropped on
//! an async thread; reads of the log happen on any thread (HTTP handlers, the views' runner),
//! so every fetch is handed to one thread of its own (`cairn-tier-fetch`) that owns the
//! client, and the caller waits for its answer. The thread ends when the store is dropped.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bucket::{BlockingBucket, Location};
use log_engine::{ColdStore, SegmentId, Tiering, SEGMENT_SIZE_MAX};

use crate::backup::manifest::{object_key, SEGMENTS};

/// Bytes of fetched evicted segments the server keeps mapped by default (`--tier-cache`): eight
/// full-size segments.
pub const TIER_CACHE_DEFAULT: u64 = 1 << 30;

/// Where a server keeps evicted segments while it fetches them: under the data directory,
/// beside `log/` (the files are unlinked as soon as they are mapped).
pub const TIER_CACHE_DIR: &str = "cold-cache";

/// When the archiver evicts a sealed segment it has confirmed in the archive: older than
/// `evict_after` (since it was sealed or last rewritten), or, oldest first, while the local
/// sealed segments take more than `local_budget` bytes. Neither set: nothing is evicted (and
/// evicted segments are still read back).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TierPolicy {
    pub evict_after: Option<Duration>,
    pub local_budget: Option<u64>,
}

impl TierPolicy {
    pub fn evicts(&self) -> bool {
        self.evict_after.is_some() || self.local_budget.is_some()
    }
}

/// The engine's reading side of tiering for a log in `dir` archived at `location`, with
/// `cache_bytes` of fetched copies kept.
pub fn tiering(dir: &Path, location: &Location, cache_bytes: u64) -> std::io::Result<Tiering> {
    tiering_in(&dir.join(TIER_CACHE_DIR), location, cache_bytes)
}

/// [`tiering`] fetching into `cache_dir` itself.
pub fn tiering_in(cache_dir: &Path, location: &Location, cache_bytes: u64) -> std::io::Result<Tiering> {
    let store = BucketStore::start(location.clone())?;
    Ok(Tiering::new(Arc::new(store), cache_dir.to_path_buf(), cache_bytes))
}

/// One fetch for the fetching thread: the object, the file to write, where to answer.
struct Job {
    key: String,
    to: PathBuf,
    reply: mpsc::Sender<Result<(), String>>,
}

/// Evicted segments read back from the archive, one fetch at a time on a thread of its own.
#[derive(Debug)]
pub struct BucketStore {
    location: Location,
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl BucketStore {
    fn start(location: Location) -> std::io::Result<BucketStore> {
        let (tx, rx) = mpsc::channel::<Job>();
        let at = location.clone();
        std::thread::Builder::new().name("cairn-tier-fetch".into()).spawn(move || {
            // Opened here, and dropped here: the client's runtime never meets an async thread.
            let mut bucket: Option<BlockingBucket> = None;
            for job in rx {
                let answer = fetch(&at, &mut bucket, &job.key, &job.to);
                let _ = job.reply.send(answer);
            }
        })?;
        Ok(BucketStore { location, jobs: Mutex::new(tx) })
    }

    fn key(id: SegmentId, digest: &blake3::Hash) -> String {
        object_key(SEGMENTS, &format!("{:020}.seg", id.0), digest)
    }
}

fn fetch(at: &Location, bucket: &mut Option<BlockingBucket>, key: &str, to: &Path) -> Result<(), String> {
    if bucket.is_none() {
        *bucket = Some(at.open_blocking().map_err(|e| e.to_string())?);
    }
    let bucket = bucket.as_ref().expect("opened above");
    bucket.get_to_file(key, to, SEGMENT_SIZE_MAX).map(|_| ()).map_err(|e| e.to_string())
}

impl ColdStore for BucketStore {
    fn fetch(&self, id: SegmentId, digest: &blake3::Hash, to: &Path) -> Result<(), String> {
        let (reply, answer) = mpsc::channel();
        let job = Job { key: BucketStore::key(id, digest), to: to.to_path_buf(), reply };
        self.jobs.lock().expect("jobs lock").send(job).map_err(|_| "the fetching thread has stopped".to_string())?;
        answer.recv().map_err(|_| "the fetching thread has stopped".to_string())?
    }

    fn name(&self, id: SegmentId, digest: &blake3::Hash) -> String {
        format!("{}/{}", self.location.to_string().trim_end_matches('/'), BucketStore::key(id, digest))
    }
}
