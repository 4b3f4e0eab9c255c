"""Benchmarks for sift_graph: `python -m benchmarks` (see BENCHMARKS.md)."""
