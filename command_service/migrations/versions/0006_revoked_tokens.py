"""Revoked access tokens are kept in PostgreSQL too (common/revocation.py): the Redis set was the only copy, so a
FLUSHALL, or a Redis restart without its data, made logged-out and disabled users' tokens work again, and a
revocation written while Redis was down was never written at all. A row per revocation, with the time it may be
forgotten; the command service rebuilds the Redis set from these rows.

Revision ID: 0006
Revises: 0005
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE revoked_tokens (
            member    text        PRIMARY KEY,  -- 'jti:<token id>' or 'sub:<user id>:<unix s>' (common/revocation.py)
            forget_at timestamptz NOT NULL
        );
        CREATE INDEX revoked_tokens_forget_idx ON revoked_tokens (forget_at);

        -- Revocations from before this table: what the refresh tokens remember (logouts and reused families).
        INSERT INTO revoked_tokens (member, forget_at)
        SELECT 'jti:' || access_jti, access_expires_at FROM refresh_tokens
        WHERE revoked_at IS NOT NULL AND access_expires_at > now()
        ON CONFLICT DO NOTHING;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE revoked_tokens")
