"""The thin consular CRUD layer: posts, citizens and their registrations, cases with status machines.

It talks to the hub only through the hub's public interface: it submits signed canonical messages
(`Hub.receive`, through the "registry" door) and receives correlated answers as deliveries to the
REGISTRY party.
"""
