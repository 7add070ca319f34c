//! `cairn serve --archive URL`: continuous archiving of every sealed segment and every
//! checkpoint to object storage (`s3://BUCKET/PREFIX` or a local directory), in the backup
//! layout (`crate::backup::manifest`), so `cairn restore --from URL` and `cairn drill --from URL`
//! read an archive exactly as they read a backup.
//!
//! One thread of its own (`cairn-archiver`), so no append ever waits on the bucket. Each round
//! it uploads the sealed segments the archive lacks, oldest first, and after each one writes a
//! new manifest ending at that segment's last event; checkpoints are uploaded as they appear and
//! named in a manifest once the archived log covers their position. Invariants:
//! - Only sealed segments are archived: an unsealed byte is never part of an archive (the
//!   events of the active segment are the archive's lag, in `/metrics` and `/healthz`).
//! - A manifest names only objects already uploaded and checked (the digest of the bytes sent
//!   equals the one hashed before, so a segment rewritten meanwhile by a scavenge is caught and
//!   retried), so a kill at any moment leaves the newest manifest complete.
//! - The archive is of this log: at start, the newest manifest's head hash must be this log's
//!   chain hash at that position, or archiving stops with the reason reported.
//! - A sealed segment a scavenge rewrote (dead events turned into husks, erased payloads gone)
//!   is shipped again: each round stats the archived segments' files, and one whose inode
//!   changed since its archived bytes were last confirmed (at start: every one, once) is
//!   hashed; if its digest is not the archived one, the rewrite is uploaded
//!   and named in a new manifest, and only then is the superseded object deleted, so erased
//!   payloads leave the bucket too. Older manifests naming it can no longer be restored from;
//!   the newest always can.
//! - A failed round (bucket unreachable, refused) is retried with exponential backoff from
//!   [`ARCHIVE_BACKOFF_MIN`] to [`ARCHIVE_BACKOFF_MAX`]; the failure count and the last error
//!   are reported. Nothing else is ever deleted from the archive.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bucket::{BlockingBucket, Location};
use log_engine::{Log, Position};
use serde::Serialize;
use utoipa::ToSchema;

use crate::backup::manifest::{
    self, FileEntry, Manifest, ManifestHead, SegmentEntry, CHECKPOINTS, MANIFESTS, MANIFEST_BYTES_MAX, MANIFEST_FORMAT,
    SEGMENTS,
};
use crate::tier::TierPolicy;

/// How often the archiver looks for newly sealed segments and new checkpoints.
pub const ARCHIVE_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The first wait after a failed round; each further failure doubles it ...
pub const ARCHIVE_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// ... up to this.
pub const ARCHIVE_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What the archiver has done, for `/healthz` and `/metrics`.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
pub struct ArchiveStatus {
    /// The archive, as a URL.
    pub url: String,
    /// The last position the archive holds (its newest manifest's head); null before the first
    /// sealed segment is archived.
    pub archived_position: Option<u64>,
    /// Committed events not in the archive yet (the active segment's, and sealed segments not
    /// uploaded yet).
    pub lag_events: u64,
    pub segments_archived: u64,
    /// Archived segments shipped again since the server started because a scavenge rewrote them.
    pub segments_reshipped: u64,
    pub checkpoints_archived: u64,
    /// Bytes uploaded since the server started.
    pub bytes_uploaded: u64,
    /// Rounds that failed since the server started, and how many of the latest rounds in a row.
    pub failures: u64,
    pub consecutive_failures: u64,
    /// The newest failure's message; null once a round succeeds.
    pub last_error: Option<String>,
    /// When a round last completed (unix ms).
    pub last_success_ms: Option<u64>,
    /// True once archiving stopped for good (the archive holds another log); `last_error` says why.
    pub stopped: bool,
    /// Sealed segments evicted locally since the server started (tiering: `--evict-after`,
    /// `--local-budget`).
    pub segments_evicted: u64,
    /// Where the log's sealed segments are: local or evicted to the archive, and the cache of
    /// fetched copies.
    pub tiering: TieringStatus,
}

/// The log's tiers, for `/healthz` and `/metrics`.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
pub struct TieringStatus {
    /// Sealed segments whose file is on the local disk.
    pub segments_local: u64,
    /// Sealed segments evicted to the archive (a stub is left locally).
    pub segments_evicted: u64,
    /// Reads of an evicted segment served from the cache, and those that fetched it.
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Fetched copies held in the cache, and their bytes.
    pub cache_segments: u64,
    pub cache_bytes: u64,
    /// Bytes fetched from the archive since the server started.
    pub fetched_bytes: u64,
}

/// The running archiver; [`Archiver::stop`] ends it.
#[derive(Debug)]
pub struct Archiver {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct Shared {
    status: Mutex<ArchiveStatus>,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Shared {
    fn status(&self) -> std::sync::MutexGuard<'_, ArchiveStatus> {
        self.status.lock().expect("status lock")
    }
}

impl Archiver {
    /// Starts archiving `log` (whose data directory is `dir`) to `location`, evicting archived
    /// segments as `policy` says.
    pub fn start(log: Log, dir: &Path, location: Location, policy: TierPolicy) -> std::io::Result<Archiver> {
        let shared = Arc::new(Shared::default());
        shared.status.lock().expect("status lock").url = location.to_string();
        let worker = Worker {
            log,
            dir: dir.to_path_buf(),
            location,
            shared: shared.clone(),
            archived: Archived::default(),
            policy,
        };
        let thread = std::thread::Builder::new().name("cairn-archiver".into()).spawn(move || worker.run())?;
        Ok(Archiver { shared, thread: Mutex::new(Some(thread)) })
    }

    /// What the archiver has done, with its lag behind `log`'s head.
    pub fn status_of(&self, log: &Log) -> ArchiveStatus {
        let mut status = self.shared.status().clone();
        let events = log.head().map_or(0, |h| h.position.0 + 1);
        let t = log.tier_stats();
        status.tiering = TieringStatus {
            segments_local: t.segments_local,
            segments_evicted: t.segments_evicted,
            cache_hits: t.cache_hits,
            cache_misses: t.cache_misses,
            cache_segments: t.cache_segments,
            cache_bytes: t.cache_bytes,
            fetched_bytes: t.fetched_bytes,
        };
        status.lag_events = events - status.archived_position.map_or(0, |p| p + 1).min(events);
        status
    }

    /// Stops the archiver after its current upload and waits for it; later calls do nothing.
    pub fn stop(&self) {
        *self.shared.stop.lock().expect("stop lock") = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.lock().expect("thread lock").take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Archiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the archive holds, as the newest manifest says.
#[derive(Debug, Default)]
struct Archived {
    segments: Vec<SegmentEntry>,
    /// Uploaded checkpoints by file name, with their log position.
    checkpoints: BTreeMap<String, (FileEntry, u64)>,
    head: Option<ManifestHead>,
    /// Whether the newest manifest read or written matched this log (checked once).
    checked: bool,
    /// Per archived segment: the inode of the local file whose bytes were last confirmed to be
    /// the archived ones. A scavenge renames its rewrite over the path, so a new inode is the
    /// sign to look again.
    confirmed: BTreeMap<String, u64>,
}

struct Worker {
    log: Log,
    dir: std::path::PathBuf,
    location: Location,
    shared: Arc<Shared>,
    archived: Archived,
    policy: TierPolicy,
}

/// Why a round failed: worth retrying, or a reason to stop archiving.
enum RoundError {
    Retry(String),
    Stop(String),
}

impl From<bucket::Error> for RoundError {
    fn from(e: bucket::Error) -> RoundError {
        RoundError::Retry(e.to_string())
    }
}

impl Worker {
    fn run(mut self) {
        let mut backoff = ARCHIVE_BACKOFF_MIN;
        let mut bucket = None;
        loop {
            let wait = match self.round(&mut bucket) {
                Ok(()) => {
                    backoff = ARCHIVE_BACKOFF_MIN;
                    let mut status = self.shared.status();
                    status.consecutive_failures = 0;
                    status.last_error = None;
                    status.last_success_ms = Some(now_ms());
                    ARCHIVE_POLL_INTERVAL
                }
                Err(RoundError::Retry(message)) => {
                    tracing::warn!(archive = %self.location, error = %message, retry_in_ms = backoff.as_millis() as u64, "archiving failed; retrying");
                    let mut status = self.shared.status();
                    status.failures += 1;
                    status.consecutive_failures += 1;
                    status.last_error = Some(message);
                    let wait = backoff;
                    backoff = (backoff * 2).min(ARCHIVE_BACKOFF_MAX);
                    wait
                }
                Err(RoundError::Stop(message)) => {
                    tracing::error!(archive = %self.location, error = %message, "archiving stopped");
                    let mut status = self.shared.status();
                    status.stopped = true;
                    status.last_error = Some(message);
                    return;
                }
            };
            let stop = self.shared.stop.lock().expect("stop lock");
            let (stop, _) = self.shared.wake.wait_timeout_while(stop, wait, |stop| !*stop).expect("stop lock");
            if *stop {
                return;
            }
        }
    }

    fn stopping(&self) -> bool {
        *self.shared.stop.lock().expect("stop lock")
    }

    /// One pass: every sealed segment and checkpoint the archive lacks.
    fn round(&mut self, bucket: &mut Option<BlockingBucket>) -> Result<(), RoundError> {
        if bucket.is_none() {
            *bucket = Some(self.location.open_blocking().map_err(|e| RoundError::Stop(e.to_string()))?);
        }
        let bucket = bucket.as_ref().expect("opened above");
        if !self.archived.checked {
            self.load_newest(bucket)?;
        }
        let files = self.log.segment_files();
        for (i, file) in files.iter().enumerate() {
            let Some(next) = files.get(i + 1) else { break };
            if !file.sealed || self.stopping() {
                break;
            }
            let name = file_name(&file.path);
            if let Some(i) = self.archived.segments.iter().position(|s| s.name == name) {
                self.reship_if_rewritten(bucket, i, &file.path)?;
                continue;
            }
            let inode = inode_of(&file.path)?;
            let (key, digest, sent) = upload(bucket, SEGMENTS, &name, &file.path, file.bytes)?;
            self.archived.confirmed.insert(name.clone(), inode);
            self.archived.segments.push(SegmentEntry {
                name,
                key,
                bytes: file.bytes,
                capacity: file.capacity,
                sealed: true,
                blake3: digest,
            });
            let last = first_position(&next.path)
                .and_then(|p| p.checked_sub(1))
                .ok_or_else(|| RoundError::Stop(format!("segment file {} is misnamed", next.path.display())))?;
            let hash = self.log.hash_at(Position(last)).map_err(|e| RoundError::Retry(e.to_string()))?;
            self.archived.head = Some(ManifestHead { position: last, hash: hash.to_hex() });
            {
                let mut status = self.shared.status();
                status.segments_archived += 1;
                status.bytes_uploaded += sent;
            }
            self.write_manifest(bucket)?;
        }
        let covered = self.archived.head.as_ref().map(|h| h.position);
        let mut newly_covered = false;
        let (mut uploaded, mut uploaded_bytes) = (0, 0);
        for (path, position) in self.checkpoint_files()? {
            let name = file_name(&path);
            if self.archived.checkpoints.contains_key(&name) || self.stopping() {
                continue;
            }
            let Ok(bytes) = std::fs::metadata(&path).map(|m| m.len()) else {
                // Removed by retention meanwhile: a newer one replaces it.
                continue;
            };
            let (key, digest, sent) = match upload(bucket, CHECKPOINTS, &name, &path, bytes) {
                Ok(done) => done,
                Err(RoundError::Retry(_)) if !path.exists() => continue,
                Err(e) => return Err(e),
            };
            self.archived.checkpoints.insert(name.clone(), (FileEntry { name, key, bytes, blake3: digest }, position));
            newly_covered |= covered.is_some_and(|c| position <= c);
            uploaded += 1;
            uploaded_bytes += sent;
        }
        // A manifest written by this round's segments above predates these checkpoints: write
        // it again, or the archive names them only once another segment is sealed.
        if newly_covered {
            self.write_manifest(bucket)?;
        }
        // Counted once the manifest names them, so a reader of /healthz that sees a checkpoint
        // archived finds it in the archive's manifest.
        {
            let mut status = self.shared.status();
            status.checkpoints_archived += uploaded;
            status.bytes_uploaded += uploaded_bytes;
        }
        if self.policy.evicts() {
            self.evict(bucket)?;
        }
        Ok(())
    }

    /// Evicts the archived segments the policy lets go, oldest first: a segment whose local
    /// file is the one confirmed as archived this run (same inode, digest checked), and whose
    /// object in the bucket is downloaded and found to have that digest, is handed to
    /// [`Log::evict`], which checks the file's own digest again and leaves a stub.
    fn evict(&mut self, bucket: &BlockingBucket) -> Result<(), RoundError> {
        let local: Vec<_> = self.log.segment_files().into_iter().filter(|f| f.sealed && f.path.exists()).collect();
        let mut local_bytes: u64 = local.iter().map(|f| f.capacity).sum();
        for file in local {
            if self.stopping() {
                break;
            }
            let over_budget = self.policy.local_budget.is_some_and(|budget| local_bytes > budget);
            let old = self.policy.evict_after.is_some_and(|age| {
                std::fs::metadata(&file.path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|sealed| sealed.elapsed().is_ok_and(|elapsed| elapsed > age))
            });
            if !over_budget && !old {
                continue;
            }
            let name = file_name(&file.path);
            let Some(entry) = self.archived.segments.iter().find(|s| s.name == name).cloned() else { continue };
            let (Some(first), Ok(inode)) = (first_position(&file.path), inode_of(&file.path)) else { continue };
            // Asked before anything is downloaded: a segment the idempotency window reaches
            // stays, and would otherwise be confirmed again every round.
            if !self.log.evictable(log_engine::SegmentId(first)) {
                continue;
            }
            if self.archived.confirmed.get(&name) != Some(&inode) {
                // Not confirmed as the archived bytes yet (a rewrite): the next round ships it.
                continue;
            }
            let digest = blake3::Hash::from_hex(&entry.blake3)
                .map_err(|_| RoundError::Stop(format!("the archive's digest of {name} is not 64 hex digits")))?;
            let check = self.dir.join(crate::tier::TIER_CACHE_DIR).join(format!("{name}.confirm.tmp"));
            std::fs::create_dir_all(check.parent().expect("a file in a directory"))
                .map_err(|e| RoundError::Retry(format!("cannot create the tier cache directory: {e}")))?;
            let _ = std::fs::remove_file(&check);
            let fetched = bucket.get_to_file(&entry.key, &check, entry.bytes);
            let _ = std::fs::remove_file(&check);
            let fetched = fetched?;
            if fetched.digest != digest || fetched.bytes != entry.bytes {
                return Err(RoundError::Retry(format!(
                    "the archived object {} is not the segment it names (BLAKE3 {}, {} bytes; the manifest says {}, \
                     {} bytes): {name} is kept locally",
                    entry.key, fetched.digest, fetched.bytes, entry.blake3, entry.bytes
                )));
            }
            // The token stream is replayed at every start: it stays readable without the bucket.
            match self.log.evict(log_engine::SegmentId(first), &digest, &[crate::auth::TOKEN_STREAM]) {
                Ok(true) => {
                    local_bytes -= file.capacity;
                    self.shared.status().segments_evicted += 1;
                }
                Ok(false) => {}
                Err(e) => return Err(RoundError::Retry(format!("evicting {name} failed: {e}"))),
            }
        }
        Ok(())
    }

    /// Ships archived segment `i` again if its local file is no longer the bytes archived (a
    /// scavenge rewrote it): uploads the rewrite, writes a manifest naming it, then deletes the
    /// superseded object. Returns whether a manifest was written.
    fn reship_if_rewritten(&mut self, bucket: &BlockingBucket, i: usize, path: &Path) -> Result<bool, RoundError> {
        let entry = &self.archived.segments[i];
        let Ok(meta) = std::fs::metadata(path) else { return Ok(false) };
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        // First sight since start, or a new inode: hash it. A size check would not do, since a
        // rewrite is rounded up to whole pages and may keep the size of what it replaced.
        if self.archived.confirmed.get(&entry.name) == Some(&inode) {
            return Ok(false);
        }
        // The inode is taken before the bytes are hashed: a rename in between is seen next round.
        let (key, digest, sent) = upload(bucket, SEGMENTS, &entry.name, path, meta.len())?;
        let name = entry.name.clone();
        self.archived.confirmed.insert(name.clone(), inode);
        if key == entry.key {
            return Ok(false);
        }
        let old = std::mem::replace(
            &mut self.archived.segments[i],
            SegmentEntry { name, key, bytes: meta.len(), capacity: meta.len(), sealed: true, blake3: digest },
        );
        {
            let mut status = self.shared.status();
            status.segments_reshipped += 1;
            status.bytes_uploaded += sent;
        }
        self.write_manifest(bucket)?;
        tracing::info!(segment = %old.name, old = %old.key, new = %self.archived.segments[i].key, "archive: a rewritten segment was shipped again; the superseded object is deleted");
        bucket.delete(&old.key)?;
        Ok(true)
    }

    /// Reads the archive's newest manifest (if any) and checks it is of this log.
    fn load_newest(&mut self, bucket: &BlockingBucket) -> Result<(), RoundError> {
        let manifests = bucket.list(MANIFESTS)?;
        if let Some(newest) = manifests.iter().filter(|o| o.name.ends_with(".json")).max_by(|a, b| a.name.cmp(&b.name))
        {
            let bytes = bucket.get(&newest.name, MANIFEST_BYTES_MAX)?;
            let found = Manifest::decode(&bytes).map_err(|detail| {
                RoundError::Stop(format!("the archive's manifest {} cannot be read: {detail}", newest.name))
            })?;
            if let Some(head) = &found.head {
                let ours = self.log.hash_at(Position(head.position)).ok().map(|h| h.to_hex());
                if ours.as_deref() != Some(head.hash.as_str()) {
                    return Err(RoundError::Stop(format!(
                        "{} holds an archive of another log (its manifest {} ends at position {} with a chain hash \
                         this log does not have there); archive to another prefix",
                        self.location, newest.name, head.position
                    )));
                }
            }
            self.archived.segments = found.segments.into_iter().filter(|s| s.sealed).collect();
            self.archived.head = found.head;
            let mut status = self.shared.status();
            status.archived_position = self.archived.head.as_ref().map(|h| h.position);
            status.segments_archived = self.archived.segments.len() as u64;
            // Checkpoints named there were uploaded; their positions are known to be covered.
            let covered = self.archived.head.as_ref().map_or(0, |h| h.position);
            for c in found.checkpoints {
                self.archived.checkpoints.insert(c.name.clone(), (c, covered));
            }
            status.checkpoints_archived = self.archived.checkpoints.len() as u64;
        }
        self.archived.checked = true;
        Ok(())
    }

    /// Writes a manifest of what is archived: the segments, and the checkpoints inside them.
    fn write_manifest(&self, bucket: &BlockingBucket) -> Result<(), RoundError> {
        let Some(head) = &self.archived.head else { return Ok(()) };
        let created_ms = now_ms();
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            created_ms,
            head: Some(head.clone()),
            segments: self.archived.segments.clone(),
            checkpoints: self
                .archived
                .checkpoints
                .values()
                .filter(|(_, position)| *position <= head.position)
                .map(|(entry, _)| entry.clone())
                .collect(),
        };
        let key = manifest::manifest_key(Some(head.position), created_ms);
        let body = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
        bucket.put(&key, body.into())?;
        self.shared.status().archived_position = Some(head.position);
        Ok(())
    }

    /// The valid checkpoints in the data directory, with their positions.
    fn checkpoint_files(&self) -> Result<Vec<(std::path::PathBuf, u64)>, RoundError> {
        let rows = snapshotter::list_checkpoints(&self.dir, &self.log).map_err(|e| RoundError::Retry(e.to_string()))?;
        Ok(rows
            .into_iter()
            .filter(|r| r.status == snapshotter::ChainStatus::Valid)
            .filter_map(|r| r.info.map(|info| (r.file, info.position.0)))
            .collect())
    }
}

/// Hashes the first `bytes` bytes of `path`, uploads them under their content-addressed key
/// unless the archive has that key already, and checks that what was sent is what was hashed
/// (a sealed segment may be rewritten by a scavenge meanwhile: the next round takes the new
/// file). Returns the key, the digest and the bytes sent.
fn upload(
    bucket: &BlockingBucket,
    folder: &str,
    name: &str,
    path: &Path,
    bytes: u64,
) -> Result<(String, String, u64), RoundError> {
    let digest =
        hash_prefix(path, bytes).map_err(|e| RoundError::Retry(format!("cannot read {}: {e}", path.display())))?;
    let key = manifest::object_key(folder, name, &digest);
    if bucket.head(&key)?.is_some_and(|o| o.size == bytes) {
        return Ok((key, digest.to_hex().to_string(), 0));
    }
    let sent = bucket.put_file_prefix(&key, path, bytes)?;
    if sent.digest != digest {
        let _ = bucket.delete(&key);
        return Err(RoundError::Retry(format!(
            "{} changed while it was uploaded; it is uploaded again",
            path.display()
        )));
    }
    Ok((key, digest.to_hex().to_string(), sent.bytes))
}

fn hash_prefix(path: &Path, bytes: u64) -> std::io::Result<blake3::Hash> {
    use std::io::Read;
    let mut hasher = blake3::Hasher::new();
    let copied = std::io::copy(&mut std::fs::File::open(path)?.take(bytes), &mut hasher)?;
    if copied != bytes {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("{copied} of {bytes} bytes read")));
    }
    Ok(hasher.finalize())
}

fn inode_of(path: &Path) -> Result<u64, RoundError> {
    std::fs::metadata(path)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .map_err(|e| RoundError::Retry(format!("cannot stat {}: {e}", path.display())))
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A segment's first position, from its file name (`00000000000000000042.seg`).
fn first_position(path: &Path) -> Option<u64> {
    file_name(path).strip_suffix(".seg")?.parse().ok()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
