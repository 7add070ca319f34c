//! `cairn serve`: the HTTP API (axum on tokio) over one open log.
//!
//! Invariants:
//! - One process owns the data directory: the log is opened (and locked) before the socket is
//!   bound, so a second server fails with the lock error and binds nothing.
//! - Without `--auth` the server listens only on a loopback address unless `--allow-remote` is
//!   given, and it says at start that auth is off.
//! - The bound address is printed on stdout as `listening on http://ADDR` (so `--listen
//!   127.0.0.1:0` is usable by scripts and tests); logs go to stderr.
//! - Shutdown (SIGINT or SIGTERM): stop accepting, end every subscription, let in-flight
//!   requests finish (their appends are committed and answered), then close the log, which
//!   syncs and stops its writer.
//!
//! The endpoints live in [`log_api`], [`subscribe`] and [`ops`]; errors in [`error`].

pub mod error;
pub mod extract;
pub mod log_api;
pub mod metrics;
pub mod ops;
pub mod subscribe;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use log_engine::Log;
use tokio::sync::watch;

use crate::auth::Auth;
use crate::error::{CliError, CliResult, Exit};
use crate::wire::InputError;

/// Arguments of `cairn serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,

    /// Auth file (TOML): bearer-token hashes and per-principal rules. Without it every client
    /// that can reach the server may do everything, so only loopback addresses are allowed.
    #[arg(long, value_name = "FILE")]
    pub auth: Option<PathBuf>,

    /// Allow listening on a non-loopback address without --auth.
    #[arg(long)]
    pub allow_remote: bool,

    /// Write logs as JSON lines (structured) instead of text.
    #[arg(long)]
    pub log_json: bool,
}

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    pub log: Log,
    pub dir: PathBuf,
    pub auth: Option<Auth>,
    pub metrics: metrics::ServerMetrics,
    /// Becomes true when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    pub verify_lock: tokio::sync::Mutex<()>,
}

impl AppState {
    /// Metrics text of the views and checkpoints (empty until they are wired in).
    pub fn views_metrics(&self) -> String {
        String::new()
    }
}

/// The router with every endpoint.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/streams/{stream}/events", post(log_api::append).get(log_api::read_stream))
        .route("/v1/append", post(log_api::append_multi))
        .route("/v1/events", get(log_api::read_all))
        .route("/v1/events/{position}", get(log_api::event_at))
        .route("/v1/subscribe", get(subscribe::subscribe))
        .route("/v1/streams", get(log_api::list_streams))
        .route("/v1/head", get(log_api::head))
        .route("/v1/verify", post(log_api::verify))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
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
    state.metrics.record_request(route, status);
    let micros = started.elapsed().as_micros() as u64;
    if status >= 500 {
        tracing::warn!(%method, route, status, micros, "request failed");
    } else {
        tracing::debug!(%method, route, status, micros, "request");
    }
    response
}

/// `cairn serve`: runs until SIGINT or SIGTERM.
pub fn serve_blocking(dir: &Path, args: ServeArgs) -> CliResult<Exit> {
    let auth = match &args.auth {
        Some(path) => Some(Auth::load(path).map_err(|e| CliError::Server(e.to_string()))?),
        None => None,
    };
    if auth.is_none() && !args.listen.ip().is_loopback() && !args.allow_remote {
        return Err(InputError(format!(
            "refusing to listen on {} without --auth: anyone on the network could read and append. \
             Pass --auth FILE (see `cairn token`), listen on 127.0.0.1, or pass --allow-remote to accept the risk",
            args.listen
        ))
        .into());
    }
    let log = crate::cli::open_log(dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cairn-http")
        .build()
        .map_err(|e| CliError::io("start the async runtime for", "serve", e))?;
    let result = runtime.block_on(serve(log.clone(), dir, auth, &args));
    drop(runtime);
    // In-flight requests have finished: close the log (syncs and joins the writer).
    log.close();
    tracing::info!("log closed; server stopped");
    result.map(|()| Exit::Ok)
}

async fn serve(log: Log, dir: &Path, auth: Option<Auth>, args: &ServeArgs) -> CliResult {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| CliError::Server(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener.local_addr().map_err(|e| CliError::Server(format!("cannot read the bound address: {e}")))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let principals = auth.as_ref().map(Auth::principals);
    let state = Arc::new(AppState {
        log,
        dir: dir.to_path_buf(),
        auth,
        metrics: metrics::ServerMetrics::default(),
        shutdown: stop_rx,
        verify_lock: tokio::sync::Mutex::new(()),
    });
    let app = router(state.clone());
    {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "listening on http://{addr}");
        let _ = stdout.flush();
    }
    match principals {
        Some(n) => tracing::info!(%addr, dir = %dir.display(), principals = n, "cairn serving with auth"),
        None => tracing::warn!(
            %addr,
            dir = %dir.display(),
            "cairn serving with auth OFF (no --auth): every client that can reach this address may read, append and administer"
        ),
    }
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|tcp| {
        // Small request/response exchanges: do not wait to coalesce packets.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: no new connections; finishing in-flight requests");
            let _ = stop_tx.send(true);
        })
        .await
        .map_err(|e| CliError::Server(format!("the server on {addr} failed: {e}")))?;
    Ok(())
}

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
