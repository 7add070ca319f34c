//! The view commands: `cairn kv`, `cairn audit`, `cairn meta`.
//!
//! Each opens the store (the log, plus the views restored from the newest valid checkpoint
//! chain and the log after it), runs one read or write through the views' facades, prints it,
//! and closes the store. Writes wait until the views have applied them, so the answer printed
//! is what a later read sees; a write command also takes a checkpoint when the policy says one
//! is due, so that later commands restore quickly.

use std::path::Path;
use std::time::Duration;

use clap::{Args, Subcommand};
use log_engine::{Position, StreamVersion, Uuid};
use projections::{
    now_ms, Actor, ActorType, AsOf, AuditQuery, Category, Compatibility, EdgeDirection, InstanceRegistration, Level,
    NewAuditEntry, Order, Target, TraceContext, VersionSel,
};
use serde_json::{json, Value};

use super::remote::{Remote, ServerArgs};
use crate::error::{CliResult, Exit};
use crate::output::{self, Format, Out};
use crate::store::Store;
use crate::wire::{view_json, ExpectedVersionJson, InputError};

/// How long a command waits for the views to apply what it wrote.
const APPLY_WAIT: Duration = Duration::from_secs(30);

/// Opens the store as its writer, with a progress bar for the restore.
pub(crate) fn open_store(dir: &Path) -> CliResult<Store> {
    open_store_as(dir, true)
}

/// [`open_store`] on a reader's log: no lock, nothing written.
pub(crate) fn open_store_read_only(dir: &Path) -> CliResult<Store> {
    open_store_as(dir, false)
}

/// Opens the store with a progress bar for the restore: as its writer (`write`), or on a
/// reader's log that takes no lock and writes nothing (not even a checkpoint directory).
fn open_store_as(dir: &Path, write: bool) -> CliResult<Store> {
    let log = if write { crate::store::open_writer(dir)? } else { super::open_reader(dir)? };
    let bar = output::progress_bar(0, "restoring views");
    let mut stage = None;
    let opened = Store::open(log, snapshotter::Policy::default(), &mut |p| {
        if stage != Some(p.stage) {
            stage = Some(p.stage);
            bar.set_length(p.total);
        }
        bar.set_position(p.done);
    });
    bar.finish_and_clear();
    let (store, restored) = opened?;
    for warning in &restored.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(store)
}

/// Runs `f` on an open store, then (for writes) waits for the views and checkpoints if due,
/// and closes the store whatever happened.
fn with_store(dir: &Path, write: bool, f: impl FnOnce(&Store) -> CliResult<Exit>) -> CliResult<Exit> {
    let store = open_store_as(dir, write)?;
    let result = f(&store).and_then(|exit| {
        if write {
            store.catch_up(APPLY_WAIT)?;
            store.checkpoint_if_due()?;
        }
        Ok(exit)
    });
    store.close();
    result
}

/// A JSON argument; text that is not JSON is taken as a JSON string when `lenient`.
fn json_value(what: &str, text: &str, lenient: bool) -> CliResult<Value> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(_) if lenient => Ok(Value::String(text.to_string())),
        Err(e) => Err(InputError(format!("{what} is not valid JSON: {e}")).into()),
    }
}

/// The `--server` a view read names, if the command is one.
fn kv_server(command: &KvCommand) -> Option<&ServerArgs> {
    match command {
        KvCommand::Get { server, .. } | KvCommand::List { server, .. } | KvCommand::History { server, .. } => {
            Some(server)
        }
        _ => None,
    }
}

/// A view read asked of the server named with `--server` (`GET /v1/kv/...`): the same answer
/// and exit codes as the local read.
fn kv_remote(remote: &Remote, format: Format, command: KvCommand) -> CliResult<Exit> {
    use crate::mcp::api::enc;
    match command {
        KvCommand::Get { key, .. } => {
            let entry: Value = remote.get(&format!("/v1/kv/{}", enc(&key)))?;
            print(format, || compact(&entry["value"]), &entry)
        }
        KvCommand::List { prefix, after, limit, .. } => {
            let mut path = format!("/v1/kv?prefix={}&limit={limit}", enc(&prefix));
            if let Some(after) = &after {
                path.push_str(&format!("&after={}", enc(after)));
            }
            let page: Value = remote.get(&path)?;
            let keys: Vec<String> = serde_json::from_value(page["keys"].clone()).unwrap_or_default();
            print_keys(format, &keys, page["next"].as_str())
        }
        KvCommand::History { key, limit, .. } => {
            let answer: Value = remote.get(&format!("/v1/kv/{}/history?limit={limit}", enc(&key)))?;
            print_history(format, answer["versions"].as_array().map_or(&[][..], Vec::as_slice))
        }
        _ => Err(InputError("only kv get, list and history take --server; write through the HTTP API".into()).into()),
    }
}

fn print_keys(format: Format, keys: &[String], next: Option<&str>) -> CliResult<Exit> {
    let mut out = Out::new();
    match format {
        Format::Text => {
            for key in keys {
                out.line(key)?;
            }
            if let Some(next) = next {
                eprintln!("(more: --after {next:?})");
            }
        }
        Format::Json => out.json_line(&json!({"keys": keys, "next": next}))?,
        Format::Ndjson => {
            for key in keys {
                out.json_line(&json!({ "key": key }))?;
            }
        }
    }
    out.flush()?;
    Ok(Exit::Ok)
}

/// A key's history rows (`{"version", "op", "value", "timestamp", "position", "erased"?}`).
fn print_history(format: Format, rows: &[Value]) -> CliResult<Exit> {
    let mut out = Out::new();
    match format {
        Format::Text => {
            for h in rows {
                let value = if h["erased"] == true { "(erased)".to_string() } else { compact(&h["value"]) };
                out.line(&format!(
                    "v{:<6} {:<7} {}  {}  position {}",
                    h["version"].as_u64().unwrap_or(0),
                    h["op"].as_str().unwrap_or("?"),
                    crate::wire::timestamp(h["timestamp"].as_u64().unwrap_or(0)),
                    value,
                    h["position"].as_u64().unwrap_or(0)
                ))?;
            }
        }
        Format::Json => out.json_line(&json!({ "versions": rows }))?,
        Format::Ndjson => {
            for r in rows {
                out.json_line(r)?;
            }
        }
    }
    out.flush()?;
    Ok(Exit::Ok)
}

fn print(format: Format, text: impl FnOnce() -> String, json: &Value) -> CliResult<Exit> {
    let mut out = Out::new();
    match format {
        Format::Text => out.line(&text())?,
        Format::Json | Format::Ndjson => out.json_line(json)?,
    }
    out.flush()?;
    Ok(Exit::Ok)
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).expect("a JSON value serializes")
}

#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Print a key's value (exit 5 if absent or expired).
    Get {
        key: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Set a key to a JSON value (text that is not JSON is stored as a string).
    Set {
        key: String,
        value: String,
        /// Expire the key this many milliseconds from now.
        #[arg(long, value_name = "MS")]
        ttl_ms: Option<u64>,
        /// Compare-and-set: the key's current version (exit 4 if it moved), or no_stream.
        #[arg(long, value_name = "any|no_stream|exists|N", default_value = "any")]
        expected_version: String,
    },
    /// Delete a key.
    Del {
        key: String,
        /// Delete only if the key's version is this (exit 4 otherwise).
        #[arg(long, value_name = "N")]
        expected_version: Option<u64>,
    },
    /// Add to an integer value (a missing key counts as 0) and print the result.
    Incr {
        key: String,
        #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
        by: i64,
    },
    /// List live keys by prefix, sorted.
    List {
        #[arg(long, default_value = "")]
        prefix: String,
        /// Start after this key (the previous page's last key).
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// A key's operations, newest first.
    History {
        key: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn kv(dir: &Path, format: Format, command: KvCommand) -> CliResult<Exit> {
    if let Some(remote) = kv_server(&command).map(Remote::explicit).transpose()?.flatten() {
        return kv_remote(&remote, format, command);
    }
    let write = matches!(command, KvCommand::Set { .. } | KvCommand::Del { .. } | KvCommand::Incr { .. });
    with_store(dir, write, |store| {
        let kv = store.views().kv();
        match command {
            KvCommand::Get { key, .. } => {
                let entry = kv.get(&key, now_ms())?;
                let json = serde_json::to_value(&entry).expect("an entry serializes");
                print(format, || compact(&entry.value), &json)
            }
            KvCommand::Set { key, value, ttl_ms, expected_version } => {
                let value = json_value("VALUE", &value, true)?;
                let expected = ExpectedVersionJson::parse(&expected_version)?.0;
                let w = kv.set(&key, value, ttl_ms, expected)?;
                let json = json!({"key": key, "version": w.version.0, "position": w.position.0});
                print(format, || format!("set {key}: version {} at position {}", w.version, w.position), &json)
            }
            KvCommand::Del { key, expected_version } => {
                let done = kv.delete(&key, expected_version.map(StreamVersion))?;
                let position = done.written.map(|w| w.position.0);
                let json = json!({"deleted": done.value, "position": position});
                let text = || match position {
                    Some(p) => format!("deleted {key} at position {p}"),
                    None => format!("{key} did not exist; nothing was written"),
                };
                print(format, text, &json)
            }
            KvCommand::Incr { key, by } => {
                let done = kv.incr(&key, by)?;
                let json = json!({"value": done.value, "position": done.written.map(|w| w.position.0)});
                print(format, || done.value.to_string(), &json)
            }
            KvCommand::List { prefix, after, limit, .. } => {
                let page = kv.list(&prefix, after.as_deref(), limit, now_ms())?;
                print_keys(format, &page.keys, page.next.as_deref())
            }
            KvCommand::History { key, limit, .. } => {
                let entries = kv.history(&key, limit)?;
                let rows: Vec<Value> = entries
                    .iter()
                    .map(|h| {
                        let mut row = json!({"version": h.version.0, "op": h.op, "value": h.value, "timestamp": h.timestamp_ms, "position": h.position.0});
                        if h.erased {
                            row["erased"] = json!(true);
                        }
                        row
                    })
                    .collect();
                print_history(format, &rows)
            }
        }
    })
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Append an audit entry (from flags, or a whole entry with --entry).
    Append(AuditAppendArgs),
    /// Query entries; every filter given must match.
    Query(AuditQueryArgs),
    /// Re-check an entry against the log's hash chain (exit 3 if it does not verify).
    Proof { id: Uuid },
}

#[derive(Debug, Args)]
pub struct AuditAppendArgs {
    /// The whole entry as JSON (the HTTP body of POST /v1/audit).
    #[arg(long, value_name = "JSON", conflicts_with_all = ["level", "category", "event", "actor"])]
    pub entry: Option<String>,
    /// trace, debug, info, warn, error or fatal.
    #[arg(long, required_unless_present = "entry")]
    pub level: Option<String>,
    /// authentication, authorization, data_access, system_change, workflow, agent_activity,
    /// security or performance.
    #[arg(long, required_unless_present = "entry")]
    pub category: Option<String>,
    /// What happened, e.g. tool.called.
    #[arg(long, required_unless_present = "entry")]
    pub event: Option<String>,
    /// Who acted (an id).
    #[arg(long, required_unless_present = "entry")]
    pub actor: Option<String>,
    /// user, agent or system.
    #[arg(long, default_value = "agent")]
    pub actor_type: String,
    /// What was acted on (an id); needs --target-type.
    #[arg(long, requires = "target_type")]
    pub target: Option<String>,
    #[arg(long, requires = "target")]
    pub target_type: Option<String>,
    /// e.g. success, failure, denied.
    #[arg(long)]
    pub outcome: Option<String>,
    #[arg(long)]
    pub trace_id: Option<String>,
    #[arg(long)]
    pub workflow_id: Option<String>,
    #[arg(long)]
    pub task_id: Option<String>,
    #[arg(long)]
    pub agent_id: Option<String>,
    /// A JSON object.
    #[arg(long, value_name = "JSON")]
    pub metadata: Option<String>,
    /// The entry's id, for idempotent retries.
    #[arg(long)]
    pub id: Option<Uuid>,
}

#[derive(Debug, Args)]
pub struct AuditQueryArgs {
    #[arg(long)]
    pub actor: Option<String>,
    #[arg(long)]
    pub category: Option<String>,
    #[arg(long)]
    pub level: Option<String>,
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long)]
    pub trace_id: Option<String>,
    #[arg(long)]
    pub agent_id: Option<String>,
    #[arg(long)]
    pub workflow_id: Option<String>,
    #[arg(long)]
    pub task_id: Option<String>,
    /// From this time (inclusive): unix ms or RFC 3339.
    #[arg(long)]
    pub since: Option<String>,
    /// Before this time (exclusive): unix ms or RFC 3339.
    #[arg(long)]
    pub until: Option<String>,
    /// Oldest first (default: newest first).
    #[arg(long)]
    pub asc: bool,
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// The previous page's next cursor.
    #[arg(long)]
    pub after: Option<u64>,
}

fn parse_named<T>(what: &str, text: &str, parse: impl Fn(&str) -> Option<T>) -> CliResult<T> {
    parse(text).ok_or_else(|| InputError(format!("{what} {text:?} is not one of the known names (see --help)")).into())
}

fn time_arg(what: &str, text: &str) -> CliResult<u64> {
    if let Ok(ms) = text.parse() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .ok_or_else(|| InputError(format!("{what} {text:?} is neither unix milliseconds nor RFC 3339")).into())
}

fn audit_entry(args: AuditAppendArgs) -> CliResult<NewAuditEntry> {
    if let Some(text) = &args.entry {
        return serde_json::from_str(text)
            .map_err(|e| InputError(format!("--entry is not an audit entry: {e}")).into());
    }
    let required = |v: Option<String>, flag: &str| v.ok_or_else(|| InputError(format!("{flag} is required")));
    let level = parse_named("level", &required(args.level, "--level")?, Level::parse)?;
    let category = parse_named("category", &required(args.category, "--category")?, Category::parse)?;
    let actor_type = parse_named("actor type", &args.actor_type, ActorType::parse)?;
    let actor = Actor { kind: actor_type, id: required(args.actor, "--actor")?, name: None, roles: vec![] };
    let mut entry = NewAuditEntry::new(level, category, required(args.event, "--event")?, actor);
    entry.target = match (args.target, args.target_type) {
        (Some(id), Some(kind)) => Some(Target { kind, id, name: None, properties: None }),
        _ => None,
    };
    entry.outcome = args.outcome;
    entry.context = TraceContext {
        trace_id: args.trace_id,
        workflow_id: args.workflow_id,
        task_id: args.task_id,
        agent_id: args.agent_id,
        ..TraceContext::default()
    };
    entry.metadata = args.metadata.as_deref().map(|m| json_value("--metadata", m, false)).transpose()?;
    Ok(entry)
}

pub fn audit(dir: &Path, format: Format, command: AuditCommand) -> CliResult<Exit> {
    let write = matches!(command, AuditCommand::Append(_));
    with_store(dir, write, |store| {
        let audit = store.views().audit();
        match command {
            AuditCommand::Append(args) => {
                let id = args.id;
                let entry = audit_entry(args)?;
                let done = audit.append(&entry, id)?;
                let json = json!({"id": done.id, "position": done.position.0, "hash": done.hash.to_hex()});
                print(
                    format,
                    || format!("audit entry {} at position {}; chain hash {}", done.id, done.position, done.hash),
                    &json,
                )
            }
            AuditCommand::Query(q) => {
                let query = AuditQuery {
                    actor: q.actor,
                    category: q.category.as_deref().map(|c| parse_named("category", c, Category::parse)).transpose()?,
                    level: q.level.as_deref().map(|l| parse_named("level", l, Level::parse)).transpose()?,
                    target: q.target,
                    trace_id: q.trace_id,
                    agent_id: q.agent_id,
                    workflow_id: q.workflow_id,
                    task_id: q.task_id,
                    since: q.since.as_deref().map(|t| time_arg("--since", t)).transpose()?,
                    until: q.until.as_deref().map(|t| time_arg("--until", t)).transpose()?,
                    order: if q.asc { Order::Asc } else { Order::Desc },
                    limit: Some(q.limit),
                    after: q.after.map(Position),
                };
                let page = audit.query(&query)?;
                let mut out = Out::new();
                match format {
                    Format::Text => {
                        for e in &page.entries {
                            let n = &e.entry;
                            out.line(&format!(
                                "{}  {:<5} {:<14} {:<20} {} {}{}{}",
                                crate::wire::timestamp(e.timestamp_ms),
                                n.level,
                                n.category,
                                n.event,
                                n.actor.kind,
                                n.actor.id,
                                n.target.as_ref().map_or(String::new(), |t| format!(" -> {} {}", t.kind, t.id)),
                                n.outcome.as_ref().map_or(String::new(), |o| format!(" ({o})")),
                            ))?;
                        }
                        if let Some(next) = page.next {
                            eprintln!("(more: --after {next})");
                        }
                    }
                    Format::Json => out.json_line(&json!({
                        "entries": page.entries.iter().map(|e| e.to_json()).collect::<Vec<_>>(),
                        "next": page.next.map(|p| p.0),
                    }))?,
                    Format::Ndjson => {
                        for e in &page.entries {
                            out.json_line(&e.to_json())?;
                        }
                    }
                }
                out.flush()?;
                Ok(Exit::Ok)
            }
            AuditCommand::Proof { id } => {
                let proof = audit.proof(id)?;
                let text = || match &proof.detail {
                    None => format!(
                        "verified: entry {id} is the event at position {} with chain hash {}",
                        proof.entry.position, proof.entry.hash
                    ),
                    Some(d) => format!("NOT VERIFIED: {d}"),
                };
                print(format, text, &proof.to_json())?;
                Ok(if proof.verified { Exit::Ok } else { Exit::Integrity })
            }
        }
    })
}

#[derive(Debug, Subcommand)]
pub enum MetaCommand {
    /// The schema registry.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// The service registry.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Configuration with version history.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Add a typed relation FROM -> TO.
    Relate {
        from: String,
        to: String,
        #[arg(value_name = "TYPE")]
        kind: String,
        /// A JSON object.
        #[arg(long, value_name = "JSON")]
        properties: Option<String>,
    },
    /// Remove a relation.
    Unrelate {
        from: String,
        to: String,
        #[arg(value_name = "TYPE")]
        kind: String,
    },
    /// Relations reachable from an entity.
    Relations {
        entity: String,
        /// out, in or both.
        #[arg(long, default_value = "out")]
        direction: String,
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        #[arg(long, default_value_t = 1)]
        depth: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Register a JSON Schema as the subject's next version (checked for compatibility).
    Register { subject: String, schema: String },
    /// Print a version of a subject's schema.
    Get {
        subject: String,
        /// A version number, or latest.
        #[arg(default_value = "latest")]
        version: String,
    },
    /// Validate a JSON payload against the subject's latest schema (exit 1 if invalid).
    Validate { subject: String, payload: String },
    /// Set the subject's compatibility mode: none, backward, forward or full.
    Compat { subject: String, mode: String },
    /// List subjects.
    List,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Register (or heartbeat) an instance.
    Register {
        name: String,
        id: String,
        #[arg(long = "endpoint")]
        endpoints: Vec<String>,
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[arg(long = "capability")]
        capabilities: Vec<String>,
        /// Healthy for this long after each registration.
        #[arg(long, default_value_t = 30_000)]
        ttl_ms: u64,
    },
    /// Deregister an instance.
    Deregister { name: String, id: String },
    /// Healthy instances.
    List {
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        tag: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Set a key (a new version). VALUE is JSON; other text is stored as a string.
    Set {
        key: String,
        value: String,
        #[arg(long)]
        scope: Option<String>,
    },
    /// Print a key's value: the latest, a --version, or --as-of a time.
    Get {
        key: String,
        #[arg(long)]
        scope: Option<String>,
        #[arg(long, conflicts_with = "as_of")]
        version: Option<u32>,
        /// Unix ms or RFC 3339.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Every version of a key, oldest first.
    History {
        key: String,
        #[arg(long)]
        scope: Option<String>,
    },
}

pub fn meta(dir: &Path, format: Format, command: MetaCommand) -> CliResult<Exit> {
    let write = matches!(
        command,
        MetaCommand::Relate { .. }
            | MetaCommand::Unrelate { .. }
            | MetaCommand::Schema(SchemaCommand::Register { .. } | SchemaCommand::Compat { .. })
            | MetaCommand::Service(ServiceCommand::Register { .. } | ServiceCommand::Deregister { .. })
            | MetaCommand::Config(ConfigCommand::Set { .. })
    );
    with_store(dir, write, |store| {
        let meta = store.views().meta();
        match command {
            MetaCommand::Schema(SchemaCommand::Register { subject, schema }) => {
                let done = meta.register_schema(&subject, json_value("SCHEMA", &schema, false)?)?;
                let json = json!({"version": done.version, "position": done.position.map(|p| p.0)});
                let text = || match done.position {
                    Some(p) => format!("registered {subject} version {} at position {p}", done.version),
                    None => {
                        format!("{subject} already has this schema as version {}; nothing was written", done.version)
                    }
                };
                print(format, text, &json)
            }
            MetaCommand::Schema(SchemaCommand::Get { subject, version }) => {
                let sel = match version.as_str() {
                    "latest" => VersionSel::Latest,
                    n => VersionSel::Number(
                        n.parse().map_err(|_| InputError(format!("version {n:?} is neither a number nor latest")))?,
                    ),
                };
                let v = meta.schema(&subject, sel)?;
                print(format, || compact(&v.schema), &view_json(&v))
            }
            MetaCommand::Schema(SchemaCommand::Validate { subject, payload }) => {
                let result = meta.validate(&subject, VersionSel::Latest, &json_value("PAYLOAD", &payload, false)?)?;
                let text = || match result.valid {
                    true => format!("valid against {subject} version {}", result.version),
                    false => {
                        format!("INVALID against {subject} version {}: {}", result.version, result.errors.join("; "))
                    }
                };
                print(format, text, &view_json(&result))?;
                // Not 3: that code means damage found in the store, and an invalid payload is no damage.
                Ok(if result.valid { Exit::Ok } else { Exit::Error })
            }
            MetaCommand::Schema(SchemaCommand::Compat { subject, mode }) => {
                let mode: Compatibility = serde_json::from_value(Value::String(mode.clone()))
                    .map_err(|_| InputError(format!("mode {mode:?} is not none, backward, forward or full")))?;
                let position = meta.set_compatibility(&subject, mode)?;
                let json = json!({"mode": mode.as_str(), "position": position.0});
                print(format, || format!("{subject} compatibility is {} (position {position})", mode.as_str()), &json)
            }
            MetaCommand::Schema(SchemaCommand::List) => {
                let subjects = meta.subjects();
                print(format, || subjects.join("\n"), &json!({ "subjects": subjects }))
            }
            MetaCommand::Service(ServiceCommand::Register { name, id, endpoints, tags, capabilities, ttl_ms }) => {
                let position =
                    meta.register_instance(&name, &id, InstanceRegistration { endpoints, tags, capabilities, ttl_ms })?;
                print(
                    format,
                    || format!("registered {name}/{id} at position {position}"),
                    &json!({"position": position.0}),
                )
            }
            MetaCommand::Service(ServiceCommand::Deregister { name, id }) => {
                let position = meta.deregister_instance(&name, &id)?;
                print(
                    format,
                    || format!("deregistered {name}/{id} at position {position}"),
                    &json!({"position": position.0}),
                )
            }
            MetaCommand::Service(ServiceCommand::List { name, tag }) => {
                let instances = meta.discover(name.as_deref(), tag.as_deref(), now_ms());
                let text = || {
                    instances
                        .iter()
                        .map(|i| {
                            format!(
                                "{}/{}  {}  tags={}",
                                i.service,
                                i.instance,
                                i.endpoints.join(","),
                                i.tags.join(",")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                print(format, text, &json!({ "instances": view_json(&instances) }))
            }
            MetaCommand::Config(ConfigCommand::Set { key, value, scope }) => {
                let done = meta.set_config(scope.as_deref(), &key, json_value("VALUE", &value, true)?)?;
                let json = json!({"version": done.version, "position": done.position.0});
                print(format, || format!("set {key}: version {} at position {}", done.version, done.position), &json)
            }
            MetaCommand::Config(ConfigCommand::Get { key, scope, version, as_of }) => {
                let at = match (version, as_of) {
                    (Some(v), _) => AsOf::Version(v),
                    (None, Some(t)) => AsOf::Time(time_arg("--as-of", &t)?),
                    (None, None) => AsOf::Latest,
                };
                let v = meta.config(scope.as_deref(), &key, at)?;
                print(format, || v.value.as_ref().map_or("null".to_string(), compact), &view_json(&v))
            }
            MetaCommand::Config(ConfigCommand::History { key, scope }) => {
                let versions = meta.config_history(scope.as_deref(), &key)?;
                let text = || {
                    versions
                        .iter()
                        .map(|v| {
                            format!(
                                "v{:<4} {}  {}",
                                v.version,
                                crate::wire::timestamp(v.timestamp_ms),
                                v.value.as_ref().map_or("(deleted)".to_string(), compact)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                print(format, text, &json!({ "versions": view_json(&versions) }))
            }
            MetaCommand::Relate { from, to, kind, properties } => {
                let properties = properties.as_deref().map(|p| json_value("--properties", p, false)).transpose()?;
                let position = meta.relate(&from, &to, &kind, properties)?;
                print(
                    format,
                    || format!("{from} -{kind}-> {to} at position {position}"),
                    &json!({"position": position.0}),
                )
            }
            MetaCommand::Unrelate { from, to, kind } => {
                let position = meta.unrelate(&from, &to, &kind)?;
                print(
                    format,
                    || format!("removed {from} -{kind}-> {to} at position {position}"),
                    &json!({"position": position.0}),
                )
            }
            MetaCommand::Relations { entity, direction, kind, depth } => {
                let direction: EdgeDirection = serde_json::from_value(Value::String(direction.clone()))
                    .map_err(|_| InputError(format!("--direction {direction:?} is not out, in or both")))?;
                let t = meta.relations(&entity, direction, kind.as_deref(), depth)?;
                let text = || {
                    t.edges
                        .iter()
                        .map(|h| {
                            format!(
                                "{}{} -{}-> {}",
                                "  ".repeat(h.depth as usize - 1),
                                h.relation.from,
                                h.relation.kind,
                                h.relation.to
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                print(format, text, &view_json(&t))
            }
        }
    })
}
