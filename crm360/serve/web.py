"""A small read-only web page where marketing browses the published segments and
downloads their lists (``crm360 serve``).

    /                      the segments: name, description, size, contactable, version, as of
    /segments/<name>       a segment's first members (the masked, marketing-safe columns)
    /segments/<name>.csv   the whole list as CSV, through the same export as
                           ``crm360 segments export``: logged in audit.segment_exports

Only GET and HEAD are answered (anything else gets 405); every value is HTML-escaped;
every response, the server's own errors too (400, 414, 431, 505 ...), carries the same
security headers; a connection whose request has not arrived whole within
REQUEST_TIMEOUT seconds (a client that sends nothing, stops halfway or sends a byte at a
time) is closed, so idle connections cannot hold the server's threads. The server binds
to 127.0.0.1 unless told otherwise, and reads the warehouse as whichever role it is
handed (the CLI hands it the ``marketing`` role). Standard library only: no framework,
no scripts in the pages.
"""

from __future__ import annotations

import html
import io
import logging
import math
import re
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

from crm360.core.warehouse import Warehouse
from crm360.serve import segments

log = logging.getLogger(__name__)

PREVIEW_ROWS = 200
ALLOWED = "GET, HEAD"
# seconds a connection has to deliver its whole request (line and headers); then it is closed
REQUEST_TIMEOUT = 5.0
# seconds a response may wait for the client to take what is sent (a large download on a slow link)
SEND_TIMEOUT = 60.0
SEGMENT_PATH = re.compile(r"^/segments/(?P<name>[^/]+?)(?P<csv>\.csv)?$")
HEADERS = {
    # nothing loads from anywhere, no script runs, no page frames this one
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.9em}th{background:#f3f3f3}"
         "td.num{text-align:right}.muted{color:#777}a.button{display:inline-block;padding:.4em .9em;"
         "background:#2f5aa8;color:#fff;text-decoration:none;border-radius:3px}")


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _page(title: str, body: str) -> bytes:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>").encode()


def _num(value) -> str:
    return f"{int(value):,}" if value is not None else ""


def segment_list_page(rows: list[dict]) -> bytes:
    if not rows:
        body = "<p class=muted>No segments are published yet.</p>"
    else:
        trs = "".join(
            f"<tr data-segment=\"{_e(r['segment_name'])}\">"
            f"<td><a href=\"/segments/{quote(str(r['segment_name']))}\">{_e(r['segment_name'])}</a></td>"
            f"<td>{_e(r.get('description'))}</td><td class=\"num size\">{_num(r.get('customers'))}</td>"
            f"<td class=\"num contactable\">{_num(r.get('contactable_customers'))}</td>"
            f"<td>{_e(r.get('version'))}</td><td>{_e(r.get('as_of_date'))}</td></tr>" for r in rows)
        body = ("<table id=segments><tr><th>segment</th><th>description</th><th>customers</th>"
                f"<th>contactable</th><th>version</th><th>as of</th></tr>{trs}</table>")
    return _page("crm360 segments", "<h1>Marketing segments</h1><p class=muted>Contact fields are shown only "
                 "for customers who consented to marketing. Every download is logged.</p>" + body)


def segment_page(seg: dict, columns: list[str], rows: list[tuple]) -> bytes:
    name = str(seg["segment_name"])
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    shown = (f"the first {len(rows):,} of {_num(seg.get('customers'))}" if len(rows) < (seg.get("customers") or 0)
             else f"all {len(rows):,}")
    return _page(f"crm360 segment {name}", (
        f"<p><a href=\"/\">&larr; all segments</a></p><h1>{_e(name)}</h1><p>{_e(seg.get('description'))}</p>"
        f"<p>{_num(seg.get('customers'))} customers, {_num(seg.get('contactable_customers'))} contactable; "
        f"version {_e(seg.get('version'))}, as of {_e(seg.get('as_of_date'))}</p>"
        f"<p><a class=button id=download href=\"/segments/{quote(name)}.csv\" download>Download CSV "
        f"({_num(seg.get('customers'))} rows)</a></p>"
        f"<p class=muted>Showing {shown} members.</p><table id=members><tr>{head}</tr>{body}</table>"))


class _RequestReader(io.RawIOBase):
    """A connection's bytes, read before a deadline: a request that has not arrived whole by then
    ends in TimeoutError, which http.server answers by closing the connection. Each read waits
    only for what is left of the time, so a client sending a byte now and then (slowloris) is
    closed like one that sends nothing."""

    def __init__(self, sock: socket.socket):
        super().__init__()
        self.sock = sock
        self.deadline = math.inf

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive in time")
        self.sock.settimeout(remaining)
        return self.sock.recv_into(buffer)


class SegmentBrowser(BaseHTTPRequestHandler):
    """Request handler; the server carries the warehouse (``server.warehouse``) and the seconds a
    request may take to arrive (``server.request_timeout``)."""

    server_version = "crm360-segments"
    sys_version = ""

    # ---- every connection: its request arrives in time, or it is closed
    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket's own reader, replaced by one with a deadline
        self._reader = _RequestReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.deadline = time.monotonic() + self.server.request_timeout  # type: ignore[attr-defined]
        super().handle_one_request()

    # ---- every response: the same headers, whoever sends it (the pages, or http.server's errors)
    def send_response_only(self, code, message=None) -> None:
        # http.server takes a request line without a version for HTTP/0.9, whose answer is the body
        # alone: no status line, no headers. Every request is answered in HTTP/1.0 at least.
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        super().send_response_only(code, message)

    def send_response(self, code, message=None) -> None:
        super().send_response(code, message)
        for k, v in HEADERS.items():
            self.send_header(k, v)
        self.connection.settimeout(SEND_TIMEOUT)  # the request is read: now the client reads

    # ---- anything but reading is refused
    def _refuse(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, _page("method not allowed", "<p>This page is read-only.</p>"),
                   extra={"Allow": ALLOWED})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse

    def __getattr__(self, name: str):
        # http.server answers a method without a do_<METHOD> with 501; this page refuses all alike
        if name.startswith("do_"):
            return self._refuse
        raise AttributeError(name)

    def do_HEAD(self) -> None:
        self._get(head=True)

    def do_GET(self) -> None:
        self._get(head=False)

    # ----
    @property
    def warehouse(self) -> Warehouse:
        return self.server.warehouse  # type: ignore[attr-defined]

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        log.info("segments %s - %s", self.address_string(), format % args)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str = "text/html; charset=utf-8",
              extra: dict | None = None, head: bool = False) -> None:
        self.send_response(status)
        for k, v in {"Content-Type": content_type, "Content-Length": str(len(body)), **(extra or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _not_found(self, message: str, head: bool) -> None:
        self._send(HTTPStatus.NOT_FOUND, _page("not found", f"<p>{_e(message)}</p><p><a href=\"/\">all segments"
                                                           "</a></p>"), head=head)

    def _get(self, head: bool) -> None:
        path = urlsplit(self.path).path
        try:
            if path in ("/", "/segments", "/segments/"):
                self._send(HTTPStatus.OK, segment_list_page(segments.list_segments(self.warehouse)), head=head)
                return
            m = SEGMENT_PATH.match(path)
            if not m:
                self._not_found(f"no page {path}", head)
                return
            name = unquote(m["name"])
            seg = next((r for r in segments.list_segments(self.warehouse) if r["segment_name"] == name), None)
            if seg is None:
                self._not_found(f"no published segment {name!r}", head)
                return
            if m["csv"]:
                self._csv(seg, head)
            else:
                columns, rows = segments.members(self.warehouse, name, limit=PREVIEW_ROWS)
                self._send(HTTPStatus.OK, segment_page(seg, columns, rows), head=head)
        except Exception:
            log.exception("segment page %s failed", path)
            if getattr(self, "_streaming", False):  # the response has begun: closing it is all that is left
                return
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR,
                       _page("error", "<p>The segment could not be read; the server log says why.</p>"), head=head)

    def _csv(self, seg: dict, head: bool) -> None:
        name = str(seg["segment_name"])
        filename = f"{name}_{seg.get('as_of_date') or 'segment'}.csv"
        extra = {"Content-Disposition": f"attachment; filename=\"{filename}\""}
        # streamed as written: a large segment is never held in memory (the connection's end ends the body)
        self._streaming = True
        self.send_response(HTTPStatus.OK)
        for k, v in {"Content-Type": "text/csv; charset=utf-8", **extra}.items():
            self.send_header(k, v)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if head:  # a HEAD is no download: nothing is exported or logged
            return
        out = io.TextIOWrapper(self.wfile, encoding="utf-8", newline="")
        try:
            rows = segments.export_csv(self.warehouse, name, out, exported_by=f"web:{self.client_address[0]}",
                                       destination="web download")
            out.flush()
        finally:
            out.detach()
        log.info("segment %s: %d rows downloaded by %s", name, rows, self.client_address[0])

class _Server(ThreadingHTTPServer):
    """A thread per connection and a listen backlog that a burst of idle connections does not
    fill (the standard library's 5 makes the sixth connection wait for a SYN retry)."""

    request_queue_size = 128
    daemon_threads = True


def make_server(wh: Warehouse, host: str = "127.0.0.1", port: int = 8765,
                request_timeout: float = REQUEST_TIMEOUT) -> ThreadingHTTPServer:
    """The segment browser on ``host:port`` (port 0: any free port), reading as ``wh``'s role;
    a connection whose request has not arrived within ``request_timeout`` seconds is closed."""
    try:
        httpd = _Server((host, port), SegmentBrowser)
    except OSError as exc:
        raise ValueError(f"cannot serve the segments on {host}:{port}: {exc}") from None
    httpd.warehouse = wh  # type: ignore[attr-defined]
    httpd.request_timeout = request_timeout  # type: ignore[attr-defined]
    return httpd


def start_in_thread(httpd: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=httpd.serve_forever, name="crm360-segments", daemon=True)
    thread.start()
    return thread
