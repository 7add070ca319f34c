//! The [`Projection`] trait: a view that is a pure function of a log prefix.
//!
//! A projection's state is a set of keyed entries (opaque byte keys, rmp-serde encoded values).
//! That one shape serves every hook the snapshotter needs: the whole state is all entries, an
//! incremental change is the entries upserted and removed since a mark, and the digest is
//! BLAKE3 over the entries in key order. Derived indexes (the audit view's query indexes, say)
//! are not entries: `load` rebuilds them.

use std::any::Any;

use log_engine::{Event, Position};

/// Why an event could not be applied. The runner records it with the event's position and
/// carries on; the other views are not affected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApplyError {
    pub message: String,
}

impl ApplyError {
    pub fn new(message: impl Into<String>) -> ApplyError {
        ApplyError { message: message.into() }
    }
}

/// Why state could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot load state of projection {projection}: {message}")]
pub struct LoadError {
    pub projection: String,
    pub message: String,
}

/// Entries changed since a mark.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Changes {
    /// Key and new encoded value, sorted by key.
    pub upserts: Vec<(Vec<u8>, Vec<u8>)>,
    /// Keys removed, sorted.
    pub removals: Vec<Vec<u8>>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removals.is_empty()
    }
}

/// A read-side view built by applying committed events in position order.
///
/// Contract:
/// - `apply` is deterministic: it reads nothing but the event and the current state (time
///   comes from `event.timestamp_ms`, never the clock). So replaying from a checkpoint and
///   replaying from position 0 give identical state and identical digests.
/// - `apply` skips events it does not understand (returning `Ok`); it returns `Err` only for an
///   event it understands but cannot apply, and then leaves the state unchanged.
/// - `entries`, `changes_since_mark`, `load` and `apply_changes` round-trip: loading the
///   entries of a state, then applying later changes, gives the later state.
///
/// `Any` is a supertrait so that a caller holding `&dyn Projection` can get back the concrete
/// view (`(view as &dyn Any).downcast_ref::<KvView>()`); every `'static` type implements it.
pub trait Projection: Any + Send + Sync + 'static {
    /// Stable name; the key of this view's state in checkpoints.
    fn name(&self) -> &'static str;

    fn apply(&mut self, event: &Event) -> Result<(), ApplyError>;

    /// All entries, sorted by key.
    fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)>;

    /// Entries upserted and removed since the last [`Projection::mark`] (or since empty).
    fn changes_since_mark(&self) -> Changes;

    /// Starts a new change-tracking epoch (called after a checkpoint captured the changes).
    fn mark(&mut self);

    /// Replaces the whole state with these entries (as produced by `entries`). Leaves no
    /// pending changes: the loaded state counts as marked.
    fn load(&mut self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), LoadError>;

    /// Applies changes captured by `changes_since_mark` on top of the current state. Leaves no
    /// pending changes, like `load`: the state restored from a checkpoint chain is the mark.
    fn apply_changes(&mut self, changes: &Changes) -> Result<(), LoadError>;

    /// BLAKE3 over the entries in key order (see [`digest_entries`]).
    fn digest(&self) -> [u8; 32] {
        digest_entries(self.entries().iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
    }
}

/// The canonical state digest: BLAKE3 over `len(key) u32le || key || len(value) u32le || value`
/// for each entry in key order.
pub fn digest_entries<'a>(entries: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    for (k, v) in entries {
        digest_entry(&mut h, k, v);
    }
    *h.finalize().as_bytes()
}

/// Adds one entry to a [`digest_entries`] hash: for a view that digests its state entry by
/// entry, without building the whole list.
pub(crate) fn digest_entry(h: &mut blake3::Hasher, k: &[u8], v: &[u8]) {
    h.update(&(k.len() as u32).to_le_bytes());
    h.update(k);
    h.update(&(v.len() as u32).to_le_bytes());
    h.update(v);
}

/// A projection's position: the last event it has applied (or skipped).
pub type AppliedThrough = Option<Position>;
