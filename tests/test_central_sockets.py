"""The central's connections send small answers at once: TCP_NODELAY on every accepted socket, both for
``central serve`` (uvicorn binds host:port itself) and for the in-process CentralServer of tests and the
community. Without it an answer written in two pieces (head, then body) waits ~40 ms for the client's delayed
ACK (Nagle). Checked on the real accepted sockets, not by timing."""

from __future__ import annotations

import socket
import threading

import requests

from central.app import create_app
from central.server import make_server
from tests.conftest import eventually


def _nodelay_of_connections(server) -> list[int]:
    """TCP_NODELAY of each connection the uvicorn ``server`` holds open."""
    flags = []
    for protocol in list(server.server_state.connections):
        sock = protocol.transport.get_extra_info("socket")
        flags.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    return flags


def _held_connection_flags(server, url: str) -> list[int]:
    with requests.Session() as session:  # keep-alive: the connection stays open while we look
        assert session.get(f"{url}/api/v1/health", timeout=10).status_code == 200
        return eventually(lambda: _nodelay_of_connections(server), what="the kept-alive connection")


def test_the_test_central_sets_nodelay_on_accepted_connections(central):
    flags = _held_connection_flags(central._server._server, central.url)
    assert flags and all(flags), flags


def test_central_serve_sets_nodelay_on_accepted_connections(central, tmp_path):
    app = create_app(central.config, tmp_path / "serve.sqlite3")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = make_server(app, central.config.server, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        eventually(lambda: server.started or not thread.is_alive(), what="central serve's server to start")
        assert thread.is_alive()
        flags = _held_connection_flags(server, f"http://127.0.0.1:{port}")
        assert flags and all(flags), flags
    finally:
        server.should_exit = True
        thread.join(10)
        app.state.store.close()
