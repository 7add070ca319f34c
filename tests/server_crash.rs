//! Server crash: the real `cairn serve` binary, killed with SIGKILL at random moments under
//! concurrent HTTP load, never loses an append it answered 200 to.
//!
//! Each cycle starts the server on the same data directory (a free loopback port), and
//! `CLIENTS` client threads append over HTTP — single events, batches of up to four, JSON and
//! base64 payloads, to a stream of their own and to streams shared by all — while one of them
//! also asks for checkpoints (`POST /v1/checkpoints`), so that kills land in checkpoint writes
//! too. Every 200 answer is recorded (its positions), and the server is killed after a random
//! number of them. A client stops at its first transport error (the server is gone). The next
//! cycle restarts the server (restore from checkpoints, replay) and checks over HTTP, before
//! new load: every acknowledged event is present at its acknowledged position, byte-identical
//! to what was sent (stream, version order, id, type, data); every event in the log is one that
//! some client sent, in one piece; positions are gapless; `POST /v1/verify` passes. At the end
//! `cairn verify` must pass on the directory.
//!
//! `CAIRN_SERVER_CRASH_CYCLES` sets the number of kills (default 20 in a debug build, 100 in an
//! optimised one); `CAIRN_SEED` replays a seed.

mod support;

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use support::{cairn, env_count, mix, seed, Server};

const CYCLES_DEFAULT: u64 = if cfg!(debug_assertions) { 20 } else { 100 };
/// Concurrent HTTP clients.
const CLIENTS: u64 = 8;
/// The server is killed after at most this many acknowledged appends.
const ACKS_BEFORE_KILL_MAX: u64 = 150;
/// One client asks for a checkpoint every this many of its appends.
const CHECKPOINT_EVERY: u64 = 7;
/// Safety net for a hung server; no assertion depends on it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Streams every client appends to, besides its own.
const SHARED: [&str; 2] = ["shared-a", "shared-b"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Tag {
    cycle: u64,
    client: u64,
    seq: u64,
}

/// One planned event: its id, type, and `data` (compact JSON text) or binary bytes.
#[derive(Debug, Clone, PartialEq)]
struct Planned {
    id: String,
    event_type: String,
    data: Result<String, Vec<u8>>,
}

/// The stream and events of request `tag`.
fn request(seed: u64, tag: Tag) -> (String, Vec<Planned>) {
    let r = mix(seed ^ mix(tag.cycle ^ mix(tag.client ^ mix(tag.seq))));
    let stream = match r % 3 {
        0 => format!("client-{}", tag.client),
        k => SHARED[(k - 1) as usize].to_string(),
    };
    let count = 1 + (r >> 8) % 4;
    let events = (0..count)
        .map(|i| {
            let id = format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                tag.cycle as u32,
                tag.client as u16,
                (tag.seq >> 12) & 0xfff,
                tag.seq & 0xfff,
                i
            );
            let len = ((r >> (16 + i * 8)) % 200) as usize;
            let data = if (r >> 40).is_multiple_of(4) {
                Err((0..len).map(|j| (j as u64 ^ r ^ i) as u8).collect())
            } else {
                // Keys in sorted order, so that the server's answer re-serializes to the same text.
                Ok(format!(
                    r#"{{"i":{i},"pad":"{}","tag":"{}-{}-{}"}}"#,
                    "p".repeat(len),
                    tag.cycle,
                    tag.client,
                    tag.seq
                ))
            };
            Planned { id, event_type: format!("Step{}", i % 2), data }
        })
        .collect();
    (stream, events)
}

fn body(events: &[Planned]) -> Value {
    let events: Vec<Value> = events
        .iter()
        .map(|e| match &e.data {
            Ok(text) => json!({"id": e.id, "type": e.event_type,
                               "data": serde_json::from_str::<Value>(text).unwrap()}),
            Err(bytes) => json!({"id": e.id, "type": e.event_type,
                                 "data_b64": base64::engine::general_purpose::STANDARD.encode(bytes)}),
        })
        .collect();
    json!({ "events": events })
}

/// An acknowledged append: the request's tag and the positions the server answered.
#[derive(Debug, Clone, Copy)]
struct Ack {
    tag: Tag,
    first: u64,
    last: u64,
}

/// A client: appends until the server goes away, sending each acknowledgement to the parent.
fn client(base: String, seed: u64, cycle: u64, client: u64, acks: mpsc::Sender<Ack>) -> u64 {
    let http = reqwest::blocking::Client::builder().timeout(CLIENT_TIMEOUT).build().unwrap();
    let mut checkpoints = 0;
    for seq in 0.. {
        let tag = Tag { cycle, client, seq };
        let (stream, events) = request(seed, tag);
        let Ok(response) = http.post(format!("{base}/v1/streams/{stream}/events")).json(&body(&events)).send() else {
            break;
        };
        let status = response.status().as_u16();
        let Ok(answer) = response.json::<Value>() else { break };
        assert_eq!(status, 200, "append {tag:?} was refused: {answer}");
        let (first, last) = (answer["first_position"].as_u64().unwrap(), answer["last_position"].as_u64().unwrap());
        assert_eq!(last - first + 1, events.len() as u64, "{tag:?}: {answer}");
        if acks.send(Ack { tag, first, last }).is_err() {
            break;
        }
        if client == 0 && seq % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1 {
            match http.post(format!("{base}/v1/checkpoints")).json(&json!({})).send() {
                Ok(r) if r.status().is_success() => checkpoints += 1,
                Ok(r) => panic!("checkpoint refused: {} {:?}", r.status(), r.text()),
                Err(_) => break,
            }
        }
    }
    checkpoints
}

/// Every event of the log, read over HTTP page by page.
fn read_all(server: &Server) -> Vec<Value> {
    let mut events = Vec::new();
    let mut from = 0;
    loop {
        let (status, page) = server.get(&format!("/v1/events?from={from}&limit=10000"));
        assert_eq!(status, 200, "{page}");
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next"].as_u64() {
            Some(next) => from = next,
            None => return events,
        }
    }
}

/// The request tag an event's id encodes (see `request`), and its index in the request.
fn tag_of(id: &str) -> Option<(Tag, u64)> {
    let parts: Vec<&str> = id.split('-').collect();
    let cycle = u64::from_str_radix(parts.first()?, 16).ok()?;
    let client = u64::from_str_radix(parts.get(1)?, 16).ok()?;
    let high = u64::from_str_radix(parts.get(2)?.get(1..)?, 16).ok()?;
    let low = u64::from_str_radix(parts.get(3)?.get(1..)?, 16).ok()?;
    let index = u64::from_str_radix(parts.get(4)?, 16).ok()?;
    Some((Tag { cycle, client, seq: (high << 12) | low }, index))
}

fn assert_event_is(event: &Value, stream: &str, planned: &Planned, what: &str) {
    assert_eq!(event["stream"], stream, "{what}: stream");
    assert_eq!(event["id"], planned.id.as_str(), "{what}: id");
    assert_eq!(event["type"], planned.event_type.as_str(), "{what}: type");
    match &planned.data {
        Ok(text) => assert_eq!(serde_json::to_string(&event["data"]).unwrap(), *text, "{what}: data"),
        Err(bytes) => {
            let got = base64::engine::general_purpose::STANDARD.decode(event["data_b64"].as_str().unwrap()).unwrap();
            assert_eq!(&got, bytes, "{what}: binary data");
        }
    }
}

/// Checks the restarted server against every acknowledgement so far.
fn check(server: &Server, seed: u64, acks: &[Ack], what: &str) -> u64 {
    let events = read_all(server);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["position"].as_u64(), Some(i as u64), "{what}: positions are not gapless");
    }
    // Every event is one a client sent, and every request is in the log whole, in order.
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut i = 0;
    while i < events.len() {
        let e = &events[i];
        let (tag, index) = tag_of(e["id"].as_str().unwrap())
            .unwrap_or_else(|| panic!("{what}: event {i} has an id no client sent: {e}"));
        assert_eq!(index, 0, "{what}: position {i} starts in the middle of request {tag:?}");
        let (stream, planned) = request(seed, tag);
        for (k, p) in planned.iter().enumerate() {
            let e = events.get(i + k).unwrap_or_else(|| panic!("{what}: request {tag:?} is cut off at the head"));
            assert_event_is(e, &stream, p, &format!("{what}: position {}", i + k));
            let version = versions.entry(stream.clone()).or_insert(0);
            assert_eq!(e["version"].as_u64(), Some(*version), "{what}: versions of {stream} are not gapless");
            *version += 1;
        }
        i += planned.len();
    }
    for ack in acks {
        let (stream, planned) = request(seed, ack.tag);
        for (k, p) in planned.iter().enumerate() {
            let position = ack.first + k as u64;
            let e = events.get(position as usize).unwrap_or_else(|| {
                panic!(
                    "{what}: acknowledged {:?} at {}..={} is lost: the log has {} events",
                    ack.tag,
                    ack.first,
                    ack.last,
                    events.len()
                )
            });
            assert_event_is(e, &stream, p, &format!("{what}: acknowledged {:?}, position {position}", ack.tag));
        }
    }
    let (status, verify) = server.post("/v1/verify", &json!({}));
    assert_eq!((status, verify["ok"].as_bool()), (200, Some(true)), "{what}: verify: {verify}");
    events.len() as u64
}

#[test]
fn acknowledged_appends_survive_a_killed_server() {
    let seed = seed("server_crash");
    let cycles = env_count("CAIRN_SERVER_CRASH_CYCLES", CYCLES_DEFAULT);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut acks: Vec<Ack> = Vec::new();
    let (mut checked, mut checkpoints) = (0u64, 0u64);
    for cycle in 0..cycles {
        let server = Server::start(&data, &[]);
        let what = format!("cycle {cycle} (seed {seed})");
        checked += check(&server, seed, &acks, &what);
        let kill_after = 1 + mix(seed ^ cycle) % ACKS_BEFORE_KILL_MAX;
        let (tx, rx) = mpsc::channel();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (base, tx) = (server.base.clone(), tx.clone());
                std::thread::spawn(move || client(base, seed, cycle, c, tx))
            })
            .collect();
        drop(tx);
        let mut seen = 0;
        let mut server = Some(server);
        for ack in rx {
            acks.push(ack);
            seen += 1;
            if seen == kill_after {
                let status = server.take().unwrap().stop_with("KILL");
                assert!(status.code().is_none(), "{what}: the server exited by itself ({status})");
            }
        }
        // All clients gave up: the server died (or, if it never reached kill_after, is killed now).
        if let Some(server) = server.take() {
            panic!("{what}: every client stopped after {seen} acknowledgements; stderr: {}", server.stderr());
        }
        for c in clients {
            checkpoints += c.join().expect("a client thread panicked");
        }
    }
    let server = Server::start(&data, &[]);
    checked += check(&server, seed, &acks, "after the last kill");
    assert!(server.stop().success());
    let (code, out, err) = cairn(&data, &["verify"]);
    assert_eq!(code, 0, "cairn verify: {out}{err}");
    eprintln!(
        "server_crash: {cycles} SIGKILLs of cairn serve under {CLIENTS} clients, {} acknowledged appends, \
         {checkpoints} checkpoints, {checked} events checked across restarts, 0 lost; cairn verify passes",
        acks.len()
    );
}
