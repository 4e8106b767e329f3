"""Local RJMetrics Import API server: durable on SQLite, with sandbox mode and fault injection."""
