#!/usr/bin/env bash
# Installs what the benchmark harness's peers need (Debian/Ubuntu), then checks it.
#
#   sudo bash benches/setup.sh      # or as root
#   cargo run --release --manifest-path benches/harness/Cargo.toml -- --quick   # or --full
#   # after editing benches/harness/analysis.md: rewrite the report from the run's saved
#   # numbers (docs/benchmarks.json, written by every run), running nothing
#   cargo run --release --manifest-path benches/harness/Cargo.toml -- --report-from docs/benchmarks.json
#
# A run writes docs/benchmarks.md, .svg and .json (--out DIR for elsewhere); --report-from
# needs none of the peers below.
#
# - Redis: the redis-server package (the harness starts its own throwaway server with
#   appendonly yes + appendfsync always on a Unix socket; the system service is not used).
# - PostgreSQL 15: the server binaries under /usr/lib/postgresql/15/bin (package
#   postgresql-15). The harness runs initdb/pg_ctl itself as an unprivileged user: when it runs
#   as root it uses `postgres`, or creates `cairnbench` (done here ahead of time).
# - SQLite and fjall are compiled into the harness (rusqlite bundles SQLite): nothing to install.
# - perf (linux-perf) for investigating a missed goal; optional.
# Nothing here starts a long-running service.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ -x "$PG_BIN/initdb" ] || need+=(postgresql-15)
if [ "${#need[@]}" -gt 0 ]; then
    echo "installing: ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# The packages' own services are not needed (and may not be startable in a container).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
    echo "note: the system redis-server service is running; the harness does not use it"
fi

if [ "$(id -u)" -eq 0 ] && ! id -u postgres >/dev/null 2>&1 && ! id -u cairnbench >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin cairnbench
    echo "created the unprivileged user cairnbench for the throwaway PostgreSQL cluster"
fi

echo "redis-server: $(redis-server --version | head -n1)"
echo "postgres:     $("$PG_BIN/postgres" --version)"
echo "ready: cargo run --release --manifest-path benches/harness/Cargo.toml -- --quick"
