//! Scavenging through the server and the command line, against the real binary (issue 16 item
//! 6): `POST /v1/admin/scavenge` as a job (`202` + `GET /v1/admin/scavenge/{id}`) and with
//! NDJSON progress; dead events read as husks afterwards, the chain verifies, the segment files
//! shrink; one scavenge at a time; admin only, and audited; `cairn scavenge` asks the server that
//! holds the directory, and scavenges the directory itself once it is free.

mod support;

use log_engine::{DeleteMode, ExpectedVersion, Log, NewEvent, Options};
use serde_json::{json, Value};
use support::{cairn, token_hash_line, Server};

const OPS: &str = "ops-token-0123456789";
const AGENT: &str = "agent-token-0123456789";

/// A data directory of small sealed segments: 200 events of `gone` (deleted), 50 of `kept`.
fn build(data: &std::path::Path) {
    let log = Log::open(data, Options { segment_size: 64 * 1024, ..Options::default() }).unwrap();
    let pad = "x".repeat(1000);
    for n in 0..200 {
        for stream in ["gone", "kept"] {
            if stream == "gone" || n < 50 {
                let event = NewEvent::json("Big", &json!({"n": n, "pad": pad}));
                log.append(stream, ExpectedVersion::Any, vec![event]).unwrap();
            }
        }
    }
    log.delete_stream("gone", DeleteMode::Soft).unwrap();
    // Seal the segments holding them.
    for n in 0..100 {
        log.append("filler", ExpectedVersion::Any, vec![NewEvent::json("Big", &json!({"n": n, "pad": pad}))]).unwrap();
    }
    log.close();
}

fn segment_bytes(data: &std::path::Path) -> u64 {
    std::fs::read_dir(data.join("log"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn streamed(server: &Server, body: &str) -> Vec<Value> {
    let answer = reqwest::blocking::Client::new()
        .post(server.url("/v1/admin/scavenge"))
        .bearer_auth(OPS)
        .header("accept", "application/x-ndjson")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    answer.text().unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn a_scavenge_over_http_husks_the_dead_and_the_cli_asks_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    build(&data);
    let auth = dir.path().join("auth.toml");
    std::fs::write(
        &auth,
        format!(
            "[[principal]]\nname = \"ops\"\n{}\nrules = [{{ prefix = \"\", allow = [\"admin\"] }}]\n\n\
             [[principal]]\nname = \"agent\"\n{}\nrules = [{{ prefix = \"gone\", allow = [\"read\", \"append\", \"delete\"] }}]\n",
            token_hash_line(OPS),
            token_hash_line(AGENT)
        ),
    )
    .unwrap();
    let mut server = Server::start(&data, &["--auth", auth.to_str().unwrap()]);
    let before = segment_bytes(&data);

    // Admin on the whole log only.
    server.set_token(Some(AGENT));
    let (status, body) = server.post("/v1/admin/scavenge", &json!({}));
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")), "{body}");
    assert_eq!(server.get("/v1/admin/scavenge/1").0, 403);
    server.set_token(Some(OPS));
    let (status, body) = server.post("/v1/admin/scavenge", &json!({"unknown": true}));
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_body")), "{body}");

    // Streamed: progress lines, then the finished job.
    let lines = streamed(&server, "");
    let (last, progress) = lines.split_last().unwrap();
    assert!(!progress.is_empty(), "no progress line");
    assert!(progress.iter().all(|p| p["segments_done"].as_u64() <= p["segments_total"].as_u64()), "{progress:?}");
    assert_eq!(last["state"], "done", "{last}");
    let report = &last["report"];
    assert_eq!(report["events_husked"], 200, "{last}");
    assert!(report["bytes_after"].as_u64() < report["bytes_before"].as_u64(), "{last}");
    assert_eq!(report["bytes_reclaimed"].as_u64(), Some(before - segment_bytes(&data)), "{last}");
    let id = last["id"].as_u64().unwrap();
    let (status, job) = server.get(&format!("/v1/admin/scavenge/{id}"));
    assert_eq!((status, &job), (200, last), "GET answers the same job");

    // Every event of `gone` reads as a husk: header kept, payload gone; `kept` as before.
    let (_, all) = server.get("/v1/events?from=0&limit=1000");
    let events = all["events"].as_array().unwrap();
    let gone: Vec<&Value> = events.iter().filter(|e| e["stream"] == "gone").collect();
    assert_eq!(gone.len(), 200);
    assert!(
        gone.iter().all(|e| e["erased"] == true && e.get("data").is_none() && e["hash"].is_string()),
        "{:?}",
        gone[0]
    );
    let kept: Vec<&Value> = events.iter().filter(|e| e["stream"] == "kept").collect();
    assert!(kept.iter().all(|e| e.get("erased").is_none() && e["data"]["pad"].is_string()));
    let (_, verified) = server.post("/v1/verify", &json!({}));
    assert_eq!(verified["ok"], true, "{verified}");

    // As a job: 202 with where to follow it; the GET waits (bounded) for its end.
    let answer =
        reqwest::blocking::Client::new().post(server.url("/v1/admin/scavenge")).bearer_auth(OPS).send().unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    let location = answer.headers()["location"].to_str().unwrap().to_string();
    let started: Value = answer.json().unwrap();
    assert_eq!(location, format!("/v1/admin/scavenge/{}", started["id"]));
    assert_eq!(started["id"].as_u64(), Some(id + 1));
    let (status, ended) = server.get(&format!("{location}?wait_ms=30000"));
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["state"], "done", "{ended}");
    assert_eq!(ended["report"]["events_husked"], 0, "nothing is left to husk: {ended}");
    let (status, missing) = server.get("/v1/admin/scavenge/999");
    assert_eq!((status, missing["error"].as_str()), (404, Some("scavenge_not_found")), "{missing}");

    // Each POST is an admin action in the access audit, the refused one included.
    let (_, audit) = server.get("/v1/audit?category=authorization&limit=100");
    let scavenges =
        audit["entries"].as_array().unwrap().iter().filter(|e| e.to_string().contains("/v1/admin/scavenge")).count();
    assert!(scavenges >= 4, "{audit}");

    // The command line asks the server holding the directory.
    server.append("gone", &[("Again", json!({}))]);
    server.request(reqwest::Method::DELETE, "/v1/streams/gone", None);
    let (code, out, err) = cairn(&data, &["scavenge", "-o", "json", "--token", OPS]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("asking it"), "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert!(report["events_husked"].is_u64() && report["bytes_before"].is_u64(), "{report}");
    server.stop();

    // And scavenges the directory itself once no server holds it.
    let (code, out, err) = cairn(&data, &["scavenge"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("scavenged: "), "{out}");
    let (code, _, err) = cairn(&data, &["verify"]);
    assert_eq!(code, 0, "{err}");
}
