"""`hub demo`: the six sandbox partners and the hub on loopback, every consular service driven through.

run.py starts everything and reports; context.py is what scenarios get; scenarios/ holds one module
per service, each opening its cases through the hub's HTTP API like a consular application would.
"""
from demo.run import run_demo

__all__ = ["run_demo"]
