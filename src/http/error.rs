//! HTTP errors: `{"error": "<snake_case code>", "message": "<sentence>"}` with the contract's
//! statuses, and the mapping from the log engine's errors.
//!
//! Statuses: 400 invalid input, 401 no or unknown token, 403 not permitted, 404 not found,
//! 409 conflict (wrong expected version, id conflict), 413 too large, 415 unsupported body type,
//! 408 a request body that did not arrive in time, 503 poisoned, unavailable or overloaded
//! (`overloaded` and `too_many_open_files` carry `Retry-After`), 507 disk full
//! (`insufficient_storage`), 500 anything else (with the engine's located message).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use log_engine::LimitKind;
use serde::Serialize;
use utoipa::ToSchema;

use crate::wire::{ExpectedVersionJson, InputError};

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable snake_case code, e.g. `stream_not_found`.
    pub error: String,
    /// What failed and where, as a sentence.
    pub message: String,
}

/// The body of a 409 `wrong_expected_version`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConflictBody {
    /// `wrong_expected_version`.
    pub error: String,
    pub message: String,
    /// The stream whose version did not match.
    pub stream: String,
    pub expected: ExpectedVersionJson,
    /// The stream's last version, `null` if it has no events.
    pub actual: Option<u64>,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Fields beside `error` and `message`: for a 409 `wrong_expected_version`, `stream`,
    /// `expected` and `actual` (and `key` for the key-value view).
    extra: serde_json::Map<String, serde_json::Value>,
    /// Seconds for a `Retry-After` header (a 503 the client should retry).
    retry_after: Option<u16>,
    /// Answer with `Connection: close` (the request was not read to its end).
    close: bool,
}

/// `Retry-After` (seconds) on a 503 `too_many_open_files`: descriptors are released as
/// connections close, so a prompt retry is likely to pass.
pub const RETRY_AFTER_FDS_SECS: u16 = 1;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: serde_json::Map::new(),
            retry_after: None,
            close: false,
        }
    }

    /// A 503 `overloaded`: a shared bound (in-flight body bytes, the writer's queue) is full
    /// for now; `Retry-After` says when to try again.
    pub fn overloaded(message: impl Into<String>, retry_after_secs: u16) -> ApiError {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message);
        e.retry_after = Some(retry_after_secs);
        e
    }

    /// A 408 `body_timeout`: the request body did not arrive in time; the connection is closed.
    pub fn body_timeout(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", message);
        e.close = true;
        e
    }

    /// Adds a field to the body.
    pub fn with(mut self, field: &str, value: impl Serialize) -> ApiError {
        self.extra.insert(field.to_string(), serde_json::to_value(value).expect("error fields serialize"));
        self
    }

    /// A 409 `wrong_expected_version` naming the stream, what was expected and what was found.
    pub fn wrong_expected_version(
        message: String,
        stream: String,
        expected: log_engine::ExpectedVersion,
        actual: Option<log_engine::StreamVersion>,
    ) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "wrong_expected_version", message)
            .with("stream", stream)
            .with("expected", ExpectedVersionJson(expected))
            .with("actual", actual.map(|v| v.0))
    }

    /// Adds a `Retry-After` header of `secs` seconds.
    pub fn retry_after(mut self, secs: u16) -> ApiError {
        self.retry_after = Some(secs);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn too_large(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> ApiError {
        ApiError::bad_request("invalid_input", e.0)
    }
}

impl From<log_engine::Error> for ApiError {
    fn from(e: log_engine::Error) -> ApiError {
        use log_engine::Error as E;
        let message = e.to_string();
        match e {
            E::WrongExpectedVersion { stream, expected, actual } => {
                ApiError::wrong_expected_version(message, stream, expected, actual)
            }
            E::IdConflict { stream, id, position, .. } => ApiError::new(StatusCode::CONFLICT, "id_conflict", message)
                .with("stream", stream)
                .with("id", id.to_string())
                .with("position", position.0),
            E::InvalidStreamName { .. } => ApiError::bad_request("invalid_stream_name", message),
            E::Invalid { .. } => ApiError::bad_request("invalid_input", message),
            E::LimitExceeded { limit, .. } => ApiError::too_large(
                match limit {
                    LimitKind::EventSize => "event_too_large",
                    LimitKind::BatchEvents => "too_many_events",
                    LimitKind::BatchStreams => "too_many_streams",
                    LimitKind::BatchBytes => "request_too_large",
                    _ => "limit_exceeded",
                },
                message,
            ),
            E::StreamNotFound { .. } => ApiError::not_found("stream_not_found", message),
            E::PositionNotFound { .. } => ApiError::not_found("position_not_found", message),
            E::Poisoned { .. } => ApiError::unavailable("poisoned", message),
            // Nothing was written and the log is not poisoned: the client may retry once an
            // operator frees space (no Retry-After: that takes a person).
            E::NoSpace { .. } => ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage", message),
            // The writer's queue is full: a moment later it has room again.
            E::Overloaded { .. } => ApiError::overloaded(message, crate::limits::OVERLOADED_RETRY_AFTER_SECS),
            E::TooManyOpenFiles { .. } => {
                ApiError::unavailable("too_many_open_files", message).retry_after(RETRY_AFTER_FDS_SECS)
            }
            E::Closed => ApiError::unavailable("unavailable", "the server is shutting down; the log is closed"),
            E::Corrupt { .. } | E::TornTail { .. } => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "corruption", message)
            }
            _ => ApiError::internal(message),
        }
    }
}

impl From<projections::Error> for ApiError {
    fn from(e: projections::Error) -> ApiError {
        use projections::{Error as E, ErrorKind};
        let message = e.to_string();
        let key = e.key().map(str::to_string);
        let error = match e {
            E::Log(log) => return ApiError::from(log),
            E::WrongExpectedVersion { stream, expected, actual } => {
                ApiError::wrong_expected_version(message, stream, expected, actual)
            }
            E::WatchedKeyChanged { expected, actual, .. } => {
                ApiError::new(StatusCode::CONFLICT, "wrong_expected_version", message)
                    .with("expected", expected.map(|v| v.0))
                    .with("actual", actual.map(|v| v.0))
            }
            E::TooLarge { .. } => ApiError::too_large(e.code(), message),
            e => {
                let status = match e.kind() {
                    ErrorKind::NotFound => StatusCode::NOT_FOUND,
                    ErrorKind::Conflict => StatusCode::CONFLICT,
                    ErrorKind::Invalid => StatusCode::BAD_REQUEST,
                    ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                    ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
                };
                ApiError::new(status, e.code(), message)
            }
        };
        match key {
            Some(key) => error.with("key", key),
            None => error,
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        use crate::store::StoreError as E;
        match e {
            E::Log(e) => ApiError::from(e),
            E::Views(e) => ApiError::from(e),
            E::Checkpoint(snapshotter::Error::Log(e)) => ApiError::from(e),
            E::Checkpoint(snapshotter::Error::Invalid { what }) => ApiError::bad_request("invalid_input", what),
            E::Checkpoint(e @ snapshotter::Error::NoParent { .. }) => {
                ApiError::new(StatusCode::CONFLICT, "no_parent", e.to_string())
            }
            E::Checkpoint(e) => ApiError::internal(e.to_string()),
            e @ E::Empty { .. } => ApiError::new(StatusCode::CONFLICT, "empty_log", e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::with_capacity(2 + self.extra.len());
        body.insert("error".into(), self.code.into());
        body.insert("message".into(), self.message.into());
        body.extend(self.extra);
        let mut response = (self.status, axum::Json(serde_json::Value::Object(body))).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.close {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(e: log_engine::Error) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = ApiError::from(e).into_response();
        let status = response.status();
        let retry = response.headers().get(axum::http::header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_string());
        let body = futures_body(response);
        (status, retry, body)
    }

    fn futures_body(response: Response) -> serde_json::Value {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let bytes = rt.block_on(axum::body::to_bytes(response.into_body(), 1 << 20)).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Issue 14 item 8: a full disk was a `500 internal`, running out of descriptors too. Each
    /// has its own status and code now; the descriptors' one says when to retry.
    #[test]
    fn resource_exhaustion_has_its_own_status_and_code() {
        let full = log_engine::Error::NoSpace {
            op: "prepare segment",
            path: "data/log/spare.tmp".into(),
            source: std::io::Error::from_raw_os_error(28),
        };
        let (status, retry, body) = answer(full);
        assert_eq!((status.as_u16(), retry, body["error"].as_str()), (507, None, Some("insufficient_storage")));
        assert!(body["message"].as_str().unwrap().contains("no space left on the device"), "{body}");
        let fds = log_engine::Error::TooManyOpenFiles {
            op: "prepare segment",
            path: "data/log/spare.tmp".into(),
            source: std::io::Error::from_raw_os_error(24),
        };
        let (status, retry, body) = answer(fds);
        assert_eq!(
            (status.as_u16(), retry.as_deref(), body["error"].as_str()),
            (503, Some("1"), Some("too_many_open_files"))
        );
    }
}
