"""Run one query against the local Snowflake through the drivers' protocol and print JSON.

    .venv/bin/python -m tracklayer_local.sfquery [--port 8085] [--database TRACKLAYER] [--schema EVENTS] "SELECT ..."

Prints one line: {"columns": [...], "rows": [[...], ...]}. Values: strings as-is, Decimal via
str() (e.g. "19.9900"), datetime as "YYYY-MM-DD HH:MM:SS.fff" (milliseconds, any time zone
dropped), None as null, everything else via str() (so integers print as "2" and booleans as
"True"). A failing query prints the error on stderr and exits with status 1.

Rust integration tests call this to read back what the loader wrote through the SQL API.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import snowflake.connector

from tracklayer_local.harness import query


def main() -> int:
    parser = argparse.ArgumentParser(description="Query the local Snowflake; print JSON.")
    parser.add_argument("sql")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SNOWFLAKE_PORT", "8085")))
    parser.add_argument("--database", default="TRACKLAYER")
    parser.add_argument("--schema", default="EVENTS")
    args = parser.parse_args()
    try:
        result = query(args.sql, args.port, args.database, args.schema)
    except snowflake.connector.errors.Error as e:
        print(f"sfquery: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
