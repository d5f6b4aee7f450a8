"""Storage: database engines and sessions (db), the engine's tables (models), group commit on SQLite
(group_commit), the writes a batch of changes sends at its end (deferred), the file store of messages kept in
a file (files) and the Alembic migrations.

May use: hub.errors, hub.settings. Nothing above it: no intake, delivery, evidence or API."""
