#!/usr/bin/env python3
"""Archiving to an S3-compatible server (issue 21's numbers), with the release binary:

    . <(CAIRN_S3_KEEP_RUNNING=1 .ci/s3 ...)   # or any S3 service: AWS_* and CAIRN_S3_BUCKET set
    benches/archive/archive_bench.py [--bin target/release/cairn] [--events 1000000]
                                     [--appenders 64] [--seconds 15] [--reps 2]

1. Append throughput with `serve --archive s3://...` beside without it, in the same run:
   fresh data directories, the W2 load (APPENDERS threads, each appending one durable event of
   about 1 KiB at a time over a kept-alive connection) for SECONDS, the two alternating
   (off, on, off, on, ...) so both see the same machine; medians over REPS. The events are
   large enough that the young log rolls segments (1, 2, 4, ... MiB) during the run, so the
   archiver uploads while the appends go on.
2. Archive throughput: a log of EVENTS events (1000 streams, appended over HTTP in batches of
   1000 with 16 MiB segments, a checkpoint at 90%) is served with `--archive` to a fresh prefix; the
   time from the server's start until /healthz says every sealed segment is archived, and the
   bytes uploaded over that time (MB/s, 10^6 bytes).
3. `cairn restore --from s3://...` of that archive into an empty directory, and
   `cairn drill --from s3://...` of it: wall time of each (both download and check every object;
   the archive holds the sealed segments, so the active segment's events are not in it).

Prints one JSON object per measurement, each with the machine's load average (`uptime`) taken
right before it, and a summary on the last line. Standard library only; every server is
stopped and every directory removed at the end (the bucket prefixes are left: name them with
--prefix to clean up).
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

# A failure guard for the archiver (not a measurement).
ARCHIVE_GUARD_S = 1800
# The big log's segment size: an archive holds only sealed segments, so smaller segments leave
# less of the log in the active one, outside the archive.
SEGMENT_SIZE = "16MiB"


def load_average():
    return os.getloadavg()


def start(binary, data, extra):
    proc = subprocess.Popen(
        [binary, "--data", data, "serve", "--listen", "127.0.0.1:0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on http://"):
        proc.kill()
        sys.exit(f"serve printed {line!r}")
    host, port = line.removeprefix("listening on http://").split(":")
    return proc, host, int(port)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)


def get_json(host, port, path):
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def w2(host, port, appenders, seconds):
    """Events/s of APPENDERS threads appending one ~1 KiB durable event at a time."""
    halt = threading.Event()
    counts = [0] * appenders
    pad = "x" * 1000

    def load(i):
        conn = http.client.HTTPConnection(host, port, timeout=60)
        while not halt.is_set():
            body = json.dumps({"events": [{"type": "Step", "data": {"i": counts[i], "pad": pad}}]})
            conn.request("POST", f"/v1/streams/agent-{i}/events", body, {"content-type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"append answered {response.status}")
            counts[i] += 1

    threads = [threading.Thread(target=load, args=(i,)) for i in range(appenders)]
    started = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(seconds)
    halt.set()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - started)


def wait_archived(host, port, sealed):
    started = time.monotonic()
    while True:
        status, health = get_json(host, port, "/healthz")
        archive = health.get("archive") or {}
        if status == 200 and archive.get("segments_archived", 0) >= sealed:
            return archive
        if time.monotonic() - started > ARCHIVE_GUARD_S:
            sys.exit(f"the archive never caught up: {health}")
        time.sleep(0.05)


def run(argv, **kw):
    out = subprocess.run(argv, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({out.returncode}): {out.stderr}")
    return out.stdout


def build_log(binary, data, events):
    """EVENTS events on 1000 streams, appended over HTTP in batches of 1000 by 4 clients to a
    server with SEGMENT_SIZE segments, with a checkpoint at 90% (inside a sealed segment, so
    the archive covers it)."""
    proc, host, port = start(binary, data, ["--segment-size", SEGMENT_SIZE])
    note = "n" * 150
    batches = max(1, events // 1000)

    def post(conn, path, body):
        conn.request("POST", path, body, {"content-type": "application/json"})
        response = conn.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}: {answer[:200]}")

    def appender(k, lo, hi):
        conn = http.client.HTTPConnection(host, port, timeout=120)
        for b in range(lo, hi):
            if b % 4 != k:
                continue
            body = json.dumps({"events": [{"type": "Step", "data": {"b": b, "i": i, "note": note}}
                                          for i in range(1000)]})
            post(conn, f"/v1/streams/agent-{b % 1000}/events", body)

    try:
        for lo, hi in ((0, batches * 9 // 10), (batches * 9 // 10, batches)):
            threads = [threading.Thread(target=appender, args=(k, lo, hi)) for k in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if lo == 0:
                post(http.client.HTTPConnection(host, port, timeout=600), "/v1/checkpoints", "{}")
    finally:
        stop(proc)


def segment_count(data):
    return len([n for n in os.listdir(os.path.join(data, "log")) if n.endswith(".seg")])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/release/cairn")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--appenders", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--prefix", default=f"bench-{os.getpid()}-{int(time.time())}")
    args = parser.parse_args()
    bucket = os.environ.get("CAIRN_S3_BUCKET")
    if not bucket or "AWS_ENDPOINT_URL" not in os.environ:
        sys.exit("set AWS_* and CAIRN_S3_BUCKET (see .ci/s3, CAIRN_S3_KEEP_RUNNING=1)")
    base = f"s3://{bucket}/{args.prefix}"
    binary = os.path.abspath(args.bin)
    commit = run(["git", "rev-parse", "--short", "HEAD"]).strip()
    scratch = tempfile.mkdtemp(prefix="cairn-archive-bench-")
    summary = {"commit": commit, "events": args.events, "appenders": args.appenders}
    try:
        rates = {"off": [], "on": []}
        for rep in range(args.reps):
            for mode in ("off", "on"):
                data = os.path.join(scratch, f"w2-{mode}-{rep}")
                extra = ["--archive", f"{base}/w2-{rep}"] if mode == "on" else []
                before = load_average()
                proc, host, port = start(binary, data, extra)
                try:
                    rate = w2(host, port, args.appenders, args.seconds)
                    _, health = get_json(host, port, "/healthz")
                finally:
                    stop(proc)
                rates[mode].append(rate)
                archive = health.get("archive") or {}
                print(json.dumps({"measure": "w2", "archive": mode, "rep": rep, "events_per_s": round(rate),
                                  "segments": segment_count(data),
                                  "segments_archived": archive.get("segments_archived"),
                                  "load_before": before}), flush=True)
                shutil.rmtree(data, ignore_errors=True)
        off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
        summary.update({"w2_off_events_per_s": round(off), "w2_on_events_per_s": round(on),
                        "w2_on_over_off": round(on / off, 3)})

        data = os.path.join(scratch, "big")
        build_log(binary, data, args.events)
        sealed = segment_count(data) - 1
        log_bytes = sum(os.path.getsize(os.path.join(data, "log", n))
                        for n in os.listdir(os.path.join(data, "log")) if n.endswith(".seg"))
        url = f"{base}/big"
        before = load_average()
        started = time.monotonic()
        proc, host, port = start(binary, data, ["--archive", url, "--segment-size", SEGMENT_SIZE])
        try:
            archive = wait_archived(host, port, sealed)
            seconds = time.monotonic() - started
        finally:
            stop(proc)
        mb_s = archive["bytes_uploaded"] / seconds / 1e6
        print(json.dumps({"measure": "archive", "segments": sealed, "log_bytes": log_bytes,
                          "bytes_uploaded": archive["bytes_uploaded"], "seconds": round(seconds, 2),
                          "mb_per_s": round(mb_s, 1), "load_before": before}), flush=True)
        summary.update({"archive_mb_per_s": round(mb_s, 1), "archive_seconds": round(seconds, 2),
                        "archived_bytes": archive["bytes_uploaded"]})

        restored = os.path.join(scratch, "restored")
        before = load_average()
        started = time.monotonic()
        run([binary, "restore", "--from", url, "--to", restored], cwd=scratch)
        seconds = time.monotonic() - started
        print(json.dumps({"measure": "restore", "seconds": round(seconds, 2), "load_before": before}), flush=True)
        summary["restore_seconds"] = round(seconds, 2)
        shutil.rmtree(restored, ignore_errors=True)

        before = load_average()
        started = time.monotonic()
        report = json.loads(run([binary, "-o", "json", "drill", "--from", url], cwd=scratch))
        seconds = time.monotonic() - started
        if not report.get("ok"):
            sys.exit(f"the drill failed: {report}")
        print(json.dumps({"measure": "drill", "seconds": round(seconds, 2),
                          "events_verified": report.get("events_verified"),
                          "checkpoints_verified": report.get("checkpoints_verified"),
                          "load_before": before}), flush=True)
        summary.update({"drill_seconds": round(seconds, 2), "drill_events": report.get("events_verified")})
        print(json.dumps(summary))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
