"""The db unit's first schema: records, the result ledger and the request ledger.

Revision ID: db_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "db_0001"
down_revision = None
branch_labels = None
depends_on = None

BigSeq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("seq", BigSeq, primary_key=True),
        sa.Column("record_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("chat_id", sa.String(128), nullable=False),
        sa.Column("instruction", sa.String(64), nullable=False),
        sa.Column("instruction_id", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_records_record_id", "records", ["record_id"], unique=True)
    op.create_index("ix_records_user_id_seq", "records", ["user_id", "seq"])
    op.create_table(
        "results",
        sa.Column("instruction_id", sa.String(128), primary_key=True),
        sa.Column("result", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "processed_requests",
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("response", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("processed_requests")
    op.drop_table("results")
    op.drop_index("ix_records_user_id_seq", table_name="records")
    op.drop_index("ix_records_record_id", table_name="records")
    op.drop_table("records")
