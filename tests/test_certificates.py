"""Certificates the hub relies on: reported when they expire within the warning days (/readyz, /metrics,
`hub certificates`), and configuration mistakes about them stopping the hub with the file and key."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

import sigtools as st
from conftest import write_config
from support import hub_command
from hub.trust.certificates import TrustStore
from hub.config import load_config
from hub.errors import ConfigError
from hub.settings import Settings


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    directory = tmp_path_factory.mktemp("odd-certs")
    ca = st.make_ca("test CA")
    return {"expiring": st.write_pem(directory, "expiring", *st.issue(ca, "NARSA", days_from=-300, days_to=20)),
            "expired": st.write_pem(directory, "expired", *st.issue(ca, "DGSN", days_from=-300, days_to=-3)),
            "directory": directory}


def pin(config_dir: Path, party: str, certificates: list, **more) -> None:
    path = config_dir / "partners" / f"{party}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["certificates"] = [str(c) for c in certificates]
    data.update(more)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


@pytest.fixture
def database_url(tmp_path):
    """SQLite only: certificate reporting reads no table."""
    return f"sqlite:///{tmp_path / 'hub.sqlite'}"


@pytest.fixture
def settings(settings, odd, pki_dir):
    """NARSA pins its certificate and one expiring in 20 days (a rotation); DGSN only an expired one."""
    pin(settings.config_dir, "NARSA", [pki_dir / "NARSA.crt", odd["expiring"]])
    pin(settings.config_dir, "DGSN", [odd["expired"]])
    return settings


# -- /readyz and /metrics --------------------------------------------------------------------------------

def test_readyz_lists_expiring_and_expired_and_is_not_ready_when_a_party_has_no_valid_one(running_hub, odd):
    response = httpx.get(f"{running_hub.url}/readyz", timeout=10)
    check = response.json()["checks"]["certificates"]
    assert response.status_code == 503 and check["ok"] is False
    assert check["detail"].startswith("no valid certificate for DGSN")
    flagged = {(c["party"], c["status"]) for c in check["certificates"]}
    assert flagged == {("NARSA", "EXPIRING"), ("DGSN", "EXPIRED")}
    narsa = next(c for c in check["certificates"] if c["party"] == "NARSA")
    assert narsa["days_left"] in (19, 20) and narsa["path"] == str(odd["expiring"])


def test_readyz_certificates_ok_when_only_expiring(running_hub, pki_dir):
    running_hub.hub.trust.pinned["DGSN"] = TrustStore(load_config(running_hub.hub.settings)).pinned["NARSA"][:1]
    check = httpx.get(f"{running_hub.url}/readyz", timeout=10).json()["checks"]["certificates"]
    assert check["ok"] is True and check["detail"].startswith("1 expiring within 30 days")


def test_metrics_report_expiry_of_every_certificate(running_hub):
    text = httpx.get(f"{running_hub.url}/metrics", timeout=10).text
    lines = text.splitlines()
    assert "hub_certificates_expiring 1.0" in lines and "hub_certificates_expired 1.0" in lines
    narsa = [line for line in lines if line.startswith('hub_certificate_not_after_seconds{party="NARSA"')]
    assert len(narsa) == 2
    assert any(line.startswith('hub_certificate_days_left{party="hub",role="signing"') for line in lines)


# -- hub certificates ---------------------------------------------------------------------------------------

def run_cli(tmp_path: Path, pki_dir: Path, config_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"HUB_VAR_DIR": str(tmp_path / "var"), "HUB_PKI_DIR": str(pki_dir), "HUB_CONFIG_DIR": str(config_dir),
           "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.sqlite'}", "COLUMNS": "200"}
    return hub_command("certificates", *args, env=env, timeout=60)


def test_cli_exits_0_when_every_certificate_is_valid(tmp_path, pki_dir):
    result = run_cli(tmp_path, pki_dir, write_config(tmp_path / "config"))
    assert result.returncode == 0, result.stderr
    for party in ("hub", "REGISTRY", "NARSA", "CDG"):
        assert f"\n│ {party} " in result.stdout or f"│ {party}" in result.stdout
    assert "EXPIRING" not in result.stdout.split("Certificates", 1)[1].split("\n", 1)[1]


def test_cli_exits_1_and_names_the_expiring_and_expired(tmp_path, pki_dir, odd):
    config_dir = write_config(tmp_path / "config")
    pin(config_dir, "NARSA", [pki_dir / "NARSA.crt", odd["expiring"]])
    pin(config_dir, "DGSN", [odd["expired"]])
    result = run_cli(tmp_path, pki_dir, config_dir)
    assert result.returncode == 1, result.stderr
    assert "EXPIRING" in result.stdout and "EXPIRED" in result.stdout and "2 certificate(s) need attention" in result.stdout
    rows = json.loads(run_cli(tmp_path, pki_dir, config_dir, "--json").stdout)
    statuses = {(r["party"], r["role"], r["status"]) for r in rows}
    assert ("NARSA", "pinned", "EXPIRING") in statuses and ("DGSN", "pinned", "EXPIRED") in statuses
    assert ("hub", "signing", "VALID") in statuses


def test_cli_configuration_error_exits_2_naming_file_and_key(tmp_path, pki_dir):
    config_dir = write_config(tmp_path / "config")
    pin(config_dir, "SANTE", [pki_dir / "SANTE.crt", tmp_path / "missing.crt"])
    result = run_cli(tmp_path, pki_dir, config_dir)
    assert result.returncode == 2
    assert "SANTE.yaml: certificates[1]: certificate file" in result.stderr and "missing.crt not found" in result.stderr


# -- configuration of certificates and CAs ---------------------------------------------------------------------

def trust_store(config_dir: Path, pki_dir: Path) -> TrustStore:
    settings = Settings.from_env(config_dir=config_dir, pki_dir=pki_dir, environment={})
    return TrustStore(load_config(settings), config_dir=config_dir)


@pytest.mark.parametrize("change, key, reason", [
    (lambda d, p: pin(d, "NARSA", [p / "NARSA.crt", d / "nowhere.crt"]), "certificates[1]", "not found"),
    (lambda d, p: pin(d, "NARSA", [d / "partners" / "NARSA.yaml"]), "certificates[0]", "cannot read the certificate"),
    (lambda d, p: pin(d, "NARSA", [p / "NARSA.crt"], ca=str(d / "no-ca.crt")), "ca", "not found"),
    (lambda d, p: pin(d, "NARSA", []), "certificates", "neither pinned `certificates` nor a `ca`"),
], ids=["missing-certificate", "not-a-certificate", "missing-ca", "nothing-to-verify-with"])
def test_certificate_configuration_errors_name_file_and_key(tmp_path, pki_dir, change, key, reason):
    config_dir = write_config(tmp_path / "config")
    change(config_dir, pki_dir)
    with pytest.raises(ConfigError) as info:
        trust_store(config_dir, pki_dir)
    assert info.value.file.endswith("partners/NARSA.yaml") and info.value.key == key
    assert reason in info.value.reason


def test_ca_only_party_loads(tmp_path, pki_dir):
    config_dir = write_config(tmp_path / "config")
    pin(config_dir, "NARSA", [], ca=str(pki_dir / "ca.crt"))
    store = trust_store(config_dir, pki_dir)
    assert store.knows("NARSA") and store.cas["NARSA"].path == pki_dir / "ca.crt"


def test_unknown_signing_algorithm_stops_the_hub(tmp_path, pki_dir, monkeypatch):
    from hub.engine import Hub
    monkeypatch.setenv("HUB_SIGNING_ALGORITHM", "rsa-sha1")
    with pytest.raises(ConfigError) as info:
        Hub(Settings.from_env(var_dir=tmp_path / "var", pki_dir=pki_dir, database_url=f"sqlite:///{tmp_path}/h.db",
                              config_dir=write_config(tmp_path / "config")))
    assert info.value.key == "HUB_SIGNING_ALGORITHM" and "'rsa-sha1'" in info.value.reason
