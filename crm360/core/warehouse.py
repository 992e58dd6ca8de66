"""The PostgreSQL warehouse: which server, how to reach it, and its schemas.

With no ``CRM360_WAREHOUSE_URL`` set, crm360 runs its own PostgreSQL from the
``pgserver`` package, keeping its data under ``CRM360_HOME/pgdata``. The server
is left running between commands (several Airflow task processes share it) and
is stopped with ``crm360 warehouse stop``.
"""

from __future__ import annotations

import atexit
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from crm360.core.errors import Crm360Error
from crm360.core.settings import Settings, get_settings

log = logging.getLogger(__name__)
# pgserver logs at exit, after test runners and CLIs have closed their streams
logging.getLogger("pgserver").setLevel(logging.WARNING)

EMBEDDED_DATABASE = "crm360"


class WarehouseError(Crm360Error):
    """The warehouse cannot be reached; it may be back in a moment."""

    retryable = True


@dataclass(frozen=True)
class Warehouse:
    """Connection parameters of one PostgreSQL database (libpq keywords)."""

    params: dict
    embedded: bool = False

    @property
    def conninfo(self) -> str:
        return make_conninfo(**self.params)

    @property
    def host(self) -> str:
        return str(self.params.get("host") or "localhost")

    @property
    def port(self) -> int:
        return int(self.params.get("port") or 5432)

    @property
    def user(self) -> str:
        return str(self.params.get("user") or "postgres")

    @property
    def password(self) -> str:
        return str(self.params.get("password") or "")

    @property
    def dbname(self) -> str:
        return str(self.params.get("dbname") or self.user)

    @property
    def is_socket(self) -> bool:
        return self.host.startswith("/")

    def sqlalchemy_url(self, driver: str = "psycopg2") -> str:
        """A SQLAlchemy URL for tools such as Great Expectations (psycopg2) and alembic (psycopg)."""
        from sqlalchemy.engine import URL

        query = {"host": self.host} if self.is_socket else {}
        url = URL.create(
            f"postgresql+{driver}",
            username=self.user,
            password=self.password or None,
            host=None if self.is_socket else self.host,
            port=None if self.is_socket else self.port,
            database=self.dbname,
            query=query,
        )
        return url.render_as_string(hide_password=False)

    def dbt_env(self) -> dict[str, str]:
        """Env vars read by dbt_project/profiles.yml."""
        return {
            "CRM360_PG_HOST": self.host,
            "CRM360_PG_PORT": str(self.port),
            "CRM360_PG_USER": self.user,
            "CRM360_PG_PASSWORD": self.password,
            "CRM360_PG_DATABASE": self.dbname,
        }

    def psql_command(self) -> str:
        return f"psql '{self.conninfo}'"

    @contextmanager
    def connect(self, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        try:
            conn = psycopg.connect(self.conninfo, autocommit=autocommit)
        except psycopg.OperationalError as exc:
            raise WarehouseError(f"cannot connect to the warehouse ({self.describe()}): {exc}") from exc
        try:
            yield conn
        finally:
            conn.close()

    def describe(self) -> str:
        where = f"socket {self.host}" if self.is_socket else f"{self.host}:{self.port}"
        kind = "embedded" if self.embedded else "configured"
        return f"{kind} PostgreSQL, database {self.dbname} at {where}"

    def with_database(self, dbname: str) -> Warehouse:
        return Warehouse(params={**self.params, "dbname": dbname}, embedded=self.embedded)


def from_url(url: str, embedded: bool = False) -> Warehouse:
    params = {k: v for k, v in conninfo_to_dict(url).items() if v not in (None, "")}
    return Warehouse(params=params, embedded=embedded)


def ensure_database(server: Warehouse, dbname: str) -> Warehouse:
    """Create ``dbname`` on the server of ``server`` if missing; return a handle to it.

    A database crm360 creates sorts text by code point (collation "C"), whatever the server's
    locale: the keys every model sorts, groups and indexes on (md5 customer keys, ids) then
    compare as bytes, with PostgreSQL's abbreviated keys, about two to three times faster than
    under a language's collation (or glibc's C.UTF-8), and an ``order by`` on text gives the same
    order on every machine. Character classes (``lower()`` of an accented e-mail) keep the server's
    LC_CTYPE. An existing database keeps its own collation."""
    maintenance = server.with_database("postgres")
    with maintenance.connect(autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone()
        if not exists:
            # template0: a collation other than the cluster's needs the pristine template; on an ICU
            # cluster (PostgreSQL 15+) the provider must be libc for LC_COLLATE to be the collation
            provider = sql.SQL(" locale_provider libc") if conn.info.server_version >= 150000 else sql.SQL("")
            conn.execute(sql.SQL("create database {} template template0 lc_collate 'C'{}").format(
                sql.Identifier(dbname), provider))
    return server.with_database(dbname)


def drop_database(server: Warehouse, dbname: str) -> None:
    with server.with_database("postgres").connect(autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(dbname)))


def _pgserver():
    # pgserver asks platformdirs for a runtime dir, which warns when XDG_RUNTIME_DIR is unset
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    try:
        import pgserver
    except ImportError as exc:  # pragma: no cover - dependency is pinned
        raise WarehouseError("the embedded warehouse needs the 'pgserver' package") from exc
    return pgserver


def start_embedded(settings: Settings) -> Warehouse:
    """Start (or attach to) the embedded PostgreSQL and return its crm360 database."""
    pgserver = _pgserver()
    settings.pgdata_dir.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: keep the server up after this process exits, so Airflow
    # task processes and the CLI share one server; `crm360 warehouse stop` ends it.
    server = pgserver.get_server(settings.pgdata_dir, cleanup_mode=None)
    base = from_url(server.get_uri(), embedded=True)
    return ensure_database(base, EMBEDDED_DATABASE)


def running_embedded(settings: Settings) -> Warehouse | None:
    """The embedded server's crm360 database if that server is running now, else None; never
    starts one (a failure callback records where the run wrote, or nowhere)."""
    _pgserver()
    from pgserver.utils import PostmasterInfo, process_is_running

    try:
        info = PostmasterInfo.read_from_pgdata(settings.pgdata_dir)
    except (OSError, AssertionError, ValueError):
        return None
    if info is None or not process_is_running(info.pid):
        return None
    return from_url(info.get_uri(database=EMBEDDED_DATABASE), embedded=True)


def stop_embedded(settings: Settings) -> bool:
    """Stop the embedded server if it runs. Returns whether one was stopped.

    pg_ctl directly: pgserver's own cleanup only stops the server when the
    calling process holds its last handle, which is never true for a server
    shared by the CLI, Airflow task processes and tests.
    """
    if not (settings.pgdata_dir / "postmaster.pid").exists():
        return False
    pgserver = _pgserver()
    from pgserver._commands import pg_ctl  # pinned pgserver==0.1.4

    server = pgserver.get_server(settings.pgdata_dir, cleanup_mode=None)
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=settings.pgdata_dir, user=server.system_user)
    # forget this handle: the server is gone, pgserver's exit hook has nothing left to do
    atexit.unregister(server._cleanup)
    type(server)._instances.pop(server.pgdata, None)
    return True


def configured(settings: Settings | None = None, url: str | None = None) -> Warehouse | None:
    """The warehouse a URL names (an Airflow connection's), else CRM360_WAREHOUSE_URL's; None
    when neither is set (the embedded default)."""
    settings = settings or get_settings()
    chosen = url or settings.warehouse_url
    return from_url(chosen) if chosen else None


def get_warehouse(settings: Settings | None = None) -> Warehouse:
    """The warehouse named by CRM360_WAREHOUSE_URL, or the embedded one (started if it is not
    running). Creates nothing in it: `crm360 migrate` (crm360.core.schema) does."""
    settings = settings or get_settings()
    if settings.warehouse_url:
        return from_url(settings.warehouse_url)
    return start_embedded(settings)
