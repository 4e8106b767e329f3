"""What did land, each STATE checked against the request log, and what the target printed.

Every check here returns what is wrong (empty is good) or what it found, so tests assert on it
and the reliability benchmark prints it.

The STATE check (:func:`states_ahead`) needs inputs whose records carry ``seq``, their place in
the input, and ``id``, their key, so versions of a key are told apart in the final rows. The
request log only shows key values, so the check counts, per key, the accepted requests holding
that key: requests holding one key never overlap (the target sends them in input order), so the
k-th of them carries the k-th batch of that key's versions. A STATE after record ``n`` needs the
batch holding the last version before ``n``; there are at most ``later`` batches after it
(``later`` = versions after it that this run sent), so at least ``R - later`` of the key's ``R``
accepted requests must have completed. That bound is exact when versions of a key fall in
separate batches, and never wrongly accuses the target.
"""

from __future__ import annotations

import bisect
import re
import typing as t
from collections import defaultdict
from dataclasses import dataclass

from target_rjmetrics.local_api import DEMO_CLIENT_ID, RequestLogEntry
from tests.support.expected import sanitise

if t.TYPE_CHECKING:
    from tests.support.servers import ImportAPIView

#: A distinctive API key: if any of it shows up in output, it leaked. '/', '+' and '=' make
#: its URL-encoded form differ from the raw one, so both must be redacted.
SECRET_KEY = "rjm/S3CRET+7f9c2e=do-not-leak"
#: Fragments of the key that must not appear either (raw and percent-encoded).
SECRET_FRAGMENTS = ("S3CRET", "7f9c2e", "do-not-leak")
#: Statuses the target retries (0: no answer).
TRANSIENT = frozenset({0, 429}) | frozenset(range(500, 600))

Records = t.Sequence[tuple[str, dict[str, t.Any]]]


def leaked(text: str) -> list[str]:
    """Fragments of :data:`SECRET_KEY` found in ``text`` (empty is good)."""
    return [fragment for fragment in SECRET_FRAGMENTS if fragment in text]


# -- what landed ------------------------------------------------------------------------------


def upserts(server: ImportAPIView, *, table: str | None = None, status: int | None = 201) -> list[RequestLogEntry]:
    """Upsert requests from the server's log, optionally filtered by table and status."""
    return [
        entry
        for entry in server.request_log()
        if entry.method == "POST"
        and (table is None or entry.table == table)
        and (status is None or entry.status == status)
    ]


def points_of(entry: RequestLogEntry) -> int:
    """The points of a logged upsert (its body must have been parsed)."""
    assert entry.points is not None, f"request {entry.seq} has no parsed body"
    return entry.points


def keys_of(entry: RequestLogEntry) -> list[list[t.Any]]:
    """The key values of each point of a logged upsert (point keys logged, every point keyed)."""
    assert entry.key_values is not None, f"request {entry.seq} has no key values (log_point_keys?)"
    keys = [values for values in entry.key_values if values is not None]
    assert len(keys) == len(entry.key_values), f"request {entry.seq} has a point without keys"
    return keys


def landed_by_id(server: ImportAPIView, table: str, client_id: int = DEMO_CLIENT_ID) -> dict[t.Any, dict[str, t.Any]]:
    """Rows of a table keyed by their ``id``."""
    return {row["id"]: row for row in server.rows(client_id, table)}


def landed_keys_by(server: ImportAPIView, table: str, moment: float) -> set[t.Any]:
    """Single-key values of the points that had landed in ``table`` by ``moment`` (epoch seconds)."""
    landed: set[t.Any] = set()
    for entry in upserts(server, table=table):
        if entry.completed <= moment:
            landed.update(values[0] for values in entry.key_values or [] if values is not None)
    return landed


def table_mismatches(server: ImportAPIView, expected: t.Mapping[str, t.Mapping[t.Any, dict[str, t.Any]]]) -> list[str]:
    """Differences between the stored tables and ``expected`` (``{table: {id: row}}``; empty is good)."""
    problems: list[str] = []
    tables = server.tables(DEMO_CLIENT_ID)
    extra = sorted(set(tables) - set(expected))
    if extra:
        problems.append(f"unexpected tables {extra}")
    for table, want in expected.items():
        rows = server.rows(DEMO_CLIENT_ID, table) if table in tables else []
        got = {row.get("id"): row for row in rows}
        if len(rows) != len(got):
            problems.append(f"{table}: {len(rows) - len(got)} duplicate ids")
        missing = sorted(set(want) - set(got))
        if missing:
            problems.append(f"{table}: {len(missing)} keys missing, e.g. {missing[:5]}")
        wrong = sorted(k for k in set(want) & set(got) if got[k] != want[k])
        if wrong:
            k = wrong[0]
            problems.append(
                f"{table}: {len(wrong)} keys hold another version, e.g. id {k}: seq {got[k].get('seq')} "
                f"instead of {want[k]['seq']}"
            )
        unwanted = sorted(set(got) - set(want), key=str)
        if unwanted:
            problems.append(f"{table}: {len(unwanted)} unexpected keys")
    return problems


def records_landed(server: ImportAPIView, records: Records) -> int:
    """Input records (``(stream, record)`` with ``id`` and ``seq``) whose version, or a later one, is stored."""
    stored: dict[tuple[str, t.Any], int] = {}
    tables = server.tables(DEMO_CLIENT_ID)
    for table in {sanitise(stream) for stream, _ in records}:
        if table in tables:
            for row in server.rows(DEMO_CLIENT_ID, table):
                seq = row.get("seq")
                stored[(table, row.get("id"))] = seq if isinstance(seq, int) else -1
    return sum(1 for stream, rec in records if stored.get((sanitise(stream), rec["id"]), -1) >= rec["seq"])


# -- STATE against the request log -------------------------------------------------------------


@dataclass
class RunRecord:
    """One process of the target, as the STATE check sees it."""

    start_index: int  #: the input record it started from (a resumed run replays from a STATE)
    started: float  #: ``time.time()`` at its start
    states: list[tuple[float, t.Any]]  #: each STATE with the time it was read
    exit_code: int
    stderr: str
    stdout: str


def _keys_of(entry: RequestLogEntry) -> list[t.Any]:
    return [values[0] for values in entry.key_values or [] if values is not None]


def _without_retries_of_trickles(accepted: list[RequestLogEntry]) -> list[RequestLogEntry]:
    """Drop the retry of each trickled request: the same points, stored twice.

    The counting assumes one accepted request per batch of a key's versions; a request whose
    answer trickled was stored, then cut off and retried by the target, so its retry (the next
    accepted request with the same points) is the same batch again.
    """
    ordered = sorted(accepted, key=lambda e: e.arrived)
    dropped: set[int] = set()
    for index, entry in enumerate(ordered):
        if "trickle" not in (entry.fault or ""):
            continue
        for later in ordered[index + 1 :]:
            if id(later) not in dropped and later.table == entry.table and later.key_values == entry.key_values:
                dropped.add(id(later))
                break
    return [e for e in ordered if id(e) not in dropped]


def states_ahead(runs: t.Sequence[RunRecord], entries: list[RequestLogEntry], records: Records) -> list[str]:
    """Describe every STATE ``{"records": n}`` written before the data it covers had landed (empty is good).

    Args:
        runs: The target's runs, in order (each one's window ends where the next starts).
        entries: The server's request log (with ``key_values``).
        records: The input records ``(stream, record)``, each with ``id`` and ``seq``.

    Returns:
        One line per STATE read before the requests carrying its records completed.
    """
    problems: list[str] = []
    posts = [e for e in entries if e.method == "POST"]
    for index, run in enumerate(runs):
        window_end = runs[index + 1].started if index + 1 < len(runs) else float("inf")
        completed = _landing_times([e for e in posts if e.status == 201 and run.started <= e.arrived < window_end])
        # Positions (indexes into records) of each key's versions within this run's input.
        positions: dict[tuple[str, t.Any], list[int]] = defaultdict(list)
        for pos in range(run.start_index, len(records)):
            stream, rec = records[pos]
            positions[(sanitise(stream), rec["id"])].append(pos)
        for stamp, value in run.states:
            n = value.get("records") if isinstance(value, dict) else None
            if not isinstance(n, int):
                problems.append(f"run {index}: unexpected STATE {value!r}")
                continue
            if n < run.start_index:
                problems.append(f"run {index}: STATE {n} is before the replay start {run.start_index}")
            problem = _state_ahead(stamp, n, positions, completed, records)
            if problem is not None:
                problems.append(f"run {index}: {problem}")
    return problems


def _landing_times(accepted: list[RequestLogEntry]) -> dict[tuple[str | None, t.Any], list[float]]:
    """When each ``(table, key)``'s accepted requests landed, sorted."""
    completed: dict[tuple[str | None, t.Any], list[float]] = defaultdict(list)
    for entry in _without_retries_of_trickles(accepted):
        # A trickled answer's points were committed before its first byte went out (see
        # docs/local-api.md), so they landed when it arrived, not when the answer ended.
        landed = entry.arrived if "trickle" in (entry.fault or "") else entry.completed
        for key in _keys_of(entry):
            completed[(entry.table, key)].append(landed)
    for times in completed.values():
        times.sort()
    return completed


def _state_ahead(
    stamp: float,
    n: int,
    positions: dict[tuple[str, t.Any], list[int]],
    completed: dict[tuple[str | None, t.Any], list[float]],
    records: Records,
) -> str | None:
    """Describe the first key whose versions before record ``n`` had not landed at ``stamp``."""
    for slot, pos_list in positions.items():
        cut = bisect.bisect_left(pos_list, n)
        if cut == 0:
            continue  # no version of this key before the state
        times = completed.get(slot, [])
        # Versions this run may have sent after the last one before the state.
        later = len(pos_list) - cut
        need = max(1, len(times) - later)
        have = bisect.bisect_right(times, stamp)
        if have < need:
            return (
                f"STATE {{'records': {n}}} read at {stamp:.3f} before key {slot} "
                f"(version seq {records[pos_list[cut - 1]][1]['seq']}) had landed "
                f"({have} of >= {need} requests completed)"
            )
    return None


def retries_in(entries: list[RequestLogEntry]) -> int:
    """API requests answered with a transient failure (each one is retried, or ends the run)."""
    return sum(1 for e in entries if e.status in TRANSIENT and e.path.startswith("/v2/"))


# -- what the target printed ---------------------------------------------------------------------

_SUMMARY_ROW = re.compile(
    r"Load summary: table (\S+): records ([\d,]+), requests ([\d,]+), retries ([\d,]+), merged ([\d,]+), "
    r"seconds [\d.]+$"
)


def target_retries(stderr: str) -> int:
    """Retries the target itself counted in its end-of-run summary (0 without a summary).

    The server's log cannot see retries of requests that never reached it (connection refused
    while it was down), so figures take the larger of the two counts.
    """
    total = 0
    for line in stderr.splitlines():
        match = _SUMMARY_ROW.search(line.strip())
        if match:
            total += int(match.group(4).replace(",", ""))
    return total


def traceback_free_lines(stderr: str) -> list[str]:
    """Lines of stderr that are not part of a Python traceback."""
    out: list[str] = []
    in_tb = False
    for line in stderr.splitlines():
        if line.startswith("Traceback (most recent call last)"):
            in_tb = True
            continue
        if in_tb:
            if line.startswith((" ", "\t", "During handling", "The above")) or not line.strip():
                continue
            in_tb = False  # the exception line closes the traceback
            continue
        out.append(line)
    return out
