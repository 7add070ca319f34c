#!/usr/bin/env python3
"""Replica lag under load: how long after the leader acknowledges an append a read replica
(`cairn serve --follow`) serves it.

    benches/replica-lag/replica_lag.py [--bin target/release/cairn] [--appenders 64] [--seconds 20]

Starts a leader and a replica on fresh temporary directories (loopback, no auth), puts the W2
load on the leader (APPENDERS threads, each appending one durable event at a time over a
kept-alive connection), and meanwhile appends a probe event to the stream `lag-probe` every
PROBE_EVERY seconds. A subscription on the replica (`/v1/subscribe?stream=lag-probe`) notes
when each probe arrives; a probe's lag is that time minus the time the leader's 200 answer
arrived. Prints the load's events/s and the lag's percentiles, as JSON on the last line.
Standard library only; both servers are stopped (SIGTERM) and the directories removed at the end.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

PROBE_EVERY = 0.05


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


def append(conn, stream, data):
    body = json.dumps({"events": [{"type": "Step", "data": data}]})
    conn.request("POST", f"/v1/streams/{stream}/events", body, {"content-type": "application/json"})
    response = conn.getresponse()
    answer = json.loads(response.read())
    if response.status != 200:
        raise RuntimeError(f"append answered {response.status}: {answer}")
    return answer["first_position"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/release/cairn")
    parser.add_argument("--appenders", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="cairn-replica-lag-")
    leader, host, port = start(args.bin, os.path.join(scratch, "leader"), [])
    replica, rhost, rport = start(args.bin, os.path.join(scratch, "replica"),
                                  ["--follow", f"http://{host}:{port}"])
    stop = threading.Event()
    counts = [0] * args.appenders
    acked = {}    # probe number -> time the leader's answer arrived
    seen = {}     # probe number -> time the replica delivered it
    try:
        sub = http.client.HTTPConnection(rhost, rport, timeout=60)
        sub.request("GET", "/v1/subscribe?from=end&stream=lag-probe")
        stream = sub.getresponse()
        assert stream.status == 200, stream.status

        def watch():
            for raw in stream:
                line = raw.decode().strip()
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    seen.setdefault(event["data"]["probe"], time.monotonic())
                if stop.is_set() and len(seen) >= len(acked):
                    return

        def load(i):
            conn = http.client.HTTPConnection(host, port, timeout=60)
            while not stop.is_set():
                append(conn, f"agent-{i}", {"i": counts[i], "note": "x" * 200})
                counts[i] += 1

        def probe():
            conn = http.client.HTTPConnection(host, port, timeout=60)
            n = 0
            while not stop.is_set():
                append(conn, "lag-probe", {"probe": n})
                acked[n] = time.monotonic()
                n += 1
                time.sleep(PROBE_EVERY)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        threads = [threading.Thread(target=load, args=(i,)) for i in range(args.appenders)]
        threads.append(threading.Thread(target=probe))
        started = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(args.seconds)
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        watcher.join(timeout=30)
        lags = sorted((seen[n] - acked[n]) * 1000 for n in acked if n in seen)
        pick = lambda q: round(lags[min(len(lags) - 1, int(q * len(lags)))], 2)
        result = {
            "appenders": args.appenders, "seconds": round(elapsed, 1),
            "events_per_s": round(sum(counts) / elapsed), "probes": len(acked),
            "probes_seen": len(lags), "lag_ms_p50": pick(0.5), "lag_ms_p99": pick(0.99),
            "lag_ms_max": round(lags[-1], 2),
        }
        print(json.dumps(result))
    finally:
        for proc in (replica, leader):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
