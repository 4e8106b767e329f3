"""Baseline C: a do-nothing Singer SDK target, the floor of any SDK-based target.

A minimal ``singer_sdk.Target`` whose ``BatchSink.process_batch`` discards the batch. Every
SDK default is kept: the SDK's message reader, record validation (``validate_records`` true),
type conformance, batching (``BatchSink`` keeps records in memory up to its default batch size)
and STATE handling. Whatever an SDK target adds to send data comes on top of this.

    python benchmarks/baselines/null_target.py --config config.json < input.jsonl
"""

from __future__ import annotations

import typing as t

from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.sinks import BatchSink


class NullSink(BatchSink):
    """Keeps each batch as the SDK does, then drops it."""

    def process_batch(self, context: dict[str, t.Any]) -> None:
        """Discard the batch."""


class TargetNull(Target):
    """Reads, validates and batches Singer messages, and writes nothing."""

    name = "target-null"
    config_jsonschema = th.PropertiesList().to_dict()
    default_sink_class = NullSink


if __name__ == "__main__":
    TargetNull.cli()
