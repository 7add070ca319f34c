//! The audit view: structured audit entries with indexed queries and chain-backed proofs.
//!
//! An audit entry is an `audit.entry` event on an `audit:*` stream; [`AuditLog::append`] writes
//! it to `audit:<category>`. The entry's id, timestamp, position and chain hash come from the
//! log, so a client cannot backdate an entry, and [`AuditLog::proof`] re-reads the entry's event
//! from the log (which re-checks its CRC) and compares it, field by field and by chain hash,
//! with what the view answers. Entries are never changed or removed.

mod entry;
mod view;

use std::fmt;
use std::sync::Arc;

use log_engine::{ChainHash, ExpectedVersion, NewEvent, Position, Uuid};
use serde::Serialize;

pub use self::entry::{
    Actor, ActorType, AuditEntry, Category, Level, NewAuditEntry, Source, Target, TraceContext, AUDIT_FIELD_LEN_MAX,
};
pub use self::view::{
    AuditPage, AuditQuery, AuditView, Order, AUDIT_EVENT_TYPE, AUDIT_QUERY_LIMIT_DEFAULT, AUDIT_QUERY_LIMIT_MAX,
};

use crate::core::Core;
use crate::error::{Error, Result};
use crate::streams::AUDIT_STREAM_PREFIX;

/// Where an entry was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditAppended {
    pub id: Uuid,
    pub position: Position,
    /// The log's chain hash at `position`.
    pub hash: ChainHash,
    pub stream: String,
}

/// The answer of a proof: the entry, and whether the log confirms it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditProof {
    pub entry: AuditEntry,
    /// True if the event at the entry's position has the entry's id, stream, timestamp, data
    /// and chain hash.
    pub verified: bool,
    /// Why it did not verify.
    pub detail: Option<String>,
}

/// The answer of a proof, as JSON: `{"entry", "position", "hash", "verified", "detail"?}`.
#[derive(Debug, Clone, Serialize)]
struct ProofJson<'a> {
    entry: serde_json::Value,
    position: u64,
    hash: String,
    verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

impl AuditProof {
    /// The HTTP contract's shape.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(ProofJson {
            entry: self.entry.to_json(),
            position: self.entry.position.0,
            hash: self.entry.hash.to_hex(),
            verified: self.verified,
            detail: self.detail.as_deref(),
        })
        .expect("a proof serializes")
    }
}

/// The audit log: appends entries, queries and proves them. Cheap to clone, `Send + Sync`.
/// Get one from [`crate::Views::audit`].
#[derive(Clone)]
pub struct AuditLog {
    core: Arc<Core>,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    pub(crate) fn new(core: Arc<Core>) -> AuditLog {
        AuditLog { core }
    }

    /// Validates and appends an entry to `audit:<category>`. Give an `id` to make retries
    /// idempotent (the same id and content return the original position).
    pub fn append(&self, entry: &NewAuditEntry, id: Option<Uuid>) -> Result<AuditAppended> {
        entry.validate()?;
        let stream = format!("{AUDIT_STREAM_PREFIX}{}", entry.category.as_str());
        let data = serde_json::to_value(entry)
            .map_err(|e| Error::invalid(format!("the audit entry cannot be written as JSON: {e}")))?;
        Error::check_value(|| "the audit entry".to_string(), &data)?;
        let id = id.unwrap_or_else(Uuid::new_v4);
        let event = NewEvent::json(AUDIT_EVENT_TYPE, &data).with_id(id);
        let done = self.core.append(&stream, ExpectedVersion::Any, vec![event])?;
        Ok(AuditAppended { id, position: done.last_position, hash: done.hash, stream })
    }

    /// Entries matching `query`, newest or oldest first, one page at a time.
    pub fn query(&self, query: &AuditQuery) -> Result<AuditPage> {
        if let (Some(since), Some(until)) = (query.since, query.until) {
            if since > until {
                return Err(Error::invalid(format!("since ({since}) is after until ({until})")));
            }
        }
        Ok(self.core.read::<AuditView, _>(|v| v.query(query)))
    }

    /// The entry with this id.
    pub fn get(&self, id: Uuid) -> Result<AuditEntry> {
        self.core.read::<AuditView, _>(|v| v.get(&id)).ok_or_else(|| Error::AuditEntryNotFound { id: id.to_string() })
    }

    /// Re-checks the entry against the log: reads the event at its position (the log re-checks
    /// the record's CRC) and compares id, stream, timestamp, payload and chain hash.
    pub fn proof(&self, id: Uuid) -> Result<AuditProof> {
        let entry = self.get(id)?;
        let detail = match self.core.log.read_event(entry.position) {
            Err(e) => Some(format!("reading position {} from the log failed: {e}", entry.position)),
            Ok(event) => {
                let data: Option<NewAuditEntry> = event.data_json().and_then(|d| serde_json::from_value(d).ok());
                if event.hash != entry.hash {
                    Some(format!(
                        "the log's chain hash at position {} is {}, the view holds {}",
                        entry.position, event.hash, entry.hash
                    ))
                } else if event.id != entry.id
                    || event.stream != entry.stream
                    || event.timestamp_ms != entry.timestamp_ms
                {
                    Some(format!("the event at position {} is not this entry", entry.position))
                } else if data.as_ref() != Some(&entry.entry) {
                    Some(format!("the entry differs from the event data at position {}", entry.position))
                } else {
                    None
                }
            }
        };
        Ok(AuditProof { entry, verified: detail.is_none(), detail })
    }
}
