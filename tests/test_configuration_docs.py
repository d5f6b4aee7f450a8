"""docs/configuration.md is generated from the models (`hub config docs`) and must match them."""
from __future__ import annotations

from hub.cli.config import REFERENCE, render
from hub.cli.main import main


def test_checked_in_reference_is_up_to_date():
    assert REFERENCE.read_text(encoding="utf-8") == render(), \
        "docs/configuration.md is out of date: run `hub config docs` and commit it"


def test_reference_names_every_setting_key_and_connection():
    text = render()
    for needle in ("`HUB_LEASE_SECONDS`", "`HUB_TLS_CERT`", "`retry.max_attempts`", "`may_send`", "`when`",
                   "`inbound`", "### `transport: sftp`", "`connection.host_key`", "`connection.wsdl`",
                   "`HUB_NARSA_URL`"):
        assert needle in text, needle


def test_check_exits_1_naming_the_stale_file(tmp_path, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text("old\n", encoding="utf-8")
    assert main(["config", "docs", "--check", "--output", str(stale)]) == 1
    assert f"{stale} is out of date" in " ".join(capsys.readouterr().out.split())
    assert main(["config", "docs", "--output", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == render()
    assert main(["config", "docs", "--check", "--output", str(stale)]) == 0
