"""The publication Debezium reads, owned by the schema: inserts and updates only.

Outbox rows are purged once they are old (the sweeper, ``EVENTLY_OUTBOX_RETENTION_SECONDS``). Debezium reads the
WAL, so a purged row has long been streamed; publishing only inserts (the outbox) and updates (the heartbeat row
that keeps the slot moving) means the purge's deletes are never decoded or shipped, and the outbox EventRouter
never sees an operation it would warn about. Earlier stacks had a publication that Debezium created itself
(``publication.autocreate.mode=filtered``): it is altered in place, so the slot keeps its position.

Revision ID: 0004
Revises: 0003
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'evently_outbox') THEN
                ALTER PUBLICATION evently_outbox SET TABLE public.outbox, public.debezium_heartbeat;
                ALTER PUBLICATION evently_outbox SET (publish = 'insert, update');
            ELSE
                CREATE PUBLICATION evently_outbox FOR TABLE public.outbox, public.debezium_heartbeat
                    WITH (publish = 'insert, update');
            END IF;
        END
        $$;
        """
    )


def downgrade() -> None:
    op.execute("ALTER PUBLICATION evently_outbox SET (publish = 'insert, update, delete, truncate')")
