"""Meltano 4 driving the target: this repository's meltano.yml, and the Hub definition in a new project.

Meltano runs from its own virtualenv, `.venv-meltano` (made by `scripts/setup-venv.sh --meltano`
on first use, or `$MELTANO_BIN`), and installs the target from this checkout into a virtualenv of
its own, as for a user, with its dependencies at the versions uv.lock pins (requirements/runtime.txt).
The loads go to an in-process local Import API. The tests share one Meltano project, so they run
on one xdist worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import typing as t
from pathlib import Path

import pytest
import yaml

from target_rjmetrics.local_api import DEMO_API_KEY, DEMO_CLIENT_ID, LocalImportAPI
from tests.support.checks import landed_by_id
from tests.support.locks import CHECKOUT_BUILDS, RUNTIME_CONSTRAINTS, exclusive
from tests.support.messages import USERS_SCHEMA, lines, state, users
from tests.support.targets import about

pytestmark = [pytest.mark.meltano, pytest.mark.slow, pytest.mark.xdist_group("meltano")]

ROOT = Path(__file__).resolve().parent.parent
HUB_DEFINITION = ROOT / "plugins" / "loaders" / "target-rjmetrics--rjmetrics.yml"
INPUT = lines([USERS_SCHEMA, *users(3), state({"bookmark": 3})])


@pytest.fixture(scope="session")
def meltano() -> Path:
    """The `meltano` executable (Meltano 4)."""
    if os.environ.get("MELTANO_BIN"):
        return Path(os.environ["MELTANO_BIN"])
    subprocess.run([str(ROOT / "scripts" / "setup-venv.sh"), "--meltano"], check=True, timeout=900)
    return ROOT / ".venv-meltano" / "bin" / "meltano"


def _env(**settings: str) -> dict[str, str]:
    """The environment without the developer's own Meltano or target settings, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TARGET_RJMETRICS_", "MELTANO_", "TAP_"))}
    env.update(MELTANO_SEND_ANONYMOUS_USAGE_STATS="false", NO_COLOR="1")
    env.update(settings)
    return env


def _meltano(
    meltano: Path, project: Path, *args: str, env: dict[str, str] | None = None, stdin: str = "", check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(meltano), *args],
        cwd=project,
        input=stdin,
        capture_output=True,
        text=True,
        env=env or _env(),
        timeout=600,
        check=False,
    )
    if check:
        assert proc.returncode == 0, f"meltano {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def _about() -> dict[str, t.Any]:
    return dict(json.loads(about()))


def _target_env(server: LocalImportAPI, **settings: str) -> dict[str, str]:
    return _env(
        TARGET_RJMETRICS_CLIENT_ID=str(DEMO_CLIENT_ID),
        TARGET_RJMETRICS_API_KEY=DEMO_API_KEY,
        TARGET_RJMETRICS_API_URL=server.base_url,
        **settings,
    )


def _states(stdout: str) -> list[t.Any]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def repo_project(meltano: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This repository's meltano.yml, unchanged but for the loader's pip_url pointing at the checkout."""
    project = tmp_path_factory.mktemp("repo-project")
    text = (ROOT / "meltano.yml").read_text(encoding="utf-8")
    pip_url = "pip_url: -e . -c requirements/runtime.txt\n"
    assert text.count(pip_url) == 1
    here = f"pip_url: -e {ROOT} -c {RUNTIME_CONSTRAINTS}\n"
    (project / "meltano.yml").write_text(text.replace(pip_url, here), encoding="utf-8")
    with exclusive(CHECKOUT_BUILDS):  # Meltano's install builds the checkout in place
        _meltano(meltano, project, "install", "--plugin-type", "loader", "target-rjmetrics")
    return project


def test_numbers_set_through_the_environment_reach_the_target(meltano: Path, repo_project: Path) -> None:
    # Meltano 4.4.1 failed this with "Object of type Decimal is not JSON serializable" while these
    # settings were `kind: decimal`.
    version = _meltano(
        meltano,
        repo_project,
        "invoke",
        "target-rjmetrics",
        "--version",
        env=_env(TARGET_RJMETRICS_REQUEST_TIMEOUT="30"),
    )
    assert f"target-rjmetrics v{_about()['version']}" in version.stdout + version.stderr

    dumped = _meltano(
        meltano,
        repo_project,
        "invoke",
        "--dump=config",
        "target-rjmetrics",
        env=_env(
            TARGET_RJMETRICS_REQUEST_TIMEOUT="0.5",
            TARGET_RJMETRICS_MAX_RETRY_SECONDS="1.5",
            TARGET_RJMETRICS_STATE_FLUSH_SECONDS="30",
        ),
    )
    config = json.loads(dumped.stdout)
    assert (config["request_timeout"], config["max_retry_seconds"], config["state_flush_seconds"]) == (
        "0.5",
        "1.5",
        "30",
    )


def test_meltano_invoke_loads_with_fractional_seconds_from_the_environment(
    meltano: Path, repo_project: Path, local_api: LocalImportAPI
) -> None:
    env = _target_env(
        local_api,
        TARGET_RJMETRICS_REQUEST_TIMEOUT="10.5",
        TARGET_RJMETRICS_MAX_RETRY_SECONDS="30.5",
        TARGET_RJMETRICS_STATE_FLUSH_SECONDS="0.5",
    )

    run = _meltano(meltano, repo_project, "invoke", "target-rjmetrics", env=env, stdin=INPUT)

    assert sorted(landed_by_id(local_api, "users")) == [1, 2, 3]
    assert _states(run.stdout) == [{"bookmark": 3}]


def test_config_list_shows_the_required_settings_and_the_real_defaults(meltano: Path, repo_project: Path) -> None:
    listing = _meltano(meltano, repo_project, "config", "list", "target-rjmetrics", "--all")
    text = listing.stdout

    assert "Required settings: api_key, client_id" in text
    required, optional = text.split("Optional:")
    for name in ("client_id", "api_key"):
        assert f"{name} [env: TARGET_RJMETRICS_{name.upper()}]" in required
    for name, prop in _about()["settings"]["properties"].items():
        if prop.get("default") is not None:
            assert (
                f"{name} [env: TARGET_RJMETRICS_{name.upper()}] current value: {prop['default']!r} (default)"
                in optional
            )
    # requires_meltano replaced `version: 1`, which made every command warn.
    assert "DeprecationWarning" not in listing.stderr


def test_hub_definition_adds_to_a_new_project_installs_and_loads(
    meltano: Path, tmp_path: Path, local_api: LocalImportAPI
) -> None:
    _meltano(meltano, tmp_path, "init", "fresh", "--no_usage_stats")
    project = tmp_path / "fresh"
    _meltano(
        meltano,
        project,
        "add",
        "--plugin-type",
        "loader",
        "target-rjmetrics",
        "--from-ref",
        str(HUB_DEFINITION),
        "--no-install",
    )

    added = yaml.safe_load((project / "meltano.yml").read_text(encoding="utf-8"))["plugins"]
    hub = yaml.safe_load(HUB_DEFINITION.read_text(encoding="utf-8"))
    assert list(added) == ["loaders"]  # one loader, nothing else
    (loader,) = added["loaders"]
    for key in (
        "name",
        "namespace",
        "variant",
        "executable",
        "pip_url",
        "capabilities",
        "settings",
        "settings_group_validation",
    ):
        assert loader[key] == hub[key], key

    # Until the package is on PyPI, the README says to point pip_url at a checkout (here with the
    # dependencies uv.lock pins, so that a release upstream does not change what this test installs).
    text = (project / "meltano.yml").read_text(encoding="utf-8")
    assert text.count("pip_url: target-rjmetrics\n") == 1
    here = f"pip_url: {ROOT} -c {RUNTIME_CONSTRAINTS}\n"
    (project / "meltano.yml").write_text(text.replace("pip_url: target-rjmetrics\n", here))
    with exclusive(CHECKOUT_BUILDS):  # Meltano's install builds the checkout in place
        _meltano(meltano, project, "install")

    about = json.loads(_meltano(meltano, project, "invoke", "target-rjmetrics", "--about", "--format", "json").stdout)
    expected = _about()
    assert (about["version"], about["capabilities"], about["settings"]) == (
        expected["version"],
        expected["capabilities"],
        expected["settings"],
    )
    assert (
        "Required settings: api_key, client_id"
        in _meltano(meltano, project, "config", "list", "target-rjmetrics").stdout
    )

    run = _meltano(meltano, project, "invoke", "target-rjmetrics", env=_target_env(local_api), stdin=INPUT)
    assert sorted(landed_by_id(local_api, "users")) == [1, 2, 3]
    assert _states(run.stdout) == [{"bookmark": 3}]
