"""Evidence: every message's timeline and the audit log as two hash chains (timeline, audit, chains),
their offline export for a third party (export, verify_script), and retention (retention).

May use: hub.trust, hub.store, hub.config, hub.errors, hub.settings. Never intake, delivery or the API."""
