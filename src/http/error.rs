//! HTTP errors: `{"error": "<snake_case code>", "message": "<sentence>"}` with the contract's
//! statuses, and the mapping from the log engine's errors.
//!
//! Statuses: 400 invalid input, 401 no or unknown token, 403 not permitted, 404 not found,
//! 409 conflict (wrong expected version, id conflict), 413 too large, 415 unsupported body type,
//! 503 poisoned or unavailable, 500 anything else (with the engine's located message).

use axum::http::StatusCode;
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
    /// Extra fields for 409 `wrong_expected_version`.
    conflict: Option<(String, ExpectedVersionJson, Option<u64>)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), conflict: None }
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
            E::WrongExpectedVersion { stream, expected, actual } => ApiError {
                status: StatusCode::CONFLICT,
                code: "wrong_expected_version",
                message,
                conflict: Some((stream, ExpectedVersionJson(expected), actual.map(|v| v.0))),
            },
            E::IdConflict { .. } => ApiError::new(StatusCode::CONFLICT, "id_conflict", message),
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
            E::Closed => ApiError::unavailable("unavailable", "the server is shutting down; the log is closed"),
            E::Corrupt { .. } | E::TornTail { .. } => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "corruption", message)
            }
            _ => ApiError::internal(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.conflict {
            Some((stream, expected, actual)) => serde_json::to_value(ConflictBody {
                error: self.code.to_string(),
                message: self.message,
                stream,
                expected,
                actual,
            }),
            None => serde_json::to_value(ErrorBody { error: self.code.to_string(), message: self.message }),
        }
        .expect("error bodies always serialize");
        (self.status, axum::Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
