//! Restore: bring views to a log position from the best checkpoint chain plus a replay of the
//! log after it, verifying everything on the way and telling the operator what was skipped.
//!
//! The chain chosen is the one reaching furthest into the log (then the newest) whose every
//! member passes, in order: its header and manifest hash; the log's chain hash at its
//! position; every parent link (hash and order) back to a full checkpoint; its content digest
//! and decoding; its projection set equal to the views'; and, after it is applied, every
//! view's state digest equal to the manifest's. A checkpoint failing any of these becomes a
//! [`Warning`], it and everything built on it are skipped, and the next best chain is tried;
//! failing all, the views are emptied and rebuilt by replaying from position 0.
//!
//! This module reads the log (`for_each`, `hash_at`) and never writes it.

use std::collections::{BTreeSet, HashSet};

use log_engine::{Keyring, Log, Position};
use projections::{Changes, Projection, ProjectionError};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::{check_log, name_order, read_content, Catalog, Loaded, Snapshotter};
use crate::types::{CheckpointInfo, CheckpointKind, Digest, Progress, Stage, Warning};

/// Replay progress is reported every this many events.
pub const REPLAY_PROGRESS_EVERY: u64 = 65_536;

/// What a replay applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Replayed {
    /// Events read from the log and offered to every view.
    pub events: u64,
    /// `apply` calls that returned an error (the view skipped the event; the same events fail
    /// the same way on every replay, so digests still agree).
    pub apply_errors: u64,
    /// Per view that met any: its name, how many, and the newest (for a runner's status:
    /// [`projections::Runner::note_errors`]).
    #[serde(skip)]
    pub errors_by_view: Vec<(&'static str, u64, ProjectionError)>,
}

impl Replayed {
    fn record(&mut self, errors: &mut Vec<ProjectionError>) {
        for e in errors.drain(..) {
            tracing::debug!(projection = e.projection, position = e.position.0, error = %e.message, "event not applied");
            self.apply_errors += 1;
            match self.errors_by_view.iter_mut().find(|(name, _, _)| *name == e.projection) {
                Some((_, count, last)) => {
                    *count += 1;
                    *last = e;
                }
                None => self.errors_by_view.push((e.projection, 1, e)),
            }
        }
    }
}

/// Applies the log's events `from..=through` to every view, in position order.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # use log_engine::{ExpectedVersion, Log, NewEvent, Options, Position};
/// # let log = Log::open(dir.path(), Options::default())?;
/// # log.append("s", ExpectedVersion::Any, vec![NewEvent::json("T", &serde_json::json!({}))])?;
/// let mut views: Vec<Box<dyn projections::Projection>> = Vec::new();
/// let replayed = snapshotter::replay(&log, &mut views, Position(0), Position(0), &mut |_| {})?;
/// assert_eq!(replayed.events, 1);
/// # Ok::<(), snapshotter::Error>(())
/// ```
pub fn replay(
    log: &Log,
    views: &mut [Box<dyn Projection>],
    from: Position,
    through: Position,
    progress: &mut dyn FnMut(Progress),
) -> Result<Replayed> {
    if through < from {
        return Ok(Replayed::default());
    }
    let total = through.0 - from.0 + 1;
    let mut replayed = Replayed::default();
    let mut errors = Vec::new();
    log.for_each(from, total, |event| {
        projections::apply_event(views, &event, &mut errors);
        replayed.record(&mut errors);
        replayed.events += 1;
        if replayed.events.is_multiple_of(REPLAY_PROGRESS_EVERY) {
            progress(Progress { stage: Stage::Replay, done: replayed.events, total });
        }
        true
    })?;
    if replayed.events != total {
        return Err(Error::Invalid {
            what: format!(
                "replay through position {through} stopped after {} of {total} events: the log ends earlier",
                replayed.events
            ),
        });
    }
    progress(Progress { stage: Stage::Replay, done: total, total });
    Ok(replayed)
}

/// What [`Snapshotter::restore`] and [`Snapshotter::rebuild_at`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Restored {
    /// The newest checkpoint of the chain loaded; `None` when the views were rebuilt from 0.
    pub checkpoint: Option<CheckpointInfo>,
    /// Checkpoint files applied (the full one and its incrementals).
    pub checkpoints_loaded: u64,
    /// The position the views now include (`None`: an empty log, empty views).
    pub applied_through: Option<u64>,
    /// Events replayed after the checkpoint (or from 0).
    pub replayed: Replayed,
    /// Every checkpoint skipped and why, and any fallback to full replay. Show these.
    pub warnings: Vec<Warning>,
}

/// Collects warnings once each, and logs them.
#[derive(Default)]
struct Warnings {
    list: Vec<Warning>,
    seen: HashSet<String>,
}

impl Warnings {
    fn push(&mut self, warning: Warning) {
        if self.seen.insert(warning.message.clone()) {
            tracing::warn!(warning = %warning, "restore");
            self.list.push(warning);
        }
    }
}

impl Snapshotter {
    /// Open: restores `views` from the newest valid checkpoint chain and replays the rest of
    /// the log into them, so that they include every committed event. The views become this
    /// snapshotter's base for incremental checkpoints.
    ///
    /// The views may hold any state before; it is replaced.
    pub fn restore(
        &mut self,
        log: &Log,
        views: &mut [Box<dyn Projection>],
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Restored> {
        let target = log.head().map(|h| h.position);
        self.rebuild(log, views, target, progress)
    }

    /// Point-in-time: rebuilds `views` as of log position `at` (inclusive) from the newest
    /// valid chain at or before it, then a replay up to it.
    pub fn rebuild_at(
        &mut self,
        log: &Log,
        views: &mut [Box<dyn Projection>],
        at: Position,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Restored> {
        match log.head() {
            Some(head) if head.position >= at => self.rebuild(log, views, Some(at), progress),
            head => Err(Error::Invalid {
                what: format!(
                    "position {at} is beyond the log's head {}",
                    head.map_or("(empty log)".to_string(), |h| h.position.to_string())
                ),
            }),
        }
    }

    fn rebuild(
        &mut self,
        log: &Log,
        views: &mut [Box<dyn Projection>],
        target: Option<Position>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Restored> {
        let order = name_order(views)?;
        let catalog = Catalog::scan(&self.dir)?;
        let mut warnings = Warnings::default();
        let mut bad = BTreeSet::new();
        let mut candidates = Vec::new();
        for (&sequence, entry) in &catalog.entries {
            match &entry.loaded {
                Err(e) => warnings.push(Warning::from(e)),
                Ok(loaded) => match check_log(log, &entry.file, loaded) {
                    Err(e) => {
                        warnings.push(Warning::from(&e));
                        bad.insert(sequence);
                    }
                    Ok(()) => {
                        if target.is_some_and(|t| loaded.manifest.position <= t.0) {
                            candidates.push((loaded.manifest.position, sequence));
                        }
                    }
                },
            }
        }
        // Furthest into the log first, then newest.
        candidates.sort_unstable_by(|a, b| b.cmp(a));

        let mut found: Option<(u64, usize)> = None;
        for &(_, tip) in &candidates {
            if bad.contains(&tip) {
                continue;
            }
            let chain = match catalog.chain(tip, &bad) {
                Ok(chain) => chain,
                Err((e, walked)) => {
                    warnings.push(Warning::from(&*e));
                    bad.extend(walked);
                    continue;
                }
            };
            match load_chain(&catalog, &chain, views, &order, log.keys().map(|k| &**k), progress) {
                Ok(()) => {
                    found = Some((tip, chain.len()));
                    break;
                }
                Err((failed, e)) => {
                    warnings.push(Warning::from(&*e));
                    let dependents: Vec<u64> = chain[failed..].to_vec();
                    if dependents.len() > 1 {
                        warnings.push(Warning::plain(format!(
                            "{} newer checkpoints ({} to {}) build on checkpoint {} and were skipped with it",
                            dependents.len() - 1,
                            dependents[1],
                            dependents[dependents.len() - 1],
                            dependents[0]
                        )));
                    }
                    bad.extend(dependents);
                }
            }
        }

        let (checkpoint, loaded_count, from) = match found {
            Some((tip, len)) => {
                let loaded = catalog.loaded(tip).expect("a loaded tip is verified");
                self.adopt(loaded, &catalog, len);
                let info = CheckpointInfo::new(&loaded.manifest, loaded.hash, catalog.file(tip), loaded.file_len);
                (Some(info), len as u64, Position(loaded.manifest.position + 1))
            }
            None => {
                if !candidates.is_empty() || !warnings.list.is_empty() {
                    warnings.push(Warning::plain(
                        "no valid checkpoint chain could be loaded; the views were rebuilt by replaying the whole log",
                    ));
                }
                for view in views.iter_mut() {
                    view.load(Vec::new())
                        .map_err(|e| Error::Projection { projection: view.name().into(), detail: e.to_string() })?;
                }
                self.base = None;
                self.incrementals_since_full = 0;
                (None, 0, Position(0))
            }
        };
        for view in views.iter_mut() {
            view.mark();
        }
        let replayed = match target {
            Some(target) => replay(log, views, from, target, progress)?,
            None => Replayed::default(),
        };
        Ok(Restored {
            checkpoint,
            checkpoints_loaded: loaded_count,
            applied_through: target.map(|t| t.0),
            replayed,
            warnings: warnings.list,
        })
    }

    /// Makes a loaded chain's tip the base for incremental checkpoints.
    fn adopt(&mut self, tip: &Loaded, catalog: &Catalog, chain_len: usize) {
        self.base = Some(tip.base());
        self.incrementals_since_full = u32::try_from(chain_len - 1).unwrap_or(u32::MAX);
        self.last_position = Some(Position(tip.manifest.position));
        self.next_sequence = self.next_sequence.max(catalog.entries.keys().next_back().map_or(0, |s| s + 1));
    }
}

/// Applies `chain` (oldest first, starting with a full checkpoint) to `views`, checking each
/// checkpoint's content and every view's digest after it. On failure returns the index in
/// `chain` of the checkpoint that failed, and why.
fn load_chain(
    catalog: &Catalog,
    chain: &[u64],
    views: &mut [Box<dyn Projection>],
    order: &[usize],
    keys: Option<&Keyring>,
    progress: &mut dyn FnMut(Progress),
) -> std::result::Result<(), (usize, Box<Error>)> {
    for (index, &sequence) in chain.iter().enumerate() {
        let file = catalog.file(sequence);
        let loaded = catalog.loaded(sequence).expect("chain members are verified");
        let content = read_content(&file, loaded, keys).map_err(|e| (index, Box::new(e)))?;
        let names: Vec<&str> = content.iter().map(|c| c.name.as_str()).collect();
        let view_names: Vec<&str> = order.iter().map(|&i| views[i].name()).collect();
        if names != view_names {
            let detail =
                format!("it holds projections [{}], the views are [{}]", names.join(", "), view_names.join(", "));
            return Err((index, Box::new(Error::ProjectionSet { file, sequence, detail })));
        }
        let kind = loaded.kind();
        for (&i, part) in order.iter().zip(content) {
            let view = &mut views[i];
            let result = match kind {
                CheckpointKind::Full => {
                    view.load(part.upserts.into_iter().map(|(k, v)| (k.into_vec(), v.into_vec())).collect())
                }
                CheckpointKind::Incremental => view.apply_changes(&Changes {
                    upserts: part.upserts.into_iter().map(|(k, v)| (k.into_vec(), v.into_vec())).collect(),
                    removals: part.removals.into_iter().map(serde_bytes::ByteBuf::into_vec).collect(),
                }),
            };
            result.map_err(|source| (index, Box::new(Error::Load { file: file.clone(), sequence, source })))?;
        }
        for (&i, line) in order.iter().zip(&loaded.manifest.projections) {
            let found = views[i].digest();
            if found != line.digest {
                return Err((
                    index,
                    Box::new(Error::DigestMismatch {
                        file: file.clone(),
                        sequence,
                        projection: line.name.clone(),
                        expected: Digest(line.digest),
                        found: Digest(found),
                    }),
                ));
            }
        }
        progress(Progress { stage: Stage::LoadCheckpoints, done: index as u64 + 1, total: chain.len() as u64 });
    }
    Ok(())
}
