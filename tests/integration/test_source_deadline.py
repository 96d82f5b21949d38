"""The client's deadline applies to a server that trickles its response."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from worker.errors import SourceTimeout
from worker.source import ClientOptions, CodaClient

BODY = b'{"id": "grid-x", "name": "x", "tableType": "table", "rowCount": 1}'


@pytest.fixture
def trickling_server() -> Iterator[str]:
    """A one-shot HTTP server on 127.0.0.1 that sends its body one byte every 0.3 s."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            connection.sendall(head % len(BODY))
            for byte in BODY:
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.3)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/apis/v1"
    finally:
        listener.close()


def test_deadline_stops_trickling_answer(trickling_server: str) -> None:
    options = ClientOptions(timeout=2.0, connect_timeout=1.0, deadline=time.monotonic() + 1.0)
    started = time.monotonic()

    with (
        CodaClient(trickling_server, SecretStr("tok-0123456789"), options=options) as client,
        pytest.raises(SourceTimeout, match="still responding"),
    ):
        client.get_table("AbCDeFGHij", "grid-x")

    assert time.monotonic() - started < 2.0
