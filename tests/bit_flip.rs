//! Bit rot: every single-bit flip in a small log image is either reported with its location
//! (an open error, a read error or a `verify` report naming the segment) or provably harmless
//! (the log returns exactly what was written) — and harmless only where the format keeps no
//! information (unused header bytes, free space, the gap before a sealed segment's trailer).
//! A flip is never returned as data that differs from what was written.
//!
//! The image: a sealed segment (two small records and one large one, its footer and trailer)
//! and an active segment (a single-event batch and a multi-stream batch). Every bit of every
//! structural byte is flipped (headers, record frames, footer, trailer, the free space right
//! after the active segment's records); large bodies and long runs of unused space are sampled
//! every `SAMPLE_STRIDE` bits. The one documented limitation shows up as its own outcome: damage
//! in the newest batch of the newest segment, with nothing written after it, cannot be told from
//! a torn write; it is cut as a torn tail (its bytes kept in `torn/`), never returned.
//!
//! A second image holds husks (a sealed segment rewritten by a scavenge): every bit of a husk
//! record is flipped, and each flip must be reported with its location, never read as an event.

mod reliability;

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use log_engine::{
    DeleteMode, Error, Event, ExpectedVersion, Log, NewEvent, Position, ScavengeOptions, StreamAppend, StreamName,
};
use reliability::*;

/// Bits between sampled flips inside large bodies and unused space (a prime, so that samples
/// fall on every bit position of a byte).
const SAMPLE_STRIDE: u64 = if cfg!(debug_assertions) { 1021 } else { 397 };
/// Bits between flips in structural bytes: every bit in an optimised build (`.ci/reliability`),
/// a sample in a debug build, to keep `cargo test` quick.
const EXACT_STRIDE: u64 = if cfg!(debug_assertions) { 11 } else { 1 };
/// Bytes of free space after the active segment's records whose every bit is flipped: a
/// non-zero byte there must not stop or fool recovery.
const FREE_SPACE_EXACT: u64 = 256;
/// Body bytes at each end of a large record whose every bit is flipped.
const BODY_EDGE: u64 = 64;
/// Size of the large event: it fills most of the first segment.
const LARGE_EVENT: usize = 58 * 1024;
/// Layout (docs/format.md).
const HEADER_LEN: u64 = 4096;
const HEADER_USED: u64 = 128;
const TRAILER_LEN: u64 = 64;
const FRAME_HEADER_LEN: u64 = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Region {
    Header,
    HeaderUnused,
    Record,
    LargeBody,
    Footer,
    Ids,
    SealGap,
    Trailer,
    FreeSpace,
}

impl Region {
    /// Regions where the format keeps nothing, so a flip may be harmless.
    fn unused(self) -> bool {
        matches!(self, Region::HeaderUnused | Region::SealGap | Region::FreeSpace)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    OpenReported,
    ReadReported,
    VerifyReported,
    /// The newest batch was cut as a torn tail (its bytes in torn/): the documented limitation.
    NewestBatchCut,
    Harmless,
}

struct Image {
    dir: tempfile::TempDir,
    files: Vec<(std::path::PathBuf, Vec<u8>)>,
    events: Vec<Event>,
    /// Events of the newest batch (the only ones a flip may cut).
    newest_batch: usize,
    /// (file index, byte) → region.
    regions: Vec<Vec<Region>>,
}

fn build() -> Image {
    let dir = scratch_dir();
    let log = Log::open(dir.path(), options()).unwrap();
    let small =
        |n: u64| NewEvent::json("Small", &serde_json::json!({"n": n})).with_metadata(&serde_json::json!({"k": n}));
    log.append("a", ExpectedVersion::NoStream, vec![small(0)]).unwrap();
    log.append("b", ExpectedVersion::Any, vec![small(1)]).unwrap();
    let large_at = log.segment_files()[0].bytes;
    let mut large = vec![0u8; LARGE_EVENT];
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for b in large.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    log.append("a", ExpectedVersion::Any, vec![NewEvent::bytes("Large", large)]).unwrap();
    let records_end_0 = log.segment_files()[0].bytes;
    // Does not fit: the first segment is sealed and a second one starts.
    let too_big = NewEvent::json("Medium", &serde_json::json!({"pad": "m".repeat(4000)}));
    log.append("b", ExpectedVersion::Any, vec![too_big]).unwrap();
    let boundary_1 = log.segment_files()[1].bytes;
    let multi = |s: &str, n: u64| StreamAppend {
        stream: StreamName::new(s).unwrap(),
        expected: ExpectedVersion::Any,
        events: vec![small(n)],
    };
    log.append_multi(vec![multi("a", 3), multi("c", 4)]).unwrap();
    let files = log.segment_files();
    assert_eq!(files.len(), 2, "the image must have one sealed and one active segment");
    assert!(files[0].sealed && !files[1].sealed);
    let records_end_1 = files[1].bytes;
    let events = log.read_all(Position(0), 100).unwrap();
    drop(log);

    let mut regions = Vec::new();
    let mut contents = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let bytes = std::fs::read(&f.path).unwrap();
        let cap = bytes.len() as u64;
        let mut r = vec![Region::Record; bytes.len()];
        let mut set = |from: u64, to: u64, region: Region| {
            for x in &mut r[from as usize..to as usize] {
                *x = region;
            }
        };
        set(0, HEADER_USED, Region::Header);
        set(HEADER_USED, HEADER_LEN, Region::HeaderUnused);
        if i == 0 {
            let footer_at = u64::from_le_bytes(bytes[(cap - 56) as usize..(cap - 48) as usize].try_into().unwrap());
            let footer_len = u64::from_le_bytes(bytes[(cap - 48) as usize..(cap - 40) as usize].try_into().unwrap());
            let ids_len = u64::from_le_bytes(bytes[(cap - 40) as usize..(cap - 32) as usize].try_into().unwrap());
            assert_eq!(footer_at, records_end_0, "the footer follows the records");
            // The large record is the last one; its body without its edges is sampled.
            set(large_at + FRAME_HEADER_LEN + BODY_EDGE, footer_at - BODY_EDGE, Region::LargeBody);
            set(footer_at, footer_at + footer_len, Region::Footer);
            // The segment is the newest sealed one, so open reads its id record.
            set(footer_at + footer_len, footer_at + footer_len + ids_len, Region::Ids);
            set(footer_at + footer_len + ids_len, cap - TRAILER_LEN, Region::SealGap);
            set(cap - TRAILER_LEN, cap, Region::Trailer);
        } else {
            assert!(boundary_1 < records_end_1);
            // The medium record opens the segment; its body without its edges is sampled.
            set(HEADER_LEN + FRAME_HEADER_LEN + BODY_EDGE, boundary_1 - BODY_EDGE, Region::LargeBody);
            set(records_end_1, cap, Region::FreeSpace);
        }
        regions.push(r);
        contents.push((f.path.clone(), bytes));
    }
    Image { dir, files: contents, events, newest_batch: 2, regions }
}

impl Image {
    /// Bits to flip: every bit of structural bytes, a sample elsewhere.
    fn targets(&self) -> Vec<(usize, u64)> {
        let mut out = Vec::new();
        for (f, regions) in self.regions.iter().enumerate() {
            let mut records_end = regions.len() as u64;
            if let Some(i) = regions.iter().position(|&r| r == Region::FreeSpace) {
                records_end = i as u64;
            }
            for (byte, &region) in regions.iter().enumerate() {
                let byte = byte as u64;
                let exact = match region {
                    Region::Header | Region::Record | Region::Footer | Region::Ids | Region::Trailer => true,
                    Region::FreeSpace => byte < records_end + FREE_SPACE_EXACT,
                    Region::HeaderUnused | Region::LargeBody | Region::SealGap => false,
                };
                for bit in 0..8 {
                    let global = byte * 8 + bit;
                    if (exact && global.is_multiple_of(EXACT_STRIDE)) || global.is_multiple_of(SAMPLE_STRIDE) {
                        out.push((f, global));
                    }
                }
            }
        }
        out
    }

    /// Puts the pristine image back after a flip of `file` (recovery may also have cut the
    /// newest segment or added files).
    fn restore(&self, file: usize) {
        let log_dir = self.dir.path().join("log");
        for entry in std::fs::read_dir(&log_dir).unwrap() {
            let path = entry.unwrap().path();
            if !self.files.iter().any(|(p, _)| *p == path) {
                std::fs::remove_file(path).unwrap();
            }
        }
        let torn = self.dir.path().join("torn");
        let newest = self.files.len() - 1;
        for (i, (path, bytes)) in self.files.iter().enumerate() {
            if i == file || (i == newest && torn.exists()) {
                std::fs::write(path, bytes).unwrap();
            }
        }
        let _ = std::fs::remove_dir_all(torn);
    }
}

fn flip(path: &Path, bit: u64) {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, bit / 8).unwrap();
    b[0] ^= 1 << (bit % 8);
    f.write_all_at(&b, bit / 8).unwrap();
}

/// Opens the flipped image and says what happened, or why that is a failure.
fn judge(image: &Image, file: usize, segment_name: &str) -> Result<Outcome, String> {
    let names_location = |e: &Error| match e {
        Error::Corrupt { segment, .. } => format!("{segment}.seg") == segment_name,
        _ => false,
    };
    let log = match Log::open(image.dir.path(), options()) {
        Ok(log) => log,
        Err(e) if names_location(&e) => return Ok(Outcome::OpenReported),
        Err(e) => return Err(format!("open failed without naming segment {segment_name}: {e}")),
    };
    let mut events = Vec::new();
    let read = log.for_each(Position(0), u64::MAX, |e| {
        events.push(e);
        true
    });
    if let Err(e) = read {
        return if names_location(&e) {
            Ok(Outcome::ReadReported)
        } else {
            Err(format!("read failed without naming segment {segment_name}: {e}"))
        };
    }
    let n = events.len();
    if events[..] != image.events[..n.min(image.events.len())] {
        return Err("the log returned an event that differs from what was written".to_string());
    }
    let report = log.verify(None, |_| {}).map_err(|e| format!("verify failed: {e}"))?;
    if !report.ok {
        let detail = report.detail.unwrap_or_default();
        return if detail.contains(segment_name) && detail.contains("offset") {
            Ok(Outcome::VerifyReported)
        } else {
            Err(format!("verify reported damage without its location: {detail}"))
        };
    }
    if n == image.events.len() {
        return Ok(Outcome::Harmless);
    }
    let cut = image.events.len() - n;
    if file == 1 && cut == image.newest_batch && !torn_files(image.dir.path()).is_empty() {
        return Ok(Outcome::NewestBatchCut);
    }
    Err(format!("{cut} events vanished without a report"))
}

#[test]
fn every_flipped_bit_is_reported_or_provably_harmless() {
    let image = build();
    let targets = image.targets();
    let mut outcomes: BTreeMap<(Region, Outcome), u64> = BTreeMap::new();
    let mut failures = Vec::new();
    for &(file, bit) in &targets {
        let (path, _) = &image.files[file];
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let region = image.regions[file][(bit / 8) as usize];
        flip(path, bit);
        let verdict = catch_unwind(AssertUnwindSafe(|| judge(&image, file, &name)))
            .unwrap_or_else(|_| Err("panicked".to_string()));
        image.restore(file);
        match verdict {
            Ok(Outcome::Harmless) if !region.unused() => {
                failures.push(format!("{name} byte {} bit {} ({region:?}): flip went unnoticed", bit / 8, bit % 8));
            }
            Ok(outcome) => *outcomes.entry((region, outcome)).or_default() += 1,
            Err(why) => failures.push(format!("{name} byte {} bit {} ({region:?}): {why}", bit / 8, bit % 8)),
        }
    }
    eprintln!("bit_flip: {} flips", targets.len());
    for ((region, outcome), n) in &outcomes {
        eprintln!("  {region:?}: {outcome:?} x{n}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} flips failed; first: {:#?}",
        failures.len(),
        targets.len(),
        &failures[..failures.len().min(10)]
    );
}

/// Where the husk records (frame kind 4) of a segment file lie: walks the frames from the end
/// of the header (docs/format.md, "### Record frame") up to the seal record.
fn husk_ranges(bytes: &[u8]) -> Vec<std::ops::Range<u64>> {
    let mut out = Vec::new();
    let mut at = HEADER_LEN as usize;
    loop {
        let body_len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let len = (FRAME_HEADER_LEN as usize + body_len).next_multiple_of(8);
        match bytes[at + 8] {
            4 => out.push(at as u64..(at + len) as u64),
            1 => {}
            _ => return out,
        }
        at += len;
    }
}

#[test]
fn every_flipped_bit_of_a_husk_is_reported() {
    let dir = scratch_dir();
    let log = Log::open(dir.path(), options()).unwrap();
    for n in 0..40u64 {
        for stream in ["gone", "kept"] {
            let event = NewEvent::json("Step", &serde_json::json!({"n": n, "pad": "h".repeat(1500)}));
            log.append(stream, ExpectedVersion::Any, vec![event]).unwrap();
        }
    }
    log.delete_stream("gone", DeleteMode::Soft).unwrap();
    let report = log.scavenge(&ScavengeOptions::default(), &mut |_| {}).unwrap();
    assert!(report.events_husked > 0, "{report:?}");
    let events = log.read_all(Position(0), 1000).unwrap();
    let files = log.segment_files();
    drop(log);
    let path = files[0].path.clone();
    let bytes = std::fs::read(&path).unwrap();
    let husks = husk_ranges(&bytes);
    assert!(husks.len() > 5, "{} husks in the first segment", husks.len());
    let name = path.file_name().unwrap().to_str().unwrap().to_string();
    let contents = files.iter().map(|f| (f.path.clone(), std::fs::read(&f.path).unwrap())).collect();
    let regions = files.iter().map(|f| vec![Region::Record; f.capacity as usize]).collect();
    let image = Image { dir, files: contents, events, newest_batch: 0, regions };
    let mut failures = Vec::new();
    // The first husk, the one in the middle and the last, every bit of each.
    let picked = [&husks[0], &husks[husks.len() / 2], &husks[husks.len() - 1]];
    let mut flips = 0;
    for husk in picked {
        for bit in husk.start * 8..husk.end * 8 {
            if !bit.is_multiple_of(EXACT_STRIDE) {
                continue;
            }
            flips += 1;
            flip(&path, bit);
            let verdict = catch_unwind(AssertUnwindSafe(|| judge(&image, 0, &name)))
                .unwrap_or_else(|_| Err("panicked".to_string()));
            image.restore(0);
            match verdict {
                Ok(Outcome::Harmless) => failures.push(format!("byte {} bit {}: went unnoticed", bit / 8, bit % 8)),
                Ok(_) => {}
                Err(why) => failures.push(format!("byte {} bit {}: {why}", bit / 8, bit % 8)),
            }
        }
    }
    eprintln!("bit_flip husks: {flips} flips in {} husks", picked.len());
    assert!(
        failures.is_empty(),
        "{} of {flips} flips failed; first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
}
