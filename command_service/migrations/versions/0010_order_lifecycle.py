"""The order lifecycle with payments (issue 13; CONTRACT v2 "Orders, payments and refunds").

An order is ``pending_payment`` -> ``confirmed`` | ``payment_failed``, and ``confirmed`` | ``pending_payment`` ->
``cancelled``. A paid order keeps its payment (provider, id, status, hosted page, window); the seats of a
``pending_payment`` order stay ``held`` by its (converted) hold until ``payment_expires_at``, when the sweeper puts
them back on sale (``seats_released_at``). ``reconcile_at`` is when the sweeper next asks the provider about a
payment still ``pending`` (a lost webhook, a cancelled order whose payment must be cancelled). ``version`` grows
with every change (the read model keeps the newest). A refund is one row per order, asked of the provider with
the order id as idempotency key, retried (``next_attempt_at``) until the provider answers.

Revision ID: 0010
Revises: 0009
"""
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE orders DROP CONSTRAINT orders_status_check;
        ALTER TABLE orders ADD CONSTRAINT orders_status_check
            CHECK (status IN ('pending_payment', 'confirmed', 'payment_failed', 'cancelled'));
        ALTER TABLE orders ADD COLUMN version            integer NOT NULL DEFAULT 1,
                           ADD COLUMN confirmed_at       timestamptz,
                           ADD COLUMN cancel_reason      text,
                           ADD COLUMN payment_provider   text,
                           ADD COLUMN payment_id         text,
                           ADD COLUMN payment_status     text
                               CHECK (payment_status IN ('pending', 'succeeded', 'failed', 'canceled')),
                           ADD COLUMN checkout_url       text,
                           ADD COLUMN payment_expires_at timestamptz,
                           ADD COLUMN seats_released_at  timestamptz,
                           ADD COLUMN reconcile_at       timestamptz;
        UPDATE orders SET confirmed_at = created_at, version = CASE WHEN status = 'cancelled' THEN 2 ELSE 1 END;
        CREATE UNIQUE INDEX orders_payment_idx ON orders (payment_provider, payment_id);
        CREATE INDEX orders_reconcile_idx ON orders (reconcile_at) WHERE payment_status = 'pending';
        CREATE INDEX orders_window_idx ON orders (payment_expires_at)
            WHERE status = 'pending_payment' AND seats_released_at IS NULL;

        CREATE TABLE refunds (
            order_id           uuid        PRIMARY KEY REFERENCES orders (id),
            payment_id         text        NOT NULL,
            amount             bigint      NOT NULL CHECK (amount > 0),
            reason             text        NOT NULL,
            status             text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
            provider_refund_id text,
            attempts           integer     NOT NULL DEFAULT 0,
            next_attempt_at    timestamptz NOT NULL DEFAULT now(),
            last_error         text,
            created_at         timestamptz NOT NULL DEFAULT now(),
            updated_at         timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX refunds_pending_idx ON refunds (next_attempt_at) WHERE status = 'pending';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE refunds;
        ALTER TABLE orders DROP COLUMN version, DROP COLUMN confirmed_at, DROP COLUMN cancel_reason,
            DROP COLUMN payment_provider, DROP COLUMN payment_id, DROP COLUMN payment_status, DROP COLUMN checkout_url,
            DROP COLUMN payment_expires_at, DROP COLUMN seats_released_at, DROP COLUMN reconcile_at;
        ALTER TABLE orders DROP CONSTRAINT orders_status_check;
        ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN ('confirmed', 'cancelled'));
        """
    )
