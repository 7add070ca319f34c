//! What the view endpoints (key-value, audit, metadata, checkpoints) share: read-your-writes
//! waits and running view calls off the async threads.
//!
//! Invariants:
//! - A read with `?min_position=P` answers only after every view has applied P, waiting at most
//!   [`MIN_POSITION_WAIT_MAX`] (then 503 `timeout`); a position beyond the log's head is refused
//!   at once (400), since no wait could reach it.
//! - View calls run on the blocking pool: writes wait for an fdatasync, and reads take the
//!   views' read lock, which a checkpoint holds while it captures them.

use std::sync::Arc;

use log_engine::Position;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ApiResult};
use super::log_api::blocking;
use super::AppState;
use crate::limits::MIN_POSITION_WAIT_MAX;

/// `?min_position=P`: read-your-writes.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct MinPosition {
    /// Wait (at most 5 s) until the views have applied this log position (a write's `position`).
    pub min_position: Option<u64>,
}

/// Waits until the views have applied `min_position`, if given.
pub async fn wait_for(state: &AppState, min_position: Option<u64>) -> ApiResult<()> {
    let Some(p) = min_position else { return Ok(()) };
    let head = state.log.head().map(|h| h.position.0);
    if head.is_none_or(|h| p > h) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!(
                "min_position {p} is beyond the log's head ({}); no write has been answered with it",
                head.map_or("empty log".to_string(), |h| format!("position {h}"))
            ),
        ));
    }
    state.store.views().wait_for_async(Position(p), MIN_POSITION_WAIT_MAX).await.map_err(ApiError::from)
}

/// Runs a view call on the blocking pool and maps its error.
pub async fn run<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&AppState) -> Result<T, projections::Error> + Send + 'static,
) -> ApiResult<T> {
    let state = state.clone();
    blocking(move || f(&state)).await?.map_err(ApiError::from)
}

/// Reads an optional JSON body: an empty body is `T::default()`.
pub async fn optional_body<T: serde::de::DeserializeOwned + Default>(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
) -> ApiResult<T> {
    let declared_empty =
        headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() == "0");
    if declared_empty {
        return Ok(T::default());
    }
    let value: Option<serde_json::Value> = super::extract::read_body_or_empty(headers, body).await?;
    match value {
        None => Ok(T::default()),
        Some(v) => serde_json::from_value(v).map_err(|e| {
            ApiError::bad_request("invalid_body", format!("the request body is not a valid request: {e}"))
        }),
    }
}

/// The position a write answered, as JSON (`null` when it wrote nothing).
pub fn position_json(p: Option<Position>) -> serde_json::Value {
    p.map_or(serde_json::Value::Null, |p| p.0.into())
}
