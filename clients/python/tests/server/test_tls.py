"""The client against a real ``cairn serve --tls-cert --tls-key`` whose certificate comes from a
private CA made here with the ``openssl`` command: with ``ca_file`` naming that CA, both clients
talk https; without it (the system's CAs) or with another CA, the connection is refused."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import cairn_client as cc

from .harness import Server


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"openssl {' '.join(args)} failed: {done.stderr}"


def _ca(directory: Path, name: str) -> Path:
    """A self-signed CA: ``NAME.key`` and ``NAME.pem`` in ``directory``."""
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.pem"


@pytest.fixture(scope="module")
def tls_server(cairn_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path, Path]]:
    root = tmp_path_factory.mktemp("cairn-tls")
    ca = _ca(root, "test-ca")
    other_ca = _ca(root, "other-ca")
    (root / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=root,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "test-ca.pem", "-CAkey", "test-ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem", cwd=root,
    )  # fmt: skip
    extra = ["--tls-cert", str(root / "server.pem"), "--tls-key", str(root / "server.key")]
    process = Server(cairn_bin, root / "data", root / "server.log", extra=extra, ca_file=ca).start()
    try:
        yield process, ca, other_ca
    finally:
        code = process.stop()
        assert code == 0, f"cairn serve exited with {code} on SIGTERM:\n{process.log()}"


def test_the_blocking_client_talks_https_with_the_ca_file(tls_server: tuple[Server, Path, Path]) -> None:
    server, ca, _ = tls_server
    assert server.url.startswith("https://127.0.0.1:")
    stream = f"tls-{uuid.uuid4().hex}"
    with cc.Client(server.url, ca_file=ca) as client:
        client.append(stream, [cc.NewEvent("Hello", {"over": "tls"})])
        events = list(client.read_stream(stream))
    assert [e.data for e in events] == [{"over": "tls"}]


@pytest.mark.anyio
async def test_the_async_client_talks_https_with_the_ca_file(tls_server: tuple[Server, Path, Path]) -> None:
    server, ca, _ = tls_server
    stream = f"tls-{uuid.uuid4().hex}"
    async with cc.AsyncClient(server.url, ca_file=str(ca)) as client:
        await client.append(stream, [cc.NewEvent("Hello", {"over": "tls"})])
        events = [e async for e in client.read_stream(stream)]
    assert [e.data for e in events] == [{"over": "tls"}]


def test_a_server_from_an_untrusted_ca_is_refused(tls_server: tuple[Server, Path, Path]) -> None:
    server, _, other_ca = tls_server
    for ca_file in (other_ca, None):
        with cc.Client(server.url, ca_file=ca_file, retries=0) as client:
            with pytest.raises(cc.TransportError) as failure:
                client.head()
        assert "CERTIFICATE_VERIFY_FAILED" in str(failure.value) or "certificate verify failed" in str(
            failure.value
        ), failure.value
