//! The active segment's lifecycle on disk: *prepared* (a zero-filled, fdatasynced `spare.tmp`,
//! made in the background by the writer) → *installed* (header written and fdatasynced, mapped,
//! renamed to its name, directory fsynced, recorded in `log/extent`) → records appended by the
//! writer → *sealed* (footer and id records after the last record, fdatasynced, then the
//! trailer). Every active segment, the first of a new log's and every later one, is installed
//! by [`install`]; recovery resumes one with [`Active::new`].
//!
//! Calling order: `prepare` → `install` → (writer appends) → `Active::seal`; a sealed segment is
//! never written again. Nothing here writes a record: a failure is an ordinary error for the
//! append that needed the room, never a poisoning (ARCHITECTURE.md invariant 8).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::footer::{encode_seal, FooterBuilder};
use super::header::{SegmentHeader, Trailer};
use super::layout::{file_name, usable_end, HEADER_LEN, TRAILER_LEN};
use crate::dir::SPARE_FILE;
use crate::error::{Error, Result};
use crate::fs::{FileSystem, StorageFile};
use crate::index::SegmentState;
use crate::mmap::Mapping;
use crate::record::{FrameHeader, KIND_SEAL};
use crate::types::{ChainHash, SegmentId};

/// The segment the writer appends to.
pub(crate) struct Active {
    pub id: SegmentId,
    pub file: Arc<dyn StorageFile>,
    pub map: Arc<Mapping>,
    pub capacity: u64,
    /// Next byte to write.
    pub write_offset: u64,
    /// Bytes known durable (the watermark stamped into new records); the syncer raises it.
    pub durable: Arc<AtomicU64>,
    pub footer: FooterBuilder,
}

impl Active {
    /// An active segment whose records end (durably) at `end`, with `footer` tracking them.
    pub(crate) fn new(
        id: SegmentId,
        file: Arc<dyn StorageFile>,
        map: Arc<Mapping>,
        capacity: u64,
        end: u64,
        footer: FooterBuilder,
    ) -> Active {
        Active { id, file, map, capacity, write_offset: end, durable: Arc::new(AtomicU64::new(end)), footer }
    }

    /// Writes the footer after the last record, makes it durable, and only then writes the
    /// trailer that points at it: a valid trailer on disk proves its footer durable. `last` is
    /// the segment's last record: its position, timestamp and chain hash.
    pub(crate) fn seal(&self, log_dir: &Path, last: (u64, u64, ChainHash)) -> Result<()> {
        let footer = self.footer.footer(self.id.0);
        let (position, timestamp_ms, hash) = last;
        let header = FrameHeader {
            kind: KIND_SEAL,
            flags: 0,
            position,
            version: footer.offsets.len() as u64,
            timestamp_ms,
            watermark: self.durable.load(Ordering::Acquire),
            hash,
        };
        let (frame, footer_len) = encode_seal(&header, &footer);
        let footer_offset = self.write_offset;
        assert!(
            footer_offset + frame.len() as u64 <= usable_end(self.capacity),
            "footer of {} bytes at {footer_offset} overruns segment {}",
            frame.len(),
            self.id
        );
        let trailer = Trailer { footer_offset, footer_len, ids_len: frame.len() as u64 - footer_len };
        let path = log_dir.join(file_name(self.id));
        self.file
            .write_all_at(&frame, footer_offset)
            .and_then(|()| self.file.sync_data())
            .and_then(|()| self.file.write_all_at(&trailer.encode(), self.capacity - TRAILER_LEN))
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io("seal segment", path, e))
    }
}

/// Creates the next segment's file at `path` (replacing a leftover), reserves and zero-fills
/// `capacity` bytes and makes them durable. On failure the partial file is removed: a
/// half-preallocated file would keep the space it got from everything else (checkpoints, say)
/// while the disk is full.
pub(crate) fn prepare(fs: &dyn FileSystem, path: &Path, capacity: u64) -> std::io::Result<Box<dyn StorageFile>> {
    let _ = fs.remove(path);
    let prepared = fs.create(path).and_then(|file| {
        file.preallocate(capacity)?;
        file.sync_data()?;
        Ok(file)
    });
    if prepared.is_err() {
        // Best effort: a leftover is removed again before the next attempt.
        let _ = fs.remove(path);
    }
    prepared
}

/// Makes a prepared file (at `log_dir/spare.tmp`) segment `header.id`: header, fdatasync, map,
/// rename into place, directory fsync (`sync_dir`), extent record. Mapped before the rename, so
/// that nothing can fail once the new name is durable. On failure the file is dropped (the next
/// attempt prepares a fresh one, and renames it over a name left by this one). Returns the new
/// active segment and its entry for the index.
pub(crate) fn install(
    fs: &dyn FileSystem,
    log_dir: &Path,
    sync_dir: &dyn Fn() -> std::io::Result<()>,
    file: Box<dyn StorageFile>,
    header: &SegmentHeader,
) -> Result<(Active, SegmentState)> {
    let spare_path = log_dir.join(SPARE_FILE);
    let id = header.id;
    let final_path: PathBuf = log_dir.join(file_name(id));
    file.write_all_at(&header.encode(), 0)
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io("write segment header", &spare_path, e))?;
    let map = Mapping::new(file.as_file(), HEADER_LEN).map_err(|e| Error::io("map segment", &spare_path, e))?;
    fs.rename(&spare_path, &final_path).map_err(|e| Error::io("rename segment", &final_path, e))?;
    // The new name is not durable until its directory is fsynced.
    sync_dir().map_err(|e| Error::io("fsync directory", log_dir, e))?;
    // Before any record goes into it, the log must know the new segment exists (extent.rs).
    // A failure here is retried like the rest of the install: the segment holds no record.
    crate::extent::write_extent(fs, log_dir, id, sync_dir)?;
    let map = Arc::new(map);
    let state = SegmentState {
        cold: None,
        id,
        path: final_path,
        map: map.clone(),
        offsets: Vec::new(),
        data_end: HEADER_LEN,
        sealed: false,
    };
    Ok((Active::new(id, Arc::from(file), map, header.capacity, HEADER_LEN, FooterBuilder::default()), state))
}
