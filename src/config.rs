//! `cairn.toml`: the settings of `cairn serve`, from four layers, the first that has a setting
//! winning: its flag, its environment variable (`CAIRN_…`), the configuration file (`--config
//! FILE` or `CAIRN_CONFIG`), the built-in default. [`Settings::resolve`] is the one place that
//! merges them, so every value, wherever it came from, passes the same parse and the same
//! bounds, and a refusal names where the bad value was (the flag, the variable, or the file's key
//! and line) before the server opens anything.
//!
//! The file is read only when named: a data directory holds what the store writes and nothing
//! else (a restore replaces it whole), so no `DIR/cairn.toml` is looked for. An unknown key or
//! section is an error naming it and its line (every section is `deny_unknown_fields`), so a
//! misspelt setting never silently falls back to its default. Relative paths in the file are
//! resolved against the file's own directory.
//!
//! Adding a section (`[tiering]`, say): a struct of `Option<Spanned<toml::Value>>` fields with
//! `#[serde(default, deny_unknown_fields)]`, a field of [`File`], one [`Key`] per setting (its
//! file key, flag and variable), one `layers.get(..)` per setting in [`Settings::resolve`] with
//! its bounds as named constants, and the rows in docs/operations.md's table and example (the
//! example is parsed by this module's tests).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use log_engine::Durability;
use serde::Deserialize;
use toml::Spanned;

use crate::limits;

/// Fewest and most open client connections (`server.max_connections`).
pub const CONNECTIONS_MIN: usize = 1;
pub const CONNECTIONS_LIMIT: usize = 1 << 20;
/// Shortest and longest wait for a request's head or body (`server.header_timeout`,
/// `server.body_timeout`), keep-alive interval and long poll.
pub const TIMEOUT_MIN: Duration = Duration::from_millis(100);
pub const TIMEOUT_MAX: Duration = Duration::from_secs(24 * 3600);
/// Longest shutdown grace (`server.shutdown_grace`; 0 is allowed: stop at once).
pub const SHUTDOWN_GRACE_MAX: Duration = Duration::from_secs(3600);
/// Smallest and largest shared body budget (`server.body_budget`). Below one largest request
/// body counted [`limits::BODY_MEMORY_FACTOR`] times, the largest bodies are always refused
/// (503 overloaded), which a memory-starved server may prefer.
pub const BODY_BUDGET_MIN: u64 = 1 << 20;
pub const BODY_BUDGET_LIMIT: u64 = 1 << 40;
/// Smallest and largest writer queue (`log.writer_queue_bytes`): at least one largest batch.
pub const WRITER_QUEUE_MIN: u64 = log_engine::BATCH_BYTES_MAX as u64;
pub const WRITER_QUEUE_LIMIT: u64 = 1 << 34;
/// Shortest and longest fdatasync interval of `log.durability = "interval"`.
pub const SYNC_INTERVAL_MIN: Duration = Duration::from_millis(1);
pub const SYNC_INTERVAL_MAX: Duration = Duration::from_secs(1);
/// The default fdatasync interval of `log.durability = "interval"`.
pub const SYNC_INTERVAL_DEFAULT: Duration = Duration::from_millis(10);
/// Most events between checkpoints (`checkpoints.every_events`; 0: never by count).
pub const CHECKPOINT_EVENTS_LIMIT: u64 = 1_000_000_000;
/// Shortest and longest time between checkpoints (`checkpoints.every`; 0s: never by time).
pub const CHECKPOINT_EVERY_MIN: Duration = Duration::from_secs(1);
pub const CHECKPOINT_EVERY_MAX: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most incrementals between full checkpoints, and most full checkpoints kept.
pub const CHECKPOINT_FULL_EVERY_LIMIT: u32 = 10_000;
pub const CHECKPOINT_KEEP_FULL_LIMIT: usize = 10_000;
/// Longest `tiering.evict_after` (0s: evict as soon as archived).
pub const EVICT_AFTER_MAX: Duration = Duration::from_secs(3650 * 24 * 3600);
/// Largest `tiering.local_budget` and `tiering.cache_size` (0 is allowed: evict everything
/// archived; keep only the segment being read).
pub const TIER_BYTES_LIMIT: u64 = 1 << 50;

/// Why the settings were refused. Every message is a sentence naming the setting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read the configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, an unknown key or section, or a value of the wrong TOML type; toml's message
    /// names the key, its line and column.
    #[error("the configuration file {} is not valid: {}", path.display(), message.trim_end())]
    Syntax { path: PathBuf, message: String },
    #[error("{at} is {value:?}: {problem}")]
    Value { at: String, value: String, problem: String },
    #[error("{0}")]
    Conflict(String),
}

/// A setting's three names: its key in the file, its flag and its environment variable.
#[derive(Debug)]
pub struct Key {
    pub file: &'static str,
    pub flag: &'static str,
    pub env: &'static str,
}

macro_rules! keys {
    ($($name:ident = $file:literal, $flag:literal, $env:literal;)*) => {
        $(pub const $name: Key = Key { file: $file, flag: $flag, env: $env };)*
        /// Every setting, in the documentation's order.
        pub const KEYS: &[&Key] = &[$(&$name),*];
    };
}

keys! {
    LISTEN = "server.listen", "--listen", "CAIRN_LISTEN";
    AUTH = "server.auth", "--auth", "CAIRN_AUTH";
    ALLOW_REMOTE = "server.allow_remote", "--allow-remote", "CAIRN_ALLOW_REMOTE";
    TLS_CERT = "server.tls_cert", "--tls-cert", "CAIRN_TLS_CERT";
    TLS_KEY = "server.tls_key", "--tls-key", "CAIRN_TLS_KEY";
    INSECURE_NO_TLS = "server.insecure_no_tls", "--insecure-no-tls", "CAIRN_INSECURE_NO_TLS";
    MAX_CONNECTIONS = "server.max_connections", "--max-connections", "CAIRN_MAX_CONNECTIONS";
    HEADER_TIMEOUT = "server.header_timeout", "--header-timeout", "CAIRN_HEADER_TIMEOUT";
    BODY_TIMEOUT = "server.body_timeout", "--body-timeout", "CAIRN_BODY_TIMEOUT";
    BODY_BUDGET = "server.body_budget", "--body-budget", "CAIRN_BODY_BUDGET";
    SHUTDOWN_GRACE = "server.shutdown_grace", "--shutdown-grace", "CAIRN_SHUTDOWN_GRACE";
    SSE_KEEP_ALIVE = "server.sse_keep_alive", "--sse-keep-alive", "CAIRN_SSE_KEEP_ALIVE";
    DS_LONG_POLL_TIMEOUT = "server.ds_long_poll_timeout", "--ds-long-poll-timeout", "CAIRN_DS_LONG_POLL_TIMEOUT";
    SEGMENT_SIZE = "log.segment_size", "--segment-size", "CAIRN_SEGMENT_SIZE";
    DURABILITY = "log.durability", "--durability", "CAIRN_DURABILITY";
    SYNC_INTERVAL = "log.sync_interval", "--sync-interval", "CAIRN_SYNC_INTERVAL";
    WRITER_QUEUE_BYTES = "log.writer_queue_bytes", "--writer-queue-bytes", "CAIRN_WRITER_QUEUE_BYTES";
    CHECKPOINT_EVERY_EVENTS = "checkpoints.every_events", "--checkpoint-every-events", "CAIRN_CHECKPOINT_EVERY_EVENTS";
    CHECKPOINT_EVERY = "checkpoints.every", "--checkpoint-every", "CAIRN_CHECKPOINT_EVERY";
    CHECKPOINT_FULL_EVERY = "checkpoints.full_every", "--checkpoint-full-every", "CAIRN_CHECKPOINT_FULL_EVERY";
    CHECKPOINT_KEEP_FULL = "checkpoints.keep_full", "--checkpoint-keep-full", "CAIRN_CHECKPOINT_KEEP_FULL";
    ARCHIVE = "archive.url", "--archive", "CAIRN_ARCHIVE";
    EVICT_AFTER = "tiering.evict_after", "--evict-after", "CAIRN_EVICT_AFTER";
    LOCAL_BUDGET = "tiering.local_budget", "--local-budget", "CAIRN_LOCAL_BUDGET";
    TIER_CACHE = "tiering.cache_size", "--tier-cache", "CAIRN_TIER_CACHE";
    FOLLOW = "replica.follow", "--follow", "CAIRN_FOLLOW";
}

type Entry = Option<Spanned<toml::Value>>;

/// The file: every section optional, every key optional, nothing else accepted.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct File {
    server: ServerSection,
    log: LogSection,
    checkpoints: CheckpointSection,
    archive: ArchiveSection,
    tiering: TieringSection,
    replica: ReplicaSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ServerSection {
    listen: Entry,
    auth: Entry,
    allow_remote: Entry,
    tls_cert: Entry,
    tls_key: Entry,
    insecure_no_tls: Entry,
    max_connections: Entry,
    header_timeout: Entry,
    body_timeout: Entry,
    body_budget: Entry,
    shutdown_grace: Entry,
    sse_keep_alive: Entry,
    ds_long_poll_timeout: Entry,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct LogSection {
    segment_size: Entry,
    durability: Entry,
    sync_interval: Entry,
    writer_queue_bytes: Entry,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct CheckpointSection {
    every_events: Entry,
    every: Entry,
    full_every: Entry,
    keep_full: Entry,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ArchiveSection {
    url: Entry,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct TieringSection {
    evict_after: Entry,
    local_budget: Entry,
    cache_size: Entry,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ReplicaSection {
    follow: Entry,
}

/// What a setting's text may be. Flags are parsed by clap with the same function.
pub trait Setting: Sized {
    fn parse(text: &str) -> Result<Self, String>;
    /// The value as a user would write it, for messages.
    fn show(&self) -> String;
    /// The value as read from a file in `dir` (a relative path is relative to the file).
    fn in_file_dir(self, dir: &Path) -> Self {
        let _ = dir;
        self
    }
}

impl Setting for Duration {
    fn parse(text: &str) -> Result<Duration, String> {
        humantime::parse_duration(text.trim())
            .map_err(|_| "that is not a duration (write it like 30s, 500ms or 5m).".to_string())
    }
    fn show(&self) -> String {
        humantime::format_duration(*self).to_string()
    }
}

/// Whole numbers, written as digits.
macro_rules! whole_number_setting {
    ($($t:ty),*) => {$(
        impl Setting for $t {
            fn parse(text: &str) -> Result<$t, String> {
                text.trim().parse().map_err(|_| format!("that is not a whole number from 0 to {}.", <$t>::MAX))
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

whole_number_setting!(usize, u32, u64);

impl Setting for bool {
    fn parse(text: &str) -> Result<bool, String> {
        match text.trim() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err("it must be true or false.".to_string()),
        }
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Setting for SocketAddr {
    fn parse(text: &str) -> Result<SocketAddr, String> {
        text.trim()
            .parse()
            .map_err(|_| "that is not an address with a port (write it like 127.0.0.1:7070).".to_string())
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Setting for PathBuf {
    fn parse(text: &str) -> Result<PathBuf, String> {
        if text.is_empty() {
            return Err("a path cannot be empty.".to_string());
        }
        Ok(PathBuf::from(text))
    }
    fn show(&self) -> String {
        self.display().to_string()
    }
    fn in_file_dir(self, dir: &Path) -> PathBuf {
        dir.join(self)
    }
}

impl Setting for String {
    fn parse(text: &str) -> Result<String, String> {
        if text.trim().is_empty() {
            return Err("it cannot be empty.".to_string());
        }
        Ok(text.to_string())
    }
    fn show(&self) -> String {
        self.clone()
    }
}

impl Setting for bucket::Location {
    fn parse(text: &str) -> Result<bucket::Location, String> {
        bucket::Location::parse(text).map_err(|e| format!("{e}."))
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

/// A number of bytes: digits, optionally followed by KiB, MiB, GiB or TiB (powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl Setting for ByteSize {
    fn parse(text: &str) -> Result<ByteSize, String> {
        let text = text.trim();
        let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(digits);
        let shift = match unit.trim() {
            "" | "B" => 0,
            "KiB" => 10,
            "MiB" => 20,
            "GiB" => 30,
            "TiB" => 40,
            _ => return Err("that is not a size (write it like 1048576, 64KiB, 16MiB or 1GiB).".to_string()),
        };
        number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(1 << shift))
            .map(ByteSize)
            .ok_or_else(|| "that is not a size (write it like 1048576, 64KiB, 16MiB or 1GiB).".to_string())
    }
    fn show(&self) -> String {
        self.0.to_string()
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(text: &str) -> Result<ByteSize, String> {
        <ByteSize as Setting>::parse(text)
    }
}

/// How the log makes an append durable: `sync` (fdatasync before acknowledging, the default)
/// or `interval` (acknowledge after the write, fdatasync every `sync_interval`: a crash loses up
/// to one interval of acknowledged events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DurabilityMode {
    Sync,
    Interval,
}

impl Setting for DurabilityMode {
    fn parse(text: &str) -> Result<DurabilityMode, String> {
        match text.trim() {
            "sync" => Ok(DurabilityMode::Sync),
            "interval" => Ok(DurabilityMode::Interval),
            _ => Err("it must be \"sync\" or \"interval\".".to_string()),
        }
    }
    fn show(&self) -> String {
        match self {
            DurabilityMode::Sync => "sync",
            DurabilityMode::Interval => "interval",
        }
        .to_string()
    }
}

/// What the flags of `cairn serve` gave (`None` or `false`: not given).
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub listen: Option<SocketAddr>,
    pub auth: Option<PathBuf>,
    pub allow_remote: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub insecure_no_tls: bool,
    pub max_connections: Option<usize>,
    pub header_timeout: Option<Duration>,
    pub body_timeout: Option<Duration>,
    pub body_budget: Option<ByteSize>,
    pub shutdown_grace: Option<Duration>,
    pub sse_keep_alive: Option<Duration>,
    pub ds_long_poll_timeout: Option<Duration>,
    pub segment_size: Option<ByteSize>,
    pub durability: Option<DurabilityMode>,
    pub sync_interval: Option<Duration>,
    pub writer_queue_bytes: Option<ByteSize>,
    pub checkpoint_every_events: Option<u64>,
    pub checkpoint_every: Option<Duration>,
    pub checkpoint_full_every: Option<u32>,
    pub checkpoint_keep_full: Option<usize>,
    pub archive: Option<bucket::Location>,
    pub evict_after: Option<Duration>,
    pub local_budget: Option<ByteSize>,
    pub tier_cache: Option<ByteSize>,
    pub follow: Option<String>,
}

/// The log's settings, for [`crate::store::open_writer_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub segment_size: u64,
    pub durability: Durability,
    pub writer_queue_bytes: usize,
}

impl Default for LogSettings {
    fn default() -> LogSettings {
        let options = log_engine::Options::default();
        LogSettings {
            segment_size: options.segment_size,
            durability: options.durability,
            writer_queue_bytes: options.writer_queue_bytes,
        }
    }
}

/// Everything `cairn serve` runs with, resolved and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration file read, if any.
    pub file: Option<PathBuf>,
    pub listen: SocketAddr,
    pub auth: Option<PathBuf>,
    pub allow_remote: bool,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub insecure_no_tls: bool,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub body_budget: usize,
    pub shutdown_grace: Duration,
    pub sse_keep_alive: Duration,
    pub ds_long_poll_timeout: Duration,
    pub log: LogSettings,
    pub checkpoints: snapshotter::Policy,
    pub archive: Option<bucket::Location>,
    /// When the archiver evicts archived segments locally (tiering; needs `archive`).
    pub tiering: crate::tier::TierPolicy,
    /// Bytes of evicted segments fetched back that the server keeps.
    pub tier_cache: u64,
    pub follow: Option<String>,
}

/// The default address of `cairn serve`.
pub const LISTEN_DEFAULT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7070);

/// The layers below the flags: the environment and the file.
struct Layers<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    file: Option<(PathBuf, String)>,
}

impl Layers<'_> {
    /// The first layer's value of `key` (flag, variable, file), checked by `bounds`; `None`
    /// when no layer has it.
    fn get<T: Setting>(
        &self,
        key: &Key,
        flag: Option<T>,
        entry: &Entry,
        bounds: impl Fn(&T) -> Result<(), String>,
    ) -> Result<Option<T>, ConfigError> {
        let refuse = |at: String, value: String, problem: String| ConfigError::Value { at, value, problem };
        if let Some(value) = flag {
            bounds(&value).map_err(|p| refuse(key.flag.to_string(), value.show(), p))?;
            return Ok(Some(value));
        }
        if let Some(text) = (self.env)(key.env) {
            let value = T::parse(&text).map_err(|p| refuse(key.env.to_string(), text.clone(), p))?;
            bounds(&value).map_err(|p| refuse(key.env.to_string(), text, p))?;
            return Ok(Some(value));
        }
        let (Some(entry), Some((path, text))) = (entry, &self.file) else { return Ok(None) };
        let line = text[..entry.span().start.min(text.len())].matches('\n').count() + 1;
        let at = format!("{} (line {line} of {})", key.file, path.display());
        let raw = match entry.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(refuse(
                    at,
                    other.to_string(),
                    "it must be a string, a whole number or true/false (a size like \"64MiB\", a duration like \"30s\").".into(),
                ));
            }
        };
        let value = T::parse(&raw).map_err(|p| refuse(at.clone(), raw.clone(), p))?;
        bounds(&value).map_err(|p| refuse(at, raw, p))?;
        Ok(Some(value.in_file_dir(path.parent().unwrap_or(Path::new("")))))
    }
}

fn no_bounds<T>(_: &T) -> Result<(), String> {
    Ok(())
}

fn within<T: PartialOrd + Setting + Copy>(min: T, max: T) -> impl Fn(&T) -> Result<(), String> {
    move |v| {
        if *v < min || *v > max {
            Err(format!("it must be between {} and {}.", min.show(), max.show()))
        } else {
            Ok(())
        }
    }
}

/// `0` (never) or a value within `min..=max`.
fn zero_or_within<T: PartialOrd + Setting + Copy + Default>(min: T, max: T) -> impl Fn(&T) -> Result<(), String> {
    move |v| {
        if *v != T::default() && (*v < min || *v > max) {
            Err(format!("it must be 0 (never) or between {} and {}.", min.show(), max.show()))
        } else {
            Ok(())
        }
    }
}

fn segment_size_bounds(v: &ByteSize) -> Result<(), String> {
    let (min, max) = (log_engine::SEGMENT_SIZE_MIN, log_engine::SEGMENT_SIZE_MAX);
    if v.0 < min || v.0 > max || !v.0.is_multiple_of(4096) {
        return Err(format!("it must be a multiple of 4096 (4KiB) between {min} (64KiB) and {max} (4GiB)."));
    }
    Ok(())
}

impl Settings {
    /// The settings of `cairn serve`: each from its flag, else its variable (`env` looks one
    /// up), else `file` (read here), else its default; each checked against its bounds.
    pub fn resolve(
        flags: Flags,
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let (doc, text) = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
                let doc: File = toml::from_str(&text)
                    .map_err(|e| ConfigError::Syntax { path: path.to_path_buf(), message: e.to_string() })?;
                (doc, Some((path.to_path_buf(), text)))
            }
            None => (File::default(), None),
        };
        let layers = Layers { env, file: text };
        let (s, l, c) = (&doc.server, &doc.log, &doc.checkpoints);
        let timeout = || within(TIMEOUT_MIN, TIMEOUT_MAX);
        let tls_cert = layers.get(&TLS_CERT, flags.tls_cert, &s.tls_cert, no_bounds)?;
        let tls_key = layers.get(&TLS_KEY, flags.tls_key, &s.tls_key, no_bounds)?;
        let insecure_no_tls =
            layers.get(&INSECURE_NO_TLS, flags.insecure_no_tls.then_some(true), &s.insecure_no_tls, no_bounds)?;
        let tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Conflict(
                    "TLS needs both a certificate and its key: give tls_cert and tls_key (--tls-cert and --tls-key) together."
                        .into(),
                ))
            }
        };
        let insecure_no_tls = insecure_no_tls.unwrap_or(false);
        if tls.is_some() && insecure_no_tls {
            return Err(ConfigError::Conflict(
                "insecure_no_tls (--insecure-no-tls) cannot be set together with a TLS certificate.".into(),
            ));
        }
        let durability = layers.get(&DURABILITY, flags.durability, &l.durability, no_bounds)?;
        let sync_interval = layers
            .get(&SYNC_INTERVAL, flags.sync_interval, &l.sync_interval, within(SYNC_INTERVAL_MIN, SYNC_INTERVAL_MAX))?
            .unwrap_or(SYNC_INTERVAL_DEFAULT);
        let defaults = LogSettings::default();
        let log = LogSettings {
            segment_size: layers
                .get(&SEGMENT_SIZE, flags.segment_size, &l.segment_size, segment_size_bounds)?
                .map_or(defaults.segment_size, |b| b.0),
            durability: match durability {
                None => defaults.durability,
                Some(DurabilityMode::Sync) => Durability::Sync,
                Some(DurabilityMode::Interval) => Durability::Interval(sync_interval),
            },
            writer_queue_bytes: layers
                .get(
                    &WRITER_QUEUE_BYTES,
                    flags.writer_queue_bytes,
                    &l.writer_queue_bytes,
                    within(ByteSize(WRITER_QUEUE_MIN), ByteSize(WRITER_QUEUE_LIMIT)),
                )?
                .map_or(defaults.writer_queue_bytes, |b| usize::try_from(b.0).unwrap_or(usize::MAX)),
        };
        let policy = snapshotter::Policy::default();
        let checkpoints = snapshotter::Policy {
            every_events: match layers.get(
                &CHECKPOINT_EVERY_EVENTS,
                flags.checkpoint_every_events,
                &c.every_events,
                zero_or_within(1, CHECKPOINT_EVENTS_LIMIT),
            )? {
                None => policy.every_events,
                Some(0) => None,
                Some(n) => Some(n),
            },
            every_interval: match layers.get(
                &CHECKPOINT_EVERY,
                flags.checkpoint_every,
                &c.every,
                zero_or_within(CHECKPOINT_EVERY_MIN, CHECKPOINT_EVERY_MAX),
            )? {
                None => policy.every_interval,
                Some(Duration::ZERO) => None,
                Some(t) => Some(t),
            },
            full_every: layers
                .get(
                    &CHECKPOINT_FULL_EVERY,
                    flags.checkpoint_full_every,
                    &c.full_every,
                    within(0, CHECKPOINT_FULL_EVERY_LIMIT),
                )?
                .unwrap_or(policy.full_every),
            keep_full: layers
                .get(
                    &CHECKPOINT_KEEP_FULL,
                    flags.checkpoint_keep_full,
                    &c.keep_full,
                    within(1, CHECKPOINT_KEEP_FULL_LIMIT),
                )?
                .unwrap_or(policy.keep_full),
        };
        let t = &doc.tiering;
        let tier_bytes = || within(ByteSize(0), ByteSize(TIER_BYTES_LIMIT));
        let archive = layers.get(&ARCHIVE, flags.archive, &doc.archive.url, no_bounds)?;
        let tiering = crate::tier::TierPolicy {
            evict_after: layers.get(
                &EVICT_AFTER,
                flags.evict_after,
                &t.evict_after,
                within(Duration::ZERO, EVICT_AFTER_MAX),
            )?,
            local_budget: layers.get(&LOCAL_BUDGET, flags.local_budget, &t.local_budget, tier_bytes())?.map(|b| b.0),
        };
        if tiering.evicts() && archive.is_none() {
            return Err(ConfigError::Conflict(
                "tiering (evict_after, local_budget) evicts only what an archive holds: give archive.url (--archive) too."
                    .into(),
            ));
        }
        let tier_cache = layers
            .get(&TIER_CACHE, flags.tier_cache, &t.cache_size, tier_bytes())?
            .map_or(crate::tier::TIER_CACHE_DEFAULT, |b| b.0);
        Ok(Settings {
            file: file.map(Path::to_path_buf),
            listen: layers.get(&LISTEN, flags.listen, &s.listen, no_bounds)?.unwrap_or(LISTEN_DEFAULT),
            auth: layers.get(&AUTH, flags.auth, &s.auth, no_bounds)?,
            allow_remote: layers
                .get(&ALLOW_REMOTE, flags.allow_remote.then_some(true), &s.allow_remote, no_bounds)?
                .unwrap_or(false),
            tls,
            insecure_no_tls,
            max_connections: layers
                .get(
                    &MAX_CONNECTIONS,
                    flags.max_connections,
                    &s.max_connections,
                    within(CONNECTIONS_MIN, CONNECTIONS_LIMIT),
                )?
                .unwrap_or(limits::CONNECTIONS_MAX),
            header_timeout: layers
                .get(&HEADER_TIMEOUT, flags.header_timeout, &s.header_timeout, timeout())?
                .unwrap_or(limits::HEADER_READ_TIMEOUT),
            body_timeout: layers
                .get(&BODY_TIMEOUT, flags.body_timeout, &s.body_timeout, timeout())?
                .unwrap_or(limits::BODY_READ_TIMEOUT),
            body_budget: layers
                .get(
                    &BODY_BUDGET,
                    flags.body_budget,
                    &s.body_budget,
                    within(ByteSize(BODY_BUDGET_MIN), ByteSize(BODY_BUDGET_LIMIT)),
                )?
                .map_or(limits::BODY_BYTES_IN_FLIGHT_MAX, |b| usize::try_from(b.0).unwrap_or(usize::MAX)),
            shutdown_grace: layers
                .get(
                    &SHUTDOWN_GRACE,
                    flags.shutdown_grace,
                    &s.shutdown_grace,
                    within(Duration::ZERO, SHUTDOWN_GRACE_MAX),
                )?
                .unwrap_or(limits::SHUTDOWN_GRACE),
            sse_keep_alive: layers
                .get(&SSE_KEEP_ALIVE, flags.sse_keep_alive, &s.sse_keep_alive, timeout())?
                .unwrap_or(limits::SSE_KEEP_ALIVE),
            ds_long_poll_timeout: layers
                .get(&DS_LONG_POLL_TIMEOUT, flags.ds_long_poll_timeout, &s.ds_long_poll_timeout, timeout())?
                .unwrap_or(limits::LONG_POLL_TIMEOUT),
            log,
            checkpoints,
            archive,
            tiering,
            tier_cache,
            follow: layers.get(&FOLLOW, flags.follow, &doc.replica.follow, no_bounds)?,
        })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, {})", self.file, self.flag, self.env)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// The example file of docs/operations.md, as the reader sees it.
    fn documented_example() -> String {
        let doc = include_str!("../docs/operations.md");
        let after = doc.split("<!-- example: cairn.toml -->\n```toml\n").nth(1).expect("the example's marker");
        after.split("\n```").next().unwrap().to_string()
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("cairn.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Why the file at `path`, alone, is refused.
    fn refused(path: &Path) -> String {
        Settings::resolve(Flags::default(), Some(path), &|_| None).unwrap_err().to_string()
    }

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn the_documented_example_parses_to_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &documented_example());
        let from_file = Settings::resolve(Flags::default(), Some(&path), &|_| None).unwrap();
        let defaults = Settings::resolve(Flags::default(), None, &|_| None).unwrap();
        assert_eq!(format!("{:?}", Settings { file: None, ..from_file }), format!("{defaults:?}"));
    }

    #[test]
    fn every_key_of_the_example_is_a_setting_and_every_setting_is_in_the_example() {
        let example = documented_example();
        for key in KEYS {
            let (section, name) = key.file.split_once('.').unwrap();
            assert!(example.contains(&format!("[{section}]")), "{key} has no section in the example");
            assert!(example.contains(&format!("{name} = ")), "{key} is not in the example");
            assert!(example.contains(key.flag) && example.contains(key.env), "{key}'s flag or variable is not named");
        }
    }

    #[test]
    fn a_flag_beats_its_variable_which_beats_the_file_which_beats_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let path =
            write(dir.path(), "[server]\nheader_timeout = \"7s\"\nbody_timeout = \"8s\"\nsse_keep_alive = \"9s\"\n");
        let env = env_of(&[("CAIRN_HEADER_TIMEOUT", "5s"), ("CAIRN_BODY_TIMEOUT", "6s")]);
        let flags = Flags { header_timeout: Some(Duration::from_secs(4)), ..Flags::default() };
        let s = Settings::resolve(flags, Some(&path), &env).unwrap();
        assert_eq!(s.header_timeout, Duration::from_secs(4), "the flag wins over the variable and the file");
        assert_eq!(s.body_timeout, Duration::from_secs(6), "the variable wins over the file");
        assert_eq!(s.sse_keep_alive, Duration::from_secs(9), "the file wins over the default");
        assert_eq!(s.shutdown_grace, limits::SHUTDOWN_GRACE, "the default when nothing gives it");
    }

    #[test]
    fn an_unknown_key_is_refused_naming_it_and_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "[server]\nlisten = \"127.0.0.1:1\"\n\n[log]\nsegment_sise = \"1MiB\"\n");
        let e = refused(&path);
        assert!(e.contains("segment_sise") && e.contains("line 5"), "{e}");
        let path = write(dir.path(), "[tiring]\nage = \"1d\"\n");
        let e = refused(&path);
        assert!(e.contains("tiring") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn a_value_out_of_bounds_is_refused_naming_where_it_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "[log]\ndurability = \"sync\"\nsegment_size = \"1000\"\n");
        let e = refused(&path);
        assert!(e.starts_with("log.segment_size (line 3 of "), "{e}");
        assert!(e.contains("multiple of 4096"), "{e}");
        let e = Settings::resolve(Flags::default(), None, &env_of(&[("CAIRN_CHECKPOINT_KEEP_FULL", "0")]))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "CAIRN_CHECKPOINT_KEEP_FULL is \"0\": it must be between 1 and 10000.");
        let flags = Flags { max_connections: Some(0), ..Flags::default() };
        let e = Settings::resolve(flags, None, &|_| None).unwrap_err().to_string();
        assert_eq!(e, "--max-connections is \"0\": it must be between 1 and 1048576.");
        let path = write(dir.path(), "[server]\nheader_timeout = 30\n");
        let e = refused(&path);
        assert!(e.contains("server.header_timeout (line 2") && e.contains("not a duration"), "{e}");
        let path = write(dir.path(), "[server]\nlisten = [1]\n");
        let e = refused(&path);
        assert!(e.contains("server.listen (line 2") && e.contains("a whole number"), "{e}");
        let path = write(dir.path(), "[log]\nsegment_size = 1.5\n");
        let e = refused(&path);
        assert!(e.contains("log.segment_size (line 2") && e.contains("a whole number"), "{e}");
    }

    #[test]
    fn the_file_sets_the_log_and_the_checkpoint_policy_and_its_paths_are_relative_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "[server]\nauth = \"auth.toml\"\n[log]\nsegment_size = \"64KiB\"\ndurability = \"interval\"\n\
             sync_interval = \"5ms\"\n[checkpoints]\nevery_events = 0\nevery = \"0s\"\nkeep_full = 3\n",
        );
        let s = Settings::resolve(Flags::default(), Some(&path), &|_| None).unwrap();
        assert_eq!(s.auth, Some(dir.path().join("auth.toml")));
        assert_eq!(s.log.segment_size, 64 * 1024);
        assert_eq!(s.log.durability, Durability::Interval(Duration::from_millis(5)));
        assert_eq!(s.checkpoints.every_events, None, "0 means never by count");
        assert_eq!(s.checkpoints.every_interval, None, "0s means never by time");
        assert_eq!(s.checkpoints.keep_full, 3);
    }

    #[test]
    fn sizes_take_binary_units_and_refuse_anything_else() {
        assert_eq!(ByteSize::parse("4096"), Ok(ByteSize(4096)));
        assert_eq!(ByteSize::parse("64KiB"), Ok(ByteSize(64 << 10)));
        assert_eq!(ByteSize::parse("16 MiB"), Ok(ByteSize(16 << 20)));
        assert!(ByteSize::parse("1.5GiB").is_err());
        assert!(ByteSize::parse("16MB").is_err());
        assert!(ByteSize::parse("99999999999TiB").is_err(), "an overflow is refused, not wrapped");
        assert!(ByteSize::parse("").is_err());
    }

    #[test]
    fn tls_needs_both_files() {
        let flags = Flags { tls_cert: Some("c.pem".into()), ..Flags::default() };
        let e = Settings::resolve(flags, None, &|_| None).unwrap_err().to_string();
        assert!(e.contains("tls_cert and tls_key"), "{e}");
    }
}
