"""Serving the users on the shared published run: roles connecting as themselves, the
segments marketing reads, CSV exports and their log. (Forgetting a customer deletes, so it
has a run of its own: tests/test_erasure.py.)"""

from __future__ import annotations

import csv
import json

import psycopg
import pytest
import yaml

from crm360 import pipeline
from crm360.cli import main
from crm360.core import access, schema
from crm360.serve import segments
from crm360.transform import publish

pytestmark = pytest.mark.e2e

DENIED = psycopg.errors.InsufficientPrivilege


def _can(wh, query: str) -> bool:
    """Whether the role behind ``wh`` may run ``query`` (rolled back either way)."""
    with wh.connect() as conn:
        try:
            conn.execute(query)
            return True
        except DENIED:
            return False
        finally:
            conn.rollback()


def test_each_role_reads_and_writes_only_its_part(shared_published):
    wh, _, _, _ = shared_published
    bi = access.as_role(wh, access.BI_READER)
    marketing = access.as_role(wh, access.MARKETING)
    loader = access.as_role(wh, access.LOADER)
    transformer = access.as_role(wh, access.TRANSFORMER)

    # bi_reader: every published mart, read-only; nothing before marts
    for mart in pipeline.marts():
        assert _can(bi, f"select * from marts.{mart} limit 1"), mart
    assert not _can(bi, "delete from marts.customer_360")
    assert not _can(bi, "create table marts.mine (x int)")
    for table in ("raw.sales_customers", "staging.stg_sales__customers", "intermediate.int_customers_resolved",
                  "audit.load_files"):
        assert not _can(bi, f"select * from {table} limit 1"), table

    # marketing: the segment lists only
    assert _can(marketing, "select * from marts.segment_members limit 1")
    assert _can(marketing, "select * from marts.segments")
    assert _can(marketing, "select * from marts.segment__daily_call_list")
    for table in ("marts.customer_360", "marts.customer_identifiers", "marts.customer_call_list",
                  "raw.sales_customers", "raw.web_events", "staging.stg_sales__customers", "audit.segment_exports"):
        assert not _can(marketing, f"select * from {table} limit 1"), table
    assert not _can(marketing, "update marts.segment_members set email = 'x'")

    # loader: raw and the ledger; transformer: reads raw, writes what dbt builds
    assert _can(loader, "insert into raw.sales_products (product_id, list_price, _batch_id, _source_file, _loaded_at) "
                        "values ('P-role-test', '1', 'role-test', 'role-test.csv', now())")
    assert _can(loader, "select count(*) from audit.load_files")
    assert not _can(loader, "select * from marts.customer_360 limit 1")
    assert not _can(loader, "select * from staging.stg_sales__customers limit 1")
    assert _can(transformer, "select count(*) from raw.web_events")
    assert _can(transformer, "insert into staging.stg_sales__products select * from staging.stg_sales__products "
                             "limit 1")
    assert not _can(transformer, "delete from raw.web_events")
    assert not _can(transformer, "insert into audit.load_files select * from audit.load_files limit 1")


def test_marketing_sees_contacts_only_of_customers_who_consented(shared_published):
    wh, _, _, _ = shared_published
    with access.as_role(wh, access.MARKETING).connect() as conn:
        rows = conn.execute("select customer_key, full_name, email, phone, has_marketing_consent "
                            "from marts.segment_members").fetchall()
    with wh.connect() as conn:
        truth = {r[0]: r[1:] for r in conn.execute(
            "select customer_key, full_name, email, phone, has_marketing_consent from marts.customer_360")}
    consented = [r for r in rows if r[4]]
    masked = [r for r in rows if not r[4]]
    assert consented and masked
    for key, name, email, phone, consent in rows:
        t_name, t_email, t_phone, t_consent = truth[key]
        assert consent == t_consent
        if consent:
            assert (name, email, phone) == (t_name, t_email, t_phone)
            continue
        assert email is None or (email != t_email and email.startswith(t_email[0] + "***@")
                                 and email.endswith(t_email.split("@")[1]))
        assert phone is None or (phone == "***" + t_phone[-2:])
        assert name is None or (name != t_name and all(len(p) == 2 and p.endswith(".") for p in name.split()))


def test_grants_survive_the_swap_and_readers_never_see_a_build(db):
    """Published marts keep their readers; the schema being built and the replaced one have none."""
    schema.migrate(db)
    bi = access.as_role(db, access.BI_READER)
    with db.connect(autocommit=True) as conn:
        for version in (1, 2):
            conn.execute(f"create schema {publish.BUILD}")
            conn.execute(f"create table {publish.BUILD}.customer_360 as select {version} as version")
            conn.execute(f"grant select on {publish.BUILD}.customer_360 to bi_reader")  # as dbt's grants do
            assert not _can(bi, f"select * from {publish.BUILD}.customer_360")
            publish.publish(db, f"run{version}")
            with bi.connect() as reader:
                assert reader.execute("select version from marts.customer_360").fetchone()[0] == version
            if version == 2:
                assert not _can(bi, f"select * from {publish.PREVIOUS}.customer_360")


def test_segments_are_sized_and_their_history_recorded(shared_published):
    wh, _, _, _ = shared_published
    defined = {s.name: s for s in segments.load()}
    listed = {r["segment_name"]: r for r in segments.list_segments(access.as_role(wh, access.MARKETING))}
    assert set(listed) == set(defined)
    with wh.connect() as conn:
        for name, seg in defined.items():
            row = listed[name]
            assert row["version"] == seg.version
            source = f"marts.{seg.source}"
            expected = conn.execute(f"select count(*) from {source} where {seg.filter_sql}").fetchone()[0]
            assert row["customers"] == expected, name
            assert conn.execute(f"select count(*) from marts.segment__{name}").fetchone()[0] == expected
        # independent of the filter SQL: two segments recounted from their meaning
        c360 = conn.execute("select lifecycle_stage, email from marts.customer_360").fetchall()
        assert listed["dormant_prospects"]["customers"] == sum(
            1 for stage, email in c360 if stage == "dormant_prospect" and email is not None)
        assert listed["daily_call_list"]["customers"] == conn.execute(
            "select count(*) from marts.customer_call_list").fetchone()[0] > 0
        history = dict(conn.execute("select segment_name, customers from audit.segment_sizes "
                                    "where run_id = 'first'").fetchall())
    assert history == {name: row["customers"] for name, row in listed.items()}


def test_segments_longer_than_a_command_line_build(shared_published, tmp_path):
    """200 segments of 3 kB filters, 40 parentheses deep: 600 kB of definitions, over the kernel's
    128 KiB for one argument of a command line, build through the run's transform (dbt gets its
    vars in a file). The build is not published; the build schema is dropped afterwards."""
    wh, settings, _, as_of = shared_published
    entries = []
    for i in range(200):
        noise = ", ".join(f"'no_such_stage_{i:03d}_{j:03d}'" for j in range(115))
        entries.append({"name": f"big_{i:03d}", "description": f"segment {i} of a large file",
                        "filter": "(" * 40 + f"revenue >= {i % 5 * 40}" + ")" * 40
                                  + f" and lifecycle_stage not in ({noise})"})
    assert all(2900 < len(e["filter"]) <= segments.MAX_FILTER_LENGTH for e in entries)
    path = tmp_path / "segments.yml"
    path.write_text(yaml.safe_dump({"segments": entries}, width=10**6), encoding="utf-8")
    settings = settings.model_copy(update={"segments": path})  # as CRM360_SEGMENTS would set it
    assert len(json.dumps(pipeline.build_vars(settings))) > 4 * 128 * 1024
    try:
        pipeline.transform(wh, as_of, settings)
        with wh.connect() as conn:
            sizes = dict(conn.execute(f"select segment_name, customers from {publish.BUILD}.segments").fetchall())
            assert len(sizes) == 200
            for i in range(5):
                expected = conn.execute(f"select count(*) from {publish.BUILD}.customer_360 "  # noqa: S608
                                        "where revenue >= %s", (i * 40,)).fetchone()[0]
                assert sizes[f"big_{i:03d}"] == sizes[f"big_{i + 195:03d}"] == expected, i
            assert sizes["big_000"] > 0
            assert conn.execute("select count(*) from information_schema.views where table_schema = %s "
                                "and table_name like 'segment\\_\\_big\\_%%'", (publish.BUILD,)).fetchone()[0] == 200
    finally:
        publish.reset_build(wh)


def test_export_writes_the_whole_list_without_formulas_and_logs_it(shared_published, tmp_path, monkeypatch,
                                                                   capsys):
    wh, settings, _, _ = shared_published
    with wh.connect() as conn:  # a source system let a formula into a city name (put back below)
        cities = conn.execute("select customer_key, city from marts.segment_members "
                              "where segment_name = 'dormant_prospects'").fetchall()
        conn.execute("""update marts.segment_members set city = '=HYPERLINK("http://example.invalid","x")'
                        where segment_name = 'dormant_prospects'""")
        size = conn.execute("select customers from marts.segments "
                            "where segment_name = 'dormant_prospects'").fetchone()[0]
        conn.commit()
    monkeypatch.setenv("CRM360_WAREHOUSE_URL", wh.conninfo)
    monkeypatch.setenv("CRM360_HOME", str(settings.home))
    monkeypatch.setenv("CRM360_EXPORT_DIR", str(tmp_path))
    out = tmp_path / "dormant.csv"
    try:
        assert main(["segments", "export", "dormant_prospects", "-o", str(out), "--exported-by", "campaign-7"]) == 0
    finally:
        with wh.connect() as conn:
            for key, city in cities:
                conn.execute("update marts.segment_members set city = %s "
                             "where segment_name = 'dormant_prospects' and customer_key = %s", (city, key))
            conn.commit()
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == size > 0
    assert list(rows[0]) == list(segments.MEMBER_COLUMNS)
    assert all(r["city"].startswith("'=HYPERLINK") for r in rows)
    assert main(["segments", "export", "no_such_segment"]) == 1
    assert "no segment 'no_such_segment'; published segments: daily_call_list" in capsys.readouterr().err
    with wh.connect() as conn:
        log = conn.execute("select exported_by, db_role, segment_name, segment_version, row_count, destination "
                           "from audit.segment_exports where exported_by = 'campaign-7'").fetchall()
    version = {s.name: s.version for s in segments.load()}["dormant_prospects"]
    assert log == [("campaign-7", "marketing", "dormant_prospects", version, size, str(out.resolve()))]
