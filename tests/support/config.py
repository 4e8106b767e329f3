"""The one builder of target settings: the local server's exported demo credentials, a URL, presets."""

from __future__ import annotations

import json
import typing as t

from target_rjmetrics.local_api import DEMO_API_KEY, DEMO_CLIENT_ID

if t.TYPE_CHECKING:
    from pathlib import Path

#: The tests' preset: failures surface in seconds, not minutes. The local server applies nothing
#: late unless a test asks for ghosts; a short ``late_apply_seconds`` keeps the protection
#: exercised without stalling tests whose faults leave fates unknown.
TEST_SETTINGS: t.Mapping[str, t.Any] = {"max_retry_seconds": 20, "late_apply_seconds": 2, "request_timeout": 10}
#: The reliability scenarios' preset: several small requests in flight, frequent STATE.
SCENARIO_SETTINGS: t.Mapping[str, t.Any] = {
    "max_concurrent_requests": 4,
    "max_points_per_request": 40,
    "state_flush_seconds": 2,
    "max_retry_seconds": 60,
    "late_apply_seconds": 2,  # the local server applies nothing late in these scenarios
    "request_timeout": 15,
}
#: The benchmarks' preset: the target's own defaults.
DEFAULTS: t.Mapping[str, t.Any] = {}


class HasBaseUrl(t.Protocol):
    """A local server (in this process or not): anything with a ``/v2`` base URL."""

    @property
    def base_url(self) -> str:
        """The API base URL, ending in ``/v2``."""
        ...


def target_config(
    api: HasBaseUrl | str, preset: t.Mapping[str, t.Any] = TEST_SETTINGS, **overrides: t.Any
) -> dict[str, t.Any]:
    """Settings pointing the target at ``api`` (a server or a base URL) with the demo credentials.

    Args:
        api: A local server, or the base URL of an API.
        preset: Settings added to the credentials and URL (:data:`TEST_SETTINGS` by default).
        **overrides: Settings that win over the preset; ``None`` removes one.

    Returns:
        The settings.
    """
    config: dict[str, t.Any] = {
        "client_id": DEMO_CLIENT_ID,
        "api_key": DEMO_API_KEY,
        "api_url": api if isinstance(api, str) else api.base_url,
        **preset,
        **overrides,
    }
    return {k: v for k, v in config.items() if v is not None}


def write_config(config: t.Mapping[str, t.Any], path: Path) -> Path:
    """Write settings as a JSON config file and return its path."""
    path.write_text(json.dumps(config))
    return path
