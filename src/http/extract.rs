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

use axum::body::Body;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use http_body_util::LengthLimitError;
use serde::de::DeserializeOwned;

use super::drain::{find_cause, BodyError};
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
enum BodyKind {
    Json,
    MessagePack,
}

fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(BodyKind::Json) };
    let essence = value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        // curl -d sends form-urlencoded by default; cairn takes no form data, so such a body
        // is read as the JSON it almost always is (and refused as invalid JSON otherwise).
        "application/json" | "" | "application/x-www-form-urlencoded" => Ok(BodyKind::Json),
        "application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack" => Ok(BodyKind::MessagePack),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("request bodies must be application/json or application/msgpack, not {other}"),
        )),
    }
}

/// Reads and parses a request body of at most [`REQUEST_BODY_MAX`] bytes.
///
/// MessagePack is transcoded to JSON first, so both encodings go through the same parser and
/// the same checks.
pub async fn read_body<T: DeserializeOwned>(headers: &HeaderMap, body: Body) -> Result<T, ApiError> {
    let json = read_json_bytes(headers, body).await?;
    parse_json(&json)
}

/// [`read_body`] for endpoints whose body is optional: `None` for an empty body.
pub async fn read_body_or_empty(headers: &HeaderMap, body: Body) -> Result<Option<serde_json::Value>, ApiError> {
    let json = read_json_bytes(headers, body).await?;
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    parse_json(&json).map(Some)
}

fn parse_json<T: DeserializeOwned>(json: &[u8]) -> Result<T, ApiError> {
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
fn strict<'de, T: DeserializeOwned, D>(de: D) -> Result<T, ApiError>
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

/// The body's bytes as JSON text (transcoded from MessagePack when it is that), bounded.
async fn read_json_bytes(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, ApiError> {
    let kind = body_kind(headers)?;
    let too_large = |n: &dyn std::fmt::Display| {
        ApiError::too_large(
            "body_too_large",
            format!("the request body is {n} bytes, above the limit of {REQUEST_BODY_MAX} (REQUEST_BODY_MAX)"),
        )
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(n) = declared {
        if n > REQUEST_BODY_MAX as u64 {
            return Err(too_large(&n));
        }
    }
    let bytes = axum::body::to_bytes(body, REQUEST_BODY_MAX).await.map_err(|e| {
        if find_cause::<LengthLimitError>(&e).is_some() {
            return too_large(&"more than");
        }
        match find_cause::<BodyError>(&e) {
            Some(cut @ BodyError::Overloaded { .. }) => {
                ApiError::overloaded(cut.to_string(), crate::limits::OVERLOADED_RETRY_AFTER_SECS)
            }
            Some(cut @ BodyError::Timeout { .. }) => ApiError::body_timeout(cut.to_string()),
            None => ApiError::bad_request("invalid_body", format!("reading the request body failed: {e}")),
        }
    })?;
    let bytes = Vec::from(bytes);
    match kind {
        BodyKind::Json => Ok(bytes),
        BodyKind::MessagePack if bytes.is_empty() => Ok(bytes),
        BodyKind::MessagePack => {
            // JSON has no NaN or infinity: a transcoder would silently write null.
            projections::check_msgpack_numbers(&bytes).map_err(|e| {
                ApiError::bad_request("invalid_body", format!("the MessagePack request body cannot be read: {e}"))
            })?;
            let (out, used) = super::msgpack::to_json(&bytes).map_err(|e| {
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
    }
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
