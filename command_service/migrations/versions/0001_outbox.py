"""Outbox and Debezium heartbeat tables.

The outbox columns follow the Debezium outbox EventRouter defaults (id, aggregatetype,
aggregateid, type, payload); see debezium/README.md.

Revision ID: 0001
Revises:
"""
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE outbox (
            id            uuid        PRIMARY KEY,
            aggregatetype text        NOT NULL,
            aggregateid   text        NOT NULL,
            type          text        NOT NULL,
            payload       jsonb       NOT NULL,
            created_at    timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX outbox_created_at_idx ON outbox (created_at);

        -- Debezium's heartbeat action query updates this row, so the replication slot
        -- advances even when no outbox row is written (keeps WAL from piling up).
        CREATE TABLE debezium_heartbeat (
            id integer     PRIMARY KEY,
            ts timestamptz NOT NULL
        );
        INSERT INTO debezium_heartbeat (id, ts) VALUES (1, now());
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE debezium_heartbeat; DROP TABLE outbox;")
