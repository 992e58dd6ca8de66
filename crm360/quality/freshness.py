"""Source freshness: how long ago each bound source table was last loaded, against the thresholds
dbt declares for it (warn_after / error_after on ``loaded_at_field`` in each source's YAML),
recorded per table in audit.source_freshness.

The figures are the ones `dbt source freshness` computes: the newest ``loaded_at_field`` of the
table (every row a load writes carries the one ``_loaded_at`` of its attempt, crm360.ingest.ledger)
and its age against the database's clock; past ``error_after`` is ``error``, past ``warn_after``
``warn``, else ``pass``; an empty table is a ``runtime error``, as dbt has it. They are computed
here, in one query per table, instead of starting dbt for them: a dbt process that starts, reads
its project and connects costs a run seconds that do not depend on the day's data.

The thresholds have one source of truth, dbt's sources YAML. They are read from the manifest the
last build's parse wrote (dbt has resolved inheritance and overrides there), or, when there is no
manifest yet or a sources file is newer than it, from the YAML itself.

What a stale source does is configuration: the dbt var ``freshness_action`` is
``warn`` (record and go on) or ``fail`` (stop the run before transforming).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from crm360.core.errors import Crm360Error
from crm360.core.settings import Settings, get_settings
from crm360.core.warehouse import Warehouse

log = logging.getLogger(__name__)

PERIODS = ("minute", "hour", "day")


class StaleSources(Crm360Error):
    """A source is past its error_after threshold and freshness_action is fail."""


class FreshnessConfigError(Crm360Error):
    """A source's freshness declaration cannot be read; the message names the file and source."""


@dataclass
class Freshness:
    source_name: str
    table_name: str
    status: str  # pass, warn, error, runtime error
    max_loaded_at: str | None
    age_seconds: float | None


@dataclass(frozen=True)
class Threshold:
    """One source table's freshness declaration, as dbt resolved it."""

    source_name: str
    table_name: str
    schema: str
    identifier: str
    loaded_at_field: str
    warn_after: timedelta | None
    error_after: timedelta | None
    filter: str | None = None

    def status(self, age_seconds: float) -> str:
        # dbt's order: error_after first, then warn_after; "exceeded" is strictly greater
        if self.error_after is not None and age_seconds > self.error_after.total_seconds():
            return "error"
        if self.warn_after is not None and age_seconds > self.warn_after.total_seconds():
            return "warn"
        return "pass"


def _after(value, where: str) -> timedelta | None:
    """A warn_after / error_after mapping ({count, period}) as a timedelta; None when unset."""
    if not value:
        return None
    if not isinstance(value, dict):
        raise FreshnessConfigError(f"{where}: expected {{count: N, period: minute|hour|day}}, got {value!r}")
    count, period = value.get("count"), value.get("period")
    if count is None or period is None:  # dbt checks nothing when either is missing
        return None
    if period not in PERIODS or isinstance(count, bool) or not isinstance(count, int):
        raise FreshnessConfigError(f"{where}: expected {{count: N, period: minute|hour|day}}, got {value!r}")
    return timedelta(**{f"{period}s": count})


def _threshold(source: str, table: str, schema: str, identifier: str, loaded_at_field: str | None,
               freshness: dict | None, where: str) -> Threshold | None:
    if not freshness or not loaded_at_field:  # dbt source freshness skips it too
        return None
    warn = _after(freshness.get("warn_after"), f"{where}: warn_after")
    error = _after(freshness.get("error_after"), f"{where}: error_after")
    if warn is None and error is None:
        return None
    return Threshold(source, table, schema, identifier, loaded_at_field, warn, error, freshness.get("filter"))


def _sources_files(settings: Settings) -> list[Path]:
    models = settings.dbt_project_dir / "models"
    return sorted(p for p in models.rglob("*.yml") if "sources:" in p.read_text(encoding="utf-8"))


def thresholds_from_manifest(manifest: Path) -> list[Threshold]:
    """The source tables with a freshness declaration, from a dbt manifest."""
    try:
        nodes = json.loads(manifest.read_text(encoding="utf-8"))["sources"]
    except (OSError, ValueError, KeyError) as exc:
        raise FreshnessConfigError(f"{manifest}: not a dbt manifest with sources ({exc})") from exc
    out = []
    for unique_id, node in sorted(nodes.items()):
        config = node.get("config") or {}
        freshness = node.get("freshness") or config.get("freshness")
        loaded_at = node.get("loaded_at_field") or config.get("loaded_at_field")
        if node.get("loaded_at_query") or config.get("loaded_at_query"):
            raise FreshnessConfigError(f"{manifest}: {unique_id} uses loaded_at_query, which crm360 does not "
                                       "compute; declare loaded_at_field instead")
        found = _threshold(node["source_name"], node["name"], node["schema"], node.get("identifier") or node["name"],
                           loaded_at, freshness, f"{manifest}: {unique_id}")
        if found:
            out.append(found)
    return out


def thresholds_from_yaml(files: list[Path]) -> list[Threshold]:
    """The source tables with a freshness declaration, from the sources YAML (before any parse):
    a table's freshness and loaded_at_field override its source's, ``freshness: null`` on a table
    turns the check off for it, as dbt resolves them."""
    import yaml

    out = []
    for path in files:
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise FreshnessConfigError(f"{path}: not valid YAML ({exc})") from exc
        for source in doc.get("sources") or []:
            name = source.get("name")
            where = f"{path}: source {name!r}"
            if not name:
                raise FreshnessConfigError(f"{path}: a source without a name")
            src_config = source.get("config") or {}
            src_fresh = source.get("freshness", src_config.get("freshness"))
            src_loaded = source.get("loaded_at_field", src_config.get("loaded_at_field"))
            schema = source.get("schema") or name
            for table in source.get("tables") or []:
                tname = table.get("name")
                if not tname:
                    raise FreshnessConfigError(f"{where}: a table without a name")
                t_config = table.get("config") or {}
                fresh = (table["freshness"] if "freshness" in table
                         else t_config["freshness"] if "freshness" in t_config else src_fresh)
                loaded = table.get("loaded_at_field") or t_config.get("loaded_at_field") or src_loaded
                if any(c.get("loaded_at_query") for c in (source, src_config, table, t_config)):
                    raise FreshnessConfigError(f"{where}, table {tname!r}: loaded_at_query is not computed by "
                                               "crm360; declare loaded_at_field instead")
                identifier = table.get("identifier") or tname
                for value in (schema, identifier, loaded or ""):
                    if "{{" in str(value):
                        raise FreshnessConfigError(f"{where}, table {tname!r}: {value!r} is templated; only dbt's "
                                                   "parse can resolve it (run a build first)")
                found = _threshold(name, tname, schema, identifier, loaded, fresh, f"{where}, table {tname!r}")
                if found:
                    out.append(found)
    return out


def thresholds(settings: Settings | None = None) -> list[Threshold]:
    """Every source table dbt declares a freshness for: from the last parse's manifest when it is
    at least as new as the sources YAML, else from the YAML."""
    settings = settings or get_settings()
    files = _sources_files(settings)
    manifest = settings.dbt_target_dir / "manifest.json"
    newest_yaml = max((p.stat().st_mtime for p in files), default=0.0)
    if manifest.exists() and manifest.stat().st_mtime >= newest_yaml:
        return thresholds_from_manifest(manifest)
    return thresholds_from_yaml(files)


# the raw tables' load time: a BRIN index (migration 0001), which serves ranges but not max()
LOAD_TIME = "_loaded_at"
# the newest load attempts whose load time bounds the search (then the whole table is read)
BOUNDED_TRIES = 5


def _newest(conn, t: Threshold) -> tuple:
    """The table's newest ``loaded_at_field`` and the database's clock. Over a raw table's load time
    the search starts at its source's newest load attempts (audit.load_attempts), newest first: each
    try reads only the block ranges loaded since (its BRIN index), not the history. The answer is
    the table's max whatever the ledger says: rows at or after a bound hold the max when there are
    any; when no bound finds one, the whole table is read."""
    query = sql.SQL("select max({field}), now() from {table}").format(
        field=sql.Identifier(t.loaded_at_field), table=sql.Identifier(t.schema, t.identifier))
    if t.filter:  # dbt's freshness filter is a SQL predicate written in the YAML
        return conn.execute(sql.SQL("{} where {}").format(query, sql.SQL(t.filter))).fetchone()
    if t.loaded_at_field == LOAD_TIME:
        bounds = conn.execute("""select distinct loaded_at from audit.load_attempts
                                 where source = %s and status <> 'unloaded' order by loaded_at desc limit %s""",
                              (t.source_name, BOUNDED_TRIES)).fetchall()
        for (bound,) in bounds:
            newest, now = conn.execute(sql.SQL("{} where {} >= %s").format(query, sql.Identifier(LOAD_TIME)),
                                       (bound,)).fetchone()
            if newest is not None:
                return newest, now
    return conn.execute(query).fetchone()


def measure(wh: Warehouse, declared: list[Threshold]) -> list[Freshness]:
    """Each table's newest load and its age on the database's clock, as dbt's collect_freshness."""
    results = []
    with wh.connect() as conn:
        for t in declared:
            try:
                newest, now = _newest(conn, t)
            except (psycopg.ProgrammingError, psycopg.DataError) as exc:  # dbt's runtime error: no such table...
                conn.rollback()
                log.warning("freshness of %s.%s could not be measured: %s", t.source_name, t.table_name, exc)
                results.append(Freshness(t.source_name, t.table_name, "runtime error", None, None))
                continue
            if newest is None:  # an empty table: dbt cannot tell its age either
                results.append(Freshness(t.source_name, t.table_name, "runtime error", None, None))
                continue
            age = (now - newest).total_seconds()
            results.append(Freshness(t.source_name, t.table_name, t.status(age), newest.isoformat(), age))
    return results


def check(wh: Warehouse, run_id: str, action: str = "warn", settings: Settings | None = None,
          systems: tuple[str, ...] | None = None) -> list[Freshness]:
    """Measure the freshness of the sources of ``systems`` (None: every source dbt declares one for)
    and record it for the run.

    A system the deployment does not have is not checked: its raw tables are empty by design, and
    calling it stale on every run would only teach people to ignore the check."""
    if systems is not None and not systems:
        return []
    if action not in ("warn", "fail"):
        raise ValueError(f"freshness_action must be 'warn' or 'fail', got {action!r}")
    declared = [t for t in thresholds(settings) if systems is None or t.source_name in systems]
    results = measure(wh, declared)
    now = datetime.now(UTC)
    with wh.connect() as conn:
        conn.execute("delete from audit.source_freshness where run_id = %s", (run_id,))
        with conn.cursor() as cur:
            cur.executemany(
                """insert into audit.source_freshness
                       (run_id, source_name, table_name, status, max_loaded_at, age_seconds, checked_at)
                   values (%s, %s, %s, %s, %s, %s, %s)""",
                [(run_id, f.source_name, f.table_name, f.status, f.max_loaded_at, f.age_seconds, now)
                 for f in results])
        conn.commit()
    stale = [f for f in results if f.status in ("error", "runtime error")]
    late = [f for f in results if f.status == "warn"]
    for f in late + stale:
        log.warning("source %s.%s is %s (last load %s)", f.source_name, f.table_name, f.status, f.max_loaded_at)
    if stale and action == "fail":
        names = ", ".join(f"{f.source_name}.{f.table_name} (last load {f.max_loaded_at})" for f in stale)
        raise StaleSources(f"stale sources past error_after: {names}")
    return results
