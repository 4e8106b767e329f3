"""The README's settings table and meltano.yml say what `--about` says."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml
from target_support import TARGET_BIN, clean_env

ROOT = Path(__file__).resolve().parent.parent


def _about(fmt: str) -> str:
    return subprocess.run(
        [str(TARGET_BIN), "--about", "--format", fmt],
        capture_output=True, text=True, check=True, env=clean_env(),
    ).stdout


def _table_rows(text: str) -> list[str]:
    rows = [line.strip() for line in text.splitlines() if line.startswith("| ") and not line.startswith("|:")]
    # The SDK prints the load_method default as the enum's repr on Python 3.11+ and as its
    # value on 3.10; the README shows the value.
    return [row.replace("TargetLoadMethods.APPEND_ONLY", "append-only") for row in rows]


def test_readme_settings_table_equals_about_markdown() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- settings-table.*?-->\n(.*?)<!-- end settings-table -->", readme, re.S)
    assert match, "README.md lost its settings-table markers"
    about = _about("markdown")
    about_table = about[about.index("| Setting"):]
    about_table = about_table[: about_table.index("\n\n")]
    assert _table_rows(match.group(1)) == _table_rows(about_table)


def test_meltano_yml_declares_every_setting_and_capability_of_about() -> None:
    about = json.loads(_about("json"))
    meltano = yaml.safe_load((ROOT / "meltano.yml").read_text(encoding="utf-8"))
    loader = next(p for p in meltano["plugins"]["loaders"] if p["name"] == "target-rjmetrics")
    assert loader["namespace"] == "target_rjmetrics"
    assert loader["pip_url"] == "-e ."
    assert loader["capabilities"] == about["capabilities"]
    declared = {s["name"]: s for s in loader["settings"]}
    assert list(declared) == list(about["settings"]["properties"])
    secret = {name for name, p in about["settings"]["properties"].items() if p.get("secret") or p.get("writeOnly")}
    assert secret == {"api_key"}
    assert {name for name, s in declared.items() if s.get("sensitive")} == secret
    for name, prop in about["settings"]["properties"].items():
        assert declared[name].get("description") == prop.get("description"), name
