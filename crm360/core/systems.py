"""The source systems crm360 knows, by name: a company's sales, its service desk and its web site.

What each system's records look like is the ingest layer's contract (crm360.ingest.sources, keyed
by these names); here is only the list every layer may rely on: the run locks have a part per
system, the DAGs an ingest DAG per system."""

SYSTEMS = ("sales", "service", "web")
