"""Every call, sync and async, sends what the contract says (method, percent-encoded path,
query, JSON body, bearer token) and decodes the contract's answer into typed values. Run
against ``httpx.MockTransport``; the same cases run against the real server in tests/server."""

from __future__ import annotations

import base64
import inspect
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

import cairn_client as cc
from cairn_client import AppendResult, Event, NewEvent, StreamAppend

from .mock import EVENT_JSON, Script, event_json, ok

ID = uuid.UUID("0b6f0c1e-6a43-4f4e-9a51-0d2b8f3a9c11")
HASH = "cd" * 32
APPEND = {
    "stream": "agent/7",
    "first_position": 10,
    "last_position": 11,
    "first_version": 0,
    "last_version": 1,
    "hash": HASH,
}


@dataclass
class Case:
    name: str
    call: Callable[[Any], Any]
    method: str
    path: str
    answer: Any
    check: Callable[[Any], bool]
    query: dict[str, str] | None = None
    body: Any = None
    iterate: bool = False


CASES = [
    Case(
        "append",
        lambda c: c.append("agent/7", [NewEvent("ToolCalled", {"tool": "search"}, id=ID)], expected_version=3),
        "POST",
        "/v1/streams/agent%2F7/events",
        APPEND,
        lambda r: r == AppendResult("agent/7", 10, 11, 0, 1, HASH),
        body={"expected_version": 3, "events": [{"id": str(ID), "type": "ToolCalled", "data": {"tool": "search"}}]},
    ),
    Case(
        "append binary with metadata",
        lambda c: c.append("s", NewEvent("Blob", b"\x00\x01\xff", metadata={"run": 1}, id=ID), expected_version="no_stream"),
        "POST",
        "/v1/streams/s/events",
        {**APPEND, "stream": "s"},
        lambda r: r.stream == "s",
        body={
            "expected_version": "no_stream",
            "events": [{"id": str(ID), "type": "Blob", "data_b64": "AAH/", "metadata": {"run": 1}}],
        },
    ),
    Case(
        "append_multi",
        lambda c: c.append_multi(
            [StreamAppend("a", [NewEvent("T", None, id=ID)], "exists"), StreamAppend("b", [NewEvent("U", [1], id=ID)])]
        ),
        "POST",
        "/v1/append",
        {"results": [{**APPEND, "stream": "a"}, {**APPEND, "stream": "b"}]},
        lambda r: [x.stream for x in r] == ["a", "b"],
        body={
            "appends": [
                {"stream": "a", "expected_version": "exists", "events": [{"id": str(ID), "type": "T", "data": None}]},
                {"stream": "b", "expected_version": "any", "events": [{"id": str(ID), "type": "U", "data": [1]}]},
            ]
        },
    ),
    Case(
        "read_stream_page backward",
        lambda c: c.read_stream_page("agent-7", from_version=5, limit=2, direction="backward"),
        "GET",
        "/v1/streams/agent-7/events",
        {"events": [event_json(5), event_json(4)], "next": 3},
        lambda r: [e.version for e in r.events] == [5, 4] and r.next == 3,
        query={"from": "5", "limit": "2", "direction": "backward"},
    ),
    Case(
        "read_all_page filtered",
        lambda c: c.read_all_page(from_position=7, limit=3, stream_prefix="agent-", type_prefix="Tool"),
        "GET",
        "/v1/events",
        {"events": [], "next": 100007},
        lambda r: r.events == () and r.next == 100007,
        query={"from": "7", "limit": "3", "stream_prefix": "agent-", "type_prefix": "Tool"},
    ),
    Case(
        "streams",
        lambda c: c.streams(prefix="agent-"),
        "GET",
        "/v1/streams",
        [{"stream": "agent-7", "last_version": 3, "events": 4}],
        lambda r: r == [cc.StreamInfo("agent-7", 3, 4)],
        query={"prefix": "agent-"},
    ),
    Case("head", lambda c: c.head(), "GET", "/v1/head", {"position": None, "hash": HASH}, lambda r: r == cc.Head(None, HASH)),
    Case(
        "verify",
        lambda c: c.verify(from_position=3),
        "POST",
        "/v1/verify",
        {"ok": False, "events": 9, "head_position": 8, "head_hash": HASH, "first_bad_position": 5, "detail": "chain"},
        lambda r: r == cc.VerifyReport(False, 9, 8, HASH, 5, "chain"),
        query={"from": "3"},
    ),
    Case(
        "create_checkpoint",
        lambda c: c.create_checkpoint(kind="full"),
        "POST",
        "/v1/checkpoints",
        {"sequence": 2, "position": 41, "hash": "ee" * 32, "kind": "full", "log_hash": HASH},
        lambda r: (r.sequence, r.kind, r.position, r.hash, r.status) == (2, "full", 41, "ee" * 32, None),
        body={"kind": "full"},
    ),
    Case(
        "list_checkpoints",
        lambda c: c.list_checkpoints(),
        "GET",
        "/v1/checkpoints",
        {
            "checkpoints": [
                {"sequence": 1, "file": "a", "info": {"sequence": 1, "kind": "full", "position": 9}, "status": "valid"},
                {"sequence": 2, "file": "b", "info": None, "status": "damaged", "detail": "bad crc"},
            ]
        },
        lambda r: [(x.sequence, x.position, x.status, x.detail) for x in r]
        == [(1, 9, "valid", None), (2, None, "damaged", "bad crc")],
    ),
    Case("healthz", lambda c: c.healthz(), "GET", "/healthz", {"status": "ok"}, lambda r: r == {"status": "ok"}),
    Case(
        "kv.get",
        lambda c: c.kv.get("session/42", min_position=9),
        "GET",
        "/v1/kv/session%2F42",
        {"key": "session/42", "value": {"a": 1}, "version": 2, "expires_at": None},
        lambda r: r == cc.KvEntry("session/42", {"a": 1}, 2, None),
        query={"min_position": "9"},
    ),
    Case(
        "kv.get at a version",
        lambda c: c.kv.get("k", version=0),
        "GET",
        "/v1/kv/k",
        {"key": "k", "value": 1, "version": 0, "expires_at": None},
        lambda r: r == cc.KvEntry("k", 1, 0, None),
        query={"version": "0"},
    ),
    Case(
        "kv.exists",
        lambda c: c.kv.exists("queue/1", min_position=4),
        "HEAD",
        "/v1/kv/queue%2F1",
        None,
        lambda r: r is True,
        query={"min_position": "4"},
    ),
    Case(
        "kv.set",
        lambda c: c.kv.set("k", [1, 2], ttl_ms=500, expected_version="no_stream"),
        "PUT",
        "/v1/kv/k",
        {"key": "k", "version": 2, "position": 77},
        lambda r: (r.value, r.position) == (2, 77),
        body={"value": [1, 2], "ttl_ms": 500, "expected_version": "no_stream"},
    ),
    Case(
        "kv.delete",
        lambda c: c.kv.delete("k", expected_version=2),
        "DELETE",
        "/v1/kv/k",
        {"deleted": True, "position": 78},
        lambda r: r == cc.KvDeleted(True, 78),
        body={"expected_version": 2},
    ),
    Case(
        "kv.incr", lambda c: c.kv.incr("n", 5), "POST", "/v1/kv/n/incr", {"value": 12}, lambda r: r.value == 12, body={"delta": 5}
    ),
    Case(
        "kv.append",
        lambda c: c.kv.append("s", "abc"),
        "POST",
        "/v1/kv/s/append",
        {"length": 6},
        lambda r: r.value == 6,
        body={"value": "abc"},
    ),
    Case(
        "kv.push",
        lambda c: c.kv.push("l", [1, "x"], end="left"),
        "POST",
        "/v1/kv/l/push",
        {"length": 2},
        lambda r: r.value == 2,
        body={"values": [1, "x"], "end": "left"},
    ),
    Case(
        "kv.pop",
        lambda c: c.kv.pop("l", end="right", count=2),
        "POST",
        "/v1/kv/l/pop",
        {"values": ["x", 1]},
        lambda r: r.value == ["x", 1],
        body={"end": "right", "count": 2},
    ),
    Case(
        "kv.range",
        lambda c: c.kv.range("l", 1, -2),
        "GET",
        "/v1/kv/l/range",
        {"values": [2, 3]},
        lambda r: r == [2, 3],
        query={"start": "1", "stop": "-2"},
    ),
    Case(
        "kv.sadd",
        lambda c: c.kv.sadd("set", ["a", "b"]),
        "POST",
        "/v1/kv/set/sadd",
        {"added": 2},
        lambda r: r.value == 2,
        body={"members": ["a", "b"]},
    ),
    Case(
        "kv.srem",
        lambda c: c.kv.srem("set", ["a"]),
        "POST",
        "/v1/kv/set/srem",
        {"removed": 1},
        lambda r: r.value == 1,
        body={"members": ["a"]},
    ),
    Case("kv.members", lambda c: c.kv.members("set"), "GET", "/v1/kv/set/members", {"members": ["b"]}, lambda r: r == ["b"]),
    Case(
        "kv.history",
        lambda c: c.kv.history("k", limit=2),
        "GET",
        "/v1/kv/k/history",
        {"versions": [{"version": 1, "op": "set", "value": 3, "timestamp": 5, "position": 8}]},
        lambda r: r == [cc.KvVersion(1, "set", 3, 5, 8)],
        query={"limit": "2"},
    ),
    Case(
        "kv.keys_page",
        lambda c: c.kv.keys_page(prefix="session/", after="session/1", limit=2),
        "GET",
        "/v1/kv",
        {"keys": ["session/2", "session/3"], "next": "session/3"},
        lambda r: r == cc.KeyPage(("session/2", "session/3"), "session/3"),
        query={"prefix": "session/", "after": "session/1", "limit": "2"},
    ),
    Case(
        "kv.get_many",
        lambda c: c.kv.get_many(["a", "b"]),
        "POST",
        "/v1/kv:get",
        {"values": {"a": 1, "b": None}},
        lambda r: r == {"a": 1, "b": None},
        body={"keys": ["a", "b"]},
    ),
    Case(
        "kv.txn",
        lambda c: c.kv.txn([{"op": "set", "key": "a", "value": 1}], watch={"a": None}),
        "POST",
        "/v1/kv:txn",
        {"outputs": [{"version": 0}], "position": 90},
        lambda r: r.position == 90 and r.outputs == ({"version": 0},),
        body={"ops": [{"op": "set", "key": "a", "value": 1}], "watch": {"a": None}},
    ),
    Case(
        "audit.append",
        lambda c: c.audit.append(
            level="info",
            category="agent_activity",
            event="tool.called",
            actor={"type": "agent", "id": "a-7"},
            outcome="success",
            id=ID,
        ),
        "POST",
        "/v1/audit",
        {"id": str(ID), "position": 12, "hash": HASH},
        lambda r: r == cc.AuditReceipt(str(ID), 12, HASH),
        body={
            "level": "info",
            "category": "agent_activity",
            "event": "tool.called",
            "actor": {"type": "agent", "id": "a-7"},
            "outcome": "success",
            "id": str(ID),
        },
    ),
    Case(
        "audit.query_page",
        lambda c: c.audit.query_page(actor="a-7", level="info", order="asc", limit=1),
        "GET",
        "/v1/audit",
        {"entries": [{"id": "e1", "position": 3, "event": "x", "level": "info"}], "next": "c1"},
        lambda r: [e.id for e in r.entries] == ["e1"] and r.next == "c1",
        query={"actor": "a-7", "level": "info", "order": "asc", "limit": "1"},
    ),
    Case(
        "audit.proof",
        lambda c: c.audit.proof(str(ID)),
        "GET",
        f"/v1/audit/{ID}/proof",
        {"entry": {"id": str(ID), "position": 12}, "position": 12, "hash": HASH, "verified": True},
        lambda r: r.verified and r.entry.id == str(ID) and r.position == 12,
    ),
    Case(
        "meta.register_schema",
        lambda c: c.meta.register_schema("tool.call", {"type": "object"}),
        "POST",
        "/v1/meta/schemas/tool.call/versions",
        {"version": 1},
        lambda r: r == 1,
        body={"schema": {"type": "object"}},
    ),
    Case(
        "meta.set_compatibility",
        lambda c: c.meta.set_compatibility("tool.call", "backward"),
        "PUT",
        "/v1/meta/schemas/tool.call/compatibility",
        {"position": 3},
        lambda r: r == {"position": 3},
        body={"mode": "backward"},
    ),
    Case(
        "meta.get_schema",
        lambda c: c.meta.get_schema("tool.call"),
        "GET",
        "/v1/meta/schemas/tool.call/versions/latest",
        {"subject": "tool.call", "version": 2, "schema": {"type": "object"}},
        lambda r: (r.version, r.schema) == (2, {"type": "object"}),
    ),
    Case(
        "meta.validate",
        lambda c: c.meta.validate("tool.call", {"a": 1}, version=2),
        "POST",
        "/v1/meta/schemas/tool.call/validate",
        {"valid": False, "errors": ["a is not allowed"]},
        lambda r: r == cc.Validation(False, ("a is not allowed",)),
        body={"payload": {"a": 1}, "version": 2},
    ),
    Case(
        "meta.register_instance",
        lambda c: c.meta.register_instance("search", "i/1", endpoints=["http://h:1"], tags=["gpu"], ttl_ms=1000),
        "PUT",
        "/v1/meta/services/search/instances/i%2F1",
        {"position": 4},
        lambda r: r["position"] == 4,
        body={"endpoints": ["http://h:1"], "tags": ["gpu"], "ttl_ms": 1000},
    ),
    Case(
        "meta.deregister_instance",
        lambda c: c.meta.deregister_instance("search", "i1"),
        "DELETE",
        "/v1/meta/services/search/instances/i1",
        {},
        lambda r: r == {},
    ),
    Case(
        "meta.services",
        lambda c: c.meta.services(name="search", tag="gpu"),
        "GET",
        "/v1/meta/services",
        {"instances": [{"service": "search", "instance": "i1", "endpoints": ["http://h:1"], "tags": ["gpu"]}]},
        lambda r: r[0].tags == ["gpu"],
        query={"name": "search", "tag": "gpu"},
    ),
    Case(
        "meta.set_config",
        lambda c: c.meta.set_config("model", "gpt", scope="prod"),
        "PUT",
        "/v1/meta/config/model",
        {"version": 3},
        lambda r: r == 3,
        body={"value": "gpt", "scope": "prod"},
    ),
    Case(
        "meta.get_config",
        lambda c: c.meta.get_config("model", scope="prod", as_of=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
        "GET",
        "/v1/meta/config/model",
        {"key": "model", "value": "gpt", "version": 3},
        lambda r: (r.value, r.version) == ("gpt", 3),
        query={"scope": "prod", "as_of": str(int(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc).timestamp() * 1000))},
    ),
    Case(
        "meta.config_history",
        lambda c: c.meta.config_history("model"),
        "GET",
        "/v1/meta/config/model/history",
        {"versions": [{"value": "a", "version": 1}, {"value": "b", "version": 2}]},
        lambda r: [v.value for v in r] == ["a", "b"],
    ),
    Case(
        "meta.add_relation",
        lambda c: c.meta.add_relation("agent:1", "tool:2", "uses", properties={"w": 1}),
        "POST",
        "/v1/meta/relations",
        {"position": 5},
        lambda r: r == {"position": 5},
        body={"from": "agent:1", "to": "tool:2", "type": "uses", "properties": {"w": 1}},
    ),
    Case(
        "meta.remove_relation",
        lambda c: c.meta.remove_relation("agent:1", "tool:2", "uses"),
        "DELETE",
        "/v1/meta/relations",
        {"removed": True},
        lambda r: r == {"removed": True},
        body={"from": "agent:1", "to": "tool:2", "type": "uses"},
    ),
    Case(
        "meta.relations",
        lambda c: c.meta.relations("agent:1", direction="both", depth=2),
        "GET",
        "/v1/meta/relations/agent%3A1",
        {"edges": [{"from": "agent:1", "to": "tool:2", "type": "uses", "depth": 1}], "truncated": False},
        lambda r: r[0]["to"] == "tool:2",
        query={"direction": "both", "depth": "2"},
    ),
]


def check_request(case: Case, script: Script) -> None:
    assert len(script.requests) == 1
    request = script.requests[0]
    assert request.method == case.method
    assert script.path() == case.path
    if case.query is not None:
        assert script.query() == case.query
    if case.body is not None:
        assert script.body() == case.body
    assert request.headers["authorization"] == "Bearer secret"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_sync_call(case: Case) -> None:
    script = Script([ok(case.answer)])
    with cc.Client("http://cairn.test", token="secret", transport=script.transport()) as client:
        result = case.call(client)
    check_request(case, script)
    assert case.check(result), result


@pytest.mark.anyio
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_async_call(case: Case) -> None:
    script = Script([ok(case.answer)])
    async with cc.AsyncClient("http://cairn.test", token="secret", transport=script.async_transport()) as client:
        result = case.call(client)
        assert inspect.isawaitable(result)
        result = await result
    check_request(case, script)
    assert case.check(result), result


def test_the_contract_example_event_decodes() -> None:
    event = Event.from_json(EVENT_JSON)
    assert event.position == 41 and event.stream == "agent-7" and event.version == 3
    assert event.id == ID and event.type == "ToolCalled"
    assert event.timestamp == datetime(2026, 11, 22, 16, 11, 51, 123000, tzinfo=timezone.utc)
    assert event.metadata == {"run_id": "r-1"} and event.data == {"tool": "search", "query": "..."}
    assert not event.is_binary


def test_binary_payloads_decode_to_bytes() -> None:
    raw = bytes(range(256))
    event = Event.from_json({**EVENT_JSON, "data": None, "data_b64": base64.b64encode(raw).decode()})
    assert event.is_binary and event.data == raw


def test_an_erased_event_decodes_with_its_header_and_no_payload() -> None:
    header = {k: v for k, v in EVENT_JSON.items() if k not in ("data", "metadata")}
    event = Event.from_json({**header, "erased": True})
    assert event.erased and event.position == 41 and event.type == "ToolCalled"
    assert event.data is None and event.metadata == {}
    assert not Event.from_json(EVENT_JSON).erased


def test_audit_appends_get_an_id_and_are_retried_with_it() -> None:
    receipt = {"id": str(ID), "position": 12, "hash": HASH}
    script = Script([httpx.ReadTimeout("slow"), ok(receipt)])
    with cc.Client("http://cairn.test", transport=script.transport(), backoff=0) as client:
        client.audit.append(level="info", category="security", event="login", actor={"type": "user", "id": "u"})
    assert len(script.requests) == 2
    assert script.body(0) == script.body(1)
    assert uuid.UUID(script.body(0)["id"])


def test_a_new_event_keeps_its_id_across_sends() -> None:
    event = NewEvent("T")
    assert event.to_json() == event.to_json()
    assert event.to_json()["data"] == {}
    assert NewEvent("T").id != event.id


def test_answers_missing_contract_fields_raise_protocol_errors() -> None:
    script = Script([ok({"position": 1})])
    with cc.Client(transport=script.transport(), retries=0) as client, pytest.raises(cc.ProtocolError, match="hash"):
        client.head()
    script = Script([ok({**APPEND, "last_version": "1"})])
    with cc.Client(transport=script.transport()) as client, pytest.raises(cc.ProtocolError, match="last_version"):
        client.append("s", NewEvent("T"))
    script = Script([httpx.Response(200, text="not json")])
    with cc.Client(transport=script.transport()) as client, pytest.raises(cc.ProtocolError, match="not JSON"):
        client.head()


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.append("s", []),
        lambda c: c.append("", NewEvent("T")),
        lambda c: c.append("s", NewEvent("T"), expected_version=-1),
        lambda c: c.append("s", NewEvent("T"), expected_version="latest"),
        lambda c: c.append("s", NewEvent("")),
        lambda c: c.append_multi([]),
        lambda c: c.read_stream_page("s", direction="sideways"),
        lambda c: c.read_stream_page("s", limit=0),
        lambda c: c.kv.push("l", [1], end="middle"),
        lambda c: c.meta.set_compatibility("s", "sometimes"),
        lambda c: c.audit.query_page(colour="red"),
        lambda c: c.audit.query_page(order="up"),
        lambda c: c.subscribe(from_position=-1),
        lambda c: c.create_checkpoint(kind="partial"),
        lambda c: c.kv.set("k", 1, expected_version=-2),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_sent(call: Callable[[Any], Any]) -> None:
    script = Script([])
    with cc.Client(transport=script.transport()) as client, pytest.raises((ValueError, TypeError)):
        call(client)
    assert script.requests == []


def test_exists_is_false_for_a_404_and_raises_for_other_failures() -> None:
    """Issue 14 item 10: EXISTS answers 404 without a body for an absent key; that is False,
    not an error, while a refusal (403) still raises."""
    script = Script([httpx.Response(404), httpx.Response(403)])
    with cc.Client("http://cairn.test", transport=script.transport(), retries=0) as client:
        assert client.kv.exists("absent") is False
        with pytest.raises(cc.CairnError):
            client.kv.exists("secret")
    assert [r.method for r in script.requests] == ["HEAD", "HEAD"]
