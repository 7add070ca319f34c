//! Issue 14 item 11 (checkpoint part): a checkpoint pauses the views only while it captures
//! them. Encoding, the two fsyncs and retention used to run under every view's write lock, so a
//! checkpoint of a large state stalled every view read and write (and the server's `/healthz`
//! readiness of the views) for as long as the disk took.
//!
//! The checkpoint's temporary file is made a named pipe before the checkpoint starts: the
//! checkpoint's write then blocks until this test reads the pipe (the state is larger than a
//! pipe's buffer, and random, so it does not compress below it). Opening the pipe for reading
//! returns once the checkpoint has opened it for writing, which is after the capture. While it
//! is stuck there, a key-value write is applied by the views and read back. Ordering comes from
//! the pipe, not from time; the bounded waits only turn a regression into a failure instead of
//! a hang. (A pipe cannot be fsynced, so that checkpoint fails afterwards: the test then checks
//! that the store recovers from a checkpoint that failed after its capture.)

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cairn::store::Store;
use log_engine::{Log, Options};
use projections::now_ms;
use serde_json::json;
use snapshotter::{CheckpointKind, Policy};

/// Keys written before the checkpoint, each with a random 1 KiB value: about 2 MiB of state.
const KEYS: usize = 2_000;
/// A safety net for a regression (which would otherwise deadlock the test), not a measurement.
const WAIT: Duration = Duration::from_secs(20);

fn random_hex(seed: &mut u64, len: usize) -> String {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            char::from_digit((*seed % 16) as u32, 16).unwrap()
        })
        .collect()
}

fn open(dir: &Path) -> Store {
    let log = Log::open(dir, Options::default()).unwrap();
    Store::open(log, Policy::default(), &mut |_| {}).unwrap().0
}

#[test]
fn views_serve_reads_and_writes_while_a_checkpoint_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = open(&data);
    let kv = store.views().kv();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for chunk in 0..KEYS / 1_000 {
        let items = (0..1_000).map(|i| (format!("k{chunk}-{i}"), json!(random_hex(&mut seed, 1_024)), None)).collect();
        kv.set_many(items).unwrap();
    }
    let first = store.checkpoint(Some(CheckpointKind::Full)).unwrap();

    // Change every key, so that the incremental is as large as the state, and make its
    // temporary file a pipe.
    for chunk in 0..KEYS / 1_000 {
        let items = (0..1_000).map(|i| (format!("k{chunk}-{i}"), json!(random_hex(&mut seed, 1_024)), None)).collect();
        kv.set_many(items).unwrap();
    }
    let pipe = first.file.with_file_name(format!("{:020}.ckpt.tmp", first.sequence + 1));
    let made = Command::new("mkfifo").arg(&pipe).status().unwrap();
    assert!(made.success(), "mkfifo {}", pipe.display());

    std::thread::scope(|scope| {
        let checkpoint = scope.spawn(|| store.checkpoint(Some(CheckpointKind::Incremental)));
        // Returns once the checkpoint opened its temporary file: it has captured the views and
        // is writing. It cannot finish before the pipe is read.
        let mut reader = File::open(&pipe).unwrap();

        let written = kv
            .set(
                "during",
                json!("written while the checkpoint is being written"),
                None,
                log_engine::ExpectedVersion::Any,
            )
            .unwrap();
        store
            .views()
            .wait_for(written.position, WAIT)
            .expect("the views applied a write during the checkpoint's write");
        assert_eq!(kv.get("during", now_ms()).unwrap().value, json!("written while the checkpoint is being written"));
        assert_eq!(kv.get("k0-0", now_ms()).unwrap().version.0, 1, "reads answer during the checkpoint's write");
        assert!(!checkpoint.is_finished(), "the checkpoint is still writing: the pipe was not read yet");

        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).unwrap();
        assert!(bytes.len() > 64 * 1024, "the checkpoint ({} bytes) outgrew the pipe's buffer", bytes.len());
        let failed = checkpoint.join().unwrap();
        assert!(failed.is_err(), "a pipe cannot be fsynced: {failed:?}");
    });

    // The failed checkpoint had marked the views: the next one must be full, and every
    // restore from here on equals the state.
    assert!(!pipe.exists(), "the failed checkpoint's temporary file was removed");
    let next = store.checkpoint(None).unwrap();
    assert_eq!(next.kind, CheckpointKind::Full, "after a failed write the next checkpoint is full");
    let digests: Vec<[u8; 32]> = store.views().runner().read(|views| views.iter().map(|v| v.digest()).collect());
    store.close();
    drop((kv, store));
    let reopened = open(&data);
    let restored: Vec<[u8; 32]> = reopened.views().runner().read(|views| views.iter().map(|v| v.digest()).collect());
    assert_eq!(restored, digests, "the restored views equal the state checkpointed");
    assert_eq!(reopened.views().kv().get("during", now_ms()).unwrap().version.0, 0);
    reopened.close();
}
