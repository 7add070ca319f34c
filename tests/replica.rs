//! Read replicas, end to end with the real binary: `cairn serve --follow URL`.
//!
//! - A replica follows a leader under load (several appenders, payloads large enough that the
//!   leader rolls segments while it is followed); a subscription on the replica sees the
//!   leader's writes in order; the leader is then killed with SIGKILL. The replica holds every
//!   event the leader acknowledged up to the last batch it shipped, identical (same positions,
//!   same chain hashes) to the dead leader's log, nothing the leader's log does not hold, and
//!   `cairn verify` passes on its directory.
//! - Reads of the key-value view on a replica see the leader's writes; every write sent to the
//!   replica is refused with 421 `read_only_replica` naming the leader, and nothing is written;
//!   `/healthz` and `/metrics` report the replica's lag.
//! - A leader that ships a damaged batch (a byte flipped, with its CRC left as it was or made to
//!   match) is refused: the replica stops right before that batch, serves what it holds, and
//!   says why in `/healthz` and `/metrics`. The fake leader here serves a real log's segment
//!   bytes with one byte changed, over the same endpoints.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{cairn, Server};

/// Appender threads on the leader.
const APPENDERS: usize = 6;
/// Appends each makes before the leader is killed (the kill lands while they still run).
const APPENDS_EACH: usize = 120;
/// Padding per event, so that the leader's 1 MiB first segment fills and rolls under the load.
const PAD: usize = 3500;
/// A failure guard for conditions polled over HTTP; no assertion depends on it.
const GUARD: Duration = Duration::from_secs(60);

fn leader_and_replica() -> (tempfile::TempDir, Server, Server) {
    let dir = tempfile::tempdir().unwrap();
    let leader = Server::start(&dir.path().join("leader"), &[]);
    let replica = Server::start(&dir.path().join("replica"), &["--follow", &leader.base]);
    (dir, leader, replica)
}

/// Polls `check` until it holds; the guard turns a condition that never comes into a failure.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < GUARD, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every event of the log in `dir`, by position: (stream, hash, data).
fn events_of(dir: &Path) -> BTreeMap<u64, (String, String, Value)> {
    let (code, out, err) = cairn(dir, &["-o", "ndjson", "read-all", "--limit", "1000000"]);
    assert_eq!(code, 0, "read-all: {err}");
    out.lines()
        .map(|l| {
            let e: Value = serde_json::from_str(l).unwrap();
            (
                e["position"].as_u64().unwrap(),
                (e["stream"].as_str().unwrap().into(), e["hash"].as_str().unwrap().into(), e["data"].clone()),
            )
        })
        .collect()
}

#[test]
fn a_replica_keeps_every_shipped_batch_of_a_leader_killed_under_load_and_nothing_else() {
    let (dir, leader, replica) = leader_and_replica();
    let mut subscription = replica.subscribe("from=0", None);
    let base = leader.base.clone();
    let (acks_tx, acks_rx) = std::sync::mpsc::channel::<(u64, String, u64, usize)>();
    let appenders: Vec<_> = (0..APPENDERS)
        .map(|a| {
            let (base, acks) = (base.clone(), acks_tx.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
                for i in 0..APPENDS_EACH {
                    let body = json!({"events": [{"type": "Step", "data": {"a": a, "i": i, "pad": "x".repeat(PAD)}}]});
                    let Ok(response) = client.post(format!("{base}/v1/streams/agent-{a}/events")).json(&body).send()
                    else {
                        return; // the leader is gone
                    };
                    if response.status() != 200 {
                        return;
                    }
                    let Ok(answer) = response.json::<Value>() else { return };
                    let position = answer["first_position"].as_u64().unwrap();
                    let _ = acks.send((position, answer["hash"].as_str().unwrap().to_string(), a as u64, i));
                }
            })
        })
        .collect();
    drop(acks_tx);
    // The replica's subscription sees the leader's writes as they are shipped; the leader is
    // killed once it has seen a good part of the load.
    let target = (APPENDERS * APPENDS_EACH / 2) as u64;
    let mut seen = 0u64;
    while seen < target {
        let event = subscription.next().expect("the replica's subscription stays open");
        let e = event.json();
        assert_eq!(e["position"].as_u64(), Some(seen), "the subscription delivers the leader's positions in order");
        assert!(e["stream"].as_str().unwrap().starts_with("agent-"));
        seen += 1;
    }
    let leader_dir = leader.data.clone();
    let status = std::process::Command::new("kill").args(["-KILL", &leader.pid().to_string()]).status().unwrap();
    assert!(status.success());
    for appender in appenders {
        appender.join().unwrap();
    }
    drop(leader);
    let acks: Vec<_> = acks_rx.iter().collect();
    // The follower notices the leader is gone; from then on the replica's head stays put.
    wait_until("the replica reports that it cannot reach the dead leader", || {
        let (_, health) = replica.get("/healthz");
        health["replica"]["last_error"].as_str().is_some_and(|e| e.contains("cannot reach the leader"))
    });
    let (_, head) = replica.get("/v1/head");
    let held = head["position"].as_u64().expect("the replica holds events");
    assert!(held + 1 >= target, "the replica held {} events before the kill but reports head {held}", target);

    let replica_dir = replica.data.clone();
    assert!(replica.stop().success());
    let (code, out, err) = cairn(&replica_dir, &["verify"]);
    assert_eq!(code, 0, "verify on the replica: {out}{err}");
    let on_replica = events_of(&replica_dir);
    let on_leader = events_of(&leader_dir);
    assert_eq!(on_replica.len() as u64, held + 1, "the replica's positions are gapless up to its head");
    // Nothing the leader's log does not hold, byte for byte (the chain hash covers the payload).
    for (position, event) in &on_replica {
        assert_eq!(
            on_leader.get(position),
            Some(event),
            "position {position} on the replica differs from the leader's"
        );
    }
    // Every acknowledged event up to the replica's head is there, as acknowledged.
    let mut covered = 0u64;
    for (position, hash, a, i) in &acks {
        if *position <= held {
            let (stream, stored_hash, data) = &on_replica[position];
            assert_eq!((stream.as_str(), stored_hash), (format!("agent-{a}").as_str(), hash), "position {position}");
            assert_eq!((data["a"].as_u64(), data["i"].as_u64()), (Some(*a), Some(*i as u64)));
            covered += 1;
        }
    }
    assert!(covered >= target, "only {covered} acknowledged events were checked on the replica");
    let segments = std::fs::read_dir(replica_dir.join("log"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"));
    assert!(segments.count() >= 2, "the load made the leader roll at least one segment while it was followed");
    drop(dir);
}

#[test]
fn a_replica_serves_the_leaders_writes_refuses_its_own_and_reports_its_lag() {
    let (_dir, leader, replica) = leader_and_replica();
    let (status, put) =
        leader.request(reqwest::Method::PUT, "/v1/kv/session%2F42", Some(&json!({"value": {"turn": 3}})));
    assert_eq!(status, 200, "{put}");
    let position = put["position"].as_u64().unwrap();
    let (status, got) = replica.get(&format!("/v1/kv/session%2F42?min_position={position}"));
    assert_eq!(status, 200, "{got}\n{}", replica.stderr());
    assert_eq!(got["value"], json!({"turn": 3}));

    let head_before = leader.get("/v1/head").1;
    let refused = [
        replica.post("/v1/streams/agent-1/events", &json!({"events": [{"type": "T", "data": {}}]})),
        replica.request(reqwest::Method::PUT, "/v1/kv/k", Some(&json!({"value": 1}))),
        replica.post("/v1/append", &json!({"appends": []})),
        replica.request(reqwest::Method::DELETE, "/v1/streams/agent-1", None),
        replica.post("/v1/checkpoints", &json!({})),
    ];
    for (status, body) in refused {
        assert_eq!(status, 421, "{body}");
        assert_eq!(body["error"], "read_only_replica", "{body}");
        assert_eq!(body["leader"], leader.base.as_str(), "{body}");
        assert!(body["message"].as_str().unwrap().contains(&leader.base), "{body}");
    }
    assert_eq!(leader.get("/v1/head").1, head_before, "nothing sent to the replica reached the leader");
    let (status, verify) = replica.post("/v1/verify", &json!({}));
    assert_eq!((status, verify["ok"].as_bool()), (200, Some(true)), "{verify}");
    let (status, kv) = replica.post("/v1/kv:get", &json!({"keys": ["session/42"]}));
    assert_eq!(status, 200, "{kv}");

    let (_, health) = replica.get("/healthz");
    assert_eq!(health["replica"]["leader"], leader.base.as_str(), "{health}");
    assert_eq!(health["replica"]["lag_events"], 0, "{health}");
    assert!(leader.get("/healthz").1.get("replica").is_none(), "a leader is no replica");
    let (_, metrics) = replica.get_text("/metrics");
    for name in ["cairn_replica_lag_events 0", "cairn_replica_lag_seconds", "cairn_replica_refused_rounds_total 0"] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
}

/// A fake leader: answers the replication endpoints from the segment files in `log_dir`, the
/// newest as unsealed and shippable to its end, with `tamper` applied to the bytes it ships.
fn fake_leader(log_dir: std::path::PathBuf, tamper: impl Fn(&mut [u8]) + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut out = stream;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                        break;
                    }
                }
                let mut files: Vec<_> = std::fs::read_dir(&log_dir)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|x| x == "seg"))
                    .collect();
                files.sort();
                let (content_type, body) = if let Some(rest) = path.strip_prefix("/v1/admin/replication/segments/") {
                    let (id, query) = rest.split_once('?').unwrap();
                    let q: BTreeMap<&str, u64> = query
                        .split('&')
                        .map(|kv| kv.split_once('=').unwrap())
                        .map(|(k, v)| (k, v.parse().unwrap()))
                        .collect();
                    let mut bytes =
                        std::fs::read(log_dir.join(format!("{:020}.seg", id.parse::<u64>().unwrap()))).unwrap();
                    tamper(&mut bytes);
                    let from = q["from"] as usize;
                    let to = (from + q["max"] as usize).min(bytes.len());
                    ("application/octet-stream", bytes[from..to].to_vec())
                } else {
                    let segments: Vec<Value> = files
                        .iter()
                        .map(|p| {
                            let len = std::fs::metadata(p).unwrap().len();
                            let id: u64 = p.file_stem().unwrap().to_str().unwrap().parse().unwrap();
                            json!({"id": id, "sealed": false, "bytes": len, "capacity": len})
                        })
                        .collect();
                    let head = json!({"position": 1_000_000, "hash": "00"});
                    ("application/json", serde_json::to_vec(&json!({"segments": segments, "head": head})).unwrap())
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                if out.write_all(head.as_bytes()).and_then(|()| out.write_all(&body)).is_err() {
                    break;
                }
            }
            let _ = reader.read(&mut [0u8; 1]);
        }
    });
    base
}

/// Offset of the record at `position` in a segment whose first record sits at 4096 (frames:
/// a u32 body length at +4, 80-byte header, padded to 8).
fn record_offset(bytes: &[u8], position: u64) -> usize {
    let mut at = 4096;
    for _ in 0..position {
        let body = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        at += (80 + body).next_multiple_of(8);
    }
    at
}

fn refused_batch(fix_crc: bool) {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    for i in 0..10 {
        let (code, _, err) =
            cairn(&source, &["append", "agent-1", "--type", "Step", "--data", &format!("{{\"i\":{i}}}")]);
        assert_eq!(code, 0, "{err}");
    }
    let base = fake_leader(source.join("log"), move |bytes| {
        let at = record_offset(bytes, 6);
        let body = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        // A byte of the body's last field (the event's data).
        bytes[at + 80 + body - 2] ^= 0x01;
        if fix_crc {
            let end = at + (80 + body).next_multiple_of(8);
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(b"cairnREC");
            hasher.update(&bytes[at + 4..end]);
            bytes[at..at + 4].copy_from_slice(&hasher.finalize().to_le_bytes());
        }
    });
    let replica = Server::start(&dir.path().join("replica"), &["--follow", &base]);
    wait_until("the replica refuses the damaged batch", || {
        let (_, health) = replica.get("/healthz");
        health["replica"]["last_error"].as_str().is_some_and(|e| e.contains("were refused"))
    });
    let (_, health) = replica.get("/healthz");
    let error = health["replica"]["last_error"].as_str().unwrap();
    let check = if fix_crc { "chain hash mismatch" } else { "record CRC mismatch" };
    assert!(error.contains("(position 6)") && error.contains(check), "{error}");
    assert_eq!(health["status"], "degraded", "{health}");
    let (_, head) = replica.get("/v1/head");
    assert_eq!(head["position"], 5, "the replica holds the batches before the damaged one, and nothing after: {head}");
    let (_, metrics) = replica.get_text("/metrics");
    assert!(!metrics.contains("cairn_replica_refused_rounds_total 0\n"), "{metrics}");
    let replica_dir = replica.data.clone();
    assert!(replica.stop().success());
    let (code, out, err) = cairn(&replica_dir, &["verify"]);
    assert_eq!(code, 0, "verify on the replica: {out}{err}");
}

#[test]
fn a_byte_flipped_by_the_leader_is_refused_by_its_crc() {
    refused_batch(false);
}

#[test]
fn a_byte_flipped_with_a_matching_crc_is_refused_by_the_chain() {
    refused_batch(true);
}

/// A Durable Stream that has expired reads as absent on a replica (404), which cannot delete it:
/// its log takes no writes (the replica once tried the delete, and the read failed with it).
#[test]
fn an_expired_durable_stream_reads_as_absent_on_a_replica() {
    let (_dir, leader, replica) = leader_and_replica();
    // Expired since 1970; nothing on the leader has used it yet, so nothing deleted it there.
    let created = json!({"content_type": "text/plain", "expires_at_ms": 1});
    let appended = leader.append("ds%3Aold", &[("ds.created", created), ("ds.data", json!("x"))]);
    let position = appended["last_position"].as_u64().unwrap_or_else(|| panic!("{appended}"));
    wait_until("the replica holds the stream", || {
        replica.get("/v1/head").1["position"].as_u64().is_some_and(|p| p >= position)
    });
    for _ in 0..2 {
        let (status, body) = replica.get("/v1/stream/old");
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"], "stream_not_found", "{body}");
    }
    let (status, read) = replica.get("/v1/streams/ds%3Aold/events");
    assert_eq!(status, 200, "the replica deleted nothing: {read}");
    assert_eq!(leader.get("/v1/stream/old").0, 404, "the leader deletes it on its next use");
}
