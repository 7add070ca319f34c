//! The checkpoint directory `DIR/checkpoints/` and the [`Snapshotter`] that writes into it.
//!
//! Owns: atomic writes (temporary file, fsync, rename, directory fsync), reading and
//! verifying files, the catalog of what is on disk, chain links between checkpoints, and the
//! binding of each checkpoint to the log's chain hash.
//!
//! Invariants:
//! - A checkpoint exists once its final name is durable; `*.tmp` files are leftovers of an
//!   interrupted write and are removed at open. Nothing is ever rewritten in place.
//! - Sequence numbers only grow: a new checkpoint takes one more than any file name seen,
//!   damaged files included, so a number never names two different checkpoints.
//! - An incremental checkpoint's parent is the checkpoint whose state the views' change marks
//!   correspond to (the *base*): the last one this snapshotter wrote or restored the views from.
//!   Without a base only a full checkpoint can be taken.
//! - Views are marked only after their checkpoint is durable.
//!
//! This module never touches `DIR/log/`: the log is only read (`hash_at`, `head`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

// Checkpoints hold the views' state, the users' data: owner-only, like the log's files.
use log_engine::fs::{DIR_MODE, FILE_MODE};
use log_engine::{Keyring, Log, Position};
use projections::{digest_entries, Projection};
use serde::Serialize;
use serde_bytes::ByteBuf;

use crate::error::{Error, Result};
use crate::format::{self, genesis_hash, Manifest, ProjectionContent, ProjectionManifest, HEADER_LEN};
use crate::policy::Policy;
use crate::types::{CheckpointInfo, CheckpointKind, Digest, Progress, Stage};

/// The checkpoint directory's name inside the data directory.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
const TMP_SUFFIX: &str = ".tmp";

/// A checkpoint captured from the views ([`Snapshotter::capture`]), not yet written.
#[derive(Debug)]
pub struct Captured {
    manifest: Manifest,
    /// Per view, as the view gave them.
    content: Vec<CapturedView>,
    kind: CheckpointKind,
    applied_through: Position,
}

/// One view's part of a [`Captured`] checkpoint.
#[derive(Debug)]
struct CapturedView {
    name: String,
    upserts: Vec<(Vec<u8>, Vec<u8>)>,
    removals: Vec<Vec<u8>>,
}

impl Captured {
    /// The log position the checkpoint covers.
    pub fn position(&self) -> Position {
        self.applied_through
    }
}

/// The checkpoint the views' change marks correspond to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Base {
    pub sequence: u64,
    pub hash: [u8; 32],
    pub position: Position,
}

/// Writes checkpoints of a set of projections into `DIR/checkpoints/`, and restores them.
///
/// Calling order: [`Snapshotter::open`] → [`Snapshotter::restore`] (loads the views from the
/// newest valid chain and replays the log tail; the views' base for incrementals) →
/// [`Snapshotter::checkpoint`] whenever [`Snapshotter::due`] says so or on demand. The views
/// passed to `checkpoint` must be the ones last restored or checkpointed through this
/// snapshotter, all applied through the same log position.
#[derive(Debug)]
pub struct Snapshotter {
    pub(crate) dir: PathBuf,
    pub(crate) policy: Policy,
    pub(crate) next_sequence: u64,
    pub(crate) base: Option<Base>,
    pub(crate) incrementals_since_full: u32,
    /// Position of the newest checkpoint written or loaded, for the event-count policy.
    pub(crate) last_position: Option<Position>,
    pub(crate) last_at: Instant,
    /// The log's key store, when it is encrypted: checkpoints are sealed with it.
    pub(crate) keys: Option<Arc<Keyring>>,
}

/// A checkpoint's verified header and manifest.
#[derive(Clone, Debug)]
pub(crate) struct Loaded {
    pub manifest: Manifest,
    pub hash: [u8; 32],
    pub file_len: u64,
    pub content_offset: u64,
}

impl Loaded {
    pub(crate) fn base(&self) -> Base {
        Base { sequence: self.manifest.sequence, hash: self.hash, position: Position(self.manifest.position) }
    }

    pub(crate) fn kind(&self) -> CheckpointKind {
        CheckpointKind::of(&self.manifest)
    }
}

/// One checkpoint file found on disk.
#[derive(Debug)]
pub(crate) struct CatalogEntry {
    pub file: PathBuf,
    /// The verified manifest, or why the file's header or manifest failed.
    pub loaded: Result<Loaded>,
}

/// What is in the checkpoint directory, by sequence.
#[derive(Debug)]
pub(crate) struct Catalog {
    pub entries: BTreeMap<u64, CatalogEntry>,
    pub temps: Vec<PathBuf>,
}

impl Catalog {
    /// Lists the directory and reads every checkpoint's header and manifest (not its content).
    pub(crate) fn scan(dir: &Path) -> Result<Catalog> {
        let mut entries = BTreeMap::new();
        let mut temps = Vec::new();
        let listing = match std::fs::read_dir(dir) {
            Ok(listing) => listing,
            // A reader's data directory that never had a checkpoint (see `Snapshotter::open`).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Catalog { entries, temps }),
            Err(e) => return Err(Error::io("list", dir, e)),
        };
        for entry in listing {
            let path = entry.map_err(|e| Error::io("list", dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.ends_with(TMP_SUFFIX) {
                temps.push(path);
            } else if let Some(sequence) = format::parse_file_name(name) {
                let loaded = read_manifest(&path, sequence);
                entries.insert(sequence, CatalogEntry { file: path, loaded });
            } else {
                tracing::warn!(file = %path.display(), "ignoring a file that is not a checkpoint");
            }
        }
        Ok(Catalog { entries, temps })
    }

    pub(crate) fn loaded(&self, sequence: u64) -> Option<&Loaded> {
        self.entries.get(&sequence).and_then(|e| e.loaded.as_ref().ok())
    }

    pub(crate) fn file(&self, sequence: u64) -> PathBuf {
        self.entries[&sequence].file.clone()
    }

    /// The newest checkpoint whose manifest verified.
    pub(crate) fn newest_valid(&self) -> Option<&Loaded> {
        self.entries.values().rev().find_map(|e| e.loaded.as_ref().ok())
    }

    /// The checkpoints from a full one to `tip`, oldest first, every link checked: each
    /// parent exists, verified, is not in `bad`, has the hash its child names, and is not
    /// at a later position. On failure, the error names the child of the broken link, and
    /// the second value lists every checkpoint walked (all of which depend on the break).
    pub(crate) fn chain(&self, tip: u64, bad: &BTreeSet<u64>) -> std::result::Result<Vec<u64>, (Box<Error>, Vec<u64>)> {
        let mut walked = Vec::new();
        let mut current = tip;
        loop {
            let loaded = self.loaded(current).expect("callers start from a verified checkpoint");
            walked.push(current);
            let broken = |detail: String| Error::BrokenChain { file: self.file(current), sequence: current, detail };
            let Some(parent) = loaded.manifest.parent else { break };
            let parent_state = match self.entries.get(&parent) {
                None => Err(format!("its parent checkpoint {parent} is missing")),
                Some(CatalogEntry { loaded: Err(_), .. }) => Err(format!("its parent checkpoint {parent} is damaged")),
                Some(_) if bad.contains(&parent) => Err(format!("its parent checkpoint {parent} failed verification")),
                Some(CatalogEntry { loaded: Ok(p), .. }) if p.hash != loaded.manifest.parent_hash => Err(format!(
                    "it names parent {parent} with hash {}, but that checkpoint's hash is {}",
                    Digest(loaded.manifest.parent_hash),
                    Digest(p.hash)
                )),
                Some(CatalogEntry { loaded: Ok(p), .. })
                    if loaded.kind() == CheckpointKind::Incremental
                        && p.manifest.position > loaded.manifest.position =>
                {
                    Err(format!(
                        "its parent {parent} is at log position {}, after its own position {}",
                        p.manifest.position, loaded.manifest.position
                    ))
                }
                Some(_) => Ok(()),
            };
            match (loaded.kind(), parent_state) {
                (CheckpointKind::Incremental, Ok(())) => current = parent,
                (CheckpointKind::Incremental, Err(detail)) => return Err((Box::new(broken(detail)), walked)),
                // A full checkpoint stands alone; its link is checked only while the parent is
                // there to check it against (retention deletes old parents).
                (CheckpointKind::Full, Ok(())) => break,
                (CheckpointKind::Full, Err(detail)) => {
                    let parent_present_and_verified = matches!(
                        self.entries.get(&parent),
                        Some(CatalogEntry { loaded: Ok(_), .. }) if !bad.contains(&parent)
                    );
                    if parent_present_and_verified {
                        return Err((Box::new(broken(detail)), walked));
                    }
                    break;
                }
            }
        }
        walked.reverse();
        Ok(walked)
    }
}

/// Reads and verifies a checkpoint's header and manifest.
pub(crate) fn read_manifest(path: &Path, sequence: u64) -> Result<Loaded> {
    let corrupt = |check| Error::Corrupt { file: path.to_path_buf(), sequence, check };
    let mut file = File::open(path).map_err(|e| Error::io("open checkpoint", path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io("stat checkpoint", path, e))?.len();
    let mut header = [0u8; HEADER_LEN];
    let n = usize::try_from(file_len).map_or(HEADER_LEN, |len| len.min(HEADER_LEN));
    file.read_exact(&mut header[..n]).map_err(|e| Error::io("read checkpoint header", path, e))?;
    let header = format::decode_header(&header[..n], file_len).map_err(corrupt)?;
    // decode_header bounded manifest_len by MANIFEST_LEN_MAX and by the file's length.
    let mut manifest_bytes = vec![0u8; header.manifest_len];
    file.read_exact(&mut manifest_bytes).map_err(|e| Error::io("read checkpoint manifest", path, e))?;
    let manifest = format::decode_manifest(&header, &manifest_bytes, file_len).map_err(corrupt)?;
    if manifest.sequence != sequence {
        return Err(corrupt(format::FormatError::ManifestInvalid(format!(
            "the file name says sequence {sequence}, the manifest says {}",
            manifest.sequence
        ))));
    }
    Ok(Loaded { manifest, hash: header.hash, file_len, content_offset: (HEADER_LEN + header.manifest_len) as u64 })
}

/// Reads and verifies a checkpoint's content (digest, sizes, decoding), opening a sealed one
/// with `keys` (the log's: [`Log::keys`]).
pub(crate) fn read_content(path: &Path, loaded: &Loaded, keys: Option<&Keyring>) -> Result<Vec<ProjectionContent>> {
    let sequence = loaded.manifest.sequence;
    let mut file = File::open(path).map_err(|e| Error::io("open checkpoint", path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io("stat checkpoint", path, e))?.len();
    if file_len != loaded.file_len {
        return Err(Error::Corrupt {
            file: path.to_path_buf(),
            sequence,
            check: format::FormatError::ContentLength {
                expected: loaded.manifest.compressed_len,
                actual: file_len.saturating_sub(loaded.content_offset),
            },
        });
    }
    file.seek(SeekFrom::Start(loaded.content_offset)).map_err(|e| Error::io("seek checkpoint", path, e))?;
    // The manifest bounded compressed_len by CONTENT_COMPRESSED_MAX and it matched the file.
    let compressed_len = loaded.manifest.compressed_len;
    let compressed_len = usize::try_from(compressed_len).map_err(|_| Error::Corrupt {
        file: path.to_path_buf(),
        sequence,
        check: format::FormatError::ManifestInvalid(format!(
            "a compressed length of {compressed_len} bytes does not fit in memory"
        )),
    })?;
    let mut compressed = vec![0u8; compressed_len];
    file.read_exact(&mut compressed).map_err(|e| Error::io("read checkpoint content", path, e))?;
    format::decode_content(&loaded.manifest, &compressed, keys).map_err(|check| Error::Corrupt {
        file: path.to_path_buf(),
        sequence,
        check,
    })
}

/// Checks that the log holds the checkpoint's position with the checkpoint's chain hash.
pub(crate) fn check_log(log: &Log, file: &Path, loaded: &Loaded) -> Result<()> {
    let m = &loaded.manifest;
    let mismatch = |detail: String| Error::LogMismatch { file: file.to_path_buf(), sequence: m.sequence, detail };
    match log.head() {
        Some(head) if head.position.0 >= m.position => {}
        head => {
            return Err(mismatch(format!(
                "it was taken at log position {}, beyond the log's head {} (the log is missing events)",
                m.position,
                head.map_or("(empty log)".to_string(), |h| h.position.to_string())
            )))
        }
    }
    let found = log.hash_at(Position(m.position))?;
    if found.0 != m.log_hash {
        return Err(mismatch(format!(
            "the log's chain hash at position {} is {found}, the checkpoint was taken at {}",
            m.position,
            Digest(m.log_hash)
        )));
    }
    Ok(())
}

/// Writes `bytes` to `dir/name` atomically: temporary file, fsync, rename, directory fsync.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    if path.exists() {
        return Err(Error::Invalid {
            what: format!("{} already exists; checkpoints are never rewritten", path.display()),
        });
    }
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .map_err(|e| Error::io("create", &tmp, e))?;
        file.write_all(bytes).map_err(|e| Error::io("write", &tmp, e))?;
        file.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))?;
        // The new name is durable only once the directory is.
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(|e| Error::io("fsync directory", dir, e))
}

/// Creates `dir` if needed and makes its entry in the parent durable.
pub(crate) fn create_dir_durable(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir).map_err(|e| Error::io("create directory", dir, e))?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

/// The views in name order (indices into `views`), checking the names are usable.
pub(crate) fn name_order(views: &[Box<dyn Projection>]) -> Result<Vec<usize>> {
    if views.len() > format::PROJECTIONS_MAX {
        return Err(Error::Invalid {
            what: format!("{} projections; a checkpoint holds at most {}", views.len(), format::PROJECTIONS_MAX),
        });
    }
    let mut order: Vec<usize> = (0..views.len()).collect();
    order.sort_by_key(|&i| views[i].name());
    for pair in order.windows(2) {
        if views[pair[0]].name() == views[pair[1]].name() {
            return Err(Error::Invalid { what: format!("two projections are named {}", views[pair[0]].name()) });
        }
    }
    for v in views {
        if v.name().is_empty() || v.name().len() > format::PROJECTION_NAME_LEN_MAX {
            return Err(Error::Invalid {
                what: format!("projection name {:?} must be 1 to {} bytes", v.name(), format::PROJECTION_NAME_LEN_MAX),
            });
        }
    }
    Ok(order)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A checkpoint's verification status, as [`Snapshotter::list`] reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum ChainStatus {
    /// The file verifies, the log holds its position with its hash, and (for an incremental)
    /// every ancestor back to a full checkpoint is valid and linked by hash.
    Valid,
    /// The file fails a check of its own (header, manifest hash, content digest, sizes).
    Damaged(String),
    /// The log does not have the checkpoint's position, or has a different hash there.
    LogMismatch(String),
    /// A parent is missing, damaged, or does not have the hash its child names.
    BrokenChain(String),
}

/// One row of [`Snapshotter::list`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckpointStatus {
    pub sequence: u64,
    pub file: PathBuf,
    /// The manifest, when it could be read.
    pub info: Option<CheckpointInfo>,
    pub status: ChainStatus,
}

impl Snapshotter {
    /// The checkpoint directory of data directory `data_dir`.
    pub fn checkpoints_dir(data_dir: &Path) -> PathBuf {
        data_dir.join(CHECKPOINTS_DIR)
    }

    /// The highest log position any readable checkpoint in `data_dir` was taken at (its header
    /// and manifest check out), without opening the log: evidence of how far the log once
    /// reached, for an operator's repair to check before it lets the log continue lower.
    pub fn highest_position(data_dir: &Path) -> Result<Option<Position>> {
        let catalog = Catalog::scan(&Snapshotter::checkpoints_dir(data_dir))?;
        Ok(catalog.entries.values().filter_map(|e| e.loaded.as_ref().ok()).map(|l| Position(l.manifest.position)).max())
    }

    /// Opens (creating if needed) the checkpoint directory of `log`'s data directory and
    /// removes leftovers of interrupted writes. Takes the open log so that the data
    /// directory's lock is held. For a read-only log (a reader) it creates and removes nothing:
    /// a directory without checkpoints has none, and taking one fails.
    pub fn open(log: &Log, policy: Policy) -> Result<Snapshotter> {
        policy.validate()?;
        let dir = Snapshotter::checkpoints_dir(log.dir());
        let read_only = log.is_read_only();
        if !read_only {
            create_dir_durable(&dir)?;
        }
        let catalog = Catalog::scan(&dir)?;
        for tmp in catalog.temps.iter().filter(|_| !read_only) {
            tracing::info!(file = %tmp.display(), "removing a checkpoint left half-written by an interrupted write");
            std::fs::remove_file(tmp).map_err(|e| Error::io("remove", tmp, e))?;
        }
        if !read_only && !catalog.temps.is_empty() {
            sync_dir(&dir)?;
        }
        let next_sequence = catalog.entries.keys().next_back().map_or(0, |s| s + 1);
        let last_position = catalog.newest_valid().map(|l| Position(l.manifest.position));
        Ok(Snapshotter {
            dir,
            policy,
            next_sequence,
            base: None,
            incrementals_since_full: 0,
            last_position,
            last_at: Instant::now(),
            keys: log.keys().cloned(),
        })
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The kind of checkpoint the policy wants now, if one is due for views applied through
    /// `applied_through`.
    pub fn due(&self, applied_through: Position) -> Option<CheckpointKind> {
        let events_since = match self.last_position {
            Some(last) => applied_through.0.saturating_sub(last.0),
            None => applied_through.0 + 1,
        };
        self.policy.is_due(events_since, self.last_at.elapsed()).then(|| self.next_kind())
    }

    /// The kind the policy asks for next (full when there is no base to build on).
    pub fn next_kind(&self) -> CheckpointKind {
        self.policy.next_kind(self.base.is_some(), self.incrementals_since_full)
    }

    /// Takes a checkpoint of `views`, which have all applied the log through `applied_through`
    /// (a consistent cut), then marks them. A full checkpoint also applies retention.
    ///
    /// An incremental checkpoint stores each view's changes since its last mark, relative to
    /// this snapshotter's base (the checkpoint it last wrote or restored the views from);
    /// without one it is refused with [`Error::NoParent`].
    ///
    /// [`Snapshotter::capture`] then [`Snapshotter::write_captured`]: a caller that must not
    /// hold the views while the file is encoded and written (a server) calls them apart.
    pub fn checkpoint(
        &mut self,
        log: &Log,
        views: &mut [Box<dyn Projection>],
        applied_through: Position,
        kind: CheckpointKind,
    ) -> Result<CheckpointInfo> {
        let captured = self.capture(log, views, applied_through, kind)?;
        self.write_captured(log, captured)
    }

    /// Captures what a checkpoint of `views` at `applied_through` holds (every entry for a full
    /// one, the changes since the last mark for an incremental) with each view's digest, and
    /// marks the views: from here on their changes belong to the next checkpoint. The views
    /// are needed only for this step; [`Snapshotter::write_captured`] encodes and writes
    /// without them.
    ///
    /// Each view's state is materialised at most once: a full checkpoint's digest is taken
    /// from the entries it captured.
    pub fn capture(
        &mut self,
        log: &Log,
        views: &mut [Box<dyn Projection>],
        applied_through: Position,
        kind: CheckpointKind,
    ) -> Result<Captured> {
        let order = name_order(views)?;
        let log_hash = log.hash_at(applied_through)?;
        let (parent, parent_hash) = match (kind, self.base) {
            (CheckpointKind::Incremental, None) => {
                return Err(Error::NoParent {
                    reason: "these views were neither restored nor checkpointed through this snapshotter; take a full checkpoint first".into(),
                })
            }
            (CheckpointKind::Incremental, Some(base)) if base.position > applied_through => {
                return Err(Error::Invalid {
                    what: format!(
                        "views applied through position {applied_through} are behind their base checkpoint {} at position {}",
                        base.sequence, base.position
                    ),
                })
            }
            (_, Some(base)) => (Some(base.sequence), base.hash),
            (CheckpointKind::Full, None) => match Catalog::scan(&self.dir)?.newest_valid() {
                Some(newest) => (Some(newest.manifest.sequence), newest.hash),
                None => (None, genesis_hash()),
            },
        };
        let mut lines = Vec::with_capacity(views.len());
        let mut captured = Vec::with_capacity(views.len());
        for &i in &order {
            let view = &views[i];
            let name = view.name().to_string();
            let (upserts, removals, digest) = match kind {
                CheckpointKind::Full => {
                    let entries = view.entries();
                    let digest = digest_entries(entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
                    (entries, Vec::new(), digest)
                }
                CheckpointKind::Incremental => {
                    let changes = view.changes_since_mark();
                    (changes.upserts, changes.removals, view.digest())
                }
            };
            lines.push(ProjectionManifest {
                name: name.clone(),
                digest,
                upserts: upserts.len() as u64,
                removals: removals.len() as u64,
            });
            captured.push(CapturedView { name, upserts, removals });
        }
        for view in views.iter_mut() {
            view.mark();
        }
        let manifest = Manifest {
            sequence: self.next_sequence,
            kind: kind.to_byte(),
            position: applied_through.0,
            log_hash: log_hash.0,
            parent,
            parent_hash,
            created_ms: now_ms(),
            projections: lines,
            content_digest: [0; 32],
            raw_len: 0,
            compressed_len: 0,
            sealed: None,
        };
        Ok(Captured { manifest, content: captured, kind, applied_through })
    }

    /// Encodes, checks and durably writes a captured checkpoint, then makes it the base of the
    /// next incremental; a full checkpoint also applies retention. Needs no view.
    ///
    /// If it fails, the views were already marked, so the changes it held are in no checkpoint:
    /// the base is dropped, and the next checkpoint is a full one.
    pub fn write_captured(&mut self, log: &Log, captured: Captured) -> Result<CheckpointInfo> {
        let Captured { manifest, content, kind, applied_through } = captured;
        let sequence = manifest.sequence;
        let written = self.write_checked(manifest, content);
        let info = match written {
            Ok(info) => info,
            Err(e) => {
                self.base = None;
                self.incrementals_since_full = 0;
                return Err(e);
            }
        };
        self.base = Some(Base { sequence, hash: info.hash.0, position: applied_through });
        self.incrementals_since_full = match kind {
            CheckpointKind::Full => 0,
            CheckpointKind::Incremental => self.incrementals_since_full + 1,
        };
        if kind == CheckpointKind::Full {
            // Retention failing leaves extra files behind, never a missing one: log and go on.
            if let Err(e) = self.prune(log) {
                tracing::warn!(error = %e, "checkpoint retention failed; old checkpoints are kept");
            }
        }
        Ok(info)
    }

    /// Checks that every view's captured entries are sorted, then writes them.
    fn write_checked(&mut self, manifest: Manifest, captured: Vec<CapturedView>) -> Result<CheckpointInfo> {
        if manifest.sequence != self.next_sequence {
            return Err(Error::Invalid {
                what: format!(
                    "checkpoint {} was captured before checkpoint {} was written; capture it again",
                    manifest.sequence,
                    self.next_sequence.saturating_sub(1)
                ),
            });
        }
        let mut content = Vec::with_capacity(captured.len());
        for CapturedView { name, upserts, removals } in captured {
            let sorted = format::strictly_sorted(upserts.iter().map(|(k, _)| k.as_slice()))
                && format::strictly_sorted(removals.iter().map(Vec::as_slice));
            if !sorted {
                return Err(Error::Projection {
                    projection: name,
                    detail: "its entries or changes are not sorted by key, or a key repeats".into(),
                });
            }
            content.push(ProjectionContent {
                name,
                upserts: upserts.into_iter().map(|(k, v)| (ByteBuf::from(k), ByteBuf::from(v))).collect(),
                removals: removals.into_iter().map(ByteBuf::from).collect(),
            });
        }
        self.write(manifest, content)
    }

    /// Encodes, checks and durably writes a checkpoint whose sequence is `next_sequence`.
    pub(crate) fn write(&mut self, manifest: Manifest, content: Vec<ProjectionContent>) -> Result<CheckpointInfo> {
        let sequence = manifest.sequence;
        assert_eq!(sequence, self.next_sequence, "checkpoints are written in sequence order");
        let kind = CheckpointKind::of(&manifest);
        let encoded = format::encode(manifest, &content, self.keys.as_deref())
            .map_err(|check| Error::Encode { sequence, check })?;
        drop(content);
        self.check_encoded(&encoded);
        let name = format::file_name(sequence);
        write_atomic(&self.dir, &name, &encoded.bytes)?;
        self.next_sequence = sequence + 1;
        self.last_position = Some(Position(encoded.manifest.position));
        self.last_at = Instant::now();
        let info =
            CheckpointInfo::new(&encoded.manifest, encoded.hash, self.dir.join(&name), encoded.bytes.len() as u64);
        tracing::info!(sequence, kind = %kind, position = info.position.0, bytes = info.file_bytes, "checkpoint written");
        Ok(info)
    }

    /// Decodes what was just encoded, before it is written: the pair of the checks a loader makes.
    fn check_encoded(&self, encoded: &format::Encoded) {
        let len = encoded.bytes.len() as u64;
        let header = format::decode_header(&encoded.bytes, len).expect("a fresh checkpoint header decodes");
        let end = HEADER_LEN + header.manifest_len;
        let manifest = format::decode_manifest(&header, &encoded.bytes[HEADER_LEN..end], len)
            .expect("a fresh checkpoint manifest decodes");
        assert_eq!(manifest, encoded.manifest, "manifest round trip");
        if cfg!(debug_assertions) {
            format::decode_content(&manifest, &encoded.bytes[end..], self.keys.as_deref())
                .expect("a fresh checkpoint's content decodes");
        }
    }

    /// Every checkpoint file with its verification status: header, manifest hash, content
    /// digest, the log's hash at its position, and the chain back to a full checkpoint.
    /// (Projection digests are checked when a chain is loaded into views.)
    pub fn list(&self, log: &Log, progress: &mut dyn FnMut(Progress)) -> Result<Vec<CheckpointStatus>> {
        list_dir(&self.dir, log, progress)
    }
}

/// [`Snapshotter::list`] of data directory `data_dir`'s checkpoints, without a [`Snapshotter`]:
/// for a reader beside the one that writes them (the server's archiver). Files are renamed
/// into place whole, so a listing never sees half a checkpoint.
pub fn list_checkpoints(data_dir: &Path, log: &Log) -> Result<Vec<CheckpointStatus>> {
    list_dir(&Snapshotter::checkpoints_dir(data_dir), log, &mut |_| {})
}

/// [`Snapshotter::list`] for any checkpoint directory.
pub(crate) fn list_dir(dir: &Path, log: &Log, progress: &mut dyn FnMut(Progress)) -> Result<Vec<CheckpointStatus>> {
    let catalog = Catalog::scan(dir)?;
    let total = catalog.entries.len() as u64;
    let mut bad = BTreeSet::new();
    let mut rows = Vec::with_capacity(catalog.entries.len());
    // Oldest first, so that a parent's status is known before its children's.
    for (done, (&sequence, entry)) in catalog.entries.iter().enumerate() {
        let info = entry
            .loaded
            .as_ref()
            .ok()
            .map(|l| CheckpointInfo::new(&l.manifest, l.hash, entry.file.clone(), l.file_len));
        let status = match &entry.loaded {
            Err(e) => ChainStatus::Damaged(e.to_string()),
            Ok(loaded) => match read_content(&entry.file, loaded, log.keys().map(|k| &**k)) {
                Err(e) => ChainStatus::Damaged(e.to_string()),
                Ok(_) => match check_log(log, &entry.file, loaded) {
                    Err(e) => ChainStatus::LogMismatch(e.to_string()),
                    Ok(()) => match catalog.chain(sequence, &bad) {
                        Err((e, _)) => ChainStatus::BrokenChain(e.to_string()),
                        Ok(_) => ChainStatus::Valid,
                    },
                },
            },
        };
        if status != ChainStatus::Valid {
            bad.insert(sequence);
        }
        rows.push(CheckpointStatus { sequence, file: entry.file.clone(), info, status });
        progress(Progress { stage: Stage::VerifyCheckpoints, done: done as u64 + 1, total });
    }
    Ok(rows)
}
