"""Runs the real ``cairn serve`` for the tests, and a loopback TCP proxy that can cut
connections on demand.

The binary is ``$CAIRN_BIN`` if set, else built with cargo from the repository root (the
directory two levels above ``clients/python``). A server listens on ``127.0.0.1:0`` and is
found through the ``listening on http://ADDR`` (or ``https://``) line it prints on stdout, then polled on
``/healthz`` until it answers; both waits are bounded. Everything listens on loopback only.
"""

from __future__ import annotations

import os
import secrets
import selectors
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

PYTHON_DIR = Path(__file__).resolve().parents[2]
"""clients/python."""

REPO_ROOT = PYTHON_DIR.parents[1]
"""The repository root: the parent of clients/."""

BUILD_TIMEOUT_S = 1800
"""Longest a cargo build of the binary may take (a cold build on two cores is slow)."""

START_TIMEOUT_S = 30.0
"""Longest a server may take to print its address and answer /healthz."""

STOP_TIMEOUT_S = 15.0
"""Longest a server may take to stop after SIGTERM before it is killed."""


class HarnessError(RuntimeError):
    """The test harness could not build or run the server."""


def cairn_binary() -> Path:
    """The cairn binary to test: ``$CAIRN_BIN``, or a fresh ``cargo build`` of the repository."""
    given = os.environ.get("CAIRN_BIN")
    if given:
        path = Path(given)
        if not path.is_file():
            raise HarnessError(f"CAIRN_BIN={given} is not a file")
        return path
    profile = os.environ.get("CAIRN_PROFILE", "debug")
    command = ["cargo", "build", "--bin", "cairn"] + (["--release"] if profile == "release" else [])
    try:
        done = subprocess.run(
            command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise HarnessError(f"`{' '.join(command)}` in {REPO_ROOT} failed: {e}") from e
    if done.returncode != 0:
        raise HarnessError(f"`{' '.join(command)}` in {REPO_ROOT} failed:\n{done.stderr[-4000:]}")
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    path = target / profile / "cairn"
    if not path.is_file():
        raise HarnessError(f"cargo built, but {path} does not exist")
    return path


def token_hash_line(binary: Path, token: str) -> str:
    """The auth-file line for ``token``, as ``cairn token --hash`` prints it."""
    done = subprocess.run(
        [str(binary), "token", "--hash", token], capture_output=True, text=True, timeout=30, check=False
    )
    line = done.stdout.strip()
    if done.returncode != 0 or not line.startswith("token_hash"):
        raise HarnessError(f"`cairn token --hash` failed ({done.returncode}): {done.stdout}{done.stderr}")
    return line


def new_token() -> str:
    return secrets.token_hex(24)


class Server:
    """One ``cairn serve`` process on a loopback port, with its own data directory."""

    def __init__(
        self, binary: Path, data: Path, log: Path, extra: Sequence[str] = (), ca_file: Path | None = None
    ) -> None:
        self.binary = binary
        self.ca_file = ca_file
        """The CA that signed the server's TLS certificate, when it serves https."""
        self.data = data
        self.log_path = log
        self.extra = list(extra)
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    def start(self, listen: str = "127.0.0.1:0") -> Server:
        self.data.mkdir(parents=True, exist_ok=True)
        command = [str(self.binary), "--data", str(self.data), "serve", "--listen", listen, *self.extra]
        env = {**os.environ, "CAIRN_DATA": str(self.data), "NO_COLOR": "1"}
        log = self.log_path.open("a")
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True, env=env
        )
        log.close()
        self.url = self._read_address()
        self._wait_healthy()
        return self

    def _read_address(self) -> str:
        process = self._process
        assert process is not None and process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        try:
            while time.monotonic() < deadline:
                if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    break
                line = process.stdout.readline()
                if line == "":
                    raise HarnessError(f"cairn serve exited ({process.wait()}) before listening:\n{self.log()}")
                if line.startswith("listening on "):
                    return line.split("listening on ", 1)[1].strip()
        finally:
            selector.close()
        raise HarnessError(f"cairn serve printed no address within {START_TIMEOUT_S} s:\n{self.log()}")

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                verify: ssl.SSLContext | bool = (
                    ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else True
                )
                if httpx.get(f"{self.url}/healthz", timeout=2.0, verify=verify).status_code == 200:
                    return
            except httpx.TransportError as e:
                last = e
            time.sleep(0.05)
        raise HarnessError(f"{self.url}/healthz did not answer 200 within {START_TIMEOUT_S} s ({last}):\n{self.log()}")

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.url.split("://", 1)[1].rsplit(":", 1)
        return host, int(port)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop in time; returns the exit code."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        return process.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-6000:]
        except OSError:
            return "(no log)"


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of one server, for failures the server will not make
    on its own: :meth:`cut_all` breaks every open connection; :meth:`drop_next_answer` lets the
    next request reach the server but closes the client's connection before any byte of the
    answer. Each connection's request bytes are kept in :attr:`requests`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d" % self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._drop_next = False
        self.requests: list[bytearray] = []
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, name="test-proxy", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            seen = bytearray()
            with self._lock:
                drop, self._drop_next = self._drop_next, False
                self._open += [client, upstream]
                self.requests.append(seen)
            threading.Thread(target=self._pump, args=(client, upstream, seen, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None, drop), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, seen: bytearray | None, drop: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if drop:
                    break
                if seen is not None:
                    seen.extend(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def drop_next_answer(self) -> None:
        with self._lock:
            self._drop_next = True

    def cut_all(self) -> None:
        with self._lock:
            sockets, self._open = self._open, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def header_values(self, name: str) -> list[str]:
        """Values of header ``name`` over all requests seen, in order."""
        key = name.lower().encode() + b":"
        out = []
        with self._lock:
            blobs = [bytes(b) for b in self.requests]
        for blob in blobs:
            for line in blob.split(b"\r\n"):
                if line.lower().startswith(key):
                    out.append(line.split(b":", 1)[1].strip().decode())
        return out

    def close(self) -> None:
        """Stops listening (new connections are refused) and cuts every open one."""
        self._stopped = True
        # close() alone does not wake a thread blocked in accept(), and the kernel would keep
        # accepting; shutdown() does wake it.
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self._thread.join(timeout=5)
        self.cut_all()
