#!/usr/bin/env python3
"""Tiering (issue 21's numbers), with the release binary, against an S3-compatible server or a
local directory as the archive:

    . <(CAIRN_S3_KEEP_RUNNING=1 .ci/s3 ...)   # or any S3 service: AWS_* and CAIRN_S3_BUCKET set
    benches/archive/tier_bench.py [--bin target/release/cairn] [--events 600000] [--reps 3]
    benches/archive/tier_bench.py --archive-dir DIR ...   # a file:// archive instead of S3

Setup (not measured; `--scratch DIR --setup-only` prepares it ahead of a quiet window): a log of
EVENTS events (archive_bench.py's: 1000 streams, batches of 1000 over HTTP, 16 MiB segments),
copied whole (the all-local baseline), then served with `--archive URL --local-budget 0` until
every archived segment outside the idempotency window is evicted (a stub left locally). Then,
each with the load average taken before it:

1. Cold read: a fresh server (`--archive`, a cache large enough for every segment) and, for each
   evicted segment, the first `GET /v1/events?from=<its first position>&limit=1`: the fetch of
   the whole segment from the archive, its BLAKE3 check and map. Latency per segment (median),
   and MB/s (segment bytes over that latency, 10^6 bytes).
2. Warm read: the same request again (the cache holds the copy). Local read: the same request
   for each local sealed segment of the same server. Medians.
3. Replay across tiers beside all-local: every event read through `GET /v1/events` pages of
   10,000 from position 0, and `POST /v1/verify`, each on a freshly started server (so the
   tiered one fetches every evicted segment), the tiered directory beside the all-local copy,
   alternating, REPS times; medians and the ratio. Server start is not timed.
4. What evicted segments leave locally: stub bytes on disk per segment and per evicted event
   (the memory per event is the index's, as for local segments: docs/benchmarks.md).

Prints one JSON object per measurement and a summary on the last line. Standard library only;
every server is stopped, and without --scratch every directory removed (the bucket prefix is
left).
"""
import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from archive_bench import SEGMENT_SIZE, build_log, get_json, load_average, run, start, stop  # noqa: E402

# A failure guard for the archiver's evictions (not a measurement).
EVICT_GUARD_S = 900


def log_files(data, extension):
    names = sorted(n for n in os.listdir(os.path.join(data, "log")) if n.endswith(extension))
    return [(int(n.split(".")[0]), os.path.join(data, "log", n)) for n in names]


def evict(binary, data, url, sealed):
    """Serves DATA with the archive and a budget of 0 until every segment is archived and the
    evicted count stopped moving; returns the evicted count."""
    proc, host, port = start(binary, data, ["--archive", url, "--local-budget", "0", "--segment-size", SEGMENT_SIZE])
    try:
        started, last, steady = time.monotonic(), -1, 0
        while True:
            _, health = get_json(host, port, "/healthz")
            archive = health.get("archive") or {}
            evicted = (archive.get("tiering") or {}).get("segments_evicted", 0)
            if archive.get("segments_archived", 0) >= sealed and evicted > 0:
                steady = steady + 1 if evicted == last else 0
                if steady >= 10:
                    return evicted
            last = evicted
            if time.monotonic() - started > EVICT_GUARD_S:
                sys.exit(f"eviction never settled: {health}")
            time.sleep(0.3)
    finally:
        stop(proc)


def stub_capacity(path):
    """The evicted segment's size (its capacity), from its stub's header (docs/format.md)."""
    with open(path, "rb") as f:
        head = f.read(32)
    return int.from_bytes(head[24:32], "little")


def timed_get(host, port, path):
    conn = http.client.HTTPConnection(host, port, timeout=120)
    started = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    seconds = time.perf_counter() - started
    if response.status != 200:
        sys.exit(f"GET {path} answered {response.status}: {body[:300]}")
    return seconds


def replay(host, port):
    """Seconds to read every event through `GET /v1/events`, pages of 10,000 from position 0."""
    conn = http.client.HTTPConnection(host, port, timeout=600)
    started, position = time.perf_counter(), 0
    while position is not None:
        conn.request("GET", f"/v1/events?from={position}&limit=10000")
        response = conn.getresponse()
        page = json.loads(response.read())
        if response.status != 200:
            sys.exit(f"read from {position} answered {response.status}: {page}")
        position = page.get("next")
    return time.perf_counter() - started


def verify(host, port):
    """Seconds of `POST /v1/verify` (every CRC and chain hash from genesis)."""
    conn = http.client.HTTPConnection(host, port, timeout=600)
    started = time.perf_counter()
    conn.request("POST", "/v1/verify", "{}", {"content-type": "application/json"})
    response = conn.getresponse()
    answer = response.read()
    seconds = time.perf_counter() - started
    report = json.loads(answer.splitlines()[-1]) if answer else {}
    if response.status != 200 or not report.get("ok"):
        sys.exit(f"verify answered {response.status}: {answer[-300:]}")
    return seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/release/cairn")
    parser.add_argument("--events", type=int, default=600_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--prefix", default=f"tier-bench-{os.getpid()}-{int(time.time())}")
    parser.add_argument("--scratch", help="keep the setup here (reused when it holds one)")
    parser.add_argument("--setup-only", action="store_true")
    parser.add_argument("--archive-dir", help="archive to this local directory instead of S3")
    args = parser.parse_args()
    bucket = os.environ.get("CAIRN_S3_BUCKET")
    if args.archive_dir:
        archive_base = "file://" + os.path.abspath(args.archive_dir)
    elif bucket and "AWS_ENDPOINT_URL" in os.environ:
        archive_base = f"s3://{bucket}"
    else:
        sys.exit("set AWS_* and CAIRN_S3_BUCKET (see .ci/s3, CAIRN_S3_KEEP_RUNNING=1), or give --archive-dir")
    binary = os.path.abspath(args.bin)
    commit = run(["git", "rev-parse", "--short", "HEAD"]).strip()
    scratch = args.scratch or tempfile.mkdtemp(prefix="cairn-tier-bench-")
    os.makedirs(scratch, exist_ok=True)
    data, local = os.path.join(scratch, "tiered"), os.path.join(scratch, "local")
    setup_file = os.path.join(scratch, "setup.json")
    try:
        if os.path.exists(setup_file):
            with open(setup_file) as f:
                setup = json.load(f)
        else:
            build_log(binary, data, args.events)
            shutil.copytree(data, local)
            sealed = len(log_files(data, ".seg")) - 1
            url = f"{archive_base}/{args.prefix}"
            evicted = evict(binary, data, url, sealed)
            setup = {"url": url, "sealed": sealed, "evicted": evicted, "events": args.events}
            with open(setup_file, "w") as f:
                json.dump(setup, f)
        print(json.dumps({"measure": "setup", **setup}), flush=True)
        if args.setup_only:
            return
        url = setup["url"]
        stubs = log_files(data, ".stub")
        segs = log_files(data, ".seg")
        summary = {"commit": commit, "events": setup["events"], "segments_evicted": len(stubs),
                   "segments_local_sealed": len(segs) - 1}

        # 1 and 2: cold, warm and local reads through one fresh server.
        before = load_average()
        proc, host, port = start(binary, data, ["--archive", url, "--tier-cache", "8GiB"])
        try:
            cold, warm, local_reads = [], [], []
            for first, _ in stubs:
                cold.append(timed_get(host, port, f"/v1/events?from={first}&limit=1"))
                warm.append(timed_get(host, port, f"/v1/events?from={first}&limit=1"))
            for first, _ in segs[:-1]:
                local_reads.append(timed_get(host, port, f"/v1/events?from={first}&limit=1"))
            _, health = get_json(host, port, "/healthz")
        finally:
            stop(proc)
        tiering = health["archive"]["tiering"]
        sizes = [stub_capacity(p) for _, p in stubs]
        rates = [size / s / 1e6 for size, s in zip(sizes, cold)]
        cold_s, warm_s, local_s = statistics.median(cold), statistics.median(warm), statistics.median(local_reads)
        print(json.dumps({"measure": "reads", "segments_fetched": tiering["cache_misses"],
                          "fetched_bytes": tiering["fetched_bytes"], "segment_bytes": sizes,
                          "cold_ms": [round(s * 1000, 1) for s in cold],
                          "cold_mb_per_s": [round(r, 1) for r in rates],
                          "warm_ms": [round(s * 1000, 2) for s in warm],
                          "local_ms": [round(s * 1000, 2) for s in local_reads], "load_before": before}), flush=True)
        summary.update({"cold_read_ms": round(cold_s * 1000, 1), "cold_mb_per_s": round(statistics.median(rates), 1),
                        "warm_read_ms": round(warm_s * 1000, 2), "local_read_ms": round(local_s * 1000, 2)})

        # 3: replay and verify across tiers beside all-local, each on a fresh server.
        times = {(m, w): [] for m in ("replay", "verify") for w in ("tiered", "local")}
        for rep in range(args.reps):
            for measure in ("replay", "verify"):
                for where in ("local", "tiered"):
                    extra = ["--archive", url, "--tier-cache", "8GiB"] if where == "tiered" else []
                    proc, host, port = start(binary, data if where == "tiered" else local, extra)
                    try:
                        before = load_average()
                        seconds = replay(host, port) if measure == "replay" else verify(host, port)
                    finally:
                        stop(proc)
                    times[(measure, where)].append(seconds)
                    print(json.dumps({"measure": measure, "where": where, "rep": rep, "seconds": round(seconds, 3),
                                      "load_before": before}), flush=True)
        for measure in ("replay", "verify"):
            tiered_s = statistics.median(times[(measure, "tiered")])
            local_s = statistics.median(times[(measure, "local")])
            summary.update({f"{measure}_tiered_s": round(tiered_s, 3), f"{measure}_local_s": round(local_s, 3),
                            f"{measure}_tiered_over_local": round(tiered_s / local_s, 2)})

        # 4: what an evicted segment leaves locally.
        stub_bytes = sum(os.path.getsize(p) for _, p in stubs)
        evicted_events = segs[0][0] if segs else 0
        summary.update({"stub_bytes_total": stub_bytes, "stub_bytes_per_segment": stub_bytes // max(1, len(stubs)),
                        "stub_bytes_per_evicted_event": round(stub_bytes / max(1, evicted_events), 3)})
        print(json.dumps(summary))
    finally:
        if not args.scratch:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
