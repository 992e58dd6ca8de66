"""Whether a run may publish, and what it did: the Great Expectations gates, source freshness, the
run-health record and page, and failure notifications."""
