"""What the published warehouse serves to people: the dbt docs site (``crm360 docs``)
and marketing's read-only segment browser (``crm360 serve``), driven in headless
Chromium. Both share one published tiny run (`shared_published`).

The browser test needs Debian's Chromium (``apt-get install chromium``) and the
``playwright`` package; without them it is skipped, unless CRM360_REQUIRE_BROWSER=1
(CI sets it), where their absence fails it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from crm360.core import access
from crm360.core.warehouse import Warehouse
from crm360.serve import docs, web

CHROMIUM = os.environ.get("CRM360_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _query(wh, query: str, params=()) -> list[tuple]:
    with wh.connect() as conn:
        return conn.execute(query, params).fetchall()


# ---------------------------------------------------------------- dbt docs

def test_docs_describe_the_published_marts_and_are_served(shared_published):
    wh, settings, _, _ = shared_published
    site = docs.generate(wh, settings)
    for name in (*docs.SITE_FILES, docs.STATIC_PAGE):
        assert (site.target / name).stat().st_size > 0, name
    catalog = json.loads((site.target / "catalog.json").read_text())
    node = catalog["nodes"]["model.crm360.customer_360"]
    # the catalog describes the published schema, not the build schema a run writes to
    assert node["metadata"]["schema"] == "marts"
    published_columns = {r[0] for r in _query(wh, """select column_name from information_schema.columns
                                                      where table_schema = 'marts' and table_name = 'customer_360'""")}
    assert set(node["columns"]) == published_columns and "customer_key" in published_columns
    manifest = json.loads((site.target / "manifest.json").read_text())
    assert manifest["nodes"]["model.crm360.customer_360"]["schema"] == "marts"
    assert "customer_360" in (site.target / docs.STATIC_PAGE).read_text(encoding="utf-8")

    httpd = docs.server(site, "127.0.0.1", 0)
    docs.start_in_thread(httpd)
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        with urllib.request.urlopen(f"{base}/", timeout=10) as resp:
            assert resp.status == 200 and b"<html" in resp.read(4096).lower()
        with urllib.request.urlopen(f"{base}/catalog.json", timeout=10) as resp:
            assert "model.crm360.customer_360" in json.load(resp)["nodes"]
    finally:
        httpd.shutdown()
        httpd.server_close()


# ---------------------------------------------------------------- segment browser, without a browser

@pytest.fixture(scope="module")
def browser_server(shared_published):
    wh, _, _, _ = shared_published
    httpd = web.make_server(access.as_role(wh, access.MARKETING), port=0)
    web.start_in_thread(httpd)
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_segment_browser_binds_to_this_machine_only_by_default(shared_published):
    httpd = web.make_server(shared_published[0], port=0)
    try:
        assert httpd.server_address[0] == "127.0.0.1"
    finally:
        httpd.server_close()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_segment_browser_is_read_only(browser_server, method):
    req = urllib.request.Request(f"{browser_server}/segments/top_customers_at_risk.csv", data=b"x=1",
                                 method=method)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 405 and err.value.headers["Allow"] == "GET, HEAD"


def test_unknown_segment_is_not_found_and_names_are_escaped(browser_server):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{browser_server}/segments/%3Cscript%3Ealert(1)%3C%2Fscript%3E", timeout=10)
    assert err.value.code == 404
    body = err.value.read().decode()
    assert "<script>" not in body and "&lt;script&gt;" in body
    page = web.segment_list_page([{"segment_name": "x", "description": "<img src=x onerror=alert(1)>",
                                   "customers": 3, "contactable_customers": 1, "version": "v\"1",
                                   "as_of_date": "2026-01-01"}]).decode()
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page and "v&#34;1" in page


# ---------------------------------------------------------------- segment browser, on raw sockets

@pytest.fixture(scope="module")
def unreachable_server():
    """The page on a warehouse nobody answers for (its pages fail: 500), as `crm360 serve` makes it."""
    wh = Warehouse(params={"host": "127.0.0.1", "port": 1, "dbname": "none", "user": "nobody"})
    httpd = web.make_server(wh, port=0)
    web.start_in_thread(httpd)
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def _exchange(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send ``request`` on a new connection and read until the server closes it: the status line,
    the headers and the body. (The requests are sized so the server reads all of them: bytes left
    unread when it closes would reset the connection.)"""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    return status, dict(line.split(": ", 1) for line in lines), body


# HTTP/1.1 requests name their Host (one without is a 400 of its own) and ask for the connection to
# close after the answer, so that _exchange reads to the end.
ONE = b"Host: x\r\nConnection: close\r\n"


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /" + b"a" * (65537 - 5), "414"),  # a request line over 64 KiB
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: y\r\n" % i for i in range(101)), "431"),  # over 100 headers, unended
    (b"GET / HTTP/1.1\r\n" + ONE + b"".join(b"X-H%d: y\r\n" % i for i in range(101)) + b"\r\n", "431"),  # ended
    (b"GET / HTTP/1.1\r\nX-Long: " + b"a" * (65537 - 8), "431"),  # a header line over 64 KiB
    (b"GARBAGE\r\n\r\n", "400"),
    (b"GET / HTTP/x.y\r\n\r\n", "400"),
    (b"GET / HTTP/1.1\r\n\r\n", "400"),  # HTTP/1.1 without a Host
    (b"GET / HTTP/2.0\r\n\r\n", "505"),
    (b"POST / HTTP/1.1\r\n" + ONE + b"Content-Length: 0\r\n\r\n", "405"),
    (b"PROPFIND / HTTP/1.1\r\n" + ONE + b"\r\n", "405"),  # any method but GET and HEAD, known or not
    (b"GET /no/such/page HTTP/1.1\r\n" + ONE + b"\r\n", "404"),
    (b"GET / HTTP/1.1\r\n" + ONE + b"\r\n", "500"),  # the warehouse cannot be reached
    (b"GET / HTTP/1.0\r\n\r\n", "500"),
    (b"GET /\r\n\r\n", "400"),  # HTTP/0.9, whose answers have no headers, is refused with them
])
def test_every_response_carries_the_security_headers(unreachable_server, request_bytes, status):
    line, headers, body = _exchange(unreachable_server, request_bytes)
    assert line.split(" ", 2)[:2] == ["HTTP/1.1", status], line
    headers = {k.lower(): v for k, v in headers.items()}
    for name, value in web.HEADERS.items():
        assert headers.get(name.lower()) == value, (name, headers)
    assert headers["content-type"].startswith("text/html") and int(headers["content-length"]) == len(body)
    assert b"<script" not in body.lower()
    if status == "405":
        assert headers["allow"] == web.ALLOWED


@pytest.mark.parametrize("path", ["/", "/segments/daily_call_list", "/segments/nobody",
                                  "/segments/daily_call_list.csv"])
def test_pages_and_downloads_carry_the_security_headers(browser_server, path):
    port = int(browser_server.rsplit(":", 1)[1])
    line, headers, body = _exchange(port, f"HEAD {path} HTTP/1.1\r\n".encode() + ONE + b"\r\n")
    assert line.split()[1] == ("404" if path.endswith("nobody") else "200"), line
    headers = {k.lower(): v for k, v in headers.items()}
    for name, value in web.HEADERS.items():
        assert headers.get(name.lower()) == value, (name, headers)
    assert body == b""


def test_idle_half_open_and_slow_connections_are_closed(unreachable_server):
    """Eight connections that send nothing, one that sends half a request and stops, one that
    sends a byte every half second: the server closes each within its timeout, and still answers."""
    port = unreachable_server
    started = time.monotonic()
    closed_after: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        def connect(timeout: float) -> socket.socket:
            return stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=timeout))

        idle = [connect(10) for _ in range(8)]
        half = connect(10)
        half.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        slow = connect(10)
        slow.settimeout(0.5)
        trickle = iter(b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 1000)
        while "slow" not in closed_after and time.monotonic() - started < 15:
            try:
                slow.sendall(bytes([next(trickle)]))
                if slow.recv(1) == b"":
                    closed_after["slow"] = time.monotonic() - started
            except TimeoutError:  # nothing to read within half a second: send the next byte
                continue
            except ConnectionError:
                closed_after["slow"] = time.monotonic() - started
        for name, sock in [*((f"idle {i}", s) for i, s in enumerate(idle)), ("half", half)]:
            try:
                assert sock.recv(1) == b"", name
            except TimeoutError:
                pytest.fail(f"{name}: still open after {time.monotonic() - started:.0f}s")
            except ConnectionResetError:
                pass
            closed_after[name] = time.monotonic() - started
    assert "slow" in closed_after, "the slow connection was never closed"
    assert max(closed_after.values()) < web.REQUEST_TIMEOUT + 3, closed_after
    assert _exchange(port, b"GET /nothing HTTP/1.0\r\n\r\n")[0].startswith("HTTP/1.1 404")


def test_the_next_request_on_a_kept_connection_has_its_own_deadline(unreachable_server):
    """After an answer the connection stays open for the next request, whose head must arrive within
    the timeout too: sending it a byte at a time does not keep the connection."""
    with socket.create_connection(("127.0.0.1", unreachable_server), timeout=10) as sock:
        sock.sendall(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 404")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(body) < length:
            body += sock.recv(65536)
        answered = time.monotonic()
        sock.settimeout(0.5)
        closed = None
        for byte in b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(1) == b"":
                    closed = time.monotonic() - answered
                    break
            except TimeoutError:
                continue
            except ConnectionError:
                closed = time.monotonic() - answered
                break
    assert closed is not None and closed < web.REQUEST_TIMEOUT + 3, closed


# ---------------------------------------------------------------- segment browser, in Chromium

@pytest.fixture(scope="module")
def chromium():
    required = os.environ.get("CRM360_REQUIRE_BROWSER") == "1"
    reason = None
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        reason = reason or f"the playwright package is not installed: {exc}"
    if reason:
        if required:
            pytest.fail(f"CRM360_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_marketing_browses_segments_and_downloads_a_list(chromium, shared_published, browser_server, tmp_path):
    wh, _, _, _ = shared_published
    sizes = dict(_query(wh, "select segment_name, count(*) from marts.segment_members group by segment_name"))
    segment_names = [r[0] for r in _query(wh, "select segment_name from marts.segments order by 1")]
    assert segment_names, "the published run has no segments"
    # the segment to open: the largest, so the download has rows to count
    name = max(segment_names, key=lambda n: sizes.get(n, 0))
    assert sizes.get(name, 0) > 0

    context = chromium.new_context(accept_downloads=True)
    page = context.new_page()
    page.goto(f"{browser_server}/")
    listed = {row.get_attribute("data-segment"): row.locator("td.size").inner_text()
              for row in page.locator("#segments tr[data-segment]").all()}
    assert sorted(listed) == segment_names
    for segment in segment_names:
        assert int(listed[segment].replace(",", "")) == sizes.get(segment, 0), segment

    page.click(f"text={name}")
    page.wait_for_selector("#members")
    assert page.locator("h1").inner_text() == name
    shown = page.locator("#members tr").count() - 1
    assert shown == min(sizes[name], web.PREVIEW_ROWS)
    header = [h.inner_text() for h in page.locator("#members tr").first.locator("th").all()]
    assert "customer_key" in header and "email" in header

    with page.expect_download() as info:
        page.click("#download")
    download = info.value
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    assert target.name.startswith(name) and target.suffix == ".csv"
    with target.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0][:2] == ["segment_name", "customer_key"]
    assert len(rows) - 1 == sizes[name]
    assert {r[0] for r in rows[1:]} == {name}
    # the browser cannot change anything either
    assert context.request.post(f"{browser_server}/segments/{name}.csv", data="x=1").status == 405
    context.close()

    logged = _query(wh, """select exported_by, row_count, db_role from audit.segment_exports
                           where segment_name = %s and exported_by like 'web:%%'""", (name,))
    assert logged == [("web:127.0.0.1", sizes[name], access.MARKETING)]
