//! Operator commands run beside a server: when `cairn serve` holds the data directory, `backup`
//! and `drill` ask it over HTTP instead of failing on its lock. The server is named with
//! `--server URL` (+ `--token`, `--ca-file`), or found through the address it records in the
//! data directory ([`crate::server_file`]) when the directory turns out to be locked.
//!
//! Long operations ask for the NDJSON progress answer: each progress line moves the bar, and
//! the last line is the report (or the error body, which becomes the command's error with the
//! exit code its code stands for).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::{CliError, CliResult, Exit};
use crate::store::StoreError;

/// How long a command waits to connect to the server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The options that name a running server.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Ask the running cairn server at this URL (`http://` or `https://`) instead of opening the
    /// data directory. Without it, a server that holds the directory is found through the
    /// address it records there (server.json).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,

    /// The bearer token for the server (or the environment variable CAIRN_TOKEN).
    #[arg(long, value_name = "TOKEN", env = "CAIRN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// A PEM file of CA certificates to trust for an https:// server, beside the system's.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// A server to ask, with the runtime its client runs on.
#[derive(Debug)]
pub struct Remote {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
    rt: tokio::runtime::Runtime,
}

impl Remote {
    /// The server `args` name explicitly, if any.
    pub fn explicit(args: &ServerArgs) -> CliResult<Option<Remote>> {
        args.server.as_deref().map(|url| Remote::connect(url, args)).transpose()
    }

    /// Opening `dir` failed with `error`: if it is locked by a server that recorded its address,
    /// that server; otherwise the error (with what was found of a stale record).
    pub fn after_open_error(dir: &Path, args: &ServerArgs, error: CliError) -> CliResult<Remote> {
        let locked = matches!(
            &error,
            CliError::Store(StoreError::Open { source: log_engine::Error::Locked { .. }, .. })
                | CliError::Backup(crate::backup::BackupError::Log(log_engine::Error::Locked { .. }))
        );
        if !locked {
            return Err(error);
        }
        match crate::server_file::discover(dir) {
            Ok(Some(record)) => {
                eprintln!("note: {} is held by the cairn server at {}; asking it", dir.display(), record.url);
                Remote::connect(&record.url, args)
            }
            Ok(None) => Err(error),
            Err(stale) => Err(CliError::Server(format!("{error}; {stale}"))),
        }
    }

    /// The server that records its address in `dir` (a running `cairn serve`), if any: for a
    /// command that must not even try to open a directory a server holds (a keyless open of an
    /// encrypted directory is refused before its lock is looked at).
    pub fn running_in(dir: &Path, args: &ServerArgs) -> CliResult<Option<Remote>> {
        match crate::server_file::discover(dir) {
            Ok(Some(record)) => {
                eprintln!("note: {} is held by the cairn server at {}; asking it", dir.display(), record.url);
                Remote::connect(&record.url, args).map(Some)
            }
            Ok(None) | Err(_) => Ok(None),
        }
    }

    fn connect(url: &str, args: &ServerArgs) -> CliResult<Remote> {
        let base = url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(crate::wire::InputError(format!("--server {url:?} is not an http:// or https:// URL")).into());
        }
        let mut builder = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
        if let Some(path) = &args.ca_file {
            let pem = std::fs::read(path).map_err(|e| CliError::io("read the CA file", path, e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                crate::wire::InputError(format!("the CA file {} is not PEM certificates: {e}", path.display()))
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| CliError::Server(format!("cannot set up the HTTP client: {e}")))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::Server(format!("cannot start the HTTP client's runtime: {e}")))?;
        Ok(Remote { client, base: base.to_string(), token: args.token.clone(), rt })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// `GET path`, answered with JSON.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> CliResult<T> {
        self.call(reqwest::Method::GET, path)
    }

    /// `POST path` without a body, answered with JSON.
    pub fn post<T: DeserializeOwned>(&self, path: &str) -> CliResult<T> {
        self.call(reqwest::Method::POST, path)
    }

    fn call<T: DeserializeOwned>(&self, method: reqwest::Method, path: &str) -> CliResult<T> {
        self.rt.block_on(async {
            let answer = self.request(method, path).send().await.map_err(|e| self.unreachable(path, &e))?;
            let status = answer.status();
            let bytes = answer.bytes().await.map_err(|e| self.unreachable(path, &e))?;
            if !status.is_success() {
                return Err(self.refused(path, &bytes));
            }
            self.decode(path, &bytes)
        })
    }

    /// `POST path` with a JSON `body`, asking for NDJSON progress: each progress line goes to
    /// `progress`, and the last line is the report.
    pub fn post_streamed<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
        progress: &mut dyn FnMut(serde_json::Value),
    ) -> CliResult<T> {
        self.rt.block_on(async {
            let answer = self
                .request(reqwest::Method::POST, path)
                .header(reqwest::header::ACCEPT, crate::http::extract::NDJSON)
                .json(body)
                .send()
                .await
                .map_err(|e| self.unreachable(path, &e))?;
            if !answer.status().is_success() {
                let bytes = answer.bytes().await.map_err(|e| self.unreachable(path, &e))?;
                return Err(self.refused(path, &bytes));
            }
            let mut chunks = answer.bytes_stream();
            let mut pending = Vec::new();
            let mut last: Option<Vec<u8>> = None;
            while let Some(chunk) = chunks.next().await {
                pending.extend_from_slice(&chunk.map_err(|e| self.unreachable(path, &e))?);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    if let Some(previous) = last.replace(line) {
                        progress(serde_json::from_slice(&previous).unwrap_or_default());
                    }
                }
            }
            let last = last.ok_or_else(|| {
                CliError::Server(format!("the server at {} ended its answer to {path} without a report", self.base))
            })?;
            let value: serde_json::Value = self.decode(path, &last)?;
            if value.get("error").is_some() && value.get("message").is_some() {
                return Err(self.refused(path, &last));
            }
            self.decode(path, &last)
        })
    }

    fn decode<T: DeserializeOwned>(&self, path: &str, bytes: &[u8]) -> CliResult<T> {
        serde_json::from_slice(bytes).map_err(|e| {
            CliError::Server(format!("the server at {} answered {path} with something unexpected: {e}", self.base))
        })
    }

    fn unreachable(&self, path: &str, e: &reqwest::Error) -> CliError {
        CliError::Server(format!("cannot reach the cairn server at {} for {path}: {e}", self.base))
    }

    /// The server's error answer, as the command's error with the exit code its code means.
    fn refused(&self, path: &str, body: &[u8]) -> CliError {
        let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let code = value.get("error").and_then(|c| c.as_str()).unwrap_or("unknown");
        let message = value.get("message").and_then(|c| c.as_str()).unwrap_or("no message");
        CliError::Remote {
            message: format!("the server at {} refused {path}: {message}", self.base),
            exit: exit_of(code),
        }
    }
}

/// The exit code a server's error code stands for (see `crate::codes`).
fn exit_of(code: &str) -> Exit {
    match code {
        "corruption" | "backup_damaged" => Exit::Integrity,
        "invalid_input" | "invalid_body" | "invalid_query" => Exit::Usage,
        c if c.ends_with("not_found") => Exit::NotFound,
        _ => Exit::Error,
    }
}
