"""The stream lifecycle against the real server: soft delete and tombstone, close (with the
end-of-stream marker of a subscription), retention metadata, fork, the typed exceptions of
each refusal, and who may do what; sync and async alike."""

from __future__ import annotations

import pytest

import cairn_client as cc
from cairn_client import NewEvent

from .conftest import AuthServer


def test_soft_delete_hides_the_stream_until_it_is_written_again(client: cc.Client, stream: str) -> None:
    client.append(stream, [NewEvent("E", {"i": i}) for i in range(3)])
    done = client.delete_stream(stream)
    assert done.stream == stream and len(done.hash) == 64
    with pytest.raises(cc.StreamDeleted) as e:
        list(client.read_stream(stream))
    assert (e.value.status, e.value.code) == (404, "stream_deleted")
    assert isinstance(e.value, cc.NotFound), "code written for 404 still catches it"
    row = client.stream(stream)
    assert (row.deleted, row.closed, row.tombstoned) == (True, False, False)
    assert client.streams(prefix=stream) == [], "the listing leaves deleted streams out"

    again = client.append(stream, NewEvent("After"))
    assert again.first_version == 3, "versions continue after a soft delete"
    assert [(e.type, e.version) for e in client.read_stream(stream)] == [("After", 3)]
    state = client.stream_metadata(stream)
    assert (state.deleted, state.deleted_before, state.last_version) == (False, 3, 3)
    # The log is the history: the global log still holds every event.
    assert len([e for e in client.read_all(from_position=0) if e.stream == stream]) == 4


def test_a_tombstone_is_for_good(client: cc.Client, stream: str) -> None:
    client.append(stream, NewEvent("E"))
    client.delete_stream(stream, tombstone=True)
    with pytest.raises(cc.StreamTombstoned) as e:
        client.append(stream, NewEvent("Late"))
    assert (e.value.status, e.value.code) == (410, "stream_tombstoned")
    with pytest.raises(cc.StreamTombstoned):
        client.close_stream(stream)
    with pytest.raises(cc.StreamTombstoned):
        client.delete_stream(stream)
    assert client.stream_metadata(stream).tombstoned


def test_deleting_a_stream_that_never_existed_is_not_found(client: cc.Client, stream: str) -> None:
    with pytest.raises(cc.NotFound) as e:
        client.delete_stream(stream)
    assert e.value.code == "stream_not_found"
    with pytest.raises(cc.NotFound):
        client.stream_metadata(stream)


def test_close_refuses_appends_and_ends_a_subscription_after_its_last_event(client: cc.Client, stream: str) -> None:
    first = client.append(stream, [NewEvent("E", {"i": i}) for i in range(3)])
    with client.subscribe(from_position=first.first_position, stream=stream) as sub:
        assert next(sub).data == {"i": 0}
        client.append(stream, NewEvent("E", {"i": 3}))
        client.close_stream(stream)
        rest = [e.data["i"] for e in sub]  # ends by itself: no islice needed
        assert rest == [1, 2, 3], "every event before the close is delivered, then the marker"
        assert sub.ended == cc.EndOfStream(stream=stream, reason="closed", last_version=3)
    with pytest.raises(cc.StreamClosed) as e:
        client.append(stream, NewEvent("Late"))
    assert (e.value.status, e.value.code) == (409, "stream_closed")
    assert client.stream(stream).closed and client.stream_metadata(stream).closed


def test_a_subscription_of_a_stream_closed_before_it_started_delivers_everything_then_ends(
    client: cc.Client, stream: str
) -> None:
    first = client.append(stream, [NewEvent("A"), NewEvent("B")])
    client.close_stream(stream)
    with client.subscribe(from_position=first.first_position, stream=stream) as sub:
        assert [e.type for e in sub] == ["A", "B"]
        assert sub.ended is not None and sub.ended.last_version == 1
    with client.subscribe(stream=stream) as sub:  # from "end": nothing left to deliver
        assert list(sub) == []
        assert sub.ended is not None


def test_metadata_limits_apply_to_reads_at_once(client: cc.Client, stream: str) -> None:
    client.append(stream, [NewEvent("E", {"i": i}) for i in range(10)])
    client.set_stream_metadata(stream, max_count=3)
    assert [e.version for e in client.read_stream(stream)] == [7, 8, 9]
    client.set_stream_metadata(stream, truncate_before=8)
    assert [e.version for e in client.read_stream(stream)] == [8, 9]
    state = client.stream_metadata(stream)
    assert (state.truncate_before, state.max_count, state.ttl_ms, state.closed) == (8, None, None, False)
    client.set_stream_metadata(stream)  # no limits: the whole stream again
    assert len(list(client.read_stream(stream))) == 10
    client.set_stream_metadata(stream, closed=True)
    with pytest.raises(cc.StreamClosed):
        client.append(stream, NewEvent("Late"))


def test_bad_metadata_is_refused_and_writes_nothing(client: cc.Client, stream: str) -> None:
    client.append(stream, NewEvent("E"))
    with pytest.raises(ValueError):
        client.set_stream_metadata(stream, ttl_ms=-1)
    with pytest.raises(cc.InvalidStreamMetadata) as e:
        client.set_stream_metadata(stream, max_count=0)
    assert "max_count" in e.value.message
    assert client.stream_metadata(stream).max_count is None


def test_fork_shares_the_prefix_and_survives_the_sources_delete(client: cc.Client, stream: str) -> None:
    client.append(stream, [NewEvent("E", {"i": i}) for i in range(5)])
    fork = client.fork_stream(stream, f"{stream}-fork", 2)
    assert (fork.stream, fork.source, fork.at_version) == (f"{stream}-fork", stream, 2)
    own = client.append(f"{stream}-fork", NewEvent("Own"), expected_version=2)
    assert own.first_version == 3
    client.delete_stream(stream, tombstone=True)
    read = list(client.read_stream(f"{stream}-fork"))
    assert [(e.version, e.data) for e in read] == [(0, {"i": 0}), (1, {"i": 1}), (2, {"i": 2}), (3, {})]
    assert client.stream_metadata(f"{stream}-fork").forked_from == (stream, 2)

    with pytest.raises(cc.StreamExists) as exists:
        client.fork_stream(f"{stream}-fork", f"{stream}-fork", 0)
    assert (exists.value.status, exists.value.code) == (409, "stream_exists")
    client.append(f"{stream}-other", NewEvent("E"))
    with pytest.raises(cc.ForkPastEnd) as past:
        client.fork_stream(f"{stream}-other", f"{stream}-other-fork", 1)
    assert (past.value.status, past.value.code) == (400, "fork_past_end")
    with pytest.raises(cc.NotFound):
        client.stream_metadata(f"{stream}-other-fork")


def test_only_delete_rights_change_a_stream(auth_server: AuthServer, stream: str) -> None:
    url = auth_server.server.url
    with cc.Client(url, token=auth_server.agent) as agent, cc.Client(url, token=auth_server.admin) as admin:
        agent.append(stream, NewEvent("E"))  # the agent may read and append agent-*
        for change in (
            lambda: agent.delete_stream(stream),
            lambda: agent.close_stream(stream),
            lambda: agent.set_stream_metadata(stream, max_count=1),
            lambda: agent.fork_stream(stream, f"{stream}-fork", 0),
        ):
            with pytest.raises(cc.Forbidden):
                change()
        assert agent.stream_metadata(stream).closed is False, "read is enough to look"
        admin.close_stream(stream)  # admin implies delete
        assert agent.stream(stream).closed


@pytest.mark.anyio
async def test_async_lifecycle(aclient: cc.AsyncClient, stream: str) -> None:
    await aclient.append(stream, [NewEvent("E"), NewEvent("E")])
    fork = await aclient.fork_stream(stream, f"{stream}-f", 0)
    assert fork.at_version == 0
    await aclient.set_stream_metadata(stream, ttl_ms=3_600_000)
    assert (await aclient.stream_metadata(stream)).ttl_ms == 3_600_000
    sub = aclient.subscribe(from_position=0, stream=stream)
    async with sub:
        await aclient.close_stream(stream)
        assert [e.version async for e in sub] == [0, 1]
        assert sub.ended is not None and sub.ended.reason == "closed"
    await aclient.delete_stream(stream)
    with pytest.raises(cc.StreamDeleted):
        await aclient.read_stream_page(stream)


def test_erase_masks_the_range_and_refuses_bad_ones(client: cc.Client, stream: str) -> None:
    client.append(stream, [NewEvent("Said", {"i": 0}), NewEvent("Said", {"card": "4111"}, metadata={"run": 1})])
    erased = client.erase(stream, "GDPR request 118", from_version=1, to_version=1)
    assert (erased.stream, erased.from_version, erased.to_version) == (stream, 1, 1)
    assert len(erased.hash) == 64 and erased.audit_position > erased.position
    read = list(client.read_stream(stream))
    assert [(e.version, e.erased) for e in read] == [(0, False), (1, True)]
    assert read[1].data is None and read[1].metadata == {} and read[0].data == {"i": 0}
    whole = client.erase(stream, "account closed")
    assert (whole.from_version, whole.to_version) == (0, 1)
    with pytest.raises(cc.EraseOutOfRange) as past:
        client.erase(stream, "r", from_version=0, to_version=9)
    assert (past.value.status, past.value.code) == (400, "erase_out_of_range")
    with pytest.raises(cc.Invalid):
        client.erase(stream, "")
    with pytest.raises(ValueError):
        client.erase(stream, "r", from_version=-1)
    with pytest.raises(cc.NotFound):
        client.erase(f"{stream}-never", "r")


@pytest.mark.anyio
async def test_async_erase(aclient: cc.AsyncClient, stream: str) -> None:
    await aclient.append(stream, [NewEvent("E", {"secret": 1})])
    erased = await aclient.erase(stream, "r")
    assert (erased.from_version, erased.to_version) == (0, 0)
    page = await aclient.read_stream_page(stream)
    assert page.events[0].erased and page.events[0].data is None


def test_scavenge_runs_as_a_job_and_reports(client: cc.Client, stream: str) -> None:
    client.append(stream, [NewEvent("E", {"i": i}) for i in range(3)])
    client.delete_stream(stream)
    job = client.scavenge()
    assert job.state == "done" and job.failure is None and job.finished_ms is not None
    report = job.report
    assert report is not None and report.segments_removed == 0
    assert report.bytes_reclaimed == report.bytes_before - report.bytes_after >= 0
    assert client.scavenge_job(job.id) == job, "the server remembers the job"
    # Without waiting: the job as started, then followed to its end.
    started = client.scavenge(wait=False)
    assert started.id == job.id + 1 and started.state in ("running", "done")
    ended = client.scavenge_job(started.id, wait_ms=30_000)
    assert ended.state == "done" and ended.report is not None
    assert ended.progress["segments_done"] == ended.progress["segments_total"]
    with pytest.raises(cc.NotFound) as missing:
        client.scavenge_job(10**9)
    assert missing.value.code == "scavenge_not_found"
    with pytest.raises(ValueError):
        client.scavenge_job(-1)
    assert client.verify().ok


@pytest.mark.anyio
async def test_async_scavenge(aclient: cc.AsyncClient) -> None:
    job = await aclient.scavenge()
    assert job.state == "done" and job.report is not None
    assert (await aclient.scavenge_job(job.id, wait_ms=0)).state == "done"
