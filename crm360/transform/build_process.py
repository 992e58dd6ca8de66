"""A run's build in one process: dbt's stages and the Python steps between them.

    python -m crm360.transform.build_process JOB.json

crm360.transform.dbt.run_build writes the job and starts this module as a process of its own (dbt
keeps global state: Airflow workers and tests must not hold it). Here dbt's programmatic runner
(``dbtRunner``) parses the project once (partial parsing kept: the parse reads only the files
changed since the last one) and every stage runs on that manifest, where each stage used to be
a dbt process of its own that started Python, imported dbt and read the project again. Between
the stages run the steps that need the first stage's tables: the customer value fit
(crm360.transform.predictions).

The job (JSON): ``vars_file`` (dbt's vars, read here as crm360.transform.dbt_entry reads them:
never on a command line), ``common`` (the arguments every invocation gets), ``steps`` (in order:
``{"dbt": [args]}`` or ``{"value_fit": {"as_of": date, "settings": {...}}}``) and ``result``, the
JSON file this process writes: the parse, then per step its nodes' results or its error, the
value fit's summary, and its seconds.
The warehouse the fit writes to comes in the environment (``CRM360_WAREHOUSE_URL``, read by
the settings), as dbt's does: no
password is written to a file. A failing step ends the build: later steps are not run.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import threading
import time
import traceback
from datetime import date
from pathlib import Path


def _node_results(result) -> list[dict]:
    """The nodes' results of a build as crm360.transform.dbt reads run_results.json."""
    rows = getattr(result, "results", None) or []
    return [{"unique_id": r.node.unique_id, "status": str(getattr(r.status, "value", r.status)),
             "message": r.message, "failures": r.failures, "execution_time": r.execution_time} for r in rows]


def _dbt_step(runner, args: list[str]) -> dict:
    started = time.perf_counter()
    res = runner.invoke(args)
    out = {"dbt": args, "success": bool(res.success), "results": _node_results(res.result),
           "seconds": round(time.perf_counter() - started, 3)}
    if res.exception is not None:
        out["error"] = f"{type(res.exception).__name__}: {res.exception}"
        print(f"dbt {args[0]}: {out['error']}", file=sys.stderr, flush=True)
    return out


def _value_fit(spec: dict) -> dict:
    from crm360.core.errors import is_retryable
    from crm360.core.settings import Settings
    from crm360.core.warehouse import from_url
    from crm360.transform import predictions

    try:
        settings = Settings(**spec["settings"])  # the warehouse: CRM360_WAREHOUSE_URL, which run_build sets
        wh = from_url(settings.warehouse_url)
        started = time.perf_counter()
        fit = predictions.fit_and_predict(wh, date.fromisoformat(spec["as_of"]), settings)
        return {"value_fit": fit, "success": True, "seconds": round(time.perf_counter() - started, 3)}
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        traceback.print_exc()
        return {"value_fit": None, "success": False, "retryable": is_retryable(exc),
                "error": f"{type(exc).__name__}: {exc}"}


def run(job: dict, runner=None, value_fit=None) -> list[dict]:
    """Every step of the job in order, until one fails; what each did, the parse first.
    ``runner`` (dbt's ``dbtRunner`` class) and ``value_fit`` stand in for dbt and the fit in tests."""
    if runner is None:
        from dbt.cli.main import dbtRunner as runner
    value_fit = value_fit or _value_fit
    common = list(job["common"])
    if job.get("vars_file"):
        common += ["--vars", Path(job["vars_file"]).read_text(encoding="utf-8")]
    started = time.perf_counter()
    parsed = runner().invoke(["parse", *common])
    done = [{"dbt": ["parse"], "success": bool(parsed.success), "results": [],
             "seconds": round(time.perf_counter() - started, 3)}]
    if not parsed.success:
        done[0]["error"] = f"{type(parsed.exception).__name__}: {parsed.exception}"
        print(f"dbt parse: {done[0]['error']}", file=sys.stderr, flush=True)
        return done
    shared = runner(manifest=parsed.result)  # every stage on the one parse
    if any("value_fit" in step for step in job["steps"]) and value_fit is _value_fit:
        # the fit's imports (numpy, scipy: seconds) overlap the first stage, whose threads mostly
        # wait for PostgreSQL, instead of adding to the build's time between the stages
        threading.Thread(target=importlib.import_module, args=("crm360.transform.predictions",), daemon=True).start()
    for step in job["steps"]:
        done.append(_dbt_step(shared, [*step["dbt"], *common]) if "dbt" in step else value_fit(step["value_fit"]))
        if not done[-1]["success"]:
            break
    return done


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m crm360.transform.build_process JOB.json")
    job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    done = run(job)
    Path(job["result"]).write_text(json.dumps({"steps": done}, default=str), encoding="utf-8")
    sys.exit(0 if all(step["success"] for step in done) else 1)


if __name__ == "__main__":
    main()
