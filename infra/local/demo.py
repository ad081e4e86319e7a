"""`make demo`: a realistic ecommerce event stream through the real Lambda binaries into the local Snowflake.

    .venv/bin/python -m tracklayer_local.demo [--events 20000] [--seed 7] [--env-file .local/stack.env]
        [--dbt .venv-dbt/bin/dbt] [--target-dir target/debug] [--batch-size 1000] [--wave 50] [--verbose]

Needs a running local stack (`.venv/bin/python -m tracklayer_local.stack up`) and the debug binaries
(`cargo build -p ingest -p flush -p connection-test`). Steps:

1. generate a stream, the same for the same ``--seed`` (times relative to now): four merchants
   (USD, EUR, GBP), web/ios/android sessions walking view_content -> add_to_cart ->
   begin_checkout -> purchase with drop-off (35% / 60% / 70%), signed-in and anonymous visitors,
   repeat customers over ~6 months, ~0.5% broken events; packed into SQS message bodies as
   producers do (mostly one event, some JSON arrays, a few NDJSON bodies);
2. send them to the events queue (SendMessageBatch) in waves of ``--wave`` messages; after each
   wave lambda_host's SQS event source mapping runs ``ingest`` in scheduled mode on what is
   waiting (the local SQS, moto, pays for every message in proportion to the queue's length, so
   the queue is kept short, as it is when ingest keeps up with live traffic);
3. run ``flush`` (again while it reports ``partial``);
4. run ``connection-test`` (``test_sync``);
5. account for every event: sent == loaded (distinct event ids in RAW_EVENTS) + quarantined
   (RAW_EVENTS_REJECTED rows of this run's messages), per reason;
6. run the guide's sample queries (infra/sql/sample_queries.sql);
7. ``dbt build`` of infra/dbt (skipped, with a note, when the dbt executable is missing).

It ends by printing where each of these is seen in AWS: the dashboard and alarms of
template.yaml (read from it), the functions' logs, the dead-letter queue redrive commands, and
the quarantine queries (the first one run on the local stack).

Exit status 0 when every step worked and every event is accounted for (duplicates are reported
loudly but do not fail the demo); 1 otherwise; 2 for a setup error (no stack, no binaries). The
functions' logs go to ``$STACK_DIR/logs/demo-*.log``, dbt's output to ``demo-dbt.log`` there.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import unicodedata
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from snowflake.connector.errors import Error as ConnectorError
from tabulate import tabulate

from tracklayer_local.harness import (
    REPO,
    SqsClient,
    connect,
    dbt_environment,
    queue_depth,
    read_env_file,
    snowflake_port,
    sqs_client,
    stack_env_path,
)
from tracklayer_local.lambda_host import HostError, LambdaHost, run_sqs

GUIDE_QUERIES_FILE = REPO / "infra" / "sql" / "sample_queries.sql"
QUARANTINE_QUERIES_FILE = REPO / "infra" / "sql" / "quarantine_queries.sql"
TEMPLATE = REPO / "template.yaml"
MERCHANTS_FILE = Path(__file__).with_name("demo_merchants.json")  # four shops (USD, EUR, GBP) and their products
DBT_PROJECT = REPO / "infra" / "dbt"
DBT_VENV_HINT = "python3 -m venv .venv-dbt && .venv-dbt/bin/python -m pip install -r infra/dbt/requirements.txt"
STEPS = 7
INGEST_TIMEOUT_S = 60  # template.yaml defaults: IngestTimeoutSeconds, FlushTimeoutSeconds, MemorySize
FLUSH_TIMEOUT_S = 300
MEMORY_MB = 256
MAX_FLUSH_RUNS = 5
TABLE_ROWS = 10


class DemoError(Exception):
    """A setup problem reported as one line (exit status 2)."""


# ------------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------------


def say(line: str = "") -> None:
    print(line, flush=True)


def step(number: int, title: str) -> None:
    say()
    say(f"[{number}/{STEPS}] {title} ...")


def fmt_int(n: int) -> str:
    return f"{n:,}"


def fmt_cell(value: Any, column: str = "", max_width: int = 60) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (float, Decimal)) and column.lower().endswith("_rate"):
        return f"{float(value):.1%}"
    if isinstance(value, (float, Decimal)):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, datetime):
        if (value.hour, value.minute, value.second, value.microsecond) == (0, 0, 0, 0):
            return value.strftime("%Y-%m-%d")
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    text = " ".join(str(value).split())
    return text if len(text) <= max_width else text[: max_width - 1] + "…"


def print_table(
    columns: list[str], rows: list[list[Any]], indent: str = "    ", limit: int | None = None, max_width: int = 60
) -> None:
    shown = rows if limit is None else rows[:limit]
    cells = [[fmt_cell(v, columns[i], max_width) for i, v in enumerate(row)] for row in shown]
    numeric = [
        any(row[i] is not None for row in shown)
        and all(
            isinstance(row[i], (int, float, Decimal)) and not isinstance(row[i], bool)
            for row in shown
            if row[i] is not None
        )
        for i in range(len(columns))
    ]
    aligns = ["right" if is_number else "left" for is_number in numeric]
    text = tabulate(
        cells, headers=[c.lower() for c in columns], tablefmt="simple", colalign=aligns, disable_numparse=True
    )
    for line in text.splitlines():
        say((indent + line).rstrip())
    if limit is not None and len(rows) > limit:
        say(f"{indent}… {len(rows) - limit:,} more rows ({len(rows):,} in all)")
    elif not rows:
        say(f"{indent}(no rows)")


# ------------------------------------------------------------------------------------------------
# 1. The event stream
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    slug: str
    price: Decimal


@dataclass(frozen=True)
class Merchant:
    merchant_id: str
    currency: str
    domain: str
    app: str
    # (offset in minutes, share of events) for the shoppers' clocks; the rest send UTC or epoch ms
    offsets: tuple[tuple[int, int], ...]
    products: tuple[Product, ...]
    order_prefix: str
    weight: int  # share of the traffic


def _p(sku: str, name: str, price: str) -> Product:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return Product(sku, name, slug, Decimal(price))


def load_merchants(path: Path) -> tuple[Merchant, ...]:
    """The demo's shops, kept as data: each product a ``[sku, name, price]`` row."""
    return tuple(
        Merchant(
            m["merchant_id"],
            m["currency"],
            m["domain"],
            m["app"],
            tuple((offset, share) for offset, share in m["offsets"]),
            tuple(_p(sku, name, price) for sku, name, price in m["products"]),
            m["order_prefix"],
            m["weight"],
        )
        for m in json.loads(path.read_text(encoding="utf-8"))
    )


MERCHANTS = load_merchants(MERCHANTS_FILE)

PLATFORMS = (("web", "shopify-web", 55), ("ios", "ios-sdk", 28), ("android", "android-sdk", 17))
CAMPAIGNS = (  # (utm_source, utm_medium, utm_campaign, weight); None: direct / organic
    (None, None, None, 45),
    ("google", "cpc", "brand_search", 14),
    ("google", "cpc", "shopping_feed", 8),
    ("newsletter", "email", "weekly_picks", 10),
    ("instagram", "social", "spring_drop", 8),
    ("facebook", "paid_social", "retargeting_cart", 7),
    ("tiktok", "paid_social", "ugc_creators", 5),
    ("affiliate", "referral", "blogger_gift_guide", 3),
)
CONSENT = (("granted", 84), ("denied", 6), ("not_required", 7), (None, 3))
# Funnel drop-off per session: of the sessions that reached a step, the share that goes on.
P_ADD_TO_CART, P_CHECKOUT, P_PURCHASE = 0.35, 0.60, 0.70
HISTORY_DAYS = 182
DEFECTS = ("missing_merchant_id", "comma_decimal_value", "four_letter_currency", "invalid_json", "properties_array")
DEFECT_REASON = {
    "missing_merchant_id": "missing_field",
    "comma_decimal_value": "invalid_field",
    "four_letter_currency": "invalid_field",
    "invalid_json": "invalid_json",
    "properties_array": "invalid_field",
}
BAD_SHARE = 0.005


def pick(rng: random.Random, weighted: tuple) -> Any:  # items end with their weight
    item = rng.choices(weighted, weights=[w[-1] for w in weighted])[0]
    return item


@dataclass
class Visitor:
    merchant: Merchant
    user_id: str | int | None
    anonymous_id: str
    platform: tuple[str, str, int]
    first_seen: datetime
    loyalty: float  # relative chance of coming back


@dataclass
class DemoEvent:
    event_id: str
    text: str  # the JSON text as sent
    merchant_id: str | None
    defect: str | None = None

    @property
    def reason(self) -> str | None:
        return DEFECT_REASON[self.defect] if self.defect else None


@dataclass
class Stream:
    events: list[DemoEvent]
    bodies: list[tuple[str, list[DemoEvent]]]  # message body, the events in it
    shapes: Counter = field(default_factory=Counter)
    sessions: int = 0
    visitors: int = 0
    known_users: int = 0
    orders: int = 0


NUM = "\u0000num:"  # marker for numbers that must keep their two decimals in the JSON text


def money(value: Decimal) -> str:
    return f"{NUM}{value.quantize(Decimal('0.01'))}"


def to_json(obj: dict[str, Any]) -> str:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return re.sub(r'"\\u0000num:([0-9.]+)"', r"\1", text)


def event_time_value(rng: random.Random, when: datetime, merchant: Merchant) -> Any:
    """RFC 3339 in the shopper's offset (various), in UTC (Z), or epoch milliseconds."""
    style = rng.random()
    if style < 0.12:
        return int(when.timestamp() * 1000)
    offset = 0 if style < 0.32 else pick(rng, merchant.offsets)[0]
    local = when.astimezone(timezone(timedelta(minutes=offset)))
    fraction = rng.random()
    if fraction < 0.6:
        text = local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}"
    elif fraction < 0.75:
        text = local.strftime("%Y-%m-%dT%H:%M:%S.%f")
    else:
        text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if offset == 0 and style < 0.26:
        return text + "Z"
    sign = "-" if offset < 0 else "+"
    return text + f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"


def make_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass
class Session:
    """One visitor's session: what its events share, and the events so far."""

    rng: random.Random
    visitor: Visitor
    platform: str
    source: str
    utm: tuple[str | None, str | None, str | None]
    consent: str | None
    session_id: str
    lower_currency: bool
    when: datetime
    steps: list[dict[str, Any]] = field(default_factory=list)

    def event(self, name: str, products: list[tuple[Product, int]], extra: dict[str, Any] | None = None) -> None:
        """One more event of the session, a few seconds to minutes after the one before."""
        rng, m, visitor = self.rng, self.visitor.merchant, self.visitor
        platform, source, session_id, consent = self.platform, self.source, self.session_id, self.consent
        utm_source, utm_medium, utm_campaign = self.utm
        self.when = when = self.when + timedelta(seconds=rng.randint(8, 150), milliseconds=rng.randint(0, 999))
        lines = [(p, q) for p, q in products]
        total_value = sum((p.price * q for p, q in lines), Decimal("0"))
        slug = lines[0][0].slug
        if platform == "web":
            url = f"https://{m.domain}/products/{slug}"
            if utm_source:
                url += f"?utm_source={utm_source}&utm_medium={utm_medium}&utm_campaign={utm_campaign}"
        else:
            url = f"{m.app}://products/{slug}"
        if name == "begin_checkout":
            url = f"https://{m.domain}/checkout" if platform == "web" else f"{m.app}://checkout"
        elif name == "purchase":
            url = f"https://{m.domain}/checkout/thank-you" if platform == "web" else f"{m.app}://order-confirmation"
        properties: dict[str, Any] = {
            "page_url": url,
            "session_id": session_id,
            "products": [
                {"product_id": p.sku, "name": p.name, "quantity": q, "price": money(p.price)} for p, q in lines
            ],
        }
        if utm_source:
            properties.update(utm_source=utm_source, utm_medium=utm_medium, utm_campaign=utm_campaign)
        body: dict[str, Any] = {
            "event_id": make_uuid(rng),
            "event_time": event_time_value(rng, when, m),
            "merchant_id": m.merchant_id,
            "event_name": name,
        }
        if visitor.user_id is not None:
            body["user_id"] = visitor.user_id
        body["anonymous_id"] = visitor.anonymous_id
        if extra:
            body.update(extra)
        body["platform"] = platform
        body["source"] = source
        value = money(total_value)
        body["value"] = value if rng.random() > 0.08 else value[len(NUM) :]  # some SDKs send a string
        body["currency"] = m.currency.lower() if self.lower_currency else m.currency
        if consent is not None:
            body["consent_status"] = consent
        body["properties"] = properties
        self.steps.append(body)


def generate(total: int, seed: int, now: datetime) -> Stream:
    rng = random.Random(seed)
    n_bad = max(5, round(total * BAD_SHARE)) if total >= 200 else max(0, min(5, total // 20))
    n_good = total - n_bad
    start = now - timedelta(days=HISTORY_DAYS)

    # The visitors: per merchant a pool of returning visitors (signed-in customers, some loyal, and
    # anonymous devices); a share of the sessions comes from one-off anonymous visitors.
    visitors: list[Visitor] = []
    weights: list[float] = []
    for merchant in MERCHANTS:
        pool = max(20, round(n_good * merchant.weight / 100 / 14))
        for i in range(pool):
            known = rng.random() < 0.6
            first_seen = start + timedelta(seconds=rng.random() * HISTORY_DAYS * 86400 * 0.95)
            user_id = None
            if known:  # an SDK user id; a few shops send their numeric customer ids
                user_id = f"usr_{merchant.order_prefix.lower()}_{i:05d}" if rng.random() < 0.9 else 100000 + i
            loyalty = rng.paretovariate(1.5) if known else 1.0
            visitors.append(
                Visitor(
                    merchant, user_id, f"anon_{rng.getrandbits(64):016x}", pick(rng, PLATFORMS), first_seen, loyalty
                )
            )
            weights.append(merchant.weight * loyalty / pool)
    cum_weights = list(itertools.accumulate(weights))
    merchant_weights = [m.weight for m in MERCHANTS]

    # Sessions until enough events: each walks the funnel with drop-off.
    sessions: list[tuple[datetime, list[dict[str, Any]]]] = []
    produced = 0
    order_numbers: dict[str, int] = defaultdict(lambda: 100000)
    seen_visitors: set[int] = set()
    one_off = 0
    while produced < n_good:
        if rng.random() < 0.3:
            merchant = rng.choices(MERCHANTS, weights=merchant_weights)[0]
            first_seen = start + timedelta(seconds=rng.random() * HISTORY_DAYS * 86400)
            visitor = Visitor(merchant, None, f"anon_{rng.getrandbits(64):016x}", pick(rng, PLATFORMS), first_seen, 0)
            one_off += 1
        else:
            index = rng.choices(range(len(visitors)), cum_weights=cum_weights)[0]
            visitor = visitors[index]
            seen_visitors.add(index)
        m = visitor.merchant
        span = (now - visitor.first_seen).total_seconds()
        # recent activity is a bit denser (the store is growing)
        when = visitor.first_seen + timedelta(seconds=span * (rng.random() ** 0.8))
        when = min(when, now - timedelta(minutes=30))
        session_start = when
        platform, source, _ = visitor.platform if rng.random() < 0.85 else pick(rng, PLATFORMS)
        utm_source, utm_medium, utm_campaign, _ = pick(rng, CAMPAIGNS)
        consent = pick(rng, CONSENT)[0]
        session_id = f"ses_{rng.getrandbits(48):012x}"
        lower_currency = rng.random() < 0.04
        session = Session(
            rng,
            visitor,
            platform,
            source,
            (utm_source, utm_medium, utm_campaign),
            consent,
            session_id,
            lower_currency,
            when,
        )
        event, steps = session.event, session.steps

        viewed = rng.sample(m.products, k=min(len(m.products), 1 + min(3, int(rng.expovariate(0.9)))))
        for product in viewed:
            event("view_content", [(product, 1)])
        if rng.random() < P_ADD_TO_CART:
            cart = [(p, 1 if rng.random() < 0.8 else rng.randint(2, 3)) for p in viewed[: rng.randint(1, len(viewed))]]
            for line in cart:
                event("add_to_cart", [line])
            if rng.random() < P_CHECKOUT:
                event("begin_checkout", cart)
                if rng.random() < P_PURCHASE:
                    order_numbers[m.merchant_id] += rng.randint(1, 3)
                    event("purchase", cart, {"order_id": f"{m.order_prefix}-{order_numbers[m.merchant_id]}"})
        sessions.append((session_start, steps))
        produced += len(steps)

    sessions.sort(key=lambda s: s[0])
    bodies_good = [b for _, steps in sessions for b in steps][:n_good]
    events = [DemoEvent(b["event_id"], to_json(b), b["merchant_id"]) for b in bodies_good]

    # Broken events, as buggy producers send them: copies of real events with one defect each.
    bad: list[DemoEvent] = []
    for i in range(n_bad):
        defect = DEFECTS[i % len(DEFECTS)]
        template = dict(rng.choice(bodies_good))
        template["event_id"] = make_uuid(rng)
        merchant_id = template["merchant_id"]
        if defect == "missing_merchant_id":
            del template["merchant_id"]
            merchant_id = None
        elif defect == "comma_decimal_value":
            template["value"] = template["value"].replace(NUM, "").replace(".", ",")
        elif defect == "four_letter_currency":
            template["currency"] = "EURO"
        elif defect == "properties_array":
            template["properties"] = template["properties"]["products"]
        text = to_json(template)
        if defect == "invalid_json":  # cut off part-way, as by a client killed mid-send
            text = text[: len(text) * 3 // 5]
        bad.append(DemoEvent(template["event_id"], text, merchant_id, defect))

    # Insert the bad ones at random places, then pack into message bodies.
    for b in bad:
        events.insert(rng.randrange(len(events) + 1), b)
    bodies: list[tuple[str, list[DemoEvent]]] = []
    shapes: Counter = Counter()
    i = 0
    while i < len(events):
        r = rng.random()
        if r < 0.15:  # a mobile SDK's flush (every 30 s or 20 events): a JSON array
            n = rng.randint(2, 20)
            group = events[i : i + n]
            if any(e.defect == "invalid_json" for e in group[1:]) or (group and group[0].defect == "invalid_json"):
                group = events[i : i + 1]  # a broken element would spoil the whole array: send it alone
                bodies.append((group[0].text, group))
                shapes["single"] += 1
            else:
                bodies.append(("[" + ",".join(e.text for e in group) + "]", group))
                shapes["array"] += 1
        elif r < 0.19:  # a server-side backfill or webhook relay: NDJSON
            n = rng.randint(10, 50)
            group = events[i : i + n]
            if len(group) >= 2 and group[0].defect != "invalid_json":
                bodies.append(("\n".join(e.text for e in group) + "\n", group))
                shapes["ndjson"] += 1
            else:
                group = events[i : i + 1]
                bodies.append((group[0].text, group))
                shapes["single"] += 1
        else:
            group = events[i : i + 1]
            bodies.append((group[0].text, group))
            shapes["single"] += 1
        i += len(group)

    stream = Stream(events, bodies, shapes)
    stream.sessions = len(sessions)
    stream.visitors = len(seen_visitors) + one_off
    stream.known_users = len({visitors[i].user_id for i in seen_visitors if visitors[i].user_id})
    stream.orders = sum(1 for e in events if e.defect is None and '"event_name":"purchase"' in e.text)
    return stream


# ------------------------------------------------------------------------------------------------
# 2. Sending
# ------------------------------------------------------------------------------------------------


def send_batches(bodies: list[tuple[str, list[DemoEvent]]]) -> list[list[tuple[str, list[DemoEvent]]]]:
    """SendMessageBatch calls: 10 messages, at most 200 kB, each."""
    batches: list[list[tuple[str, list[DemoEvent]]]] = []
    current: list[tuple[str, list[DemoEvent]]] = []
    size = 0
    for body in bodies:
        length = len(body[0].encode())
        if current and (len(current) == 10 or size + length > 200_000):
            batches.append(current)
            current, size = [], 0
        current.append(body)
        size += length
    if current:
        batches.append(current)
    return batches


def send(
    sqs: SqsClient, queue_url: str, bodies: list[tuple[str, list[DemoEvent]]], pool: ThreadPoolExecutor
) -> dict[str, list[DemoEvent]]:
    """Sends with SendMessageBatch, a few calls in flight; returns message id -> its events."""
    sent: dict[str, list[DemoEvent]] = {}
    lock = threading.Lock()

    def one(batch: list[tuple[str, list[DemoEvent]]]) -> None:
        pending = {str(i): item for i, item in enumerate(batch)}
        result: dict[str, Any] = {}
        for _attempt in range(5):
            result = sqs.send_message_batch(
                QueueUrl=queue_url, Entries=[{"Id": k, "MessageBody": v[0]} for k, v in pending.items()]
            )
            with lock:
                for ok in result.get("Successful", []):
                    sent[ok["MessageId"]] = pending.pop(ok["Id"])[1]
            if not pending:
                return
            time.sleep(0.2)
        raise RuntimeError(f"SendMessageBatch kept failing: {result.get('Failed')}")

    for future in [pool.submit(one, b) for b in send_batches(bodies)]:
        future.result()
    return sent


def waiting_and_in_flight(sqs: SqsClient, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of the queue."""
    depth = queue_depth(sqs, url)
    return depth.visible, depth.in_flight


# ------------------------------------------------------------------------------------------------
# Snowflake (the drivers' protocol, as sfquery.py)
# ------------------------------------------------------------------------------------------------


class Warehouse:
    def __init__(self, port: int) -> None:
        self.conn = connect(port)

    def query(self, sql: str, params: tuple | None = None) -> tuple[list[str], list[list[Any]]]:
        cur = self.conn.cursor()
        try:
            cur.execute(sql, params)
            columns = [d.name for d in cur.description]
            return columns, [list(r) for r in cur.fetchall()]
        finally:
            cur.close()

    def close(self) -> None:
        self.conn.close()


def table_missing(error: Exception) -> bool:
    return "does not exist" in str(error)


def id_counts(wh: Warehouse, merchants: list[str]) -> Counter:
    """Rows per event id of these merchants (empty before the loader first created RAW_EVENTS)."""
    marks = ", ".join(["%s"] * len(merchants))
    try:
        _, rows = wh.query(
            f"SELECT EVENT_ID, COUNT(*) AS N FROM RAW_EVENTS WHERE MERCHANT_ID IN ({marks}) GROUP BY EVENT_ID",
            tuple(merchants),
        )
    except ConnectorError as e:
        if table_missing(e):
            return Counter()
        raise
    return Counter({r[0]: int(r[1]) for r in rows})


def rejected_rows(wh: Warehouse) -> list[tuple[Any, ...]]:
    """(source message id, reason, detail, event id, raw text) of every quarantined event."""
    try:
        _, rows = wh.query("SELECT SOURCE_MESSAGE_ID, REASON, DETAIL, EVENT_ID, RAW_TEXT FROM RAW_EVENTS_REJECTED")
    except ConnectorError as e:
        if table_missing(e):
            return []
        raise
    return [tuple(r) for r in rows]


@dataclass
class Accounting:
    sent: int
    valid_ids: set[str]
    loaded: int  # valid events of this run in RAW_EVENTS (distinct event ids)
    loaded_twice: int  # extra rows beyond one per event id
    unexpected: int  # rows of the demo merchants this run did not send
    quarantined: int  # distinct quarantined events from this run's messages
    quarantined_twice: int
    reasons: Counter
    expected_reasons: Counter
    fields: dict[str, Counter]
    examples: dict[str, str]


def account(wh: Warehouse, stream: Stream, sent: dict[str, list[DemoEvent]], before: Counter) -> Accounting:
    """What became of this run's events: rows are counted against the ids and message ids it sent."""
    run_rows = id_counts(wh, [m.merchant_id for m in MERCHANTS]) - before
    valid_ids = {e.event_id for e in stream.events if e.defect is None}
    rejections = [r for r in rejected_rows(wh) if r[0] in sent]  # this run's messages only
    distinct = {(r[0], r[1], r[3], r[4]): r for r in rejections}  # message, reason, event id, text
    fields: dict[str, Counter] = defaultdict(Counter)
    examples: dict[str, str] = {}
    for _message, reason, detail, _event_id, _text in distinct.values():
        examples.setdefault(reason, detail or "")
        if reason in ("invalid_field", "missing_field"):
            fields[reason][re.match(r"[\w.]*", detail or "").group(0) or "?"] += 1
    return Accounting(
        sent=len(stream.events),
        valid_ids=valid_ids,
        loaded=sum(1 for i in valid_ids if run_rows.get(i, 0) > 0),
        loaded_twice=sum(n - 1 for i, n in run_rows.items() if i in valid_ids and n > 1),
        unexpected=sum(n for i, n in run_rows.items() if i not in valid_ids),
        quarantined=len(distinct),
        quarantined_twice=len(rejections) - len(distinct),
        reasons=Counter(r[1] for r in distinct.values()),
        expected_reasons=Counter(e.reason for e in stream.events if e.defect),
        fields=dict(fields),
        examples=examples,
    )


def sample_queries() -> tuple[str, list[tuple[str, str]]]:
    """(where they come from, [(title, sql)])."""
    if GUIDE_QUERIES_FILE.is_file():
        queries: list[tuple[str, str]] = []
        for chunk in GUIDE_QUERIES_FILE.read_text().split(";"):
            title, sql_lines = None, []
            for line in chunk.splitlines():
                if line.strip().startswith("--"):
                    if not sql_lines:
                        title = line.strip().lstrip("-").strip()
                elif line.strip() or sql_lines:
                    sql_lines.append(line)
            sql = "\n".join(sql_lines).strip()
            if sql:
                queries.append((title or f"query {len(queries) + 1}", sql))
        if queries:
            return str(GUIDE_QUERIES_FILE.relative_to(REPO)), queries
    raise DemoError(f"{GUIDE_QUERIES_FILE} holds no queries")


# ------------------------------------------------------------------------------------------------
# The steps
# ------------------------------------------------------------------------------------------------


@dataclass
class Demo:
    args: argparse.Namespace
    env: dict[str, str]
    stack_dir: Path
    timings: list[tuple[str, float, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # fail the demo
    warnings: list[str] = field(default_factory=list)  # shown loudly, do not fail it
    notes: list[str] = field(default_factory=list)

    def binary(self, name: str) -> Path:
        path = Path(self.args.target_dir)
        path = path if path.is_absolute() else REPO / path
        return path / name

    def log(self, name: str) -> Path:
        return self.stack_dir / "logs" / f"demo-{name}.log"

    def function_env(self, **extra: str) -> dict[str, str]:
        return {**self.env, **extra}

    def timed(self, label: str, started: float, outcome: str) -> None:
        self.timings.append((label, time.monotonic() - started, outcome))


def check_setup(args: argparse.Namespace) -> tuple[dict[str, str], Path]:
    env_path = Path(args.env_file) if args.env_file else stack_env_path()
    if not env_path.is_file():
        raise DemoError(
            f"{env_path} does not exist: start the local stack first (`make stack-up`, or "
            "`.venv/bin/python -m tracklayer_local.stack up`)"
        )
    env = read_env_file(str(env_path))
    for key in (
        "AWS_ENDPOINT_URL",
        "TRACKLAYER_EVENTS_QUEUE_URL",
        "TRACKLAYER_STAGING_QUEUE_URL",
        "TRACKLAYER_SECRET_ID",
        "SNOWFLAKE_EMULATOR_URL",
    ):
        if not env.get(key):
            raise DemoError(f"{env_path} has no {key}; restart the stack (`make stack-up`)")
    import urllib.error
    import urllib.request

    for name, url in (
        ("moto", env["AWS_ENDPOINT_URL"] + "/moto-api/"),
        ("local Snowflake", env["SNOWFLAKE_EMULATOR_URL"] + "/__emulator/health"),
    ):
        try:
            with urllib.request.urlopen(url, timeout=3):
                pass
        except urllib.error.HTTPError as e:
            if e.code >= 500:
                raise DemoError(f"{name} at {url} answers {e.code}; restart the stack (`make stack-up`)") from e
        except OSError as e:
            raise DemoError(f"{name} does not answer at {url} ({e}); start the stack (`make stack-up`)") from e
    return env, env_path.parent


@dataclass
class StreamResult:
    sent: dict[str, list[DemoEvent]] = field(default_factory=dict)  # message id -> its events
    totals: Counter = field(default_factory=Counter)  # from ingest's summary lines
    batches: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    messages_deleted: int = 0
    messages_failed: int = 0
    invocation_errors: int = 0
    send_s: float = 0.0
    ingest_s: float = 0.0
    host: dict[str, Any] = field(default_factory=dict)


def stream_through_ingest(demo: Demo, sqs: SqsClient, bodies: list[tuple[str, list[DemoEvent]]]) -> StreamResult:
    """Producers send in waves; after each, the event source mapping drains the queue through ingest.

    The local SQS (moto) pays for every message sent or received in proportion to the messages
    in the queue, so 14,000 messages sent at once would take it many minutes. In waves the queue
    stays as short as it is in production, where ingest keeps up with the producers.
    """
    log = demo.log("ingest")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    env = demo.function_env(
        TRACKLAYER_LOAD_MODE="scheduled", TRACKLAYER_STAGING_QUEUE_URL=demo.env["TRACKLAYER_STAGING_QUEUE_URL"]
    )
    queue_url = demo.env["TRACKLAYER_EVENTS_QUEUE_URL"]
    result = StreamResult()
    offset = [0]
    verbose = demo.args.verbose

    def on_batch(line: str) -> None:
        if not line.startswith("batch "):
            if line != "queue is empty":
                say(f"    lambda_host: {line}")
            return
        summary: dict[str, Any] = {}
        with open(log, encoding="utf-8", errors="replace") as f:  # the function's summary line of this batch
            f.seek(offset[0])
            chunk = f.read()
            offset[0] = f.tell()
        for text in chunk.splitlines():
            if "ingest invocation summary" in text:
                with contextlib.suppress(ValueError):
                    summary = json.loads(text[text.index("{") :])
        staged = int(summary.get("EventsStaged", summary.get("events", 0) - summary.get("rejected", 0)))
        for key in ("messages", "events", "rejected", "chunks", "failures"):
            result.totals[key] += int(summary.get(key, 0))
        result.totals["staged"] += staged
        result.batch_sizes.append(int(summary.get("messages", 0)))
        if verbose:
            say(
                f"      ingest {line.split(':')[0]}: {summary.get('messages', 0)} messages -> "
                f"{summary.get('events', 0)} events, {staged} staged in {summary.get('chunks', 0)} chunks, "
                f"{summary.get('rejected', 0)} rejected, {summary.get('failures', 0)} failed "
                f"({summary.get('duration_ms', 0)} ms)"
            )

    waves = [bodies[i : i + demo.args.wave] for i in range(0, len(bodies), demo.args.wave)]
    next_report = 0.0
    started = time.monotonic()
    with (
        ThreadPoolExecutor(max_workers=4) as pool,
        LambdaHost(
            demo.binary("ingest"),
            "ingest",
            env=env,
            timeout=INGEST_TIMEOUT_S,
            memory_mb=MEMORY_MB,
            log=log,
            progress=on_batch,
        ) as host,
    ):
        host.wait_ready()
        sent_messages = sent_events = 0
        for number, wave in enumerate(waves, 1):
            t = time.monotonic()
            result.sent.update(send(sqs, queue_url, wave, pool))
            result.send_s += time.monotonic() - t
            sent_messages += len(wave)
            sent_events += sum(len(events) for _, events in wave)
            t = time.monotonic()
            stats = run_sqs(
                host, queue_url, batch_size=demo.args.batch_size, until_empty=True, wait=0, sqs=sqs, progress=on_batch
            )
            result.ingest_s += time.monotonic() - t
            result.batches += stats["batches"]
            result.messages_deleted += stats["messages_deleted"]
            result.messages_failed += stats["messages_failed"]
            result.invocation_errors += stats["invocation_errors"]
            if stats["init_error"]:
                say(f"    ingest could not start: {stats['init_error']}")
                break
            share = number / len(waves)
            if share >= next_report or number == len(waves):
                tot = result.totals
                say(
                    f"    {share:4.0%}  sent {fmt_int(sent_messages):>6} messages ({fmt_int(sent_events):>6} events)"
                    f" | ingest: {result.batches:>3} invocations, {fmt_int(tot['staged']):>6} staged, "
                    f"{tot['rejected']:>3} rejected, {result.messages_failed} failed"
                    f" | {time.monotonic() - started:5.1f} s"
                )
                next_report = share + 0.1
        # whatever failed and came back (or reached the queue late) is drained too
        stats = run_sqs(
            host, queue_url, batch_size=demo.args.batch_size, until_empty=True, wait=0, sqs=sqs, progress=on_batch
        )
        result.batches += stats["batches"]
        result.messages_deleted += stats["messages_deleted"]
        result.messages_failed += stats["messages_failed"]
        result.invocation_errors += stats["invocation_errors"]
        result.host = host.summary()
    return result


def run_flush(demo: Demo) -> list[dict[str, Any]]:
    log = demo.log("flush")
    log.parent.mkdir(parents=True, exist_ok=True)
    env = demo.function_env(TRACKLAYER_STAGING_QUEUE_URL=demo.env["TRACKLAYER_STAGING_QUEUE_URL"])
    reports: list[dict[str, Any]] = []
    with LambdaHost(
        demo.binary("flush"), "flush", env=env, timeout=FLUSH_TIMEOUT_S, memory_mb=MEMORY_MB, log=log
    ) as host:
        for run in range(1, MAX_FLUSH_RUNS + 1):
            ok, report = host.invoke({})
            if not ok:
                report = {"status": "error", **report}
            reports.append(report)
            status = report.get("status")
            say(
                f"    run {run}: {status}: {fmt_int(report.get('events_loaded', 0))} events loaded, "
                f"{fmt_int(report.get('events_rejected', 0))} quarantined, {report.get('chunks_loaded', 0)} chunks, "
                f"{report.get('statements', 0)} statements ({host.durations_ms[-1] / 1000:.1f} s)"
            )
            if report.get("error"):
                say(f"      error: {report['error']}")
                if report.get("fix"):
                    say(f"      fix: {report['fix']}")
            if status != "partial":
                break
    return reports


def run_connection_test(demo: Demo) -> tuple[bool, dict[str, Any]]:
    log = demo.log("connection-test")
    log.parent.mkdir(parents=True, exist_ok=True)
    with LambdaHost(
        demo.binary("connection-test"),
        "connection-test",
        env=demo.function_env(),
        timeout=60,
        memory_mb=MEMORY_MB,
        log=log,
    ) as host:
        return host.invoke({"mode": "test_sync"})


def run_dbt(demo: Demo, dbt: Path) -> tuple[bool, str, list[dict[str, Any]], str]:
    work = demo.stack_dir / "dbt-demo"
    port = demo.env["SNOWFLAKE_EMULATOR_URL"].rsplit(":", 1)[1]
    schema = os.environ.get("DBT_SCHEMA") or "ANALYTICS"
    env = dbt_environment(demo.env, schema)
    command = [
        str(dbt),
        "build",
        "--project-dir",
        str(DBT_PROJECT),
        "--profiles-dir",
        str(DBT_PROJECT),
        "--target",
        "local",
        "--target-path",
        str(work / "target"),
        "--log-path",
        str(work / "logs"),
        "--no-use-colors",
    ]
    say(
        f"    $ {dbt.relative_to(REPO) if dbt.is_relative_to(REPO) else dbt} build --project-dir infra/dbt "
        f"--profiles-dir infra/dbt --target local   (SNOWFLAKE_PORT={port}, schema {schema})"
    )
    lines: list[str] = []
    process = subprocess.Popen(
        command, cwd=DBT_PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert process.stdout is not None
    progress = re.compile(r"(\d+) of (\d+) (OK|PASS|WARN|ERROR|FAIL|SKIP)\b")
    shown = time.monotonic()
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        text = line.rstrip()
        m = progress.search(text)
        if m and (" model " in text or m.group(3) not in ("OK", "PASS")):
            say("    " + re.sub(r"^\d\d:\d\d:\d\d\s+", "", text).strip())  # models, and anything not passing
        elif m and time.monotonic() - shown > 3:
            say(f"    … {m.group(1)} of {m.group(2)} done")
            shown = time.monotonic()
    status = process.wait()
    output = "\n".join(lines)
    (demo.stack_dir / "logs").mkdir(parents=True, exist_ok=True)
    (demo.stack_dir / "logs" / "demo-dbt.log").write_text(output + "\n")
    results_file = work / "target" / "run_results.json"
    results = json.loads(results_file.read_text()).get("results", []) if results_file.exists() else []
    return status == 0, output, results, schema


def template_names(kind: str) -> list[str]:
    """Logical ids of template.yaml's resources of one type (read as text: no YAML dependency)."""
    text = TEMPLATE.read_text() if TEMPLATE.is_file() else ""
    return re.findall(rf"^  (\w+):\n    Type: {re.escape(kind)}$", text, re.M)


def template_outputs() -> list[str]:
    text = TEMPLATE.read_text() if TEMPLATE.is_file() else ""
    outputs = text.split("\nOutputs:\n", 1)[1] if "\nOutputs:\n" in text else ""
    return re.findall(r"^  (\w+):$", outputs, re.M)


def where_in_aws(wh: Warehouse, reports: list[dict[str, Any]]) -> None:
    """Where each thing the demo showed is seen once deployed."""
    loaded = [r for r in reports if r.get("loaded_age_ms") is not None]
    outputs = set(template_outputs())
    say()
    say("Where to see this in AWS once deployed (docs/operations.md), with the stack's outputs:")
    say(
        '  STACK=tracklayer-snowflake; output() { aws cloudformation describe-stacks --stack-name "$STACK" '
        "--query \"Stacks[0].Outputs[?OutputKey=='$1'].OutputValue\" --output text; }"
    )
    say(
        "  dashboard   $(output DashboardUrl)"
        + ("" if "DashboardUrl" in outputs else "  (missing from template.yaml!)")
    )
    say("              events loaded, rejected and staged per minute; freshness (LoadedEventAgeSeconds); queue depth")
    say("              and age of the oldest message; dead-letter queues; function errors, throttles, duration;")
    say(
        "              Snowflake statements per flush run"
        + (
            f" (this demo's flush: {sum(int(r.get('statements', 0)) for r in reports)} statements, oldest chunk "
            f"{max(int(r['loaded_age_ms']) for r in loaded) / 1000:.1f} s on the staging queue)"
            if loaded
            else ""
        )
    )
    alarms = template_names("AWS::CloudWatch::Alarm")
    say(f"  alarms      $(output AlarmsUrl): {', '.join(alarms)}")
    say("              every one notifies AlarmTopicArn when set (docs/operations.md, Alarms)")
    say(
        "  logs        CloudWatch Logs /aws/lambda/$(output IngestFunctionName) and $(output FlushFunctionName): one "
        "JSON"
    )
    say(
        "              summary line per invocation, as in the demo-*.log files above (Logs Insights: filter "
        "ispresent(error))"
    )
    say("  redrive     after fixing the cause of a message in a dead-letter queue:")
    say(
        '              aws sqs start-message-move-task --source-arn "$(output EventsDeadLetterQueueArn)" '
        '--destination-arn "$(output EventsQueueArn)"'
    )
    say(
        '              aws sqs start-message-move-task --source-arn "$(output StagingDeadLetterQueueArn)" '
        '--destination-arn "$(output StagingQueueArn)"'
    )
    say(
        '              aws sqs list-message-move-tasks --source-arn "$(output EventsDeadLetterQueueArn)"   '
        "(locally: make redrive-local)"
    )
    say(
        f"  quarantine  {QUARANTINE_QUERIES_FILE.relative_to(REPO)} in a worksheet: by reason and day, the latest five "
        "examples per reason, by merchant;"
    )
    if not QUARANTINE_QUERIES_FILE.is_file():
        say("              (the file is missing)")
        return
    text = "\n".join(line for line in QUARANTINE_QUERIES_FILE.read_text().splitlines() if not line.startswith("--"))
    first = next(q.strip() for q in text.split(";") if q.strip())
    import snowflake.connector.errors

    try:
        columns, rows = wh.query(first)
    except snowflake.connector.errors.Error as e:
        say(f"              (the first query failed here: {e})")
        return
    say("              the first one on this stack:")
    print_table(columns, rows, indent="                ", limit=TABLE_ROWS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events to send (20000)")
    parser.add_argument("--seed", type=int, default=7, help="random seed: the same seed, the same stream (7)")
    parser.add_argument("--env-file", help="the stack's settings (default $STACK_DIR/stack.env, .local/stack.env)")
    parser.add_argument("--dbt", default=str(REPO / ".venv-dbt" / "bin" / "dbt"), help="the dbt executable")
    parser.add_argument("--target-dir", default="target/debug", help="where the built binaries are (target/debug)")
    parser.add_argument("--batch-size", type=int, default=1000, help="SQS messages per ingest invocation (1000)")
    parser.add_argument("--wave", type=int, default=50, help="messages sent before ingest drains the queue (50)")
    parser.add_argument("--verbose", action="store_true", help="one line per ingest invocation")
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error("--events must be at least 1")

    demo_started = time.monotonic()
    try:
        env, stack_dir = check_setup(args)
    except DemoError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 2
    demo = Demo(args, env, stack_dir)
    missing = [n for n in ("ingest", "flush", "connection-test") if not demo.binary(n).is_file()]
    if missing:
        print(
            f"demo: {', '.join(str(demo.binary(n)) for n in missing)} missing: build them first "
            f"(`cargo build -p ingest -p flush -p connection-test`)",
            file=sys.stderr,
        )
        return 2

    say("TrackLayer -> Snowflake demo: a synthetic ecommerce stream through the real Lambda binaries")
    say(f"  stack: {env['AWS_ENDPOINT_URL']} (SQS, Secrets Manager), local Snowflake {env['SNOWFLAKE_EMULATOR_URL']}")
    say(f"  binaries: {demo.binary('ingest').parent}; function logs: {stack_dir / 'logs'}/demo-*.log")

    sqs = sqs_client(env)
    port = snowflake_port(env)
    wh = Warehouse(port)
    merchants = [m.merchant_id for m in MERCHANTS]

    # ---- 1. generate
    step(1, f"generate {fmt_int(args.events)} events (seed {args.seed})")
    t = time.monotonic()
    now = datetime.now(UTC).replace(microsecond=0)
    stream = generate(args.events, args.seed, now)
    by_name = Counter(json.loads(e.text).get("event_name") for e in stream.events if e.defect is None)
    by_defect = Counter(e.defect for e in stream.events if e.defect)
    per_merchant = Counter(e.merchant_id for e in stream.events if e.defect is None)
    say(
        f"    {fmt_int(stream.sessions)} sessions of {fmt_int(stream.visitors)} visitors "
        f"({fmt_int(stream.known_users)} signed-in customers, the rest anonymous), "
        f"{fmt_int(stream.orders)} orders, over the last {HISTORY_DAYS} days"
    )
    say(
        "    funnel: "
        + ", ".join(f"{n} {fmt_int(by_name[n])}" for n in ("view_content", "add_to_cart", "begin_checkout", "purchase"))
    )
    say(
        "    merchants: "
        + ", ".join(f"{m.merchant_id} ({m.currency}) {fmt_int(per_merchant[m.merchant_id])}" for m in MERCHANTS)
    )
    say(
        f"    broken on purpose: {sum(by_defect.values())}"
        + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(by_defect.items())) + ")" if by_defect else "")
    )
    say(
        f"    packed into {fmt_int(len(stream.bodies))} SQS messages: {fmt_int(stream.shapes['single'])} single "
        "events, "
        f"{stream.shapes['array']} JSON arrays, {stream.shapes['ndjson']} NDJSON bodies "
        f"({sum(len(b.encode()) for b, _ in stream.bodies) / 1e6:.1f} MB)"
    )
    demo.timed("1 generate", t, f"{fmt_int(len(stream.events))} events")

    before = id_counts(wh, merchants)
    if before:
        demo.notes.append(
            f"RAW_EVENTS already held {fmt_int(sum(before.values()))} rows of the demo merchants (an earlier demo "
            "on this stack); the accounting counts this run only, the sample queries and dbt see both "
            "(restart the stack for a clean slate)"
        )
    waiting, inflight = waiting_and_in_flight(sqs, env["TRACKLAYER_EVENTS_QUEUE_URL"])
    if waiting or inflight:
        demo.notes.append(f"the events queue already held {waiting + inflight} messages; ingest consumed them too")

    # ---- 2. send + ingest
    queue_name = env["TRACKLAYER_EVENTS_QUEUE_URL"].rsplit("/", 1)[-1]
    step(
        2,
        f"send + ingest: SendMessageBatch to {queue_name}; ingest (scheduled mode) through the SQS event source "
        "mapping",
    )
    say(
        f"    Producers send in waves of {args.wave} messages and the mapping (batch size {args.batch_size}, as in "
        "template.yaml) invokes ingest"
    )
    say("    with what is waiting, as when ingest keeps up with live traffic (the local SQS slows down sharply")
    say("    with thousands of messages queued). ingest validates, batches and stages chunks; no Snowflake yet.")
    t = time.monotonic()
    try:
        streamed = stream_through_ingest(demo, sqs, stream.bodies)
    except HostError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 2
    sent = streamed.sent
    totals = streamed.totals
    host = streamed.host
    sizes = streamed.batch_sizes or [0]
    say(f"    sent: {fmt_int(len(sent))} messages with SendMessageBatch in {streamed.send_s:.1f} s")
    say(
        f"    ingest: {streamed.batches} invocations of {min(sizes)}-{max(sizes)} messages in "
        f"{streamed.ingest_s:.1f} s: "
        f"{fmt_int(totals['events'])} events, {fmt_int(totals['staged'])} staged for flush in "
        f"{fmt_int(totals['chunks'])} chunks, {totals['rejected']} rejected (staged for the quarantine), "
        f"{streamed.messages_failed} messages left for redelivery"
    )
    durations = sorted(host.get("durations_ms") or [0])
    say(
        f"    ingest function: cold start {host.get('cold_start_ms') or 0:.0f} ms, median invocation "
        f"{durations[len(durations) // 2]:.0f} ms, CPU {host.get('cpu_ms') or 0:.0f} ms in all, "
        f"peak RSS {(host.get('peak_rss_kb') or 0) / 1024:.0f} MB"
    )
    if streamed.invocation_errors or host.get("init_error"):
        demo.problems.append(
            f"ingest: {streamed.invocation_errors} failed invocations {host.get('init_error') or ''}"
            f" (see {demo.log('ingest')})"
        )
    staged_waiting, _ = waiting_and_in_flight(sqs, env["TRACKLAYER_STAGING_QUEUE_URL"])
    say(f"    staging queue: {staged_waiting} chunks waiting for flush; Snowflake not contacted yet")
    demo.timed("2 send + ingest", t, f"send {streamed.send_s:.0f} s, ingest {streamed.ingest_s:.0f} s")

    # ---- 3. flush
    step(3, "flush: load the staged chunks into RAW_EVENTS / RAW_EVENTS_REJECTED")
    t = time.monotonic()
    reports = run_flush(demo)
    report = reports[0]
    say("    report of run 1:" if len(reports) > 1 else "    report:")
    for key, value in report.items():
        say(f"      {key:<20} {value}")
    statuses = [r.get("status") for r in reports]
    last = reports[-1]
    if last.get("status") != "loaded" and statuses != ["empty"]:
        errors = "; ".join(
            f"{r.get('error') or r.get('errorMessage')} ({r.get('fix')})"
            if r.get("fix")
            else str(r.get("error") or r.get("errorMessage") or "")
            for r in reports
            if r.get("error") or r.get("errorMessage")
        )
        leftover = last.get("leftover_estimate")
        say(
            f"    !! flush runs ended {' -> '.join(map(str, statuses))}; about {leftover} chunks are still on the "
            "staging queue (failed chunks stay invisible until their visibility timeout ends, then the next "
            "scheduled flush retries them)"
        )
        demo.problems.append(f"flush did not load everything ({' -> '.join(map(str, statuses))}): {errors}")
    demo.timed("3 flush", t, f"{len(reports)} run(s): {' -> '.join(map(str, statuses))}")

    # ---- 4. connection-test
    step(4, 'connection-test {"mode": "test_sync"}')
    t = time.monotonic()
    ok, answer = run_connection_test(demo)
    if ok:
        checks = answer.get("checks", [])
        rows = [[c.get("name"), c.get("status"), c.get("detail", ""), c.get("fix", "")] for c in checks]
        if any(c.get("fix") for c in checks):
            print_table(["check", "status", "detail", "fix"], rows, max_width=80)
            for c in checks:
                if c.get("status") not in ("pass", "skip"):
                    say(f"    {c.get('name')} ({c.get('status')}): {c.get('detail')}")
                    if c.get("fix"):
                        say(f"      fix: {c.get('fix')}")
        else:  # every check passed: no fixes to show
            print_table(["check", "status", "detail"], [row[:3] for row in rows], max_width=110)
        say(
            f"    ok: {answer.get('ok')}; test event {answer.get('test_event_id')} "
            "(event_name tracklayer_connection_test, merchant tracklayer; dbt staging drops it)"
        )
        if not answer.get("ok"):
            demo.problems.append("connection-test reported a failing check")
    else:
        say(f"    invocation failed: {answer}")
        demo.problems.append("connection-test did not answer")
    demo.timed("4 connection-test", t, "ok" if ok and answer.get("ok") else "FAILED")

    # ---- 5. accounting
    step(5, "account for every event: sent == loaded + quarantined")
    t = time.monotonic()
    acc = account(wh, stream, sent, before)
    loaded, quarantined, n_sent = acc.loaded, acc.quarantined, acc.sent
    loaded_twice, quarantined_twice, unexpected = acc.loaded_twice, acc.quarantined_twice, acc.unexpected
    valid_ids, got_reasons, expected_reasons = acc.valid_ids, acc.reasons, acc.expected_reasons
    print_table(
        ["", "events"],
        [
            ["sent", n_sent],
            ["loaded (distinct event ids in RAW_EVENTS)", loaded],
            ["quarantined (RAW_EVENTS_REJECTED)", quarantined],
            ["loaded + quarantined", loaded + quarantined],
        ],
    )
    say("    quarantined by reason (expected: the broken events step 1 made):")
    print_table(
        ["reason", "events", "expected", "by field", "example detail"],
        [
            [
                reason,
                got_reasons.get(reason, 0),
                expected_reasons.get(reason, 0),
                ", ".join(f"{f} {n}" for f, n in sorted(acc.fields.get(reason, Counter()).items())),
                acc.examples.get(reason, ""),
            ]
            for reason in sorted(set(got_reasons) | set(expected_reasons))
        ],
        indent="      ",
        max_width=90,
    )
    problems_before = len(demo.problems)
    if loaded + quarantined == n_sent and loaded == len(valid_ids):
        say(
            f"    OK: all {fmt_int(n_sent)} events accounted for ({fmt_int(loaded)} loaded + {quarantined} quarantined)"
        )
        outcome = "OK"
    else:
        diff = n_sent - loaded - quarantined
        say("    " + "!" * 80)
        say(
            f"    MISMATCH: sent {fmt_int(n_sent)} != loaded {fmt_int(loaded)} + quarantined {fmt_int(quarantined)}"
            f" (difference {diff:+,}); {fmt_int(len(valid_ids) - loaded)} valid events are not in RAW_EVENTS"
        )
        say("    " + "!" * 80)
        what = "missing (neither in RAW_EVENTS nor in the quarantine)" if diff > 0 else "too many"
        demo.problems.append(
            f"{abs(diff):,} events {what}: sent {n_sent:,}, loaded {loaded:,}, quarantined {quarantined:,}"
        )
        outcome = f"MISMATCH {diff:+,}"
    if loaded_twice or quarantined_twice:
        say("    " + "!" * 80)
        say(
            f"    DUPLICATES: {loaded_twice} extra rows in RAW_EVENTS, {quarantined_twice} in RAW_EVENTS_REJECTED "
            "(a chunk loaded twice; dbt staging deduplicates RAW_EVENTS by event_id)"
        )
        say("    " + "!" * 80)
        demo.warnings.append(
            f"duplicates: {loaded_twice} extra RAW_EVENTS rows, {quarantined_twice} extra "
            "RAW_EVENTS_REJECTED rows (a staged chunk loaded twice)"
        )
        outcome += f", {loaded_twice + quarantined_twice} duplicate rows"
    if unexpected:
        say(f"    note: {fmt_int(unexpected)} rows of the demo merchants that this run did not send")
    if got_reasons != expected_reasons:
        demo.warnings.append(
            f"quarantine reasons {dict(got_reasons)} differ from the expected {dict(expected_reasons)}"
        )
    for name, url in (
        ("events DLQ", env.get("TRACKLAYER_EVENTS_DLQ_URL")),
        ("staging DLQ", env.get("TRACKLAYER_STAGING_DLQ_URL")),
    ):
        if url:
            depth = sum(waiting_and_in_flight(sqs, url))
            if depth:
                say(f"    !! {name}: {depth} messages")
                demo.problems.append(f"{name} holds {depth} messages")
    if len(demo.problems) > problems_before and outcome == "OK":
        outcome = "DLQ not empty"
    demo.timed("5 accounting", t, outcome)

    # ---- 6. sample queries
    origin, queries = sample_queries()
    step(6, f"the guide's sample queries (from {origin})")
    t = time.monotonic()
    failed_queries = 0
    for title, sql in queries:
        q_started = time.monotonic()
        try:
            columns, rows = wh.query(sql)
        except ConnectorError as e:
            say(f"    -- {title}: FAILED: {e}")
            failed_queries += 1
            continue
        say(f"    -- {title}: {fmt_int(len(rows))} rows in {time.monotonic() - q_started:.2f} s")
        print_table(columns, rows, indent="      ", limit=TABLE_ROWS)
    if failed_queries:
        demo.problems.append(f"{failed_queries} sample queries failed")
    demo.timed("6 sample queries", t, f"{len(queries) - failed_queries}/{len(queries)} ran")

    # ---- 7. dbt
    step(7, "dbt build (infra/dbt: staging -> marts)")
    t = time.monotonic()
    dbt = Path(args.dbt)
    dbt = dbt if dbt.is_absolute() else REPO / dbt
    if not dbt.is_file():
        say(f"    SKIPPED: {dbt} is missing. Create the dbt venv with:")
        say(f"      {DBT_VENV_HINT}")
        demo.notes.append("dbt build skipped (no dbt venv)")
        demo.timed("7 dbt build", t, "skipped")
    elif not DBT_PROJECT.joinpath("dbt_project.yml").is_file():
        say(f"    SKIPPED: {DBT_PROJECT}/dbt_project.yml is missing")
        demo.timed("7 dbt build", t, "skipped")
    else:
        ok, output, results, schema = run_dbt(demo, dbt)
        summary = re.findall(r"Done\. PASS=\d+.*", output)
        say(f"    {summary[-1] if summary else '(no summary line)'}")
        if not ok:
            say("    dbt build FAILED; the end of its output:")
            for line in output.splitlines()[-25:]:
                say("      " + line)
            demo.problems.append(f"dbt build failed (full output: {stack_dir / 'logs' / 'demo-dbt.log'})")
        else:
            models = [r["unique_id"].split(".")[-1] for r in results if r["unique_id"].startswith("model.")]
            counts = []
            for model in models:
                try:
                    _, rows = wh.query(f"SELECT COUNT(*) AS N FROM TRACKLAYER.{schema}.{model.upper()}")
                    counts.append([f"TRACKLAYER.{schema}.{model.upper()}", rows[0][0]])
                except ConnectorError as e:
                    counts.append([f"TRACKLAYER.{schema}.{model.upper()}", f"? ({e})"])
            say("    what dbt built:")
            print_table(["model", "rows"], counts, indent="      ")
            if "dim_customers" in models:
                try:
                    columns, rows = wh.query(
                        "SELECT MERCHANT_ID, CUSTOMER_TYPE, COUNT(*) AS CUSTOMERS, CAST(SUM(ORDERS) AS INTEGER) AS "
                        "ORDERS, "
                        f"SUM(LIFETIME_REVENUE) AS REVENUE, MIN(CURRENCY) AS CURRENCY "
                        f"FROM TRACKLAYER.{schema}.DIM_CUSTOMERS GROUP BY 1, 2 ORDER BY 1, 2"
                    )
                    say("    customers by type (DIM_CUSTOMERS):")
                    print_table(columns, rows, indent="      ", limit=16)
                except ConnectorError as e:
                    say(f"    (customer preview unavailable: {e})")
        demo.timed("7 dbt build", t, "OK" if ok else "FAILED")

    # ---- summary
    total = time.monotonic() - demo_started
    say()
    say("Summary")
    print_table(
        ["step", "seconds", "outcome"],
        [[label, round(s, 1), outcome] for label, s, outcome in demo.timings] + [["total", round(total, 1), ""]],
        indent="  ",
    )
    for note in demo.notes:
        say(f"  note: {note}")
    for warning in demo.warnings:
        say(f"  WARNING: {warning}")
    say(f"  function logs: {stack_dir / 'logs'}/demo-{{ingest,flush,connection-test,dbt}}.log")
    if demo.problems:
        say()
        say("DEMO FAILED:")
        for problem in demo.problems:
            say(f"  - {problem}")
        where_in_aws(wh, reports)
        wh.close()
        return 1
    say()
    say(
        f"Demo OK: {fmt_int(n_sent)} events sent, {fmt_int(loaded)} loaded, {fmt_int(quarantined)} quarantined, "
        f"none lost, in {total:.0f} s."
    )
    say("To explore the data yourself, keep a stack running (`make stack-up`, then this script), and query it:")
    say(
        f"  .venv/bin/python -m tracklayer_local.sfquery --port {port} "
        '"SELECT REASON, DETAIL, RAW_TEXT FROM RAW_EVENTS_REJECTED LIMIT 5"'
    )
    where_in_aws(wh, reports)
    wh.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
