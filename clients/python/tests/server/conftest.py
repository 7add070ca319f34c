"""Fixtures for the tests against the real ``cairn serve``: one plain server and one with
``--auth`` per session, clients for them, a cutting proxy, and unique stream names so tests
sharing a server never see each other's events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import cairn_client as cc

from .harness import Proxy, Server, cairn_binary, new_token, token_hash_line


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/server/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def cairn_bin() -> Path:
    return cairn_binary()


@pytest.fixture(scope="session")
def server(cairn_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("cairn")
    process = Server(cairn_bin, root / "data", root / "server.log").start()
    try:
        yield process
    finally:
        code = process.stop()
        assert code == 0, f"cairn serve exited with {code} on SIGTERM:\n{process.log()}"


@dataclass(frozen=True)
class AuthServer:
    server: Server
    admin: str
    agent: str
    reader: str


@pytest.fixture(scope="session")
def auth_server(cairn_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    root = tmp_path_factory.mktemp("cairn-auth")
    admin, agent, reader = new_token(), new_token(), new_token()
    auth = root / "auth.toml"
    auth.write_text(
        "\n".join(
            [
                '[[principal]]\nname = "ops"',
                token_hash_line(cairn_bin, admin),
                'rules = [{ prefix = "", allow = ["admin"] }]',
                '[[principal]]\nname = "agent"',
                token_hash_line(cairn_bin, agent),
                'rules = [{ prefix = "agent-", allow = ["read", "append"] }]',
                '[[principal]]\nname = "auditor"',
                token_hash_line(cairn_bin, reader),
                'rules = [{ prefix = "", allow = ["read"] }]',
                "",
            ]
        )
    )
    process = Server(cairn_bin, root / "data", root / "server.log", ["--auth", str(auth)]).start()
    try:
        yield AuthServer(process, admin, agent, reader)
    finally:
        process.stop()


@pytest.fixture
def client(server: Server) -> Iterator[cc.Client]:
    with cc.Client(server.url, timeout=10.0, backoff=0.01) as c:
        yield c


@pytest.fixture
async def aclient(server: Server) -> AsyncIterator[cc.AsyncClient]:
    async with cc.AsyncClient(server.url, timeout=10.0, backoff=0.01) as c:
        yield c


@pytest.fixture
def proxy(server: Server) -> Iterator[Proxy]:
    p = Proxy(server.address)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def stream() -> str:
    """A stream name no other test uses."""
    return f"agent-{uuid.uuid4().hex[:12]}"



@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The async client against the server on asyncio (its bytes go through aiohttp) and on trio
    (through httpx's own transport), so both of its HTTP stacks are exercised. (The framework
    adapters are asyncio only: their tests keep the package-wide asyncio.)"""
    backend: str = request.param
    return backend
