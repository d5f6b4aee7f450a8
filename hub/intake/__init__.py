"""The way in: every door (REST, SOAP, SFTP files, the registry, synchronous answers) hands what arrived
to the one entry point (door: `Hub.receive(Arrival)`), which runs intake and records refusals and
metrics once; intake parses, validates, verifies, deduplicates, stores with a signed receipt and routes
(accept); refuses when a partner's outbox is full (backpressure); records refusals (refusals); and
takes in files from polling transports (polling).

May use: hub.xml, hub.trust, hub.access, hub.store, hub.evidence, hub.config, hub.errors, hub.metrics."""
