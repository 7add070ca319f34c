//! cairn's log engine: a segmented write-ahead log that is the single source of truth.
//!
//! - **Appends** go to one writer thread that group-commits: many concurrent appenders share one
//!   pwrite and one fdatasync, and each is answered only after its events are durable
//!   ([`Durability::Sync`], the default).
//! - **Records** carry a salted CRC, their global position and a BLAKE3 chain hash
//!   `h(p) = BLAKE3(h(p-1) || header(p) || BLAKE3(metadata) || BLAKE3(data))`.
//! - **Segments** are preallocated files written with pwrite and read through read-only maps;
//!   sealed segments carry a footer so that open does not rescan them.
//! - **Recovery** cuts a torn tail of the newest segment (told apart from corruption by the
//!   durable watermark in every record) and reports any other damage with its location.
//! - **Stream lifecycle** (delete, tombstone, close, retention metadata, fork) is written as
//!   events on the reserved stream [`LIFECYCLE_STREAM`] and folded into the index, so replay
//!   and restore reproduce it; stream reads honour it, the global log keeps every event.
//!
//! The on-disk format is specified in `docs/format.md`; the invariants in `ARCHITECTURE.md`.
//! This crate knows nothing of projections or checkpoints.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use log_engine::{ExpectedVersion, Log, NewEvent, Options, Position};
//! let log = Log::open(dir.path(), Options::default())?;
//! log.append("agent-7", ExpectedVersion::Any, vec![NewEvent::json("Started", &serde_json::json!({}))])?;
//! let events = log.read_all(Position(0), 100)?;
//! assert_eq!(events[0].event_type, "Started");
//! assert!(log.verify(None, |_| {})?.ok);
//! # Ok::<(), log_engine::Error>(())
//! ```

// Stricter than the workspace (see the root Cargo.toml): noisy elsewhere, cheap here.
#![warn(
    clippy::redundant_closure_for_method_calls,
    clippy::needless_pass_by_value,
    clippy::trivially_copy_pass_by_ref,
    clippy::assigning_clones,
    clippy::cast_possible_truncation
)]

mod body;
mod cast;
mod dir;
mod error;
mod evict;
mod extent;
mod field;
pub mod fs;
mod ids;
mod idwindow;
mod index;
mod keys;
mod lifecycle;
mod log;
mod metrics;
mod mirror;
mod mmap;
mod open;
mod options;
mod record;
mod scavenge;
mod segment;
mod shared;
mod stub;
mod subscribe;
mod tier;
mod types;
mod verify;
mod writer;

#[cfg(feature = "faults")]
pub mod faults;

pub use crate::dir::{DirLock, LOCK_FILE, LOG_DIR, LOG_ENTRIES, TORN_DIR};
pub use crate::error::{
    BodyDamage, CorruptionKind, Error, FooterDamage, FrameDamage, HeaderDamage, IdConflictReason, IndexMismatch,
    LimitKind, Result, SealRecord, VersionGap,
};
pub use crate::idwindow::IDEMPOTENCY_WINDOW;
pub use crate::keys::{CheckpointSeal, Kek, Keyring, KEY_LEN, KEY_STORE_FILE};
pub use crate::lifecycle::{
    DeleteMode, LifecycleResult, StreamChange, StreamMetadata, StreamState, ERASE_REASON_LEN_MAX, EVENT_STREAM_CLOSED,
    EVENT_STREAM_DELETED, EVENT_STREAM_ERASED, EVENT_STREAM_FORKED, EVENT_STREAM_METADATA, EVENT_STREAM_TOMBSTONED,
    LIFECYCLE_METADATA_MAX, LIFECYCLE_STREAM,
};
pub use crate::log::{Log, SegmentFile, SegmentSnapshot, Stats};
pub use crate::metrics::{Metrics, FSYNC_BUCKETS_US, SYNC_BATCH_BUCKETS};
pub use crate::mirror::{check_records, Checked, Mirror, MirrorTip, Staged, MIRROR_HEADER_BYTES};
pub use crate::options::Options;
#[cfg(feature = "faults")]
pub use crate::options::Sabotage;
pub use crate::scavenge::{ScavengeOptions, ScavengeProgress, ScavengeReport};
pub use crate::segment::recover::ReadStop;
pub use crate::segment::{SEGMENT_SIZE_DEFAULT, SEGMENT_SIZE_MAX, SEGMENT_SIZE_MIN, SEGMENT_SIZE_START};
pub use crate::stub::{STUB_HEADER_LEN, STUB_MAGIC, STUB_RANGES_MAX, STUB_VERSION};
pub use crate::subscribe::{Filter, StartFrom, Subscription};
pub use crate::tier::{ColdStore, TierStats, Tiering};
pub use crate::types::*;
pub use crate::verify::{VerifyProgress, VerifyReport};
pub use uuid::Uuid;
