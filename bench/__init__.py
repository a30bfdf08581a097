"""Benchmarks: run with `python -m bench` (see README). Not part of the tests."""
