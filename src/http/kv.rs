//! The key-value view over HTTP: `/v1/kv/...`, with Redis semantics where they overlap.
//!
//! Keys are percent-encoded path segments (`session%2F42`). Each key lives in the stream
//! `kv:<key>`, which is also its name for authorisation: a rule on prefix `kv:session/` covers
//! every key starting with `session/`. Writes answer the `position` they were appended at
//! (`null` when they changed nothing); reads take `?min_position=` for read-your-writes.
//! Wrong kinds of value are 400 `wrong_type`; non-integers under `incr` are 400
//! `not_an_integer`.

use std::collections::BTreeMap;

use axum::Json;
use log_engine::StreamVersion;
use projections::{key_stream, now_ms, End, KvWrite, TxnOp, LIST_LIMIT_MAX};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiResult, ErrorBody};
use super::extract::{Path, Query};
use super::views::{JsonBody, MinPosition, OptionalBody, ReadBody as _, ViewCall};
use crate::auth::Permission;
use crate::wire::ExpectedVersionJson;

/// Keys a listing returns when the request names no `limit`.
const LIST_LIMIT_DEFAULT: usize = 100;
/// History entries returned when the request names no `limit`.
const HISTORY_LIMIT_DEFAULT: usize = 100;

fn end_param(end: Option<EndParam>) -> End {
    match end {
        Some(EndParam::Left) => End::Left,
        _ => End::Right,
    }
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndParam {
    Left,
    Right,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GetQuery {
    /// Read the key as it stood right after this version was written (a version `get`, `history`
    /// or a write answered) instead of now. Replays the key's events, at most 100000
    /// (`AT_VERSION_EVENTS_MAX`).
    version: Option<u64>,
    /// Wait (at most 5 s) until the views have applied this log position (a write's `position`).
    min_position: Option<u64>,
}

/// GET a key's value, now or at a version.
#[utoipa::path(
    get, path = "/v1/kv/{key}", tag = "kv",
    params(("key" = String, Path, description = "Percent-encoded key."), GetQuery),
    responses(
        (status = 200, description = "The key's value, version and expiry.", body = KvEntryJson),
        (status = 400, description = "`wrong_type` for a list or set (use /range or /members); `invalid_query`.", body = ErrorBody),
        (status = 403, description = "The token lacks `read` on `kv:<key>`.", body = ErrorBody),
        (status = 404, description = "`key_not_found` (absent, expired, or deleted at that version); `version_not_found` (the key has no such version).", body = ErrorBody),
        (status = 413, description = "`too_large`: reading at that version would replay more than `AT_VERSION_EVENTS_MAX` events.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn get_key(
    call: ViewCall,
    Path(key): Path<String>,
    Query(q): Query<GetQuery>,
) -> ApiResult<Json<KvEntryJson>> {
    let entry = call
        .read(&key_stream(&key), q.min_position, move |v| match q.version {
            None => v.kv().get(&key, now_ms()),
            Some(version) => v.kv().get_at(&key, StreamVersion(version)),
        })
        .await?;
    Ok(Json(KvEntryJson { key: entry.key, value: entry.value, version: entry.version.0, expires_at: entry.expires_at }))
}

/// A key's value as `GET /v1/kv/{key}` answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct KvEntryJson {
    pub key: String,
    /// Any JSON value.
    #[schema(value_type = Value)]
    pub value: Value,
    /// The key's version: its stream's version at its last write.
    pub version: u64,
    /// Unix ms from which the key reads as absent, or null.
    pub expires_at: Option<u64>,
}

/// EXISTS: whether the key holds anything, of any kind (value, counter, string, list or set).
#[utoipa::path(
    head, path = "/v1/kv/{key}", tag = "kv",
    params(("key" = String, Path, description = "Percent-encoded key."), MinPosition),
    responses(
        (status = 200, description = "The key exists (and has not expired). No body."),
        (status = 404, description = "The key is absent or expired. No body."),
        (status = 400, description = "An invalid key or query (no body: HEAD answers carry none)."),
        (status = 403, description = "The token lacks `read` on `kv:<key>` (no body)."),
    ),
    security(("bearer" = []), ())
)]
pub async fn exists(
    call: ViewCall,
    Path(key): Path<String>,
    Query(q): Query<MinPosition>,
) -> ApiResult<axum::http::StatusCode> {
    let found = call.read(&key_stream(&key), q.min_position, move |v| v.kv().exists(&key, now_ms())).await?;
    Ok(if found { axum::http::StatusCode::OK } else { axum::http::StatusCode::NOT_FOUND })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutRequest {
    /// Any JSON value.
    #[schema(value_type = Value)]
    value: Value,
    /// Expire this many milliseconds after the write.
    ttl_ms: Option<u64>,
    /// Compare-and-set on the key's version (as `get` answered it), or `"no_stream"` for
    /// "only if the key was never written".
    #[serde(default)]
    expected_version: ExpectedVersionJson,
}

/// SET a key (with an optional TTL and compare-and-set).
#[utoipa::path(
    put, path = "/v1/kv/{key}", tag = "kv",
    params(("key" = String, Path, description = "Percent-encoded key.")),
    request_body = PutRequest,
    responses(
        (status = 200, description = "`{\"key\", \"version\", \"position\"}`.", body = answers::KvSetAnswer),
        (status = 409, description = "`wrong_expected_version`, naming the key.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn put_key(call: ViewCall, Path(key): Path<String>, body: JsonBody) -> ApiResult<Json<answers::KvSetAnswer>> {
    let k = key.clone();
    let written = call
        .write(&key_stream(&key), body, move |v, r: PutRequest| v.kv().set(&k, r.value, r.ttl_ms, r.expected_version.0))
        .await?;
    Ok(Json(answers::KvSetAnswer { key, version: written.version.0, position: written.position.0 }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    /// Delete only if the key's version is this.
    expected_version: Option<u64>,
}

/// DEL a key.
#[utoipa::path(
    delete, path = "/v1/kv/{key}", tag = "kv",
    params(("key" = String, Path, description = "Percent-encoded key.")),
    request_body(content = Option<DeleteRequest>, description = "Optional."),
    responses(
        (status = 200, description = "`{\"deleted\": bool, \"position\"}`; deleting an absent key writes nothing.", body = answers::KvDeletedAnswer),
        (status = 409, description = "`wrong_expected_version`.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn delete_key(
    call: ViewCall,
    Path(key): Path<String>,
    body: OptionalBody,
) -> ApiResult<Json<answers::KvDeletedAnswer>> {
    let done = call
        .write(&key_stream(&key), body, move |v, r: DeleteRequest| {
            v.kv().delete(&key, r.expected_version.map(StreamVersion))
        })
        .await?;
    Ok(Json(answers::KvDeletedAnswer { position: written(&done), deleted: done.value }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncrRequest {
    /// Default 1.
    delta: Option<i64>,
}

/// INCRBY: add to an integer (a missing key counts as 0).
#[utoipa::path(
    post, path = "/v1/kv/{key}/incr", tag = "kv",
    params(("key" = String, Path, description = "Percent-encoded key.")),
    request_body(content = Option<IncrRequest>, description = "Optional; `delta` defaults to 1."),
    responses(
        (status = 200, description = "`{\"value\": n, \"position\"}`.", body = answers::KvIncrAnswer),
        (status = 400, description = "`not_an_integer`, `integer_overflow`, `wrong_type`.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn incr(
    call: ViewCall,
    Path(key): Path<String>,
    body: OptionalBody,
) -> ApiResult<Json<answers::KvIncrAnswer>> {
    let done =
        call.write(&key_stream(&key), body, move |v, r: IncrRequest| v.kv().incr(&key, r.delta.unwrap_or(1))).await?;
    Ok(Json(answers::KvIncrAnswer { position: written(&done), value: done.value }))
}

/// `POST /v1/kv/{key}/append` (named apart from the log's `AppendRequest` in the document).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = KvAppendRequest)]
#[serde(deny_unknown_fields)]
pub struct AppendRequest {
    value: String,
}

/// APPEND to a string value (a missing key counts as "").
#[utoipa::path(
    post, path = "/v1/kv/{key}/append", tag = "kv",
    params(("key" = String, Path, description = "Percent-encoded key.")),
    request_body = AppendRequest,
    responses((status = 200, description = "`{\"length\": bytes, \"position\"}`.", body = answers::KvLengthAnswer), (status = 400, description = "`wrong_type`.", body = ErrorBody)),
    security(("bearer" = []), ())
)]
pub async fn append(
    call: ViewCall,
    Path(key): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<answers::KvLengthAnswer>> {
    let done = call.write(&key_stream(&key), body, move |v, r: AppendRequest| v.kv().append(&key, &r.value)).await?;
    Ok(Json(answers::KvLengthAnswer { position: written(&done), length: done.value }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    #[schema(value_type = Vec<Value>)]
    values: Vec<Value>,
    /// `right` (default) or `left`.
    end: Option<EndParam>,
}

/// LPUSH / RPUSH.
#[utoipa::path(
    post, path = "/v1/kv/{key}/push", tag = "kv",
    params(("key" = String, Path, description = "Percent-encoded key.")),
    request_body = PushRequest,
    responses((status = 200, description = "`{\"length\": n, \"position\"}`.", body = answers::KvLengthAnswer), (status = 400, description = "`wrong_type`.", body = ErrorBody)),
    security(("bearer" = []), ())
)]
pub async fn push(call: ViewCall, Path(key): Path<String>, body: JsonBody) -> ApiResult<Json<answers::KvLengthAnswer>> {
    let done = call
        .write(&key_stream(&key), body, move |v, r: PushRequest| v.kv().push(&key, end_param(r.end), r.values))
        .await?;
    Ok(Json(answers::KvLengthAnswer { position: written(&done), length: done.value }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PopRequest {
    /// `right` (default) or `left`.
    end: Option<EndParam>,
    /// Default 1.
    count: Option<u64>,
}

/// LPOP / RPOP.
#[utoipa::path(
    post, path = "/v1/kv/{key}/pop", tag = "kv",
    params(("key" = String, Path, description = "Percent-encoded key.")),
    request_body(content = Option<PopRequest>, description = "Optional."),
    responses((status = 200, description = "`{\"values\": [...], \"position\"}`; an empty or missing list answers `[]` and writes nothing.", body = answers::KvPopAnswer), (status = 400, description = "`wrong_type`.", body = ErrorBody)),
    security(("bearer" = []), ())
)]
pub async fn pop(call: ViewCall, Path(key): Path<String>, body: OptionalBody) -> ApiResult<Json<answers::KvPopAnswer>> {
    let done = call
        .write(&key_stream(&key), body, move |v, r: PopRequest| v.kv().pop(&key, end_param(r.end), r.count))
        .await?;
    Ok(Json(answers::KvPopAnswer { position: written(&done), values: done.value }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    /// First index (negative counts from the end). Default 0.
    start: Option<i64>,
    /// Last index, inclusive (negative counts from the end). Default -1.
    stop: Option<i64>,
    min_position: Option<u64>,
}

/// LRANGE.
#[utoipa::path(
    get, path = "/v1/kv/{key}/range", tag = "kv",
    params(("key" = String, Path, description = "Percent-encoded key."), RangeQuery),
    responses((status = 200, description = "`{\"values\": [...]}` (LRANGE index rules; a missing key is empty).", body = answers::KvRangeAnswer), (status = 400, description = "`wrong_type`.", body = ErrorBody)),
    security(("bearer" = []), ())
)]
pub async fn range(
    call: ViewCall,
    Path(key): Path<String>,
    Query(q): Query<RangeQuery>,
) -> ApiResult<Json<answers::KvRangeAnswer>> {
    let (start, stop) = (q.start.unwrap_or(0), q.stop.unwrap_or(-1));
    let values =
        call.read(&key_stream(&key), q.min_position, move |v| v.kv().range(&key, start, stop, now_ms())).await?;
    Ok(Json(answers::KvRangeAnswer { values }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembersRequest {
    members: Vec<String>,
}

/// SADD.
#[utoipa::path(
    post, path = "/v1/kv/{key}/sadd", tag = "kv",
    params(("key" = String, Path, description = "Percent-encoded key.")),
    request_body = MembersRequest,
    responses((status = 200, description = "`{\"added\": n, \"position\"}`.", body = answers::KvAddedAnswer), (status = 400, description = "`wrong_type`.", body = ErrorBody)),
    security(("bearer" = []), ())
)]
pub async fn sadd(call: ViewCall, Path(key): Path<String>, body: JsonBody) -> ApiResult<Json<answers::KvAddedAnswer>> {
    let done = call.write(&key_stream(&key), body, move |v, r: MembersRequest| v.kv().sadd(&key, r.members)).await?;
    Ok(Json(answers::KvAddedAnswer { position: written(&done), added: done.value }))
}

/// SREM.
#[utoipa::path(
    post, path = "/v1/kv/{key}/srem", tag = "kv",
    params(("key" = String, Path, description = "Percent-encoded key.")),
    request_body = MembersRequest,
    responses((status = 200, description = "`{\"removed\": n, \"position\"}`.", body = answers::KvRemovedAnswer), (status = 400, description = "`wrong_type`.", body = ErrorBody)),
    security(("bearer" = []), ())
)]
pub async fn srem(
    call: ViewCall,
    Path(key): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<answers::KvRemovedAnswer>> {
    let done = call.write(&key_stream(&key), body, move |v, r: MembersRequest| v.kv().srem(&key, r.members)).await?;
    Ok(Json(answers::KvRemovedAnswer { position: written(&done), removed: done.value }))
}

/// SMEMBERS, sorted.
#[utoipa::path(
    get, path = "/v1/kv/{key}/members", tag = "kv",
    params(("key" = String, Path, description = "Percent-encoded key."), MinPosition),
    responses((status = 200, description = "`{\"members\": [...]}`, sorted; a missing key is empty.", body = answers::KvMembersAnswer), (status = 400, description = "`wrong_type`.", body = ErrorBody)),
    security(("bearer" = []), ())
)]
pub async fn members(
    call: ViewCall,
    Path(key): Path<String>,
    Query(q): Query<MinPosition>,
) -> ApiResult<Json<answers::KvMembersAnswer>> {
    let members = call.read(&key_stream(&key), q.min_position, move |v| v.kv().members(&key, now_ms())).await?;
    Ok(Json(answers::KvMembersAnswer { members }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Newest first, at most this many (default 100, at most 1000).
    limit: Option<usize>,
    min_position: Option<u64>,
}

/// A key's history: every operation, newest first.
#[utoipa::path(
    get, path = "/v1/kv/{key}/history", tag = "kv",
    params(("key" = String, Path, description = "Percent-encoded key."), HistoryQuery),
    responses(
        (status = 200, description = "`{\"versions\": [{\"version\", \"op\", \"value\", \"timestamp\" (unix ms), \"position\"}]}`.", body = answers::KvHistoryAnswer),
        (status = 404, description = "`key_not_found`: the key was never written.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn history(
    call: ViewCall,
    Path(key): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<answers::KvHistoryAnswer>> {
    let limit = q.limit.unwrap_or(HISTORY_LIMIT_DEFAULT);
    let entries = call.read(&key_stream(&key), q.min_position, move |v| v.kv().history(&key, limit)).await?;
    let versions = entries
        .into_iter()
        .map(|h| answers::KvHistoryItem {
            version: h.version.0,
            op: h.op,
            value: h.value,
            timestamp: h.timestamp_ms,
            position: h.position.0,
            erased: h.erased,
        })
        .collect();
    Ok(Json(answers::KvHistoryAnswer { versions }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only keys starting with this.
    prefix: Option<String>,
    /// Only keys after this one (the previous page's `next`).
    after: Option<String>,
    /// Default 100, at most 1000.
    limit: Option<usize>,
    min_position: Option<u64>,
}

/// List live keys by prefix, sorted.
#[utoipa::path(
    get, path = "/v1/kv", tag = "kv",
    params(ListQuery),
    responses((status = 200, description = "`{\"keys\": [...], \"next\": key|null}`.", body = answers::KvKeysPage), (status = 403, description = "The token lacks `read` on `kv:<prefix>`.", body = ErrorBody)),
    security(("bearer" = []), ())
)]
pub async fn list(call: ViewCall, Query(q): Query<ListQuery>) -> ApiResult<Json<answers::KvKeysPage>> {
    let prefix = q.prefix.unwrap_or_default();
    let limit = q.limit.unwrap_or(LIST_LIMIT_DEFAULT).min(LIST_LIMIT_MAX);
    let page = call
        .read(&key_stream(&prefix), q.min_position, move |v| v.kv().list(&prefix, q.after.as_deref(), limit, now_ms()))
        .await?;
    Ok(Json(answers::KvKeysPage { keys: page.keys, next: page.next }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GetManyRequest {
    keys: Vec<String>,
}

/// MGET: several keys at once.
#[utoipa::path(
    post, path = "/v1/kv:get", tag = "kv",
    params(MinPosition),
    request_body = GetManyRequest,
    responses((status = 200, description = "`{\"values\": {\"key\": value|null}}` (null: absent, expired, or not a plain value).", body = answers::KvValuesAnswer)),
    security(("bearer" = []), ())
)]
pub async fn get_many(
    call: ViewCall,
    Query(q): Query<MinPosition>,
    body: JsonBody,
) -> ApiResult<Json<answers::KvValuesAnswer>> {
    call.caller.require_any(Permission::Read)?;
    let request: GetManyRequest = body.read().await?;
    for key in &request.keys {
        call.caller.require(Permission::Read, &key_stream(key))?;
    }
    let values = call.query(q.min_position, move |v| v.kv().get_many(&request.keys, now_ms())).await?;
    let values = values.into_iter().map(|(k, v)| (k, v.unwrap_or(Value::Null))).collect();
    Ok(Json(answers::KvValuesAnswer { values }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TxnRequest {
    /// Keys that must still be at these versions (`null`: must not exist).
    #[serde(default)]
    #[schema(value_type = Value)]
    watch: BTreeMap<String, Option<u64>>,
    /// `{"op": "set"|"delete"|"incr"|"append"|"push"|"pop"|"sadd"|"srem", "key", ...}` with the
    /// fields of the single-key endpoints.
    #[schema(value_type = Vec<Value>)]
    ops: Vec<TxnOp>,
}

/// A transaction: all operations or none, as one atomic append.
#[utoipa::path(
    post, path = "/v1/kv:txn", tag = "kv",
    request_body = TxnRequest,
    responses(
        (status = 200, description = "`{\"outputs\": [per op, as the single-key endpoints answer], \"position\"}`.", body = answers::KvTxnAnswer),
        (status = 409, description = "`wrong_expected_version` naming the watched key that moved.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn txn(call: ViewCall, body: JsonBody) -> ApiResult<Json<answers::KvTxnAnswer>> {
    call.caller.require_any(Permission::Append)?;
    let request: TxnRequest = body.read().await?;
    for key in request.watch.keys() {
        call.caller.require(Permission::Read, &key_stream(key))?;
    }
    for op in &request.ops {
        let key = serde_json::to_value(op).ok().and_then(|v| v["key"].as_str().map(str::to_string)).unwrap_or_default();
        call.caller.require(Permission::Append, &key_stream(&key))?;
    }
    let watch: Vec<(String, Option<StreamVersion>)> =
        request.watch.into_iter().map(|(k, v)| (k, v.map(StreamVersion))).collect();
    let result = call.run(move |v| v.kv().txn(&watch, request.ops)).await?;
    Ok(Json(answers::KvTxnAnswer { outputs: result.outputs, position: result.position.map(|p| p.0) }))
}

/// Where a key-value write was appended; `None` when it changed nothing and so wrote nothing.
fn written<T>(done: &KvWrite<T>) -> Option<u64> {
    done.written.as_ref().map(|w| w.position.0)
}

/// The key-value answers. The handlers send these types, so `/openapi.json` (which schemathesis
/// checks every answer against in CI) describes exactly what is sent.
pub mod answers {
    use projections::TxnOutput;
    use serde::Serialize;
    use serde_json::Value;
    use utoipa::ToSchema;

    /// `PUT /v1/kv/{key}`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct KvSetAnswer {
        pub key: String,
        /// The key's new version.
        pub version: u64,
        /// Where the write was appended.
        pub position: u64,
    }

    /// `DELETE /v1/kv/{key}`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct KvDeletedAnswer {
        pub deleted: bool,
        /// `null` when nothing was deleted (and so nothing written).
        #[schema(required)]
        pub position: Option<u64>,
    }

    /// `POST /v1/kv/{key}/incr`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct KvIncrAnswer {
        /// The new value.
        pub value: i64,
        /// `null` when the write changed nothing (and so wrote nothing).
        #[schema(required)]
        pub position: Option<u64>,
    }

    /// `POST /v1/kv/{key}/append` and `/push`: the new length (bytes of a string, elements of a
    /// list).
    #[derive(Debug, Serialize, ToSchema)]
    pub struct KvLengthAnswer {
        pub length: u64,
        /// `null` when the write changed nothing (and so wrote nothing).
        #[schema(required)]
        pub position: Option<u64>,
    }

    /// `POST /v1/kv/{key}/pop`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct KvPopAnswer {
        #[schema(value_type = Vec<Value>)]
        pub values: Vec<Value>,
        /// `null` when nothing was popped (and so nothing written).
        #[schema(required)]
        pub position: Option<u64>,
    }

    /// `GET /v1/kv/{key}/range`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct KvRangeAnswer {
        #[schema(value_type = Vec<Value>)]
        pub values: Vec<Value>,
    }

    /// `POST /v1/kv/{key}/sadd`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct KvAddedAnswer {
        pub added: u64,
        /// `null` when the write changed nothing (and so wrote nothing).
        #[schema(required)]
        pub position: Option<u64>,
    }

    /// `POST /v1/kv/{key}/srem`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct KvRemovedAnswer {
        pub removed: u64,
        /// `null` when the write changed nothing (and so wrote nothing).
        #[schema(required)]
        pub position: Option<u64>,
    }

    /// `GET /v1/kv/{key}/members`, sorted.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct KvMembersAnswer {
        pub members: Vec<String>,
    }

    /// One operation of a key's history.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct KvHistoryItem {
        pub version: u64,
        /// `set`, `delete`, `incr`, `append`, `push`, `pop`, `sadd`, `srem`.
        pub op: String,
        /// The operation's argument (the value set, the delta, ...), `null` for a delete.
        #[schema(value_type = Value)]
        pub value: Value,
        /// Unix ms.
        pub timestamp: u64,
        pub position: u64,
        /// `true` when the operation's payload was erased (`value` is then `null`); absent
        /// otherwise.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub erased: bool,
    }

    /// `GET /v1/kv/{key}/history`, newest first.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct KvHistoryAnswer {
        pub versions: Vec<KvHistoryItem>,
    }

    /// `GET /v1/kv`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct KvKeysPage {
        pub keys: Vec<String>,
        /// Pass as `after` for the next page; `null` on the last.
        #[schema(required)]
        pub next: Option<String>,
    }

    /// `POST /v1/kv:get`: each key's value, `null` when absent, expired or not a plain value.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct KvValuesAnswer {
        /// In the order the request named the keys.
        #[schema(value_type = Object)]
        pub values: serde_json::Map<String, Value>,
    }

    /// `POST /v1/kv:txn`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct KvTxnAnswer {
        /// One per operation, as the single-key endpoints answer.
        #[schema(value_type = Vec<Object>)]
        pub outputs: Vec<TxnOutput>,
        /// `null` when the transaction wrote nothing.
        #[schema(required)]
        pub position: Option<u64>,
    }
}
