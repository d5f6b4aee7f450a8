"""XML as data: hardened parsing of untrusted bytes (safe), XSD schemas (schemas), XSLT mappings (mapping),
the characters text may hold (text).

Pure functions over bytes and trees. May use: hub.errors, hub.settings. Never the database, the network or
another engine package."""
