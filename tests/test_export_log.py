"""The export log says truthfully who exported what, when and where, and exports land where an
erasure can find them: in the export folder (``CRM360_EXPORT_DIR``)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from crm360.cli import main
from crm360.core import access

pytestmark = pytest.mark.e2e

LOG = "insert into audit.segment_exports (exported_by, segment_name, row_count, destination, format{}) " \
      "values ('campaign', 'upgrade_candidates', 1, '/srv/exports/x.csv', 'csv'{})"


def test_marketing_cannot_choose_who_or_when_an_export_was_logged(db):
    marketing = access.as_role(db, access.MARKETING)
    for column, value in (("db_role", "'crm360_transformer'"), ("exported_at", "'2020-01-01'")):
        with marketing.connect() as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(LOG.format(f", {column}", f", {value}"))
    with marketing.connect() as conn:
        conn.execute(LOG.format("", ""))
        conn.commit()
    # the database stamps who and when, whoever inserts and whatever they say
    with db.connect() as conn:
        conn.execute(LOG.format(", db_role, exported_at", ", 'marketing', '2020-01-01'"))
        conn.commit()
        rows = conn.execute("select db_role, exported_at from audit.segment_exports order by db_role").fetchall()
        owner = conn.execute("select session_user").fetchone()[0]
    assert [r[0] for r in rows] == sorted(["marketing", owner])
    assert all(abs(r[1] - datetime.now(UTC)) < timedelta(minutes=1) for r in rows)
    # and what was logged stays as it was logged
    with db.connect() as conn, pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        conn.execute("update audit.segment_exports set destination = '/etc/passwd'")


def test_exports_go_into_the_export_folder_and_nowhere_else(shared_published, tmp_path, monkeypatch, capsys):
    wh, settings, _, _ = shared_published
    exports = tmp_path / "exports"
    monkeypatch.setenv("CRM360_WAREHOUSE_URL", wh.conninfo)
    monkeypatch.setenv("CRM360_HOME", str(settings.home))
    monkeypatch.setenv("CRM360_EXPORT_DIR", str(exports))
    monkeypatch.chdir(tmp_path)
    assert main(["segments", "export", "upgrade_candidates", "-o", "spring/list.csv", "--exported-by", "exp-1"]) == 0
    written = exports / "spring" / "list.csv"
    with written.open(newline="", encoding="utf-8") as f:
        assert next(csv.reader(f))[:2] == ["segment_name", "customer_key"]
    assert not (tmp_path / "spring").exists()

    outside = tmp_path / "elsewhere.csv"
    (tmp_path / "elsewhere").mkdir()
    (exports / "out").symlink_to(tmp_path / "elsewhere")
    for target in (str(outside), "../elsewhere.csv", "out/list.csv", str(exports)):
        assert main(["segments", "export", "upgrade_candidates", "-o", target, "--exported-by", "exp-2"]) == 1
        err = capsys.readouterr().err
        assert "not a file inside the export folder" in err and str(exports) in err and "CRM360_EXPORT_DIR" in err, err
        assert "Traceback" not in err
    assert not outside.exists() and not list((tmp_path / "elsewhere").iterdir())

    assert main(["segments", "export", "upgrade_candidates", "-o", "-", "--exported-by", "exp-3"]) == 0
    assert capsys.readouterr().out.startswith("segment_name,customer_key")
    with wh.connect() as conn:
        logged = conn.execute("select exported_by, destination from audit.segment_exports "
                              "where exported_by like 'exp-%' order by exported_by").fetchall()
    assert logged == [("exp-1", str(written)), ("exp-3", "stdout")]
