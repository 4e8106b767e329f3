"""The suite's own machinery: what scripts/test.sh relies on to run the tests in parallel."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.smoke


def test_tests_sharing_a_build_or_a_meltano_project_stay_on_one_worker(request: pytest.FixtureRequest) -> None:
    """Under --dist loadgroup a test marked xdist_group carries its group in its id, which sends it to one worker.

    pytest 9.2 silently dropped that suffix (pytest-dev/pytest-xdist#1386): the Meltano and packaging
    tests then made their shared project and artifacts on every worker at once.
    """
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not an xdist worker of --dist loadgroup")
    grouped = [item for item in request.session.items if item.get_closest_marker("xdist_group")]
    if not grouped:
        pytest.skip("no grouped test selected")
    assert [item.nodeid for item in grouped if "@" not in item.nodeid] == []
