"""LangGraph's own checkpointer conformance suite (``langgraph-checkpoint-conformance``) against
:class:`AsyncCairnSaver` and :class:`CairnSaver` on a real ``cairn serve`` with a token: every
capability the suite knows must be detected (none skipped, none missing) and pass. The report
is printed, so the CI log shows it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.checkpoint.conformance.report import ProgressCallbacks

from cairn_client.langgraph import AsyncCairnSaver, CairnSaver

from .conftest import Deployment

pytestmark = pytest.mark.anyio


def _assert_every_capability_passed(report: object) -> None:
    results = report.results  # type: ignore[attr-defined]
    assert set(results) == {c.value for c in ALL_CAPABILITIES}
    for name, result in sorted(results.items()):
        assert result.detected, f"capability {name} was not detected (the saver does not implement it)"
        assert result.tests_skipped == 0, f"capability {name} skipped {result.tests_skipped} tests"
        assert result.passed is True, f"capability {name} failed: {result.failures}"
        assert result.tests_passed > 0, f"capability {name} ran no test"
    assert report.conformance_level() == "FULL"  # type: ignore[attr-defined]


async def test_async_saver_passes_every_capability(deployment: Deployment, prefix: str) -> None:
    @checkpointer_test(name="AsyncCairnSaver")
    async def saver() -> AsyncIterator[AsyncCairnSaver]:
        async with AsyncCairnSaver(deployment.url, deployment.token, stream_prefix=prefix) as s:
            yield s

    report = await validate(saver, progress=ProgressCallbacks.verbose())
    report.print_report()
    _assert_every_capability_passed(report)


async def test_sync_saver_passes_every_capability(deployment: Deployment, prefix: str) -> None:
    @checkpointer_test(name="CairnSaver")
    async def saver() -> AsyncIterator[CairnSaver]:
        with CairnSaver(deployment.url, deployment.token, stream_prefix=prefix) as s:
            yield s

    report = await validate(saver, progress=ProgressCallbacks.default())
    report.print_report()
    _assert_every_capability_passed(report)
