"""Benchmarks: `python -m bench.run --help`. Measures; never asserts."""
