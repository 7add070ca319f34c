//! [`AuditView`]: the audit projection. Keeps every `audit.entry` event of an `audit:*` stream
//! (and of the server's reserved `$audit:*` streams) in log order, with posting-list indexes for queries.
//!
//! Invariants: entries are sorted by position (they arrive in log order), so they are also
//! sorted by timestamp (the log's timestamps never decrease) and a time range is a slice found
//! by binary search. Each posting list holds entry indexes in ascending order. Indexes are
//! derived state: they are not projection entries; `load` rebuilds them. The view is
//! append-only: changes since a mark are the entries appended since.

use std::collections::HashMap;

use log_engine::{ChainHash, Event, Payload, Position, Uuid};
use serde::{Deserialize, Serialize};

use super::entry::{ActorType, AuditEntry, Category, Level, NewAuditEntry};
use crate::changes;
use crate::projection::{ApplyError, Changes, LoadError, Projection};
use crate::streams::{AUDIT_STREAM_PREFIX, SERVER_AUDIT_STREAM_PREFIX};

/// The event type of an audit entry.
pub const AUDIT_EVENT_TYPE: &str = "audit.entry";
/// Most entries one query returns.
pub const AUDIT_QUERY_LIMIT_MAX: usize = 1000;
/// Entries one query returns when it names no limit.
pub const AUDIT_QUERY_LIMIT_DEFAULT: usize = 100;

/// Newest or oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Newest first.
    #[default]
    Desc,
    /// Oldest first.
    Asc,
}

/// A query: every field given must match (AND). Deserializes from the HTTP query string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditQuery {
    /// Actor id.
    pub actor: Option<String>,
    pub category: Option<Category>,
    /// Exactly this level.
    pub level: Option<Level>,
    /// Target id.
    pub target: Option<String>,
    pub trace_id: Option<String>,
    /// `context.agent_id`, or the actor's id when the actor is an agent.
    pub agent_id: Option<String>,
    pub workflow_id: Option<String>,
    pub task_id: Option<String>,
    /// From this timestamp (unix ms, inclusive).
    pub since: Option<u64>,
    /// Before this timestamp (unix ms, exclusive).
    pub until: Option<u64>,
    pub order: Order,
    /// At most this many (default [`AUDIT_QUERY_LIMIT_DEFAULT`], clamped to
    /// [`AUDIT_QUERY_LIMIT_MAX`]).
    pub limit: Option<usize>,
    /// The cursor: the `next` of the previous page.
    pub after: Option<Position>,
}

/// One page of query results.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// The cursor for the next page (pass as `after`); `None` on the last page.
    pub next: Option<Position>,
}

/// What an entry is indexed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
enum Field {
    Actor,
    Category,
    Level,
    Target,
    Trace,
    Agent,
    Workflow,
    Task,
}

const FIELDS: usize = Field::Task as usize + 1;

/// An entry as stored in checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stored {
    id: Uuid,
    timestamp_ms: u64,
    position: u64,
    hash: [u8; 32],
    stream: String,
    entry: NewAuditEntry,
}

impl Stored {
    fn to_entry(&self) -> AuditEntry {
        AuditEntry {
            id: self.id,
            timestamp_ms: self.timestamp_ms,
            position: Position(self.position),
            hash: ChainHash(self.hash),
            stream: self.stream.clone(),
            entry: self.entry.clone(),
        }
    }

    /// The (field, value) pairs this entry is found by.
    fn keys(&self) -> Vec<(Field, &str)> {
        let e = &self.entry;
        let c = &e.context;
        let mut keys = vec![
            (Field::Actor, e.actor.id.as_str()),
            (Field::Category, e.category.as_str()),
            (Field::Level, e.level.as_str()),
        ];
        if let Some(t) = &e.target {
            keys.push((Field::Target, t.id.as_str()));
        }
        let agent = c.agent_id.as_deref().or_else(|| (e.actor.kind == ActorType::Agent).then_some(e.actor.id.as_str()));
        for (field, value) in [
            (Field::Trace, c.trace_id.as_deref()),
            (Field::Agent, agent),
            (Field::Workflow, c.workflow_id.as_deref()),
            (Field::Task, c.task_id.as_deref()),
        ] {
            if let Some(v) = value {
                keys.push((field, v));
            }
        }
        keys
    }
}

/// The audit view. Create it empty with [`AuditView::new`].
#[derive(Debug, Default)]
pub struct AuditView {
    entries: Vec<Stored>,
    by_id: HashMap<Uuid, u32>,
    /// Per field, each value's posting list.
    index: [HashMap<Box<str>, Vec<u32>>; FIELDS],
    /// `entries.len()` at the last mark.
    marked: usize,
}

impl AuditView {
    /// The projection's name in checkpoints and status reports.
    pub const NAME: &'static str = "audit";

    pub fn new() -> AuditView {
        AuditView::default()
    }

    pub(crate) fn get(&self, id: &Uuid) -> Option<AuditEntry> {
        self.by_id.get(id).map(|&i| self.entries[i as usize].to_entry())
    }

    fn push(&mut self, stored: Stored) {
        let i = u32::try_from(self.entries.len()).expect("fewer than 2^32 audit entries");
        if let Some(last) = self.entries.last() {
            assert!(last.position < stored.position, "audit entries arrive in position order");
        }
        for (field, value) in stored.keys() {
            let postings = &mut self.index[field as usize];
            match postings.get_mut(value) {
                Some(list) => list.push(i),
                None => {
                    postings.insert(value.into(), vec![i]);
                }
            }
        }
        self.by_id.entry(stored.id).or_insert(i);
        self.entries.push(stored);
    }

    /// Answers a query from the indexes: the shortest posting list among the filters drives the
    /// scan, restricted by binary search to the time range and the cursor; the other filters
    /// are checked by binary search in their lists.
    pub(crate) fn query(&self, q: &AuditQuery) -> AuditPage {
        let limit = q.limit.unwrap_or(AUDIT_QUERY_LIMIT_DEFAULT).clamp(1, AUDIT_QUERY_LIMIT_MAX);
        let mut lo = q.since.map_or(0, |s| self.entries.partition_point(|e| e.timestamp_ms < s));
        let mut hi = q.until.map_or(self.entries.len(), |u| self.entries.partition_point(|e| e.timestamp_ms < u));
        if let Some(after) = q.after {
            let cut = self.entries.partition_point(|e| e.position <= after.0);
            match q.order {
                Order::Asc => lo = lo.max(cut),
                // `after` is the last entry of the previous page: continue below it.
                Order::Desc => hi = hi.min(self.entries.partition_point(|e| e.position < after.0)),
            }
        }
        let filters: Vec<(Field, &str)> = [
            (Field::Actor, q.actor.as_deref()),
            (Field::Category, q.category.map(|c| c.as_str())),
            (Field::Level, q.level.map(|l| l.as_str())),
            (Field::Target, q.target.as_deref()),
            (Field::Trace, q.trace_id.as_deref()),
            (Field::Agent, q.agent_id.as_deref()),
            (Field::Workflow, q.workflow_id.as_deref()),
            (Field::Task, q.task_id.as_deref()),
        ]
        .into_iter()
        .filter_map(|(f, v)| v.map(|v| (f, v)))
        .collect();
        let mut hits: Vec<u32> = Vec::with_capacity(limit + 1);
        if lo < hi {
            let empty: &[u32] = &[];
            let mut lists: Vec<&[u32]> =
                filters.iter().map(|(f, v)| self.index[*f as usize].get(*v).map_or(empty, |l| l.as_slice())).collect();
            lists.sort_by_key(|l| l.len());
            let candidates: Box<dyn Iterator<Item = u32>> = match lists.first() {
                None => {
                    let range = lo as u32..hi as u32;
                    match q.order {
                        Order::Asc => Box::new(range),
                        Order::Desc => Box::new(range.rev()),
                    }
                }
                Some(driver) => {
                    let a = driver.partition_point(|&i| (i as usize) < lo);
                    let b = driver.partition_point(|&i| (i as usize) < hi);
                    let slice = driver[a..b].iter().copied();
                    match q.order {
                        Order::Asc => Box::new(slice),
                        Order::Desc => Box::new(slice.rev()),
                    }
                }
            };
            let others = lists.get(1..).unwrap_or(&[]);
            for i in candidates {
                if others.iter().all(|l| l.binary_search(&i).is_ok()) {
                    hits.push(i);
                    if hits.len() > limit {
                        break;
                    }
                }
            }
        }
        let more = hits.len() > limit;
        hits.truncate(limit);
        let entries: Vec<AuditEntry> = hits.iter().map(|&i| self.entries[i as usize].to_entry()).collect();
        let next = if more { entries.last().map(|e| e.position) } else { None };
        AuditPage { entries, next }
    }
}

impl Projection for AuditView {
    fn name(&self) -> &'static str {
        AuditView::NAME
    }

    fn apply(&mut self, event: &Event) -> Result<(), ApplyError> {
        let audit_stream =
            event.stream.starts_with(AUDIT_STREAM_PREFIX) || event.stream.starts_with(SERVER_AUDIT_STREAM_PREFIX);
        // An erased entry is gone from the view as from the log (only the Rust API can erase
        // an audit stream: the server and the command line refuse).
        if event.event_type != AUDIT_EVENT_TYPE || !audit_stream || event.erased {
            return Ok(());
        }
        let Payload::Json(data) = &event.data else {
            return Err(ApplyError::new("an audit entry must carry JSON data"));
        };
        let entry: NewAuditEntry =
            serde_json::from_slice(data).map_err(|e| ApplyError::new(format!("bad audit entry: {e}")))?;
        entry.validate().map_err(|e| ApplyError::new(e.to_string()))?;
        self.push(Stored {
            id: event.id,
            timestamp_ms: event.timestamp_ms,
            position: event.position.0,
            hash: event.hash.0,
            stream: event.stream.clone(),
            entry,
        });
        Ok(())
    }

    fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.entries.iter().map(|s| (s.position.to_be_bytes().to_vec(), changes::encode(s))).collect()
    }

    fn changes_since_mark(&self) -> Changes {
        Changes {
            upserts: self.entries[self.marked..]
                .iter()
                .map(|s| (s.position.to_be_bytes().to_vec(), changes::encode(s)))
                .collect(),
            removals: Vec::new(),
        }
    }

    fn mark(&mut self) {
        self.marked = self.entries.len();
    }

    fn load(&mut self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), LoadError> {
        let mut fresh = AuditView::new();
        fresh.append_encoded(&entries)?;
        fresh.marked = fresh.entries.len();
        *self = fresh;
        Ok(())
    }

    fn apply_changes(&mut self, changes: &Changes) -> Result<(), LoadError> {
        if let Some(key) = changes.removals.first() {
            return Err(load_error(format!(
                "the audit view is append-only, yet the changes remove entry {}",
                String::from_utf8_lossy(key)
            )));
        }
        self.append_encoded(&changes.upserts)?;
        self.marked = self.entries.len();
        Ok(())
    }
}

impl AuditView {
    /// Appends encoded entries, which must follow the current ones in position order.
    fn append_encoded(&mut self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), LoadError> {
        let mut decoded = Vec::with_capacity(entries.len());
        let mut last = self.entries.last().map(|s| s.position);
        for (key, value) in entries {
            let stored: Stored = changes::decode(AuditView::NAME, key, value)?;
            if key.as_slice() != stored.position.to_be_bytes() {
                return Err(load_error(format!("entry key does not match position {}", stored.position)));
            }
            if last.is_some_and(|l| l >= stored.position) {
                return Err(load_error(format!("entry at position {} is out of order", stored.position)));
            }
            last = Some(stored.position);
            decoded.push(stored);
        }
        for stored in decoded {
            self.push(stored);
        }
        Ok(())
    }
}

fn load_error(message: String) -> LoadError {
    LoadError { projection: AuditView::NAME.to_string(), message }
}
