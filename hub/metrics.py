"""Prometheus metrics of the engine (served at /metrics)."""
from prometheus_client import Counter, Histogram

ACCEPTED = Counter("hub_messages_accepted_total", "Messages accepted at intake", ["type", "sender"])
REFUSED = Counter("hub_messages_refused_total", "Messages refused at intake", ["reason"])
DUPLICATES = Counter("hub_messages_duplicate_total", "Same id and bytes received again", ["sender"])
DELIVERIES = Counter("hub_delivery_attempts_total", "Delivery attempts by outcome", ["partner", "outcome"])
DELIVERY_SECONDS = Histogram("hub_delivery_seconds", "Time to map, sign and send one delivery", ["partner"])
