//! fjall (an LSM-tree key-value store in Rust) with an fdatasync per commit.
//!
//! Layout: partition `events` maps the global position (u64, big-endian, from an in-process
//! counter) to `stream_len u16 | stream | version u64 | payload`; partition `streams` maps
//! `stream | 0x00 | version u64 BE` to the position. Each append is one atomic fjall batch with
//! `PersistMode::SyncData`, which fdatasyncs the journal while holding its writer lock.
//! The expected-version check reads the stream's newest key before writing; it is race-free
//! here only because each stream has one appender (a real event store on fjall would take a
//! per-stream lock or use fjall's transactional keyspace).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fjall::{Config, Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};

use super::{Append, Client, System};
use crate::error::{BenchError, Result};

const NAME: &str = "fjall";
const SEPARATOR: u8 = 0;

#[derive(Clone)]
pub struct Fjall {
    keyspace: Keyspace,
    events: PartitionHandle,
    streams: PartitionHandle,
    next_position: Arc<AtomicU64>,
}

impl std::fmt::Debug for Fjall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fjall").field("next_position", &self.next_position).finish_non_exhaustive()
    }
}

fn err(what: &'static str) -> impl Fn(fjall::Error) -> BenchError {
    move |e| BenchError::system(NAME, what, e)
}

impl Fjall {
    pub fn open(dir: &Path) -> Result<Fjall> {
        let keyspace = Config::new(dir).open().map_err(err("open a keyspace"))?;
        let events =
            keyspace.open_partition("events", PartitionCreateOptions::default()).map_err(err("open a partition"))?;
        let streams =
            keyspace.open_partition("streams", PartitionCreateOptions::default()).map_err(err("open a partition"))?;
        Ok(Fjall { keyspace, events, streams, next_position: Arc::new(AtomicU64::new(0)) })
    }

    fn stream_key(stream: &str, version: u64) -> Vec<u8> {
        let mut key = Vec::with_capacity(stream.len() + 9);
        key.extend_from_slice(stream.as_bytes());
        key.push(SEPARATOR);
        key.extend_from_slice(&version.to_be_bytes());
        key
    }

    fn last_version(&self, stream: &str) -> Result<Option<u64>> {
        let mut prefix = stream.as_bytes().to_vec();
        prefix.push(SEPARATOR);
        match self.streams.prefix(prefix).next_back() {
            None => Ok(None),
            Some(kv) => {
                let (key, _) = kv.map_err(err("read a stream's last version"))?;
                let tail: [u8; 8] = key[key.len() - 8..].try_into().expect("stream keys end in 8 version bytes");
                Ok(Some(u64::from_be_bytes(tail)))
            }
        }
    }
}

impl System for Fjall {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> String {
        format!("fjall {} (embedded)", crate::machine::locked_version("fjall"))
    }

    fn concurrency_model(&self) -> &'static str {
        "one thread per appender sharing one keyspace; each batch commit fdatasyncs the journal under its writer lock"
    }

    fn client(&self) -> Result<Box<dyn Client>> {
        Ok(Box::new(self.clone()))
    }
}

impl Client for Fjall {
    fn append(&mut self, appends: &[Append<'_>], checked: bool) -> Result<()> {
        if checked {
            for a in appends {
                let want = a.first_version.checked_sub(1);
                let have = self.last_version(a.stream)?;
                if have != want {
                    return Err(BenchError::Check {
                        system: NAME,
                        workload: "expected-version append".into(),
                        detail: format!(
                            "stream {} is at {}, the append expected {}",
                            a.stream,
                            crate::systems::describe_version(have),
                            crate::systems::describe_version(want)
                        ),
                    });
                }
            }
        }
        let count: u64 = appends.iter().map(|a| a.events.len() as u64).sum();
        let mut position = self.next_position.fetch_add(count, Ordering::Relaxed);
        let mut batch = self.keyspace.batch().durability(Some(PersistMode::SyncData));
        for a in appends {
            for (i, data) in a.events.iter().enumerate() {
                let version = a.first_version + i as u64;
                let mut value = Vec::with_capacity(2 + a.stream.len() + 8 + data.len());
                value.extend_from_slice(&(a.stream.len() as u16).to_le_bytes());
                value.extend_from_slice(a.stream.as_bytes());
                value.extend_from_slice(&version.to_le_bytes());
                value.extend_from_slice(data);
                batch.insert(&self.events, position.to_be_bytes(), value);
                batch.insert(&self.streams, Self::stream_key(a.stream, version), position.to_be_bytes());
                position += 1;
            }
        }
        batch.commit().map_err(err("commit a batch"))
    }

    fn read_stream(&mut self, stream: &str) -> Result<u64> {
        let mut prefix = stream.as_bytes().to_vec();
        prefix.push(SEPARATOR);
        let mut n = 0;
        for kv in self.streams.prefix(prefix) {
            let (_, position) = kv.map_err(err("read a stream index"))?;
            let event = self.events.get(&position[..]).map_err(err("read an event"))?;
            if event.is_none() {
                return Err(BenchError::system(
                    NAME,
                    "read an event",
                    format!("stream {stream} names a missing position"),
                ));
            }
            n += 1;
        }
        Ok(n)
    }

    fn replay(&mut self) -> Result<u64> {
        let mut n = 0;
        let mut bytes = 0usize;
        for kv in self.events.iter() {
            let (_, value) = kv.map_err(err("scan the events"))?;
            bytes += value.len();
            n += 1;
        }
        std::hint::black_box(bytes);
        Ok(n)
    }
}
