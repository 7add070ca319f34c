//! Segment recovery: arbitrary bytes as the record area of the newest (and only) segment,
//! after a valid header. Open must not panic or hang; it either refuses with a corruption
//! report, or yields a consistent log (see common.rs).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use log_engine::Log;

mod common;
use common::*;

/// The header of an empty first segment, made once per process by the log itself.
fn header() -> &'static [u8] {
    static HEADER: OnceLock<Vec<u8>> = OnceLock::new();
    HEADER.get_or_init(|| {
        let dir = scratch();
        drop(Log::open(dir.path(), options()).expect("create a log"));
        let bytes = std::fs::read(segment_path(dir.path(), 0)).expect("read the first segment");
        bytes[..HEADER_LEN].to_vec()
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    std::fs::create_dir_all(dir.path().join("log")).unwrap();
    let mut segment = vec![0u8; SEGMENT as usize];
    segment[..HEADER_LEN].copy_from_slice(header());
    let room = SEGMENT as usize - HEADER_LEN;
    let n = data.len().min(room);
    segment[HEADER_LEN..HEADER_LEN + n].copy_from_slice(&data[..n]);
    std::fs::write(segment_path(dir.path(), 0), &segment).unwrap();
    match Log::open(dir.path(), options()) {
        Ok(log) => {
            assert_consistent(dir.path(), log);
        }
        Err(e) => assert_refusal_is_a_report(&e),
    }
});
