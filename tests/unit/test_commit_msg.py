"""The commit-msg hook (scripts/commit-msg.py) holds subjects to 72 characters and a blank second line."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "commit-msg.py"
_spec = importlib.util.spec_from_file_location("commit_msg", SCRIPT)
assert _spec is not None and _spec.loader is not None
commit_msg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(commit_msg)


@pytest.mark.parametrize(
    ("message", "broken"),
    [
        ("Reader: name the line of a bad message\n\nWhy it matters.\n", []),
        ("x" * 72 + "\n", []),
        ("x" * 73 + "\n\nbody\n", ["the subject is 73 characters"]),
        ("Subject\nbody right under it\n", ["the second line must be blank"]),
        ("\n\nbody only\n", ["the subject (first line) is empty"]),
        ("# Please enter the commit message\n", ["the subject (first line) is empty"]),
        ("Subject\n\n# git's comment lines are not part of the message\n", []),
    ],
)
def test_a_commit_message_is_checked_for_its_form(message: str, broken: list[str]) -> None:
    found = commit_msg.problems(message)
    assert len(found) == len(broken)
    for problem, words in zip(found, broken, strict=True):
        assert problem.startswith(words)


def test_the_hook_exits_1_naming_the_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    message = tmp_path / "COMMIT_EDITMSG"
    monkeypatch.setattr(sys, "argv", ["commit-msg.py", str(message)])
    message.write_text("y" * 80 + "\n", encoding="utf-8")
    assert commit_msg.main() == 1
    assert "the subject is 80 characters; at most 72" in capsys.readouterr().err
    message.write_text("Short subject\n\nA body.\n", encoding="utf-8")
    assert commit_msg.main() == 0
