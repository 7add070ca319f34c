"""A saver keeps each thread's fold and reads only what was appended since; what another
process did to the thread in between must show at once: new checkpoints, a delete (with or
without new checkpoints after it, whose versions continue the deleted ones), and a prune."""

from __future__ import annotations

import pytest
from langchain_core.runnables import RunnableConfig

from cairn_client.langgraph import AsyncCairnSaver

from .conftest import Deployment
from .test_langgraph_concurrency import config, put

pytestmark = pytest.mark.anyio


async def ids(saver: AsyncCairnSaver, cfg: RunnableConfig) -> list[str]:
    return [t.checkpoint["channel_values"]["v"] async for t in saver.alist(cfg)]


async def test_a_warm_saver_sees_what_another_did(deployment: Deployment, prefix: str) -> None:
    async with (
        AsyncCairnSaver(deployment.url, deployment.token, stream_prefix=prefix) as warm,
        AsyncCairnSaver(deployment.url, deployment.token, stream_prefix=prefix) as other,
    ):
        first = await put(other, config("t"), "one")
        assert await ids(warm, config("t")) == ["one"]

        await put(other, config("t", first["configurable"]["checkpoint_id"]), "two")
        assert await ids(warm, config("t")) == ["two", "one"], "new checkpoints are read"

        await other.adelete_thread("t")
        assert await warm.aget_tuple(config("t")) is None, "a delete is seen"
        assert await ids(warm, config("t")) == []

        await put(other, config("t"), "after the delete")
        assert await ids(warm, config("t")) == ["after the delete"]

        # The warm saver reads the thread now, then another process deletes and rewrites it:
        # the new events' versions follow the old ones, so only the delete point tells.
        assert await ids(warm, config("t")) == ["after the delete"]
        await other.adelete_thread("t")
        await put(other, config("t"), "rewritten")
        assert await ids(warm, config("t")) == ["rewritten"]

        latest = await put(other, config("t"), "newest")
        assert await ids(warm, config("t")) == ["newest", "rewritten"]
        await other.aprune(["t"])
        assert await ids(warm, config("t")) == ["newest"], "a prune is seen"
        tup = await warm.aget_tuple(config("t"))
        assert tup is not None and tup.config["configurable"]["checkpoint_id"] == latest["configurable"]["checkpoint_id"]


async def test_a_fresh_saver_checks_a_thread_interleaved_with_another(deployment: Deployment, prefix: str) -> None:
    """Every event of thread a follows one of thread b in the log, so checking a needs the hash
    of each of b's events: more than one batch of predecessor reads."""
    async with AsyncCairnSaver(deployment.url, deployment.token, stream_prefix=prefix) as writer:
        parents: dict[str, RunnableConfig | None] = {"a": None, "b": None}
        for n in range(40):
            for thread in ("a", "b"):
                parent = parents[thread]
                cfg = config(thread, parent["configurable"]["checkpoint_id"] if parent else None)
                parents[thread] = await put(writer, cfg, f"{thread}{n}")
    async with AsyncCairnSaver(deployment.url, deployment.token, stream_prefix=prefix) as fresh:
        assert await ids(fresh, config("a")) == [f"a{n}" for n in reversed(range(40))]
