//! Checkpoint loading: arbitrary bytes as a checkpoint file (docs/checkpoint-format.md).
//!
//! The first input byte picks how the rest becomes a file:
//! - raw (0): the bytes are the file;
//! - sealed manifest (1): the bytes are a manifest length (u16 LE), a manifest and content, and
//!   the header carries the manifest's true hash, so the MessagePack manifest decoder and its
//!   field rules see arbitrary bytes (raw bytes almost never get past the hash);
//! - sealed content (2): a real manifest, rewritten to carry the content's digest and lengths,
//!   with the bytes as snappy content, so the snappy decoder sees arbitrary bytes;
//! - sealed raw content (3): the same with the bytes snappy-compressed, so the content's
//!   MessagePack decoder sees arbitrary bytes.
//!
//! Each file is decoded in memory by the real decoder (`snapshotter::decode_file_for_fuzzing`)
//! and then on disk, as checkpoint 2 of a real store (a log with the three views, a full
//! checkpoint 0 and an incremental 1): `Snapshotter::list` and `Snapshotter::restore` must not
//! panic, hang or fail; a file the decoder refuses is never listed as valid and is named in a
//! restore warning; and for unsealed bytes, restore must give exactly the views a replay of the
//! log gives (a file that passes every check without its hashes being forged can only be a real
//! checkpoint of this log). Allocation is bounded by libFuzzer's -malloc_limit_mb: the decoder
//! must check every length (and snappy's announced length) before it allocates.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use log_engine::{ExpectedVersion, Log, Options};
use projections::{Actor, ActorType, Category, Level, NewAuditEntry, Projection, Views};
use serde_json::json;
use snapshotter::{ChainStatus, CheckpointKind, FormatError, Policy, Snapshotter};

struct Template {
    _dir: tempfile::TempDir,
    log: Log,
    /// Where the fuzzed file goes: the name of checkpoint 2.
    victim: PathBuf,
    /// The real checkpoint 2 (incremental on 1), whose file was removed again.
    victim_bytes: Vec<u8>,
    /// The views' digests after replaying the whole log.
    replayed: Vec<[u8; 32]>,
}

fn digests(views: &[Box<dyn Projection>]) -> Vec<[u8; 32]> {
    views.iter().map(|v| v.digest()).collect()
}

/// Some writes to each of the three views.
fn write_some(views: &Views, round: u64) {
    for i in 0..6u64 {
        let key = format!("session/{}", (i + round) % 4);
        views.kv().set(&key, json!({"round": round, "i": i}), None, ExpectedVersion::Any).expect("kv set");
    }
    views.kv().incr("counter", round as i64 + 1).expect("kv incr");
    let actor = Actor { kind: ActorType::Agent, id: format!("agent-{round}"), name: None, roles: vec![] };
    let entry = NewAuditEntry::new(Level::Info, Category::AgentActivity, "tool.called", actor);
    views.audit().append(&entry, None).expect("audit append");
    views.meta().set_config(None, "limits/rps", json!(round * 10)).expect("config");
}

fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let dir = tempfile::Builder::new()
            .prefix("cairn-fuzz-ckpt-")
            .tempdir_in(if shm.is_dir() { shm } else { std::path::Path::new("/tmp") })
            .expect("a scratch directory");
        let log = Log::open(dir.path(), Options::default()).expect("create a log");
        let mut snap = Snapshotter::open(&log, Policy::default()).expect("open the snapshotter");
        let mut live = Views::projections();
        snap.restore(&log, &mut live, &mut |_| {}).expect("restore an empty store");
        let views = Views::start(log.clone(), Views::projections().into_iter().map(|p| (p, None)).collect())
            .expect("start the views");
        let mut infos = Vec::new();
        for (round, kind) in
            [CheckpointKind::Full, CheckpointKind::Incremental, CheckpointKind::Incremental].into_iter().enumerate()
        {
            write_some(&views, round as u64);
            let head = log.head().expect("events were written").position;
            views.wait_for(head, std::time::Duration::from_secs(30)).expect("the views catch up");
            let from = snap_position(&infos);
            snapshotter::replay(&log, &mut live, from, head, &mut |_| {}).expect("replay into the live views");
            infos.push(snap.checkpoint(&log, &mut live, head, kind).expect("checkpoint"));
        }
        views.stop();
        write_some_direct(&log);
        let victim = infos[2].file.clone();
        let victim_bytes = std::fs::read(&victim).expect("read checkpoint 2");
        std::fs::remove_file(&victim).expect("remove checkpoint 2");
        let head = log.head().expect("events").position;
        let mut fresh = Views::projections();
        snapshotter::replay(&log, &mut fresh, log_engine::Position(0), head, &mut |_| {}).expect("replay");
        Template { _dir: dir, log, victim, victim_bytes, replayed: digests(&fresh) }
    })
}

/// The first position after the newest checkpoint so far.
fn snap_position(infos: &[snapshotter::CheckpointInfo]) -> log_engine::Position {
    infos.last().map_or(log_engine::Position(0), |i| log_engine::Position(i.position.0 + 1))
}

/// A few events after the last checkpoint, so that restore replays a tail.
fn write_some_direct(log: &Log) {
    let event = log_engine::NewEvent::json("Tick", &json!({"tail": true}));
    log.append("tail", ExpectedVersion::Any, vec![event]).expect("append");
}

/// `CAIRNCKP`, version 1, the manifest's length and hash, the manifest, the content.
fn seal(manifest: &[u8], content: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(48 + manifest.len() + content.len());
    bytes.extend_from_slice(&snapshotter::MAGIC);
    bytes.extend_from_slice(&snapshotter::FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
    bytes.extend_from_slice(blake3::hash(manifest).as_bytes());
    bytes.extend_from_slice(manifest);
    bytes.extend_from_slice(content);
    bytes
}

/// The victim's manifest, rewritten to describe `content`: its digest, its length, and the
/// decompressed length its snappy preamble announces (or `fallback_raw_len` when it has none).
fn sealed_with_content(t: &Template, content: &[u8], fallback_raw_len: u64) -> Vec<u8> {
    let manifest_len = u32::from_le_bytes(t.victim_bytes[12..16].try_into().unwrap()) as usize;
    let mut manifest_bytes = &t.victim_bytes[48..48 + manifest_len];
    let manifest = rmpv::decode::read_value(&mut manifest_bytes).expect("the victim's manifest decodes");
    let rmpv::Value::Array(mut fields) = manifest else { panic!("the manifest is an array") };
    let raw_len = snap::raw::decompress_len(content).map_or(fallback_raw_len, |n| n as u64);
    fields[8] = rmpv::Value::Binary(blake3::hash(content).as_bytes().to_vec());
    fields[9] = rmpv::Value::from(raw_len);
    fields[10] = rmpv::Value::from(content.len() as u64);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &rmpv::Value::Array(fields)).expect("encode to memory");
    seal(&out, content)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let t = template();
    let (file, sealed) = match mode % 4 {
        0 => (rest.to_vec(), false),
        1 => {
            // Two bytes of manifest length (little-endian), then the manifest and the content.
            let [a, b, body @ ..] = rest else { return };
            let split = (u16::from_le_bytes([*a, *b]) as usize).min(body.len());
            (seal(&body[..split], &body[split..]), true)
        }
        2 => (sealed_with_content(t, rest, rest.len() as u64), true),
        _ => {
            let compressed = snap::raw::Encoder::new().compress_vec(rest).expect("compress");
            (sealed_with_content(t, &compressed, rest.len() as u64), true)
        }
    };

    let decoded = snapshotter::decode_file_for_fuzzing(&file);

    std::fs::write(&t.victim, &file).expect("write the fuzzed checkpoint");
    let snap = Snapshotter::open(&t.log, Policy::default()).expect("the snapshotter opens over any checkpoint file");
    let rows = snap.list(&t.log, &mut |_| {}).expect("listing never fails on a damaged file");
    let row = rows.iter().find(|r| r.file == t.victim).expect("the fuzzed file is listed");
    if decoded.is_err() {
        assert!(row.status != ChainStatus::Valid, "a file the decoder refuses ({decoded:?}) was listed as valid");
    }
    let mut views = Views::projections();
    let mut snap = Snapshotter::open(&t.log, Policy::default()).expect("reopen the snapshotter");
    let restored = snap.restore(&t.log, &mut views, &mut |_| {}).expect("restore never fails on a damaged file");
    if let Err(e) = &decoded {
        assert!(
            restored.checkpoint.as_ref().is_none_or(|c| c.file != t.victim),
            "restore used a checkpoint the decoder refuses ({e})"
        );
        // Header and manifest damage is found by the directory scan, so always reported;
        // content is read only when restore tries the chain.
        let content_stage = matches!(
            e,
            FormatError::ContentDigest
                | FormatError::RawLength { .. }
                | FormatError::Expansion { .. }
                | FormatError::Decompress(_)
                | FormatError::ContentDecode(_)
                | FormatError::ContentMismatch(_)
        );
        assert!(
            content_stage || restored.warnings.iter().any(|w| w.file.as_deref() == Some(t.victim.as_path())),
            "a refused checkpoint ({e}) was not named in a warning: {:?}",
            restored.warnings
        );
    }
    if !sealed {
        assert_eq!(digests(&views), t.replayed, "restore returned views that differ from a replay");
    }
    std::fs::remove_file(&t.victim).expect("remove the fuzzed checkpoint");
});
