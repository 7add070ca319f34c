//! Staging a request: plan every stream-append (ids unique in the request, idempotent retries,
//! expected versions), make room in the active segment (rolling if needed), then assign
//! positions, versions, timestamps and chain hashes and encode the records into the group's
//! buffer. A request is all or nothing: on error nothing of it is staged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use uuid::Uuid;

use super::now_ms;
use super::{PreparedAppend, Staged, Writer};
use crate::cast::usize_of;
use crate::error::{Error, LimitKind, Result};
use crate::lifecycle::StreamNow;
use crate::record::{self, ChainInput, FrameHeader, FLAG_BATCH_END};
use crate::segment::{self, Footer, HEADER_LEN, TRAILER_LEN};
use crate::types::{AppendResult, ExpectedVersion, Position, StreamVersion};
use std::sync::atomic::Ordering;

/// What one stream-append of a request will do.
enum Plan {
    Write { first_version: u64 },
    Duplicate(AppendResult),
}

/// The stream-appends of a request that write (not idempotent retries), with their plans.
fn writes<'a>(appends: &'a [PreparedAppend], plans: &'a [Plan]) -> impl Iterator<Item = (&'a PreparedAppend, u64)> {
    appends.iter().zip(plans).filter_map(|(a, p)| match p {
        Plan::Write { first_version } => Some((a, *first_version)),
        Plan::Duplicate(_) => None,
    })
}

/// Refuses a request that uses one of the caller's event ids twice in a stream.
fn check_ids_unique<'a>(
    seen: &mut HashSet<(&'a str, Uuid), foldhash::fast::RandomState>,
    append: &'a PreparedAppend,
) -> Result<()> {
    let name = append.stream.as_str();
    for event in append.events.iter().filter(|e| e.client_id) {
        if !seen.insert((name, event.id)) {
            return Err(Error::Invalid {
                what: format!(
                    "event id {} appears more than once in the append to stream {name}; an event id is unique \
                     within its stream",
                    event.id
                ),
            });
        }
    }
    Ok(())
}

/// Checks a stream-append's expected version against the stream's `current` last version.
fn check_expected(append: &PreparedAppend, current: Option<u64>) -> Result<()> {
    let ok = match append.expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => current.is_none(),
        ExpectedVersion::Exists => current.is_some(),
        ExpectedVersion::Exact(v) => current == Some(v.0),
    };
    if ok {
        return Ok(());
    }
    Err(Error::WrongExpectedVersion {
        stream: append.stream.as_str().to_string(),
        expected: append.expected,
        actual: current.map(StreamVersion),
    })
}

impl Writer {
    /// Last version and lifecycle state of `stream` as of everything staged so far.
    pub(super) fn now(&self, stream: &str) -> StreamNow {
        if let Some(now) = self.overlay.get(stream) {
            return now.clone();
        }
        self.shared.index.read().now(stream)
    }

    /// Checks and stages one request. On error nothing of it is staged.
    pub(super) fn stage(&mut self, appends: &[PreparedAppend]) -> Result<Vec<AppendResult>> {
        let plans = self.plan(appends)?;
        self.record_expiries(writes(appends, &plans).map(|(a, _)| &a.stream))?;
        self.make_room(appends, &plans)?;
        let results = self.encode(appends, plans);
        assert!(
            self.state.active.write_offset + self.buf.len() as u64 <= segment::usable_end(self.state.active.capacity),
            "staged bytes overrun the segment"
        );
        Ok(results)
    }

    /// Plans every stream-append of a request before anything is staged (a request is all or
    /// nothing): an idempotent retry is answered with where the original went; otherwise the
    /// expected version is checked against the stream as the request's earlier appends leave it.
    fn plan(&mut self, appends: &[PreparedAppend]) -> Result<Vec<Plan>> {
        let mut plans = Vec::with_capacity(appends.len());
        let mut local: HashMap<&str, Option<u64>, foldhash::fast::RandomState> = HashMap::default();
        // The ids the caller chose, per stream, in this request: an id is unique within its stream.
        let mut request_ids: HashSet<(&str, Uuid), foldhash::fast::RandomState> = HashSet::default();
        for append in appends {
            let name = append.stream.as_str();
            check_ids_unique(&mut request_ids, append)?;
            let now = self.now(name);
            let current = match local.get(name) {
                Some(v) => *v,
                None => now.last,
            };
            if let Some(result) = self.find_duplicate(append, current)? {
                plans.push(Plan::Duplicate(result));
                continue;
            }
            // After a retry's answer (which stays true): a closed or tombstoned stream takes
            // nothing new, whether the close is published or only staged before this request.
            if now.tombstoned {
                return Err(Error::StreamTombstoned { stream: name.to_string() });
            }
            if now.closed {
                return Err(Error::StreamClosed { stream: name.to_string() });
            }
            check_expected(append, current)?;
            self.check_secret_live(append)?;
            let first_version = current.map_or(0, |v| v + 1);
            local.insert(name, Some(first_version + append.events.len() as u64 - 1));
            plans.push(Plan::Write { first_version });
        }
        Ok(plans)
    }

    /// Refuses an encrypted append whose stream secret an erasure of the whole stream destroyed
    /// after the append was prepared (on the caller's thread) and before it got here, or will
    /// destroy once it is durable (staged or in flight before this append): sealed now, it would
    /// be acknowledged behind the erasure and read back erased.
    fn check_secret_live(&self, append: &PreparedAppend) -> Result<()> {
        let (Some(keys), Some(secret)) =
            (self.shared.options.keys.as_deref(), append.events.first().and_then(record::PreparedEvent::secret))
        else {
            return Ok(());
        };
        let name = append.stream.as_str();
        let doomed = self.shredding.get(name).is_some_and(|&(through, _)| secret <= through);
        if !doomed && keys.secret_live(name, secret) {
            Ok(())
        } else {
            Err(Error::StreamShredded { stream: append.stream.as_str().to_string() })
        }
    }

    /// Makes room for the request's records in the active segment, with space left for its
    /// footer: the whole request goes into one segment, so a request that does not fit rolls over
    /// (committing what is staged first).
    fn make_room(&mut self, appends: &[PreparedAppend], plans: &[Plan]) -> Result<()> {
        let frames: u64 =
            writes(appends, plans).flat_map(|(a, _)| &a.events).map(|e| record::frame_len(e.body.len()) as u64).sum();
        if frames == 0 || self.fits(appends, plans, frames) {
            return Ok(());
        }
        self.commit();
        if let Some(cause) = &self.poisoned {
            return Err(Error::Poisoned { cause: cause.clone() });
        }
        self.roll(frames + Self::seal_len_alone(appends, plans))?;
        if !self.fits(appends, plans, frames) {
            return Err(Error::LimitExceeded {
                limit: LimitKind::BatchBytes,
                max: usize_of(self.state.active.capacity - HEADER_LEN - TRAILER_LEN),
                actual: usize_of(frames),
            });
        }
        Ok(())
    }

    /// Encodes the planned request into the group's buffer and answers each stream-append. The
    /// request's last record closes its batch (BATCH_END).
    fn encode(&mut self, appends: &[PreparedAppend], plans: Vec<Plan>) -> Vec<AppendResult> {
        let now = now_ms().max(self.state.last_timestamp_ms);
        let last_write = plans.iter().rposition(|p| matches!(p, Plan::Write { .. }));
        appends
            .iter()
            .zip(plans)
            .enumerate()
            .map(|(i, (append, plan))| match plan {
                Plan::Duplicate(result) => result,
                Plan::Write { first_version } => self.encode_run(append, first_version, now, Some(i) == last_write),
            })
            .collect()
    }

    /// Encodes one stream-append's events from `first_version` on: positions, chain hashes,
    /// frames; notes them for the footer, the idempotency window and the overlay.
    fn encode_run(&mut self, append: &PreparedAppend, first_version: u64, now: u64, batch_end: bool) -> AppendResult {
        let name = append.stream.as_str();
        let shared_name: Arc<str> = Arc::from(name);
        let first_position = self.state.next_position;
        let mut run = Vec::with_capacity(append.events.len());
        for (i, event) in append.events.iter().enumerate() {
            let position = self.state.next_position;
            let version = first_version + i as u64;
            let hash = record::chain_hash(
                &self.state.last_hash,
                &ChainInput {
                    position,
                    version,
                    timestamp_ms: now,
                    id: event.id.as_bytes(),
                    stream: name,
                    event_type: &event.event_type,
                    data_binary: event.data_binary,
                    metadata_digest: &event.metadata_digest,
                    data_digest: &event.data_digest,
                },
            );
            let mut flags = event.flags();
            if batch_end && i + 1 == append.events.len() {
                flags |= FLAG_BATCH_END;
            }
            let header = FrameHeader {
                kind: event.kind(),
                flags,
                position,
                version,
                timestamp_ms: now,
                watermark: self.state.active.durable.load(Ordering::Acquire),
                hash,
            };
            let offset = self.state.active.write_offset + self.buf.len() as u64;
            let start = self.buf.len();
            record::encode_frame(&mut self.buf, &header, &record::seal_body(event, &header));
            let body_start = start + record::FRAME_HEADER_LEN;
            self.staged.push(Staged {
                offset,
                position,
                stream: shared_name.clone(),
                version,
                id: event.id,
                body_range: (body_start, body_start + event.body.len()),
                life: None,
            });
            run.push((offset, position, event.id));
            self.state.next_position += 1;
            self.state.last_hash = hash;
        }
        let last_version = first_version + append.events.len() as u64 - 1;
        self.state.active.footer.push_run(name, first_version, &run);
        self.state.ids.insert_all(run.iter().map(|&(_, position, id)| (id, position)));
        self.state.last_timestamp_ms = now;
        let mut state = self.now(name);
        state.last = Some(last_version);
        state.last_timestamp_ms = Some(now);
        self.overlay.insert(name.to_string(), state);
        AppendResult {
            stream: append.stream.clone(),
            first_position: Position(first_position),
            last_position: Position(self.state.next_position - 1),
            first_version: StreamVersion(first_version),
            last_version: StreamVersion(last_version),
            hash: self.state.last_hash,
        }
    }

    /// Bytes the seal of a segment holding only this request's records would take.
    fn seal_len_alone(appends: &[PreparedAppend], plans: &[Plan]) -> u64 {
        let mut streams: Vec<&str> = Vec::new();
        let mut records = 0;
        for (append, _) in writes(appends, plans) {
            records += append.events.len();
            if !streams.contains(&append.stream.as_str()) {
                streams.push(append.stream.as_str());
            }
        }
        let name_bytes = streams.iter().map(|s| s.len()).sum();
        Footer::seal_len(records, name_bytes, streams.len()) as u64
    }

    fn fits(&self, appends: &[PreparedAppend], plans: &[Plan], frames: u64) -> bool {
        if self.sealed {
            return false;
        }
        let active = &self.state.active;
        let mut new_streams = 0;
        let mut new_name_bytes = 0;
        let mut records = 0;
        let mut seen: Vec<&str> = Vec::new();
        for (append, _) in writes(appends, plans) {
            records += append.events.len();
            let name = append.stream.as_str();
            if !active.footer.streams.contains_key(name) && !seen.contains(&name) {
                seen.push(name);
                new_streams += 1;
                new_name_bytes += name.len();
            }
        }
        let end = active.write_offset + self.buf.len() as u64 + frames;
        end + active.footer.seal_len_with(records, new_streams, new_name_bytes) <= segment::usable_end(active.capacity)
    }
}
