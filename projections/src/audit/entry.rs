//! The audit entry schema: what a client sends ([`NewAuditEntry`]) and what the view keeps and
//! answers ([`AuditEntry`]: the same, plus the id, timestamp, position and chain hash the log
//! assigned).
//!
//! An entry's id is its event's id and its timestamp is its event's timestamp (server time,
//! non-decreasing in log order), so neither can be forged by the client and the time index is
//! the log order. Validation is shared by the writer and the view.

use std::fmt;

use log_engine::{ChainHash, Position, Uuid};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::error::{Error, Result};

/// Longest text field of an entry (ids, names, event, outcome, each role and context id).
pub const AUDIT_FIELD_LEN_MAX: usize = 1024;

/// Severity, in increasing order.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = AuditLevel))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = AuditCategory))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Authentication,
    Authorization,
    DataAccess,
    SystemChange,
    Workflow,
    AgentActivity,
    Security,
    Performance,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = AuditActorType))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorType {
    User,
    Agent,
    System,
}

macro_rules! snake_names {
    ($t:ty { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $t {
            /// Every snake_case name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// The snake_case name used in JSON and query strings.
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$variant => $name),* }
            }

            /// Parses the snake_case name.
            pub fn parse(name: &str) -> Option<$t> {
                match name { $($name => Some(<$t>::$variant),)* _ => None }
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

snake_names!(Level { Trace => "trace", Debug => "debug", Info => "info", Warn => "warn", Error => "error", Fatal => "fatal" });
snake_names!(Category {
    Authentication => "authentication",
    Authorization => "authorization",
    DataAccess => "data_access",
    SystemChange => "system_change",
    Workflow => "workflow",
    AgentActivity => "agent_activity",
    Security => "security",
    Performance => "performance",
});
snake_names!(ActorType { User => "user", Agent => "agent", System => "system" });

/// Which component wrote the entry.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = AuditSource))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Who acted.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = AuditActor))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "type")]
    pub kind: ActorType,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// What was acted on.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = AuditTarget))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub properties: Option<Json>,
}

/// Trace and workflow context.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = AuditTraceContext))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// An audit entry as a client writes it: the data of an `audit.entry` event.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEntry {
    #[serde(default, skip_serializing_if = "is_default_source")]
    pub source: Source,
    pub level: Level,
    pub category: Category,
    /// What happened (also accepted as `action`).
    #[serde(alias = "action")]
    pub event: String,
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    #[serde(default, skip_serializing_if = "is_default_context")]
    pub context: TraceContext,
    /// Free text, for example `success`, `failure`, `denied`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// A JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<Json>,
}

fn is_default_source(s: &Source) -> bool {
    *s == Source::default()
}

fn is_default_context(c: &TraceContext) -> bool {
    *c == TraceContext::default()
}

impl NewAuditEntry {
    /// A minimal entry; fill in the optional parts with struct update syntax.
    pub fn new(level: Level, category: Category, event: impl Into<String>, actor: Actor) -> NewAuditEntry {
        NewAuditEntry {
            source: Source::default(),
            level,
            category,
            event: event.into(),
            actor,
            target: None,
            context: TraceContext::default(),
            outcome: None,
            metadata: None,
        }
    }

    /// Checks the rules serde cannot: required text is non-empty, text is bounded, objects are
    /// objects.
    pub fn validate(&self) -> Result<()> {
        fn text(field: &str, value: &str, required: bool) -> Result<()> {
            if required && value.is_empty() {
                return Err(Error::invalid(format!("audit entry field {field} must not be empty")));
            }
            if value.len() > AUDIT_FIELD_LEN_MAX {
                return Err(Error::invalid(format!(
                    "audit entry field {field} is {} bytes, above the limit of {AUDIT_FIELD_LEN_MAX}",
                    value.len()
                )));
            }
            Ok(())
        }
        fn opt(field: &str, value: &Option<String>) -> Result<()> {
            value.as_deref().map_or(Ok(()), |v| text(field, v, false))
        }
        fn object(field: &str, value: &Option<Json>) -> Result<()> {
            match value {
                None | Some(Json::Object(_)) => Ok(()),
                Some(_) => Err(Error::invalid(format!("audit entry field {field} must be a JSON object"))),
            }
        }
        text("event", &self.event, true)?;
        text("actor.id", &self.actor.id, true)?;
        opt("actor.name", &self.actor.name)?;
        for role in &self.actor.roles {
            text("actor.roles", role, true)?;
        }
        let s = &self.source;
        for (field, value) in
            [("source.component", &s.component), ("source.instance", &s.instance), ("source.version", &s.version)]
        {
            opt(field, value)?;
        }
        opt("source.node", &s.node)?;
        if let Some(t) = &self.target {
            text("target.type", &t.kind, true)?;
            text("target.id", &t.id, true)?;
            opt("target.name", &t.name)?;
            object("target.properties", &t.properties)?;
        }
        let c = &self.context;
        for (field, value) in [
            ("context.trace_id", &c.trace_id),
            ("context.span_id", &c.span_id),
            ("context.parent_span_id", &c.parent_span_id),
            ("context.workflow_id", &c.workflow_id),
            ("context.task_id", &c.task_id),
            ("context.agent_id", &c.agent_id),
            ("context.user_id", &c.user_id),
        ] {
            opt(field, value)?;
        }
        opt("outcome", &self.outcome)?;
        object("metadata", &self.metadata)
    }
}

/// An audit entry as the view answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// The event's id.
    pub id: Uuid,
    /// The event's timestamp, unix ms.
    pub timestamp_ms: u64,
    pub position: Position,
    /// The log's chain hash at `position`.
    pub hash: ChainHash,
    pub stream: String,
    pub entry: NewAuditEntry,
}

impl AuditEntry {
    /// The flat JSON object of the HTTP API: the entry's fields plus `id`, `timestamp` (unix
    /// ms), `position`, `hash` (hex) and `stream`.
    pub fn to_json(&self) -> Json {
        let Ok(Json::Object(mut object)) = serde_json::to_value(&self.entry) else {
            unreachable!("an entry serializes as an object")
        };
        object.insert("id".into(), Json::String(self.id.to_string()));
        object.insert("timestamp".into(), Json::from(self.timestamp_ms));
        object.insert("position".into(), Json::from(self.position.0));
        object.insert("hash".into(), Json::String(self.hash.to_hex()));
        object.insert("stream".into(), Json::String(self.stream.clone()));
        Json::Object(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_round_trip() {
        for level in [Level::Trace, Level::Debug, Level::Info, Level::Warn, Level::Error, Level::Fatal] {
            assert_eq!(serde_json::to_value(level).unwrap(), json!(level.as_str()), "serde and as_str agree");
            assert_eq!(Level::parse(level.as_str()), Some(level));
        }
        for category in [Category::Authentication, Category::SystemChange, Category::Performance] {
            assert_eq!(serde_json::to_value(category).unwrap(), json!(category.as_str()));
        }
        assert_eq!(Category::DataAccess.as_str(), "data_access");
        assert_eq!(Category::parse("agent_activity"), Some(Category::AgentActivity));
        assert_eq!(Level::parse("warn"), Some(Level::Warn));
        assert_eq!(Level::parse("warning"), None);
        assert!(Level::Error > Level::Warn);
        assert_eq!(ActorType::Agent.to_string(), "agent");
    }

    #[test]
    fn parses_the_documented_shape_and_rejects_bad_fields() {
        let entry: NewAuditEntry = serde_json::from_value(json!({
            "level": "warn", "category": "authorization", "action": "tool.denied",
            "actor": {"type": "agent", "id": "agent-7", "roles": ["planner"]},
            "target": {"type": "tool", "id": "shell", "properties": {"risk": "high"}},
            "context": {"trace_id": "t-1", "workflow_id": "wf-9"},
            "outcome": "denied", "metadata": {"reason": "policy"}
        }))
        .unwrap();
        assert_eq!(entry.event, "tool.denied", "action is an alias of event");
        assert!(entry.validate().is_ok());
        let mut bad = entry.clone();
        bad.actor.id.clear();
        assert_eq!(bad.validate().unwrap_err().code(), Some("invalid_input"));
        let mut bad = entry.clone();
        bad.metadata = Some(json!([1]));
        assert!(bad.validate().is_err());
        let mut bad = entry;
        bad.outcome = Some("x".repeat(AUDIT_FIELD_LEN_MAX + 1));
        assert!(bad.validate().is_err());
        assert!(serde_json::from_value::<NewAuditEntry>(json!({"level": "loud"})).is_err());
    }
}
