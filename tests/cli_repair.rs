//! Damage the open path refuses, from the command line.
//!
//! Issue 23 item 11: one flipped byte in the newest segment locked out every command, reads of
//! the good events before it included, and the engine's salvage mode had no CLI. Reads now show
//! the events before the damage (with a warning naming it), `verify` reports it, and `cairn
//! repair` cuts it off, keeping the bytes aside and saying exactly what it cut; it refuses while
//! another process holds the writer's lock.
//!
//! Issue 14 item 4: deleting the newest segment file went unnoticed (`verify` said ok, appends
//! reused the lost positions). Every command now refuses, naming the missing file; `cairn repair
//! --accept-missing-tail` continues the log only when asked, and not when a checkpoint proves
//! the log reached further.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{cairn, BIN};

/// The only segment file of a small store.
fn segment(data: &Path) -> PathBuf {
    let mut all: Vec<PathBuf> = std::fs::read_dir(data.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    assert_eq!(all.len(), 1);
    all.pop().unwrap()
}

/// Byte offsets of the records in a segment, and the end of the last (docs/format.md: records
/// from offset 4096, each frame `align8(80 + body_len)` bytes, body_len at frame offset 4, kind
/// byte at 8, 0 = unwritten space).
fn record_offsets(bytes: &[u8]) -> (Vec<usize>, usize) {
    let mut offsets = Vec::new();
    let mut at = 4096;
    while bytes[at + 8] != 0 {
        offsets.push(at);
        let body_len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        at += (80 + body_len).next_multiple_of(8);
    }
    (offsets, at)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn store_with_steps(n: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for i in 0..n {
        let (code, _, err) =
            cairn(&data, &["append", "agent-1", "--type", "Step", "--data", &format!("{{\"n\":{i}}}")]);
        assert_eq!(code, 0, "{err}");
    }
    (dir, data)
}

#[test]
fn a_flipped_byte_in_the_newest_segment_reads_up_to_it_and_repair_cuts_it() {
    let (_dir, data) = store_with_steps(5);
    let path = segment(&data);
    let mut bytes = std::fs::read(&path).unwrap();
    let (offsets, end) = record_offsets(&bytes);
    assert_eq!(offsets.len(), 5);
    bytes[offsets[2] + 100] ^= 0x04;
    std::fs::write(&path, &bytes).unwrap();
    let name = path.file_stem().unwrap().to_str().unwrap().to_string();

    // Reads show the good events before the damage and say where they stopped.
    let (code, out, err) = cairn(&data, &["read-all", "-o", "ndjson"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2);
    assert!(err.contains(&name) && err.contains(&format!("byte offset {}", offsets[2])), "{err}");
    assert!(err.contains("cairn repair"), "{err}");
    // verify reports it; a writer refuses it.
    let (code, out, _) = cairn(&data, &["verify", "-o", "json"]);
    let report = json(&out);
    assert_eq!((code, report["ok"].as_bool(), report["first_bad_position"].as_u64()), (3, Some(false), Some(2)));
    assert_eq!(cairn(&data, &["append", "agent-1", "--type", "Step"]).0, 3);

    // Not while another process holds the writer's lock.
    let out =
        Command::new("flock").arg(data.join("LOCK")).arg(BIN).arg("--data").arg(&data).arg("repair").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another process"));
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "a refused repair changes nothing");

    let (code, out, err) = cairn(&data, &["repair", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let report = json(&out);
    assert_eq!(report["repaired"], true);
    assert_eq!(report["kind"], "damage");
    assert_eq!(report["segment"], name.as_str());
    assert_eq!(report["offset"].as_u64(), Some(offsets[2] as u64));
    assert_eq!(report["first_lost_position"].as_u64(), Some(2));
    assert_eq!(report["head_position"].as_u64(), Some(1));
    let kept = PathBuf::from(report["kept_in"].as_str().unwrap());
    let cut = std::fs::read(&kept).unwrap();
    assert_eq!(report["bytes_cut"].as_u64(), Some(cut.len() as u64));
    assert_eq!(&cut[..], &bytes[offsets[2]..end], "the damaged batch and everything after it, as they were");

    // The log opens again, verifies, and continues after the last good event.
    let (code, out, _) = cairn(&data, &["verify", "-o", "json"]);
    assert_eq!((code, json(&out)["events"].as_u64()), (0, Some(2)));
    let (code, out, _) = cairn(&data, &["append", "agent-1", "--type", "Step", "-o", "json"]);
    assert_eq!((code, json(&out)["first_position"].as_u64()), (0, Some(2)));
    let (code, out, _) = cairn(&data, &["repair"]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to repair"), "{out}");
}

#[test]
fn a_lost_newest_segment_is_refused_everywhere_and_repair_accepts_it_only_when_asked() {
    let (_dir, data) = store_with_steps(3);
    assert_eq!(cairn(&data, &["checkpoint"]).0, 0, "the views' checkpoint at position 2");
    let path = segment(&data);
    let name = path.file_name().unwrap().to_str().unwrap().to_string();
    std::fs::remove_file(&path).unwrap();

    for args in [&["verify"][..], &["read-all"], &["head"], &["append", "agent-1", "--type", "Step"], &["repair"]] {
        let (code, out, err) = cairn(&data, args);
        // verify prints its finding as its report; the others fail with it.
        let said = out + &err;
        assert_eq!(code, 3, "{args:?}: {said}");
        assert!(said.contains(&name) && said.contains("missing"), "{args:?}: {said}");
        assert!(said.contains("--accept-missing-tail"), "{said}");
    }
    let (code, out, _) = cairn(&data, &["verify", "-o", "json"]);
    assert_eq!((code, json(&out)["ok"].as_bool()), (3, Some(false)));

    // The checkpoint proves positions 0..=2 were used: continuing at 0 would reissue them.
    let (code, _, err) = cairn(&data, &["repair", "--accept-missing-tail"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("checkpoint at position 2"), "{err}");
    assert!(!path.exists(), "a refused repair creates nothing");

    // Without that evidence the operator may accept the loss.
    std::fs::remove_dir_all(data.join("checkpoints")).unwrap();
    let (code, out, err) = cairn(&data, &["repair", "--accept-missing-tail", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let report = json(&out);
    assert_eq!((report["kind"].as_str(), report["first_lost_position"].as_u64()), (Some("missing_segment"), Some(0)));
    let (code, out, _) = cairn(&data, &["append", "agent-1", "--type", "Step", "-o", "json"]);
    assert_eq!((code, json(&out)["first_position"].as_u64()), (0, Some(0)));
    assert_eq!(cairn(&data, &["verify"]).0, 0);
}
