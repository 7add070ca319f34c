//! `POST /v1/verify` on a real server, in both its forms: one JSON report, or (with
//! `Accept: application/x-ndjson`) progress lines while it runs, each `{"checked", "total"}`
//! with `checked` never going back and never past `total`, the last with everything checked,
//! then the same report. MCP's `verify` passes those lines on as progress notifications (events
//! verified of the total); before, it could only report how long it had been running.

mod support;

use serde_json::{json, Value};
use support::Server;

/// The lines of a streamed verification.
fn streamed(server: &Server, query: &str) -> (u16, String, Vec<Value>) {
    let response = reqwest::blocking::Client::new()
        .post(server.url(&format!("/v1/verify{query}")))
        .header("Accept", "application/x-ndjson")
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let text = response.text().unwrap();
    let lines =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}"))).collect();
    (status, content_type, lines)
}

#[test]
fn a_streamed_verification_reports_events_checked_of_the_total_then_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    for batch in 0..5 {
        let events: Vec<(&str, Value)> = (0..20).map(|i| ("Step", json!({"batch": batch, "i": i}))).collect();
        server.append(&format!("agent-{batch}"), &events);
    }

    let (status, content_type, lines) = streamed(&server, "");
    assert_eq!((status, content_type.as_str()), (200, "application/x-ndjson"), "{lines:?}");
    let (report, progress) = lines.split_last().expect("at least the report");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["events"], 100, "{report}");
    assert!(!progress.is_empty(), "no progress line before the report: {lines:?}");
    let mut checked = 0;
    for line in progress {
        assert_eq!(line.as_object().unwrap().len(), 2, "a progress line is {{checked, total}}: {line}");
        assert_eq!(line["total"], 100, "{line}");
        let now = line["checked"].as_u64().unwrap();
        assert!(now >= checked && now <= 100, "progress went from {checked} to {now}");
        checked = now;
    }
    assert_eq!(checked, 100, "the last progress line has every event checked");

    // The JSON form answers the same report; `from` checks the rest, and beyond the head is a
    // 404 before anything streams.
    let (status, plain) = server.post("/v1/verify", &json!({}));
    assert_eq!((status, &plain), (200, report), "{plain}");
    let (_, _, from) = streamed(&server, "?from=60");
    assert_eq!(from.last().unwrap()["events"], 40);
    assert_eq!(from[from.len() - 2], json!({"checked": 40, "total": 40}));
    let (status, _, lines) = streamed(&server, "?from=500");
    assert_eq!((status, lines[0]["error"].as_str()), (404, Some("position_not_found")), "{lines:?}");
}
