"""Accounts: disabled users, role changes, rotating refresh tokens, and user events for the users read model.

- ``users.disabled`` / ``version`` / ``updated_at``: an admin disables a user or changes a role (the version
  orders the UserUpdated events the projector folds).
- ``refresh_tokens``: one row per refresh token, stored as the SHA-256 of the token (the token is 256 random
  bits, so a plain hash is enough: a leaked table gives nothing to replay). A refresh marks its row used and
  issues the next one of the same ``family_id``; presenting a used token again revokes the whole family
  (someone replayed it). ``access_jti`` / ``access_expires_at``: the access token issued with it, so a logout
  or a family revocation can revoke the access tokens too.
- The users that already exist get a UserRegistered outbox row, so the users read model starts complete.
- Stored anonymous idempotency responses are deleted: they were logins and registrations, and the logins'
  bodies held access tokens (the auth endpoints are no longer remembered at all).

Revision ID: 0005
Revises: 0004
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE users ADD COLUMN disabled   boolean     NOT NULL DEFAULT false,
                          ADD COLUMN version    integer     NOT NULL DEFAULT 1,
                          ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

        CREATE TABLE refresh_tokens (
            token_hash        text        PRIMARY KEY,
            family_id         uuid        NOT NULL,
            user_id           uuid        NOT NULL REFERENCES users (id),
            access_jti        text        NOT NULL,
            access_expires_at timestamptz NOT NULL,
            expires_at        timestamptz NOT NULL,
            used_at           timestamptz,
            revoked_at        timestamptz,
            created_at        timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
        CREATE INDEX refresh_tokens_access_jti_idx ON refresh_tokens (access_jti);
        CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);

        DELETE FROM idempotency_keys WHERE user_id = 'anonymous';

        INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload)
        SELECT u.oid, 'user', u.id::text, 'UserRegistered', jsonb_build_object(
                   'id', u.oid::text, 'type', 'UserRegistered', 'schema_version', 1, 'aggregate_id', u.id::text,
                   'occurred_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                   'data', jsonb_build_object(
                       'id', u.id::text, 'email', u.email, 'name', u.name, 'role', u.role, 'disabled', false,
                       'version', 1,
                       'created_at', to_char(u.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                       'updated_at', to_char(u.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')))
        FROM (SELECT gen_random_uuid() AS oid, * FROM users) u;  -- one outbox id per user
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE refresh_tokens; "
               "ALTER TABLE users DROP COLUMN disabled, DROP COLUMN version, DROP COLUMN updated_at;")
