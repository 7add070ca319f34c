//! Whole-directory open: a valid log of several segments (sealed and active), mutated by the
//! input — bytes flipped or set, sectors zeroed, ranges copied within or across files, files
//! truncated or removed. Open must not panic or hang; it refuses with a corruption report, or
//! yields a consistent log (common.rs). When the chain verifies, every event is exactly the one
//! written, and every stream read returns that stream's events in version order.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use log_engine::{Direction, Event, ExpectedVersion, Log, NewEvent, Position};

mod common;
use common::*;

/// Bytes of input per mutation.
const MUTATION_LEN: usize = 8;
/// Mutations applied at most.
const MUTATIONS_MAX: usize = 16;

struct Template {
    files: Vec<(String, Vec<u8>)>,
    events: Vec<Event>,
}

/// A log of three segments, made once per process.
fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = scratch();
        let log = Log::open(dir.path(), options()).expect("create a log");
        for i in 0..150u64 {
            let stream = ["a", "b", "c"][(i % 3) as usize];
            let len = if i % 17 == 0 { 9000 } else { 40 + (i as usize * 37) % 300 };
            let event = NewEvent::json("Tick", &serde_json::json!({"i": i, "pad": "z".repeat(len)}));
            log.append(stream, ExpectedVersion::Any, vec![event]).expect("append");
        }
        let events = log.read_all(Position(0), usize::MAX).expect("read");
        let files = log
            .segment_files()
            .iter()
            .map(|f| (f.path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&f.path).unwrap()))
            .collect();
        drop(log);
        Template { files, events }
    })
}

fuzz_target!(|data: &[u8]| {
    let t = template();
    let mut files: Vec<Option<Vec<u8>>> = t.files.iter().map(|(_, b)| Some(b.clone())).collect();
    for m in data.chunks_exact(MUTATION_LEN).take(MUTATIONS_MAX) {
        let f = m[0] as usize % files.len();
        let at = u32::from_le_bytes([m[2], m[3], m[4], m[5]]) as usize;
        let value = u16::from_le_bytes([m[6], m[7]]);
        let Some(bytes) = files[f].as_mut() else { continue };
        let len = bytes.len();
        if len == 0 {
            continue;
        }
        let at = at % len;
        match m[1] % 6 {
            0 => bytes[at] ^= value as u8 | 1,
            1 => bytes[at] = value as u8,
            2 => bytes[at..(at + 512).min(len)].fill(0),
            3 => {
                let from = value as usize * 8 % len;
                let n = 64.min(len - at).min(len - from);
                let chunk = bytes[from..from + n].to_vec();
                bytes[at..at + n].copy_from_slice(&chunk);
            }
            4 => bytes.truncate(at),
            _ => files[f] = None,
        }
    }
    let dir = scratch();
    std::fs::create_dir_all(dir.path().join("log")).unwrap();
    for ((name, _), bytes) in t.files.iter().zip(&files) {
        if let Some(bytes) = bytes {
            std::fs::write(dir.path().join("log").join(name), bytes).unwrap();
        }
    }
    let log = match Log::open(dir.path(), options()) {
        Ok(log) => log,
        Err(e) => return assert_refusal_is_a_report(&e),
    };
    let verified = log.verify(None, |_| {}).map(|r| r.ok).unwrap_or(false);
    if verified {
        let events = log.read_all(Position(0), usize::MAX).expect("a verified log reads");
        // A recovered log is a prefix of what was written (a torn tail may be cut).
        assert!(events.len() <= t.events.len());
        assert_eq!(&events[..], &t.events[..events.len()], "a verified log returned altered events");
        for s in log.streams("") {
            let got = log.read_stream(&s.stream, None, usize::MAX, Direction::Forward).expect("stream reads");
            for (v, e) in got.iter().enumerate() {
                assert_eq!(e.stream, s.stream, "read_stream returned another stream's event");
                assert_eq!(e.version.0, v as u64, "read_stream versions out of order");
            }
        }
    }
    assert_consistent(dir.path(), log);
});
