//! How the MCP tools reach cairn: every tool call is one or a few requests to cairn's own HTTP
//! API, sent either to the router in this process (`cairn mcp --data DIR`, and `/mcp` on
//! `cairn serve`) or over the network to a running server (`cairn mcp --server URL`).
//!
//! Why the HTTP API even in process: it is the one place that checks a caller's permissions,
//! validates input and maps every engine, view and checkpoint error to the contract's codes.
//! Going through it, a tool's answer, its error code and what a token may do are the same as
//! the HTTP API's, in all three modes, by construction: `/mcp` forwards the caller's own
//! `Authorization` header with every request it makes, so the per-prefix rules apply to each
//! tool call exactly as they apply to the endpoints.
//!
//! A failed request becomes a [`ToolError`]: the API's `{"error": code, "message", ...}` as
//! it was answered, which the tool returns as an MCP tool error.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock};
use serde_json::{Map, Value};
use tower::ServiceExt as _;

/// The largest answer a tool reads from the API (a page of events at the API's limits fits).
pub const MCP_RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// How long `cairn mcp --server` waits for the server to answer one request (a `verify` of a
/// large log is the slowest).
pub const MCP_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// What is escaped in a path segment or query value: everything but `A-Z a-z 0-9 - . _ ~`.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `s` percent-encoded for a path segment or a query value.
pub fn enc(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// A query string (with its `?`) of the pairs whose value is present.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v)))).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Where the API is.
#[derive(Debug, Clone)]
pub enum Api {
    /// The router of this process (embedded store, or the server that serves `/mcp`).
    Router(axum::Router),
    /// A running `cairn serve` at `base` (`http://host:port` or `https://...`, no trailing `/`).
    Remote { client: reqwest::Client, base: String },
}

/// A failed tool call: the contract's error code, a sentence, and the API's other fields
/// (`stream`, `expected`, `actual` of a `wrong_expected_version`).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolError {
    pub code: String,
    pub message: String,
    pub extra: Map<String, Value>,
}

impl ToolError {
    pub fn new(code: &str, message: impl Into<String>) -> ToolError {
        ToolError { code: code.to_string(), message: message.into(), extra: Map::new() }
    }

    /// The error as the API's body: `{"error", "message", ...}`.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("error".into(), Value::String(self.code.clone()));
        body.insert("message".into(), Value::String(self.message.clone()));
        body.extend(self.extra.clone());
        Value::Object(body)
    }

    /// An error body of the API (`{"error": code, "message", ...}`) as a tool error.
    pub fn from_body(body: Value) -> ToolError {
        let Value::Object(mut body) = body else {
            return ToolError::new("internal", "an error answer is not an object");
        };
        let code = body.remove("error").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let message = body.remove("message").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        ToolError { code, message, extra: body }
    }

    /// Reads an error answer of the API; a body that is not the contract's error shape (a
    /// proxy's page, say) is described by its status.
    fn from_answer(status: StatusCode, bytes: &[u8]) -> ToolError {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(body) if body.get("error").is_some_and(Value::is_string) => ToolError::from_body(body),
            _ => ToolError::new(
                "unavailable",
                format!(
                    "the cairn server answered HTTP {status} without a cairn error body: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ),
            ),
        }
    }
}

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// A tool error is an MCP tool result with `isError: true` whose text is the API's error body,
/// so a model reads the code and the sentence, and a program parses the JSON.
impl IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        let text = serde_json::to_string(&self.body()).unwrap_or_else(|_| self.message.clone());
        Ok(CallToolResult::error(vec![ContentBlock::text(text)]).into())
    }
}

/// A response body, read to its end.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub bytes: Vec<u8>,
}

/// An answer's body as it arrives, from the router in process or from the network.
#[derive(Debug)]
enum Chunks {
    Router(axum::body::BodyDataStream),
    Remote { response: reqwest::Response, base: String },
}

impl Chunks {
    /// The next piece of the body; `None` at its end. A remote body cut off by the request's
    /// own timeout is `Err` with the code `timeout`.
    async fn next(&mut self) -> Result<Option<axum::body::Bytes>, ToolError> {
        match self {
            Chunks::Router(body) => futures_util::StreamExt::next(body)
                .await
                .transpose()
                .map_err(|e| ToolError::new("internal", format!("reading an answer failed: {e}"))),
            Chunks::Remote { response, base } => response.chunk().await.map_err(|e| {
                if e.is_timeout() {
                    ToolError::new("timeout", format!("the answer of the cairn server at {base} did not end in time"))
                } else {
                    unreachable_error(base, &e)
                }
            }),
        }
    }

    /// The rest of the body, at most [`MCP_RESPONSE_BYTES_MAX`] bytes.
    async fn read_all(&mut self, path: &str) -> Result<Vec<u8>, ToolError> {
        let mut bytes = Vec::new();
        while let Some(chunk) = self.next().await? {
            if bytes.len() + chunk.len() > MCP_RESPONSE_BYTES_MAX {
                return Err(ToolError::new(
                    "internal",
                    format!(
                        "the answer of {path} is larger than MCP_RESPONSE_BYTES_MAX ({MCP_RESPONSE_BYTES_MAX} bytes)"
                    ),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

/// A request to send: what [`Api::open`] needs besides the method and path.
#[derive(Debug, Default, Clone, Copy)]
struct Extras<'a> {
    body: Option<&'a Value>,
    /// The `Authorization` header, passed on as it is.
    token: Option<&'a str>,
    accept: Option<&'a str>,
    /// `--server` only: a bound on the whole exchange shorter than [`MCP_REQUEST_TIMEOUT`].
    timeout: Option<Duration>,
}

impl Api {
    /// Sends one request; its status and its body as it arrives.
    async fn open(&self, method: Method, path: &str, x: Extras<'_>) -> Result<(StatusCode, Chunks), ToolError> {
        let bytes = x.body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        match self {
            Api::Router(router) => {
                let mut request = Request::builder().method(method).uri(path);
                if bytes.is_some() {
                    request = request.header(header::CONTENT_TYPE, "application/json");
                }
                if let Some(token) = x.token {
                    request = request.header(header::AUTHORIZATION, token);
                }
                if let Some(accept) = x.accept {
                    request = request.header(header::ACCEPT, accept);
                }
                let request = request
                    .body(bytes.map_or_else(Body::empty, Body::from))
                    .map_err(|e| ToolError::new("invalid_input", format!("cannot build the request {path}: {e}")))?;
                let response = router.clone().oneshot(request).await.unwrap_or_else(|never| match never {});
                Ok((response.status(), Chunks::Router(response.into_body().into_data_stream())))
            }
            Api::Remote { client, base } => {
                let url = format!("{base}{path}");
                let method = reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap_or(reqwest::Method::GET);
                let mut request = client.request(method, &url);
                if let Some(bytes) = bytes {
                    request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(bytes);
                }
                if let Some(token) = x.token {
                    request = request.header(reqwest::header::AUTHORIZATION, token);
                }
                if let Some(accept) = x.accept {
                    request = request.header(reqwest::header::ACCEPT, accept);
                }
                if let Some(timeout) = x.timeout {
                    request = request.timeout(timeout);
                }
                let response = request.send().await.map_err(|e| unreachable_error(base, &e))?;
                let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                Ok((status, Chunks::Remote { response, base: base.clone() }))
            }
        }
    }

    /// Sends one request and reads the whole answer. `token` is the `Authorization` header to send
    /// (`Bearer <token>`), passed on as it is.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Result<Answer, ToolError> {
        let (status, mut chunks) = self.open(method, path, Extras { body, token, ..Extras::default() }).await?;
        Ok(Answer { status, bytes: chunks.read_all(path).await? })
    }

    /// Sends one request whose answer is NDJSON (`Accept: application/x-ndjson`) and returns its
    /// lines as they arrive; a non-2xx answer is the API's error.
    pub async fn lines(&self, method: Method, path: &str, token: Option<&str>) -> Result<Lines, ToolError> {
        let x = Extras { token, accept: Some(crate::http::log_api::NDJSON), ..Extras::default() };
        let (status, mut chunks) = self.open(method, path, x).await?;
        if !status.is_success() {
            return Err(ToolError::from_answer(status, &chunks.read_all(path).await?));
        }
        Ok(Lines { chunks, pending: Vec::new(), path: path.to_string() })
    }

    /// Sends one request; a 2xx answer's JSON body, or the API's error.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Result<Value, ToolError> {
        let answer = self.send(method, path, body, token).await?;
        if !answer.status.is_success() {
            return Err(ToolError::from_answer(answer.status, &answer.bytes));
        }
        if answer.bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&answer.bytes)
            .map_err(|e| ToolError::new("internal", format!("the answer of {path} is not JSON: {e}")))
    }

    /// `call`, its JSON read as `T`.
    pub async fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Result<T, ToolError> {
        let value = self.call(method, path, body, token).await?;
        serde_json::from_value(value)
            .map_err(|e| ToolError::new("internal", format!("the answer of {path} has an unexpected shape: {e}")))
    }

    /// Opens `GET path` (a `/v1/subscribe` URL) and waits, at most `timeout`, for its first
    /// Server-Sent Event carrying data. `Ok(true)`: one arrived; `Ok(false)`: the time ran out.
    pub async fn first_event(&self, path: &str, token: Option<&str>, timeout: Duration) -> Result<bool, ToolError> {
        let wait = async {
            let x = Extras { token, timeout: Some(timeout), ..Extras::default() };
            let (status, mut chunks) = self.open(Method::GET, path, x).await?;
            if !status.is_success() {
                return Err(ToolError::from_answer(status, &chunks.read_all(path).await.unwrap_or_default()));
            }
            let mut sse = SseLines::default();
            loop {
                match chunks.next().await {
                    Ok(Some(chunk)) if sse.feed(&chunk) => return Ok(true),
                    Ok(Some(_)) => {}
                    Ok(None) => return Ok(false),
                    // The request's own timeout ends the stream: that is "nothing came".
                    Err(e) if e.code == "timeout" => return Ok(false),
                    Err(e) => return Err(e),
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(result) => result,
            Err(_elapsed) => Ok(false),
        }
    }
}

/// The lines of an NDJSON answer, each a JSON value, read as they arrive.
#[derive(Debug)]
pub struct Lines {
    chunks: Chunks,
    /// Bytes of a line not ended yet.
    pending: Vec<u8>,
    path: String,
}

impl Lines {
    /// The next line; `None` at the end of the answer.
    pub async fn next(&mut self) -> Result<Option<Value>, ToolError> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                return serde_json::from_slice(line).map(Some).map_err(|e| {
                    ToolError::new("internal", format!("a line of the answer of {} is not JSON: {e}", self.path))
                });
            }
            match self.chunks.next().await? {
                Some(chunk) if self.pending.len() + chunk.len() > MCP_RESPONSE_BYTES_MAX => {
                    return Err(ToolError::new(
                        "internal",
                        format!("a line of the answer of {} is longer than MCP_RESPONSE_BYTES_MAX", self.path),
                    ));
                }
                Some(chunk) => self.pending.extend_from_slice(&chunk),
                None if self.pending.iter().all(u8::is_ascii_whitespace) => return Ok(None),
                None => {
                    let last = std::mem::take(&mut self.pending);
                    return serde_json::from_slice(&last).map(Some).map_err(|e| {
                        ToolError::new(
                            "internal",
                            format!("the last line of the answer of {} is not JSON: {e}", self.path),
                        )
                    });
                }
            }
        }
    }
}

fn unreachable_error(base: &str, e: &reqwest::Error) -> ToolError {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    ToolError::new("unavailable", format!("cannot reach the cairn server at {base}: {detail}"))
}

/// Finds the end of the first SSE event that carries `data:` in a byte stream fed in chunks
/// (comments such as `: keep-alive` carry none).
#[derive(Debug, Default)]
struct SseLines {
    line: Vec<u8>,
    has_data: bool,
}

impl SseLines {
    /// Feeds a chunk; true once an event with data has ended.
    fn feed(&mut self, chunk: &[u8]) -> bool {
        for &b in chunk {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let line = std::mem::take(&mut self.line);
            let line = line.strip_suffix(b"\r").unwrap_or(&line);
            if line.is_empty() {
                if self.has_data {
                    return true;
                }
            } else if line.starts_with(b"data:") {
                self.has_data = true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_end_at_a_blank_line_after_data_and_comments_do_not_count() {
        let mut sse = SseLines::default();
        assert!(!sse.feed(b": keep-alive\n\n"));
        assert!(!sse.feed(b"id: 4\nda"));
        assert!(!sse.feed(b"ta: {\"position\":4}\r\n"));
        assert!(sse.feed(b"\r\n"));
    }

    #[test]
    fn names_are_percent_encoded_whole() {
        assert_eq!(enc("kv:session/42 x"), "kv%3Asession%2F42%20x");
        assert_eq!(
            query(&[("from", Some("3".into())), ("stream", None), ("prefix", Some("a&b".into()))]),
            "?from=3&prefix=a%26b"
        );
        assert_eq!(query(&[("from", None)]), "");
    }

    #[test]
    fn an_api_error_body_keeps_its_code_and_fields() {
        let e = ToolError::from_answer(
            StatusCode::CONFLICT,
            br#"{"error":"wrong_expected_version","message":"m","stream":"s","expected":0,"actual":1}"#,
        );
        assert_eq!(e.code, "wrong_expected_version");
        assert_eq!(e.body()["actual"], 1);
        let e = ToolError::from_answer(StatusCode::BAD_GATEWAY, b"<html>");
        assert_eq!(e.code, "unavailable");
    }
}
