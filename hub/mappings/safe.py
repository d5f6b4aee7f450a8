"""Compiling and running a stylesheet someone submitted (the rules and limits: hub/xml/stylesheets.py, where
the engine's XML handling can use them without importing this package)."""
from hub.xml.stylesheets import (MAX_DEPTH, OUTPUT_LIMIT_BYTES, TIME_LIMIT_SECONDS, compile_stylesheet,  # noqa: F401
                                 transform, transform_many)

__all__ = ["compile_stylesheet", "transform", "transform_many", "TIME_LIMIT_SECONDS", "OUTPUT_LIMIT_BYTES",
           "MAX_DEPTH"]
