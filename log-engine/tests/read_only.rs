//! Readers (`Log::open_read_only`) beside a writer and on files they must not change.
//!
//! Issue 23 item 2: every open took the data directory's exclusive lock, so nothing could read a
//! directory another process writes, and a read-only copy could not be read at all. A reader
//! takes no lock, writes nothing (no torn/ directory, no cut tail, no spare removed), shows only
//! what a live writer has made durable, and sees later appends after `refresh`.
//! Issue 23 item 11: damage in the newest segment does not lock a reader out of the good events
//! before it; the reader stops there and says where.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use log_engine::{CorruptionKind, Error, ExpectedVersion, Log, NewEvent, Options, Position};

/// Every file under `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
                out.insert(path, (Vec::new(), meta.modified().unwrap()));
            } else {
                out.insert(path.clone(), (std::fs::read(&path).unwrap(), meta.modified().unwrap()));
            }
        }
    }
    out
}

/// Position of the end of the records in the active (only) segment of a small log.
fn active_segment(dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    segments.pop().unwrap()
}

#[test]
fn a_reader_beside_a_writer_sees_its_appends_after_refresh_and_cannot_append() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open_small(dir.path());
    append_n(&writer, "agent-1", 3);
    // The writer holds the lock: a second writer is refused, a reader is not.
    assert!(matches!(Log::open(dir.path(), small_options()), Err(Error::Locked { .. })));
    let reader = Log::open_read_only(dir.path(), small_options()).unwrap();
    assert!(reader.is_read_only());
    assert_eq!(reader.read_all(Position(0), 100).unwrap().len(), 3);
    assert_eq!(reader.head(), writer.head());

    // Appends into the same segment: each refresh reads only what is new.
    for n in 0..20 {
        append_n(&writer, "agent-4", 1);
        assert!(reader.refresh().unwrap(), "append {n}");
        assert_eq!(reader.head(), writer.head());
    }
    assert_eq!(writer.stats().segments, 1);
    assert_eq!(reader.read_stream("agent-4", None, 100, log_engine::Direction::Forward).unwrap().len(), 20);
    // Enough to roll into new segments, so refresh has to follow the writer across files.
    append_n(&writer, "agent-2", 700);
    assert!(writer.stats().segments > 2);
    assert!(reader.refresh().unwrap());
    assert_eq!(reader.head(), writer.head());
    assert_eq!(reader.read_all(Position(0), 10_000).unwrap(), writer.read_all(Position(0), 10_000).unwrap());
    assert_eq!(reader.read_stream("agent-2", None, 1000, log_engine::Direction::Forward).unwrap().len(), 700);
    assert!(!reader.refresh().unwrap(), "nothing new, nothing to show");

    match reader.append("agent-1", ExpectedVersion::Any, vec![event("agent-1", 9)]) {
        Err(Error::ReadOnly { .. }) => {}
        other => panic!("a reader must refuse appends, got {other:?}"),
    }
    // Once the writer is gone, the reader still reads everything it wrote.
    writer.close();
    append_n(&Log::open(dir.path(), small_options()).unwrap(), "agent-3", 2);
    assert!(reader.refresh().unwrap());
    assert_eq!(reader.stats().events, 725);
    assert!(reader.verify(None, |_| {}).unwrap().ok);
}

#[test]
fn a_reader_shows_the_active_segment_only_up_to_what_a_live_writer_published() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open_small(dir.path());
    append_n(&writer, "agent-1", 1);
    let after_first = std::fs::read(dir.path().join("log/live")).unwrap();
    append_n(&writer, "agent-1", 4);
    // As if the second batch's fdatasync were still in flight: the live file names the end of
    // the first batch only. The bytes after it are intact records, but not durable yet.
    std::fs::write(dir.path().join("log/live"), &after_first).unwrap();
    let reader = Log::open_read_only(dir.path(), small_options()).unwrap();
    assert_eq!(reader.stats().events, 1);
    assert_eq!(reader.read_stop(), None, "an unpublished suffix is not damage");
    // The writer's next publish rewrites the live file; refresh shows everything.
    append_n(&writer, "agent-1", 1);
    assert!(reader.refresh().unwrap());
    assert_eq!(reader.stats().events, 6);
}

#[test]
fn a_reader_writes_nothing_and_leaves_a_torn_tail_for_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "agent-1", 5);
    let end = log.segment_files().last().unwrap().bytes;
    log.close();
    // A torn write after the last batch: garbage where the next record would start.
    let segment = active_segment(dir.path());
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[end as usize..end as usize + 40].fill(0xA5);
    std::fs::write(&segment, &bytes).unwrap();
    std::fs::write(dir.path().join("log/spare.tmp"), b"prepared").unwrap();
    let before = snapshot(dir.path());

    let reader = Log::open_read_only(dir.path(), small_options()).unwrap();
    assert_eq!(reader.read_all(Position(0), 100).unwrap().len(), 5);
    let stop = reader.read_stop().expect("the reader says where it stopped");
    assert_eq!((stop.offset, stop.position, stop.corrupt), (end, Some(Position(5)), false));
    assert!(reader.verify(None, |_| {}).unwrap().ok);
    reader.close();
    assert_eq!(snapshot(dir.path()), before, "a reader must not create, change or remove anything");
    assert!(!dir.path().join("torn").exists());

    // The writer's open is what cuts it.
    let log = open_small(dir.path());
    assert_eq!(log.stats().events, 5);
    assert!(dir.path().join("torn").is_dir());
}

#[test]
fn a_reader_reads_the_good_events_before_damage_that_a_writer_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path());
    append_n(&log, "agent-1", 3);
    let second = log.segment_files_through(Position(0)).unwrap().0.last().unwrap().bytes;
    append_n(&log, "agent-1", 3);
    log.close();
    // Flip a byte inside the second record: later records' watermarks prove it was durable.
    let segment = active_segment(dir.path());
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[second as usize + 90] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();

    assert!(matches!(Log::open(dir.path(), small_options()), Err(Error::Corrupt { .. })));
    let reader = Log::open_read_only(dir.path(), small_options()).unwrap();
    assert_eq!(reader.read_all(Position(0), 100).unwrap().len(), 1);
    let stop = reader.read_stop().unwrap();
    assert!(stop.corrupt, "{stop:?}");
    assert_eq!((stop.offset, stop.position), (second, Some(Position(1))));
    match &stop.kind {
        CorruptionKind::BelowWatermark { damage, .. } => {
            assert!(matches!(**damage, CorruptionKind::RecordCrc { .. }), "{damage}");
        }
        other => panic!("expected damage below the watermark, got {other}"),
    }
    assert!(stop.kind.to_string().contains("watermark"), "{}", stop.kind);
}

#[test]
fn a_reader_refuses_what_is_not_a_data_directory_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("cairn-dta");
    match Log::open_read_only(&missing, Options::default()) {
        Err(e @ Error::NotAStore { .. }) => assert!(e.to_string().contains("cairn-dta"), "{e}"),
        other => panic!("expected NotAStore, got {other:?}"),
    }
    assert!(!missing.exists());
    std::fs::create_dir(&missing).unwrap();
    assert!(matches!(Log::open_read_only(&missing, Options::default()), Err(Error::NotAStore { .. })));
    assert_eq!(std::fs::read_dir(&missing).unwrap().count(), 0);
}

/// Unmounts a bind mount when dropped, so a failing test leaves no mount behind.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A read-only bind mount of `source` at `target`, where the system allows one (root).
fn read_only_mount(source: &Path, target: &Path) -> Option<Mount> {
    let run = |args: &[&str]| std::process::Command::new("mount").args(args).status().is_ok_and(|s| s.success());
    std::fs::create_dir_all(target).unwrap();
    if !run(&["--bind", source.to_str()?, target.to_str()?]) {
        return None;
    }
    let mount = Mount(target.to_path_buf());
    run(&["-o", "remount,bind,ro", target.to_str()?]).then_some(mount)
}

#[test]
fn a_reader_reads_and_verifies_a_copy_on_read_only_media() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = open_small(&data);
    append_n(&log, "agent-1", 400);
    log.append("agent-2", ExpectedVersion::Any, vec![NewEvent::bytes("Blob", vec![7; 300])]).unwrap();
    let expected = log.read_all(Position(0), 1000).unwrap();
    log.close();
    let before = snapshot(&data);
    let check = |at: &Path| {
        let reader = Log::open_read_only(at, small_options()).unwrap();
        assert_eq!(reader.read_all(Position(0), 1000).unwrap(), expected);
        let report = reader.verify(None, |_| {}).unwrap();
        assert!(report.ok && report.events == 401, "{report:?}");
    };
    check(&data);
    // Root ignores permission bits, so only a read-only mount proves nothing is opened for
    // writing; where none can be made, the unchanged snapshot below is the check.
    if let Some(mount) = read_only_mount(&data, &dir.path().join("ro")) {
        assert!(std::fs::write(mount.0.join("probe"), b"x").is_err(), "the mount must be read-only");
        check(&mount.0);
    }
    assert_eq!(snapshot(&data), before);
}
