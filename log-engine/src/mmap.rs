//! Read-only memory maps of segment files: the only module allowed `unsafe`.
//!
//! # Soundness
//!
//! A [`Mapping`] maps a whole segment file read-only and hands out `&[u8]` for a prefix of it,
//! the *published* prefix, never more. Rust requires that the bytes behind a shared slice do
//! not change while the slice lives, and that the mapping stays valid. That holds because:
//!
//! 1. **One writer.** The data directory's lock file is held by the writing process for as long
//!    as its log is open (dir.rs), so no other cairn process writes these files. A *reader*
//!    (`Log::open_read_only`, which takes no lock) maps a segment another process may be writing,
//!    but publishes only bytes that process will never write again: sealed segments whole, and
//!    of the active segment only complete batches below the offset the live writer has made
//!    durable (its `live` file, extent.rs), or, with no writer running, the complete batches a
//!    writer's recovery keeps as they are. Recovery rewrites only what lies past them (a torn
//!    tail) and an operator's salvage only what lies past damage, where a reader stops.
//! 2. **Published bytes are immutable.** The writer publishes a prefix only after writing it,
//!    and never writes below a published offset again: records are appended at increasing
//!    offsets, the seal footer and trailer go after the last record, and recovery's repairs
//!    (zeroing a torn tail) run before a segment is mapped. [`Mapping::publish`] asserts that
//!    the published length only grows. A scavenge's rewrite of a sealed segment (scavenge.rs)
//!    is written whole and fdatasynced before it is mapped, and never written again.
//! 3. **Nothing is truncated while mapped.** Segment files are preallocated to their full
//!    capacity before they are mapped and are never shrunk; a file is removed (unlinked) only by
//!    operator tools on a closed log, by a scavenge renaming a sealed segment's rewrite over
//!    it (the old file's inode lives on while mapped), by an eviction (evict.rs) unlinking a
//!    sealed segment once its stub took its place, or by the tier cache (tier.rs) unlinking a
//!    fetched copy it has mapped, and an unlinked file's pages stay valid
//!    while mapped. A
//!    reader's refresh maps files afresh and never shrinks a map it has handed out.
//! 4. **The map outlives every slice.** Slices borrow the `Mapping`, which owns the map; readers
//!    hold an `Arc<Mapping>` while they decode.
//!
//! Outside writers (another program editing a segment under a running cairn) break 1 and are
//! outside what any mmap-based store can defend against; decoding treats mapped bytes as
//! untrusted input anyway (record.rs), so such damage becomes a CRC error, not memory unsafety
//! in cairn's own code.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{Advice, MmapMut, MmapOptions, MmapRaw};

use crate::cast::usize_of;

/// A read-only map of one segment file, readable up to its published length.
#[derive(Debug)]
pub(crate) struct Mapping {
    raw: MmapRaw,
    published: AtomicU64,
}

impl Mapping {
    /// Maps all of `file` read-only, with `published` bytes readable at once.
    pub(crate) fn new(file: &File, published: u64) -> io::Result<Mapping> {
        let raw = MmapOptions::new().map_raw_read_only(file)?;
        assert!(published <= raw.len() as u64, "published {published} > mapped {}", raw.len());
        Ok(Mapping { raw, published: AtomicU64::new(published) })
    }

    /// A read-only anonymous map of `len` bytes, zero but for `ranges` ((offset, bytes), each
    /// inside `len`), all published: an evicted segment as its stub rebuilds it (tier.rs). It is
    /// written before it is made read-only and never again (point 2); nothing backs it on disk.
    pub(crate) fn of_ranges(len: u64, ranges: &[(u64, Vec<u8>)]) -> io::Result<Mapping> {
        let mut map = MmapMut::map_anon(usize_of(len))?;
        for (at, bytes) in ranges {
            let at = usize_of(*at);
            let slot = map.get_mut(at..at + bytes.len()).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("a range at {at} leaves the {len}-byte map"))
            })?;
            slot.copy_from_slice(bytes);
        }
        let raw = MmapRaw::from(map.make_read_only()?);
        Ok(Mapping { raw, published: AtomicU64::new(len) })
    }

    /// Makes bytes up to `len` readable. The caller has written them and will never write
    /// below `len` again (soundness point 2).
    pub(crate) fn publish(&self, len: u64) {
        assert!(len <= self.raw.len() as u64, "publish {len} beyond mapped {}", self.raw.len());
        let old = self.published.swap(len, Ordering::Release);
        assert!(old <= len, "published length went backwards: {old} -> {len}");
    }

    pub(crate) fn published_len(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// The published prefix.
    pub(crate) fn bytes(&self) -> &[u8] {
        let len = usize_of(self.published.load(Ordering::Acquire));
        // SAFETY: the pointer is valid for the mapped length, which is at least `len`
        // (asserted in `publish`); the bytes below `len` never change while `self` lives
        // (points 1-3), and the returned slice borrows `self`, which owns the map (point 4).
        unsafe { std::slice::from_raw_parts(self.raw.as_ptr(), len) }
    }

    /// The whole mapped file, for sealed segments whose every byte is immutable.
    pub(crate) fn mapped_len(&self) -> u64 {
        self.raw.len() as u64
    }

    /// Asks the kernel to start reading `[offset, offset + len)` of the file now, in one go,
    /// rather than a fault at a time. Only a hint: a failure changes nothing but speed.
    pub(crate) fn will_need(&self, offset: u64, len: u64) {
        let (offset, len) = (usize_of(offset), usize_of(len));
        if offset.checked_add(len).is_some_and(|end| end <= self.raw.len()) {
            let _ = self.raw.advise_range(Advice::WillNeed, offset, len);
        }
    }
}
