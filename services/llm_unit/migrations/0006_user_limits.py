"""Per-user limits, and the counters (requests per minute, tokens per day and month) they are checked against.

Revision ID: llm_unit_0006
Revises: llm_unit_0005
"""

import sqlalchemy as sa
from alembic import op

revision = "llm_unit_0006"
down_revision = "llm_unit_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_limits",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("requests_per_minute", sa.Integer),
        sa.Column("tokens_per_day", sa.Integer),
        sa.Column("tokens_per_month", sa.Integer),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "usage_counters",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("window", sa.String(8), primary_key=True),
        sa.Column("window_start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("amount", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("usage_counters")
    op.drop_table("user_limits")
