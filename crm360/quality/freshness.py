"""Source freshness: `dbt source freshness` against the thresholds in each
source's YAML (warn_after / error_after on `_loaded_at`), recorded per table.

What a stale source does is configuration: the dbt var ``freshness_action`` is
``warn`` (record and go on) or ``fail`` (stop the run before transforming).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from crm360.core.errors import Crm360Error
from crm360.core.settings import Settings, get_settings
from crm360.core.warehouse import Warehouse
from crm360.transform import dbt

log = logging.getLogger(__name__)

class StaleSources(Crm360Error):
    """A source is past its error_after threshold and freshness_action is fail."""


@dataclass
class Freshness:
    source_name: str
    table_name: str
    status: str  # pass, warn, error, runtime error
    max_loaded_at: str | None
    age_seconds: float | None


def check(wh: Warehouse, run_id: str, action: str = "warn", settings: Settings | None = None,
          dbt_vars: dict | None = None, extra_env: dict[str, str] | None = None,
          systems: tuple[str, ...] | None = None) -> list[Freshness]:
    """Run dbt source freshness over ``systems`` (None: every source dbt knows). Pass the same
    ``dbt_vars`` and ``extra_env`` as the build: other vars, or other values of the env vars macros
    read, make dbt re-parse the whole project (seconds) on each invocation.

    A system the deployment does not have is not checked: its raw tables are empty by design, and
    calling it stale on every run would only teach people to ignore the check."""
    if systems is not None and not systems:
        return []
    if action not in ("warn", "fail"):
        raise ValueError(f"freshness_action must be 'warn' or 'fail', got {action!r}")
    settings = settings or get_settings()
    output = settings.dbt_target_dir / "sources.json"
    output.unlink(missing_ok=True)
    # exit code 1 means a source is past error_after: read the file rather than trust the code
    select = ["--select", *(f"source:{s}" for s in systems)] if systems is not None else []
    dbt.run_dbt(wh, ["source", "freshness", *select, "--output", str(output)], dbt_vars, settings=settings,
                check=False, extra_env=extra_env)
    if not output.exists():
        raise dbt.DbtError("dbt source freshness produced no results; see the dbt log")
    results = []
    for r in json.loads(output.read_text())["results"]:
        _, _, source, table = r["unique_id"].split(".", 3)
        results.append(Freshness(source, table, r.get("status", "runtime error"), r.get("max_loaded_at"),
                                 r.get("max_loaded_at_time_ago_in_s")))
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
