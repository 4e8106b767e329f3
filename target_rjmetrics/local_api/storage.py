"""SQLite storage of data points: one row per (client id, table, key values).

Durability: the database runs in WAL mode and every upsert is one transaction committed
before the server answers 201. With WAL, a committed transaction has been written to the
WAL file through the operating system before ``COMMIT`` returns, so killing the server
(even with SIGKILL) right after a 201 loses nothing. ``synchronous=FULL`` (the default)
adds an fsync per commit so a power cut loses nothing either; ``NORMAL`` skips that fsync
(faster, still safe against process kills) and can be chosen with ``--synchronous normal``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from target_rjmetrics.local_api.points import DataPoint

DB_FILENAME = "import-api.sqlite3"
SYNCHRONOUS_MODES = ("FULL", "NORMAL")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    id INTEGER PRIMARY KEY,          -- first insertion order of the key
    client_id INTEGER NOT NULL,
    tbl TEXT NOT NULL,
    key_json TEXT NOT NULL,          -- canonical JSON of the key values, in keys order
    keys_json TEXT NOT NULL,         -- the point's keys list (metadata, not data)
    data_json TEXT NOT NULL,         -- the point as pushed, without keys
    first_seen REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (client_id, tbl, key_json)
);
"""

_UPSERT = """
INSERT INTO points (client_id, tbl, key_json, keys_json, data_json, first_seen, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (client_id, tbl, key_json) DO UPDATE SET
    keys_json = excluded.keys_json,
    data_json = excluded.data_json,
    updated_at = excluded.updated_at
"""


def database_path(data_dir: Path | str) -> Path:
    """Return the database file inside ``data_dir``."""
    return Path(data_dir) / DB_FILENAME


class Storage:
    """Thread-safe point store: one writer connection under a lock, one reader connection.

    Args:
        data_dir: Directory holding the database file (created if missing); ``None`` keeps
            the database in memory (real SQL, gone when the server stops).
        synchronous: ``"FULL"`` or ``"NORMAL"`` (see the module docstring).
        create: Create the directory and schema; ``False`` opens an existing database only.
    """

    def __init__(
        self,
        data_dir: Path | str | None,
        *,
        synchronous: str = "FULL",
        create: bool = True,
    ) -> None:
        """Open (and create) the database."""
        synchronous = synchronous.upper()
        if synchronous not in SYNCHRONOUS_MODES:
            msg = f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}"
            raise ValueError(msg)
        self._write_lock = threading.Lock()
        self.path: Path | None
        if data_dir is None:
            self.path = None
            self._writer = self._connect(":memory:")
            # An in-memory database lives in its one connection, so reads share it.
            self._reader = self._writer
            self._read_lock = self._write_lock
        else:
            self.path = database_path(data_dir)
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            elif not self.path.exists():
                msg = f"no database at {self.path}"
                raise FileNotFoundError(msg)
            self._writer = self._connect(str(self.path))
            self._writer.execute("PRAGMA journal_mode=WAL")
            self._reader = self._connect(str(self.path))
            self._read_lock = threading.Lock()
        self._writer.execute(f"PRAGMA synchronous={synchronous}")
        if create:
            self._writer.executescript(_SCHEMA)

    @staticmethod
    def _connect(target: str) -> sqlite3.Connection:
        conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def upsert(self, client_id: int, table: str, points: Sequence[DataPoint]) -> None:
        """Write ``points`` to ``table`` of ``client_id`` in one committed transaction.

        Args:
            client_id: Owner of the table.
            table: Validated table name.
            points: Deduplicated points; each replaces any stored point with its key whole.
        """
        now = time.time()
        params = [(client_id, table, p.key_json, p.keys_json, p.data_json, now, now) for p in points]
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_UPSERT, params)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def tables(self, client_id: int | None = None) -> list[tuple[int, str, int]]:
        """Return ``(client_id, table, row count)`` for every table, optionally of one client."""
        sql = "SELECT client_id, tbl, COUNT(*) FROM points"
        args: tuple[Any, ...] = ()
        if client_id is not None:
            sql += " WHERE client_id = ?"
            args = (client_id,)
        sql += " GROUP BY client_id, tbl ORDER BY client_id, tbl"
        with self._read_lock:
            return [(int(c), str(t), int(n)) for c, t, n in self._reader.execute(sql, args)]

    def rows(self, client_id: int, table: str, *, with_keys: bool = False) -> list[dict[str, Any]]:
        """Return the stored points of a table, ordered by first insertion of their key.

        Args:
            client_id: Owner of the table.
            table: Table name.
            with_keys: Put each point's ``keys`` list back first, as it was pushed.

        Returns:
            The points as pushed, without ``keys`` unless ``with_keys``.
        """
        sql = "SELECT keys_json, data_json FROM points WHERE client_id = ? AND tbl = ? ORDER BY id"
        with self._read_lock:
            fetched = self._reader.execute(sql, (client_id, table)).fetchall()
        if not with_keys:
            return [json.loads(data) for _, data in fetched]
        return [{"keys": json.loads(keys), **json.loads(data)} for keys, data in fetched]

    def close(self) -> None:
        """Close the connections (the WAL is checkpointed by SQLite on the last close)."""
        with self._write_lock:
            if self._reader is not self._writer:
                with self._read_lock:
                    self._reader.close()
            self._writer.close()
