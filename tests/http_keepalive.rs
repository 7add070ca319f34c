//! Kept-alive connections after an early answer. A request refused before its body is read
//! (401, 403, 400 for an invalid stream name, 415, 413) must not leave the connection in a
//! state the client cannot see: either the server finishes reading the refused body and the
//! connection answers the client's next request, or the refusal itself says
//! `Connection: close`. Each scenario drives one raw TCP connection, sending the refused body
//! only after its answer has arrived, so the server cannot have read it first.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use support::{cairn, Server};

const AGENT: &str = "agent-token-1";

/// A safety net so that a broken server fails the test instead of hanging it.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

fn auth_server(dir: &std::path::Path) -> Server {
    let (code, hash, err) = cairn(dir, &["token", "--hash", AGENT]);
    assert_eq!(code, 0, "{err}");
    let file = format!(
        "[[principal]]\nname = \"agent\"\n{}\nrules = [{{ prefix = \"agent-\", allow = [\"read\", \"append\"] }}]\n",
        hash.trim()
    );
    let path = dir.join("auth.toml");
    std::fs::write(&path, file).unwrap();
    Server::start(&dir.join("data"), &["--auth", path.to_str().unwrap()])
}

/// One raw HTTP/1.1 connection.
struct Conn {
    reader: BufReader<TcpStream>,
}

/// An answer: status, lower-cased headers, JSON body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn says_close(&self) -> bool {
        self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

impl Conn {
    fn open(server: &Server) -> Conn {
        let tcp = TcpStream::connect(server.base.strip_prefix("http://").unwrap()).unwrap();
        tcp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        Conn { reader: BufReader::new(tcp) }
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// Reads one answer; an error or end of stream is `Err` with what happened.
    fn answer(&mut self) -> Result<Answer, String> {
        let mut status_line = String::new();
        match self.reader.read_line(&mut status_line) {
            Ok(0) => return Err("the server closed the connection".to_string()),
            Ok(_) => {}
            Err(e) => return Err(format!("reading the answer failed: {e}")),
        }
        let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or(format!("{status_line:?}"))?;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).map_err(|e| e.to_string())?;
            if line.trim().is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').ok_or(format!("header line {line:?}"))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        let length: usize = headers.iter().find(|(n, _)| n == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).map_err(|e| e.to_string())?;
        let body = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap() };
        Ok(Answer { status, headers, body })
    }

    /// True when the server has closed the connection (end of stream or reset).
    fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe),
        }
    }
}

fn head(method: &str, path: &str, token: Option<&str>, content_type: &str, length: usize) -> String {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: cairn\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    )
}

fn append_body(payload_len: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({"events": [{"type": "T", "data": {"pad": "x".repeat(payload_len)}}]})).unwrap()
}

#[test]
fn a_request_refused_before_its_body_is_read_leaves_the_connection_usable() {
    let dir = tempfile::tempdir().unwrap();
    let server = auth_server(dir.path());
    let body = append_body(2_000);
    // (what is wrong, request head, expected status)
    let cases = [
        ("no token", head("POST", "/v1/streams/agent-1/events", None, "application/json", body.len()), 401),
        (
            "an unknown token",
            head("POST", "/v1/streams/agent-1/events", Some("nope"), "application/json", body.len()),
            401,
        ),
        (
            "a stream the token may not append to",
            head("POST", "/v1/streams/billing/events", Some(AGENT), "application/json", body.len()),
            403,
        ),
        (
            "a stream name with a control character",
            head("POST", "/v1/streams/agent-%01x/events", Some(AGENT), "application/json", body.len()),
            400,
        ),
        (
            "an unsupported body type",
            head("POST", "/v1/streams/agent-1/events", Some(AGENT), "text/plain", body.len()),
            415,
        ),
    ];
    let mut accepted: usize = 0;
    for (what, request_head, status) in cases {
        let mut conn = Conn::open(&server);
        // The head and half the body, then the answer: the server answers before the rest of
        // the body exists, which is the case that used to drop the connection.
        conn.send(request_head.as_bytes()).unwrap();
        conn.send(&body[..body.len() / 2]).unwrap();
        let refused = conn.answer().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(refused.status, status, "{what}: {}", refused.body);
        assert!(refused.body["error"].is_string(), "{what}: a JSON error: {}", refused.body);
        assert!(!refused.says_close(), "{what}: a small refused body is drained, not a reason to close");
        conn.send(&body[body.len() / 2..]).unwrap();

        // The next request on the same connection gets a proper answer.
        let next = append_body(10);
        conn.send(head("POST", "/v1/streams/agent-1/events", Some(AGENT), "application/json", next.len()).as_bytes())
            .unwrap();
        conn.send(&next).unwrap();
        let answer = conn.answer().unwrap_or_else(|e| panic!("after {what}, the kept-alive connection: {e}"));
        assert_eq!(answer.status, 200, "after {what}: {}", answer.body);
        accepted += 1;
        assert_eq!(answer.body["last_version"], accepted - 1, "after {what}: {}", answer.body);
    }

    // Only the accepted appends were written.
    let mut server = server;
    server.set_token(Some(AGENT));
    let (status, read) = server.get("/v1/streams/agent-1/events");
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["events"].as_array().unwrap().len(), accepted, "{read}");
}

#[test]
fn a_refused_body_too_large_to_drain_is_answered_with_connection_close() {
    let dir = tempfile::tempdir().unwrap();
    let server = auth_server(dir.path());
    let over_limit = cairn::limits::REQUEST_BODY_MAX + 1;
    let over_drain = usize::try_from(cairn::http::drain::DRAIN_MAX).unwrap() + 1;
    let cases = [
        // Declared above the request limit: refused before a byte is read.
        ("a declared length above REQUEST_BODY_MAX", head("POST", "/v1/streams/agent-1/events", Some(AGENT), "application/json", over_limit), 413),
        // Allowed size, refused for its token, too large to be worth draining.
        ("a large body without a token", head("POST", "/v1/streams/agent-1/events", None, "application/json", over_drain), 401),
        // No declared length: the server cannot know what draining would cost.
        (
            "a chunked body without a token",
            "POST /v1/streams/agent-1/events HTTP/1.1\r\nHost: cairn\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_string(),
            401,
        ),
    ];
    for (what, request_head, status) in cases {
        let mut conn = Conn::open(&server);
        conn.send(request_head.as_bytes()).unwrap();
        let refused = conn.answer().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(refused.status, status, "{what}: {}", refused.body);
        assert!(refused.says_close(), "{what}: the answer must say Connection: close; headers {:?}", refused.headers);
        assert!(conn.is_closed(), "{what}: the server closes the connection it said it would close");
    }

    // A body streamed past the limit without a declared length is cut off with 413 and a close.
    let mut conn = Conn::open(&server);
    conn.send(b"POST /v1/streams/agent-1/events HTTP/1.1\r\nHost: cairn\r\nAuthorization: Bearer agent-token-1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0;
    let refused = loop {
        // Whole chunks until the server answers (it may close while a chunk is in flight).
        let frame = [format!("{:x}\r\n", chunk.len()).into_bytes(), chunk.clone(), b"\r\n".to_vec()].concat();
        if conn.send(&frame).is_err() || sent > cairn::limits::REQUEST_BODY_MAX {
            break conn.answer().expect("the 413 answer");
        }
        sent += chunk.len();
    };
    assert_eq!(refused.status, 413, "{}", refused.body);
    assert_eq!(refused.body["error"], "body_too_large");
    assert!(refused.says_close(), "headers {:?}", refused.headers);

    let mut server = server;
    server.set_token(Some(AGENT));
    assert_eq!(server.get("/v1/streams/agent-1/events").0, 404, "nothing was written");
}
