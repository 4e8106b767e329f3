"""The SDK's private names we use still exist with the shape we rely on, and are used nowhere unlisted.

An SDK release that renames or reshapes one fails here, by name, rather than in a user's run.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
import typing as t
from pathlib import Path

import pytest

from target_rjmetrics.sdk import PRIVATE_NAMES, PrivateName

PACKAGE = Path(__file__).resolve().parents[2] / "target_rjmetrics"


def _owner(name: PrivateName) -> t.Any:
    module, _, cls = name.owner.partition(":")
    found = importlib.import_module(module)
    return getattr(found, cls) if cls else found


@pytest.mark.parametrize("private", PRIVATE_NAMES, ids=lambda p: f"{p.owner}.{p.name}")
def test_each_private_name_still_exists_with_its_shape(private: PrivateName) -> None:
    owner = _owner(private)
    if private.kind == "attribute":
        sdk_classes = [cls for cls in inspect.getmro(owner) if cls.__module__.startswith("singer_sdk")]
        sources = "".join(inspect.getsource(cls) for cls in sdk_classes)
        declared = any(private.name in vars(cls) for cls in sdk_classes)
        assert declared or f"self.{private.name}" in sources, (
            f"{private.owner} no longer has {private.name}: {private.why}"
        )
        return
    found = getattr(owner, private.name, None)
    assert found is not None and callable(found), f"{private.owner} no longer has {private.name}: {private.why}"
    if private.params is not None:
        assert tuple(inspect.signature(found).parameters) == private.params, (
            f"{private.owner}.{private.name} changed its parameters: {inspect.signature(found)}"
        )
    if private.kind == "final":
        assert getattr(found, "__final__", False) or "@t.final" in inspect.getsource(owner), private.name


def test_every_private_sdk_name_the_package_uses_is_listed() -> None:
    listed = {p.name for p in PRIVATE_NAMES}
    used: set[str] = set()
    for path in PACKAGE.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        if path.name != "sdk.py":
            # Private modules and names of the SDK are imported only through sdk.py.
            assert not re.search(r"from singer_sdk[\w.]*\._\w+ import|from singer_sdk[\w.]* import _", source), (
                path.name
            )
        used |= {m for m in re.findall(r"\bself\.(_[a-z]\w*)", source) if _is_sdks(m)}
        used |= {m for m in re.findall(r"def (_[a-z]\w*)\(", source) if _is_sdks(m)}
    assert used <= listed, f"private SDK names used but not listed in sdk.py: {sorted(used - listed)}"


@functools.cache
def _is_sdks(name: str) -> bool:
    """Whether a private name is defined by the SDK's plugin, target or sink classes."""
    from singer_sdk.plugin_base import BaseSingerReader, PluginBase  # noqa: PLC0415
    from singer_sdk.sinks.core import Sink  # noqa: PLC0415
    from singer_sdk.target_base import Target  # noqa: PLC0415

    return any(
        name in vars(cls) or f"self.{name} " in _source(cls) for cls in (PluginBase, BaseSingerReader, Target, Sink)
    )


@functools.cache
def _source(cls: type) -> str:
    return inspect.getsource(cls)


def test_the_private_names_of_urllib3_the_transport_relies_on_still_exist() -> None:
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool  # noqa: PLC0415

    from target_rjmetrics.transport import URLLIB3_PRIVATE_NAMES  # noqa: PLC0415

    for cls in (HTTPConnectionPool, HTTPSConnectionPool):
        missing = [name for name in URLLIB3_PRIVATE_NAMES if not callable(getattr(cls, name, None))]
        assert not missing, f"urllib3's {cls.__name__} no longer has {missing}"
    assert tuple(inspect.signature(HTTPConnectionPool._get_conn).parameters) == ("self", "timeout")
    assert tuple(inspect.signature(HTTPConnectionPool._put_conn).parameters) == ("self", "conn")
    assert tuple(inspect.signature(HTTPConnectionPool._prepare_proxy).parameters) == ("self", "conn")
