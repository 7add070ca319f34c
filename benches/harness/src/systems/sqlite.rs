//! SQLite (bundled) in WAL mode with `synchronous=FULL`: every commit fsyncs the WAL.
//!
//! Schema: `events(position INTEGER PRIMARY KEY, stream, version, event_type, data)` with
//! `UNIQUE(stream, version)`; the rowid is the global sequence. SQLite has one writer at a
//! time, so its best concurrency model is one connection behind a mutex: appenders queue on the
//! mutex instead of spinning on SQLITE_BUSY. The unique index is the expected-version check:
//! an append that does not follow the stream's last version collides (or, for a gap, is caught
//! by reading the last version inside the same transaction when `checked`).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{Append, Client, System, EVENT_TYPE};
use crate::error::{BenchError, Result};

const NAME: &str = "sqlite";
/// Wait for a lock instead of failing (only the reopened reader contends).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Sqlite {
    conn: Arc<Mutex<Connection>>,
}

fn err(what: &'static str) -> impl Fn(rusqlite::Error) -> BenchError {
    move |e| BenchError::system(NAME, what, e)
}

impl Sqlite {
    pub fn open(path: &Path) -> Result<Sqlite> {
        let conn = Connection::open(path).map_err(err("open the database"))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err("set a busy timeout"))?;
        let mode: String =
            conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(err("switch to WAL mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(BenchError::system(NAME, "switch to WAL mode", format!("journal mode stayed {mode}")));
        }
        conn.pragma_update(None, "synchronous", "FULL").map_err(err("set synchronous=FULL"))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS events (
                position INTEGER PRIMARY KEY,
                stream TEXT NOT NULL,
                version INTEGER NOT NULL,
                event_type TEXT NOT NULL,
                data BLOB NOT NULL,
                UNIQUE (stream, version)
            );",
        )
        .map_err(err("create the events table"))?;
        Ok(Sqlite { conn: Arc::new(Mutex::new(conn)) })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panicked appender cannot leave the connection inconsistent: SQLite rolls back.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl System for Sqlite {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> String {
        format!(
            "SQLite {} (bundled by rusqlite {}), WAL, synchronous=FULL",
            rusqlite::version(),
            crate::machine::locked_version("rusqlite")
        )
    }

    fn concurrency_model(&self) -> &'static str {
        "one thread per appender; one connection behind a mutex (SQLite allows one writer at a time)"
    }

    fn client(&self) -> Result<Box<dyn Client>> {
        Ok(Box::new(self.clone()))
    }
}

impl Client for Sqlite {
    fn append(&mut self, appends: &[Append<'_>], checked: bool) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err("begin a transaction"))?;
        {
            if checked {
                let mut last = tx
                    .prepare_cached("SELECT max(version) FROM events WHERE stream = ?1")
                    .map_err(err("prepare a version check"))?;
                for a in appends {
                    let have: Option<i64> = last
                        .query_row([a.stream], |r| r.get(0))
                        .optional()
                        .map_err(err("read a stream's version"))?
                        .flatten();
                    let want = a.first_version.checked_sub(1).map(|v| v as i64);
                    if have != want {
                        return Err(BenchError::Check {
                            system: NAME,
                            workload: "expected-version append".into(),
                            detail: format!(
                                "stream {} is at {}, the append expected {}",
                                a.stream,
                                crate::systems::describe_version(have.map(|v| v as u64)),
                                crate::systems::describe_version(want.map(|v| v as u64))
                            ),
                        });
                    }
                }
            }
            let mut insert = tx
                .prepare_cached("INSERT INTO events (stream, version, event_type, data) VALUES (?1, ?2, ?3, ?4)")
                .map_err(err("prepare an insert"))?;
            for a in appends {
                for (i, data) in a.events.iter().enumerate() {
                    insert
                        .execute(params![a.stream, (a.first_version + i as u64) as i64, EVENT_TYPE, data])
                        .map_err(err("insert an event"))?;
                }
            }
        }
        tx.commit().map_err(err("commit"))
    }

    fn read_stream(&mut self, stream: &str) -> Result<u64> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT position, version, data FROM events WHERE stream = ?1 ORDER BY version")
            .map_err(err("prepare a stream read"))?;
        let mut rows = stmt.query([stream]).map_err(err("read a stream"))?;
        let mut n = 0;
        while let Some(row) = rows.next().map_err(err("read a stream"))? {
            let data = row
                .get_ref(2)
                .map_err(err("read a stream"))?
                .as_blob()
                .map_err(|e| BenchError::system(NAME, "read a payload", e))?;
            std::hint::black_box(data);
            n += 1;
        }
        Ok(n)
    }

    fn replay(&mut self) -> Result<u64> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT position, stream, version, event_type, data FROM events ORDER BY position")
            .map_err(err("prepare a replay"))?;
        let mut rows = stmt.query([]).map_err(err("replay"))?;
        let mut n = 0;
        while let Some(row) = rows.next().map_err(err("replay"))? {
            let data = row
                .get_ref(4)
                .map_err(err("replay"))?
                .as_blob()
                .map_err(|e| BenchError::system(NAME, "read a payload", e))?;
            std::hint::black_box(data);
            n += 1;
        }
        Ok(n)
    }
}
