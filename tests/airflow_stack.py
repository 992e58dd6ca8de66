"""A real Airflow deployment for tests: api-server, scheduler, dag-processor and triggerer,
metadata on a PostgreSQL server, LocalExecutor or CeleryExecutor with Redis and workers.

Every component is a process of its own, started in a session of its own and ended by its pid
(the whole process group) when the stack stops. Each Celery worker gets its own AIRFLOW_HOME
and CRM360_HOME: workers share only what machines of a deployment share (the metadata
database, the broker, the warehouse, the landing folder and the project files).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

REPO = Path(__file__).resolve().parent.parent
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
CONTROL = ("api-server", "scheduler", "dag-processor", "triggerer")


class StackError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hostname() -> str:
    """``[core] hostname_callable`` of the stack's processes: the name the test gave the
    component (a worker's name), so task instances record where they ran."""
    return os.environ.get("CRM360_TEST_HOSTNAME") or socket.getfqdn()


@dataclass
class Stack:
    root: Path
    metadata_url: str  # SQLAlchemy URL of the Airflow metadata database
    warehouse_url: str  # what AIRFLOW_CONN_CRM360_WAREHOUSE names
    landing: Path
    executor: str = "LocalExecutor"
    broker_url: str | None = None
    workers: int = 0
    queue: str = "default"
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.api_port = free_port()
        self.jwt_secret = secrets.token_urlsafe(32)
        self.fernet_key = base64.urlsafe_b64encode(os.urandom(32)).decode()

    # -- environment

    def home(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def env(self, name: str = "control") -> dict[str, str]:
        """The environment of one machine of the deployment: ``control`` for the api-server,
        scheduler, dag-processor, triggerer and the CLI; ``worker-N`` for a Celery worker."""
        home = self.home(name)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AIRFLOW", "CRM360_")) and k not in ("PYTEST_CURRENT_TEST",)}
        env.update({
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__CORE__FERNET_KEY": self.fernet_key,
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airflow_stack.hostname",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
            "AIRFLOW_CONN_CRM360_WAREHOUSE": self.warehouse_url,
            "CRM360_PROJECT_DIR": str(REPO),
            "CRM360_HOME": str(home / "crm360"),
            "CRM360_LANDING_DIR": str(self.landing),
            "CRM360_TEST_HOSTNAME": name,
            "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO / "tests")]),
        })
        if self.broker_url:
            env["AIRFLOW__CELERY__BROKER_URL"] = self.broker_url
            env["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + self.metadata_url.replace("+psycopg2", "")
        env.update(self.extra_env)
        return env

    # -- processes

    def airflow(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run an airflow CLI command as the operator would on the control machine."""
        proc = subprocess.run([AIRFLOW, *args], env=self.env(), capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise StackError(f"airflow {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = open(self.home("process-logs") / f"{name}.log", "ab")  # noqa: SIM115 - closed by the child's end
        self.procs[name] = subprocess.Popen([AIRFLOW, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, cwd=self.home(name))
        log.close()

    def start(self, timeout: float = 180) -> None:
        self.airflow("db", "migrate", timeout=600)
        for component in CONTROL:
            self._spawn(component, [component], self.env())
        for n in range(1, self.workers + 1):
            name = f"worker-{n}"
            self._spawn(name, ["celery", "worker", "--concurrency", "2", "--celery-hostname", f"{name}@%h",
                               "--queues", self.queue, "--without-mingle", "--without-gossip"], self.env(name))
        self._wait_api(timeout)

    def _wait_api(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.api_port}/api/v2/monitor/health"
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - local test server
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(1)
        raise StackError(f"the api-server did not answer on {url} within {timeout:.0f}s")

    def check_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}
        if dead:
            raise StackError(f"Airflow process(es) ended: {dead}; logs in {self.root / 'process-logs'}")

    def stop(self) -> None:
        """End every process started, by its pid (its whole session), SIGTERM first."""
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs.values():
            try:  # children of a finished leader too: the group outlives it
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if proc.poll() is None:
                proc.wait(timeout=10)

    # -- the metadata database, read as an operator's dashboard would

    def metadata(self) -> psycopg.Connection:
        return psycopg.connect(self.metadata_url.replace("+psycopg2", ""), autocommit=True)

    def dag_runs(self, dag_id: str | None = None) -> list[dict]:
        with self.metadata() as conn:
            with conn.cursor(row_factory=dict_row) as cur:
                return cur.execute(
                    """select dag_id, run_id, state, run_type, logical_date, run_after, conf
                       from dag_run where %(dag)s::text is null or dag_id = %(dag)s order by id""",
                    {"dag": dag_id}).fetchall()

    def task_instances(self, run_ids: Iterable[str] | None = None) -> list[dict]:
        with self.metadata() as conn:
            with conn.cursor(row_factory=dict_row) as cur:
                return cur.execute(
                    """select dag_id, task_id, run_id, state, try_number, hostname from task_instance
                       where %(runs)s::text[] is null or run_id = any(%(runs)s) order by dag_id, run_id, task_id""",
                    {"runs": list(run_ids) if run_ids is not None else None}).fetchall()

    def wait_parsed(self, dag_ids: Iterable[str], timeout: float = 180) -> None:
        wanted = set(dag_ids)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            with self.metadata() as conn:
                found = {r[0] for r in conn.execute("select dag_id from dag where not is_stale")}
            if wanted <= found:
                return
            time.sleep(2)
        raise StackError(f"DAGs not parsed within {timeout:.0f}s: {sorted(wanted - found)}")

    def wait_for(self, condition, timeout: float, what: str, every: float = 3.0):
        """Poll ``condition()`` until it returns something true; fail naming ``what``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            value = condition()
            if value:
                return value
            time.sleep(every)
        raise StackError(f"timed out after {timeout:.0f}s waiting for {what}; "
                         f"runs: {json.dumps(self.dag_runs(), default=str)[:3000]}")

    def finished(self, run_ids: Iterable[str]) -> list[dict] | None:
        """The runs, once every one of them has finished (success or failed); else None."""
        wanted = set(run_ids)
        runs = [r for r in self.dag_runs() if r["run_id"] in wanted]
        if len(runs) == len(wanted) and all(r["state"] in ("success", "failed") for r in runs):
            return runs
        return None

    def trigger(self, dag_id: str, run_id: str, logical_date: str | None = None, conf: dict | None = None,
                check: bool = True) -> subprocess.CompletedProcess:
        """`airflow dags trigger`, as the UI's Trigger button does (without a logical date unless given)."""
        args = ["dags", "trigger", dag_id, "--run-id", run_id]
        if logical_date:
            args += ["--logical-date", logical_date]
        if conf is not None:
            args += ["--conf", json.dumps(conf)]
        return self.airflow(*args, check=check)

    def trigger_together(self, runs: list[tuple[str, str]], **kw) -> None:
        """Trigger several DAGs at the same moment: (dag_id, run_id) each, one CLI process each."""
        procs = [subprocess.Popen([AIRFLOW, "dags", "trigger", dag_id, "--run-id", run_id], env=self.env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for dag_id, run_id in runs]
        for (dag_id, _), proc in zip(runs, procs, strict=True):
            out, _ = proc.communicate(timeout=300)
            if proc.returncode != 0:
                raise StackError(f"airflow dags trigger {dag_id} failed ({proc.returncode}):\n{out}")

    def task_log(self, dag_id: str, run_id: str, task_id: str) -> str:
        """Every log file of one task instance, wherever a machine of the stack wrote it."""
        texts = []
        for path in sorted(self.root.glob(f"*/logs/dag_id={dag_id}/run_id={run_id}/task_id={task_id}/*")):
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
        return "\n".join(texts)
