"""The export log is stamped by the database; erasure requests say what came of them.

``audit.segment_exports``: who exported (``db_role``) and when (``exported_at``) were columns
the marketing role filled in itself, as it liked, and the log steered which files an erasure
rewrites. Now a trigger stamps ``session_user`` and ``now()`` on every row inserted, whoever
inserts it, and refuses updates (the log is append-only); marketing may insert only the
columns that are its to say (for whom, which segment and version, how many rows, where to,
in which format), so naming ``db_role`` or ``exported_at`` is refused outright.

``audit.erasure_requests``: a request no longer ends "applied" whatever it found. Its status is
one of pending, applied, not_found (nobody in the published marts has the identifier: nothing
was deleted) and refused (the identity guards keep the identifier from every customer, a shared
mailbox say: it names no one person, and nothing was deleted); ``applied_run_id`` is the run that
took it up, whatever came of it. ``outcome`` (jsonb) holds what applying it did, rows deleted
table by table, values cleared, exports rewritten; ``detail`` what a person must know: why
nothing was deleted, or an export that could not be rewritten.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

MARKETING_EXPORT_COLUMNS = ("exported_by", "segment_name", "segment_version", "row_count", "destination", "format")

STAMP = """create or replace function audit.stamp_segment_export() returns trigger
language plpgsql as $$
begin
    if tg_op = 'UPDATE' then
        raise exception 'audit.segment_exports is append-only: a logged export is not changed';
    end if;
    new.db_role := session_user;
    new.exported_at := now();
    return new;
end $$"""


def upgrade() -> None:
    op.execute("alter table audit.segment_exports alter column db_role set default session_user")
    op.execute(STAMP)
    op.execute("create trigger segment_exports_stamp before insert or update on audit.segment_exports "
               "for each row execute function audit.stamp_segment_export()")
    op.execute("revoke insert on audit.segment_exports from marketing")
    op.execute(f"grant insert ({', '.join(MARKETING_EXPORT_COLUMNS)}) on audit.segment_exports to marketing")

    op.execute("alter table audit.erasure_requests add constraint erasure_requests_status_check "
               "check (status in ('pending', 'applied', 'not_found', 'refused'))")
    op.execute("comment on column audit.erasure_requests.applied_run_id is "
               "'the run that took the request up, whatever its status'")
    op.execute("alter table audit.erasure_requests add column outcome jsonb")
    op.execute("alter table audit.erasure_requests add column detail text")
    op.execute("comment on column audit.erasure_requests.outcome is "
               "'what applying the request did: rows deleted per table, values redacted, exports rewritten'")
    op.execute("comment on column audit.erasure_requests.detail is "
               "'what a person must know: why nothing was deleted, exports that could not be rewritten'")


def downgrade() -> None:
    raise NotImplementedError("crm360 migrates forward only: restore a backup to go back")
