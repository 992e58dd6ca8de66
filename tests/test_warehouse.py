import subprocess

import psycopg
import pytest
from conftest import REPO, make_settings

from crm360.core import warehouse


@pytest.mark.integration  # starts its own embedded server
def test_embedded_server_starts_stops_and_restarts_with_its_data(tmp_path):
    settings = make_settings(tmp_path / "home", tmp_path / "landing")
    wh = warehouse.get_warehouse(settings)
    with wh.connect() as conn:
        conn.execute("create table public.kept (x int)")
        conn.execute("insert into public.kept values (42)")
        conn.commit()
    assert warehouse.stop_embedded(settings) is True
    assert not (settings.pgdata_dir / "postmaster.pid").exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(wh.conninfo, connect_timeout=2)
    assert warehouse.stop_embedded(settings) is False
    again = warehouse.get_warehouse(settings)
    with again.connect() as conn:
        assert conn.execute("select x from public.kept").fetchone() == (42,)
    warehouse.stop_embedded(settings)


def test_configured_url_wins_and_nothing_is_created_in_it(external_server, fresh_db, tmp_path):
    """Naming a warehouse starts no embedded server and creates nothing: `crm360 migrate` does."""
    target = fresh_db(external_server, migrated=False)
    url = f"postgresql://{target.user}@{target.host}:{target.port}/{target.dbname}"
    wh = warehouse.get_warehouse(make_settings(tmp_path, tmp_path, url))
    assert not wh.embedded and wh.dbname == target.dbname
    assert not (tmp_path / "pgdata").exists()
    with wh.connect() as conn:
        schemas = {r[0] for r in conn.execute("select nspname from pg_namespace")}
    assert not schemas & {"raw", "audit", "marts"}


def test_a_database_crm360_creates_sorts_text_by_code_point(server, fresh_db):
    """Embedded or on a configured server: collation C (bytes, abbreviated keys: the sorts on
    customer keys are the build's), the server's character classes kept (lower() of an accented
    e-mail is what it is in the server's own databases)."""
    wh = fresh_db(server, migrated=False)
    probe = "select lower('ÉLODIE@EXAMPLE.ORG')"
    with wh.connect() as conn:
        collate, ctype = conn.execute(
            "select datcollate, datctype from pg_database where datname = current_database()").fetchone()
        order = [r[0] for r in conn.execute("select x from (values ('b'), ('B'), ('a'), ('é'), ('Z')) v (x) "
                                            "order by x")]
        lowered = conn.execute(probe).fetchone()[0]
    assert collate == "C"
    assert order == ["B", "Z", "a", "b", "é"]
    with server.with_database("postgres").connect() as conn:
        server_ctype = conn.execute("select datctype from pg_database where datname = 'template0'").fetchone()[0]
        assert lowered == conn.execute(probe).fetchone()[0]
    assert ctype == server_ctype


@pytest.mark.integration
def test_running_embedded_never_starts_a_server(tmp_path):
    settings = make_settings(tmp_path / "home", tmp_path / "landing")
    assert warehouse.running_embedded(settings) is None
    assert not settings.pgdata_dir.exists()
    started = warehouse.get_warehouse(settings)
    try:
        found = warehouse.running_embedded(settings)
        assert found is not None and found.embedded and found.dbname == started.dbname
        with found.connect() as conn:
            assert conn.execute("select current_database()").fetchone() == (started.dbname,)
    finally:
        warehouse.stop_embedded(settings)
    assert warehouse.running_embedded(settings) is None


def test_sqlalchemy_url_for_socket_and_tcp():
    sock = warehouse.from_url("postgresql://postgres:@/crm360?host=/tmp/some%20dir")
    assert sock.is_socket and sock.sqlalchemy_url() == "postgresql+psycopg2://postgres@/crm360?host=%2Ftmp%2Fsome+dir"
    tcp = warehouse.from_url("postgresql://u:p%40ss@db:6432/w")
    assert tcp.sqlalchemy_url() == "postgresql+psycopg2://u:p%40ss@db:6432/w"
    assert tcp.dbt_env()["CRM360_PG_PASSWORD"] == "p@ss" and tcp.dbt_env()["CRM360_PG_PORT"] == "6432"


@pytest.mark.integration  # tries to connect (to a port nobody listens on)
def test_unreachable_server_gives_a_clear_error():
    wh = warehouse.from_url("postgresql://nobody@127.0.0.1:9/none")
    with pytest.raises(warehouse.WarehouseError, match="cannot connect to the warehouse .*127.0.0.1:9"):
        with wh.connect():
            pass


def test_repo_names_no_machine_paths():
    """Nothing committed may name this machine's folders."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=False)
    if files.returncode != 0:
        pytest.skip("not a git checkout")
    offenders = [name for name in files.stdout.splitlines()
                 if (REPO / name).is_file() and str(REPO) in (REPO / name).read_text(errors="ignore")]
    assert offenders == []
