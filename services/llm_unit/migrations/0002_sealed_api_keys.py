"""Provider API keys sealed at rest: providers.api_key (plain text) becomes sealed_api_key (a Fernet token).

The keys stored in plain text are sealed here, with the keyring the unit passes in
(`context.config.attributes["keyring"]`, services/llm_unit/keyring.py); downgrading opens them again.

Revision ID: llm_unit_0002
Revises: llm_unit_0001
"""

import sqlalchemy as sa
from alembic import context, op

revision = "llm_unit_0002"
down_revision = "llm_unit_0001"
branch_labels = None
depends_on = None


def _providers(key_column: str) -> sa.TableClause:
    return sa.table("providers", sa.column("id", sa.String), sa.column(key_column, sa.Text))


def _rewrite(source: str, target: str, convert_with: str) -> None:
    """Writes keyring.<convert_with>(source) into target for every provider that has a key."""
    connection = op.get_bind()
    table_from, table_to = _providers(source), _providers(target)
    rows = connection.execute(sa.select(table_from.c.id, table_from.c[source])
                              .where(table_from.c[source].is_not(None))).all()
    if not rows:
        return
    keyring = context.config.attributes.get("keyring")
    if keyring is None:
        raise RuntimeError("migration llm_unit_0002 needs the unit's keyring to convert the stored API keys")
    convert = getattr(keyring, convert_with)
    for provider_id, value in rows:
        connection.execute(sa.update(table_to).where(table_to.c.id == provider_id)
                           .values({target: convert(value) if value else None}))


def upgrade() -> None:
    op.add_column("providers", sa.Column("sealed_api_key", sa.Text, nullable=True))
    _rewrite("api_key", "sealed_api_key", "seal")
    op.drop_column("providers", "api_key")


def downgrade() -> None:
    op.add_column("providers", sa.Column("api_key", sa.String(4000), nullable=True))
    _rewrite("sealed_api_key", "api_key", "open")
    op.drop_column("providers", "sealed_api_key")
