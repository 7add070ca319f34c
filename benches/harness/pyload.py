"""The harness's Python-client workload: durable single-event appends through cairn_client.

    python pyload.py URL async|sync SECONDS CLIENTS STREAMS

``async``: one ``AsyncClient`` with CLIENTS concurrent ``append`` calls (each its own stream
``STREAMS-i``); ``sync``: one blocking ``Client`` (one connection) appending in a loop. Each
call appends one event of 256 random bytes (sent as ``data_b64``, like the harness's own HTTP
load). Runs for SECONDS after a warm-up call per client, then prints one line
``EVENTS SECONDS CLIENT_CPU_SECONDS WARM_UP_EVENTS`` and one latency in nanoseconds per line.
"""

from __future__ import annotations

import asyncio
import random
import resource
import sys
import time

import cairn_client as cc


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    url, mode, seconds, clients, streams = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    rng = random.Random(0x5EED)
    payloads = [bytes(rng.getrandbits(8) for _ in range(256)) for _ in range(64)]
    latencies: list[int] = []

    async def run_async() -> tuple[float, float]:
        async with cc.AsyncClient(url) as client:
            await asyncio.gather(*(client.append(f"{streams}-{i}", cc.NewEvent("bench", payloads[0])) for i in range(clients)))
            deadline = 0.0

            async def worker(i: int) -> None:
                n = i
                while time.perf_counter() < deadline:
                    started = time.perf_counter_ns()
                    await client.append(f"{streams}-{i}", cc.NewEvent("bench", payloads[n % len(payloads)]))
                    latencies.append(time.perf_counter_ns() - started)
                    n += 1

            t0, c0 = time.perf_counter(), cpu()
            deadline = t0 + seconds
            await asyncio.gather(*(worker(i) for i in range(clients)))
            return time.perf_counter() - t0, cpu() - c0

    def run_sync() -> tuple[float, float]:
        with cc.Client(url) as client:
            client.append(f"{streams}-0", cc.NewEvent("bench", payloads[0]))
            t0, c0 = time.perf_counter(), cpu()
            deadline, n = t0 + seconds, 0
            while time.perf_counter() < deadline:
                started = time.perf_counter_ns()
                client.append(f"{streams}-0", cc.NewEvent("bench", payloads[n % len(payloads)]))
                latencies.append(time.perf_counter_ns() - started)
                n += 1
            return time.perf_counter() - t0, cpu() - c0

    wall, used = asyncio.run(run_async()) if mode == "async" else run_sync()
    warm_up = clients if mode == "async" else 1
    out = [f"{len(latencies)} {wall} {used} {warm_up}"]
    out.extend(str(ns) for ns in latencies)
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
