//! [`Mirror`]: a read replica's byte-for-byte copy of another process's log, built from the
//! segment bytes that log's server ships, and checked before any of it becomes visible.
//!
//! Design. Sealed segments are immutable files and the active one is immutable below its
//! durable offset, so a replica's data directory is a mirror of the leader's: the same segment
//! files, the same bytes. The mirror holds the directory's lock (no writer can open it) and keeps
//! `log/extent` and `log/live` as a writer would, so a [`crate::Log::open_read_only`] of the
//! directory (the replica's server) is an ordinary reader that shows the active segment only up
//! to the offset published in `log/live`, and [`crate::Log::refresh`] picks up what the mirror
//! added. Nothing the reader sees has not been checked:
//!
//! - **Records of the active segment** ([`Mirror::append`]): every frame's CRC, consecutive
//!   positions from the mirror's tip, and the chain hash recomputed from the previous one; only
//!   whole batches (up to the last `BATCH_END`) are written, then fdatasync'd, and only then is
//!   the `live` offset moved past them. Bytes that do not check out are an error naming the
//!   segment, offset and position, and nothing of them is written.
//! - **A new segment** ([`Mirror::begin`]): its header must start at the tip's next position
//!   with the tip's hash. The file gets the header's capacity (a segment file is exactly its
//!   capacity; the unwritten rest reads as zeros, where a scan stops), is renamed into place and
//!   recorded in `log/extent` before any record goes in, as a writer's segments are.
//! - **A sealed segment** ([`Mirror::stage`], [`Staged::install`]): built whole in a `.tmp` file
//!   (which readers ignore and a writer's open removes), from the records the mirror already
//!   holds plus the shipped rest, or entirely from shipped bytes; then checked as `verify`
//!   checks a sealed segment (every CRC and chain hash from the header's previous hash, the
//!   seal, and the footer's stream table against the records, since open trusts the footer),
//!   fsync'd, and renamed over the active file. A reader that mapped the old file keeps the old
//!   inode's bytes, which are the same records.
//!
//! After a crash the mirror reopens like a reader would (complete batches of the newest segment,
//! CRC-checked) and continues from there; bytes past that are overwritten. A replica's directory
//! is an ordinary data directory: stopping the replica and opening it as a writer promotes it.
//!
//! A leader whose sealed segment is rewritten (a scavenger turning dead events into husks) ships
//! different bytes for the same positions with the same chain: a staged seal built from the
//! mirror's records plus the leader's new footer fails its check, and the caller then stages the
//! whole segment from the leader. Segments the mirror sealed before the rewrite keep their old
//! bytes; their reads still honour the leader's erasures, which are events in the log.
//!
//! A failed write or fdatasync moves nothing: not the active segment's checked end, not the tip,
//! not `live`. Linux marks the pages of a failed fdatasync clean without writing them, so those
//! bytes are neither durable nor written again by a later fdatasync; that is why the mirror does
//! not trust them: the next shipment is written again in full from the checked end (every byte
//! of it, so the pages are dirty again) before the fdatasync that publishes it, and a sealed
//! segment is staged from the checked end on. Reopening and rescanning instead would be wrong
//! here: the rescan reads the page cache, which still holds the bytes whose writeback failed.
//!
//! The mirror never writes a record of its own and never cuts anything the reader has shown.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cast::usize_of;
use crate::dir::{self, DirLock};
use crate::error::{CorruptionKind, Error, FooterDamage, FrameDamage, Result};
use crate::extent::{self, LiveMark};
use crate::fs::{FileSystem, OsFs, FILE_MODE};
use crate::log::Log;
use crate::mmap::Mapping;
use crate::options::Options;
use crate::record::{self, FrameError, FLAG_BATCH_END, KIND_SEAL};
use crate::segment::{self, SegmentHeader, HEADER_LEN, HEADER_USED};
use crate::types::{ChainHash, Head, Position, SegmentId};
use crate::verify::{check_span, Span};

/// Where a mirror's checked log ends: the next position and the chain hash before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorTip {
    pub next_position: u64,
    pub hash: ChainHash,
}

impl MirrorTip {
    /// The last event the tip covers, if any.
    pub fn head(&self) -> Option<Head> {
        self.next_position.checked_sub(1).map(|p| Head { position: Position(p), hash: self.hash })
    }
}

/// The mirror's active (unsealed) segment.
#[derive(Debug)]
struct MirrorActive {
    id: SegmentId,
    path: PathBuf,
    file: File,
    capacity: u64,
    /// Offset after the last checked batch: where the next shipped record belongs.
    end: u64,
    /// The tip before the segment's first record (its header's position and previous hash).
    start: MirrorTip,
}

/// A replica's copy of a leader's log in data directory `dir`. Calling order: [`Mirror::open`]
/// → for each segment the leader lists, in order: [`Mirror::begin`] then [`Mirror::append`]*
/// while it is active, and [`Mirror::stage`] + [`Staged::install`] once it is sealed.
#[derive(Debug)]
pub struct Mirror {
    dir: PathBuf,
    log_dir: PathBuf,
    _lock: DirLock,
    live: LiveMark,
    tip: MirrorTip,
    active: Option<MirrorActive>,
}

/// A sealed segment being assembled in a `.tmp` file before it is checked and installed.
#[derive(Debug)]
pub struct Staged {
    id: SegmentId,
    tmp: PathBuf,
    file: File,
    capacity: u64,
    /// The first offset the shipped bytes must fill (what precedes it came from the mirror).
    from: u64,
}

impl Mirror {
    /// Opens (creating if needed) the mirror in `dir` and takes its lock. What the directory
    /// already holds is read as a reader reads it (sealed segments whole, the newest one up to
    /// its last complete batch), before the lock is taken, so no stale `live` limits it.
    pub fn open(dir: &Path) -> Result<Mirror> {
        dir::create_dir_durable(dir)?;
        let log_dir = dir::log_dir(dir);
        dir::create_dir_durable(&log_dir)?;
        let (tip, active) = {
            let log = Log::open_read_only(dir, Options::default())?;
            let shared = log.shared_arc();
            let index = shared.index.read();
            let tip = MirrorTip { next_position: index.next_position, hash: index.head_hash };
            let active = match index.segments.last() {
                Some(s) if !s.sealed => Some((s.id, s.data_end)),
                _ => None,
            };
            (tip, active)
        };
        let lock = DirLock::acquire(dir)?;
        let live = LiveMark::open(&log_dir)?;
        let active = match active {
            None => None,
            Some((id, end)) => {
                let path = log_dir.join(segment::file_name(id));
                let file = open_rw(&path)?;
                let header = read_header(&file, id, &path)?;
                let count = tip.next_position - id.0;
                let start = MirrorTip { next_position: id.0, hash: header.prev_hash };
                tracing::info!(segment = id.0, events = count, offset = end, "mirror continues its active segment");
                Some(MirrorActive { id, path, file, capacity: header.capacity, end, start })
            }
        };
        let mirror = Mirror { dir: dir.to_path_buf(), log_dir, _lock: lock, live, tip, active };
        mirror.publish();
        Ok(mirror)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the checked log ends.
    pub fn tip(&self) -> MirrorTip {
        self.tip
    }

    /// The active segment and the offset after its last checked batch, if one is open.
    pub fn active(&self) -> Option<(SegmentId, u64)> {
        self.active.as_ref().map(|a| (a.id, a.end))
    }

    /// Tells readers how far the active segment is checked and durable.
    fn publish(&self) {
        if let Some(a) = &self.active {
            self.live.note(a.id, a.end);
        }
    }

    /// Starts the next segment from the leader's header bytes (at least its first
    /// [`MIRROR_HEADER_BYTES`]): the header must continue the tip.
    pub fn begin(&mut self, header_bytes: &[u8]) -> Result<()> {
        assert!(self.active.is_none(), "begin with segment {:?} still active", self.active().map(|a| a.0));
        let header = self.check_header(header_bytes)?;
        let id = header.id;
        let path = self.log_dir.join(segment::file_name(id));
        let tmp = self.log_dir.join(format!("{}.tmp", segment::file_name(id)));
        let file = create_sized(&tmp, header.capacity)?;
        file.write_all_at(&header_bytes[..HEADER_USED], 0)
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io("write segment header", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename segment", &path, e))?;
        // The extent record's own directory fsync makes the rename durable too.
        extent::write_extent(&OsFs, &self.log_dir, id, &|| OsFs.sync_dir(&self.log_dir))?;
        let start = self.tip;
        self.active = Some(MirrorActive { id, path, file, capacity: header.capacity, end: HEADER_LEN, start });
        self.publish();
        Ok(())
    }

    /// Checks a shipped segment header: it must decode and start at the tip with its hash.
    fn check_header(&self, bytes: &[u8]) -> Result<SegmentHeader> {
        let at_tip = SegmentId(self.tip.next_position);
        let header = SegmentHeader::decode(bytes).map_err(|kind| Error::Corrupt {
            segment: at_tip,
            offset: 0,
            position: None,
            kind,
        })?;
        if header.id != at_tip || header.prev_hash != self.tip.hash {
            let kind = CorruptionKind::SegmentGap {
                first_position: Position(header.id.0),
                prev_hash: Box::new(header.prev_hash),
                log_next: Position(self.tip.next_position),
                log_hash: Box::new(self.tip.hash),
            };
            return Err(Error::Corrupt { segment: header.id, offset: 0, position: None, kind });
        }
        if !(segment::SEGMENT_SIZE_MIN..=segment::SEGMENT_SIZE_MAX).contains(&header.capacity)
            || !header.capacity.is_multiple_of(4096)
        {
            return Err(Error::Invalid {
                what: format!("the leader's segment {} claims a capacity of {} bytes", header.id, header.capacity),
            });
        }
        Ok(header)
    }

    /// Takes the shipped bytes that follow the active segment's last checked batch: checks
    /// them (see [`check_records`]), writes the whole batches among them, makes them durable
    /// and publishes them. Returns how many events became visible (0: no whole batch yet; ship
    /// more bytes), or the damage found after the batches it took.
    pub fn append(&mut self, bytes: &[u8]) -> Result<u64> {
        let active = self.active.as_mut().expect("append needs an active segment (begin)");
        let room = segment::usable_end(active.capacity) - active.end;
        let bytes = &bytes[..bytes.len().min(usize_of(room))];
        let checked = check_records(active.id, active.end, bytes, self.tip);
        if checked.events > 0 {
            let len = usize_of(checked.end - active.end);
            active
                .file
                .write_all_at(&bytes[..len], active.end)
                .and_then(|()| active.file.sync_data())
                .map_err(|e| Error::io("write shipped records", &active.path, e))?;
            active.end = checked.end;
            self.tip = checked.tip;
            self.publish();
        }
        match checked.refused {
            Some(e) => Err(e),
            None => Ok(checked.events),
        }
    }

    /// Starts assembling the sealed form of segment `id` of `capacity` bytes. With the mirror
    /// holding `id` active and `reuse` set, its checked records are copied in and the shipped
    /// bytes start after them; otherwise the whole file is to be shipped (`id` must then be the
    /// active segment or start at the tip).
    pub fn stage(&self, id: SegmentId, capacity: u64, reuse: bool) -> Result<Staged> {
        let tmp = self.log_dir.join(format!("{}.tmp", segment::file_name(id)));
        let file = create_sized(&tmp, capacity)?;
        let mut from = 0;
        if let Some(active) = self.active.as_ref().filter(|a| reuse && a.id == id && a.capacity == capacity) {
            let mut buf = vec![0u8; usize_of(active.end)];
            active.file.read_exact_at(&mut buf, 0).map_err(|e| Error::io("read segment", &active.path, e))?;
            file.write_all_at(&buf, 0).map_err(|e| Error::io("write staged segment", &tmp, e))?;
            from = active.end;
        }
        Ok(Staged { id, tmp, file, capacity, from })
    }

    /// Checks the staged segment as `verify` would, starting from the tip where the segment
    /// starts, and installs it in place of the active file (or as the next segment). Returns
    /// the events it added. On failure the staged file is removed and the mirror is unchanged.
    // By value: the staged file is used up, installed or removed, whatever the outcome.
    #[allow(clippy::needless_pass_by_value)]
    pub fn install(&mut self, staged: Staged) -> Result<u64> {
        let result = self.check_staged(&staged);
        let tip = match result {
            Ok(tip) => tip,
            Err(e) => {
                let _ = std::fs::remove_file(&staged.tmp);
                return Err(e);
            }
        };
        staged.file.sync_data().map_err(|e| Error::io("fsync staged segment", &staged.tmp, e))?;
        let path = self.log_dir.join(segment::file_name(staged.id));
        std::fs::rename(&staged.tmp, &path).map_err(|e| Error::io("rename segment", &path, e))?;
        if self.active.is_some() {
            OsFs.sync_dir(&self.log_dir).map_err(|e| Error::io("fsync directory", &self.log_dir, e))?;
        } else {
            extent::write_extent(&OsFs, &self.log_dir, staged.id, &|| OsFs.sync_dir(&self.log_dir))?;
        }
        let added = tip.next_position - self.tip.next_position;
        self.tip = tip;
        self.active = None;
        Ok(added)
    }

    /// The tip after the staged sealed segment, if it checks out.
    fn check_staged(&self, staged: &Staged) -> Result<MirrorTip> {
        let start = match &self.active {
            Some(a) if a.id == staged.id => a.start,
            Some(a) => panic!("staged segment {} while segment {} is active", staged.id, a.id),
            None => self.tip,
        };
        let mut b = [0u8; HEADER_USED];
        staged.file.read_exact_at(&mut b, 0).map_err(|e| Error::io("read staged segment", &staged.tmp, e))?;
        let header = SegmentHeader::decode(&b).map_err(|kind| Error::Corrupt {
            segment: staged.id,
            offset: 0,
            position: None,
            kind,
        })?;
        if header.id != staged.id
            || header.capacity != staged.capacity
            || header.id.0 != start.next_position
            || header.prev_hash != start.hash
        {
            let kind = CorruptionKind::SegmentGap {
                first_position: Position(header.id.0),
                prev_hash: Box::new(header.prev_hash),
                log_next: Position(start.next_position),
                log_hash: Box::new(start.hash),
            };
            return Err(Error::Corrupt { segment: staged.id, offset: 0, position: None, kind });
        }
        let map = Arc::new(
            Mapping::new(&staged.file, staged.capacity).map_err(|e| Error::io("map staged segment", &staged.tmp, e))?,
        );
        let corrupt = |(offset, kind)| Error::Corrupt { segment: staged.id, offset, position: None, kind };
        let sealed = segment::read_sealed(map.bytes(), false).map_err(corrupt)?.ok_or_else(|| {
            corrupt((segment::usable_end(staged.capacity), CorruptionKind::footer(FooterDamage::LostTrailer)))
        })?;
        let offsets = sealed.footer.offsets.clone();
        let count = offsets.len() as u64;
        let span = Span {
            segment: staged.id,
            map: map.clone(),
            cold: None,
            offsets,
            sealed: true,
            from: staged.id.0,
            given: None,
            keys: None,
        };
        let (progress, _) = std::sync::mpsc::channel();
        let outcome = check_span(&span, &progress);
        if let Some((_, e)) = outcome.error {
            return Err(e);
        }
        debug_assert_eq!(outcome.events, count);
        let tip = MirrorTip { next_position: staged.id.0 + count, hash: outcome.last };
        if tip.next_position < self.tip.next_position {
            return Err(Error::Invalid {
                what: format!(
                    "the leader's sealed segment {} ends at position {} but this replica already holds positions up to {}",
                    staged.id,
                    tip.next_position.cast_signed() - 1,
                    self.tip.next_position - 1
                ),
            });
        }
        Ok(tip)
    }
}

impl Staged {
    /// The first offset of the segment the shipped bytes must fill.
    pub fn from(&self) -> u64 {
        self.from
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Writes shipped bytes at `offset` of the staged file (bounded by its capacity).
    pub fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<()> {
        if offset.checked_add(bytes.len() as u64).is_none_or(|end| end > self.capacity) {
            return Err(Error::Invalid {
                what: format!(
                    "{} shipped bytes at offset {offset} do not fit segment {} of {} bytes",
                    bytes.len(),
                    self.id,
                    self.capacity
                ),
            });
        }
        self.file.write_all_at(bytes, offset).map_err(|e| Error::io("write staged segment", &self.tmp, e))
    }
}

/// Bytes of a segment's start a mirror needs to begin it: the header's used part.
pub const MIRROR_HEADER_BYTES: u64 = HEADER_USED as u64;

/// What [`check_records`] accepted, and what it refused after that.
#[derive(Debug)]
pub struct Checked {
    /// The offset after the last whole batch (the start offset when there is none).
    pub end: u64,
    /// The tip after that batch.
    pub tip: MirrorTip,
    /// Events in the whole batches.
    pub events: u64,
    /// Whether the bytes reached the segment's seal record.
    pub at_seal: bool,
    /// The first record after those batches that is not a valid next event: what failed and
    /// where. The batches before it are good and may be taken.
    pub refused: Option<Error>,
}

/// Checks shipped record bytes that start at `offset` of segment `segment`, continuing `tip`:
/// each frame's CRC, its position (the next one), and its chain hash recomputed from the one
/// before. Stops at zeros, at a frame cut off by the end of `bytes`, at a seal record, and at
/// the first record that is not a valid next event (`refused`, with its location). Only whole
/// batches count: the answer ends after the last `BATCH_END` before where it stopped.
pub fn check_records(segment: SegmentId, offset: u64, bytes: &[u8], tip: MirrorTip) -> Checked {
    let mut done = Checked { end: offset, tip, events: 0, at_seal: false, refused: None };
    let (mut at, mut running, mut events) = (0usize, tip, 0u64);
    while at < bytes.len() {
        let here = offset + at as u64;
        let corrupt =
            |kind| Error::Corrupt { segment, offset: here, position: Some(Position(running.next_position)), kind };
        let frame = match record::decode_frame(&bytes[at..], record::EVENT_BODY_MAX) {
            Ok(frame) => frame,
            Err(FrameError::Zero | FrameError::Truncated) => break,
            Err(e) => {
                done.refused = Some(corrupt(e.into()));
                break;
            }
        };
        if frame.header.kind == KIND_SEAL {
            // Reached only when no batch is left open: a seal follows a batch's end.
            done.at_seal = events == 0;
            break;
        }
        let checked = if !record::is_event_kind(frame.header.kind) {
            Err(corrupt(CorruptionKind::RecordFrame(FrameDamage::NotAnEvent { kind: frame.header.kind })))
        } else if frame.header.position != running.next_position {
            Err(corrupt(CorruptionKind::PositionGap {
                expected: Position(running.next_position),
                found: Position(frame.header.position),
            }))
        } else {
            match record::frame_chain_hash(&running.hash, &frame, |_, _| {}) {
                Err(d) => Err(corrupt(CorruptionKind::RecordBody(d))),
                Ok(hash) if hash != frame.header.hash => Err(corrupt(CorruptionKind::ChainMismatch {
                    stored: Box::new(frame.header.hash),
                    computed: Box::new(hash),
                })),
                Ok(hash) => Ok(hash),
            }
        };
        let hash = match checked {
            Ok(hash) => hash,
            Err(e) => {
                done.refused = Some(e);
                break;
            }
        };
        running = MirrorTip { next_position: running.next_position + 1, hash };
        events += 1;
        at += frame.len;
        if frame.header.flags & FLAG_BATCH_END != 0 {
            done.end = offset + at as u64;
            done.tip = running;
            done.events += events;
            events = 0;
        }
    }
    done
}

fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new().read(true).write(true).open(path).map_err(|e| Error::io("open segment", path, e))
}

/// A new owner-only file of `len` bytes (zeros), replacing any leftover of the same name.
fn create_sized(path: &Path, len: u64) -> Result<File> {
    let _ = std::fs::remove_file(path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| Error::io("create segment", path, e))?;
    file.set_len(len).map_err(|e| Error::io("size segment", path, e))?;
    Ok(file)
}

fn read_header(file: &File, id: SegmentId, path: &Path) -> Result<SegmentHeader> {
    let mut b = [0u8; HEADER_USED];
    file.read_exact_at(&mut b, 0).map_err(|e| Error::io("read segment header", path, e))?;
    SegmentHeader::decode(&b).map_err(|kind| Error::Corrupt { segment: id, offset: 0, position: None, kind })
}
