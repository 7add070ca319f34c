"""The README's Python examples run, in order, against the real server, so the documentation
cannot drift from the client."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from .harness import PYTHON_DIR, Server

README = PYTHON_DIR / "README.md"
DEFAULT_URL = "http://127.0.0.1:7070"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def run(block: str, namespace: dict[str, Any], url: str) -> None:
    assert DEFAULT_URL in block or "client" in namespace, "a block needs a client"
    exec(compile(block.replace(DEFAULT_URL, url), str(README), "exec"), namespace)


def test_the_readme_has_the_examples_it_promises() -> None:
    text = "\n".join(blocks())
    for needle in ("client.append(", "client.read_stream(", "client.subscribe(", "AsyncClient", "WrongExpectedVersion"):
        assert needle in text, needle


@pytest.fixture
def namespace() -> Iterator[dict[str, Any]]:
    """The examples run as the body of a module (dataclasses look their module up)."""
    module = types.ModuleType("readme_examples")
    sys.modules[module.__name__] = module
    try:
        yield module.__dict__
    finally:
        del sys.modules[module.__name__]


def test_readme_examples_run(server: Server, namespace: dict[str, Any]) -> None:
    try:
        for block in blocks():
            run(block, namespace, server.url)
        assert namespace["state"].goal == "find cheap flights"
    finally:
        if "client" in namespace:
            namespace["client"].close()
