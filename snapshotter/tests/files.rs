//! Issue 14 item 12: checkpoints hold the views' state (the users' data) and were created
//! world-readable (0644, in a 0755 directory). They must be readable by their owner only.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use snapshotter::{CheckpointKind, Policy, Snapshotter};

#[test]
fn checkpoint_files_and_directory_are_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let mut rng = Rng::new(7);
    let mut live = views();
    let last = grow(&log, &mut live, &mut rng, 50, 5);
    let mut snap = Snapshotter::open(&log, Policy::default()).unwrap();
    let info = snap.checkpoint(&log, &mut live, last, CheckpointKind::Full).unwrap();
    let checkpoints = Snapshotter::checkpoints_dir(dir.path());
    for path in [checkpoints.clone(), info.file.clone()] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}: readable beyond its owner", path.display());
    }
    assert!(std::fs::read_dir(&checkpoints).unwrap().count() >= 1);
}
