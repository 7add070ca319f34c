//! cairn checkpoints: incremental, hash-chained snapshots of the projections, bound to the log.
//!
//! A checkpoint is the state of every projection at one log position, in one file under
//! `DIR/checkpoints/` (the format is specified in `docs/checkpoint-format.md`):
//!
//! - **Full** checkpoints hold every entry; **incremental** ones hold the upserts and removals
//!   since their parent (from the projections' change marks). A [`Policy`] says when and which.
//! - Each file's manifest names its sequence, kind, log position, the log's chain hash there,
//!   its parent and the parent's hash, every projection's state digest, the content digest and
//!   sizes. The checkpoint's hash is BLAKE3 of the manifest, so checkpoints form a hash chain
//!   bound to the log's own chain.
//! - Writes are atomic (temporary file, fsync, rename, directory fsync); retention keeps the
//!   newest full checkpoints with their incrementals and deletes older ones only after a newer
//!   full one is durable; [`Snapshotter::compact`] folds a chain into a new full checkpoint.
//! - [`Snapshotter::restore`] loads the best chain that verifies completely and replays the log
//!   tail; whatever it skips is returned as [`Warning`]s, and with no usable chain it replays
//!   the whole log. [`Snapshotter::rebuild_at`] does the same as of any earlier position.
//! - [`restore_to`] copies the log and the checkpoints into another directory that opens and
//!   verifies on its own; [`drill`] proves recovery end to end and reports it as data.
//!
//! The snapshotter only reads the log: it never writes or deletes anything in `DIR/log/`.
//! It knows projections only through the [`projections::Projection`] trait.
//!
//! ```
//! # use projections::{ApplyError, Changes, LoadError, Projection};
//! # use std::collections::BTreeMap;
//! # /// Counts events per stream.
//! # #[derive(Default)]
//! # struct Counts { state: BTreeMap<Vec<u8>, Vec<u8>>, changed: BTreeMap<Vec<u8>, Vec<u8>> }
//! # impl Projection for Counts {
//! #     fn name(&self) -> &'static str { "counts" }
//! #     fn apply(&mut self, e: &log_engine::Event) -> Result<(), ApplyError> {
//! #         let key = e.stream.as_bytes().to_vec();
//! #         let n = self.state.get(&key).map_or(0, |v| u64::from_le_bytes(v[..8].try_into().unwrap())) + 1;
//! #         self.state.insert(key.clone(), n.to_le_bytes().to_vec());
//! #         self.changed.insert(key, n.to_le_bytes().to_vec());
//! #         Ok(())
//! #     }
//! #     fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> { self.state.clone().into_iter().collect() }
//! #     fn changes_since_mark(&self) -> Changes {
//! #         Changes { upserts: self.changed.clone().into_iter().collect(), removals: vec![] }
//! #     }
//! #     fn mark(&mut self) { self.changed.clear() }
//! #     fn load(&mut self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), LoadError> {
//! #         self.state = entries.into_iter().collect();
//! #         Ok(())
//! #     }
//! #     fn apply_changes(&mut self, c: &Changes) -> Result<(), LoadError> {
//! #         for k in &c.removals { self.state.remove(k); }
//! #         self.state.extend(c.upserts.iter().cloned());
//! #         Ok(())
//! #     }
//! # }
//! # let dir = tempfile::tempdir().unwrap();
//! use log_engine::{ExpectedVersion, Log, NewEvent, Options};
//! use snapshotter::{CheckpointKind, Policy, Snapshotter};
//!
//! let log = Log::open(dir.path(), Options::default())?;
//! let tick = || vec![NewEvent::json("Tick", &serde_json::json!({}))];
//! let mut views: Vec<Box<dyn Projection>> = vec![Box::new(Counts::default())];
//! let mut snapshotter = Snapshotter::open(&log, Policy::default())?;
//! snapshotter.restore(&log, &mut views, &mut |_| {})?; // nothing yet: empty views
//!
//! let done = log.append("agent-7", ExpectedVersion::Any, tick())?;
//! snapshotter::replay(&log, &mut views, done.first_position, done.last_position, &mut |_| {})?;
//! snapshotter.checkpoint(&log, &mut views, done.last_position, CheckpointKind::Full)?;
//!
//! let done = log.append("agent-8", ExpectedVersion::Any, tick())?;
//! snapshotter::replay(&log, &mut views, done.first_position, done.last_position, &mut |_| {})?;
//! let inc = snapshotter.checkpoint(&log, &mut views, done.last_position, CheckpointKind::Incremental)?;
//! assert_eq!(inc.projections[0].upserts, 1, "only agent-8's count changed");
//!
//! // A restart: fresh views, restored from the two checkpoints, nothing left to replay.
//! let mut fresh: Vec<Box<dyn Projection>> = vec![Box::new(Counts::default())];
//! let restored = Snapshotter::open(&log, Policy::default())?.restore(&log, &mut fresh, &mut |_| {})?;
//! assert_eq!((restored.checkpoints_loaded, restored.replayed.events), (2, 0));
//! assert!(restored.warnings.is_empty());
//! assert_eq!(fresh[0].digest(), views[0].digest());
//! # Ok::<(), snapshotter::Error>(())
//! ```
//!
//! [`restore_to_at`] copies the store cut at an earlier position (`cairn restore --at`): the
//! log up to the end of the batch holding that position, and the checkpoints at or before it.

// Stricter than the workspace (see the root Cargo.toml): noisy elsewhere, cheap here.
#![warn(
    clippy::redundant_closure_for_method_calls,
    clippy::needless_pass_by_value,
    clippy::trivially_copy_pass_by_ref,
    clippy::assigning_clones,
    clippy::cast_possible_truncation
)]

mod copy;
mod drill;
mod error;
mod format;
mod pitr;
mod policy;
mod restore;
mod retention;
mod store;
mod types;

pub use crate::copy::{
    checkpoint_files, install, restore_to, restore_to_at, restore_to_cancellable, Copied, Overwrite, COPY_CHUNK,
    DATA_DIR_ENTRIES, SERVER_FILE, STAGING_SUFFIX,
};
pub use crate::drill::{drill, drill_cancellable, DrillReport, Mismatch, MismatchKind};
pub use crate::error::{Error, Result};
#[doc(hidden)]
pub use crate::format::decode_file_for_fuzzing;
pub use crate::format::{
    genesis_hash, FormatError, CONTENT_COMPRESSED_MAX, CONTENT_RAW_MAX, FILE_LEN_MAX, FORMAT_VERSION, HEADER_LEN,
    MAGIC, MANIFEST_LEN_MAX, PROJECTIONS_MAX, PROJECTION_NAME_LEN_MAX, SNAPPY_EXPANSION_MAX,
};
pub use crate::pitr::position_at_time;
pub use crate::policy::{Policy, EVERY_EVENTS_DEFAULT, EVERY_INTERVAL_DEFAULT, FULL_EVERY_DEFAULT, KEEP_FULL_DEFAULT};
pub use crate::restore::{replay, Replayed, Restored, REPLAY_PROGRESS_EVERY};
pub use crate::store::{list_checkpoints, Captured, ChainStatus, CheckpointStatus, Snapshotter, CHECKPOINTS_DIR};
pub use crate::types::{CheckpointInfo, CheckpointKind, Digest, Progress, ProjectionSummary, Stage, Warning};
