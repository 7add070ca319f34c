//! `cairn serve --follow URL`: a read replica. A [`Follower`] thread keeps a byte mirror of the
//! leader's log ([`log_engine::Mirror`]) by asking the leader's replication endpoints
//! (`src/http/replication.rs`) for its segments and shipping what it lacks: sealed segments
//! whole, the active one as it grows. The mirror checks every batch (CRCs, positions, the chain
//! from its own last checked hash) before it writes it, and publishes it only once durable; the
//! server reads the directory as an ordinary reader ([`log_engine::Log::open_read_only`]) that
//! the follower refreshes after every step, so reads, subscriptions and the views see the
//! leader's writes, and never a byte that did not check out.
//!
//! Lag is what the replica lacks of what the leader last listed: in events, and in seconds
//! since the replica last held all of it (0 while caught up). Both are in `/metrics` and
//! `/healthz`. A leader that cannot be reached, or bytes that fail a check, leave the replica
//! serving what it has; the follower retries with backoff and reports the cause.
//!
//! What the follower does not do: write anything of its own into the log, take over when the
//! leader fails (promotion is an operator's step: stop the replica, serve its directory as a
//! writer), or follow a leader whose log no longer continues its own (a leader restored to an
//! older point): it stops advancing and says so.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log_engine::{Log, Mirror, SegmentId, MIRROR_HEADER_BYTES};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::limits::REPLICATION_CHUNK_MAX;
use crate::wire::{SegmentJson, SegmentsJson};

/// How long one segment listing asks the leader to wait for a new position (long poll).
pub const FOLLOW_WAIT: Duration = Duration::from_secs(5);
/// Bytes the follower asks for in one fetch of an active segment (doubled while a single
/// batch does not fit, up to [`REPLICATION_CHUNK_MAX`]).
pub const FOLLOW_CHUNK: u64 = 1024 * 1024;
/// First and longest pause after a failed round.
pub const FOLLOW_RETRY_MIN: Duration = Duration::from_millis(100);
pub const FOLLOW_RETRY_MAX: Duration = Duration::from_secs(5);
/// Longest one request to the leader may take, on top of the long poll's wait.
pub const FOLLOW_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a round of following failed. The messages are sentences naming the leader.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("cannot reach the leader at {leader}: {source}")]
    Unreachable {
        leader: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the leader at {leader} answered {status} to {what}: {body}")]
    Refused { leader: String, status: u16, what: String, body: String },
    #[error("bytes shipped by the leader at {leader} were refused, nothing of them was taken: {source}")]
    Check {
        leader: String,
        #[source]
        source: log_engine::Error,
    },
    #[error(
        "the leader's log at {leader} does not continue this replica's: the replica holds positions up to {held} \
         and the leader {leader_says}; it was restored or repaired. Follow it into a new, empty data directory"
    )]
    Diverged { leader: String, held: i64, leader_says: String },
}

/// What the follower last saw, for `/metrics` and `/healthz`.
#[derive(Debug, Clone, Default)]
pub struct FollowStatus {
    /// The leader's head + 1 when last listed.
    pub leader_next: Option<u64>,
    /// The replica's checked, visible head + 1.
    pub replica_next: u64,
    /// When the leader last answered a listing.
    pub contacted: Option<Instant>,
    /// When the replica last held everything the leader had listed.
    pub caught_up: Option<Instant>,
    /// The last round's failure, cleared by a round that succeeds.
    pub last_error: Option<String>,
    /// Segment bytes taken from the leader since start.
    pub shipped_bytes: u64,
    /// Rounds whose shipped bytes failed a check.
    pub refused: u64,
}

/// A running follower: the leader it follows and what it last saw.
#[derive(Debug)]
pub struct Follower {
    leader: String,
    token: Option<String>,
    status: Mutex<FollowStatus>,
}

impl Follower {
    /// The leader's base URL.
    pub fn leader(&self) -> &str {
        &self.leader
    }

    pub fn status(&self) -> FollowStatus {
        self.status.lock().clone()
    }

    /// Events the leader had listed that the replica does not hold yet.
    pub fn lag_events(&self) -> u64 {
        let s = self.status.lock();
        s.leader_next.map_or(0, |l| l.saturating_sub(s.replica_next))
    }

    /// Seconds since the replica last held everything the leader had listed (0 while it does).
    pub fn lag_seconds(&self) -> f64 {
        let s = self.status.lock();
        if s.leader_next.is_none_or(|l| s.replica_next >= l) {
            return 0.0;
        }
        s.caught_up.map_or(0.0, |t| t.elapsed().as_secs_f64())
    }

    /// Seconds since the leader last answered (`None`: never).
    pub fn contact_age(&self) -> Option<f64> {
        self.status.lock().contacted.map(|t| t.elapsed().as_secs_f64())
    }
}

/// Starts following `leader` into `mirror`, refreshing `log` (a reader of the mirror's
/// directory) after every step, until `stop` turns true. The thread runs its own small async
/// runtime for the HTTP client; the mirror's writes and fsyncs block only it.
pub fn start(
    mirror: Mirror,
    log: Log,
    leader: &str,
    token: Option<String>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<(Arc<Follower>, JoinHandle<()>)> {
    let follower = Arc::new(Follower {
        leader: leader.trim_end_matches('/').to_string(),
        token,
        status: Mutex::new(FollowStatus { replica_next: mirror.tip().next_position, ..FollowStatus::default() }),
    });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = reqwest::Client::builder()
        .timeout(FOLLOW_WAIT + FOLLOW_REQUEST_TIMEOUT)
        .build()
        .map_err(std::io::Error::other)?;
    let f = follower.clone();
    let thread = std::thread::Builder::new()
        .name("cairn-follow".into())
        .spawn(move || runtime.block_on(follow(f, mirror, log, client, stop)))?;
    Ok((follower, thread))
}

/// Rounds until `stop`: each lists the leader's segments (waiting for a new position when
/// caught up) and ships what the mirror lacks; a failed round is retried after a growing pause.
async fn follow(
    f: Arc<Follower>,
    mut mirror: Mirror,
    log: Log,
    client: reqwest::Client,
    mut stop: watch::Receiver<bool>,
) {
    let mut pause = FOLLOW_RETRY_MIN;
    let mut round = Round { f: &f, client: &client, log: &log };
    loop {
        let result = tokio::select! {
            result = round.run(&mut mirror) => result,
            _ = stop.wait_for(|s| *s) => return,
        };
        let failed = {
            let mut status = f.status.lock();
            status.replica_next = mirror.tip().next_position;
            match result {
                Ok(()) => {
                    status.last_error = None;
                    false
                }
                Err(e) => {
                    if matches!(e, FollowError::Check { .. }) {
                        status.refused += 1;
                    }
                    tracing::warn!(error = %e, retry_in = ?pause, "replica: following the leader failed");
                    status.last_error = Some(e.to_string());
                    true
                }
            }
        };
        if !failed {
            pause = FOLLOW_RETRY_MIN;
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        pause = (pause * 2).min(FOLLOW_RETRY_MAX);
    }
}

/// One round's context.
struct Round<'a> {
    f: &'a Follower,
    client: &'a reqwest::Client,
    log: &'a Log,
}

impl Round<'_> {
    async fn run(&mut self, mirror: &mut Mirror) -> Result<(), FollowError> {
        let tip = mirror.tip();
        let listed: SegmentsJson = self
            .get(format!(
                "/v1/admin/replication/segments?after={}&wait_ms={}",
                tip.next_position,
                FOLLOW_WAIT.as_millis()
            ))
            .await?
            .json()
            .await
            .map_err(|e| self.unreachable(e))?;
        let leader_next = listed.head.position.map_or(0, |p| p + 1);
        {
            let mut status = self.f.status.lock();
            status.contacted = Some(Instant::now());
            status.leader_next = Some(leader_next);
        }
        if leader_next < tip.next_position {
            return Err(self.diverged(tip.next_position, format!("ends at position {}", leader_next.cast_signed() - 1)));
        }
        for segment in &listed.segments {
            self.ship(mirror, segment).await?;
        }
        let next = mirror.tip().next_position;
        let mut status = self.f.status.lock();
        status.replica_next = next;
        if next >= leader_next {
            status.caught_up = Some(Instant::now());
        }
        Ok(())
    }

    /// Ships what the mirror lacks of one listed segment.
    async fn ship(&mut self, mirror: &mut Mirror, segment: &SegmentJson) -> Result<(), FollowError> {
        let tip = mirror.tip();
        let id = SegmentId(segment.id);
        match mirror.active() {
            // Held already, sealed.
            Some((active, _)) if id < active => return Ok(()),
            None if segment.id < tip.next_position => return Ok(()),
            Some((active, _)) if id > active => {
                // The active segment was sealed on the leader: the listing names it first.
                return Err(
                    self.diverged(tip.next_position, format!("lists segment {id} before sealing segment {active}"))
                );
            }
            None if segment.id > tip.next_position => {
                return Err(self.diverged(
                    tip.next_position,
                    format!("has no segment starting at position {}", tip.next_position),
                ));
            }
            Some(_) => {}
            None => {
                if !segment.sealed {
                    let header = self.fetch(segment.id, 0, MIRROR_HEADER_BYTES).await?;
                    mirror.begin(&header).map_err(|e| self.check(e))?;
                }
            }
        }
        if segment.sealed {
            // First from the records held plus the leader's rest; if that does not check out
            // (the leader rewrote the segment, say), the whole segment from the leader.
            match self.seal(mirror, segment, true).await {
                Err(FollowError::Check { source, .. }) if mirror.active().is_some() => {
                    tracing::warn!(segment = segment.id, error = %source, "replica: the sealed segment does not extend the records held; shipping it whole");
                    self.seal(mirror, segment, false).await?;
                }
                other => other?,
            }
            self.refresh();
            return Ok(());
        }
        let mut chunk = FOLLOW_CHUNK;
        while let Some((_, end)) = mirror.active().filter(|(_, end)| *end < segment.bytes) {
            let bytes = self.fetch(segment.id, end, chunk).await?;
            let appended = mirror.append(&bytes);
            // Also after a refusal: the whole batches before the damage were taken.
            self.refresh();
            let added = appended.map_err(|e| self.check(e))?;
            if added == 0 && (bytes.len() as u64) < chunk {
                // No whole batch in what the leader has published yet (it never should: it
                // publishes whole batches); the next round asks again.
                break;
            } else if added == 0 {
                chunk = (chunk * 2).min(REPLICATION_CHUNK_MAX);
            }
        }
        Ok(())
    }

    /// Ships a sealed segment into a staged file and installs it once it checks out.
    async fn seal(&mut self, mirror: &mut Mirror, segment: &SegmentJson, reuse: bool) -> Result<(), FollowError> {
        let staged = mirror.stage(SegmentId(segment.id), segment.capacity, reuse).map_err(|e| self.check(e))?;
        let mut at = staged.from();
        while at < segment.bytes {
            let bytes = self.fetch(segment.id, at, REPLICATION_CHUNK_MAX).await?;
            if bytes.is_empty() {
                break;
            }
            staged.write_at(at, &bytes).map_err(|e| self.check(e))?;
            at += bytes.len() as u64;
        }
        mirror.install(staged).map_err(|e| self.check(e))?;
        Ok(())
    }

    /// Bytes `from..from + max` of a leader's segment (fewer at its shippable end).
    async fn fetch(&mut self, id: u64, from: u64, max: u64) -> Result<Vec<u8>, FollowError> {
        let response = self.get(format!("/v1/admin/replication/segments/{id}?from={from}&max={max}")).await?;
        let bytes = response.bytes().await.map_err(|e| self.unreachable(e))?;
        self.f.status.lock().shipped_bytes += bytes.len() as u64;
        Ok(bytes.to_vec())
    }

    async fn get(&self, path: String) -> Result<reqwest::Response, FollowError> {
        let mut request = self.client.get(format!("{}{path}", self.f.leader));
        if let Some(token) = &self.f.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            return Err(FollowError::Refused { leader: self.f.leader.clone(), status, what: path, body });
        }
        Ok(response)
    }

    /// Lets the server's reader see what the mirror published.
    fn refresh(&self) {
        if let Err(e) = self.log.refresh() {
            tracing::warn!(error = %e, "replica: the server's reader could not pick up the shipped segments");
        }
        self.f.status.lock().replica_next = self.log.head().map_or(0, |h| h.position.0 + 1);
    }

    fn unreachable(&self, source: reqwest::Error) -> FollowError {
        FollowError::Unreachable { leader: self.f.leader.clone(), source }
    }

    fn check(&self, source: log_engine::Error) -> FollowError {
        FollowError::Check { leader: self.f.leader.clone(), source }
    }

    fn diverged(&self, next: u64, leader_says: String) -> FollowError {
        FollowError::Diverged { leader: self.f.leader.clone(), held: next.cast_signed() - 1, leader_says }
    }
}
