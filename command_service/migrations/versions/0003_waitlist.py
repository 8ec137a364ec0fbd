"""Waitlist: FIFO entries per event, exclusive offers backed by ordinary holds.

- ``events.waitlist_seq`` hands out each event's FIFO tickets (``seq``): a join increments it under the
  event row's lock, so concurrent joins get distinct, increasing tickets; ``UNIQUE (event_id, seq)`` makes a
  duplicate impossible anyway. Only joins touch it, never a hold or a checkout (no hot row on the seated path).
- At most one active (waiting or offered) entry per buyer per event: a partial unique index.
- An offer is a real hold (``holds.waitlist_entry_id`` says whose), so seats under offer are ``held`` rows that
  nobody else can take, and checkout, expiry and release work exactly as for any hold.

Revision ID: 0003
Revises: 0002
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE events ADD COLUMN waitlist_seq bigint NOT NULL DEFAULT 0;

        CREATE TABLE waitlist_entries (
            id               uuid        PRIMARY KEY,
            event_id         uuid        NOT NULL REFERENCES events (id),
            buyer_id         uuid        NOT NULL,  -- no FK, like holds.buyer_id: the token is the proof
            section          text,
            quantity         integer     NOT NULL CHECK (quantity BETWEEN 1 AND 10),
            seq              bigint      NOT NULL,
            status           text        NOT NULL DEFAULT 'waiting'
                             CHECK (status IN ('waiting', 'offered', 'converted', 'expired', 'left')),
            offer_hold_id    uuid        REFERENCES holds (id),
            offer_expires_at timestamptz,
            version          integer     NOT NULL DEFAULT 1,
            created_at       timestamptz NOT NULL DEFAULT now(),
            updated_at       timestamptz NOT NULL DEFAULT now(),
            UNIQUE (event_id, seq),
            CHECK (status <> 'offered' OR (offer_hold_id IS NOT NULL AND offer_expires_at IS NOT NULL))
        );
        CREATE UNIQUE INDEX waitlist_one_active_entry ON waitlist_entries (event_id, buyer_id)
            WHERE status IN ('waiting', 'offered');
        CREATE INDEX waitlist_queue ON waitlist_entries (event_id, seq) WHERE status = 'waiting';

        ALTER TABLE holds ADD COLUMN waitlist_entry_id uuid;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE holds DROP COLUMN waitlist_entry_id;
        DROP TABLE waitlist_entries;
        ALTER TABLE events DROP COLUMN waitlist_seq;
        """
    )
