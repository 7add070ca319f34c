//! The in-memory index: which segments exist, where each position's record lives, and each
//! stream's positions by version.
//!
//! It is rebuilt at open from sealed segments' footers and a scan of the active segment, and
//! extended by the writer after every durable commit. Readers take the read lock only to copy
//! out locations; they decode from the mapped segments after releasing it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::mmap::Mapping;
use crate::types::{ChainHash, Position, SegmentId};

/// One segment as readers see it.
#[derive(Debug)]
pub(crate) struct SegmentState {
    pub id: SegmentId,
    pub path: PathBuf,
    pub map: Arc<Mapping>,
    /// Byte offset of each committed record, by position − id.
    pub offsets: Vec<u32>,
    /// End of the last committed record.
    pub data_end: u64,
    pub sealed: bool,
}

impl SegmentState {
    pub(crate) fn next_position(&self) -> u64 {
        self.id.0 + self.offsets.len() as u64
    }
}

/// Stream name → position of each version (version = index).
pub(crate) type StreamIndex = HashMap<String, Vec<u64>, foldhash::quality::RandomState>;

#[derive(Debug)]
pub(crate) struct Index {
    /// Sorted by id; the last one is the active segment.
    pub segments: Vec<SegmentState>,
    pub streams: StreamIndex,
    /// Position the next committed event gets (= committed event count).
    pub next_position: u64,
    /// Chain hash at `next_position − 1`, or the genesis hash.
    pub head_hash: ChainHash,
}

/// Where one record lives.
#[derive(Debug, Clone)]
pub(crate) struct Location {
    pub segment: SegmentId,
    pub map: Arc<Mapping>,
    pub offset: u64,
}

impl Index {
    /// The segment holding `position`, which must be committed.
    pub(crate) fn segment_of(&self, position: u64) -> Option<&SegmentState> {
        if position >= self.next_position {
            return None;
        }
        let i = self.segments.partition_point(|s| s.id.0 <= position);
        let segment = &self.segments[i.checked_sub(1)?];
        (position < segment.next_position()).then_some(segment)
    }

    pub(crate) fn locate(&self, position: u64) -> Option<Location> {
        let segment = self.segment_of(position)?;
        let offset = u64::from(segment.offsets[(position - segment.id.0) as usize]);
        Some(Location { segment: segment.id, map: segment.map.clone(), offset })
    }

    pub(crate) fn head(&self) -> Option<(Position, ChainHash)> {
        self.next_position.checked_sub(1).map(|p| (Position(p), self.head_hash))
    }

    pub(crate) fn active_mut(&mut self) -> &mut SegmentState {
        self.segments.last_mut().expect("an open log always has an active segment")
    }
}
