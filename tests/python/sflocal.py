"""Small clients for the local stack, used by the tests: raw HTTP, the SQL API, control endpoints, keys."""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tracklayer_local.harness import one_request

USER_AGENT = "tracklayer-pytest/1.0"


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]
    raw: bytes = b""


class Http:
    """One request per connection, so a dropped connection never affects the next request."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=30)

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
        payload = None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        status, got, raw = one_request(self.connection(), method, path, payload, headers or {})
        compressed = got.get("content-encoding") == "gzip"
        return Reply(status, json.loads(raw) if raw and not compressed else None, got, raw)


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def fingerprint(key: rsa.RSAPrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode()


@dataclass
class Identity:
    """An ACCOUNT.USER and the private key it signs key-pair JWTs with."""

    account: str
    user: str
    key: rsa.RSAPrivateKey = field(default_factory=new_key)

    def token(
        self,
        *,
        signing_key: rsa.RSAPrivateKey | None = None,
        fingerprint_of: rsa.RSAPrivateKey | None = None,
        lifetime: int = 3540,
        issued_at: int | None = None,
        drop: tuple[str, ...] = (),
        **claims: Any,
    ) -> str:
        """A JWT as Snowflake expects it; keyword arguments override or add claims."""
        now = int(time.time()) if issued_at is None else issued_at
        payload = {
            "iss": f"{self.account}.{self.user}.{fingerprint(fingerprint_of or self.key)}",
            "sub": f"{self.account}.{self.user}",
            "iat": now,
            "exp": now + lifetime,
            **claims,
        }
        for name in drop:
            payload.pop(name)
        return jwt.encode(payload, signing_key or self.key, algorithm="RS256")

    def headers(self, token: str | None = None) -> dict[str, str]:
        return bearer(token or self.token(), "KEYPAIR_JWT")


def bearer(token: str, token_type: str | None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT, "Content-Type": "application/json"}
    if token_type:
        headers["X-Snowflake-Authorization-Token-Type"] = token_type
    return headers


class SqlApi:
    """POST /api/v2/statements and friends, authenticated with fixed headers."""

    def __init__(self, http: Http, headers: dict[str, str], database: str, schema: str) -> None:
        self.http, self.headers, self.database, self.schema = http, headers, database, schema

    def body(self, statement: str, **fields: Any) -> dict[str, Any]:
        return {"statement": statement, "database": self.database, "schema": self.schema, **fields}

    def submit(
        self,
        statement: str,
        *,
        request_id: str | None = None,
        retry: bool = False,
        run_async: bool = False,
        headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> Reply:
        return self.http.request(
            "POST",
            self.path(request_id, retry, run_async),
            self.body(statement, **fields),
            self.headers if headers is None else headers,
        )

    @staticmethod
    def path(request_id: str | None = None, retry: bool = False, run_async: bool = False) -> str:
        query = {"requestId": request_id or str(uuid.uuid4())}
        if retry:
            query["retry"] = "true"
        if run_async:
            query["async"] = "true"
        return "/api/v2/statements?" + urlencode(query)

    def poll(self, handle: str, headers: dict[str, str] | None = None, partition: int | None = None) -> Reply:
        query = "" if partition is None else f"?partition={partition}"
        return self.http.request("GET", f"/api/v2/statements/{handle}{query}", headers=headers or self.headers)

    def cancel(self, handle: str) -> Reply:
        return self.http.request("POST", f"/api/v2/statements/{handle}/cancel", headers=self.headers)

    def wait(self, handle: str, timeout_s: float = 15) -> Reply:
        """Poll until the statement is no longer running."""
        deadline = time.monotonic() + timeout_s
        while (reply := self.poll(handle)).status == 202:
            assert time.monotonic() < deadline, f"statement {handle} still running after {timeout_s}s"
            time.sleep(0.1)
        return reply

    def rows(self, statement: str, **fields: Any) -> list[list[Any]]:
        reply = self.submit(statement, **fields)
        assert reply.status == 200, reply.body
        return reply.body["data"]

    def count(self, table: str) -> int:
        return int(self.rows(f"SELECT COUNT(*) FROM {table}")[0][0])


class Control:
    """The emulator's /__emulator endpoints."""

    def __init__(self, http: Http) -> None:
        self.http = http

    def call(self, method: str, path: str, body: Any = None) -> Any:
        reply = self.http.request(method, "/__emulator" + path, body, {"Content-Type": "application/json"})
        assert reply.status == 200, (method, path, reply.status, reply.body)
        return reply.body

    def register(self, identity: Identity, **spec: Any) -> dict[str, Any]:
        spec.setdefault("rsa_public_key", public_pem(identity.key))
        return self.call("POST", "/users", {"account": identity.account, "user": identity.user, **spec})

    def fault(self, action: dict[str, Any], phase: str = "before_execute", count: int = 1, **match: Any) -> dict:
        match = match or {"method": "POST", "path_prefix": "/api/v2/statements"}
        return self.call("POST", "/faults", {"match": match, "count": count, "phase": phase, "action": action})

    def faults(self) -> list[dict[str, Any]]:
        return self.call("GET", "/faults")

    def settings(self, **spec: Any) -> dict[str, Any]:
        return self.call("POST", "/settings", spec) if spec else self.call("GET", "/settings")

    def requests(self) -> dict[str, Any]:
        return self.call("GET", "/requests")

    def reset(self, drop_data: bool = False) -> dict[str, Any]:
        return self.call("POST", "/reset", {"drop_data": drop_data})


def staged_chunk(body: str) -> tuple[str, list[dict[str, Any]]]:
    """The table and rows of one staging-queue message, asserting the envelope ingest writes."""
    envelope = json.loads(body)
    assert set(envelope) == {"v", "id", "table", "rows", "bytes", "staged_at", "gz"}
    assert envelope["v"] == 2 and uuid.UUID(envelope["id"])
    assert abs(envelope["staged_at"] - time.time() * 1000) < 300_000, envelope["staged_at"]
    raw = gzip.decompress(base64.b64decode(envelope["gz"]))
    assert len(raw) == envelope["bytes"]
    rows = json.loads(raw)
    assert isinstance(rows, list) and len(rows) == envelope["rows"]
    return envelope["table"], rows


def fake_received(body: str, receive_count: int = 1) -> dict[str, Any]:
    """A message as SQS ReceiveMessage returns it, for building Lambda events by hand."""
    now_ms = str(int(time.time() * 1000))
    return {
        "MessageId": str(uuid.uuid4()),
        "ReceiptHandle": base64.b64encode(os.urandom(48)).decode(),
        "Body": body,
        "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "Attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": now_ms,
            "SenderId": "AIDAIT2UOQQY3AUEKVGXU",
            "ApproximateFirstReceiveTimestamp": now_ms,
        },
    }


def make_events(count: int, prefix: str = "evt") -> list[dict[str, Any]]:
    """Ecommerce events as the loader receives them."""
    return [
        {
            "event_id": f"{prefix}-{i}",
            "event_type": "order_completed",
            "occurred_at": "2024-11-02T08:00:00.123",
            "amount": "19.99",
            "items": [{"sku": f"SKU-{i}", "qty": 1}],
        }
        for i in range(count)
    ]


def insert_batch(table: str, events: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The loader's batch INSERT: one bound JSON array flattened into rows; (statement, bindings)."""
    statement = (
        f"INSERT INTO {table} (EVENT_ID, OCCURRED_AT, AMOUNT, PAYLOAD) "
        "SELECT p:event_id::STRING, p:occurred_at::TIMESTAMP_NTZ, p:amount::NUMBER(18,4), p "
        "FROM (SELECT PARSE_JSON(f.value:r::STRING) AS p FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?))) f) r"
    )
    rows = [{"r": json.dumps(event)} for event in events]
    return statement, {"1": {"type": "TEXT", "value": json.dumps(rows)}}


def sfquery(stack_env: dict[str, str], sql: str, schema: str = "PYTEST") -> dict[str, Any]:
    """Read through the drivers' protocol with tracklayer_local.sfquery in its own process, as the Rust tests do."""
    port = stack_env["SNOWFLAKE_EMULATOR_URL"].rsplit(":", 1)[1]
    done = subprocess.run(
        [sys.executable, "-m", "tracklayer_local.sfquery", "--port", port, "--schema", schema, sql],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)
