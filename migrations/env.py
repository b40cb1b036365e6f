"""Alembic environment: the URL comes from the project settings so there is one source."""

from alembic import context
from sqlalchemy import create_engine, pool

from services.common.config import get_settings

config = context.config


def run_migrations_offline() -> None:
    context.configure(url=get_settings().sqlalchemy_url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.attributes.get("url") or get_settings().sqlalchemy_url
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
