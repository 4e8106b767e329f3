"""Singer target for the RJMetrics Import API."""
