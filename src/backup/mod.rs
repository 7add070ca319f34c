//! Online backup to a [`Location`] and restore from one.
//!
//! [`take`] copies a consistent cut of a live log while appends go on: the checkpoint files are
//! listed first, then the head is read, and the log is copied up to the end of the head's batch
//! ([`Log::segment_snapshots_through`]): sealed segments whole, the active one's durable prefix.
//! Those bytes never change again, so the copy is a valid log ending exactly at the head, and
//! every listed checkpoint lies inside it. Each file goes to an object whose key carries its
//! BLAKE3 digest (see [`manifest`]); the manifest is written last, so a backup that stopped
//! part-way has no manifest of its own and is never mistaken for a complete one. An incremental
//! backup skips every object already present at its key with its size.
//!
//! [`restore`] reads the newest manifest, checks the size and digest of every object it names,
//! rebuilds the data directory (segments zero-padded to their capacity, as the log requires),
//! then opens the copy, verifies its whole chain and checks that it ends at the manifest's head
//! position and hash. Only then is the copy renamed into place ([`snapshotter::install`]): a
//! partial, damaged or tampered backup is refused and leaves the target as it was.
//!
//! Both are blocking, and drive the object store's futures on the runtime handle they are
//! given (the server's, or one the command line starts).

pub mod location;
pub mod manifest;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use log_engine::fs::FILE_MODE;
use log_engine::{Log, LOG_DIR};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};
use snapshotter::{Overwrite, Snapshotter};
use tokio::runtime::Handle;
use utoipa::ToSchema;

pub use location::{Location, LocationError};
use manifest::{FileEntry, SegmentEntry, CHECKPOINTS, MANIFESTS, MANIFEST_BYTES_MAX, SEGMENTS};
pub use manifest::{Manifest, ManifestHead, MANIFEST_FORMAT};

/// Files are read, hashed and uploaded in chunks of this many bytes; an object larger than one
/// chunk is uploaded in parts of this size (S3's multipart minimum is 5 MiB).
pub const BACKUP_CHUNK: usize = 8 << 20;

/// Why a backup or a restore from one failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    #[error("{0}")]
    Location(#[from] LocationError),
    #[error("cannot {op} {key} at {url}: {source}")]
    Store {
        op: &'static str,
        url: String,
        key: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Log(#[from] log_engine::Error),
    #[error("{0}")]
    Snapshotter(#[from] snapshotter::Error),
    #[error("there is no backup at {url}: it holds no manifest ({MANIFESTS}/*.json)")]
    NotFound { url: String },
    #[error("the backup at {url} cannot be trusted, so nothing was restored: {detail}")]
    Damaged { url: String, detail: String },
}

impl BackupError {
    fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BackupError + 'a {
        move |source| BackupError::Io { op, path: path.to_path_buf(), source }
    }

    fn store<'a>(
        op: &'static str,
        at: &'a Location,
        key: &'a str,
    ) -> impl FnOnce(object_store::Error) -> BackupError + 'a {
        move |source| BackupError::Store { op, url: at.url.clone(), key: key.to_string(), source: Box::new(source) }
    }
}

/// How a backup copies.
#[derive(Clone, Copy, Debug, Default)]
pub struct BackupOptions {
    /// Skip every object the destination holds already (by key and size).
    pub incremental: bool,
}

/// Where a backup or a restore is: files done of all, and bytes moved so far.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BackupProgress {
    /// `segments` or `checkpoints`.
    pub stage: &'static str,
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_copied: u64,
}

/// What a backup wrote.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BackupReport {
    /// The destination, as a URL.
    pub url: String,
    /// The manifest's key under the destination.
    pub manifest: String,
    /// The last position the backup holds (null: the log was empty) and the chain hash there.
    pub head_position: Option<u64>,
    pub head_hash: Option<String>,
    pub segments: u64,
    pub checkpoints: u64,
    /// Objects written, and objects an incremental backup found present already.
    pub objects_written: u64,
    pub objects_present: u64,
    pub bytes_written: u64,
    pub incremental: bool,
    pub duration_ms: u64,
}

/// What a restore from a backup made.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    pub dir: PathBuf,
    /// The manifest restored from.
    pub manifest: String,
    pub segments: u64,
    pub checkpoints: u64,
    pub head_position: Option<u64>,
    pub head_hash: Option<String>,
    /// Events whose CRCs and chain the restore verified.
    pub events_verified: u64,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Backs up `log` (a live log: appends may go on) to `at`.
pub fn take(
    log: &Log,
    at: &Location,
    options: BackupOptions,
    rt: &Handle,
    progress: &mut dyn FnMut(&BackupProgress),
) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    // Checkpoints first, then the head: every checkpoint listed is at or before the head.
    let checkpoint_files = snapshotter::checkpoint_files(&Snapshotter::checkpoints_dir(log.dir()))?;
    let head = log.head();
    let segment_files = match head {
        Some(head) => {
            let (files, last) = log.segment_snapshots_through(head.position)?;
            assert_eq!(last, head.position, "the head ends its batch");
            files
        }
        None => Vec::new(),
    };
    let mut report = BackupReport {
        url: at.url.clone(),
        manifest: String::new(),
        head_position: head.map(|h| h.position.0),
        head_hash: head.map(|h| h.hash.to_hex()),
        segments: segment_files.len() as u64,
        checkpoints: 0,
        objects_written: 0,
        objects_present: 0,
        bytes_written: 0,
        incremental: options.incremental,
        duration_ms: 0,
    };
    let mut shown =
        BackupProgress { stage: SEGMENTS, files_done: 0, files_total: segment_files.len() as u64, bytes_copied: 0 };
    let mut segments = Vec::new();
    for snapshot in &segment_files {
        // From the snapshot, never the path: a scavenge may have renamed a smaller rewrite over
        // a sealed segment since it was listed, and the last segment's cut offset (which may
        // fall in a sealed segment too) is an offset of the file listed.
        let file = snapshot.file();
        let name = file_name(&file.path);
        let mut source = std::io::Cursor::new(snapshot.bytes()?);
        let (bytes, capacity) = (file.bytes, file.capacity);
        let (key, digest, written) =
            put_file(at, rt, SEGMENTS, &name, &mut source, &file.path, bytes, options, &mut report)?;
        segments.push(SegmentEntry { name, key, bytes, capacity, sealed: file.sealed, blake3: digest });
        shown.files_done += 1;
        shown.bytes_copied += written;
        progress(&shown);
    }
    let mut shown =
        BackupProgress { stage: CHECKPOINTS, files_done: 0, files_total: checkpoint_files.len() as u64, ..shown };
    let mut checkpoints = Vec::new();
    for path in &checkpoint_files {
        let name = file_name(path);
        let mut source = match File::open(path) {
            Ok(f) => f,
            // Retention removed it after a newer full checkpoint was written: that one is not
            // in this backup, so neither is this.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(BackupError::io("open checkpoint", path)(e)),
        };
        let bytes = source.metadata().map_err(BackupError::io("stat checkpoint", path))?.len();
        let (key, digest, written) =
            put_file(at, rt, CHECKPOINTS, &name, &mut source, path, bytes, options, &mut report)?;
        checkpoints.push(FileEntry { name, key, bytes, blake3: digest });
        shown.files_done += 1;
        shown.bytes_copied += written;
        progress(&shown);
    }
    report.checkpoints = checkpoints.len() as u64;
    let created_ms = now_ms();
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        created_ms,
        head: head.map(|h| ManifestHead { position: h.position.0, hash: h.hash.to_hex() }),
        segments,
        checkpoints,
    };
    let key = manifest::manifest_key(report.head_position, created_ms);
    let body = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    rt.block_on(at.store.put(&at.key(&key), PutPayload::from(body))).map_err(BackupError::store(
        "write the manifest",
        at,
        &key,
    ))?;
    report.manifest = key;
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(report)
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Hashes the first `bytes` bytes of `source`, then (unless an incremental backup finds it
/// present) uploads them from the same open file, so a file renamed over meanwhile cannot mix
/// into the object. Returns the key, the digest and the bytes written.
#[allow(clippy::too_many_arguments)]
fn put_file(
    at: &Location,
    rt: &Handle,
    folder: &str,
    name: &str,
    source: &mut (impl Read + Seek),
    path: &Path,
    bytes: u64,
    options: BackupOptions,
    report: &mut BackupReport,
) -> Result<(String, String, u64), BackupError> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; BACKUP_CHUNK];
    for_chunks(source, path, bytes, &mut buf, |chunk| {
        hasher.update(chunk);
        Ok(())
    })?;
    let digest = hasher.finalize();
    let key = manifest::object_key(folder, name, &digest);
    let object = at.key(&key);
    if options.incremental {
        match rt.block_on(at.store.head(&object)) {
            Ok(meta) if meta.size == bytes => {
                report.objects_present += 1;
                return Ok((key, digest.to_hex().to_string(), 0));
            }
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(BackupError::store("look for", at, &key)(e)),
        }
    }
    source.seek(SeekFrom::Start(0)).map_err(BackupError::io("seek", path))?;
    if bytes <= BACKUP_CHUNK as u64 {
        let mut whole = vec![0u8; usize::try_from(bytes).expect("a chunk fits in memory")];
        source.read_exact(&mut whole).map_err(BackupError::io("read", path))?;
        rt.block_on(at.store.put(&object, PutPayload::from(whole))).map_err(BackupError::store("write", at, &key))?;
    } else {
        let upload =
            rt.block_on(at.store.put_multipart(&object)).map_err(BackupError::store("start writing", at, &key))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, BACKUP_CHUNK);
        let written = for_chunks(source, path, bytes, &mut buf, |chunk| {
            rt.block_on(writer.wait_for_capacity(2)).map_err(BackupError::store("write", at, &key))?;
            writer.write(chunk);
            Ok(())
        });
        match written {
            Ok(()) => {
                rt.block_on(writer.finish()).map_err(BackupError::store("finish writing", at, &key))?;
            }
            Err(e) => {
                let _ = rt.block_on(writer.abort());
                return Err(e);
            }
        }
    }
    report.objects_written += 1;
    report.bytes_written += bytes;
    Ok((key, digest.to_hex().to_string(), bytes))
}

/// Reads the first `bytes` bytes of `source` (from where it is) in chunks of `buf`'s size.
fn for_chunks(
    source: &mut impl Read,
    path: &Path,
    bytes: u64,
    buf: &mut [u8],
    mut each: impl FnMut(&[u8]) -> Result<(), BackupError>,
) -> Result<(), BackupError> {
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        source.read_exact(&mut buf[..n]).map_err(BackupError::io("read", path))?;
        each(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// The newest manifest at `at`: its key and content.
pub fn newest_manifest(at: &Location, rt: &Handle) -> Result<(String, Manifest), BackupError> {
    let folder = at.key(MANIFESTS);
    let mut newest: Option<object_store::ObjectMeta> = None;
    rt.block_on(async {
        let mut listing = at.store.list(Some(&folder));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(BackupError::store("list", at, MANIFESTS))?;
            let is_manifest = meta.location.filename().is_some_and(|n| n.ends_with(".json"));
            if is_manifest && newest.as_ref().is_none_or(|n| meta.location > n.location) {
                newest = Some(meta);
            }
        }
        Ok::<(), BackupError>(())
    })?;
    let Some(meta) = newest else { return Err(BackupError::NotFound { url: at.url.clone() }) };
    let key = format!("{MANIFESTS}/{}", meta.location.filename().unwrap_or_default());
    if meta.size > MANIFEST_BYTES_MAX {
        return Err(BackupError::Damaged {
            url: at.url.clone(),
            detail: format!("its manifest {key} is {} bytes, more than {MANIFEST_BYTES_MAX}", meta.size),
        });
    }
    let bytes = rt
        .block_on(async { at.store.get(&meta.location).await?.bytes().await })
        .map_err(BackupError::store("read", at, &key))?;
    let manifest = Manifest::decode(&bytes)
        .map_err(|detail| BackupError::Damaged { url: at.url.clone(), detail: format!("manifest {key}: {detail}") })?;
    Ok((key, manifest))
}

/// Restores the newest backup at `at` into data directory `to` (see the module's rules).
pub fn restore(
    at: &Location,
    to: &Path,
    overwrite: Overwrite,
    rt: &Handle,
    progress: &mut dyn FnMut(&BackupProgress),
) -> Result<RestoreReport, BackupError> {
    let (key, manifest) = newest_manifest(at, rt)?;
    let damaged = |detail: String| BackupError::Damaged { url: at.url.clone(), detail };
    snapshotter::install(to, overwrite, |staging| {
        let log_dir = staging.join(LOG_DIR);
        let checkpoints_dir = Snapshotter::checkpoints_dir(staging);
        for dir in [&log_dir, &checkpoints_dir] {
            std::fs::create_dir(dir).map_err(BackupError::io("create", dir))?;
        }
        let mut shown = BackupProgress {
            stage: SEGMENTS,
            files_done: 0,
            files_total: manifest.segments.len() as u64,
            bytes_copied: 0,
        };
        for s in &manifest.segments {
            let target = log_dir.join(&s.name);
            fetch(at, rt, &s.key, s.bytes, &s.blake3, s.capacity, &target).map_err(|e| e.into_error(at))?;
            shown.files_done += 1;
            shown.bytes_copied += s.bytes;
            progress(&shown);
        }
        let mut shown = BackupProgress {
            stage: CHECKPOINTS,
            files_done: 0,
            files_total: manifest.checkpoints.len() as u64,
            ..shown
        };
        for c in &manifest.checkpoints {
            let target = checkpoints_dir.join(&c.name);
            fetch(at, rt, &c.key, c.bytes, &c.blake3, c.bytes, &target).map_err(|e| e.into_error(at))?;
            shown.files_done += 1;
            shown.bytes_copied += c.bytes;
            progress(&shown);
        }
        for dir in [&log_dir, &checkpoints_dir] {
            File::open(dir).and_then(|d| d.sync_all()).map_err(BackupError::io("fsync directory", dir))?;
        }
        // Prove the copy: its chain verifies and ends where the manifest says.
        let verified = verify_copy(staging, &log_dir);
        let (verified, copy_head) = verified.map_err(|e| damaged(format!("the restored log does not verify: {e}")))?;
        if !verified.ok {
            return Err(damaged(format!(
                "the restored log does not verify: {}",
                verified.detail.as_deref().unwrap_or("no detail")
            )));
        }
        let found = copy_head.map(|h| (h.position.0, h.hash.to_hex()));
        let expected = manifest.head.as_ref().map(|h| (h.position, h.hash.clone()));
        if found != expected {
            let show = |h: &Option<(u64, String)>| {
                h.as_ref().map_or("an empty log".to_string(), |(p, hash)| format!("position {p} (hash {hash})"))
            };
            return Err(damaged(format!(
                "manifest {key} ends at {}, but the restored log ends at {}",
                show(&expected),
                show(&found)
            )));
        }
        Ok(RestoreReport {
            dir: to.to_path_buf(),
            manifest: key.clone(),
            segments: manifest.segments.len() as u64,
            checkpoints: manifest.checkpoints.len() as u64,
            head_position: manifest.head.as_ref().map(|h| h.position),
            head_hash: manifest.head.as_ref().map(|h| h.hash.clone()),
            events_verified: verified.events,
        })
    })
}

/// Verifies the log restored into `log_dir` of `staging`. The staging directory's lock is held
/// (by the restore), and a reader of a locked directory shows only what the writer's side file
/// says is durable; so the reader opens a mirror of hard links to the segments, which no one
/// locks, and the mirror is removed afterwards.
fn verify_copy(
    staging: &Path,
    log_dir: &Path,
) -> Result<(log_engine::VerifyReport, Option<log_engine::Head>), BackupError> {
    let mirror = staging.join(".verify");
    let mirror_log = mirror.join(LOG_DIR);
    std::fs::create_dir_all(&mirror_log).map_err(BackupError::io("create", &mirror_log))?;
    let result = (|| {
        for entry in std::fs::read_dir(log_dir).map_err(BackupError::io("list", log_dir))? {
            let entry = entry.map_err(BackupError::io("list", log_dir))?;
            let link = mirror_log.join(entry.file_name());
            std::fs::hard_link(entry.path(), &link).map_err(BackupError::io("link", &link))?;
        }
        let copy = Log::open_read_only(&mirror, log_engine::Options::default())?;
        let verified = copy.verify(None, |_| {});
        let head = copy.head();
        copy.close();
        Ok((verified?, head))
    })();
    std::fs::remove_dir_all(&mirror).map_err(BackupError::io("remove", &mirror))?;
    result
}

/// Why one object could not be fetched.
enum FetchError {
    Backup(BackupError),
    Damaged(String),
}

impl FetchError {
    fn into_error(self, at: &Location) -> BackupError {
        match self {
            FetchError::Backup(e) => e,
            FetchError::Damaged(detail) => BackupError::Damaged { url: at.url.clone(), detail },
        }
    }
}

impl From<BackupError> for FetchError {
    fn from(e: BackupError) -> FetchError {
        FetchError::Backup(e)
    }
}

/// Writes object `key` into a new file `target`, checking that it has `bytes` bytes with BLAKE3
/// `digest`, then zeros up to `len`; fsynced.
fn fetch(
    at: &Location,
    rt: &Handle,
    key: &str,
    bytes: u64,
    digest: &str,
    len: u64,
    target: &Path,
) -> Result<(), FetchError> {
    let object = at.key(key);
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(target)
        .map_err(BackupError::io("create", target))?;
    let mut hasher = blake3::Hasher::new();
    let mut got = 0u64;
    rt.block_on(async {
        let result = match at.store.get(&object).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(FetchError::Damaged(format!("object {key} is missing")));
            }
            Err(e) => return Err(BackupError::store("read", at, key)(e).into()),
        };
        let mut chunks = result.into_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(BackupError::store("read", at, key))?;
            got += chunk.len() as u64;
            if got > bytes {
                return Err(FetchError::Damaged(format!(
                    "object {key} is longer than the {bytes} bytes the manifest names"
                )));
            }
            hasher.update(&chunk);
            output.write_all(&chunk).map_err(BackupError::io("write", target))?;
        }
        Ok(())
    })?;
    if got != bytes {
        return Err(FetchError::Damaged(format!("object {key} has {got} bytes, the manifest names {bytes}")));
    }
    if hasher.finalize().to_hex().as_str() != digest {
        return Err(FetchError::Damaged(format!("object {key} does not match its BLAKE3 digest: it was altered")));
    }
    // Zeros written, not a sparse extension: the log's writer must find its space allocated.
    let zeros = vec![0u8; BACKUP_CHUNK.min(usize::try_from(len - bytes.min(len)).unwrap_or(BACKUP_CHUNK))];
    let mut at_byte = got;
    while at_byte < len {
        let n = usize::try_from(len - at_byte).unwrap_or(usize::MAX).min(zeros.len());
        output.write_all(&zeros[..n]).map_err(BackupError::io("write", target))?;
        at_byte += n as u64;
    }
    output.sync_all().map_err(BackupError::io("fsync", target))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use log_engine::{ExpectedVersion, NewEvent, Options};

    fn log_with(dir: &Path, events: usize) -> Log {
        let log = Log::open(dir, Options::default()).unwrap();
        for i in 0..events {
            log.append("s", ExpectedVersion::Any, vec![NewEvent::json("T", &serde_json::json!({ "i": i }))]).unwrap();
        }
        log
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
    }

    #[test]
    fn a_backup_restores_to_the_same_head_and_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let log = log_with(&tmp.path().join("data"), 5);
        let rt = runtime();
        let at = Location::directory(&tmp.path().join("backup")).unwrap();
        let report = take(&log, &at, BackupOptions::default(), rt.handle(), &mut |_| {}).unwrap();
        assert_eq!(report.head_position, Some(4));
        let restored = restore(&at, &tmp.path().join("copy"), Overwrite::Refuse, rt.handle(), &mut |_| {}).unwrap();
        assert_eq!(restored.events_verified, 5);
        let copy = Log::open(tmp.path().join("copy"), Options::default()).unwrap();
        assert_eq!(copy.head(), log.head());
    }

    fn backed_up(events: usize) -> (tempfile::TempDir, Log, Location, tokio::runtime::Runtime) {
        let tmp = tempfile::tempdir().unwrap();
        let log = log_with(&tmp.path().join("data"), events);
        let rt = runtime();
        let at = Location::directory(&tmp.path().join("backup")).unwrap();
        take(&log, &at, BackupOptions::default(), rt.handle(), &mut |_| {}).unwrap();
        (tmp, log, at, rt)
    }

    fn only_file(dir: &Path) -> PathBuf {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files.pop().unwrap()
    }

    fn refused(tmp: &tempfile::TempDir, at: &Location, rt: &tokio::runtime::Runtime) -> String {
        let target = tmp.path().join("copy");
        let e = restore(at, &target, Overwrite::Refuse, rt.handle(), &mut |_| {}).unwrap_err();
        assert!(matches!(e, BackupError::Damaged { .. }), "{e}");
        assert!(!target.exists(), "a refused restore leaves nothing at the target");
        e.to_string()
    }

    #[test]
    fn an_altered_segment_is_refused() {
        let (tmp, _log, at, rt) = backed_up(3);
        let segment = only_file(&tmp.path().join("backup").join(SEGMENTS));
        let mut bytes = std::fs::read(&segment).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&segment, bytes).unwrap();
        assert!(refused(&tmp, &at, &rt).contains("BLAKE3"));
    }

    #[test]
    fn a_missing_or_cut_object_is_refused() {
        let (tmp, _log, at, rt) = backed_up(3);
        let segment = only_file(&tmp.path().join("backup").join(SEGMENTS));
        let bytes = std::fs::read(&segment).unwrap();
        std::fs::write(&segment, &bytes[..bytes.len() / 2]).unwrap();
        assert!(refused(&tmp, &at, &rt).contains("bytes"));
        std::fs::remove_file(&segment).unwrap();
        assert!(refused(&tmp, &at, &rt).contains("missing"));
    }

    #[test]
    fn a_manifest_claiming_a_later_head_is_refused() {
        let (tmp, _log, at, rt) = backed_up(3);
        let path = only_file(&tmp.path().join("backup").join(MANIFESTS));
        let mut manifest = Manifest::decode(&std::fs::read(&path).unwrap()).unwrap();
        manifest.head.as_mut().unwrap().position = 9;
        std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
        assert!(refused(&tmp, &at, &rt).contains("ends at position 9"));
    }

    #[test]
    fn an_incremental_backup_writes_only_what_changed() {
        let (_tmp, log, at, rt) = backed_up(3);
        let again = take(&log, &at, BackupOptions { incremental: true }, rt.handle(), &mut |_| {}).unwrap();
        assert_eq!((again.objects_written, again.objects_present), (0, 1));
        log.append("s", ExpectedVersion::Any, vec![NewEvent::json("T", &serde_json::json!({}))]).unwrap();
        let grown = take(&log, &at, BackupOptions { incremental: true }, rt.handle(), &mut |_| {}).unwrap();
        assert_eq!((grown.objects_written, grown.head_position), (1, Some(3)));
    }

    #[test]
    fn no_manifest_is_not_found() {
        let tmp = tempfile::tempdir().unwrap();
        let at = Location::directory(tmp.path()).unwrap();
        let e = restore(&at, &tmp.path().join("copy"), Overwrite::Refuse, runtime().handle(), &mut |_| {}).unwrap_err();
        assert!(matches!(e, BackupError::NotFound { .. }), "{e}");
    }
}
