"""Benchmarks of target-rjmetrics, run on purpose from the repository root (``python -m benchmarks.run``)."""
