//! Object storage against a real S3-compatible server (Garage, single node on loopback, started
//! by `.ci/s3`, which builds this target with `--features s3-tests` and exports the AWS_*
//! settings and CAIRN_S3_BUCKET; without them every test here fails, never passes silently).
//!
//! Scenarios: the `bucket` crate's uploads (one request and multipart) and downloads round-trip
//! with their digests; `serve --archive s3://…` under load, the server killed with SIGKILL, and
//! the bucket holding every archived sealed segment byte for byte under a manifest that ends at
//! the log's own chain hash, and `restore --from` giving back every event up to that head, a log
//! that verifies; the bucket unreachable (a proxy in front of it closed) while
//! appends go on, and archiving catching up once it is back. Tiering: segments evicted under a
//! tiny local budget read back from the bucket (every event, verify from genesis, the drill,
//! after a restart, and offline through `cairn --archive URL`), a tampered object refused naming its key, and a cold read failing with
//! `archive_unavailable` while the bucket is away as hot reads and appends go on.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{cairn, Server};

/// A failure guard for waiting on the archiver (not a measurement): generous, because a round
/// after a failure may wait for `ARCHIVE_BACKOFF_MAX` first.
const ARCHIVE_GUARD: Duration = Duration::from_secs(180);

/// A fresh prefix in the suite's bucket for one test.
fn archive_url(test: &str) -> String {
    for variable in ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CAIRN_S3_BUCKET"] {
        assert!(std::env::var_os(variable).is_some(), "{variable} is not set: run this suite through .ci/s3");
    }
    let bucket = std::env::var("CAIRN_S3_BUCKET").unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("s3://{bucket}/{test}-{}-{nanos}", std::process::id())
}

/// Appends `batches` batches of 32 events of about 1 KiB on a few streams: 64 batches roll the
/// young log's first two segments (1 MiB, then 2 MiB).
fn load(server: &Server, batches: usize) {
    let filler = "x".repeat(1000);
    for b in 0..batches {
        let events: Vec<(&str, Value)> = (0..32).map(|i| ("Tick", json!({"b": b, "i": i, "pad": filler}))).collect();
        server.append(&format!("agent-{}", b % 4), &events);
    }
}

/// Polls `/healthz` until `done` holds for its `archive` object.
fn wait_archive(server: &Server, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (status, health) = server.get("/healthz");
        assert_eq!(status, 200, "{health}");
        if done(&health["archive"]) {
            return health;
        }
        assert!(started.elapsed() < ARCHIVE_GUARD, "the archive never {what}: {health}\n{}", server.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn events(data: &Path) -> Vec<Value> {
    let (code, out, err) = cairn(data, &["read-all", "-o", "ndjson", "--limit", "100000"]);
    assert_eq!(code, 0, "{err}");
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn bucket_of(url: &str) -> bucket::BlockingBucket {
    bucket::Location::parse(url).unwrap().open_blocking().unwrap()
}

/// The newest manifest in the archive at `url`.
fn newest_manifest(url: &str) -> Value {
    let bucket = bucket_of(url);
    let newest = bucket.list("manifests").unwrap().into_iter().map(|o| o.name).max().expect("a manifest");
    serde_json::from_slice(&bucket.get(&newest, 64 << 20).unwrap()).unwrap()
}

#[test]
fn uploads_and_downloads_round_trip_in_one_request_and_in_parts() {
    let url = archive_url("bucket");
    let bucket = bucket_of(&url);
    let dir = tempfile::tempdir().unwrap();
    for len in [0usize, 1000, bucket::PART_SIZE + 1, 3 * bucket::PART_SIZE + 7] {
        let content: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let from = dir.path().join(format!("in-{len}"));
        std::fs::write(&from, &content).unwrap();
        let up = bucket.put_file(&format!("files/{len}"), &from).unwrap();
        assert_eq!(up.digest, blake3::hash(&content), "{len}");
        let to = dir.path().join(format!("out-{len}"));
        assert_eq!(bucket.get_to_file(&format!("files/{len}"), &to, u64::MAX).unwrap(), up);
        assert!(std::fs::read(&to).unwrap() == content, "{len} bytes came back changed");
    }
    assert_eq!(bucket.list("files").unwrap().len(), 4);
    assert!(bucket.get("files/absent", 10).unwrap_err().is_not_found());
}

#[test]
fn archive_under_load_killed_holds_every_archived_segment_byte_for_byte_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = archive_url("kill");
    let server = Server::start(&data, &["--archive", &url]);
    load(&server, 40);
    wait_archive(&server, "archived a segment", |a| a["archived_position"].as_u64().is_some());
    // More load while the archiver works, then SIGKILL, perhaps in the middle of an upload.
    load(&server, 80);
    server.stop_with("KILL");

    let manifest = newest_manifest(&url);
    let bucket = bucket_of(&url);
    let segments = manifest["segments"].as_array().unwrap();
    assert!(!segments.is_empty(), "{manifest}");
    for s in segments {
        assert_eq!(s["sealed"], true, "{s}");
        let local = std::fs::read(data.join("log").join(s["name"].as_str().unwrap())).unwrap();
        let object = bucket.get(s["key"].as_str().unwrap(), u64::MAX).unwrap();
        assert!(object == local, "{} differs from its object", s["name"]);
        assert_eq!(s["blake3"].as_str().unwrap(), blake3::hash(&local).to_hex().as_str());
    }
    let head = manifest["head"]["position"].as_u64().unwrap();
    let source = events(&data);
    assert!((head as usize) + 1 < source.len(), "the active segment is not archived");
    assert_eq!(source[head as usize]["hash"], manifest["head"]["hash"], "the head is the log's chain hash there");

    // Onto an empty machine: everything acknowledged and archived comes back from the bucket
    // alone, event for event, and the restored log verifies.
    let restored = dir.path().join("restored");
    let (code, _, err) =
        cairn(&dir.path().join("unused"), &["restore", "--from", &url, "--to", restored.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let back = events(&restored);
    assert_eq!(back.len() as u64, head + 1, "the restore ends at the manifest's head");
    assert!(back[..] == source[..=head as usize], "the restored events differ from the killed server's");
    let (code, out, err) = cairn(&restored, &["verify", "-o", "json"]);
    assert_eq!(code, 0, "{err}\n{out}");
}

#[test]
fn appends_go_on_while_the_bucket_is_unreachable_and_archiving_catches_up() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("run through .ci/s3");
    let upstream = endpoint.trim_start_matches("http://").to_string();
    let proxy = Proxy::start(&upstream);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = archive_url("away");
    proxy.set_up(false);
    let through_proxy = format!("http://127.0.0.1:{}", proxy.port);
    let server = Server::start_with_env(&data, &["--archive", &url], &[("AWS_ENDPOINT_URL", &through_proxy)]);
    load(&server, 80);
    let away = wait_archive(&server, "reported the failure", |a| a["consecutive_failures"].as_u64() > Some(0));
    assert_eq!(away["status"], "degraded", "{away}");
    assert_eq!(away["archive"]["archived_position"], Value::Null, "{away}");
    let (_, head) = server.get("/v1/head");
    assert!(head["position"].as_u64().unwrap() >= 80 * 32 - 1, "every append was answered: {head}");

    proxy.set_up(true);
    let back = wait_archive(&server, "caught up", |a| {
        a["archived_position"].as_u64().is_some() && a["consecutive_failures"] == 0
    });
    assert_eq!(back["status"], "ok", "{back}");
    let (_, metrics) = server.get_text("/metrics");
    assert!(metrics.contains("cairn_archive_failures_total"), "{metrics}");
    server.stop();
    assert_eq!(newest_manifest(&url)["head"]["position"], back["archive"]["archived_position"]);
}

/// Events past the idempotency window (262,144 positions before the newest segment's first),
/// the segments before which tiering may evict: 66 requests of 5,000 small events (a batch must
/// fit in one segment), in 1 MiB segments (about 6,000 events each), so about ten are evicted.
const TIER_EVENTS: u64 = 330_000;

/// Appends [`TIER_EVENTS`] events `{"n": i}` on four streams, in requests as large as allowed.
fn load_past_window(server: &Server) {
    let mut n = 0;
    while n < TIER_EVENTS {
        let events: Vec<(&str, Value)> = (n..n + 5_000).map(|i| ("Tick", json!({ "n": i }))).collect();
        server.append(&format!("tier-{}", n / 5_000 % 4), &events);
        n += 5_000;
    }
}

/// Every event through `GET /v1/events`, page by page: its position and `n`.
fn read_all_http(server: &Server) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let (status, page) = server.get(&format!("/v1/events?from={from}&limit=10000"));
        assert_eq!(status, 200, "read from {from}: {page}");
        for e in page["events"].as_array().unwrap() {
            out.push((e["position"].as_u64().unwrap(), e["data"]["n"].as_u64().unwrap()));
        }
        match page["next"].as_u64() {
            Some(next) => from = next,
            None => return out,
        }
    }
}

/// The segment files (`.seg`) and stubs (`.stub`) in the data directory's log.
fn local_files(data: &Path, extension: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("log"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(extension))
        .collect();
    names.sort();
    names
}

#[test]
fn evicted_segments_read_back_from_the_bucket_verify_drill_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = archive_url("tier");
    // A budget of one byte: every archived segment outside the idempotency window is evicted;
    // a cache of one byte keeps only the segment being read.
    let server = Server::start(
        &data,
        &["--archive", &url, "--local-budget", "1", "--tier-cache", "1", "--segment-size", "1MiB"],
    );
    load_past_window(&server);
    let health = wait_archive(&server, "evicted a segment", |a| a["tiering"]["segments_evicted"].as_u64() >= Some(2));
    let evicted = health["archive"]["tiering"]["segments_evicted"].as_u64().unwrap();
    // The archiver may evict more in its next rounds: at least as many stubs as counted.
    let stubs = local_files(&data, ".stub");
    assert!(stubs.len() as u64 >= evicted, "{stubs:?}");
    for stub in &stubs {
        let segment = stub.replace(".stub", ".seg");
        assert!(!local_files(&data, ".seg").contains(&segment), "{segment} is evicted: no local file");
    }

    let expected: Vec<(u64, u64)> = (0..TIER_EVENTS).map(|i| (i, i)).collect();
    assert_eq!(read_all_http(&server), expected, "every event reads back across tiers");
    let (status, verify) = server.post("/v1/verify", &json!({}));
    assert_eq!(
        (status, verify["ok"].as_bool(), verify["events"].as_u64()),
        (200, Some(true), Some(TIER_EVENTS)),
        "{verify}"
    );
    let (status, drill) = server.post("/v1/admin/drill", &json!({}));
    assert_eq!((status, drill["ok"].as_bool()), (200, Some(true)), "{drill}");
    // The archiver may still be evicting, so every comparison below holds whenever it runs:
    // a stub is written before the count moves, and the reads above fetched at least the
    // segments evicted before them.
    let (_, health) = server.get("/healthz");
    let tiering = &health["archive"]["tiering"];
    let evicted_now = tiering["segments_evicted"].as_u64().unwrap();
    assert!(evicted_now >= evicted, "{tiering}");
    assert!(local_files(&data, ".stub").len() as u64 >= evicted_now, "{tiering}");
    assert!(tiering["cache_misses"].as_u64() >= Some(evicted), "{tiering}");
    assert!(tiering["cache_segments"].as_u64() <= Some(1), "the cache keeps its bound: {tiering}");
    let (_, metrics) = server.get_text("/metrics");
    let counted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cairn_tier_segments_evicted "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no cairn_tier_segments_evicted in /metrics: {metrics}"));
    assert!(counted >= evicted_now, "{metrics}");
    let stubs = local_files(&data, ".stub");

    // A tampered object is refused, naming its key; the event is never returned. (The cache
    // holds only the segment read last, the newest evicted one: segment 0 is fetched again.)
    let manifest = newest_manifest(&url);
    let segment_0 = stubs[0].replace(".stub", ".seg");
    let entry = manifest["segments"].as_array().unwrap().iter().find(|s| s["name"] == segment_0.as_str()).unwrap();
    let key = entry["key"].as_str().unwrap();
    let bucket = bucket_of(&url);
    let original = bucket.get(key, u64::MAX).unwrap();
    let mut tampered = original.to_vec();
    tampered[5000] ^= 1;
    bucket.put(key, tampered.into()).unwrap();
    let (status, refused) = server.get("/v1/events?from=0&limit=10");
    assert_eq!((status, refused["error"].as_str()), (500, Some("corruption")), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains(key), "the error names the object: {refused}");
    bucket.put(key, original).unwrap();
    let (status, _) = server.get("/v1/events?from=0&limit=10");
    assert_eq!(status, 200, "the right object back, the read works");
    server.stop();

    // Restarted (archive still configured, no eviction): open reads the stubs, reads fetch.
    let server = Server::start(&data, &["--archive", &url]);
    assert_eq!(local_files(&data, ".stub"), stubs);
    assert_eq!(read_all_http(&server), expected, "every event reads back after a restart");
    let (status, verify) = server.post("/v1/verify", &json!({}));
    assert_eq!((status, verify["ok"].as_bool()), (200, Some(true)), "{verify}");
    server.stop();

    // No server: the commands that open the directory themselves read through the archive
    // given to them (`--archive`), and without it fail naming the stub and how to read it.
    let limit = (TIER_EVENTS + 10).to_string();
    let read_all = ["read-all", "-o", "ndjson", "--limit", limit.as_str()];
    let (code, _, err) = cairn(&data, &read_all);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("log/{}", stubs[0])) && err.contains("--archive URL"), "{err}");
    let (code, out, err) = cairn(&data, &[&["--archive", url.as_str()][..], &read_all].concat());
    assert_eq!(code, 0, "{err}");
    let offline: Vec<(u64, u64)> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "Tick")
        .map(|e| (e["position"].as_u64().unwrap(), e["data"]["n"].as_u64().unwrap()))
        .collect();
    assert_eq!(offline, expected, "every event read offline across tiers");
    let (code, out, err) = cairn(&data, &["--archive", &url, "verify", "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["ok"], true, "{out}");
}

#[test]
fn a_cold_read_fails_clearly_while_the_bucket_is_unreachable_and_hot_reads_and_appends_go_on() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("run through .ci/s3");
    let proxy = Proxy::start(endpoint.trim_start_matches("http://"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = archive_url("tier-away");
    let through_proxy = format!("http://127.0.0.1:{}", proxy.port);
    let server = Server::start_with_env(
        &data,
        &["--archive", &url, "--local-budget", "1", "--tier-cache", "1", "--segment-size", "1MiB"],
        &[("AWS_ENDPOINT_URL", &through_proxy)],
    );
    load_past_window(&server);
    wait_archive(&server, "evicted a segment", |a| a["tiering"]["segments_evicted"].as_u64() >= Some(1));

    proxy.set_up(false);
    let (status, cold) = server.get("/v1/events?from=0&limit=10");
    assert_eq!((status, cold["error"].as_str()), (503, Some("archive_unavailable")), "{cold}");
    assert!(cold["message"].as_str().unwrap().contains("is evicted and fetching it from"), "{cold}");
    let (status, hot) = server.get(&format!("/v1/events?from={}&limit=10", TIER_EVENTS - 10));
    assert_eq!((status, hot["events"].as_array().map(Vec::len)), (200, Some(10)), "{hot}");
    server.append("after", &[("StillWrites", json!({}))]);

    proxy.set_up(true);
    let (status, back) = server.get("/v1/events?from=0&limit=10");
    assert_eq!((status, back["events"][0]["data"]["n"].as_u64()), (200, Some(0)), "{back}");
    server.stop();
}

/// A TCP proxy on loopback in front of the S3 endpoint, which refuses connections (and cuts
/// open ones) while it is down: the bucket "going away".
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (accept_up, accept_open, upstream) = (up.clone(), open.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !accept_up.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                accept_open.lock().unwrap().extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Proxy { port, up, open }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            for stream in self.open.lock().unwrap().drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
