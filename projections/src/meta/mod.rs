//! The metadata view: schema registry, service registry, configuration and relationships, as
//! one projection over `meta:*` streams, and the [`MetaStore`] facade that writes them.
//!
//! Each registry lives in its own module and owns its event types, its entry keys (see
//! keys.rs) and its reads. The identity of every record (subject, service and instance,
//! scope and key, edge) is in the event data, and the view checks that each event sits on the
//! stream that identity names, so the writer's per-stream locks and expected versions cover
//! every change to a record.

mod compat;
mod config;
mod keys;
mod relations;
mod rules;
mod schemas;
mod services;

use std::fmt;
use std::sync::Arc;

use log_engine::{Event, ExpectedVersion, NewEvent, Payload, Position};
use serde_json::{json, Value as Json};

pub use self::config::{AsOf, ConfigVersion, CONFIG_STREAM_PREFIX, DEFAULT_SCOPE};
pub use self::relations::{
    EdgeDirection, Hop, Relation, Traversal, RELATION_DEPTH_MAX, RELATION_STREAM_PREFIX, TRAVERSAL_EDGES_MAX,
};
pub use self::schemas::{
    Compatibility, SchemaVersion, Validation, VersionSel, SCHEMA_STREAM_PREFIX, VALIDATION_ERRORS_MAX,
};
pub use self::services::{
    InstanceRegistration, ServiceInstance, SERVICE_LIST_MAX, SERVICE_STREAM_PREFIX, SERVICE_TTL_MS_MAX,
};

use self::config::Config;
use self::relations::Relations;
pub use self::rules::META_NAME_LEN_MAX;
use self::rules::{check_name, load_error};
use self::schemas::Schemas;
use self::services::Services;
use crate::changes::Touched;
use crate::core::{Core, Planned};
use crate::error::{Error, Result};
use crate::projection::{ApplyError, Changes, LoadError, Projection};

/// The metadata view. Create it empty with [`MetaView::new`].
#[derive(Debug, Default)]
pub struct MetaView {
    schemas: Schemas,
    services: Services,
    config: Config,
    relations: Relations,
    touched: Touched,
}

impl MetaView {
    /// The projection's name in checkpoints and status reports.
    pub const NAME: &'static str = rules::VIEW_NAME;

    pub fn new() -> MetaView {
        MetaView::default()
    }
}

impl Projection for MetaView {
    fn name(&self) -> &'static str {
        MetaView::NAME
    }

    fn apply(&mut self, event: &Event) -> Result<(), ApplyError> {
        if !event.event_type.starts_with("meta.") || !event.stream.starts_with("meta:") || event.erased {
            return Ok(());
        }
        let Payload::Json(data) = &event.data else {
            return Err(ApplyError::new(format!("a {} event must carry JSON data", event.event_type)));
        };
        let touched = &mut self.touched;
        let t = event.event_type.as_str();
        if t.starts_with("meta.schema.") {
            self.schemas.apply(event, data, touched)
        } else if t.starts_with("meta.service.") {
            self.services.apply(event, data, touched)
        } else if t.starts_with("meta.config.") {
            self.config.apply(event, data, touched)
        } else if t.starts_with("meta.relation.") {
            self.relations.apply(event, data, touched)
        } else {
            Ok(())
        }
    }

    fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        self.schemas.entries(&mut out);
        self.services.entries(&mut out);
        self.config.entries(&mut out);
        self.relations.entries(&mut out);
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn changes_since_mark(&self) -> Changes {
        self.touched.changes(|key| {
            let (&tag, rest) = key.split_first()?;
            match tag {
                keys::TAG_SCHEMA_MODE | keys::TAG_SCHEMA_VERSION => self.schemas.lookup(tag, rest),
                keys::TAG_SERVICE => self.services.lookup(rest),
                keys::TAG_CONFIG => self.config.lookup(rest),
                keys::TAG_RELATION => self.relations.lookup(rest),
                _ => None,
            }
        })
    }

    fn mark(&mut self) {
        self.touched.clear();
    }

    fn load(&mut self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), LoadError> {
        let mut fresh = MetaView::new();
        for (key, value) in &entries {
            fresh.upsert(key, value)?;
        }
        *self = fresh;
        Ok(())
    }

    fn apply_changes(&mut self, changes: &Changes) -> Result<(), LoadError> {
        for key in &changes.removals {
            let Some((&tag, rest)) = key.split_first() else { return Err(load_error("an empty entry key".into())) };
            match tag {
                keys::TAG_SCHEMA_MODE | keys::TAG_SCHEMA_VERSION => self.schemas.remove(tag, rest)?,
                keys::TAG_SERVICE => self.services.remove(rest)?,
                keys::TAG_CONFIG => self.config.remove(rest)?,
                keys::TAG_RELATION => self.relations.remove(rest)?,
                other => return Err(load_error(format!("unknown entry tag {other}"))),
            }
        }
        for (key, value) in &changes.upserts {
            self.upsert(key, value)?;
        }
        self.touched.clear();
        Ok(())
    }
}

impl MetaView {
    fn upsert(&mut self, key: &[u8], value: &[u8]) -> Result<(), LoadError> {
        let Some((&tag, rest)) = key.split_first() else { return Err(load_error("an empty entry key".into())) };
        match tag {
            keys::TAG_SCHEMA_MODE | keys::TAG_SCHEMA_VERSION => self.schemas.load(tag, rest, value),
            keys::TAG_SERVICE => self.services.load(rest, value),
            // Versions are immutable, so changes only ever add the next ones, in key order.
            keys::TAG_CONFIG => self.config.load(rest, value),
            keys::TAG_RELATION => self.relations.load(rest, value),
            other => Err(load_error(format!("unknown entry tag {other}"))),
        }
    }
}

/// The result of registering a schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SchemaRegistered {
    pub version: u32,
    /// `None` if this exact schema was already registered (nothing was written).
    pub position: Option<Position>,
}

/// The result of a configuration write.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigWritten {
    pub version: u32,
    pub position: Position,
}

/// The metadata store: writes become events on `meta:*` streams, reads come from the
/// [`MetaView`]. Cheap to clone, `Send + Sync`. Get one from [`crate::Views::meta`].
#[derive(Clone)]
pub struct MetaStore {
    core: Arc<Core>,
}

impl fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetaStore").finish_non_exhaustive()
    }
}

impl MetaStore {
    pub(crate) fn new(core: Arc<Core>) -> MetaStore {
        MetaStore { core }
    }

    fn read<R>(&self, f: impl FnOnce(&MetaView) -> R) -> R {
        self.core.read::<MetaView, R>(f)
    }

    // --- schema registry ---

    /// Registers `schema` as the subject's next version, if it is a valid JSON Schema and
    /// compatible with the latest version under the subject's mode (`incompatible_schema`
    /// otherwise, with the reasons). Registering a schema identical to an existing version
    /// answers that version and writes nothing.
    pub fn register_schema(&self, subject: &str, schema: Json) -> Result<SchemaRegistered> {
        check_name("subject", subject)?;
        Error::check_value(|| format!("the schema for subject {subject:?}"), &schema)?;
        schemas::compile(subject, &schema)?;
        let stream = schemas::stream(subject);
        let (version, done) = self.core.write::<MetaView, u32>(std::slice::from_ref(&stream), |meta, _| match meta
            .schemas
            .plan_register(subject, &schema)?
        {
            Err(existing) => Ok(Planned::nothing(existing)),
            Ok(version) => {
                let event = NewEvent::json(schemas::REGISTERED, &json!({"subject": subject, "schema": schema}));
                Ok(Planned { output: version, appends: vec![(stream.clone(), vec![event])] })
            }
        })?;
        Ok(SchemaRegistered { version, position: done.first().map(|d| d.last_position) })
    }

    /// Sets the subject's compatibility mode (checked at the next registration).
    pub fn set_compatibility(&self, subject: &str, mode: Compatibility) -> Result<Position> {
        check_name("subject", subject)?;
        let event = NewEvent::json(schemas::COMPATIBILITY, &json!({"subject": subject, "mode": mode}));
        Ok(self.core.append(&schemas::stream(subject), ExpectedVersion::Any, vec![event])?.last_position)
    }

    /// The subject's compatibility mode ([`Compatibility::Backward`] unless set).
    pub fn compatibility(&self, subject: &str) -> Compatibility {
        self.read(|m| m.schemas.mode(subject))
    }

    /// Subjects with at least one version, sorted.
    pub fn subjects(&self) -> Vec<String> {
        self.read(|m| m.schemas.subjects())
    }

    /// A version of a subject's schema.
    pub fn schema(&self, subject: &str, version: VersionSel) -> Result<SchemaVersion> {
        self.read(|m| m.schemas.get(subject, version))
    }

    /// Validates `payload` against a version of the subject's schema.
    pub fn validate(&self, subject: &str, version: VersionSel, payload: &Json) -> Result<Validation> {
        let schema = self.schema(subject, version)?;
        schemas::validate(&schema, payload)
    }

    // --- service registry ---

    /// Registers an instance, or refreshes it: a registration is a heartbeat.
    pub fn register_instance(
        &self,
        service: &str,
        instance: &str,
        registration: InstanceRegistration,
    ) -> Result<Position> {
        check_name("service", service)?;
        check_name("instance", instance)?;
        registration.validate()?;
        let mut data = serde_json::to_value(&registration).expect("a registration serializes");
        data["service"] = json!(service);
        data["instance"] = json!(instance);
        let event = NewEvent::json(services::REGISTERED, &data);
        Ok(self.core.append(&services::stream(service), ExpectedVersion::Any, vec![event])?.last_position)
    }

    /// Deregisters an instance; `instance_not_found` if it is not registered.
    pub fn deregister_instance(&self, service: &str, instance: &str) -> Result<Position> {
        check_name("service", service)?;
        check_name("instance", instance)?;
        let stream = services::stream(service);
        let (_, done) = self.core.write::<MetaView, ()>(std::slice::from_ref(&stream), |meta, _| {
            if !meta.services.contains(service, instance) {
                return Err(Error::InstanceNotFound { service: service.to_string(), instance: instance.to_string() });
            }
            let event = NewEvent::json(services::DEREGISTERED, &json!({"service": service, "instance": instance}));
            Ok(Planned { output: (), appends: vec![(stream.clone(), vec![event])] })
        })?;
        Ok(done[0].last_position)
    }

    /// Healthy instances at `now_ms`, by service name and/or tag (neither: all).
    pub fn discover(&self, service: Option<&str>, tag: Option<&str>, now_ms: u64) -> Vec<ServiceInstance> {
        self.read(|m| m.services.discover(service, tag, now_ms))
    }

    // --- configuration ---

    /// Sets a key in a scope ([`DEFAULT_SCOPE`] if `None`); answers the new version.
    pub fn set_config(&self, scope: Option<&str>, key: &str, value: Json) -> Result<ConfigWritten> {
        let scope = scope.unwrap_or(DEFAULT_SCOPE);
        Error::check_value(|| format!("the value of configuration key {key:?}"), &value)?;
        self.config_write(scope, key, config::SET, json!({"scope": scope, "key": key, "value": value}), false)
    }

    /// Deletes a key (a new version with no value); `config_not_found` if it has no value now.
    pub fn delete_config(&self, scope: Option<&str>, key: &str) -> Result<ConfigWritten> {
        let scope = scope.unwrap_or(DEFAULT_SCOPE);
        self.config_write(scope, key, config::DELETED, json!({"scope": scope, "key": key}), true)
    }

    fn config_write(
        &self,
        scope: &str,
        key: &str,
        event_type: &str,
        data: Json,
        must_exist: bool,
    ) -> Result<ConfigWritten> {
        config::check_scope(scope)?;
        check_name("configuration key", key)?;
        let stream = config::stream(scope, key);
        let (version, done) = self.core.write::<MetaView, u32>(std::slice::from_ref(&stream), |meta, _| {
            let history = meta.config.history(scope, key).unwrap_or(&[]);
            if must_exist && history.last().is_none_or(|v| v.value.is_none()) {
                return Err(Error::ConfigNotFound { scope: scope.to_string(), key: key.to_string() });
            }
            let event = NewEvent::json(event_type, &data);
            Ok(Planned { output: history.len() as u32 + 1, appends: vec![(stream.clone(), vec![event])] })
        })?;
        Ok(ConfigWritten { version, position: done[0].last_position })
    }

    /// A key's value as of the latest version, a version, or a time. `config_not_found` if the
    /// key has no such version or the version picked is a delete.
    pub fn config(&self, scope: Option<&str>, key: &str, as_of: AsOf) -> Result<ConfigVersion> {
        let scope = scope.unwrap_or(DEFAULT_SCOPE);
        self.read(|m| m.config.get(scope, key, as_of).filter(|v| v.value.is_some()).cloned())
            .ok_or_else(|| Error::ConfigNotFound { scope: scope.to_string(), key: key.to_string() })
    }

    /// Every version of a key, oldest first (deletes included).
    pub fn config_history(&self, scope: Option<&str>, key: &str) -> Result<Vec<ConfigVersion>> {
        let scope = scope.unwrap_or(DEFAULT_SCOPE);
        self.read(|m| m.config.history(scope, key).map(<[ConfigVersion]>::to_vec))
            .ok_or_else(|| Error::ConfigNotFound { scope: scope.to_string(), key: key.to_string() })
    }

    /// Keys of a scope that have a value, sorted.
    pub fn config_keys(&self, scope: Option<&str>) -> Vec<String> {
        self.read(|m| m.config.keys(scope.unwrap_or(DEFAULT_SCOPE)))
    }

    // --- relationships ---

    /// Adds a typed edge `from → to` (or replaces its properties, a JSON object).
    pub fn relate(&self, from: &str, to: &str, kind: &str, properties: Option<Json>) -> Result<Position> {
        check_name("entity", from)?;
        check_name("entity", to)?;
        check_name("relation type", kind)?;
        if properties.as_ref().is_some_and(|p| !p.is_object() && !p.is_null()) {
            return Err(Error::invalid("relation properties must be a JSON object"));
        }
        if let Some(p) = &properties {
            Error::check_value(|| format!("the properties of the {kind} relation from {from:?}"), p)?;
        }
        let data = json!({"from": from, "to": to, "type": kind, "properties": properties});
        let event = NewEvent::json(relations::ADDED, &data);
        Ok(self.core.append(&relations::stream(from), ExpectedVersion::Any, vec![event])?.last_position)
    }

    /// Removes an edge; `relation_not_found` if there is none.
    pub fn unrelate(&self, from: &str, to: &str, kind: &str) -> Result<Position> {
        check_name("entity", from)?;
        check_name("entity", to)?;
        check_name("relation type", kind)?;
        let stream = relations::stream(from);
        let (_, done) = self.core.write::<MetaView, ()>(std::slice::from_ref(&stream), |meta, _| {
            if !meta.relations.contains(from, to, kind) {
                return Err(Error::RelationNotFound { from: from.into(), to: to.into(), kind: kind.into() });
            }
            let event = NewEvent::json(relations::REMOVED, &json!({"from": from, "to": to, "type": kind}));
            Ok(Planned { output: (), appends: vec![(stream.clone(), vec![event])] })
        })?;
        Ok(done[0].last_position)
    }

    /// Edges reachable from `entity` within `depth` hops (1: its own edges), following
    /// `direction`, optionally only of one type. `depth` must be 1..=[`RELATION_DEPTH_MAX`].
    pub fn relations(
        &self,
        entity: &str,
        direction: EdgeDirection,
        kind: Option<&str>,
        depth: u32,
    ) -> Result<Traversal> {
        check_name("entity", entity)?;
        if depth == 0 || depth > RELATION_DEPTH_MAX {
            return Err(Error::invalid(format!("depth {depth} must be between 1 and {RELATION_DEPTH_MAX}")));
        }
        Ok(self.read(|m| m.relations.traverse(entity, direction, kind, depth)))
    }
}
