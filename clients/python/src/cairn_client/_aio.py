"""The async client's default HTTP stack: an ``httpx`` transport that sends through ``aiohttp``.

Why: measured against one ``cairn serve``, httpx's own async connection pool (httpcore) spent
about 8 ms of CPU per request with 64 concurrent calls and managed under 100 requests/s, where
aiohttp's pool spends about 0.2 ms and keeps up with the server. The client's public surface
stays httpx's (``httpx.Response`` reaches the core, ``httpx`` exceptions reach the retry loop, a
caller's own ``transport=`` is used as before): only the bytes move through aiohttp.

Under trio (aiohttp is asyncio only) the transport hands every request to httpx's default
transport instead.

Mapping of failures, so that the retry rules stay right: a connection that could not be made is
``httpx.ConnectError`` (the request was never sent: safe to retry), a connect timeout
``httpx.ConnectTimeout``, a read timeout ``httpx.ReadTimeout``, anything else on the way
``httpx.ReadError`` (the request may have reached the server).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import aiohttp
import httpx

from ._core import POOL_CONNECTIONS_MAX

# Headers aiohttp writes itself from the URL and the body; passing httpx's copies would
# duplicate them.
_OWN_HEADERS = frozenset({b"host", b"content-length", b"transfer-encoding"})


def _timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
    t: dict[str, Any] = request.extensions.get("timeout", {})
    pool, connect, read = t.get("pool"), t.get("connect"), t.get("read")
    return aiohttp.ClientTimeout(
        total=None,
        connect=None if pool is None or connect is None else pool + connect,
        sock_connect=connect,
        sock_read=read,
    )


def _error(error: BaseException, request: httpx.Request, connecting: bool) -> httpx.TransportError:
    """The httpx exception the retry loop understands for an aiohttp failure."""
    message = f"{type(error).__name__}: {error}"
    if isinstance(error, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        if connecting or isinstance(error, aiohttp.ConnectionTimeoutError):
            return httpx.ConnectTimeout(message, request=request)
        return httpx.ReadTimeout(message, request=request)
    if isinstance(error, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    return httpx.ReadError(message, request=request)


class _Body(httpx.AsyncByteStream):
    """An aiohttp response's body as httpx reads it; closing it returns the connection."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request):
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            raise _error(e, self._request, connecting=False) from e

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx's requests through one ``aiohttp.ClientSession`` (made on first use, in the
    running event loop); see the module documentation."""

    def __init__(self, verify: ssl.SSLContext | bool = True, connections: int = POOL_CONNECTIONS_MAX):
        self._ssl: ssl.SSLContext | bool = verify
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fallback: httpx.AsyncHTTPTransport | None = None

    def _asyncio(self) -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self._asyncio():
            if self._fallback is None:
                self._fallback = httpx.AsyncHTTPTransport(verify=self._ssl)
            return await self._fallback.handle_async_request(request)
        loop = asyncio.get_running_loop()
        if self._session is not None and self._loop is not loop:
            # A session belongs to the loop it was made in; a client used from another loop
            # (a later asyncio.run, say) gets a session of its own there.
            self._session = None
        if self._session is None or self._session.closed:
            self._loop = loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections, ssl=self._ssl),
                # httpx decodes the body (it reads Content-Encoding); aiohttp must not as well.
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw if k.lower() not in _OWN_HEADERS]
        body = await request.aread()
        try:
            response = await self._session.request(
                request.method,
                str(request.url),
                headers=headers,
                data=body if body else None,
                allow_redirects=False,
                timeout=_timeout(request),
            )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise _error(e, request, connecting=isinstance(e, aiohttp.ClientConnectorError)) from e
        return httpx.Response(
            status_code=response.status,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers],
            stream=_Body(response, request),
            request=request,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._fallback is not None:
            await self._fallback.aclose()
            self._fallback = None

    async def __aenter__(self) -> AiohttpTransport:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None = None,
        value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()
