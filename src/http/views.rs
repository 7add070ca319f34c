//! What the view endpoints (key-value, audit, metadata, checkpoints) share: read-your-writes
//! waits, running view calls off the async threads, and [`ViewCall`], the one shape of a view
//! handler (authorise, then read the body or wait for the views, then run the view call), so
//! that each handler states only its resource, its body type and its view call.
//!
//! Invariants:
//! - A read with `?min_position=P` answers only after every view has applied P, waiting at most
//!   [`MIN_POSITION_WAIT_MAX`] (then 503 `timeout`); a position beyond the log's head is refused
//!   at once (400), since no wait could reach it.
//! - View calls run on the blocking pool: writes wait for an fdatasync, and reads take the
//!   views' read lock, which a checkpoint holds while it captures them.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use log_engine::Position;
use projections::Views;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ApiResult};
use super::extract::{read_body, Caller};
use super::log_api::blocking;
use super::AppState;
use crate::auth::Permission;
use crate::limits::MIN_POSITION_WAIT_MAX;

/// A view request as a handler starts it: the server's state and the authenticated caller.
///
/// Extracted before the path, query and body (handlers take it first), so a request without a
/// valid token gets 401 before anything else about it is looked at.
#[derive(Debug)]
pub struct ViewCall {
    state: Arc<AppState>,
    pub caller: Caller,
}

impl FromRequestParts<Arc<AppState>> for ViewCall {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        Ok(ViewCall { state: state.clone(), caller })
    }
}

impl ViewCall {
    /// A read: `read` on `resource`, then [`ViewCall::query`].
    pub async fn read<T: Send + 'static>(
        &self,
        resource: &str,
        min_position: Option<u64>,
        f: impl FnOnce(&Views) -> Result<T, projections::Error> + Send + 'static,
    ) -> ApiResult<T> {
        self.caller.require(Permission::Read, resource)?;
        self.query(min_position, f).await
    }

    /// Once the caller is authorised: waits for `min_position` (read-your-writes), then runs `f`.
    pub async fn query<T: Send + 'static>(
        &self,
        min_position: Option<u64>,
        f: impl FnOnce(&Views) -> Result<T, projections::Error> + Send + 'static,
    ) -> ApiResult<T> {
        wait_for(&self.state, min_position).await?;
        self.run(f).await
    }

    /// A write: `append` on `resource`, then the request body (read only now), then `f` with it.
    pub async fn write<B: Send + 'static, T: Send + 'static>(
        &self,
        resource: &str,
        body: impl ReadBody<B>,
        f: impl FnOnce(&Views, B) -> Result<T, projections::Error> + Send + 'static,
    ) -> ApiResult<T> {
        self.caller.require(Permission::Append, resource)?;
        let request = body.read().await?;
        self.run(move |views| f(views, request)).await
    }

    /// Runs `f` on the blocking pool; the caller's checks are done. An authenticated caller's
    /// writes carry its `$principal` ([`Views::as_principal`]).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Views) -> Result<T, projections::Error> + Send + 'static,
    ) -> ApiResult<T> {
        let principal = match &self.caller {
            Caller::Open => None,
            Caller::Principal(p) => Some(p.name.clone()),
        };
        run(&self.state, move |s| match principal {
            Some(name) => f(&s.store.views().as_principal(&name)),
            None => f(s.store.views()),
        })
        .await
    }
}

/// A request body, unread until the handler has authorised the caller: JSON or MessagePack,
/// bounded (see [`read_body`]). Handlers take it last.
#[derive(Debug)]
pub struct JsonBody {
    headers: HeaderMap,
    body: Body,
}

/// [`JsonBody`] for endpoints whose body may be empty: an empty body is `T::default()`.
#[derive(Debug)]
pub struct OptionalBody(JsonBody);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Infallible;

    async fn from_request(request: Request, _: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        Ok(JsonBody { headers: parts.headers, body })
    }
}

impl<S: Send + Sync> FromRequest<S> for OptionalBody {
    type Rejection = Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        JsonBody::from_request(request, state).await.map(OptionalBody)
    }
}

/// Reads a request body as a `B`.
pub trait ReadBody<B> {
    fn read(self) -> impl Future<Output = ApiResult<B>> + Send;
}

impl<B: DeserializeOwned> ReadBody<B> for JsonBody {
    async fn read(self) -> ApiResult<B> {
        read_body(&self.headers, self.body).await
    }
}

impl<B: DeserializeOwned + Default> ReadBody<B> for OptionalBody {
    async fn read(self) -> ApiResult<B> {
        optional_body(&self.0.headers, self.0.body).await
    }
}

/// `?min_position=P`: read-your-writes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MinPosition {
    /// Wait (at most 5 s) until the views have applied this log position (a write's `position`).
    pub min_position: Option<u64>,
}

/// Waits until the views have applied `min_position`, if given.
pub async fn wait_for(state: &AppState, min_position: Option<u64>) -> ApiResult<()> {
    let Some(p) = min_position else { return Ok(()) };
    let head = state.log.head().map(|h| h.position.0);
    // A replica may be asked for a position its leader answered a write with and that it has
    // not shipped yet: that one waits like any other, bounded the same.
    if state.replica.is_none() && head.is_none_or(|h| p > h) {
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
        Some(v) => super::extract::from_value(v),
    }
}
