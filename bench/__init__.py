"""Benchmarks of matching and of the e-mail fan-out; see bench/README.md."""
