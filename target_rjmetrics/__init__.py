"""Singer target for the RJMetrics Import API."""

__version__ = "0.1.0"
