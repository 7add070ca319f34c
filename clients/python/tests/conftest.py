"""Shared pytest configuration: async tests run through anyio's plugin, on asyncio (where the
async client's bytes go through aiohttp) and on trio (where they go through httpx's own
transport), so both of the async client's HTTP stacks are exercised."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend
