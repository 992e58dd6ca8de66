"""Which rows a day's dbt tests read: on the incremental models, only those the build added.

An incremental model keeps its rows from one build to the next and adds the day's. Its
row-level tests (a ``not_null``, an ``accepted_values``: whether a row passes depends on that row
alone) need not read again the rows that passed them before. Those tests carry the placeholder
``__rows_of_this_build__`` as their ``where`` config; dbt_project/macros/tests_on_a_day.sql
replaces it with ``loaded_at > <mark>``, where the mark is the model's newest ``loaded_at`` when
the last build's tests all passed (``audit.tested_through``), handed to dbt in ``ENV``. Without a
mark, and on a full refresh, the placeholder is ``true``: every row is tested.

The marks are sound by construction:

- a build takes every mark out before it starts (:func:`take_marks`) and writes them again only
  after all its tests passed (:func:`record_marks`): rows a failed build wrote are tested again
  by the next one, whatever it did to them;
- a mark is not used when a gated load since replaced files (the incremental models are then
  rebuilt from all their input: every row is new), nor when the dbt project changed since (a test
  added or changed must read the old rows too);
- ``unique`` is the one test whose verdict on old rows can change with new rows that a day
  bounds: a duplicate needs a row the build wrote, so the values of the rows written since the
  mark (those loaded after it, and every row of a unique_key they have: the sessions rewrite a
  visitor's old sessions with their old ``loaded_at``) are checked against the whole table;
- ``relationships`` (a parent row can go), the other tests and the row-level tests of models whose
  rewritten rows keep an old ``loaded_at`` (sessions) read the whole table.

A bare ``dbt build`` (no ``ENV``) tests every row.
"""

from __future__ import annotations

import json
import logging

from crm360.core.settings import Settings, get_settings
from crm360.core.warehouse import Warehouse
from crm360.transform import manifest

log = logging.getLogger(__name__)

ENV = "CRM360_TESTED_THROUGH"
COLUMN = "loaded_at"


def take_marks(wh: Warehouse, settings: Settings | None = None, full_refresh: bool = False) -> dict[str, str]:
    """The marks the last passing build left, {model: loaded_at as ISO text}, taken out of the
    warehouse (the build about to run writes them again if its tests pass). Empty on a full refresh
    and for models no mark is valid for (a gated load replaced files since)."""
    incremental = manifest.load(settings).incremental_models()
    project = manifest.fingerprint((settings or get_settings()).dbt_project_dir)
    with wh.connect() as conn:
        rows = conn.execute("delete from audit.tested_through returning model, loaded_at, project").fetchall()
        replaced = conn.execute("""select max(loaded_at) from audit.load_attempts
                                   where status = 'gated' and replaced_files > 0""").fetchone()[0]
        conn.commit()
    if full_refresh:
        return {}
    marks = {model: mark.isoformat() for model, mark, tested in rows
             if model in incremental and tested == project and (replaced is None or replaced <= mark)}
    log.info("a day's tests: rows loaded after %s", json.dumps(marks) if marks else "nothing (every row is tested)")
    return marks


def record_marks(wh: Warehouse, run_id: str, settings: Settings | None = None) -> dict[str, str]:
    """After a build whose tests all passed: each incremental model's newest ``loaded_at`` (an
    index lookup: each has a btree on it), the mark its next build's tests start after."""
    incremental = manifest.load(settings).incremental_models()
    project = manifest.fingerprint((settings or get_settings()).dbt_project_dir)
    marks: dict[str, str] = {}
    with wh.connect() as conn:
        columns = manifest.actual_columns(conn, list(incremental.values()))
        for model, relation in sorted(incremental.items()):
            if COLUMN not in columns.get(relation, []):
                continue
            mark = conn.execute(f"select max({COLUMN}) from {relation}").fetchone()[0]  # noqa: S608 - manifest names
            if mark is None:
                continue
            conn.execute("""insert into audit.tested_through (model, loaded_at, project, run_id)
                            values (%s, %s, %s, %s)
                            on conflict (model) do update set loaded_at = excluded.loaded_at,
                                project = excluded.project, run_id = excluded.run_id, recorded_at = now()""",
                         (model, mark, project, run_id))
            marks[model] = mark.isoformat()
        conn.commit()
    return marks
