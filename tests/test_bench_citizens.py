"""The citizen search benchmark (bench/citizens.py) at a small size on SQLite: it loads the generated citizens,
searches them through a real `hub serve` with every kind of search, checks each answer (the citizen searched for
is found, an agent sees only their post) and reports p50/p95 per kind. Its figure at five million citizens on
PostgreSQL is in docs/performance.md."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from registry.names import tokens

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))  # bench/ is not an installed package
from bench import citizen_names  # noqa: E402


def test_the_generated_citizens_are_reproducible_and_their_identifiers_unique():
    posts = [("FR-PARIS", "FR", "Paris"), ("ES-MADRID", "ES", "Madrid")]
    made = [citizen_names.citizen(i, posts) for i in range(3000)]
    assert made[1234] == citizen_names.citizen(1234, posts)
    assert len({c["cnie"] for c in made}) == len(made)
    assert len({c["passport_number"] for c in made if c["passport_number"]}) == sum(1 for c in made if c["passport_number"])
    family = {}
    for c in made:
        family[c["family_name_latin"]] = family.get(c["family_name_latin"], 0) + 1
    assert max(family.values()) > 10 * min(family.values())  # skewed: common names cost what they cost
    assert all(tokens(c["family_name_arabic"]) for c in made)


def test_the_benchmark_searches_every_kind_and_reports_its_percentiles(tmp_path):
    output = tmp_path / "bench-citizens.json"
    run = subprocess.run([sys.executable, "-m", "bench", "citizens", "--citizens", "2000", "--rounds", "3",
                          "--work", str(tmp_path / "work"), "--output", str(output)],
                         cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads(output.read_text())
    assert report["citizens"] == 2000 and report["database"] == "sqlite"
    assert {"arabic name, other alef forms", "Latin name reversed, capitals", "CNIE", "birth date + family name",
            "agent: name at their post", "prefix + given name"} <= set(report["kinds"])
    for figures in report["kinds"].values():
        assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["max_ms"]
        assert figures["found_median"] >= 1
    assert "p95 ms" in run.stdout
