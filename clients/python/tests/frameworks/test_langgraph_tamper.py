"""The saver checks every checkpoint before it deserialises it.

The tamper on disk: with the server stopped, one byte of a stored checkpoint is changed in the
segment file and the record's CRC is recomputed (so the server's own framing checks pass and it
serves the changed bytes). After a restart the raw read shows the changed byte, and the saver
refuses the checkpoint with an :class:`IntegrityError` instead of handing it to the
deserialiser; the untouched thread next to it still loads.

The forgery by a client: another principal that may append to the thread's stream puts a
checkpoint of its own. Its chain hash is sound (the server appended it), so only who wrote it
tells: a saver with ``trusted_principals`` refuses it before decoding, one without loads it.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from cairn_client import AsyncClient
from cairn_client.langgraph import AsyncCairnSaver, IntegrityError

from .conftest import Deployment

pytestmark = pytest.mark.anyio

SEGMENT_HEADER_LEN = 4096
FRAME_HEADER_LEN = 80
RECORD_SALT = b"cairnREC"


def _flip_in_segments(data: Path, marker: bytes) -> None:
    """Changes the first byte of ``marker`` in the record that holds it and fixes that record's
    CRC (docs/format.md: CRC-32 of the salt and bytes 4..frame_len)."""
    for segment in sorted((data / "log").glob("*.seg")):
        raw = bytearray(segment.read_bytes())
        at = raw.find(marker)
        if at < 0:
            continue
        offset = SEGMENT_HEADER_LEN
        while raw[offset + 8] != 0:
            (body_len,) = struct.unpack_from("<I", raw, offset + 4)
            frame_len = (FRAME_HEADER_LEN + body_len + 7) // 8 * 8
            if offset <= at < offset + frame_len:
                raw[at] ^= 0x01
                crc = zlib.crc32(RECORD_SALT + bytes(raw[offset + 4 : offset + frame_len]))
                struct.pack_into("<I", raw, offset, crc)
                segment.write_bytes(bytes(raw))
                return
            offset += frame_len
    raise AssertionError(f"{marker!r} is in no record of {data / 'log'}")


async def _put(saver: AsyncCairnSaver, thread_id: str, value: str, checkpoint_id: str = "1ef00000-0000-6000-8000-000000000001") -> Any:
    checkpoint = {
        "v": 1,
        "id": checkpoint_id,
        "ts": "2026-12-07T00:00:00+00:00",
        "channel_values": {"note": value},
        "channel_versions": {"note": 1},
        "versions_seen": {},
        "updated_channels": None,
    }
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    return await saver.aput(config, checkpoint, {"source": "input", "step": -1}, {"note": 1})  # type: ignore[arg-type]


async def test_a_changed_byte_is_refused_before_deserialising(own_deployment: Deployment) -> None:
    server, token = own_deployment.server, own_deployment.token
    async with AsyncCairnSaver(server.url, token, stream_prefix="lg-tamper:") as saver:
        tampered = await _put(saver, "victim", "TAMPER-ME-7f3a")
        intact = await _put(saver, "bystander", "left alone")
        loaded = await saver.aget_tuple(tampered)
        assert loaded is not None and loaded.checkpoint["channel_values"] == {"note": "TAMPER-ME-7f3a"}

    server.stop()
    _flip_in_segments(server.data, b"TAMPER-ME-7f3a")
    server.restart()

    async with AsyncClient(server.url, token=token) as client:
        served = [e async for e in client.read_stream("lg-tamper:victim")]
        assert b"UAMPER-ME-7f3a" in served[0].data, "the server serves the changed bytes"

    with mock.patch.object(JsonPlusSerializer, "loads_typed", side_effect=AssertionError("deserialised")) as loads:
        async with AsyncCairnSaver(server.url, token, stream_prefix="lg-tamper:") as saver:
            with pytest.raises(IntegrityError) as refused:
                await saver.aget_tuple(tampered)
            with pytest.raises(IntegrityError):
                [t async for t in saver.alist(tampered)]
        assert loads.call_count == 0, "nothing of the tampered thread reached the deserialiser"
    assert refused.value.stream == "lg-tamper:victim"
    assert "does not match its chain hash" in str(refused.value)

    async with AsyncCairnSaver(server.url, token, stream_prefix="lg-tamper:") as saver:
        loaded = await saver.aget_tuple(intact)
        assert loaded is not None and loaded.checkpoint["channel_values"] == {"note": "left alone"}


async def test_a_checkpoint_forged_by_another_principal_is_refused(deployment: Deployment, prefix: str) -> None:
    url = deployment.url
    async with AsyncCairnSaver(url, deployment.token, stream_prefix=prefix) as saver:
        await _put(saver, "thread", "ours")
    async with AsyncCairnSaver(url, deployment.intruder, stream_prefix=prefix) as intruder:
        await _put(intruder, "thread", "FORGED", checkpoint_id="1ef00000-0000-6000-8000-000000000002")
    latest = {"configurable": {"thread_id": "thread", "checkpoint_ns": ""}}

    async with AsyncCairnSaver(url, deployment.token, stream_prefix=prefix) as trusting_all:
        loaded = await trusting_all.aget_tuple(latest)  # type: ignore[arg-type]
        assert loaded is not None and loaded.checkpoint["channel_values"] == {"note": "FORGED"}

    with mock.patch.object(JsonPlusSerializer, "loads_typed", side_effect=AssertionError("deserialised")) as loads:
        async with AsyncCairnSaver(url, deployment.token, stream_prefix=prefix, trusted_principals={"agents"}) as saver:
            with pytest.raises(IntegrityError) as refused:
                await saver.aget_tuple(latest)  # type: ignore[arg-type]
        assert loads.call_count == 0
    assert "appended by 'intruder', not by a trusted principal (agents)" in str(refused.value)
