"""The release artifacts: the sdist and the wheel `python -m build` makes, installed as a user would.

The wheel is installed in a fresh virtualenv (its dependencies from the package index, at the
versions uv.lock pins), away from this checkout, and must print `--about` and load data into the
local Import API it ships. Builds and installs go through the project's pinned uv (`python -m build
--installer uv`, with the setuptools of requirements/build.txt); this module's tests share one
build, so they run on one xdist worker.
"""

from __future__ import annotations

import email
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import typing as t
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

import target_rjmetrics
from tests.support.locks import BUILD_CONSTRAINTS, RUNTIME_CONSTRAINTS, uv, uv_bin_dir
from tests.support.targets import clean_env

pytestmark = [pytest.mark.smoke, pytest.mark.slow, pytest.mark.xdist_group("packaging")]

ROOT = Path(__file__).resolve().parent.parent
NAME = "target-rjmetrics"
DECLARED_PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
#: Repository files the sdist leaves out on purpose: CI plumbing.
NOT_IN_SDIST = {".ci/run", ".gitignore"}
#: Left out of the copy the artifacts are built from: environments, caches and build outputs. The
#: build runs in a copy because setuptools writes build/ and *.egg-info/ into the tree it builds,
#: which other xdist workers and suites (Meltano's installs, the smoke Pythons) build at once.
NOT_SOURCES = shutil.ignore_patterns(
    ".git",
    ".venv*",
    ".tools",
    ".meltano",
    ".hypothesis",
    ".*_cache",
    "__pycache__",
    ".local-api-data",
    "output",
    "build",
    "dist",
    "*.egg-info",
)


def _run(args: t.Sequence[str | Path], *, cwd: Path | None = None, timeout: float = 600, **kwargs: t.Any) -> str:
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=kwargs.pop("env", None) or clean_env(),
        check=False,
        **kwargs,
    )
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return str(proc.stdout)


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist, and the wheel built from that sdist, as `python -m build` makes them."""
    out = tmp_path_factory.mktemp("dist")
    source = shutil.copytree(ROOT, tmp_path_factory.mktemp("checkout") / ROOT.name, ignore=NOT_SOURCES)
    path = f"{uv_bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}"
    env = clean_env(PATH=path, UV_CONSTRAINT=str(BUILD_CONSTRAINTS), UV_PYTHON_DOWNLOADS="never")
    _run([sys.executable, "-m", "build", "--installer", "uv", "--outdir", out, source], cwd=out, env=env)
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


def _wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_string(archive.read(name).decode("utf-8"))


def test_version_is_written_once_and_every_reader_agrees(dists: dict[str, Path]) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    about = json.loads(_run([Path(sys.executable).with_name("target-rjmetrics"), "--about", "--format", "json"]))

    assert 'dynamic = ["version"]' in pyproject
    assert "\nversion =" not in pyproject.split("[tool.setuptools.dynamic]")[0]
    assert _wheel_metadata(dists["wheel"])["Version"] == target_rjmetrics.__version__
    assert about["version"] == metadata.version(NAME) == target_rjmetrics.__version__
    assert dists["wheel"].name.startswith(f"target_rjmetrics-{target_rjmetrics.__version__}-")


def test_wheel_metadata_names_license_authors_urls_and_every_declared_python(dists: dict[str, Path]) -> None:
    meta = _wheel_metadata(dists["wheel"])
    classifiers = meta.get_all("Classifier") or []

    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["Author-email"]
    assert meta.get_all("Project-URL")
    assert meta["Requires-Python"] == ">=3.10"
    assert [c.rsplit(" :: ", 1)[1] for c in classifiers if c.startswith("Programming Language :: Python :: 3.")] == (
        DECLARED_PYTHONS
    )
    assert "Typing :: Typed" in classifiers


def test_wheel_holds_the_package_its_typing_marker_and_the_license_only(dists: dict[str, Path]) -> None:
    with zipfile.ZipFile(dists["wheel"]) as archive:
        names = archive.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        license_text = archive.read(f"{dist_info}/licenses/LICENSE").decode("utf-8")

    assert all(n.startswith(("target_rjmetrics/", f"{dist_info}/")) for n in names), names
    assert "target_rjmetrics/py.typed" in names
    assert "target_rjmetrics/local_api/server.py" in names
    assert license_text == (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text  # the full text, not a pointer to it


def _git_files(*options: str) -> set[str]:
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout (an unpacked sdist, say)")
    listed = _run(["git", "ls-files", *options], cwd=ROOT)
    return {name for name in listed.splitlines() if (ROOT / name).is_file()}


def test_sdist_is_the_repository_without_its_ci_plumbing(dists: dict[str, Path]) -> None:
    with tarfile.open(dists["sdist"]) as archive:
        top = archive.getnames()[0].split("/")[0]
        members = {m.name.split("/", 1)[1] for m in archive.getmembers() if m.isfile()}
    generated = {n for n in members if n in {"PKG-INFO", "setup.cfg"} or n.startswith("target_rjmetrics.egg-info/")}
    tracked = _git_files("--cached")
    untracked = _git_files("--others", "--exclude-standard")  # a developer's new, uncommitted files

    assert top == f"target_rjmetrics-{target_rjmetrics.__version__}"
    assert {"LICENSE", "docs/local-api.md", "tests/conftest.py", "tests/support/__init__.py"} <= members
    assert tracked - NOT_IN_SDIST - members == set(), "committed files missing from the sdist"
    assert members - generated - tracked - untracked == set(), "the sdist holds files the repository has not"
    assert not members & NOT_IN_SDIST


def test_sdist_test_suite_is_complete_enough_to_collect(dists: dict[str, Path], tmp_path: Path) -> None:
    with tarfile.open(dists["sdist"]) as archive:
        archive.extractall(tmp_path, filter="data")
    (unpacked,) = tmp_path.iterdir()

    def collected(where: Path) -> list[str]:
        out = _run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"], cwd=where)
        assert "error" not in out.splitlines()[-1], out[-3000:]
        return [line for line in out.splitlines() if "::" in line]

    # The same tests are found in the unpacked sdist as in this checkout, with no collection error.
    in_sdist = collected(unpacked)
    assert len(in_sdist) > 300
    assert in_sdist == collected(ROOT)


def test_the_target_never_imports_the_local_server() -> None:
    """The local server ships in the wheel but costs a loader nothing at run time."""
    code = "import sys, target_rjmetrics.target; print(sorted(m for m in sys.modules if 'local_api' in m))"
    assert _run([sys.executable, "-c", code]).strip() == "[]"


def test_wheel_installed_in_a_clean_virtualenv_prints_about_and_loads(dists: dict[str, Path], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    bin_dir = venv / "bin"
    uv("pip", "install", "--python", bin_dir / "python", "--constraint", RUNTIME_CONSTRAINTS, dists["wheel"])
    away = tmp_path / "elsewhere"  # not this checkout, so nothing is imported from its sources
    away.mkdir()

    location = _run([bin_dir / "python", "-c", "import target_rjmetrics as p; print(p.__file__)"], cwd=away)
    assert Path(location.strip()).is_relative_to(venv)
    assert (Path(location.strip()).parent / "py.typed").is_file()

    about = json.loads(_run([bin_dir / "target-rjmetrics", "--about", "--format", "json"], cwd=away))
    assert about["version"] == target_rjmetrics.__version__
    assert about["supported_python_versions"] == DECLARED_PYTHONS
    assert about["settings"]["required"] == ["client_id", "api_key"]

    # A small load against the local Import API that the wheel installs beside the target.
    data, ready = tmp_path / "data", tmp_path / "ready"
    server = subprocess.Popen(
        [bin_dir / "rjmetrics-local-api", "serve", "--port", "0", "--data-dir", data, "--ready-file", ready],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=clean_env(),
    )
    try:
        deadline = time.monotonic() + 30
        while not (ready.exists() and ready.read_text().strip()):
            assert server.poll() is None, "the local server exited"
            assert time.monotonic() < deadline, "the local server did not start"
            time.sleep(0.1)
        port = int(ready.read_text().split()[0])
        config = tmp_path / "config.json"
        config.write_text(
            json.dumps({"client_id": 1, "api_key": "local-demo-key", "api_url": f"http://127.0.0.1:{port}/v2"})
        )
        states = _run(
            [
                bin_dir / "target-rjmetrics",
                "--config",
                config,
                "--input",
                ROOT / "examples" / "users_and_orders.singer.jsonl",
            ],
            cwd=away,
        )
        tables = _run([bin_dir / "rjmetrics-local-api", "tables", "--data-dir", data], cwd=away)
    finally:
        server.terminate()
        server.wait(timeout=30)

    assert states.strip(), "no STATE was written"
    counts = {
        parts[1]: int(parts[2]) for parts in (line.split() for line in tables.splitlines()[1:]) if len(parts) == 3
    }
    assert counts == {"users": 5, "orders": 5}
