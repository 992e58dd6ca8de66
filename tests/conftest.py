"""Shared fixtures: real PostgreSQL servers and isolated crm360 settings.

Two servers are exercised:
- ``embedded``: a pgserver instance started for the session in a temp folder;
- ``server``: the PostgreSQL at CRM360_TEST_PG_URL (default: 127.0.0.1:5432 as
  postgres). Tests on it are skipped if it cannot be reached, unless
  CRM360_REQUIRE_SERVER=1 (CI sets it), where an unreachable server fails.
Every test module gets fresh databases, dropped afterwards.

Tests come in two tiers. ``integration``: a test that reaches a server (PostgreSQL, MariaDB),
runs dbt or Airflow, or lives under a folder named ``integration``; it is marked so here,
from the fixtures it uses (directly or through other fixtures) and the marks it has, so no test
needs to say it and the tiers survive a move of the files into tests/unit and tests/integration.
``unit``: every other test; ``make test-fast`` runs only these (``-m "not integration"``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from pathlib import Path
from urllib.parse import quote

# Airflow reads its home at import: never touch a developer's ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="crm360_airflow_home_"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

import psycopg
import pytest
import sales_db
from psycopg import sql

from crm360.core import schema, warehouse
from crm360.core.settings import Settings
from crm360.ingest import IngestError
from crm360.ingest.mysql import mysql_connection, parse_mysql_url

REPO = Path(__file__).resolve().parent.parent
# Airflow puts the plugins folder on sys.path; so do the tests.
sys.path.insert(0, str(REPO / "plugins"))
SERVER_URL = os.environ.get("CRM360_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MYSQL_URL = os.environ.get("CRM360_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")


# Fixtures that start or reach a server: a test using one (even through another fixture) is integration.
# (``server`` and ``fresh_db`` reach theirs through request.getfixturevalue, which no closure shows.)
SERVER_FIXTURES = {"embedded_server", "external_server", "mysql_server", "server", "fresh_db"}
# Marks that mean a real pipeline, dbt or Airflow run.
INTEGRATION_MARKS = {"e2e", "airflow", "deployment"}


def _is_integration(item: pytest.Item) -> bool:
    return (bool(SERVER_FIXTURES & set(getattr(item, "fixturenames", ())))
            or any(item.get_closest_marker(name) for name in INTEGRATION_MARKS | {"integration"})
            or "integration" in item.path.parent.parts)


@pytest.hookimpl(tryfirst=True)  # before -m selects on the marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker(pytest.mark.integration if _is_integration(item) else pytest.mark.unit)


def pytest_sessionstart(session):
    """The unit tier reads what dbt declares (the marts, the columns segments may use) but may not
    start dbt: the manifest is parsed here, once per test process and before any test, and every
    later ``manifest.load`` of the same project finds it in memory. (An xdist controller runs no
    test: its workers parse.)"""
    config = session.config
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return
    from crm360.transform import manifest

    manifest.load(Settings(home=Path(tempfile.mkdtemp(prefix="crm360-manifest-"))))


# The unit tier holds itself to it: while a unit test (and the fixtures it sets up) runs, connecting
# to PostgreSQL, starting the embedded server or starting dbt or the Airflow CLI fails it, saying so.
_PROGRAMS = {"dbt", "airflow"}
_MODULES = ("crm360.transform.dbt_entry", "crm360.transform.build_process", "dbt", "airflow")


def _refuse(item: pytest.Item, what: str):
    def refused(*args, **kwargs):
        raise RuntimeError(f"{item.nodeid} is a unit test but {what}: give it a server fixture or "
                           "@pytest.mark.integration")
    return refused


def _runs_dbt_or_airflow(cmd) -> bool:
    words = str(cmd).split() if isinstance(cmd, str | bytes | os.PathLike) else [str(w) for w in cmd]
    if not words:
        return False
    module = words[words.index("-m") + 1] if "-m" in words[:-1] else ""
    return Path(words[0]).name in _PROGRAMS or module.split(".")[0] in _MODULES or module in _MODULES


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    if item.get_closest_marker("integration"):
        yield
        return
    import subprocess

    patch = pytest.MonkeyPatch()
    popen = subprocess.Popen  # subprocess.run and check_output start their process through it

    def guarded(real, what):
        def call(cmd, *args, **kwargs):
            if _runs_dbt_or_airflow(cmd):
                _refuse(item, what)()
            return real(cmd, *args, **kwargs)
        return call

    patch.setattr(psycopg, "connect", _refuse(item, "connects to PostgreSQL"))
    patch.setattr(warehouse, "start_embedded", _refuse(item, "starts the embedded PostgreSQL"))
    patch.setattr(subprocess, "Popen", guarded(popen, "runs dbt or the Airflow CLI"))
    item.stash[_GUARD] = patch
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    patch = item.stash.get(_GUARD, None)
    if patch is not None:
        patch.undo()
    yield


_GUARD = pytest.StashKey[pytest.MonkeyPatch]()


def make_settings(home: Path, landing: Path, url: str | None = None) -> Settings:
    return Settings(project_dir=REPO, home=home, landing_dir=landing, warehouse_url=url)


@pytest.fixture(scope="session")
def session_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("crm360_home")


@pytest.fixture(scope="session")
def embedded_server(session_home):
    """The embedded server crm360 starts when no URL is configured."""
    settings = make_settings(session_home, session_home / "landing")
    wh = warehouse.start_embedded(settings)
    yield wh
    warehouse.stop_embedded(settings)


@pytest.fixture(scope="session")
def external_server():
    try:
        with psycopg.connect(SERVER_URL, connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        if os.environ.get("CRM360_REQUIRE_SERVER") == "1":
            pytest.fail(f"PostgreSQL at {SERVER_URL} is required but unreachable: {exc}")
        pytest.skip(f"no PostgreSQL at {SERVER_URL}: {exc}")
    return warehouse.from_url(SERVER_URL)


@pytest.fixture(params=["embedded", "server"])
def server(request) -> warehouse.Warehouse:
    """Each of the two servers in turn."""
    if request.param == "embedded":
        return request.getfixturevalue("embedded_server")
    return request.getfixturevalue("external_server")


# Migrating a new database takes seconds (every revision through alembic); a test process does it
# once per server, into a template database, and each test's database is a copy of it (CREATE
# DATABASE ... TEMPLATE, a file copy). Roles are the server's, so they are there already; what a copy
# does not carry is the template's privileges on the database itself, which _clone grants again.
_TEMPLATES: dict[str, tuple[warehouse.Warehouse, str]] = {}


def _template(server_wh: warehouse.Warehouse) -> str:
    key = server_wh.with_database("postgres").describe()
    if key not in _TEMPLATES:
        name = f"crm360_template_{uuid.uuid4().hex[:10]}"
        schema.migrate(warehouse.ensure_database(server_wh, name))
        _TEMPLATES[key] = (server_wh, name)
    return _TEMPLATES[key][1]


def _clone(server_wh: warehouse.Warehouse, template: str, name: str) -> warehouse.Warehouse:
    with server_wh.with_database("postgres").connect(autocommit=True) as conn:
        conn.execute(sql.SQL("create database {} template {}").format(sql.Identifier(name), sql.Identifier(template)))
        granted = conn.execute(
            "select a.grantee::regrole::text, a.privilege_type from pg_database d, aclexplode(d.datacl) a "
            "where d.datname = %s and a.grantee <> 0 and a.grantee <> d.datdba", (template,)).fetchall()
        for role, privilege in granted:
            conn.execute(sql.SQL("grant {} on database {} to {}").format(
                sql.SQL(privilege), sql.Identifier(name), sql.SQL(role)))
    return server_wh.with_database(name)


def pytest_sessionfinish(session):
    for server_wh, name in _TEMPLATES.values():
        try:
            warehouse.drop_database(server_wh, name)
        except (psycopg.Error, warehouse.WarehouseError):  # the server is already gone (stopped)
            pass


@pytest.fixture
def fresh_db(request):
    """A factory: a new database on the given server, at the code's schema (a copy of a database
    migrated once per test process) unless ``migrated=False``, dropped after the test."""
    created: list[tuple[warehouse.Warehouse, str]] = []

    def make(server_wh: warehouse.Warehouse, migrated: bool = True) -> warehouse.Warehouse:
        name = f"crm360_test_{uuid.uuid4().hex[:10]}"
        if migrated:
            wh = _clone(server_wh, _template(server_wh), name)
        else:
            wh = warehouse.ensure_database(server_wh, name)
        created.append((server_wh, name))
        return wh

    yield make
    for server_wh, name in created:
        warehouse.drop_database(server_wh, name)


@pytest.fixture
def db(embedded_server, fresh_db) -> warehouse.Warehouse:
    """A fresh database on the embedded server (for tests that need one server only)."""
    return fresh_db(embedded_server)


MARTS_CHECKSUM = """
    select count(*), md5(string_agg(customer_key || ':' || revenue || ':' || activity_tier, ','
                                    order by customer_key))
    from marts.customer_360
"""


def _publish_tiny(embedded_server, tmp_path_factory):
    from datetime import timedelta

    from crm360 import pipeline
    from crm360.synthetic.generate import GeneratorConfig, generate

    root = tmp_path_factory.mktemp("published")
    landing = root / "landing"
    world, _ = generate(landing, GeneratorConfig.preset("tiny", seed=3))
    name = f"crm360_test_{uuid.uuid4().hex[:10]}"
    wh = warehouse.ensure_database(embedded_server, name)
    settings = make_settings(root / "home", landing)
    as_of = world.end_date + timedelta(days=1)
    pipeline.run_all(as_of, "first", wh, landing=landing, settings=settings)
    return wh, settings, landing, as_of, name


@pytest.fixture(scope="module")
def published(embedded_server, tmp_path_factory):
    """A fresh database with one successful run published: (warehouse, settings, landing, as_of).
    The module may change it as it likes."""
    *handle, name = _publish_tiny(embedded_server, tmp_path_factory)
    yield tuple(handle)
    warehouse.drop_database(embedded_server, name)


@pytest.fixture(scope="session")
def shared_published(embedded_server, tmp_path_factory):
    """The same, built once per test process and shared by modules that only read it (they may
    add to logs such as audit.segment_exports, and must put back anything else they change)."""
    *handle, name = _publish_tiny(embedded_server, tmp_path_factory)
    yield tuple(handle)
    warehouse.drop_database(embedded_server, name)


# The MariaDB a SQL source is read from (tests of crm360.ingest.sql and of its dry run).
@pytest.fixture(scope="session")
def mysql_server() -> str:
    try:
        with mysql_connection(MYSQL_URL, use_database=False):
            pass
    except IngestError as exc:
        if os.environ.get("CRM360_REQUIRE_SERVER") == "1":
            pytest.fail(f"MariaDB at {parse_mysql_url(MYSQL_URL)} is required but unreachable: {exc}")
        pytest.skip(f"no MariaDB at {parse_mysql_url(MYSQL_URL)}: {exc}")
    return MYSQL_URL


@pytest.fixture
def shop_url(mysql_server) -> str:
    """A fresh, uniquely named database on the MariaDB server, dropped after the test."""
    server = parse_mysql_url(mysql_server)
    url = server.with_database(f"crm360_test_{uuid.uuid4().hex[:10]}")
    sales_db.ensure_database(url)
    text = f"mysql://{quote(url.user, safe='')}:{quote(url.password, safe='')}@{url.address}/{url.database}"
    yield text
    sales_db.drop_database(url)
