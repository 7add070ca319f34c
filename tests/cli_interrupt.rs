//! Issue 23 item 9: Ctrl-C (or a kill) during `restore` or `drill` leaves no damage behind.
//!
//! A restore builds its copy in a staging directory beside the target and renames it into
//! place only when complete, so at any moment the target is absent or a complete copy. On
//! SIGINT the copy stops, the staging directory is removed and the command exits 130; a drill
//! removes its temporary scratch directory too. Each scenario waits until a segment is seen
//! half-copied (so the signal lands during the copy) and retries when the copy was quicker.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rustix::process::{kill_process, Pid, Signal};
use support::{cairn, dir_names};

const BIN: &str = env!("CARGO_BIN_EXE_cairn");
/// Attempts at catching a copy in the middle before the test gives up.
const ATTEMPTS: usize = 50;

/// A store of some 48 MiB, so that copying it takes long enough to be caught in the middle
/// (segments start small and grow with the log).
fn seeded() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (key, value) in [("a", "1"), ("b", "2")] {
        assert_eq!(cairn(&data, &["kv", "set", key, value]).0, 0);
    }
    let text = "x".repeat(100_000);
    let lines: String =
        (0..480).map(|n| format!("{{\"type\":\"Big\",\"data\":{{\"n\":{n},\"text\":\"{text}\"}}}}\n")).collect();
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(&data)
        .args(["append", "big", "--ndjson"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), lines.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(cairn(&data, &["checkpoint"]).0, 0);
    (dir, data)
}

/// A segment file somewhere under `root` that is shorter than the source's segment of the same
/// name: a copy under way.
fn half_copied_segment(root: &Path, source: &std::collections::HashMap<std::ffi::OsString, u64>) -> bool {
    let Ok(entries) = std::fs::read_dir(root) else { return false };
    entries.filter_map(Result::ok).any(|e| {
        let path = e.path();
        if path.is_dir() {
            return half_copied_segment(&path, source);
        }
        let full = source.get(&e.file_name()).copied().unwrap_or(0);
        path.extension().is_some_and(|x| x == "seg") && e.metadata().is_ok_and(|m| m.len() > 0 && m.len() < full)
    })
}

/// The source's segment files and their lengths.
fn segment_len(data: &Path) -> std::collections::HashMap<std::ffi::OsString, u64> {
    std::fs::read_dir(data.join("log"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .map(|e| (e.file_name(), e.metadata().unwrap().len()))
        .collect()
}

/// Watches `child` until a segment under `root` is half-copied, then sends `signal`. Returns
/// the exit status, and whether the signal was sent during the copy.
///
/// The signal goes out with one `kill(2)` call from this process: spawning `kill(1)` took long
/// enough on a loaded machine for the copy to finish first in all 50 attempts.
fn signal_during_copy(
    mut child: Child,
    root: &Path,
    source: &Path,
    signal: Signal,
) -> (std::process::ExitStatus, bool) {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, false);
        }
        // The source's segments are listed afresh each time: opening it may add or grow one.
        if half_copied_segment(root, &segment_len(source)) {
            kill_process(Pid::from_child(&child), signal).unwrap();
            return (child.wait().unwrap(), true);
        }
        std::thread::yield_now();
    }
}

/// Issue 23 item 9: an interrupted restore left a partial copy that `verify` called corrupt.
#[test]
fn an_interrupted_restore_leaves_no_target_and_no_partial_copy() {
    let (dir, data) = seeded();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let target = out.join("copy");
    for _ in 0..ATTEMPTS {
        let child = Command::new(BIN)
            .arg("--data")
            .arg(&data)
            .args(["restore", "--to", target.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (status, during) = signal_during_copy(child, &out, &data, Signal::INT);
        if !during {
            assert!(status.success());
            std::fs::remove_dir_all(&target).unwrap();
            continue;
        }
        // Either the signal landed before the copy was complete (exit 130, nothing left) or
        // just after it was renamed into place (a complete copy that verifies).
        if status.code() == Some(130) && !target.exists() {
            assert!(dir_names(&out).is_empty(), "nothing partial is left: {:?}", dir_names(&out));
            return;
        }
        let (code, report, err) = cairn(&target, &["verify"]);
        assert_eq!(code, 0, "the target is absent or complete: {report}{err}");
        std::fs::remove_dir_all(&target).unwrap();
    }
    panic!("no restore was caught in the middle of its copy in {ATTEMPTS} attempts");
}

/// Issue 23 item 9: a restore killed outright (no handler runs) never leaves a partial target,
/// and the next restore clears what the killed one left.
#[test]
fn a_killed_restore_leaves_no_target_and_the_next_one_cleans_up() {
    let (dir, data) = seeded();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let target = out.join("copy");
    for _ in 0..ATTEMPTS {
        let child = Command::new(BIN)
            .arg("--data")
            .arg(&data)
            .args(["restore", "--to", target.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (_, during) = signal_during_copy(child, &out, &data, Signal::KILL);
        if !during || target.exists() {
            // Too quick to catch, or killed after the rename: the target must be complete.
            let (code, report, err) = cairn(&target, &["verify"]);
            assert_eq!(code, 0, "the target is absent or complete: {report}{err}");
            std::fs::remove_dir_all(&target).unwrap();
            continue;
        }
        let (code, _, err) = cairn(&data, &["restore", "--to", target.to_str().unwrap()]);
        assert_eq!(code, 0, "a restore after a killed one works: {err}");
        assert_eq!(dir_names(&out), vec!["copy".to_string()], "the killed restore's staging directory is gone");
        assert_eq!(cairn(&target, &["verify"]).0, 0);
        return;
    }
    panic!("no restore was caught in the middle of its copy in {ATTEMPTS} attempts");
}

/// Issue 23 item 9: an interrupted drill left its scratch directory in the temporary directory.
#[test]
fn an_interrupted_drill_removes_its_scratch_directory() {
    let (dir, data) = seeded();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    for _ in 0..ATTEMPTS {
        let child = Command::new(BIN)
            .env("TMPDIR", &tmp)
            .arg("--data")
            .arg(&data)
            .arg("drill")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (status, during) = signal_during_copy(child, &tmp, &data, Signal::INT);
        assert!(dir_names(&tmp).is_empty(), "the drill left {:?} in the temporary directory", dir_names(&tmp));
        if during {
            assert_eq!(status.code(), Some(130), "an interrupted drill exits 130");
            // The source is untouched and still opens.
            assert_eq!(cairn(&data, &["kv", "get", "b"]).1.trim(), "2");
            return;
        }
    }
    panic!("no drill was caught in the middle of its copy in {ATTEMPTS} attempts");
}
