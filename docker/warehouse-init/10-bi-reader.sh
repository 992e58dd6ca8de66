#!/bin/sh
# Runs once, when the warehouse's data volume is initialised (docker-entrypoint-initdb.d):
# creates the login role bi_reader with CRM360_BI_READER_PASSWORD, so Metabase can be
# connected before the first pipeline run. It grants nothing: the pipeline's role
# management (crm360/access.py, at every run's prepare) gives bi_reader read access
# to the published marts and sets its password again from the same variable.
set -eu

if [ -z "${CRM360_BI_READER_PASSWORD:-}" ]; then
    echo "10-bi-reader.sh: CRM360_BI_READER_PASSWORD is not set (see .env.example)" >&2
    exit 1
fi

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v password="$CRM360_BI_READER_PASSWORD" <<'SQL'
select format('create role bi_reader login password %L', :'password')
where not exists (select from pg_roles where rolname = 'bi_reader')
\gexec
SQL
