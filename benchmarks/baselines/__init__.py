"""The alternatives a user has, run by ``benchmarks.run`` as contestants beside the target."""
