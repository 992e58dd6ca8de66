"""docker-compose.yml cannot run here (no Docker engine); check that it is coherent."""

import re
import shutil
import subprocess

import pytest
import yaml
from conftest import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
AIRFLOW = ["airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"]


def test_full_stack_is_described():
    assert "version" not in COMPOSE  # obsolete in Compose v2
    assert set(SERVICES) == {"warehouse", "airflow-metadata", *AIRFLOW, "metabase", "metabase-setup"}
    assert [SERVICES[s]["command"][0] for s in AIRFLOW[1:]] == ["api-server", "scheduler", "dag-processor",
                                                                 "triggerer"]
    # the init service migrates Airflow's metadata, then the warehouse: no DAG task races to create tables
    assert SERVICES["airflow-init"]["command"] == ["bash", "-c", "airflow db migrate && crm360 migrate"]
    for name in AIRFLOW[1:]:
        assert SERVICES[name]["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}


def test_airflow_services_share_image_and_environment():
    first = SERVICES[AIRFLOW[0]]
    for name in AIRFLOW:
        service = SERVICES[name]
        assert service["build"] == first["build"] and service["image"] == first["image"]
        assert service["environment"] == first["environment"]
    env = first["environment"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert "@airflow-metadata:5432/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["CRM360_WAREHOUSE_URL"].endswith("@warehouse:5432/crm360")
    mounts = {v.split(":")[1] for v in first["volumes"]}
    assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/dbt_project",
            "/opt/airflow/expectations", "/opt/airflow/sources.yml"} <= mounts
    assert env["CRM360_SOURCES"].endswith("/opt/airflow/sources.yml}")


def test_dependencies_exist_and_wait_for_health():
    for name, service in SERVICES.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            assert rule["condition"] in ("service_healthy", "service_completed_successfully")
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], f"{dependency} has no healthcheck"


def test_named_volumes_are_declared():
    declared = set(COMPOSE["volumes"])
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"volume {source} is not declared"


CELERY = yaml.safe_load((REPO / "docker-compose.celery.yml").read_text())["services"]


def test_the_celery_variant_adds_redis_and_workers_to_the_same_stack():
    assert set(CELERY) == {"redis", "airflow-worker", *AIRFLOW}
    for name in AIRFLOW:  # every Airflow service switches executor and knows the broker
        env = CELERY[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://airflow:${AIRFLOW_DB_PASSWORD")
    assert CELERY["airflow-scheduler"]["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert "healthcheck" in CELERY["redis"]
    worker = CELERY["airflow-worker"]
    assert worker["extends"] == {"file": "docker-compose.yml", "service": "airflow-scheduler"}
    assert worker["command"] == ["celery", "worker"]
    # the worker's own crm360 state, not the volume the other services share
    shared = {v.split(":")[1] for v in SERVICES["airflow-scheduler"]["volumes"]}
    assert worker["environment"]["CRM360_HOME"] not in shared
    assert worker["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    for dependency, rule in worker["depends_on"].items():
        assert dependency in SERVICES or dependency in CELERY
        if rule["condition"] == "service_healthy":
            assert "healthcheck" in (CELERY.get(dependency) or SERVICES[dependency])


def test_no_literal_secrets():
    for name, service in {**SERVICES, **CELERY}.items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|FERNET|_KEY", key):
                assert str(value).startswith("${"), f"{name}.{key} holds a literal secret"
            for password in re.findall(r"://[^:/@]+:([^@]+)@", str(value)):
                assert password.startswith("${"), f"{name}.{key} embeds a literal password"
    example = (REPO / ".env.example").read_text()
    for path in ("docker-compose.yml", "docker-compose.celery.yml"):
        # ${VAR} is read from .env; $${VAR} is a literal $ for the container's own shell
        for variable in set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", (REPO / path).read_text())):
            assert f"{variable}=" in example, f"{variable} of {path} is not in .env.example"


def test_metabase_reads_the_warehouse_as_bi_reader():
    setup = SERVICES["metabase-setup"]
    env = setup["environment"]
    assert env["MB_URL"] == "http://metabase:3000"
    assert env["MB_WAREHOUSE_HOST"] == "warehouse" and env["MB_WAREHOUSE_DB"] == "crm360"
    assert env["CRM360_BI_READER_PASSWORD"].startswith("${CRM360_BI_READER_PASSWORD:?")
    assert setup["depends_on"] == {"metabase": {"condition": "service_healthy"}}
    assert setup["restart"] == "no"
    # the script it runs is the one in the repository, and it registers bi_reader on schema marts only
    [mount] = setup["volumes"]
    source, target = mount.split(":")[:2]
    assert setup["entrypoint"] == ["/bin/sh", target]
    script = (REPO / source).read_text().replace('\\"', '"')  # JSON written in the shell as \"
    assert '"user": "bi_reader"' in script and '"schema-filters-patterns": "marts"' in script
    assert "/api/setup" in script and "/api/database" in script
    assert '"user": "crm360"' not in script and "CRM360_WAREHOUSE_PASSWORD" not in script
    # the password reaches the role: the warehouse creates it at first start, every run sets it again
    warehouse = SERVICES["warehouse"]
    assert warehouse["environment"]["CRM360_BI_READER_PASSWORD"] == env["CRM360_BI_READER_PASSWORD"]
    init = [v for v in warehouse["volumes"] if v.split(":")[1] == "/docker-entrypoint-initdb.d"]
    assert init and "create role bi_reader login password" in "".join(
        path.read_text() for path in (REPO / init[0].split(":")[0]).glob("*.sh"))
    airflow = SERVICES["airflow-scheduler"]["environment"]
    assert airflow["CRM360_BI_READER_PASSWORD"] == env["CRM360_BI_READER_PASSWORD"]
    # Metabase itself holds no warehouse credentials and is checked for health before set-up
    assert not any("PASSWORD" in key for key in SERVICES["metabase"]["environment"])
    assert "healthcheck" in SERVICES["metabase"]


def test_every_compose_variable_is_in_env_example_with_a_comment():
    lines = (REPO / ".env.example").read_text().splitlines()
    for variable in sorted(set(re.findall(r"\$\{([A-Z0-9_]+)", (REPO / "docker-compose.yml").read_text()))):
        found = [i for i, line in enumerate(lines) if line.startswith(f"{variable}=")]
        assert len(found) == 1, f"{variable} is in .env.example {len(found)} times"
        # the comment above it, or above the block of variables it belongs to
        above = found[0] - 1
        while above >= 0 and re.match(r"[A-Z0-9_]+=", lines[above]):
            above -= 1
        assert above >= 0 and lines[above].startswith("# "), f"{variable} has no comment"


def test_image_matches_the_pinned_airflow():
    lock = (REPO / "requirements.lock").read_text()
    pinned = re.search(r"^apache-airflow==([0-9.]+)$", lock, re.M).group(1)
    dockerfile = (REPO / "docker" / "airflow.Dockerfile").read_text()
    assert f"FROM apache/airflow:{pinned}-python3.11" in dockerfile


def _compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_config_validates_where_docker_compose_exists():
    command = _compose_command()
    if command is None:
        pytest.skip("neither 'docker compose' nor 'docker-compose' is installed here")
    env = {"CRM360_WAREHOUSE_PASSWORD": "x", "AIRFLOW_DB_PASSWORD": "x", "AIRFLOW_FERNET_KEY": "x",
           "AIRFLOW_JWT_SECRET": "x", "CRM360_BI_READER_PASSWORD": "x", "METABASE_ADMIN_EMAIL": "x",
           "METABASE_ADMIN_PASSWORD": "x", "PATH": "/usr/local/bin:/usr/bin:/bin"}
    result = subprocess.run([*command, "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr
    result = subprocess.run([*command, "-f", str(REPO / "docker-compose.yml"), "-f",
                             str(REPO / "docker-compose.celery.yml"), "config", "-q"],
                            capture_output=True, text=True, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr


class _FakeMetabase:
    """The few Metabase API endpoints docker/metabase-setup.sh calls, recording what it sends."""

    def __init__(self):
        import http.server
        import json
        import threading

        self.setup_done = False
        self.databases: list[dict] = []
        self.calls: list[str] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status, body):
                data = json.dumps(body, separators=(",", ":")).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self):
                return json.loads(self.rfile.read(int(self.headers["Content-Length"])))  # must be valid JSON

            def do_GET(self):
                fake.calls.append(f"GET {self.path}")
                if self.path == "/api/health":
                    return self._reply(200, {"status": "ok"})
                if self.path == "/api/session/properties":
                    return self._reply(200, {"setup-token": None if fake.setup_done else "token-1",
                                             "has-user-setup": fake.setup_done, "site-name": "x"})
                if self.path == "/api/database" and self.headers.get("X-Metabase-Session") == "session-1":
                    return self._reply(200, {"data": [{"id": i + 1, "name": d["name"], "engine": d["engine"]}
                                                      for i, d in enumerate(fake.databases)], "total": 1})
                return self._reply(401, {"message": "Unauthenticated"})

            def do_POST(self):
                fake.calls.append(f"POST {self.path}")
                body = self._body()
                if self.path == "/api/setup" and body["token"] == "token-1" and not fake.setup_done:
                    fake.setup_done = True
                    fake.admin = body["user"]
                    return self._reply(200, {"id": "session-1"})
                if self.path == "/api/session" and body == {"username": fake.admin["email"],
                                                            "password": fake.admin["password"]}:
                    return self._reply(200, {"id": "session-1"})
                if self.path == "/api/database" and self.headers.get("X-Metabase-Session") == "session-1":
                    fake.databases.append(body)
                    return self._reply(200, {"id": len(fake.databases), "name": body["name"]})
                return self._reply(400, {"message": "bad request"})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.skipif(not shutil.which("curl"), reason="the set-up script needs curl")
def test_metabase_setup_script_creates_the_admin_then_registers_the_warehouse_once():
    fake = _FakeMetabase()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "MB_URL": fake.url, "MB_ADMIN_EMAIL": "admin@example.com",
           "MB_ADMIN_PASSWORD": "a-Long-admin-secret-42", "CRM360_BI_READER_PASSWORD": "reader-secret_9"}
    script = str(REPO / "docker" / "metabase-setup.sh")
    try:
        first = subprocess.run(["sh", script], env=env, capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stderr
        assert fake.admin["email"] == "admin@example.com" and fake.admin["password"] == "a-Long-admin-secret-42"
        [database] = fake.databases
        assert database["engine"] == "postgres" and database["name"] == "crm360 warehouse"
        assert database["details"] == {"host": "warehouse", "port": 5432, "dbname": "crm360", "user": "bi_reader",
                                       "password": "reader-secret_9", "ssl": False,
                                       "schema-filters-type": "inclusion", "schema-filters-patterns": "marts"}
        # again: Metabase is set up (log in instead) and the warehouse is registered (leave it)
        second = subprocess.run(["sh", script], env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 0, second.stderr
        assert "registered already" in second.stdout and len(fake.databases) == 1
        assert fake.calls.count("POST /api/setup") == 1 and fake.calls.count("POST /api/session") == 1
        # a password that cannot go into the JSON as it is is refused, naming the variable
        bad = subprocess.run(["sh", script], env={**env, "CRM360_BI_READER_PASSWORD": 'a"b'},
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode != 0 and "CRM360_BI_READER_PASSWORD" in bad.stderr
    finally:
        fake.server.shutdown()
