"""crm360 deployed with the LocalExecutor: the scheduler runs the tasks (see tests/deployment.py
for what is checked)."""

from deployment import MARKS, databases, run_as_deployed  # noqa: F401 - databases is a fixture

pytestmark = MARKS


def test_the_pipeline_as_deployed_local(databases, tmp_path, capsys):  # noqa: F811
    run_as_deployed("LocalExecutor", databases, tmp_path, capsys)
