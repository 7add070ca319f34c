//! The stream lifecycle from the command line: `delete` (soft and `--tombstone`), `close`,
//! `fork` and `metadata` (read and `--set`), in text and json, with the contract's exit codes:
//! 5 for a stream that does not exist or reads as deleted, 2 for bad input, 1 for a refused
//! change; `streams` shows each stream's state.

mod support;

use serde_json::{json, Value};
use support::cairn;

fn json_out(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn append(data: &std::path::Path, stream: &str, n: usize) {
    for i in 0..n {
        let (code, _, err) = cairn(data, &["append", stream, "--type", "Step", "--payload", &format!("{{\"i\":{i}}}")]);
        assert_eq!(code, 0, "{err}");
    }
}

#[test]
fn delete_close_and_tombstone_with_their_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    append(&data, "run-1", 2);

    let (code, out, err) = cairn(&data, &["delete", "run-1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("stream run-1 deleted at position 2"), "{out}");
    let (code, _, err) = cairn(&data, &["read", "run-1"]);
    assert_eq!(code, 5, "a deleted stream reads as not found");
    assert!(err.contains("deleted"), "{err}");
    let (code, out, _) = cairn(&data, &["streams", "--prefix", "run-", "-o", "json"]);
    assert_eq!(code, 0);
    assert_eq!(json_out(&out), json!([]), "deleted streams are left out of the listing: {out}");
    let (code, out, _) = cairn(&data, &["metadata", "run-1", "-o", "json"]);
    assert_eq!((code, json_out(&out)["deleted"].as_bool()), (0, Some(true)), "{out}");

    append(&data, "run-1", 1);
    let (_, out, _) = cairn(&data, &["read", "run-1", "-o", "json"]);
    let versions: Vec<u64> =
        json_out(&out)["events"].as_array().unwrap().iter().map(|e| e["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, [2], "versions continue; only what came after the delete is read");

    let (code, out, err) = cairn(&data, &["close", "run-1", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let closed = json_out(&out);
    assert_eq!((closed["stream"].as_str(), closed["hash"].as_str().map(str::len)), (Some("run-1"), Some(64)));
    let (code, _, err) = cairn(&data, &["append", "run-1", "--type", "Late"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("closed"), "{err}");
    let (_, out, _) = cairn(&data, &["streams"]);
    assert!(out.lines().any(|l| l.starts_with("run-1") && l.ends_with("closed")), "{out}");

    let (code, out, err) = cairn(&data, &["delete", "run-1", "--tombstone"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tombstoned"), "{out}");
    let (code, _, err) = cairn(&data, &["delete", "run-1"]);
    assert_eq!(code, 1, "a tombstone is for good: {err}");
    let (code, _, _) = cairn(&data, &["delete", "never-written"]);
    assert_eq!(code, 5);
    let (code, _, err) = cairn(&data, &["delete", "audit:security"]);
    assert_eq!(code, 2, "the audit view does not follow deletes: {err}");
    assert!(err.contains("audit view"), "{err}");
}

#[test]
fn metadata_reads_and_sets_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    append(&data, "chat-1", 5);

    let (code, out, err) = cairn(&data, &["metadata", "chat-1", "--set", r#"{"max_count": 2}"#]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("metadata set"), "{out}");
    let (_, out, _) = cairn(&data, &["read", "chat-1", "-o", "json"]);
    assert_eq!(json_out(&out)["events"].as_array().unwrap().len(), 2);
    let (code, out, _) = cairn(&data, &["metadata", "chat-1", "-o", "json"]);
    assert_eq!(code, 0);
    let state = json_out(&out);
    assert_eq!(
        (state["max_count"].clone(), state["last_version"].clone(), state["closed"].clone()),
        (json!(2), json!(4), json!(false))
    );
    let (_, out, _) = cairn(&data, &["metadata", "chat-1"]);
    assert!(out.contains("max_count        2") && out.contains("state            open"), "{out}");

    for bad in [r#"{"max_count": -1}"#, r#"{"maxcount": 1}"#, "not json", r#"{"max_count": 0}"#] {
        let (code, _, err) = cairn(&data, &["metadata", "chat-1", "--set", bad]);
        assert_eq!(code, 2, "{bad}: {err}");
    }
    let (_, out, _) = cairn(&data, &["metadata", "chat-1", "-o", "json"]);
    assert_eq!(json_out(&out)["max_count"], 2, "a refused --set changed nothing");
    let (code, _, _) = cairn(&data, &["metadata", "nothing-here"]);
    assert_eq!(code, 5);
    let (code, _, err) = cairn(&data, &["close", "chat-1"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cairn(&data, &["metadata", "chat-1", "--set", r#"{"closed": false}"#]);
    assert_eq!(code, 2, "a closed stream cannot be reopened: {err}");
    assert!(err.contains("closed cannot become false"), "{err}");
}

#[test]
fn fork_shares_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    append(&data, "thread-1", 4);

    let (code, out, err) = cairn(&data, &["fork", "thread-1", "--to", "thread-2", "--at", "1", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let fork = json_out(&out);
    assert_eq!(
        (fork["stream"].as_str(), fork["source"].as_str(), fork["at_version"].as_u64()),
        (Some("thread-2"), Some("thread-1"), Some(1))
    );
    let (_, out, _) = cairn(&data, &["read", "thread-2", "-o", "json"]);
    let data_i: Vec<u64> =
        json_out(&out)["events"].as_array().unwrap().iter().map(|e| e["data"]["i"].as_u64().unwrap()).collect();
    assert_eq!(data_i, [0, 1]);
    let (code, _, err) = cairn(&data, &["fork", "thread-1", "--to", "thread-3", "--at", "9"]);
    assert_eq!(code, 2, "past the end is bad input: {err}");
    let (code, _, err) = cairn(&data, &["fork", "thread-1", "--to", "thread-2", "--at", "0"]);
    assert_eq!(code, 1, "the target exists: {err}");
    let (code, out, _) = cairn(&data, &["fork", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("--to <NEW>") && out.contains("--at <V>"), "{out}");
}

/// Issue 16 item 5: `cairn erase` masks the range on every read, says so in text and json,
/// counts the checkpoints taken before it (they may still hold the payloads), and refuses
/// bad ranges with the contract's exit codes, writing nothing.
#[test]
fn erase_masks_the_range_and_refuses_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    append(&data, "run-1", 3);
    let (code, _, err) = cairn(&data, &["checkpoint"]);
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = cairn(&data, &["erase", "run-1", "--from", "1", "--to", "1", "--reason", "GDPR 118"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("erased versions 1 to 1 of stream run-1 at position 3"), "{out}");
    assert!(out.contains("1 checkpoint(s) taken before the erasure may still hold the payloads"), "{out}");
    let (code, out, _) = cairn(&data, &["read", "run-1", "-o", "ndjson"]);
    assert_eq!(code, 0);
    let events: Vec<Value> = out.lines().map(json_out).collect();
    assert_eq!(events[1]["erased"], true, "{out}");
    assert!(events[1].get("data").is_none() && events[1].get("metadata").is_none(), "{out}");
    assert_eq!(events[2]["data"], json!({"i": 2}));
    let (_, text, _) = cairn(&data, &["read", "run-1"]);
    assert!(text.lines().nth(1).unwrap().ends_with("(erased)"), "{text}");
    let (code, out, _) = cairn(&data, &["verify"]);
    assert_eq!(code, 0, "{out}");

    let (code, out, err) = cairn(&data, &["erase", "run-1", "--reason", "all of it", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let answer = json_out(&out);
    assert_eq!((answer["from_version"].as_u64(), answer["to_version"].as_u64()), (Some(0), Some(2)), "{out}");
    assert_eq!(answer["checkpoints_before"], 1);

    let (_, head, _) = cairn(&data, &["head", "-o", "json"]);
    for (args, want_code, says) in [
        (vec!["erase", "run-1", "--to", "7", "--reason", "r"], 2, "its last version is 2"),
        (vec!["erase", "run-1", "--from", "2", "--to", "1", "--reason", "r"], 2, "from_version is after to_version"),
        (vec!["erase", "run-1", "--reason", " "], 2, "needs a reason"),
        (vec!["erase", "nobody", "--reason", "r"], 5, "not found"),
        (vec!["erase", "run-1"], 2, "--reason"),
    ] {
        let (code, _, err) = cairn(&data, &args);
        assert_eq!(code, want_code, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(cairn(&data, &["head", "-o", "json"]).1, head, "refused erasures write nothing");
}
