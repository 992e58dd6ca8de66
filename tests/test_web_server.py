"""The segment page's server without a warehouse: a client that stops reading is let go, and a
download the client abandons stops its export before the export is logged."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from starlette.responses import StreamingResponse

from crm360.serve import http_server, segments, web


@pytest.fixture
def serve():
    started = []

    def start(app, **limits):
        protocol = http_server.protocol(limits.pop("request_timeout", 5.0), limits.pop("send_timeout", 60.0))
        httpd = http_server.Server(app, "127.0.0.1", 0, protocol)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        started.append(httpd)
        return httpd.server_address[1]

    yield start
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


def test_a_client_that_stops_reading_is_let_go(serve):
    ended = threading.Event()
    sent = []

    async def endless():
        try:
            while True:
                sent.append(1)
                yield b"x" * 65536
                await asyncio.sleep(0)  # a body that awaits nothing would never let the server see the abort
        finally:
            ended.set()

    async def app(scope, receive, send):
        await StreamingResponse(endless())(scope, receive, send)

    port = serve(app, send_timeout=1.0)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        # nothing is read: the buffers fill, the server waits send_timeout, then lets go
        assert ended.wait(15), f"the response was still sending after {time.monotonic() - started:.0f}s"
    assert time.monotonic() - started < 10 and len(sent) > 1


def test_an_abandoned_download_stops_its_export_unlogged(serve, monkeypatch):
    outcome: dict[str, object] = {}
    finished = threading.Event()

    def export_csv(wh, name, out, exported_by, destination=None):
        # like segments.export_csv: rows written, then the log row, in one transaction
        try:
            for n in range(10_000_000):
                out.write(f"{name},{n},{'a' * 100}\n")
            outcome["logged"] = exported_by
        except BaseException as exc:
            outcome["stopped"] = exc
            raise
        finally:
            finished.set()

    monkeypatch.setattr(segments, "list_segments", lambda wh: [{"segment_name": "big", "as_of_date": "2026-12-01"}])
    monkeypatch.setattr(segments, "export_csv", export_csv)
    port = serve(web.app(wh=None))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /segments/big.csv HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while len(data) < 200_000:
            data += sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 200") and b"big,0," in data
    # the client hung up halfway
    assert finished.wait(10), "the export went on after the client left"
    assert "logged" not in outcome and isinstance(outcome["stopped"], Exception), outcome
