//! Two small side files in `DIR/log/` that tell open and other processes how far the log reaches.
//!
//! - `extent` is **durable**: it names the newest segment the log has ever created. It is
//!   rewritten (tmp + fsync + rename + directory fsync) when a segment is created, before any
//!   record goes into that segment, so a segment file that holds records is never newer than the
//!   extent on disk. At open, a newest segment file older than the extent means the tail of the
//!   log was lost (a deleted or misplaced file): open refuses, naming the missing segment, rather
//!   than hand out the lost positions again. A directory without the file (made by an older
//!   cairn) opens as before and gets one.
//! - `live` is **not durable**: the writer overwrites it in place after every publish with the
//!   active segment and the offset up to which its records are durable and published. A reader
//!   in another process (a read-only open while a writer holds the lock) shows the active
//!   segment only up to that offset, so it never returns an event whose fdatasync has not
//!   returned. It means nothing once the writer is gone: readers consult it only while the lock
//!   is held. A torn or stale copy is caught by its CRC, or is a lower bound: the writer writes
//!   it only after the bytes it names are durable.
//!
//! Both are 32 bytes, little-endian, specified in docs/format.md:
//!
//! | offset | size | `extent` | `live` |
//! |---:|---:|---|---|
//! | 0 | 8 | magic `CAIRNEXT` | magic `CAIRNLIV` |
//! | 8 | 8 | format version (u32) = 1, then 4 zero bytes | active segment id |
//! | 16 | 8 | newest segment id | published, durable offset in that segment |
//! | 24 | 4 | CRC (salt `cairnEXT`) of bytes 0..24 | CRC (salt `cairnLIV`) of bytes 0..24 |
//! | 28 | 4 | zero | zero |

use std::path::Path;

use crate::error::{Error, Result};
use crate::field::{contiguous, salted_crc, u32_in, u64_in, Field};
use crate::fs::FileSystem;
use crate::types::SegmentId;

/// The durable record of the newest segment, in `DIR/log/`.
pub(crate) const EXTENT_FILE: &str = "extent";
/// The writer's published offset, for readers in other processes, in `DIR/log/`.
pub(crate) const LIVE_FILE: &str = "live";

// Both side files are a magic, two 8-byte words, a CRC of what precedes it and 4 zero bytes.
const MAGIC_FIELD: Field = Field::first(8);
const SECOND: Field = MAGIC_FIELD.then(8);
const THIRD: Field = SECOND.then(8);
const CRC: Field = THIRD.then(4);
const RESERVED: Field = CRC.then(4);
const LEN: usize = RESERVED.end();
/// The live file's fields, in docs/format.md's order ("## Live file").
const LIVE_FIELDS: [Field; 5] = [MAGIC_FIELD, SECOND, THIRD, CRC, RESERVED];
/// The extent record's fields, in docs/format.md's order ("## Extent record"): its second word is
/// the version (a u32) followed by 4 reserved zero bytes, which is the version as a u64.
const EXTENT_FIELDS: [Field; 6] =
    [MAGIC_FIELD, Field { at: SECOND.at, len: 4 }, Field { at: SECOND.at + 4, len: 4 }, THIRD, CRC, RESERVED];
const _: () = assert!(contiguous(&LIVE_FIELDS, LEN) && contiguous(&EXTENT_FIELDS, LEN) && LEN == 32);
const EXTENT_MAGIC: [u8; 8] = *b"CAIRNEXT";
const EXTENT_SALT: [u8; 8] = *b"cairnEXT";
const EXTENT_VERSION: u32 = 1;
const LIVE_MAGIC: [u8; 8] = *b"CAIRNLIV";
const LIVE_SALT: [u8; 8] = *b"cairnLIV";

fn encode(magic: [u8; 8], salt: [u8; 8], second: u64, third: u64) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[MAGIC_FIELD.range()].copy_from_slice(&magic);
    b[SECOND.range()].copy_from_slice(&second.to_le_bytes());
    b[THIRD.range()].copy_from_slice(&third.to_le_bytes());
    let crc = salted_crc(&salt, &b[..CRC.at]);
    b[CRC.range()].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode(b: &[u8], magic: [u8; 8], salt: [u8; 8]) -> Option<(u64, u64)> {
    if b.len() != LEN || b[MAGIC_FIELD.range()] != magic || b[RESERVED.range()] != [0; RESERVED.len] {
        return None;
    }
    if u32_in(b, CRC) != salted_crc(&salt, &b[..CRC.at]) {
        return None;
    }
    Some((u64_in(b, SECOND), u64_in(b, THIRD)))
}

/// The newest segment the log has created, or `None` for a directory without the file.
pub(crate) fn read_extent(log_dir: &Path) -> Result<Option<SegmentId>> {
    let path = log_dir.join(EXTENT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read extent file", path, e)),
    };
    match decode(&bytes, EXTENT_MAGIC, EXTENT_SALT) {
        Some((version, id)) if version == u64::from(EXTENT_VERSION) => Ok(Some(SegmentId(id))),
        _ => Err(Error::BadSideFile {
            path,
            detail: "not a valid extent record (32 bytes: magic CAIRNEXT, version 1, CRC)".into(),
        }),
    }
}

/// Durably records `newest` as the newest segment: written beside, fsynced, renamed over the
/// old record, and the directory fsynced (with `sync_dir`: the writer's held directory handle),
/// so a crash leaves the old record or the new one.
pub(crate) fn write_extent(
    fs: &dyn FileSystem,
    log_dir: &Path,
    newest: SegmentId,
    sync_dir: &dyn Fn() -> std::io::Result<()>,
) -> Result<()> {
    let tmp = log_dir.join(format!("{EXTENT_FILE}.tmp"));
    let path = log_dir.join(EXTENT_FILE);
    let _ = fs.remove(&tmp);
    let file = fs.create(&tmp).map_err(|e| Error::io("create extent file", &tmp, e))?;
    let bytes = encode(EXTENT_MAGIC, EXTENT_SALT, u64::from(EXTENT_VERSION), newest.0);
    file.write_all_at(&bytes, 0)
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io("write extent file", &tmp, e))?;
    fs.rename(&tmp, &path).map_err(|e| Error::io("rename extent file", &path, e))?;
    sync_dir().map_err(|e| Error::io("fsync directory", log_dir, e))
}

/// The writer's side of the `live` file. It goes straight to the operating system, not
/// through the log's [`FileSystem`]: it carries no durability (it is never synced and means
/// nothing after a crash), so a fault layer has nothing to test in it.
#[derive(Debug)]
pub(crate) struct LiveMark {
    file: std::fs::File,
}

impl LiveMark {
    /// Opens (creating if needed, owner-only) the `live` file of a log the caller is the writer of.
    pub(crate) fn open(log_dir: &Path) -> Result<LiveMark> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = log_dir.join(LIVE_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(crate::fs::FILE_MODE)
            .open(&path)
            .map_err(|e| Error::io("open live file", &path, e))?;
        Ok(LiveMark { file })
    }

    /// Records that `segment` is durable and published up to `offset`. Advisory: a failure
    /// only makes other processes' readers see less, so it is logged, never fatal.
    pub(crate) fn note(&self, segment: SegmentId, offset: u64) {
        use std::os::unix::fs::FileExt;
        if let Err(e) = self.file.write_all_at(&encode(LIVE_MAGIC, LIVE_SALT, segment.0, offset), 0) {
            tracing::warn!(error = %e, "could not update the live file readers in other processes use");
        }
    }
}

/// The live writer's (segment, published offset), if the file holds a valid record.
pub(crate) fn read_live(log_dir: &Path) -> Option<(SegmentId, u64)> {
    let bytes = std::fs::read(log_dir.join(LIVE_FILE)).ok()?;
    decode(&bytes, LIVE_MAGIC, LIVE_SALT).map(|(segment, offset)| (SegmentId(segment), offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The side files' tables of docs/format.md are the constants' (a format change updates both).
    #[test]
    fn side_file_layout_matches_docs_format_md() {
        crate::field::doc::assert_fields("## Extent record", &EXTENT_FIELDS);
        crate::field::doc::assert_fields("## Live file", &LIVE_FIELDS);
    }
    use crate::fs::OsFs;

    #[test]
    fn extent_round_trips_and_every_flipped_bit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_extent(dir.path()).unwrap(), None);
        let sync = || OsFs.sync_dir(dir.path());
        write_extent(&OsFs, dir.path(), SegmentId(4711), &sync).unwrap();
        assert_eq!(read_extent(dir.path()).unwrap(), Some(SegmentId(4711)));
        write_extent(&OsFs, dir.path(), SegmentId(9000), &sync).unwrap();
        assert_eq!(read_extent(dir.path()).unwrap(), Some(SegmentId(9000)));
        let good = std::fs::read(dir.path().join(EXTENT_FILE)).unwrap();
        for bit in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            std::fs::write(dir.path().join(EXTENT_FILE), &bad).unwrap();
            assert!(read_extent(dir.path()).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn live_round_trips_and_a_torn_copy_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_live(dir.path()), None);
        let mark = LiveMark::open(dir.path()).unwrap();
        mark.note(SegmentId(12), 8192);
        assert_eq!(read_live(dir.path()), Some((SegmentId(12), 8192)));
        let mut torn = std::fs::read(dir.path().join(LIVE_FILE)).unwrap();
        torn[17] ^= 0x40;
        std::fs::write(dir.path().join(LIVE_FILE), &torn).unwrap();
        assert_eq!(read_live(dir.path()), None);
    }
}
