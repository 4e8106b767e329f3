"""The benchmark's input: seeded Singer files of users, orders and events, and what they should load.

About 20% users (each id updated ~3 times, spread over the file), 45% orders (a third are
status updates of a recent order) and 35% events (composite key, ~1.5 versions per key);
date-times with offsets and fractions, long decimals, nullable fields, a nested object; a STATE
every 1,000 records. Every record carries ``rev``, its key's version number, so a check can see
which version landed. Files are cached by size and generator version.
"""

from __future__ import annotations

import datetime
import json
import random
import time
from typing import TYPE_CHECKING, Any

from tests.support.expected import last_versions
from tests.support.messages import read_messages

if TYPE_CHECKING:
    from pathlib import Path

GENERATOR_VERSION = 1
SEED = 20240605
STATE_EVERY = 1000

STREAMS: dict[str, dict[str, Any]] = {
    "users": {
        "key_properties": ["id"],
        "schema": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "email": {"type": "string"},
                "name": {"type": ["string", "null"]},
                "acquisition_source": {"type": ["string", "null"]},
                "is_active": {"type": "boolean"},
                "balance": {"type": "number"},
                "lifetime_value": {"type": ["number", "null"]},
                "created_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": ["string", "null"], "format": "date-time"},
                "address": {
                    "type": ["object", "null"],
                    "properties": {
                        "city": {"type": "string"},
                        "zip": {"type": ["string", "null"]},
                        "country": {"type": "string"},
                    },
                },
                "rev": {"type": "integer"},
            },
        },
    },
    "orders": {
        "key_properties": ["id"],
        "schema": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "user_id": {"type": "integer"},
                "status": {"type": "string"},
                "amount": {"type": "number"},
                "tax": {"type": ["number", "null"]},
                "currency": {"type": "string"},
                "items": {"type": "integer"},
                "gift": {"type": ["boolean", "null"]},
                "note": {"type": ["string", "null"]},
                "ordered_at": {"type": "string", "format": "date-time"},
                "shipped_at": {"type": ["string", "null"], "format": "date-time"},
                "rev": {"type": "integer"},
            },
        },
    },
    "events": {
        "key_properties": ["session_id", "seq"],
        "schema": {
            "type": "object",
            "properties": {
                "session_id": {"type": "string"},
                "seq": {"type": "integer"},
                "user_id": {"type": ["integer", "null"]},
                "type": {"type": "string"},
                "occurred_at": {"type": "string", "format": "date-time"},
                "value": {"type": ["number", "null"]},
                "properties": {
                    "type": "object",
                    "properties": {
                        "page": {"type": "string"},
                        "referrer": {"type": ["string", "null"]},
                        "duration_ms": {"type": "integer"},
                    },
                },
                "rev": {"type": "integer"},
            },
        },
    },
}

_OFFSETS = [("Z", 0), ("+00:00", 0), ("-05:00", -5 * 3600), ("+02:00", 2 * 3600), ("+05:30", 5 * 3600 + 1800)]
_EPOCH_2019 = 1_546_300_800
_UTC = datetime.timezone.utc
_LONG = "__LONG_DECIMAL__"


def _when(rng: random.Random) -> str:
    """A date-time string with an offset, sometimes with fractions of a second."""
    suffix, shift = _OFFSETS[rng.randrange(len(_OFFSETS))]
    moment = datetime.datetime.fromtimestamp(_EPOCH_2019 + rng.randrange(3 * 365 * 86400) + shift, _UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if rng.random() < 0.3:
        text += f".{rng.randrange(1_000_000):06d}"
    return text + suffix


def generate(path: Path, n: int) -> None:
    """Write ``n`` RECORD messages over three streams, with SCHEMAs first and a STATE every 1,000."""
    rng = random.Random(SEED)
    user_pool = max(20, n // 15)
    sessions = max(5, n * 35 // 100 // 75)
    revs: dict[tuple[Any, ...], int] = {}
    orders: list[int] = []
    next_order = 1
    cities = ["Philadelphia", "New York", "Zürich", "São Paulo", "Tokyo", "Berlin", "Austin"]
    sources = ["PPC", "Organic", "Referral", "Email", None]
    statuses = ["pending", "paid", "shipped", "complete", "refunded"]
    kinds = ["page_view", "click", "signup", "purchase", "search"]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for stream, spec in STREAMS.items():
            out.write(json.dumps({"type": "SCHEMA", "stream": stream, **spec}) + "\n")
        for i in range(1, n + 1):
            roll = rng.random()
            if roll < 0.20:
                uid = rng.randrange(1, user_pool + 1)
                rev = revs[("users", uid)] = revs.get(("users", uid), 0) + 1
                record: dict[str, Any] = {
                    "id": uid,
                    "email": f"user{uid}@example.com",
                    "name": None if rng.random() < 0.1 else f"User {uid} Ñame",
                    "acquisition_source": sources[rng.randrange(len(sources))],
                    "is_active": rng.random() < 0.8,
                    "balance": round(rng.uniform(0, 5000), 2),
                    "lifetime_value": _LONG if rng.random() < 0.9 else None,
                    "created_at": _when(rng),
                    "updated_at": _when(rng) if rng.random() < 0.8 else None,
                    "address": None
                    if rng.random() < 0.1
                    else {
                        "city": cities[rng.randrange(len(cities))],
                        "zip": f"{rng.randrange(100000):05d}" if rng.random() < 0.9 else None,
                        "country": "US",
                    },
                    "rev": rev,
                }
                stream = "users"
            elif roll < 0.65:
                if orders and rng.random() < 0.35:
                    oid = orders[-1 - rng.randrange(min(len(orders), 5000))]
                else:
                    oid = next_order
                    next_order += 1
                    orders.append(oid)
                rev = revs[("orders", oid)] = revs.get(("orders", oid), 0) + 1
                amount = round(rng.uniform(1, 900), 2)
                record = {
                    "id": oid,
                    "user_id": rng.randrange(1, user_pool + 1),
                    "status": statuses[min(rev - 1, len(statuses) - 1)],
                    "amount": amount,
                    "tax": round(amount * 0.0825, 4) if rng.random() < 0.8 else None,
                    "currency": "USD",
                    "items": rng.randrange(1, 12),
                    "gift": None if rng.random() < 0.2 else rng.random() < 0.1,
                    "note": None if rng.random() < 0.7 else 'leave at the door, "please"',
                    "ordered_at": _when(rng),
                    "shipped_at": _when(rng) if rev > 2 else None,
                    "rev": rev,
                }
                stream = "orders"
            else:
                sid = f"s{rng.randrange(sessions):07d}"
                seq = rng.randrange(75)
                rev = revs[("events", sid, seq)] = revs.get(("events", sid, seq), 0) + 1
                record = {
                    "session_id": sid,
                    "seq": seq,
                    "user_id": None if rng.random() < 0.3 else rng.randrange(1, user_pool + 1),
                    "type": kinds[rng.randrange(len(kinds))],
                    "occurred_at": _when(rng),
                    "value": round(rng.uniform(0, 100), 3) if rng.random() < 0.5 else None,
                    "properties": {
                        "page": f"/p/{rng.randrange(500)}",
                        "referrer": None if rng.random() < 0.5 else "https://example.com/?q=a&b=c",
                        "duration_ms": rng.randrange(60_000),
                    },
                    "rev": rev,
                }
                stream = "events"
            line = json.dumps({"type": "RECORD", "stream": stream, "record": record}, ensure_ascii=False)
            if stream == "users" and record["lifetime_value"] == _LONG:
                # A decimal longer than a float holds, written as the JSON number a tap would send.
                line = line.replace(f'"{_LONG}"', f"{rng.randrange(10**11)}.{rng.randrange(10**9):09d}", 1)
            out.write(line + "\n")
            if i % STATE_EVERY == 0 or i == n:
                state = {"bookmarks": {"orders": {"last_id": next_order - 1}}, "records": i}
                out.write(json.dumps({"type": "STATE", "value": state}) + "\n")
    tmp.replace(path)


def input_file(cache: Path, n: int) -> Path:
    """The cached Singer file of ``n`` records, generated on first use."""
    path = cache / f"singer-v{GENERATOR_VERSION}-{n}.jsonl"
    if not path.exists():
        began = time.monotonic()
        print(f"  generating {n:,} records into {path} ...", flush=True)
        generate(path, n)
        print(f"  generated in {time.monotonic() - began:.1f} s ({path.stat().st_size / 2**20:.1f} MiB)", flush=True)
    return path


def prefix_file(full: Path, records: int) -> Path:
    """The first ``records`` RECORD messages of ``full`` (with the SCHEMAs and STATEs among them)."""
    path = full.with_name(f"{full.stem}-first-{records}.jsonl")
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    seen = 0
    with full.open(encoding="utf-8") as src, tmp.open("w", encoding="utf-8") as out:
        for line in src:
            if seen == records and not line.startswith('{"type": "STATE"'):
                break
            out.write(line)
            if line.startswith('{"type": "RECORD"'):
                seen += 1
    tmp.replace(path)
    return path


def describe_input(path: Path, window: int = 3) -> str:
    """Records, distinct keys, and how often a request of 100 shares a key with the few before it.

    A sender that keeps each key's versions in order (as target-rjmetrics does) cannot send a
    request while an earlier one holding the same key is in flight, so this share bounds how
    much concurrency helps on this input.
    """
    keys = {name: spec["key_properties"] for name, spec in STREAMS.items()}
    seen: dict[str, set[tuple[Any, ...]]] = {name: set() for name in STREAMS}
    current: dict[str, set[tuple[Any, ...]]] = {name: set() for name in STREAMS}
    recent: dict[str, list[set[tuple[Any, ...]]]] = {name: [] for name in STREAMS}
    records = batches = sharing = 0

    def close(stream: str) -> None:
        nonlocal batches, sharing
        batch = current[stream]
        batches += 1
        sharing += any(batch & earlier for earlier in recent[stream])
        recent[stream] = [*recent[stream][-(window - 1) :], batch]
        current[stream] = set()

    with path.open(encoding="utf-8") as src:
        for line in src:
            if line.startswith('{"type": "RECORD"'):
                message = json.loads(line)
                stream, record = message["stream"], message["record"]
                key = tuple(record[k] for k in keys[stream])
                records += 1
                seen[stream].add(key)
                current[stream].add(key)
                if len(current[stream]) == 100:
                    close(stream)
    for stream in STREAMS:
        if current[stream]:
            close(stream)
    distinct = sum(len(v) for v in seen.values())
    return (
        f"{records:,} records, {distinct:,} distinct keys ({records / distinct:.2f} versions per key); "
        f"{sharing / batches:.0%} of requests of 100 share a key with one of the {window} before them "
        "in their stream"
    )


def last_state(path: Path) -> object:
    """The value of the last STATE message of a Singer file."""
    value = None
    with path.open(encoding="utf-8") as src:
        for line in src:
            if line.startswith('{"type": "STATE"'):
                value = json.loads(line)["value"]
    return value


def expected_revs(path: Path) -> dict[str, dict[tuple[Any, ...], int]]:
    """Per stream, each key's last ``rev`` in the Singer file (computed without any contestant)."""
    versions = last_versions(read_messages(path))
    return {
        stream: {t_key: record["rev"] for t_key, record in versions.get(stream, {}).items() if isinstance(t_key, tuple)}
        for stream in STREAMS
    }


def count_records(path: Path) -> int:
    """RECORD messages in a Singer file."""
    with path.open(encoding="utf-8") as src:
        return sum(1 for line in src if line.startswith('{"type": "RECORD"'))
