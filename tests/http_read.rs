//! Reads over HTTP against the real binary: stream pages forward and backward with `next`
//! cursors, the global log with filters, one event by position, stream listing, head, verify,
//! and the operational endpoints (healthz, metrics, openapi, unknown routes).

mod support;

use serde_json::{json, Value};
use support::Server;

fn types(page: &Value) -> Vec<String> {
    page["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_string()).collect()
}

fn seeded() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    for i in 0..5 {
        server.append("agent-1", &[(&format!("Step{i}"), json!({"i": i}))]);
        server.append("agent-2", &[(&format!("Tool{i}"), json!({"i": i}))]);
    }
    server.append("billing", &[("Charged", json!({"cents": 5}))]);
    (dir, server)
}

#[test]
fn stream_reads_page_forward_and_backward() {
    let (_dir, server) = seeded();
    let (status, page) = server.get("/v1/streams/agent-1/events?limit=2");
    assert_eq!(status, 200);
    assert_eq!(types(&page), ["Step0", "Step1"]);
    assert_eq!(page["next"], 2);
    let (_, page) = server.get("/v1/streams/agent-1/events?from=2&limit=10");
    assert_eq!(types(&page), ["Step2", "Step3", "Step4"]);
    assert_eq!(page["next"], Value::Null);
    let (_, page) = server.get("/v1/streams/agent-1/events?direction=backward&limit=2");
    assert_eq!(types(&page), ["Step4", "Step3"]);
    assert_eq!(page["next"], 2);
    let (_, page) = server.get("/v1/streams/agent-1/events?direction=backward&from=1");
    assert_eq!(types(&page), ["Step1", "Step0"]);
    assert_eq!(page["next"], Value::Null);

    let (status, body) = server.get("/v1/streams/nobody/events");
    assert_eq!((status, body["error"].as_str()), (404, Some("stream_not_found")), "{body}");
    let (status, body) = server.get("/v1/streams/agent-1/events?direction=sideways");
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_query")), "{body}");
    let (status, body) = server.get("/v1/streams/agent-1/events?from=-1");
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_query")), "{body}");
}

#[test]
fn the_global_log_reads_in_order_with_filters_and_cursors() {
    let (_dir, server) = seeded();
    let (_, page) = server.get("/v1/events?limit=3");
    let positions: Vec<u64> =
        page["events"].as_array().unwrap().iter().map(|e| e["position"].as_u64().unwrap()).collect();
    assert_eq!(positions, [0, 1, 2]);
    assert_eq!(page["next"], 3);
    let (_, page) = server.get("/v1/events?from=9");
    assert_eq!(types(&page), ["Tool4", "Charged"]);
    assert_eq!(page["next"], Value::Null);
    let (_, page) = server.get("/v1/events?stream_prefix=agent-2&limit=2");
    assert_eq!(types(&page), ["Tool0", "Tool1"]);
    let next = page["next"].as_u64().unwrap();
    let (_, page) = server.get(&format!("/v1/events?stream_prefix=agent-2&from={next}"));
    assert_eq!(types(&page), ["Tool2", "Tool3", "Tool4"]);
    let (_, page) = server.get("/v1/events?type_prefix=Char");
    assert_eq!(types(&page), ["Charged"]);

    let (status, event) = server.get("/v1/events/10");
    assert_eq!(status, 200);
    assert_eq!((event["stream"].as_str(), event["position"].as_u64()), (Some("billing"), Some(10)));
    let (status, body) = server.get("/v1/events/11");
    assert_eq!((status, body["error"].as_str()), (404, Some("position_not_found")), "{body}");
    let (status, body) = server.get("/v1/events/x");
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_path")), "{body}");
}

#[test]
fn streams_head_and_verify_describe_the_log() {
    let (_dir, server) = seeded();
    let (_, streams) = server.get("/v1/streams?prefix=agent-");
    assert_eq!(
        streams,
        json!({"streams": [
            {"stream": "agent-1", "last_version": 4, "events": 5},
            {"stream": "agent-2", "last_version": 4, "events": 5}
        ], "next": null})
    );
    let (_, page) = server.get("/v1/streams?after=agent-1&limit=1");
    // `billing` follows, so the page says where to go on.
    assert_eq!(page, json!({"streams": [{"stream": "agent-2", "last_version": 4, "events": 5}], "next": "agent-2"}));
    let (_, head) = server.get("/v1/head");
    let (_, last) = server.get("/v1/events/10");
    assert_eq!(head, json!({"position": 10, "hash": last["hash"]}));
    let (status, report) = server.post("/v1/verify", &json!({}));
    assert_eq!(status, 200);
    assert_eq!(report, json!({"ok": true, "events": 11, "head_position": 10, "head_hash": last["hash"]}));
    let (_, partial) = server.post("/v1/verify?from=8", &json!({}));
    assert_eq!((partial["ok"].as_bool(), partial["events"].as_u64()), (Some(true), Some(3)));
}

#[test]
fn an_empty_log_has_a_null_head_with_the_genesis_hash() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (status, head) = server.get("/v1/head");
    assert_eq!(status, 200);
    assert_eq!(head["position"], Value::Null);
    assert_eq!(head["hash"].as_str().unwrap().len(), 64);
    let (_, page) = server.get("/v1/events");
    assert_eq!(page, json!({"events": [], "next": null}));
}

#[test]
fn operational_endpoints_answer() {
    let (_dir, server) = seeded();
    let (status, health) = server.get("/healthz");
    assert_eq!((status, &health["status"]), (200, &json!("ok")), "{health}");
    assert_eq!(health["views"].as_array().map(Vec::len), Some(3), "{health}");
    server.post("/v1/verify", &json!({}));
    let (status, metrics) = server.get_text("/metrics");
    assert_eq!(status, 200);
    for needle in [
        "cairn_log_appended_events_total 11",
        "cairn_http_appended_events_total 11",
        "cairn_log_fsync_seconds_bucket{le=\"+Inf\"}",
        "cairn_log_sync_batch_events_sum 11",
        "cairn_subscribers 0",
        "cairn_verify_ok 1",
        "cairn_http_requests_total{route=\"/v1/streams/{stream}/events\",status=\"200\"} 11",
    ] {
        assert!(metrics.contains(needle), "metrics lack {needle:?}:\n{metrics}");
    }
    let (status, doc) = server.get("/openapi.json");
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'));
    for path in ["/v1/streams/{stream}/events", "/v1/append", "/v1/events", "/v1/subscribe", "/v1/head", "/v1/verify"] {
        assert!(doc["paths"].get(path).is_some(), "openapi lacks {path}");
    }
    let (status, body) = server.get("/v1/nothing-here");
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, body) = server.request(reqwest::Method::DELETE, "/v1/head", None);
    assert_eq!((status, body["error"].as_str()), (405, Some("method_not_allowed")));
}

/// Issue 14 item 11: a page of large events is bounded by bytes while it is read, and never
/// crosses `READ_BYTES_MAX` (16 MiB) once it holds an event. Before, the server decoded the
/// whole `limit` (up to 10,000 events of 1 MiB) and cut the page afterwards, and the page
/// included the event that crossed the bound. Both the stream read and the global read: every
/// page stays within the budget, `next` points at the first event not returned, and following
/// it returns every event exactly once.
#[test]
fn pages_of_large_events_stay_within_the_byte_budget_and_lose_nothing() {
    const READ_BYTES_MAX: usize = 16 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let big = "x".repeat(1_000_000);
    let total: u64 = 20;
    for batch in 0..total / 4 {
        let events: Vec<(&str, Value)> = (0..4).map(|i| ("Blob", json!({"i": batch * 4 + i, "pad": big}))).collect();
        server.append("big", &events);
    }
    let size = |page: &Value| -> usize {
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["data"].to_string().len() + e["metadata"].to_string().len())
            .sum()
    };
    let indices = |page: &Value| -> Vec<u64> {
        page["events"].as_array().unwrap().iter().map(|e| e["data"]["i"].as_u64().unwrap()).collect()
    };

    for (first, path) in [
        ("/v1/streams/big/events?limit=10000", "/v1/streams/big/events?limit=10000&from="),
        ("/v1/events?limit=10000", "/v1/events?limit=10000&from="),
    ] {
        let mut seen = Vec::new();
        let (status, mut page) = server.get(first);
        loop {
            assert_eq!(status, 200, "{page}");
            let got = indices(&page);
            assert!(!got.is_empty(), "a page holds at least one event");
            assert!(size(&page) <= READ_BYTES_MAX, "a page of {} bytes crosses READ_BYTES_MAX ({first})", size(&page));
            seen.extend(got);
            match page["next"].as_u64() {
                Some(next) => {
                    assert_eq!(next, seen.len() as u64, "next points at the first event not returned");
                    page = server.get(&format!("{path}{next}")).1;
                }
                None => break,
            }
        }
        assert_eq!(seen, (0..total).collect::<Vec<_>>(), "every event once, in order ({first})");
    }
}

/// Issue 23 (low): `limit=0` returned one event. It is refused with a sentence saying why.
#[test]
fn limit_zero_is_refused() {
    let (_dir, server) = seeded();
    for path in ["/v1/streams/agent-1/events?limit=0", "/v1/events?limit=0"] {
        let (status, body) = server.get(path);
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_query")), "{path}: {body}");
        assert!(body["message"].as_str().unwrap().contains("limit=0"), "{body}");
    }
}

/// Issue 23 item 8: `GET /v1/streams` answered a bare list cut at 10,000 rows without saying
/// so; a page now says where the next starts (`next`), and following it lists every stream once.
#[test]
fn the_stream_listing_pages_with_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::Server::start(&dir.path().join("data"), &[]);
    let names: Vec<String> = (0..7).map(|i| format!("s-{i}")).collect();
    for name in &names {
        server.append(name, &[("T", json!({}))]);
    }
    server.append("other", &[("T", json!({}))]);

    let mut seen = Vec::new();
    let mut query = "/v1/streams?prefix=s-&limit=3".to_string();
    let mut pages = 0;
    loop {
        let (status, page) = server.get(&query);
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let rows = page["streams"].as_array().unwrap_or_else(|| panic!("a page is an object: {page}"));
        assert!(rows.len() <= 3, "{page}");
        seen.extend(rows.iter().map(|r| r["stream"].as_str().unwrap().to_string()));
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(Some(next), rows.last().and_then(|r| r["stream"].as_str()), "next is the page's last name");
                query = format!("/v1/streams?prefix=s-&limit=3&after={next}");
            }
            None => break,
        }
    }
    assert_eq!(seen, names, "every stream once, in order");
    assert_eq!(pages, 3, "7 streams in pages of 3");
    let (_, exact) = server.get("/v1/streams?prefix=s-&limit=7");
    assert_eq!(exact["next"], Value::Null, "a page that ends the listing has no cursor: {exact}");
}
