//! `POST /v1/admin/keys/rotate`: key rotation (encryption at rest) on the live store. It adds a
//! key generation to the key store (appended and fdatasynced before the answer), and every
//! record sealed from then on uses it; records sealed before stay readable with their own
//! generation, recorded in each record (docs/format.md). Needs `admin` on the whole log; an
//! admin action, audited whatever its answer (see [`super::access`]). A log without a key has
//! nothing to rotate: `409 not_encrypted`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Caller;
use super::AppState;
use crate::auth::Permission;
use crate::codes;

/// What a rotation answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RotateJson {
    /// The generation new records are sealed with from now on.
    pub generation: u32,
    /// Every generation the key store holds, oldest first (older ones still open the records
    /// sealed with them).
    pub generations: Vec<u32>,
}

/// Why a rotation did not happen.
#[derive(Debug)]
pub enum RotateError {
    /// The log has no key store.
    NotEncrypted,
    Log(log_engine::Error),
}

impl From<RotateError> for ApiError {
    fn from(e: RotateError) -> ApiError {
        match e {
            RotateError::NotEncrypted => {
                let code = codes::NOT_ENCRYPTED;
                ApiError::new(
                    StatusCode::from_u16(code.status).expect("a valid status"),
                    code.code,
                    "the log is not encrypted (the server was started without --key-file): there is no key to rotate",
                )
            }
            RotateError::Log(e) => e.into(),
        }
    }
}

/// Rotates `log`'s key: the CLI's local `cairn keys rotate` and the endpoint.
pub fn rotate(log: &log_engine::Log) -> Result<RotateJson, RotateError> {
    let keys = log.keys().ok_or(RotateError::NotEncrypted)?;
    let generation = keys.rotate().map_err(RotateError::Log)?;
    tracing::info!(generation, "key rotated: new records are sealed with the new generation");
    Ok(RotateJson { generation, generations: keys.generations() })
}

/// Rotate the key of an encrypted log.
///
/// Adds a key generation (durable before the answer): every event appended from now on is
/// sealed with it; events sealed before stay readable with theirs. Nothing is re-encrypted.
#[utoipa::path(
    post, path = "/v1/admin/keys/rotate", tag = "ops",
    responses(
        (status = 200, description = "Rotated: the new generation and every generation the store holds.", body = RotateJson),
        (status = 403, description = "The token lacks `admin` on the whole log.", body = ErrorBody),
        (status = 409, description = "`not_encrypted`: the server runs without a key.", body = ErrorBody),
        (status = 421, description = "`read_only_replica`: a replica rotates nothing (its leader does).", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn rotate_key(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Json<RotateJson>> {
    caller.require(Permission::Admin, "")?;
    let log = state.log.clone();
    Ok(Json(super::log_api::blocking(move || rotate(&log)).await??))
}
