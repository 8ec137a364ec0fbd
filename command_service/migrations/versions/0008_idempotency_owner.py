"""Idempotency claims name their owner: the process lease (adapters/lease.py) of the process running the first
attempt, so a claim whose process died is taken over at once instead of blocking its key for 60 s.

Revision ID: 0008
Revises: 0007
"""
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE idempotency_keys ADD COLUMN owner integer")


def downgrade() -> None:
    op.execute("ALTER TABLE idempotency_keys DROP COLUMN owner")
