"""Alembic environment for the history database.

Run through `playbill db upgrade|current|revision` (history.db builds the config, no
alembic.ini needed), or with the plain `alembic` command from the repository root
(alembic.ini there; the URL then comes from Playbill's settings, or `-x url=...`).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from playbill.history.models import Base

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None:  # the plain `alembic` command: log as alembic.ini says
    from logging.config import fileConfig

    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _include_name(name, type_, parent_names) -> bool:
    # The database may hold tables that are not ours (APScheduler's job store): leave them be.
    if type_ == "table":
        return name in target_metadata.tables
    return True


def _render_item(type_, obj, autogen_context):
    # Migrations use plain SQLAlchemy types, so they never import our models.
    if type_ == "type" and type(obj).__name__ == "UTCDateTime":
        return "sa.DateTime(timezone=True)"
    return False


def _configure(connection: Connection | None = None, **kwargs) -> None:
    dialect = connection.dialect.name if connection is not None else None
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=dialect == "sqlite" or kwargs.pop("render_as_batch", False),
        compare_type=True,
        include_name=_include_name,
        render_item=_render_item,
        **kwargs,
    )


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from playbill.settings import load_settings  # only when run by the plain `alembic` command

    return load_settings().database_url


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # history.db.upgrade passes its own connection
        _run(connection)
        return
    from playbill.history.db import make_engine

    engine = make_engine(_url())
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
