"""Run dbt against the warehouse as a subprocess (dbt keeps global state; a
separate process keeps Airflow workers and tests clean): :func:`run_dbt` for one command,
:func:`run_build` for a run's build, its stages and the value fit in one process that parses the
project once (crm360.transform.build_process). :func:`start_process` starts every one.

Its vars (the segments among them) reach it in a JSON file under CRM360_HOME/dbt/vars/,
read by crm360.transform.dbt_entry in dbt's process: on the command line, large vars exceeded the
kernel's limit on an argument's length."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from crm360.core.errors import ConfigurationError, Crm360Error
from crm360.core.settings import Settings, get_settings
from crm360.core.warehouse import Warehouse

log = logging.getLogger(__name__)


class DbtError(Crm360Error):
    """dbt exited with an error; the message carries the failing nodes. Retryable only when dbt
    lost its database connection: a failing model or test fails again on the same data."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


# what dbt prints when the server, not the project, failed it
_CONNECTION_LOST = ("could not connect to server", "connection to server", "server closed the connection",
                    "terminating connection due to administrator command", "the database system is starting up",
                    "the database system is shutting down", "connection refused", "connection already closed")


@dataclass
class DbtResult:
    args: list[str]
    returncode: int
    output: str
    results: list[dict]

    def failures(self) -> list[dict]:
        return [r for r in self.results if r.get("status") in ("error", "fail", "runtime error")]


def dbt_command() -> list[str]:
    """dbt's command line, started by crm360.transform.dbt_entry in this interpreter (where dbt is installed)."""
    return [sys.executable, "-m", "crm360.transform.dbt_entry"]


def write_vars(dbt_vars: dict, settings: Settings) -> Path:
    """The vars as a JSON file in CRM360_HOME/dbt/vars/, named by its content: invocations with the
    same vars (every run's, until segments.yml changes) share one file, and two processes writing
    it at once write the same bytes, each by an atomic rename. Kept, so a build can be repeated
    by hand: ``python -m crm360.transform.dbt_entry --vars-file FILE build ...``."""
    text = json.dumps(dbt_vars)
    path = settings.dbt_vars_dir / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return path


def run_dbt(wh: Warehouse, args: list[str], dbt_vars: dict | None = None,
            settings: Settings | None = None, check: bool = True,
            extra_env: dict[str, str] | None = None, target_dir: Path | None = None) -> DbtResult:
    """``target_dir`` (default: the settings' dbt target) is where dbt writes its artifacts."""
    settings = settings or get_settings()
    target = target_dir or settings.dbt_target_dir
    target.mkdir(parents=True, exist_ok=True)
    settings.dbt_log_dir.mkdir(parents=True, exist_ok=True)
    vars_file = write_vars(dbt_vars, settings) if dbt_vars else None
    cmd = [*dbt_command(), *(["--vars-file", str(vars_file)] if vars_file else []), *args,
           "--project-dir", str(settings.dbt_project_dir),
           "--profiles-dir", str(settings.dbt_project_dir),
           "--target-path", str(target)]
    env = dbt_env(wh, settings, extra_env)
    log.info("running dbt %s%s", " ".join(args[:3]), f" (vars: {vars_file})" if vars_file else "")
    proc = start_process(cmd, env, settings.dbt_project_dir)
    output = proc.stdout + proc.stderr
    result = DbtResult(args=args, returncode=proc.returncode, output=output, results=_read_run_results(target))
    if check and proc.returncode != 0:
        raise _failed(f"dbt {args[0]}", result)
    return result


def dbt_env(wh: Warehouse, settings: Settings, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a dbt process: the warehouse for profiles.yml and dbt's own settings."""
    return {**os.environ, **wh.dbt_env(),
            # sorts and hashes over the event history fit in memory instead of spilling to disk
            "PGOPTIONS": settings.dbt_pgoptions,
            "DBT_LOG_PATH": str(settings.dbt_log_dir),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DBT_USE_COLORS": "false", **(extra_env or {})}


def start_process(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """Run one dbt process to its end, its output logged line by line: the one place crm360 starts
    dbt (a build's stages, a single command, the manifest's parse), so counting its calls counts
    dbt's starts, the fixed cost of every invocation."""
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    for line in (proc.stdout + proc.stderr).splitlines():
        log.info("dbt | %s", line)
    return proc


def _failed(what: str, result: DbtResult) -> DbtError:
    failed = result.failures()
    names = ", ".join(f"{r['unique_id']} ({r['status']})" for r in failed[:20])
    tail = "\n".join(result.output.splitlines()[-25:])
    lost = any(marker in result.output.lower() for marker in _CONNECTION_LOST)
    return DbtError(f"{what} failed (exit {result.returncode})" + (f": {names}" if names else "") + f"\n{tail}",
                    retryable=lost)


class ValueFitError(Crm360Error):
    """The value fit between a build's stages raised (in the build's process): the message carries
    its error; retryable when that error was (a lost connection, not bad data)."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass
class BuildResult:
    """What :func:`run_build` ran: each dbt stage's result, the value fit's summary (None if the
    job had none), the process's output and the seconds of its parts."""

    stages: list[DbtResult]
    value_fit: dict | None
    output: str
    # the parse, each stage and the fit, as the build's process timed them, and the process's rest
    seconds: dict[str, float | None]

    @property
    def results(self) -> list[dict]:
        return [r for stage in self.stages for r in stage.results]


def run_build(wh: Warehouse, steps: list[dict], dbt_vars: dict | None = None, settings: Settings | None = None,
              extra_env: dict[str, str] | None = None) -> BuildResult:
    """A build's steps in ONE process (crm360.transform.build_process): ``{"dbt": args}`` run by
    dbt's programmatic runner on one parse of the project, ``{"value_fit": as_of}`` (a date) fits
    the customer value models there. The first failing step ends the build and raises here:
    :class:`DbtError` naming the failing nodes, or :class:`ValueFitError`."""
    import tempfile

    settings = settings or get_settings()
    target = settings.dbt_target_dir
    target.mkdir(parents=True, exist_ok=True)
    settings.dbt_log_dir.mkdir(parents=True, exist_ok=True)
    vars_file = write_vars(dbt_vars, settings) if dbt_vars else None
    # what the fit's Settings need in the build's process: the project and the vars overrides
    fit_settings = {"project_dir": str(settings.project_dir), "home": str(settings.home),
                    "dbt_vars": str(settings.dbt_vars) if settings.dbt_vars else None}
    planned = [{"dbt": list(step["dbt"])} if "dbt" in step else
               {"value_fit": {"as_of": step["value_fit"].isoformat(), "settings": fit_settings}} for step in steps]
    with tempfile.TemporaryDirectory(prefix="build-", dir=target) as work:
        job_path, result_path = Path(work) / "job.json", Path(work) / "result.json"
        job_path.write_text(json.dumps({
            "vars_file": str(vars_file) if vars_file else None, "steps": planned, "result": str(result_path),
            "common": ["--project-dir", str(settings.dbt_project_dir), "--profiles-dir", str(settings.dbt_project_dir),
                       "--target-path", str(target)]}), encoding="utf-8")
        env = dbt_env(wh, settings, {**(extra_env or {}), Settings.env_name("warehouse_url"): wh.conninfo})
        log.info("running a build of %d step(s) in one dbt process%s", len(steps),
                 f" (vars: {vars_file})" if vars_file else "")
        started = time.perf_counter()
        proc = start_process([sys.executable, "-m", "crm360.transform.build_process", str(job_path)], env,
                             settings.dbt_project_dir)
        wall = time.perf_counter() - started
        done = json.loads(result_path.read_text(encoding="utf-8"))["steps"] if result_path.exists() else []
    output = proc.stdout + proc.stderr
    stages: list[DbtResult] = []
    fit, seconds = None, {}
    for i, step in enumerate(done):  # the parse, then the job's steps
        name = "parse" if i == 0 else "value_fit" if "value_fit" in step else f"stage_{len(stages) + 1}"
        seconds[name] = step.get("seconds")
        if "value_fit" in step:
            if not step["success"]:
                raise ValueFitError(f"the customer value fit between the build's stages failed: {step['error']}",
                                    retryable=bool(step.get("retryable")))
            fit = step["value_fit"]
            continue
        stage = DbtResult(args=step["dbt"], returncode=0 if step["success"] else 1, output=output,
                          results=step["results"])
        if not step["success"]:
            raise _failed(f"dbt {step['dbt'][0]} ({name.replace('_', ' ')} of the build)"
                          + (f": {step['error']}" if step.get("error") else ""), stage)
        if i:
            stages.append(stage)
    if proc.returncode != 0 or len(done) != len(steps) + 1:  # the process died before it could say why
        raise _failed("the build's dbt process", DbtResult(args=["build"], returncode=proc.returncode or 1,
                                                           output=output, results=[]))
    # the rest of the process's time: starting Python, importing dbt, writing its report
    seconds["process"] = round(wall - sum(s or 0.0 for s in seconds.values()), 3)
    return BuildResult(stages=stages, value_fit=fit, output=output, seconds=seconds)


def _read_run_results(target: Path) -> list[dict]:
    path = target / "run_results.json"
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return []
    return [{"unique_id": r.get("unique_id"), "status": r.get("status"),
             "message": r.get("message"), "failures": r.get("failures"),
             "execution_time": r.get("execution_time")} for r in data.get("results", [])]


# Vars a deployment may not override: crm360 sets them itself, for every run.
RUN_SET_VARS = {
    "as_of_date": "a run's as-of date is its own (CRM360_AS_OF_DATE), the same for dbt and the value model",
    "segments": "the segments come from segments.yml (CRM360_SEGMENTS)",
    "reporting_currency": "the reporting currency comes from sources.yml (currency: reporting:), where the loads "
                          "read it too",
}


def declared_vars(settings: Settings | None = None) -> dict:
    """The vars declared in dbt_project.yml, with their defaults."""
    import yaml

    settings = settings or get_settings()
    path = settings.dbt_project_dir / "dbt_project.yml"
    project = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    found = project.get("vars") or {}
    if not isinstance(found, dict):
        raise DbtError(f"{path}: vars must be a mapping of names to values")
    return found


def var_overrides(settings: Settings | None = None) -> dict:
    """The vars of the file CRM360_DBT_VARS names ({} when unset): values that replace
    dbt_project.yml's for every run. Each must be a var the project declares (a misspelt name
    would change nothing, silently), and none of the vars crm360 sets itself."""
    import yaml

    settings = settings or get_settings()
    path = settings.dbt_vars
    if path is None:
        return {}
    where = f"{path} ({Settings.env_name('dbt_vars')})"
    try:
        found = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"{where}: no such file") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{where}: not YAML: {exc}") from None
    if found is None:
        return {}
    if not isinstance(found, dict):
        raise ConfigurationError(f"{where}: must be a mapping of dbt var names to values, "
                                 f"got {type(found).__name__}")
    declared = declared_vars(settings)
    for name in found:
        if name in RUN_SET_VARS:
            raise ConfigurationError(f"{where}: var {name!r} cannot be overridden: {RUN_SET_VARS[name]}")
        if name not in declared:
            raise ConfigurationError(f"{where}: var {name!r} is not declared in dbt_project.yml "
                                     "(misspelt?); declared: " + ", ".join(sorted(map(str, declared))))
    return found


def effective_vars(run_vars: dict | None = None, settings: Settings | None = None) -> dict:
    """The vars as dbt sees them in an invocation given ``run_vars`` (what :func:`run_dbt` writes to
    its vars file): each var of the run replaces dbt_project.yml's of the same name, as dbt's
    ``--vars`` do (a whole value: a list or mapping is not merged key by key)."""
    return {**declared_vars(settings), **(run_vars or {})}


def project_vars(settings: Settings | None = None) -> dict:
    """The vars every run hands dbt, as crm360's Python steps must read them: dbt_project.yml's,
    with the overrides of CRM360_DBT_VARS over them (crm360.pipeline.run.build_vars passes the same
    overrides to dbt)."""
    settings = settings or get_settings()
    return effective_vars(deployment_vars(settings), settings)


def deployment_vars(settings: Settings | None = None) -> dict:
    """The vars a deployment sets for every run: CRM360_DBT_VARS's overrides and the reporting
    currency of sources.yml (crm360.ingest.currency, read by the loads from the same place)."""
    from crm360.ingest import currency

    settings = settings or get_settings()
    return {**var_overrides(settings), "reporting_currency": currency.reporting_currency(settings)}
