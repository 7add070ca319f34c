//! Rolling over: preparing the next segment in the background, sealing the full one, and
//! installing the next (segment/active.rs does the file work; this decides when, and keeps the
//! writer's state and the index in step).

use super::now_ms;
use super::Writer;
use crate::cast::usize_of;
use crate::error::{Error, LimitKind, Result};
use crate::fs::StorageFile;
use crate::segment::{self, SegmentHeader, HEADER_LEN, TRAILER_LEN};
use crate::types::SegmentId;

impl Writer {
    /// Prepares the next segment in the background once the active one is half full, so that
    /// rolling over does not stall appenders for the zero-fill, and small logs keep one file.
    pub(super) fn maybe_start_spare(&mut self) {
        let active = &self.state.active;
        if self.spare.is_none() && active.write_offset > active.capacity / 2 {
            self.start_spare();
        }
    }

    fn start_spare(&mut self) {
        let fs = self.shared.options.fs.clone();
        let path = self.log_dir.join(crate::dir::SPARE_FILE);
        let capacity = segment::next_capacity(Some(self.state.active.capacity), self.shared.options.segment_size);
        let spawned = std::thread::Builder::new()
            .name("cairn-log-prepare".into())
            .spawn(move || segment::prepare(fs.as_ref(), &path, capacity));
        match spawned {
            Ok(handle) => self.spare = Some((capacity, handle)),
            // No thread to spare (the process is at a limit): the roll prepares it inline.
            Err(e) => tracing::warn!(error = %e, "could not start the segment preparer thread"),
        }
    }

    /// A prepared next segment file of at least `capacity` bytes, and its capacity: the one
    /// prepared in the background if that worked and is large enough, otherwise one prepared
    /// now. A background failure is not answered as it stands: its cause (a full disk, no free
    /// descriptor) may have passed since, so preparation is tried again.
    fn take_spare(&mut self, capacity: u64) -> Result<(Box<dyn StorageFile>, u64)> {
        let path = self.log_dir.join(crate::dir::SPARE_FILE);
        let background = self.spare.take().map(|(prepared, h)| {
            let file = h.join().unwrap_or_else(|_| Err(std::io::Error::other("the segment preparer thread panicked")));
            (prepared, file)
        });
        match background {
            Some((prepared, Ok(file))) if prepared >= capacity => return Ok((file, prepared)),
            // Too small for the request that needs the room: prepared again, larger.
            Some((_, Ok(_))) => {}
            Some((_, Err(e))) => {
                tracing::warn!(error = %e, "preparing the next segment in the background failed; retrying");
            }
            None => {}
        }
        let file = segment::prepare(self.shared.options.fs.as_ref(), &path, capacity)
            .map_err(|e| Error::io("prepare segment", path, e))?;
        Ok((file, capacity))
    }

    /// Seals the active segment and starts the next one, with room for `need` bytes of records
    /// and their seal (the request that did not fit). The next segment doubles the active one's
    /// capacity up to the configured segment size (see [`segment::next_capacity`]), or more if
    /// the request needs it. An empty active segment (a small first segment, say, too small
    /// for the request) is not sealed but replaced by a larger one under the same name.
    ///
    /// Only a failed write or fdatasync of the log's own bytes (the seal) poisons. Everything
    /// else is an error for the request that needed the room, and leaves the log usable:
    /// - preparing the next file comes first; if that fails (ENOSPC, EMFILE) nothing changed,
    ///   and appends that fit the active segment go on;
    /// - once sealed, the active segment takes no more records (`sealed`), and installing the
    ///   new one (header, rename, directory fsync through the handle held since open) is retried
    ///   by the next append that needs room, with a fresh file. Nothing depends on the new file
    ///   until its directory entry is durable; a crash in between leaves every segment sealed,
    ///   and open starts the next one.
    pub(super) fn roll(&mut self, need: u64) -> Result<()> {
        assert!(self.buf.is_empty(), "roll with {} bytes staged", self.buf.len());
        let max = self.shared.options.segment_size;
        let needed = segment::capacity_for(need);
        if needed > max {
            return Err(Error::LimitExceeded {
                limit: LimitKind::BatchBytes,
                max: usize_of(max - HEADER_LEN - TRAILER_LEN),
                actual: usize_of(need),
            });
        }
        // Sealing needs every record durable and the index complete.
        self.drain();
        if let Some(cause) = &self.poisoned {
            return Err(Error::Poisoned { cause: cause.clone() });
        }
        let replace = !self.sealed && self.state.active.footer.offsets.is_empty();
        let capacity = segment::next_capacity(Some(self.state.active.capacity), max).max(needed);
        let (file, capacity) = self.take_spare(capacity)?;
        if !replace && !self.sealed {
            let last = (self.state.next_position - 1, self.state.last_timestamp_ms, self.state.last_hash);
            if let Err(e) = self.state.active.seal(&self.log_dir, last) {
                self.poison(e.to_string());
                return Err(e);
            }
            self.sealed = true;
        }
        let id = SegmentId(self.state.next_position);
        let header = SegmentHeader {
            version: segment::FORMAT_VERSION,
            id,
            capacity,
            prev_hash: self.state.last_hash,
            created_ms: now_ms(),
            flags: SegmentHeader::flags_for(self.shared.encrypted),
        };
        let fs = self.shared.options.fs.as_ref();
        let (active, new) = segment::install(fs, &self.log_dir, &|| self.dir.sync(), file, &header)?;
        {
            let mut index = self.shared.index.write();
            if replace {
                // Empty, so no reader has anything of it; its file was renamed over.
                assert_eq!(index.active_mut().id, id, "replacing the empty active segment");
                *index.active_mut() = new;
            } else {
                let old = index.active_mut();
                old.sealed = true;
                old.map.publish(old.map.mapped_len());
                index.segments.push(new);
            }
        }
        self.state.active = active;
        self.sealed = false;
        self.unsynced = false;
        if let Some(live) = &self.shared.live {
            live.note(id, HEADER_LEN);
        }
        tracing::debug!(segment = %id, capacity, replaced = replace, "rolled to a new segment");
        Ok(())
    }
}
