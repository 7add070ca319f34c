//! The log tools: append, read, list, head, verify, wait, the key-value view, audit queries and
//! checkpoint status, each a thin call of the HTTP API (see [`super::api`]) with a JSON Schema
//! for its input and its output and a description written for a model choosing a tool.

use std::time::Duration;

use axum::http::Method;
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::{ProgressNotificationParam, RequestMetaObject};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::api::{enc, query, ToolError};
use super::CairnMcp;

/// The longest `wait_for_events` may wait.
pub const WAIT_TIMEOUT_MS_MAX: u64 = 60_000;
/// `wait_for_events`'s wait when none is given.
pub const WAIT_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// A progress line of a streamed verification.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyProgress {
    checked: u64,
    total: u64,
}

/// `any`, `no_stream` or `exists`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedKeyword {
    /// No check (the default).
    Any,
    /// The stream must have no events.
    NoStream,
    /// The stream must have at least one event.
    Exists,
}

/// The version a stream (or key) must be at for the write to happen: a keyword, or the exact
/// current last version.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ExpectedVersion {
    Keyword(ExpectedKeyword),
    Exact(u64),
}

/// One event to append.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// The event's type, e.g. `ToolCalled`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The JSON payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// A binary payload, base64 (instead of `data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_b64: Option<String>,
    /// A JSON object of metadata (trace ids, run ids, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// A UUID for idempotent retries: appending the same id and content again writes nothing
    /// and answers the original positions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendArgs {
    /// The stream to append to, e.g. `agent-7` (UTF-8, no control characters, not starting
    /// with `$`).
    pub stream: String,
    /// The events, appended atomically (all or none) in this order.
    pub events: Vec<NewEvent>,
    /// Optimistic concurrency: the stream's current last version, or `no_stream`, `exists`,
    /// `any` (the default).
    #[serde(default)]
    pub expected_version: Option<ExpectedVersion>,
}

/// Where an append landed.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Appended {
    pub stream: String,
    pub first_position: u64,
    pub last_position: u64,
    pub first_version: u64,
    pub last_version: u64,
    /// The chain hash at `last_position`.
    pub hash: String,
}

/// A committed event.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct EventOut {
    /// Global, gapless log position.
    pub position: u64,
    pub stream: String,
    /// Version within its stream, from 0.
    pub version: u64,
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// Server time at append, RFC 3339 UTC.
    pub timestamp: String,
    pub metadata: Map<String, Value>,
    /// The JSON payload (absent for a binary one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// The binary payload, base64 (absent for a JSON one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_b64: Option<String>,
    /// Chain hash at this position (64 hex characters).
    pub hash: String,
}

/// A page of events.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Events {
    pub events: Vec<EventOut>,
    /// Pass as `from` to read the next page; `null` when there is none yet.
    pub next: Option<u64>,
}

/// `forward` (oldest first, the default) or `backward` (newest first).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Forward,
    Backward,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadStreamArgs {
    pub stream: String,
    /// The first version to read (forward) or the newest (backward); default: the start
    /// (forward) or the end (backward).
    #[serde(default)]
    pub from: Option<u64>,
    /// At most this many events (the server caps it).
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub direction: Option<Direction>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadAllArgs {
    /// The first log position to read (default 0).
    #[serde(default)]
    pub from: Option<u64>,
    #[serde(default)]
    pub limit: Option<u64>,
    /// Only streams whose names start with this.
    #[serde(default)]
    pub stream_prefix: Option<String>,
    /// Only events whose types start with this.
    #[serde(default)]
    pub type_prefix: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListStreamsArgs {
    /// Only streams whose names start with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The previous page's `next`.
    #[serde(default)]
    pub after: Option<String>,
    /// At most this many streams (the server caps it).
    #[serde(default)]
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct StreamInfo {
    pub stream: String,
    pub last_version: u64,
    /// Events in the stream.
    pub events: u64,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Streams {
    /// Sorted by name.
    pub streams: Vec<StreamInfo>,
    /// Pass as `after` for the next page; `null` on the last.
    pub next: Option<String>,
}

/// The end of the log.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Head {
    /// The last position, `null` for an empty log.
    pub position: Option<u64>,
    /// The chain hash there (the genesis value for an empty log).
    pub hash: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyArgs {
    /// Check from this position on, trusting the stored chain hash just before it (default:
    /// the whole log).
    #[serde(default)]
    pub from: Option<u64>,
}

/// A verification report.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Verified {
    /// True when every CRC and the whole chain checked out.
    pub ok: bool,
    /// Events checked.
    pub events: u64,
    pub head_position: Option<u64>,
    pub head_hash: Option<String>,
    /// The first damaged position, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_bad_position: Option<u64>,
    /// What failed there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitArgs {
    pub stream: String,
    /// Wait for the event with this version (or later); usually the stream's last version
    /// plus one. Default 0 (any event).
    #[serde(default)]
    pub from_version: Option<u64>,
    /// How long to wait, in milliseconds (default 10000, at most 60000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// At most this many events to return.
    #[serde(default)]
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Waited {
    /// The events from `from_version` on (empty when the wait timed out).
    pub events: Vec<EventOut>,
    /// Pass as `from_version` to wait for what comes after.
    pub next_version: u64,
    /// True when no event came within the timeout.
    pub timed_out: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyArgs {
    /// The key, e.g. `session/42` (stored in the stream `kv:<key>`).
    pub key: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct KvEntry {
    pub key: String,
    pub value: Value,
    /// The key's version: pass it to `kv_compare_and_set`.
    pub version: u64,
    /// Unix milliseconds when the key expires, `null` for never.
    pub expires_at: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvSetArgs {
    pub key: String,
    /// Any JSON value.
    pub value: Value,
    /// Expire the key after this many milliseconds.
    #[serde(default)]
    pub ttl_ms: Option<u64>,
    /// Write only if the key is at this version (`no_stream`: only if it never existed).
    #[serde(default)]
    pub expected_version: Option<ExpectedVersion>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvCasArgs {
    pub key: String,
    pub value: Value,
    /// The version read with `kv_get`, or `no_stream` to create the key only if it never
    /// existed. Another writer in between makes the call fail with `wrong_expected_version`.
    pub expected_version: ExpectedVersion,
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct KvWritten {
    pub key: String,
    /// The key's new version.
    pub version: u64,
    /// The log position of the write.
    pub position: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvDeleteArgs {
    pub key: String,
    /// Delete only if the key is at this version.
    #[serde(default)]
    pub expected_version: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct KvDeleted {
    /// False when the key did not exist (nothing was written).
    pub deleted: bool,
    pub position: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvListArgs {
    /// Only keys starting with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The previous page's `next`.
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct KvKeys {
    pub keys: Vec<String>,
    /// Pass as `after` for the next page; `null` on the last.
    pub next: Option<String>,
}

/// A string that is one of `names`, or null (an optional query filter).
fn one_of(names: &[&str]) -> schemars::Schema {
    schemars::json_schema!({"type": ["string", "null"], "enum": names.iter().copied().map(Some).chain([None]).collect::<Vec<_>>(), "default": null})
}

fn audit_category(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    one_of(projections::Category::NAMES)
}

fn audit_level(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    one_of(projections::Level::NAMES)
}

/// The order of an audit query's entries.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditOrder {
    /// Newest first.
    Desc,
    /// Oldest first.
    Asc,
}

/// The name a keyword enum is written as in a query (its serde name).
fn keyword(value: Option<impl Serialize>) -> Option<String> {
    value.and_then(|v| serde_json::to_value(v).ok()).and_then(|v| v.as_str().map(str::to_string))
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditQueryArgs {
    /// Actor id.
    #[serde(default)]
    pub actor: Option<String>,
    /// The entries' category.
    #[serde(default)]
    #[schemars(schema_with = "audit_category")]
    pub category: Option<String>,
    /// Minimum level.
    #[serde(default)]
    #[schemars(schema_with = "audit_level")]
    pub level: Option<String>,
    /// Target id.
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub trace_id: Option<String>,
    #[serde(default)]
    pub agent_id: Option<String>,
    #[serde(default)]
    pub workflow_id: Option<String>,
    #[serde(default)]
    pub task_id: Option<String>,
    /// From this time on: RFC 3339 or unix milliseconds.
    #[serde(default)]
    pub since: Option<String>,
    /// Up to this time: RFC 3339 or unix milliseconds.
    #[serde(default)]
    pub until: Option<String>,
    /// `desc` (newest first, the default) or `asc`.
    #[serde(default)]
    pub order: Option<AuditOrder>,
    #[serde(default)]
    pub limit: Option<u64>,
    /// The previous page's `next`.
    #[serde(default)]
    pub after: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct AuditPage {
    /// Entries with their id, timestamp (unix ms), position, hash and stream.
    pub entries: Vec<Map<String, Value>>,
    pub next: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Checkpoints {
    /// Oldest first: `sequence`, `file`, `info` (position, kind, sizes, hashes, ...) and
    /// `status` (`valid`, `damaged`, `log_mismatch` or `broken_chain`, with `detail`).
    pub checkpoints: Vec<Map<String, Value>>,
    /// The newest valid checkpoint's log position, `null` when there is none.
    pub newest_valid_position: Option<u64>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

fn expected_json(v: Option<ExpectedVersion>) -> Value {
    serde_json::to_value(v.unwrap_or(ExpectedVersion::Keyword(ExpectedKeyword::Any))).unwrap_or(Value::Null)
}

#[tool_router(router = log_router, vis = "pub(super)")]
impl CairnMcp {
    #[tool(
        description = "Append events to a stream, atomically (all or none). Use expected_version for optimistic concurrency (the stream's last version, or no_stream to create it). Each event has a type and JSON data; give an id to make a retry safe. Returns the positions and versions assigned.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn append_events(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(a): Parameters<AppendArgs>,
    ) -> Result<Json<Appended>, ToolError> {
        let body = json!({"expected_version": expected_json(a.expected_version), "events": a.events});
        let path = format!("/v1/streams/{}/events", enc(&a.stream));
        let appended: Appended = self.api.call_as(Method::POST, &path, Some(&body), self.auth(&ctx).as_deref()).await?;
        self.wrote(appended.last_position);
        Ok(Json(appended))
    }

    #[tool(
        description = "Read one stream's events in order, from a version, forward (oldest first) or backward (newest first). Page with `next`. Fails with stream_not_found for a stream without events.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn read_stream(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(a): Parameters<ReadStreamArgs>,
    ) -> Result<Json<Events>, ToolError> {
        let direction = a.direction.map(|d| match d {
            Direction::Forward => "forward".to_string(),
            Direction::Backward => "backward".to_string(),
        });
        let q = query(&[
            ("from", a.from.map(|v| v.to_string())),
            ("limit", a.limit.map(|v| v.to_string())),
            ("direction", direction),
        ]);
        let path = format!("/v1/streams/{}/events{q}", enc(&a.stream));
        self.api.call_as(Method::GET, &path, None, self.auth(&ctx).as_deref()).await.map(Json)
    }

    #[tool(
        description = "Read the global log (every stream, in position order) from a position, optionally only streams or event types with a prefix. Page with `next`.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn read_all(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(a): Parameters<ReadAllArgs>,
    ) -> Result<Json<Events>, ToolError> {
        let q = query(&[
            ("from", a.from.map(|v| v.to_string())),
            ("limit", a.limit.map(|v| v.to_string())),
            ("stream_prefix", a.stream_prefix),
            ("type_prefix", a.type_prefix),
        ]);
        self.api.call_as(Method::GET, &format!("/v1/events{q}"), None, self.auth(&ctx).as_deref()).await.map(Json)
    }

    #[tool(
        description = "List streams (optionally those whose names start with a prefix) with each one's last version and event count, sorted by name. Page with `after` = the previous `next`.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_streams(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(a): Parameters<ListStreamsArgs>,
    ) -> Result<Json<Streams>, ToolError> {
        let q = query(&[("prefix", a.prefix), ("after", a.after), ("limit", a.limit.map(|v| v.to_string()))]);
        self.api.call_as(Method::GET, &format!("/v1/streams{q}"), None, self.auth(&ctx).as_deref()).await.map(Json)
    }

    #[tool(
        description = "The end of the log: the last position and the chain hash there (which commits to every event before it).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn head(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(_): Parameters<NoArgs>,
    ) -> Result<Json<Head>, ToolError> {
        self.api.call_as(Method::GET, "/v1/head", None, self.auth(&ctx).as_deref()).await.map(Json)
    }

    #[tool(
        description = "Verify the log's integrity: every record's CRC and the whole hash chain, from the start or from a position. Can take a while on a large log; sends progress notifications when the request carries a progress token. Needs admin permission.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn verify(
        &self,
        ctx: RequestContext<RoleServer>,
        meta: RequestMetaObject,
        Parameters(a): Parameters<VerifyArgs>,
    ) -> Result<Json<Verified>, ToolError> {
        let auth = self.auth(&ctx);
        let path = format!("/v1/verify{}", query(&[("from", a.from.map(|v| v.to_string()))]));
        let Some(token) = meta.get_progress_token() else {
            return self.api.call_as::<Verified>(Method::POST, &path, None, auth.as_deref()).await.map(Json);
        };
        // The API reports its progress while it runs (NDJSON): pass each line on as a progress
        // notification (events checked of the total), and answer its report.
        let mut lines = self.api.lines(Method::POST, &path, auth.as_deref()).await?;
        while let Some(line) = lines.next().await? {
            if let Ok(p) = serde_json::from_value::<VerifyProgress>(line.clone()) {
                #[allow(clippy::cast_precision_loss)] // event counts far below 2^53
                let note = ProgressNotificationParam::new(token.clone(), p.checked as f64)
                    .with_total(p.total as f64)
                    .with_message(format!("verified {} of {} events", p.checked, p.total));
                let _ = ctx.peer.notify_progress(note).await;
                continue;
            }
            if line.get("error").is_some_and(Value::is_string) {
                return Err(ToolError::from_body(line));
            }
            return serde_json::from_value::<Verified>(line).map(Json).map_err(|e| {
                ToolError::new("internal", format!("the verification's report has an unexpected shape: {e}"))
            });
        }
        Err(ToolError::new("unavailable", "the verification's answer ended before its report"))
    }

    #[tool(
        description = "Wait for new events on a stream (the tool form of a subscription): returns as soon as the stream has an event at from_version or later, or after timeout_ms with timed_out true. Call again with next_version to keep following.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn wait_for_events(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(a): Parameters<WaitArgs>,
    ) -> Result<Json<Waited>, ToolError> {
        let auth = self.auth(&ctx);
        let auth = auth.as_deref();
        let timeout_ms = a.timeout_ms.unwrap_or(WAIT_TIMEOUT_MS_DEFAULT);
        if timeout_ms > WAIT_TIMEOUT_MS_MAX {
            return Err(ToolError::new(
                "invalid_input",
                format!("timeout_ms {timeout_ms} is above the most a wait may take, {WAIT_TIMEOUT_MS_MAX} ms"),
            ));
        }
        let from = a.from_version.unwrap_or(0);
        // The head first, then the stream: whatever the read does not show was appended after
        // the head, so a subscription from just after the head cannot miss it.
        let head: Head = self.api.call_as(Method::GET, "/v1/head", None, auth).await?;
        if let Some(found) = self.read_from(&a.stream, from, a.limit, auth).await? {
            return Ok(Json(found));
        }
        let start = head.position.map_or(0, |p| p + 1);
        let q = query(&[("from", Some(start.to_string())), ("stream", Some(a.stream.clone()))]);
        let arrived =
            self.api.first_event(&format!("/v1/subscribe{q}"), auth, Duration::from_millis(timeout_ms)).await?;
        if arrived {
            if let Some(found) = self.read_from(&a.stream, from, a.limit, auth).await? {
                return Ok(Json(found));
            }
        }
        Ok(Json(Waited { events: vec![], next_version: from, timed_out: true }))
    }

    #[tool(
        description = "Get a key of the key-value store (the agents' shared memory): its JSON value, version and expiry. Fails with key_not_found.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn kv_get(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(a): Parameters<KeyArgs>,
    ) -> Result<Json<KvEntry>, ToolError> {
        let path = format!("/v1/kv/{}{}", enc(&a.key), query(&[("min_position", self.read_your_writes())]));
        self.api.call_as(Method::GET, &path, None, self.auth(&ctx).as_deref()).await.map(Json)
    }

    #[tool(
        description = "Set a key of the key-value store to a JSON value, optionally with a time to live. Returns the key's new version.",
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false)
    )]
    async fn kv_set(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(a): Parameters<KvSetArgs>,
    ) -> Result<Json<KvWritten>, ToolError> {
        self.put_key(&ctx, &a.key, a.value, a.ttl_ms, a.expected_version).await
    }

    #[tool(
        description = "Compare-and-set a key: write the value only if the key is still at expected_version (from kv_get), or only if it never existed (no_stream). Fails with wrong_expected_version when another writer got there first; read again and retry.",
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false)
    )]
    async fn kv_compare_and_set(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(a): Parameters<KvCasArgs>,
    ) -> Result<Json<KvWritten>, ToolError> {
        self.put_key(&ctx, &a.key, a.value, a.ttl_ms, Some(a.expected_version)).await
    }

    #[tool(
        description = "Delete a key of the key-value store (optionally only at a version). `deleted` is false when it did not exist.",
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn kv_delete(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(a): Parameters<KvDeleteArgs>,
    ) -> Result<Json<KvDeleted>, ToolError> {
        let body = json!({"expected_version": a.expected_version});
        let body = if a.expected_version.is_some() { Some(&body) } else { None };
        let deleted: KvDeleted = self
            .api
            .call_as(Method::DELETE, &format!("/v1/kv/{}", enc(&a.key)), body, self.auth(&ctx).as_deref())
            .await?;
        if let Some(position) = deleted.position {
            self.wrote(position);
        }
        Ok(Json(deleted))
    }

    #[tool(
        description = "List keys of the key-value store in order, optionally those starting with a prefix. Page with `after` = the previous `next`.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn kv_list(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(a): Parameters<KvListArgs>,
    ) -> Result<Json<KvKeys>, ToolError> {
        let q = query(&[
            ("prefix", a.prefix),
            ("after", a.after),
            ("limit", a.limit.map(|v| v.to_string())),
            ("min_position", self.read_your_writes()),
        ]);
        self.api.call_as(Method::GET, &format!("/v1/kv{q}"), None, self.auth(&ctx).as_deref()).await.map(Json)
    }

    #[tool(
        description = "Query the audit log: entries filtered by actor, category, minimum level, target, trace/agent/workflow/task id and time range, newest first by default. Page with `after` = the previous `next`.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn audit_query(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(a): Parameters<AuditQueryArgs>,
    ) -> Result<Json<AuditPage>, ToolError> {
        // What the input schema says, checked: arguments outside it are `invalid_input`.
        let keywords =
            [("category", &a.category, projections::Category::NAMES), ("level", &a.level, projections::Level::NAMES)];
        for (name, value, names) in keywords {
            if let Some(v) = value.as_deref().filter(|v| !names.contains(v)) {
                return Err(ToolError::new(
                    "invalid_input",
                    format!("{name} {v:?} is not one of {}", names.join(", ")),
                ));
            }
        }
        let q = query(&[
            ("actor", a.actor),
            ("category", a.category),
            ("level", a.level),
            ("target", a.target),
            ("trace_id", a.trace_id),
            ("agent_id", a.agent_id),
            ("workflow_id", a.workflow_id),
            ("task_id", a.task_id),
            ("since", a.since),
            ("until", a.until),
            ("order", keyword(a.order)),
            ("limit", a.limit.map(|v| v.to_string())),
            ("after", a.after.map(|v| v.to_string())),
            ("min_position", self.read_your_writes()),
        ]);
        self.api.call_as(Method::GET, &format!("/v1/audit{q}"), None, self.auth(&ctx).as_deref()).await.map(Json)
    }

    #[tool(
        description = "Checkpoint status: every checkpoint of the views with its position and whether it verifies (valid, damaged, log_mismatch, broken_chain), and the newest valid one's position. Needs admin permission.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn checkpoint_status(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(_): Parameters<NoArgs>,
    ) -> Result<Json<Checkpoints>, ToolError> {
        #[derive(Deserialize)]
        struct Listed {
            checkpoints: Vec<Map<String, Value>>,
        }
        let listed: Listed = self.api.call_as(Method::GET, "/v1/checkpoints", None, self.auth(&ctx).as_deref()).await?;
        let newest_valid_position = listed
            .checkpoints
            .iter()
            .rev()
            .find(|c| c.get("status").and_then(Value::as_str) == Some("valid"))
            .and_then(|c| c.get("info")?.get("position")?.as_u64());
        Ok(Json(Checkpoints { checkpoints: listed.checkpoints, newest_valid_position }))
    }
}

impl CairnMcp {
    async fn put_key(
        &self,
        ctx: &RequestContext<RoleServer>,
        key: &str,
        value: Value,
        ttl_ms: Option<u64>,
        expected: Option<ExpectedVersion>,
    ) -> Result<Json<KvWritten>, ToolError> {
        let mut body = json!({"value": value});
        if let Some(ttl) = ttl_ms {
            body["ttl_ms"] = json!(ttl);
        }
        if let Some(expected) = expected {
            body["expected_version"] = json!(expected);
        }
        let written: KvWritten = self
            .api
            .call_as(Method::PUT, &format!("/v1/kv/{}", enc(key)), Some(&body), self.auth(ctx).as_deref())
            .await?;
        self.wrote(written.position);
        Ok(Json(written))
    }

    /// The events of `stream` from version `from`, if there are any.
    async fn read_from(
        &self,
        stream: &str,
        from: u64,
        limit: Option<u64>,
        auth: Option<&str>,
    ) -> Result<Option<Waited>, ToolError> {
        let q = query(&[("from", Some(from.to_string())), ("limit", limit.map(|v| v.to_string()))]);
        let path = format!("/v1/streams/{}/events{q}", enc(stream));
        let page: Events = match self.api.call_as(Method::GET, &path, None, auth).await {
            Ok(page) => page,
            Err(e) if e.code == "stream_not_found" => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(last) = page.events.last() else { return Ok(None) };
        let next_version = last.version + 1;
        Ok(Some(Waited { events: page.events, next_version, timed_out: false }))
    }
}
