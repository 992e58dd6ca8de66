"""The ground every layer stands on: settings, the warehouse and how to reach it, its schema and
migrations, the errors crm360 raises, run locks, roles and careful DDL."""
