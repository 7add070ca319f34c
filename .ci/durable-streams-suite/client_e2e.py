"""The protocol's Python client (`durable-streams` on PyPI) against the cairn server at
CAIRN_URL: append, read from an offset, live tail, resume. Prints `N passed, N failed`."""

import os
import sys
import threading
import time

from durable_streams import DurableStream, stream

BASE = os.environ["CAIRN_URL"]


def append_read_tail_resume() -> None:
    url = f"{BASE}/v1/stream/py-client/{time.time_ns()}"
    handle = DurableStream.create(url, content_type="application/json")
    handle.append({"n": 1})
    handle.append({"n": 2})

    with stream(url, live=False) as res:
        assert res.read_json() == [{"n": 1}, {"n": 2}]
        after_two = res.offset

    # Live tail from that offset, on a thread, while two more messages are appended.
    tailed: list[object] = []
    caught = threading.Event()

    def tail() -> None:
        with stream(url, offset=after_two, live="long-poll") as res:
            for item in res.iter_json():
                tailed.append(item)
                if len(tailed) >= 2:
                    caught.set()
                    return

    reader = threading.Thread(target=tail, daemon=True)
    reader.start()
    handle.append({"n": 3})
    handle.append({"n": 4})
    assert caught.wait(30), f"the live tail saw {tailed} of two appends"
    assert tailed == [{"n": 3}, {"n": 4}], tailed

    # Resume from the saved offset: exactly what came after it.
    with stream(url, offset=after_two, live=False) as res:
        assert res.read_json() == [{"n": 3}, {"n": 4}]


def main() -> int:
    tests = [append_read_tail_resume]
    failed = 0
    for test in tests:
        try:
            test()
            print(f"ok {test.__name__}")
        except Exception as e:  # noqa: BLE001 - report every failure, then exit non-zero
            failed += 1
            print(f"FAILED {test.__name__}: {e!r}")
    print(f"{len(tests) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
