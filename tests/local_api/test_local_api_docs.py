"""docs/local-api.md documents every flag of ``serve`` and every ``Faults`` field."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from target_rjmetrics.local_api import Faults, RequestLogEntry
from target_rjmetrics.local_api.cli import build_parser

DOC = (Path(__file__).resolve().parents[2] / "docs" / "local-api.md").read_text(encoding="utf-8")


def _serve_flags() -> list[str]:
    parser = build_parser()
    serve = next(a for a in parser._subparsers._group_actions if a.choices).choices["serve"]  # type: ignore[union-attr,index]
    return [o for action in serve._actions for o in action.option_strings if o.startswith("--") and o != "--help"]


def test_every_serve_flag_is_in_the_docs() -> None:
    flags = _serve_flags()
    assert "--ghost-delay" in flags and "--max-log-bytes" in flags
    documented = set(re.findall(r"`(--[a-z0-9-]+)", DOC))
    assert sorted(set(flags) - documented) == []


def test_every_faults_field_is_in_the_docs_and_has_a_flag_of_its_name() -> None:
    flags = set(_serve_flags())
    for field in dataclasses.fields(Faults):
        assert f"`{field.name}`" in DOC or f"({field.name}" in DOC or f"`{field.name};" in DOC, field.name
        assert "--" + field.name.replace("_", "-") in flags, field.name


def test_every_request_log_field_is_in_the_docs() -> None:
    section = DOC.split("### The request log", 1)[1].split("\n## ", 1)[0]
    for field in dataclasses.fields(RequestLogEntry):
        assert f"`{field.name}`" in section, field.name
