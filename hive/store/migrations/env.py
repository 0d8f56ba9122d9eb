"""Alembic's entry point for Hive's store: migrations run on the connection hive/store/migrate.py hands over."""

from alembic import context
from sqlmodel.sql.sqltypes import AutoString


def render_item(kind, obj, _context):  # noqa: ANN001, ANN201
    """Drafts name plain SQLAlchemy types, so a migration never imports sqlmodel."""
    if kind == "type" and isinstance(obj, AutoString):
        return "sa.String()"
    return False


config = context.config
# the connection arrives already holding the schema lock (see migrate.py); Hive never runs Alembic offline
context.configure(connection=config.attributes["connection"],
                  target_metadata=config.attributes.get("target_metadata"),
                  render_as_batch=True,  # drafts use batch operations, which SQLite needs to alter a table
                  render_item=render_item)
with context.begin_transaction():
    context.run_migrations()
