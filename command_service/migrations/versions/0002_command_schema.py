"""Command-side schema: users, venues, events, inventory (seats, GA sections), holds, orders,
idempotency keys.

PostgreSQL is the arbiter of inventory (see command_service/README.md): a seat row carries its
own status and the hold or order that owns it, and the CHECKs below make a seat that is sold
without an order, or held without a hold, impossible. GA sections keep `held + sold <= capacity`.

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE users (
            id            uuid        PRIMARY KEY,
            email         text        NOT NULL UNIQUE,
            name          text        NOT NULL,
            role          text        NOT NULL CHECK (role IN ('buyer', 'organizer', 'admin')),
            password_hash text        NOT NULL,
            created_at    timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE venues (
            id           uuid        PRIMARY KEY,
            organizer_id uuid        NOT NULL REFERENCES users (id),
            name         text        NOT NULL,
            city         text        NOT NULL,
            address      text,
            capacity     integer     NOT NULL CHECK (capacity > 0),
            sections     jsonb       NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE events (
            id           uuid        PRIMARY KEY,
            organizer_id uuid        NOT NULL REFERENCES users (id),
            venue_id     uuid        NOT NULL REFERENCES venues (id),
            title        text        NOT NULL,
            description  text,
            category     text        NOT NULL,
            starts_at    timestamptz NOT NULL,
            ends_at      timestamptz,
            currency     char(3)     NOT NULL,
            prices       jsonb       NOT NULL,
            status       text        NOT NULL CHECK (status IN ('draft', 'on_sale', 'cancelled')),
            version      integer     NOT NULL DEFAULT 1,
            created_at   timestamptz NOT NULL DEFAULT now(),
            updated_at   timestamptz NOT NULL DEFAULT now(),
            CHECK (ends_at IS NULL OR ends_at > starts_at)
        );

        -- One row per seat per event. `version` goes up on every change of the row; outbox
        -- events carry it so projectors can apply absolute states idempotently and in order.
        -- The key leads with seat_id so `seat_id = ANY(...) AND event_id = ...` is always a
        -- pure index lookup. There is deliberately no index on event_id alone: for a new event
        -- the planner's statistics would make it look selective, and a hold would scan the
        -- whole event. Whole-event work (cancellation) looks seats up by the layout's seat ids.
        CREATE TABLE seats (
            event_id  uuid    NOT NULL REFERENCES events (id),
            seat_id   text    NOT NULL,
            status    text    NOT NULL DEFAULT 'available',
            hold_id   uuid,
            order_id  uuid,
            version   integer NOT NULL DEFAULT 1,
            PRIMARY KEY (seat_id, event_id),
            CONSTRAINT seat_state CHECK (
                (status = 'available' AND hold_id IS NULL AND order_id IS NULL)
             OR (status = 'held'      AND hold_id IS NOT NULL AND order_id IS NULL)
             OR (status = 'sold'      AND order_id IS NOT NULL))
        ) WITH (fillfactor = 80);

        CREATE TABLE ga_sections (
            event_id uuid    NOT NULL REFERENCES events (id),
            section  text    NOT NULL,
            capacity integer NOT NULL CHECK (capacity > 0),
            held     integer NOT NULL DEFAULT 0 CHECK (held >= 0),
            sold     integer NOT NULL DEFAULT 0 CHECK (sold >= 0),
            version  integer NOT NULL DEFAULT 1,
            PRIMARY KEY (event_id, section),
            CONSTRAINT ga_capacity CHECK (held + sold <= capacity)
        );

        -- holds/orders.event_id deliberately carry no foreign key: its check would take a
        -- FOR KEY SHARE lock on the event row in every hold and checkout, a hot row per event.
        CREATE TABLE holds (
            id         uuid        PRIMARY KEY,
            event_id   uuid        NOT NULL,
            buyer_id   uuid        NOT NULL,
            seats      text[],
            section    text,
            quantity   integer     NOT NULL CHECK (quantity > 0),
            total      bigint      NOT NULL CHECK (total >= 0),
            currency   char(3)     NOT NULL,
            status     text        NOT NULL CHECK (status IN ('active', 'converted', 'released', 'expired')),
            expires_at timestamptz NOT NULL,
            swept_at   timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            CHECK ((seats IS NULL) <> (section IS NULL))
        );
        CREATE INDEX holds_active_expiry_idx ON holds (expires_at) WHERE status = 'active';
        CREATE INDEX holds_active_event_idx ON holds (event_id) WHERE status = 'active';

        CREATE TABLE orders (
            id           uuid        PRIMARY KEY,
            event_id     uuid        NOT NULL,
            buyer_id     uuid        NOT NULL,
            hold_id      uuid        NOT NULL UNIQUE REFERENCES holds (id),
            seats        text[],
            section      text,
            quantity     integer     NOT NULL CHECK (quantity > 0),
            total        bigint      NOT NULL CHECK (total >= 0),
            currency     char(3)     NOT NULL,
            status       text        NOT NULL CHECK (status IN ('confirmed', 'cancelled')),
            created_at   timestamptz NOT NULL DEFAULT now(),
            cancelled_at timestamptz,
            CHECK ((seats IS NULL) <> (section IS NULL))
        );
        CREATE INDEX orders_confirmed_event_idx ON orders (event_id) WHERE status = 'confirmed';

        -- CONTRACT "Idempotency": per user + key; response_status IS NULL while the first
        -- request still runs.
        CREATE TABLE idempotency_keys (
            user_id         text        NOT NULL,
            key             text        NOT NULL,
            request_hash    text        NOT NULL,
            response_status integer,
            response_body   jsonb,
            created_at      timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (user_id, key)
        );
        CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP TABLE idempotency_keys, orders, holds, ga_sections, seats, events, venues, users;"
    )
