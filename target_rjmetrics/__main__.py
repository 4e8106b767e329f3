"""Run the target with ``python -m target_rjmetrics``."""

from __future__ import annotations

from target_rjmetrics.target import TargetRJMetrics

TargetRJMetrics.cli()
