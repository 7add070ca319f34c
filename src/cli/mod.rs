//! The command line: argument definitions (clap derive), dispatch, and the mapping of results to
//! the contract's exit codes.
//!
//! Every command opens the data directory itself (`--data`, env `CAIRN_DATA`, default
//! `./cairn-data`) through [`crate::store`]. Commands that write (append, import, the stream
//! lifecycle's changes, the views' writes, checkpoint, restore, drill, serve, demo) open it as
//! its one writer; every other command opens it as a reader, and a missing or mistyped
//! directory is "not found" (exit 5)
//! instead of a new, empty store. Commands that follow the log (`tail`, `serve`, `demo`) run on
//! a tokio runtime; the others use the log's blocking API.

mod bulk;
mod lifecycle_cmds;
mod log_cmds;
mod ops_cmds;
mod remote;
mod repair;
mod view_cmds;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::error::{CliError, CliResult, Exit};
use crate::output::Format;

const EXAMPLES: &str = "\
Examples:
  cairn demo                                   # a multi-agent workload, then a summary
  cairn append agent-7 --type ToolCalled --payload '{\"tool\":\"search\"}'
  cairn read agent-7 -o json
  cairn tail --from 0                          # print the log and follow it (Ctrl-C ends)
  cairn verify                                 # check every CRC and the hash chain
  cairn kv set session/42 '{\"step\":1}'        # the key-value view (also: audit, meta)
  cairn checkpoint && cairn drill              # checkpoint the views; prove recovery
  cairn serve --listen 127.0.0.1:7070          # the HTTP API (see docs/http-api.md)

Exit codes: 0 ok, 1 error, 2 usage, 3 integrity failure, 4 wrong expected version, 5 not found,
130 interrupted (Ctrl-C during restore or drill, which leave nothing partial behind).";

/// cairn: an append-only, event-sourced log store for AI-agent platforms.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about, after_help = EXAMPLES, max_term_width = 110)]
pub struct Cli {
    /// Data directory (created on first use; one process owns it at a time) [default:
    /// ./cairn-data, and ./cairn-demo for `demo`, so the demo's events never mix with yours].
    /// Accepted before or after the command, except that after `append` `--data` is still the
    /// event's data for one release (deprecated: use --payload there); `--data-dir` means the
    /// directory anywhere.
    #[arg(long, visible_alias = "data-dir", global = true, env = "CAIRN_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Encrypt the data directory at rest: FILE holds the key-encryption key, 64 hexadecimal
    /// digits (e.g. `openssl rand -hex 32 > cairn.key`). `CAIRN_KEY` may hold the digits instead.
    /// Keep the file outside the data directory and its backups.
    #[arg(long, global = true, env = "CAIRN_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// The key store (the data keys, wrapped by the key): [default: DIR/keys]. It is not in
    /// backups; back it up separately, and point a restored directory at the newest copy.
    #[arg(long, global = true, env = "CAIRN_KEY_STORE", value_name = "FILE")]
    pub key_store: Option<PathBuf>,

    /// The archive (`cairn serve --archive URL`'s: `s3://BUCKET/PREFIX` with the AWS_* settings
    /// from the environment, or a local directory). The commands that open the data directory
    /// themselves read the segments tiering evicted from it (`CAIRN_ARCHIVE` is read too);
    /// without it such a read fails naming the segment's stub.
    #[arg(long, global = true, value_name = "URL")]
    pub archive: Option<bucket::Location>,

    /// Output format: text for people, json for one document, ndjson for one object per line.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Text)]
    pub output: Format,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Append one event to a stream, or a batch of events from stdin (--ndjson).
    #[command(after_help = "\
Examples:
  cairn append agent-7 --type ToolCalled --payload '{\"tool\":\"search\",\"query\":\"rust\"}'
  cairn append agent-7 --type Started --expected-version no_stream
  cairn append agent-7 --type Blob --data-file photo.png --binary
  printf '{\"type\":\"Note\",\"data\":{\"n\":1}}\\n{\"type\":\"Note\",\"data\":{\"n\":2}}\\n' | cairn append notes --ndjson

Exit code 4 when --expected-version does not hold.

--payload was spelled --data before; `append ... --data JSON` still works for this release, with a
warning. To name the data directory after `append`, write --data-dir DIR (or put --data DIR
before `append`).")]
    Append(log_cmds::AppendArgs),

    /// Read a stream's events, oldest first (or newest first with --backward).
    #[command(after_help = "\
Examples:
  cairn read agent-7
  cairn read agent-7 --from 10 --limit 5 -o json
  cairn read agent-7 --backward --limit 1      # the newest event

Exit code 5 when the stream does not exist.")]
    Read(log_cmds::ReadArgs),

    /// Read the global log in position order.
    #[command(
        name = "read-all",
        visible_alias = "events",
        after_help = "\
Examples:
  cairn read-all --limit 20
  cairn read-all --from 1000 -o ndjson | jq .type"
    )]
    ReadAll(log_cmds::ReadAllArgs),

    /// Print events as they are appended, like tail -f (Ctrl-C ends).
    #[command(
        visible_alias = "subscribe",
        after_help = "\
Examples:
  cairn tail                      # new events of every stream
  cairn tail agent-7 --from 0     # all of agent-7, then follow it
  cairn tail --type-prefix Tool -o ndjson

tail reads without taking the writer's lock: it follows a directory that `cairn serve` or
`cairn append` in another process writes, and shows each event once it is durable."
    )]
    Tail(log_cmds::TailArgs),

    /// Write a stream's events, or the whole log's, as NDJSON that `import` reads back.
    #[command(after_help = "\
Examples:
  cairn export agent-7 > agent-7.ndjson
  cairn export --all > all.ndjson                # every stream, in position order
  cairn --data ./copy import < all.ndjson        # the same events (ids, types, data, metadata)

One line per event, as `read -o ndjson` prints it; progress on stderr (on a terminal).")]
    Export(bulk::ExportArgs),

    /// Append the events of `export` NDJSON (stdin), each to the stream its line names.
    #[command(after_help = "\
Examples:
  cairn --data ./old export --all | cairn --data ./new import
  cairn import -o json < all.ndjson     # {\"events\",\"written\",\"already_present\",\"batches\",\"streams\"}

Each event keeps its stream, version, id, type, data (or data_b64) and metadata; the target
assigns positions, timestamps and hashes afresh. Consecutive lines of one stream are appended as
one batch (at most 1000 events, about 4 MiB) expecting the stream to end just before the batch's
first version (no_stream for version 0): a stream that is not there exits 4 and nothing of that
batch is written. Export whole streams (from version 0) to import into a fresh store.

Idempotency: an event id is unique within its stream, and a batch whose ids are all written
already at those versions, with the same content, is answered with its original positions and
writes nothing, at any age. So importing the same file again writes nothing new (reported as
already_present), however large. A batch mixing written and new ids is refused with an id
conflict naming the id, and writes nothing.")]
    Import,

    /// List streams: name, last version, event count.
    #[command(after_help = "\
Examples:
  cairn streams
  cairn streams --prefix agent- -o json")]
    Streams(log_cmds::StreamsArgs),

    /// Delete a stream: reads say it is deleted until it is written again (versions continue);
    /// with --tombstone, for good (later appends are refused).
    #[command(after_help = "\
Examples:
  cairn delete run-42                  # soft: `cairn read run-42` exits 5 until it is written again
  cairn delete run-42 --tombstone      # for good: appends to run-42 fail from now on

The log keeps the events (`read-all` and `verify` still see them) and records the delete as an
event on the reserved stream $lifecycle, so checkpoints and restores reproduce it. Exit code 5
when the stream does not exist; 1 when it is tombstoned already.")]
    Delete(lifecycle_cmds::DeleteArgs),

    /// Close a stream: it takes no more appends, and live subscribers of it get an end-of-stream
    /// marker.
    #[command(after_help = "\
Examples:
  cairn close run-42
  cairn close run-42 -o json           # {\"stream\",\"position\",\"hash\"}

Appends to a closed stream fail (HTTP 409 stream_closed). A closed stream cannot be reopened.")]
    Close(lifecycle_cmds::CloseArgs),

    /// Fork a stream: a new stream whose first events are the source's up to a version (shared,
    /// not copied), then its own appends.
    #[command(after_help = "\
Examples:
  cairn fork thread-7 --to thread-7-retry --at 12
  cairn read thread-7-retry            # versions 0..=12 are thread-7's events

The new stream must have no events; --at must be at most the source's last version. Deleting the
source later does not change what the fork reads.")]
    Fork(lifecycle_cmds::ForkArgs),

    /// Erase the payloads (data and metadata) of a range of a stream's events: they read as
    /// their header with "erased": true from now on, everywhere; the chain still verifies.
    #[command(after_help = "\
Examples:
  cairn erase thread-7 --from 3 --to 3 --reason \"GDPR request 118\"
  cairn erase thread-7 --reason \"user deleted their account\"   # every version
  cairn erase thread-7 --from 10 --reason \"ticket 42\" -o json

--from defaults to the first version, --to to the last. The erasure is an event on $lifecycle
(stream-erased) and an audit entry on $audit:erasure (`cairn audit query --category data_access`).
Versions a fork shares with its source are the source's events: erased for both. The bytes stay
on disk until a scavenge rewrites their segment; checkpoints taken before the erasure may still
hold the payloads in their view state (the answer counts them). Exit code 2 for a range the
stream does not have, 5 for an unknown stream, 1 for a tombstoned one.")]
    Erase(lifecycle_cmds::EraseArgs),

    /// Give back the disk space of dead events: rewrite sealed segments with deleted, expired,
    /// truncated and erased events as husks (header and digests kept; the chain still verifies).
    #[command(after_help = "\
Examples:
  cairn scavenge
  cairn scavenge -o json        # {\"segments_rewritten\", \"events_husked\", \"bytes_before\", \"bytes_after\", ...}

An event is dead when no stream read can return it any more: before a delete point, of a
tombstoned stream, hidden by truncate_before, max_count, max_age_ms or an expired ttl_ms, or
erased, and no fork still reads it. It stays as a husk (its position, stream, version, type,
timestamp and payload digests), read as \"erased\": true. In the views' streams (kv:, audit:,
$audit:, meta:) what only retention hides keeps its payload, since the views fold it. Only sealed
segments are rewritten, each swapped in crash-safely while appends go on. While `cairn serve`
holds the data directory, scavenge asks the server (POST /v1/admin/scavenge), found through the
address it records in the directory or named with --server URL [--token T].")]
    Scavenge(lifecycle_cmds::ScavengeArgs),

    /// Manage the encryption key: `cairn keys rotate` adds a key generation.
    #[command(
        subcommand,
        after_help = "\
Examples:
  cairn --key-file /etc/cairn/cairn.key keys rotate        # new events use a new key generation
  cairn keys rotate --server https://cairn:7443 --token T   # through a running server

Events sealed before a rotation stay readable with their own generation (each record names it).
While `cairn serve` holds the data directory, the command asks the server (POST
/v1/admin/keys/rotate), found through the address it records in the directory or named with
--server URL [--token T]."
    )]
    Keys(ops_cmds::KeysCommand),

    /// Print a stream's retention metadata and lifecycle state, or replace the metadata (--set).
    #[command(after_help = "\
Examples:
  cairn metadata run-42                                   # limits, closed/deleted, fork source
  cairn metadata run-42 --set '{\"max_count\": 100}'       # only the newest 100 are readable
  cairn metadata run-42 --set '{\"ttl_ms\": 86400000}'     # deleted after a day without appends
  cairn metadata run-42 --set '{}'                        # no limits

Fields: max_age_ms, max_count, truncate_before (a version), ttl_ms, closed. --set replaces the
whole metadata; reads honour it at once. Ages are measured by the log's clock (the newest
event's timestamp), so a restore or replay reproduces them.")]
    Metadata(lifecycle_cmds::MetadataArgs),

    /// Print the log's last position and chain hash.
    #[command(after_help = "\
Examples:
  cairn head
  cairn head -o json")]
    Head,

    /// Check every record's CRC and the whole hash chain; exit 3 at the first damage.
    #[command(after_help = "\
Examples:
  cairn verify
  cairn verify --from 100000 -o json   # trust the stored hash before position 100000

Exit code 3 (and the first bad position) when damage is found.")]
    Verify(log_cmds::VerifyArgs),

    /// Print counts: events, streams, segments, bytes, disk free, checkpoints.
    #[command(after_help = "\
Examples:
  cairn stats
  cairn stats -o json
  cairn stats --server http://127.0.0.1:7070 --token T    # GET /v1/admin/stats of that server

Reads the data directory without its lock, so it works beside a running server as it is.")]
    Stats(log_cmds::StatsArgs),

    /// The key-value view: get, set, del, incr, list, history.
    #[command(
        subcommand,
        after_help = "\
Examples:
  cairn kv set session/42 '{\"step\":1}'
  cairn kv set greeting hello --ttl-ms 60000     # text that is not JSON is stored as a string
  cairn kv get session/42
  cairn kv set session/42 '{\"step\":2}' --expected-version 0   # compare-and-set (exit 4 if it moved)
  cairn kv incr visits --by 5
  cairn kv list --prefix session/
  cairn kv history session/42

Exit code 5 when a key is absent, 4 when an expected version does not hold."
    )]
    Kv(view_cmds::KvCommand),

    /// The audit view: append structured entries, query them, prove one against the chain.
    #[command(
        subcommand,
        after_help = "\
Examples:
  cairn audit append --level info --category agent_activity --event tool.called --actor agent-7 \\
                     --target-type tool --target web_search --outcome success --trace-id t-1
  cairn audit query --actor agent-7 --limit 20
  cairn audit query --category security --level warn --since 2026-11-22T00:00:00Z -o ndjson
  cairn audit proof 0b6f0c1e-6a43-4f4e-9a51-0d2b8f3a9c11   # exit 3 if it does not verify"
    )]
    Audit(view_cmds::AuditCommand),

    /// The metadata view: schemas, services, configuration, relations.
    #[command(
        subcommand,
        after_help = "\
Examples:
  cairn meta schema register tool-call '{\"type\":\"object\",\"required\":[\"tool\"]}'
  cairn meta schema validate tool-call '{\"tool\":\"search\"}'      # exit 1 if invalid
  cairn meta service register search i-1 --endpoint http://10.0.0.5:80 --tag gpu --ttl-ms 30000
  cairn meta service list --name search
  cairn meta config set model '\"gpt-5\"' --scope planner
  cairn meta config get model --scope planner
  cairn meta relate agent-7 tool:web_search uses
  cairn meta relations agent-7 --depth 2"
    )]
    Meta(view_cmds::MetaCommand),

    /// Take a checkpoint of the views now.
    #[command(after_help = "\
Examples:
  cairn checkpoint            # incremental if there is a full checkpoint to build on
  cairn checkpoint --full -o json")]
    Checkpoint(ops_cmds::CheckpointArgs),

    /// List checkpoints with their chain status (exit 3 if any is not valid).
    #[command(after_help = "\
Examples:
  cairn checkpoints
  cairn checkpoints -o json
  cairn checkpoints --server http://127.0.0.1:7070 --token T   # GET /v1/checkpoints of that server")]
    Checkpoints(ops_cmds::CheckpointsArgs),

    /// Back up the log and checkpoints to a directory (file:// URL or path), with a manifest that
    /// lets a restore prove the copy complete; while a server runs, through the server.
    #[command(after_help = "\
Examples:
  cairn backup --to /backup/cairn                   # a full copy, while appends go on
  cairn backup --to file:///backup/cairn --incremental   # only what the destination lacks
  cairn restore --from /backup/cairn --to ./restored     # the newest backup, verified

The backup is cut at the head when it starts (a batch boundary): sealed segments, the active
segment's durable part, the checkpoints, each stored under its BLAKE3 digest, then a manifest
naming them and the position and chain hash the copy ends at. While `cairn serve` holds the data
directory, backup (and drill) ask the server, found through the address it records in the
directory (server.json) or named with --server URL [--token T]; restore --to, stats,
checkpoints, verify and the view reads (kv get, audit query, ...) read the directory without its
lock and work beside a server as they are.")]
    Backup(ops_cmds::BackupArgs),

    /// Copy the log and checkpoints into another directory that opens and verifies on its own.
    #[command(after_help = "\
Examples:
  cairn restore --to /backup/cairn-2026-11-22
  cairn restore --to /backup/cairn --force      # replace an earlier copy
  cairn restore --to /tmp/before-incident --at 41000   # the store as of position 41000
  cairn restore --to /tmp/before-incident --at-time 2026-11-22T09:30:00Z   # ... as of that time

Never writes into a non-empty directory without --force, and --force replaces only a cairn data
directory (a log/ directory and nothing but LOCK, log, checkpoints, torn); a target that is, lies
inside or contains the source (after resolving symbolic links) is refused (exit 2). The copy is
built in .NAME.restore-partial beside the target and renamed into place when complete, so the
target is always absent, as it was, or a complete copy; Ctrl-C stops the copy, removes the partial
one and exits 130. The copy is verified after it is made (exit 3 if it does not verify). With --at
the copy's log ends with the atomic batch holding that position, and only checkpoints at or before
it are copied; --at-time picks the last event stamped at or before that time (UTC) the same way.
While a server holds the directory, the copy is what was durable when restore opened it (read
without the lock).

With --from URL (s3://BUCKET/PREFIX, file:///DIR or a path), restores the newest backup or
archive at URL (see `cairn backup`): every object's size and BLAKE3 digest is checked, and the
copy must verify and end at the position and chain hash its manifest names, or nothing is
restored (exit 3). With --at or --at-time as well, that verified copy is made beside the target
first, the target is cut from it as above, and the whole copy is removed.
  cairn restore --from s3://backups/cairn --to ./before --at-time 2026-11-22T09:30:00Z")]
    Restore(ops_cmds::RestoreArgs),

    /// Cut damage off the newest segment (keeping the bytes aside), or accept a lost newest
    /// segment, so that the log opens again; prints exactly what it cut.
    #[command(after_help = "\
Examples:
  cairn repair                           # damage or a torn batch at the end of the newest segment
  cairn repair --accept-missing-tail     # the newest segment file is gone: continue without it
  cairn repair -o json

Run it when another command says the newest segment is damaged or missing. It refuses while
another process writes the directory, asks nothing, and keeps what it cuts in torn/. Events
after the damage are lost: restore from a backup instead if you have one. Damage inside an
older (sealed) segment is not cut: `cairn verify` reports it.")]
    Repair(repair::RepairArgs),

    /// Recovery drill: restore into a scratch directory, verify everything, rebuild the views two
    /// ways and compare them with the live ones (exit 3 on any mismatch).
    #[command(after_help = "\
Examples:
  cairn drill
  cairn drill --from s3://backups/cairn        # drill the newest backup or archive in a bucket
  cairn drill --scratch /tmp/drill -o json   # keep the copy; JSON: ok, events_lost, restore_ms,
                                             # rebuild_from_checkpoint_ms, rebuild_from_zero_ms,
                                             # checkpoints_verified, mismatches, ...

Ctrl-C ends a drill with exit 130 and removes its temporary scratch directory (a --scratch
directory is removed only while its copy is incomplete).")]
    Drill(ops_cmds::DrillArgs),

    /// Run the HTTP API.
    #[command(after_help = "\
Examples:
  cairn serve                                   # http://127.0.0.1:7070, no auth, loopback only
  cairn serve --listen 127.0.0.1:0              # any free port; the address is printed on stdout
  cairn serve --listen 0.0.0.0:7070 --auth auth.toml

Then:
  curl -X POST localhost:7070/v1/streams/agent-7/events -H 'content-type: application/json' \\
       -d '{\"events\":[{\"type\":\"ToolCalled\",\"data\":{\"tool\":\"search\"}}]}'
  curl localhost:7070/v1/streams/agent-7/events
  curl -N 'localhost:7070/v1/subscribe?from=0'

The endpoints, limits and auth file format are in docs/http-api.md and at /openapi.json.
SIGINT or SIGTERM stops accepting, finishes in-flight appends and closes the log.")]
    Serve(crate::http::ServeArgs),

    /// Run a realistic multi-agent workload on a fresh data directory and summarise it.
    #[command(after_help = "\
Examples:
  cairn demo                        # uses ./cairn-demo, or a fresh sibling if it has data
  cairn demo --agents 16 --steps 500
  cairn --data /tmp/demo demo -o json")]
    Demo(crate::demo::DemoArgs),

    /// Serve cairn to AI agents as Model Context Protocol tools over stdio.
    #[command(after_help = "\
Examples:
  cairn mcp                                     # on ./cairn-data (this process owns it)
  cairn mcp --data /var/lib/cairn
  cairn mcp --server http://127.0.0.1:7070 --token \"$CAIRN_TOKEN\"
  cairn mcp --server https://cairn.internal:7070 --token T --ca-file ca.pem

In an MCP client's configuration: {\"command\": \"cairn\", \"args\": [\"mcp\", \"--data\", \"/path/to/data\"]}.
The tools (log, key-value, audit, checkpoints, and the memory graph of the reference memory
server) are listed in docs/mcp.md; `cairn serve` also serves them at POST /mcp.")]
    Mcp(crate::mcp::McpArgs),

    /// Make a new random API token and print it with its auth-file line.
    #[command(after_help = "\
Examples:
  cairn token                  # a new token and its token_hash line
  cairn token --hash TOKEN     # the token_hash line of an existing token

Put the token_hash line in a [[principal]] of the auth file (see docs/http-api.md) and give the
token to the client; the server never stores the token itself.")]
    Token(TokenArgs),
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Hash this token instead of making a new one.
    #[arg(long, value_name = "TOKEN")]
    pub hash: Option<String>,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let (args, deprecated_data) = append_data_as_payload(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { Exit::Usage as u8 } else { Exit::Ok as u8 });
        }
    };
    if deprecated_data {
        eprintln!("{APPEND_DATA_DEPRECATED}");
    }
    let serving = matches!(cli.command, Command::Serve(_));
    init_tracing(if serving { "info" } else { "warn" }, cli_log_json(&cli));
    match run(cli) {
        Ok(exit) => exit.into(),
        Err(CliError::StdoutClosed) => Exit::Ok.into(),
        Err(e) => {
            eprintln!("error: {e}");
            e.exit().into()
        }
    }
}

/// Printed on stderr when `cairn append ... --data JSON` is used.
pub const APPEND_DATA_DEPRECATED: &str = "warning: `--data` after `append` is the event's data only for this \
release; write `--payload JSON` instead (in a later release `--data` will mean the data directory there too, as \
it does before the command and after every other command)";

/// The global options that take a value, as they may appear before the command.
const GLOBAL_OPTIONS_WITH_VALUE: [&str; 7] =
    ["--data", "--data-dir", "-o", "--output", "--key-file", "--key-store", "--archive"];

/// `--data` names the data directory everywhere except after `append`, where it has always
/// been the event's data: rewrites those (`--data X`, `--data=X`, up to a `--`) to the
/// hidden `--data-deprecated`, and says whether it did. The rule is by position only, never
/// by the value's look, so a given command line means one thing.
fn append_data_as_payload(mut args: Vec<std::ffi::OsString>) -> (Vec<std::ffi::OsString>, bool) {
    let mut i = 1;
    // Find the command: the first word that is neither an option nor a global option's value.
    while i < args.len() {
        let word = args[i].to_string_lossy();
        if GLOBAL_OPTIONS_WITH_VALUE.contains(&word.as_ref()) {
            i += 2;
        } else if word.starts_with('-') {
            i += 1;
        } else {
            break;
        }
    }
    if args.get(i).is_none_or(|c| c != "append") {
        return (args, false);
    }
    let mut rewrote = false;
    for arg in args.iter_mut().skip(i + 1) {
        let word = arg.to_string_lossy().into_owned();
        if word == "--" {
            break;
        }
        if word == "--data" {
            *arg = "--data-deprecated".into();
            rewrote = true;
        } else if let Some(value) = word.strip_prefix("--data=") {
            *arg = format!("--data-deprecated={value}").into();
            rewrote = true;
        }
    }
    (args, rewrote)
}

fn cli_log_json(cli: &Cli) -> bool {
    matches!(&cli.command, Command::Serve(args) if args.log_json)
}

/// Structured logs on stderr; `CAIRN_LOG` (e.g. `debug`, `cairn=debug,tower=warn`) overrides
/// the default level.
fn init_tracing(default: &str, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.with_ansi(crate::output::stderr_colour()).init();
    }
}

/// The data directory when none is given.
pub const DATA_DIR_DEFAULT: &str = "./cairn-data";
/// The demo's data directory when none is given: its own, so that what a user does next in
/// ./cairn-data starts from an empty log.
pub const DEMO_DIR_DEFAULT: &str = "./cairn-demo";

fn run(cli: Cli) -> CliResult<Exit> {
    let default = if matches!(cli.command, Command::Demo(_)) { DEMO_DIR_DEFAULT } else { DATA_DIR_DEFAULT };
    let data_given = cli.data.is_some();
    let data = cli.data.unwrap_or_else(|| PathBuf::from(default));
    let format = cli.output;
    configure_keys(cli.key_file.as_deref(), cli.key_store)?;
    let mut command = cli.command;
    match &mut command {
        // The server resolves its archive with its other settings (flag, CAIRN_ARCHIVE, file).
        Command::Serve(args) => args.archive = cli.archive,
        _ => configure_archive(cli.archive)?,
    }
    match command {
        Command::Append(args) => log_cmds::append(&data, format, args),
        Command::Read(args) => log_cmds::read(&data, format, args),
        Command::ReadAll(args) => log_cmds::read_all(&data, format, args),
        Command::Tail(args) => log_cmds::tail(&data, format, args),
        Command::Streams(args) => log_cmds::streams(&data, format, args),
        Command::Export(args) => bulk::export(&data, args),
        Command::Import => bulk::import(&data, format),
        Command::Delete(args) => lifecycle_cmds::delete(&data, format, args),
        Command::Close(args) => lifecycle_cmds::close(&data, format, args),
        Command::Fork(args) => lifecycle_cmds::fork(&data, format, args),
        Command::Erase(args) => lifecycle_cmds::erase(&data, format, args),
        Command::Scavenge(args) => lifecycle_cmds::scavenge(&data, format, args),
        Command::Keys(command) => ops_cmds::keys(&data, format, command),
        Command::Metadata(args) => lifecycle_cmds::metadata(&data, format, args),
        Command::Head => log_cmds::head(&data, format),
        Command::Verify(args) => log_cmds::verify(&data, format, args),
        Command::Stats(args) => log_cmds::stats(&data, format, args),
        Command::Kv(command) => view_cmds::kv(&data, format, command),
        Command::Audit(command) => view_cmds::audit(&data, format, command),
        Command::Meta(command) => view_cmds::meta(&data, format, command),
        Command::Checkpoint(args) => ops_cmds::checkpoint(&data, format, args),
        Command::Checkpoints(args) => ops_cmds::checkpoints(&data, format, args),
        Command::Restore(args) => ops_cmds::restore(&data, format, args),
        Command::Backup(args) => ops_cmds::backup(&data, format, args),
        Command::Drill(args) => ops_cmds::drill(&data, format, args),
        Command::Repair(args) => repair::repair(&data, format, args),
        Command::Serve(args) => {
            Ok(crate::http::serve_blocking(&data, args, crate::mcp::http::mount).map(|()| Exit::Ok)?)
        }
        Command::Demo(args) => crate::demo::run(&data, format, args),
        Command::Mcp(args) => crate::mcp::run(&data, data_given, args),
        Command::Token(args) => token(format, args),
    }
}

/// The environment variable that may hold the key's 64 hexadecimal digits instead of a file.
pub const KEY_ENV: &str = "CAIRN_KEY";

/// Reads the key (`--key-file`/`CAIRN_KEY_FILE`, else `CAIRN_KEY`) and sets it for the process.
fn configure_keys(file: Option<&Path>, store: Option<PathBuf>) -> CliResult<()> {
    let kek = match (file, std::env::var(KEY_ENV)) {
        (Some(path), _) => log_engine::Kek::from_file(path).map_err(crate::store::StoreError::from)?,
        (None, Ok(text)) => log_engine::Kek::from_hex(&text).map_err(|reason| {
            crate::store::StoreError::from(log_engine::Error::Invalid { what: format!("{KEY_ENV}: {reason}") })
        })?,
        (None, Err(_)) => {
            if store.is_some() {
                return Err(crate::store::StoreError::from(log_engine::Error::Invalid {
                    what: "--key-store needs a key: --key-file FILE, CAIRN_KEY_FILE or CAIRN_KEY".into(),
                })
                .into());
            }
            return Ok(());
        }
    };
    crate::store::configure_keys(crate::store::KeyConfig { kek, store });
    Ok(())
}

/// The variable that names the archive when `--archive` does not (as for `cairn serve`).
pub const ARCHIVE_ENV: &str = "CAIRN_ARCHIVE";

/// Sets the archive evicted segments are read back from (`--archive`, else `CAIRN_ARCHIVE`)
/// for every log this process opens.
fn configure_archive(flag: Option<bucket::Location>) -> CliResult<()> {
    let location = match (flag, std::env::var(ARCHIVE_ENV)) {
        (Some(location), _) => location,
        (None, Ok(text)) => bucket::Location::parse(&text).map_err(|e| {
            crate::store::StoreError::from(log_engine::Error::Invalid { what: format!("{ARCHIVE_ENV}: {e}") })
        })?,
        (None, Err(_)) => return Ok(()),
    };
    crate::store::configure_archive(location);
    Ok(())
}

fn token(format: Format, args: TokenArgs) -> CliResult<Exit> {
    let token = args.hash.clone().unwrap_or_else(crate::auth::new_token);
    let line = crate::auth::token_hash_line(&token);
    let mut out = crate::output::Out::new();
    match format {
        Format::Text if args.hash.is_some() => out.line(&line)?,
        Format::Text => {
            out.line(&format!("token: {token}"))?;
            out.line("auth-file line (the server keeps only this hash):")?;
            out.line(&line)?;
        }
        Format::Json | Format::Ndjson => {
            let hash = format!("blake3:{}", crate::auth::hash_token(&token).to_hex());
            let mut doc = serde_json::json!({ "token_hash": hash });
            if args.hash.is_none() {
                doc["token"] = serde_json::Value::String(token);
            }
            out.json_line(&doc)?;
        }
    }
    out.flush()?;
    Ok(Exit::Ok)
}

/// Opens the log in `dir` as a reader (see [`crate::store::open_reader`]); a warning on stderr
/// says where the reader stopped if the newest segment ends in damage or a torn batch.
pub(crate) fn open_reader(dir: &Path) -> CliResult<log_engine::Log> {
    let log = crate::store::open_reader(dir)?;
    if let Some(stop) = log.read_stop() {
        eprintln!("warning: {}", crate::store::describe_stop(&stop));
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn rewrite(line: &str) -> (String, bool) {
        let (args, rewrote) = append_data_as_payload(line.split(' ').map(Into::into).collect());
        (args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" "), rewrote)
    }

    /// Issue 23 item 4: only `--data` after `append` is the (deprecated) payload spelling.
    #[test]
    fn only_data_after_append_is_rewritten() {
        assert_eq!(
            rewrite("cairn --data d -o json append s --type T --data {}"),
            ("cairn --data d -o json append s --type T --data-deprecated {}".into(), true)
        );
        assert_eq!(rewrite("cairn append s --data={}"), ("cairn append s --data-deprecated={}".into(), true));
        assert_eq!(rewrite("cairn serve --data d"), ("cairn serve --data d".into(), false));
        assert_eq!(rewrite("cairn --data append read append"), ("cairn --data append read append".into(), false));
        assert_eq!(rewrite("cairn append s -- --data"), ("cairn append s -- --data".into(), false));
    }
}
