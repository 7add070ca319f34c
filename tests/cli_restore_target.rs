//! Issue 14 item 3: a restore must never delete its own source or anything that is not a
//! cairn data directory.
//!
//! The attack: a data directory named `log` (or `checkpoints`, `torn`: the names a data
//! directory holds inside) restored with `--force` into its parent. The copy used to clear the
//! target's `log/` first, which was the source itself. Now a target that is, lies inside or
//! contains the source (after resolving symbolic links) is refused before anything is
//! written, and `--force` replaces only a directory that looks like a cairn data directory.

mod support;

use std::path::Path;

use support::cairn;

fn seed(data: &Path) {
    for (key, value) in [("a", "1"), ("b", "2")] {
        let (code, _, err) = cairn(data, &["kv", "set", key, value]);
        assert_eq!(code, 0, "{err}");
    }
}

fn assert_intact(data: &Path) {
    let (code, value, err) = cairn(data, &["kv", "get", "b"]);
    assert_eq!((code, value.trim()), (0, "2"), "the source still holds its events: {err}");
    let (code, out, err) = cairn(data, &["verify"]);
    assert_eq!(code, 0, "the source still verifies: {out}{err}");
}

/// Issue 14 item 3: `cairn --data P/log restore --to P --force` deleted P/log, its own source.
#[test]
fn a_data_directory_named_like_a_part_of_one_is_never_restored_into_its_parent() {
    for name in ["log", "checkpoints", "torn"] {
        let dir = tempfile::tempdir().unwrap();
        let parent = dir.path().join("p");
        let data = parent.join(name);
        seed(&data);
        let (code, _, err) = cairn(&data, &["restore", "--to", parent.to_str().unwrap(), "--force"]);
        assert_eq!(code, 2, "{name}: refused as bad input: {err}");
        assert!(err.contains("contains the source data directory"), "{name}: {err}");
        assert_intact(&data);
    }
}

/// Issue 14 item 3: a target inside the source, or the source reached through a symbolic link.
#[test]
fn a_target_inside_the_source_or_the_source_through_a_link_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    seed(&data);
    let inside = data.join("log").join("copy");
    let (code, _, err) = cairn(&data, &["restore", "--to", inside.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("lies inside the source"), "{err}");
    assert!(!inside.exists(), "nothing was written");

    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&data, &link).unwrap();
    let (code, _, err) = cairn(&data, &["restore", "--to", link.to_str().unwrap(), "--force"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is the source data directory itself"), "{err}");
    let parent_link = dir.path().join("parent-link");
    std::os::unix::fs::symlink(dir.path(), &parent_link).unwrap();
    let (code, _, err) = cairn(&data, &["restore", "--to", parent_link.to_str().unwrap(), "--force"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("contains the source"), "{err}");
    assert_intact(&data);
}

/// Issue 14 item 3: `--force` replaced `log/`, `checkpoints/` and `torn/` of any directory
/// and kept the rest; it now refuses a directory that is not a cairn data directory.
#[test]
fn force_replaces_only_a_cairn_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    seed(&data);

    // A directory of someone's files, one of them named like a part of a data directory.
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join("log")).unwrap();
    std::fs::write(home.join("log").join("app.log"), "keep me").unwrap();
    std::fs::write(home.join("notes.txt"), "keep me too").unwrap();
    let (code, _, err) = cairn(&data, &["restore", "--to", home.to_str().unwrap(), "--force"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a cairn data directory") && err.contains("notes.txt"), "{err}");
    assert_eq!(std::fs::read_to_string(home.join("log").join("app.log")).unwrap(), "keep me");
    assert_eq!(std::fs::read_to_string(home.join("notes.txt")).unwrap(), "keep me too");

    // A directory without log/ is not a data directory either, even with only known names.
    let odd = dir.path().join("odd");
    std::fs::create_dir_all(odd.join("checkpoints")).unwrap();
    let (code, _, err) = cairn(&data, &["restore", "--to", odd.to_str().unwrap(), "--force"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no log/ directory"), "{err}");
    assert!(odd.join("checkpoints").is_dir());

    // An empty directory and an earlier copy are fine; the copy replaces the earlier one whole.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, _, err) = cairn(&data, &["restore", "--to", empty.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cairn(&empty, &["kv", "set", "only-in-the-copy", "1"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cairn(&data, &["restore", "--to", empty.to_str().unwrap(), "--force"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(cairn(&empty, &["kv", "get", "only-in-the-copy"]).0, 5, "the earlier copy was replaced");
    assert_eq!(cairn(&empty, &["kv", "get", "b"]).1.trim(), "2");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "no staging or replaced directory is left: {leftovers:?}");
    assert_intact(&data);
}
