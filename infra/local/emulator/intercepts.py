"""Intercepted statements (warehouses, context functions, no-op DCL): answered from the emulator's state.

SQL API v2: what fakesnow cannot run
------------------------------------
* Intercepted statements (fakesnow cannot run them): ``SHOW WAREHOUSES [LIKE '<pattern>']``,
  ``CREATE [OR REPLACE] WAREHOUSE [IF NOT EXISTS] <name> [WITH] <props>``, ``ALTER WAREHOUSE <name>
  SUSPEND | RESUME [IF SUSPENDED] | SET <props>`` (props AUTO_SUSPEND, AUTO_RESUME,
  WAREHOUSE_SIZE, INITIALLY_SUSPENDED), ``USE WAREHOUSE|ROLE <name>`` and GRANT/REVOKE/CREATE ROLE
  (succeed, no effect), ``SELECT CURRENT_ROLE(), CURRENT_WAREHOUSE(), CURRENT_USER(),
  CURRENT_ACCOUNT(), CURRENT_DATABASE(), CURRENT_SCHEMA()`` (the resolved context, rule 1),
  ``SELECT SYSTEM$GET_LOGIN_FAILURE_DETAILS(...)`` and its JSON_EXTRACT_PATH_TEXT (rule 3),
  ``CALL SYSTEM$WAIT(...)`` (rule 7).
  Inside other statements CURRENT_ROLE()/CURRENT_WAREHOUSE()/CURRENT_USER()/CURRENT_ACCOUNT()
  are replaced by literals.

Rule 7
------
``CALL SYSTEM$WAIT(<amount>[, '<unit>'])`` (or ``SELECT`` instead of ``CALL``) waits that
long, then answers one row, column ``SYSTEM$WAIT``, ``waited <amount> <unit>`` with the unit
in lower case (``waited 10 seconds``, ``waited 2 minutes``); units DAYS, HOURS, MINUTES,
SECONDS (the default), MILLISECONDS, MICROSECONDS, NANOSECONDS, any case
(https://docs.snowflake.com/en/sql-reference/functions/system_wait). "SYSTEM$WAIT checks
periodically for cancellation" (same page): a cancel or the request's ``timeout`` ends the
wait at once (000604 / 408 000630, as for any statement). It is how tests and
``snowflake_check.py`` make a statement reliably slow without scanning data. Only that
whole-statement form is intercepted (SYSTEM$WAIT inside another statement, or another unit,
reaches fakesnow, which refuses it with 002003, not Snowflake's code). UNCONFIRMED: the text
for an amount of 1 or a fraction (the docs show only plurals of whole numbers), and whether
Snowflake needs a warehouse for it (here it needs none).
"""

from __future__ import annotations

import json
import re

from tracklayer_local.emulator.auth import LoginFailures
from tracklayer_local.emulator.engine import Cancelled
from tracklayer_local.emulator.errors import ApiError, sql_error
from tracklayer_local.emulator.requests import DML_KINDS, Context, SqlRequest, no_context_named
from tracklayer_local.emulator.results import Result, column_info, status_result, text_result
from tracklayer_local.emulator.settings import Settings, Warehouse
from tracklayer_local.emulator.statements import Statement

NAME = r'("[^"]+"|[A-Za-z_][\w$]*)'
END = r"\s*;?\s*$"
SHOW_WAREHOUSES = re.compile(r"^\s*SHOW\s+WAREHOUSES(?:\s+LIKE\s+'((?:[^']|'')*)')?" + END, re.I)
CREATE_WAREHOUSE = re.compile(
    r"^\s*CREATE\s+(OR\s+REPLACE\s+)?WAREHOUSE\s+(IF\s+NOT\s+EXISTS\s+)?" + NAME + r"(?:\s+WITH\b)?(.*?)" + END,
    re.I | re.S,
)
ALTER_WAREHOUSE = re.compile(
    r"^\s*ALTER\s+WAREHOUSE\s+(IF\s+EXISTS\s+)?" + NAME + r"\s+(SUSPEND|RESUME(?:\s+IF\s+SUSPENDED)?|SET\s+.*?)" + END,
    re.I | re.S,
)
USE_CONTEXT = re.compile(r"^\s*USE\s+(WAREHOUSE|ROLE|SECONDARY\s+ROLES)\s+" + NAME + END, re.I)
NOOP_DCL = re.compile(r"^\s*(GRANT|REVOKE|CREATE\s+(OR\s+REPLACE\s+)?ROLE)\b", re.I)
CONTEXT_FN = r"CURRENT_(?:ROLE|WAREHOUSE|USER|ACCOUNT|DATABASE|SCHEMA)\s*\(\s*\)"
CONTEXT_SELECT = re.compile(rf"^\s*SELECT\s+({CONTEXT_FN}(?:\s*,\s*{CONTEXT_FN})*)" + END, re.I)
CONTEXT_IN_SQL = re.compile(r"\bCURRENT_(ROLE|WAREHOUSE|USER|ACCOUNT)\s*\(\s*\)", re.I)
WAREHOUSE_PROP = re.compile(r"(\w+)\s*=\s*('[^']*'|\S+)")
USES_TABLES = re.compile(r"\bFROM\b", re.I)
LOGIN_FAILURE_CALL = r"SYSTEM\$GET_LOGIN_FAILURE_DETAILS\s*\(\s*'(?P<uuid>[0-9A-Fa-f-]{36})'\s*\)"
LOGIN_FAILURE_SELECT = re.compile(
    r"^\s*SELECT\s+(?:(?P<call>"
    + LOGIN_FAILURE_CALL
    + r")|(?P<extract>JSON_EXTRACT_PATH_TEXT\s*\(\s*"
    + LOGIN_FAILURE_CALL.replace("(?P<uuid>", "(?P<uuid2>")
    + r"\s*,\s*'(?P<key>(?:[^']|'')*)'\s*\)))"
    + END,
    re.I,
)

SHOW_WAREHOUSES_COLUMNS = [
    ("name", "text"),
    ("state", "text"),
    ("type", "text"),
    ("size", "text"),
    ("min_cluster_count", "fixed"),
    ("max_cluster_count", "fixed"),
    ("started_clusters", "fixed"),
    ("running", "fixed"),
    ("queued", "fixed"),
    ("is_default", "text"),
    ("is_current", "text"),
    ("auto_suspend", "fixed"),
    ("auto_resume", "text"),
    ("available", "text"),
    ("provisioning", "text"),
    ("quiescing", "text"),
    ("other", "text"),
    ("created_on", "timestamp_ltz"),
    ("resumed_on", "timestamp_ltz"),
    ("updated_on", "timestamp_ltz"),
    ("owner", "text"),
    ("comment", "text"),
    ("resource_monitor", "text"),
    ("scaling_policy", "text"),
]


SYSTEM_WAIT = re.compile(
    r"^\s*(?:CALL|SELECT)\s+SYSTEM\$WAIT\s*\(\s*(?P<amount>\d+(?:\.\d+)?)\s*"
    r"(?:,\s*'(?P<unit>DAYS|HOURS|MINUTES|SECONDS|MILLISECONDS|MICROSECONDS|NANOSECONDS)'\s*)?\)" + END,
    re.I,
)
WAIT_UNIT_SECONDS = {
    "DAYS": 86400.0,
    "HOURS": 3600.0,
    "MINUTES": 60.0,
    "SECONDS": 1.0,
    "MILLISECONDS": 1e-3,
    "MICROSECONDS": 1e-6,
    "NANOSECONDS": 1e-9,
}


def system_wait(stmt: Statement, m: re.Match[str]) -> Result:
    """SYSTEM$WAIT (rule 7): waits outside the DuckDB lock; a cancel or timeout ends it."""
    unit = (m["unit"] or "SECONDS").upper()
    if stmt.cancelled.wait(float(m["amount"]) * WAIT_UNIT_SECONDS[unit]):
        raise Cancelled
    return text_result("SYSTEM$WAIT", f"waited {m['amount']} {unit.lower()}")


def unquote(name: str) -> str:
    return name[1:-1] if name.startswith('"') else name.upper()


def sql_literal(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def like_regex(pattern: str) -> re.Pattern[str]:
    parts = ("." if c == "_" else ".*" if c == "%" else re.escape(c) for c in pattern.replace("''", "'"))
    return re.compile("".join(parts), re.I | re.S)


class Intercepts:
    """Statements answered from the emulator's own state instead of fakesnow."""

    def __init__(self, settings: Settings, login_failures: LoginFailures) -> None:
        self.settings = settings
        self.login_failures = login_failures

    def answer(self, sql: str, req: SqlRequest, ctx: Context) -> Result | None:
        if m := SHOW_WAREHOUSES.match(sql):
            return self.show_warehouses(m[1], ctx)
        if m := LOGIN_FAILURE_SELECT.match(sql):
            return self.login_failure_details(m)
        if m := CREATE_WAREHOUSE.match(sql):
            return self.create_warehouse(unquote(m[3]), bool(m[1]), bool(m[2]), m[4])
        if m := ALTER_WAREHOUSE.match(sql):
            return self.alter_warehouse(unquote(m[2]), bool(m[1]), m[3])
        if m := USE_CONTEXT.match(sql):
            if m[1].upper() == "WAREHOUSE" and self.settings.warehouse(unquote(m[2])) is None:
                raise does_not_exist(unquote(m[2]))
            return status_result()
        if NOOP_DCL.match(sql):
            return status_result()
        if m := CONTEXT_SELECT.match(sql):
            names = [re.sub(r"\s+", "", fn).upper() for fn in m[1].split(",")]
            values = {
                "CURRENT_ROLE()": ctx.role,
                "CURRENT_WAREHOUSE()": ctx.warehouse,
                "CURRENT_USER()": req.user.name,
                "CURRENT_ACCOUNT()": req.user.account,
                "CURRENT_DATABASE()": ctx.database,
                "CURRENT_SCHEMA()": ctx.schema,
            }
            return Result([column_info(n, "text") for n in names], [[values[n] for n in names]])
        return None

    def login_failure_details(self, m: re.Match[str]) -> Result:
        """SYSTEM$GET_LOGIN_FAILURE_DETAILS('<uuid>'), or JSON_EXTRACT_PATH_TEXT of one of its keys."""
        failure = self.login_failures.get(m["uuid"] or m["uuid2"])
        details = failure.details_json() if failure else None
        column = re.sub(r"\s+", "", m["call"] or m["extract"]).upper()
        if m["extract"] is None:
            return Result([column_info(column, "text")], [[details]])
        value = json.loads(details).get(m["key"].replace("''", "'")) if details else None
        shown = None if value is None else value if isinstance(value, str) else json.dumps(value)
        return Result([column_info(column, "text")], [[shown]])

    def show_warehouses(self, pattern: str | None, ctx: Context) -> Result:
        regex = like_regex(pattern) if pattern is not None else None
        current = ctx.warehouse
        with self.settings.lock:
            rows = [
                self.warehouse_row(wh, wh.name == current)
                for wh in self.settings.warehouses.values()
                if regex is None or regex.fullmatch(wh.name)
            ]
        return Result([column_info(n, t) for n, t in SHOW_WAREHOUSES_COLUMNS], rows)

    @staticmethod
    def warehouse_row(wh: Warehouse, current: bool) -> list[str | None]:
        started = wh.state == "STARTED"
        epoch = "0.000000000"
        values = {
            "name": wh.name,
            "state": wh.state,
            "type": "STANDARD",
            "size": wh.size,
            "min_cluster_count": "1",
            "max_cluster_count": "1",
            "started_clusters": "1" if started else "0",
            "running": "0",
            "queued": "0",
            "is_default": "N",
            "is_current": "Y" if current else "N",
            "auto_suspend": None if wh.auto_suspend is None else str(wh.auto_suspend),
            "auto_resume": "true" if wh.auto_resume else "false",
            "available": "100" if started else "",
            "provisioning": "0",
            "quiescing": "0",
            "other": "0",
            "created_on": epoch,
            "resumed_on": epoch,
            "updated_on": epoch,
            "owner": "SYSADMIN",
            "comment": "",
            "resource_monitor": "null",
            "scaling_policy": "STANDARD",
        }
        return [values[name] for name, _ in SHOW_WAREHOUSES_COLUMNS]

    def create_warehouse(self, name: str, replace: bool, if_not_exists: bool, props: str) -> Result:
        with self.settings.lock:
            if name in self.settings.warehouses and not replace:
                if if_not_exists:
                    return status_result(f"{name} already exists, statement succeeded.")
                raise sql_error("002002", "42710", f"SQL compilation error:\nObject '{name}' already exists.")
            wh = Warehouse(name)
            apply_warehouse_props(wh, props)
            self.settings.warehouses[name] = wh
        return status_result(f"Warehouse {name} successfully created.")

    def alter_warehouse(self, name: str, if_exists: bool, action: str) -> Result:
        with self.settings.lock:
            wh = self.settings.warehouses.get(name)
            if wh is None:
                if if_exists:
                    return status_result()
                raise does_not_exist(name)
            verb = action.split()[0].upper()
            if verb == "SUSPEND":
                if wh.state == "SUSPENDED":
                    raise sql_error("090064", "22000", f"Invalid state. Warehouse '{name}' cannot be suspended.")
                wh.state = "SUSPENDED"
            elif verb == "RESUME":
                if wh.state == "STARTED" and "IF" not in action.upper():
                    raise sql_error("090063", "22000", f"Invalid state. Warehouse '{name}' cannot be resumed.")
                if wh.state == "SUSPENDED":
                    wh.state, wh.resumes = "STARTED", wh.resumes + 1
            else:
                apply_warehouse_props(wh, action[3:])
        return status_result()

    def require_warehouse(self, kind: str, sql: str, req: SqlRequest, ctx: Context) -> None:
        """Fail like Snowflake when the statement needs a warehouse that cannot run; auto-resume."""
        if kind not in DML_KINDS | {"COPY"} and not (kind == "SELECT" and USES_TABLES.search(sql)):
            return
        with self.settings.lock:
            wh = self.settings.warehouse(ctx.warehouse)
            if wh is None:
                if "warehouse" in req.named:
                    raise no_context_named()
                raise sql_error(
                    "000606",
                    "57P03",
                    "No active warehouse selected in the current session.  "
                    "Select an active warehouse with the 'use warehouse' command.",
                )
            if wh.state == "SUSPENDED":
                if not wh.auto_resume:
                    raise sql_error(
                        "000608", "57P03", f"Warehouse '{wh.name}' is suspended and AUTO_RESUME is disabled."
                    )
                wh.state, wh.resumes = "STARTED", wh.resumes + 1

    @staticmethod
    def with_context_literals(sql: str, req: SqlRequest, ctx: Context) -> str:
        """Replace CURRENT_ROLE() etc. inside a statement fakesnow runs by the request's values."""
        if not CONTEXT_IN_SQL.search(sql):
            return sql
        values = {
            "ROLE": ctx.role,
            "WAREHOUSE": ctx.warehouse,
            "USER": req.user.name,
            "ACCOUNT": req.user.account,
        }
        return CONTEXT_IN_SQL.sub(lambda m: sql_literal(values[m[1].upper()]), sql)


def does_not_exist(name: str) -> ApiError:
    return sql_error("002003", "02000", f"SQL compilation error:\nObject '{name}' does not exist or not authorized.")


def apply_warehouse_props(wh: Warehouse, props: str) -> None:
    for key, raw in WAREHOUSE_PROP.findall(props):
        key, value = key.upper(), raw.strip("'").upper()
        if key == "AUTO_SUSPEND":
            wh.auto_suspend = None if value in ("NULL", "0") else int(value)
        elif key == "AUTO_RESUME":
            wh.auto_resume = value == "TRUE"
        elif key == "WAREHOUSE_SIZE":
            wh.size = value
        elif key == "INITIALLY_SUSPENDED" and value == "TRUE":
            wh.state = "SUSPENDED"
