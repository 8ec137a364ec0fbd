"""Promo codes (CONTRACT v2 "Promo codes"; issue 13): a code per event lowers an order's total at checkout.

``uses`` counts redemptions; the checkout's conditional ``UPDATE ... WHERE uses < max_uses`` is what holds
``max_uses`` under any concurrency, and a cancelled order gives its use back. Orders keep ``subtotal`` (before the
discount), ``discount`` and the code they used; the orders that exist have no discount.

Revision ID: 0009
Revises: 0008
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE promo_codes (
            id          uuid        PRIMARY KEY,
            event_id    uuid        NOT NULL REFERENCES events (id),
            code        text        NOT NULL,  -- as the organizer wrote it; matched case-insensitively
            percent_off integer     CHECK (percent_off BETWEEN 1 AND 100),
            amount_off  integer     CHECK (amount_off > 0),
            max_uses    integer     NOT NULL CHECK (max_uses > 0),
            uses        integer     NOT NULL DEFAULT 0 CHECK (uses >= 0 AND uses <= max_uses),
            valid_from  timestamptz,
            valid_until timestamptz,
            sections    text[],                -- NULL: every section
            created_at  timestamptz NOT NULL DEFAULT now(),
            CHECK ((percent_off IS NULL) <> (amount_off IS NULL))
        );
        CREATE UNIQUE INDEX promo_codes_event_code ON promo_codes (event_id, upper(code));

        ALTER TABLE orders ADD COLUMN subtotal integer,
                           ADD COLUMN discount integer NOT NULL DEFAULT 0,
                           ADD COLUMN promo_code_id uuid REFERENCES promo_codes (id);
        UPDATE orders SET subtotal = total;
        ALTER TABLE orders ALTER COLUMN subtotal SET NOT NULL;
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE orders DROP COLUMN promo_code_id, DROP COLUMN discount, DROP COLUMN subtotal; "
               "DROP TABLE promo_codes")
