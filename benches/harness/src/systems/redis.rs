//! Redis Streams on a throwaway `redis-server` with `appendonly yes` and `appendfsync always`:
//! a command's reply is sent after the AOF holding it is fsynced (Redis fsyncs once per event
//! loop iteration, so commands arriving together share the fsync).
//!
//! Each stream is a Redis stream key written with XADD. A batch is one MULTI/EXEC. The
//! expected-version check is a Lua script that compares XLEN with the expected count and then
//! XADDs (scripts run atomically). Redis has no global order across keys: its "replay" reads
//! every stream key in turn (SCAN + XRANGE). Clients connect over a Unix socket, one connection
//! per appender thread.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use redis::{Connection, Value};

use super::{Append, Client, System, EVENT_TYPE};
use crate::error::{BenchError, Result};

const NAME: &str = "redis";
/// Entries per XRANGE page during a replay.
const REPLAY_PAGE: usize = 10_000;
/// Keys per SCAN call during a replay.
const SCAN_COUNT: usize = 1_000;

const CHECKED_APPEND: &str = r"
local a = 1
for _, key in ipairs(KEYS) do
  if redis.call('XLEN', key) ~= tonumber(ARGV[a]) then
    return redis.error_reply('WRONGVERSION ' .. key)
  end
  a = a + 2 + tonumber(ARGV[a + 1])
end
a = 1
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[a + 1])
  for j = 1, n do
    redis.call('XADD', key, '*', 't', 'bench.event', 'd', ARGV[a + 1 + j])
  end
  a = a + 2 + n
end
return 1
";

/// A running `redis-server`; killed when dropped (it is throwaway).
#[derive(Debug)]
pub struct Redis {
    child: Child,
    socket: PathBuf,
    version: String,
}

fn err(what: &'static str) -> impl Fn(redis::RedisError) -> BenchError {
    move |e| BenchError::system(NAME, what, e)
}

impl Redis {
    pub fn start(dir: &Path) -> Result<Redis> {
        std::fs::create_dir_all(dir).map_err(|e| BenchError::io("create a directory", dir, e))?;
        let socket = dir.join("redis.sock");
        let mut child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--dir"])
            .arg(dir)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                "",
            ])
            .args(["--maxclients", "1000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| BenchError::system(NAME, "start", format!("redis-server: {e}; run benches/setup.sh")))?;
        // Wait for the server's own "ready" line instead of polling the socket.
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut ready = false;
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if line.to_ascii_lowercase().contains("ready to accept connections") {
                ready = true;
                break;
            }
        }
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            return Err(BenchError::system(NAME, "start", "redis-server exited before it was ready"));
        }
        // Keep draining its log so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let mut redis = Redis { child, socket, version: String::new() };
        let info: String =
            redis::cmd("INFO").arg("server").query(&mut redis.connect()?).map_err(err("report its version"))?;
        redis.version =
            info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("unknown").trim().to_string();
        Ok(redis)
    }

    /// The server's Unix socket (for `redis-benchmark -s`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn connect(&self) -> Result<Connection> {
        let url = format!("redis+unix://{}", self.socket.display());
        redis::Client::open(url).and_then(|c| c.get_connection()).map_err(err("connect"))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl System for Redis {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> String {
        format!(
            "Redis {} (Unix socket, appendonly yes, appendfsync always; client: redis crate {})",
            self.version,
            crate::machine::locked_version("redis")
        )
    }

    fn concurrency_model(&self) -> &'static str {
        "one thread and one connection per appender; the single-threaded server fsyncs the AOF once per event-loop pass"
    }

    fn client(&self) -> Result<Box<dyn Client>> {
        Ok(Box::new(RedisClient { con: self.connect()?, script: redis::Script::new(CHECKED_APPEND) }))
    }
}

struct RedisClient {
    con: Connection,
    script: redis::Script,
}

impl Client for RedisClient {
    fn append(&mut self, appends: &[Append<'_>], checked: bool) -> Result<()> {
        if checked {
            let mut invocation = self.script.prepare_invoke();
            for a in appends {
                invocation.key(a.stream);
                invocation.arg(a.first_version).arg(a.events.len());
                for data in a.events {
                    invocation.arg(*data);
                }
            }
            let _: i64 = invocation.invoke(&mut self.con).map_err(err("append with a version check"))?;
            return Ok(());
        }
        if let [one] = appends {
            if let [data] = one.events {
                let _: Value = redis::cmd("XADD")
                    .arg(one.stream)
                    .arg("*")
                    .arg("t")
                    .arg(EVENT_TYPE)
                    .arg("d")
                    .arg(*data)
                    .query(&mut self.con)
                    .map_err(err("XADD"))?;
                return Ok(());
            }
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for a in appends {
            for data in a.events {
                pipe.cmd("XADD").arg(a.stream).arg("*").arg("t").arg(EVENT_TYPE).arg("d").arg(*data).ignore();
            }
        }
        let _: Value = pipe.query(&mut self.con).map_err(err("XADD a batch in MULTI/EXEC"))?;
        Ok(())
    }

    fn read_stream(&mut self, stream: &str) -> Result<u64> {
        let entries: Vec<Value> =
            redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query(&mut self.con).map_err(err("XRANGE"))?;
        Ok(entries.len() as u64)
    }

    fn replay(&mut self) -> Result<u64> {
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query(&mut self.con)
                .map_err(err("SCAN"))?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut n = 0u64;
        for key in keys {
            let mut start = "-".to_string();
            loop {
                let entries: Vec<Value> = redis::cmd("XRANGE")
                    .arg(&key)
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(REPLAY_PAGE)
                    .query(&mut self.con)
                    .map_err(err("XRANGE"))?;
                n += entries.len() as u64;
                if entries.len() < REPLAY_PAGE {
                    break;
                }
                start = match entries.last() {
                    Some(Value::Array(entry)) => match entry.first() {
                        Some(Value::BulkString(id)) => format!("({}", String::from_utf8_lossy(id)),
                        _ => return Err(BenchError::system(NAME, "replay", "XRANGE returned an entry without an id")),
                    },
                    _ => return Err(BenchError::system(NAME, "replay", "XRANGE returned a malformed entry")),
                };
            }
        }
        Ok(n)
    }
}
