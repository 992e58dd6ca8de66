"""A small read-only web page where marketing browses the published segments and
downloads their lists (``crm360 serve``).

    /                      the segments: name, description, size, contactable, version, as of
    /segments/<name>       a segment's first members (the masked, marketing-safe columns)
    /segments/<name>.csv   the whole list as CSV, streamed, through the same export as
                           ``crm360 segments export``: logged in audit.segment_exports

A Starlette application served by uvicorn (crm360.serve.http_server). Only GET and HEAD are
answered (anything else gets 405); the pages are Jinja2 templates with every value escaped
and no scripts; every response, the server's own refusals too (400, 414, 431, 505 ...),
carries the same security headers. A connection whose request head has not arrived whole
within REQUEST_TIMEOUT seconds (a client that sends nothing, stops halfway or sends a byte
at a time) is closed, and a response whose client takes nothing for SEND_TIMEOUT seconds is
aborted. The server binds to 127.0.0.1 unless told otherwise, and reads the warehouse as
whichever role it is handed (the CLI hands it the ``marketing`` role).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from http import HTTPStatus

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from crm360.core.warehouse import Warehouse
from crm360.serve import http_server, pages, segments

log = logging.getLogger(__name__)

PREVIEW_ROWS = 200
ALLOWED = "GET, HEAD"
# seconds a connection has to deliver a request's head (line and headers); then it is closed
REQUEST_TIMEOUT = 5.0
# seconds a response may wait for the client to take what is sent (a large download on a slow link)
SEND_TIMEOUT = 60.0
# a request's head: at most this many bytes and header lines
MAX_HEAD_BYTES = 65536
MAX_HEADERS = 100
# a download is handed from the export to the response in chunks of about this many characters,
# at most CSV_CHUNKS_AHEAD of them waiting: a large segment is never held in memory
CSV_CHUNK = 64 * 1024
CSV_CHUNKS_AHEAD = 4
HEADERS = {
    # nothing loads from anywhere, no script runs, no page frames this one
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
HTML = "text/html; charset=utf-8"


def segment_list_page(rows: list[dict]) -> bytes:
    return pages.render("segment_list.html", segments=rows).encode()


def segment_page(seg: dict, columns: list[str], rows: list[tuple]) -> bytes:
    return pages.render("segment.html", segment=seg, columns=columns, rows=rows).encode()


def error_page(status: HTTPStatus, message: str) -> bytes:
    return pages.render("error.html", title=status.phrase.lower(), message=message).encode()


def _html(status: HTTPStatus, body: bytes, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, headers=headers, media_type=HTML)


def _refusal(status: HTTPStatus, message: str) -> tuple[dict[str, str], bytes]:
    """The page and headers of a request the HTTP server itself refuses (http_server.Refusal)."""
    return {"Content-Type": HTML, **HEADERS}, error_page(status, message)


# ---------------------------------------------------------------- the downloads

class _Abandoned(Exception):
    """The response stopped taking the export's chunks: the client went away or stopped reading."""


class _ChunkWriter:
    """The text ``segments.export_csv`` writes, handed on in chunks through ``put``."""

    def __init__(self, put):
        self._put = put
        self._parts: list[str] = []
        self._size = 0

    def write(self, text: str) -> int:
        self._parts.append(text)
        self._size += len(text)
        if self._size >= CSV_CHUNK:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self._parts:
            chunk = "".join(self._parts).encode("utf-8")
            self._parts, self._size = [], 0
            self._put(chunk)


_END = object()


async def _csv_download(wh: Warehouse, name: str, client: str):
    """The segment as CSV chunks, exported (and logged) by a thread of its own that reads the
    warehouse while the response sends: each chunk waits for the response to take it. If the
    response is abandoned (the client left, or took nothing for SEND_TIMEOUT seconds), the export
    stops and its transaction is rolled back: nothing is logged. If the export fails halfway, the
    body ends unfinished (no final chunk), so the client knows the file is incomplete."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=CSV_CHUNKS_AHEAD)
    abandoned = threading.Event()

    def put(item) -> None:  # in the export's thread
        waiting = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        deadline = time.monotonic() + SEND_TIMEOUT
        while True:
            try:
                waiting.result(timeout=0.25)
                return
            except concurrent.futures.TimeoutError:
                if abandoned.is_set() or time.monotonic() > deadline:
                    waiting.cancel()
                    raise _Abandoned from None

    def export() -> None:
        out = _ChunkWriter(put)
        try:
            rows = segments.export_csv(wh, name, out, exported_by=f"web:{client}", destination="web download")
            out.flush()
        except _Abandoned:
            log.warning("segment %s: download by %s abandoned; the export was not logged", name, client)
            return
        except Exception as exc:
            log.exception("segment %s: download by %s failed", name, client)
            try:
                put(exc)
            except _Abandoned:
                pass
            return
        log.info("segment %s: %d rows downloaded by %s", name, rows, client)
        try:
            put(_END)
        except _Abandoned:
            pass

    threading.Thread(target=export, name=f"crm360-download-{name}", daemon=True).start()
    try:
        while (item := await queue.get()) is not _END:
            if isinstance(item, Exception):
                raise RuntimeError(f"segment {name}: the download failed halfway") from item
            yield item
    finally:
        abandoned.set()


# ---------------------------------------------------------------- the pages

def app(wh: Warehouse) -> _Guard:
    """The segment browser as an ASGI application reading ``wh``."""

    async def segment_list(request: Request) -> Response:
        return _html(HTTPStatus.OK, segment_list_page(await run_in_threadpool(segments.list_segments, wh)))

    async def segment(request: Request) -> Response:
        file = request.path_params["file"]
        name = file.removesuffix(".csv")
        seg = next((r for r in await run_in_threadpool(segments.list_segments, wh) if r["segment_name"] == name),
                   None)
        if seg is None:
            return _html(HTTPStatus.NOT_FOUND, error_page(HTTPStatus.NOT_FOUND, f"no published segment {name!r}"))
        if file.endswith(".csv"):
            filename = f"{name}_{seg.get('as_of_date') or 'segment'}.csv"
            headers = {"Content-Disposition": f"attachment; filename=\"{filename}\""}
            if request.method == "HEAD":  # a HEAD is no download: nothing is exported or logged
                response = Response(status_code=HTTPStatus.OK, headers=headers, media_type="text/csv; charset=utf-8")
                del response.headers["content-length"]
                return response
            client = request.client.host if request.client else "unknown"
            return StreamingResponse(_csv_download(wh, name, client), headers=headers,
                                     media_type="text/csv; charset=utf-8")
        columns, rows = await run_in_threadpool(segments.members, wh, name, PREVIEW_ROWS)
        return _html(HTTPStatus.OK, segment_page(seg, columns, rows))

    async def not_found(request: Request, exc: Exception) -> Response:
        return _html(HTTPStatus.NOT_FOUND, error_page(HTTPStatus.NOT_FOUND, f"no page {request.url.path}"))

    async def failed(request: Request, exc: Exception) -> Response:
        # the traceback goes to the log (the server logs the exception this answers)
        return _html(HTTPStatus.INTERNAL_SERVER_ERROR, error_page(
            HTTPStatus.INTERNAL_SERVER_ERROR, "The segment could not be read; the server log says why."))

    read = ["GET", "HEAD"]
    routes = [Route("/", segment_list, methods=read), Route("/segments", segment_list, methods=read),
              Route("/segments/", segment_list, methods=read), Route("/segments/{file}", segment, methods=read)]
    return _Guard(Starlette(routes=routes, exception_handlers={404: not_found, Exception: failed}))


class _Guard:
    """Around the application: refuses what it must not see (another method than GET and HEAD,
    another HTTP version than 1.0 and 1.1, more than MAX_HEADERS headers) and puts the security
    headers on every response."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return

        async def secured(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in HEADERS.items():
                    headers[k] = v
            await send(message)

        refused = self.refusal(scope)
        if refused is not None:
            await refused(scope, receive, secured)
            return
        await self.inner(scope, receive, secured)

    @staticmethod
    def refusal(scope) -> Response | None:
        status, message, extra = None, "", {}
        if scope["http_version"] not in ("1.0", "1.1"):
            status, message = HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "This page speaks HTTP/1.0 and HTTP/1.1."
        elif len(scope["headers"]) > MAX_HEADERS:
            status, message = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"More than {MAX_HEADERS} headers."
        elif scope["method"] not in ("GET", "HEAD"):
            status, message, extra = HTTPStatus.METHOD_NOT_ALLOWED, "This page is read-only.", {"Allow": ALLOWED}
        if status is None:
            return None
        # what the request may still send is not read: the connection ends with the answer
        return _html(status, error_page(status, message), {**extra, "Connection": "close"})


# ---------------------------------------------------------------- the server

def make_server(wh: Warehouse, host: str = "127.0.0.1", port: int = 8765,
                request_timeout: float = REQUEST_TIMEOUT) -> http_server.Server:
    """The segment browser on ``host:port`` (port 0: any free port), reading as ``wh``'s role;
    a connection whose request head has not arrived within ``request_timeout`` seconds is closed.
    Call ``serve_forever`` (or :func:`start_in_thread`), then ``shutdown`` and ``server_close``."""
    protocol = http_server.protocol(request_timeout, SEND_TIMEOUT, _refusal, MAX_HEAD_BYTES, MAX_HEADERS)
    try:
        return http_server.Server(app(wh), host, port, protocol)
    except OSError as exc:
        raise ValueError(f"cannot serve the segments on {host}:{port}: {exc}") from None


def start_in_thread(httpd: http_server.Server) -> threading.Thread:
    thread = threading.Thread(target=httpd.serve_forever, name="crm360-segments", daemon=True)
    thread.start()
    return thread
