"""Sandbox partners: simulators of the administrations the hub exchanges with.

Each sandbox is a separate process on loopback that speaks the partner's own format and signs and
verifies like the real partner, so the hub's demo and tests exercise real sockets, real XML and
real signatures. Start one with `python -m sandbox <partner> ...` (see `python -m sandbox --help`).

    narsa   NARSA, the national road-safety agency: authenticates Moroccan driving licences
            (REST/XML, asynchronous answer by callback to the hub). See sandbox/narsa.py.
"""
