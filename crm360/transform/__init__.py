"""From raw to the marts: running dbt, the customer value models fitted between its two stages,
and the write-audit-publish swap of the marts."""
