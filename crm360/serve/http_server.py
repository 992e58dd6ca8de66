"""An ASGI application served by uvicorn on one bound socket, with the limits a page open to a
network needs and uvicorn does not set by itself.

uvicorn (h11) closes a keep-alive connection that stays idle after a response, but a new
connection that sends nothing, stops halfway through its head or sends a byte now and then
is held open for as long as the client likes, and a client that stops reading a response
holds it forever. :class:`BoundedH11Protocol` adds the missing bounds:

- the head of every request (request line and headers) must arrive whole within
  ``request_timeout`` seconds of the connection opening, or of the previous response ending;
  otherwise the connection is closed. Each byte does not restart the clock, so a slowloris
  client is closed like a silent one;
- a head is at most ``max_head_bytes`` long and has at most ``max_headers`` header lines,
  counted while it arrives, so a head that never ends is refused as soon as it is too long;
- a response whose client takes nothing for ``send_timeout`` seconds (the transport's buffer
  stays full) is aborted;
- what the protocol itself refuses (400, 414, 431) is answered with the application's
  refusal page and headers (``refusal``), not uvicorn's plain text.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

# (status, message) -> (headers, body) of the page that answers a refused request
Refusal = Callable[[HTTPStatus, str], tuple[dict[str, str], bytes]]


class _Connection(h11.Connection):
    """h11's connection, remembering why it refused the peer's bytes (uvicorn keeps only that it did)."""

    refused: h11.RemoteProtocolError | None = None

    def next_event(self):
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.refused = exc
            raise


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's head, bounded heads, a bounded wait
    for a client that stops reading, and refusals in the application's own words. The limits are
    class attributes: :func:`protocol` makes a subclass with them set."""

    request_timeout: float = 5.0
    send_timeout: float = 60.0
    max_head_bytes: int = 65536
    max_headers: int = 100
    refusal: Refusal | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _Connection(h11.SERVER, self.max_head_bytes)
        self._head_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._head = bytearray()  # the bytes of a head still arriving (at most max_head_bytes and a read)

    # ---- the head of each request arrives in time, or the connection is closed
    def _await_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head.clear()
        self._head_timer = self.loop.call_later(self.request_timeout, self._head_timed_out)

    def _head_arrived(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._head.clear()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.info("%s: no whole request within %ss, connection closed", _peer(self.client), self.request_timeout)
            self.transport.close()

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        awaiting = self.conn.their_state is h11.IDLE and self._head_timer is not None
        if awaiting:
            self._head += data
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self.conn.their_state is not h11.IDLE:
            self._head_arrived()
        elif awaiting and self._head.count(b"\n") - 1 > self.max_headers:
            # the head is still arriving and already has too many lines: refused now, not at its end
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"more than {self.max_headers} header lines")

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._send_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    # ---- a client that stops reading is let go after send_timeout
    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.send_timeout, self._send_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _send_timed_out(self) -> None:
        self._send_timer = None
        log.warning("%s: took nothing of the response for %ss, connection aborted", _peer(self.client),
                    self.send_timeout)
        self.transport.abort()

    # ---- what h11 refuses is answered with the application's page
    def send_400_response(self, msg: str) -> None:
        error = self.conn.refused
        status = HTTPStatus(getattr(error, "error_status_hint", 400))
        if status == HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE:
            if b"\n" in self._head or not self._head:
                reason = f"a request head longer than {self.max_head_bytes:,} bytes"
            else:  # still in the request line
                status = HTTPStatus.REQUEST_URI_TOO_LONG
                reason = f"a request line longer than {self.max_head_bytes:,} bytes"
        else:
            reason = f"not a request this server reads ({error})" if error else msg
        self._refuse(status, reason)

    def _refuse(self, status: HTTPStatus, reason: str) -> None:
        log.info("%s: refused with %d: %s", _peer(self.client), status, reason)
        headers, body = (self.refusal or _plain)(status, f"The request was refused: {reason}.")
        head = [f"HTTP/1.1 {status.value} {status.phrase}", *(f"{k}: {v}" for k, v in headers.items()),
                f"Content-Length: {len(body)}", "Connection: close", "", ""]
        self._head_arrived()
        self.transport.write("\r\n".join(head).encode("latin-1") + body)
        self.transport.close()


def _plain(status: HTTPStatus, message: str) -> tuple[dict[str, str], bytes]:
    return {"Content-Type": "text/plain; charset=utf-8"}, message.encode()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "a client"


def protocol(request_timeout: float, send_timeout: float, refusal: Refusal | None = None,
             max_head_bytes: int = 65536, max_headers: int = 100) -> type[BoundedH11Protocol]:
    return type("BoundedH11Protocol", (BoundedH11Protocol,), {
        "request_timeout": request_timeout, "send_timeout": send_timeout, "refusal": staticmethod(refusal),
        "max_head_bytes": max_head_bytes, "max_headers": max_headers})


class Server:
    """An ASGI application on a socket bound now (so a busy port fails here, and port 0 has its number
    at once), served by uvicorn when :meth:`serve_forever` runs, until :meth:`shutdown`.
    The interface is socketserver's, which the CLI and the tests drive."""

    def __init__(self, app, host: str, port: int, protocol_class: type[BoundedH11Protocol], backlog: int = 128):
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        self.socket = socket.create_server((host, port), family=family, backlog=backlog)
        self.server_address = self.socket.getsockname()[:2]
        self._config = uvicorn.Config(
            app, http=protocol_class, lifespan="off", log_config=None, server_header=False, backlog=backlog,
            # the client is the peer of the socket: a header does not get to say who downloaded a list
            proxy_headers=False,
            timeout_keep_alive=protocol_class.request_timeout,  # type: ignore[arg-type]
            h11_max_incomplete_event_size=protocol_class.max_head_bytes, timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(self._config)
        self._running = threading.Event()
        self._stopped = threading.Event()

    def serve_forever(self) -> None:
        self._running.set()
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serving and wait until the server has stopped (its open responses get up to 5 s)."""
        self._server.should_exit = True
        if self._running.is_set():
            self._stopped.wait()

    def server_close(self) -> None:
        self.socket.close()
