"""The payment provider's webhooks, as received (issue 13): one row per provider event id, so a webhook the
provider sends again (it retries until it gets a 2xx) is recorded once. ``processed_at`` is set by the order
lifecycle when it has acted on the row.

Revision ID: 0007
Revises: 0006
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE payment_webhooks (
            provider     text        NOT NULL,
            event_id     text        NOT NULL,
            type         text        NOT NULL,
            object_id    text        NOT NULL,  -- the payment's or the refund's id at the provider
            reference    text,                  -- the order id, when the provider's object carries it
            status       text        NOT NULL,
            payload      jsonb       NOT NULL,
            received_at  timestamptz NOT NULL DEFAULT now(),
            processed_at timestamptz,
            PRIMARY KEY (provider, event_id)
        );
        CREATE INDEX payment_webhooks_object_idx ON payment_webhooks (provider, object_id);
        CREATE INDEX payment_webhooks_unprocessed_idx ON payment_webhooks (received_at) WHERE processed_at IS NULL;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE payment_webhooks")
