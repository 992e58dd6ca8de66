"""Baseline: every table, index, function, role and grant crm360 0.1 created at run time.

Until this revision each step created what it needed with ``create ... if not exists``.
Written the same way, so a warehouse built by that code upgrades in place: what exists is
kept with its rows, what is missing is added, and the two upgrades 0.1's loads made on their
way (a btree on ``_source_file`` replaced by a BRIN index, ``_source_file`` sorting bytewise)
are made here. A new warehouse gets the same objects. Frozen: later changes are new revisions.
"""

from alembic import op

from crm360.core.migrations import helpers

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMAS = ("raw", "staging", "intermediate", "marts", "audit", "predictions")

CSV_TABLES = helpers.CSV_TABLES_0_1
JSON_TABLES = ("service_tickets", "web_events")

META_COLUMNS = """
    _batch_id text not null default current_setting('crm360.batch_id'),
    _source_file text collate "C" not null default current_setting('crm360.source_file'),
    _loaded_at timestamptz not null default current_setting('crm360.loaded_at')::timestamptz
"""

AUDIT_TABLES = (
    """create table if not exists audit.load_files (
        source text not null,
        source_file text not null,
        sha256 text not null,
        row_count bigint not null,
        batch_id text not null,
        loaded_at timestamptz not null,
        primary key (source, source_file))""",
    """create table if not exists audit.schema_drift (
        source text not null,
        table_name text not null,
        column_name text not null,
        change text not null,
        first_seen_file text not null,
        first_seen_batch text not null,
        detected_at timestamptz not null,
        primary key (table_name, column_name))""",
    """create table if not exists audit.pipeline_runs (
        run_id text primary key,
        as_of_date date,
        status text not null,
        summary jsonb,
        updated_at timestamptz not null)""",
    "alter table audit.pipeline_runs alter column as_of_date drop not null",
    """create table if not exists audit.gate_results (
        run_id text not null,
        stage text not null,
        suite text not null,
        expectation text not null,
        column_name text,
        success boolean not null,
        unexpected_count bigint,
        observed_value text,
        sample jsonb,
        checked_at timestamptz not null)""",
    """create table if not exists audit.source_freshness (
        run_id text not null,
        source_name text not null,
        table_name text not null,
        status text not null,
        max_loaded_at timestamptz,
        age_seconds numeric,
        checked_at timestamptz not null)""",
    """create table if not exists audit.run_health (
        run_id text not null,
        as_of_date date,
        status text not null,
        section text not null,
        item text not null,
        metric text not null,
        value numeric,
        detail text,
        recorded_at timestamptz not null)""",
    """create table if not exists audit.publications (
        run_id text not null,
        published_at timestamptz not null,
        tables text[] not null)""",
    """create table if not exists audit.run_locks (
        part text primary key,
        run_id text not null,
        as_of_date date,
        host text not null,
        pid integer not null,
        backend_pid integer not null,
        since timestamptz not null)""",
    """create table if not exists audit.segment_sizes (
        run_id text not null,
        as_of_date date not null,
        segment_name text not null,
        version text not null,
        filter_sql text not null,
        customers bigint not null,
        contactable_customers bigint not null,
        recorded_at timestamptz not null default now(),
        primary key (run_id, segment_name))""",
    """create table if not exists audit.segment_exports (
        exported_at timestamptz not null default now(),
        exported_by text not null,
        db_role text not null default current_user,
        segment_name text not null,
        segment_version text,
        row_count bigint not null,
        destination text,
        format text not null)""",
    """create table if not exists audit.erasure_requests (
        request_id bigint generated always as identity primary key,
        requested_at timestamptz not null default now(),
        requested_by text not null,
        identifier_type text not null,
        identifier_hash text not null,
        reason text,
        status text not null default 'pending',
        applied_at timestamptz,
        applied_run_id text,
        customers_found integer,
        rows_deleted bigint)""",
    """create table if not exists audit.erased_identifiers (
        identifier_type text not null,
        identifier_hash text not null,
        request_id bigint not null,
        erased_at timestamptz not null default now(),
        primary key (identifier_type, identifier_hash))""",
    """create table if not exists audit.erasure_watermark (
        id boolean primary key default true check (id),
        loaded_through timestamptz not null)""",
    """create table if not exists audit.value_model_fits (
        as_of_date date not null,
        model text not null,
        params jsonb,
        log_likelihood double precision,
        customers integer not null,
        converged boolean not null,
        message text,
        seconds double precision,
        fitted_at timestamptz not null,
        primary key (as_of_date, model))""",
    """create table if not exists predictions.customer_value (
        customer_key text not null,
        predicted_purchases double precision,
        probability_alive double precision,
        expected_order_value_eur double precision,
        predicted_clv_eur double precision,
        as_of_date date not null,
        primary key (customer_key))""",
)

QUARANTINE = """create table if not exists raw._quarantine (
    source text not null,
    table_name text not null,
    source_file text not null,
    line_number bigint,
    record_number bigint,
    reason text not null,
    raw_record text,
    _batch_id text not null,
    _loaded_at timestamptz not null)"""

# Whether a text parses as a type, for the loaders' contract checks: PostgreSQL 16 answers
# without an error; older servers try the cast.
VALIDITY_16 = """create or replace function raw._is_valid(value text, type_name text) returns boolean
language sql stable parallel safe as $$ select pg_input_is_valid(value, type_name) $$"""
VALIDITY_OLD = """create or replace function raw._is_valid(value text, type_name text) returns boolean
language plpgsql stable parallel safe as $$
begin
    execute format('select %L::%s', value, type_name);
    return true;
exception when others then
    return false;
end $$"""


def upgrade() -> None:
    for schema in SCHEMAS:
        op.execute(f"create schema if not exists {schema}")
    for statement in AUDIT_TABLES:
        op.execute(statement)
    op.execute(QUARANTINE)
    op.execute("create index if not exists _quarantine__source_file_idx on raw._quarantine (source_file)")
    op.execute(VALIDITY_16 if helpers.server_version() >= 160000 else VALIDITY_OLD)
    for table, columns in CSV_TABLES.items():
        cols = ", ".join(f"{c} text" for c in columns)
        op.execute(f"create table if not exists raw.{table} ({cols}, {META_COLUMNS})")
        for column in columns:  # a table made by an earlier 0.1 may lack a later contract column
            op.execute(f"alter table raw.{table} add column if not exists {column} text")
    for table in JSON_TABLES:
        op.execute(f"create table if not exists raw.{table} (_record_number integer not null, "
                   f"record jsonb not null, {META_COLUMNS})")
    for table in (*CSV_TABLES, *JSON_TABLES):
        helpers.source_file_bytewise(table)
        op.execute(f"drop index if exists raw.{table}__source_file_idx")
        op.execute(f"create index if not exists {table}__source_file_brin on raw.{table} using brin (_source_file) "
                   "with (pages_per_range = 8, autosummarize = on)")
        # dbt's incremental models read only rows loaded since their last build
        op.execute(f"create index if not exists {table}__loaded_at_idx on raw.{table} using brin (_loaded_at)")
    helpers.ensure_roles(("crm360_loader", "crm360_transformer", "bi_reader", "marketing"))
    database = helpers.current_database()
    for statement in (
        "revoke all on schema raw, staging, intermediate, audit from public",
        f'grant connect on database "{database}" to crm360_loader, crm360_transformer, bi_reader, marketing',
        # the loader: raw and the load ledger
        "grant usage on schema raw, audit to crm360_loader",
        "grant select, insert, update, delete on all tables in schema raw, audit to crm360_loader",
        "alter default privileges in schema raw, audit grant select, insert, update, delete on tables to crm360_loader",
        # the transformer: reads raw, owns what dbt builds
        "grant usage on schema raw to crm360_transformer",
        "grant select on all tables in schema raw to crm360_transformer",
        "alter default privileges in schema raw grant select on tables to crm360_transformer",
        f'grant create, connect on database "{database}" to crm360_transformer',
        "grant usage, create on schema staging, intermediate to crm360_transformer",
        "grant all on all tables in schema staging, intermediate to crm360_transformer",
        "alter default privileges in schema staging, intermediate grant all on tables to crm360_transformer",
        # marketing: adds rows to the export log, reads nothing else in audit
        "grant usage on schema audit to marketing",
        "grant insert on audit.segment_exports to marketing",
        # readers see the published marts (their tables carry dbt's grants)
        "grant usage on schema marts to bi_reader, marketing",
    ):
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("crm360 migrates forward only: restore a backup to go back")
