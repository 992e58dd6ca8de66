"""Every DAG file imports cleanly and follows the project's conventions."""

import ast
from pathlib import Path

import pytest
from conftest import REPO

DAG_FILES = sorted((REPO / "dags").glob("*.py"))


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_every_dag_file_imports(dagbag):
    assert dagbag.import_errors == {}
    assert "crm360_pipeline" in dagbag.dags


def test_dags_have_tags_retries_and_no_catchup(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.catchup is False, f"{dag_id} catches up"
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"
            assert task.on_failure_callback, f"{dag_id}.{task.task_id} has no failure callback"


def test_pipeline_order(dagbag):
    dag = dagbag.dags["crm360_pipeline"]
    ingest = {"ingest_sales", "ingest_service", "ingest_web"}
    assert set(dag.task_dict) == ingest | {
        "prepare_warehouse",
        "gate_raw",
        "source_freshness",
        "dbt_build",
        "gate_marts",
        "publish",
        "summarize",
    }
    assert dag.task_dict["prepare_warehouse"].downstream_task_ids == ingest
    assert dag.task_dict["gate_raw"].upstream_task_ids == ingest
    assert dag.task_dict["source_freshness"].upstream_task_ids == {"gate_raw"}
    assert dag.task_dict["dbt_build"].upstream_task_ids == {"source_freshness"}
    assert dag.task_dict["gate_marts"].upstream_task_ids == {"dbt_build"}
    assert dag.task_dict["publish"].upstream_task_ids == {"gate_marts"}
    assert dag.task_dict["summarize"].upstream_task_ids == {"publish"}


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_files_are_thin(path: Path):
    """Short files, no crm360/database imports at parse time (only inside tasks)."""
    source = path.read_text()
    assert len(source.splitlines()) < 100, f"{path.name} is too long for a DAG file"
    tree = ast.parse(source)
    top_level_imports = [
        node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
    ]
    modules = {getattr(n, "module", None) or n.names[0].name for n in top_level_imports}
    heavy = {
        m
        for m in modules
        if m
        and m.split(".")[0]
        in {"crm360", "psycopg", "great_expectations", "dbt", "pandas", "sqlalchemy"}
    }
    assert not heavy, f"{path.name} imports {heavy} at parse time"
