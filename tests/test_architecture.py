"""The rules of the house that code review would otherwise have to remember (docs/architecture.md):
the import contracts in .importlinter, one exception tree, and the engine naming no client."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from hub.settings import PROJECT_ROOT

PACKAGES = ("hub", "connectors", "registry", "sandbox", "bench", "demo")


def python_files(*packages: str):
    for package in packages:
        yield from sorted((PROJECT_ROOT / package).rglob("*.py"))


def test_the_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--config", str(PROJECT_ROOT / ".importlinter")], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_every_exception_class_is_in_the_error_module():
    """One tree (hub/errors.py): a reader finds every failure the engine can raise in one place."""
    exception_bases = {"Exception", "BaseException", "HubError", "InputError", "DeliveryError", "TryLater",
                       "TransientDeliveryError", "PermanentDeliveryError", "NotFound", "AuthError", "ConfigError"}
    elsewhere = []
    for path in python_files("hub", "connectors", "registry"):
        if path == PROJECT_ROOT / "hub" / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                    (base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")) in exception_bases
                    or (isinstance(base, ast.Name) and base.id.endswith("Error")) for base in node.bases):
                elsewhere.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {node.name}")
    assert not elsewhere, "exception classes outside hub/errors.py: " + ", ".join(elsewhere)


def test_only_the_composition_root_names_the_registry():
    naming = [f"{path.relative_to(PROJECT_ROOT)}:{number}"
              for path in python_files("hub")
              for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
              if line.startswith(("from registry", "import registry"))]
    assert {place.split(":")[0] for place in naming} <= {"hub/service.py"}, naming
