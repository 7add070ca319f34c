//! NDJSON streaming appends against the real binary: a body of many lines is appended in
//! batches while it is still arriving and answered once with a summary; a failing line keeps
//! the batches before it (durable, and said so in the answer) and writes nothing of its own
//! batch or after it; blank lines, bounds and media types behave as documented.

mod support;

use std::io::Write as _;

use serde_json::{json, Value};
use support::Server;

const NDJSON: &str = "application/x-ndjson";

fn lines(range: std::ops::Range<usize>) -> String {
    range.map(|i| format!("{{\"type\":\"Note\",\"data\":{{\"n\":{i}}}}}\n")).collect()
}

fn head_position(server: &Server) -> Value {
    let (status, head) = server.get("/v1/head");
    assert_eq!(status, 200);
    head["position"].clone()
}

#[test]
fn an_ndjson_body_is_appended_in_batches_and_answered_with_one_summary() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    // 2,500 events: batches of 1,000, 1,000 and 500; a blank line and a CRLF line on the way.
    let mut body = lines(0..1200);
    body.push_str("\n{\"type\":\"Note\",\"data\":{\"n\":1200}}\r\n");
    body.push_str(&lines(1201..2500));
    let (status, answer) = server.post_raw("/v1/streams/notes/events", NDJSON, body.into_bytes());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["stream"], "notes");
    assert_eq!(answer["count"], 2500);
    assert_eq!(answer["batches"], 3);
    assert_eq!((answer["first_position"].as_u64(), answer["last_position"].as_u64()), (Some(0), Some(2499)));
    assert_eq!((answer["first_version"].as_u64(), answer["last_version"].as_u64()), (Some(0), Some(2499)));
    let (_, head) = server.get("/v1/head");
    assert_eq!(head, json!({"position": 2499, "hash": answer["hash"]}));
    let (status, page) = server.get("/v1/streams/notes/events?from=1199&limit=3");
    assert_eq!(status, 200);
    let ns: Vec<&Value> = page["events"].as_array().unwrap().iter().map(|e| &e["data"]["n"]).collect();
    assert_eq!(ns, [&json!(1199), &json!(1200), &json!(1201)]);
}

/// The first batch is durable and visible while the body is still being sent: a subscriber sees
/// it before the client has written the rest.
#[test]
fn batches_are_committed_while_the_body_is_still_arriving() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let mut events = server.subscribe("from=0&stream=live", None);
    let (reader, mut writer) = std::io::pipe().unwrap();
    let url = server.url("/v1/streams/live/events");
    let sending = std::thread::spawn(move || {
        let response = reqwest::blocking::Client::new()
            .post(url)
            .header("content-type", NDJSON)
            .body(reqwest::blocking::Body::new(reader))
            .send()
            .unwrap();
        (response.status().as_u16(), response.json::<Value>().unwrap())
    });
    writer.write_all(lines(0..1000).as_bytes()).unwrap();
    writer.flush().unwrap();
    // The body is not finished, yet the first batch arrives, in order.
    for n in 0..1000u64 {
        let event = events.next().expect("the first batch is delivered before the body ends");
        assert_eq!(event.json()["data"]["n"], n);
    }
    writer.write_all(lines(1000..1500).as_bytes()).unwrap();
    drop(writer);
    let (status, answer) = sending.join().unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!((answer["count"].as_u64(), answer["batches"].as_u64()), (Some(1500), Some(2)));
    assert_eq!(head_position(&server), 1499);
}

#[test]
fn a_bad_line_keeps_the_batches_before_it_and_writes_nothing_of_its_batch_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let mut body = lines(0..1500);
    body.push_str("{\"type\":\"Note\",\"data\":1,\"data_b64\":\"AA==\"}\n");
    body.push_str(&lines(1501..1600));
    let (status, answer) = server.post_raw("/v1/streams/notes/events", NDJSON, body.into_bytes());
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "invalid_input");
    assert_eq!(answer["line"], 1501);
    let message = answer["message"].as_str().unwrap();
    assert!(message.contains("line 1501 has both data and data_b64"), "{message}");
    assert!(
        message.contains("the 1000 events before line 1001 are durable")
            && message.contains("nothing from line 1001 on was written"),
        "{message}"
    );
    assert_eq!(answer["durable"]["count"], 1000);
    assert_eq!(answer["durable"]["last_position"], 999);
    // Exactly the first batch is in the log.
    assert_eq!(head_position(&server), 999);

    // A failure in the first batch writes nothing, and says so.
    let (status, answer) =
        server.post_raw("/v1/streams/other/events", NDJSON, b"{\"type\":\"A\"}\nnot json\n".to_vec());
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "invalid_body");
    assert_eq!(answer["line"], 2);
    assert_eq!(answer["durable"], Value::Null);
    assert!(answer["message"].as_str().unwrap().contains("nothing of this request was written"), "{answer}");
    assert_eq!(head_position(&server), 999);
}

#[test]
fn ndjson_bounds_and_media_types() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    // Only blank lines: no events.
    let (status, answer) = server.post_raw("/v1/streams/s/events", NDJSON, b"\n\n".to_vec());
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_input")), "{answer}");
    // A line longer than NDJSON_LINE_MAX (2 MiB) is refused as too large, naming it.
    let mut body = lines(0..2).into_bytes();
    body.extend(std::iter::repeat_n(b' ', 2 * 1024 * 1024 + 1));
    body.push(b'\n');
    let (status, answer) = server.post_raw("/v1/streams/s/events", NDJSON, body);
    assert_eq!((status, answer["error"].as_str()), (413, Some("event_too_large")), "{answer}");
    assert_eq!(answer["line"], 3);
    assert_eq!(head_position(&server), Value::Null);
    // Events are checked as in a JSON append: an unknown field is refused.
    let (status, answer) = server.post_raw("/v1/streams/s/events", NDJSON, b"{\"type\":\"A\",\"x\":1}\n".to_vec());
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_body")), "{answer}");
    // NDJSON is taken by the stream append only.
    let (status, answer) = server.post_raw("/v1/append", NDJSON, lines(0..1).into_bytes());
    assert_eq!((status, answer["error"].as_str()), (415, Some("unsupported_media_type")), "{answer}");
    // The same line as JSON events and as NDJSON is stored the same.
    let line = r#"{"type":"T","data":{ "a" : [1.50, 2e3, "\u00e9"] },"metadata":{"k": "v"}}"#;
    let (status, _) = server.post_raw("/v1/streams/a/events", NDJSON, line.as_bytes().to_vec());
    assert_eq!(status, 200);
    let (status, _) =
        server.post_raw("/v1/streams/b/events", "application/json", format!("{{\"events\":[{line}]}}").into_bytes());
    assert_eq!(status, 200);
    let (_, a) = server.get("/v1/streams/a/events");
    let (_, b) = server.get("/v1/streams/b/events");
    assert_eq!(a["events"][0]["data"], b["events"][0]["data"]);
    assert_eq!(a["events"][0]["metadata"], b["events"][0]["metadata"]);
}
