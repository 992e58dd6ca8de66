"""crm360 deployed with the CeleryExecutor: Redis as the broker and two workers, each with a home
of its own (see tests/deployment.py for what is checked)."""

from deployment import MARKS, databases, run_as_deployed  # noqa: F401 - databases is a fixture

pytestmark = MARKS


def test_the_pipeline_as_deployed_celery(databases, tmp_path, capsys):  # noqa: F811
    run_as_deployed("CeleryExecutor", databases, tmp_path, capsys)
