"""What the published warehouse serves to people: the dbt docs site (``crm360 docs``)
and marketing's read-only segment browser (``crm360 serve``), driven in headless
Chromium. Both share one published tiny run (`shared_published`).

The browser test needs Debian's Chromium (``apt-get install chromium``) and the
``playwright`` package; without them it is skipped, unless CRM360_REQUIRE_BROWSER=1
(CI sets it), where their absence fails it.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from crm360 import access, docs, web

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
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page and "v&quot;1" in page


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
