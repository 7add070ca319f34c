//! Random operations against a simple in-memory model, across reopens: the log must agree with
//! the model on every read (global order, per-stream order, versions, head), and its chain must
//! verify. proptest prints the failing case and shrinks it to a minimal sequence.

mod common;

use common::*;
use log_engine::{Direction, Durability, Error, ExpectedVersion, Log, Options, Position, StreamVersion};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append { stream: u8, events: u8, expect: u8 },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..4, 1u8..6, 0u8..4).prop_map(|(stream, events, expect)| Op::Append { stream, events, expect }),
        1 => Just(Op::Reopen),
    ]
}

fn options() -> Options {
    Options { durability: Durability::None, ..small_options() }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), options()).unwrap();
        // The model: every event as (stream, data n), in log order.
        let mut model: Vec<(String, u64)> = Vec::new();
        let mut n = 0u64;
        for op in ops {
            match op {
                Op::Append { stream, events, expect } => {
                    let name = format!("s{stream}");
                    let current = model.iter().filter(|(s, _)| *s == name).count() as u64;
                    let current = current.checked_sub(1);
                    let expected = match expect {
                        0 => ExpectedVersion::Any,
                        1 => ExpectedVersion::NoStream,
                        2 => ExpectedVersion::Exists,
                        _ => ExpectedVersion::Exact(StreamVersion(current.unwrap_or(0))),
                    };
                    let should_pass = match expected {
                        ExpectedVersion::Any => true,
                        ExpectedVersion::NoStream => current.is_none(),
                        ExpectedVersion::Exists => current.is_some(),
                        ExpectedVersion::Exact(v) => current == Some(v.0),
                    };
                    let batch: Vec<_> = (0..events).map(|i| event(&name, n + u64::from(i))).collect();
                    match log.append(&name, expected, batch) {
                        Ok(r) => {
                            prop_assert!(should_pass);
                            prop_assert_eq!(r.first_position, Position(model.len() as u64));
                            for i in 0..u64::from(events) {
                                model.push((name.clone(), n + i));
                            }
                        }
                        Err(Error::WrongExpectedVersion { .. }) => prop_assert!(!should_pass),
                        Err(e) => return Err(TestCaseError::fail(e.to_string())),
                    }
                    n += u64::from(events);
                }
                Op::Reopen => {
                    drop(log);
                    log = Log::open(dir.path(), options()).unwrap();
                }
            }
            let all = log.read_all(Position(0), 100_000).unwrap();
            prop_assert_eq!(all.len(), model.len());
            for (event, (stream, data)) in all.iter().zip(&model) {
                prop_assert_eq!(&event.stream, stream);
                prop_assert_eq!(event.data_json().unwrap()["n"].as_u64(), Some(*data));
            }
        }
        for stream in 0..4 {
            let name = format!("s{stream}");
            let expected: Vec<u64> = model.iter().filter(|(s, _)| *s == name).map(|(_, d)| *d).collect();
            match log.read_stream(&name, None, 100_000, Direction::Forward) {
                Ok(events) => {
                    let got: Vec<u64> = events.iter().map(|e| e.data_json().unwrap()["n"].as_u64().unwrap()).collect();
                    prop_assert_eq!(got, expected);
                    for (i, e) in events.iter().enumerate() {
                        prop_assert_eq!(e.version, StreamVersion(i as u64));
                    }
                }
                Err(Error::StreamNotFound { .. }) => prop_assert!(expected.is_empty()),
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            }
        }
        let verified = log.verify(None, |_| ()).unwrap().ok;
        prop_assert!(verified, "the chain does not verify");
    }
}
