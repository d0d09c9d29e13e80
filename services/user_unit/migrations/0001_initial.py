"""The user unit's first schema: users and the request ledger.

Revision ID: user_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "user_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("username", sa.String(30), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("profile", sa.Text, nullable=False),
        sa.Column("record_instructions", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_users_user_id", "users", ["user_id"], unique=True)
    op.create_index(
        "ix_users_live_username",
        "users",
        ["username"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
        sqlite_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "processed_requests",
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("response", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("processed_requests")
    op.drop_index("ix_users_live_username", table_name="users")
    op.drop_index("ix_users_user_id", table_name="users")
    op.drop_table("users")
