"""Evidence: every message's timeline and the audit log as two hash chains (timeline, audit, chains),
their offline export for a third party (export, verify_script), retention (retention), and a history
written in bulk with its sealed chain, for benchmarks (bulk).

May use: hub.trust, hub.store, hub.config, hub.errors, hub.settings. Never intake, delivery or the API."""
