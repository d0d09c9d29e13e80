"""Chats, their members and messages, and the request ledger.

Revision ID: chat_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "chat_0001"
down_revision = None
branch_labels = None
depends_on = None

# Integer on SQLite, where only an INTEGER PRIMARY KEY is the auto-numbered rowid.
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "chats",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("chat_id", sa.String(36), nullable=False, unique=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "chat_members",
        sa.Column("chat_seq", SEQ, sa.ForeignKey("chats.seq"), primary_key=True),
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
    )
    op.create_index("ix_chat_members_user_id_chat_seq", "chat_members", ["user_id", "chat_seq"])
    op.create_table(
        "messages",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(36), nullable=False, unique=True),
        sa.Column("chat_id", sa.String(36), sa.ForeignKey("chats.chat_id"), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("llm_id", sa.String(128), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_messages_chat_id_seq", "messages", ["chat_id", "seq"])
    op.create_table(
        "processed_requests",
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("response", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("processed_requests")
    op.drop_index("ix_messages_chat_id_seq", table_name="messages")
    op.drop_table("messages")
    op.drop_index("ix_chat_members_user_id_chat_seq", table_name="chat_members")
    op.drop_table("chat_members")
    op.drop_table("chats")
