"""The consular services, one module each (listed in registry/catalogue.py); registry/services/licence.py shows the shape.

A service module defines:

    SERVICE       the case kind (cases.service), e.g. "LICENCE_AUTHENTICATION"
    PREFIX        case reference prefix: LIC -> LIC-2026-000001
    MACHINE       status -> the statuses it may move to; "SUBMITTED" is where a case starts, a status
                  with no successor is final; FAILED is added to every non-final status
    router        its HTTP endpoints (open a case: POST /api/v1/cases/<slug>; the post's actions:
                  POST /api/v1/cases/{reference}/<action>)
    HANDLERS      canonical message type delivered to the REGISTRY -> fn(registry, session, header, document)
                  -> str: the delivery's header and business document as `canonical.read` verified them,
                  before any transaction; the change is made in the hub's transaction that records the
                  delivery (hub/apps.py `ChangingConsumer`), so a handler never commits, and asks for what
                  must follow the commit with `service.after_commit`. A handler that only moves a case
                  reads it with `service.case_for_answer` and writes it back with `service.save_answer`:
                  within a batch of answers its rows are sent at the batch's end (hub/store/deferred.py)
and, when it has them:
    build_request(registry, case) -> bytes   the signed request sent when a case opens
    SENT_STATUS   the status once the hub accepted that request
    SCHEDULED     [(job id, fn(registry), when)] run by the hub's scheduler; `when` is an interval in
                  seconds, or a dict of cron fields ({"hour": 2, "timezone": "Africa/Casablanca"})
    on_dead_letter(registry, session, correlation_id, message_id, reason) -> bool
                  for the registry's own messages (Sender REGISTRY) whose correlation id is not a
                  case reference (a batch, a certificate): find what `message_id` belongs to
"""
