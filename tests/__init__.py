"""The test suite of target-rjmetrics (a package, so modules import each other by name: ``tests.support``)."""
