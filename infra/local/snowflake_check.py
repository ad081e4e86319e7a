"""`make snowflake-check`: the local Snowflake's rules and a real load, against your own account.

    .venv/bin/python infra/local/snowflake_check.py [--local-only] [--json PATH] [--events 1000]
        [--env-file .local/stack.env] [--build] [--target-dir target/debug] [--log-dir DIR]

The local Snowflake (``tracklayer_local.emulator``) enforces what we believe Snowflake enforces; this
script asks a real account the same questions, over the same code path (the SQL API v2 over
HTTP with a key-pair JWT, as the loader talks to it), and prints what each answered side by
side. A row where they disagree is a finding to bring back to the team: the emulator (or the
loader) rests on something the account does not do.

Your account (environment variables; without the first five the script says what it needs and
exits 0, contacting nothing):

* ``SNOWFLAKE_ACCOUNT``: the account identifier, as in the secret (``myorg-myaccount``,
  ``xy12345.eu-central-1``);
* ``SNOWFLAKE_USER``: a user with key-pair authentication;
* ``SNOWFLAKE_PRIVATE_KEY_PATH``: its private key, PEM (PKCS#8, encrypted PKCS#8 or PKCS#1);
  ``SNOWFLAKE_PRIVATE_KEY_PASSPHRASE`` when it is encrypted;
* ``SNOWFLAKE_ROLE``: a role granted to the user, with USAGE on the database and warehouse and
  CREATE SCHEMA on the database;
* ``SNOWFLAKE_WAREHOUSE``: a warehouse the role may use;
* ``SNOWFLAKE_DATABASE`` (default ``TRACKLAYER``): where the scratch schema is created;
* optional: ``SNOWFLAKE_HOST`` (a full ``https://`` URL, e.g. PrivateLink), and
  ``SNOWFLAKE_MONITOR_ROLE``, a role with MONITOR on the account for
  ``SYSTEM$GET_LOGIN_FAILURE_DETAILS`` (default: ``SNOWFLAKE_ROLE``; without MONITOR that row
  records Snowflake's refusal).

Role, warehouse and database are read as the loader reads the secret's names: unquoted means
upper case, ``"Quoted"`` means exactly that. Nothing is written outside one scratch schema,
``<SNOWFLAKE_DATABASE>.TRACKLAYER_CHECK_<time>_<hex>`` (TRANSIENT, DATA_RETENTION_TIME_IN_DAYS =
0), created at the start and dropped at the end, after a failure or Ctrl-C too. The cost is a
minute or two of the warehouse (it resumes for the INSERTs: 60 s minimum). The one JWT from an
unknown key leaves a failed login in the account's LOGIN_HISTORY.

For each column (the local Snowflake first, then the account), in the scratch schema:

1. ``context.*``: ``SELECT CURRENT_USER(), CURRENT_ROLE(), CURRENT_WAREHOUSE(),
   CURRENT_DATABASE(), CURRENT_SCHEMA()`` with the exact names, then with the warehouse,
   database, schema and role each in the other case (``tracklayer_wh`` for ``TRACKLAYER_WH``),
   and an INSERT that needs them: HTTP status and code of each, and what CURRENT_*() answer.
2. ``parse_json.*``: ``PARSE_JSON('{"a":1,"a":2}')`` in a plain SELECT and inside the loader's
   ``INSERT ... SELECT ... FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?)))`` (100069, no row), and
   with ``'d'`` (the last value, ``2``).
3. ``timeout``: ``CALL SYSTEM$WAIT(5)`` with ``timeout: 1`` (408 000630). ``cancel``: the same
   with ``async=true``, then ``POST .../cancel`` and the handle polled (000604).
4. ``retry.*``: with ``retry=true`` and the same requestId, once while the first submission (a
   wait, then an INSERT of a marker) is still running, and once after a first INSERT with
   another statement text: the answer, whether the handle is the first one, and the rows that
   landed. Snowflake documents neither case.
5. ``jwt.*``: a JWT signed by a key the user does not have (390144 ``JWT token is invalid.
   [<uuid>]``), then ``SYSTEM$GET_LOGIN_FAILURE_DETAILS`` of that UUID.
6. ``compile.*``: INSERT ... SELECT into a table whose column has another type (002023) and
   into a column it does not have (000904), and that no row landed.
7. cheap extras: an invalid programmatic access token (394400), a request without User-Agent,
   a poll of an unknown statement handle.
8. ``binaries.*``: the real connection-test (``test_sync``), ingest (scheduled mode) and flush
   binaries (built with cargo, run behind ``lambda_host.py``'s Lambda runtime emulator; SQS and
   Secrets Manager from moto, with that column's credentials stored as the secret and the
   scratch schema as its ``schema``). ``--events`` sample events (default 1,000; one in 25
   broken: no merchant_id, value "12,50", currency "EURO", cut-off JSON; one in 100 valid ones
   repeats a key inside ``properties``), then counts read back: every valid event loaded once,
   every bad one quarantined once by reason, the repeated key's last value kept, a nested
   unknown field readable.

Where the services come from: with ``--env-file`` (a running ``make stack-up``'s
``.local/stack.env``), its moto and local Snowflake; otherwise the script starts its own moto
and local Snowflake on free ports (``$STACK_DIR/snowflake-check``, stopped at the end). The
local column signs in as ``LOCALTEST.SNOWFLAKE_CHECK``, registered with a fresh key, role
TRACKLAYER_WRITER, warehouse TRACKLAYER_WH, database TRACKLAYER.

Output: a table (rule, the local Snowflake's answer, the account's, whether they agree), and
with ``--json`` every answer as observed (statuses, codes, messages, handles; never a key, JWT
or passphrase). Exit status: 0 when both columns agree on every rule and every load check holds
(``--local-only``: when the load checks hold), 1 otherwise, 2 for a setup problem (a missing
build, an unreadable key, a schema that cannot be created), 130 after Ctrl-C.
``tests/python/test_snowflake_check.py`` runs ``--local-only`` in ``make test`` and checks each
local answer against what the emulator's docstring documents.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import hashlib
import http.client
import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import boto3
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tracklayer_local.harness import one_request, read_env_file
from tracklayer_local.lambda_host import LambdaHost, run_sqs
from tracklayer_local.stack import StackError
from tracklayer_local.stack import services as stack_services

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
USER_AGENT = "tracklayer-snowflake-check/1.0"
REGION = "us-east-1"
REQUEST_TIMEOUT_S = 60
STATEMENT_TIMEOUT_S = 60  # every statement of the check carries it, so none outlives the run
WAIT_LIMIT_S = 60
JWT_LIFETIME_S = 3540
LOCAL_ACCOUNT, LOCAL_USER = "LOCALTEST", "SNOWFLAKE_CHECK"
LOCAL_NAMES = {"role": "TRACKLAYER_WRITER", "warehouse": "TRACKLAYER_WH", "database": "TRACKLAYER"}
REQUIRED = {
    "SNOWFLAKE_ACCOUNT": "account identifier, e.g. myorg-myaccount or xy12345.eu-central-1",
    "SNOWFLAKE_USER": "a user with key-pair authentication",
    "SNOWFLAKE_PRIVATE_KEY_PATH": "its private key, PEM (plus SNOWFLAKE_PRIVATE_KEY_PASSPHRASE if encrypted)",
    "SNOWFLAKE_ROLE": "a role granted to the user, with CREATE SCHEMA on the database",
    "SNOWFLAKE_WAREHOUSE": "a warehouse the role may use",
}
OPTIONAL = {
    "SNOWFLAKE_DATABASE": "where the scratch schema is created (default TRACKLAYER)",
    "SNOWFLAKE_HOST": "a full https:// URL instead of <account>.snowflakecomputing.com (PrivateLink)",
    "SNOWFLAKE_MONITOR_ROLE": "a role with MONITOR for SYSTEM$GET_LOGIN_FAILURE_DETAILS (default SNOWFLAKE_ROLE)",
}
FUNCTIONS = ("connection-test", "ingest", "flush")
PASSED_THROUGH = (
    "PATH",
    "HOME",
    "LANG",
    "TZ",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
    "RUST_LOG",
)
CONTEXT_SQL = "SELECT CURRENT_USER(), CURRENT_ROLE(), CURRENT_WAREHOUSE(), CURRENT_DATABASE(), CURRENT_SCHEMA()"
CONTEXT_FIELDS = ("user", "role", "warehouse", "database", "schema")
DUPLICATE = '{"a":1,"a":2}'
FLATTEN = "FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?))) f"
JWT_INVALID = re.compile(r"JWT token is invalid\. \[([0-9a-fA-F-]{36})\]")
UNQUOTED = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


class SetupError(Exception):
    """Something to fix before the check can run (exit status 2)."""


def say(line: str = "") -> None:
    print(line, flush=True)


# ------------------------------------------------------------------------------------------------
# Names, accounts, targets
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Name:
    """A Snowflake identifier as written (env var, secret) and the exact name it means."""

    written: str
    exact: str

    @classmethod
    def parse(cls, variable: str, raw: str) -> Name:
        """Unquoted -> upper case, "Quoted" -> exactly that (the loader's rule, secrets.rs)."""
        text = raw.strip()
        if len(text) >= 2 and text[0] == text[-1] == '"' and text[1:-1]:
            return cls(text, text[1:-1].replace('""', '"'))
        if UNQUOTED.fullmatch(text):
            return cls(text, text.upper())
        quoted = '"' + text.replace('"', '""') + '"'
        raise SetupError(f"{variable}={raw!r} is not a Snowflake name: write {quoted} for a name created in quotes")

    def sql(self) -> str:
        return '"' + self.exact.replace('"', '""') + '"'


def other_case(exact: str) -> str:
    """The same name in the other case: what a user who typed it differently sends."""
    return exact.lower() if exact.lower() != exact else exact.upper()


def account_endpoint(identifier: str, host: str | None) -> tuple[str, str]:
    """(JWT account name, base URL), as shared/src/snowflake/account.rs derives them."""
    ident = identifier.strip()
    for prefix in ("https://", "http://"):
        ident = ident.removeprefix(prefix)
    ident = ident.rstrip("/")
    china = ident.endswith(".snowflakecomputing.cn")
    ident = ident.removesuffix(".snowflakecomputing.cn").removesuffix(".snowflakecomputing.com")
    if not ident or not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", ident):
        raise SetupError(
            f"SNOWFLAKE_ACCOUNT={identifier!r} is not an account identifier (myorg-myaccount or xy12345.eu-central-1)"
        )
    parts = ident.split(".")
    if ident.lower().endswith(".global"):
        name = parts[0].split("-")[0]
    elif len(parts) == 2 and "-" not in parts[0] + parts[1] and parts[1].lower() not in ("privatelink", "global"):
        raise SetupError(
            f"SNOWFLAKE_ACCOUNT={identifier!r} is the ORG.ACCOUNT form SQL uses; write {parts[0]}-{parts[1]}"
        )
    else:
        name = parts[0]
    if host:
        url = host.strip() if "://" in host else f"https://{host.strip()}"
        split = urlsplit(url)
        loopback = split.hostname in ("127.0.0.1", "localhost", "::1")
        if split.scheme != "https" and not (split.scheme == "http" and loopback):
            raise SetupError(f"SNOWFLAKE_HOST={host!r}: use https:// (plain http only to a loopback address)")
        base = f"{split.scheme}://{split.netloc}"
    else:
        china = china or (len(parts) > 1 and parts[1].lower().startswith("cn-"))
        base = f"https://{ident.lower().replace('_', '-')}.snowflakecomputing.{'cn' if china else 'com'}"
    return name.upper(), base


@dataclass
class Target:
    """One column of the table: where to send statements and as whom."""

    name: str  # "local" | "account"
    label: str
    base_url: str
    account: str  # as written in the secret
    jwt_account: str
    user: str
    key: rsa.RSAPrivateKey = field(repr=False)
    key_pem: str = field(repr=False)
    passphrase: str | None = field(repr=False)
    role: Name
    warehouse: Name
    database: Name
    monitor_role: Name
    host: str | None  # the secret's host field

    def secret(self, schema: str) -> dict[str, str]:
        """The loader's secret for this column, its schema the scratch schema."""
        value = {
            "account": self.account,
            "user": self.user,
            "private_key": self.key_pem,
            "role": self.role.written,
            "warehouse": self.warehouse.written,
            "database": self.database.written,
            "schema": schema,
        }
        if self.passphrase:
            value["private_key_passphrase"] = self.passphrase
        if self.host:
            value["host"] = self.host
        return value


def missing_variables(environ: dict[str, str]) -> list[str]:
    return [name for name in REQUIRED if not environ.get(name, "").strip()]


def account_target(environ: dict[str, str]) -> Target:
    """The account column from the environment; SetupError names the variable to fix."""
    path = Path(environ["SNOWFLAKE_PRIVATE_KEY_PATH"]).expanduser()
    passphrase = environ.get("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE") or None
    try:
        pem = path.read_bytes()
    except OSError as e:
        raise SetupError(f"SNOWFLAKE_PRIVATE_KEY_PATH={path}: cannot read it ({e.strerror})") from None
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase.encode() if passphrase else None)
    except TypeError:
        hint = (
            "it is encrypted: set SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"
            if not passphrase
            else "it is not encrypted: unset SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"
        )
        raise SetupError(f"SNOWFLAKE_PRIVATE_KEY_PATH={path}: {hint}") from None
    except ValueError:
        raise SetupError(
            f"SNOWFLAKE_PRIVATE_KEY_PATH={path}: not a PEM private key, or the passphrase "
            "(SNOWFLAKE_PRIVATE_KEY_PASSPHRASE) is wrong"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SetupError(f"SNOWFLAKE_PRIVATE_KEY_PATH={path}: not an RSA key (Snowflake key-pair auth is RSA)")
    host = environ.get("SNOWFLAKE_HOST", "").strip() or None
    jwt_account, base_url = account_endpoint(environ["SNOWFLAKE_ACCOUNT"], host)
    role = Name.parse("SNOWFLAKE_ROLE", environ["SNOWFLAKE_ROLE"])
    monitor = environ.get("SNOWFLAKE_MONITOR_ROLE", "").strip()
    return Target(
        name="account",
        label="your account",
        base_url=base_url,
        account=environ["SNOWFLAKE_ACCOUNT"].strip(),
        jwt_account=jwt_account,
        user=environ["SNOWFLAKE_USER"].strip(),
        key=key,
        key_pem=pem.decode(),
        passphrase=passphrase,
        role=role,
        warehouse=Name.parse("SNOWFLAKE_WAREHOUSE", environ["SNOWFLAKE_WAREHOUSE"]),
        database=Name.parse("SNOWFLAKE_DATABASE", environ.get("SNOWFLAKE_DATABASE", "").strip() or "TRACKLAYER"),
        monitor_role=Name.parse("SNOWFLAKE_MONITOR_ROLE", monitor) if monitor else role,
        host=host,
    )


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_pem(key: rsa.RSAPrivateKey) -> str:
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return public.decode()


def fingerprint(key: rsa.RSAPrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode()


def local_target(emulator_url: str) -> Target:
    """The local column: a user registered on the local Snowflake with a fresh key."""
    key = new_key()
    spec = {
        "account": LOCAL_ACCOUNT,
        "user": LOCAL_USER,
        "rsa_public_key": public_pem(key),
        "default_role": LOCAL_NAMES["role"],
        "default_warehouse": LOCAL_NAMES["warehouse"],
        "roles": [LOCAL_NAMES["role"]],
    }
    request = urllib.request.Request(
        emulator_url + "/__emulator/users",
        data=json.dumps(spec).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10):
            pass
    except OSError as e:
        raise SetupError(f"the local Snowflake at {emulator_url} does not answer ({e})") from None
    role = Name.parse("role", LOCAL_NAMES["role"])
    return Target(
        name="local",
        label="local Snowflake",
        base_url=emulator_url,
        account=LOCAL_ACCOUNT,
        jwt_account=LOCAL_ACCOUNT,
        user=LOCAL_USER,
        key=key,
        key_pem=private_pem(key),
        passphrase=None,
        role=role,
        warehouse=Name.parse("warehouse", LOCAL_NAMES["warehouse"]),
        database=Name.parse("database", LOCAL_NAMES["database"]),
        monitor_role=role,
        host=emulator_url,
    )


# ------------------------------------------------------------------------------------------------
# The SQL API over HTTP
# ------------------------------------------------------------------------------------------------


@dataclass
class Reply:
    """One HTTP answer: status, JSON body (or text), headers (lower-case names)."""

    status: int
    body: Any
    headers: dict[str, str]

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None

    @property
    def sql_state(self) -> str | None:
        return self.body.get("sqlState") if isinstance(self.body, dict) else None

    @property
    def message(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("message", ""))
        return str(self.body or "")[:300]

    @property
    def handle(self) -> str | None:
        return self.body.get("statementHandle") if isinstance(self.body, dict) else None

    def first(self) -> list[Any] | None:
        data = self.body.get("data") if isinstance(self.body, dict) else None
        return data[0] if data else None

    def answer(self) -> tuple[int, str | None]:
        """What a rule compares: the HTTP status and Snowflake's code."""
        return self.status, self.code

    def brief(self) -> str:
        """`422 100069 (22P02)`; a success or an accepted statement as its status alone."""
        if self.status in (200, 202):
            return str(self.status)
        parts = [str(self.status), self.code or "", f"({self.sql_state})" if self.sql_state else ""]
        return " ".join(p for p in parts if p)

    def observed(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "code": self.code,
            "sqlState": self.sql_state,
            "message": self.message,
            "statementHandle": self.handle,
        }


class Http:
    """One request per connection; https verifies certificates; HTTPS_PROXY is honoured."""

    def __init__(self, base_url: str) -> None:
        split = urlsplit(base_url)
        self.https = split.scheme == "https"
        self.host = split.hostname or ""
        self.port = split.port or (443 if self.https else 80)

    def connection(self) -> http.client.HTTPConnection:
        proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
        if not self.https:
            return http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)
        context = ssl.create_default_context()
        if proxy and not bypasses_proxy(self.host):
            via = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            conn = http.client.HTTPSConnection(
                via.hostname, via.port or 8080, timeout=REQUEST_TIMEOUT_S, context=context
            )
            conn.set_tunnel(self.host, self.port)
            return conn
        return http.client.HTTPSConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S, context=context)

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
        payload = None if body is None else json.dumps(body).encode()
        status, got, raw = one_request(self.connection(), method, path, payload, headers or {})
        if got.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", errors="replace")
        return Reply(status, parsed, got)


def bypasses_proxy(host: str) -> bool:
    listed = (os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or "").split(",")
    return any(
        entry.strip() and (host == entry.strip().lstrip(".") or host.endswith("." + entry.strip().lstrip(".")))
        for entry in listed
    )


def key_pair_jwt(account: str, user: str, key: rsa.RSAPrivateKey, fingerprint_of: rsa.RSAPrivateKey) -> str:
    """A key-pair JWT as Snowflake documents it; `fingerprint_of` names the public key in `iss`."""
    now = int(time.time())
    qualified = f"{account.upper()}.{user.upper()}"
    claims = {
        "iss": f"{qualified}.{fingerprint(fingerprint_of)}",
        "sub": qualified,
        "iat": now,
        "exp": now + JWT_LIFETIME_S,
    }
    return jwt.encode(claims, key, algorithm="RS256")


class SqlApi:
    """POST /api/v2/statements, polls and cancels for one target, in its scratch schema."""

    def __init__(self, target: Target, schema: str) -> None:
        self.target, self.schema = target, schema
        self.http = Http(target.base_url)
        self._token: tuple[str, float] | None = None

    def token(self) -> str:
        if self._token is None or time.monotonic() > self._token[1]:
            signed = key_pair_jwt(self.target.jwt_account, self.target.user, self.target.key, self.target.key)
            self._token = (signed, time.monotonic() + JWT_LIFETIME_S - 300)
        return self._token[0]

    def headers(self, token: str | None = None, token_type: str = "KEYPAIR_JWT", user_agent: bool = True) -> dict:
        headers = {
            "Authorization": f"Bearer {token or self.token()}",
            "X-Snowflake-Authorization-Token-Type": token_type,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        if user_agent:
            headers["User-Agent"] = USER_AGENT
        return headers

    def body(self, statement: str, context: dict[str, str | None] | None, **fields: Any) -> dict[str, Any]:
        """The statement in the exact names and the scratch schema; a None in `context` leaves a name out."""
        t = self.target
        names = {
            "database": t.database.exact,
            "schema": self.schema,
            "warehouse": t.warehouse.exact,
            "role": t.role.exact,
        } | (context or {})
        sent = {"statement": statement, "timeout": STATEMENT_TIMEOUT_S, **names} | fields
        return {k: v for k, v in sent.items() if v is not None}

    def submit(
        self,
        statement: str,
        *,
        context: dict[str, str | None] | None = None,
        request_id: str | None = None,
        retry: bool = False,
        run_async: bool = False,
        headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> Reply:
        query = {"requestId": request_id or str(uuid.uuid4())}
        if retry:
            query["retry"] = "true"
        if run_async:
            query["async"] = "true"
        body = self.body(statement, context, **fields)
        return self.http.request("POST", "/api/v2/statements?" + urlencode(query), body, headers or self.headers())

    def poll(self, handle: str, partition: int | None = None) -> Reply:
        query = "" if partition is None else f"?partition={partition}"
        return self.http.request("GET", f"/api/v2/statements/{handle}{query}", headers=self.headers())

    def cancel(self, handle: str) -> Reply:
        return self.http.request("POST", f"/api/v2/statements/{handle}/cancel", headers=self.headers())

    def settle(self, reply: Reply, limit_s: float = WAIT_LIMIT_S) -> Reply:
        """Polls a 202 until the statement has an answer (or `limit_s` passes)."""
        deadline, pause = time.monotonic() + limit_s, 0.1
        while reply.status == 202 and reply.handle and time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 1.5, 1.0)
            reply = self.poll(reply.handle)
        return reply

    def run(self, statement: str, **kwargs: Any) -> Reply:
        return self.settle(self.submit(statement, **kwargs))

    def rows(self, statement: str, **kwargs: Any) -> list[list[Any]]:
        """Every row of a result, later partitions included; CheckError unless it succeeds."""
        reply = self.run(statement, **kwargs)
        if reply.status != 200:
            raise CheckError(f"{statement[:80]!r} answered {reply.brief()}: {reply.message[:200]}")
        rows = list(reply.body.get("data") or [])
        partitions = (reply.body.get("resultSetMetaData") or {}).get("partitionInfo") or []
        for number in range(1, len(partitions)):
            part = self.poll(reply.handle or "", partition=number)
            if part.status != 200 or not isinstance(part.body, dict):
                raise CheckError(f"partition {number} of {statement[:60]!r} answered {part.brief()}")
            rows += part.body.get("data") or []
        return rows

    def scalar(self, statement: str, **kwargs: Any) -> Any:
        rows = self.rows(statement, **kwargs)
        return rows[0][0] if rows else None


class CheckError(Exception):
    """A statement the check itself needs failed (the rule records it)."""


def binding(value: str) -> dict[str, dict[str, str]]:
    return {"1": {"type": "TEXT", "value": value}}


# ------------------------------------------------------------------------------------------------
# The rules
# ------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one column answered for one rule."""

    key: dict[str, Any]  # compared between the columns
    shown: str  # the table cell
    detail: dict[str, Any] = field(default_factory=dict)  # everything observed, for --json
    ok: bool | None = None  # an absolute check (the load), None when only the comparison counts


@dataclass
class Probe:
    """A rule's view of one column: its SQL API, names, and what earlier rules found."""

    api: SqlApi
    target: Target
    schema: str
    run_id: str
    found: dict[str, Any] = field(default_factory=dict)

    def exact(self, name: str) -> str:
        return {
            "role": self.target.role.exact,
            "warehouse": self.target.warehouse.exact,
            "database": self.target.database.exact,
            "schema": self.schema,
            "user": self.target.user.upper(),
        }[name]

    def count(self, table: str, where: str = "") -> int:
        return int(self.api.scalar(f"SELECT COUNT(*) AS N FROM {table}{' WHERE ' + where if where else ''}"))

    def table(self, name: str, columns: str) -> str:
        self.api.rows(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")
        return name


@dataclass(frozen=True)
class Rule:
    """One question asked of both columns."""

    id: str
    title: str
    check: Callable[[Probe], Outcome]


def current_values(probe: Probe, reply: Reply) -> dict[str, str | None]:
    """CURRENT_*() of a context SELECT: "configured" for the exact configured name, NULL as None."""
    row = reply.first() if reply.status == 200 else None
    if row is None:
        return {}
    values = dict(zip(CONTEXT_FIELDS, row, strict=False))
    return {k: ("configured" if v == probe.exact(k) else v) for k, v in values.items()}


def show_current(current: dict[str, str | None], fields: tuple[str, ...]) -> str:
    shown = [
        f"CURRENT_{f.upper()}() {'NULL' if current.get(f) is None else current[f]}" for f in fields if f in current
    ]
    return ", ".join(shown)


def context_exact(probe: Probe) -> Outcome:
    reply = probe.api.run(CONTEXT_SQL)
    current = current_values(probe, reply)
    shown = reply.brief()
    if current:
        as_configured = set(current.values()) == {"configured"}
        shown += "; " + ("all as configured" if as_configured else show_current(current, CONTEXT_FIELDS))
    return Outcome(
        {"answer": reply.answer(), "current": current}, shown, {"select": reply.observed(), "current": current}
    )


def context_other_case(name: str, shows: tuple[str, ...]) -> Callable[[Probe], Outcome]:
    """The body's `name` in the other case: the context SELECT, then an INSERT that needs it."""

    def check(probe: Probe) -> Outcome:
        table = probe.table("CHECK_CONTEXT", "N NUMBER")
        context = {name: other_case(probe.exact(name))}
        select = probe.api.run(CONTEXT_SQL, context=context)
        current = current_values(probe, select)
        insert = probe.api.run(f"INSERT INTO {table} (N) SELECT 1", context=context)
        shown_current = {f: current.get(f) for f in shows} if current else None  # None: the SELECT failed
        key = {"select": select.answer(), "current": shown_current, "insert": insert.answer()}
        shown = f"SELECT {select.brief()}"
        if current:
            shown += "; " + show_current(current, shows)
        shown += f"; INSERT {insert.brief()}"
        detail = {"sent": context, "select": select.observed(), "current": current, "insert": insert.observed()}
        return Outcome(key, shown, detail)

    return check


def parse_json_select(probe: Probe) -> Outcome:
    reply = probe.api.run(f"SELECT PARSE_JSON('{DUPLICATE}') AS V")
    key = {"answer": reply.answer(), "sqlState": reply.sql_state}
    return Outcome(key, reply.brief(), {"reply": reply.observed()})


def parse_json_flatten_insert(probe: Probe) -> Outcome:
    table = probe.table("CHECK_PARSE_STRICT", "V VARIANT")
    sql = f"INSERT INTO {table} (V) SELECT PARSE_JSON(f.value:r::STRING) {FLATTEN}"
    reply = probe.api.run(sql, bindings=binding(json.dumps([{"r": DUPLICATE}])))
    rows = probe.count(table)
    key = {"answer": reply.answer(), "sqlState": reply.sql_state, "rows": rows}
    return Outcome(key, f"{reply.brief()}; {rows} rows", {"reply": reply.observed(), "rows": rows})


def parse_json_last_value(probe: Probe) -> Outcome:
    select = probe.api.run(f"SELECT PARSE_JSON('{DUPLICATE}', 'd'):a::NUMBER AS A")
    table = probe.table("CHECK_PARSE_LAST", "V VARIANT")
    sql = f"INSERT INTO {table} (V) SELECT PARSE_JSON(f.value:r::STRING, 'd') {FLATTEN}"
    insert = probe.api.run(sql, bindings=binding(json.dumps([{"r": DUPLICATE}])))
    stored = [row[0] for row in probe.api.rows(f"SELECT V:a::NUMBER AS A FROM {table}")]
    value = select.first()[0] if select.first() else None
    key = {"select": select.answer(), "value": value, "insert": insert.answer(), "stored": stored}
    shown = f"SELECT {select.brief()} a={value}; INSERT {insert.brief()}, stored a={','.join(map(str, stored)) or '-'}"
    return Outcome(key, shown, {"select": select.observed(), "insert": insert.observed(), "stored": stored})


def statement_timeout(probe: Probe) -> Outcome:
    started = time.monotonic()
    reply = probe.api.submit("CALL SYSTEM$WAIT(5)", timeout=1)
    elapsed = round(time.monotonic() - started, 1)
    key = {"answer": reply.answer(), "sqlState": reply.sql_state}
    return Outcome(key, reply.brief(), {"reply": reply.observed(), "elapsed_s": elapsed})


def cancel_running(probe: Probe) -> Outcome:
    submitted = probe.api.submit("CALL SYSTEM$WAIT(30)", run_async=True)
    if submitted.status != 202 or not submitted.handle:
        return Outcome(
            {"submit": submitted.answer()},
            f"submit {submitted.brief()} (not running)",
            {"submit": submitted.observed()},
        )
    cancelled = probe.api.cancel(submitted.handle)
    after = probe.api.settle(probe.api.poll(submitted.handle), limit_s=40)
    key = {"submit": submitted.status, "cancel": cancelled.answer(), "poll": after.answer()}
    shown = f"cancel {cancelled.brief()}; then poll {after.brief()}"
    return Outcome(
        key, shown, {"submit": submitted.observed(), "cancel": cancelled.observed(), "poll": after.observed()}
    )


def retry_while_running(probe: Probe) -> Outcome:
    table = probe.table("CHECK_RETRY", "KIND VARCHAR, V VARCHAR")
    marker, request_id = uuid.uuid4().hex, str(uuid.uuid4())
    sql = f"CALL SYSTEM$WAIT(5); INSERT INTO {table} (KIND, V) VALUES ('while_running', '{marker}')"
    params = {"MULTI_STATEMENT_COUNT": "2"}
    first = probe.api.submit(sql, request_id=request_id, run_async=True, parameters=params)
    second = probe.api.submit(sql, request_id=request_id, retry=True, run_async=True, parameters=params)
    handles = [h for h in dict.fromkeys([first.handle, second.handle]) if h]
    finals = [probe.api.settle(probe.api.poll(h)) for h in handles]
    rows = probe.count(table, f"V = '{marker}'")
    same = first.handle is not None and first.handle == second.handle
    key = {"first": first.answer(), "second": second.answer(), "same_handle": same, "rows": rows}
    shown = f"1st {first.brief()}, retry {second.brief()}, {'same' if same else 'another'} handle; rows landed {rows}"
    detail = {
        "first": first.observed(),
        "second": second.observed(),
        "final": [f.observed() for f in finals],
        "rows": rows,
    }
    return Outcome(key, shown, detail)


def retry_other_text(probe: Probe) -> Outcome:
    table = probe.table("CHECK_RETRY", "KIND VARCHAR, V VARCHAR")
    request_id = str(uuid.uuid4())
    insert = f"INSERT INTO {table} (KIND, V) VALUES ('other_text', '{{}}')"
    first = probe.api.run(insert.format("first"), request_id=request_id)
    second = probe.api.run(insert.format("second"), request_id=request_id, retry=True)
    rows = [r[0] for r in probe.api.rows(f"SELECT V FROM {table} WHERE KIND = 'other_text' ORDER BY V")]
    same = first.handle is not None and first.handle == second.handle
    key = {"first": first.answer(), "second": second.answer(), "same_handle": same, "rows": rows}
    shown = f"retry {second.brief()}, {'same' if same else 'another'} handle; rows: {', '.join(rows) or 'none'}"
    return Outcome(key, shown, {"first": first.observed(), "second": second.observed(), "rows": rows})


def jwt_unknown_key(probe: Probe) -> Outcome:
    stranger = new_key()
    token = key_pair_jwt(probe.target.jwt_account, probe.target.user, stranger, stranger)
    reply = probe.api.submit("SELECT 1", headers=probe.api.headers(token=token))
    match = JWT_INVALID.fullmatch(reply.message)
    if match:
        probe.found["login_failure"] = match[1]
    form = "JWT token is invalid. [<uuid>]" if match else reply.message
    key = {"answer": reply.answer(), "sqlState": reply.sql_state, "message": form}
    return Outcome(key, f"{reply.brief()} {form!r}", {"reply": reply.observed()})


def jwt_failure_details(probe: Probe) -> Outcome:
    failure = probe.found.get("login_failure")
    if not failure:
        return Outcome({"failure_id": None}, "not run: the previous answer held no UUID")
    sql = f"SELECT JSON_EXTRACT_PATH_TEXT(SYSTEM$GET_LOGIN_FAILURE_DETAILS('{failure}'), 'errorCode')"
    context = {"role": probe.target.monitor_role.exact}
    reply = probe.api.run(sql, context=context)
    for _ in range(3):  # a login failure may take a moment to be recorded
        if reply.status != 200 or (reply.first() or [None])[0] is not None:
            break
        time.sleep(2)
        reply = probe.api.run(sql, context=context)
    value = (reply.first() or [None])[0] if reply.status == 200 else None
    key = {"answer": reply.answer(), "errorCode": value}
    shown = f"{reply.brief()} errorCode {value}" if reply.status == 200 else f"{reply.brief()}: {reply.message[:80]}"
    return Outcome(
        key, shown, {"failure_id": failure, "role": context["role"], "reply": reply.observed(), "errorCode": value}
    )


def compile_error(columns: str, select: str) -> Callable[[Probe], Outcome]:
    """An INSERT ... SELECT that cannot compile against CHECK_COMPILE, and the rows after it."""

    def check(probe: Probe) -> Outcome:
        table = probe.table("CHECK_COMPILE", "ID VARCHAR, PAYLOAD VARIANT")
        sql = f"INSERT INTO {table} ({columns}) SELECT {select} {FLATTEN}"
        reply = probe.api.run(sql, bindings=binding(json.dumps([{"id": "e1", "p": "text"}])))
        rows = probe.count(table)
        key = {"answer": reply.answer(), "sqlState": reply.sql_state, "rows": rows}
        return Outcome(key, f"{reply.brief()}; {rows} rows", {"reply": reply.observed(), "rows": rows})

    return check


def invalid_pat(probe: Probe) -> Outcome:
    headers = probe.api.headers(token=uuid.uuid4().hex * 2, token_type="PROGRAMMATIC_ACCESS_TOKEN")
    reply = probe.api.submit("SELECT 1", headers=headers)
    return Outcome({"answer": reply.answer()}, f"{reply.brief()} {reply.message[:60]!r}", {"reply": reply.observed()})


def no_user_agent(probe: Probe) -> Outcome:
    reply = probe.api.submit("SELECT 1", headers=probe.api.headers(user_agent=False))
    return Outcome({"answer": reply.answer()}, reply.brief(), {"reply": reply.observed()})


def unknown_handle(probe: Probe) -> Outcome:
    reply = probe.api.poll(str(uuid.uuid4()))
    return Outcome({"answer": reply.answer()}, reply.brief(), {"reply": reply.observed()})


RULES = [
    Rule("context.exact", "CURRENT_*() with the exact names", context_exact),
    Rule("context.warehouse", "warehouse in the other case", context_other_case("warehouse", ("warehouse",))),
    Rule("context.database", "database in the other case", context_other_case("database", ("database", "schema"))),
    Rule("context.schema", "schema in the other case", context_other_case("schema", ("schema",))),
    Rule("context.role", "role in the other case", context_other_case("role", ("role",))),
    Rule("parse_json.select", "PARSE_JSON, repeated key, SELECT", parse_json_select),
    Rule("parse_json.flatten_insert", "PARSE_JSON, repeated key, FLATTEN INSERT", parse_json_flatten_insert),
    Rule("parse_json.last_value", "PARSE_JSON(x, 'd'): last value", parse_json_last_value),
    Rule("timeout", "timeout: 1 on CALL SYSTEM$WAIT(5)", statement_timeout),
    Rule("cancel", "cancel a running statement", cancel_running),
    Rule("retry.while_running", "retry=true while the first runs", retry_while_running),
    Rule("retry.other_text", "retry=true, same requestId, other SQL", retry_other_text),
    Rule("jwt.unknown_key", "JWT signed by an unknown key", jwt_unknown_key),
    Rule("jwt.failure_details", "SYSTEM$GET_LOGIN_FAILURE_DETAILS", jwt_failure_details),
    Rule(
        "compile.type_mismatch",
        "INSERT, VARCHAR into a VARIANT column",
        compile_error("ID, PAYLOAD", "f.value:id::STRING, f.value:p::STRING"),
    ),
    Rule(
        "compile.missing_column",
        "INSERT into a missing column",
        compile_error("ID, NO_SUCH_COLUMN", "f.value:id::STRING, f.value:p::STRING"),
    ),
    Rule("pat.invalid", "an invalid programmatic access token", invalid_pat),
    Rule("headers.no_user_agent", "a request without User-Agent", no_user_agent),
    Rule("handle.unknown", "poll an unknown statement handle", unknown_handle),
]


# ------------------------------------------------------------------------------------------------
# Sample events and the real binaries
# ------------------------------------------------------------------------------------------------

DEFECTS = ("missing_field", "invalid_field:value", "invalid_field:currency", "invalid_json")
BAD_EVERY, REPEATED_KEY_EVERY, EVENTS_PER_MESSAGE = 25, 100, 10


@dataclass
class Plan:
    """The sample events as messages, and what the tables must hold afterwards."""

    prefix: str
    bodies: list[str]
    valid: list[str]
    bad_ids: list[str]
    bad: Counter
    repeated_key: dict[str, str]  # event id -> the last value of the repeated key
    urls: dict[str, str]  # event id -> context.page.url, a nested unknown field


def sample_event(i: int, event_id: str, rng: random.Random) -> dict[str, Any]:
    name = rng.choice(["view_content", "add_to_cart", "begin_checkout", "purchase"])
    event: dict[str, Any] = {
        "event_id": event_id,
        "event_time": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}Z",
        "merchant_id": f"mrc_check_{i % 7}",
        "event_name": name,
        "platform": rng.choice(["web", "ios", "android"]),
        "anonymous_id": f"anon-{rng.randrange(10**8):08d}",
        "value": f"{rng.randrange(100, 20000) / 100:.2f}",
        "currency": rng.choice(["EUR", "USD", "GBP"]),
        "properties": {"sku": f"SKU-{rng.randrange(1000):03d}", "name": "Thé vert 250 g 🍵", "quantity": 1 + i % 3},
        "context": {"page": {"url": f"https://shop.example/p/{i}"}, "locale": "fr-FR"},
    }
    if name == "purchase":
        event["order_id"] = f"ord-{i:05d}"
    return event


def make_plan(count: int, prefix: str) -> Plan:
    """`count` events, one in BAD_EVERY broken, one in REPEATED_KEY_EVERY repeating a key; packed
    EVENTS_PER_MESSAGE to a JSON-array message, a cut-off event alone in its message."""
    rng = random.Random(20261127)
    plan = Plan(prefix, [], [], [], Counter(), {}, {})
    batch: list[str] = []
    for i in range(count):
        event_id = f"{prefix}-{i:05d}"
        event = sample_event(i, event_id, rng)
        defect = DEFECTS[(i // BAD_EVERY) % len(DEFECTS)] if i % BAD_EVERY == BAD_EVERY - 1 else None
        if defect == "missing_field":
            del event["merchant_id"]
        elif defect == "invalid_field:value":
            event["value"] = "12,50"
        elif defect == "invalid_field:currency":
            event["currency"] = "EURO"
        repeats = defect is None and i % REPEATED_KEY_EVERY == 0
        if repeats:
            event["properties"]["sku"] = plan.repeated_key[event_id] = f"SKU-LAST-{i}"
        text = json.dumps(event, ensure_ascii=False)
        if repeats:  # the same key earlier in the object: the last value must win
            text = text.replace('"properties": {', '"properties": {"sku": "SKU-FIRST", ', 1)
        if defect:
            plan.bad_ids.append(event_id)
            plan.bad[defect.split(":")[0]] += 1
        else:
            plan.valid.append(event_id)
            plan.urls[event_id] = event["context"]["page"]["url"]
        if defect == "invalid_json":
            plan.bodies.append(text[: len(text) // 2])
            continue
        batch.append(text)
        if len(batch) == EVENTS_PER_MESSAGE:
            plan.bodies.append("[" + ",".join(batch) + "]")
            batch = []
    if batch:
        plan.bodies.append("[" + ",".join(batch) + "]")
    return plan


@dataclass
class Aws:
    """moto's SQS and Secrets Manager."""

    endpoint: str

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )


@dataclass
class Binaries:
    """The built functions and where their logs go."""

    directory: Path
    log_dir: Path

    def path(self, name: str) -> Path:
        return self.directory / name

    def log(self, target: str, name: str) -> Path:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.log_dir / f"snowflake-check-{target}-{name}.log"

    def host(self, target: str, name: str, env: dict[str, str], timeout: int) -> LambdaHost:
        """The function under the Lambda host with exactly ``env`` (256 MB), logging to its own file."""
        return LambdaHost(
            self.path(name),
            name,
            env=env,
            inherit_env=False,
            timeout=timeout,
            memory_mb=256,
            log=self.log(target, name),
        )


def function_env(aws: Aws, secret_id: str, **extra: str) -> dict[str, str]:
    """The functions' whole environment: moto for AWS, nothing else of the caller's but PATH and TLS/proxy settings."""
    env = {k: os.environ[k] for k in PASSED_THROUGH if k in os.environ}
    env.update(
        AWS_ENDPOINT_URL=aws.endpoint,
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        TRACKLAYER_SECRET_ID=secret_id,
        **extra,
    )
    return env


def send_all(sqs: Any, url: str, bodies: list[str]) -> None:
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])]
        answer = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        if answer.get("Failed"):
            raise CheckError(f"SendMessageBatch refused {answer['Failed']}")


def connection_test(probe: Probe, binaries: Binaries, env: dict[str, str]) -> Outcome:
    log = binaries.log(probe.target.name, "connection-test")
    with LambdaHost(
        binaries.path("connection-test"), "connection-test", env=env, inherit_env=False, timeout=90, log=log
    ) as host:
        ok, report = host.invoke({"mode": "test_sync"})
    if not ok or not isinstance(report, dict) or "checks" not in report:
        return Outcome({"ok": False}, f"invocation failed: {str(report)[:120]}", {"report": report}, ok=False)
    statuses = Counter(c["status"] for c in report["checks"])
    failed = [c["name"] for c in report["checks"] if c["status"] == "fail"]
    shown = (
        ("ok" if report["ok"] else f"FAILED at {', '.join(failed)}")
        + ": "
        + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    )
    if failed:
        first = next(c for c in report["checks"] if c["status"] == "fail")
        shown += f"; {first['detail'][:100]}"
    return Outcome({"ok": report["ok"], "failed": failed}, shown, {"report": report}, ok=bool(report["ok"]))


def ingest_and_flush(probe: Probe, binaries: Binaries, aws: Aws, env: dict[str, str], plan: Plan) -> dict[str, Any]:
    """Sends the plan's messages, runs ingest (scheduled) until the queue is empty, then flush."""
    sqs = aws.client("sqs")
    name = f"{probe.run_id}-{probe.target.name}"
    events_url = sqs.create_queue(QueueName=f"{name}-events")["QueueUrl"]
    staging_url = sqs.create_queue(QueueName=f"{name}-staging")["QueueUrl"]
    figures: dict[str, Any] = {"messages": len(plan.bodies)}
    try:
        send_all(sqs, events_url, plan.bodies)
        ingest_env = env | {"TRACKLAYER_LOAD_MODE": "scheduled", "TRACKLAYER_STAGING_QUEUE_URL": staging_url}
        with binaries.host(probe.target.name, "ingest", ingest_env, timeout=60) as host:
            stats = run_sqs(host, events_url, batch_size=1000, until_empty=True, wait=0, sqs=sqs)
        figures["ingest"] = {k: stats[k] for k in ("batches", "messages_deleted", "messages_failed")}
        flush_env = env | {"TRACKLAYER_STAGING_QUEUE_URL": staging_url}
        reports = []
        with binaries.host(probe.target.name, "flush", flush_env, timeout=120) as host:
            for _ in range(5):
                ok, report = host.invoke({})
                reports.append(report if ok else {"status": "error", **report})
                if reports[-1].get("status") != "partial":
                    break
        figures["flush"] = reports
    finally:
        for url in (events_url, staging_url):
            with contextlib.suppress(Exception):
                sqs.delete_queue(QueueUrl=url)
    return figures


def quoted_list(values: list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def read_back(probe: Probe, plan: Plan) -> dict[str, Any]:
    """What landed: rows and distinct ids of this run, bad ones loaded, the quarantine by reason,
    and the repeated key's value and the nested field of the events that have them."""
    api = probe.api
    rows, distinct = api.rows(
        f"SELECT COUNT(*) AS N, COUNT(DISTINCT EVENT_ID) AS D FROM RAW_EVENTS WHERE EVENT_ID LIKE '{plan.prefix}-%'"
    )[0]
    bad_loaded = probe.count("RAW_EVENTS", f"EVENT_ID IN ({quoted_list(plan.bad_ids)})") if plan.bad_ids else 0
    quarantine = {
        r[0]: int(r[1]) for r in api.rows("SELECT REASON, COUNT(*) AS N FROM RAW_EVENTS_REJECTED GROUP BY REASON")
    }
    ids = sorted(plan.repeated_key)
    found = (
        api.rows(
            "SELECT EVENT_ID, PROPERTIES:sku::STRING AS SKU, RAW_PAYLOAD:properties.sku::STRING AS RAW_SKU, "
            "RAW_PAYLOAD:context.page.url::STRING AS URL FROM RAW_EVENTS "
            f"WHERE EVENT_ID IN ({quoted_list(ids)}) ORDER BY EVENT_ID"
        )
        if ids
        else []
    )
    last_kept = sum(1 for eid, sku, raw_sku, _ in found if sku == raw_sku == plan.repeated_key.get(eid))
    nested = sum(1 for eid, *_, url in found if url == plan.urls.get(eid))
    return {
        "rows": int(rows),
        "distinct": int(distinct),
        "bad_loaded": bad_loaded,
        "quarantine": quarantine,
        "repeated_key_events": len(ids),
        "repeated_key_last_value": last_kept,
        "nested_field": nested,
    }


def load_outcome(plan: Plan, figures: dict[str, Any], landed: dict[str, Any]) -> Outcome:
    valid = len(plan.valid)
    flush = figures.get("flush") or [{}]
    status = flush[-1].get("status")
    key = {
        "flush": status,
        "loaded": landed["rows"],
        "distinct": landed["distinct"],
        "bad_loaded": landed["bad_loaded"],
        "quarantine": landed["quarantine"],
        "repeated_key_last_value": landed["repeated_key_last_value"],
        "nested_field": landed["nested_field"],
    }
    ok = (
        status == "loaded"
        and landed["rows"] == landed["distinct"] == valid
        and landed["bad_loaded"] == 0
        and landed["quarantine"] == dict(plan.bad)
        and landed["repeated_key_last_value"] == len(plan.repeated_key)
        and landed["nested_field"] == len(plan.repeated_key)
    )
    quarantined = ", ".join(f"{n} {r}" for r, n in sorted(landed["quarantine"].items())) or "none"
    shown = (
        f"flush {status}; {landed['rows']} rows, {landed['distinct']} ids of {valid} valid; quarantined "
        f"{quarantined}; repeated key last value {landed['repeated_key_last_value']}/{len(plan.repeated_key)}"
    )
    if flush[-1].get("error"):
        shown += f"; error: {str(flush[-1]['error'])[:100]}"
    return Outcome(
        key, shown, {"figures": figures, "landed": landed, "expected": {"valid": valid, "bad": dict(plan.bad)}}, ok=ok
    )


def run_binaries(probe: Probe, binaries: Binaries, aws: Aws, events: int) -> dict[str, Outcome]:
    """connection-test, then ingest and flush of `events` sample events, with this column's secret."""
    secrets = aws.client("secretsmanager")
    name = f"tracklayer/snowflake-check/{probe.run_id}/{probe.target.name}"
    secret_id = secrets.create_secret(Name=name, SecretString=json.dumps(probe.target.secret(probe.schema)))["ARN"]
    say(f"  binaries: secret {name}; connection-test, then {events} events through ingest and flush")
    try:
        env = function_env(aws, secret_id)
        outcomes = {"binaries.connection_test": connection_test(probe, binaries, env)}
        plan = make_plan(events, f"chk{uuid.uuid4().hex[:10]}")
        figures = ingest_and_flush(probe, binaries, aws, env, plan)
        outcomes["binaries.load"] = load_outcome(plan, figures, read_back(probe, plan))
        return outcomes
    finally:
        with contextlib.suppress(Exception):
            secrets.delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)


BINARY_ROWS = [
    ("binaries.connection_test", "connection-test test_sync"),
    ("binaries.load", "ingest + flush of the sample events"),
]


# ------------------------------------------------------------------------------------------------
# One column
# ------------------------------------------------------------------------------------------------


NO_SCHEMA: dict[str, str | None] = {"schema": None}  # the scratch schema does not exist yet, or any more


@contextlib.contextmanager
def scratch_schema(api: SqlApi, problems: list[str]) -> Iterator[None]:
    """Creates the scratch schema; drops it on the way out, whatever happened."""
    qualified = f"{api.target.database.sql()}.{Name(api.schema, api.schema).sql()}"
    created = None
    try:
        created = api.run(f"CREATE TRANSIENT SCHEMA {qualified} DATA_RETENTION_TIME_IN_DAYS = 0", context=NO_SCHEMA)
        if created.status != 200:
            grant = f"GRANT CREATE SCHEMA ON DATABASE {api.target.database.sql()} TO ROLE {api.target.role.sql()};"
            raise SetupError(
                f"{api.target.label}: cannot create the scratch schema {qualified}: {created.brief()} "
                f"{created.message[:200]}. The role needs USAGE on the database and warehouse and: {grant}"
            )
        yield
    finally:
        dropped = None
        with contextlib.suppress(Exception):
            dropped = api.run(f"DROP SCHEMA IF EXISTS {qualified} CASCADE", context=NO_SCHEMA)
        if dropped is None or dropped.status != 200:
            detail = dropped.brief() if dropped else "no answer"
            problems.append(
                f"{api.target.label}: the scratch schema was not dropped ({detail}); run: DROP SCHEMA IF "
                f"EXISTS {qualified} CASCADE;"
            )


def run_column(
    target: Target, schema: str, run_id: str, binaries: Binaries, aws: Aws, events: int, problems: list[str]
) -> dict[str, Outcome]:
    """Every rule and the binaries against one target, inside its scratch schema."""
    api = SqlApi(target, schema)
    probe = Probe(api, target, schema, run_id)
    outcomes: dict[str, Outcome] = {}
    say(
        f"\n{target.label}: {target.base_url}, user {target.user}, role {target.role.exact}, warehouse "
        f"{target.warehouse.exact}, scratch schema {target.database.exact}.{schema}"
    )
    with scratch_schema(api, problems):
        for rule in RULES:
            outcomes[rule.id] = attempt(rule, probe)
        started = time.monotonic()
        try:
            outcomes.update(run_binaries(probe, binaries, aws, events))
        except (CheckError, OSError, StackError) as e:
            for rule_id, _ in BINARY_ROWS:
                outcomes.setdefault(rule_id, Outcome({"error": str(e)}, f"error: {e}", ok=False))
        say(f"  binaries done in {time.monotonic() - started:.1f} s")
    return outcomes


def attempt(rule: Rule, probe: Probe) -> Outcome:
    started = time.monotonic()
    try:
        outcome = rule.check(probe)
    except (CheckError, OSError, http.client.HTTPException, ValueError) as e:
        outcome = Outcome({"error": type(e).__name__}, f"error: {e}", {"error": str(e)})
    say(f"  {rule.id:<28} {outcome.shown}  ({time.monotonic() - started:.1f} s)")
    return outcome


# ------------------------------------------------------------------------------------------------
# Services, the table, main
# ------------------------------------------------------------------------------------------------


@dataclass
class Endpoints:
    """moto's and the local Snowflake's base URLs."""

    moto: str
    snowflake: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def services(env_file: str | None) -> Iterator[Endpoints]:
    """The stack's moto and local Snowflake (--env-file), or private ones on free ports."""
    if env_file:
        env = read_env_file(env_file)
        if "AWS_ENDPOINT_URL" not in env or "SNOWFLAKE_EMULATOR_URL" not in env:
            raise SetupError(f"{env_file} has no AWS_ENDPOINT_URL / SNOWFLAKE_EMULATOR_URL (is it a stack.env?)")
        yield Endpoints(env["AWS_ENDPOINT_URL"], env["SNOWFLAKE_EMULATOR_URL"])
        return
    stack_dir = Path(os.environ.get("STACK_DIR", ".local"))
    directory = (stack_dir if stack_dir.is_absolute() else REPO / stack_dir) / "snowflake-check"
    directory.mkdir(parents=True, exist_ok=True)
    own = stack_services(directory, free_port(), free_port())
    try:
        for service in own:
            service.start()
        yield Endpoints(own[0].url, own[1].url)
    except StackError as e:
        raise SetupError(str(e)) from None
    finally:
        for service in own:
            service.stop()


def wrap_row(cells: list[str], widths: list[int]) -> list[str]:
    wrapped = [textwrap.wrap(c, w) or [""] for c, w in zip(cells, widths, strict=True)]
    height = max(len(w) for w in wrapped)
    return [
        "  ".join((w[i] if i < len(w) else "").ljust(width) for w, width in zip(wrapped, widths, strict=True)).rstrip()
        for i in range(height)
    ]


def agreement(local: Outcome | None, account: Outcome | None) -> bool | None:
    if local is None or account is None:
        return None
    return local.key == account.key


def table(columns: dict[str, dict[str, Outcome]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The printed table and its rows as data."""
    widths = [34, 46, 46, 6]
    lines = wrap_row(["rule", "local Snowflake", "your account", "agree"], widths)
    lines.append("  ".join("-" * w for w in widths))
    rows = []
    for rule_id, title in [(r.id, r.title) for r in RULES] + BINARY_ROWS:
        local, account = columns.get("local", {}).get(rule_id), columns.get("account", {}).get(rule_id)
        agree = agreement(local, account)
        mark = {None: "-", True: "yes", False: "NO"}[agree]
        cells = [
            f"{title} [{rule_id}]",
            local.shown if local else "not run",
            account.shown if account else "not run",
            mark,
        ]
        lines += wrap_row(cells, widths)
        rows.append(
            {
                "rule": rule_id,
                "title": title,
                "agree": agree,
                "local": outcome_json(local),
                "account": outcome_json(account),
            }
        )
    return lines, rows


def outcome_json(outcome: Outcome | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    return {"shown": outcome.shown, "compared": outcome.key, "ok": outcome.ok, "observed": outcome.detail}


def needs_message(missing: list[str]) -> str:
    lines = [
        "snowflake-check compares the local Snowflake's rules with your own account, and loads sample events",
        "into it through the real binaries. It needs (nothing was run or contacted):",
    ]
    lines += [f"  {name:<34} {what}{'   <- missing' if name in missing else ''}" for name, what in REQUIRED.items()]
    lines += ["optional:"] + [f"  {name:<34} {what}" for name, what in OPTIONAL.items()]
    lines += [
        "Set them and run `make snowflake-check` again (LOCAL_ONLY=1 runs the local Snowflake's column alone).",
        "What it checks, and the grants it needs: docs/snowflake-setup.md, 'Verify against your account'.",
    ]
    return "\n".join(lines)


def build(target_dir: Path) -> None:
    command = ["cargo", "build", "--locked"] + [arg for name in FUNCTIONS for arg in ("-p", name)]
    say("$ " + " ".join(command))
    if subprocess.run(command, cwd=REPO, check=False).returncode != 0:
        raise SetupError("cargo build failed")
    if target_dir != REPO / "target" / "debug":
        say(f"note: --target-dir {target_dir} is used as it is; the build went to target/debug")


def binaries_at(args: argparse.Namespace) -> Binaries:
    directory = Path(args.target_dir)
    directory = directory if directory.is_absolute() else REPO / directory
    missing = [name for name in FUNCTIONS if not (directory / name).is_file()]
    if missing:
        raise SetupError(
            f"{', '.join(missing)} not built in {directory}: run `cargo build -p ingest -p flush -p "
            "connection-test` (or pass --build)"
        )
    stack_dir = Path(os.environ.get("STACK_DIR", ".local"))
    log_dir = (
        Path(args.log_dir) if args.log_dir else (stack_dir if stack_dir.is_absolute() else REPO / stack_dir) / "logs"
    )
    return Binaries(directory, log_dir)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--local-only", action="store_true", help="only the local Snowflake's column (no account)")
    parser.add_argument("--json", help="write the table and every answer here")
    parser.add_argument("--events", type=int, default=1000, help="sample events to ingest and flush (1000)")
    parser.add_argument("--env-file", help="use this running stack's moto and local Snowflake (a stack.env)")
    parser.add_argument("--build", action="store_true", help="cargo build the three functions first")
    parser.add_argument("--target-dir", default="target/debug", help="where the built binaries are (target/debug)")
    parser.add_argument("--log-dir", help="the functions' logs (default $STACK_DIR/logs)")
    args = parser.parse_args(argv)
    if args.events < REPEATED_KEY_EVERY:
        parser.error(
            f"--events must be at least {REPEATED_KEY_EVERY} (one event in {REPEATED_KEY_EVERY} repeats a key)"
        )
    return args


def interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [] if args.local_only else missing_variables(dict(os.environ))
    if missing:
        say(needs_message(missing))
        return 0
    signal.signal(signal.SIGTERM, interrupt)
    problems: list[str] = []
    columns: dict[str, dict[str, Outcome]] = {}
    run_id = f"sfcheck-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    schema = "TRACKLAYER_CHECK_" + run_id.removeprefix("sfcheck-").replace("-", "_").upper()
    try:
        account = None if args.local_only else account_target(dict(os.environ))
        if args.build:
            build(Path(args.target_dir))
        binaries = binaries_at(args)
        with services(args.env_file) as endpoints:
            targets = [local_target(endpoints.snowflake)] + ([account] if account else [])
            for target in targets:
                columns[target.name] = run_column(
                    target, schema, run_id, binaries, Aws(endpoints.moto), args.events, problems
                )
    except SetupError as e:
        say(f"snowflake-check: {e}")
        return 2
    except KeyboardInterrupt:
        say(
            "\nsnowflake-check: interrupted; what it created (scratch schema, queues, secrets) was removed, "
            "unless a line below says otherwise"
        )
        return 130
    finally:
        for problem in problems:
            say(f"!! {problem}")
    lines, rows = table(columns)
    say()
    for line in lines:
        say(line)
    failed_checks = [r["rule"] for r in rows for side in ("local", "account") if r[side] and r[side]["ok"] is False]
    disagree = [r["rule"] for r in rows if r["agree"] is False]
    if args.json:
        report = {
            "run": run_id,
            "schema": schema,
            "columns": list(columns),
            "rows": rows,
            "disagree": disagree,
            "failed_checks": failed_checks,
            "problems": problems,
        }
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    say()
    if disagree:
        say(
            f"{len(disagree)} rules answered differently: {', '.join(disagree)}. Bring them back to the team "
            "(with --json's file): the local Snowflake or the loader rests on something this account does not do."
        )
    if failed_checks:
        say(f"load checks failed: {', '.join(sorted(set(failed_checks)))} (see the logs in {binaries.log_dir})")
    if "account" not in columns:
        say("Your account's column was not run (--local-only).")
    return 1 if disagree or failed_checks or problems else 0


if __name__ == "__main__":
    sys.exit(main())
