//! Request extraction with the contract's error shape: the caller (authentication), request
//! bodies (JSON or MessagePack, bounded), and query strings and path segments whose rejections
//! are JSON errors rather than axum's plain-text ones.
//!
//! Invariant: a body is read only after the caller is authenticated and authorised (handlers
//! take the body last, as an unread [`Body`], and call [`read_body`] after their checks), and
//! never past [`REQUEST_BODY_MAX`] bytes: a declared `Content-Length` above the bound is refused
//! before a byte is read, and an undeclared one is cut off as soon as it crosses it.
//!
//! Bodies are parsed strictly, so that nothing a client sends is silently dropped: a field the
//! request type does not know, at any depth, is refused (400 `invalid_body` naming its path),
//! and so is anything after the one JSON document or MessagePack value the body must be.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use http_body_util::LengthLimitError;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::drain::{find_cause, BodyBudget, BodyError};
use super::error::ApiError;
use super::AppState;
use crate::auth::{Permission, Principal};
use crate::limits::REQUEST_BODY_MAX;

/// Who is calling: anyone (auth off) or an authenticated principal.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The server runs without `--auth`.
    Open,
    Principal(Arc<Principal>),
}

impl Caller {
    /// Succeeds if the caller may do `permission` on `resource` (a stream name or prefix).
    pub fn require(&self, permission: Permission, resource: &str) -> Result<(), ApiError> {
        match self {
            Caller::Open => Ok(()),
            Caller::Principal(p) if p.allows(permission, resource) => Ok(()),
            Caller::Principal(p) => {
                Err(ApiError::forbidden(format!("principal {} may not {permission} {}", p.name, describe(resource))))
            }
        }
    }

    /// Whether the caller may do `permission` on `resource`, without an error to answer.
    pub fn allows(&self, permission: Permission, resource: &str) -> bool {
        match self {
            Caller::Open => true,
            Caller::Principal(p) => p.allows(permission, resource),
        }
    }

    /// Succeeds if the caller holds `permission` on anything.
    pub fn require_any(&self, permission: Permission) -> Result<(), ApiError> {
        match self {
            Caller::Open => Ok(()),
            Caller::Principal(p) if p.allows_any(permission) => Ok(()),
            Caller::Principal(p) => {
                Err(ApiError::forbidden(format!("principal {} holds no {permission} permission", p.name)))
            }
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Caller::Open => "-",
            Caller::Principal(p) => &p.name,
        }
    }
}

fn describe(resource: &str) -> String {
    if resource.is_empty() {
        "the whole log (a rule with prefix \"\" is needed)".to_string()
    } else {
        format!("{resource:?}")
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let Some(auth) = &state.auth else { return Ok(Caller::Open) };
        let header = match parts.headers.get(header::AUTHORIZATION) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| ApiError::unauthorized("the Authorization header is not ASCII"))?),
        };
        auth.authenticate(header).map(Caller::Principal).map_err(|e| ApiError::unauthorized(e.to_string()))
    }
}

/// The request body kinds cairn reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    MessagePack,
    /// `application/x-ndjson`: one JSON document per line, read as it arrives. Only the append
    /// endpoint takes it.
    Ndjson,
}

/// The media type an NDJSON body is sent as.
pub const NDJSON: &str = "application/x-ndjson";

fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(BodyKind::Json) };
    let essence = value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        // curl -d sends form-urlencoded by default; cairn takes no form data, so such a body
        // is read as the JSON it almost always is (and refused as invalid JSON otherwise).
        "application/json" | "" | "application/x-www-form-urlencoded" => Ok(BodyKind::Json),
        "application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack" => Ok(BodyKind::MessagePack),
        NDJSON | "application/jsonl" | "application/jsonlines" => Ok(BodyKind::Ndjson),
        other => Err(unsupported(other, false)),
    }
}

fn unsupported(media_type: &str, ndjson_too: bool) -> ApiError {
    let takes = if ndjson_too {
        "application/json, application/msgpack or application/x-ndjson"
    } else {
        "application/json or application/msgpack"
    };
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("request bodies here must be {takes}, not {media_type}"),
    )
}

/// A request body, unread, with what its headers say about reading it: an extractor that
/// copies no header map. Handlers take it last and read it only after their checks.
#[derive(Debug)]
pub struct RequestBody {
    kind: Result<BodyKind, ApiError>,
    declared: Option<u64>,
    body: Body,
    budget: BodyBudget,
}

impl<S: Send + Sync> FromRequest<S> for RequestBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let mut read = RequestBody::new(&parts.headers, body);
        if let Some(budget) = parts.extensions.get::<BodyBudget>() {
            read.budget = budget.clone();
        }
        Ok(read)
    }
}

impl RequestBody {
    /// From a handler's own copy of the headers.
    pub fn new(headers: &HeaderMap, body: Body) -> RequestBody {
        RequestBody {
            kind: body_kind(headers),
            declared: declared_length(headers),
            body,
            budget: BodyBudget::default(),
        }
    }

    /// The `Content-Length` the client declared, if any.
    pub fn declared_length(&self) -> Option<u64> {
        self.declared
    }

    /// Whether the body is NDJSON (an unsupported media type is not).
    pub fn is_ndjson(&self) -> bool {
        matches!(self.kind, Ok(BodyKind::Ndjson))
    }

    /// The body as a stream of chunks, for an endpoint that reads NDJSON as it arrives; a
    /// failed read is already the answer to send.
    /// With it, the body's share of the in-flight budget, to give back as parts of it are done.
    pub fn into_stream(self) -> (impl futures_util::Stream<Item = Result<Bytes, ApiError>> + Send + Unpin, BodyBudget) {
        use futures_util::StreamExt as _;
        let chunks = self.body.into_data_stream().map(|chunk| chunk.map_err(|e| body_read_error(&e, &"more than")));
        (chunks, self.budget)
    }

    /// Reads the whole body, at most [`REQUEST_BODY_MAX`] bytes, as JSON text (transcoded from
    /// MessagePack when it is that). `ndjson_too` says whether the endpoint takes NDJSON, for the
    /// 415's sentence; an NDJSON body is refused here either way.
    pub async fn read_json(self, ndjson_too: bool) -> Result<Bytes, ApiError> {
        let kind = match self.kind? {
            BodyKind::Ndjson => return Err(unsupported(NDJSON, ndjson_too)),
            kind => kind,
        };
        if let Some(n) = self.declared {
            if n > REQUEST_BODY_MAX as u64 {
                return Err(too_large(&n));
            }
        }
        let bytes =
            axum::body::to_bytes(self.body, REQUEST_BODY_MAX).await.map_err(|e| body_read_error(&e, &"more than"))?;
        match kind {
            BodyKind::MessagePack if !bytes.is_empty() => msgpack_to_json(&bytes).map(Bytes::from),
            _ => Ok(bytes),
        }
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
}

/// Reads and parses a request body of at most [`REQUEST_BODY_MAX`] bytes.
///
/// MessagePack is transcoded to JSON first, so both encodings go through the same parser and
/// the same checks.
pub async fn read_body<T: DeserializeOwned>(headers: &HeaderMap, body: Body) -> Result<T, ApiError> {
    let json = RequestBody::new(headers, body).read_json(false).await?;
    parse_json(&json)
}

/// [`read_body`] for endpoints whose body is optional: `None` for an empty body.
pub async fn read_body_or_empty(headers: &HeaderMap, body: Body) -> Result<Option<serde_json::Value>, ApiError> {
    let json = RequestBody::new(headers, body).read_json(false).await?;
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    parse_json(&json).map(Some)
}

/// Parses a JSON request body strictly (see [`strict`]); the result may borrow from `json`.
pub fn parse_json<'de, T: Deserialize<'de>>(json: &'de [u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let value = strict(&mut de)?;
    de.end().map_err(|e| invalid_body(&e))?;
    Ok(value)
}

/// Parses an already-read JSON value as a request, refusing unknown fields like a body.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    strict(value)
}

/// Deserializes a `T`, refusing any field that `T` would otherwise ignore (serde's default):
/// a misspelt or unsupported field must not be answered with a 200 that dropped it.
fn strict<'de, T: Deserialize<'de>, D>(de: D) -> Result<T, ApiError>
where
    D: serde::Deserializer<'de>,
    D::Error: std::fmt::Display,
{
    let mut unknown = Vec::new();
    let value = serde_ignored::deserialize(de, |path| unknown.push(path.to_string())).map_err(|e| invalid_body(&e))?;
    match unknown.first() {
        None => Ok(value),
        Some(field) => Err(ApiError::bad_request(
            "invalid_body",
            format!(
                "the request body has an unknown field `{field}`; see /openapi.json for the fields this endpoint takes"
            ),
        )),
    }
}

fn invalid_body(e: &dyn std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_body", format!("the request body is not a valid request: {e}"))
}

fn too_large(n: &dyn std::fmt::Display) -> ApiError {
    ApiError::too_large(
        "body_too_large",
        format!("the request body is {n} bytes, above the limit of {REQUEST_BODY_MAX} (REQUEST_BODY_MAX)"),
    )
}

/// The answer for a body whose reading failed: cut at a size bound, at one of the shared
/// bounds of [`super::drain`], or broken off by the client.
pub fn body_read_error(e: &axum::Error, size: &dyn std::fmt::Display) -> ApiError {
    if find_cause::<LengthLimitError>(e).is_some() {
        return too_large(size);
    }
    match find_cause::<BodyError>(e) {
        Some(cut @ BodyError::Overloaded { .. }) => {
            ApiError::overloaded(cut.to_string(), crate::limits::OVERLOADED_RETRY_AFTER_SECS)
        }
        Some(cut @ BodyError::Timeout { .. }) => ApiError::body_timeout(cut.to_string()),
        Some(cut @ BodyError::BeyondBudget { .. }) => ApiError::too_large("body_too_large", cut.to_string()),
        None => ApiError::bad_request("invalid_body", format!("reading the request body failed: {e}")),
    }
}

/// A MessagePack body as JSON text.
fn msgpack_to_json(bytes: &[u8]) -> Result<Vec<u8>, ApiError> {
    // JSON has no NaN or infinity: a transcoder would silently write null.
    projections::check_msgpack_numbers(bytes).map_err(|e| {
        ApiError::bad_request("invalid_body", format!("the MessagePack request body cannot be read: {e}"))
    })?;
    let (out, used) = super::msgpack::to_json(bytes).map_err(|e| {
        ApiError::bad_request("invalid_body", format!("the request body is not valid MessagePack: {e}"))
    })?;
    // A body is one value: bytes after it are a client's mistake, never ignored.
    if used < bytes.len() {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!(
                "the request body has {} bytes after its MessagePack value (at offset {used}); a body is exactly one value",
                bytes.len() - used,
            ),
        ));
    }
    Ok(out)
}

/// A query string, rejected as 400 `invalid_query` with a sentence.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri).map(|q| Query(q.0)).map_err(|e| {
            ApiError::bad_request("invalid_query", format!("the query string is not valid: {}", e.body_text()))
        })
    }
}

/// Path parameters, rejected as 400 `invalid_path` with a sentence.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        <axum::extract::Path<T> as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| {
                ApiError::bad_request("invalid_path", format!("the request path is not valid: {}", e.body_text()))
            })
    }
}

/// `Last-Event-ID`, when present.
#[derive(Debug)]
pub struct LastEventId(pub u64);

impl<S: Send + Sync> OptionalFromRequestParts<S> for LastEventId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        let Some(value) = parts.headers.get("last-event-id") else { return Ok(None) };
        let text = value.to_str().unwrap_or("").trim();
        text.parse().map(|p| Some(LastEventId(p))).map_err(|_| {
            ApiError::bad_request("invalid_last_event_id", format!("Last-Event-ID {text:?} is not a log position"))
        })
    }
}
