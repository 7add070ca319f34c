//! I/O errors: EIO and ENOSPC injected (through `FaultFs`) into every kind of operation the log
//! performs — a group's pwrite (failing outright, or landing half), its fdatasync, the seal of a
//! full segment, the preparation of the next one (create, fallocate, fdatasync), its header,
//! its rename and the directory fsync.
//!
//! The rules checked (ARCHITECTURE.md, invariants 4 and 8):
//! - nothing in the failing batch is acknowledged;
//! - a failed write or fdatasync poisons the log: every later append fails with `Poisoned`,
//!   readers still see exactly the acknowledged events;
//! - failing to *prepare* or *install* a segment (ENOSPC from fallocate, say, or a failed
//!   header write, rename or directory fsync) is an ordinary error: the log is not poisoned,
//!   appends that fit go on, and once the failure stops the log rolls over;
//! - a reopen (after a power loss, where one is simulated) recovers every acknowledged event,
//!   with gapless positions and a verified chain, and the log continues;
//! - a scavenge that fails at any of its operations is an ordinary error too: it writes none of
//!   the log's records, so nothing is poisoned, and the next scavenge completes
//!   (tests/reliability/scavenge.rs).

mod reliability;

use std::path::Path;
use std::sync::Arc;

use log_engine::faults::{FaultFs, Op};
use log_engine::{Error, Log, Options};
use reliability::*;

const EIO: i32 = 5;
const ENOSPC: i32 = 28;
/// Appends tried before concluding that an injection never fired.
const APPENDS_MAX: u64 = 2_000;
/// The first segment's file name.
const FIRST_SEGMENT: &str = "00000000000000000000.seg";
/// The file a new segment is prepared in (dir.rs).
const SPARE: &str = "spare.tmp";
/// Power-loss seeds tried after a failed fdatasync.
const SYNC_FAILURE_SEEDS: u64 = 24;

/// EIO or ENOSPC at the first and a later operation of each kind a scavenge performs: creating,
/// writing and fdatasyncing its rewrite, renaming it over the segment, fsyncing
/// the directory.
#[test]
fn a_failed_scavenge_is_an_ordinary_error_and_the_next_one_completes() {
    let template = reliability::scavenge::template();
    let kinds = [
        (Op::Create, ENOSPC),
        (Op::Write, ENOSPC),
        (Op::Write, EIO),
        (Op::Sync, EIO),
        (Op::Rename, EIO),
        (Op::SyncDir, EIO),
    ];
    for (op, errno) in kinds {
        for skip in [0, 2] {
            if let Err(e) = reliability::scavenge::fail_and_check(&template, op, skip, errno) {
                panic!("{op:?} failing with errno {errno} after {skip} of its kind: {e}");
            }
        }
    }
}

fn open_faulty(dir: &Path, fs: &FaultFs) -> Log {
    Log::open(dir, Options { fs: Arc::new(fs.clone()), ..options() }).unwrap()
}

/// Appends until the first error; returns the acknowledgements and the error.
fn append_until_error(log: &Log, seed: u64) -> (Vec<Ack>, Error) {
    let (acks, err) = append_batches(log, seed, 0, 0, APPENDS_MAX);
    let err = err.unwrap_or_else(|| panic!("no error in {APPENDS_MAX} appends: the injection never fired"));
    (acks, err)
}

/// How many appends fill the first segment, from a dry run without faults.
fn appends_in_first_segment(seed: u64) -> u64 {
    let dir = scratch_dir();
    let log = Log::open(dir.path(), options()).unwrap();
    for seq in 0.. {
        log.append_multi(batch(seed, Tag { round: 0, client: 0, seq })).unwrap();
        if log.segment_files().len() > 1 {
            return seq;
        }
    }
    unreachable!()
}

/// The poisoned log still answers reads with exactly the acknowledged events and refuses
/// every append.
fn assert_poisoned(log: &Log, seed: u64, acks: &[Ack], what: &str) {
    assert!(log.poisoned().is_some(), "{what}: the log must be poisoned");
    let again = log.append_multi(batch(seed, Tag { round: 9, client: 9, seq: 0 }));
    assert!(matches!(again, Err(Error::Poisoned { .. })), "{what}: an append after poison: {again:?}");
    let mut report = Report { acknowledged: acks.iter().map(Ack::events).sum(), ..Report::default() };
    check_open(log, seed, acks, &mut report);
    assert!(report.ok(), "{what}: readers of the poisoned log: {}", report.summary());
    assert_eq!(report.events, report.acknowledged, "{what}: readers see an unacknowledged event");
}

/// Reopens with the real file system, checks, appends, reopens and checks again.
fn assert_recovers(dir: &Path, seed: u64, acks: &[Ack], what: &str) {
    let report = check(dir, seed, acks);
    assert!(report.ok(), "{what}: after reopen: {}", report.summary());
    let log = Log::open(dir, options()).unwrap();
    let (more, err) = append_batches(&log, seed, 1, 0, 4);
    assert!(err.is_none(), "{what}: append after reopen: {err:?}");
    drop(log);
    let all: Vec<Ack> = acks.iter().cloned().chain(more).collect();
    let report = check(dir, seed, &all);
    assert!(report.ok(), "{what}: after appending and reopening: {}", report.summary());
}

/// Whether the failing request's error is the failure itself (a failed segment roll reports
/// its operation and path) or `Poisoned` (a failed group commit answers every waiter so).
fn failure_error(err: &Error) -> bool {
    matches!(err, Error::Poisoned { .. } | Error::Io { .. })
}

/// Injects with `inject`, appends until the failure, and checks poison and recovery.
fn poisoning_failure(what: &str, seed: u64, inject: impl Fn(&FaultFs), message: &str) {
    let dir = scratch_dir();
    let fs = FaultFs::new();
    let log = open_faulty(dir.path(), &fs);
    inject(&fs);
    let (acks, err) = append_until_error(&log, seed);
    assert!(failure_error(&err), "{what}: expected the failure or poison, got: {err}");
    assert!(err.to_string().contains(message), "{what}: the error must say what failed: {err}");
    assert_poisoned(&log, seed, &acks, what);
    drop(log);
    assert_recovers(dir.path(), seed, &acks, what);
}

#[test]
fn eio_on_a_group_write_poisons() {
    poisoning_failure(
        "EIO on write",
        suite_seed("EIO on write"),
        |fs| fs.inject_at(Op::Write, FIRST_SEGMENT, 7, EIO),
        "write of",
    );
}

#[test]
fn a_short_write_poisons_and_its_half_batch_is_cut_at_reopen() {
    poisoning_failure("short write", suite_seed("short write"), |fs| fs.inject_short_write(5, EIO), "write of");
}

#[test]
fn enospc_on_a_group_write_poisons() {
    poisoning_failure(
        "ENOSPC on write",
        suite_seed("ENOSPC on write"),
        |fs| fs.inject_at(Op::Write, FIRST_SEGMENT, 3, ENOSPC),
        "No space left",
    );
}

#[test]
fn eio_on_fdatasync_poisons_and_a_power_loss_after_it_loses_nothing_acknowledged() {
    let seed = suite_seed("EIO on fdatasync");
    for k in 0..SYNC_FAILURE_SEEDS {
        let what = format!("fdatasync failing after {k} appends");
        let dir = scratch_dir();
        let fs = FaultFs::new();
        let log = open_faulty(dir.path(), &fs);
        fs.inject_at(Op::Sync, FIRST_SEGMENT, k, if k % 2 == 0 { EIO } else { ENOSPC });
        let (acks, err) = append_until_error(&log, seed);
        assert_eq!(acks.len() as u64, k, "{what}");
        assert!(matches!(err, Error::Poisoned { .. }), "{what}: {err}");
        assert!(err.to_string().contains("fdatasync"), "{what}: {err}");
        assert_poisoned(&log, seed, &acks, &what);
        drop(log);
        // Linux marked the failed pages clean without writing them: a power loss may drop them.
        fs.power_loss(seed ^ k).unwrap();
        assert_recovers(dir.path(), seed, &acks, &what);
    }
}

#[test]
fn failing_to_seal_a_full_segment_poisons() {
    let seed = suite_seed("seal failure");
    let fit = appends_in_first_segment(seed);
    // The first segment takes one write per append; the next write to it is the seal's footer.
    poisoning_failure("seal failure", seed, |fs| fs.inject_at(Op::Write, FIRST_SEGMENT, fit, EIO), "seal segment");
}

/// Issue 14 item 2: installing the next segment after the seal (its header, its rename, the
/// directory fsync) writes none of the log's records, so its failure used to poison the log for
/// nothing. Now the appends that needed the room get the error, the log is not poisoned, the
/// next append installs a fresh segment, and a power loss (seeded by `loss_seed`) after all of
/// it keeps every acknowledged event.
fn install_failure(what: &str, inject: impl Fn(&FaultFs), message: &str, loss_seed: u64) {
    let seed = suite_seed(what);
    let dir = scratch_dir();
    let fs = FaultFs::new();
    let log = open_faulty(dir.path(), &fs);
    inject(&fs);
    let (mut acks, err) = append_until_error(&log, seed);
    assert!(matches!(err, Error::Io { .. }), "{what}: expected the failure itself, got: {err}");
    assert!(err.to_string().contains(message), "{what}: the error must say what failed: {err}");
    assert!(log.poisoned().is_none(), "{what}: installing a segment must not poison the log");
    let (more, err) = append_batches(&log, seed, 2, 0, 100);
    assert!(err.is_none(), "{what}: the next appends install a fresh segment: {err:?}");
    assert!(log.segment_files().len() > 1, "{what}: the log never rolled over");
    acks.extend(more);
    drop(log);
    fs.power_loss(loss_seed).unwrap();
    assert_recovers(dir.path(), seed, &acks, what);
}

#[test]
fn failing_to_write_the_next_segment_header_is_an_ordinary_error() {
    // The spare's only write is the header, at roll time.
    install_failure("header failure", |fs| fs.inject_at(Op::Write, SPARE, 0, EIO), "write segment header", 0);
}

#[test]
fn failing_to_rename_the_next_segment_is_an_ordinary_error() {
    install_failure("rename failure", |fs| fs.inject(Op::Rename, 0, EIO), "rename segment", 0);
}

#[test]
fn failing_to_fsync_the_directory_is_an_ordinary_error_and_a_power_loss_loses_nothing() {
    for loss_seed in 0..SYNC_FAILURE_SEEDS {
        let what = format!("directory fsync failure, power-loss seed {loss_seed}");
        install_failure(&what, |fs| fs.inject(Op::SyncDir, 0, EIO), "fsync directory", loss_seed);
    }
}

/// Failing to prepare the next segment is an ordinary error: not poisoned, appends that fit
/// still work, and the roll succeeds once the failure stops.
fn preparation_failure(what: &str, op: Op, errno: i32) {
    let seed = suite_seed(what);
    let dir = scratch_dir();
    let fs = FaultFs::new();
    let log = open_faulty(dir.path(), &fs);
    fs.inject_always(op, 0, errno);
    let (mut acks, err) = append_until_error(&log, seed);
    // Issue 14 item 8: a full disk is its own error.
    assert!(matches!(err, Error::NoSpace { .. }), "{what}: expected a full disk, got: {err}");
    assert!(err.to_string().contains("prepare segment"), "{what}: {err}");
    assert!(log.poisoned().is_none(), "{what}: preparing a segment must not poison the log");
    // The failing request was not acknowledged, and retrying keeps failing the same way.
    let retry = log.append_multi(batch(seed, Tag { round: 0, client: 0, seq: acks.len() as u64 }));
    assert!(matches!(retry, Err(Error::NoSpace { .. })), "{what}: retry: {retry:?}");
    let mut report = Report { acknowledged: acks.iter().map(Ack::events).sum(), ..Report::default() };
    check_open(&log, seed, &acks, &mut report);
    assert!(report.ok() && report.events == report.acknowledged, "{what}: {}", report.summary());
    // Space comes back: the same log rolls over and goes on.
    fs.clear_injections();
    let (more, err) = append_batches(&log, seed, 2, 0, 100);
    assert!(err.is_none(), "{what}: after the failure stopped: {err:?}");
    assert!(log.segment_files().len() > 1, "{what}: the log never rolled over");
    acks.extend(more);
    drop(log);
    assert_recovers(dir.path(), seed, &acks, what);
}

#[test]
fn enospc_from_fallocate_while_preparing_a_segment_is_an_ordinary_error() {
    preparation_failure("ENOSPC on fallocate", Op::Preallocate, ENOSPC);
}

#[test]
fn enospc_creating_the_next_segment_is_an_ordinary_error() {
    preparation_failure("ENOSPC on create", Op::Create, ENOSPC);
}
