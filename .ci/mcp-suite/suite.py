"""cairn's MCP servers driven by the official Python MCP SDK (`mcp` on PyPI), as .ci/mcp runs it.

Three parts, each against real processes started here and stopped here (also on failure):

1. Every tool, in the three ways an agent reaches cairn: `cairn mcp --data DIR` and
   `cairn mcp --server URL --token T` over stdio, and `/mcp` on a `cairn serve` over streamable
   HTTP. Tools are listed and every input and output schema is checked (a valid JSON Schema, an
   object; each call's arguments valid against it, each answer validated against the output
   schema by the SDK and again here); every tool is called, and its error cases answer MCP tool
   errors carrying the contract's code: unknown stream, wrong expected version, bad arguments and,
   on the server, missing permission (a token without the rule) and a missing token.
2. The reference memory server (`@modelcontextprotocol/server-memory`) and `cairn mcp` get the
   same sequence of memory-graph calls; after every step their answers and `read_graph` must be
   identical. Nothing is normalised: the reference answers in the order of its file, and cairn
   keeps that order.
3. Concurrency: 2 and 8 `cairn mcp --server` processes on one server create entities and add
   observations at once; none may be lost. The same with 2 and 8 reference processes sharing one
   memory file: what they lose is counted and printed as the baseline, never failed on.

Environment: CAIRN_BIN (the cairn binary), REFERENCE_BIN (the reference server's
mcp-server-memory), WORK (a scratch directory the caller removes), PIDS (a file this script
appends the id of every server it starts to, so the caller can stop them whatever happens).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
from jsonschema import Draft202012Validator
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

CAIRN_BIN = os.environ["CAIRN_BIN"]
REFERENCE_BIN = os.environ["REFERENCE_BIN"]
WORK = Path(os.environ["WORK"])
PIDS = Path(os.environ["PIDS"])

LOG_TOOLS = {
    "append_events", "read_stream", "read_all", "list_streams", "head", "verify", "wait_for_events",
    "kv_get", "kv_set", "kv_compare_and_set", "kv_delete", "kv_list", "audit_query", "checkpoint_status",
}
MEMORY_TOOLS = {
    "create_entities", "create_relations", "add_observations", "delete_entities", "delete_observations",
    "delete_relations", "read_graph", "search_nodes", "open_nodes",
}
ALL_TOOLS = LOG_TOOLS | MEMORY_TOOLS | {"read_graph_as_of"}

# Rounds of (create an entity, add an observation to the shared one) each concurrent writer does.
CONCURRENT_ROUNDS = 10

checks = 0


def check(condition: bool, what: str) -> None:
    global checks
    checks += 1
    if not condition:
        raise AssertionError(what)


def step(text: str) -> None:
    print(f"--- {text} ({time.strftime('%H:%M:%S', time.gmtime())})", flush=True)


# ---------------------------------------------------------------------------------------------
# Processes


def new_token() -> tuple[str, str]:
    """A fresh token and its auth-file hash line, from `cairn token`."""
    out = subprocess.run([CAIRN_BIN, "token"], check=True, capture_output=True, text=True).stdout
    token = re.search(r"^token: (\S+)$", out, re.M)
    line = re.search(r'^(token_hash = "blake3:[0-9a-f]{64}")$', out, re.M)
    assert token and line, f"cairn token printed {out!r}"
    return token.group(1), line.group(1)


class Serve:
    """`cairn serve` on a free loopback port with an auth file: `admin` may do everything,
    `reader` may only read streams starting with `agent-`."""

    def __init__(self) -> None:
        self.admin, admin_line = new_token()
        self.reader, reader_line = new_token()
        auth = WORK / "auth.toml"
        auth.write_text(
            f'[[principal]]\nname = "admin"\n{admin_line}\nrules = [ {{ prefix = "", allow = ["admin"] }} ]\n\n'
            f'[[principal]]\nname = "reader"\n{reader_line}\nrules = [ {{ prefix = "agent-", allow = ["read"] }} ]\n'
        )
        self.stderr = open(WORK / "serve.stderr", "w")
        self.process = subprocess.Popen(
            [CAIRN_BIN, "--data", str(WORK / "serve-data"), "serve", "--listen", "127.0.0.1:0", "--auth", str(auth)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
        )
        with PIDS.open("a") as f:
            f.write(f"{self.process.pid}\n")
        assert self.process.stdout is not None
        # The first line is the address; readline returns "" if the server exits instead.
        line = self.process.stdout.readline()
        match = re.match(r"^listening on (\S+)$", line.strip())
        if not match:
            self.stop()
            raise AssertionError(f"cairn serve printed {line!r}: {(WORK / 'serve.stderr').read_text()[-2000:]}")
        self.url = match.group(1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.stderr.close()


@contextlib.asynccontextmanager
async def stdio_session(command: str, args: list[str], env: dict[str, str] | None = None) -> AsyncIterator[ClientSession]:
    """An initialised SDK session with a server process on stdio (the SDK stops it on exit)."""
    params = StdioServerParameters(command=command, args=args, env=env)
    with open(WORK / "stdio.stderr", "a") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


@contextlib.asynccontextmanager
async def http_session(url: str, token: str | None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as client:
        async with streamable_http_client(f"{url}/mcp", http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def cairn_mcp(*args: str) -> tuple[str, list[str]]:
    return CAIRN_BIN, ["mcp", *args]


# ---------------------------------------------------------------------------------------------
# Every tool


class Tools:
    """One session's tools, called with their arguments checked against the listed schemas."""

    def __init__(self, session: ClientSession, label: str) -> None:
        self.session = session
        self.label = label
        self.inputs: dict[str, Draft202012Validator] = {}
        self.outputs: dict[str, Draft202012Validator] = {}

    async def list(self) -> None:
        tools = (await self.session.list_tools()).tools
        names = {t.name for t in tools}
        check(names == ALL_TOOLS, f"{self.label}: tools listed {sorted(names)}, expected {sorted(ALL_TOOLS)}")
        check(len(tools) == len(names), f"{self.label}: a tool is listed twice")
        for tool in tools:
            for kind, schema in (("input", tool.input_schema), ("output", tool.output_schema)):
                check(schema is not None, f"{self.label}: {tool.name} has no {kind} schema")
                Draft202012Validator.check_schema(schema)
                check(schema.get("type") == "object", f"{self.label}: {tool.name}'s {kind} schema is not an object")
            check(len(tool.description or "") > 20, f"{self.label}: {tool.name} has no real description")
            self.inputs[tool.name] = Draft202012Validator(tool.input_schema)
            self.outputs[tool.name] = Draft202012Validator(tool.output_schema)

    async def ok(self, tool: str, args: dict[str, Any], **kw: Any) -> Any:
        errors = [e.message for e in self.inputs[tool].iter_errors(args)]
        check(not errors, f"{self.label}: {tool}'s input schema refuses {args}: {errors}")
        result = await self.session.call_tool(tool, args, **kw)
        check(not result.is_error, f"{self.label}: {tool}({args}) failed: {result.content}")
        out = result.structured_content
        errors = [e.message for e in self.outputs[tool].iter_errors(out)]
        check(not errors, f"{self.label}: {tool}'s answer does not fit its output schema: {errors}")
        return out

    async def err(self, tool: str, args: dict[str, Any], code: str, *, schema_valid: bool = True) -> dict[str, Any]:
        """Calls a tool that must fail with `code`; `schema_valid` says whether the arguments fit
        the input schema (bad arguments must not)."""
        fits = self.inputs[tool].is_valid(args)
        check(fits == schema_valid, f"{self.label}: {tool}'s input schema {'refuses' if schema_valid else 'accepts'} {args}")
        result = await self.session.call_tool(tool, args)
        check(bool(result.is_error), f"{self.label}: {tool}({args}) should fail with {code}: {result.structured_content}")
        text = result.content[0].text  # type: ignore[union-attr]
        body = json.loads(text)
        check(body.get("error") == code, f"{self.label}: {tool}({args}) failed with {body}, expected {code}")
        check(isinstance(body.get("message"), str) and body["message"] != "", f"{self.label}: {tool}: no message")
        return body


async def every_tool(t: Tools, *, admin: bool = True) -> None:
    """Calls every tool of a fresh graph and a stream of its own; `admin`: verify and checkpoints
    may be called."""
    await t.list()
    s = f"agent-{t.label}-{uuid.uuid4().hex[:8]}"

    appended = await t.ok("append_events", {"stream": s, "expected_version": "no_stream", "events": [
        {"type": "ToolCalled", "data": {"tool": "search"}, "metadata": {"run_id": "r-1"}},
        {"type": "ToolReturned", "data": {"ok": True}, "id": str(uuid.uuid4())},
    ]})
    check((appended["first_version"], appended["last_version"]) == (0, 1), f"{t.label}: append {appended}")
    conflict = await t.err("append_events", {"stream": s, "expected_version": 0, "events": [{"type": "Late"}]},
                           "wrong_expected_version")
    check(conflict.get("actual") == 1, f"{t.label}: wrong_expected_version names actual 1: {conflict}")
    await t.err("append_events", {"stream": s, "events": "none"}, "invalid_input", schema_valid=False)

    read = await t.ok("read_stream", {"stream": s})
    check([e["type"] for e in read["events"]] == ["ToolCalled", "ToolReturned"], f"{t.label}: read {read}")
    back = await t.ok("read_stream", {"stream": s, "direction": "backward", "limit": 1})
    check(back["events"][0]["hash"] == appended["hash"], f"{t.label}: backward read {back}")
    await t.err("read_stream", {"stream": f"{s}-nobody"}, "stream_not_found")
    await t.err("read_stream", {"stream": 7}, "invalid_input", schema_valid=False)

    everything = await t.ok("read_all", {"stream_prefix": s})
    check(len(everything["events"]) == 2, f"{t.label}: read_all {everything}")
    await t.err("read_all", {"from": "start"}, "invalid_input", schema_valid=False)

    streams = await t.ok("list_streams", {"prefix": s})
    check(streams["streams"] == [{"stream": s, "last_version": 1, "events": 2}], f"{t.label}: list_streams {streams}")
    await t.err("list_streams", {"limit": -1}, "invalid_input", schema_valid=False)

    head = await t.ok("head", {})
    check(head["position"] >= appended["last_position"], f"{t.label}: head {head}")
    await t.err("head", {"extra": 1}, "invalid_input", schema_valid=False)

    if admin:
        progress: list[tuple[float, float | None]] = []

        async def on_progress(value: float, total: float | None, _message: str | None) -> None:
            progress.append((value, total))

        verified = await t.ok("verify", {}, progress_callback=on_progress)
        check(verified["ok"] is True and verified["events"] >= 2, f"{t.label}: verify {verified}")
        check(progress != [], f"{t.label}: verify sent no progress notification")
        # Events verified of the total, never going back; the last one has every event verified.
        check(progress[-1] == (verified["events"], verified["events"]),
              f"{t.label}: verify's last progress is not all events verified of the total: {progress} vs {verified}")
        check(all(total is not None and v <= total for v, total in progress), f"{t.label}: progress {progress}")
        check([v for v, _ in progress] == sorted(v for v, _ in progress), f"{t.label}: progress went back: {progress}")
        await t.err("verify", {"from": head["position"] + 1000}, "position_not_found")
        await t.err("verify", {"from": "x"}, "invalid_input", schema_valid=False)

    idle = await t.ok("wait_for_events", {"stream": s, "from_version": 2, "timeout_ms": 100})
    check(idle["timed_out"] is True and idle["events"] == [], f"{t.label}: idle wait {idle}")
    woke: dict[str, Any] = {}

    async def wait() -> None:
        woke.update(await t.ok("wait_for_events", {"stream": s, "from_version": 2, "timeout_ms": 60_000}))

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await t.ok("append_events", {"stream": s, "events": [{"type": "Woke"}]})
    check(woke["timed_out"] is False and woke["events"][0]["type"] == "Woke" and woke["next_version"] == 3,
          f"{t.label}: wait {woke}")
    await t.err("wait_for_events", {"stream": s, "timeout_ms": 3_600_000}, "invalid_input")

    key = f"{t.label}/session/42"
    written = await t.ok("kv_set", {"key": key, "value": {"step": 1}})
    got = await t.ok("kv_get", {"key": key})
    check((got["value"], got["version"]) == ({"step": 1}, written["version"]), f"{t.label}: kv_get {got}")
    swapped = await t.ok("kv_compare_and_set", {"key": key, "value": 2, "expected_version": written["version"]})
    await t.err("kv_compare_and_set", {"key": key, "value": 3, "expected_version": written["version"]},
                "wrong_expected_version")
    await t.err("kv_set", {"key": key, "value": 4, "expected_version": "no_stream"}, "wrong_expected_version")
    check((await t.ok("kv_get", {"key": key}))["version"] == swapped["version"], f"{t.label}: cas lost")
    listed = await t.ok("kv_list", {"prefix": f"{t.label}/"})
    check(listed["keys"] == [key], f"{t.label}: kv_list {listed}")
    check((await t.ok("kv_delete", {"key": key}))["deleted"] is True, f"{t.label}: kv_delete")
    await t.err("kv_get", {"key": key}, "key_not_found")
    await t.err("kv_set", {"key": 5, "value": 1}, "invalid_input", schema_valid=False)
    await t.err("kv_delete", {}, "invalid_input", schema_valid=False)
    await t.err("kv_list", {"limit": "ten"}, "invalid_input", schema_valid=False)

    audit = await t.ok("audit_query", {"limit": 10})
    check(isinstance(audit["entries"], list), f"{t.label}: audit_query {audit}")
    await t.err("audit_query", {"order": "sideways"}, "invalid_input", schema_valid=False)
    await t.err("audit_query", {"category": "gossip"}, "invalid_input", schema_valid=False)

    if admin:
        cps = await t.ok("checkpoint_status", {})
        check(isinstance(cps["checkpoints"], list), f"{t.label}: checkpoint_status {cps}")
        await t.err("checkpoint_status", {"extra": 1}, "invalid_input", schema_valid=False)

    await memory_tools(t)


async def memory_tools(t: Tools) -> None:
    a, b = f"{t.label}-Alice", f"{t.label}-Bob"
    alice = {"name": a, "entityType": "person", "observations": ["likes tea"]}
    check(await t.ok("create_entities", {"entities": [alice]}) == {"entities": [alice]}, f"{t.label}: create")
    await t.ok("create_entities", {"entities": [{"name": b, "entityType": "person", "observations": []}]})
    knows = {"from": a, "to": b, "relationType": "knows"}
    check(await t.ok("create_relations", {"relations": [knows]}) == {"relations": [knows]}, f"{t.label}: relate")
    added = await t.ok("add_observations", {"observations": [{"entityName": a, "contents": ["plays go"]}]})
    check(added == {"results": [{"entityName": a, "addedObservations": ["plays go"]}]}, f"{t.label}: {added}")
    await t.err("add_observations", {"observations": [{"entityName": f"{t.label}-Nobody", "contents": ["x"]}]},
                "entity_not_found")
    await t.err("create_entities", {"entities": [{"name": "no type"}]}, "invalid_input", schema_valid=False)
    found = await t.ok("search_nodes", {"query": "PLAYS GO"})
    check([e["name"] for e in found["entities"]] == [a] and found["relations"] == [knows], f"{t.label}: {found}")
    opened = await t.ok("open_nodes", {"names": [b]})
    check([e["name"] for e in opened["entities"]] == [b] and opened["relations"] == [knows], f"{t.label}: {opened}")
    await t.err("open_nodes", {"names": b}, "invalid_input", schema_valid=False)
    await t.ok("delete_observations", {"deletions": [{"entityName": a, "observations": ["likes tea"]}]})
    await t.ok("delete_relations", {"relations": [knows]})
    await t.ok("delete_entities", {"entityNames": [b]})
    await t.err("delete_entities", {"entityNames": [1]}, "invalid_input", schema_valid=False)
    graph = await t.ok("read_graph", {})
    check(graph == {"entities": [{"name": a, "entityType": "person", "observations": ["plays go"]}], "relations": []},
          f"{t.label}: read_graph {graph}")
    # Changes 0..6: two creations, a relation, an observation, then the three deletions.
    before = await t.ok("read_graph_as_of", {"version": 3})
    check(len(before["entities"]) == 2 and before["relations"] == [knows], f"{t.label}: as of 3 {before}")
    await t.err("read_graph_as_of", {"version": 99}, "version_not_found")
    await t.err("read_graph_as_of", {"version": -1}, "invalid_input", schema_valid=False)


async def permissions(t: Tools) -> None:
    """A token whose only rule is `read` on `agent-`: what it may not do is `forbidden`."""
    await t.list()
    await t.err("read_stream", {"stream": "agent-nobody"}, "stream_not_found")
    await t.err("read_stream", {"stream": "other"}, "forbidden")
    await t.err("append_events", {"stream": "agent-1", "events": [{"type": "X"}]}, "forbidden")
    await t.err("kv_set", {"key": "k", "value": 1}, "forbidden")
    await t.err("verify", {}, "forbidden")
    await t.err("checkpoint_status", {}, "forbidden")
    await t.err("create_entities", {"entities": [{"name": "x", "entityType": "y", "observations": []}]}, "forbidden")
    await t.err("read_graph", {}, "forbidden")


async def part_every_tool(serve: Serve) -> None:
    step("every tool: cairn mcp --data DIR over stdio")
    async with stdio_session(*cairn_mcp("--data", str(WORK / "stdio-data"))) as s:
        await every_tool(Tools(s, "data"))

    step("every tool: cairn mcp --server URL --token T over stdio")
    async with stdio_session(*cairn_mcp("--server", serve.url, "--token", serve.admin, "--graph", "stdio")) as s:
        await every_tool(Tools(s, "server"))
    async with stdio_session(*cairn_mcp("--server", serve.url, "--token", serve.reader)) as s:
        await permissions(Tools(s, "server-reader"))
    async with stdio_session(*cairn_mcp("--server", serve.url)) as s:
        anonymous = Tools(s, "server-anonymous")
        await anonymous.list()
        await anonymous.err("head", {}, "unauthorized")

    step("every tool: /mcp on cairn serve over streamable HTTP")
    async with http_session(serve.url, serve.admin) as s:
        await every_tool(Tools(s, "http"))
    async with http_session(serve.url, serve.reader) as s:
        await permissions(Tools(s, "http-reader"))
    # Without a token the HTTP request itself is refused, before any MCP message is read.
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "ci", "version": "0"}}}
    async with httpx2.AsyncClient() as client:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            answer = await client.post(f"{serve.url}/mcp", json=initialize,
                                       headers={"Accept": "application/json, text/event-stream", **headers})
            check(answer.status_code == 401 and answer.json()["error"] == "unauthorized",
                  f"/mcp with {headers or 'no token'}: {answer.status_code} {answer.text}")


# ---------------------------------------------------------------------------------------------
# The reference memory server, call by call

ALICE = {"name": "Alice", "entityType": "person", "observations": ["likes tea"]}
COMPARED_STEPS: list[tuple[str, dict[str, Any]]] = [
    ("create_entities", {"entities": [ALICE, {"name": "Bob", "entityType": "person", "observations": []}]}),
    # A name that exists is skipped; the same new name twice in one call is kept twice.
    ("create_entities", {"entities": [{**ALICE, "entityType": "robot"},
                                      {"name": "Carol", "entityType": "robot", "observations": ["beeps"]},
                                      {"name": "Carol", "entityType": "robot", "observations": ["boops"]}]}),
    ("create_relations", {"relations": [{"from": "Alice", "to": "Bob", "relationType": "knows"},
                                        {"from": "Bob", "to": "Carol", "relationType": "built"},
                                        {"from": "Alice", "to": "Dave", "relationType": "met"}]}),
    ("create_relations", {"relations": [{"from": "Alice", "to": "Bob", "relationType": "knows"},
                                        {"from": "Bob", "to": "Alice", "relationType": "knows"}]}),
    ("add_observations", {"observations": [{"entityName": "Alice", "contents": ["likes tea", "plays go"]},
                                           {"entityName": "Bob", "contents": ["rides a bike", ""]}]}),
    # An unknown entity fails the whole call: Alice's new observation is not kept either.
    ("add_observations", {"observations": [{"entityName": "Alice", "contents": ["sings"]},
                                           {"entityName": "Zed", "contents": ["z"]}]}),
    ("create_entities", {"entities": [{"name": "Émile ✓", "entityType": "person", "observations": ["naïve café"]}]}),
    ("create_entities", {"entities": [{"name": "no type"}]}),
    ("search_nodes", {"query": "GO"}),
    ("search_nodes", {"query": "robot"}),
    ("search_nodes", {"query": "CAFÉ"}),
    ("open_nodes", {"names": ["Bob", "Nobody"]}),
    ("delete_observations", {"deletions": [{"entityName": "Alice", "observations": ["likes tea", "never seen"]},
                                           {"entityName": "Nobody", "observations": ["x"]}]}),
    ("delete_relations", {"relations": [{"from": "Bob", "to": "Carol", "relationType": "built"},
                                        {"from": "Alice", "to": "Bob", "relationType": "hates"}]}),
    # Both Carols go, and every relation touching Bob.
    ("delete_entities", {"entityNames": ["Carol", "Bob", "Nobody"]}),
    ("create_entities", {"entities": [{"name": "Bob", "entityType": "cat", "observations": []}]}),
    ("create_relations", {"relations": [{"from": "Bob", "to": "Alice", "relationType": "knows"}]}),
    ("open_nodes", {"names": ["Alice"]}),
]


async def part_reference_comparison() -> None:
    step("the reference memory server and cairn mcp, call by call")
    env = {"MEMORY_FILE_PATH": str(WORK / "reference-compare.jsonl")}
    async with stdio_session(*cairn_mcp("--data", str(WORK / "compare-data"))) as cairn, \
            stdio_session(REFERENCE_BIN, [], env=env) as reference:
        cairn_tools = {t.name: t for t in (await cairn.list_tools()).tools}
        for tool in (await reference.list_tools()).tools:
            check(tool.name in cairn_tools, f"the reference's tool {tool.name} is missing from cairn")
            ours = cairn_tools[tool.name]
            check(set(ours.input_schema.get("properties", {})) == set(tool.input_schema.get("properties", {})),
                  f"{tool.name}: argument names differ: {ours.input_schema} vs {tool.input_schema}")
            check(set(ours.input_schema.get("required", [])) == set(tool.input_schema.get("required", [])),
                  f"{tool.name}: required arguments differ")
        for i, (tool, args) in enumerate(COMPARED_STEPS):
            theirs = await reference.call_tool(tool, args)
            ours = await cairn.call_tool(tool, args)
            what = f"step {i} {tool}({json.dumps(args)})"
            check(bool(ours.is_error) == bool(theirs.is_error),
                  f"{what}: cairn {'failed' if ours.is_error else 'succeeded'}, the reference did not: "
                  f"{ours.content} vs {theirs.content}")
            if not theirs.is_error:
                check(ours.structured_content == theirs.structured_content,
                      f"{what}: answers differ:\n  cairn     {ours.structured_content}\n  reference {theirs.structured_content}")
                check(ours.content[0].text == theirs.content[0].text,  # type: ignore[union-attr]
                      f"{what}: answer texts differ")
            graph_theirs = (await reference.call_tool("read_graph", {})).structured_content
            graph_ours = (await cairn.call_tool("read_graph", {})).structured_content
            check(graph_ours == graph_theirs,
                  f"after {what}: graphs differ:\n  cairn     {graph_ours}\n  reference {graph_theirs}")
        print(f"{len(COMPARED_STEPS)} steps: identical answers and graphs after each", flush=True)


# ---------------------------------------------------------------------------------------------
# Concurrent writers


async def concurrent_writers(sessions: list[ClientSession]) -> tuple[int, int, int]:
    """Each session creates CONCURRENT_ROUNDS entities and adds as many observations to the
    entity `shared`, all at once; returns (entities lost, observations lost, calls failed)."""
    await sessions[0].call_tool("create_entities", {"entities": [
        {"name": "shared", "entityType": "board", "observations": []}]})
    failed = 0
    start = anyio.Event()

    async def writer(i: int, session: ClientSession) -> None:
        nonlocal failed
        await start.wait()
        for j in range(CONCURRENT_ROUNDS):
            calls = [
                ("create_entities", {"entities": [{"name": f"w{i}-{j}", "entityType": "note", "observations": []}]}),
                ("add_observations", {"observations": [{"entityName": "shared", "contents": [f"w{i}-{j}"]}]}),
            ]
            for tool, args in calls:
                if (await session.call_tool(tool, args)).is_error:
                    failed += 1

    async with anyio.create_task_group() as tg:
        for i, session in enumerate(sessions):
            tg.start_soon(writer, i, session)
        start.set()
    graph = (await sessions[0].call_tool("read_graph", {})).structured_content or {}
    names = {e["name"] for e in graph["entities"]}
    shared = next((e for e in graph["entities"] if e["name"] == "shared"), {"observations": []})
    wanted = {f"w{i}-{j}" for i in range(len(sessions)) for j in range(CONCURRENT_ROUNDS)}
    return len(wanted - names), len(wanted - set(shared["observations"])), failed


async def with_sessions(n: int, open_one: Callable[[int], contextlib.AbstractAsyncContextManager[ClientSession]],
                        body: Callable[[list[ClientSession]], Awaitable[tuple[int, int, int]]]) -> tuple[int, int, int]:
    async with contextlib.AsyncExitStack() as stack:
        sessions = [await stack.enter_async_context(open_one(i)) for i in range(n)]
        return await body(sessions)


async def part_concurrency(serve: Serve) -> None:
    for n in (2, 8):
        total = n * CONCURRENT_ROUNDS
        step(f"{n} cairn mcp --server processes writing one graph at once")
        lost = await with_sessions(
            n, lambda _i: stdio_session(*cairn_mcp("--server", serve.url, "--token", serve.admin, "--graph", f"conc{n}")),
            concurrent_writers)
        print(f"cairn, {n} processes: lost {lost[0]} of {total} entities and {lost[1]} of {total} observations; "
              f"{lost[2]} calls failed", flush=True)
        check(lost == (0, 0, 0), f"cairn mcp lost writes with {n} processes: {lost}")

        step(f"{n} reference memory server processes sharing one file (the baseline)")
        env = {"MEMORY_FILE_PATH": str(WORK / f"reference-conc{n}.jsonl")}
        lost = await with_sessions(n, lambda _i: stdio_session(REFERENCE_BIN, [], env=env), concurrent_writers)
        print(f"reference server, {n} processes: lost {lost[0]} of {total} entities and {lost[1]} of {total} "
              f"observations; {lost[2]} calls failed", flush=True)


async def main() -> None:
    started = time.monotonic()
    serve = Serve()
    try:
        print(f"cairn serve on {serve.url}", flush=True)
        await part_every_tool(serve)
        await part_reference_comparison()
        await part_concurrency(serve)
        check(serve.process.poll() is None, "cairn serve died during the run")
    finally:
        serve.stop()
    print(f"{checks} passed, 0 failed ({time.monotonic() - started:.0f} s)", flush=True)


def failed_check(e: BaseException) -> AssertionError | None:
    """The failed check inside `e`, which a task group may have wrapped in exception groups."""
    if isinstance(e, AssertionError):
        return e
    for inner in getattr(e, "exceptions", ()):
        if found := failed_check(inner):
            return found
    return None


if __name__ == "__main__":
    try:
        anyio.run(main)
    except BaseException as e:
        failure = failed_check(e)
        if failure is None:
            raise
        print(f"FAILED: {failure}", file=sys.stderr, flush=True)
        print(f"{checks - 1} passed, 1 failed", flush=True)
        sys.exit(1)
