//! Retention and compaction of the checkpoint directory.
//!
//! - **Retention** keeps the newest `keep_full` full checkpoints that verify completely
//!   (manifest, content digest, log hash) and every checkpoint after the oldest of them, and
//!   deletes the older files. It runs only after a newer full checkpoint is durable, and
//!   deletes nothing unless `keep_full` verified full checkpoints exist, so a damaged newer
//!   checkpoint never costs the older chain it would replace.
//! - **Compaction** folds the newest valid chain (a full checkpoint and its incrementals) into
//!   one new full checkpoint at the chain's position. It works on entries alone, without any
//!   projection: the entries are merged in key order and each step's state digest is
//!   recomputed with [`projections::digest_entries`] and checked against the manifest.
//!
//! Neither touches the log; both only read it to check the chain hash.

use std::collections::{BTreeMap, BTreeSet};

use log_engine::{ChainHash, Log, Position};
use serde_bytes::ByteBuf;

use crate::error::{Error, Result};
use crate::format::{Manifest, ProjectionContent, ProjectionManifest};
use crate::store::{check_log, now_ms, read_content, sync_dir, Base, Catalog, Snapshotter};
use crate::types::{CheckpointInfo, CheckpointKind, Digest};

impl Snapshotter {
    /// Applies retention now; returns the sequences deleted. [`Snapshotter::checkpoint`] calls
    /// it after every full checkpoint.
    pub fn prune(&self, log: &Log) -> Result<Vec<u64>> {
        let catalog = Catalog::scan(&self.dir)?;
        let mut kept_full = 0;
        let mut cutoff = None;
        for (&sequence, entry) in catalog.entries.iter().rev() {
            let Ok(loaded) = &entry.loaded else { continue };
            if loaded.kind() != CheckpointKind::Full {
                continue;
            }
            if read_content(&entry.file, loaded, log.keys().map(|k| &**k)).is_err()
                || check_log(log, &entry.file, loaded).is_err()
            {
                continue;
            }
            kept_full += 1;
            cutoff = Some(sequence);
            if kept_full == self.policy.keep_full {
                break;
            }
        }
        let Some(cutoff) = cutoff.filter(|_| kept_full == self.policy.keep_full) else {
            return Ok(Vec::new());
        };
        // The views' base chain stays whatever its age: the next incremental builds on it.
        let protected: BTreeSet<u64> = match self.base {
            Some(base) if catalog.loaded(base.sequence).is_some() => {
                catalog.chain(base.sequence, &BTreeSet::new()).unwrap_or_default().into_iter().collect()
            }
            _ => BTreeSet::new(),
        };
        let mut deleted = Vec::new();
        // Newest first: a crash part-way leaves an older full checkpoint with a prefix of its
        // incrementals (a valid chain), never an incremental whose parent is gone.
        for (&sequence, entry) in catalog.entries.range(..cutoff).rev() {
            if protected.contains(&sequence) {
                continue;
            }
            std::fs::remove_file(&entry.file).map_err(|e| Error::io("remove old checkpoint", &entry.file, e))?;
            deleted.push(sequence);
        }
        deleted.reverse();
        if !deleted.is_empty() {
            sync_dir(&self.dir)?;
            tracing::info!(deleted = deleted.len(), cutoff, "old checkpoints removed by retention");
        }
        Ok(deleted)
    }

    /// Folds the newest valid chain into one new full checkpoint at its position, then applies
    /// retention. Returns `None` when the newest valid chain is already a lone full checkpoint.
    /// A chain that fails verification is an error, not something to compact.
    pub fn compact(&mut self, log: &Log) -> Result<Option<CheckpointInfo>> {
        let catalog = Catalog::scan(&self.dir)?;
        let mut bad = BTreeSet::new();
        let mut tips = Vec::new();
        for (&sequence, entry) in &catalog.entries {
            if let Ok(loaded) = &entry.loaded {
                match check_log(log, &entry.file, loaded) {
                    Ok(()) => tips.push((loaded.manifest.position, sequence)),
                    Err(_) => {
                        bad.insert(sequence);
                    }
                }
            }
        }
        tips.sort_unstable_by(|a, b| b.cmp(a));
        let Some(chain) = tips.iter().find_map(|&(_, tip)| catalog.chain(tip, &bad).ok()) else {
            return Ok(None);
        };
        if chain.len() < 2 {
            return Ok(None);
        }
        let mut states: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>> = BTreeMap::new();
        for (i, &sequence) in chain.iter().enumerate() {
            let file = catalog.file(sequence);
            let loaded = catalog.loaded(sequence).expect("chain members verified");
            let content = read_content(&file, loaded, log.keys().map(|k| &**k))?;
            let names_match = if i == 0 {
                true
            } else {
                states.len() == content.len() && content.iter().all(|c| states.contains_key(&c.name))
            };
            if !names_match {
                return Err(Error::ProjectionSet {
                    file,
                    sequence,
                    detail: "it covers different projections than the checkpoint it builds on".into(),
                });
            }
            for part in content {
                let state = states.entry(part.name).or_default();
                for key in part.removals {
                    state.remove(key.as_slice());
                }
                for (key, value) in part.upserts {
                    state.insert(key.into_vec(), value.into_vec());
                }
            }
            for line in &loaded.manifest.projections {
                let state = &states[&line.name];
                let found = projections::digest_entries(state.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
                if found != line.digest {
                    return Err(Error::DigestMismatch {
                        file: file.clone(),
                        sequence,
                        projection: line.name.clone(),
                        expected: Digest(line.digest),
                        found: Digest(found),
                    });
                }
            }
        }
        let tip = catalog.loaded(*chain.last().expect("chain is not empty")).expect("chain members verified");
        let tip_base = tip.base();
        let sequence = self.next_sequence;
        let lines = tip
            .manifest
            .projections
            .iter()
            .map(|line| ProjectionManifest {
                name: line.name.clone(),
                digest: line.digest,
                upserts: states[&line.name].len() as u64,
                removals: 0,
            })
            .collect();
        let content = states
            .into_iter()
            .map(|(name, state)| ProjectionContent {
                name,
                upserts: state.into_iter().map(|(k, v)| (ByteBuf::from(k), ByteBuf::from(v))).collect(),
                removals: Vec::new(),
            })
            .collect();
        let manifest = Manifest {
            sequence,
            kind: CheckpointKind::Full.to_byte(),
            position: tip.manifest.position,
            log_hash: tip.manifest.log_hash,
            parent: Some(tip.manifest.sequence),
            parent_hash: tip.hash,
            created_ms: now_ms(),
            projections: lines,
            content_digest: [0; 32],
            raw_len: 0,
            compressed_len: 0,
            sealed: None,
        };
        debug_assert_eq!(log.hash_at(Position(manifest.position)).ok(), Some(ChainHash(manifest.log_hash)));
        let info = self.write(manifest, content)?;
        // The new full checkpoint holds exactly the tip's state, so views based on the tip
        // are based on it too.
        if self.base == Some(tip_base) {
            self.base = Some(Base { sequence, hash: info.hash.0, position: info.position });
            self.incrementals_since_full = 0;
        }
        self.prune(log)?;
        Ok(Some(info))
    }
}
