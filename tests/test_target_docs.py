"""The README's settings table, meltano.yml and the Meltano Hub definition say what `--about` says."""

from __future__ import annotations

import json
import re
import typing as t
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from tests.support.targets import about

pytestmark = pytest.mark.smoke

ROOT = Path(__file__).resolve().parent.parent
HUB_DEFINITION = ROOT / "plugins" / "loaders" / "target-rjmetrics--rjmetrics.yml"
#: Labels of the SDK's settings that `--about` prints without a title.
SDK_LABELS = {"load_method": "Load Method"}


def _about(fmt: str) -> str:
    return about(fmt)


def _table_rows(text: str) -> list[str]:
    rows = [line.strip() for line in text.splitlines() if line.startswith("| ") and not line.startswith("|:")]
    # The SDK prints the load_method default as the enum's repr on Python 3.11+ and as its
    # value on 3.10; the README shows the value.
    return [row.replace("TargetLoadMethods.APPEND_ONLY", "append-only") for row in rows]


def test_readme_settings_table_equals_about_markdown() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- settings-table.*?-->\n(.*?)<!-- end settings-table -->", readme, re.DOTALL)
    assert match, "README.md lost its settings-table markers"
    about = _about("markdown")
    about_table = about[about.index("| Setting") :]
    about_table = about_table[: about_table.index("\n\n")]
    assert _table_rows(match.group(1)) == _table_rows(about_table)


def _meltano_kind(prop: dict[str, t.Any]) -> str:
    """The Meltano setting kind that passes a setting of this JSON Schema type intact.

    A number may have a fraction (0.5): Meltano 4 turns an environment variable of ``kind:
    decimal`` into a Decimal it then fails to write as JSON, and ``kind: integer`` refuses "0.5",
    so such settings are ``kind: string`` and the target takes decimal text for them.
    """
    types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
    types = [name for name in types if name != "null"]
    if "enum" in prop:
        return "options"
    if "number" in types:
        return "string"
    (kind,) = types
    return str(kind)


def _loader(path: Path) -> dict[str, t.Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if "plugins" not in document:  # a Hub definition is the plugin itself
        return dict(document)
    return next(p for p in document["plugins"]["loaders"] if p["name"] == "target-rjmetrics")


def _check_settings_equal_about(loader: dict[str, t.Any], about: dict[str, t.Any]) -> None:
    properties = about["settings"]["properties"]
    declared = {s["name"]: s for s in loader["settings"]}
    assert list(declared) == list(properties)
    assert loader["capabilities"] == about["capabilities"]
    assert loader["settings_group_validation"] == [about["settings"]["required"]]
    secret = {name for name, p in properties.items() if p.get("secret") or p.get("writeOnly")}
    assert secret == {"api_key"}
    assert {name for name, s in declared.items() if s.get("sensitive")} == secret
    for name, prop in properties.items():
        setting = declared[name]
        expected = {
            "name": name,
            "kind": _meltano_kind(prop),
            "label": prop.get("title") or SDK_LABELS[name],
            "description": prop["description"],
        }
        if prop.get("default") is not None:
            expected["value"] = prop["default"]
        if name in secret:
            expected["sensitive"] = True
        if "enum" in prop:
            assert [o["value"] for o in setting.get("options", [])] == prop["enum"], name
            assert all(o.get("label") for o in setting["options"]), name
            expected["options"] = setting["options"]
        assert setting == expected, (
            f"setting {name!r} differs from --about; expected {yaml.safe_dump([expected], sort_keys=False)}"
        )


def test_meltano_yml_loader_declares_what_about_says() -> None:
    """Kinds, labels, defaults, secrets, required settings and capabilities, setting by setting."""
    about = json.loads(_about("json"))
    loader = _loader(ROOT / "meltano.yml")

    assert loader["namespace"] == "target_rjmetrics"
    assert loader["pip_url"] == "-e . -c requirements/runtime.txt"  # the checkout, with uv.lock's pins
    _check_settings_equal_about(loader, about)


def test_meltano_yml_asks_for_meltano_4_without_the_deprecated_version_key() -> None:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text(encoding="utf-8"))

    assert "version" not in project
    required = SpecifierSet(project["requires_meltano"])
    assert "4.4.1" in required
    assert "3.7.0" not in required


def test_hub_definition_is_the_meltano_yml_loader_with_the_package_from_pypi() -> None:
    about = json.loads(_about("json"))
    hub = _loader(HUB_DEFINITION)
    loader = _loader(ROOT / "meltano.yml")
    distribution = metadata.distribution("target-rjmetrics")
    scripts = {entry.name for entry in distribution.entry_points if entry.group == "console_scripts"}

    _check_settings_equal_about(hub, about)
    assert hub["settings"] == loader["settings"]
    assert hub["name"] == about["name"] == distribution.metadata["Name"]
    assert hub["pip_url"] == distribution.metadata["Name"]
    assert hub["executable"] == "target-rjmetrics" and hub["executable"] in scripts
    assert hub["namespace"] == loader["namespace"]
    assert hub["supported_python_versions"] == about["supported_python_versions"]


#: Rules of Meltano Hub's loader definition schema (schemas/plugin_definitions/loaders.schema.json
#: and the common, loader and setting schemas it refers to, as of 2026-08).
HUB_REQUIRED = {"name", "namespace", "variant", "label", "quality"}
HUB_KEYS = HUB_REQUIRED | {
    "capabilities",
    "pip_url",
    "description",
    "executable",
    "repo",
    "logo_url",
    "settings",
    "docs",
    "python",
    "settings_group_validation",
    "commands",
    "dialect",
    "target_schema",
    "hidden",
    "requires",
    "maintenance_status",
    "domain_url",
    "keywords",
    "definition",
    "next_steps",
    "settings_preamble",
    "usage",
    "prereq",
    "supported_python_versions",
    "log_parser",
}
HUB_LOADER_CAPABILITIES = {
    "about",
    "stream-maps",
    "activate-version",
    "batch",
    "soft-delete",
    "hard-delete",
    "datatype-failsafe",
    "schema-flattening",
    "target-schema",
    "validate-records",
    "structured-logging",
}
HUB_KINDS = {
    "oauth",
    "hidden",
    "password",
    "date_iso8601",
    "file",
    "email",
    "integer",
    "options",
    "object",
    "array",
    "boolean",
    "string",
    "decimal",
}
HUB_SETTING_KEYS = {
    "name",
    "aliases",
    "label",
    "value",
    "placeholder",
    "kind",
    "description",
    "tooltip",
    "documentation",
    "env",
    "value_processor",
    "value_post_processor",
    "oauth",
    "options",
    "docs",
    "hidden",
    "sensitive",
}


def test_hub_definition_keeps_to_the_hub_schema() -> None:
    hub = _loader(HUB_DEFINITION)

    assert set(hub) >= HUB_REQUIRED
    assert set(hub) <= HUB_KEYS, set(hub) - HUB_KEYS
    assert set(hub["capabilities"]) <= HUB_LOADER_CAPABILITIES
    assert hub["maintenance_status"] in {"active", "beta", "development", "inactive", "unknown"}
    assert hub["quality"] in {"gold", "silver", "bronze", "unknown"}
    for setting in hub["settings"]:
        assert set(setting) <= HUB_SETTING_KEYS, setting["name"]
        assert setting["kind"] in HUB_KINDS, setting["name"]
        # No Hub definition uses `decimal`, and Meltano 4 breaks on it from the environment.
        assert setting["kind"] != "decimal", setting["name"]
        for option in setting.get("options", []):
            assert isinstance(option["value"], str) and isinstance(option["label"], str)


@pytest.mark.parametrize("path", ["meltano.yml", HUB_DEFINITION.relative_to(ROOT).as_posix()])
def test_every_setting_has_a_label_and_a_description_ending_in_a_period(path: str) -> None:
    for setting in _loader(ROOT / path)["settings"]:
        assert setting.get("label"), setting["name"]
        assert setting["description"].endswith("."), setting["name"]


def test_ci_runs_the_readme_test_command_then_the_other_pythons() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    matrix = (ROOT / "scripts" / "test-matrix.sh").read_text(encoding="utf-8")

    assert "scripts/test.sh         # installs the test dependencies" in readme
    assert "bash scripts/test.sh" in ci and "bash scripts/test-matrix.sh" in ci
    assert "bash scripts/test.sh" in matrix
    assert "supported_python_versions" in matrix  # the versions come from --about, not a list here
