"""Fixtures for the agent-framework adapters (``cairn_client.langgraph``,
``cairn_client.openai_agents``) against a real ``cairn serve`` started with ``--auth``: the
adapters reach it with a token, as a remote deployment would. Each test gets a stream prefix
of its own, so tests sharing the server never see each other's threads or sessions."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..server.harness import Server, cairn_binary, new_token, token_hash_line

AGENT_RULES = (
    'rules = [{ prefix = "", allow = ["read"] }, '
    '{ prefix = "lg-", allow = ["read", "append", "delete"] }, '
    '{ prefix = "oa-", allow = ["read", "append", "delete"] }, '
    '{ prefix = "langgraph:", allow = ["read", "append", "delete"] }, '
    '{ prefix = "openai-agents:", allow = ["read", "append", "delete"] }]'
)
"""The adapters' principal: read the global log (a chain check needs the hash before each
event), and write and delete their own streams."""


class KillableServer(Server):
    """A server the tests can SIGKILL (no shutdown path runs) and start again on its address."""

    def kill(self) -> None:
        process, self._process = self._process, None
        assert process is not None, "the server is not running"
        process.send_signal(signal.SIGKILL)
        process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def restart(self) -> None:
        host, port = self.address
        self.start(listen=f"{host}:{port}")


@dataclass(frozen=True)
class Deployment:
    server: KillableServer
    token: str
    """The adapters' token (principal ``agents``)."""
    intruder: str
    """Another principal's token (``intruder``) that may append to the adapters' streams."""

    @property
    def url(self) -> str:
        return self.server.url


def start_server(root: Path) -> Deployment:
    """A ``cairn serve`` with ``--auth`` on a free loopback port, data under ``root``, and a
    token with :data:`AGENT_RULES`."""
    binary = cairn_binary()
    token, intruder = new_token(), new_token()
    auth = root / "auth.toml"
    auth.write_text(
        f'[[principal]]\nname = "agents"\n{token_hash_line(binary, token)}\n{AGENT_RULES}\n'
        f'[[principal]]\nname = "intruder"\n{token_hash_line(binary, intruder)}\n{AGENT_RULES}\n'
    )
    server = KillableServer(binary, root / "data", root / "server.log", ["--auth", str(auth)])
    server.start()
    return Deployment(server, token, intruder)


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The server the tests share."""
    shared = start_server(tmp_path_factory.mktemp("cairn-frameworks"))
    try:
        yield shared
    finally:
        shared.server.stop()


@pytest.fixture
def own_deployment(tmp_path: Path) -> Iterator[Deployment]:
    """A server of the test's own (for a test that kills it or edits its files)."""
    own = start_server(tmp_path)
    try:
        yield own
    finally:
        own.server.stop()


@pytest.fixture
def prefix() -> str:
    """A LangGraph thread-stream prefix no other test uses."""
    return f"lg-{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def session_prefix() -> str:
    """An Agents SDK session-stream prefix no other test uses."""
    return f"oa-{uuid.uuid4().hex[:10]}:"
