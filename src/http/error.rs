//! HTTP errors: `{"error": "<snake_case code>", "message": "<sentence>"}` with the contract's
//! statuses. The engine's errors are classified in [`crate::codes`]; this module adds the
//! fields beside `error` and `message` (a conflict's stream, expected and actual versions).
//!
//! Statuses: 400 invalid input, 401 no or unknown token, 403 not permitted, 404 not found,
//! 409 conflict (wrong expected version, id conflict), 413 too large, 415 unsupported body type,
//! 408 a request body that did not arrive in time, 503 poisoned, unavailable or overloaded
//! (`overloaded` and `too_many_open_files` carry `Retry-After`), 507 disk full
//! (`insufficient_storage`), 500 anything else (with the engine's located message).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::codes::{self, Code};
use crate::wire::{ExpectedVersionJson, InputError};

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable snake_case code, e.g. `stream_not_found`.
    pub error: String,
    /// What failed and where, as a sentence.
    pub message: String,
}

/// The body of a 409 on an append: a `wrong_expected_version` names the stream, the expected
/// and the actual version; the other conflicts (`id_conflict`, `stream_closed`) carry the fields
/// their operation's description names, and `stream_closed` only `error` and `message` (plus
/// `line` and `durable` on an NDJSON append).
#[derive(Debug, Serialize, ToSchema)]
pub struct ConflictBody {
    /// `wrong_expected_version`, `id_conflict` or `stream_closed`.
    pub error: String,
    pub message: String,
    /// The stream whose version did not match (`wrong_expected_version`, `id_conflict`).
    #[schema(nullable = false)]
    pub stream: Option<String>,
    /// What the request expected (`wrong_expected_version`).
    #[schema(nullable = false)]
    pub expected: Option<ExpectedVersionJson>,
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

impl ApiError {
    /// The answer of [`crate::codes`] for a failure, with its message.
    fn coded(code: Code, message: String) -> ApiError {
        let status = StatusCode::from_u16(code.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError { retry_after: code.retry_after, ..ApiError::new(status, code.code, message) }
    }
}

impl From<log_engine::Error> for ApiError {
    fn from(e: log_engine::Error) -> ApiError {
        use log_engine::Error as E;
        let code = codes::log(&e);
        let message = e.to_string();
        match e {
            E::WrongExpectedVersion { stream, expected, actual } => {
                ApiError::wrong_expected_version(message, stream, expected, actual)
            }
            E::IdConflict { stream, id, position, .. } => ApiError::coded(code, message)
                .with("stream", stream)
                .with("id", id.to_string())
                .with("position", position.0),
            E::Closed => ApiError::coded(code, "the server is shutting down; the log is closed".into()),
            _ => ApiError::coded(code, message),
        }
    }
}

impl From<projections::Error> for ApiError {
    fn from(e: projections::Error) -> ApiError {
        use projections::Error as E;
        let code = codes::views(&e);
        let message = e.to_string();
        let key = e.key().map(str::to_string);
        let error = match e {
            E::Log(log) => return ApiError::from(log),
            E::WrongExpectedVersion { stream, expected, actual } => {
                ApiError::wrong_expected_version(message, stream, expected, actual)
            }
            E::WatchedKeyChanged { expected, actual, .. } => ApiError::coded(code, message)
                .with("expected", expected.map(|v| v.0))
                .with("actual", actual.map(|v| v.0)),
            _ => ApiError::coded(code, message),
        };
        match key {
            Some(key) => error.with("key", key),
            None => error,
        }
    }
}

impl From<crate::backup::BackupError> for ApiError {
    fn from(e: crate::backup::BackupError) -> ApiError {
        use crate::backup::BackupError as E;
        match e {
            E::Log(e) => ApiError::from(e),
            e => ApiError::coded(codes::backup(&e), e.to_string()),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        use crate::store::StoreError as E;
        match e {
            E::Open { source: e, .. } | E::Log(e) | E::Checkpoint(snapshotter::Error::Log(e)) => ApiError::from(e),
            E::Views(e) => ApiError::from(e),
            // The snapshotter's own words for invalid input, without its "invalid input: " prefix.
            E::Checkpoint(snapshotter::Error::Invalid { what }) => ApiError::bad_request("invalid_input", what),
            e => ApiError::coded(e.code(), e.to_string()),
        }
    }
}

impl ApiError {
    /// The error's body: `{"error", "message"}` and its other fields.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::Map::with_capacity(2 + self.extra.len());
        body.insert("error".into(), self.code.into());
        body.insert("message".into(), self.message.clone().into());
        body.extend(self.extra.clone());
        serde_json::Value::Object(body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
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

    /// A damaged checkpoint chain is answered as damage (`corruption`, as the CLI's exit 3), and
    /// a drill cancelled by shutdown as `unavailable`: both were `500 internal`.
    #[test]
    fn checkpoint_damage_and_cancellation_have_the_contract_codes() {
        let broken = snapshotter::Error::BrokenChain {
            file: "c/00000000000000000002.ckpt".into(),
            sequence: 2,
            detail: "x".into(),
        };
        let response = ApiError::from(crate::store::StoreError::Checkpoint(broken)).into_response();
        assert_eq!((response.status().as_u16(), futures_body(response)["error"].as_str()), (500, Some("corruption")));
        let cancelled = crate::store::StoreError::Checkpoint(snapshotter::Error::Interrupted);
        let response = ApiError::from(cancelled).into_response();
        assert_eq!((response.status().as_u16(), futures_body(response)["error"].as_str()), (503, Some("unavailable")));
    }
}
