"""The analytics side against the local Snowflake: infra/dbt (`dbt build`) and infra/sql.

A realistic load for two merchants of this run (unique ids, so rows other tests leave in
RAW_EVENTS never count here) goes into TRACKLAYER.EVENTS.RAW_EVENTS through the SQL API with the
loader's own INSERT (shared/src/rows/sql.rs): funnels with drop-off on web/ios/android,
purchases in three months, a repeat customer, an integer user id, a guest checkout, an event name
with other case and blanks, a lower-case currency, an offset event time, a purchase fired twice
for one order, a replayed event (same event_id loaded twice) and a connection-test row.

Then `dbt build` runs from `.venv-dbt` (skipped, saying how to create it, only when that venv is
missing) into its own schema; every node must succeed, and the marts must hold exactly the
figures worked out by hand below. Rows of other tests (replays, emoji platforms, ...) are in
the same table and must not break any dbt test. The guide's sample queries
(infra/sql/sample_queries.sql) and the materialized views (infra/sql/materialized_views.sql) run
on the same load.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from snowflake.connector.connection import SnowflakeConnection

from sflocal import Http, Identity, SqlApi
from tracklayer_local.harness import REPO, connect, dbt_environment, snowflake_port

DBT_DIR = REPO / "infra" / "dbt"
SQL_DIR = REPO / "infra" / "sql"
DBT = REPO / ".venv-dbt" / "bin" / "dbt"
GUIDE_QUERIES = Path(__file__).resolve().parent / "data" / "guide_sample_queries.txt"  # vendored from the guide
VENV_HINT = "python3 -m venv .venv-dbt && .venv-dbt/bin/python -m pip install -r infra/dbt/requirements.txt"

# The loader's statement (shared/src/rows/sql.rs, INSERT_RAW_EVENTS): one bound JSON array
# of {"r": raw event text, "t": UTC time, "n": trimmed name, "v": "19.9900", "c": "EUR"}.
INSERT_RAW_EVENTS = (
    "INSERT INTO RAW_EVENTS (EVENT_ID, EVENT_TIME, MERCHANT_ID, EVENT_NAME, USER_ID, ANONYMOUS_ID, ORDER_ID, "
    "PLATFORM, SOURCE, VALUE, CURRENCY, CONSENT_STATUS, PROPERTIES, RAW_PAYLOAD) "
    "SELECT e.p:event_id::STRING, e.value:t::TIMESTAMP_NTZ, e.p:merchant_id::STRING, e.value:n::STRING, "
    "e.p:user_id::STRING, e.p:anonymous_id::STRING, e.p:order_id::STRING, e.p:platform::STRING, "
    "e.p:source::STRING, e.value:v::NUMBER(18, 4), e.value:c::STRING, e.p:consent_status::STRING, "
    "e.p:properties, e.p "
    "FROM (SELECT f.value AS value, PARSE_JSON(f.value:r::STRING, 'd') AS p "
    "FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?))) f) e"
)
# The same with an explicit LOADED_AT ("l"): a replay loaded later than the first copy.
INSERT_RAW_EVENTS_LOADED_AT = INSERT_RAW_EVENTS.replace(
    "RAW_PAYLOAD) SELECT", "RAW_PAYLOAD, LOADED_AT) SELECT"
).replace("e.p:properties, e.p ", "e.p:properties, e.p, e.value:l::TIMESTAMP_NTZ ")


def test_the_seeding_insert_is_the_loaders() -> None:
    rust = (REPO / "shared" / "src" / "rows" / "sql.rs").read_text().replace("\\\n", "")
    assert INSERT_RAW_EVENTS in rust


# ------------------------------------------------------------------------------------------------
# The load
# ------------------------------------------------------------------------------------------------


def month_start(day: date, months_back: int = 0) -> date:
    index = day.year * 12 + day.month - 1 - months_back
    return date(index // 12, index % 12 + 1, 1)


def months_between(a: date, b: date) -> int:
    return (b.year - a.year) * 12 + b.month - a.month


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=UTC)


def money(value: Any) -> Decimal:
    """Decimal, float or text from the connector as a 4-decimal Decimal."""
    return Decimal(str(value)).quantize(Decimal("0.0001"))


@dataclass
class Load:
    run: str
    a: str  # merchant A (NZD; web, ios, android)
    b: str  # merchant B (AUD)
    today: date
    d3: date
    d5: date
    d10: date
    old1: date  # three months back, alice's first order
    old2: date  # two months back, alice's second order
    old3: date  # two months back, bob's order
    ids: dict[str, str] = field(default_factory=dict)

    def user(self, name: str) -> str:
        return f"usr_{name}_{self.run}"


def product(sku: str, name: str, price: str, quantity: int) -> dict[str, Any]:
    return {"product_id": sku, "name": name, "price": Decimal(price), "quantity": quantity}


class DecimalJson(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, Decimal):
            return float(o)
        return super().default(o)


def event_text(load: Load, key: str, **fields: Any) -> dict[str, Any]:
    """One event as the SDKs send it (field order and shapes as in shared/src/sample.rs)."""
    event_id = f"{load.run}-{key}-{uuid.uuid4().hex[:6]}"
    load.ids[key] = event_id
    when: datetime = fields.pop("when")
    offset_minutes = fields.pop("offset_minutes", 0)
    local = when.astimezone(timezone(timedelta(minutes=offset_minutes)))
    stamp = local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}"
    stamp += "Z" if offset_minutes == 0 else local.strftime("%z")[:3] + ":" + local.strftime("%z")[3:]
    merchant = fields.pop("merchant")
    body: dict[str, Any] = {"event_id": event_id, "event_time": stamp, "merchant_id": merchant}
    body.update(fields)
    return {"body": body, "utc": when}


def element(event: dict[str, Any], loaded_at: datetime | None = None) -> dict[str, Any]:
    """The loader's array element for an event (what ingest's validator computes)."""
    body = event["body"]
    raw = json.dumps(body, cls=DecimalJson, ensure_ascii=False, separators=(",", ":"))
    out: dict[str, Any] = {
        "r": raw,
        "t": event["utc"].strftime("%Y-%m-%d %H:%M:%S.") + f"{event['utc'].microsecond // 1000:03d}",
        "n": body["event_name"].strip(),
    }
    if "value" in body:
        out["v"] = f"{Decimal(str(body['value'])):.4f}"
    if "currency" in body:
        out["c"] = body["currency"].upper()
    if loaded_at is not None:
        out["l"] = loaded_at.strftime("%Y-%m-%d %H:%M:%S.000")
    return out


def build_events(load: Load) -> list[dict[str, Any]]:
    a, b = load.a, load.b
    alice, _bob, carol, dave, erin = (load.user(n) for n in ("alice", "bob", "carol", "dave", "erin"))
    bob_int = int(load.run[-4:], 16) + 100_000  # an integer user id, as some SDKs send
    load.ids["bob_user"] = str(bob_int)
    mug = product("SKU-20417", "Café crème mug ☕", "14.50", 1)
    tea = product("SKU-51230", "Sencha Green Tea 100g", "5.50", 2)
    ctx_web = {"locale": "en-NZ", "ip": "203.0.113.7", "os": "Windows 11"}
    ctx_ios = {"locale": "en-NZ", "ip": "203.0.113.8", "os": "iOS 18.1"}
    ctx_android = {"locale": "en-NZ", "ip": "203.0.113.9", "os": "Android 15"}
    web = {"platform": "web", "source": "tracklayer-js/3.4.1"}
    ios = {"platform": "ios", "source": "tracklayer-ios/2.1.0"}
    android = {"platform": "android", "source": "tracklayer-android/2.0.7"}

    def props(*items: dict[str, Any], page: str = "products/cafe-creme-mug", **extra: Any) -> dict[str, Any]:
        return {
            "page_url": f"https://{a}.example/{page}",
            "products": list(items),
            **extra,
            "session_id": f"s_{uuid.uuid4().hex[:12]}",
        }

    def step(
        key: str,
        merchant: str,
        user: str | int | None,
        when: datetime,
        name: str,
        platform: dict[str, Any],
        ctx: dict[str, Any],
        items: list[dict[str, Any]],
        *,
        anonymous_id: str | None = None,
        consent_status: str = "granted",
        properties: dict[str, Any] | None = None,
        offset_minutes: int = 0,
        **fields: Any,
    ) -> dict[str, Any]:
        """One funnel event; `fields` (a purchase's order, value and currency) go before the consent."""
        who = {"event_name": name, **platform}
        if user is not None:
            who["user_id"] = user
        return event_text(
            load,
            key,
            merchant=merchant,
            when=when,
            offset_minutes=offset_minutes,
            **who,
            anonymous_id=anonymous_id or f"anon_{key}_{load.run}",
            **fields,
            consent_status=consent_status,
            properties=properties or props(*items),
            context=ctx,
        )

    def purchase(
        key: str,
        merchant: str,
        user: str | int | None,
        when: datetime,
        order: tuple[str, str, str],
        platform: dict[str, Any],
        ctx: dict[str, Any],
        items: list[dict[str, Any]],
        *,
        anonymous_id: str | None = None,
        offset_minutes: int = 0,
        **extra: Any,
    ) -> dict[str, Any]:
        """A purchase event; `order` is its order id, value and currency."""
        order_id, value, currency = order
        return step(
            key,
            merchant,
            user,
            when,
            "purchase",
            platform,
            ctx,
            items,
            anonymous_id=anonymous_id,
            properties=props(*items, page="checkout/complete", **extra),
            offset_minutes=offset_minutes,
            order_id=order_id,
            value=Decimal(value),
            currency=currency,
        )

    guest = {"anonymous_id": f"anon_guest_{load.run}"}
    utm = {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "winter_sale"}
    return [
        # alice: three orders in three months (a repeat customer)
        purchase("a-p1", a, alice, at(load.old1, 10), ("ORD-1001", "100.00", "NZD"), web, ctx_web, [mug]),
        purchase("a-p2", a, alice, at(load.old2, 10), ("ORD-1002", "50.00", "NZD"), web, ctx_web, [mug]),
        step("a-v3", a, alice, at(load.d5, 9), "view_content", ios, ctx_ios, [mug]),
        step("a-c4", a, alice, at(load.d5, 9, 5), "add_to_cart", ios, ctx_ios, [mug]),
        step("a-k5", a, alice, at(load.d5, 9, 10), "begin_checkout", ios, ctx_ios, [mug, tea]),
        purchase("a-p6", a, alice, at(load.d5, 9, 15), ("ORD-1003", "25.50", "NZD"), ios, ctx_ios, [mug, tea], **utm),
        # the app fired the same purchase again a minute later (new event id, same order)
        purchase("a-p6b", a, alice, at(load.d5, 9, 16), ("ORD-1003", "25.50", "NZD"), ios, ctx_ios, [mug, tea]),
        # bob (integer user id): ordered two months back; this week viewed and added, no checkout
        purchase("b-p1", a, bob_int, at(load.old3, 12), ("ORD-1004", "80.00", "NZD"), android, ctx_android, [tea]),
        step(
            "b-v2",
            a,
            bob_int,
            at(load.d5, 12),
            "view_content",
            android,
            ctx_android,
            [],
            properties={
                "page_url": f"https://{a}.example/products/trail-runner-gtx",
                "product_id": "SKU-10482",
                "product_name": "Trail Runner GTX",
                "price": "129.95",
                "quantity": 1,
            },
        ),
        step("b-c3", a, bob_int, at(load.d5, 12, 1), "add_to_cart", android, ctx_android, [tea]),
        # carol: viewed on d5, came back on d3 and bought; her purchase was delivered twice
        step("c-v1", a, carol, at(load.d5, 13), "view_content", web, ctx_web, [mug]),
        step("c-v2", a, carol, at(load.d3, 13), "view_content", web, ctx_web, [tea]),
        step("c-c3", a, carol, at(load.d3, 13, 1), "add_to_cart", web, ctx_web, [tea]),
        step("c-k4", a, carol, at(load.d3, 13, 2), "begin_checkout", web, ctx_web, [tea]),
        purchase("c-p5", a, carol, at(load.d3, 13, 3), ("ORD-1005", "19.99", "NZD"), web, ctx_web, [tea]),
        # dave: never buys; his add_to_cart arrives as " Add_To_Cart " (the loader trims only)
        step("d-v1", a, dave, at(load.d3, 14), "view_content", web, ctx_web, [mug], consent_status="denied"),
        step("d-c2", a, dave, at(load.d3, 14, 1), " Add_To_Cart ", web, ctx_web, [mug]),
        # a guest checkout (no user_id), currency sent in lower case
        step("g-v1", a, None, at(load.d3, 15), "view_content", web, ctx_web, [mug], **guest),
        step("g-c2", a, None, at(load.d3, 15, 1), "add_to_cart", web, ctx_web, [mug], **guest),
        step("g-k3", a, None, at(load.d3, 15, 2), "begin_checkout", web, ctx_web, [mug], **guest),
        purchase("g-p4", a, None, at(load.d3, 15, 3), ("ORD-1006", "42.00", "nzd"), web, ctx_web, [mug], **guest),
        # merchant B (AUD): erin, event time sent with a -05:00 offset; same order id as A's first
        step("e-v1", b, erin, at(load.d10, 11), "view_content", web, ctx_web, [mug]),
        purchase(
            "e-p2",
            b,
            erin,
            at(load.d10, 11, 30),
            ("ORD-1001", "200.00", "AUD"),
            web,
            ctx_web,
            [mug],
            offset_minutes=-300,
        ),
    ]


def connection_test_event(load: Load) -> dict[str, Any]:
    """What the connection-test function writes, but under merchant A (to see it filtered out)."""
    return event_text(
        load,
        "t-1",
        merchant=load.a,
        when=datetime.now(UTC).replace(microsecond=0),
        event_name="tracklayer_connection_test",
        source="connection-test",
    )


@pytest.fixture(scope="module")
def load(http: Http, loader: Identity) -> Load:
    run = uuid.uuid4().hex[:8]
    today = datetime.now(UTC).date()
    load = Load(
        run=run,
        a=f"mrc_dbt_a_{run}",
        b=f"mrc_dbt_b_{run}",
        today=today,
        d3=today - timedelta(days=3),
        d5=today - timedelta(days=5),
        d10=today - timedelta(days=10),
        old1=month_start(today, 3) + timedelta(days=9),
        old2=month_start(today, 2) + timedelta(days=11),
        old3=month_start(today, 2) + timedelta(days=13),
    )
    api = SqlApi(http, loader.headers(), "TRACKLAYER", "EVENTS")
    for ddl in ("raw_events.sql", "raw_events_rejected.sql"):
        api.rows((SQL_DIR / ddl).read_text())

    def insert(statement: str, elements: list[dict[str, Any]]) -> None:
        bindings = {"1": {"type": "TEXT", "value": json.dumps(elements, ensure_ascii=False)}}
        reply = api.submit(statement, bindings=bindings)
        assert reply.status == 200, reply.body
        assert reply.body["stats"]["numRowsInserted"] == len(elements), reply.body

    events = build_events(load)
    by_id = {e["body"]["event_id"]: e for e in events}
    by_key = {key: by_id[event_id] for key, event_id in load.ids.items() if event_id in by_id}
    insert(INSERT_RAW_EVENTS, [element(e) for e in events] + [element(connection_test_event(load))])
    # SQS redelivered carol's purchase: the loader inserted it again, in a later statement
    insert(INSERT_RAW_EVENTS, [element(by_key["c-p5"])])
    # dave's view replayed an hour later by a newer SDK build: staging keeps the later row
    replay = {"body": {**by_key["d-v1"]["body"], "source": "tracklayer-js/3.4.2"}, "utc": by_key["d-v1"]["utc"]}
    insert(INSERT_RAW_EVENTS_LOADED_AT, [element(replay, datetime.now(UTC) + timedelta(hours=1))])
    return load


@pytest.fixture(scope="module")
def sf(stack_env: dict[str, str]) -> Iterator[SnowflakeConnection]:
    """snowflake-connector-python on the local Snowflake's drivers' protocol."""
    conn = connect(snowflake_port(stack_env))
    yield conn
    conn.close()


def select(sf: SnowflakeConnection, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    cur = sf.cursor()
    cur.execute(sql, params)
    names = [d.name.lower() for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


# ------------------------------------------------------------------------------------------------
# dbt build
# ------------------------------------------------------------------------------------------------


@dataclass
class DbtRun:
    schema: str
    returncode: int
    output: str
    results: list[dict[str, Any]]


@pytest.fixture(scope="module")
def dbt(
    load: Load, stack_env: dict[str, str], sf: SnowflakeConnection, tmp_path_factory: pytest.TempPathFactory
) -> DbtRun:
    if not DBT.is_file():
        pytest.skip(f"{DBT} is missing: create the dbt venv with `{VENV_HINT}`")
    schema = f"DBT_PYTEST_{load.run.upper()}"
    work = tmp_path_factory.mktemp("dbt")
    env = dbt_environment(stack_env, schema)
    done = subprocess.run(
        [
            str(DBT),
            "build",
            "--project-dir",
            str(DBT_DIR),
            "--profiles-dir",
            str(DBT_DIR),
            "--target-path",
            str(work / "target"),
            "--log-path",
            str(work / "logs"),
            "--no-use-colors",
        ],
        cwd=DBT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    results_file = work / "target" / "run_results.json"
    results = json.loads(results_file.read_text())["results"] if results_file.exists() else []
    yield DbtRun(schema, done.returncode, done.stdout + done.stderr, results)
    sf.cursor().execute(f"DROP SCHEMA IF EXISTS TRACKLAYER.{schema} CASCADE")


def test_dbt_build_succeeds(dbt: DbtRun) -> None:
    assert dbt.returncode == 0, dbt.output[-6000:]
    statuses = {r["unique_id"]: r["status"] for r in dbt.results}
    failing = {uid: status for uid, status in statuses.items() if status not in ("success", "pass")}
    assert not failing, (failing, dbt.output[-6000:])
    models = sorted(uid.split(".")[-1] for uid in statuses if uid.startswith("model."))
    assert models == ["dim_customers", "fct_funnel_steps", "fct_orders", "stg_tracklayer_events"]
    tests = [uid for uid in statuses if uid.startswith("test.")]
    assert len(tests) >= 30, tests
    for name in (
        "source_not_null_tracklayer_raw_events_event_id",
        "unique_stg_tracklayer_events_event_id",
        "unique_fct_orders_order_key",
        "unique_dim_customers_customer_key",
        "relationships_fct_orders_user_id__user_id__ref_dim_customers_",
        "accepted_values_dim_customers_customer_type__prospect__one_time__repeat",
        "assert_customer_orders_match_fct_orders",
        "assert_funnel_rates_between_0_and_1",
    ):
        assert any(uid.split(".")[2] == name for uid in tests), name
    assert re.search(r"Done\. PASS=\d+ WARN=0 ERROR=0 SKIP=0", dbt.output), dbt.output[-2000:]


def test_staging_deduplicates_normalises_and_unpacks(dbt: DbtRun, load: Load, sf: SnowflakeConnection) -> None:
    rows = select(
        sf,
        f"SELECT * FROM TRACKLAYER.{dbt.schema}.STG_TRACKLAYER_EVENTS WHERE MERCHANT_ID IN (%s, %s)",
        (load.a, load.b),
    )
    by_id = {r["event_id"]: r for r in rows}
    # 21 + 2 events; the replays collapsed, the connection-test row gone
    assert len(rows) == 23 and len(by_id) == 23
    assert load.ids["t-1"] not in by_id
    assert sorted({r["event_name"] for r in rows}) == ["add_to_cart", "begin_checkout", "purchase", "view_content"]
    assert by_id[load.ids["d-c2"]]["event_name"] == "add_to_cart"  # " Add_To_Cart "
    # the later-loaded copy of dave's view wins
    assert by_id[load.ids["d-v1"]]["source"] == "tracklayer-js/3.4.2"
    assert by_id[load.ids["d-v1"]]["consent_status"] == "denied"
    # integer user id as text; the guest has a visitor id from the anonymous id
    assert by_id[load.ids["b-p1"]]["user_id"] == load.ids["bob_user"]
    assert by_id[load.ids["b-p1"]]["visitor_id"] == "user:" + load.ids["bob_user"]
    assert by_id[load.ids["g-v1"]]["user_id"] is None
    assert by_id[load.ids["g-v1"]]["visitor_id"] == f"anon:anon_guest_{load.run}"
    # the offset time is stored and kept as UTC
    assert by_id[load.ids["e-p2"]]["event_time"] == at(load.d10, 11, 30).replace(tzinfo=None)
    assert by_id[load.ids["e-p2"]]["event_date"] == load.d10
    # lower-case currency upper-cased by the loader
    assert by_id[load.ids["g-p4"]]["currency"] == "NZD"
    # properties unpacked: products array ...
    p6 = by_id[load.ids["a-p6"]]
    assert (p6["platform"], p6["source"], p6["value"]) == ("ios", "tracklayer-ios/2.1.0", Decimal("25.5000"))
    assert p6["page_url"] == f"https://{load.a}.example/checkout/complete"
    assert (p6["utm_source"], p6["utm_medium"], p6["utm_campaign"]) == ("newsletter", "email", "winter_sale")
    assert p6["session_id"].startswith("s_")
    assert p6["product_count"] == 2
    assert (p6["product_id"], p6["product_name"]) == ("SKU-20417", "Café crème mug ☕")
    assert (money(p6["product_price"]), p6["product_quantity"]) == (Decimal("14.5000"), 1)
    # ... and a flat product with the price as a string
    bv = by_id[load.ids["b-v2"]]
    assert (bv["product_id"], bv["product_name"], money(bv["product_price"])) == (
        "SKU-10482",
        "Trail Runner GTX",
        Decimal("129.9500"),
    )
    assert bv["product_count"] is None and bv["utm_source"] is None
    # context from the original payload (RAW_PAYLOAD, the event as a VARIANT object)
    assert (p6["locale"], p6["device_os"]) == ("en-NZ", "iOS 18.1")
    assert (bv["locale"], bv["device_os"]) == ("en-NZ", "Android 15")


def test_fct_orders(dbt: DbtRun, load: Load, sf: SnowflakeConnection) -> None:
    rows = select(
        sf,
        f"SELECT *, CUSTOMER_KEY IS NULL AS NO_CUSTOMER FROM TRACKLAYER.{dbt.schema}.FCT_ORDERS "
        "WHERE MERCHANT_ID IN (%s, %s) ORDER BY MERCHANT_ID, ORDER_ID",
        (load.a, load.b),
    )
    got = [
        (
            r["merchant_id"],
            r["order_id"],
            r["user_id"],
            money(r["revenue"]),
            r["currency"],
            r["platform"],
            r["purchase_events"],
        )
        for r in rows
    ]
    a, b = load.a, load.b
    alice, carol, erin, bob = load.user("alice"), load.user("carol"), load.user("erin"), load.ids["bob_user"]
    assert got == [
        (a, "ORD-1001", alice, Decimal("100.0000"), "NZD", "web", 1),
        (a, "ORD-1002", alice, Decimal("50.0000"), "NZD", "web", 1),
        (a, "ORD-1003", alice, Decimal("25.5000"), "NZD", "ios", 2),  # fired twice, counted once
        (a, "ORD-1004", bob, Decimal("80.0000"), "NZD", "android", 1),
        (a, "ORD-1005", carol, Decimal("19.9900"), "NZD", "web", 1),  # replayed row counted once
        (a, "ORD-1006", None, Decimal("42.0000"), "NZD", "web", 1),  # guest
        (b, "ORD-1001", erin, Decimal("200.0000"), "AUD", "web", 1),
    ]
    by_key = {r["order_key"]: r for r in rows}
    assert set(by_key) == {f"{r[0]}|{r[1]}" for r in got}
    o3 = by_key[f"{a}|ORD-1003"]
    assert o3["event_id"] == load.ids["a-p6"]  # the first of the two purchase events
    assert o3["ordered_at"] == at(load.d5, 9, 15).replace(tzinfo=None) and o3["order_date"] == load.d5
    assert (o3["utm_source"], o3["utm_campaign"], o3["product_count"]) == ("newsletter", "winter_sale", 2)
    assert o3["customer_key"] == f"{a}|{alice}"
    assert by_key[f"{a}|ORD-1006"]["no_customer"] is True
    assert sum(money(r["revenue"]) for r in rows if r["merchant_id"] == a) == Decimal("317.4900")


def test_dim_customers(dbt: DbtRun, load: Load, sf: SnowflakeConnection) -> None:
    rows = select(
        sf,
        f"SELECT *, COHORT_MONTH IS NULL AS NO_COHORT, FIRST_ORDER_AT IS NULL AS NO_ORDER "
        f"FROM TRACKLAYER.{dbt.schema}.DIM_CUSTOMERS WHERE MERCHANT_ID IN (%s, %s) ORDER BY CUSTOMER_KEY",
        (load.a, load.b),
    )
    by_user = {r["user_id"]: r for r in rows}
    alice, bob, carol, dave, erin = (
        load.user("alice"),
        load.ids["bob_user"],
        load.user("carol"),
        load.user("dave"),
        load.user("erin"),
    )
    assert sorted(by_user) == sorted([alice, bob, carol, dave, erin])  # the guest is no customer
    expected = {
        # user: (merchant, orders, lifetime revenue, average order, type, cohort month, events)
        alice: (load.a, 3, "175.5000", "58.5000", "repeat", month_start(load.old1), 7),
        bob: (load.a, 1, "80.0000", "80.0000", "one_time", month_start(load.old3), 3),
        carol: (load.a, 1, "19.9900", "19.9900", "one_time", month_start(load.d3), 5),
        erin: (load.b, 1, "200.0000", "200.0000", "one_time", month_start(load.d10), 2),
    }
    for user, (merchant, orders, ltv, aov, kind, cohort, events) in expected.items():
        r = by_user[user]
        assert r["customer_key"] == f"{merchant}|{user}"
        assert (r["merchant_id"], r["orders"], money(r["lifetime_revenue"]), money(r["average_order_value"])) == (
            merchant,
            orders,
            Decimal(ltv),
            Decimal(aov),
        ), user
        assert (r["customer_type"], r["cohort_month"], r["events"]) == (kind, cohort, events), user
    assert by_user[alice]["first_order_at"] == at(load.old1, 10).replace(tzinfo=None)
    assert by_user[alice]["last_order_at"] == at(load.d5, 9, 15).replace(tzinfo=None)
    d = by_user[dave]
    assert (d["orders"], money(d["lifetime_revenue"]), d["customer_type"], d["events"]) == (
        0,
        Decimal("0"),
        "prospect",
        2,
    )
    assert d["no_cohort"] is True and d["no_order"] is True


def test_fct_funnel_steps(dbt: DbtRun, load: Load, sf: SnowflakeConnection) -> None:
    rows = select(
        sf,
        f"SELECT * FROM TRACKLAYER.{dbt.schema}.FCT_FUNNEL_STEPS WHERE MERCHANT_ID IN (%s, %s)",
        (load.a, load.b),
    )

    def rate(v: Any) -> Decimal | None:
        return None if v is None else money(v)

    got = {
        (r["merchant_id"], r["event_date"]): (
            r["visitors"],
            r["viewed"],
            r["added_to_cart"],
            r["checked_out"],
            r["purchased"],
            rate(r["add_to_cart_rate"]),
            rate(r["checkout_rate"]),
            rate(r["purchase_rate"]),
        )
        for r in rows
    }
    D = Decimal  # noqa: N806 - a one-letter alias keeps the expected rows below readable
    assert got == {
        # d5: alice went all the way, bob stopped after the cart, carol only looked
        (load.a, load.d5): (3, 3, 2, 1, 1, D("0.6667"), D("0.3333"), D("0.3333")),
        # d3: carol and the guest bought; dave's " Add_To_Cart " counts as add_to_cart
        (load.a, load.d3): (3, 3, 3, 2, 2, D("1.0000"), D("0.6667"), D("0.6667")),
        # the old orders: purchases without a view that day
        (load.a, load.old1): (1, 0, 0, 0, 1, None, None, None),
        (load.a, load.old2): (1, 0, 0, 0, 1, None, None, None),
        (load.a, load.old3): (1, 0, 0, 0, 1, None, None, None),
        (load.b, load.d10): (1, 1, 0, 0, 1, D("0.0000"), D("0.0000"), D("1.0000")),
    }
    keys = {r["funnel_day_key"] for r in rows}
    assert f"{load.a}|{load.d5.isoformat()}" in keys and len(keys) == len(rows)


# ------------------------------------------------------------------------------------------------
# infra/sql
# ------------------------------------------------------------------------------------------------


def statements(path: Path) -> list[str]:
    """The SQL statements of a file, comment-only lines dropped."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def guide_queries() -> list[tuple[str, str]]:
    """(title, statement) of each sample query in the guide's text, as data/guide_sample_queries.txt holds it."""
    text = "\n".join(line for line in GUIDE_QUERIES.read_text().splitlines() if not line.startswith("#"))
    queries = []
    for chunk in text.split(";"):
        if chunk.strip():
            title, _, sql = chunk.strip().partition("\n")
            queries.append((title, sql.strip()))
    return queries


def test_sample_queries_are_the_guides_verbatim() -> None:
    ours = (SQL_DIR / "sample_queries.sql").read_text()
    assert [title for title, _ in guide_queries()] == ["Revenue by platform", "Funnel rates", "Cohort LTV"]
    assert statements(SQL_DIR / "sample_queries.sql") == [sql for _, sql in guide_queries()]
    for title, _ in guide_queries():
        assert f"-- {title}\n" in ours, title


def test_sample_queries_give_the_seeded_figures(load: Load, sf: SnowflakeConnection) -> None:
    revenue, funnel, cohort = statements(SQL_DIR / "sample_queries.sql")
    a, b = load.a, load.b

    # Revenue by platform groups across merchants, so other loads (earlier runs of this test
    # too) share its groups. The verbatim query must run and include at least our figures; the
    # exact figures come from the same query over our merchants' rows only.
    expected = {
        ("web", "NZD", load.old1): (Decimal("100.0000"), 1),
        ("web", "NZD", load.old2): (Decimal("50.0000"), 1),
        ("android", "NZD", load.old3): (Decimal("80.0000"), 1),
        # RAW_EVENTS as loaded: the double-fired ORD-1003 and carol's replay count twice in SUM
        ("ios", "NZD", load.d5): (Decimal("51.0000"), 1),
        ("web", "NZD", load.d3): (Decimal("81.9800"), 2),  # carol's replay + the guest
        ("web", "AUD", load.d10): (Decimal("200.0000"), 1),
    }

    def by_group(rows: list[dict[str, Any]]) -> dict[tuple, tuple]:
        return {
            (r["platform"], r["currency"], r["event_day"].date()): (money(r["revenue"]), r["orders"])
            for r in rows
            if r["currency"] in ("NZD", "AUD")
        }

    everyone = by_group(select(sf, revenue))
    for group, (amount, orders) in expected.items():
        assert everyone[group][0] >= amount and everyone[group][1] >= orders, group
    ours = f"(SELECT * FROM tracklayer.events.raw_events WHERE merchant_id IN ('{a}', '{b}'))"
    assert by_group(select(sf, revenue.replace("tracklayer.events.raw_events", ours))) == expected

    # Funnel rates (last 30 days, per user_id; all guests form one NULL user). Raw names: dave's
    # "Add_To_Cart" is not add_to_cart here. Viewers of A: alice, bob, carol, dave, NULL (guest).
    got = {
        r["merchant_id"]: tuple(money(r[k]) for k in ("add_to_cart_rate", "checkout_rate", "purchase_rate"))
        for r in select(sf, funnel)
        if r["merchant_id"] in (a, b)
    }
    assert got == {
        a: (Decimal("0.8000"), Decimal("0.6000"), Decimal("0.6000")),
        b: (Decimal("0.0000"), Decimal("0.0000"), Decimal("1.0000")),
    }

    # Cohort LTV: cohorts by first purchase month; the guest's NULL user_id joins nothing.
    got = {
        (r["merchant_id"], r["cohort_month"].date(), r["month_number"]): (
            money(r["cohort_revenue"]),
            r["customers"],
            money(r["ltv"]),
        )
        for r in select(sf, cohort)
        if r["merchant_id"] in (a, b)
    }
    c_alice, c_bob, c_carol, c_erin = (month_start(d) for d in (load.old1, load.old3, load.d3, load.d10))
    assert got == {
        (a, c_alice, 0): (Decimal("100.0000"), 1, Decimal("100.0000")),
        (a, c_alice, 1): (Decimal("50.0000"), 1, Decimal("50.0000")),
        (a, c_alice, months_between(c_alice, load.d5)): (Decimal("51.0000"), 1, Decimal("51.0000")),
        (a, c_bob, 0): (Decimal("80.0000"), 1, Decimal("80.0000")),
        (a, c_carol, 0): (Decimal("39.9800"), 1, Decimal("39.9800")),
        (b, c_erin, 0): (Decimal("200.0000"), 1, Decimal("200.0000")),
    }


def test_materialized_views(load: Load, sf: SnowflakeConnection) -> None:
    """fakesnow creates them as plain views; the figures are what Snowflake would keep."""
    created = statements(SQL_DIR / "materialized_views.sql")
    assert [re.search(r"MATERIALIZED VIEW (\S+)", s).group(1) for s in created] == [
        "tracklayer.events.mv_daily_revenue",
        "tracklayer.events.mv_daily_funnel_steps",
    ]
    cur = sf.cursor()
    try:
        for statement in created:
            cur.execute(statement)
        revenue = {
            (r["event_date"], r["platform"], r["currency"]): (
                r["purchase_events"],
                r["orders_approx"],
                money(r["revenue"]),
            )
            for r in select(sf, "SELECT * FROM tracklayer.events.mv_daily_revenue WHERE merchant_id = %s", (load.a,))
        }
        assert revenue == {
            (load.old1, "web", "NZD"): (1, 1, Decimal("100.0000")),
            (load.old2, "web", "NZD"): (1, 1, Decimal("50.0000")),
            (load.old3, "android", "NZD"): (1, 1, Decimal("80.0000")),
            (load.d5, "ios", "NZD"): (2, 1, Decimal("51.0000")),
            (load.d3, "web", "NZD"): (3, 2, Decimal("81.9800")),
        }
        funnel = {
            r["event_date"]: tuple(
                int(r[k])
                for k in (
                    "view_content_events",
                    "add_to_cart_events",
                    "begin_checkout_events",
                    "purchase_events",
                    "viewers_approx",
                    "adders_approx",
                    "checkouts_approx",
                    "purchasers_approx",
                )
            )
            for r in select(
                sf, "SELECT * FROM tracklayer.events.mv_daily_funnel_steps WHERE merchant_id = %s", (load.a,)
            )
        }
        # raw rows: dave's view twice (replay), "Add_To_Cart" not a step, carol's purchase twice
        assert funnel[load.d3] == (4, 2, 2, 3, 3, 2, 2, 2)
        assert funnel[load.d5] == (3, 2, 1, 2, 3, 2, 1, 1)
        assert funnel[load.old1] == (0, 0, 0, 1, 0, 0, 0, 1)
    finally:
        for name in ("mv_daily_revenue", "mv_daily_funnel_steps"):
            cur.execute(f"DROP VIEW IF EXISTS tracklayer.events.{name}")


def test_setup_sql_keeps_the_guides_grants_and_has_no_password() -> None:
    setup = (SQL_DIR / "setup.sql").read_text()
    for statement in (
        "CREATE DATABASE IF NOT EXISTS tracklayer;",
        "CREATE SCHEMA IF NOT EXISTS events;",
        "CREATE ROLE IF NOT EXISTS tracklayer_writer;",
        "GRANT USAGE ON DATABASE tracklayer TO ROLE tracklayer_writer;",
        "GRANT USAGE ON SCHEMA tracklayer.events TO ROLE tracklayer_writer;",
        "GRANT CREATE TABLE ON SCHEMA tracklayer.events TO ROLE tracklayer_writer;",
        "GRANT USAGE ON WAREHOUSE analytics_wh TO ROLE tracklayer_writer;",
        "GRANT INSERT, SELECT ON FUTURE TABLES IN SCHEMA tracklayer.events\nTO ROLE tracklayer_writer;",
        "GRANT INSERT, SELECT ON ALL TABLES IN SCHEMA tracklayer.events\nTO ROLE tracklayer_writer;",
        "GRANT ROLE tracklayer_writer TO USER tracklayer_svc;",
        "ALTER USER tracklayer_svc SET NETWORK_POLICY = tracklayer_loader;",
    ):
        assert statement in setup, statement
    active = "\n".join(statements(SQL_DIR / "setup.sql"))
    assert "TYPE = SERVICE" in active and "RSA_PUBLIC_KEY = '<paste>'" in active
    assert "PASSWORD" not in active.upper().replace("MUST_CHANGE_PASSWORD", "")
    assert "RSA_PUBLIC_KEY_2" in setup and "OPERATE ON WAREHOUSE" in setup
