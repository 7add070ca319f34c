//! `cairn verify`: exit 0 with a report on a sound log; exit 3 and the first bad position when a
//! byte of an acknowledged event is flipped on disk.

mod support;

use serde_json::Value;
use support::cairn;

#[test]
fn a_sound_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for i in 0..4 {
        assert_eq!(cairn(&data, &["append", "s", "--type", "T", "--data", &i.to_string()]).0, 0);
    }
    let (code, out, _) = cairn(&data, &["verify", "-o", "json"]);
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (report["ok"].as_bool(), report["events"].as_u64(), report["head_position"].as_u64()),
        (Some(true), Some(4), Some(3))
    );
    let (_, out, _) = cairn(&data, &["verify", "--from", "2", "-o", "json"]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["events"], 2);
    let (code, out, _) = cairn(&data, &["verify"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("ok: 4 events verified"), "{out}");
}

#[test]
fn a_flipped_byte_exits_3_with_the_first_bad_position() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for i in 0..6 {
        let payload = format!("{{\"marker\":\"MARK-{i}\"}}");
        assert_eq!(cairn(&data, &["append", "s", "--type", "T", "--data", &payload]).0, 0);
    }
    let segment = std::fs::read_dir(data.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.windows(6).position(|w| w == b"MARK-3").expect("the payload is stored uncompressed");
    bytes[at + 5] ^= 0x01;
    std::fs::write(&segment, bytes).unwrap();

    let (code, out, err) = cairn(&data, &["verify", "-o", "json"]);
    assert_eq!(code, 3, "{out} {err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["first_bad_position"], 3, "{report}");
    assert!(report["detail"].as_str().unwrap().contains("segment"), "{report}");
    let (code, out, _) = cairn(&data, &["verify"]);
    assert_eq!(code, 3);
    assert!(out.contains("first bad position 3"), "{out}");
}
