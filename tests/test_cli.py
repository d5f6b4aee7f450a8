"""The `hub` command line: sample, messages list|show|resend, configuration errors.

Every run gets a hermetic environment: the caller's HUB_* variables are dropped and HUB_VAR_DIR,
HUB_PKI_DIR (the session's development PKI) and HUB_DATABASE_URL (an SQLite file under tmp_path)
are set; the messages commands also get HUB_CONFIG_DIR. Database content is made by an in-process
hub with the same settings. Runs go through the command's `main()` in this process (support.hub_command),
the sample's as the installed `hub` script in a real subprocess; output is captured, so rich renders at its
default width of 80 columns, as it does in logs and CI.
"""
from __future__ import annotations

import datetime as _datetime
import json
import os
import subprocess
import types
from pathlib import Path

import pytest
import yaml
from lxml import etree
from sqlalchemy import select

from conftest import free_port, write_config
from hub.trust import pki
from hub.errors import SignatureInvalid
from hub.store.models import Delivery, DeliveryState, Event, Message, MessageState
from hub.settings import Settings
from hub.trust.signing import verify
from hub.intake.door import Arrival
from support import HUB_COMMAND, hub_command, licence_request

ENV_NS = "{urn:ma:gov:consular:hub:envelope:1}"
REQUEST = "LicenceAuthenticationRequest"
MESSAGE_ID = "REGISTRY-LIC-2026-000001"  # what support.licence_request builds by default


def run_hub(*args: str, env: dict, text: bool = True, process: bool = False) -> subprocess.CompletedProcess:
    if text:
        return hub_command(*args, env=env, process=process, cwd=Path(env["HUB_VAR_DIR"]).parent, timeout=60)
    base = {k: v for k, v in os.environ.items() if not k.startswith("HUB_") and k not in ("COLUMNS", "LINES")}
    return subprocess.run([*HUB_COMMAND, *args], capture_output=True, timeout=60, env={**base, **env},
                          cwd=Path(env["HUB_VAR_DIR"]).parent)


def unwrapped(output: str) -> str:
    """rich folds long lines at 80 columns; join them back to search for a path or an id."""
    return "".join(output.splitlines())


@pytest.fixture
def cli_env(tmp_path, pki_dir) -> dict:
    return {"HUB_VAR_DIR": str(tmp_path / "var"), "HUB_PKI_DIR": str(pki_dir),
            "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.sqlite'}"}


def hub_settings(tmp_path: Path, pki_dir: Path, config_dir: Path) -> Settings:
    """The settings the CLI builds from cli_env + HUB_CONFIG_DIR, for an in-process hub."""
    return Settings.from_env(var_dir=tmp_path / "var", pki_dir=pki_dir,
                             database_url=f"sqlite:///{tmp_path / 'hub.sqlite'}",
                             config_dir=config_dir)


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # bound then released: nothing listens there


# -- hub sample --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample_run(tmp_path_factory, pki_dir) -> subprocess.CompletedProcess:
    tmp = tmp_path_factory.mktemp("sample")
    env = {"HUB_VAR_DIR": str(tmp / "var"), "HUB_PKI_DIR": str(pki_dir),
           "HUB_DATABASE_URL": f"sqlite:///{tmp / 'hub.sqlite'}"}
    return run_hub("sample", REQUEST, env=env, process=True)  # the installed script, as a user runs it


def test_sample_exits_zero_and_prints_a_canonical_envelope(sample_run):
    assert sample_run.returncode == 0, sample_run.stderr
    envelope = etree.fromstring(sample_run.stdout.encode("utf-8"))
    assert envelope.tag == f"{ENV_NS}Message"
    assert envelope.findtext(f"{ENV_NS}Header/{ENV_NS}Type") == REQUEST
    assert envelope.findtext(f"{ENV_NS}Header/{ENV_NS}Sender") == "REGISTRY"
    assert envelope.findtext(f"{ENV_NS}Header/{ENV_NS}Recipient") == "NARSA"
    assert envelope.findtext(f"{ENV_NS}Header/{ENV_NS}MessageId").startswith("REGISTRY-LIC-")


def test_sample_is_accepted_by_a_running_hub(sample_run, running_hub, client):
    assert sample_run.returncode == 0, sample_run.stderr
    data = sample_run.stdout.strip().encode("utf-8")
    message_id = etree.fromstring(data).findtext(f"{ENV_NS}Header/{ENV_NS}MessageId")
    response = client.post("/api/v1/messages", content=data, headers={"Content-Type": "application/xml"})
    assert response.status_code == 202, response.text
    assert response.headers["x-message-id"] == message_id
    assert response.headers["x-duplicate"] == "false"
    detail = client.get(f"/api/v1/messages/{message_id}").json()
    assert [e["event"] for e in detail["timeline"]][:5] == ["RECEIVED", "VALIDATED", "VERIFIED", "ACCEPTED", "QUEUED"]


def test_sample_business_document_is_signed_by_registry(sample_run, pki_dir):
    assert sample_run.returncode == 0, sample_run.stderr
    envelope = etree.fromstring(sample_run.stdout.encode("utf-8"))
    document = envelope.find(f"{ENV_NS}Body")[0]
    assert document.tag == "{urn:ma:gov:consular:licence:1}" + REQUEST
    signed = verify(document, pki.load_certificate(str(pki_dir / "REGISTRY.crt")), signer_name="REGISTRY")
    assert signed.tag == document.tag
    with pytest.raises(SignatureInvalid):
        verify(document, pki.load_certificate(str(pki_dir / "NARSA.crt")), signer_name="NARSA")


def test_sample_of_unknown_type_fails_naming_available_types(cli_env):
    result = run_hub("sample", "NoSuchType", env=cli_env)
    assert result.returncode != 0
    output = unwrapped(result.stdout + result.stderr)
    assert "NoSuchType" in output
    assert REQUEST in output
    assert "<?xml" not in result.stdout
    assert "Traceback" not in output


def test_sample_writes_utf8_bytes_whatever_the_output_encoding(cli_env):
    result = run_hub("sample", REQUEST, env={**cli_env, "PYTHONIOENCODING": "cp1252"}, text=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-500:]
    envelope = etree.fromstring(result.stdout.strip())
    assert "يوسف" in etree.tostring(envelope, encoding="unicode")


def test_samples_made_on_different_days_have_different_message_ids(tmp_path, pki_dir, monkeypatch):
    from hub.engine import Hub
    from registry import samples

    def made_at(when: _datetime.datetime) -> bytes:
        class Frozen(_datetime.datetime):
            @classmethod
            def now(cls, tz=None):
                return cls.fromtimestamp(when.timestamp(), tz)
        monkeypatch.setattr(samples, "dt", types.SimpleNamespace(
            datetime=Frozen, date=_datetime.date, timezone=_datetime.timezone, timedelta=_datetime.timedelta))
        return samples.SAMPLES[REQUEST](Settings.from_env(var_dir=tmp_path / "var", pki_dir=pki_dir))

    utc = _datetime.timezone.utc
    monday = made_at(_datetime.datetime(2026, 11, 23, 10, 0, 0, tzinfo=utc))
    tuesday = made_at(_datetime.datetime(2026, 11, 24, 10, 0, 0, tzinfo=utc))
    ids = [etree.fromstring(x).findtext(f"{ENV_NS}Header/{ENV_NS}MessageId") for x in (monday, tuesday)]
    hub = Hub(hub_settings(tmp_path, pki_dir, write_config(tmp_path / "config", narsa_url=closed_port_url())))
    try:
        hub.migrate()
        hub.receive(Arrival("registry", data=monday))
        hub.receive(Arrival("registry", data=tuesday))  # DuplicateConflict (409) while the ids collide
    finally:
        hub.close()
    assert ids[0] != ids[1]


# -- hub messages list | show | resend -------------------------------------------------------------

@pytest.fixture(scope="module")
def accepted_message(tmp_path_factory, pki_dir) -> dict:
    """A database holding one ACCEPTED message (nothing delivered); returns the CLI environment. The
    tests that use it only read, so the module makes it once."""
    from hub.engine import Hub
    tmp_path = tmp_path_factory.mktemp("accepted")
    cli_env = {"HUB_VAR_DIR": str(tmp_path / "var"), "HUB_PKI_DIR": str(pki_dir),
               "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.sqlite'}"}
    config_dir = write_config(tmp_path / "config", narsa_url=closed_port_url())
    hub = Hub(hub_settings(tmp_path, pki_dir, config_dir))
    try:
        hub.migrate()
        receipt = hub.receive(Arrival("registry", data=licence_request(pki_dir)))
    finally:
        hub.close()
    assert receipt.message_id == MESSAGE_ID
    return {**cli_env, "HUB_CONFIG_DIR": str(config_dir)}


@pytest.fixture
def dead_message(tmp_path, pki_dir, cli_env):
    """A database holding one message whose only delivery (to a closed port, max_attempts 1) is DEAD.

    Yields (cli environment, in-process hub with the same settings).
    """
    from hub.delivery.workers import deliver_due_messages
    from hub.engine import Hub
    config_dir = write_config(tmp_path / "config", narsa_url=closed_port_url(),
                              retry={"max_attempts": 1, "base_delay_seconds": 0.1, "max_delay_seconds": 0.1})
    hub = Hub(hub_settings(tmp_path, pki_dir, config_dir))
    hub.migrate()
    hub.receive(Arrival("registry", data=licence_request(pki_dir)))
    assert deliver_due_messages(hub, owner="test") == 1
    with hub.sessions() as session:
        message = session.scalars(select(Message).where(Message.message_id == MESSAGE_ID)).one()
        assert message.state == MessageState.DEAD
        assert [d.state for d in message.deliveries] == [DeliveryState.DEAD]
    hub.engine.dispose()  # no pooled SQLite connection open while the CLI writes
    yield {**cli_env, "HUB_CONFIG_DIR": str(config_dir)}, hub
    hub.close()


def test_messages_list_shows_the_message_in_a_wide_terminal(accepted_message):
    result = run_hub("messages", "list", env={**accepted_message, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert MESSAGE_ID in result.stdout
    row = next(line for line in result.stdout.splitlines() if MESSAGE_ID in line)
    assert "ACCEPTED" in row and "LIC-2026-000001" in row and "NARSA" in row


def test_messages_list_filters_by_state(accepted_message):
    result = run_hub("messages", "list", "--state", "dead", env={**accepted_message, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert MESSAGE_ID not in result.stdout


def test_messages_list_shows_the_full_message_id_at_default_width(accepted_message):
    result = run_hub("messages", "list", env=accepted_message)
    assert result.returncode == 0, result.stderr
    assert MESSAGE_ID in result.stdout


def test_messages_show_prints_json_with_state_and_timeline(accepted_message):
    result = run_hub("messages", "show", MESSAGE_ID, env=accepted_message)
    assert result.returncode == 0, result.stderr
    detail = json.loads(result.stdout)
    assert detail["id"] == MESSAGE_ID
    assert detail["state"] == "ACCEPTED"
    assert detail["type"] == REQUEST
    assert [e["event"] for e in detail["timeline"]] == ["RECEIVED", "VALIDATED", "VERIFIED", "ACCEPTED", "QUEUED"]
    assert [(d["partner"], d["state"], d["attempts"]) for d in detail["deliveries"]] == [("NARSA", "PENDING", 0)]


def test_messages_show_unknown_id_exits_1(accepted_message):
    result = run_hub("messages", "show", "REGISTRY-NO-SUCH", env=accepted_message)
    assert result.returncode == 1
    output = unwrapped(result.stdout + result.stderr)
    assert "no message" in output and "REGISTRY-NO-SUCH" in output
    assert "Traceback" not in output


def test_messages_show_echoes_the_id_verbatim(accepted_message):
    result = run_hub("messages", "show", "[bold]X", env=accepted_message)
    assert result.returncode == 1
    assert "'[bold]X'" in unwrapped(result.stdout + result.stderr)


def test_messages_resend_puts_the_dead_delivery_back_in_the_outbox(dead_message):
    env, hub = dead_message
    result = run_hub("messages", "resend", MESSAGE_ID, env=env)
    assert result.returncode == 0, result.stderr
    output = " ".join(result.stdout.split())
    assert f"1 dead delivery of {MESSAGE_ID} back in the outbox" in output
    assert "not told of the resend" not in output  # the registry heard of it, as from the console

    with hub.sessions() as session:
        message = session.scalars(select(Message).where(Message.message_id == MESSAGE_ID)).one()
        assert message.state == MessageState.ACCEPTED
        deliveries = session.scalars(select(Delivery).where(Delivery.message_pk == message.id)).all()
        assert [(d.state, d.attempts) for d in deliveries] == [(DeliveryState.PENDING, 0)]
        events = session.scalars(select(Event).where(Event.message_pk == message.id).order_by(Event.id)).all()
        kinds = [e.kind for e in events]
        assert kinds[-2:] == ["DEAD_LETTERED", "RESENT"]
        assert "cli" in events[-1].detail and "NARSA" in events[-1].detail
        assert events[-1].delivery_id == deliveries[0].id


def test_messages_resend_of_nothing_dead_and_of_unknown_id(dead_message):
    env, _ = dead_message
    assert run_hub("messages", "resend", MESSAGE_ID, env=env).returncode == 0
    again = run_hub("messages", "resend", MESSAGE_ID, env=env)
    assert again.returncode == 0, again.stderr
    said = " ".join(again.stdout.split())
    assert "0 dead deliveries" in said and "nothing was dead" in said
    unknown = run_hub("messages", "resend", "REGISTRY-NO-SUCH", env=env)
    assert unknown.returncode == 1
    assert "no message" in unwrapped(unknown.stdout + unknown.stderr)


# -- configuration errors ----------------------------------------------------------------------------

@pytest.fixture
def broken_config(tmp_path) -> Path:
    """A copy of config/ under a deep directory (its path is over 80 characters) with an unknown key."""
    deep = tmp_path / ("operator-managed-configuration-" * 2).rstrip("-") / "consular-exchange-hub"
    config_dir = write_config(deep / "config", narsa_url=closed_port_url())
    routes = config_dir / "routes" / "licence.yaml"
    data = yaml.safe_load(routes.read_text(encoding="utf-8"))
    data["rutes"] = []
    routes.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert len(str(routes)) > 80
    return config_dir


def test_configuration_error_exits_2_naming_file_and_key(cli_env, broken_config):
    result = run_hub("messages", "list", env={**cli_env, "HUB_CONFIG_DIR": str(broken_config)})
    assert result.returncode == 2
    output = unwrapped(result.stdout + result.stderr)
    assert "configuration error" in output
    assert str(broken_config / "routes" / "licence.yaml") in output
    assert "rutes" in output and "unknown key" in output
    assert "Traceback" not in result.stdout + result.stderr


def test_configuration_error_keeps_the_file_path_on_one_line(cli_env, broken_config):
    result = run_hub("messages", "list", env={**cli_env, "HUB_CONFIG_DIR": str(broken_config)})
    assert result.returncode == 2
    assert f"{broken_config / 'routes' / 'licence.yaml'}: rutes: unknown key" in result.stdout + result.stderr
