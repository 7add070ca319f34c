//! How a log is opened: durability, recovery, segment size, the writer queue's bound, the file
//! system (a fault-injecting one in tests), and deliberate sabotage for the suites that prove
//! the other suites catch a broken build.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::fs::{FileSystem, OsFs};
use crate::keys::Keyring;
use crate::segment::{SEGMENT_SIZE_DEFAULT, SEGMENT_SIZE_MAX, SEGMENT_SIZE_MIN};
use crate::tier::Tiering;
use crate::types::{Durability, Recovery, WRITER_QUEUE_BYTES_MAX};

/// How to open a log.
#[derive(Debug, Clone)]
pub struct Options {
    pub durability: Durability,
    pub recovery: Recovery,
    /// Capacity of each segment file, in bytes.
    pub segment_size: u64,
    /// Most bytes of prepared events queued for the writer ([`WRITER_QUEUE_BYTES_MAX`] by
    /// default); beyond it appends fail fast with [`Error::Overloaded`].
    pub writer_queue_bytes: usize,
    /// File access; [`OsFs`] unless a test injects faults.
    pub fs: Arc<dyn FileSystem>,
    /// Encryption at rest: with a key store, every event but `$lifecycle`'s is written
    /// encrypted, and encrypted events can be read. Without one, encrypted events read as
    /// [`crate::Error::KeyRequired`] (verify needs no key).
    pub keys: Option<Arc<Keyring>>,
    /// Reading evicted segments back (tier.rs): without it, a log with evicted segments opens
    /// and reads everything still local, and a read of an evicted segment's events fails with
    /// [`crate::Error::Evicted`].
    pub tiering: Option<Tiering>,
    /// Deliberate faults, for proving the reliability suites catch a broken build.
    #[cfg(feature = "faults")]
    pub sabotage: Sabotage,
}

impl Options {
    /// Refuses options a log cannot be opened with.
    pub(crate) fn check(&self) -> Result<()> {
        if self.segment_size < SEGMENT_SIZE_MIN
            || self.segment_size > SEGMENT_SIZE_MAX
            || !self.segment_size.is_multiple_of(4096)
        {
            return Err(Error::Invalid {
                what: format!(
                    "segment size {} must be a multiple of 4096 between {SEGMENT_SIZE_MIN} and {SEGMENT_SIZE_MAX}",
                    self.segment_size
                ),
            });
        }
        Ok(())
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            durability: Durability::Sync,
            recovery: Recovery::TruncateTornTail,
            segment_size: SEGMENT_SIZE_DEFAULT,
            writer_queue_bytes: WRITER_QUEUE_BYTES_MAX,
            fs: Arc::new(OsFs),
            keys: None,
            tiering: None,
            #[cfg(feature = "faults")]
            sabotage: Sabotage::Off,
        }
    }
}

/// Deliberate faults for proving that the reliability suites catch a broken build.
#[cfg(feature = "faults")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sabotage {
    #[default]
    Off,
    /// Acknowledge without fdatasync.
    SkipSync,
    /// Acknowledge before writing.
    AckBeforeWrite,
    /// A scavenge renames a segment's rewrite over the segment without having fdatasynced it.
    SkipScavengeSync,
}
