"""Benchmarks (`make bench` = `python -m bench`): Imperium against its peers, same run."""
