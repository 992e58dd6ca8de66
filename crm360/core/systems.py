"""The source systems crm360 knows, by name: a company's sales, its service desk and its web site.

What each system's records look like is the ingest layer's contract (crm360.ingest.sources, keyed
by these names); here is only the list every layer may rely on: the run locks have a part per
system, the DAGs an ingest DAG per system a deployment has.

A deployment has the systems its ``sources.yml`` names (sales only, sales and service, all
three): :func:`deployed` reads just their names, cheaply enough for a DAG file at parse time;
crm360.ingest.sources checks the rest of the file."""

from __future__ import annotations

from pathlib import Path

import yaml

SYSTEMS = ("sales", "service", "web")
SOURCES_ENV = "CRM360_SOURCES"


def sources_file(project_dir: Path) -> Path:
    """The deployment's source configuration: the file ``CRM360_SOURCES`` names, else ``sources.yml``."""
    from crm360.core.settings import get_settings  # pydantic: only when a file is looked for

    return get_settings().sources or Path(project_dir) / "sources.yml"


def deployed(path: Path) -> tuple[str, ...]:
    """The systems ``path`` binds, in :data:`SYSTEMS` order. Names crm360 does not know and a file
    that cannot be read are left to crm360.ingest.sources to report: this only picks what to run."""
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return SYSTEMS
    entries = document.get("sources") if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        return SYSTEMS
    named = tuple(s for s in SYSTEMS if s in entries)
    return named or SYSTEMS
