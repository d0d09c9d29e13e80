"""The indexes the pruner deletes by: ledger rows by age, soft-deleted rows by when they went.

Revision ID: chat_0002
Revises: chat_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "chat_0002"
down_revision = "chat_0001"
branch_labels = None
depends_on = None

DELETED = sa.text("deleted_at IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_processed_requests_created_at", "processed_requests", ["created_at"])
    op.create_index("ix_chats_deleted_at", "chats", ["deleted_at"], postgresql_where=DELETED, sqlite_where=DELETED)


def downgrade() -> None:
    op.drop_index("ix_chats_deleted_at", table_name="chats")
    op.drop_index("ix_processed_requests_created_at", table_name="processed_requests")
