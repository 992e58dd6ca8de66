"""Connections to a MySQL/MariaDB source: its URL (never showing the password), a UTC session, and
identifier quoting. The extraction that uses them is :mod:`crm360.ingest.sql`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from urllib.parse import unquote, urlsplit

import pymysql

from crm360.ingest.batch import IngestError

DEFAULT_PORT = 3306
URL_SCHEMES = ("mysql", "mariadb", "mysql+pymysql")
CONNECT_TIMEOUT = 10


@dataclass(frozen=True)
class MysqlUrl:
    """Where a MySQL/MariaDB database is. ``str()`` and ``repr()`` never show the password."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def describe(self) -> str:
        """``host:port/database``: what messages and window ids name."""
        return f"{self.address}/{self.database}"

    def __str__(self) -> str:
        return f"mysql://{self.user}@{self.describe()}"

    def with_database(self, database: str) -> MysqlUrl:
        return replace(self, database=database)


def parse_mysql_url(url: str | MysqlUrl) -> MysqlUrl:
    """``mysql://user:password@host:port/database`` (user and password percent-encoded if needed)."""
    if isinstance(url, MysqlUrl):
        return url
    parts = urlsplit(url)
    if parts.scheme not in URL_SCHEMES:
        raise IngestError(f"not a MySQL/MariaDB URL (expected mysql://user:password@host:port/database), "
                          f"scheme {parts.scheme!r}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise IngestError(f"MySQL/MariaDB URL for host {parts.hostname!r}: the port is not a number") from None
    database = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not database or "/" in database:
        raise IngestError(f"MySQL/MariaDB URL must name a host and one database: "
                          f"mysql://user:password@host:port/database, got host {parts.hostname!r}, "
                          f"database {database!r}")
    return MysqlUrl(host=parts.hostname, port=port, user=unquote(parts.username or "root"),
                    password=unquote(parts.password or ""), database=database)


def connect_mysql(url: str | MysqlUrl, use_database: bool = True) -> pymysql.connections.Connection:
    """A PyMySQL connection in UTC, utf8mb4, without autocommit.

    The session time zone is UTC so that TIMESTAMP columns and ``NOW()`` agree
    with the DATETIME columns, which hold UTC by contract.
    """
    target = parse_mysql_url(url)
    where = target.describe() if use_database else target.address
    try:
        return pymysql.connect(host=target.host, port=target.port, user=target.user, password=target.password,
                               database=target.database if use_database else None, charset="utf8mb4",
                               connect_timeout=CONNECT_TIMEOUT, autocommit=False,
                               init_command="SET time_zone = '+00:00'")
    except pymysql.err.MySQLError as exc:
        reason = exc.args[1] if len(exc.args) > 1 else str(exc)
        if target.password:
            reason = str(reason).replace(target.password, "***")
        raise IngestError(f"cannot connect to MySQL/MariaDB at {where} as {target.user}: {reason}") from None


@contextmanager
def mysql_connection(url: str | MysqlUrl, use_database: bool = True) -> Iterator[pymysql.connections.Connection]:
    conn = connect_mysql(url, use_database)
    try:
        yield conn
    finally:
        conn.close()


def quote_mysql(name: str) -> str:
    """A MySQL identifier in backticks (a backtick inside is doubled)."""
    return "`" + name.replace("`", "``") + "`"
