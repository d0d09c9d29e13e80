"""Providers get a concurrency bound (max_in_flight, max_waiting); models an ordered list of fallbacks.

Revision ID: llm_unit_0004
Revises: llm_unit_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "llm_unit_0004"
down_revision = "llm_unit_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("providers", sa.Column("max_in_flight", sa.Integer, nullable=False, server_default="0"))
    op.add_column("providers", sa.Column("max_waiting", sa.Integer, nullable=False, server_default="100"))
    op.add_column("llms", sa.Column("fallback_llm_ids", sa.JSON, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("llms") as batch:
        batch.drop_column("fallback_llm_ids")
    with op.batch_alter_table("providers") as batch:
        batch.drop_column("max_waiting")
        batch.drop_column("max_in_flight")
