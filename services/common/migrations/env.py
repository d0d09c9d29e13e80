"""Alembic environment shared by every unit; the unit passes its connection and models in."""

from alembic import context

config = context.config
context.configure(
    connection=config.attributes["connection"],
    target_metadata=config.attributes["target_metadata"],
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
