"""The way in: every door (REST, SOAP, SFTP files, the registry, synchronous answers) hands what arrived
to the one entry point (door: `Hub.receive(Arrival)`), which runs intake and records refusals and
metrics once; intake parses, validates, verifies, deduplicates, stores with a signed receipt and routes
(accept); takes in documents too large to hold as messages kept in a file (files); refuses when a
partner's outbox is full (backpressure); records refusals (refusals); takes in files from polling
transports (polling); and measures what one message costs in each step (floor).

May use: hub.xml, hub.trust, hub.access, hub.store, hub.evidence, hub.config, hub.errors, hub.metrics, and
connectors.base (what a connector can do: a file message goes only to connectors that send files)."""
