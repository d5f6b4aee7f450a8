"""The way out: delivery workers claim due deliveries from the outbox with leases (outbox, workers), map,
sign and send them through the partner's connector, retry transient faults with backoff (retry), isolate
a failing partner (breaker); operators resend and cancel (operations).

May use: hub.xml, hub.trust, hub.store, hub.evidence, hub.intake (answers come back in), hub.config,
hub.errors, hub.metrics."""
