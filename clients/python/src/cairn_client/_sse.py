"""An incremental Server-Sent Events decoder (the WHATWG "event stream interpretation").

Feed it text as it arrives, in chunks of any size; it returns each complete message when its
terminating blank line has arrived. Rules it follows, because cairn's resume logic depends on
them:
- lines end with ``\\r\\n``, ``\\n`` or ``\\r``; a ``\\r`` at the end of a chunk is held until the
  next chunk shows whether a ``\\n`` follows, so a split ``\\r\\n`` is one line end, not two;
- ``data:`` lines accumulate, joined by ``\\n``; one space after the colon is dropped;
- a message is dispatched on a blank line, and only if it had ``data`` (a block of only
  comments or only ``id:`` does not dispatch, but an ``id:`` still updates the last event id);
- ``id`` values containing NUL are ignored; the last event id persists across messages;
- lines starting with ``:`` are comments (the server's keep-alives) and are ignored;
- a message cut off by the end of the stream (no blank line yet) is never dispatched.

It does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEDecoder", "SSEMessage"]


@dataclass(frozen=True)
class SSEMessage:
    """One dispatched message: ``event`` defaults to ``"message"``; ``id`` is the last event id
    seen so far (``None`` if none)."""

    event: str
    data: str
    id: str | None
    retry: int | None = None


class SSEDecoder:
    """Turns chunks of an event stream into :class:`SSEMessage` values."""

    def __init__(self) -> None:
        self._buffer = ""
        self._data: list[str] = []
        self._event = ""
        self._retry: int | None = None
        self.last_event_id: str | None = None

    def feed(self, chunk: str) -> list[SSEMessage]:
        """Consumes ``chunk`` and returns the messages it completed, in order."""
        self._buffer += chunk
        out: list[SSEMessage] = []
        while True:
            line, rest = self._split_line(self._buffer)
            if line is None:
                break
            self._buffer = rest
            message = self._line(line)
            if message is not None:
                out.append(message)
        return out

    @staticmethod
    def _split_line(buffer: str) -> tuple[str | None, str]:
        cr = buffer.find("\r")
        lf = buffer.find("\n")
        if cr == -1 and lf == -1:
            return None, buffer
        if cr == -1 or (lf != -1 and lf < cr):
            return buffer[:lf], buffer[lf + 1 :]
        # A CR: it may be the first half of a CRLF split across chunks.
        if cr + 1 == len(buffer):
            return None, buffer
        if buffer[cr + 1] == "\n":
            return buffer[:cr], buffer[cr + 2 :]
        return buffer[:cr], buffer[cr + 1 :]

    def _line(self, line: str) -> SSEMessage | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry":
            if value.isdigit():
                self._retry = int(value)
        return None

    def _dispatch(self) -> SSEMessage | None:
        data, event, retry = self._data, self._event, self._retry
        self._data, self._event, self._retry = [], "", None
        if not data:
            return None
        return SSEMessage(event=event or "message", data="\n".join(data), id=self.last_event_id, retry=retry)
