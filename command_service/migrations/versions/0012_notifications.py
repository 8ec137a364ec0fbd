"""Notifications (issue 15): mail preferences and event reminders.

- ``users.mail_reminders`` / ``users.mail_marketing``: what mail a user takes besides order, payment and refund
  mail, which cannot be turned off (PATCH /me/preferences).
- ``events.reminded_for``: the ``starts_at`` its ticket holders were last reminded of. The sweeper reminds the
  holders of an on-sale event once ``starts_at - EVENTLY_REMINDER_HOURS`` has passed and ``reminded_for`` is not
  ``starts_at``, setting it in the same transaction (rows claimed with SKIP LOCKED): several sweepers never remind
  twice, and an event moved to a new time is reminded of again at that time.

Revision ID: 0012
Revises: 0011
"""
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE users ADD COLUMN mail_reminders boolean NOT NULL DEFAULT true,
                          ADD COLUMN mail_marketing boolean NOT NULL DEFAULT true;
        ALTER TABLE events ADD COLUMN reminded_for timestamptz;
        CREATE INDEX events_reminder_due ON events (starts_at) WHERE status = 'on_sale';
        CREATE INDEX tickets_event_buyer_idx ON tickets (event_id, buyer_id) WHERE status <> 'void';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX tickets_event_buyer_idx;
        DROP INDEX events_reminder_due;
        ALTER TABLE events DROP COLUMN reminded_for;
        ALTER TABLE users DROP COLUMN mail_marketing, DROP COLUMN mail_reminders;
        """
    )
