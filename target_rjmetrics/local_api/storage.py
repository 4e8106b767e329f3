"""SQLite storage of data points: one row per (client id, table, key values).

Durability: the database runs in WAL mode and every upsert is one transaction committed
before the server answers 201. With WAL, a committed transaction has been written to the
WAL file through the operating system before ``COMMIT`` returns, so killing the server
(even with SIGKILL) right after a 201 loses nothing. ``synchronous=FULL`` (the default)
adds an fsync per commit so a power cut loses nothing either; ``NORMAL`` skips that fsync
(faster, still safe against process kills) and can be chosen with ``--synchronous normal``.

Storage versions (SQLite's ``user_version``; a server upgrades an older database when it opens
it, in one transaction, and refuses a newer one):

- 0: earlier releases (they left ``user_version`` unset). ``key_json`` held an integer exactly,
  so ``12345678901234567`` and ``12345678901234568`` were two keys, and ``data_json`` held each
  number as Python's ``float`` or ``int`` wrote it (``1.2345678901234569e+27``).
- 1: ``key_json`` identifies numbers as IEEE doubles, as the contract's "Key identity" says
  (:func:`~target_rjmetrics.local_api.points.key_identity_json`), and ``data_json`` holds each
  number as the client wrote it. The upgrade from 0 re-keys the rows of such integers and merges
  those that are now one key; the numbers version 0 stored stay as it wrote them.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from target_rjmetrics.local_api import jsontext
from target_rjmetrics.local_api.points import key_identity_json

if TYPE_CHECKING:
    from collections.abc import Sequence

    from target_rjmetrics.local_api.points import DataPoint

DB_FILENAME = "import-api.sqlite3"
SYNCHRONOUS_MODES = ("FULL", "NORMAL")
#: The storage version this release writes (see the module docstring).
STORAGE_VERSION = 1

logger = logging.getLogger(__name__)

_CREATE_POINTS = """
CREATE TABLE points (
    id INTEGER PRIMARY KEY,          -- first insertion order of the key
    client_id INTEGER NOT NULL,
    tbl TEXT NOT NULL,
    key_json TEXT NOT NULL,          -- canonical JSON of the key values, in keys order
    keys_json TEXT NOT NULL,         -- the point's keys list (metadata, not data)
    data_json TEXT NOT NULL,         -- the point as pushed, without keys, numbers as sent
    first_seen REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (client_id, tbl, key_json)
)
"""
# Of the keys storage version 0 wrote, only those with an integer beyond 2**53 (16 digits or
# more) are written otherwise now; every other key value it wrote as version 1 does.
_MAYBE_REKEYED = "*" + "[0-9]" * 16 + "*"


class StorageVersionError(RuntimeError):
    """The database was written by a newer release, whose format this one does not know."""


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
            self._reader = self._connect(str(self.path))
            self._read_lock = threading.Lock()
        try:
            # Before anything is written (WAL mode too): a newer release's database is left as it is.
            self._check_version(self._writer)
            if self.path is not None:
                self._writer.execute("PRAGMA journal_mode=WAL")
            self._writer.execute(f"PRAGMA synchronous={synchronous}")
            if create:
                self._create_or_upgrade()
        except BaseException:
            self.close()
            raise

    def _check_version(self, conn: sqlite3.Connection) -> int:
        """Return the storage version of the database; refuse one newer than this release's."""
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > STORAGE_VERSION:
            where = f"the data directory {self.path.parent}" if self.path is not None else "the database"
            msg = (
                f"{where} was written by a newer release of target-rjmetrics (storage version "
                f"{version}; this release knows versions up to {STORAGE_VERSION}): upgrade "
                "target-rjmetrics to read it, or use another --data-dir"
            )
            raise StorageVersionError(msg)
        return version

    def _create_or_upgrade(self) -> None:
        """Create the table in a new database, or upgrade an older one, in one transaction."""
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._check_version(conn)
            exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'points'").fetchone()
            upgraded = None
            if exists is None:
                conn.execute(_CREATE_POINTS)
            elif version < STORAGE_VERSION:
                upgraded = _rekey_version_0(conn)
            if version != STORAGE_VERSION:
                conn.execute(f"PRAGMA user_version = {STORAGE_VERSION}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        if upgraded is not None:
            rekeyed, merged = upgraded
            logger.warning(
                "Upgraded %s from storage version %d to %d: integer keys beyond 2**53 are now identified as "
                "the doubles they read as (%d row(s) re-keyed, %d merged into a row whose key is now the same: "
                "the version written last is kept, at the place of the first)",
                self.path,
                version,
                STORAGE_VERSION,
                rekeyed,
                merged,
            )

    @staticmethod
    def _connect(target: str) -> sqlite3.Connection:
        conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def upsert(self, client_id: int, table: str, points: Sequence[DataPoint]) -> None:
        """Write ``points`` to ``table`` of ``client_id`` in one committed transaction."""
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
        """Return the stored points of a table, ordered by first insertion of their key."""
        return [json.loads(text) for text in self.rows_json(client_id, table, with_keys=with_keys)]

    def rows_json(self, client_id: int, table: str, *, with_keys: bool = False) -> list[str]:
        """Return the stored points of a table as JSON text, ordered by first insertion of their key."""
        sql = "SELECT keys_json, data_json FROM points WHERE client_id = ? AND tbl = ? ORDER BY id"
        with self._read_lock:
            fetched = self._reader.execute(sql, (client_id, table)).fetchall()
        if not with_keys:
            return [data for _, data in fetched]
        # data_json is a compact JSON object ("{...}"): put "keys" in front of its fields.
        return ['{"keys":' + keys + ("," + data[1:] if data != "{}" else "}") for keys, data in fetched]

    def close(self) -> None:
        """Close the connections (the WAL is checkpointed by SQLite on the last close; idempotent)."""
        with self._write_lock:
            if self._reader is not self._writer:
                with self._read_lock:
                    self._reader.close()
            self._writer.close()


def _rekey_version_0(conn: sqlite3.Connection) -> tuple[int, int]:
    """Re-key the rows storage version 0 wrote, in the caller's transaction.

    A row whose key is written otherwise now gets that key; rows whose keys are now one become
    one row, at the place of the first inserted, with the content (the point, its ``keys``) of
    the one written last, as if its pushes had come to a server of this release.
    """
    sql = "SELECT id, client_id, tbl, key_json FROM points WHERE key_json GLOB ?"
    now_one: dict[tuple[int, str, str], list[int]] = {}
    for row_id, client_id, tbl, key_json in conn.execute(sql, (_MAYBE_REKEYED,)).fetchall():
        new_key = key_identity_json(cast("list[object]", jsontext.loads(key_json)))
        if new_key != key_json:
            now_one.setdefault((client_id, tbl, new_key), []).append(row_id)
    rekeyed = merged = 0
    for (client_id, tbl, new_key), rekeyed_ids in now_one.items():
        # A row that already has the new key (its old one, written the same way) joins them.
        holder = conn.execute(
            "SELECT id FROM points WHERE client_id = ? AND tbl = ? AND key_json = ?", (client_id, tbl, new_key)
        ).fetchone()
        ids = [*rekeyed_ids, *([holder[0]] if holder is not None else [])]
        marks = ",".join("?" * len(ids))
        rows = conn.execute(
            f"SELECT id, keys_json, data_json, first_seen, updated_at FROM points WHERE id IN ({marks})",  # noqa: S608 (only placeholders)
            ids,
        ).fetchall()
        place = min(ids)
        _, keys_json, data_json, _, updated_at = max(rows, key=lambda row: (row[4], row[0]))
        first_seen = min(row[3] for row in rows)
        conn.execute(f"DELETE FROM points WHERE id IN ({marks}) AND id != ?", [*ids, place])  # noqa: S608 (only placeholders)
        conn.execute(
            "UPDATE points SET key_json = ?, keys_json = ?, data_json = ?, first_seen = ?, updated_at = ? WHERE id = ?",
            (new_key, keys_json, data_json, first_seen, updated_at, place),
        )
        rekeyed += len(rekeyed_ids)
        merged += len(ids) - 1
    return rekeyed, merged
