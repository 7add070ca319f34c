"""Schemathesis hooks for .ci/api-spec (loaded through SCHEMATHESIS_HOOKS).

`POST /v1/streams/{stream}/events` also takes `application/x-ndjson`: one event object per line.
Schemathesis has no serializer for that media type, so without this one it refuses to send the
operation's NDJSON example at all. A generated list becomes one JSON line per item; any other
value becomes a single line, so the server meets the same malformed input a client could send.
"""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    items = value if isinstance(value, list) else [value]
    return "".join(json.dumps(item) + "\n" for item in items).encode("utf-8")


@schemathesis.hook
def map_query(ctx, query):
    """A Durable Streams read with `live=sse` is a stream of events that the server ends only
    after `SSE_CONNECTION_MAX` (60 s), longer than the run's request timeout: such a case reads
    with `live=long-poll` instead (which the server, started with `--ds-long-poll-timeout 2s`,
    answers within it). The SSE feed is driven by .ci/durable-streams's conformance suite."""
    if isinstance(query, dict) and query.get("live") == "sse":
        query["live"] = "long-poll"
    return query
