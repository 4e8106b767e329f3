"""Local RJMetrics Import API server: durable on SQLite, with sandbox mode and fault injection."""

from __future__ import annotations

from target_rjmetrics.local_api.faults import Faults
from target_rjmetrics.local_api.requestlog import RequestLogEntry
from target_rjmetrics.local_api.server import DEMO_API_KEY, DEMO_CLIENT_ID, LocalImportAPI

__all__ = ["DEMO_API_KEY", "DEMO_CLIENT_ID", "Faults", "LocalImportAPI", "RequestLogEntry"]
