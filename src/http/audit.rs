//! The audit view over HTTP: append structured audit entries, query them, and prove one
//! against the log's hash chain.
//!
//! An entry is written to the stream `audit:<category>`; authorisation uses that name
//! (`append` on `audit:security` to write a security entry; `read` on `audit:` to query all,
//! or on `audit:<category>` to query one category). Entry timestamps are server time in unix
//! milliseconds; `since`/`until` take unix ms or RFC 3339.

use axum::Json;
use log_engine::{Position, Uuid};
use projections::{AuditQuery, Category, Level, NewAuditEntry, Order, AUDIT_STREAM_PREFIX};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{from_value, Path, Query};
use super::views::{JsonBody, MinPosition, ReadBody as _, ViewCall};
use crate::auth::Permission;

/// Append an audit entry.
#[utoipa::path(
    post, path = "/v1/audit", tag = "audit",
    request_body(content = answers::NewAuditEntryBody, description = "The entry. `event` is also accepted as `action`; `id` (a UUID) makes a retry idempotent."),
    responses(
        (status = 200, description = "`{\"id\", \"position\", \"hash\"}`: the entry's id and where the log holds it.", body = answers::AuditReceipt),
        (status = 400, description = "`invalid_body` or `invalid_input` naming the field.", body = ErrorBody),
        (status = 403, description = "The token lacks `append` on `audit:<category>`.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn append(call: ViewCall, body: JsonBody) -> ApiResult<Json<answers::AuditReceipt>> {
    call.caller.require_any(Permission::Append)?;
    let mut value: Value = body.read().await?;
    let id = match value.as_object_mut().and_then(|o| o.remove("id")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            Uuid::parse_str(&s)
                .map_err(|_| ApiError::bad_request("invalid_input", format!("id {s:?} is not a UUID")))?,
        ),
        Some(other) => return Err(ApiError::bad_request("invalid_input", format!("id {other} is not a UUID"))),
    };
    let entry: NewAuditEntry = from_value(value)?;
    call.caller.require(Permission::Append, &format!("{AUDIT_STREAM_PREFIX}{}", entry.category.as_str()))?;
    let done = call.run(move |v| v.audit().append(&entry, id)).await?;
    Ok(Json(answers::AuditReceipt { id: done.id.to_string(), position: done.position.0, hash: done.hash.to_hex() }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct QueryParams {
    /// Actor id.
    actor: Option<String>,
    category: Option<String>,
    /// Exactly this level.
    level: Option<String>,
    /// Target id.
    target: Option<String>,
    trace_id: Option<String>,
    /// `context.agent_id`, or the actor's id when the actor is an agent.
    agent_id: Option<String>,
    workflow_id: Option<String>,
    task_id: Option<String>,
    /// From this time (inclusive): unix ms or RFC 3339.
    since: Option<String>,
    /// Before this time (exclusive): unix ms or RFC 3339.
    until: Option<String>,
    /// `desc` (newest first, the default) or `asc`.
    order: Option<String>,
    /// Default 100, at most 1000.
    limit: Option<usize>,
    /// The previous page's `next`.
    after: Option<u64>,
    min_position: Option<u64>,
}

pub(super) fn time_param(name: &str, text: &str) -> ApiResult<u64> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .ok_or_else(|| {
            ApiError::bad_request("invalid_query", format!("{name}={text:?} is neither unix milliseconds nor RFC 3339"))
        })
}

/// Query audit entries (every given filter must match), one page at a time.
#[utoipa::path(
    get, path = "/v1/audit", tag = "audit",
    params(QueryParams),
    responses(
        (status = 200, description = "`{\"entries\": [entry + id, timestamp (unix ms), position, hash, stream], \"next\": cursor|null}`.", body = answers::AuditPage),
        (status = 400, description = "`invalid_query` naming the parameter.", body = ErrorBody),
        (status = 403, description = "The token lacks `read` on `audit:` (or `audit:<category>` with a category filter).", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn query(call: ViewCall, Query(q): Query<QueryParams>) -> ApiResult<Json<answers::AuditPage>> {
    let bad =
        |name: &str, value: &str| ApiError::bad_request("invalid_query", format!("{name}={value:?} is not known"));
    let category = q.category.as_deref().map(|c| Category::parse(c).ok_or_else(|| bad("category", c))).transpose()?;
    let level = q.level.as_deref().map(|l| Level::parse(l).ok_or_else(|| bad("level", l))).transpose()?;
    let order = match q.order.as_deref() {
        None | Some("desc") => Order::Desc,
        Some("asc") => Order::Asc,
        Some(other) => return Err(bad("order", other)),
    };
    let resource = match category {
        Some(c) => format!("{AUDIT_STREAM_PREFIX}{}", c.as_str()),
        None => AUDIT_STREAM_PREFIX.to_string(),
    };
    call.caller.require(Permission::Read, &resource)?;
    let query = AuditQuery {
        actor: q.actor,
        category,
        level,
        target: q.target,
        trace_id: q.trace_id,
        agent_id: q.agent_id,
        workflow_id: q.workflow_id,
        task_id: q.task_id,
        since: q.since.as_deref().map(|t| time_param("since", t)).transpose()?,
        until: q.until.as_deref().map(|t| time_param("until", t)).transpose()?,
        order,
        limit: q.limit,
        after: q.after.map(Position),
    };
    let page = call.query(q.min_position, move |v| v.audit().query(&query)).await?;
    let entries = page.entries.iter().map(|e| e.to_json()).collect();
    Ok(Json(answers::AuditPage { entries, next: page.next.map(|p| p.0) }))
}

/// An entry id from the path, once the caller may read the audit view.
fn entry_id(call: &ViewCall, id: &str) -> ApiResult<Uuid> {
    call.caller.require(Permission::Read, AUDIT_STREAM_PREFIX)?;
    Uuid::parse_str(id)
        .map_err(|_| ApiError::bad_request("invalid_path", format!("audit entry id {id:?} is not a UUID")))
}

/// One audit entry.
#[utoipa::path(
    get, path = "/v1/audit/{id}", tag = "audit",
    params(("id" = String, Path, description = "The entry's id (UUID)."), MinPosition),
    responses((status = 200, description = "The entry.", body = answers::AuditEntryJson), (status = 404, description = "`entry_not_found`.", body = ErrorBody)),
    security(("bearer" = []), ())
)]
pub async fn get(call: ViewCall, Path(id): Path<String>, Query(q): Query<MinPosition>) -> ApiResult<Json<Value>> {
    let id = entry_id(&call, &id)?;
    let entry = call.query(q.min_position, move |v| v.audit().get(id)).await?;
    Ok(Json(entry.to_json()))
}

/// Prove an entry: re-read its event from the log (CRC re-checked) and compare it, field by
/// field and by chain hash, with the view.
#[utoipa::path(
    get, path = "/v1/audit/{id}/proof", tag = "audit",
    params(("id" = String, Path, description = "The entry's id (UUID)."), MinPosition),
    responses(
        (status = 200, description = "`{\"entry\", \"position\", \"hash\", \"verified\": bool, \"detail\"?}`.", body = answers::AuditProofJson),
        (status = 404, description = "`entry_not_found`.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn proof(
    call: ViewCall,
    Path(id): Path<String>,
    Query(q): Query<MinPosition>,
) -> ApiResult<Json<answers::AuditProofJson>> {
    let id = entry_id(&call, &id)?;
    let proof = call.query(q.min_position, move |v| v.audit().proof(id)).await?;
    Ok(Json(answers::AuditProofJson {
        entry: proof.entry.to_json(),
        position: proof.entry.position.0,
        hash: proof.entry.hash.to_hex(),
        verified: proof.verified,
        detail: proof.detail,
    }))
}

/// The audit answers. The handlers send these types, so `/openapi.json` (which schemathesis
/// checks every answer against in CI) describes exactly what is sent; an entry itself is the
/// view's JSON (`AuditEntry::to_json`), described by [`AuditEntryJson`].
pub mod answers {
    use projections::NewAuditEntry;
    use serde::Serialize;
    use serde_json::Value;
    use utoipa::ToSchema;

    /// `POST /v1/audit`: the entry's id and where the log holds it.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct AuditReceipt {
        #[schema(format = "uuid")]
        pub id: String,
        pub position: u64,
        /// The chain hash at `position`, 64 hex characters.
        pub hash: String,
    }

    /// `POST /v1/audit`'s body: an audit entry, and the optional id that makes a retry
    /// idempotent.
    // The handler removes `id` and parses the rest as `NewAuditEntry`, the type flattened here,
    // so this document and the parser share one type.
    #[allow(dead_code, reason = "the document's type of the body; the handler parses its parts")]
    #[derive(Debug, ToSchema)]
    pub struct NewAuditEntryBody {
        #[schema(inline)]
        #[serde(flatten)]
        pub entry: NewAuditEntry,
        /// Makes a retry idempotent: an entry with an id the log already holds is not written
        /// again.
        #[schema(format = "uuid")]
        pub id: Option<String>,
    }

    /// A stored audit entry: the entry as written and where the log holds it.
    #[allow(dead_code, reason = "the document's type of an entry; the view writes it as JSON")]
    #[derive(Debug, ToSchema)]
    pub struct AuditEntryJson {
        #[schema(inline)]
        #[serde(flatten)]
        pub entry: NewAuditEntry,
        #[schema(format = "uuid")]
        pub id: String,
        /// Server time, unix ms.
        pub timestamp: u64,
        pub position: u64,
        /// The chain hash at `position`, 64 hex characters.
        pub hash: String,
        /// `audit:<category>`.
        pub stream: String,
    }

    /// `GET /v1/audit`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct AuditPage {
        #[schema(value_type = Vec<AuditEntryJson>)]
        pub entries: Vec<Value>,
        /// Pass as `after` for the next page; `null` on the last.
        #[schema(required)]
        pub next: Option<u64>,
    }

    /// `GET /v1/audit/{id}/proof`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct AuditProofJson {
        #[schema(value_type = AuditEntryJson)]
        pub entry: Value,
        pub position: u64,
        pub hash: String,
        /// The log's event at `position` (CRC re-checked) matches the entry, field by field and
        /// by chain hash.
        pub verified: bool,
        /// What did not match; present only when `verified` is false.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        pub detail: Option<String>,
    }
}
