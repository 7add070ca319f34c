//! Idempotent retries: recognising a request whose events are already in their stream (by the
//! caller's event ids through the idempotency window, or by an exact expected version at any
//! age), and refusing an id reused in any other way.

use std::sync::Arc;

use uuid::Uuid;

use super::{PreparedAppend, Writer};
use crate::cast::usize_of;
use crate::error::{Error, IdConflictReason, Result};
use crate::idwindow::IDEMPOTENCY_WINDOW;
use crate::record;
use crate::types::{AppendResult, ChainHash, ExpectedVersion, Position, StreamVersion};

impl Writer {
    /// An idempotent retry: the request's events are already in the stream, where the original
    /// append put them, with the same content. `Ok(None)`: not a retry, and no id of the request
    /// is in the stream yet. An id already in the stream under any other circumstances (other
    /// content, a batch mixing new and written ids, another order) is an [`Error::IdConflict`]
    /// naming that id and the position where it lives.
    pub(super) fn find_duplicate(
        &mut self,
        append: &PreparedAppend,
        current: Option<u64>,
    ) -> Result<Option<AppendResult>> {
        let name = append.stream.as_str();
        // Where would the first event be, if this is a retry? The version after the expected one,
        // or where the first event's id was seen.
        let exact_next = match (append.expected, current) {
            (ExpectedVersion::Exact(v), Some(cur)) if cur > v.0 => Some(v.0 + 1),
            _ => None,
        };
        // Only ids the caller chose can be retried or reused: a generated (v4) one is new.
        let hits: Vec<Option<u64>> =
            append.events.iter().map(|e| if e.client_id { self.state.ids.get(&e.id) } else { None }).collect();
        if exact_next.is_none() && hits.iter().all(Option::is_none) {
            return Ok(None);
        }
        // The original may be in flight: wait until it is in the index and readable.
        self.drain();
        if let Some(cause) = &self.poisoned {
            // What was in flight is not in the index and never will be.
            return Err(Error::Poisoned { cause: cause.clone() });
        }
        // Where each event's id lives in this stream, if it does. The window has an id's newest
        // use in any stream; a hit in another stream sends the search through this stream's own
        // events in the window.
        let mut found: Vec<Option<u64>> = Vec::with_capacity(append.events.len());
        for (event, hit) in append.events.iter().zip(&hits) {
            let at = match *hit {
                Some(p) if self.id_at(p).is_some_and(|(s, id)| &*s == name && id == event.id) => Some(p),
                Some(_) => self.find_in_stream(name, &event.id),
                None => None,
            };
            found.push(at);
        }
        // A retry recognised by its exact expected version, at any age.
        if let (Some(v), None) = (exact_next, found[0]) {
            for (i, event) in append.events.iter().enumerate() {
                let at = self.position_of(name, v + i as u64);
                if let Some(p) = at.filter(|&p| self.id_at(p).is_some_and(|(_, id)| id == event.id)) {
                    found[i] = Some(p);
                } else if i == 0 {
                    break;
                }
            }
        }
        let conflict = |id: Uuid, position: u64, reason| Error::IdConflict {
            stream: name.to_string(),
            id,
            position: Position(position),
            reason,
        };
        let Some(first_position) = found[0] else {
            // Not a retry; any id of it already in the stream is reused, which is refused.
            return match append.events.iter().zip(&found).find_map(|(e, f)| f.map(|p| (e.id, p))) {
                Some((id, p)) => Err(conflict(id, p, IdConflictReason::NotARetry)),
                None => Ok(None),
            };
        };
        // A retry: every event where the original append put it, with the same content.
        let mut versions = None;
        for (i, (event, at)) in append.events.iter().zip(&found).enumerate() {
            let want = first_position + i as u64;
            match *at {
                Some(p) if p == want => {
                    let Some((same, version, hash)) = self.stored(p, name, event) else {
                        return Err(conflict(event.id, p, IdConflictReason::NotARetry));
                    };
                    if !same {
                        return Err(conflict(event.id, p, IdConflictReason::DifferentContent));
                    }
                    let (first, _, _) = *versions.get_or_insert((version, version, hash));
                    versions = Some((first, version, hash));
                }
                Some(p) => return Err(conflict(event.id, p, IdConflictReason::NotARetry)),
                None => return Err(conflict(append.events[0].id, first_position, IdConflictReason::NotARetry)),
            }
        }
        let (first_version, last_version, hash) = versions.expect("at least one event");
        Ok(Some(AppendResult {
            stream: append.stream.clone(),
            first_position: Position(first_position),
            last_position: Position(first_position + append.events.len() as u64 - 1),
            first_version: StreamVersion(first_version),
            last_version: StreamVersion(last_version),
            hash,
        }))
    }

    /// Stream and id of the record at `position`, staged or committed.
    fn id_at(&self, position: u64) -> Option<(Arc<str>, Uuid)> {
        if let Some(s) = self.staged.iter().find(|s| s.position == position) {
            return Some((s.stream.clone(), s.id));
        }
        let location = self.shared.index.read().locate(position)?;
        // Never a fetch: a segment the idempotency window reaches is not evicted (tier.rs).
        let map = location.map().ok()?;
        let bytes = map.bytes();
        let frame = record::decode_frame(&bytes[usize_of(location.offset)..], record::EVENT_BODY_MAX).ok()?;
        let (stream, id) = record::decode_index_fields(&frame).ok()?;
        Some((Arc::from(stream), id))
    }

    /// Position of `id` among `stream`'s events in the idempotency window (staged or committed),
    /// newest first. Only for an id whose newest use is in another stream: it reads records.
    fn find_in_stream(&self, stream: &str, id: &Uuid) -> Option<u64> {
        let window_start = self.state.next_position.saturating_sub(IDEMPOTENCY_WINDOW as u64);
        if let Some(s) = self.staged.iter().rev().find(|s| &*s.stream == stream && s.id == *id) {
            return Some(s.position);
        }
        let positions: Vec<u64> = {
            let index = self.shared.index.read();
            let all = &index.streams.get(stream)?.positions;
            let from = all.partition_point(|&p| p < window_start);
            all[from..].to_vec()
        };
        positions.into_iter().rev().find(|&p| self.id_at(p).is_some_and(|(_, found)| found == *id))
    }

    /// Position of `version` of `stream`, committed or staged.
    fn position_of(&self, stream: &str, version: u64) -> Option<u64> {
        if let Some(s) = self.staged.iter().find(|s| &*s.stream == stream && s.version == version) {
            return Some(s.position);
        }
        let index = self.shared.index.read();
        index.streams.get(stream)?.own_position(version)
    }

    /// Whether the record at `position` (staged or committed, in `stream`) has `event`'s
    /// content, and its version and hash. A husk (scavenge.rs) is compared by what it keeps:
    /// the stream, id, type, data kind and payload digests.
    fn stored(&self, position: u64, stream: &str, event: &record::PreparedEvent) -> Option<(bool, u64, ChainHash)> {
        if let Some(s) = self.staged.iter().find(|s| s.position == position) {
            let start = s.body_range.0 - record::FRAME_HEADER_LEN;
            let frame = record::decode_frame(&self.buf[start..], record::EVENT_BODY_MAX).ok()?;
            return Some((record::same_content(&frame, stream, event), s.version, frame.header.hash));
        }
        let location = self.shared.index.read().locate(position)?;
        // Never a fetch: a segment the idempotency window reaches is not evicted (tier.rs).
        let map = location.map().ok()?;
        let bytes = map.bytes();
        let frame = record::decode_frame(&bytes[usize_of(location.offset)..], record::EVENT_BODY_MAX).ok()?;
        Some((record::same_content(&frame, stream, event), frame.header.version, frame.header.hash))
    }
}
