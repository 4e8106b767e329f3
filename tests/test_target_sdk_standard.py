"""The Meltano SDK's standard target tests, run against the local Import API.

Each standard test also checks what landed: every table the test's input names must
hold exactly the last version of each key (computed here from the same input file).
"""

from __future__ import annotations

import json
import typing as t
from importlib import resources

import pytest
from singer_sdk.testing import get_target_test_class
from singer_sdk.testing.suites import target_tests

from target_rjmetrics.local_api import DEMO_API_KEY, DEMO_CLIENT_ID, LocalImportAPI
from target_rjmetrics.points import RECORD_HASH_FIELD
from target_rjmetrics.target import TargetRJMetrics
from tests.support.checks import upserts
from tests.support.expected import last_versions, sanitise
from tests.support.messages import read_messages

pytestmark = pytest.mark.smoke

# The SDK expects a STATE after each drain of its own batches; this target writes a STATE
# only once every record before it has landed, skipping states superseded meanwhile. Its
# own tests of the STATE rules are in test_target_state.py.
EXCLUDED = {"TargetMultipleStateMessages"}
# Inputs the target must refuse: nothing of them may land.
FAILING = {"invalid_schema", "record_before_schema", "record_missing_key_property", "record_missing_required_property"}

_suite = type(target_tests)(  # the standard suite, minus the exclusion above
    kind=target_tests.kind,
    tests=[test for test in target_tests.tests if test.__name__ not in EXCLUDED],
)
StandardTargetTests = get_target_test_class(
    TargetRJMetrics,
    config={"client_id": DEMO_CLIENT_ID, "api_key": DEMO_API_KEY, "max_retry_seconds": 5},
    custom_suites=[_suite],
    include_target_tests=False,
)


def expected_rows(singer_text: str) -> dict[str, list[dict[str, t.Any]]]:
    """Last version of each key per table, from Singer input, computed without the target."""
    versions = last_versions(read_messages(singer_text))
    return {sanitise(stream): list(rows.values()) for stream, rows in versions.items()}


def assert_landed(server: LocalImportAPI, singer_text: str) -> None:
    """Every expected row landed with its values, and nothing else did."""
    for table, expected in expected_rows(singer_text).items():
        rows = server.rows(DEMO_CLIENT_ID, table)
        assert len(rows) == len(expected), f"table {table}: {len(rows)} rows landed, expected {len(expected)}"
        landed = [{k: v for k, v in row.items() if k != RECORD_HASH_FIELD} for row in rows]
        for want in expected:
            normalised = {
                k: json.dumps(v, separators=(",", ":"), ensure_ascii=False) if isinstance(v, dict | list) else v
                for k, v in want.items()
            }
            matches = [
                row
                for row in landed
                if all(row.get(k) == v or _same_json(row.get(k), v) for k, v in normalised.items())
            ]
            assert matches, f"table {table}: no landed row equals {want}"


def _same_json(landed: t.Any, expected: t.Any) -> bool:
    if not isinstance(landed, str) or not isinstance(expected, str):
        return False
    try:
        return bool(json.loads(landed) == json.loads(expected))
    except ValueError:
        return False


class TestTargetRJMetricsStandard(StandardTargetTests):  # type: ignore[misc,valid-type]
    """The SDK's standard target tests, plus a check of the landed rows after each."""

    @pytest.fixture(autouse=True)
    def _point_at_server_and_check_landed(
        self,
        local_api: LocalImportAPI,
        request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch,
    ) -> t.Iterator[None]:
        # The SDK's runner reads TARGET_RJMETRICS_* (parse_env_config): point it at this test's server.
        monkeypatch.setenv("TARGET_RJMETRICS_API_URL", local_api.base_url)
        resource = local_api
        yield
        name = request.node.name.removeprefix("test_target_")
        path = resources.files("singer_sdk.testing") / "target_test_streams" / f"{name}.singer"
        if not path.is_file():
            return  # a test without an input file (cli_prints)
        text = path.read_text(encoding="utf-8")
        if name in FAILING:
            # The SDK's test asserts the run raised; here: nothing of the input landed.
            assert not upserts(resource), f"{name}: refused input must send nothing"
            assert resource.tables(DEMO_CLIENT_ID) == {}
        else:
            assert_landed(resource, text)
