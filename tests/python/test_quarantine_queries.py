"""infra/sql/quarantine_queries.sql on the local Snowflake: rejections by reason and day, the
latest examples per reason, rejections by merchant and reason.

The rows go into a fresh table made from infra/sql/raw_events_rejected.sql (so no other test's
rejections count), and the file's queries run with only the table name replaced; each result is
compared exactly with what the inserted rows give. The verbatim queries also run on the loader's
own TRACKLAYER.EVENTS.RAW_EVENTS_REJECTED.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from snowflake.connector.connection import SnowflakeConnection

from tracklayer_local.harness import REPO, connect, snowflake_port

SQL_DIR = REPO / "infra" / "sql"
LOADER_TABLE = "tracklayer.events.raw_events_rejected"


def statements(path: Path) -> list[str]:
    """The SQL statements of a file, comment-only lines dropped."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


@pytest.fixture(scope="module")
def sf(stack_env: dict[str, str]) -> Iterator[SnowflakeConnection]:
    conn = connect(snowflake_port(stack_env))
    yield conn
    conn.close()


def select(sf: SnowflakeConnection, sql: str) -> list[tuple[Any, ...]]:
    cur = sf.cursor()
    cur.execute(sql)
    return [tuple(v.replace(tzinfo=None) if isinstance(v, datetime) else v for v in row) for row in cur.fetchall()]


def day(n: int, hour: int, minute: int = 0) -> datetime:
    """n days before today (UTC), at hour:minute."""
    today = datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=n) + timedelta(hours=hour, minutes=minute)


@pytest.fixture(scope="module")
def rejected(sf: SnowflakeConnection, schema: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """A fresh quarantine table with rows over 40 days; returns (table, facts)."""
    run = uuid.uuid4().hex[:8]
    table = f"TRACKLAYER.{schema}.REJECTED_{run.upper()}"
    ddl = (SQL_DIR / "raw_events_rejected.sql").read_text().replace("TRACKLAYER.EVENTS.RAW_EVENTS_REJECTED", table)
    assert table in ddl
    sf.cursor().execute(ddl)
    a, b = f"mrc_a_{run}", f"mrc_b_{run}"
    long_text = '{"event_id":"' + "x" * 1990 + '"}'
    rows = [
        # invalid_field today, 01:00 ... 07:00: A five times, B twice; the latest has a long text
        *[(day(0, h), f"m-if-{h}", f"e-if-{h}", a if h <= 5 else b, "invalid_field", f"value: bad {h}",
           long_text if h == 7 else f'{{"n":{h}}}') for h in range(1, 8)],
        (day(1, 10), "m-mf-1", "e-mf-1", a, "missing_field", "event_name is missing or null", '{"a":1}'),
        (day(1, 11), "m-mf-2", None, None, "missing_field", "merchant_id is missing or null", '{"b":2}'),
        (day(3, 12), "m-sr-1", "e-sr-1", a, "snowflake_rejected", "Snowflake refused this row", '{"c":3}'),
        (day(10, 12), "m-ij-1", None, b, "invalid_json", "event is not valid JSON", '{"d":'),
        (day(40, 12), "m-eb-1", None, a, "empty_body", "message body is empty", ""),
    ]  # fmt: skip
    cur = sf.cursor()
    for row in rows:
        cur.execute(
            f"INSERT INTO {table} (REJECTED_AT, SOURCE_MESSAGE_ID, EVENT_ID, MERCHANT_ID, REASON, DETAIL, RAW_TEXT) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (row[0].strftime("%Y-%m-%d %H:%M:%S"), *row[1:]),
        )
    yield table, {"a": a, "b": b, "long_text": long_text}
    sf.cursor().execute(f"DROP TABLE IF EXISTS {table}")


def queries(table: str) -> list[str]:
    found = statements(SQL_DIR / "quarantine_queries.sql")
    assert len(found) == 3
    assert all(LOADER_TABLE in q for q in found)
    return [q.replace(LOADER_TABLE, table) for q in found]


def test_rejections_by_reason_and_day(sf: SnowflakeConnection, rejected: tuple[str, dict[str, Any]]) -> None:
    table, _facts = rejected
    by_day, _, _ = queries(table)
    assert select(sf, by_day) == [
        (day(0, 0), "invalid_field", 7, 2),
        (day(1, 0), "missing_field", 2, 1),
        (day(3, 0), "snowflake_rejected", 1, 1),
        (day(10, 0), "invalid_json", 1, 1),
    ]


def test_latest_five_examples_per_reason(sf: SnowflakeConnection, rejected: tuple[str, dict[str, Any]]) -> None:
    table, facts = rejected
    a, b = facts["a"], facts["b"]
    _, examples, _ = queries(table)
    got = select(sf, examples)
    assert [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in got] == [
        ("invalid_field", day(0, 7), b, "e-if-7", "m-if-7", "value: bad 7"),
        ("invalid_field", day(0, 6), b, "e-if-6", "m-if-6", "value: bad 6"),
        ("invalid_field", day(0, 5), a, "e-if-5", "m-if-5", "value: bad 5"),
        ("invalid_field", day(0, 4), a, "e-if-4", "m-if-4", "value: bad 4"),
        ("invalid_field", day(0, 3), a, "e-if-3", "m-if-3", "value: bad 3"),
        ("missing_field", day(1, 11), None, None, "m-mf-2", "merchant_id is missing or null"),
        ("missing_field", day(1, 10), a, "e-mf-1", "m-mf-1", "event_name is missing or null"),
        ("snowflake_rejected", day(3, 12), a, "e-sr-1", "m-sr-1", "Snowflake refused this row"),
    ]
    assert got[0][6] == facts["long_text"][:1000] and len(got[0][6]) == 1000
    assert got[1][6] == '{"n":6}'


def test_rejections_by_merchant_and_reason(sf: SnowflakeConnection, rejected: tuple[str, dict[str, Any]]) -> None:
    table, facts = rejected
    a, b = facts["a"], facts["b"]
    _, _, by_merchant = queries(table)
    assert select(sf, by_merchant) == [
        (a, "invalid_field", 5, day(0, 5)),
        (b, "invalid_field", 2, day(0, 7)),
        (a, "missing_field", 1, day(1, 10)),
        (a, "snowflake_rejected", 1, day(3, 12)),
        (None, "missing_field", 1, day(1, 11)),
    ]


def test_the_verbatim_queries_run_on_the_loaders_table(sf: SnowflakeConnection) -> None:
    sf.cursor().execute((SQL_DIR / "raw_events_rejected.sql").read_text())
    for query in statements(SQL_DIR / "quarantine_queries.sql"):
        select(sf, query)
