//! The metadata view over HTTP: schema registry (versions, compatibility, validation), service
//! registry (register = heartbeat, discovery of healthy instances), configuration with version
//! history, and relationships between entities.
//!
//! Each record lives in a `meta:*` stream, whose name is also its authorisation resource:
//! `meta:schema:<subject>`, `meta:service:<name>`, `meta:config:<scope>:<key>`,
//! `meta:relation:<from>` (reading relations needs `read` on `meta:relation:`, since a
//! traversal crosses entities). Times are unix milliseconds under `timestamp`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use projections::{
    now_ms, AsOf, Compatibility, EdgeDirection, InstanceRegistration, VersionSel, CONFIG_STREAM_PREFIX, DEFAULT_SCOPE,
    RELATION_STREAM_PREFIX, SCHEMA_STREAM_PREFIX, SERVICE_STREAM_PREFIX,
};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{read_body, Caller, Path, Query};
use super::views::{run, wait_for, MinPosition};
use super::AppState;
use crate::auth::Permission;
use crate::wire::view_json;

/// Relation traversal depth when the request names none.
const DEPTH_DEFAULT: u32 = 1;

fn schema_resource(subject: &str) -> String {
    format!("{SCHEMA_STREAM_PREFIX}{subject}")
}

fn version_sel(text: &str) -> ApiResult<VersionSel> {
    match text {
        "latest" => Ok(VersionSel::Latest),
        n => n.parse().map(VersionSel::Number).map_err(|_| {
            ApiError::bad_request("invalid_path", format!("schema version {n:?} is neither a number nor \"latest\""))
        }),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterSchema {
    /// A JSON Schema.
    #[schema(value_type = Object)]
    schema: Value,
}

/// Register a schema as the subject's next version (checked for compatibility).
#[utoipa::path(
    post, path = "/v1/meta/schemas/{subject}/versions", tag = "meta",
    params(("subject" = String, Path, description = "Percent-encoded subject.")),
    request_body = RegisterSchema,
    responses(
        (status = 200, description = "`{\"version\", \"position\"}`; an identical schema answers its existing version with `position: null`.", body = Object),
        (status = 400, description = "`invalid_schema`.", body = ErrorBody),
        (status = 409, description = "`incompatible_schema`, with the reasons.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn register_schema(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::Append, &schema_resource(&subject))?;
    let request: RegisterSchema = read_body(&headers, body).await?;
    let done = run(&state, move |s| s.store.views().meta().register_schema(&subject, request.schema)).await?;
    Ok(Json(json!({"version": done.version, "position": done.position.map(|p| p.0)})))
}

/// List subjects.
#[utoipa::path(
    get, path = "/v1/meta/schemas", tag = "meta", params(MinPosition),
    responses((status = 200, description = "`{\"subjects\": [...]}`, sorted.", body = Object)),
    security(("bearer" = []), ())
)]
pub async fn subjects(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<MinPosition>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::Read, SCHEMA_STREAM_PREFIX)?;
    wait_for(&state, q.min_position).await?;
    let subjects = run(&state, |s| Ok(s.store.views().meta().subjects())).await?;
    Ok(Json(json!({ "subjects": subjects })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetCompatibility {
    /// `none`, `backward` (the default mode), `forward` or `full`.
    #[schema(value_type = String)]
    mode: Compatibility,
}

/// Set a subject's compatibility mode.
#[utoipa::path(
    put, path = "/v1/meta/schemas/{subject}/compatibility", tag = "meta",
    params(("subject" = String, Path, description = "Percent-encoded subject.")),
    request_body = SetCompatibility,
    responses((status = 200, description = "`{\"mode\", \"position\"}`.", body = Object)),
    security(("bearer" = []), ())
)]
pub async fn set_compatibility(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::Append, &schema_resource(&subject))?;
    let request: SetCompatibility = read_body(&headers, body).await?;
    let mode = request.mode;
    let position = run(&state, move |s| s.store.views().meta().set_compatibility(&subject, mode)).await?;
    Ok(Json(json!({"mode": mode.as_str(), "position": position.0})))
}

/// A subject's compatibility mode.
#[utoipa::path(
    get, path = "/v1/meta/schemas/{subject}/compatibility", tag = "meta",
    params(("subject" = String, Path, description = "Percent-encoded subject."), MinPosition),
    responses((status = 200, description = "`{\"mode\"}`.", body = Object)),
    security(("bearer" = []), ())
)]
pub async fn get_compatibility(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(subject): Path<String>,
    Query(q): Query<MinPosition>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::Read, &schema_resource(&subject))?;
    wait_for(&state, q.min_position).await?;
    let mode = run(&state, move |s| Ok(s.store.views().meta().compatibility(&subject))).await?;
    Ok(Json(json!({"mode": mode.as_str()})))
}

/// One version of a subject's schema.
#[utoipa::path(
    get, path = "/v1/meta/schemas/{subject}/versions/{version}", tag = "meta",
    params(
        ("subject" = String, Path, description = "Percent-encoded subject."),
        ("version" = String, Path, description = "A version number (from 1) or `latest`."),
        MinPosition,
    ),
    responses(
        (status = 200, description = "`{\"subject\", \"version\", \"schema\", \"timestamp\", \"position\"}`.", body = Object),
        (status = 404, description = "`subject_not_found`, `version_not_found`.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn get_schema(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Query<MinPosition>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::Read, &schema_resource(&subject))?;
    let version = version_sel(&version)?;
    wait_for(&state, q.min_position).await?;
    let schema = run(&state, move |s| s.store.views().meta().schema(&subject, version)).await?;
    Ok(Json(view_json(&schema)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    #[schema(value_type = Object)]
    payload: Value,
    /// A version number; default the latest.
    version: Option<u32>,
}

/// Validate a payload against a subject's schema.
#[utoipa::path(
    post, path = "/v1/meta/schemas/{subject}/validate", tag = "meta",
    params(("subject" = String, Path, description = "Percent-encoded subject."), MinPosition),
    request_body = ValidateRequest,
    responses(
        (status = 200, description = "`{\"valid\": bool, \"errors\": [\"<path>: <message>\"], \"version\"}`.", body = Object),
        (status = 404, description = "`subject_not_found`, `version_not_found`.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn validate(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(subject): Path<String>,
    Query(q): Query<MinPosition>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::Read, &schema_resource(&subject))?;
    let request: ValidateRequest = read_body(&headers, body).await?;
    wait_for(&state, q.min_position).await?;
    let version = request.version.map_or(VersionSel::Latest, VersionSel::Number);
    let result = run(&state, move |s| s.store.views().meta().validate(&subject, version, &request.payload)).await?;
    Ok(Json(view_json(&result)))
}

/// Register (or heartbeat) a service instance.
#[utoipa::path(
    put, path = "/v1/meta/services/{name}/instances/{id}", tag = "meta",
    params(("name" = String, Path, description = "Service name."), ("id" = String, Path, description = "Instance id.")),
    request_body(content = Object, description = "`{\"endpoints\": [...], \"tags\": [...], \"capabilities\": [...], \"ttl_ms\": n}`: the instance counts as healthy for `ttl_ms` after each registration."),
    responses((status = 200, description = "`{\"position\"}`.", body = Object), (status = 400, description = "`invalid_input`.", body = ErrorBody)),
    security(("bearer" = []), ())
)]
pub async fn register_instance(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::Append, &format!("{SERVICE_STREAM_PREFIX}{name}"))?;
    let registration: InstanceRegistration = read_body(&headers, body).await?;
    let position = run(&state, move |s| s.store.views().meta().register_instance(&name, &id, registration)).await?;
    Ok(Json(json!({"position": position.0})))
}

/// Deregister a service instance.
#[utoipa::path(
    delete, path = "/v1/meta/services/{name}/instances/{id}", tag = "meta",
    params(("name" = String, Path, description = "Service name."), ("id" = String, Path, description = "Instance id.")),
    responses((status = 200, description = "`{\"position\"}`.", body = Object), (status = 404, description = "`instance_not_found`.", body = ErrorBody)),
    security(("bearer" = []), ())
)]
pub async fn deregister_instance(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::Append, &format!("{SERVICE_STREAM_PREFIX}{name}"))?;
    let position = run(&state, move |s| s.store.views().meta().deregister_instance(&name, &id)).await?;
    Ok(Json(json!({"position": position.0})))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ServicesQuery {
    /// Only this service.
    name: Option<String>,
    /// Only instances with this tag.
    tag: Option<String>,
    min_position: Option<u64>,
}

/// Healthy instances (registered, and heard from within their TTL).
#[utoipa::path(
    get, path = "/v1/meta/services", tag = "meta", params(ServicesQuery),
    responses((status = 200, description = "`{\"instances\": [{\"service\", \"instance\", \"endpoints\", \"tags\", \"capabilities\", \"ttl_ms\", \"registered_ms\", \"heartbeat_ms\", \"position\"}]}`.", body = Object)),
    security(("bearer" = []), ())
)]
pub async fn services(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<ServicesQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::Read, &format!("{SERVICE_STREAM_PREFIX}{}", q.name.as_deref().unwrap_or("")))?;
    wait_for(&state, q.min_position).await?;
    let instances =
        run(&state, move |s| Ok(s.store.views().meta().discover(q.name.as_deref(), q.tag.as_deref(), now_ms())))
            .await?;
    Ok(Json(json!({ "instances": instances })))
}

fn config_resource(scope: Option<&str>, key: &str) -> String {
    format!("{CONFIG_STREAM_PREFIX}{}:{key}", scope.unwrap_or(DEFAULT_SCOPE))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    #[schema(value_type = Object)]
    value: Value,
    /// Default `global`.
    scope: Option<String>,
}

/// Set a configuration key (a new version).
#[utoipa::path(
    put, path = "/v1/meta/config/{key}", tag = "meta",
    params(("key" = String, Path, description = "Percent-encoded configuration key.")),
    request_body = SetConfig,
    responses((status = 200, description = "`{\"version\", \"position\"}`.", body = Object)),
    security(("bearer" = []), ())
)]
pub async fn set_config(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let request: SetConfig = read_body(&headers, body).await?;
    caller.require(Permission::Append, &config_resource(request.scope.as_deref(), &key))?;
    let done =
        run(&state, move |s| s.store.views().meta().set_config(request.scope.as_deref(), &key, request.value)).await?;
    Ok(Json(json!({"version": done.version, "position": done.position.0})))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConfigQuery {
    /// Default `global`.
    scope: Option<String>,
    /// This version (from 1).
    version: Option<u32>,
    /// The version in force at this time: unix ms or RFC 3339.
    as_of: Option<String>,
    min_position: Option<u64>,
}

/// A configuration key's value: latest, a version, or as of a time.
#[utoipa::path(
    get, path = "/v1/meta/config/{key}", tag = "meta",
    params(("key" = String, Path, description = "Percent-encoded configuration key."), ConfigQuery),
    responses(
        (status = 200, description = "`{\"scope\", \"key\", \"version\", \"value\", \"timestamp\", \"position\"}`.", body = Object),
        (status = 404, description = "`config_not_found`.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn get_config(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(key): Path<String>,
    Query(q): Query<ConfigQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::Read, &config_resource(q.scope.as_deref(), &key))?;
    let as_of = match (q.version, q.as_of.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("invalid_query", "give version or as_of, not both"));
        }
        (Some(v), None) => AsOf::Version(v),
        (None, Some(t)) => AsOf::Time(super::audit::time_param("as_of", t)?),
        (None, None) => AsOf::Latest,
    };
    wait_for(&state, q.min_position).await?;
    let version = run(&state, move |s| s.store.views().meta().config(q.scope.as_deref(), &key, as_of)).await?;
    Ok(Json(view_json(&version)))
}

/// Every version of a configuration key, oldest first (deletes have `value: null`).
#[utoipa::path(
    get, path = "/v1/meta/config/{key}/history", tag = "meta",
    params(("key" = String, Path, description = "Percent-encoded configuration key."), ConfigQuery),
    responses((status = 200, description = "`{\"versions\": [...]}`.", body = Object), (status = 404, description = "`config_not_found`.", body = ErrorBody)),
    security(("bearer" = []), ())
)]
pub async fn config_history(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(key): Path<String>,
    Query(q): Query<ConfigQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::Read, &config_resource(q.scope.as_deref(), &key))?;
    wait_for(&state, q.min_position).await?;
    let versions = run(&state, move |s| s.store.views().meta().config_history(q.scope.as_deref(), &key)).await?;
    Ok(Json(json!({ "versions": view_json(&versions) })))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ScopeQuery {
    /// Default `global`.
    scope: Option<String>,
}

/// Delete a configuration key (a new version without a value).
#[utoipa::path(
    delete, path = "/v1/meta/config/{key}", tag = "meta",
    params(("key" = String, Path, description = "Percent-encoded configuration key."), ScopeQuery),
    responses((status = 200, description = "`{\"version\", \"position\"}`.", body = Object), (status = 404, description = "`config_not_found`.", body = ErrorBody)),
    security(("bearer" = []), ())
)]
pub async fn delete_config(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(key): Path<String>,
    Query(q): Query<ScopeQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::Append, &config_resource(q.scope.as_deref(), &key))?;
    let done = run(&state, move |s| s.store.views().meta().delete_config(q.scope.as_deref(), &key)).await?;
    Ok(Json(json!({"version": done.version, "position": done.position.0})))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelationRequest {
    from: String,
    to: String,
    #[serde(rename = "type")]
    kind: String,
    /// A JSON object (on add).
    #[schema(value_type = Option<Object>)]
    properties: Option<Value>,
}

/// Add a typed edge `from → to` (or replace its properties).
#[utoipa::path(
    post, path = "/v1/meta/relations", tag = "meta",
    request_body = RelationRequest,
    responses((status = 200, description = "`{\"position\"}`.", body = Object)),
    security(("bearer" = []), ())
)]
pub async fn relate(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    caller.require_any(Permission::Append)?;
    let r: RelationRequest = read_body(&headers, body).await?;
    caller.require(Permission::Append, &format!("{RELATION_STREAM_PREFIX}{}", r.from))?;
    let position = run(&state, move |s| s.store.views().meta().relate(&r.from, &r.to, &r.kind, r.properties)).await?;
    Ok(Json(json!({"position": position.0})))
}

/// Remove an edge.
#[utoipa::path(
    delete, path = "/v1/meta/relations", tag = "meta",
    request_body = RelationRequest,
    responses((status = 200, description = "`{\"position\"}`.", body = Object), (status = 404, description = "`relation_not_found`.", body = ErrorBody)),
    security(("bearer" = []), ())
)]
pub async fn unrelate(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    caller.require_any(Permission::Append)?;
    let r: RelationRequest = read_body(&headers, body).await?;
    caller.require(Permission::Append, &format!("{RELATION_STREAM_PREFIX}{}", r.from))?;
    let position = run(&state, move |s| s.store.views().meta().unrelate(&r.from, &r.to, &r.kind)).await?;
    Ok(Json(json!({"position": position.0})))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RelationsQuery {
    /// `out` (default), `in` or `both`.
    #[param(value_type = Option<String>)]
    direction: Option<EdgeDirection>,
    /// Only edges of this type.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Hops to follow, 1 (default) to 8.
    depth: Option<u32>,
    min_position: Option<u64>,
}

/// Edges reachable from an entity, breadth first.
#[utoipa::path(
    get, path = "/v1/meta/relations/{entity}", tag = "meta",
    params(("entity" = String, Path, description = "Percent-encoded entity."), RelationsQuery),
    responses((status = 200, description = "`{\"edges\": [{\"from\", \"to\", \"type\", \"properties\", \"timestamp\", \"position\", \"depth\"}], \"truncated\": bool}`.", body = Object)),
    security(("bearer" = []), ())
)]
pub async fn relations(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(entity): Path<String>,
    Query(q): Query<RelationsQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::Read, RELATION_STREAM_PREFIX)?;
    wait_for(&state, q.min_position).await?;
    let direction = q.direction.unwrap_or_default();
    let depth = q.depth.unwrap_or(DEPTH_DEFAULT);
    let traversal =
        run(&state, move |s| s.store.views().meta().relations(&entity, direction, q.kind.as_deref(), depth)).await?;
    Ok(Json(view_json(&traversal)))
}
