"""The key-value, audit and metadata views and the checkpoints, against the real server, with
the contract's semantics: read-your-writes through ``min_position``, compare-and-set and
transactions that fail as WrongExpectedVersion and write nothing, wrong-type errors, and proofs."""

from __future__ import annotations

import uuid

import pytest

import cairn_client as cc



@pytest.fixture
def key() -> str:
    return f"session/{uuid.uuid4().hex[:10]}"


@pytest.fixture
def kv(client: cc.Client) -> cc.KeyValue:
    return client.kv


def test_kv_set_get_compare_and_set_delete(kv: cc.KeyValue, key: str) -> None:
    with pytest.raises(cc.NotFound) as info:
        kv.get(key)
    assert info.value.code == "key_not_found"
    written = kv.set(key, {"turn": 1})
    assert written.position is not None
    entry = kv.get(key, min_position=written.position)
    assert (entry.key, entry.value, entry.version, entry.expires_at) == (key, {"turn": 1}, written.value, None)

    again = kv.set(key, {"turn": 2}, expected_version=entry.version)
    assert again.value > entry.version
    with pytest.raises(cc.WrongExpectedVersion) as conflict:
        kv.set(key, {"turn": 3}, expected_version=entry.version)
    assert conflict.value.actual == again.value
    assert kv.get(key, min_position=again.position).value == {"turn": 2}

    with_ttl = kv.set(key, "short-lived", ttl_ms=3_600_000)
    assert kv.get(key, min_position=with_ttl.position).expires_at is not None

    history = kv.history(key)  # newest first
    assert [v.op for v in history] == ["set", "set", "set"]
    assert [v.position for v in history] == [with_ttl.position, again.position, written.position]
    assert history[-1].value == {"turn": 1}
    with pytest.raises(cc.WrongExpectedVersion):
        kv.set(key, "only if new", expected_version="no_stream")

    gone = kv.delete(key)
    assert gone.deleted
    assert not kv.delete(key).deleted
    with pytest.raises(cc.NotFound):
        kv.get(key, min_position=gone.position)


def test_min_position_beyond_the_head_is_refused(kv: cc.KeyValue, client: cc.Client, key: str) -> None:
    head = client.head().position
    assert head is not None
    with pytest.raises(cc.Invalid) as info:
        kv.get(key, min_position=head + 1_000_000)
    assert info.value.status == 400 and "min_position" in info.value.message


def test_kv_counters_strings_lists_and_sets(kv: cc.KeyValue, key: str) -> None:
    assert kv.incr(f"{key}/n").value == 1
    assert kv.incr(f"{key}/n", 41).value == 42
    assert kv.append(f"{key}/s", "ab").value == 2
    assert kv.append(f"{key}/s", "cd").value == 4
    with pytest.raises(cc.Invalid) as info:
        kv.incr(f"{key}/s")
    assert info.value.code == "not_an_integer"

    assert kv.push(f"{key}/l", [1, 2]).value == 2
    pushed = kv.push(f"{key}/l", ["zero"], end="left")
    assert pushed.value == 3
    assert kv.range(f"{key}/l", min_position=pushed.position) == ["zero", 1, 2]
    assert kv.range(f"{key}/l", -2, -1) == [1, 2]
    assert kv.pop(f"{key}/l").value == ["zero"]
    assert kv.pop(f"{key}/l", end="right", count=5).value == [2, 1]
    with pytest.raises(cc.Invalid) as info:
        kv.push(f"{key}/s", [1])
    assert info.value.code == "wrong_type"

    assert kv.sadd(f"{key}/set", ["b", "a", "a"]).value == 2
    removed = kv.srem(f"{key}/set", ["a", "zz"])
    assert removed.value == 1
    assert kv.members(f"{key}/set", min_position=removed.position) == ["b"]


def test_streams_lists_every_stream_across_pages(client: cc.Client, stream: str) -> None:
    """Issue 23 item 8: ``streams()`` stopped at the server's 10,000-row page without saying so;
    it follows the listing's cursor to the end."""
    names = [f"{stream}/{i}" for i in range(5)]
    for name in names:
        client.append(name, cc.NewEvent("T"))
    assert [s.stream for s in client.streams(prefix=f"{stream}/", page_size=2)] == names
    page = client.streams_page(prefix=f"{stream}/", limit=2)
    assert [s.stream for s in page.streams] == names[:2] and page.next == names[1]
    last = client.streams_page(prefix=f"{stream}/", after=names[3], limit=2)
    assert [s.stream for s in last.streams] == names[4:] and last.next is None


def test_kv_exists_for_every_kind_and_get_at_a_version(kv: cc.KeyValue, key: str) -> None:
    """Issue 14 item 10: EXISTS is true for a key of any kind (HEAD once answered 400 for lists
    and sets), and ``get(version=)`` reads a key as it was."""
    kv.set(f"{key}/v", "first")
    kv.incr(f"{key}/n")
    kv.push(f"{key}/l", [1])
    last = kv.sadd(f"{key}/set", ["a"])
    for name in ("v", "n", "l", "set"):
        assert kv.exists(f"{key}/{name}", min_position=last.position) is True, name
    assert kv.exists(f"{key}/absent") is False
    second = kv.set(f"{key}/v", "second")
    assert kv.get(f"{key}/v", version=0, min_position=second.position).value == "first"
    assert kv.get(f"{key}/v").value == "second"
    with pytest.raises(cc.NotFound) as info:
        kv.get(f"{key}/v", version=7)
    assert info.value.code == "version_not_found"


def test_kv_listing_get_many_and_transactions(kv: cc.KeyValue, key: str) -> None:
    names = [f"{key}/{c}" for c in "cab"]
    last = None
    for i, name in enumerate(names):
        last = kv.set(name, i)
    assert last is not None and last.position is not None
    assert list(kv.keys(prefix=f"{key}/", page_size=2, min_position=last.position)) == sorted(names)
    page = kv.keys_page(prefix=f"{key}/", limit=2)
    assert page.keys == tuple(sorted(names)[:2]) and page.next is not None
    assert kv.get_many([names[0], f"{key}/missing"]) == {names[0]: 0, f"{key}/missing": None}

    version = kv.get(names[0]).version
    done = kv.txn([{"op": "set", "key": names[0], "value": "x"}, {"op": "delete", "key": names[1]}], watch={names[0]: version})
    assert kv.get_many(names[:2], min_position=done.position if done.position is not None else last.position) == {
        names[0]: "x",
        names[1]: None,
    }
    with pytest.raises(cc.WrongExpectedVersion):
        kv.txn([{"op": "set", "key": names[2], "value": "never"}], watch={names[0]: version})
    assert kv.get(names[2]).value == 2


def test_audit_append_query_and_proof(client: cc.Client) -> None:
    actor = f"agent-{uuid.uuid4().hex[:8]}"
    receipts = [
        client.audit.append(
            level=level,
            category="agent_activity",
            event="tool.called",
            actor={"type": "agent", "id": actor},
            target={"type": "tool", "id": "search"},
            context={"trace_id": f"t-{actor}"},
            outcome="success",
        )
        for level in ("info", "warn", "info")
    ]
    assert len({r.id for r in receipts}) == 3 and receipts[0].position < receipts[2].position
    last = receipts[-1].position
    found = list(client.audit.query(actor=actor, min_position=last, order="asc"))
    assert [e.id for e in found] == [r.id for r in receipts]
    # Issue 23 item 8: ``limit`` is the total (it was a page size, and all three came back).
    first_two = list(client.audit.query(actor=actor, order="asc", limit=2))
    assert [e.id for e in first_two] == [r.id for r in receipts[:2]]
    assert found[0].event == "tool.called" and found[0].level == "info"
    warn = list(client.audit.query(actor=actor, level="warn"))
    assert [e.id for e in warn] == [receipts[1].id]
    newest_first = list(client.audit.query(actor=actor, order="desc"))
    assert [e.id for e in newest_first] == [r.id for r in reversed(receipts)]

    proof = client.audit.proof(receipts[1].id)
    assert proof.verified and proof.position == receipts[1].position and proof.hash == receipts[1].hash
    with pytest.raises(cc.NotFound):
        client.audit.proof(str(uuid.uuid4()))
    with pytest.raises(cc.Invalid):
        client.audit.append(level="loud", category="agent_activity", event="x", actor={"type": "agent", "id": actor})


def test_meta_schemas(client: cc.Client) -> None:
    subject = f"tool.call.{uuid.uuid4().hex[:8]}"
    # Closed objects: adding an optional field then accepts everything the old version accepted.
    v1 = {"type": "object", "properties": {"tool": {"type": "string"}}, "required": ["tool"], "additionalProperties": False}
    v2 = {
        "type": "object",
        "properties": {"tool": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["tool"],
        "additionalProperties": False,
    }
    assert client.meta.register_schema(subject, v1) == 1
    client.meta.set_compatibility(subject, "backward")
    assert client.meta.register_schema(subject, v2) == 2
    with pytest.raises(cc.Conflict) as info:
        client.meta.register_schema(subject, {"type": "object", "properties": {"tool": {"type": "integer"}}, "required": ["tool", "x"]})
    assert info.value.code == "incompatible_schema"
    latest = client.meta.get_schema(subject)
    assert (latest.version, latest.schema) == (2, v2)
    assert client.meta.get_schema(subject, 1).schema == v1
    assert client.meta.validate(subject, {"tool": "search", "n": 3}).valid
    invalid = client.meta.validate(subject, {"n": "three"})
    assert not invalid.valid and invalid.errors
    with pytest.raises(cc.NotFound):
        client.meta.get_schema(f"{subject}.missing")


def test_meta_services_config_and_relations(client: cc.Client) -> None:
    def written() -> int:
        # Read-your-writes: the views apply a write after answering it, so each read waits
        # for the log's head (every write so far).
        position = client.head().position
        assert position is not None
        return position

    name = f"search-{uuid.uuid4().hex[:8]}"
    client.meta.register_instance(name, "i-1", endpoints=["http://127.0.0.1:9"], tags=["gpu"], ttl_ms=600_000)
    client.meta.register_instance(name, "i-2", endpoints=["http://127.0.0.1:10"], tags=["cpu"], ttl_ms=600_000)
    assert len(client.meta.services(name=name, min_position=written())) == 2
    assert [s.tags for s in client.meta.services(name=name, tag="gpu")] == [["gpu"]]
    client.meta.deregister_instance(name, "i-1")
    assert [s.tags for s in client.meta.services(name=name, min_position=written())] == [["cpu"]]

    key = f"model.{name}"
    first = client.meta.set_config(key, "small")
    second = client.meta.set_config(key, "large")
    assert second > first
    assert client.meta.get_config(key, min_position=written()).value == "large"
    assert client.meta.get_config(key, version=first).value == "small"
    assert [c.value for c in client.meta.config_history(key)] == ["small", "large"]

    agent, tool = f"agent:{name}", f"tool:{name}"
    client.meta.add_relation(agent, tool, "uses", properties={"weight": 1})
    out = client.meta.relations(agent, min_position=written())
    assert len(out) == 1 and out[0].get("to") == tool
    assert len(client.meta.relations(tool, direction="in")) == 1
    client.meta.remove_relation(agent, tool, "uses")
    assert client.meta.relations(agent, min_position=written()) == []


def test_checkpoints(client: cc.Client, stream: str) -> None:
    appended = client.append(stream, cc.NewEvent("T"))
    full = client.create_checkpoint(kind="full", timeout=120)
    assert full.kind == "full" and full.sequence is not None and full.hash
    assert full.position is not None and full.position >= appended.last_position
    client.kv.set(f"checkpointed/{stream}", 1)
    incremental = client.create_checkpoint(kind="incremental", timeout=120)
    assert incremental.kind == "incremental" and incremental.sequence is not None
    assert incremental.sequence > full.sequence
    listed = {c.sequence: c for c in client.list_checkpoints()}
    assert listed[full.sequence].status == "valid" and listed[full.sequence].position == full.position
    assert listed[incremental.sequence].status == "valid"
    with pytest.raises(ValueError):
        client.create_checkpoint(kind="partial")  # type: ignore[arg-type]
