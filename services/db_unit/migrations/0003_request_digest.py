"""A digest of the request beside each stored result, so an id sent again with another request is told apart.

Revision ID: db_0003
Revises: db_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "db_0003"
down_revision = "db_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("results", sa.Column("request_digest", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    op.drop_column("results", "request_digest")
