"""A pytest plugin that runs the OpenAI Agents SDK's own session tests against ``CairnSession``.

The SDK's tests (tests/memory/test_session.py and test_session_limit.py of its source
distribution) construct ``SQLiteSession(session_id, db_path, session_settings=...)`` by name and
take no session factory. This plugin starts a real ``cairn serve`` with a token and, in each
test's module, replaces ``SQLiteSession`` with a ``CairnSession`` of that signature on a stream
prefix of the test's own (each SQLite test had a fresh database). .ci/frameworks runs the tests
that exercise session behaviour; the ones about SQLite's connections, locks, rollbacks and
corrupt rows test SQLite, not the session contract, and are deselected there by name.

Use: ``pytest -p sdk_session_plugin`` with this directory on ``PYTHONPATH`` and ``CAIRN_BIN``
set, from the root of the SDK's source distribution.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents.memory.session_settings import SessionSettings, coerce_session_settings

from cairn_client.openai_agents import CairnSession


def _harness() -> Any:
    path = Path(__file__).resolve().parents[1] / "server" / "harness.py"
    spec = importlib.util.spec_from_file_location("cairn_test_harness", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def cairn_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    harness = _harness()
    binary = harness.cairn_binary()
    root = tmp_path_factory.mktemp("cairn-sdk")
    token = harness.new_token()
    auth = root / "auth.toml"
    auth.write_text(
        f'[[principal]]\nname = "agents"\n{harness.token_hash_line(binary, token)}\n'
        'rules = [{ prefix = "sdk-", allow = ["read", "append", "delete"] }]\n'
    )
    server = harness.Server(binary, root / "data", root / "server.log", ["--auth", str(auth)])
    server.start()
    try:
        yield server.url, token
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def sqlite_session_is_cairn(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, cairn_deployment: tuple[str, str]
) -> None:
    url, token = cairn_deployment
    prefix = f"sdk-{uuid.uuid4().hex[:10]}:"

    class SessionUnderTest(CairnSession):
        """``SQLiteSession``'s constructor, a ``CairnSession`` underneath."""

        def __init__(
            self,
            session_id: str,
            db_path: object = ":memory:",
            sessions_table: str = "agent_sessions",
            messages_table: str = "agent_messages",
            session_settings: SessionSettings | dict[str, Any] | None = None,
        ) -> None:
            settings = coerce_session_settings(session_settings) if session_settings is not None else None
            super().__init__(session_id, url, token, stream_prefix=prefix, session_settings=settings)

        def close(self) -> None:
            """Nothing to release: the connections belong to their event loops."""

    if hasattr(request.module, "SQLiteSession"):
        monkeypatch.setattr(request.module, "SQLiteSession", SessionUnderTest)
