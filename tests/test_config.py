"""config/partners/*.yaml and config/routes/*.yaml: what loads, and the errors a user sees when they are wrong.

Pure and fast: every test copies the shipped config/ into a temporary directory, edits one file and
calls load_config. A wrong configuration must stop the hub with a ConfigError naming the file and
the key (str: "<file>: <key>: <reason>").
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Callable

import pytest
import yaml

from hub.config import HubConfig, load_config
from hub.errors import ConfigError
from hub.settings import PROJECT_ROOT, Settings

PARTNERS = "partners/NARSA.yaml"
ROUTES = "routes/licence.yaml"


@pytest.fixture
def config_dir(tmp_path) -> Path:
    directory = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config", directory)
    return directory


def edit(config_dir: Path, name: str, change: Callable[[dict], None]) -> Path:
    """Load config_dir/name, apply `change` to the parsed YAML in place, write it back."""
    path = config_dir / name
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def load(config_dir: Path, pki_dir: Path | None = None, **overrides) -> HubConfig:
    settings = Settings.from_env(config_dir=config_dir, pki_dir=pki_dir or config_dir.parent / "pki", **overrides)
    return load_config(settings)


def config_error(config_dir: Path, **overrides) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(config_dir, **overrides)
    return info.value


def narsa(data: dict) -> dict:
    return data  # a party file holds that one party


# -- the shipped configuration ---------------------------------------------------------------------

def test_shipped_config_loads(config_dir, pki_dir, monkeypatch):
    monkeypatch.delenv("HUB_NARSA_URL", raising=False)
    config = load(config_dir, pki_dir, environment={})

    assert {"REGISTRY", "NARSA"} <= set(config.parties)
    registry, narsa_party = config.parties["REGISTRY"], config.parties["NARSA"]
    assert registry.transport == "local"
    assert registry.certificates == [pki_dir / "REGISTRY.crt"]
    assert narsa_party.transport == "rest"
    assert narsa_party.connection.endpoint == "http://127.0.0.1:8711/narsa/v1"
    assert narsa_party.certificates == [pki_dir / "NARSA.crt"]
    assert narsa_party.retry.max_attempts == 8

    request = config.route_for("LicenceAuthenticationRequest")
    assert request is not None
    assert request.from_ == ["REGISTRY"]
    assert [t.partner for t in request.to] == ["NARSA"]
    assert request.to[0].mapping == "narsa/licence-request.to-narsa.xsl"
    assert request.to[0].schema_ == "partners/narsa/authentification-permis.xsd"
    assert request.to[0].operation == "demandes-authentification"

    result = config.route_for("LicenceAuthenticationResult")
    assert result is not None
    assert result.from_ == ["NARSA"]
    assert [t.partner for t in result.to] == ["REGISTRY"]
    assert result.to[0].mapping is None

    assert config.route_for("NoSuchType") is None
    inbound = next(i for i in config.inbound if i.partner == "NARSA")
    assert inbound.partner == "NARSA"
    assert inbound.root == "{urn:ma:narsa:authentification-permis:1}ResultatAuthentification"
    assert config.inbound_for("NARSA", inbound.root) is inbound
    assert config.inbound_for("REGISTRY", inbound.root) is None


# -- unknown keys ----------------------------------------------------------------------------------

def test_unknown_key_in_party_is_refused_naming_file_and_key(config_dir):
    edit(config_dir, PARTNERS, lambda d: narsa(d).update(endpont="http://typo.example"))
    err = config_error(config_dir)
    assert err.file == str(config_dir / PARTNERS)
    assert err.key == "endpont"
    assert err.reason.startswith("unknown key")
    assert str(err) == f"{config_dir / PARTNERS}: endpont: unknown key"


@pytest.mark.parametrize("change, key, reason", [
    (lambda d: narsa(d).update(endpont="http://typo.example"), "endpont", "unknown key"),
    (lambda d: narsa(d)["retry"].update(max_attemps=3), "retry.max_attemps", "unknown key"),
    (lambda d: narsa(d).update(timeout_seconds=-1), "timeout_seconds", "greater than 0"),
    (lambda d: narsa(d).update(max_in_flight=0), "max_in_flight", "greater than or equal to 1"),
    (lambda d: narsa(d)["connection"].update(endpont="http://x"), "connection.endpont", "unknown key"),
    (lambda d: narsa(d)["connection"].update(endpoint="ftp://x"), "connection.endpoint", "should match"),
], ids=["typo", "nested-typo", "bad-value", "bad-in-flight", "connection-typo", "connection-bad-value"])
def test_party_error_names_the_file_and_key(config_dir, change, key, reason):
    edit(config_dir, PARTNERS, change)
    err = config_error(config_dir)
    assert err.file == str(config_dir / PARTNERS)
    assert err.key == key
    assert reason in err.reason
    assert f"{PARTNERS}: {key}: " in str(err)


@pytest.mark.parametrize("name", [ROUTES, PARTNERS])
def test_unknown_top_level_key_is_refused(config_dir, name):
    edit(config_dir, name, lambda d: d.update(rutes=[]))
    err = config_error(config_dir)
    assert err.file == str(config_dir / name)
    assert err.key == "rutes"
    assert "unknown key" in err.reason
    assert f"{name}: rutes: unknown key" in str(err)


def test_unknown_key_in_route_target_uses_the_same_key_notation(config_dir):
    edit(config_dir, ROUTES, lambda d: d["routes"][0]["to"][0].update(mapin="x.xsl"))
    err = config_error(config_dir)
    assert err.file == str(config_dir / ROUTES)
    assert err.key == "routes[0].to[0].mapin"
    assert err.reason == "unknown key"


def test_unknown_transport_suggests_the_closest(config_dir):
    edit(config_dir, PARTNERS, lambda d: d.update(transport="rset"))
    err = config_error(config_dir)
    assert err.file == str(config_dir / PARTNERS)
    assert err.key == "transport"
    assert "'rset'" in err.reason and "did you mean 'rest'" in err.reason


@pytest.mark.parametrize("key", ["wsdl", "inbound_wsdl"])
def test_soap_party_naming_a_missing_wsdl(config_dir, key):
    edit(config_dir, "partners/DGSN.yaml", lambda d: d["connection"].update({key: "partners/dgsn/gone.wsdl"}))
    err = config_error(config_dir)
    assert err.file == str(config_dir / "partners" / "DGSN.yaml")
    assert err.key == f"connection.{key}"
    assert "no file schemas/partners/dgsn/gone.wsdl" in err.reason


def test_party_file_name_must_be_a_party_code(config_dir):
    (config_dir / "partners" / "NARSA.yaml").rename(config_dir / "partners" / "narsa-agency.yaml")
    err = config_error(config_dir)
    assert err.file == str(config_dir / "partners" / "narsa-agency.yaml")
    assert "party code" in err.reason


@pytest.mark.parametrize("when", ["env:Body/[[", "nope:Body"], ids=["syntax", "undeclared-prefix"])
def test_route_condition_must_be_valid_xpath(config_dir, when):
    edit(config_dir, ROUTES, lambda d: d["routes"][0]["to"][0].update(when=when))
    err = config_error(config_dir)
    assert err.file == str(config_dir / ROUTES)
    assert err.key == "routes[0].to[0].when"
    assert "XPath" in err.reason


# -- consistency between the files -----------------------------------------------------------------

def test_route_to_unknown_party_lists_known_parties(config_dir):
    edit(config_dir, ROUTES, lambda d: d["routes"][0]["to"][0].update(partner="NARSSA"))
    err = config_error(config_dir)
    assert err.file == str(config_dir / ROUTES)
    assert err.key == "routes[0].to[0].partner"
    assert "'NARSSA'" in err.reason
    assert "known: " in err.reason and "NARSA" in err.reason and "REGISTRY" in err.reason
    assert f"{ROUTES}: routes[0].to[0].partner: unknown party" in str(err)


def test_route_from_unknown_party(config_dir):
    edit(config_dir, ROUTES, lambda d: d["routes"][1].update({"from": ["NARSA", "DGNS"]}))
    err = config_error(config_dir)
    assert err.file == str(config_dir / ROUTES)
    assert err.key == "routes[1].from"
    assert "'DGNS'" in err.reason and "NARSA" in err.reason


def test_rest_party_without_endpoint(config_dir):
    edit(config_dir, PARTNERS, lambda d: narsa(d)["connection"].pop("endpoint"))
    err = config_error(config_dir)
    assert err.file == str(config_dir / PARTNERS)
    assert err.key == "connection.endpoint"
    assert "required" in err.reason
    assert f"{PARTNERS}: connection.endpoint: " in str(err)


@pytest.mark.parametrize("key, value", [("mapping", "narsa/no-such.xsl"), ("schema", "partners/narsa/no-such.xsd")])
def test_missing_mapping_or_schema_file(config_dir, key, value):
    edit(config_dir, ROUTES, lambda d: d["routes"][0]["to"][0].update({key: value}))
    err = config_error(config_dir)
    assert err.file == str(config_dir / ROUTES)
    assert err.key == f"routes[0].to[0].{key}"
    assert value in err.reason
    assert f"{ROUTES}: routes[0].to[0].{key}: " in str(err)


def test_missing_inbound_mapping_file(config_dir):
    edit(config_dir, ROUTES, lambda d: d["inbound"][0].update(mapping="narsa/gone.xsl"))
    err = config_error(config_dir)
    assert err.file == str(config_dir / ROUTES)
    assert err.key == "inbound[0].mapping"
    assert "narsa/gone.xsl" in err.reason


def test_same_type_routed_twice(config_dir):
    (config_dir / "routes" / "zz-licence-copy.yaml").write_text((config_dir / ROUTES).read_text(encoding="utf-8"))
    err = config_error(config_dir)
    assert err.file == str(config_dir / "routes" / "zz-licence-copy.yaml")
    assert err.key == "routes[0].type"
    assert "LicenceAuthenticationRequest" in err.reason and "already routed in licence.yaml" in err.reason


# -- ${VAR:-default} interpolation ----------------------------------------------------------------

def test_environment_overrides_the_default(config_dir, monkeypatch):
    monkeypatch.delenv("HUB_NARSA_URL", raising=False)
    config = load(config_dir, environment={"HUB_NARSA_URL": "http://127.0.0.1:9999"})
    assert config.parties["NARSA"].connection.endpoint == "http://127.0.0.1:9999/narsa/v1"


def test_process_environment_is_read_too(config_dir, monkeypatch):
    monkeypatch.setenv("HUB_NARSA_URL", "http://127.0.0.1:9998")
    config = load(config_dir)
    assert config.parties["NARSA"].connection.endpoint.startswith("http://127.0.0.1:9998/")


@pytest.mark.parametrize("environment", [{}, {"HUB_NARSA_URL": ""}], ids=["unset", "empty"])
def test_default_is_used_when_unset_or_empty(config_dir, monkeypatch, environment):
    monkeypatch.delenv("HUB_NARSA_URL", raising=False)
    config = load(config_dir, environment=environment)
    assert config.parties["NARSA"].connection.endpoint.startswith("http://127.0.0.1:8711/")


def test_unset_variable_without_default_names_the_key(config_dir, monkeypatch):
    monkeypatch.delenv("HUB_TEST_UNSET_VARIABLE", raising=False)
    edit(config_dir, PARTNERS, lambda d: narsa(d)["connection"].update(endpoint="${HUB_TEST_UNSET_VARIABLE}/narsa"))
    err = config_error(config_dir, environment={})
    assert err.file == str(config_dir / PARTNERS)
    assert err.key == "connection.endpoint"
    assert "HUB_TEST_UNSET_VARIABLE" in err.reason and "no default" in err.reason


def test_interpolation_inside_a_list_names_the_index(config_dir, monkeypatch):
    monkeypatch.delenv("HUB_TEST_UNSET_VARIABLE", raising=False)
    edit(config_dir, ROUTES, lambda d: d["routes"][0].update({"from": ["${HUB_TEST_UNSET_VARIABLE}"]}))
    err = config_error(config_dir, environment={})
    assert err.file == str(config_dir / ROUTES)
    assert err.key == "routes[0].from[0]"


# -- files that cannot be read ---------------------------------------------------------------------

@pytest.mark.parametrize("name", [PARTNERS, ROUTES])
def test_invalid_yaml_names_the_file(config_dir, name):
    (config_dir / name).write_text("name: [unclosed\n  transport: x\n", encoding="utf-8")
    err = config_error(config_dir)
    assert err.file == str(config_dir / name)
    assert "not valid YAML" in err.reason
    assert str(err).startswith(f"{config_dir / name}: ")


def test_missing_folder_names_the_folder(config_dir):
    shutil.rmtree(config_dir / "routes")
    err = config_error(config_dir)
    assert err.file == str(config_dir / "routes")
    assert "folder not found" in err.reason


def test_top_level_must_be_a_mapping(config_dir):
    (config_dir / PARTNERS).write_text("- NARSA\n- REGISTRY\n", encoding="utf-8")
    err = config_error(config_dir)
    assert err.file == str(config_dir / PARTNERS)
    assert "mapping" in err.reason


# -- access lists (may_send / may_receive) agree with the routes ----------------------------------

def test_shipped_access_lists_match_the_routes(config_dir, pki_dir):
    config = load(config_dir, pki_dir)
    for route in config.routes:
        assert {code for code, p in config.parties.items() if route.type in p.may_send} == set(route.from_)
        assert {code for code, p in config.parties.items() if route.type in p.may_receive} == \
            {t.partner for t in route.to}
    assert config.parties["SANTE"].may_receive == ["RepatriationRequest"]


def test_route_from_a_party_whose_may_send_lacks_the_type(config_dir):
    edit(config_dir, PARTNERS, lambda d: d.update(may_send=[]))
    err = config_error(config_dir)
    assert err.file == str(config_dir / ROUTES)
    assert err.key == "routes[1].from[0]"
    assert "NARSA may not send LicenceAuthenticationResult" in err.reason and "NARSA.yaml" in err.reason


def test_route_to_a_party_whose_may_receive_lacks_the_type(config_dir):
    edit(config_dir, PARTNERS, lambda d: d.update(may_receive=[]))
    err = config_error(config_dir)
    assert err.file == str(config_dir / ROUTES)
    assert err.key == "routes[0].to[0].partner"
    assert "NARSA may not receive LicenceAuthenticationRequest" in err.reason


@pytest.mark.parametrize("key", ["may_send", "may_receive"])
def test_access_list_naming_an_unrouted_type_suggests_the_closest(config_dir, key):
    edit(config_dir, PARTNERS, lambda d: d[key].append("LicenceAuthentificationResult"))
    err = config_error(config_dir)
    assert err.file == str(config_dir / PARTNERS)
    assert err.key == f"{key}[1]"
    assert "no route has message type 'LicenceAuthentificationResult'" in err.reason
    assert "did you mean 'LicenceAuthenticationResult'" in err.reason


def test_may_send_a_type_whose_route_does_not_name_the_party(config_dir):
    edit(config_dir, "partners/SANTE.yaml", lambda d: d["may_send"].append("LicenceAuthenticationResult"))
    err = config_error(config_dir)
    assert err.file == str(config_dir / "partners" / "SANTE.yaml")
    assert err.key == "may_send[1]"
    assert "licence.yaml routes[1].from does not name SANTE" in err.reason


def test_may_receive_a_type_the_party_is_no_recipient_of(config_dir):
    edit(config_dir, "partners/SANTE.yaml", lambda d: d["may_receive"].append("LicenceAuthenticationRequest"))
    err = config_error(config_dir)
    assert err.file == str(config_dir / "partners" / "SANTE.yaml")
    assert err.key == "may_receive[1]"
    assert "no recipient of licence.yaml routes[0] is SANTE" in err.reason


def test_inbound_mapping_making_a_type_its_partner_may_not_send(config_dir):
    # SANTE's inbound route borrowing NARSA's mapping would turn SANTE documents into licence results
    edit(config_dir, "routes/repatriation.yaml",
         lambda d: d["inbound"][0].update(mapping="narsa/licence-result.from-narsa.xsl"))
    err = config_error(config_dir)
    assert err.file == str(config_dir / "routes" / "repatriation.yaml")
    assert err.key == "inbound[0].mapping"
    assert "makes a LicenceAuthenticationResult, which SANTE may not send" in err.reason


def test_an_explicit_environment_is_the_whole_environment(config_dir, monkeypatch):
    monkeypatch.setenv("HUB_NARSA_URL", "http://127.0.0.1:9998")
    config = load(config_dir, environment={})
    assert config.parties["NARSA"].connection.endpoint.startswith("http://127.0.0.1:8711/")


# -- settings: one spec (hub/settings.py) ----------------------------------------------------------

def test_settings_defaults_come_from_the_spec():
    settings = Settings.from_env(environment={})
    for name, field in Settings.model_fields.items():
        if name != "environment" and field.default is not None:
            assert getattr(settings, name) == field.default, name
    assert settings.var_dir == PROJECT_ROOT / "var" and settings.config_dir == PROJECT_ROOT / "config"
    assert settings.pki_dir == PROJECT_ROOT / "var" / "pki"
    assert settings.database_url == f"sqlite:///{PROJECT_ROOT / 'var' / 'hub.sqlite'}"
    assert settings.tls_certificate is None and settings.tls_client_certificate == "none"
    assert settings.environment == {}


def test_every_setting_has_an_environment_variable_and_a_description():
    spec = Settings.spec()
    assert len({variable for _, variable, _, _ in spec}) == len(spec)
    for name, variable, default, description in spec:
        assert variable.startswith("HUB_") and default and len(description) > 20, name
    assert {"HUB_DATABASE_URL", "HUB_TLS_CERT", "HUB_TLS_CLIENT_CERT", "HUB_PROCESSES",
            "HUB_REPATRIATION_DEADLINE_SECONDS"} <= {variable for _, variable, _, _ in spec}


@pytest.mark.parametrize("variable, value, name, expected", [
    ("HUB_LEASE_SECONDS", "7", "lease_seconds", 7),
    ("HUB_LEADER_RETRY_SECONDS", "0.25", "leader_retry_seconds", 0.25),
    ("HUB_DATABASE_URL", "postgresql://hub@db/hub", "database_url", "postgresql://hub@db/hub"),
    ("HUB_TLS_CERT", "/etc/hub/tls.crt", "tls_certificate", Path("/etc/hub/tls.crt")),
    ("HUB_TLS_CLIENT_CERT", "Required", "tls_client_certificate", "required"),
    ("HUB_SIGNING_ALGORITHM", "ecdsa-sha256", "signing_algorithm", "ecdsa-sha256"),
    ("HUB_REPATRIATION_DEADLINE_SECONDS", "3", "repatriation_deadline_seconds", 3),
    ("HUB_LEASE_SECONDS", "", "lease_seconds", 60),
], ids=["int", "float", "text", "renamed-variable", "choice-any-case", "algorithm", "registry", "empty-is-unset"])
def test_each_setting_is_read_from_its_variable(variable, value, name, expected):
    assert getattr(Settings.from_env(environment={variable: value}), name) == expected


def test_folders_follow_the_folder_they_live_in_and_overrides_win(tmp_path):
    settings = Settings.from_env(environment={"HUB_VAR_DIR": str(tmp_path / "v"), "HUB_LEASE_SECONDS": "9"})
    assert settings.pki_dir == tmp_path / "v" / "pki"
    assert settings.database_url == f"sqlite:///{tmp_path / 'v' / 'hub.sqlite'}"
    settings = Settings.from_env(environment={"HUB_LEASE_SECONDS": "9", "HUB_PKI_DIR": str(tmp_path / "keys")},
                                 var_dir=tmp_path / "w", lease_seconds=5)
    assert settings.lease_seconds == 5 and settings.var_dir == tmp_path / "w"
    assert settings.pki_dir == tmp_path / "keys"  # named in the environment: not moved with var_dir
    home = Settings.from_env(environment={"HUB_HOME": str(tmp_path)})
    assert (home.config_dir, home.schemas_dir, home.var_dir) == (tmp_path / "config", tmp_path / "schemas",
                                                                 tmp_path / "var")


@pytest.mark.parametrize("environment, key, reason", [
    ({"HUB_LEASE_SECONDS": "a minute"}, "HUB_LEASE_SECONDS", "'a minute': Input should be a valid integer"),
    ({"HUB_MAX_OUTBOX_DEPTH": "-1"}, "HUB_MAX_OUTBOX_DEPTH", "greater than or equal to 0"),
    ({"HUB_SIGNING_ALGORITHM": "rsa-sha1"}, "HUB_SIGNING_ALGORITHM", "'rsa-sha1'"),
    ({"HUB_TLS_CLIENT_CERT": "sometimes"}, "HUB_TLS_CLIENT_CERT", "'none', 'optional' or 'required'"),
    ({"HUB_LEASE_SECOND": "5"}, "HUB_LEASE_SECOND", "is not a setting; did you mean HUB_LEASE_SECONDS?"),
    ({"HUB_TLS_CERTIFICATE": "x"}, "HUB_TLS_CERTIFICATE", "did you mean HUB_TLS_CERT?"),
], ids=["not-a-number", "out-of-range", "unknown-algorithm", "unknown-choice", "near-miss-name", "field-name"])
def test_a_bad_setting_names_the_variable(environment, key, reason):
    with pytest.raises(ConfigError) as info:
        Settings.from_env(environment=environment)
    assert (info.value.file, info.value.key) == ("environment", key)
    assert reason in info.value.reason
    assert str(info.value).startswith(f"environment: {key}: ")


def test_a_bad_override_names_the_variable_too():
    with pytest.raises(ConfigError) as info:
        Settings.from_env(environment={}, lease_seconds=0)
    assert (info.value.file, info.value.key) == ("settings", "HUB_LEASE_SECONDS")
    with pytest.raises(ConfigError, match="HUB_BREAKER_FAILURES"):
        Settings.from_env(environment={}).replace(breaker_failures=-1)


def test_other_hub_variables_are_left_to_the_configuration_files():
    settings = Settings.from_env(environment={"HUB_NARSA_URL": "http://x", "HUB_CDG_SFTP_PORT": "22",
                                              "HUB_PARTNER_TOKEN": "t", "HUB_FAULT_SCALE": "1"})
    assert settings.environment["HUB_NARSA_URL"] == "http://x"


def test_the_database_password_is_not_shown():
    settings = Settings.from_env(environment={"HUB_DATABASE_URL": "postgresql://hub:s3cret@db/hub"})
    assert settings.database_url == "postgresql://hub:s3cret@db/hub"
    assert "s3cret" not in repr(settings) and "db/hub" in repr(settings)


def test_only_the_settings_read_the_environment():
    readers = [path.relative_to(PROJECT_ROOT).as_posix()
               for folder in ("hub", "registry", "connectors") for path in (PROJECT_ROOT / folder).rglob("*.py")
               if re.search(r"os\.environ|getenv\(", path.read_text(encoding="utf-8"))]
    assert readers == ["hub/settings.py"]
