//! The metadata view over HTTP: schema registry (versions, compatibility, validation), service
//! registry (register = heartbeat, discovery of healthy instances), configuration with version
//! history, and relationships between entities.
//!
//! Each record lives in a `meta:*` stream, whose name is also its authorisation resource:
//! `meta:schema:<subject>`, `meta:service:<name>`, `meta:config:<scope>:<key>`,
//! `meta:relation:<from>` (reading relations needs `read` on `meta:relation:`, since a
//! traversal crosses entities). Times are unix milliseconds under `timestamp`.

use axum::Json;
use projections::{
    now_ms, AsOf, Compatibility, EdgeDirection, InstanceRegistration, VersionSel, CONFIG_STREAM_PREFIX, DEFAULT_SCOPE,
    RELATION_STREAM_PREFIX, SCHEMA_STREAM_PREFIX, SERVICE_STREAM_PREFIX,
};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Path, Query};
use super::views::{JsonBody, MinPosition, ReadBody as _, ViewCall};
use crate::auth::Permission;
use crate::wire::view_json;

/// Relation traversal depth when the request names none.
const DEPTH_DEFAULT: u32 = 1;

fn schema_resource(subject: &str) -> String {
    format!("{SCHEMA_STREAM_PREFIX}{subject}")
}

fn service_resource(name: &str) -> String {
    format!("{SERVICE_STREAM_PREFIX}{name}")
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
    #[schema(value_type = Value)]
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
pub async fn register_schema(call: ViewCall, Path(subject): Path<String>, body: JsonBody) -> ApiResult<Json<Value>> {
    let done = call
        .write(&schema_resource(&subject), body, move |v, r: RegisterSchema| {
            v.meta().register_schema(&subject, r.schema)
        })
        .await?;
    Ok(Json(json!({"version": done.version, "position": done.position.map(|p| p.0)})))
}

/// List subjects.
#[utoipa::path(
    get, path = "/v1/meta/schemas", tag = "meta", params(MinPosition),
    responses((status = 200, description = "`{\"subjects\": [...]}`, sorted.", body = Object)),
    security(("bearer" = []), ())
)]
pub async fn subjects(call: ViewCall, Query(q): Query<MinPosition>) -> ApiResult<Json<Value>> {
    let subjects = call.read(SCHEMA_STREAM_PREFIX, q.min_position, |v| Ok(v.meta().subjects())).await?;
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
pub async fn set_compatibility(call: ViewCall, Path(subject): Path<String>, body: JsonBody) -> ApiResult<Json<Value>> {
    let (mode, position) = call
        .write(&schema_resource(&subject), body, move |v, r: SetCompatibility| {
            v.meta().set_compatibility(&subject, r.mode).map(|p| (r.mode, p))
        })
        .await?;
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
    call: ViewCall,
    Path(subject): Path<String>,
    Query(q): Query<MinPosition>,
) -> ApiResult<Json<Value>> {
    let mode =
        call.read(&schema_resource(&subject), q.min_position, move |v| Ok(v.meta().compatibility(&subject))).await?;
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
    call: ViewCall,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Query<MinPosition>,
) -> ApiResult<Json<Value>> {
    call.caller.require(Permission::Read, &schema_resource(&subject))?;
    let version = version_sel(&version)?;
    let schema = call.query(q.min_position, move |v| v.meta().schema(&subject, version)).await?;
    Ok(Json(view_json(&schema)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    #[schema(value_type = Value)]
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
    call: ViewCall,
    Path(subject): Path<String>,
    Query(q): Query<MinPosition>,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    call.caller.require(Permission::Read, &schema_resource(&subject))?;
    let request: ValidateRequest = body.read().await?;
    let version = request.version.map_or(VersionSel::Latest, VersionSel::Number);
    let result = call.query(q.min_position, move |v| v.meta().validate(&subject, version, &request.payload)).await?;
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
    call: ViewCall,
    Path((name, id)): Path<(String, String)>,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    let position = call
        .write(&service_resource(&name), body, move |v, r: InstanceRegistration| {
            v.meta().register_instance(&name, &id, r)
        })
        .await?;
    Ok(Json(json!({"position": position.0})))
}

/// Deregister a service instance.
#[utoipa::path(
    delete, path = "/v1/meta/services/{name}/instances/{id}", tag = "meta",
    params(("name" = String, Path, description = "Service name."), ("id" = String, Path, description = "Instance id.")),
    responses((status = 200, description = "`{\"position\"}`.", body = Object), (status = 404, description = "`instance_not_found`.", body = ErrorBody)),
    security(("bearer" = []), ())
)]
pub async fn deregister_instance(call: ViewCall, Path((name, id)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    call.caller.require(Permission::Append, &service_resource(&name))?;
    let position = call.run(move |v| v.meta().deregister_instance(&name, &id)).await?;
    Ok(Json(json!({"position": position.0})))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
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
pub async fn services(call: ViewCall, Query(q): Query<ServicesQuery>) -> ApiResult<Json<Value>> {
    let resource = service_resource(q.name.as_deref().unwrap_or(""));
    let instances = call
        .read(&resource, q.min_position, move |v| Ok(v.meta().discover(q.name.as_deref(), q.tag.as_deref(), now_ms())))
        .await?;
    Ok(Json(json!({ "instances": instances })))
}

fn config_resource(scope: Option<&str>, key: &str) -> String {
    format!("{CONFIG_STREAM_PREFIX}{}:{key}", scope.unwrap_or(DEFAULT_SCOPE))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    #[schema(value_type = Value)]
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
pub async fn set_config(call: ViewCall, Path(key): Path<String>, body: JsonBody) -> ApiResult<Json<Value>> {
    // The resource names the scope, which is in the body.
    let request: SetConfig = body.read().await?;
    call.caller.require(Permission::Append, &config_resource(request.scope.as_deref(), &key))?;
    let done = call.run(move |v| v.meta().set_config(request.scope.as_deref(), &key, request.value)).await?;
    Ok(Json(json!({"version": done.version, "position": done.position.0})))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
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
    call: ViewCall,
    Path(key): Path<String>,
    Query(q): Query<ConfigQuery>,
) -> ApiResult<Json<Value>> {
    call.caller.require(Permission::Read, &config_resource(q.scope.as_deref(), &key))?;
    let as_of = match (q.version, q.as_of.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("invalid_query", "give version or as_of, not both"));
        }
        (Some(v), None) => AsOf::Version(v),
        (None, Some(t)) => AsOf::Time(super::audit::time_param("as_of", t)?),
        (None, None) => AsOf::Latest,
    };
    let version = call.query(q.min_position, move |v| v.meta().config(q.scope.as_deref(), &key, as_of)).await?;
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
    call: ViewCall,
    Path(key): Path<String>,
    Query(q): Query<ConfigQuery>,
) -> ApiResult<Json<Value>> {
    let resource = config_resource(q.scope.as_deref(), &key);
    let versions =
        call.read(&resource, q.min_position, move |v| v.meta().config_history(q.scope.as_deref(), &key)).await?;
    Ok(Json(json!({ "versions": view_json(&versions) })))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
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
    call: ViewCall,
    Path(key): Path<String>,
    Query(q): Query<ScopeQuery>,
) -> ApiResult<Json<Value>> {
    call.caller.require(Permission::Append, &config_resource(q.scope.as_deref(), &key))?;
    let done = call.run(move |v| v.meta().delete_config(q.scope.as_deref(), &key)).await?;
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

/// A relation request, with `append` on its source entity: the token must be able to append
/// somewhere before the body is read, and on `meta:relation:<from>` once it is.
async fn relation_request(call: &ViewCall, body: JsonBody) -> ApiResult<RelationRequest> {
    call.caller.require_any(Permission::Append)?;
    let r: RelationRequest = body.read().await?;
    call.caller.require(Permission::Append, &format!("{RELATION_STREAM_PREFIX}{}", r.from))?;
    Ok(r)
}

/// Add a typed edge `from → to` (or replace its properties).
#[utoipa::path(
    post, path = "/v1/meta/relations", tag = "meta",
    request_body = RelationRequest,
    responses((status = 200, description = "`{\"position\"}`.", body = Object)),
    security(("bearer" = []), ())
)]
pub async fn relate(call: ViewCall, body: JsonBody) -> ApiResult<Json<Value>> {
    let r = relation_request(&call, body).await?;
    let position = call.run(move |v| v.meta().relate(&r.from, &r.to, &r.kind, r.properties)).await?;
    Ok(Json(json!({"position": position.0})))
}

/// Remove an edge.
#[utoipa::path(
    delete, path = "/v1/meta/relations", tag = "meta",
    request_body = RelationRequest,
    responses((status = 200, description = "`{\"position\"}`.", body = Object), (status = 404, description = "`relation_not_found`.", body = ErrorBody)),
    security(("bearer" = []), ())
)]
pub async fn unrelate(call: ViewCall, body: JsonBody) -> ApiResult<Json<Value>> {
    let r = relation_request(&call, body).await?;
    let position = call.run(move |v| v.meta().unrelate(&r.from, &r.to, &r.kind)).await?;
    Ok(Json(json!({"position": position.0})))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
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
    call: ViewCall,
    Path(entity): Path<String>,
    Query(q): Query<RelationsQuery>,
) -> ApiResult<Json<Value>> {
    let direction = q.direction.unwrap_or_default();
    let depth = q.depth.unwrap_or(DEPTH_DEFAULT);
    let traversal = call
        .read(RELATION_STREAM_PREFIX, q.min_position, move |v| {
            v.meta().relations(&entity, direction, q.kind.as_deref(), depth)
        })
        .await?;
    Ok(Json(view_json(&traversal)))
}
