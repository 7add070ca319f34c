//! `cairn serve`: the HTTP API (axum on tokio) over one open log.
//!
//! Invariants:
//! - One process owns the data directory: the log is opened (and locked) before the socket is
//!   bound, so a second server fails with the lock error and binds nothing.
//! - Without `--auth` the server listens only on a loopback address unless `--allow-remote` is
//!   given, and it says at start that auth is off. Without TLS (`--tls-cert`, `--tls-key`) it
//!   listens only on a loopback address unless `--insecure-no-tls` is given, and it says why
//!   that is insecure at every start.
//! - The bound address is printed on stdout as `listening on http://ADDR` (`https://` with TLS;
//!   so `--listen 127.0.0.1:0` is usable by scripts and tests); logs go to stderr.
//! - Shutdown (SIGINT or SIGTERM): stop accepting, end every subscription, let in-flight
//!   requests finish (their appends are committed and answered), then close the log, which
//!   syncs and stops its writer.
//!
//! The routes are declared once, in `api`: the router and `/openapi.json`'s paths both come from
//! it (utoipa-axum), so the two cannot disagree. The endpoints live in [`log_api`],
//! [`lifecycle`], [`subscribe`], the views' modules and [`ops`]; errors in [`error`]; what becomes of a body a
//! handler answered without reading, in [`drain`].

pub mod access;
pub mod admin;
pub mod audit;
pub mod checkpoints;
pub mod drain;
pub mod durable;
pub mod error;
pub mod extract;
pub mod keys;
pub mod kv;
pub mod lifecycle;
pub mod log_api;
pub mod meta;
pub mod metrics;
pub mod msgpack;
pub mod online;
pub mod ops;
pub mod query_check;
pub mod replication;
pub mod scavenge;
pub mod subscribe;
pub mod tls;
pub mod views;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use log_engine::Log;
use tokio::sync::watch;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Auth, AuthFileError};
use crate::codes::Exit;
use crate::limits;
use crate::store::{Store, StoreError};

/// Arguments of `cairn serve`. Every setting but `--config`, `--log-json` and
/// `--follow-token` may also come from its environment variable and from the configuration
/// file (see [`crate::config`]): a flag wins over its variable, which wins over the file.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The configuration file (TOML; see docs/operations.md "Configuration"). A flag or
    /// CAIRN_* variable overrides the file's value of the same setting.
    #[arg(long, value_name = "FILE", env = "CAIRN_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to listen on (port 0 picks a free port) [default: 127.0.0.1:7070].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Auth file (TOML): bearer-token hashes and per-principal rules. Without it every client
    /// that can reach the server may do everything, so only loopback addresses are allowed.
    #[arg(long, value_name = "FILE")]
    pub auth: Option<PathBuf>,

    /// Allow listening on a non-loopback address without --auth.
    #[arg(long)]
    pub allow_remote: bool,

    /// TLS certificate chain (PEM, leaf first). With --tls-key the server speaks only HTTPS;
    /// SIGHUP reloads both files.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Allow listening on a non-loopback address without TLS: bearer tokens and data then cross
    /// the network in plain text (for a TLS-terminating proxy in front, say).
    #[arg(long, conflicts_with = "tls_cert")]
    pub insecure_no_tls: bool,

    /// Write logs as JSON lines (structured) instead of text.
    #[arg(long)]
    pub log_json: bool,

    /// Most open client connections; more are accepted and closed at once. Lowered at start to
    /// what the file-descriptor limit allows (see docs/http-api.md) [default: 4096].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// Longest wait for a request's head, on a new connection or an idle kept-alive one
    /// [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub header_timeout: Option<Duration>,

    /// Longest a request body may take to arrive once the server starts reading it [default:
    /// 60s].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub body_timeout: Option<Duration>,

    /// Memory all requests together may hold for their bodies at once, each body byte counted
    /// 3 times (raw and parsed); 503 overloaded beyond [default: 256MiB].
    #[arg(long, value_name = "BYTES")]
    pub body_budget: Option<crate::config::ByteSize>,

    /// On SIGTERM or SIGINT: how long in-flight requests may take to finish before the server
    /// exits anyway [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub shutdown_grace: Option<Duration>,

    /// How often an idle subscription sends the comment `: keep-alive` [default: 15s].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub sse_keep_alive: Option<Duration>,

    /// Capacity of each new segment file (a multiple of 4KiB, 64KiB to 4GiB); a new log's
    /// first segment starts at 1MiB or this, if smaller, and each next one doubles up to it
    /// [default: 128MiB].
    #[arg(long, value_name = "BYTES")]
    pub segment_size: Option<crate::config::ByteSize>,

    /// When an append is acknowledged: `sync` after its fdatasync (survives power loss), or
    /// `interval`: after its write, with an fdatasync every --sync-interval (a crash loses up to
    /// one interval of acknowledged events) [default: sync].
    #[arg(long, value_name = "MODE")]
    pub durability: Option<crate::config::DurabilityMode>,

    /// With --durability interval: how often the log fdatasyncs (1ms to 1s) [default: 10ms].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub sync_interval: Option<Duration>,

    /// Most bytes of appends waiting for the writer; beyond it appends are refused with 503
    /// overloaded [default: 64MiB].
    #[arg(long, value_name = "BYTES")]
    pub writer_queue_bytes: Option<crate::config::ByteSize>,

    /// Take a checkpoint after this many events (0: never by count) [default: 100000].
    #[arg(long, value_name = "N")]
    pub checkpoint_every_events: Option<u64>,

    /// Take a checkpoint at least this often when events arrived (0s: never by time)
    /// [default: 5m].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub checkpoint_every: Option<Duration>,

    /// After this many incremental checkpoints in a row, take a full one (0: always full)
    /// [default: 16].
    #[arg(long, value_name = "N")]
    pub checkpoint_full_every: Option<u32>,

    /// Full checkpoints kept, each with the incrementals after it (at least 1) [default: 2].
    #[arg(long, value_name = "N")]
    pub checkpoint_keep_full: Option<usize>,

    /// Archive every sealed segment and checkpoint, continuously, to this location
    /// (`s3://BUCKET/PREFIX` with the AWS_* settings from the environment, or a local
    /// directory): `cairn restore --from` and `cairn drill --from` read it. Appends never wait on
    /// it; its lag is in /metrics and /healthz. (The global `--archive`, given to `serve`.)
    #[arg(skip)]
    pub archive: Option<bucket::Location>,

    /// Tiering: evict a sealed segment locally once it is archived and older than this (since
    /// it was sealed); it is read back from the archive when needed. Needs --archive.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub evict_after: Option<Duration>,

    /// Tiering: evict archived sealed segments locally, oldest first, while the local ones take
    /// more than this many bytes. Needs --archive.
    #[arg(long, value_name = "BYTES")]
    pub local_budget: Option<crate::config::ByteSize>,

    /// Tiering: bytes of evicted segments fetched back from the archive that the server keeps
    /// (least recently read dropped first; at least the one being read) [default: 1 GiB].
    #[arg(long, value_name = "BYTES")]
    pub tier_cache: Option<crate::config::ByteSize>,

    /// How long a Durable Streams long-poll read waits for data before answering 204 [default:
    /// 20s].
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub ds_long_poll_timeout: Option<Duration>,
    /// Serve a read replica of the cairn server at URL (e.g. http://10.0.0.5:7070): the data
    /// directory becomes a checked copy of the leader's log, kept current; reads, subscriptions
    /// and views are served from it, and writes are refused with 421 read_only_replica.
    #[arg(long, value_name = "URL")]
    pub follow: Option<String>,

    /// The bearer token (with `admin`) the replica presents to the leader of --follow.
    #[arg(long, value_name = "TOKEN", env = "CAIRN_FOLLOW_TOKEN", hide_env_values = true)]
    pub follow_token: Option<String>,
}

fn duration(text: &str) -> Result<Duration, String> {
    <Duration as crate::config::Setting>::parse(text)
}

impl ServeArgs {
    /// What the flags gave, for [`crate::config::Settings::resolve`].
    pub fn flags(&self) -> crate::config::Flags {
        crate::config::Flags {
            listen: self.listen,
            auth: self.auth.clone(),
            allow_remote: self.allow_remote,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            insecure_no_tls: self.insecure_no_tls,
            max_connections: self.max_connections,
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            body_budget: self.body_budget,
            shutdown_grace: self.shutdown_grace,
            sse_keep_alive: self.sse_keep_alive,
            ds_long_poll_timeout: self.ds_long_poll_timeout,
            segment_size: self.segment_size,
            durability: self.durability,
            sync_interval: self.sync_interval,
            writer_queue_bytes: self.writer_queue_bytes,
            checkpoint_every_events: self.checkpoint_every_events,
            checkpoint_every: self.checkpoint_every,
            checkpoint_full_every: self.checkpoint_full_every,
            checkpoint_keep_full: self.checkpoint_keep_full,
            archive: self.archive.clone(),
            evict_after: self.evict_after,
            local_budget: self.local_budget,
            tier_cache: self.tier_cache,
            follow: self.follow.clone(),
        }
    }

    /// The settings these flags, the environment and the configuration file give.
    pub fn settings(&self) -> Result<crate::config::Settings, crate::config::ConfigError> {
        crate::config::Settings::resolve(self.flags(), self.config.as_deref(), &|name| std::env::var(name).ok())
    }
}

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    pub log: Log,
    /// The views and checkpoints of `log`.
    pub store: Store,
    pub dir: PathBuf,
    pub auth: Option<Auth>,
    pub metrics: metrics::ServerMetrics,
    /// Becomes true when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    pub verify_lock: tokio::sync::Mutex<()>,
    /// The bounds every request body shares: in-flight bytes and read timeout.
    pub body_limits: drain::BodyLimits,
    /// How often an idle subscription sends `: keep-alive`.
    pub sse_keep_alive: Duration,
    /// The rate bound of the access audit's denial entries.
    pub access_audit: access::AccessAudit,
    /// Serialises token changes, so the token stream's order is the order they took effect.
    pub token_lock: tokio::sync::Mutex<()>,
    /// `--archive`: the archiver, running on its own thread.
    pub archiver: Option<crate::archive::Archiver>,
    /// The Durable Streams protocol's per-stream state and settings.
    pub durable: durable::Durable,
    /// Set on a read replica (`--follow`): the follower keeping the log current.
    pub replica: Option<Arc<crate::replica::Follower>>,
    /// One backup at a time, and one drill (see [`online`]).
    pub backup_lock: tokio::sync::Mutex<()>,
    pub drill_lock: tokio::sync::Mutex<()>,
    /// The scavenge jobs: the running one and the newest finished ones.
    pub scavenges: scavenge::ScavengeJobs,
    /// When the log acknowledges an append (`log.durability`), for `/healthz`.
    pub durability: log_engine::Durability,
}

impl AppState {
    /// What the views and checkpoints report, for `/metrics`.
    pub fn views_report(&self) -> metrics::ViewsReport {
        metrics::ViewsReport {
            status: self.store.views().status(),
            checkpoint: self.store.last_checkpoint(),
            archive: self.archiver.as_ref().map(|a| a.status_of(&self.log)),
        }
    }
}

/// Every endpoint, declared once: each `routes!` call names the handlers of one path, and each
/// handler's `#[utoipa::path]` annotation gives both its method and path for the router and its
/// operation for `/openapi.json`, so a route cannot be served undocumented or documented
/// unserved. (`tests/http_openapi.rs` holds the one thing left to care: a `routes!` call must
/// not mix paths, or every path in it would take every method in it.)
fn api() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(ops::ApiDoc::openapi())
        .routes(routes!(log_api::append, log_api::read_stream))
        .routes(routes!(log_api::append_multi))
        .routes(routes!(log_api::read_all))
        .routes(routes!(log_api::event_at))
        .routes(routes!(subscribe::subscribe))
        .routes(routes!(log_api::list_streams))
        .routes(routes!(lifecycle::stream_info, lifecycle::delete_stream))
        .routes(routes!(lifecycle::get_metadata, lifecycle::put_metadata))
        .routes(routes!(lifecycle::close_stream))
        .routes(routes!(lifecycle::fork_stream))
        .routes(routes!(lifecycle::erase_range))
        .routes(routes!(log_api::head))
        .routes(routes!(log_api::verify))
        .routes(routes!(kv::list))
        .routes(routes!(kv::get_many))
        .routes(routes!(kv::txn))
        .routes(routes!(kv::get_key, kv::exists, kv::put_key, kv::delete_key))
        .routes(routes!(kv::incr))
        .routes(routes!(kv::append))
        .routes(routes!(kv::push))
        .routes(routes!(kv::pop))
        .routes(routes!(kv::range))
        .routes(routes!(kv::sadd))
        .routes(routes!(kv::srem))
        .routes(routes!(kv::members))
        .routes(routes!(kv::history))
        .routes(routes!(audit::append, audit::query))
        .routes(routes!(audit::get))
        .routes(routes!(audit::proof))
        .routes(routes!(meta::subjects))
        .routes(routes!(meta::register_schema))
        .routes(routes!(meta::get_schema))
        .routes(routes!(meta::set_compatibility, meta::get_compatibility))
        .routes(routes!(meta::validate))
        .routes(routes!(meta::services))
        .routes(routes!(meta::register_instance, meta::deregister_instance))
        .routes(routes!(meta::set_config, meta::get_config, meta::delete_config))
        .routes(routes!(meta::config_history))
        .routes(routes!(meta::relate, meta::unrelate))
        .routes(routes!(meta::relations))
        .routes(routes!(checkpoints::take, checkpoints::list))
        .routes(routes!(admin::list, admin::add))
        .routes(routes!(admin::change_rules, admin::revoke))
        .routes(routes!(replication::segments))
        .routes(routes!(replication::fetch))
        .routes(routes!(online::backup))
        .routes(routes!(online::drill))
        .routes(routes!(online::stats))
        .routes(routes!(scavenge::start))
        .routes(routes!(scavenge::job))
        .routes(routes!(keys::rotate_key))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi))
}

/// This API's OpenAPI document, as `/openapi.json` serves it and [`query_check`] reads it.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(|| ops::finish_document(api().into_openapi()));
    &DOCUMENT
}

/// What `cairn serve` adds to the API's router before serving it (the binary passes the `/mcp`
/// mount): a function of the finished router, so that this module depends on none of it.
pub type Mount = fn(Router, Arc<AppState>) -> Router;

/// The router with every endpoint.
pub fn api_router(state: Arc<AppState>) -> Router {
    let (routes, _) = api().split_for_parts();
    routes
        .route(durable::ROUTE, axum::routing::any(durable::handle))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(axum::middleware::from_fn(query_check::refuse_unknown))
        .layer(axum::middleware::from_fn_with_state(state.clone(), replication::refuse_writes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), access::audit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(axum::middleware::from_fn_with_state(state.clone(), drain::finish_body))
        .with_state(state)
}

/// Counts and logs every request by its route (the matched path, not the URL, so that the
/// metric's label set stays bounded).
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let route = matched.as_ref().map_or("(unmatched)", MatchedPath::as_str);
    let elapsed = started.elapsed();
    // A client may send any method name: only the standard ones become labels.
    let method_label = match method {
        Method::GET | Method::HEAD | Method::POST | Method::PUT | Method::DELETE | Method::PATCH | Method::OPTIONS => {
            method.as_str()
        }
        _ => "other",
    };
    state.metrics.record_request(method_label, route, status, elapsed.as_secs_f64());
    let micros = elapsed.as_micros() as u64;
    if status >= 500 {
        tracing::warn!(%method, route, status, micros, "request failed");
    } else {
        tracing::debug!(%method, route, status, micros, "request");
    }
    response
}

/// How often the server asks the checkpoint policy whether a checkpoint is due.
const CHECKPOINT_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Why `cairn serve` could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error("{0}")]
    Auth(#[from] AuthFileError),
    /// Listening on a non-loopback address without auth and without `--allow-remote`.
    #[error(
        "refusing to listen on {0} without --auth: anyone on the network could read and append. \
         Pass --auth FILE (see `cairn token`), listen on 127.0.0.1, or pass --allow-remote to accept the risk"
    )]
    NoAuthRemote(SocketAddr),
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error("cannot replay the token stream $auth:tokens: {0}")]
    Tokens(#[source] log_engine::Error),
    /// Listening on a non-loopback address without TLS and without `--insecure-no-tls`.
    #[error(
        "refusing to listen on {0} without TLS: bearer tokens and data would cross the network in plain text. \
         Pass --tls-cert FILE --tls-key FILE, listen on 127.0.0.1, or pass --insecure-no-tls to accept the risk"
    )]
    NoTlsRemote(SocketAddr),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("start the async runtime for serve: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the bound address: {0}")]
    BoundAddress(#[source] std::io::Error),
    #[error("cannot start the archiver thread: {0}")]
    Archive(#[source] std::io::Error),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
}

impl ServeError {
    /// The command line's exit code: 2 for a refused `--listen`, the store's for a failed open.
    pub fn exit(&self) -> Exit {
        match self {
            ServeError::NoAuthRemote(_) | ServeError::NoTlsRemote(_) | ServeError::Config(_) => Exit::Usage,
            ServeError::Store(e) => e.code().exit,
            _ => Exit::Error,
        }
    }
}

/// `cairn serve`: runs until SIGINT or SIGTERM.
pub fn serve_blocking(dir: &Path, args: ServeArgs, mount: Mount) -> Result<(), ServeError> {
    let settings = args.settings()?;
    if let Some(file) = &settings.file {
        tracing::info!(file = %file.display(), "configuration file read");
    }
    if let log_engine::Durability::Interval(every) = settings.log.durability {
        tracing::warn!(
            sync_interval = ?every,
            "durability is \"interval\": appends are acknowledged BEFORE their fdatasync, and a crash or power \
             loss can lose up to one sync interval of acknowledged events; use \"sync\" unless that loss is acceptable"
        );
    }
    let auth = settings.auth.as_deref().map(Auth::load).transpose()?;
    if auth.is_none() && !settings.listen.ip().is_loopback() && !settings.allow_remote {
        return Err(ServeError::NoAuthRemote(settings.listen));
    }
    let tls = match &settings.tls {
        Some((cert, key)) => Some(Arc::new(tls::Tls::load(cert, key)?)),
        None => None,
    };
    if tls.is_none() && !settings.listen.ip().is_loopback() && !settings.insecure_no_tls {
        return Err(ServeError::NoTlsRemote(settings.listen));
    }
    // A replica's mirror holds the directory's lock; its server reads the mirror.
    let mirror =
        settings.follow.as_ref().map(|_| log_engine::Mirror::open(dir).map_err(StoreError::open(dir))).transpose()?;
    // With an archive, evicted segments (tiering) are read back from it.
    let tiering = match &settings.archive {
        Some(location) => Some(crate::tier::tiering(dir, location, settings.tier_cache).map_err(ServeError::Archive)?),
        None => None,
    };
    let log = match &mirror {
        Some(_) => crate::store::open_reader(dir)?,
        None => crate::store::open_writer_with(dir, &settings.log, tiering)?,
    };
    let store = open_store(log, settings.checkpoints.clone())?;
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("cairn-http").build() {
        Ok(runtime) => runtime,
        Err(e) => {
            store.close();
            return Err(ServeError::Runtime(e));
        }
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let follower = match (mirror, &settings.follow) {
        (Some(mirror), Some(leader)) => {
            match crate::replica::start(mirror, store.log().clone(), leader, args.follow_token.clone(), stop_rx.clone())
            {
                Ok(started) => Some(started),
                Err(e) => {
                    store.close();
                    return Err(ServeError::Runtime(e));
                }
            }
        }
        _ => None,
    };
    let (replica, follow_thread) = follower.map_or((None, None), |(f, t)| (Some(f), Some(t)));
    let archiver = match &settings.archive {
        Some(location) => {
            match crate::archive::Archiver::start(store.log().clone(), dir, location.clone(), settings.tiering) {
                Ok(archiver) => {
                    tracing::info!(archive = %location, "archiving sealed segments and checkpoints");
                    Some(archiver)
                }
                Err(e) => {
                    store.close();
                    return Err(ServeError::Archive(e));
                }
            }
        }
        None => None,
    };
    let state = Arc::new(AppState {
        log: store.log().clone(),
        store,
        dir: dir.to_path_buf(),
        auth,
        metrics: metrics::ServerMetrics::default(),
        shutdown: stop_rx,
        verify_lock: tokio::sync::Mutex::new(()),
        body_limits: drain::BodyLimits::new(settings.body_budget, settings.body_timeout),
        sse_keep_alive: settings.sse_keep_alive,
        access_audit: access::AccessAudit::default(),
        token_lock: tokio::sync::Mutex::new(()),
        archiver,
        durable: durable::Durable {
            long_poll_timeout: settings.ds_long_poll_timeout,
            https: tls.is_some(),
            ..durable::Durable::default()
        },
        replica,
        backup_lock: tokio::sync::Mutex::new(()),
        drill_lock: tokio::sync::Mutex::new(()),
        scavenges: scavenge::ScavengeJobs::default(),
        durability: settings.log.durability,
    });
    if let Some(auth) = &state.auth {
        match admin::replay_tokens(&state.log, auth) {
            Ok(n) => tracing::info!(changes = n, principals = auth.principals(), "token stream replayed"),
            Err(e) => {
                drop(runtime);
                state.store.close();
                return Err(ServeError::Tokens(e));
            }
        }
    }
    let _ = state.metrics.body_limits.set(state.body_limits.clone());
    if let Some(follower) = &state.replica {
        let _ = state.metrics.replica.set(follower.clone());
    }
    let result = runtime.block_on(serve(state.clone(), stop_tx, tls, &settings, mount));
    // Waits for blocking tasks (view writes, checkpoints) that are still running.
    drop(runtime);
    // The shutdown signal stopped the follower too; its mirror (and lock) go with it.
    if let Some(thread) = follow_thread {
        let _ = thread.join();
    }
    // In-flight requests have finished: stop the archiver and the views, then close the log
    // (which syncs and joins the writer).
    if let Some(archiver) = &state.archiver {
        archiver.stop();
    }
    state.store.close();
    tracing::info!("log closed; server stopped");
    result
}

/// Opens the views (restoring them from checkpoints) and says what the restore did.
fn open_store(log: Log, policy: snapshotter::Policy) -> Result<Store, StoreError> {
    let started = Instant::now();
    let (store, restored) = Store::open(log, policy, &mut |_| {})?;
    tracing::info!(
        checkpoint = restored.checkpoint.as_ref().map(|c| c.sequence),
        checkpoints_loaded = restored.checkpoints_loaded,
        replayed_events = restored.replayed.events,
        warnings = restored.warnings.len(),
        millis = started.elapsed().as_millis() as u64,
        "views restored"
    );
    Ok(store)
}

/// Takes the checkpoints the policy asks for, until shutdown.
async fn checkpoint_loop(state: Arc<AppState>) {
    let mut stop = state.shutdown.clone();
    let mut tick = tokio::time::interval(CHECKPOINT_CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let task_state = state.clone();
        match tokio::task::spawn_blocking(move || task_state.store.checkpoint_if_due()).await {
            Ok(Ok(Some(info))) => {
                tracing::info!(sequence = info.sequence, position = info.position.0, kind = %info.kind, "checkpoint taken");
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the policy's checkpoint failed; the next check tries again"),
            Err(e) => tracing::error!(error = %e, "the checkpoint task failed"),
        }
    }
}

/// Raises the soft file-descriptor limit to the hard one (each connection is a descriptor),
/// and answers how many connections fit beside [`limits::FD_RESERVE`] descriptors kept for the
/// log, the views and the runtime.
fn connection_cap(requested: usize) -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    let mut soft = limit.current;
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::info!(from = ?limit.current, to = ?limit.maximum, "raised the soft file-descriptor limit to the hard limit");
                soft = limit.maximum;
            }
            Err(e) => tracing::warn!(error = %e, soft = ?limit.current, "cannot raise the soft file-descriptor limit"),
        }
    }
    let fit = soft.map_or(usize::MAX, |n| usize::try_from(n.saturating_sub(limits::FD_RESERVE)).unwrap_or(usize::MAX));
    if fit < requested {
        tracing::warn!(
            requested,
            allowed = fit,
            fd_limit = ?soft,
            reserve = limits::FD_RESERVE,
            "the file-descriptor limit leaves room for fewer connections than --max-connections; using the lower cap"
        );
    }
    requested.min(fit).max(1)
}

/// Counts an open connection for as long as its task lives.
struct ConnectionSlot {
    state: Arc<AppState>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.state.metrics.connections.dec();
    }
}

/// The accept loop. Every connection takes a slot of the cap (none left: it is closed at once),
/// is served by hyper's HTTP/1 with the header (and idle) timeout, and on shutdown is asked to
/// finish its current request and close; the whole shutdown is bounded by `--shutdown-grace`.
async fn serve(
    state: Arc<AppState>,
    stop_tx: watch::Sender<bool>,
    tls: Option<Arc<tls::Tls>>,
    args: &crate::config::Settings,
    mount: Mount,
) -> Result<(), ServeError> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let dir = state.dir.clone();
    let cap = connection_cap(args.max_connections);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| ServeError::Listen { addr: args.listen, source })?;
    let addr = listener.local_addr().map_err(ServeError::BoundAddress)?;
    let app = mount(api_router(state.clone()), state.clone());
    // Before the address is printed: whoever reads it may connect at once.
    match &tls {
        Some(tls) => tracing::info!(cert = %tls.cert_path().display(), "TLS on; SIGHUP reloads the certificate"),
        None if args.insecure_no_tls => tracing::warn!(
            %addr,
            "TLS OFF (--insecure-no-tls): bearer tokens and data cross the network in plain text, readable and \
             alterable by anyone on the path; serve with --tls-cert and --tls-key unless a TLS proxy fronts this address"
        ),
        None => {}
    }
    {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut stdout = std::io::stdout().lock();
        // Before the address is printed too: commands run beside the server find it here.
        if let Err(e) = crate::server_file::record(&dir, &format!("{scheme}://{addr}")) {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot record the server's address in the data directory; commands run beside it need --server");
        }
        let _ = writeln!(stdout, "listening on {scheme}://{addr}");
        let _ = stdout.flush();
    }
    match state.auth.as_ref().map(Auth::principals) {
        Some(n) => {
            tracing::info!(%addr, dir = %dir.display(), principals = n, max_connections = cap, "cairn serving with auth");
        }
        None => tracing::warn!(
            %addr,
            dir = %dir.display(),
            max_connections = cap,
            "cairn serving with auth OFF (no --auth): every client that can reach this address may read, append and administer"
        ),
    }
    // A replica's checkpoints would be of a log it does not write: it takes none.
    let checkpoints = tokio::spawn(match state.replica {
        None => futures_util::future::Either::Left(checkpoint_loop(state.clone())),
        Some(_) => futures_util::future::Either::Right(std::future::ready(())),
    });
    if tls.is_some() || state.auth.is_some() {
        tokio::spawn(reload_on_sighup(state.clone(), tls.clone()));
    }
    let slots = Arc::new(tokio::sync::Semaphore::new(cap));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(args.header_timeout).keep_alive(true);
    let mut signal = std::pin::pin!(shutdown_signal());
    loop {
        let accepted = tokio::select! {
            _ = &mut signal => break,
            accepted = listener.accept() => accepted,
        };
        let tcp = match accepted {
            Ok((tcp, _peer)) => tcp,
            Err(e) => {
                // EMFILE/ENFILE and aborted handshakes: the listener stays usable. Pause briefly
                // so that a descriptor shortage does not spin the loop.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // At the cap: close at once. Cheap, and the client sees the refusal instead of a
            // hang; the descriptor is released before the next accept.
            state.metrics.connections_refused.inc();
            tracing::debug!(max_connections = cap, "connection refused: --max-connections are open");
            drop(tcp);
            continue;
        };
        state.metrics.connections.inc();
        let slot = ConnectionSlot { state: state.clone(), _permit: permit };
        // Small request/response exchanges: do not wait to coalesce packets.
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let http = http.clone();
        let stop = state.shutdown.clone();
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        let handshake_timeout = args.header_timeout;
        tokio::spawn(async move {
            match acceptor {
                None => serve_connection(&http, TokioIo::new(tcp), service, stop).await,
                Some(acceptor) => {
                    // Bounded like a request head: a client that stalls the handshake holds
                    // this slot for no longer.
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_connection(&http, TokioIo::new(stream), service, stop).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    crate::server_file::remove(&dir);
    let open = state.metrics.connections.get();
    tracing::info!(open_connections = open, grace = ?args.shutdown_grace, "shutting down: no new connections; finishing in-flight requests");
    // Ends subscriptions and the checkpoint loop, and asks every connection to close after its
    // current request.
    let _ = stop_tx.send(true);
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    if tokio::time::timeout(args.shutdown_grace, slots.acquire_many(all)).await.is_err() {
        tracing::warn!(
            open_connections = state.metrics.connections.get(),
            grace = ?args.shutdown_grace,
            "connections still open after the shutdown grace period; closing them"
        );
    }
    let _ = checkpoints.await;
    Ok(())
}

/// Serves one connection (plain or TLS) until it ends, or until shutdown asks it to finish its
/// current request and close.
async fn serve_connection<I>(
    http: &hyper::server::conn::http1::Builder,
    io: I,
    service: hyper_util::service::TowerToHyperService<Router>,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let connection = http.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// On every SIGHUP until shutdown: reloads the TLS certificate and the auth file. Each reload
/// that fails keeps what was in force and logs why.
async fn reload_on_sighup(state: Arc<AppState>, tls: Option<Arc<tls::Tls>>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut stop = state.shutdown.clone();
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; the certificate and the auth file are not reloadable");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                got = hangup.recv() => if got.is_none() { return },
            }
            if let Some(tls) = &tls {
                match tls.reload() {
                    Ok(()) => {
                        tracing::info!(cert = %tls.cert_path().display(), "SIGHUP: TLS certificate reloaded; new connections get it");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: TLS certificate NOT reloaded; still serving the previous one");
                    }
                }
            }
            if let Some(auth) = &state.auth {
                match auth.reload_file() {
                    Ok(n) => {
                        tracing::info!(file_principals = n, "SIGHUP: auth file reloaded; the next request sees it");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: auth file NOT reloaded; the previous principals stay");
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (state, tls);
    }
}

/// How long the accept loop pauses after a failed accept (say, out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    /// Without flags, variables or a file, the settings are the documented constants.
    #[test]
    fn serve_defaults_are_the_named_limits() {
        let args = Serve::parse_from(["serve"]).args;
        let settings = crate::config::Settings::resolve(args.flags(), None, &|_| None).unwrap();
        assert_eq!(settings.listen, crate::config::LISTEN_DEFAULT);
        assert_eq!(settings.max_connections, limits::CONNECTIONS_MAX);
        assert_eq!(settings.header_timeout, limits::HEADER_READ_TIMEOUT);
        assert_eq!(settings.body_timeout, limits::BODY_READ_TIMEOUT);
        assert_eq!(settings.body_budget, limits::BODY_BYTES_IN_FLIGHT_MAX);
        assert_eq!(settings.shutdown_grace, limits::SHUTDOWN_GRACE);
        assert_eq!(settings.sse_keep_alive, limits::SSE_KEEP_ALIVE);
        assert_eq!(settings.ds_long_poll_timeout, durable::LONG_POLL_TIMEOUT);
        assert_eq!(settings.log, crate::config::LogSettings::default());
        assert_eq!(settings.checkpoints, snapshotter::Policy::default());
    }
}
