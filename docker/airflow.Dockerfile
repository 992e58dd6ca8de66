# Airflow image with crm360 and its pinned dependencies (dbt, Great Expectations, psycopg).
# Built by docker-compose.yml for every Airflow service.
FROM apache/airflow:3.3.2-python3.11

# Dependencies first: the layer is reused until requirements.lock changes.
COPY --chown=airflow:root requirements.lock /opt/crm360/requirements.lock
RUN pip install --no-cache-dir -r /opt/crm360/requirements.lock

# Then the package itself (no dependency resolution: the lock is the truth).
COPY --chown=airflow:root pyproject.toml README.md /opt/crm360/
COPY --chown=airflow:root crm360 /opt/crm360/crm360
RUN pip install --no-cache-dir --no-deps /opt/crm360
