"""A batch is one load attempt; what a failed attempt replaced comes back; run history is appended.

In 0.1 a batch was named after its run (``cli_2026-11-01:sales``): running the same date again
and failing its raw gate unloaded the files the first, gated attempt had loaded, and a file
the failed attempt replaced was simply gone. Now:

- ``audit.load_attempts``: one row per attempt to load a source (its batch id, the one
  ``_loaded_at`` of every row it wrote, its status: loading, loaded, gated, failed, unloaded).
  Builds read only rows of gated attempts, and only those loaded before the oldest attempt
  still unsettled, so a load in progress or waiting for its gate never reaches a model;
- ``raw._replaced`` and ``audit.load_files_replaced``: the rows and ledger entry of a file an
  attempt replaced, kept until the attempt passes its gate; unloading the attempt puts them back;
- ``audit.pipeline_run_history``: every status a run reports, appended; ``audit.pipeline_runs``
  becomes the view of each run's latest one (the same columns as before).

The batches of 0.1's ledger are recorded as gated attempts: they are what 0.1 built from.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        create table audit.load_attempts (
            batch_id text primary key,
            source text not null,
            run_id text not null,
            attempt integer not null,
            loaded_at timestamptz not null,
            status text not null check (status in ('loading', 'loaded', 'gated', 'failed', 'unloaded')),
            started_at timestamptz not null default now(),
            finished_at timestamptz,
            files integer not null default 0,
            row_count bigint not null default 0,
            replaced_files integer not null default 0,
            restores text,
            message text
        )""")
    op.execute("create index load_attempts__run_idx on audit.load_attempts (run_id, source, attempt)")
    op.execute("comment on table audit.load_attempts is "
               "'One row per attempt to load a source: its batch, the load time of its rows, and its status.'")
    # dbt reads which batches passed their gates (the transformer reads raw, and now this)
    op.execute("grant usage on schema audit to crm360_transformer")
    op.execute("grant select on audit.load_attempts to crm360_transformer")
    op.execute("create index load_attempts__unsettled_idx on audit.load_attempts (loaded_at) "
               "where status in ('loading', 'loaded', 'failed')")
    op.execute("create index load_attempts__source_status_idx on audit.load_attempts (source, status, loaded_at)")
    op.execute("""
        insert into audit.load_attempts (batch_id, source, run_id, attempt, loaded_at, status, started_at,
                                         finished_at, files, row_count)
        select batch_id, min(source), split_part(batch_id, ':', 1), 1, min(loaded_at), 'gated', min(loaded_at),
               max(loaded_at), count(*), sum(row_count)
        from audit.load_files group by batch_id""")
    op.execute("""
        create table raw._replaced (
            batch_id text not null,
            table_name text not null,
            source_file text collate "C" not null,
            row jsonb not null
        )""")
    op.execute("create index _replaced__batch_idx on raw._replaced (batch_id)")
    op.execute("""
        create table audit.load_files_replaced (
            batch_id text not null,
            source text not null,
            source_file text not null,
            sha256 text not null,
            row_count bigint not null,
            previous_batch_id text not null,
            loaded_at timestamptz not null,
            primary key (batch_id, source, source_file)
        )""")
    # run history: appended, never overwritten; the old table's rows are its first entries
    op.execute("alter table audit.pipeline_runs rename to pipeline_run_history")
    op.execute("alter table audit.pipeline_run_history drop constraint pipeline_runs_pkey")
    op.execute("alter table audit.pipeline_run_history rename column updated_at to recorded_at")
    op.execute("alter table audit.pipeline_run_history add column entry_id bigint generated always as identity "
               "primary key")
    op.execute("create index pipeline_run_history__run_idx on audit.pipeline_run_history (run_id, entry_id)")
    op.execute("""
        create view audit.pipeline_runs as
        select distinct on (run_id) run_id, as_of_date, status, summary, recorded_at as updated_at
        from audit.pipeline_run_history
        order by run_id, entry_id desc""")
    op.execute("comment on view audit.pipeline_runs is 'Each run''s latest status (history: pipeline_run_history).'")
    # the gates' verdicts are appended too: a re-run of a gate adds its verdict beside the earlier one
    op.execute("create index gate_results__run_idx on audit.gate_results (run_id, stage, checked_at)")


def downgrade() -> None:
    raise NotImplementedError("crm360 migrates forward only: restore a backup to go back")
