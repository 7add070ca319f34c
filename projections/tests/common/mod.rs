//! Helpers shared by the integration tests: fast logs in temporary directories, views that
//! have caught up, and seeded property-test runs that print their seed.
#![allow(dead_code)]

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use log_engine::{Durability, Log, Options, Position};
use projections::{Projection, Views};
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

/// How long a test waits for the views; generous, since the machine is shared. Waits end as
/// soon as the views get there, so this only bounds a failing test.
pub const WAIT: Duration = Duration::from_secs(60);

/// A log without fdatasync (durability is not what these tests check) and small segments, so
/// that tests cross segment boundaries.
pub fn options() -> Options {
    Options { durability: Durability::None, segment_size: 1 << 20, ..Options::default() }
}

pub fn open_log(dir: &std::path::Path) -> Log {
    Log::open(dir, options()).expect("open log")
}

/// A log and its views in a fresh directory.
pub fn views() -> (tempfile::TempDir, Log, Views) {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    let views = Views::open(log.clone()).unwrap();
    (dir, log, views)
}

/// Waits until the views have applied everything in the log now.
pub fn caught_up(views: &Views) {
    if let Some(head) = views.log().head() {
        views.wait_for(head.position, WAIT).expect("views catch up");
    }
}

/// Waits for one position.
pub fn at(views: &Views, position: Position) {
    views.wait_for(position, WAIT).expect("views reach the position");
}

/// Digests of the views, by name, after catching up.
pub fn digests(views: &Views) -> Vec<(&'static str, [u8; 32])> {
    caught_up(views);
    views.runner().read(|all| all.iter().map(|p| (p.name(), p.digest())).collect())
}

/// Fresh copies of one named projection.
pub fn fresh(name: &str) -> Box<dyn Projection> {
    Views::projections().into_iter().find(|p| p.name() == name).expect("a projection of that name")
}

/// Runs a property test with a seed taken from `CAIRN_PROPTEST_SEED` or chosen at random, and
/// prints the seed so that a failure can be replayed.
pub fn run_seeded<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let seed: u64 = std::env::var("CAIRN_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::hash::RandomState::new().build_hasher().finish());
    eprintln!("{name}: seed {seed} (replay with CAIRN_PROPTEST_SEED={seed})");
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, rng);
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{name} failed with seed {seed}: {e}");
    }
}
