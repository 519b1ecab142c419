"""provision selftest's strict TLS check, against a real TLS server on loopback with a site CA made two ways: the
short way (a bare ``openssl req -x509``, which Python 3.13 refuses) and the way docs/central.md gives."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from community.receivers import free_port
from provisioning.selftest_tls import check_tls_strict
from tests.loopback import serving
from tests.site_ca import make_site_ca
from tests.sync_helpers import node_config

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@contextmanager
def _serve(cert: Path, key: Path) -> Iterator[int]:
    """A TLS server on loopback that completes handshakes and hangs up; yields its port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def handshake(conn: socket.socket, stop: threading.Event) -> None:
        with conn, contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True):
            pass  # an error here: the client refused our chain, which is what the check is for

    with serving(handshake) as port:
        yield port


@pytest.mark.parametrize("proper", [True, False])
def test_a_site_ca_python_3_13_would_refuse_fails_on_any_python(tmp_path: Path, proper: bool) -> None:
    ca, cert, key = make_site_ca(tmp_path / "ca", strict=proper)
    with _serve(cert, key) as port:
        config = node_config(tmp_path / "node", f"https://127.0.0.1:{port}", central={"ca_bundle": str(ca)})
        check = check_tls_strict(config, timeout_s=5)
        assert check is not None
        if proper:
            assert check.result == "pass", check.detail
        else:  # the usual check passes (the node works today); the strict one does not
            assert check.result == "fail"
            assert "key usage" in check.detail and "Python 3.13" in check.detail


def test_nothing_to_say_over_plain_http_or_with_the_central_unreachable(tmp_path: Path) -> None:
    assert check_tls_strict(node_config(tmp_path / "a", "http://127.0.0.1:9"), timeout_s=1) is None
    closed = free_port()  # nobody listens: the central's own check says unreachable
    assert check_tls_strict(node_config(tmp_path / "b", f"https://127.0.0.1:{closed}"), timeout_s=1) is None
