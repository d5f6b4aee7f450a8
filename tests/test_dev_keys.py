"""Keys are never invented: `hub serve` (any start of the engine) refuses to start when its own key, a
partner's pinned certificate or an SSH key is missing, naming the file and creating nothing; development
keys come from `hub dev init` only (hub/cli/dev.py, hub/trust/pki.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import free_port
from hub.engine import Hub
from hub.errors import ConfigError
from hub.settings import Settings
from hub.trust import pki
from support import hub_command
from test_cli import unwrapped


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} \
        if folder.exists() else {}


def run_hub(*args: str, env: dict, process: bool = False, timeout: float = 60):
    return hub_command(*args, env=env, process=process, cwd=Path(env["HUB_VAR_DIR"]).parent, timeout=timeout)


def env_for(tmp_path: Path, pki_dir: Path) -> dict:
    return {"HUB_VAR_DIR": str(tmp_path / "var"), "HUB_PKI_DIR": str(pki_dir),
            "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.sqlite'}"}


def test_serve_without_the_hubs_key_exits_naming_the_file_and_creates_nothing(tmp_path):
    keys = tmp_path / "pki"
    env = env_for(tmp_path, keys)
    # a real process, the subject here (the old hub made keys and served until the timeout)
    result = run_hub("serve", "--port", str(free_port()), env=env, process=True, timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{keys / 'hub.key'}: HUB_PKI_DIR: the hub's signing key is missing" in unwrapped(result.stderr)
    assert "hub dev init" in result.stderr and "Traceback" not in result.stderr
    assert files_under(keys) == {} and not (tmp_path / "hub.sqlite").exists()


def test_sample_without_the_registrys_key_exits_naming_it(tmp_path):
    keys = tmp_path / "pki"
    result = run_hub("sample", "LicenceAuthenticationRequest", env=env_for(tmp_path, keys))
    assert result.returncode == 2 and f"{keys / 'REGISTRY.key'}" in unwrapped(result.stderr), result.stderr
    assert files_under(keys) == {}


@pytest.mark.parametrize("missing, file, key", [
    ("DGSN.crt", "partners/DGSN.yaml", "certificates[0]"),
    ("ssh/CDG_host.pub", "partners/CDG.yaml", "connection.host_key"),
    ("ssh/hub_client", "partners/CDG.yaml", "connection.private_key"),
    ("hub.crt", "hub.crt", "HUB_PKI_DIR"),
])
def test_a_missing_key_or_pinned_certificate_stops_the_hub_naming_it(tmp_path, pki_dir, missing, file, key):
    keys = tmp_path / "pki"
    shutil.copytree(pki_dir, keys)
    (keys / missing).unlink()
    before = files_under(keys)
    with pytest.raises(ConfigError) as error:
        Hub(Settings.from_env(var_dir=tmp_path / "var", pki_dir=keys, database_url=f"sqlite:///{tmp_path}/h.db"))
    assert error.value.file.endswith(file) and error.value.key == key
    assert str(keys / missing) in str(error.value)
    assert files_under(keys) == before  # nothing made in its place


def test_dev_init_makes_what_the_demo_needs_and_keeps_what_exists(tmp_path):
    keys = tmp_path / "pki"
    env = env_for(tmp_path, keys)
    first = run_hub("dev", "init", env=env)
    assert first.returncode == 0, first.stderr
    made = files_under(keys)
    parties = ["hub", "REGISTRY", "DGSN", "JUSTICE", "CDG", "NARSA", "SANTE", "ETAT_CIVIL"]
    assert set(made) == {"ca.crt", "ca.key", *(f"{p}.{x}" for p in parties for x in ("key", "crt")),
                         "ssh/hub_client", "ssh/hub_client.pub", "ssh/CDG_host", "ssh/CDG_host.pub"}
    assert f"  created {keys / 'hub.key'}\n" in first.stdout  # whole paths, one a line
    assert "22 file(s) created" in first.stdout and "development only" in first.stdout
    assert (keys / "hub.key").stat().st_mode & 0o077 == 0  # private keys readable by their owner only
    hub = Hub(Settings.from_env(var_dir=tmp_path / "var", pki_dir=keys, database_url=f"sqlite:///{tmp_path}/h.db"))
    try:
        assert hub.signer.certificate == pki.load_certificate(str(keys / "hub.crt"))
    finally:
        hub.close()
    again = run_hub("dev", "init", env=env)
    assert again.returncode == 0 and "0 file(s) created (all were there)" in again.stdout
    assert files_under(keys) == made
