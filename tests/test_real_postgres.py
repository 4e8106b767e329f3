"""A real PostgreSQL, read by MeltanoLabs tap-postgres from PyPI, loaded by the target: every value checked.

The README's "Values" and "Known tap quirks" are promises about what a real tap writes and what
lands; this runs that tap against a real database (Debian's PostgreSQL, started on a free port)
and compares what the local server stored, as text, with what the database holds.
"""

from __future__ import annotations

import decimal
import json
import subprocess
import typing as t

import pytest

from target_rjmetrics.local_api import DEMO_CLIENT_ID
from tests.support.config import target_config
from tests.support.postgres import PostgresServer
from tests.support.real_taps import tap_executable
from tests.support.targets import TARGET_BIN, clean_env

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from target_rjmetrics.local_api import LocalImportAPI

pytestmark = pytest.mark.slow

TAP = ("meltanolabs-tap-postgres", "0.10.0", "tap-postgres")
ROWS = 3000

SETUP = f"""
create table quirks (
  id integer primary key,
  d double precision, r real, n numeric, big numeric(60,20),
  iv interval, t time, tz timetz, ts timestamp, tstz timestamptz, dt date,
  j jsonb, b boolean, txt text, arr integer[]
);
insert into quirks values
 (1, 1.7976931348623157e308, 3.4028235e38, 12345678901234567890.123456789,
  1234567890123456789012345678.12345678901234567890, '1 day 02:00', '12:30:00.25', '12:30:00+02',
  '2024-03-10 12:30:45.5', '2024-03-10 12:30:45.5+02', '2024-03-10', '{{"a": [1, 2.50]}}', true, 'café',
  '{{1,2}}'),
 (2, 'NaN', 'Infinity', 'NaN', null, '-3 months 4 days', '23:59:59.999999', null, '0001-01-01 00:00:00',
  '9999-12-31 23:59:59+00', '0001-01-01', 'null', false, E'tab\\there', '{{}}'),
 (3, '-Infinity', '-Infinity', '-1e-20', 0, '00:00:00.000001', '00:00', null, null, null, null, null, null,
  '', null);
create table orders (id bigint primary key, customer text, amount numeric(12,2), placed timestamptz);
insert into orders
  select i, 'customer ' || (i % 97), round((i * 1.37)::numeric, 2),
         timestamptz '2024-01-01 00:00+00' + i * interval '7 minutes'
  from generate_series(1, {ROWS}) as i;
"""  # noqa: S608 (the test's own fixed SQL)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.psql(SETUP)
        yield server
    finally:
        server.stop()


def _run_pipeline(server: PostgresServer, api: LocalImportAPI, tmp_path: Path) -> tuple[str, str]:
    """tap-postgres --discover, select the two tables, then tap | target; return (states, target's stderr)."""
    tap = tap_executable(*TAP)
    tap_config = tmp_path / "tap.json"
    tap_config.write_text(json.dumps(server.tap_config()))
    discovered = subprocess.run(
        [str(tap), "--config", str(tap_config), "--discover"], capture_output=True, text=True, check=True, timeout=120
    )
    catalog = json.loads(discovered.stdout)
    for stream in catalog["streams"]:
        selected = stream["tap_stream_id"] in ("public-quirks", "public-orders")
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = selected
    catalog_path = tmp_path / "catalog.json"
    catalog_path.write_text(json.dumps(catalog))
    target_config_path = tmp_path / "target.json"
    target_config_path.write_text(json.dumps(target_config(api)))
    with (tmp_path / "tap.log").open("wb") as tap_log:
        tap_process = subprocess.Popen(
            [str(tap), "--config", str(tap_config), "--catalog", str(catalog_path)],
            stdout=subprocess.PIPE,
            stderr=tap_log,
        )
        target = subprocess.run(
            [str(TARGET_BIN), "--config", str(target_config_path)],
            stdin=tap_process.stdout,
            capture_output=True,
            text=True,
            timeout=300,
            env=clean_env(),
            check=False,
        )
        assert tap_process.stdout is not None
        tap_process.stdout.close()
        assert tap_process.wait(timeout=60) == 0, (tmp_path / "tap.log").read_text()[-3000:]
    assert target.returncode == 0, target.stderr[-3000:]
    return target.stdout, target.stderr


def test_every_value_of_a_real_postgresql_lands_as_documented(
    postgres: PostgresServer, local_api: LocalImportAPI, tmp_path: Path
) -> None:
    states, stderr = _run_pipeline(postgres, local_api, tmp_path)

    rows = {
        row["id"]: row
        for row in (
            json.loads(text, parse_float=decimal.Decimal)
            for text in local_api.rows_json(DEMO_CLIENT_ID, "public_quirks")
        )
    }
    first, second, third = rows[1], rows[2], rows[3]
    # The largest double is finite: sent as a number, every digit kept.
    assert first["d"] == decimal.Decimal("1.7976931348623157e308")
    assert first["n"] == decimal.Decimal("12345678901234567890.123456789")
    assert first["big"] == decimal.Decimal("1234567890123456789012345678.12345678901234567890")
    # Known quirks: interval as an epoch date-time (text, no format), times as the tap wrote them.
    assert first["iv"] == "1970-01-02T02:00:00+00:00"
    assert second["iv"] == "1969-10-07T00:00:00+00:00"
    assert (first["t"], first["tz"], third["t"]) == ("12:30:00.250000", "12:30:00+02:00", "00:00:00")
    # Date-times in the API's format, in UTC; dates as they are; the extremes of the calendar.
    assert (first["ts"], first["tstz"], first["dt"]) == ("2024-03-10 12:30:45", "2024-03-10 10:30:45", "2024-03-10")
    assert (second["ts"], second["tstz"], second["dt"]) == ("0001-01-01 00:00:00", "9999-12-31 23:59:59", "0001-01-01")
    # NaN and infinities: the tap writes null itself, so nothing is counted as sent as null.
    assert second["d"] is second["r"] is second["n"] is third["d"] is None
    assert "sent as null" not in stderr
    assert json.loads(first["j"]) == {"a": [1, 2.5]} and first["arr"] == "[1,2]"
    assert (first["txt"], second["txt"], third["txt"]) == ("café", "tab\there", "")

    # The bigger table: every value equal to what the database holds.
    expected = postgres.psql(
        "select id, customer, amount, to_char(placed at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS') "
        "from orders order by id"
    )
    landed = sorted(
        (
            json.loads(text, parse_float=decimal.Decimal)
            for text in local_api.rows_json(DEMO_CLIENT_ID, "public_orders")
        ),
        key=lambda row: row["id"],
    )
    assert len(landed) == ROWS
    for line, row in zip(expected.splitlines(), landed, strict=True):
        order_id, customer, amount, placed = line.split("|")
        assert (row["id"], row["customer"], row["amount"], row["placed"]) == (
            int(order_id),
            customer,
            decimal.Decimal(amount),
            placed,
        ), line
    assert states.strip(), "no STATE was written"
    assert json.loads(states.splitlines()[-1])["bookmarks"]
