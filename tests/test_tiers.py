"""The test tiers: conftest marks each test unit or integration from what it uses, and a unit test
cannot reach a server or run dbt or Airflow without failing. No server, no dbt, no Airflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from conftest import _is_integration, _runs_dbt_or_airflow

from crm360.core import warehouse


def _item(path: str, fixtures=(), marks=()):
    return SimpleNamespace(path=Path(path), fixturenames=list(fixtures),
                           get_closest_marker=lambda name: name if name in marks else None)


@pytest.mark.parametrize(("item", "integration"), [
    (_item("tests/test_x.py"), False),
    (_item("tests/test_x.py", fixtures=["tmp_path", "monkeypatch"]), False),
    (_item("tests/test_x.py", fixtures=["db", "embedded_server", "fresh_db"]), True),  # db's closure
    (_item("tests/test_x.py", fixtures=["server"]), True),
    (_item("tests/test_x.py", fixtures=["shop_url", "mysql_server"]), True),
    (_item("tests/test_x.py", marks=["e2e"]), True),
    (_item("tests/test_x.py", marks=["deployment"]), True),
    (_item("tests/test_x.py", marks=["integration"]), True),
    (_item("tests/integration/test_x.py"), True),
    (_item("tests/unit/test_x.py"), False),
])
def test_a_test_is_integration_by_its_fixtures_marks_or_folder(item, integration):
    assert _is_integration(item) is integration


def test_this_test_is_in_the_unit_tier(request):
    assert request.node.get_closest_marker("unit") and not request.node.get_closest_marker("integration")


def test_a_unit_test_cannot_reach_postgresql_or_run_dbt_or_airflow(tmp_path):
    with pytest.raises(RuntimeError, match="is a unit test but connects to PostgreSQL"):
        psycopg.connect("postgresql://nobody@127.0.0.1:9/none", connect_timeout=1)
    with pytest.raises(RuntimeError, match="is a unit test but starts the embedded PostgreSQL"):
        warehouse.start_embedded(None)
    with pytest.raises(RuntimeError, match="is a unit test but runs dbt or the Airflow CLI"):
        subprocess.run([sys.executable, "-m", "crm360.transform.dbt_entry", "--version"], check=False)
    with pytest.raises(RuntimeError, match="runs dbt or the Airflow CLI"):
        subprocess.run(["airflow", "version"], check=False)
    # any other process is fine
    assert subprocess.run([sys.executable, "-c", "print('ok')"], capture_output=True, text=True).stdout == "ok\n"
    assert not _runs_dbt_or_airflow(["git", "status"]) and _runs_dbt_or_airflow("dbt build")
