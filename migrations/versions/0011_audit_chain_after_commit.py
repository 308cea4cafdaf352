"""Audit log: writers append unchained entries; committed entries are chained after commit.

Until now every append took an advisory lock held until its transaction ended, so concurrent
writers queued behind each other's whole transactions (commit and WAL flush included). Now:

* a writer only INSERTs its entry (``seq`` from an identity, ``chain_seq``, ``prev_hash`` and
  ``entry_hash`` NULL), in its own transaction, with no lock: a rolled-back entry simply never
  exists, so it leaves no gap in the chain;
* after commit, a chainer (``audit_log_chain``, SECURITY DEFINER, owned by the migrating owner,
  fixed ``search_path``) links committed unchained entries in order: it takes the chain lock,
  reads the head, and fills ``chain_seq`` = head + 1, 2, … and ``prev_hash`` itself; the caller
  supplies only each entry's hash, which the verifier recomputes anyway. It fills the chain
  fields once: a chained entry, a missing one or one not yet committed is refused.
* ``chain_seq`` is the entry's position in the hash chain (gapless, what verification walks
  and checkpoints sign); ``seq`` stays the entry's id (in the hash, returned to the writer,
  referenced by ``break_glass_views``), and may now have gaps where transactions rolled back.

Existing entries keep their hashes: their chain position is their ``seq``. The trigger that
refused every UPDATE now allows exactly one kind: filling the NULL chain fields of an entry
whose other columns stay the same. Only the table owner (migrations, the chain function) may
insert an entry that is already chained. The application role still has no UPDATE, DELETE or
TRUNCATE on the table, and may only EXECUTE the chain function.

Downgrade is refused while the log holds entries the old format cannot express (unchained
ones, or a chain position that differs from ``seq``).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The chain lock, shared with mash_hub/audit/log.py (CHAIN_LOCK): "audc".
CHAIN_LOCK = 0x61756463

_GUARD = """
CREATE FUNCTION audit_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF (NEW.chain_seq IS NOT NULL OR NEW.prev_hash IS NOT NULL OR NEW.entry_hash IS NOT NULL)
           AND NOT pg_catalog.pg_has_role(
               current_user,
               (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = TG_RELID),
               'USAGE')
        THEN
            RAISE EXCEPTION 'audit_log entries are inserted unchained; audit_log_chain() links them'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE'
       AND OLD.chain_seq IS NULL AND OLD.prev_hash IS NULL AND OLD.entry_hash IS NULL
       AND NEW.chain_seq IS NOT NULL AND NEW.prev_hash IS NOT NULL AND NEW.entry_hash IS NOT NULL
       AND (NEW.seq, NEW.entry_id, NEW.occurred_at, NEW.actor, NEW.action, NEW.subject_type,
            NEW.subject_id, NEW.details)
           IS NOT DISTINCT FROM
           (OLD.seq, OLD.entry_id, OLD.occurred_at, OLD.actor, OLD.action, OLD.subject_type,
            OLD.subject_id, OLD.details)
    THEN
        RETURN NEW;  -- chaining: the chain fields are filled once, nothing else changes
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""

_CHAIN = """
CREATE FUNCTION audit_log_chain(entry_seqs bigint[], entry_hashes bytea[]) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n integer := coalesce(cardinality(entry_seqs), 0);
    head_pos bigint;
    head bytea;
    done integer;
BEGIN
    IF n = 0 OR n <> coalesce(cardinality(entry_hashes), -1) THEN
        RAISE EXCEPTION 'audit_log_chain: give one hash for each entry'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(entry_hashes) h WHERE h IS NULL OR octet_length(h) <> 32)
    THEN
        RAISE EXCEPTION 'audit_log_chain: every hash is 32 bytes'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock({lock});
    SELECT a.chain_seq, a.entry_hash INTO head_pos, head
        FROM {schema}.audit_log a WHERE a.chain_seq IS NOT NULL
        ORDER BY a.chain_seq DESC LIMIT 1;
    IF head_pos IS NULL THEN
        head_pos := 0;
        head := decode(repeat('00', 32), 'hex');
    END IF;
    UPDATE {schema}.audit_log a
        SET chain_seq = head_pos + u.i,
            prev_hash = CASE WHEN u.i = 1 THEN head ELSE entry_hashes[u.i - 1] END,
            entry_hash = u.h
        FROM unnest(entry_seqs, entry_hashes) WITH ORDINALITY AS u(s, h, i)
        WHERE a.seq = u.s AND a.chain_seq IS NULL;
    GET DIAGNOSTICS done = ROW_COUNT;
    IF done <> n THEN
        RAISE EXCEPTION
            'audit_log_chain: % of % entries are missing, uncommitted, repeated or already chained',
            n - done, n
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN head_pos + n;
END
$$
"""

_GRANT = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mash_hub_app') THEN
        GRANT EXECUTE ON FUNCTION audit_log_chain(bigint[], bytea[]) TO mash_hub_app;
    END IF;
END
$$
"""

_REFUSE_DOWNGRADE = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM audit_log WHERE chain_seq IS DISTINCT FROM seq) THEN
        RAISE EXCEPTION 'cannot downgrade below 0011: some audit entries are not chained at %',
            'a position equal to their seq'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END
$$
"""


def upgrade() -> None:
    schema = op.get_bind().execute(sa.text("SELECT quote_ident(current_schema())")).scalar_one()
    op.add_column("audit_log", sa.Column("chain_seq", sa.BigInteger(), nullable=True))
    op.execute("DROP TRIGGER audit_log_no_update_delete ON audit_log")
    op.execute("UPDATE audit_log SET chain_seq = seq")
    op.alter_column("audit_log", "prev_hash", existing_type=sa.LargeBinary(), nullable=True)
    op.alter_column("audit_log", "entry_hash", existing_type=sa.LargeBinary(), nullable=True)
    op.create_unique_constraint(op.f("uq_audit_log_chain_seq"), "audit_log", ["chain_seq"])
    op.create_check_constraint(
        "chained_together",
        "audit_log",
        "(chain_seq IS NULL) = (prev_hash IS NULL) AND (chain_seq IS NULL) = (entry_hash IS NULL)",
    )
    op.create_index(
        "ix_audit_log_unchained",
        "audit_log",
        ["seq"],
        postgresql_where=sa.text("chain_seq IS NULL"),
    )
    op.execute("ALTER TABLE audit_log ALTER COLUMN seq ADD GENERATED BY DEFAULT AS IDENTITY")
    op.execute(
        "SELECT setval(pg_get_serial_sequence('audit_log', 'seq'), max(seq)) "
        "FROM audit_log HAVING max(seq) IS NOT NULL"
    )
    op.execute(_GUARD)
    op.execute(
        "CREATE TRIGGER audit_log_guard BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_guard()"
    )
    # Only an insert that comes already chained runs the function (the WHEN is checked in C),
    # so the writers' plain inserts pay nothing.
    op.execute(
        "CREATE TRIGGER audit_log_guard_insert BEFORE INSERT ON audit_log FOR EACH ROW "
        "WHEN (NEW.chain_seq IS NOT NULL OR NEW.prev_hash IS NOT NULL "
        "OR NEW.entry_hash IS NOT NULL) EXECUTE FUNCTION audit_log_guard()"
    )
    op.execute(_CHAIN.format(lock=CHAIN_LOCK, schema=schema))
    op.execute("REVOKE ALL ON FUNCTION audit_log_chain(bigint[], bytea[]) FROM PUBLIC")
    op.execute(_GRANT)


def downgrade() -> None:
    op.execute(_REFUSE_DOWNGRADE)
    op.execute("DROP FUNCTION audit_log_chain(bigint[], bytea[])")
    op.execute("DROP TRIGGER audit_log_guard_insert ON audit_log")
    op.execute("DROP TRIGGER audit_log_guard ON audit_log")
    op.execute("DROP FUNCTION audit_log_guard()")
    op.execute("ALTER TABLE audit_log ALTER COLUMN seq DROP IDENTITY")
    op.drop_index("ix_audit_log_unchained", table_name="audit_log")
    op.drop_constraint(op.f("ck_audit_log_chained_together"), "audit_log", type_="check")
    op.drop_constraint(op.f("uq_audit_log_chain_seq"), "audit_log", type_="unique")
    op.alter_column("audit_log", "entry_hash", existing_type=sa.LargeBinary(), nullable=False)
    op.alter_column("audit_log", "prev_hash", existing_type=sa.LargeBinary(), nullable=False)
    op.drop_column("audit_log", "chain_seq")
    op.execute(
        "CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()"
    )
