//! The fuzz targets' seed corpora (`fixtures/fuzz-corpus/<target>/`) are valid inputs made by
//! the real encoders: checkpoint files written by the snapshotter over the real views, and
//! HTTP request bodies as a client encodes them (JSON, MessagePack). This test checks that the
//! committed seeds still are what they claim — each checkpoint seed passes the decoder, each
//! request seed parses into the server's request types, each view-event seed decodes into
//! events the views take without a panic — and regenerates them with
//! `CAIRN_WRITE_FUZZ_CORPUS=1 cargo test --test fuzz_corpus`.
//!
//! A seed's first byte is the target's mode (see fuzz/fuzz_targets/*.rs).

mod reliability;

#[path = "../fuzz/fuzz_targets/view_events.rs"]
mod view_events;

use std::path::PathBuf;

use cairn::wire::{AppendRequest, ExpectedVersionJson, MultiAppendRequest, Place};
use reliability::views::build;
use serde_json::{json, Value};
use snapshotter::CheckpointKind;

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/fuzz-corpus").join(target)
}

fn writing() -> bool {
    std::env::var_os("CAIRN_WRITE_FUZZ_CORPUS").is_some()
}

fn seed(mode: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend_from_slice(bytes);
    out
}

/// Writes the seeds (when regenerating) or reads the committed ones.
fn seeds(target: &str, make: impl FnOnce() -> Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    let dir = corpus(target);
    if writing() {
        std::fs::create_dir_all(&dir).unwrap();
        let made = make();
        for (name, bytes) in &made {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        return made;
    }
    let mut found: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no seeds in {}", dir.display());
    found
}

#[test]
fn checkpoint_load_seeds_are_real_checkpoints() {
    let seeds = seeds("checkpoint_load", || {
        let dir = tempfile::tempdir().unwrap();
        let (_log, infos) =
            build(dir.path(), &[CheckpointKind::Full, CheckpointKind::Incremental, CheckpointKind::Incremental]);
        let mut out = Vec::new();
        for (info, name) in infos.iter().zip(["full", "incremental-1", "incremental-2"]) {
            let bytes = std::fs::read(&info.file).unwrap();
            let manifest_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
            let (manifest, content) = bytes[48..].split_at(manifest_len);
            out.push((format!("raw-{name}"), seed(0, &bytes)));
            let mut sealed = (manifest_len as u16).to_le_bytes().to_vec();
            sealed.extend_from_slice(manifest);
            sealed.extend_from_slice(content);
            out.push((format!("manifest-{name}"), seed(1, &sealed)));
            out.push((format!("content-{name}"), seed(2, content)));
            out.push((
                format!("raw-content-{name}"),
                seed(3, &snap::raw::Decoder::new().decompress_vec(content).unwrap()),
            ));
        }
        out
    });
    let mut raw = 0;
    for (name, bytes) in &seeds {
        assert!(bytes.len() < 64 * 1024, "{name} is not small");
        match bytes[0] {
            0 => {
                let (projections, _) = snapshotter::decode_file_for_fuzzing(&bytes[1..])
                    .unwrap_or_else(|e| panic!("seed {name} does not decode: {e}"));
                assert_eq!(projections, 3, "{name}");
                raw += 1;
            }
            2 => assert!(snap::raw::decompress_len(&bytes[1..]).is_ok(), "{name} is not snappy"),
            1 | 3 => {}
            m => panic!("{name}: unknown mode {m}"),
        }
    }
    assert!(raw >= 3, "the corpus has {raw} whole checkpoint files");
}

#[test]
fn http_request_seeds_parse_as_requests() {
    let append = json!({"expected_version": "any", "events": [
        {"type": "ToolCalled", "data": {"tool": "search", "query": "cairn", "n": 12345678901234567890u64}},
        {"id": "0b6f0c1e-6a43-4f4e-9a51-0d2b8f3a9c11", "type": "Blob", "data_b64": "AAEC/w==",
         "metadata": {"run_id": "r-1"}},
        {"type": "Empty"}
    ]});
    let exact = json!({"expected_version": 3, "events": [{"type": "T", "data": [1, "two", null, {"x": 1.5e3}]}]});
    let multi = json!({"appends": [
        {"stream": "agent-7", "expected_version": "no_stream", "events": [{"type": "Started", "data": {}}]},
        {"stream": "kv:session/42", "expected_version": "exists", "events": [{"type": "T", "metadata": {}}]}
    ]});
    let seeds = seeds("http_request", || {
        let msgpack = |v: &Value| rmp_serde::to_vec_named(v).unwrap();
        let json_bytes = |v: &Value| serde_json::to_vec(v).unwrap();
        let pretty = serde_json::to_vec_pretty(&append).unwrap();
        let mut declared = vec![60u8];
        declared.extend_from_slice(&json_bytes(&exact));
        vec![
            ("append-json".into(), seed(0, &json_bytes(&append))),
            ("append-json-pretty".into(), seed(0, &pretty)),
            ("append-json-exact".into(), seed(0, &json_bytes(&exact))),
            ("multi-json".into(), seed(1, &json_bytes(&multi))),
            ("append-msgpack".into(), seed(2, &msgpack(&append))),
            ("multi-msgpack".into(), seed(3, &msgpack(&multi))),
            ("body-declared-length".into(), seed(4, &declared)),
            ("expected-any".into(), seed(5, b"any")),
            ("expected-no-stream".into(), seed(5, b"no_stream")),
            ("expected-exact".into(), seed(5, b"42")),
            ("query-read-stream".into(), seed(6, b"from=3&limit=10&direction=backward")),
            ("query-read-all".into(), seed(6, b"from=0&limit=100&stream_prefix=agent-&type_prefix=Tool")),
            ("query-subscribe".into(), seed(6, b"from=end&stream=agent-7")),
            ("query-min-position".into(), seed(6, b"min_position=5")),
            ("last-event-id".into(), seed(7, b"41")),
        ]
    });
    for (name, bytes) in &seeds {
        let rest = &bytes[1..];
        let json_of = |rest: &[u8]| -> Value {
            match bytes[0] {
                2 | 3 => rmp_serde::from_slice(rest).unwrap_or_else(|e| panic!("{name}: {e}")),
                _ => serde_json::from_slice(rest).unwrap_or_else(|e| panic!("{name}: {e}")),
            }
        };
        match bytes[0] {
            0 | 2 => {
                // The request types borrow from the text they are parsed from.
                let text = json_of(rest).to_string();
                let r: AppendRequest = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                for (i, e) in r.events.into_iter().enumerate() {
                    e.into_new_event(Place::Event(i)).unwrap_or_else(|e| panic!("{name}: {e}"));
                }
            }
            1 | 3 => {
                let text = json_of(rest).to_string();
                let r: MultiAppendRequest = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(!r.appends.is_empty());
            }
            4 => drop(json_of(&rest[1..])),
            5 => drop(ExpectedVersionJson::parse(std::str::from_utf8(rest).unwrap()).unwrap()),
            6 => assert!(std::str::from_utf8(rest).unwrap().contains('='), "{name}"),
            7 => drop(std::str::from_utf8(rest).unwrap().parse::<u64>().unwrap()),
            m => panic!("{name}: unknown mode {m}"),
        }
    }
}

/// The events a real store's facades write: every kind of key-value operation, an audit entry,
/// and each registry of the metadata view.
fn facade_events() -> Vec<view_events::Spec> {
    use log_engine::{ExpectedVersion, Log, Options, Payload};
    use projections::{Actor, ActorType, Category, End, InstanceRegistration, Level, NewAuditEntry, Views};
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options::default()).unwrap();
    let views = Views::open(log.clone()).unwrap();
    let kv = views.kv();
    kv.set("k", json!(41), None, ExpectedVersion::Any).unwrap();
    kv.incr("k", 1).unwrap();
    kv.set("s", json!("ab"), Some(60_000), ExpectedVersion::Any).unwrap();
    kv.append("s", "c").unwrap();
    kv.push("l", End::Left, vec![json!(1), json!({"a": [2]})]).unwrap();
    kv.pop("l", End::Right, Some(1)).unwrap();
    kv.sadd("m", vec!["x".into(), "y".into()]).unwrap();
    kv.srem("m", vec!["x".into()]).unwrap();
    kv.delete("s", None).unwrap();
    let actor = Actor { kind: ActorType::Agent, id: "agent-7".into(), name: None, roles: vec![] };
    views.audit().append(&NewAuditEntry::new(Level::Warn, Category::Security, "tool.denied", actor), None).unwrap();
    let meta = views.meta();
    meta.register_schema("order", json!({"type": "object"})).unwrap();
    let registration = InstanceRegistration {
        endpoints: vec!["http://a".into()],
        tags: vec!["t".into()],
        capabilities: vec![],
        ttl_ms: 5_000,
    };
    meta.register_instance("search", "i-1", registration).unwrap();
    meta.set_config(None, "db/url", json!("postgres://x")).unwrap();
    meta.relate("agent-7", "tool-1", "uses", Some(json!({"since": 1}))).unwrap();
    meta.unrelate("agent-7", "tool-1", "uses").unwrap();
    views.stop();
    let mut specs = Vec::new();
    log.for_each(log_engine::Position(0), u64::MAX, |e| {
        let (data, binary) = match e.data {
            Payload::Json(d) => (d, false),
            Payload::Bytes(d) => (d, true),
        };
        specs.push(view_events::Spec {
            stream: e.stream,
            event_type: e.event_type,
            data,
            binary,
            metadata: e.metadata,
        });
        true
    })
    .unwrap();
    log.close();
    specs
}

fn spec(stream: &str, event_type: &str, data: &str) -> view_events::Spec {
    view_events::Spec {
        stream: stream.into(),
        event_type: event_type.into(),
        data: data.as_bytes().to_vec(),
        binary: false,
        metadata: Vec::new(),
    }
}

/// issue 14 item 1: the seeds of `view_apply` — what the facades write, and the attacks.
#[test]
fn view_apply_seeds_decode_and_apply_without_panics() {
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let seeds = seeds("view_apply", || {
        let then_incr = |value: &str| {
            view_events::encode(&[
                spec("kv:k", "kv.set", r#"{"value": 41}"#),
                spec("kv:k", "kv.set", &format!(r#"{{"value": {value}}}"#)),
                spec("kv:k", "kv.incr", r#"{"delta": 1}"#),
                spec("kv:k", "Raw", "{}"),
            ])
        };
        let mut binary = spec("kv:k", "kv.set", "\x00\x01");
        binary.binary = true;
        vec![
            ("facades".into(), view_events::encode(&facade_events())),
            ("kv-deep-then-incr".into(), then_incr(&deep)),
            ("kv-huge-then-incr".into(), then_incr("1e999999")),
            ("kv-surrogate-then-incr".into(), then_incr(r#""\ud800""#)),
            (
                "views-odd-payloads".into(),
                view_events::encode(&[
                    binary,
                    spec("audit:security", "audit.entry", "not json"),
                    spec("meta:relation:a", "meta.relation.added", r#"{"from": "a", "to": "b\u0000c", "type": "t"}"#),
                    spec("meta:schema:s", "meta.schema.registered", r#"{"subject": "other", "schema": {}}"#),
                    spec(
                        "meta:service:s",
                        "meta.service.registered",
                        r#"{"service": "s", "instance": "i", "ttl_ms": 0}"#,
                    ),
                    spec("kv:l", "kv.push", r#"{"end": "left", "values": []}"#),
                    spec("kv:l", "kv.pop", r#"{"end": "left", "count": 18446744073709551615}"#),
                ]),
            ),
        ]
    });
    let facades = seeds.iter().find(|(name, _)| name == "facades").expect("the facades seed");
    for (name, bytes) in &seeds {
        let events = view_events::decode(bytes);
        assert!(!events.is_empty() && events.len() < view_events::EVENTS_MAX, "{name}: {} events", events.len());
        let mut views = projections::Views::projections();
        let mut errors = 0;
        for event in &events {
            for view in views.iter_mut() {
                // Directly, not through the runner's guard: a panic fails this test.
                errors += usize::from(view.apply(event).is_err());
            }
        }
        if name == &facades.0 {
            assert_eq!(errors, 0, "{name}: what the facades write applies");
        } else {
            assert!(errors > 0, "{name}: the attack's bad events are apply errors");
        }
    }
}
