"""The seconds settings as Meltano and `--config ENV` pass them: decimal text such as "0.5".

Meltano 4 hands a `kind: string` setting set through an environment variable to the target as
text, and the SDK's `--config ENV` does the same for a JSON Schema number; the target must take
that text as the number it spells, and refuse anything that is not a plain decimal.
"""

from __future__ import annotations

import time
import typing as t

import pytest
from singer_sdk.exceptions import ConfigValidationError

from target_rjmetrics.local_api import DEMO_API_KEY, DEMO_CLIENT_ID, Faults, LocalImportAPI
from target_rjmetrics.target import TargetRJMetrics
from tests.support.checks import landed_by_id
from tests.support.config import target_config
from tests.support.messages import USERS_SCHEMA, lines, state, users
from tests.support.targets import TargetProcess, clean_env, run_cli, run_target

if t.TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.smoke

SECONDS = ("request_timeout", "max_retry_seconds", "state_flush_seconds")


def _env_config(server: LocalImportAPI, **settings: str) -> dict[str, str]:
    env = clean_env(
        TARGET_RJMETRICS_CLIENT_ID=str(DEMO_CLIENT_ID),
        TARGET_RJMETRICS_API_KEY=DEMO_API_KEY,
        TARGET_RJMETRICS_API_URL=server.base_url,
    )
    env.update({f"TARGET_RJMETRICS_{name.upper()}": value for name, value in settings.items()})
    return env


def test_fractional_seconds_from_the_environment_load_with_config_env(local_api: LocalImportAPI) -> None:
    env = _env_config(local_api, request_timeout="30.5", max_retry_seconds="60.5", state_flush_seconds="0.5")

    run = run_target(config="ENV", stdin=lines([USERS_SCHEMA, *users(3), state({"bookmark": 3})]), env=env)

    assert run.exit_code == 0, run.stderr
    assert sorted(landed_by_id(local_api, "users")) == [1, 2, 3]
    assert run.states == [{"bookmark": 3}]


def test_state_flush_seconds_as_text_writes_state_while_the_tap_is_quiet(
    local_api: LocalImportAPI, tmp_path: Path
) -> None:
    # With the default (30 s) the STATE would not come within the 10 s waited here.
    live = TargetProcess(target_config(local_api, state_flush_seconds="0.5"), tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not local_api.request_log() and time.monotonic() < deadline:
            time.sleep(0.05)  # the target has authenticated: time the STATE, not the start-up
        live.send([USERS_SCHEMA, *users(5), state({"users": 5})])
        assert live.wait_for_state(lambda v: v == {"users": 5}, timeout=10) is not None, live.stderr
        assert live.running(), "the target should still be waiting for input"
        assert live.close_input() == 0
    finally:
        live.kill()
    assert len(local_api.rows(DEMO_CLIENT_ID, "users")) == 5


def test_decimal_text_means_the_number_it_spells(make_api: t.Callable[..., LocalImportAPI]) -> None:
    # Every answer takes 3 s: a 0.5 s timeout must time out and retry, and a 1.5 s retry budget
    # must run out. Were the text ignored (defaults 60 s and 300 s) the load would succeed.
    server = make_api(faults=Faults(latency_ms=3000))
    config = {
        "client_id": DEMO_CLIENT_ID,
        "api_key": DEMO_API_KEY,
        "api_url": server.base_url,
        "authenticate_on_start": False,
        "request_timeout": "0.5",
        "max_retry_seconds": "1.5",
    }

    run = run_cli(config, [USERS_SCHEMA, *users(2)], timeout=60)

    assert run.exit_code == 1
    assert "still failing after retrying for up to 1.5s" in run.stderr
    assert "max_retry_seconds" in run.stderr


@pytest.mark.parametrize("value", ["30", "0.5", "1.5", "007.250", 0.5, 30])
def test_seconds_settings_take_numbers_and_decimal_text(value: object) -> None:
    for name in SECONDS:
        config = {"client_id": DEMO_CLIENT_ID, "api_key": DEMO_API_KEY, name: value}
        assert TargetRJMetrics(config=config, validate_config=True).config[name] == value


@pytest.mark.parametrize(
    ("name", "value"),
    [
        *(
            (name, bad)
            for name in SECONDS
            for bad in ["abc", "-1", "1e3", "nan", "inf", "", " 5", "5s", "0x10", -1, True]
        ),
        *((name, zero) for name in ("request_timeout", "state_flush_seconds") for zero in ["0", "0.0", "00", 0]),
    ],
)
def test_seconds_settings_refuse_what_is_not_a_plain_decimal(name: str, value: object) -> None:
    config = {"client_id": DEMO_CLIENT_ID, "api_key": DEMO_API_KEY, name: value}

    with pytest.raises(ConfigValidationError) as caught:
        TargetRJMetrics(config=config, validate_config=True)

    assert any(error.startswith(f"`{name}` must be") for error in caught.value.errors), caught.value.errors


def test_max_retry_seconds_may_be_zero_as_text() -> None:
    config = {"client_id": DEMO_CLIENT_ID, "api_key": DEMO_API_KEY, "max_retry_seconds": "0"}
    assert TargetRJMetrics(config=config, validate_config=True).config["max_retry_seconds"] == "0"
