"""One row per generation that produced a reply: its tokens, model, provider, user, chat and timings.

Revision ID: llm_unit_0005
Revises: llm_unit_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "llm_unit_0005"
down_revision = "llm_unit_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_records",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("chat_id", sa.String(128), nullable=False),
        sa.Column("llm_id", sa.String(36), nullable=False),
        sa.Column("provider_id", sa.String(36), nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("estimated", sa.Boolean, nullable=False),
        sa.Column("time_to_first_token_ms", sa.Integer, nullable=False),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
    )
    op.create_index("ix_usage_records_ended_at", "usage_records", ["ended_at"])


def downgrade() -> None:
    op.drop_index("ix_usage_records_ended_at", table_name="usage_records")
    op.drop_table("usage_records")
