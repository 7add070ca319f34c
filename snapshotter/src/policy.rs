//! When to take a checkpoint, and of which kind: every N events or every T seconds, a full
//! one after K incrementals, and how many full ones retention keeps. Pure decisions; the
//! [`crate::Snapshotter`] feeds them its counters.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::types::CheckpointKind;

/// Default: a checkpoint every this many events.
pub const EVERY_EVENTS_DEFAULT: u64 = 100_000;
/// Default: a checkpoint at least this often when events arrived.
pub const EVERY_INTERVAL_DEFAULT: Duration = Duration::from_secs(300);
/// Default: a full checkpoint after this many incrementals.
pub const FULL_EVERY_DEFAULT: u32 = 16;
/// Default: full checkpoints kept (each with the incrementals after it).
pub const KEEP_FULL_DEFAULT: usize = 2;

/// The checkpoint policy.
///
/// ```
/// use snapshotter::{CheckpointKind, Policy};
/// use std::time::Duration;
/// let policy = Policy { every_events: Some(1000), full_every: 2, ..Policy::default() };
/// assert!(policy.is_due(1000, Duration::ZERO));
/// assert!(!policy.is_due(0, Duration::from_secs(3600)), "nothing new, nothing to checkpoint");
/// assert_eq!(policy.next_kind(true, 1), CheckpointKind::Incremental);
/// assert_eq!(policy.next_kind(true, 2), CheckpointKind::Full);
/// assert_eq!(policy.next_kind(false, 0), CheckpointKind::Full, "no parent: must be full");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Due after this many events since the last checkpoint (`None`: never by count).
    pub every_events: Option<u64>,
    /// Due after this much time since the last checkpoint, if any event arrived (`None`: never by time).
    pub every_interval: Option<Duration>,
    /// After this many incrementals in a row, the next checkpoint is full (0: always full).
    pub full_every: u32,
    /// Retention: the newest this many full checkpoints are kept with their incrementals;
    /// older files are deleted once a newer full checkpoint is durable. At least 1.
    pub keep_full: usize,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            every_events: Some(EVERY_EVENTS_DEFAULT),
            every_interval: Some(EVERY_INTERVAL_DEFAULT),
            full_every: FULL_EVERY_DEFAULT,
            keep_full: KEEP_FULL_DEFAULT,
        }
    }
}

impl Policy {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.keep_full == 0 {
            return Err(Error::Invalid { what: "the policy must keep at least one full checkpoint".into() });
        }
        if self.every_events == Some(0) {
            return Err(Error::Invalid { what: "a checkpoint every 0 events is not a policy; use None".into() });
        }
        Ok(())
    }

    /// Whether a checkpoint is due, given the events applied and the time passed since the last one.
    pub fn is_due(&self, events_since: u64, elapsed: Duration) -> bool {
        events_since > 0
            && (self.every_events.is_some_and(|n| events_since >= n)
                || self.every_interval.is_some_and(|t| elapsed >= t))
    }

    /// The kind of the next checkpoint: full without a parent to build on or after
    /// `full_every` incrementals, incremental otherwise.
    pub fn next_kind(&self, has_parent: bool, incrementals_since_full: u32) -> CheckpointKind {
        if !has_parent || incrementals_since_full >= self.full_every {
            CheckpointKind::Full
        } else {
            CheckpointKind::Incremental
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_by_count_or_time_only_with_new_events() {
        let p = Policy { every_events: Some(10), every_interval: Some(Duration::from_secs(5)), ..Policy::default() };
        assert!(!p.is_due(9, Duration::from_secs(4)));
        assert!(p.is_due(10, Duration::ZERO));
        assert!(p.is_due(1, Duration::from_secs(5)));
        assert!(!p.is_due(0, Duration::from_secs(500)));
        let never = Policy { every_events: None, every_interval: None, ..Policy::default() };
        assert!(!never.is_due(u64::MAX, Duration::MAX));
    }

    #[test]
    fn full_every_zero_means_always_full() {
        let p = Policy { full_every: 0, ..Policy::default() };
        assert_eq!(p.next_kind(true, 0), CheckpointKind::Full);
    }

    #[test]
    fn invalid_policies_are_refused() {
        assert!(Policy { keep_full: 0, ..Policy::default() }.validate().is_err());
        assert!(Policy { every_events: Some(0), ..Policy::default() }.validate().is_err());
        assert!(Policy::default().validate().is_ok());
    }
}
