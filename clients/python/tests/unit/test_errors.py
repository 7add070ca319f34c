"""Error answers become the right exception class, carrying the server's code and message, and
a ``wrong_expected_version`` conflict carries the expected and actual versions."""

from __future__ import annotations

import pytest

from cairn_client import (
    CairnError,
    Conflict,
    Forbidden,
    ForkPastEnd,
    Gone,
    Invalid,
    InvalidStreamMetadata,
    NotFound,
    ServerError,
    StreamClosed,
    StreamDeleted,
    StreamExists,
    StreamTombstoned,
    TooLarge,
    Unauthorized,
    Unavailable,
    WrongExpectedVersion,
)
from cairn_client._errors import error_from_body


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid_input", Invalid),
        (401, "unauthorized", Unauthorized),
        (403, "forbidden", Forbidden),
        (404, "stream_not_found", NotFound),
        (404, "key_not_found", NotFound),
        (409, "id_conflict", Conflict),
        (409, "incompatible_schema", Conflict),
        (413, "event_too_large", TooLarge),
        (415, "unsupported_media_type", Invalid),
        (500, "corruption", ServerError),
        (503, "poisoned", Unavailable),
    ],
)
def test_statuses_map_to_classes_with_code_and_message(status: int, code: str, cls: type[CairnError]) -> None:
    e = error_from_body(status, {"error": code, "message": f"the {code} sentence"})
    assert type(e) is cls
    assert (e.status, e.code, e.message) == (status, code, f"the {code} sentence")
    assert code in str(e) and str(status) in str(e)


def test_too_large_is_an_invalid_request() -> None:
    assert isinstance(error_from_body(413, {"error": "body_too_large", "message": "m"}), Invalid)


def test_wrong_expected_version_carries_expected_actual_and_stream() -> None:
    body = {"error": "wrong_expected_version", "message": "m", "stream": "agent-7", "expected": 3, "actual": 5}
    e = error_from_body(409, body)
    assert isinstance(e, WrongExpectedVersion) and isinstance(e, Conflict)
    assert (e.expected, e.actual, e.stream) == (3, 5, "agent-7")
    e = error_from_body(409, {"error": "wrong_expected_version", "message": "m", "expected": "exists", "actual": None})
    assert isinstance(e, WrongExpectedVersion)
    assert (e.expected, e.actual, e.stream) == ("exists", None, None)


def test_a_body_that_is_not_an_error_object_still_maps_by_status() -> None:
    e = error_from_body(502, None, "<html>bad gateway</html>")
    assert isinstance(e, ServerError)
    assert e.code == "http_502" and "bad gateway" in e.message


def test_codes_without_status_map_by_code() -> None:
    # Errors inside an event stream arrive without an HTTP status.
    assert isinstance(error_from_body(None, {"error": "poisoned", "message": "m"}), Unavailable)
    assert type(error_from_body(None, {"error": "something_new", "message": "m"})) is CairnError


@pytest.mark.parametrize(
    ("status", "code", "cls", "base"),
    [
        (404, "stream_deleted", StreamDeleted, NotFound),
        (410, "stream_tombstoned", StreamTombstoned, Gone),
        (409, "stream_closed", StreamClosed, Conflict),
        (409, "stream_exists", StreamExists, Conflict),
        (400, "fork_past_end", ForkPastEnd, Invalid),
        (400, "invalid_stream_metadata", InvalidStreamMetadata, Invalid),
        (None, "stream_deleted", StreamDeleted, NotFound),
    ],
)
def test_lifecycle_codes_have_their_own_classes_under_their_statuses(
    status: int | None, code: str, cls: type[CairnError], base: type[CairnError]
) -> None:
    e = error_from_body(status, {"error": code, "message": "m"})
    assert type(e) is cls and isinstance(e, base)
    assert (e.status, e.code) == (status, code)


def test_any_other_410_is_gone() -> None:
    assert type(error_from_body(410, {"error": "something_gone", "message": "m"})) is Gone
