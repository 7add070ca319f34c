//! Model-based test of checkpoints: proptest generates sequences of key-value writes and
//! deletes, full and incremental checkpoints, restarts (close, reopen the store: restore from
//! checkpoints and replay the tail), damage to the newest checkpoint file followed by a
//! restart, and a crash that leaves a torn temporary file behind. The model is a map of keys
//! to values. After every restart the key-value view must equal the model, every view's digest
//! must equal a replay of the log from position 0, and damage must be reported by the restore.
//! A failure is shrunk and printed as a minimal step list.
//!
//! `CAIRN_CHECKPOINT_MODEL_CASES` sets the number of sequences (default 200 in an optimised
//! build, 24 in a debug one); `CAIRN_SEED` replays a seed.

mod reliability;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use cairn::store::Store;
use log_engine::{ExpectedVersion, Log, Options};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use reliability::views::{replayed, restore};
use reliability::{env_count, scratch_dir, suite_seed};
use serde_json::json;
use snapshotter::{CheckpointKind, Policy, Restored};

const CASES_DEFAULT: u64 = if cfg!(debug_assertions) { 24 } else { 200 };
const STEPS_MAX: usize = 24;
const KEYS: u8 = 5;
const WAIT: Duration = Duration::from_secs(60);

/// What the run exercised: restarts, restores from a checkpoint, damaged files reported.
static RESTARTS: AtomicU64 = AtomicU64::new(0);
static FROM_CHECKPOINT: AtomicU64 = AtomicU64::new(0);
static DAMAGE_REPORTED: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone)]
enum Step {
    Set {
        key: u8,
        value: u16,
    },
    Delete {
        key: u8,
    },
    Checkpoint {
        full: bool,
    },
    Restart,
    /// Flip one byte of the newest checkpoint file, then restart.
    DamageNewest {
        at: u16,
    },
    /// A crash in the middle of writing the next checkpoint: a torn temporary file; restart.
    TornTemporary {
        len: u16,
    },
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..KEYS, any::<u16>()).prop_map(|(key, value)| Step::Set { key, value }),
        1 => (0..KEYS).prop_map(|key| Step::Delete { key }),
        3 => any::<bool>().prop_map(|full| Step::Checkpoint { full }),
        2 => Just(Step::Restart),
        1 => any::<u16>().prop_map(|at| Step::DamageNewest { at }),
        1 => any::<u16>().prop_map(|len| Step::TornTemporary { len }),
    ]
}

struct Harness {
    dir: tempfile::TempDir,
    store: Option<Store>,
    model: BTreeMap<String, u16>,
    /// The newest checkpoint file written and not damaged since.
    newest: Option<std::path::PathBuf>,
}

fn key(k: u8) -> String {
    format!("k/{k}")
}

fn policy() -> Policy {
    Policy { every_events: None, every_interval: None, ..Policy::default() }
}

impl Harness {
    fn new() -> Harness {
        let dir = scratch_dir();
        let log = Log::open(dir.path(), Options::default()).expect("create a log");
        let (store, _) = Store::open(log, policy(), &mut |_| {}).expect("open the store");
        Harness { dir, store: Some(store), model: BTreeMap::new(), newest: None }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("the store is open")
    }

    /// Closes and reopens the store, checking the restore against a replay and the model.
    fn restart(&mut self) -> Result<Restored, TestCaseError> {
        self.store.take().expect("open").close();
        let log = Log::open(self.dir.path(), Options::default()).expect("reopen the log");
        // The restore a restarting process does, checked against a replay from 0.
        let (restored, got) = restore(&log);
        prop_assert_eq!(got, replayed(&log), "restored views differ from a replay; warnings {:?}", restored.warnings);
        let (store, _) = Store::open(log, policy(), &mut |_| {}).expect("reopen the store");
        store.catch_up(WAIT).expect("the views catch up");
        let now = projections::now_ms();
        for k in 0..KEYS {
            let found = store.views().kv().get(&key(k), now).ok().map(|e| e.value);
            let expected = self.model.get(&key(k)).map(|&v| json!(v));
            prop_assert_eq!(found, expected, "key {} after a restart", key(k));
        }
        self.store = Some(store);
        RESTARTS.fetch_add(1, Relaxed);
        FROM_CHECKPOINT.fetch_add(u64::from(restored.checkpoint.is_some()), Relaxed);
        Ok(restored)
    }

    fn step(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match *step {
            Step::Set { key: k, value } => {
                self.store().views().kv().set(&key(k), json!(value), None, ExpectedVersion::Any).expect("set");
                self.model.insert(key(k), value);
            }
            Step::Delete { key: k } => {
                self.store().views().kv().delete(&key(k), None).expect("delete");
                self.model.remove(&key(k));
            }
            Step::Checkpoint { full } => {
                if self.store().log().head().is_none() {
                    return Ok(());
                }
                let kind = if full { CheckpointKind::Full } else { CheckpointKind::Incremental };
                match self.store().checkpoint(Some(kind)) {
                    Ok(info) => self.newest = Some(info.file),
                    // An incremental needs a base; without one it is refused, which is fine.
                    Err(e) if !full => prop_assert!(e.to_string().contains("full"), "incremental refused: {}", e),
                    Err(e) => return Err(TestCaseError::fail(format!("full checkpoint failed: {e}"))),
                }
            }
            Step::Restart => {
                self.restart()?;
            }
            Step::DamageNewest { at } => {
                let Some(file) = self.newest.take() else { return Ok(()) };
                if !file.exists() {
                    return Ok(());
                }
                let mut bytes = std::fs::read(&file).unwrap();
                let at = at as usize % bytes.len();
                bytes[at] ^= 0x5a;
                std::fs::write(&file, &bytes).unwrap();
                let restored = self.restart()?;
                prop_assert!(
                    restored.warnings.iter().any(|w| w.file.as_deref() == Some(file.as_path())),
                    "damage at byte {} of {} was not reported: {:?}",
                    at,
                    file.display(),
                    restored.warnings
                );
                DAMAGE_REPORTED.fetch_add(1, Relaxed);
            }
            Step::TornTemporary { len } => {
                let Some(file) = self.newest.clone() else { return Ok(()) };
                let Ok(bytes) = std::fs::read(&file) else { return Ok(()) };
                let name = file.file_name().unwrap().to_string_lossy().into_owned();
                let sequence: u64 = name.trim_end_matches(".ckpt").parse().unwrap();
                let tmp = file.with_file_name(format!("{:020}.ckpt.tmp", sequence + 1));
                std::fs::write(&tmp, &bytes[..len as usize % bytes.len()]).unwrap();
                let restored = self.restart()?;
                prop_assert!(!tmp.exists(), "the torn temporary file survived a restart");
                prop_assert!(
                    !restored.warnings.iter().any(|w| w.file.as_deref() == Some(tmp.as_path())),
                    "a temporary file is not damage: {:?}",
                    restored.warnings
                );
            }
        }
        Ok(())
    }
}

#[test]
fn checkpoints_and_restarts_behave_like_the_model() {
    let seed = suite_seed("checkpoint_model");
    let cases = env_count("CAIRN_CHECKPOINT_MODEL_CASES", CASES_DEFAULT) as u32;
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let result = runner.run(&prop::collection::vec(step_strategy(), 1..STEPS_MAX), |steps| {
        let mut h = Harness::new();
        for step in &steps {
            h.step(step)?;
        }
        h.restart()?;
        h.store.take().expect("open").close();
        Ok(())
    });
    match result {
        Ok(()) => {}
        Err(proptest::test_runner::TestError::Fail(why, steps)) => {
            panic!("checkpoint model failed (replay with CAIRN_SEED={seed}): {why}\nminimal steps: {steps:#?}")
        }
        Err(e) => panic!("checkpoint model failed (replay with CAIRN_SEED={seed}): {e}"),
    }
    eprintln!(
        "checkpoint_model: {cases} sequences, {} restarts ({} restored from a checkpoint), {} damaged checkpoints \
         reported; every restore equal to a replay and to the model",
        RESTARTS.load(Relaxed),
        FROM_CHECKPOINT.load(Relaxed),
        DAMAGE_REPORTED.load(Relaxed)
    );
}
