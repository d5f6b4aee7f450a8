"""Alembic environment: migrations run on the connection the hub passes in (see hub.store.db.migrate).

The schema's target, for autogenerate, is the engine's tables plus those of the apps the service runs,
handed in by the composition root (`target_metadata`, hub/service.py); the engine imports no app.
"""
from alembic import context

import hub.store.models  # noqa: F401  (registers the engine's tables)
from hub.store.db import Base

target_metadata = context.config.attributes.get("target_metadata") or [Base.metadata]
connection = context.config.attributes.get("connection")
if connection is None:
    from hub.store.db import make_engine
    from hub.settings import Settings

    connection = make_engine(Settings.from_env().database_url).connect()

context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
