"""Prometheus metrics of the engine (served at /metrics)."""
from prometheus_client import Counter, Gauge, Histogram

# Intake, counted once per arrival by the door (hub/intake/door.py): `door` is the way in (rest, rest-partner,
# soap, sftp, registry, answer, file), `type` the message type, `reason` the refusal's error class.
ACCEPTED = Counter("hub_messages_accepted_total", "Messages accepted at intake", ["type", "sender", "door"])
REFUSED = Counter("hub_messages_refused_total", "Inputs refused at a door", ["reason", "door"])
DUPLICATES = Counter("hub_messages_duplicate_total", "Same id and bytes received again (answered with the "
                     "first receipt)", ["type", "sender", "door"])
# Polling transports (hub/intake/polling.py): `error` when the poll failed (the partner unreachable, the connection
# lost, back-pressure) or one of its files could not be handled (it stays on the partner's server).
POLLS = Counter("hub_polls_total", "Polls of a partner's files (SFTP outbox/) by outcome: ok or error",
                ["partner", "outcome"])
POLLED_FILES = Counter("hub_polled_files_total", "Files polled from a partner by outcome: accepted, refused, "
                       "seen (taken or refused before), failed (could not be acked or set aside)",
                       ["partner", "outcome"])
DELIVERIES = Counter("hub_delivery_attempts_total", "Delivery attempts by outcome", ["partner", "outcome"])
DELIVERY_SECONDS = Histogram("hub_delivery_seconds", "Time to map, sign and send one delivery", ["partner"])

# Per-partner isolation (hub/delivery/workers.py, hub/delivery/breaker.py) and back-pressure (hub/intake/backpressure.py). Each hub
# process keeps its own circuits and in-flight counts, so these are per process.
CIRCUIT_OPEN = Gauge("hub_partner_circuit_open",
                     "1 while this process's circuit to the partner is open or half-open (no deliveries "
                     "claimed but one trial), 0 when closed", ["partner"])
CIRCUIT_OPENED = Counter("hub_partner_circuit_opened_total", "Times the circuit to the partner opened", ["partner"])
IN_FLIGHT = Gauge("hub_partner_deliveries_in_flight", "Deliveries being sent to the partner by this process",
                  ["partner"])
THROTTLED = Counter("hub_intake_throttled_total",
                    "Messages answered 429 because the outbox of a partner they route to was full", ["partner"])


class CertificateCollector:
    """Every certificate the hub relies on (its own, the pinned ones, the CAs), read at each scrape:

        hub_certificate_not_after_seconds{party,role,serial}   when it expires (Unix time)
        hub_certificate_days_left{party,role,serial}           whole days left (negative once expired)
        hub_certificates_expiring                              valid, but expiring within the warning days
        hub_certificates_expired                               expired or not yet valid
    """

    def __init__(self, hub):
        self.hub = hub

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        from hub.trust.certificates import EXPIRED, EXPIRING, NOT_YET_VALID, inventory
        statuses = inventory(self.hub)
        labels = ["party", "role", "serial"]
        not_after = GaugeMetricFamily("hub_certificate_not_after_seconds",
                                      "When each certificate the hub relies on expires (Unix time)", labels=labels)
        days = GaugeMetricFamily("hub_certificate_days_left", "Whole days until each certificate expires",
                                 labels=labels)
        for s in statuses:
            not_after.add_metric([s.party, s.role, s.serial], s.not_after.timestamp())
            days.add_metric([s.party, s.role, s.serial], s.days_left)
        yield not_after
        yield days
        yield GaugeMetricFamily("hub_certificates_expiring",
                                f"Certificates expiring within {self.hub.settings.certificate_warning_days} days",
                                value=sum(s.status == EXPIRING for s in statuses))
        yield GaugeMetricFamily("hub_certificates_expired", "Certificates expired or not yet valid",
                                value=sum(s.status in (EXPIRED, NOT_YET_VALID) for s in statuses))
