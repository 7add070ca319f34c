//! The operator commands from the command line: `checkpoint` (full and incremental),
//! `checkpoints` (chain status; exit 3 for a damaged one), `restore` (never overwrites without
//! --force; the copy verifies; --at cuts it at a position), and `drill`
//! (JSON per the contract; exit 3 when a checkpoint is damaged).

mod support;

use serde_json::Value;
use support::cairn;

fn ok_json(data: &std::path::Path, args: &[&str]) -> Value {
    let (code, out, err) = cairn(data, args);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap()
}

fn seeded() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (key, value) in [("a", "1"), ("b", "2")] {
        assert_eq!(cairn(&data, &["kv", "set", key, value]).0, 0);
    }
    (dir, data)
}

#[test]
fn checkpoints_chain_and_a_damaged_one_is_reported() {
    let (_dir, data) = seeded();
    let full = ok_json(&data, &["checkpoint", "-o", "json"]);
    assert_eq!((full["kind"].as_str(), full["position"].as_u64()), (Some("full"), Some(1)));
    assert_eq!(cairn(&data, &["kv", "set", "c", "3"]).0, 0);
    let inc = ok_json(&data, &["checkpoint", "-o", "json"]);
    assert_eq!((inc["kind"].as_str(), inc["parent"].as_u64()), (Some("incremental"), Some(0)));
    let again = ok_json(&data, &["checkpoint", "--full", "-o", "json"]);
    assert_eq!(again["kind"], "full");
    let list = ok_json(&data, &["checkpoints", "-o", "json"]);
    let rows = list["checkpoints"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r["status"] == "valid"), "{list}");
    let stats = ok_json(&data, &["stats", "-o", "json"]);
    assert_eq!((stats["checkpoints"].as_u64(), stats["checkpoints_valid"].as_u64()), (Some(3), Some(3)));

    // Flip a byte in the middle of the newest checkpoint file.
    let file = std::path::PathBuf::from(again["file"].as_str().unwrap());
    let file = if file.is_absolute() { file } else { std::env::current_dir().unwrap().join(file) };
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&file, bytes).unwrap();
    let (code, out, _) = cairn(&data, &["checkpoints"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("DAMAGED"), "{out}");
    // The views still open: the damaged checkpoint is skipped with a warning.
    let (code, value, err) = cairn(&data, &["kv", "get", "c"]);
    assert_eq!((code, value.trim()), (0, "3"), "{err}");
    assert!(err.contains("warning"), "the skipped checkpoint is reported: {err}");
    let (code, out, _) = cairn(&data, &["drill", "-o", "json"]);
    assert_eq!(code, 3);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], false);
    assert!(!report["mismatches"].as_array().unwrap().is_empty());
}

#[test]
fn a_drill_on_a_sound_store_reports_the_contract_fields() {
    let (dir, data) = seeded();
    ok_json(&data, &["checkpoint", "-o", "json"]);
    assert_eq!(cairn(&data, &["kv", "set", "c", "3"]).0, 0);
    let scratch = dir.path().join("scratch");
    let report = ok_json(&data, &["drill", "--scratch", scratch.to_str().unwrap(), "-o", "json"]);
    for field in [
        "ok",
        "events_lost",
        "restore_ms",
        "rebuild_from_checkpoint_ms",
        "rebuild_from_zero_ms",
        "checkpoints_verified",
        "mismatches",
    ] {
        assert!(report.get(field).is_some(), "the drill report has {field}: {report}");
    }
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["events_lost"], 0);
    assert_eq!(report["checkpoints_verified"], 1);
    assert_eq!(report["events_replayed_from_checkpoint"], 1, "only the event after the checkpoint");
    assert!(scratch.join("log").is_dir(), "--scratch keeps the copy");
    let (code, out, _) = cairn(&data, &["drill"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("recovery drill: ok"), "{out}");
}

#[test]
fn restore_copies_verifies_and_never_overwrites_without_force() {
    let (dir, data) = seeded();
    ok_json(&data, &["checkpoint", "-o", "json"]);
    let target = dir.path().join("copy");
    let copied = ok_json(&data, &["restore", "--to", target.to_str().unwrap(), "-o", "json"]);
    assert_eq!((copied["verified"].as_bool(), copied["checkpoints"].as_u64()), (Some(true), Some(1)));
    let (code, _, err) = cairn(&data, &["restore", "--to", target.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(cairn(&data, &["kv", "set", "d", "4"]).0, 0);
    ok_json(&data, &["restore", "--to", target.to_str().unwrap(), "--force", "-o", "json"]);
    // The copy is a working store: views, log and checkpoints.
    let (code, value, err) = cairn(&target, &["kv", "get", "d"]);
    assert_eq!((code, value.trim()), (0, "4"), "{err}");
    assert_eq!(cairn(&target, &["verify"]).0, 0);
    assert_eq!(cairn(&target, &["checkpoints"]).0, 0);

    // Point in time: the store as it was at position 1 (keys a and b, not d).
    let past = dir.path().join("past");
    let cut = ok_json(&data, &["restore", "--to", past.to_str().unwrap(), "--at", "1", "-o", "json"]);
    assert_eq!((cut["head_position"].as_u64(), cut["verified"].as_bool()), (Some(1), Some(true)), "{cut}");
    let (code, value, _) = cairn(&past, &["kv", "get", "b"]);
    assert_eq!((code, value.trim()), (0, "2"));
    assert_eq!(cairn(&past, &["kv", "get", "d"]).0, 5, "d was written after position 1");
    let (code, _, err) = cairn(&data, &["restore", "--to", dir.path().join("x").to_str().unwrap(), "--at", "99"]);
    assert_eq!(code, 2, "a position beyond the head is refused: {err}");
    assert!(err.contains("beyond the head"), "{err}");
    assert!(!dir.path().join("x").exists(), "a refused restore copies nothing");
}

#[test]
fn restore_at_time_cuts_at_the_last_event_stamped_at_or_before_it() {
    let (dir, data) = seeded();
    for (key, value) in [("c", "3"), ("d", "4")] {
        assert_eq!(cairn(&data, &["kv", "set", key, value]).0, 0);
    }
    let (code, out, err) = cairn(&data, &["read-all", "-o", "ndjson"]);
    assert_eq!(code, 0, "{err}");
    let stamps: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["timestamp"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stamps.len(), 4);
    // Each `kv set` is its own process and commit, so the stamps differ unless two commits
    // shared a millisecond: compare against the model (the last position stamped at or before).
    for (i, stamp) in stamps.iter().enumerate() {
        let expected = stamps.iter().rposition(|s| s <= stamp).unwrap() as u64;
        let past = dir.path().join(format!("at-{i}"));
        let cut = ok_json(&data, &["restore", "--to", past.to_str().unwrap(), "--at-time", stamp, "-o", "json"]);
        assert_eq!((cut["head_position"].as_u64(), cut["verified"].as_bool()), (Some(expected), Some(true)), "{cut}");
    }
    let before = dir.path().join("before");
    let (code, _, err) =
        cairn(&data, &["restore", "--to", before.to_str().unwrap(), "--at-time", "2000-01-01T00:00:00Z"]);
    assert_eq!(code, 2, "a time before the first event is refused: {err}");
    assert!(err.contains("no event stamped at or before 2000-01-01T00:00:00"), "{err}");
    assert!(!before.exists(), "a refused restore copies nothing");
    let (code, _, err) = cairn(&data, &["restore", "--to", before.to_str().unwrap(), "--at-time", "yesterday"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not an RFC 3339 time"), "{err}");
    let (code, _, err) =
        cairn(&data, &["restore", "--to", before.to_str().unwrap(), "--at", "1", "--at-time", &stamps[0]]);
    assert_eq!(code, 2, "--at and --at-time together are refused: {err}");
}
