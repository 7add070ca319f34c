//! Helpers for the end-to-end tests: start the real `cairn` binary on a free loopback port,
//! talk to it over HTTP, stop it with a signal, and read Server-Sent Events.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_cairn");

/// A safety net so that a broken server fails a test instead of hanging it; no assertion
/// depends on timing.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `cairn serve`.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub data: PathBuf,
    pub stderr_path: PathBuf,
    client: reqwest::blocking::Client,
    token: Option<String>,
}

impl Server {
    /// Starts `cairn --data DATA serve --listen 127.0.0.1:0 EXTRA...` and waits for the address
    /// it prints on stdout.
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        Server::start_with_env(data, extra, &[])
    }

    /// [`Server::start`] with `env` set for the server process only.
    pub fn start_with_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let stderr_path = data.with_extension("server-stderr.log");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = Command::new(BIN)
            .arg("--data")
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("CAIRN_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("the cairn binary starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let base = match line.trim().strip_prefix("listening on ") {
            Some(url) => url.to_string(),
            None => {
                let _ = child.wait();
                panic!("serve printed {line:?}; stderr: {}", std::fs::read_to_string(&stderr_path).unwrap_or_default())
            }
        };
        let client = reqwest::blocking::Client::builder().timeout(CLIENT_TIMEOUT).build().unwrap();
        Server { child: Some(child), base, data: data.to_path_buf(), stderr_path, client, token: None }
    }

    /// Sends this bearer token with every later request.
    pub fn with_token(mut self, token: Option<&str>) -> Server {
        self.token = token.map(str::to_string);
        self
    }

    pub fn set_token(&mut self, token: Option<&str>) {
        self.token = token.map(str::to_string);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn auth(&self, rb: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        respond(self.auth(self.client.get(self.url(path))).send().unwrap())
    }

    pub fn get_text(&self, path: &str) -> (u16, String) {
        let r = self.auth(self.client.get(self.url(path))).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        respond(self.auth(self.client.post(self.url(path))).json(body).send().unwrap())
    }

    pub fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        respond(
            self.auth(self.client.post(self.url(path))).header("content-type", content_type).body(body).send().unwrap(),
        )
    }

    pub fn request(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut rb = self.auth(self.client.request(method, self.url(path)));
        if let Some(b) = body {
            rb = rb.json(b);
        }
        respond(rb.send().unwrap())
    }

    /// Appends events (`[(type, data)]`) to a stream and returns the response body.
    pub fn append(&self, stream: &str, events: &[(&str, Value)]) -> Value {
        let events: Vec<Value> = events.iter().map(|(t, d)| serde_json::json!({"type": t, "data": d})).collect();
        let (status, body) =
            self.post(&format!("/v1/streams/{stream}/events"), &serde_json::json!({ "events": events }));
        assert_eq!(status, 200, "append to {stream}: {body}");
        body
    }

    /// Opens `GET /v1/subscribe?QUERY`, with `Last-Event-ID` when given.
    pub fn subscribe(&self, query: &str, last_event_id: Option<u64>) -> Sse {
        let mut rb = self.auth(self.client.get(self.url(&format!("/v1/subscribe?{query}"))));
        if let Some(id) = last_event_id {
            rb = rb.header("Last-Event-ID", id.to_string());
        }
        let response = rb.send().unwrap();
        assert_eq!(response.status().as_u16(), 200, "subscribe?{query}");
        let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
        assert!(content_type.starts_with("text/event-stream"), "{content_type}");
        Sse { reader: BufReader::new(Box::new(response)) }
    }

    /// Sends raw request bytes on a fresh connection and returns the status and body of the
    /// answer. For requests a well-behaved client would not send (a body announced but never
    /// sent, say).
    pub fn raw(&self, request: &str) -> (u16, Value) {
        use std::io::Write;
        let addr = self.base.strip_prefix("http://").unwrap();
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        tcp.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(tcp);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends `signal` (e.g. "TERM", "INT") and waits for the process to exit.
    pub fn stop_with(mut self, signal: &str) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status().unwrap();
        assert!(status.success(), "kill -{signal} failed");
        child.wait().unwrap()
    }

    /// Sends `signal` and waits up to `guard` for the process to exit: `None` if it is still
    /// running then (it is killed when the `Server` is dropped). `guard` is a failure guard,
    /// meant to be generous, not a measurement.
    pub fn signal_and_wait(&mut self, signal: &str, guard: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().unwrap();
        let status = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status().unwrap();
        assert!(status.success(), "kill -{signal} failed");
        let started = std::time::Instant::now();
        while started.elapsed() < guard {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn stop(self) -> ExitStatus {
        self.stop_with("TERM")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn respond(r: reqwest::blocking::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("status {status}: body is not JSON: {text:?}"))
    };
    (status, body)
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// A reader of an SSE response.
pub struct Sse {
    reader: BufReader<Box<dyn Read + Send>>,
}

impl Sse {
    /// The next event (comments and keep-alives skipped); `None` at the end of the stream.
    pub fn next(&mut self) -> Option<SseEvent> {
        let mut event = SseEvent { id: None, event: None, data: String::new() };
        let mut any = false;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap() == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if any {
                    return Some(event);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) =
                line.split_once(':').map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
            any = true;
            match field {
                "id" => event.id = Some(value.to_string()),
                "event" => event.event = Some(value.to_string()),
                "data" => {
                    if !event.data.is_empty() {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                }
                _ => {}
            }
        }
    }
}

/// Sends SIGHUP to the server.
pub fn hangup(server: &Server) {
    let status = Command::new("kill").args(["-HUP", &server.pid().to_string()]).status().unwrap();
    assert!(status.success(), "kill -HUP failed");
}

/// Waits until the server's log (stderr) holds `needle` `count` times; the guard turns a server
/// that never says it into a failure instead of a hang.
pub fn wait_for_log(server: &Server, needle: &str, count: usize) {
    let started = std::time::Instant::now();
    while server.stderr().matches(needle).count() < count {
        assert!(
            started.elapsed() < CLIENT_TIMEOUT,
            "the log never said {needle:?} {count} times:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the binary with `args` and the data directory, returning (exit code, stdout, stderr).
pub fn cairn(data: &Path, args: &[&str]) -> (i32, String, String) {
    cairn_with_env(data, &[], args)
}

/// [`cairn`] with environment variables `env` set.
pub fn cairn_with_env(data: &Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).arg("--data").arg(data).args(args).envs(env.iter().copied()).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// The names of the entries of `dir`, sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// `cairn token --hash TOKEN`: the auth file's line for a token.
pub fn token_hash_line(token: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = cairn(dir.path(), &["token", "--hash", token]);
    assert_eq!(code, 0, "{err}");
    out.trim().to_string()
}

/// A count from the environment variable `name` (a positive integer), else `default`.
pub fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(default)
}

/// A randomized test's seed: `CAIRN_SEED`, else the clock; printed, with how to replay it.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("CAIRN_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
    });
    eprintln!("{test}: seed {seed} (replay with CAIRN_SEED={seed})");
    seed
}

/// SplitMix64: a randomized test's choices as a pure function of its seed.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
