"""An OpenAI Agents SDK session on cairn: :class:`CairnSession`.

Install with ``pip install "cairn-client[openai-agents]"``; pass it wherever the SDK takes a
session (``Runner.run(agent, input, session=CairnSession("chat-42", url=..., token=...))``).

**A session is a stream.** Session ``S`` lives on stream ``openai-agents:S``:

- ``session.item``: one conversation item (its JSON is the event's data); one ``add_items``
  call appends its items atomically, in order.
- ``session.popped``: ``{"version": V}``, ``pop_item`` removed the item at stream version ``V``.

``clear_session`` soft-deletes the stream: reads show only what is added after it.

**Concurrency.** Adding never replaces anything, so concurrent ``add_items`` lose nothing
(the log orders them). ``pop_item`` reads the newest item and appends its ``session.popped``
with the stream's version as read: if anything was appended meanwhile the append is refused
and it reads again, so two concurrent pops never return the same item and a pop never removes
an item it did not return.
"""

from __future__ import annotations

from typing import Any

from agents.items import TResponseInputItem
from agents.memory.session import SessionABC
from agents.memory.session_settings import SessionSettings, resolve_session_limit

from ._async import AsyncClient
from ._core import DEFAULT_BASE_URL
from ._errors import NotFound, WrongExpectedVersion
from ._loops import LoopClients
from ._types import NewEvent

__all__ = ["CairnSession", "SESSION_STREAM_PREFIX"]

SESSION_STREAM_PREFIX = "openai-agents:"
"""Stream name of session ``S``: this prefix, then ``S``."""

ITEM_EVENT = "session.item"
POPPED_EVENT = "session.popped"

PAGE_SIZE = 500
"""Events per read."""


class CairnSession(SessionABC):
    """The Agents SDK ``Session`` on a ``cairn serve``: conversation history that survives the
    process and is shared by every process that opens the same ``session_id``.

    ``url`` and ``token`` reach the server as :class:`cairn_client.AsyncClient` does; pass
    ``client`` instead to share one. ``session_settings.limit`` is the default ``limit`` of
    :meth:`get_items`.
    """

    def __init__(
        self,
        session_id: str,
        url: str = DEFAULT_BASE_URL,
        token: str | None = None,
        *,
        client: AsyncClient | None = None,
        session_settings: SessionSettings | None = None,
        stream_prefix: str = SESSION_STREAM_PREFIX,
    ) -> None:
        self.session_id = session_id
        self.session_settings = session_settings or SessionSettings()
        self.stream = f"{stream_prefix}{session_id}"
        self._clients = LoopClients(url, token, client)

    @property
    def client(self) -> AsyncClient:
        """The client for the running event loop (one per loop: the SDK runs a session on
        several, ``Runner.run_sync`` makes its own)."""
        return self._clients.get()

    async def aclose(self) -> None:
        """Closes this event loop's connections."""
        await self._clients.aclose()

    async def _newest(self, limit: int | None) -> tuple[list[tuple[int, TResponseInputItem]], int | None]:
        """Live items newest first (at most ``limit`` when given), each with its version, and the
        stream's last version (``None`` when the stream has nothing to read)."""
        items: list[tuple[int, TResponseInputItem]] = []
        popped: set[int] = set()
        last: int | None = None
        try:
            async for event in self.client.read_stream(self.stream, direction="backward", page_size=PAGE_SIZE):
                last = event.version if last is None else last
                # Read backward, a pop is met before the item it removed.
                if event.type == POPPED_EVENT and isinstance(event.data, dict):
                    version = event.data.get("version")
                    if isinstance(version, int):
                        popped.add(version)
                elif event.type == ITEM_EVENT and event.version not in popped:
                    items.append((event.version, event.data))
                    if limit is not None and len(items) >= limit:
                        break
        except NotFound:
            pass
        return items, last

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The history in order; with ``limit`` (or ``session_settings.limit``) the newest
        ``limit`` items, in order. A limit of 0 gives none, a negative one all."""
        wanted = resolve_session_limit(limit, self.session_settings)
        if wanted == 0:
            return []
        items, _ = await self._newest(wanted if wanted is not None and wanted > 0 else None)
        return [item for _, item in reversed(items)]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Appends ``items`` atomically, in order."""
        if not items:
            return
        await self.client.append(self.stream, [NewEvent(ITEM_EVENT, _json(item)) for item in items])

    async def pop_item(self) -> TResponseInputItem | None:
        """Removes and returns the newest item, or ``None`` when there is none."""
        while True:
            items, last = await self._newest(1)
            if not items or last is None:
                return None
            version, item = items[0]
            try:
                await self.client.append(self.stream, NewEvent(POPPED_EVENT, {"version": version}), expected_version=last)
            except WrongExpectedVersion:
                continue
            return item

    async def clear_session(self) -> None:
        """Removes every item (the stream is soft-deleted; items added later start afresh)."""
        try:
            await self.client.delete_stream(self.stream)
        except NotFound:
            pass


def _json(item: Any) -> Any:
    """The item as plain JSON (the SDK's items are dicts; a pydantic model is dumped)."""
    dump = getattr(item, "model_dump", None)
    return dump(mode="json", exclude_unset=True) if callable(dump) else item
