//! PostgreSQL 15 on a throwaway cluster, the way Postgres-backed event stores use it.
//!
//! The harness runs `initdb` and `pg_ctl` from [`PG_BIN`] as an unprivileged user (the current
//! one, or `postgres`/`cairnbench` when running as root; `cairnbench` is created with useradd if
//! neither exists), in a directory under the scratch area, listening only on a Unix socket.
//! `synchronous_commit=on` and `fsync=on`: a commit returns after its WAL is flushed.
//!
//! Schema: `events(position bigint identity primary key, stream, version, event_type, data,
//! created)` with `UNIQUE (stream, version)`: the identity sequence is the global order, and the
//! unique constraint is the expected-version check (an append whose version is taken fails).
//! A batch is one `INSERT ... SELECT FROM unnest(...)` statement: one transaction, one WAL flush.
//! Every appender has its own connection (Postgres' model: a backend per connection, with WAL
//! flushes shared by commits that arrive together).

use std::path::{Path, PathBuf};
use std::process::Command;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client as PgClient, NoTls};

use super::{Append, Client, System, EVENT_TYPE};
use crate::error::{BenchError, Result};

const NAME: &str = "postgres";
/// Where Debian's PostgreSQL 15 server binaries live.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// Port number; with `listen_addresses=''` it only names the Unix socket.
const PORT: u16 = 54_329;
/// Enough backends for 256 appenders plus the harness's own connections.
const MAX_CONNECTIONS: u32 = 300;
/// The unprivileged account used when the harness runs as root and `postgres` does not exist.
const FALLBACK_USER: &str = "cairnbench";

/// A running throwaway cluster; stopped (immediately: it is throwaway) when dropped.
#[derive(Debug)]
pub struct Cluster {
    data: PathBuf,
    socket_dir: PathBuf,
    run_as: Option<String>,
    version: String,
}

fn run(run_as: &Option<String>, program: &str, args: &[&str]) -> Result<String> {
    let mut cmd = match run_as {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--", program]);
            c
        }
        None => Command::new(program),
    };
    let out = cmd
        .args(args)
        .output()
        .map_err(|e| BenchError::system(NAME, "run a server tool", format!("{program}: {e}")))?;
    if !out.status.success() {
        return Err(BenchError::system(
            NAME,
            "run a server tool",
            format!(
                "{program} {} exited with {}: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

fn user_exists(user: &str) -> bool {
    Command::new("id").arg("-u").arg(user).output().map(|o| o.status.success()).unwrap_or(false)
}

/// Who runs the server: nobody else when unprivileged; an unprivileged account when root.
fn server_user() -> Result<Option<String>> {
    if !is_root() {
        return Ok(None);
    }
    for user in ["postgres", FALLBACK_USER] {
        if user_exists(user) {
            return Ok(Some(user.to_string()));
        }
    }
    run(&None, "useradd", &["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_USER])?;
    Ok(Some(FALLBACK_USER.to_string()))
}

impl Cluster {
    /// initdb + start under `dir` (which must not exist yet).
    pub fn start(dir: &Path) -> Result<Cluster> {
        let initdb = format!("{PG_BIN}/initdb");
        if !Path::new(&initdb).exists() {
            return Err(BenchError::system(NAME, "start", format!("{initdb} is missing; run benches/setup.sh")));
        }
        let run_as = server_user()?;
        let data = dir.join("data");
        let socket_dir = dir.join("socket");
        for d in [dir, &socket_dir] {
            std::fs::create_dir_all(d).map_err(|e| BenchError::io("create a directory", d, e))?;
        }
        if let Some(user) = &run_as {
            run(&None, "chown", &["-R", user, &dir.to_string_lossy()])?;
        }
        let data_s = data.to_string_lossy().into_owned();
        run(&run_as, &initdb, &["-D", &data_s, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])?;
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -p {PORT} -c max_connections={MAX_CONNECTIONS} \
             -c fsync=on -c synchronous_commit=on -c full_page_writes=on -c wal_sync_method=fdatasync \
             -c shared_buffers=1GB -c max_wal_size=8GB",
            socket_dir.display()
        );
        let log = dir.join("server.log").to_string_lossy().into_owned();
        run(
            &run_as,
            &format!("{PG_BIN}/pg_ctl"),
            &["-D", &data_s, "-l", &log, "-o", &options, "-w", "-t", "120", "start"],
        )?;
        let mut cluster = Cluster { data, socket_dir, run_as, version: String::new() };
        let mut client = cluster.connect("postgres")?;
        cluster.version = client
            .query_one("SHOW server_version", &[])
            .map_err(|e| BenchError::system(NAME, "read its version", e))?
            .get(0);
        Ok(cluster)
    }

    fn connect(&self, db: &str) -> Result<PgClient> {
        let config = format!("host={} port={PORT} user=postgres dbname={db}", self.socket_dir.display());
        PgClient::connect(&config, NoTls).map_err(|e| BenchError::system(NAME, "connect", e))
    }

    /// A fresh database with the events table; its own handle for clients.
    pub fn database(&self, name: &str) -> Result<Postgres> {
        let mut admin = self.connect("postgres")?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(|e| BenchError::system(NAME, "create a database", e))?;
        let mut client = self.connect(name)?;
        client
            .batch_execute(
                "CREATE TABLE events (
                    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    stream text NOT NULL,
                    version bigint NOT NULL,
                    event_type text NOT NULL,
                    data bytea NOT NULL,
                    created timestamptz NOT NULL DEFAULT now(),
                    UNIQUE (stream, version)
                )",
            )
            .map_err(|e| BenchError::system(NAME, "create the events table", e))?;
        Ok(Postgres {
            config: format!("host={} port={PORT} user=postgres dbname={name}", self.socket_dir.display()),
            version: self.version.clone(),
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data.to_string_lossy().into_owned();
        if let Err(e) = run(&self.run_as, &format!("{PG_BIN}/pg_ctl"), &["-D", &data, "-m", "immediate", "-w", "stop"])
        {
            eprintln!("warning: the throwaway PostgreSQL cluster did not stop: {e}");
        }
    }
}

/// One database of the cluster.
#[derive(Debug)]
pub struct Postgres {
    config: String,
    version: String,
}

impl System for Postgres {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> String {
        format!(
            "PostgreSQL {} (Unix socket, synchronous_commit=on, client: postgres crate {})",
            self.version,
            crate::machine::locked_version("postgres")
        )
    }

    fn concurrency_model(&self) -> &'static str {
        "one thread and one connection (backend) per appender; concurrent commits share WAL flushes"
    }

    fn client(&self) -> Result<Box<dyn Client>> {
        let mut client = PgClient::connect(&self.config, NoTls).map_err(|e| BenchError::system(NAME, "connect", e))?;
        let insert = client
            .prepare(
                "INSERT INTO events (stream, version, event_type, data)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bytea[])",
            )
            .map_err(|e| BenchError::system(NAME, "prepare an insert", e))?;
        Ok(Box::new(PostgresClient { client, insert }))
    }
}

struct PostgresClient {
    client: PgClient,
    insert: postgres::Statement,
}

impl Client for PostgresClient {
    fn append(&mut self, appends: &[Append<'_>], _checked: bool) -> Result<()> {
        // The unique (stream, version) constraint is the check, whether or not one was asked
        // for: this table has no cheaper unchecked append.
        let n: usize = appends.iter().map(|a| a.events.len()).sum();
        let mut streams = Vec::with_capacity(n);
        let mut versions = Vec::with_capacity(n);
        let mut datas = Vec::with_capacity(n);
        for a in appends {
            for (i, data) in a.events.iter().enumerate() {
                streams.push(a.stream);
                versions.push((a.first_version + i as u64) as i64);
                datas.push(*data);
            }
        }
        let types = vec![EVENT_TYPE; n];
        self.client
            .execute(&self.insert, &[&streams, &versions, &types, &datas])
            .map_err(|e| BenchError::system(NAME, "insert events", e))?;
        Ok(())
    }

    fn read_stream(&mut self, stream: &str) -> Result<u64> {
        let rows = self
            .client
            .query("SELECT position, version, data FROM events WHERE stream = $1 ORDER BY version", &[&stream])
            .map_err(|e| BenchError::system(NAME, "read a stream", e))?;
        for row in &rows {
            std::hint::black_box(row.get::<_, &[u8]>(2));
        }
        Ok(rows.len() as u64)
    }

    fn replay(&mut self) -> Result<u64> {
        // query_raw streams rows as they arrive instead of collecting millions of them.
        let params: [&str; 0] = [];
        let mut rows = self
            .client
            .query_raw("SELECT position, stream, version, event_type, data FROM events ORDER BY position", params)
            .map_err(|e| BenchError::system(NAME, "replay", e))?;
        let mut n = 0;
        while let Some(row) = rows.next().map_err(|e| BenchError::system(NAME, "replay", e))? {
            std::hint::black_box(row.get::<_, &[u8]>(4));
            n += 1;
        }
        Ok(n)
    }
}
