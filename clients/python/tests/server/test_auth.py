"""Bearer-token auth against a server started with ``--auth``: no token or an unknown one is
Unauthorized; a known token is allowed exactly what its principal's prefix rules grant
(Forbidden otherwise), for appends, reads, subscriptions and admin calls."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

import cairn_client as cc
from cairn_client import NewEvent

from .conftest import AuthServer


@pytest.fixture
def names() -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:10]
    yield f"agent-{tag}", f"other-{tag}"


def connect(auth: AuthServer, token: str | None) -> cc.Client:
    # Default retries: after answering 401/403 before reading a request body, the server may
    # close the kept-alive connection (see REQUESTS.md, "pyclient"); a read retried on a fresh
    # connection is what a real client does.
    return cc.Client(auth.server.url, token=token, backoff=0.01)


def test_no_token_or_an_unknown_one_is_unauthorized(auth_server: AuthServer, names: tuple[str, str]) -> None:
    for token in (None, "not-a-known-token"):
        with connect(auth_server, token) as c:
            with pytest.raises(cc.Unauthorized) as info:
                c.append(names[0], NewEvent("T"))
            assert info.value.status == 401 and info.value.code == "unauthorized" and info.value.message
            with pytest.raises(cc.Unauthorized):
                c.head()
            with pytest.raises(cc.Unauthorized):
                next(c.subscribe())


def test_rules_grant_by_prefix_and_deny_the_rest(auth_server: AuthServer, names: tuple[str, str]) -> None:
    mine, theirs = names
    with connect(auth_server, auth_server.agent) as agent:
        result = agent.append(mine, NewEvent("ToolCalled"))
        assert [e.type for e in agent.read_stream(mine)] == ["ToolCalled"]
        with pytest.raises(cc.Forbidden) as info:
            agent.append(theirs, NewEvent("T"))
        assert info.value.status == 403 and info.value.code == "forbidden"
        with pytest.raises(cc.Forbidden):
            agent.append_multi([cc.StreamAppend(mine, [NewEvent("T")]), cc.StreamAppend(theirs, [NewEvent("T")])])
        with pytest.raises(cc.Forbidden):
            agent.verify()
        with pytest.raises(cc.Forbidden):
            next(agent.subscribe(stream_prefix="other-"))
        with agent.subscribe(from_position=result.first_position, stream=mine) as sub:
            assert next(sub).position == result.first_position

    with connect(auth_server, auth_server.reader) as reader:
        assert [e.type for e in reader.read_stream(mine)] == ["ToolCalled"]
        assert reader.head().position is not None
        with pytest.raises(cc.Forbidden):
            reader.append(mine, NewEvent("T"))
        with pytest.raises(cc.Forbidden):
            reader.verify()

    with connect(auth_server, auth_server.admin) as admin:
        admin.append(theirs, NewEvent("T"))
        assert admin.verify().ok
    # The refused multi-stream append wrote nothing to either stream.
    with connect(auth_server, auth_server.admin) as admin:
        assert len(list(admin.read_stream(mine))) == 1
        assert len(list(admin.read_stream(theirs))) == 1
