"""The hub's benchmark: `python -m bench` (or `make bench`). See README.md, "Benchmark"."""
