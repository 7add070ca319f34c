//! Point-in-time recovery by wall-clock time: which log position a time names.
//!
//! Every event carries the writer's clock at its commit, and the writer never lets that clock
//! go backwards (`timestamp_ms` is non-decreasing in log order, one value per group commit), so
//! "the log as of time T" is the prefix ending at the last event stamped at or before T, found
//! by binary search over positions: about 2·log2(events) event reads, whatever the log's size.
//! A copy cut there ([`crate::restore_to_at`]) ends with that event's batch, whose events all
//! share its timestamp.

use log_engine::{Log, Position};

use crate::error::Result;

/// The last position whose event was stamped at or before `at_ms` (unix milliseconds), or
/// `None` when the log is empty or its first event is later.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use log_engine::{ExpectedVersion, Log, NewEvent, Options};
/// let log = Log::open(dir.path(), Options::default())?;
/// let done = log.append("agent-7", ExpectedVersion::Any, vec![NewEvent::json("Started", &serde_json::json!({}))])?;
/// let stamped = log.read_event(done.last_position)?.timestamp_ms;
/// assert_eq!(snapshotter::position_at_time(&log, stamped)?, Some(done.last_position));
/// assert_eq!(snapshotter::position_at_time(&log, stamped - 1)?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn position_at_time(log: &Log, at_ms: u64) -> Result<Option<Position>> {
    let Some(head) = log.head() else { return Ok(None) };
    let stamped = |p: u64| -> Result<u64> { Ok(log.timestamp_at(Position(p))?) };
    if stamped(0)? > at_ms {
        return Ok(None);
    }
    // Invariant: stamped(low) <= at_ms, and every position above `high` is stamped later.
    let (mut low, mut high) = (0, head.position.0);
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        if stamped(mid)? <= at_ms {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    Ok(Some(Position(low)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use log_engine::{ExpectedVersion, NewEvent, Options};

    /// Appends `batches` batches of `size` events, each after the clock has moved past the
    /// previous batch's stamp, so stamps repeat within a batch and differ between batches.
    fn log_with_batches(dir: &std::path::Path, batches: u64, size: usize) -> Log {
        let log = Log::open(dir, Options::default()).unwrap();
        let mut last = 0;
        for b in 0..batches {
            let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
            let floor = now();
            while now() == floor || u64::try_from(now()).unwrap() <= last {
                std::hint::spin_loop();
            }
            let events = (0..size).map(|i| NewEvent::json("Tick", &serde_json::json!({"b": b, "i": i}))).collect();
            let done = log.append("ticks", ExpectedVersion::Any, events).unwrap();
            last = log.read_event(done.last_position).unwrap().timestamp_ms;
        }
        log
    }

    #[test]
    fn every_time_maps_to_the_last_event_stamped_at_or_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with_batches(dir.path(), 6, 5);
        let stamps: Vec<u64> = log.read_all(Position(0), 1000).unwrap().iter().map(|e| e.timestamp_ms).collect();
        assert_eq!(stamps.len(), 30);
        assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "stamps go backwards: {stamps:?}");
        let (first, last) = (stamps[0], stamps[29]);
        for t in first - 2..=last + 2 {
            // The model: a linear scan for the last stamp at or before t.
            let expected = stamps.iter().rposition(|&s| s <= t).map(|p| Position(p as u64));
            assert_eq!(position_at_time(&log, t).unwrap(), expected, "time {t} (stamps {stamps:?})");
        }
        assert_eq!(position_at_time(&log, u64::MAX).unwrap(), Some(Position(29)));
    }

    #[test]
    fn an_empty_log_has_no_position_at_any_time() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), Options::default()).unwrap();
        assert_eq!(position_at_time(&log, u64::MAX).unwrap(), None);
    }
}
