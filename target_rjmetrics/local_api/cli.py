"""Command line of the local Import API: ``rjmetrics-local-api serve|tables|dump``."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from target_rjmetrics.local_api.export import render
from target_rjmetrics.local_api.faults import Faults
from target_rjmetrics.local_api.points import is_valid_table_name
from target_rjmetrics.local_api.requestlog import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES
from target_rjmetrics.local_api.server import (
    DEMO_API_KEY,
    DEMO_CLIENT_ID,
    MAX_CLIENT_ID,
    LocalImportAPI,
)
from target_rjmetrics.local_api.storage import Storage, StorageVersionError, database_path

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

CREDENTIALS_ENV = "RJMETRICS_LOCAL_API_CREDENTIALS"
DEFAULT_DATA_DIR = ".local-api-data"
DEFAULT_PORT = 8765


def parse_credentials(text: str) -> dict[int, str]:
    """Parse ``"1:key,2:key2"`` into ``{1: "key", 2: "key2"}``.

    Raises:
        ValueError: An item is not ``client_id:key`` with a positive integer id and a key.
    """
    credentials: dict[int, str] = {}
    for raw_item in text.split(","):
        item = raw_item.strip()
        if not item:
            continue
        cid, sep, key = item.partition(":")
        cid = cid.strip()
        # The message never repeats the item: it holds a key.
        if not sep or not cid.isascii() or not cid.isdigit() or not key:
            msg = "credentials must look like CLIENT_ID:API_KEY[,CLIENT_ID:API_KEY...]"
            raise ValueError(msg)
        client_id = int(cid)
        if not 1 <= client_id <= MAX_CLIENT_ID:
            msg = "client ids in credentials must be positive integers below 2**63"
            raise ValueError(msg)
        credentials[client_id] = key
    if not credentials:
        msg = "credentials are empty"
        raise ValueError(msg)
    return credentials


_OFF = ("", "none", "null", "off")


def _positive_or_none(text: str) -> int | None:
    return None if text.lower() in _OFF else int(text)


def _float_or_none(text: str) -> float | None:
    return None if text.lower() in _OFF else float(text)


def _str_or_none(text: str) -> str | None:
    return None if text.lower() in _OFF else text


def _ghost_answer(text: str) -> str | int:
    return int(text) if text.strip().isdigit() else text.strip().lower()


def _statuses(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split(",") if s.strip())


def _add_fault_flags(parser: argparse.ArgumentParser) -> None:
    d = Faults()
    g = parser.add_argument_group("fault injection (changeable later via PUT /_local/faults)")
    g.add_argument("--seed", type=int, default=d.seed, help="seed of the fault generator")
    g.add_argument("--error-rate", type=float, default=d.error_rate, help="fraction answered 5xx")
    g.add_argument(
        "--error-statuses",
        type=_statuses,
        default=d.error_statuses,
        help="comma-separated 5xx statuses picked by --error-rate (default 500,502,503,504)",
    )
    g.add_argument(
        "--rate-limit-rate", type=float, default=d.rate_limit_rate, help="fraction answered 429 with Retry-After"
    )
    g.add_argument(
        "--retry-after", type=int, default=d.retry_after, help="Retry-After seconds of every 429 (default 1)"
    )
    g.add_argument("--latency-ms", type=float, default=d.latency_ms, help="added latency")
    g.add_argument("--jitter-ms", type=float, default=d.jitter_ms, help="uniform random extra latency, 0..N ms")
    g.add_argument(
        "--drop-rate", type=float, default=d.drop_rate, help="fraction of connections closed without an answer"
    )
    g.add_argument(
        "--max-in-flight",
        type=_positive_or_none,
        default=d.max_in_flight,
        help="429 beyond this many requests in flight (default: no limit)",
    )
    g.add_argument(
        "--max-body-bytes",
        type=int,
        default=d.max_body_bytes,
        help="413 above this body size (default 5 MiB, the contract's limit)",
    )
    g.add_argument(
        "--fail-after",
        type=_positive_or_none,
        default=d.fail_after,
        help="after N accepted upserts answer every request with --fail-status",
    )
    g.add_argument("--fail-status", type=int, default=d.fail_status, help="default 503")
    _add_hostile_flags(parser)


def _add_selection_flags(g: argparse._ArgumentGroup, name: str, what: str) -> None:
    d = Faults()
    flag = name.replace("_", "-")
    g.add_argument(
        f"--{flag}-rate",
        type=float,
        metavar="P",
        default=getattr(d, f"{name}_rate"),
        help=f"probability that a counted {what} is hit (seeded; default 1)",
    )
    g.add_argument(
        f"--{flag}-skip",
        type=int,
        metavar="N",
        default=getattr(d, f"{name}_skip"),
        help=f"let the first N counted {what}s through (default 0)",
    )
    g.add_argument(
        f"--{flag}-count",
        type=_positive_or_none,
        metavar="N",
        default=getattr(d, f"{name}_count"),
        help=f"hit at most N {what}s (default: no limit)",
    )
    if what == "upsert":
        g.add_argument(
            f"--{flag}-table",
            type=_str_or_none,
            default=None,
            metavar="TABLE",
            help="count only upserts of this table (default: every table)",
        )


def _add_hostile_flags(parser: argparse.ArgumentParser) -> None:
    d = Faults()
    g = parser.add_argument_group(
        "hostile-network faults (each is off until its first flag is given; they hit only "
        "requests that would otherwise succeed; see docs/local-api.md)"
    )
    g.add_argument(
        "--upsert-status",
        type=_positive_or_none,
        default=None,
        metavar="STATUS",
        help="answer upserts with this status instead of 201 and store nothing: "
        "200, 202, 203, 204, 301, 302, 303, 307 or 308",
    )
    _add_selection_flags(g, "upsert_status", "upsert")
    g.add_argument(
        "--authenticate-status",
        type=_positive_or_none,
        default=None,
        metavar="STATUS",
        help="answer valid authenticate requests with this status instead of 200: "
        "201, 202, 203, 204, 301, 302, 303, 307 or 308",
    )
    _add_selection_flags(g, "authenticate_status", "authenticate request")
    g.add_argument(
        "--redirect-url",
        type=_str_or_none,
        default=None,
        metavar="URL",
        help="base URL of redirect Locations (the path and query, apikey included, "
        "are appended; default: this server, relative Location)",
    )
    g.add_argument(
        "--trickle-interval",
        type=_float_or_none,
        default=None,
        metavar="S",
        help="send selected answers one byte every S seconds (at most 60)",
    )
    _add_selection_flags(g, "trickle", "upsert")
    g.add_argument(
        "--trickle-authenticate", action="store_true", help="also trickle every answer to a valid authenticate request"
    )
    g.add_argument(
        "--ghost-delay",
        type=_float_or_none,
        default=None,
        metavar="S",
        help="store selected upserts S seconds after they arrived (in the "
        "background, overwriting newer versions) instead of now",
    )
    g.add_argument(
        "--ghost-answer",
        type=_ghost_answer,
        default=d.ghost_answer,
        metavar="hold|drop|5xx",
        help="what a ghost's client sees: hold (no answer until it gives up; "
        "default), drop (connection closed) or a 5xx status such as 504",
    )
    g.add_argument(
        "--ghost-hold-max",
        type=float,
        default=d.ghost_hold_max,
        metavar="S",
        help=f"longest a held ghost waits for its client to give up, then 504 (default {d.ghost_hold_max:g} s)",
    )
    _add_selection_flags(g, "ghost", "upsert")


def _faults_from(args: argparse.Namespace) -> Faults:
    # Every Faults field has a flag of the same name (a test keeps them in step).
    return Faults(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Faults)})


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``rjmetrics-local-api``."""
    parser = argparse.ArgumentParser(
        prog="rjmetrics-local-api",
        description="A local RJMetrics Import API (v2): durable on SQLite, with a sandbox mode, "
        "fault injection and inspection. Not part of the real API: for local development.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the server until interrupted")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface (default 127.0.0.1); requests must name a loopback host or this one in their Host header",
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also accept this name in the Host header (repeatable)",
    )
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)"
    )
    store = serve.add_mutually_exclusive_group()
    store.add_argument(
        "--data-dir", default=DEFAULT_DATA_DIR, help=f"directory of the SQLite database (default {DEFAULT_DATA_DIR})"
    )
    store.add_argument("--in-memory", action="store_true", help="keep data in memory only (lost on exit)")
    serve.add_argument("--sandbox", action="store_true", help="validate and answer like production but store nothing")
    serve.add_argument(
        "--sandbox-port", type=int, default=None, help="also serve a sandbox instance (same credentials) on this port"
    )
    serve.add_argument(
        "--credentials",
        default=None,
        help=f"CLIENT_ID:API_KEY[,...]; also ${CREDENTIALS_ENV}; default: the demo "
        f"pair {DEMO_CLIENT_ID}:{DEMO_API_KEY}",
    )
    serve.add_argument(
        "--synchronous",
        choices=["full", "normal"],
        default="full",
        help="SQLite synchronous mode: full survives power loss, normal only process kills (default full)",
    )
    serve.add_argument(
        "--ready-file",
        type=Path,
        default=None,
        help="write the port (and the sandbox port on a second line) here once listening",
    )
    serve.add_argument(
        "--log-point-keys", action="store_true", help="record each point's key values in the request log"
    )
    serve.add_argument(
        "--access-log", action="store_true", help="print one line per API request to stderr (never the API key)"
    )
    serve.add_argument(
        "--max-log-entries",
        type=int,
        default=DEFAULT_MAX_ENTRIES,
        metavar="N",
        help=f"request-log entries kept in memory (default {DEFAULT_MAX_ENTRIES})",
    )
    serve.add_argument(
        "--max-log-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        metavar="BYTES",
        help=f"memory the request log may take, estimated per entry (default {DEFAULT_MAX_BYTES}, 64 MiB)",
    )
    _add_fault_flags(serve)

    tables = sub.add_parser("tables", help="list tables with row counts")
    tables.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    tables.add_argument("--client-id", type=int, default=None, help="only this client's tables")

    dump = sub.add_parser("dump", help="print a table's stored points")
    dump.add_argument("table")
    dump.add_argument("--client-id", type=int, default=DEMO_CLIENT_ID)
    dump.add_argument("--format", choices=["jsonl", "csv", "json"], default="jsonl")
    dump.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    dump.add_argument("--with-keys", action="store_true", help="include each point's keys list")
    return parser


def _describe_credentials(credentials: dict[int, str]) -> str:
    if credentials == {DEMO_CLIENT_ID: DEMO_API_KEY}:
        return f"client id {DEMO_CLIENT_ID}, key {DEMO_API_KEY}"
    # User-supplied keys are secrets: never print them.
    ids = ", ".join(str(c) for c in sorted(credentials))
    return f"client ids {ids}, keys not shown"


def _write_ready_file(path: Path, ports: list[int]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{p}\n" for p in ports), encoding="utf-8")
    tmp.replace(path)


def _servers_from(args: argparse.Namespace) -> tuple[dict[int, str], list[LocalImportAPI]]:
    """The credentials and the servers the flags ask for (not started).

    Raises:
        ValueError: A flag's value is refused.
    """
    # An explicitly empty --credentials is a mistake (an unset shell variable), not "demo";
    # an empty environment variable counts as unset, as is usual.
    raw = args.credentials if args.credentials is not None else os.environ.get(CREDENTIALS_ENV)
    if raw is not None and (args.credentials is not None or raw):
        credentials = parse_credentials(raw)
    else:
        credentials = {DEMO_CLIENT_ID: DEMO_API_KEY}
    faults = _faults_from(args)
    common: dict[str, Any] = {
        "credentials": credentials,
        "host": args.host,
        "log_point_keys": args.log_point_keys,
        "synchronous": args.synchronous,
        "access_log": sys.stderr if args.access_log else None,
        "max_log_entries": args.max_log_entries,
        "max_log_bytes": args.max_log_bytes,
        "allowed_hosts": args.allow_host,
    }
    data_dir = None if args.in_memory or args.sandbox else Path(args.data_dir)
    servers = [LocalImportAPI(data_dir, sandbox=args.sandbox, faults=faults, port=args.port, **common)]
    if args.sandbox_port is not None:
        servers.append(LocalImportAPI(None, sandbox=True, faults=faults, port=args.sandbox_port, **common))
    return credentials, servers


def _serve(args: argparse.Namespace) -> int:
    try:
        credentials, servers = _servers_from(args)
    except ValueError as exc:
        print(f"rjmetrics-local-api: error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    started: list[LocalImportAPI] = []
    try:
        for server in servers:
            started.append(server.start())  # noqa: PERF401 (one that fails leaves those started before it here)
        who = _describe_credentials(credentials)
        for server in started:
            if server.sandbox:
                where = "sandbox, stores nothing"
            elif server.data_dir is None:
                where = "in memory"
            else:
                where = f"data in {database_path(server.data_dir)}"
            print(f"Import API listening on {server.base_url} ({who}; {where})", flush=True)
        print(f"Inspect: {started[0].root_url}/_local/  Stop: Ctrl-C", flush=True)
        if args.ready_file is not None:
            _write_ready_file(args.ready_file, [s.port for s in started])
        stop.wait()
    except (OSError, StorageVersionError) as exc:
        print(f"rjmetrics-local-api: error: {exc}", file=sys.stderr)
        return 1
    finally:
        for server in started:
            server.stop()
    return 0


def _open_existing(data_dir: str) -> Storage | int:
    """The database of ``data_dir``, or the exit status when there is none (0) or a newer release wrote it (1)."""
    try:
        return Storage(data_dir, create=False)
    except FileNotFoundError:
        print(f"No data yet: {database_path(data_dir)} does not exist.", file=sys.stderr)
        return 0
    except StorageVersionError as exc:
        print(f"rjmetrics-local-api: error: {exc}", file=sys.stderr)
        return 1


def _tables(args: argparse.Namespace) -> int:
    storage = _open_existing(args.data_dir)
    if isinstance(storage, int):
        return storage
    try:
        listing = storage.tables(args.client_id)
    finally:
        storage.close()
    if not listing:
        print("No tables." if args.client_id is None else f"No tables of client {args.client_id}.")
        return 0
    width = max(len(t) for _, t, _ in listing)
    print(f"{'client_id':>9}  {'table':<{width}}  rows")
    for client_id, table, count in listing:
        print(f"{client_id:>9}  {table:<{width}}  {count}")
    return 0


#: Table names listed in "no such table" before "and N more".
_TABLES_SHOWN = 10


def _no_such_table(table: str, client_id: int, listing: list[tuple[int, str, int]], db: Path) -> str:
    mine = [t for c, t, _ in listing if c == client_id]
    if mine:
        shown = ", ".join(mine[:_TABLES_SHOWN])
        more = f" and {len(mine) - _TABLES_SHOWN} more" if len(mine) > _TABLES_SHOWN else ""
        known = f"its tables: {shown}{more} (list them with `rjmetrics-local-api tables`)"
    else:
        others = sorted({c for c, _, _ in listing})
        known = (
            f"it has no tables; tables exist for client id(s) "
            f"{', '.join(str(c) for c in others[:_TABLES_SHOWN])} (use --client-id)"
            if others
            else "the database has no tables yet"
        )
    if not is_valid_table_name(table):
        known += "; table names are letters, digits and underscores"
    return f"no table {table[:100]!r} of client {client_id} in {db}: {known}"


def _dump(args: argparse.Namespace) -> int:
    storage = _open_existing(args.data_dir)
    if isinstance(storage, int):
        return 1
    try:
        rows = storage.rows_json(args.client_id, args.table, with_keys=args.with_keys)
        # A table exists only once a point landed, so no rows means no such table.
        listing = storage.tables() if not rows else []
    finally:
        storage.close()
    if not rows:
        reason = _no_such_table(args.table, args.client_id, listing, database_path(args.data_dir))
        print(f"rjmetrics-local-api: error: {reason}", file=sys.stderr)
        return 1
    text, _ = render(rows, args.format)
    sys.stdout.write(text if args.format != "json" else text + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI."""
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "tables":
        return _tables(args)
    return _dump(args)
