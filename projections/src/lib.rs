//! cairn's read side: projections (key-value, audit, metadata views) built by replaying the log.
//!
//! Every view implements [`Projection`]: a pure function of a log prefix, whose state is a set of
//! keyed entries that the snapshotter can capture whole or incrementally.

mod projection;

pub use crate::projection::{digest_entries, AppliedThrough, ApplyError, Changes, LoadError, Projection};
