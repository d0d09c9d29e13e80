"""Caller keys: each stored by its SHA-256 only, with its role and (for a user key) its user.

Revision ID: user_0003
Revises: user_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "user_0003"
down_revision = "user_0002"
branch_labels = None
depends_on = None

DELETED = sa.text("deleted_at IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "keys",
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("key_id", sa.String(36), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("shown_part", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_keys_key_id", "keys", ["key_id"], unique=True)
    op.create_index("ix_keys_key_hash", "keys", ["key_hash"], unique=True)
    op.create_index("ix_keys_deleted_at", "keys", ["deleted_at"], postgresql_where=DELETED, sqlite_where=DELETED)


def downgrade() -> None:
    op.drop_index("ix_keys_deleted_at", table_name="keys")
    op.drop_index("ix_keys_key_hash", table_name="keys")
    op.drop_index("ix_keys_key_id", table_name="keys")
    op.drop_table("keys")
