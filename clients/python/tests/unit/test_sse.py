"""The SSE decoder against the event-stream rules that resuming a subscription depends on:
line endings split anywhere, multi-line data, comments (keep-alives), the persistent last
event id, and never dispatching a message whose terminating blank line has not arrived."""

from __future__ import annotations

import random

from cairn_client._sse import SSEDecoder, SSEMessage

SAMPLE = (
    ": keep-alive\n"
    "id: 41\n"
    'data: {"position": 41}\n'
    "\n"
    "id: 42\r\n"
    "data: line one\r\n"
    "data: line two\r\n"
    "\r\n"
    "event: error\r"
    "data:no-space\r"
    "\r"
    "id: 43\n"
    "data:  two spaces\n"
    "\n"
)

EXPECTED = [
    SSEMessage(event="message", data='{"position": 41}', id="41"),
    SSEMessage(event="message", data="line one\nline two", id="42"),
    SSEMessage(event="error", data="no-space", id="42"),
    SSEMessage(event="message", data=" two spaces", id="43"),
]


def feed_in_chunks(text: str, cuts: list[int]) -> list[SSEMessage]:
    decoder = SSEDecoder()
    out: list[SSEMessage] = []
    start = 0
    for cut in sorted(cuts) + [len(text)]:
        out.extend(decoder.feed(text[start:cut]))
        start = cut
    return out


def test_whole_stream_decodes_to_the_expected_messages() -> None:
    assert feed_in_chunks(SAMPLE, []) == EXPECTED


def test_every_single_split_point_gives_the_same_messages() -> None:
    # A CR at the end of a chunk must wait for the next chunk: CRLF split in two is one line end.
    for cut in range(len(SAMPLE) + 1):
        assert feed_in_chunks(SAMPLE, [cut]) == EXPECTED, f"split at {cut}: {SAMPLE[:cut]!r}"


def test_random_chunkings_give_the_same_messages() -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    for _ in range(300):
        cuts = [rng.randrange(len(SAMPLE) + 1) for _ in range(rng.randrange(1, 12))]
        assert feed_in_chunks(SAMPLE, cuts) == EXPECTED, f"seed {seed}, cuts {sorted(cuts)}"


def test_one_character_at_a_time() -> None:
    assert feed_in_chunks(SAMPLE, list(range(len(SAMPLE)))) == EXPECTED


def test_a_message_without_its_blank_line_is_not_dispatched() -> None:
    decoder = SSEDecoder()
    assert decoder.feed('id: 7\ndata: {"cut": "off"') == []
    assert decoder.feed("\n") == []  # the data line is complete, the message is not
    assert decoder.feed("\n") == [SSEMessage(event="message", data='{"cut": "off"', id="7")]
    # The decoder keeps the id across messages; a block with only an id updates it but dispatches nothing.
    decoder = SSEDecoder()
    assert decoder.feed("id: 9\n\n") == []
    assert decoder.last_event_id == "9"
    assert decoder.feed("data: x\n\n") == [SSEMessage(event="message", data="x", id="9")]


def test_comments_and_unknown_fields_are_ignored() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(":\n: ping\nfoo: bar\nnocolon\n\n") == []
    assert decoder.feed("data: y\nretry: 2500\n\n") == [SSEMessage(event="message", data="y", id=None, retry=2500)]


def test_an_id_containing_nul_is_ignored() -> None:
    decoder = SSEDecoder()
    decoder.feed("id: 5\n\n")
    assert decoder.feed("id: 6\0\ndata: z\n\n") == [SSEMessage(event="message", data="z", id="5")]


def test_empty_data_line_dispatches_an_empty_message() -> None:
    decoder = SSEDecoder()
    assert decoder.feed("data\n\n") == [SSEMessage(event="message", data="", id=None)]
