"""One :class:`AsyncClient` per event loop, for the framework adapters.

An httpx connection pool belongs to the event loop it was first used on, and the frameworks
run one adapter object on several: the Agents SDK's ``Runner.run_sync`` makes a loop of its
own, a sync LangGraph graph runs the saver on the saver's private loop while async code may
call it from another. So an adapter asks for the client of the running loop.
"""

from __future__ import annotations

import asyncio
import weakref

from ._async import AsyncClient


class LoopClients:
    """Makes, per running event loop, a client of ``url`` with ``token``; or always hands out
    ``given`` (the caller then owns it and its loop)."""

    def __init__(self, url: str, token: str | None, given: AsyncClient | None = None) -> None:
        self._url, self._token, self._given = url, token, given
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClient] = weakref.WeakKeyDictionary()

    def get(self) -> AsyncClient:
        """The client for the running event loop."""
        if self._given is not None:
            return self._given
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = AsyncClient(self._url, token=self._token)
        return client

    async def aclose(self) -> None:
        """Closes the running loop's client (``given`` too)."""
        client = self._given or self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
