//! Tiering: sealed segments evicted from the local disk once an archive holds them, read back
//! through a [`ColdStore`] into a bounded cache when a reader needs them.
//!
//! An evicted segment leaves a *stub* (stub.rs; `log/<first position>.stub`, docs/format.md
//! "Stub files"): the segment's digest and the byte ranges open needs without the records' bodies:
//! the header, every `$lifecycle` record (open folds them) and those of the streams the caller
//! keeps (the server's `$auth:tokens`, replayed at every start), the footer, and
//! the trailer. Open rebuilds from a stub a read-only anonymous map of the segment's capacity
//! holding those ranges at their own offsets (zeros elsewhere), so the header, footer and
//! lifecycle code reads a stub exactly as it reads the file, and open never needs the bucket;
//! the map it keeps afterwards leaves the footer out (the index holds it decoded).
//! Every other record of an evicted segment is read from a fetched copy: the log's [`Tiering`]
//! fetches the whole file through its [`ColdStore`] into its cache directory, checks its
//! BLAKE3 against the stub's digest before anything reads it (a tampered or truncated copy is
//! refused with [`Error::ColdTampered`], naming the object), maps it and unlinks it at once,
//! so the cache leaves nothing on disk behind a crash. The cache holds at most its byte bound
//! of fetched maps (least recently used dropped first; a reader holding one keeps it alive).
//!
//! Eviction ([`crate::Log::evict`]) is the archiver's: only a sealed segment, never one the
//! idempotency window reaches (the writer reads those records, and must never wait on a
//! bucket), and only when its bytes have the digest the caller confirmed in the archive. It
//! writes the stub as `log/evict.tmp`, fdatasyncs it, renames it to its name and fsyncs the
//! directory, swaps the segment's map for the stub's under the index's write lock, and only
//! then unlinks the segment file and fsyncs the directory again. A crash leaves the segment
//! (with or without its stub: a writer's open removes a stub beside its segment) or the stub;
//! readers holding the old map keep reading the unlinked file.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::ids::SegmentId;
use crate::mmap::Mapping;

/// Where evicted segments are read back from: the binary's is the archive's bucket.
pub trait ColdStore: Send + Sync + Debug {
    /// Writes the archived copy of segment `id` (the whole file, whose BLAKE3 is `digest`) to
    /// the new file `to`. The log checks the digest of what was written; an error is a
    /// sentence saying what failed.
    fn fetch(&self, id: SegmentId, digest: &blake3::Hash, to: &Path) -> std::result::Result<(), String>;
    /// What the copy of segment `id` is called where it is kept (an object key, a path), for
    /// errors.
    fn name(&self, id: SegmentId, digest: &blake3::Hash) -> String;
}

/// Reading evicted segments: the cold store and the cache of fetched copies. Cloning shares the
/// cache; give a log's every open (and a reader's refreshes) the same one.
#[derive(Clone, Debug)]
pub struct Tiering {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn ColdStore>,
    dir: PathBuf,
    max_bytes: u64,
    cache: Mutex<VecDeque<(SegmentId, Arc<Mapping>)>>,
    /// One fetch at a time: two readers of one evicted segment fetch it once.
    fetching: Mutex<()>,
    hits: AtomicU64,
    misses: AtomicU64,
    fetched_bytes: AtomicU64,
    fetch_count: AtomicU64,
}

/// The cache's figures, for `/metrics` and `/healthz`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TierStats {
    /// Sealed segments whose file is on the local disk.
    pub segments_local: u64,
    /// Segments evicted to the archive (a stub on the local disk).
    pub segments_evicted: u64,
    /// Reads of an evicted segment served from the cache.
    pub cache_hits: u64,
    /// Reads of an evicted segment that fetched it.
    pub cache_misses: u64,
    /// Fetched copies held, and their bytes.
    pub cache_segments: u64,
    pub cache_bytes: u64,
    /// Bytes fetched from the cold store since the log was opened.
    pub fetched_bytes: u64,
}

impl Tiering {
    /// Reads evicted segments from `store`, keeping at most `cache_bytes` of fetched copies
    /// (at least the one being read), fetched into `cache_dir` (created if needed).
    pub fn new(store: Arc<dyn ColdStore>, cache_dir: PathBuf, cache_bytes: u64) -> Tiering {
        Tiering {
            inner: Arc::new(Inner {
                store,
                dir: cache_dir,
                max_bytes: cache_bytes,
                cache: Mutex::new(VecDeque::new()),
                fetching: Mutex::new(()),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                fetched_bytes: AtomicU64::new(0),
                fetch_count: AtomicU64::new(0),
            }),
        }
    }

    /// The cache's figures (the segment counts are the log's: [`crate::Log::tier_stats`]).
    pub(crate) fn stats(&self) -> TierStats {
        let cache = self.inner.cache.lock();
        TierStats {
            cache_hits: self.inner.hits.load(Ordering::Relaxed),
            cache_misses: self.inner.misses.load(Ordering::Relaxed),
            cache_segments: cache.len() as u64,
            cache_bytes: cache.iter().map(|(_, m)| m.mapped_len()).sum(),
            fetched_bytes: self.inner.fetched_bytes.load(Ordering::Relaxed),
            ..TierStats::default()
        }
    }

    fn cached(&self, id: SegmentId) -> Option<Arc<Mapping>> {
        let mut cache = self.inner.cache.lock();
        let i = cache.iter().position(|(s, _)| *s == id)?;
        let entry = cache.remove(i).expect("found above");
        let map = entry.1.clone();
        cache.push_back(entry);
        Some(map)
    }

    /// Segment `cold`'s whole file if the cache holds it: never waits on the store.
    fn map_cached(&self, cold: &ColdSegment) -> Option<Arc<Mapping>> {
        let map = self.cached(cold.id)?;
        self.inner.hits.fetch_add(1, Ordering::Relaxed);
        Some(map)
    }

    /// Segment `cold`'s whole file, from the cache or fetched.
    fn map(&self, cold: &ColdSegment) -> Result<Arc<Mapping>> {
        if let Some(map) = self.cached(cold.id) {
            self.inner.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(map);
        }
        let _one = self.inner.fetching.lock();
        if let Some(map) = self.cached(cold.id) {
            self.inner.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(map);
        }
        self.inner.misses.fetch_add(1, Ordering::Relaxed);
        let store = &self.inner.store;
        let object = store.name(cold.id, &cold.digest);
        let unavailable = |detail: String| Error::ColdUnavailable { segment: cold.id, object: object.clone(), detail };
        std::fs::create_dir_all(&self.inner.dir).map_err(|e| {
            unavailable(format!("creating the cache directory {} failed: {e}", self.inner.dir.display()))
        })?;
        let n = self.inner.fetch_count.fetch_add(1, Ordering::Relaxed);
        let tmp = self.inner.dir.join(format!("{:020}.{}.{n}.tmp", cold.id.0, std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let fetched = store.fetch(cold.id, &cold.digest, &tmp).map_err(&unavailable).and_then(|()| {
            let file = std::fs::File::open(&tmp)
                .map_err(|e| unavailable(format!("opening the fetched copy {} failed: {e}", tmp.display())))?;
            let len = file.metadata().map_err(|e| unavailable(format!("stat of {} failed: {e}", tmp.display())))?.len();
            if len != cold.capacity {
                return Err(Error::ColdTampered {
                    segment: cold.id,
                    object: object.clone(),
                    detail: format!("it holds {len} bytes, the segment {}", cold.capacity),
                });
            }
            let map = Mapping::new(&file, len)
                .map_err(|e| unavailable(format!("mapping the fetched copy {} failed: {e}", tmp.display())))?;
            let found = blake3::hash(map.bytes());
            if found != cold.digest {
                return Err(Error::ColdTampered {
                    segment: cold.id,
                    object: object.clone(),
                    detail: format!("its BLAKE3 is {found}, the segment's {}", cold.digest),
                });
            }
            Ok(map)
        });
        // Mapped (or refused): the file is not needed on disk any more either way.
        let _ = std::fs::remove_file(&tmp);
        let map = Arc::new(fetched?);
        self.inner.fetched_bytes.fetch_add(map.mapped_len(), Ordering::Relaxed);
        let mut cache = self.inner.cache.lock();
        cache.push_back((cold.id, map.clone()));
        let mut bytes: u64 = cache.iter().map(|(_, m)| m.mapped_len()).sum();
        while bytes > self.inner.max_bytes && cache.len() > 1 {
            let (_, dropped) = cache.pop_front().expect("more than one entry");
            bytes -= dropped.mapped_len();
        }
        Ok(map)
    }
}

/// An evicted segment as the index holds it: what a read needs to get its bytes back.
#[derive(Debug)]
pub(crate) struct ColdSegment {
    pub id: SegmentId,
    pub capacity: u64,
    pub digest: blake3::Hash,
    /// Offsets of the records the stub holds (`$lifecycle`'s), sorted: read from the stub.
    pub kept: Vec<u64>,
    pub tiering: Option<Tiering>,
}

impl ColdSegment {
    /// Whether the record at `offset` is in the stub itself.
    pub(crate) fn keeps(&self, offset: u64) -> bool {
        self.kept.binary_search(&offset).is_ok()
    }

    /// The segment's whole file if the log's cache holds it (never fetches: what the index
    /// reads under its lock).
    pub(crate) fn cached(&self) -> Option<Arc<Mapping>> {
        self.tiering.as_ref()?.map_cached(self)
    }

    /// The segment's whole file, fetched through the log's [`Tiering`].
    pub(crate) fn map(&self) -> Result<Arc<Mapping>> {
        match &self.tiering {
            Some(t) => t.map(self),
            None => Err(Error::Evicted { segment: self.id }),
        }
    }
}
