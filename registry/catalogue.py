"""The catalogue of consular services: the explicit table of service modules (registry/services/),
imported lazily, so that the registry's shared modules can find a service by its case kind without
importing every service (which import them)."""
from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType

MODULES = [
    "registry.services.licence",
    "registry.services.registration",
    "registry.services.passport",
    "registry.services.repatriation",
    "registry.services.civil_status_extract",
    "registry.services.transcription",
    "registry.services.life_certificates",
    "registry.services.judicial",
]


@cache
def modules() -> tuple[ModuleType, ...]:
    return tuple(importlib.import_module(name) for name in MODULES)


@cache
def by_service() -> dict[str, ModuleType]:
    return {module.SERVICE: module for module in modules()}


def module_for(service: str) -> ModuleType:
    return by_service()[service]
