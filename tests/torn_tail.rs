//! Torn tails: the newest segment cut or zeroed at its end recovers to the last complete batch,
//! keeps the cut bytes in `DIR/torn/`, and continues; zeroed space *below* later acknowledged
//! records is corruption, reported with its location, never a silent cut; a segment seal
//! interrupted by a power loss is a torn tail, not corruption.
//!
//! Images are built with the shared workload (tests/reliability/mod.rs): single-event,
//! multi-event and multi-stream batches of mixed sizes, 64 KiB segments, so that every image
//! also holds a sealed segment before the newest one.

mod reliability;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use log_engine::faults::{FaultFs, Op};
use log_engine::{CorruptionKind, Error, Log, Options};
use reliability::*;

/// Batches in the newest segment of an image.
const NEWEST_BATCHES: usize = 14;
/// Batches at the end whose every byte is cut in turn.
const CUT_BATCHES: usize = 2;
/// Bytes between cuts: every byte in an optimised build (`.ci/reliability`), every few in a
/// debug build, to keep `cargo test` quick.
const CUT_STEP: usize = if cfg!(debug_assertions) { 7 } else { 1 };
/// Zeroed sectors at the end, at most.
const ZEROED_SECTORS_MAX: u64 = 12;
/// Sector size for zeroing.
const SECTOR: u64 = 512;
/// First byte of the record area (docs/format.md).
const HEADER_LEN: u64 = 4096;
/// Trailer size at the end of a segment (docs/format.md).
const TRAILER_LEN: u64 = 64;
/// A frame header's size (docs/format.md): a zeroed sector that holds one whole hides it.
const FRAME_HEADER_LEN: u64 = 80;
/// Cuts after which the log is also appended to and reopened (all of them in an optimised
/// build; every few in a debug build, to keep `cargo test` quick).
const CONTINUE_EVERY: u64 = if cfg!(debug_assertions) { 32 } else { 4 };

/// A closed log whose newest segment holds `NEWEST_BATCHES` batches after a sealed segment.
struct Image {
    dir: tempfile::TempDir,
    seed: u64,
    acks: Vec<Ack>,
    /// The newest segment's file.
    newest: PathBuf,
    /// Per batch in the newest segment: its index in `acks`, first byte, and end of its
    /// meaningful (non-padding) bytes.
    batches: Vec<(usize, u64, u64)>,
    /// End of the records in the newest segment.
    end: u64,
    bytes: Vec<u8>,
}

fn build(seed: u64) -> Image {
    let dir = scratch_dir();
    let log = Log::open(dir.path(), options()).unwrap();
    let mut acks = Vec::new();
    let mut batches = Vec::new();
    let mut newest = PathBuf::new();
    let mut end = HEADER_LEN;
    for seq in 0.. {
        let tag = Tag { round: 0, client: 0, seq };
        let results = log.append_multi(batch(seed, tag)).unwrap();
        acks.push(Ack::new(tag, &results));
        let files = log.segment_files();
        let last = files.last().unwrap();
        if last.path != newest {
            newest = last.path.clone();
            batches.clear();
            end = HEADER_LEN;
        }
        batches.push((acks.len() - 1, end, last.bytes));
        end = last.bytes;
        if files.len() >= 2 && batches.len() == NEWEST_BATCHES {
            break;
        }
    }
    drop(log);
    let bytes = std::fs::read(&newest).unwrap();
    for b in &mut batches {
        let region = &bytes[b.1 as usize..b.2 as usize];
        b.2 = b.1 + region.iter().rposition(|&x| x != 0).map_or(0, |i| i as u64 + 1);
    }
    Image { dir, seed, acks, newest, batches, end, bytes }
}

impl Image {
    /// A fresh copy of the image's data directory, and the copy's newest segment.
    fn copy(&self) -> (tempfile::TempDir, PathBuf) {
        let dir = scratch_dir();
        copy_log(self.dir.path(), dir.path());
        let newest = dir.path().join("log").join(self.newest.file_name().unwrap());
        (dir, newest)
    }

    /// Acknowledgements of every batch whose meaningful bytes all lie below `offset` of the
    /// newest segment (and every batch of older segments), and where the last of them ends.
    fn surviving(&self, offset: u64) -> (Vec<Ack>, u64) {
        let first_newest = self.batches[0].0;
        let mut acks: Vec<Ack> = self.acks[..first_newest].to_vec();
        let mut end = HEADER_LEN;
        for &(i, start, meaningful_end) in &self.batches {
            if meaningful_end > offset {
                break;
            }
            acks.push(self.acks[i].clone());
            end = self.batches.iter().find(|b| b.1 > start).map_or(self.end, |b| b.1);
        }
        (acks, end)
    }
}

fn zero(path: &Path, from: u64, to: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&vec![0u8; (to - from) as usize], from).unwrap();
}

/// Reopens `dir`, expecting exactly `acks`; then appends, reopens and checks again.
fn expect_recovered(dir: &Path, seed: u64, acks: &[Ack], what: &str, continue_too: bool) {
    let report = check(dir, seed, acks);
    assert!(report.ok(), "{what}: {}", report.summary());
    let expected: u64 = acks.iter().map(Ack::events).sum();
    assert_eq!(report.events, expected, "{what}: an incomplete batch became visible");
    if continue_too {
        let log = Log::open(dir, options()).unwrap();
        let (more, err) = append_batches(&log, seed, 1, 0, 3);
        assert!(err.is_none(), "{what}: append after recovery: {err:?}");
        drop(log);
        let all: Vec<Ack> = acks.iter().cloned().chain(more).collect();
        let report = check(dir, seed, &all);
        assert!(report.ok(), "{what}, after appending and reopening: {}", report.summary());
    }
}

#[test]
fn cut_at_every_byte_of_the_last_batches_recovers_the_previous_complete_batch() {
    let image = build(suite_seed("torn_tail cut"));
    let from = image.batches[NEWEST_BATCHES - CUT_BATCHES].1;
    let mut kept_aside = 0;
    for cut in (from..image.end).step_by(CUT_STEP) {
        let (dir, newest) = image.copy();
        zero(&newest, cut, image.end);
        let (acks, survived_end) = image.surviving(cut);
        let what = format!("cut at byte {cut} of {}", newest.display());
        expect_recovered(dir.path(), image.seed, &acks, &what, (cut - from).is_multiple_of(CONTINUE_EVERY));
        // The cut bytes of a partial batch are kept aside, exactly as they were.
        let torn = torn_files(dir.path());
        if cut > survived_end && image.bytes[survived_end as usize..cut as usize].iter().any(|&b| b != 0) {
            assert_eq!(torn.len(), 1, "{what}: the torn bytes must be kept in torn/");
            let kept = std::fs::read(&torn[0]).unwrap();
            let original = &image.bytes[survived_end as usize..cut as usize];
            let n = kept.len().min(original.len());
            assert_eq!(&kept[..n], &original[..n], "{what}: torn/ must hold the cut bytes as they were");
            assert!(original[n..].iter().all(|&b| b == 0), "{what}: torn/ holds only {} of the cut bytes", kept.len());
            kept_aside += 1;
        }
    }
    assert!(kept_aside > 0);
}

#[test]
fn zeroing_the_last_sectors_recovers_the_last_complete_batch_before_them() {
    let image = build(suite_seed("torn_tail zeroed sectors"));
    let last_sector = (image.end - 1) / SECTOR * SECTOR;
    for k in 1..=ZEROED_SECTORS_MAX {
        let start = last_sector - (k - 1) * SECTOR;
        if start < HEADER_LEN {
            break;
        }
        let (dir, newest) = image.copy();
        zero(&newest, start, last_sector + SECTOR);
        let (acks, _) = image.surviving(start);
        expect_recovered(dir.path(), image.seed, &acks, &format!("last {k} sectors zeroed"), true);
    }
}

#[test]
fn a_zeroed_sector_below_later_acknowledged_records_is_reported_not_cut() {
    let image = build(suite_seed("torn_tail zeroed hole"));
    let mut holes = 0;
    // Every batch that starts early enough in its sector for the sector to hide its whole frame
    // header, and that has acknowledged batches after it.
    for &(_, start, _) in &image.batches[..NEWEST_BATCHES - 2] {
        if start % SECTOR > SECTOR - FRAME_HEADER_LEN {
            continue;
        }
        let sector = start / SECTOR * SECTOR;
        let (dir, newest) = image.copy();
        zero(&newest, sector, sector + SECTOR);
        let what = format!("sector at {sector} of {} zeroed, later batches intact", newest.display());
        match Log::open(dir.path(), options()) {
            Err(Error::Corrupt { offset, position, kind: CorruptionKind::BelowWatermark { .. }, .. }) => {
                // Reported at the first damaged record: the one the sector hides the start of,
                // or one before it that runs into the sector.
                assert!(offset < sector + SECTOR && position.is_some(), "{what}: reported at offset {offset}");
            }
            Err(e) => panic!("{what}: expected corruption below the watermark, got: {e}"),
            Ok(log) => {
                let events = log.stats().events;
                panic!(
                    "{what}: the log opened with {events} of {} acknowledged events and no error: \
                     acknowledged events after the hole were dropped silently",
                    image.acks.iter().map(Ack::events).sum::<u64>()
                )
            }
        }
        holes += 1;
    }
    assert!(holes > 0, "no batch starts where a zeroed sector hides its frame header");
}

/// Appends batches through `fs` until the first segment roll would happen; returns the
/// acknowledgements and the byte offset where the first segment's records end.
fn fill_first_segment(dir: &Path, seed: u64, fs: Option<FaultFs>) -> (Vec<Ack>, u64) {
    let options = match &fs {
        Some(fs) => Options { fs: Arc::new(fs.clone()), ..options() },
        None => options(),
    };
    let log = Log::open(dir, options).unwrap();
    let mut acks = Vec::new();
    let mut records_end = HEADER_LEN;
    for seq in 0.. {
        let tag = Tag { round: 0, client: 0, seq };
        match log.append_multi(batch(seed, tag)) {
            Ok(results) if log.segment_files().len() == 1 => {
                acks.push(Ack::new(tag, &results));
                records_end = log.segment_files()[0].bytes;
            }
            _ => break,
        }
    }
    (acks, records_end)
}

#[test]
fn a_seal_interrupted_by_power_loss_is_a_torn_tail_not_corruption() {
    let seed = suite_seed("torn_tail interrupted seal");
    // A dry run finds how many appends fit in the first segment.
    let dry = scratch_dir();
    let (dry_acks, _) = fill_first_segment(dry.path(), seed, None);
    let appends = dry_acks.len() as u64;

    // Each append fdatasyncs the first segment once; the next fdatasync of it is the seal's.
    // Cut the power there: the seal's footer and trailer were written, neither is durable.
    let dir = scratch_dir();
    let fs = FaultFs::new();
    fs.crash_at(Op::Sync, "00000000000000000000.seg", appends);
    let (acks, records_end) = fill_first_segment(dir.path(), seed, Some(fs.clone()));
    assert!(fs.crashed(), "the crash point was not reached");
    assert_eq!(acks.len() as u64, appends);
    // The power loss keeps the trailer's sector and drops the footer's: a valid trailer that
    // points at zeros.
    let segment = dir.path().join("log/00000000000000000000.seg");
    let capacity = std::fs::metadata(&segment).unwrap().len();
    zero(&segment, records_end, capacity - TRAILER_LEN);
    expect_recovered(dir.path(), seed, &acks, "seal torn (trailer without footer)", true);
}
