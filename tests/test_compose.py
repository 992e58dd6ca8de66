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
    assert set(SERVICES) == {"warehouse", "airflow-metadata", *AIRFLOW, "metabase"}
    assert [SERVICES[s]["command"][0] for s in AIRFLOW] == ["db", "api-server", "scheduler", "dag-processor",
                                                             "triggerer"]


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


def test_no_literal_secrets():
    for name, service in SERVICES.items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|FERNET|_KEY", key):
                assert str(value).startswith("${"), f"{name}.{key} holds a literal secret"
            for password in re.findall(r"://[^:/@]+:([^@]+)@", str(value)):
                assert password.startswith("${"), f"{name}.{key} embeds a literal password"
    example = (REPO / ".env.example").read_text()
    for variable in set(re.findall(r"\$\{([A-Z0-9_]+)", (REPO / "docker-compose.yml").read_text())):
        assert f"{variable}=" in example, f"{variable} is not in .env.example"


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
           "AIRFLOW_JWT_SECRET": "x", "PATH": "/usr/local/bin:/usr/bin:/bin"}
    result = subprocess.run([*command, "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr
