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
    now_ms, AsOf, Compatibility, EdgeDirection, VersionSel, CONFIG_STREAM_PREFIX, DEFAULT_SCOPE,
    RELATION_STREAM_PREFIX, SCHEMA_STREAM_PREFIX, SERVICE_STREAM_PREFIX,
};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{Path, Query};
use super::views::{JsonBody, MinPosition, ReadBody as _, ViewCall};
use crate::auth::Permission;

pub use answers::*;

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
        (status = 200, description = "The subject's version; an identical schema answers its existing version with `position: null`.", body = SchemaRegisteredJson),
        (status = 400, description = "`invalid_schema`.", body = ErrorBody),
        (status = 409, description = "`incompatible_schema`, with the reasons.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn register_schema(
    call: ViewCall,
    Path(subject): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<SchemaRegisteredJson>> {
    let done = call
        .write(&schema_resource(&subject), body, move |v, r: RegisterSchema| {
            v.meta().register_schema(&subject, r.schema)
        })
        .await?;
    Ok(Json(SchemaRegisteredJson { version: done.version, position: done.position.map(|p| p.0) }))
}

/// List subjects.
#[utoipa::path(
    get, path = "/v1/meta/schemas", tag = "meta", params(MinPosition),
    responses((status = 200, description = "Every subject, sorted.", body = SubjectsJson)),
    security(("bearer" = []), ())
)]
pub async fn subjects(call: ViewCall, Query(q): Query<MinPosition>) -> ApiResult<Json<SubjectsJson>> {
    let subjects = call.read(SCHEMA_STREAM_PREFIX, q.min_position, |v| Ok(v.meta().subjects())).await?;
    Ok(Json(SubjectsJson { subjects }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetCompatibility {
    /// `backward` is the mode of a subject that never had one set.
    #[schema(value_type = CompatibilityMode)]
    mode: Compatibility,
}

/// Set a subject's compatibility mode.
#[utoipa::path(
    put, path = "/v1/meta/schemas/{subject}/compatibility", tag = "meta",
    params(("subject" = String, Path, description = "Percent-encoded subject.")),
    request_body = SetCompatibility,
    responses((status = 200, description = "The mode now in force and where it was written.", body = CompatibilitySetJson)),
    security(("bearer" = []), ())
)]
pub async fn set_compatibility(
    call: ViewCall,
    Path(subject): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<CompatibilitySetJson>> {
    let (mode, position) = call
        .write(&schema_resource(&subject), body, move |v, r: SetCompatibility| {
            v.meta().set_compatibility(&subject, r.mode).map(|p| (r.mode, p))
        })
        .await?;
    Ok(Json(CompatibilitySetJson { mode: mode.into(), position: position.0 }))
}

/// A subject's compatibility mode.
#[utoipa::path(
    get, path = "/v1/meta/schemas/{subject}/compatibility", tag = "meta",
    params(("subject" = String, Path, description = "Percent-encoded subject."), MinPosition),
    responses((status = 200, description = "The subject's mode (`backward` unless one was set).", body = CompatibilityJson)),
    security(("bearer" = []), ())
)]
pub async fn get_compatibility(
    call: ViewCall,
    Path(subject): Path<String>,
    Query(q): Query<MinPosition>,
) -> ApiResult<Json<CompatibilityJson>> {
    let mode =
        call.read(&schema_resource(&subject), q.min_position, move |v| Ok(v.meta().compatibility(&subject))).await?;
    Ok(Json(CompatibilityJson { mode: mode.into() }))
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
        (status = 200, description = "The schema version.", body = SchemaVersionJson),
        (status = 404, description = "`subject_not_found`, `version_not_found`.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn get_schema(
    call: ViewCall,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Query<MinPosition>,
) -> ApiResult<Json<SchemaVersionJson>> {
    call.caller.require(Permission::Read, &schema_resource(&subject))?;
    let version = version_sel(&version)?;
    let schema = call.query(q.min_position, move |v| v.meta().schema(&subject, version)).await?;
    Ok(Json(schema.into()))
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
        (status = 200, description = "Whether the payload is valid, and why not.", body = ValidationJson),
        (status = 404, description = "`subject_not_found`, `version_not_found`.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn validate(
    call: ViewCall,
    Path(subject): Path<String>,
    Query(q): Query<MinPosition>,
    body: JsonBody,
) -> ApiResult<Json<ValidationJson>> {
    call.caller.require(Permission::Read, &schema_resource(&subject))?;
    let request: ValidateRequest = body.read().await?;
    let version = request.version.map_or(VersionSel::Latest, VersionSel::Number);
    let result = call.query(q.min_position, move |v| v.meta().validate(&subject, version, &request.payload)).await?;
    Ok(Json(result.into()))
}

/// Register (or heartbeat) a service instance.
#[utoipa::path(
    put, path = "/v1/meta/services/{name}/instances/{id}", tag = "meta",
    params(("name" = String, Path, description = "Service name."), ("id" = String, Path, description = "Instance id.")),
    request_body(content = RegisterInstance, description = "The instance counts as healthy for `ttl_ms` after each registration."),
    responses((status = 200, description = "Where the registration was written.", body = PositionJson), (status = 400, description = "`invalid_input`.", body = ErrorBody)),
    security(("bearer" = []), ())
)]
pub async fn register_instance(
    call: ViewCall,
    Path((name, id)): Path<(String, String)>,
    body: JsonBody,
) -> ApiResult<Json<PositionJson>> {
    let position = call
        .write(&service_resource(&name), body, move |v, r: RegisterInstance| {
            v.meta().register_instance(&name, &id, r.into())
        })
        .await?;
    Ok(Json(position.into()))
}

/// Deregister a service instance.
#[utoipa::path(
    delete, path = "/v1/meta/services/{name}/instances/{id}", tag = "meta",
    params(("name" = String, Path, description = "Service name."), ("id" = String, Path, description = "Instance id.")),
    responses((status = 200, description = "Where the deregistration was written.", body = PositionJson), (status = 404, description = "`instance_not_found`.", body = ErrorBody)),
    security(("bearer" = []), ())
)]
pub async fn deregister_instance(
    call: ViewCall,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<PositionJson>> {
    call.caller.require(Permission::Append, &service_resource(&name))?;
    let position = call.run(move |v| v.meta().deregister_instance(&name, &id)).await?;
    Ok(Json(position.into()))
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
    responses((status = 200, description = "The healthy instances.", body = ServicesJson)),
    security(("bearer" = []), ())
)]
pub async fn services(call: ViewCall, Query(q): Query<ServicesQuery>) -> ApiResult<Json<ServicesJson>> {
    let resource = service_resource(q.name.as_deref().unwrap_or(""));
    let instances = call
        .read(&resource, q.min_position, move |v| Ok(v.meta().discover(q.name.as_deref(), q.tag.as_deref(), now_ms())))
        .await?;
    Ok(Json(ServicesJson { instances: instances.into_iter().map(Into::into).collect() }))
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
    responses((status = 200, description = "The key's new version and where it was written.", body = ConfigWrittenJson)),
    security(("bearer" = []), ())
)]
pub async fn set_config(call: ViewCall, Path(key): Path<String>, body: JsonBody) -> ApiResult<Json<ConfigWrittenJson>> {
    // The resource names the scope, which is in the body.
    let request: SetConfig = body.read().await?;
    call.caller.require(Permission::Append, &config_resource(request.scope.as_deref(), &key))?;
    let done = call.run(move |v| v.meta().set_config(request.scope.as_deref(), &key, request.value)).await?;
    Ok(Json(done.into()))
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
        (status = 200, description = "The version asked for (never a delete: a deleted key is `config_not_found`).", body = ConfigVersionJson),
        (status = 404, description = "`config_not_found`.", body = ErrorBody),
    ),
    security(("bearer" = []), ())
)]
pub async fn get_config(
    call: ViewCall,
    Path(key): Path<String>,
    Query(q): Query<ConfigQuery>,
) -> ApiResult<Json<ConfigVersionJson>> {
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
    Ok(Json(version.into()))
}

/// Every version of a configuration key, oldest first (deletes have `value: null`).
#[utoipa::path(
    get, path = "/v1/meta/config/{key}/history", tag = "meta",
    params(("key" = String, Path, description = "Percent-encoded configuration key."), ConfigQuery),
    responses((status = 200, description = "Every version, oldest first.", body = ConfigHistoryJson), (status = 404, description = "`config_not_found`.", body = ErrorBody)),
    security(("bearer" = []), ())
)]
pub async fn config_history(
    call: ViewCall,
    Path(key): Path<String>,
    Query(q): Query<ConfigQuery>,
) -> ApiResult<Json<ConfigHistoryJson>> {
    let resource = config_resource(q.scope.as_deref(), &key);
    let versions =
        call.read(&resource, q.min_position, move |v| v.meta().config_history(q.scope.as_deref(), &key)).await?;
    Ok(Json(ConfigHistoryJson { versions: versions.into_iter().map(Into::into).collect() }))
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
    responses((status = 200, description = "The key's new version (a delete) and where it was written.", body = ConfigWrittenJson), (status = 404, description = "`config_not_found`.", body = ErrorBody)),
    security(("bearer" = []), ())
)]
pub async fn delete_config(
    call: ViewCall,
    Path(key): Path<String>,
    Query(q): Query<ScopeQuery>,
) -> ApiResult<Json<ConfigWrittenJson>> {
    call.caller.require(Permission::Append, &config_resource(q.scope.as_deref(), &key))?;
    let done = call.run(move |v| v.meta().delete_config(q.scope.as_deref(), &key)).await?;
    Ok(Json(done.into()))
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
    responses((status = 200, description = "Where the edge was written.", body = PositionJson)),
    security(("bearer" = []), ())
)]
pub async fn relate(call: ViewCall, body: JsonBody) -> ApiResult<Json<PositionJson>> {
    let r = relation_request(&call, body).await?;
    let position = call.run(move |v| v.meta().relate(&r.from, &r.to, &r.kind, r.properties)).await?;
    Ok(Json(position.into()))
}

/// Remove an edge.
#[utoipa::path(
    delete, path = "/v1/meta/relations", tag = "meta",
    request_body = RelationRequest,
    responses((status = 200, description = "Where the removal was written.", body = PositionJson), (status = 404, description = "`relation_not_found`.", body = ErrorBody)),
    security(("bearer" = []), ())
)]
pub async fn unrelate(call: ViewCall, body: JsonBody) -> ApiResult<Json<PositionJson>> {
    let r = relation_request(&call, body).await?;
    let position = call.run(move |v| v.meta().unrelate(&r.from, &r.to, &r.kind)).await?;
    Ok(Json(position.into()))
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
    responses((status = 200, description = "The edges found, breadth first.", body = TraversalJson)),
    security(("bearer" = []), ())
)]
pub async fn relations(
    call: ViewCall,
    Path(entity): Path<String>,
    Query(q): Query<RelationsQuery>,
) -> ApiResult<Json<TraversalJson>> {
    let direction = q.direction.unwrap_or_default();
    let depth = q.depth.unwrap_or(DEPTH_DEFAULT);
    let traversal = call
        .read(RELATION_STREAM_PREFIX, q.min_position, move |v| {
            v.meta().relations(&entity, direction, q.kind.as_deref(), depth)
        })
        .await?;
    Ok(Json(traversal.into()))
}

/// The metadata view's answers. The handlers send these types, so `/openapi.json` (which
/// schemathesis checks every answer against in CI) describes exactly what is sent. The views'
/// `timestamp_ms` is `timestamp` here (unix milliseconds), as everywhere in the API.
pub mod answers {
    use log_engine::Position;
    use projections::{
        Compatibility, ConfigVersion, ConfigWritten, Hop, InstanceRegistration, SchemaVersion, ServiceInstance,
        Traversal, Validation,
    };
    use serde::{Deserialize, Serialize};
    use serde_json::Value;
    use utoipa::ToSchema;

    /// A subject's compatibility mode: how a new schema version must relate to the latest.
    #[derive(Debug, Clone, Copy, Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum CompatibilityMode {
        None,
        Backward,
        Forward,
        Full,
    }

    impl From<Compatibility> for CompatibilityMode {
        fn from(mode: Compatibility) -> CompatibilityMode {
            match mode {
                Compatibility::None => CompatibilityMode::None,
                Compatibility::Backward => CompatibilityMode::Backward,
                Compatibility::Forward => CompatibilityMode::Forward,
                Compatibility::Full => CompatibilityMode::Full,
            }
        }
    }

    /// Where a write was appended.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct PositionJson {
        pub position: u64,
    }

    impl From<Position> for PositionJson {
        fn from(p: Position) -> PositionJson {
            PositionJson { position: p.0 }
        }
    }

    /// `POST /v1/meta/schemas/{subject}/versions`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct SchemaRegisteredJson {
        /// The subject's version of this schema (from 1).
        pub version: u32,
        /// Where the registration was appended; `null` when this exact schema was already
        /// registered (nothing was written).
        #[schema(required)]
        pub position: Option<u64>,
    }

    /// `GET /v1/meta/schemas`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct SubjectsJson {
        /// Every subject with a registered schema, sorted.
        pub subjects: Vec<String>,
    }

    /// `PUT /v1/meta/schemas/{subject}/compatibility`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct CompatibilitySetJson {
        pub mode: CompatibilityMode,
        pub position: u64,
    }

    /// `GET /v1/meta/schemas/{subject}/compatibility`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct CompatibilityJson {
        /// The subject's mode; `backward` unless one was set.
        pub mode: CompatibilityMode,
    }

    /// `GET /v1/meta/schemas/{subject}/versions/{version}`: one registered version.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct SchemaVersionJson {
        pub subject: String,
        /// From 1.
        pub version: u32,
        /// The JSON Schema as registered.
        #[schema(value_type = Value)]
        pub schema: Value,
        /// When it was registered, unix ms.
        pub timestamp: u64,
        /// Where it was registered.
        pub position: u64,
    }

    impl From<SchemaVersion> for SchemaVersionJson {
        fn from(v: SchemaVersion) -> SchemaVersionJson {
            SchemaVersionJson {
                subject: v.subject,
                version: v.version,
                schema: v.schema,
                timestamp: v.timestamp_ms,
                position: v.position.0,
            }
        }
    }

    /// `POST /v1/meta/schemas/{subject}/validate`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct ValidationJson {
        pub valid: bool,
        /// `"<instance path>: <message>"` for each violation (empty when valid), at most
        /// `VALIDATION_ERRORS_MAX`.
        pub errors: Vec<String>,
        /// The version validated against.
        pub version: u32,
    }

    impl From<Validation> for ValidationJson {
        fn from(v: Validation) -> ValidationJson {
            ValidationJson { valid: v.valid, errors: v.errors, version: v.version }
        }
    }

    /// The body of `PUT /v1/meta/services/{name}/instances/{id}`; every field may be left out.
    #[derive(Debug, Default, Deserialize, ToSchema)]
    #[serde(default, deny_unknown_fields)]
    pub struct RegisterInstance {
        /// Where the instance is reached (URLs, addresses: free text).
        pub endpoints: Vec<String>,
        /// Discovery filters on these (`GET /v1/meta/services?tag=`).
        pub tags: Vec<String>,
        pub capabilities: Vec<String>,
        /// How long after this registration the instance counts as healthy without another one.
        pub ttl_ms: u64,
    }

    impl From<RegisterInstance> for InstanceRegistration {
        fn from(r: RegisterInstance) -> InstanceRegistration {
            InstanceRegistration {
                endpoints: r.endpoints,
                tags: r.tags,
                capabilities: r.capabilities,
                ttl_ms: r.ttl_ms,
            }
        }
    }

    /// A healthy service instance.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct ServiceInstanceJson {
        pub service: String,
        pub instance: String,
        pub endpoints: Vec<String>,
        pub tags: Vec<String>,
        pub capabilities: Vec<String>,
        pub ttl_ms: u64,
        /// When it first registered, unix ms.
        pub registered_ms: u64,
        /// Its last registration (heartbeat), unix ms.
        pub heartbeat_ms: u64,
        /// Where its last heartbeat was written.
        pub position: u64,
    }

    impl From<ServiceInstance> for ServiceInstanceJson {
        fn from(i: ServiceInstance) -> ServiceInstanceJson {
            ServiceInstanceJson {
                service: i.service,
                instance: i.instance,
                endpoints: i.endpoints,
                tags: i.tags,
                capabilities: i.capabilities,
                ttl_ms: i.ttl_ms,
                registered_ms: i.registered_ms,
                heartbeat_ms: i.heartbeat_ms,
                position: i.position.0,
            }
        }
    }

    /// `GET /v1/meta/services`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct ServicesJson {
        /// Registered and heard from within their `ttl_ms`.
        pub instances: Vec<ServiceInstanceJson>,
    }

    /// `PUT` and `DELETE /v1/meta/config/{key}`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct ConfigWrittenJson {
        /// The key's new version (from 1; a delete is a version too).
        pub version: u32,
        pub position: u64,
    }

    impl From<ConfigWritten> for ConfigWrittenJson {
        fn from(w: ConfigWritten) -> ConfigWrittenJson {
            ConfigWrittenJson { version: w.version, position: w.position.0 }
        }
    }

    /// One version of a configuration key.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct ConfigVersionJson {
        pub scope: String,
        pub key: String,
        /// From 1.
        pub version: u32,
        /// The value set; `null` for a delete (only in a history: reading a deleted key is
        /// `404 config_not_found`).
        #[schema(value_type = Value, required)]
        pub value: Option<Value>,
        /// When it was written, unix ms.
        pub timestamp: u64,
        pub position: u64,
    }

    impl From<ConfigVersion> for ConfigVersionJson {
        fn from(v: ConfigVersion) -> ConfigVersionJson {
            ConfigVersionJson {
                scope: v.scope,
                key: v.key,
                version: v.version,
                value: v.value,
                timestamp: v.timestamp_ms,
                position: v.position.0,
            }
        }
    }

    /// `GET /v1/meta/config/{key}/history`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct ConfigHistoryJson {
        /// Oldest first.
        pub versions: Vec<ConfigVersionJson>,
    }

    /// An edge a traversal found.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct EdgeJson {
        pub from: String,
        pub to: String,
        #[serde(rename = "type")]
        pub kind: String,
        /// `{}` when the edge was added without properties.
        #[schema(value_type = Object)]
        pub properties: Value,
        /// When the edge was last added, unix ms.
        pub timestamp: u64,
        pub position: u64,
        /// Hops from the start entity (1: one of its own edges).
        pub depth: u32,
    }

    impl From<Hop> for EdgeJson {
        fn from(h: Hop) -> EdgeJson {
            let r = h.relation;
            EdgeJson {
                from: r.from,
                to: r.to,
                kind: r.kind,
                properties: r.properties,
                timestamp: r.timestamp_ms,
                position: r.position.0,
                depth: h.depth,
            }
        }
    }

    /// `GET /v1/meta/relations/{entity}`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct TraversalJson {
        /// Breadth first.
        pub edges: Vec<EdgeJson>,
        /// True when the traversal stopped at `TRAVERSAL_EDGES_MAX` edges.
        pub truncated: bool,
    }

    impl From<Traversal> for TraversalJson {
        fn from(t: Traversal) -> TraversalJson {
            TraversalJson { edges: t.edges.into_iter().map(Into::into).collect(), truncated: t.truncated }
        }
    }
}
