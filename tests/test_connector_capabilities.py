"""What a connector can do is declared by the protocols it implements (connectors/base.py), and the
engine finds it from them alone: a transport it has never heard of (tests/folder_connector.py, built
by docs/howto/add-a-transport.md) is delivered to and polled like SFTP once it is in CONNECTORS."""
from __future__ import annotations

import yaml

from connectors import CONNECTORS, connector_class
from connectors.base import Connector, InboundRoutes, LocalConsumer, Poller, Sender
from hub.api.app import inbound_routers
from hub.engine import Hub
from hub.intake.door import Arrival
from hub.intake.polling import poll_partner, polling_partners
from hub.delivery.workers import deliver_due_messages
from hub.settings import Settings
from registry.samples import SAMPLES

CAPABILITIES = (Connector, Sender, Poller, InboundRoutes, LocalConsumer)


def capabilities(connector) -> set[str]:
    return {protocol.__name__ for protocol in CAPABILITIES if isinstance(connector, protocol)}


def test_each_transport_declares_what_it_can_do(pki_dir, tmp_path):
    settings = Settings.from_env(pki_dir=pki_dir)
    connections = {
        "rest": {"endpoint": "http://127.0.0.1:9/x"},
        "soap": {"wsdl": "partners/dgsn/services-consulaires.wsdl"},
        "sftp": {"host": "127.0.0.1", "username": "hub", "private_key": str(tmp_path / "k"),
                 "host_key": str(tmp_path / "k.pub"), "poll_interval_seconds": 7},
        "local": {},
    }
    assert set(connections) == set(CONNECTORS)
    built = {transport: connector_class(transport)("X", connector_class(transport).Config.model_validate(connection),
                                                   timeout_seconds=1, settings=settings)
             for transport, connection in connections.items()}
    assert {t: capabilities(c) for t, c in built.items()} == {
        "rest": {"Connector", "Sender"},
        "soap": {"Connector", "Sender", "InboundRoutes"},
        "sftp": {"Connector", "Sender", "Poller"},
        "local": {"Connector", "Sender", "LocalConsumer"},
    }
    assert built["sftp"].poll_interval_seconds == 7
    # the SOAP parties share one inbound router: the API mounts it once
    assert built["soap"].inbound_router() is connector_class("soap")("Y", built["soap"].config, timeout_seconds=1,
                                                                   settings=settings).inbound_router()


def test_a_transport_the_engine_never_heard_of_is_delivered_to_and_polled(settings, monkeypatch, tmp_path):
    monkeypatch.setitem(CONNECTORS, "folder", "folder_connector:FolderConnector")
    folder = tmp_path / "narsa-share"
    party_file = settings.config_dir / "partners" / "NARSA.yaml"
    party = yaml.safe_load(party_file.read_text(encoding="utf-8"))
    party.update(transport="folder", connection={"path": str(folder), "poll_interval_seconds": 2})
    party_file.write_text(yaml.safe_dump(party, allow_unicode=True, sort_keys=False), encoding="utf-8")

    hub = Hub(settings)
    try:
        hub.migrate()
        assert capabilities(hub.connectors["NARSA"]) == {"Connector", "Sender", "Poller"}
        assert set(polling_partners(hub)) == {"CDG", "NARSA"} and polling_partners(hub)["NARSA"] == 2.0
        assert len(inbound_routers(hub)) == 1   # SOAP's, for DGSN and JUSTICE together

        receipt = hub.receive(Arrival("rest", SAMPLES["LicenceAuthenticationRequest"](settings)))
        assert deliver_due_messages(hub, owner="test") == 1
        [written] = (folder / "inbox").iterdir()
        assert written.name == f"{receipt.message_id}.xml" and b"<" in written.read_bytes()

        (folder / "outbox" / "answer.xml").write_bytes(b"not xml")
        assert poll_partner(hub, "NARSA") == {"accepted": 0, "refused": 1, "seen": 0, "failed": 0,
                                                  "streamed": 0}
        assert (folder / "failed" / "answer.xml").exists()
        assert (folder / "failed" / "answer.xml.reason.txt").read_text()

        # a defect met while taking one file in is that file's: the next one is taken all the same
        receive = hub.receive
        monkeypatch.setattr(hub, "receive", lambda arrival: (_ for _ in ()).throw(RuntimeError("boom"))
                            if arrival.data == b"defect" else receive(arrival))
        (folder / "outbox" / "a-defect.xml").write_bytes(b"defect")
        (folder / "outbox" / "b-answer.xml").write_bytes(b"not xml either")
        assert poll_partner(hub, "NARSA") == {"accepted": 0, "refused": 1, "seen": 0, "failed": 1,
                                                  "streamed": 0}
        assert sorted(p.name for p in (folder / "outbox").iterdir()) == ["a-defect.xml"]
        assert not hub.last_polls["NARSA"].ok and "a-defect.xml: boom" in hub.last_polls["NARSA"].detail
    finally:
        hub.close()
