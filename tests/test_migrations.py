"""Every table the running hub uses is known to the migrations: on a fresh database brought to head,
autogenerate (the engine's tables plus those of the installed apps, as the composition root hands them
over) proposes nothing, on SQLite and on PostgreSQL."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import hub.store.models  # noqa: F401  (the engine's tables)
from hub.service import INSTALLED_APPS, app_metadata
from hub.store.db import Base, make_engine, migrate


@pytest.mark.both_databases
@pytest.mark.empty_database
def test_a_fresh_database_at_head_matches_every_model(database_url):
    engine = make_engine(database_url)
    metadata = app_metadata(INSTALLED_APPS)
    try:
        migrate(engine, metadata=metadata)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True,
                                                                   "target_metadata": [Base.metadata, *metadata]})
            differences = compare_metadata(context, [Base.metadata, *metadata])
    finally:
        engine.dispose()
    assert differences == [], "\n".join(map(str, differences))


def test_the_engine_and_each_app_keep_their_tables_apart():
    tables = {app.name: set(app.metadata.tables) for app in INSTALLED_APPS}
    assert "pension_batches" in tables["registry"] and "cases" in tables["registry"]
    assert not set(Base.metadata.tables) & set().union(*tables.values())
