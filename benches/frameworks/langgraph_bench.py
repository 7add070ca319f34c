"""LangGraph checkpointer benchmark: cairn's AsyncCairnSaver against langgraph-checkpoint-sqlite's
AsyncSqliteSaver and langgraph-checkpoint-postgres's AsyncPostgresSaver, every one durable.

The workload is a real LangGraph graph: one node run 200 times in a loop, each step adding one
~400-byte message to a list channel, run once on LangGraph's InMemorySaver with
``durability="sync"`` while the saver calls it receives (``put``, ``put_writes``) are recorded.
Each system then replays exactly those calls on a fresh thread, and after each ``put`` reads the
thread's latest checkpoint back with ``get_tuple`` (what resuming a thread does). Two variants
of the graph: the list channel as ``Annotated[list, operator.add]`` (the whole list in every
checkpoint's changed channels) and as ``DeltaChannel`` (per-step writes, a snapshot every 100).

After each replay a fresh saver (nothing cached) lists the thread and must find every
checkpoint, in order, with the latest one's values; for cairn that read checks every event
against the log's chain hash. Then the bytes the system stores for the thread are summed.

Durability: cairn serve appends with fdatasync (its default); SQLite in WAL mode with
synchronous=FULL; PostgreSQL 15 (a private cluster in a temp dir on 127.0.0.1) with fsync=on
and synchronous_commit=on. cairn is reached over HTTP on loopback with a token.

Usage (see README.md beside this file):
    python benches/frameworks/langgraph_bench.py --cairn-bin target/release/cairn --out DIR
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import operator
import os
import platform
import random
import re
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated, Any, TypedDict

import aiosqlite
import psycopg
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph

from cairn_client import AsyncClient
from cairn_client.langgraph import AsyncCairnSaver

STEPS = 200
"""Steps of the benchmark's thread."""
MESSAGE_BYTES = 400
"""Size of the message content each step adds."""
PG_BIN = "/usr/lib/postgresql/15/bin"
"""Debian's PostgreSQL 15 server binaries (as benches/harness uses)."""
SYSTEMS = ("cairn", "sqlite", "postgres")
VARIANTS = ("delta", "plain")


# -- the workload ------------------------------------------------------------------------------


def extend(state: list[Any], writes: list[list[Any]]) -> list[Any]:
    return [*state, *(entry for write in writes for entry in write)]


def saved(config: Any) -> dict[str, Any]:
    """What of a config a saver reads: the thread, namespace and checkpoint id (the runtime
    objects LangGraph adds are left out, so every system gets the same input)."""
    keys = ("thread_id", "checkpoint_ns", "checkpoint_id")
    return {"configurable": {k: config["configurable"][k] for k in keys if k in config["configurable"]}}


class Recorder(InMemorySaver):
    """InMemorySaver that keeps a copy of every put and put_writes it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        self.calls.append(("put", *copy.deepcopy((saved(config), checkpoint, metadata, dict(new_versions)))))
        return super().put(config, checkpoint, metadata, new_versions)

    def put_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        self.calls.append(("put_writes", *copy.deepcopy((saved(config), list(writes), task_id, task_path))))
        super().put_writes(config, writes, task_id, task_path)


class DeltaState(TypedDict):
    messages: Annotated[list[dict[str, str]], DeltaChannel(extend)]
    count: int


class PlainState(TypedDict):
    messages: Annotated[list[dict[str, str]], operator.add]
    count: int


def record(variant: str) -> list[tuple[Any, ...]]:
    """The saver calls of one run of the graph (``variant``: its list channel's kind)."""
    rng = random.Random(7)

    def step(state: State) -> dict[str, Any]:
        n = state["count"]
        text = "".join(rng.choice("abcdefghij klmnop") for _ in range(MESSAGE_BYTES))
        return {"messages": [{"role": "assistant" if n % 2 else "user", "content": f"{n}: {text}"}], "count": n + 1}

    builder: StateGraph[Any] = StateGraph(DeltaState if variant == "delta" else PlainState)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", lambda s: "step" if s["count"] < STEPS else END, ["step", END])
    saver = Recorder()
    graph = builder.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "recorded"}, "recursion_limit": STEPS * 2 + 10}
    final = graph.invoke({"messages": [], "count": 0}, config, durability="sync")
    assert final["count"] == STEPS and len(final["messages"]) == STEPS
    return saver.calls


def on_thread(config: dict[str, Any], thread_id: str) -> dict[str, Any]:
    out = copy.deepcopy(config)
    out["configurable"]["thread_id"] = thread_id
    return out


# -- the systems -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cairn:
    """A release `cairn serve` on loopback with --auth and one token."""

    def __init__(self, binary: Path, root: Path) -> None:
        self.root = root
        self.token = secrets.token_hex(24)
        line = subprocess.run(
            [str(binary), "token", "--hash", self.token], capture_output=True, text=True, check=True
        ).stdout.strip()
        auth = root / "auth.toml"
        auth.write_text(
            f'[[principal]]\nname = "bench"\n{line}\n'
            'rules = [{ prefix = "", allow = ["read"] }, { prefix = "langgraph:", allow = ["read", "append", "delete"] }]\n'
        )
        self.data = root / "data"
        log = (root / "server.log").open("w")
        self.process = subprocess.Popen(
            [str(binary), "--data", str(self.data), "serve", "--listen", "127.0.0.1:0", "--auth", str(auth)],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True,
        )
        log.close()
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        if not first.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"cairn serve did not start: {first!r}; see {root / 'server.log'}")
        self.url = first.split("listening on ", 1)[1].strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class Postgres:
    """A throwaway PostgreSQL 15 cluster on 127.0.0.1 with fsync=on and synchronous_commit=on,
    run as the `postgres` account when this runs as root (initdb refuses root)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "pgdata"
        self.port = free_port()
        self.run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.run_as:
            root.parent.chmod(0o755)  # the temp dir is root's (0700): postgres must reach its own
            shutil.chown(root, "postgres")
        self._tool("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='{root}' "
            "-c fsync=on -c synchronous_commit=on -c full_page_writes=on -c wal_sync_method=fdatasync"
        )
        self._tool("pg_ctl", "-D", str(self.data), "-l", str(root / "pg.log"), "-o", options, "-w", "-t", "120", "start")
        self.dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute("SELECT current_setting('server_version'), current_setting('fsync'), "
                               "current_setting('synchronous_commit')").fetchone()
        assert row is not None and row[1] == "on" and row[2] == "on", row
        self.version = row[0]

    def _tool(self, name: str, *args: str) -> None:
        done = subprocess.run([*self.run_as, f"{PG_BIN}/{name}", *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{name} failed ({done.returncode}): {done.stderr.strip()}")

    def stop(self) -> None:
        self._tool("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")


class HttpMeter:
    """Counts the HTTP requests a cairn client sends, and their time, per phase of the replay
    (put, get_tuple, put_writes) and kind of request."""

    def __init__(self, client: AsyncClient) -> None:
        self.phase = "other"
        self.requests: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        inner = getattr(client, "_call", None)
        if inner is None:  # the client's private layer changed: no breakdown, the timings stand
            return

        async def timed(call: Any) -> Any:
            request = getattr(call, "request", None)
            path = re.sub(r"/streams/[^/?]+", "/streams/{stream}", str(getattr(request, "path", "?")))
            kind = f"{self.phase}: {getattr(request, 'method', '?')} {path}"
            t0 = time.perf_counter()
            try:
                return await inner(call)
            except Exception as e:
                kind += f" -> {type(e).__name__}"
                raise
            finally:
                self.requests[kind] = self.requests.get(kind, 0) + 1
                self.seconds[kind] = self.seconds.get(kind, 0.0) + time.perf_counter() - t0

        client._call = timed  # type: ignore[method-assign]


async def open_saver(system: str, stack: AsyncExitStack, where: dict[str, Any]) -> tuple[Any, HttpMeter | None]:
    if system == "cairn":
        client = await stack.enter_async_context(AsyncClient(where["cairn"].url, token=where["cairn"].token))
        return AsyncCairnSaver(client=client), HttpMeter(client)
    if system == "sqlite":
        conn = await stack.enter_async_context(aiosqlite.connect(where["sqlite"]))
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=FULL")
        async with conn.execute("PRAGMA synchronous") as cur:
            assert (await cur.fetchone())[0] == 2, "synchronous is not FULL"
        return saver, None
    saver = await stack.enter_async_context(AsyncPostgresSaver.from_conn_string(where["postgres"].dsn))
    await saver.setup()
    return saver, None


async def stored_bytes(system: str, thread_id: str, where: dict[str, Any]) -> int:
    """Bytes of the thread's stored checkpoints, metadata, channel values and writes."""
    if system == "cairn":
        async with AsyncClient(where["cairn"].url, token=where["cairn"].token) as client:
            payloads = [e.data async for e in client.read_stream(f"langgraph:{thread_id}")]
        return sum(len(p) for p in payloads if isinstance(p, bytes))
    if system == "sqlite":
        with sqlite3.connect(where["sqlite"]) as conn:
            a = conn.execute("SELECT SUM(LENGTH(checkpoint) + LENGTH(metadata)) FROM checkpoints WHERE thread_id = ?",
                             (thread_id,)).fetchone()[0]
            b = conn.execute("SELECT COALESCE(SUM(LENGTH(value)), 0) FROM writes WHERE thread_id = ?",
                             (thread_id,)).fetchone()[0]
        return int(a) + int(b)
    async with await psycopg.AsyncConnection.connect(where["postgres"].dsn, autocommit=True) as conn:
        total = 0
        for query in (
            "SELECT SUM(pg_column_size(checkpoint) + pg_column_size(metadata)) FROM checkpoints WHERE thread_id = %s",
            "SELECT COALESCE(SUM(pg_column_size(blob)), 0) FROM checkpoint_blobs WHERE thread_id = %s",
            "SELECT COALESCE(SUM(pg_column_size(blob)), 0) FROM checkpoint_writes WHERE thread_id = %s",
        ):
            row = await (await conn.execute(query, (thread_id,))).fetchone()
            total += int(row[0] or 0)
        return total


# -- one run -----------------------------------------------------------------------------------


async def timed(sink: list[float], work: Callable[[], Awaitable[Any]]) -> Any:
    t0 = time.perf_counter()
    result = await work()
    sink.append(time.perf_counter() - t0)
    return result


async def replay(system: str, calls: list[tuple[Any, ...]], thread_id: str, where: dict[str, Any]) -> dict[str, Any]:
    put_s: list[float] = []
    get_s: list[float] = []
    writes_s: list[float] = []
    ids: list[str] = []
    latest = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    async with AsyncExitStack() as stack:
        saver, meter = await open_saver(system, stack, where)
        started = time.perf_counter()
        for call in calls:
            if call[0] == "put":
                _, config, checkpoint, metadata, versions = copy.deepcopy(call)
                if meter:
                    meter.phase = "put"
                await timed(put_s, lambda: saver.aput(on_thread(config, thread_id), checkpoint, metadata, versions))
                if meter:
                    meter.phase = "get_tuple"
                got = await timed(get_s, lambda: saver.aget_tuple(latest))
                if got is None or got.checkpoint["id"] != checkpoint["id"]:
                    raise AssertionError(f"{system}: get_tuple after put returned {got and got.checkpoint['id']}")
                ids.append(checkpoint["id"])
            else:
                _, config, writes, task_id, task_path = copy.deepcopy(call)
                if meter:
                    meter.phase = "put_writes"
                await timed(writes_s, lambda: saver.aput_writes(on_thread(config, thread_id), writes, task_id, task_path))
        elapsed = time.perf_counter() - started
    # Verified: a fresh saver (nothing cached) lists every checkpoint and reads the last state.
    async with AsyncExitStack() as stack:
        fresh, _ = await open_saver(system, stack, where)
        listed = [t.checkpoint["id"] async for t in fresh.alist({"configurable": {"thread_id": thread_id}})]
        if listed != list(reversed(ids)):
            raise AssertionError(f"{system}: a fresh saver lists {len(listed)} checkpoints, not the {len(ids)} put")
    size = await stored_bytes(system, thread_id, where)
    ms = lambda xs, q: 1000 * (statistics.quantiles(xs, n=100, method="inclusive")[q - 1])  # noqa: E731
    return {
        "checkpoints": len(ids),
        "put_p50_ms": ms(put_s, 50), "put_p99_ms": ms(put_s, 99),
        "get_tuple_p50_ms": ms(get_s, 50), "get_tuple_p99_ms": ms(get_s, 99),
        "put_writes_p50_ms": ms(writes_s, 50),
        "steps_per_s": len(ids) / elapsed,
        "bytes_per_step": size / len(ids),
        "http_requests": dict(meter.requests) if meter else None,
        "http_seconds": dict(meter.seconds) if meter else None,
        "seconds_in": {"put": sum(put_s), "get_tuple": sum(get_s), "put_writes": sum(writes_s)},
    }


# -- report ------------------------------------------------------------------------------------


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def table(results: dict[str, dict[str, list[dict[str, Any]]]], systems: tuple[str, ...]) -> str:
    keys = ["put_p50_ms", "put_p99_ms", "get_tuple_p50_ms", "get_tuple_p99_ms", "steps_per_s", "bytes_per_step"]
    lines = [
        "| variant | system | put p50 ms | put p99 ms | get_tuple p50 ms | get_tuple p99 ms | steps/s | bytes/step |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for variant, by_system in results.items():
        for system in systems:
            row = [median_of(by_system[system], k) for k in keys]
            lines.append(f"| {variant} | {system} | " + " | ".join(f"{v:.2f}" if v < 100 else f"{v:.0f}" for v in row) + " |")
        if "cairn" not in systems or "postgres" not in systems:
            continue
        ratio = [median_of(by_system["cairn"], k) / median_of(by_system["postgres"], k) for k in keys]
        lines.append(f"| {variant} | cairn ÷ postgres | " + " | ".join(f"{v:.2f}" for v in ratio) + " |")
    return "\n".join(lines) + "\n"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cairn-bin", type=Path, help="a release-built cairn binary (needed for cairn)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="delta,plain or one of them")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="cairn,sqlite,postgres or some of them")
    parser.add_argument("--out", type=Path, default=Path("."), help="where langgraph.json and langgraph.md go")
    args = parser.parse_args()
    variants = args.variants.split(",")
    systems = tuple(s for s in SYSTEMS if s in args.systems.split(","))
    if "cairn" in systems and args.cairn_bin is None:
        parser.error("--cairn-bin is needed to run cairn")
    workloads = {v: record(v) for v in variants}
    load: list[tuple[float, float, float]] = [os.getloadavg()]
    results: dict[str, dict[str, list[dict[str, Any]]]] = {v: {s: [] for s in systems} for v in variants}
    with tempfile.TemporaryDirectory(prefix="cairn-lgbench-") as tmp, contextlib.ExitStack() as running:
        root = Path(tmp)
        where: dict[str, Any] = {"sqlite": str(root / "sqlite.db")}
        if "cairn" in systems:
            (root / "cairn").mkdir()
            where["cairn"] = Cairn(args.cairn_bin.resolve(), root / "cairn")
            running.callback(where["cairn"].stop)
        if "postgres" in systems:
            (root / "pg").mkdir()
            where["postgres"] = Postgres(root / "pg")
            running.callback(where["postgres"].stop)
        for rep in range(args.reps):
            order = systems[rep % len(systems) :] + systems[: rep % len(systems)]  # who goes first alternates
            for variant in variants:
                for system in order:
                    run = await replay(system, workloads[variant], f"{variant}-{rep}-{system}", where)
                    results[variant][system].append(run)
                    load.append(os.getloadavg())
                    print(f"rep {rep} {variant:5} {system:8} put p50 {run['put_p50_ms']:.2f} ms, "
                          f"get_tuple p50 {run['get_tuple_p50_ms']:.2f} ms, {run['steps_per_s']:.1f} steps/s, "
                          f"{run['bytes_per_step']:.0f} B/step, load {load[-1][0]:.2f}", flush=True)
    one_minute = [sample[0] for sample in load]
    report = {
        "steps": STEPS, "message_bytes": MESSAGE_BYTES, "reps": args.reps,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_1m_min": min(one_minute), "load_1m_max": max(one_minute),
                    "load_1m_median": statistics.median(one_minute), "load_samples": load},
        "postgres_version": where["postgres"].version if "postgres" in where else None,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "langgraph.json").write_text(json.dumps(report, indent=1) + "\n")
    md = table(results, systems) + (
        f"\n{STEPS} steps, medians of {args.reps} runs; 1-minute load average during the run "
        f"{min(one_minute):.1f}–{max(one_minute):.1f} on {os.cpu_count()} CPUs (a shared machine).\n"
    )
    (args.out / "langgraph.md").write_text(md)
    print(md)


if __name__ == "__main__":
    asyncio.run(main())
