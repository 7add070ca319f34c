"""The client's chain-hash recomputation agrees with the log's: every event of the golden log
(fixtures/golden/expected.json, written by the engine, listing each event's fields, payload
digest and chain hash) is linked from the one before it, starting at the genesis hash."""

from __future__ import annotations

import json
import uuid

from blake3 import blake3

from cairn_client._chain import GENESIS, link

from ..server.harness import REPO_ROOT


def test_the_golden_log_links_from_genesis() -> None:
    events = json.loads((REPO_ROOT / "fixtures" / "golden" / "expected.json").read_text())["events"]
    assert len(events) > 40
    previous = GENESIS
    for event in events:
        computed = link(
            previous,
            position=event["position"],
            version=event["version"],
            timestamp_ms=event["timestamp_ms"],
            event_id=uuid.UUID(event["id"]).bytes,
            stream=event["stream"],
            event_type=event["type"],
            binary=False,  # the golden log's payloads are JSON
            metadata_digest=blake3(event["metadata"].encode()).digest(),
            data_digest=bytes.fromhex(event["data_blake3"]),
        )
        assert computed.hex() == event["hash"], f"position {event['position']}"
        previous = computed
