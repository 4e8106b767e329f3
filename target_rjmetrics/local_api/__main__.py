"""Run the local Import API CLI: ``python -m target_rjmetrics.local_api``."""

from __future__ import annotations

from target_rjmetrics.local_api.cli import main

raise SystemExit(main())
