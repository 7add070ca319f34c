//! cairn's read side: projections (key-value, audit, metadata views) built by replaying the log.
//!
//! Every view implements [`Projection`]: a pure function of a log prefix, whose state is a set of
//! keyed entries that the snapshotter can capture whole or incrementally. A [`Runner`] feeds a
//! set of projections the log's events in position order, from each one's own position, and
//! lets callers wait for a position (read-your-writes). [`rebuild`] replays synchronously, for
//! recovery and drills. [`fold`] rebuilds one stream's state with a user function.
//!
//! [`Views`] is the handle a server or CLI uses: it starts the three views on a log and hands
//! out their facades, [`KvStore`] (a shared memory store with Redis semantics where they
//! overlap), [`AuditLog`] (structured audit entries with indexed queries and chain-backed
//! proofs) and [`MetaStore`] (schemas, services, configuration, relationships). Writes go to the
//! log as events; reads come from the views. The event vocabulary and the JSON payloads are
//! documented in `docs/projections.md`.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use std::time::Duration;
//! use log_engine::{Log, Options};
//! use projections::{Actor, ActorType, AuditQuery, Category, Level, NewAuditEntry, Views};
//!
//! let log = Log::open(dir.path(), Options::default())?;
//! let views = Views::open(log.clone())?;
//! let actor = Actor { kind: ActorType::Agent, id: "agent-7".into(), name: None, roles: vec![] };
//! let entry = NewAuditEntry::new(Level::Info, Category::AgentActivity, "tool.called", actor);
//! let appended = views.audit().append(&entry, None)?;
//! views.wait_for(appended.position, Duration::from_secs(5))?;
//! let page = views.audit().query(&AuditQuery { actor: Some("agent-7".into()), ..Default::default() })?;
//! assert_eq!(page.entries[0].id, appended.id);
//! assert!(views.audit().proof(appended.id)?.verified);
//! views.stop();
//! # Ok::<(), projections::Error>(())
//! ```

mod audit;
mod changes;
mod core;
mod error;
mod fold;
mod json;
mod kv;
/// The memory graph of the MCP memory tools (a module of its own: its names, `Entity` and
/// `Relation`, are the reference memory server's and would collide with the views' own).
pub mod memory;
mod meta;
mod projection;
mod runner;
mod streams;
mod views;

pub use crate::audit::{
    Actor, ActorType, AuditAppended, AuditEntry, AuditLog, AuditPage, AuditProof, AuditQuery, AuditView, Category,
    Level, NewAuditEntry, Order, Source, Target, TraceContext, AUDIT_EVENT_TYPE, AUDIT_FIELD_LEN_MAX,
    AUDIT_QUERY_LIMIT_DEFAULT, AUDIT_QUERY_LIMIT_MAX,
};
pub use crate::core::{now_ms, with_principal, PRINCIPAL_KEY, WRITE_ATTEMPTS_MAX, WRITE_SYNC_TIMEOUT};
pub use crate::error::{Error, ErrorKind, Result};
pub use crate::fold::{fold, Folded, FOLD_CHUNK_EVENTS};
pub use crate::json::{check_json, check_msgpack_numbers, check_readable, check_value, JsonError, JSON_DEPTH_MAX};
pub use crate::kv::{
    key_stream, End, HistoryEntry, KeyPage, KvEntry, KvStore, KvView, KvWrite, TxnOp, TxnOutput, TxnResult, Written,
    AT_VERSION_EVENTS_MAX, HISTORY_LIMIT_MAX, KEY_LEN_MAX, LIST_LIMIT_MAX, MANY_KEYS_MAX, TTL_MS_MAX, TXN_OPS_MAX,
};
pub use crate::meta::{
    AsOf, Compatibility, ConfigVersion, ConfigWritten, EdgeDirection, Hop, InstanceRegistration, MetaStore, MetaView,
    Relation, SchemaRegistered, SchemaVersion, ServiceInstance, Traversal, Validation, VersionSel,
    CONFIG_STREAM_PREFIX, DEFAULT_SCOPE, META_NAME_LEN_MAX, RELATION_DEPTH_MAX, RELATION_STREAM_PREFIX,
    SCHEMA_STREAM_PREFIX, SERVICE_LIST_MAX, SERVICE_STREAM_PREFIX, SERVICE_TTL_MS_MAX, TRAVERSAL_EDGES_MAX,
    VALIDATION_ERRORS_MAX,
};
pub use crate::projection::{digest_entries, AppliedThrough, ApplyError, Changes, LoadError, Projection};
pub use crate::runner::{
    apply_event, rebuild, rebuild_with_progress, ProjectionError, Rebuilt, Runner, RunnerStatus, ViewStatus,
    APPLY_BATCH_MAX, REBUILD_PROGRESS_EVERY, RECENT_ERRORS_MAX,
};
pub use crate::streams::{
    view_stream_owner, AUDIT_STREAM_PREFIX, KV_STREAM_PREFIX, META_STREAM_PREFIX, SERVER_AUDIT_STREAM_PREFIX,
    VIEW_FOLDED_PREFIXES, VIEW_STREAM_PREFIXES,
};
pub use crate::views::Views;
