"""Flash-sale controls (issue 16): a scheduled on-sale time, a per-buyer limit, a waiting room.

- ``events.sale_starts_at``: holds before it are refused (checked against the clock inside the hold's
  transaction: no timer has to fire). ``events.max_per_buyer``: a buyer's held plus sold places on the event.
  ``events.waiting_room``: ``{admit_per_minute, admission_seconds}`` or null.
- ``queue_entries``: the waiting room's record (Redis holds the working queue; it is rebuilt from here when lost).
  One entry per buyer and event. ``pre_open``: joined before ``sale_starts_at``; such entries are ordered by
  ``draw`` (random, drawn at join and never shown before opening), then everyone later by ``seq`` (arrival).
  ``admitted_at`` / ``admission_expires_at``: set by the admitter.
- indexes for counting a buyer's places on an event (the limit check).

Revision ID: 0013
Revises: 0012
"""
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE events ADD COLUMN sale_starts_at timestamptz,
                           ADD COLUMN max_per_buyer integer CHECK (max_per_buyer > 0),
                           ADD COLUMN waiting_room jsonb,
                           ADD COLUMN admitted integer NOT NULL DEFAULT 0;  -- admissions given so far
        CREATE TABLE queue_entries (
            id                   uuid             PRIMARY KEY,
            event_id             uuid             NOT NULL REFERENCES events (id),
            buyer_id             uuid             NOT NULL,
            seq                  bigserial        NOT NULL,
            pre_open             boolean          NOT NULL,
            draw                 double precision NOT NULL,
            joined_at            timestamptz      NOT NULL DEFAULT now(),
            admitted_at          timestamptz,
            admission_expires_at timestamptz,
            UNIQUE (event_id, buyer_id)
        );
        CREATE INDEX queue_entries_waiting ON queue_entries (event_id, pre_open DESC, draw, seq)
            WHERE admitted_at IS NULL;
        CREATE INDEX holds_event_buyer_idx ON holds (event_id, buyer_id) WHERE status = 'active';
        CREATE INDEX orders_event_buyer_idx ON orders (event_id, buyer_id);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX orders_event_buyer_idx;
        DROP INDEX holds_event_buyer_idx;
        DROP TABLE queue_entries;
        ALTER TABLE events DROP COLUMN admitted, DROP COLUMN waiting_room, DROP COLUMN max_per_buyer,
                           DROP COLUMN sale_starts_at;
        """
    )
