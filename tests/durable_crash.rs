//! Durable Streams crash: idempotent producers append through the protocol while the real
//! `cairn serve` is SIGKILLed; after each restart every producer retries the request it had in
//! flight with the same (Producer-Id, Producer-Epoch, Producer-Seq). Every acknowledged append
//! must be in the stream exactly once, and no retry may be written twice: the producer state
//! is committed in the same atomic append as the messages it guards and rebuilt from the log,
//! so a retry of an append that committed before the kill is answered 204 (duplicate), and one
//! that did not is written once (200).
//!
//! `PRODUCERS` threads share one JSON stream; each message names its producer, epoch, seq and
//! index in the request. Some producers start a new epoch at a restart (seq 0 again), and the
//! old epoch is then refused (403). After each restart (and its retries) the whole stream is
//! read back and checked: each message at most once, every acknowledged one present, each
//! producer's messages in its (epoch, seq) order; `POST /v1/verify` passes.
//!
//! `CAIRN_DS_CRASH_CYCLES` sets the number of kills (default 8 in a debug build, 40 in an
//! optimised one); `CAIRN_SEED` replays a seed.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};
use support::{env_count, mix, seed, Server};

const CYCLES_DEFAULT: u64 = if cfg!(debug_assertions) { 8 } else { 40 };
/// Concurrent producers.
const PRODUCERS: u64 = 4;
/// The server is killed after at most this many acknowledged appends.
const ACKS_BEFORE_KILL_MAX: u64 = 60;
/// The stream every producer appends to.
const STREAM: &str = "/v1/stream/crash/shared";
/// Safety net for a hung server; no assertion depends on it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// One message: (producer, epoch, seq, index in its request).
type Message = (u64, u64, u64, u64);

/// A producer's position: the request it sends next, and whether it is a retry.
#[derive(Debug, Clone, Copy)]
struct Producer {
    id: u64,
    epoch: u64,
    seq: u64,
}

impl Producer {
    /// The messages of request (epoch, seq): 1 to 3 of them.
    fn messages(&self, seed: u64) -> Vec<Message> {
        let n = 1 + mix(seed ^ mix(self.id ^ mix(self.epoch ^ mix(self.seq)))) % 3;
        (0..n).map(|k| (self.id, self.epoch, self.seq, k)).collect()
    }
}

/// What one request got.
enum Outcome {
    /// 200 (written now) or 204 (already written): acknowledged.
    Acked { duplicate: bool },
    /// 403: a newer epoch holds the producer id.
    Fenced,
    /// The server is gone.
    Gone,
}

fn send(http: &reqwest::blocking::Client, base: &str, p: &Producer, seed: u64) -> Outcome {
    let body: Vec<Value> =
        p.messages(seed).iter().map(|(id, e, s, k)| json!({"p": id, "e": e, "s": s, "k": k})).collect();
    let response = http
        .post(format!("{base}{STREAM}"))
        .header("content-type", "application/json")
        .header("producer-id", format!("producer-{}", p.id))
        .header("producer-epoch", p.epoch.to_string())
        .header("producer-seq", p.seq.to_string())
        .body(serde_json::to_vec(&body).unwrap())
        .send();
    let Ok(response) = response else { return Outcome::Gone };
    match response.status().as_u16() {
        200 => Outcome::Acked { duplicate: false },
        204 => Outcome::Acked { duplicate: true },
        403 => Outcome::Fenced,
        other => panic!("producer {} (epoch {}, seq {}) got {other}: {:?}", p.id, p.epoch, p.seq, response.text()),
    }
}

/// A producer thread: first the retry of the request it had in flight when the server died
/// (same epoch and seq); then, with `bump`, a restart of the producer (a new epoch from seq 0,
/// after which its old epoch must be refused); then new requests until the server dies. Sends
/// every acknowledgement and, at the end, where it stopped and how many epochs it fenced.
fn run(
    base: String,
    seed: u64,
    mut p: Producer,
    retry: bool,
    bump: bool,
    acks: mpsc::Sender<(Producer, bool)>,
) -> (Producer, u64) {
    let http = reqwest::blocking::Client::builder().timeout(CLIENT_TIMEOUT).build().unwrap();
    let mut first = retry;
    let mut bump = bump;
    let mut fenced = 0;
    loop {
        if bump && !first {
            bump = false;
            let zombie = Producer { seq: p.seq + 1, ..p };
            p = Producer { id: p.id, epoch: p.epoch + 1, seq: 0 };
            match send(&http, &base, &p, seed) {
                Outcome::Acked { duplicate: false } => {}
                Outcome::Gone => return (p, fenced),
                _ => panic!("producer {}'s new epoch {} was refused", p.id, p.epoch),
            }
            if acks.send((p, false)).is_err() {
                return (p, fenced);
            }
            p.seq += 1;
            match send(&http, &base, &zombie, seed) {
                Outcome::Fenced => fenced += 1,
                Outcome::Gone => return (p, fenced),
                Outcome::Acked { .. } => panic!("producer {}'s old epoch {} was accepted", p.id, zombie.epoch),
            }
            continue;
        }
        match send(&http, &base, &p, seed) {
            Outcome::Acked { duplicate } => {
                assert!(
                    !duplicate || first,
                    "producer {} (epoch {}, seq {}) got 204 for a request it never sent before",
                    p.id,
                    p.epoch,
                    p.seq
                );
                if acks.send((p, duplicate)).is_err() {
                    return (p, fenced);
                }
                p.seq += 1;
                first = false;
            }
            Outcome::Fenced => panic!("producer {} was fenced at its own epoch {}", p.id, p.epoch),
            Outcome::Gone => return (p, fenced),
        }
    }
}

/// Every message of the stream, read through the protocol from the start.
fn read_stream(server: &Server) -> Vec<Message> {
    let http = reqwest::blocking::Client::builder().timeout(CLIENT_TIMEOUT).build().unwrap();
    let mut out = Vec::new();
    let mut offset = "-1".to_string();
    loop {
        let response = http.get(format!("{}{STREAM}?offset={offset}", server.base)).send().unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let up_to_date = response.headers().get("stream-up-to-date").is_some();
        offset = response.headers()["stream-next-offset"].to_str().unwrap().to_string();
        let page: Vec<Value> = response.json().unwrap();
        for m in page {
            let field = |k: &str| m[k].as_u64().unwrap_or_else(|| panic!("message {m} has no {k}"));
            out.push((field("p"), field("e"), field("s"), field("k")));
        }
        if up_to_date {
            return out;
        }
    }
}

/// Checks the stream against every acknowledgement so far.
fn check(server: &Server, seed: u64, acked: &HashSet<(u64, u64, u64)>, what: &str) -> usize {
    let messages = read_stream(server);
    let mut seen = HashSet::new();
    let mut last: HashMap<u64, (u64, u64, u64)> = HashMap::new();
    for m in &messages {
        assert!(seen.insert(*m), "{what}: message {m:?} is in the stream twice");
        let (p, e, s, k) = *m;
        if let Some(before) = last.insert(p, (e, s, k)) {
            assert!(
                before < (e, s, k),
                "{what}: producer {p}'s messages are out of order: {before:?} then {:?}",
                (e, s, k)
            );
        }
    }
    for &(p, e, s) in acked {
        for m in (Producer { id: p, epoch: e, seq: s }).messages(seed) {
            assert!(seen.contains(&m), "{what}: acknowledged message {m:?} is lost");
        }
    }
    let (status, verify) = server.post("/v1/verify", &json!({}));
    assert_eq!((status, verify["ok"].as_bool()), (200, Some(true)), "{what}: verify: {verify}");
    messages.len()
}

#[test]
fn acknowledged_producer_appends_are_in_the_stream_exactly_once_across_kills() {
    let seed = seed("durable_crash");
    let cycles = env_count("CAIRN_DS_CRASH_CYCLES", CYCLES_DEFAULT);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut producers: Vec<Producer> = (0..PRODUCERS).map(|id| Producer { id, epoch: 0, seq: 0 }).collect();
    let mut in_flight = vec![false; PRODUCERS as usize];
    let mut acked: HashSet<(u64, u64, u64)> = HashSet::new();
    let (mut duplicates, mut fenced, mut checked) = (0u64, 0u64, 0usize);
    let http = reqwest::blocking::Client::builder().timeout(CLIENT_TIMEOUT).build().unwrap();
    for cycle in 0..cycles {
        let server = Server::start(&data, &[]);
        let what = format!("cycle {cycle} (seed {seed})");
        if cycle == 0 {
            let r = http.put(server.url(STREAM)).header("content-type", "application/json").send().unwrap();
            assert_eq!(r.status().as_u16(), 201);
        }
        checked += check(&server, seed, &acked, &what);
        let kill_after = 1 + mix(seed ^ cycle) % ACKS_BEFORE_KILL_MAX;
        let (tx, rx) = mpsc::channel();
        let threads: Vec<_> = (0..PRODUCERS as usize)
            .map(|i| {
                let (base, tx) = (server.base.clone(), tx.clone());
                let (p, retry) = (producers[i], in_flight[i]);
                let bump = cycle > 0 && mix(seed ^ mix(cycle ^ p.id)).is_multiple_of(3);
                std::thread::spawn(move || run(base, seed, p, retry, bump, tx))
            })
            .collect();
        drop(tx);
        let mut seen = 0;
        let mut server = Some(server);
        for (p, duplicate) in rx {
            acked.insert((p.id, p.epoch, p.seq));
            duplicates += u64::from(duplicate);
            seen += 1;
            if seen == kill_after {
                let status = server.take().unwrap().stop_with("KILL");
                assert!(status.code().is_none(), "{what}: the server exited by itself ({status})");
            }
        }
        if let Some(server) = server.take() {
            panic!("{what}: every producer stopped after {seen} acknowledgements; stderr: {}", server.stderr());
        }
        for (i, t) in threads.into_iter().enumerate() {
            let (stopped, zombies) = t.join().expect("a producer thread panicked");
            fenced += zombies;
            // The request at `stopped` was in flight (or about to be sent) when the server died:
            // the next cycle retries it with the same epoch and seq.
            in_flight[i] = true;
            producers[i] = stopped;
        }
    }
    let server = Server::start(&data, &[]);
    // The retries of the last in-flight requests, then a zombie check: an older epoch is refused.
    for p in &producers {
        match send(&http, &server.base, p, seed) {
            Outcome::Acked { duplicate } => {
                duplicates += u64::from(duplicate);
                acked.insert((p.id, p.epoch, p.seq));
            }
            _ => panic!("producer {}'s last retry was refused", p.id),
        }
        if p.epoch > 0 {
            let zombie = Producer { id: p.id, epoch: p.epoch - 1, seq: p.seq + 1 };
            assert!(matches!(send(&http, &server.base, &zombie, seed), Outcome::Fenced), "a stale epoch was accepted");
        }
    }
    checked += check(&server, seed, &acked, "after the last kill");
    assert!(server.stop().success());
    eprintln!(
        "durable_crash: {cycles} SIGKILLs under {PRODUCERS} producers, {} acknowledged appends ({duplicates} retries \
         answered as duplicates), {fenced} stale epochs fenced, {checked} messages checked, none lost or doubled",
        acked.len()
    );
}
