"""The indexes the pruner deletes by: ledger rows by age, soft-deleted rows by when they went.

Revision ID: llm_unit_0003
Revises: llm_unit_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "llm_unit_0003"
down_revision = "llm_unit_0002"
branch_labels = None
depends_on = None

DELETED = sa.text("deleted_at IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_processed_requests_created_at", "processed_requests", ["created_at"])
    op.create_index("ix_providers_deleted_at", "providers", ["deleted_at"], postgresql_where=DELETED, sqlite_where=DELETED)
    op.create_index("ix_llms_deleted_at", "llms", ["deleted_at"], postgresql_where=DELETED, sqlite_where=DELETED)


def downgrade() -> None:
    op.drop_index("ix_llms_deleted_at", table_name="llms")
    op.drop_index("ix_providers_deleted_at", table_name="providers")
    op.drop_index("ix_processed_requests_created_at", table_name="processed_requests")
