"""The poll's answer tells every file it met (hub/intake/polling.py, connectors/sftp): a streamed batch's
acknowledgement taken in as a file is counted, and said to be streamed; a file the connector handled itself
(too large: set aside; read by a stream taker) is counted too, its refusal recorded like any door's. Against
the CDG sandbox's real SFTP server, through the running hub's API."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import free_port, wait_for
from hub.errors import SignatureInvalid
from registry.services import life_certificates as lc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/ is not an installed package
from bench import cdg as bench_cdg  # noqa: E402


@pytest.fixture
def cdg(running_hub, start_sandbox):
    control = free_port()
    return start_sandbox("cdg", running_hub.url, http_port=control,
                         extra_args=["--control-port", str(control), "--stream-above-bytes", "1024"])


def test_a_streamed_acknowledgement_and_the_files_set_aside_are_counted(running_hub, cdg, client, monkeypatch):
    hub = running_hub.hub
    connector = hub.connectors["CDG"]
    monkeypatch.setattr(lc, "MAX_ITEMS", 5)  # a small batch takes the streamed path
    bench_cdg.fill(hub, 12, 0)
    batch = client.post("/api/v1/life-certificates/batches").json()["batch"]
    outbox = cdg.data_dir / "CDG" / "sftp" / "outbox"
    acknowledgement = outbox / f"AR_{batch}.xml"
    wait_for(acknowledgement.exists, 60, what="CDG's acknowledgement")
    size = acknowledgement.stat().st_size
    # over the hub's stream threshold (a file message), under its cap; and a file over the cap beside it
    connector.config = connector.config.model_copy(update={"stream_above_bytes": 1024, "max_file_bytes": size + 1024})
    (outbox / "ZZ_HUGE.xml").write_bytes(b"<x>" + b"y" * (size + 4096) + b"</x>")

    answer = client.post("/api/v1/partners/CDG/poll")
    assert answer.json() == {"partner": "CDG", "accepted": 1, "refused": 1, "seen": 0, "failed": 0, "streamed": 1}
    # accepted is stored; the registry applies it when the hub has delivered it (a moment later)
    wait_for(lambda: client.get(f"/api/v1/life-certificates/batches/{batch}").json()["status"] == "ACKNOWLEDGED",
             30, what="the batch acknowledged")
    failed = cdg.data_dir / "CDG" / "sftp" / "failed"
    assert "ZZ_HUGE.xml" in (failed / "ZZ_HUGE.xml.reason.txt").read_text()
    [refusal] = client.get("/api/v1/partner/refusals", params={"partner": "CDG"}).json()["items"]
    assert (refusal["status"], refusal["door"]) == (413, "sftp") and "limit" in refusal["reason"], refusal
    assert client.post("/api/v1/partners/CDG/poll").json() == {"partner": "CDG", "accepted": 0, "refused": 0,
                                                               "seen": 0, "failed": 0, "streamed": 0}

    # files a stream taker reads as they come off the server are counted as well, its refusal recorded
    def taker(name: str, _size: int):
        def read(remote):
            while remote.read(64 * 1024):
                pass
            if name.startswith("BAD"):
                raise SignatureInvalid("not signed by CDG")
        return read
    (outbox / "BAD_1.xml").write_bytes(b"<a/>" * 1000)
    (outbox / "TAKEN_1.xml").write_bytes(b"<b/>" * 1000)
    connector.stream_taker = taker
    try:
        answer = client.post("/api/v1/partners/CDG/poll")
    finally:
        connector.stream_taker = None
    assert answer.json() == {"partner": "CDG", "accepted": 1, "refused": 1, "seen": 0, "failed": 0, "streamed": 2}
    refusals = client.get("/api/v1/partner/refusals", params={"partner": "CDG"}).json()["items"]
    assert [r["status"] for r in refusals] == [400, 413] and "not signed by CDG" in refusals[0]["reason"]
