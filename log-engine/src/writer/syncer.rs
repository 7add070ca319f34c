//! The syncer thread: makes written groups durable with one fdatasync, publishes them to
//! readers (mapped bytes, then the index, then a wake-up for subscribers) and answers every
//! appender in them, in the order the writer wrote them. The writer runs [`complete`] itself for
//! a lone commit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::{Reply, Staged};
use crate::error::{Error, Result};
use crate::fs::StorageFile;
use crate::index::StreamEntry;
use crate::lifecycle::Change;
use crate::mmap::Mapping;
use crate::segment;
use crate::shared::Shared;
use crate::types::{AppendResult, ChainHash, SegmentId};

/// A written group on its way to disk: the syncer makes it durable, publishes it, answers it.
pub(super) struct SyncJob {
    pub(super) segment: SegmentId,
    pub(super) file: Arc<dyn StorageFile>,
    pub(super) map: Arc<Mapping>,
    pub(super) durable: Arc<AtomicU64>,
    /// End of the group's bytes in the segment.
    pub(super) end: u64,
    /// Whether this group asks for an fdatasync (always, in `Durability::Sync`).
    pub(super) sync: bool,
    pub(super) staged: Vec<Staged>,
    pub(super) replies: Vec<(Reply, Result<Vec<AppendResult>>)>,
    pub(super) next_position: u64,
    pub(super) head_hash: ChainHash,
    /// Timestamp of the group's newest event: the log's clock once it is published.
    pub(super) clock_ms: u64,
    pub(super) bytes: u64,
}

/// The thread that makes written groups durable and visible, in order.
struct Syncer {
    shared: Arc<Shared>,
    rx: Receiver<SyncJob>,
    done: Sender<u64>,
    poisoned: Option<String>,
}

/// Starts the syncer thread with a queue of `queue` written groups; returns the queue, the
/// thread, and the channel on which it reports the next position after each group it finished.
pub(super) fn spawn(
    shared: &Arc<Shared>,
    queue: usize,
) -> std::io::Result<(SyncSender<SyncJob>, JoinHandle<()>, Receiver<u64>)> {
    let (job_tx, job_rx) = std::sync::mpsc::sync_channel(queue);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let syncer = Syncer { shared: shared.clone(), rx: job_rx, done: done_tx, poisoned: None };
    let for_syncer = shared.clone();
    let handle = std::thread::Builder::new().name("cairn-log-syncer".into()).spawn(move || {
        // As for the writer: a failed assertion here poisons the log; waiters see their reply
        // channel close and report the poison.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| syncer.run())).is_err() {
            for_syncer.poison.lock().get_or_insert_with(|| "the syncer thread panicked".to_string());
            for_syncer.head_tx.send_modify(|_| {});
        }
    })?;
    Ok((job_tx, handle, done_rx))
}

impl Syncer {
    fn run(mut self) {
        while let Ok(first) = self.rx.recv() {
            // Everything queued behind the last sync shares the next one.
            let mut jobs = vec![first];
            while let Ok(job) = self.rx.try_recv() {
                jobs.push(job);
            }
            for through in complete(&self.shared, jobs, &mut self.poisoned) {
                // The writer may be gone at close; then nobody needs to know.
                let _ = self.done.send(through);
            }
        }
    }
}

/// Makes written groups durable with one fdatasync, publishes them in order and answers them;
/// on a failed fdatasync, poisons the log and answers them with the error. Returns, per group,
/// the next position after it.
pub(super) fn complete(shared: &Shared, jobs: Vec<SyncJob>, poisoned: &mut Option<String>) -> Vec<u64> {
    let last = jobs.last().expect("one job at least");
    // The writer drains the syncer before it seals a segment, so a batch is one segment's.
    // One fdatasync of `last.file` covers the jobs only if they are all that file's: a job of
    // another segment would be acknowledged without being durable.
    let stray = jobs.iter().find(|j| j.segment != last.segment).map(|j| j.segment);
    assert!(
        stray.is_none(),
        "a sync group spans segments {} and {}: one fdatasync cannot make both durable",
        stray.map_or(0, |s| s.0),
        last.segment
    );
    if poisoned.is_none() && jobs.iter().any(|j| j.sync) {
        let started = Instant::now();
        match last.file.sync_data() {
            Ok(()) => {
                let events = jobs.iter().map(|j| j.staged.len() as u64).sum();
                shared.metrics.record_fsync(started.elapsed(), events);
                last.durable.fetch_max(last.end, Ordering::AcqRel);
            }
            Err(e) => {
                let path = shared.log_dir().join(segment::file_name(last.segment));
                let cause = format!("fdatasync of {} failed: {e}", path.display());
                tracing::error!(%cause, "log poisoned");
                *shared.poison.lock() = Some(cause.clone());
                *poisoned = Some(cause);
            }
        }
    }
    let mut finished = Vec::with_capacity(jobs.len());
    for job in jobs {
        finished.push(job.next_position);
        match poisoned {
            Some(cause) => {
                for (reply, _) in job.replies {
                    reply.send(Err(Error::Poisoned { cause: cause.clone() }));
                }
            }
            None => {
                let failed = destroy_erased_keys(shared, &job);
                publish(shared, &job);
                shared.metrics.record_commit(job.staged.len() as u64, job.bytes);
                for (reply, result) in job.replies {
                    reply.send(result);
                }
                if let Err(cause) = failed {
                    // The erasure stands, but its key is live: an append sealed with it now
                    // would be acknowledged and then lost to the next open's destruction. No
                    // more appends until that open has destroyed it.
                    tracing::error!(%cause, "log poisoned");
                    *shared.poison.lock() = Some(cause.clone());
                    *poisoned = Some(cause);
                }
            }
        }
    }
    finished
}

/// Destroys the secrets that the group's erasures of whole encrypted streams name, now that the
/// erasures are durable (the writer syncs every group that holds one), before anyone is told
/// of them. A failure leaves the erasure standing (reads hide the payloads) and the key in place
/// until the next open destroys it (`Log::open`); its cause poisons the log (`complete`).
fn destroy_erased_keys(shared: &Shared, job: &SyncJob) -> std::result::Result<(), String> {
    let Some(keys) = shared.options.keys.as_deref() else { return Ok(()) };
    let mut failed = Ok(());
    for change in job.staged.iter().filter_map(|s| s.life.as_deref()) {
        if let Change::Erased { stream, shred_through: Some(through), .. } = change {
            match keys.shred_through(stream, *through) {
                Ok(n) => tracing::info!(stream = %stream, secrets = n, "erasure of the whole stream destroyed its key"),
                Err(e) => failed = Err(format!("stream {stream} was erased, but its key was not destroyed: {e}")),
            }
        }
    }
    failed
}

/// Makes a group visible: the bytes first, then the index, then wake subscribers. Everything is
/// checked before anything changes, so a failed assertion leaves readers' view as it was.
fn publish(shared: &Shared, job: &SyncJob) {
    let mut index = shared.index.write();
    // A group may hold several runs of one stream (from different requests), and a fork staged
    // in it sets where its stream's own versions start.
    let mut next: HashMap<&str, u64, foldhash::fast::RandomState> = HashMap::default();
    for run in job.staged.chunk_by(|a, b| Arc::ptr_eq(&a.stream, &b.stream)) {
        let name = &*run[0].stream;
        let have = *next.entry(name).or_insert_with(|| index.streams.get(name).map_or(0, StreamEntry::next_version));
        assert_eq!(have, run[0].version, "stream {name} would get a version gap");
        next.insert(name, have + run.len() as u64);
        for change in run.iter().filter_map(|s| s.life.as_deref()) {
            if let Change::Forked { stream, at_version, .. } = change {
                next.insert(stream, at_version + 1);
            }
        }
    }
    let active = index.active_mut();
    assert_eq!(active.id, job.segment, "index and syncer disagree on the active segment");
    for (i, s) in job.staged.iter().enumerate() {
        assert_eq!(active.next_position() + i as u64, s.position, "publishing out of order");
    }
    job.map.publish(job.end);
    for s in &job.staged {
        active.offsets.push(u32::try_from(s.offset).expect("offsets fit in u32"));
    }
    active.data_end = job.end;
    for run in job.staged.chunk_by(|a, b| Arc::ptr_eq(&a.stream, &b.stream)) {
        let name = &*run[0].stream;
        let entry = match index.streams.get_mut(name) {
            Some(entry) => entry,
            None => index.streams.entry(name.to_string()).or_default(),
        };
        entry.positions.extend(run.iter().map(|s| s.position));
        for change in run.iter().filter_map(|s| s.life.as_deref()) {
            if let Err(e) = index.apply(change) {
                panic!("the writer staged a lifecycle change the index refuses: {e}");
            }
        }
    }
    index.next_position = job.next_position;
    index.head_hash = job.head_hash;
    index.clock_ms = index.clock_ms.max(job.clock_ms);
    drop(index);
    // Readers in other processes show the active segment only up to here (extent.rs).
    if let Some(live) = &shared.live {
        live.note(job.segment, job.end);
    }
    shared.head_tx.send_replace(job.next_position);
}
