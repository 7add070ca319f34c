"""The README's framework examples (its ``py`` blocks; the ``python`` blocks are the core
client's and run in tests/server/test_readme.py) run, in order, against the real server with
the adapters' token, so that part of the documentation cannot drift either."""

from __future__ import annotations

import re

import pytest

from ..server.harness import PYTHON_DIR
from .conftest import Deployment

README = PYTHON_DIR / "README.md"
DEFAULT_URL = 'url="http://127.0.0.1:7070"'


def test_the_framework_examples_run(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```py\n(.*?)```", README.read_text(), flags=re.S)
    text = "\n".join(blocks)
    assert "CairnSaver(" in text and "CairnSession(" in text
    for block in blocks:
        assert DEFAULT_URL in block, "each example connects to the default address"
        code = block.replace(DEFAULT_URL, f"url={deployment.url!r}, token={deployment.token!r}")
        exec(compile(code, str(README), "exec"), {"__name__": "readme_frameworks"})
    printed = capsys.readouterr().out
    assert printed.splitlines() == ["{'count': 1}", "2", "LH 1234 at 9:40."]
