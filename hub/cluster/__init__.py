"""Several hub processes on one database: which one leads the scheduled jobs (leader), and
`hub serve --processes N` (processes).

May use: hub.store, hub.errors, hub.settings."""
