"""The indexes the pruner deletes by (ledger rows by age, soft-deleted rows by when they went), and
the count of each instruction's unfinished deliveries.

Revision ID: db_0002
Revises: db_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "db_0002"
down_revision = "db_0001"
branch_labels = None
depends_on = None

DELETED = sa.text("deleted_at IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_processed_requests_created_at", "processed_requests", ["created_at"])
    op.create_index("ix_results_created_at", "results", ["created_at"])
    op.create_index("ix_records_deleted_at", "records", ["deleted_at"], postgresql_where=DELETED, sqlite_where=DELETED)
    op.create_table(
        "deliveries",
        sa.Column("instruction_id", sa.String(128), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_deliveries_created_at", "deliveries", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_created_at", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_index("ix_records_deleted_at", table_name="records")
    op.drop_index("ix_results_created_at", table_name="results")
    op.drop_index("ix_processed_requests_created_at", table_name="processed_requests")
