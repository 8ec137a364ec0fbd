"""Tickets and check-in (issue 14; CONTRACT v2 "Tickets and check-in").

``event_keys``: each event's Ed25519 signing keys, numbered from 1 (``key_id``); the private key is stored
encrypted (Fernet, with the secrets of EVENTLY_TICKET_KEY_SECRETS: adapters/ticket_keys.py), the public key in the
clear. One key per event is ``active`` (it signs new tickets); older ones still verify the tickets they signed.
``tickets``: one per seat or GA place of a confirmed order, issued in the confirming transaction. A ticket checks
in once: the conditional ``UPDATE ... WHERE status = 'valid'`` admits exactly one of any number of scans.
``scanners``: door credentials an organizer makes per event (the token itself is not stored).

Revision ID: 0011
Revises: 0010
"""
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE event_keys (
            event_id    uuid        NOT NULL REFERENCES events (id),
            key_id      integer     NOT NULL CHECK (key_id > 0),
            public_key  bytea       NOT NULL,
            private_key bytea       NOT NULL,  -- Fernet token of the raw 32-byte private key
            active      boolean     NOT NULL DEFAULT true,
            created_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (event_id, key_id)
        );
        CREATE UNIQUE INDEX event_keys_active ON event_keys (event_id) WHERE active;

        CREATE TABLE tickets (
            id            uuid        PRIMARY KEY,
            order_id      uuid        NOT NULL REFERENCES orders (id),
            event_id      uuid        NOT NULL,
            buyer_id      uuid        NOT NULL,
            seat          text,
            section       text        NOT NULL,
            status        text        NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'checked_in', 'void')),
            code          text        NOT NULL,
            checked_in_at timestamptz,
            checked_in_by uuid,                  -- the scanner (or organizer) that admitted it
            version       integer     NOT NULL DEFAULT 1,
            created_at    timestamptz NOT NULL DEFAULT now(),
            CHECK ((status = 'checked_in') = (checked_in_at IS NOT NULL) OR status = 'void')
        );
        CREATE INDEX tickets_order_idx ON tickets (order_id);
        CREATE INDEX tickets_event_idx ON tickets (event_id);

        CREATE TABLE scanners (
            id           uuid        PRIMARY KEY,
            event_id     uuid        NOT NULL REFERENCES events (id),
            organizer_id uuid        NOT NULL,
            name         text        NOT NULL,
            expires_at   timestamptz NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX scanners_event_idx ON scanners (event_id);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE scanners, tickets, event_keys")
