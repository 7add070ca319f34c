//! [`Log::evict`]: a sealed segment's file leaves the local disk once the archive holds it,
//! and a stub takes its place (tier.rs has the design and the stub; docs/format.md the bytes).

use std::sync::Arc;

use crate::cast::usize_of;
use crate::error::{Error, Result};
use crate::idwindow::IDEMPOTENCY_WINDOW;
use crate::lifecycle::LIFECYCLE_STREAM;
use crate::log::Log;
use crate::stub::{self, Stub};
use crate::tier::{self, ColdSegment, TierStats};
use crate::types::SegmentId;

impl Log {
    /// Evicts sealed segment `id`: writes its stub (crash-safe), reads it from the stub and the
    /// archive from now on, and unlinks its file. `digest` is the BLAKE3 of the whole file as
    /// the caller found it in the archive; a segment whose bytes hash otherwise (rewritten by a
    /// scavenge since) is left alone. Returns false, changing nothing, when the segment is
    /// not one to evict: unknown, evicted already, the active one, or one the idempotency
    /// window still reaches (the writer reads those records and must never wait on a bucket).
    /// Only a writer evicts; readers holding the segment's old map keep reading it.
    ///
    /// The records of `$lifecycle` (open folds them) and of the streams named in `keep` (what
    /// the caller reads at every start, e.g. the server's `$auth:tokens`) stay in the stub, so
    /// reading them never needs the archive.
    pub fn evict(&self, id: SegmentId, digest: &blake3::Hash, keep: &[&str]) -> Result<bool> {
        self.writable()?;
        let shared = self.shared_arc();
        // A scavenge renames rewrites over sealed segments: one or the other at a time.
        let _no_scavenge = shared.scavenging.lock();
        let (map, path, kept) = {
            let index = shared.index.read();
            if !evictable(&index, id) {
                return Ok(false);
            }
            let s = index.segments.iter().find(|s| s.id == id).expect("checked above");
            let mut kept: Vec<u64> = Vec::new();
            for stream in std::iter::once(LIFECYCLE_STREAM).chain(keep.iter().copied()) {
                if let Some(entry) = index.streams.get(stream) {
                    let from = entry.positions.partition_point(|&p| p < id.0);
                    let to = entry.positions.partition_point(|&p| p < s.next_position());
                    kept.extend(entry.positions[from..to].iter().map(|&p| u64::from(s.offsets[usize_of(p - id.0)])));
                }
            }
            kept.sort_unstable();
            kept.dedup();
            (s.map.clone(), s.path.clone(), kept)
        };
        let bytes = &map.bytes()[..usize_of(map.mapped_len())];
        let stub = Stub::of(id, bytes, &kept).map_err(|what| Error::Invalid { what })?;
        if stub.digest != *digest {
            return Err(Error::Invalid {
                what: format!(
                    "segment {id} was not evicted: its file's BLAKE3 is {}, not the archived copy's {digest}",
                    stub.digest
                ),
            });
        }
        let stub_map = Arc::new(stub.resident_map().map_err(|e| Error::io("map stub", &path, e))?);
        let fs = shared.options.fs.clone();
        let log_dir = shared.log_dir();
        stub::write_stub(fs.as_ref(), &log_dir, &stub)?;
        let kept_offsets = stub.ranges[1..stub.ranges.len() - 2].iter().map(|(at, _)| *at).collect();
        let cold = ColdSegment {
            id,
            capacity: stub.capacity,
            digest: stub.digest,
            kept: kept_offsets,
            tiering: shared.options.tiering.clone(),
        };
        {
            let mut index = shared.index.write();
            let s = index.segments.iter_mut().find(|s| s.id == id).expect("sealed segments stay in the index");
            s.map = stub_map;
            s.cold = Some(Arc::new(cold));
        }
        // From here the stub is what open reads: the file may go. A crash before the unlink
        // is durable leaves both, and the next writer's open removes the stub.
        fs.remove(&path).map_err(|e| Error::io("remove evicted segment", &path, e))?;
        fs.sync_dir(&log_dir).map_err(|e| Error::io("fsync directory after evicting a segment", &log_dir, e))?;
        tracing::info!(segment = %id, "segment evicted to the archive");
        Ok(true)
    }

    /// Whether [`Log::evict`] would evict segment `id` now (sealed, local, outside the
    /// idempotency window): a caller asks before it spends anything confirming the archive.
    pub fn evictable(&self, id: SegmentId) -> bool {
        !self.is_read_only() && evictable(&self.shared_arc().index.read(), id)
    }

    /// How many sealed segments are local and evicted, and the cache's figures.
    pub fn tier_stats(&self) -> TierStats {
        let shared = self.shared_arc();
        let mut stats = shared.options.tiering.as_ref().map(tier::Tiering::stats).unwrap_or_default();
        let index = shared.index.read();
        for s in index.segments.iter().filter(|s| s.sealed) {
            if s.cold.is_some() {
                stats.segments_evicted += 1;
            } else {
                stats.segments_local += 1;
            }
        }
        stats
    }
}

/// A sealed, local segment the idempotency window no longer reaches.
fn evictable(index: &crate::index::Index, id: SegmentId) -> bool {
    // As open reckons it (from the newest segment's first position), so that open never
    // needs the id record of an evicted segment either.
    let newest = index.segments.last().map_or(0, |s| s.id.0);
    let window_from = newest.saturating_sub(IDEMPOTENCY_WINDOW as u64);
    index
        .segments
        .iter()
        .find(|s| s.id == id)
        .is_some_and(|s| s.sealed && s.cold.is_none() && s.next_position() <= window_from)
}
