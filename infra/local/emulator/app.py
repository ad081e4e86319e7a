"""The emulator: state, HTTP handlers over the pieces of this package, the Starlette app, main().

Control endpoints (not counted in the request report)
-----------------------------------------------------
* ``GET /__emulator/health`` -> 200 ``{"status": "ok"}``.
* ``POST /__emulator/reset`` ``{"drop_data"?: false}`` clears faults, the report, stored
  statements and settings, seed and partition_bytes included (users and the login failures
  rule 3 keeps stay); with drop_data it also drops every schema of the bootstrap database and
  recreates the bootstrap schema.
(users: auth.py; faults: faults.py; settings: settings.py; requests: report.py.)
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import fakesnow.server
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import tracklayer_local.emulator as emulator_package
from tracklayer_local.emulator import streaming as streaming_emulator
from tracklayer_local.emulator.auth import (
    JwtRejected,
    LoginFailures,
    User,
    Users,
    authenticate,
    jwt_invalid,
    verify_keypair_jwt,
)
from tracklayer_local.emulator.engine import Cancelled, Engine
from tracklayer_local.emulator.errors import Answer, ApiError, bad_request, internal_error, sql_error
from tracklayer_local.emulator.faults import AFTER, BEFORE, DroppedResponse, Fault, Faults, binding_text
from tracklayer_local.emulator.intercepts import SYSTEM_WAIT, Intercepts, system_wait
from tracklayer_local.emulator.report import Report
from tracklayer_local.emulator.requests import (
    Context,
    SqlRequest,
    bind_values,
    no_context_named,
    parameter,
    parse_sql_request,
    role_not_authorized,
    split_statements,
    statement_kind,
)
from tracklayer_local.emulator.results import Result, success_answer, text_result
from tracklayer_local.emulator.settings import Settings
from tracklayer_local.emulator.statements import STATEMENTS_PATH, Statement, Statements

CONTROL_PREFIX = "/__emulator"
log = logging.getLogger("snowflake_emulator")


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def flag(value: str | None) -> bool:
    return (value or "").lower() == "true"


async def read_body(request: Request) -> bytes:
    body = await request.body()
    return gzip.decompress(body) if request.headers.get("content-encoding") == "gzip" else body


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def api_endpoint(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """ApiError -> its answer; anything else -> 500 000603 (logged)."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as e:
            return e.answer().response()
        except Exception as e:
            log.exception("unhandled error in %s %s", request.method, request.url.path)
            return internal_error(e).answer().response()

    return endpoint


def control_endpoint(handler: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
    """Returns the handler's JSON; invalid input (ValueError, KeyError, TypeError) -> 400."""

    async def endpoint(request: Request) -> Response:
        try:
            return JSONResponse(await handler(request))
        except (ValueError, KeyError, TypeError) as e:
            return JSONResponse({"error": f"{type(e).__name__}: {e}"}, status_code=400)

    return endpoint


class Emulator:
    """State and handlers of the local Snowflake."""

    def __init__(self, namespace: tuple[str, str], async_threshold_ms: int) -> None:
        self.namespace = namespace
        self.users = Users()
        self.faults = Faults()
        self.settings = Settings(async_threshold_ms)
        self.report = Report()
        self.statements = Statements()
        self.engine = Engine(namespace)
        self.login_failures = LoginFailures()
        self.intercepts = Intercepts(self.settings, self.login_failures)
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="statement")
        self.streaming = streaming_emulator.Streaming(
            self.engine.lock, self.keypair_principal, lambda account, name: self.users.get(account, name) is not None
        )

    def keypair_principal(self, token: str) -> streaming_emulator.Principal:
        """The user of a key-pair JWT for the streaming endpoints (its 401 as a streaming AuthError)."""
        now = time.time()
        try:
            user = verify_keypair_jwt(self.users, token, now)
        except JwtRejected as rejected:
            refused = jwt_invalid(self.login_failures.record(rejected, None, now))
            raise streaming_emulator.AuthError(refused.code, refused.message) from None
        return streaming_emulator.Principal.of(user)

    # ---- SQL API ---------------------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        """POST /api/v2/statements, recorded in the request report."""
        raw = await read_body(request)
        body = parse_json(raw)
        sql = body.get("statement") if isinstance(body, dict) and isinstance(body.get("statement"), str) else None
        parameters = body.get("parameters") if isinstance(body, dict) else None
        entry: dict[str, Any] = {
            "request_id": request.query_params.get("requestId") or str(uuid.uuid4()),
            "retry": flag(request.query_params.get("retry")),
            "kind": statement_kind(sql),
            "query_tag": parameter(parameters, "query_tag") if isinstance(parameters, dict) else None,
            "status": None,
            "bytes": len(raw),
            "handle": None,
            "executed": False,
            "fault": None,
        }
        try:
            response = await self.answer_submission(request, body, sql, entry)
        except ApiError as e:
            response = e.answer().response()
        except Exception as e:
            log.exception("unhandled error in POST %s", STATEMENTS_PATH)
            response = internal_error(e).answer().response()
        entry["status"] = response.status_code
        self.report.add_statement(entry)
        return response

    async def answer_submission(self, request: Request, body: Any, sql: str | None, entry: dict) -> Response:
        fault = self.faults.take("POST", request.url.path, sql, binding_text(body))
        if fault is not None:
            entry["fault"] = fault.kind
            if fault.phase == BEFORE and fault.kind != "delay_ms":
                return self.fault_response(fault, None, entry)
        if not request.headers.get("user-agent", "").strip():
            raise bad_request("The User-Agent header is required.")
        user = authenticate(self.users, self.login_failures, request.headers, time.time(), client_ip(request))
        req = parse_sql_request(body, request.query_params.get("nullable") != "false", user, self.namespace)

        stmt, is_new = self.statements.claim(entry["request_id"], entry["retry"])
        entry["handle"], entry["executed"] = stmt.handle, is_new
        if is_new:
            delay = fault.delay_s if fault is not None and fault.phase == BEFORE else 0.0
            self.start(stmt, req, delay)
        run_async = flag(request.query_params.get("async"))
        answer = await self.settle(stmt, 0 if run_async else self.settings.async_threshold_ms / 1000)

        if fault is not None and fault.phase == AFTER:
            if fault.kind != "delay_ms":
                return self.fault_response(fault, stmt, entry)
            await asyncio.sleep(fault.delay_s)
        return answer.response()

    def fault_response(self, fault: Fault, stmt: Statement | None, entry: dict) -> Response:
        """The response a fault gives a statement submission."""
        if fault.kind == "drop_connection":
            return DroppedResponse()
        if stmt is None and fault.status == 422:
            # Snowflake's 422s carry a handle: register a failed statement that polls to this error
            stmt, _ = self.statements.claim(entry["request_id"], retry=False)
            stmt.finish(fault.answer(stmt))
            entry["handle"] = stmt.handle
        return fault.answer(stmt).response()

    def start(self, stmt: Statement, req: SqlRequest, delay_s: float) -> None:
        stmt.future = self.executor.submit(self.execute, stmt, req, delay_s)
        if req.timeout > 0:
            answer = ApiError(
                408,
                "000630",
                f"Statement reached its statement or warehouse timeout of {req.timeout} second(s) and was canceled.",
                "57014",
            ).answer(stmt)
            asyncio.get_running_loop().call_later(req.timeout, stmt.abort, answer)

    async def settle(self, stmt: Statement, wait_s: float) -> Answer:
        """The final answer if it comes within wait_s, else 202."""
        if stmt.answer is None and stmt.future is not None and wait_s > 0:
            await asyncio.wait([asyncio.wrap_future(stmt.future)], timeout=wait_s)
        return stmt.answer or stmt.accepted()

    async def status(self, request: Request) -> Response:
        """GET /api/v2/statements/{handle}[?partition=N]: the answer, or result partition N (gzip)."""
        stmt = self.polled_statement(request)
        answer = stmt.answer or stmt.accepted()
        partition = request.query_params.get("partition")
        if partition is None or answer.status != 200:
            return answer.response()
        if not partition.isdigit() or int(partition) > len(stmt.partitions):
            raise bad_request(
                f"partition {partition!r} does not exist: this result has partitions 0 to {len(stmt.partitions)}."
            )
        if int(partition) == 0:
            return answer.response()
        compressed = stmt.partitions[int(partition) - 1]
        return Response(
            compressed, media_type="application/json", headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
        )

    async def cancel(self, request: Request) -> Response:
        """POST /api/v2/statements/{handle}/cancel."""
        stmt = self.polled_statement(request)
        cancelled = ApiError(422, "000604", "SQL execution canceled", "57014").answer(stmt)
        if stmt.abort(cancelled):
            return JSONResponse(cancelled.body)
        return JSONResponse(
            {"code": "000000", "sqlState": "00000", "message": "Statement already finished.", **stmt.links()}
        )

    def polled_statement(self, request: Request) -> Statement:
        if not request.headers.get("user-agent", "").strip():
            raise bad_request("The User-Agent header is required.")
        authenticate(self.users, self.login_failures, request.headers, time.time(), client_ip(request))
        handle = request.path_params["handle"]
        stmt = self.statements.get(handle)
        if stmt is None:
            raise ApiError(404, "000709", f"Statement {handle} not found.", "02000")
        return stmt

    # ---- execution (worker threads) ---------------------------------------------------------

    def execute(self, stmt: Statement, req: SqlRequest, delay_s: float) -> None:
        """Run a request's statements and store the answer (unless cancelled first)."""
        if delay_s and stmt.cancelled.wait(delay_s):
            return
        try:
            answer = self.run_request(stmt, req)
        except Cancelled:
            return
        except ApiError as e:
            answer = e.answer(stmt)
        except Exception as e:
            if stmt.cancelled.is_set():
                return
            log.exception("unhandled error executing %r", req.statement[:200])
            answer = internal_error(e).answer(stmt)
        stmt.finish(answer)

    def run_request(self, stmt: Statement, req: SqlRequest) -> Answer:
        ctx = self.resolve_context(req)
        pieces = split_statements(req.statement)
        expected = req.multi_statement_count
        if expected != 0 and len(pieces) != expected:
            raise sql_error(
                "000008",
                "0A000",
                f"Actual statement count {len(pieces)} did not match the desired statement count {expected}.",
            )
        params = bind_values(req.bindings)
        if len(pieces) == 1:
            return self.run_one(stmt, pieces[0].sql, params, req, ctx)

        handles, position = [], 0
        for piece in pieces:
            child = self.statements.child(stmt)
            child.cancelled = stmt.cancelled  # cancelling the request stops the statement running now
            handles.append(child.handle)
            if isinstance(params, list):
                piece_params = params[position : position + piece.placeholders]
                position += piece.placeholders
            else:
                piece_params = params
            try:
                child.finish(self.run_one(child, piece.sql, piece_params, req, ctx))
            except ApiError as e:
                child.finish(e.answer(child))
                raise
        answer = self.success(
            stmt, text_result("multiple statement execution", "Multiple statements executed successfully."), "", True
        )
        answer.body["statementHandles"] = handles
        return answer

    def resolve_context(self, req: SqlRequest) -> Context:
        """The request's role, warehouse, database and schema, each matched exactly (case-sensitive)."""
        if req.role not in req.user.granted_roles:
            raise role_not_authorized(req.role)
        with self.settings.lock:
            warehouse = req.warehouse if self.settings.warehouse(req.warehouse) else None
        database, schema = self.engine.resolve(req.database, req.schema)
        return Context(req.role, warehouse, database, schema)

    def run_one(self, stmt: Statement, sql: str, params: Any, req: SqlRequest, ctx: Context) -> Answer:
        kind = statement_kind(sql)
        if m := SYSTEM_WAIT.match(sql):
            return self.success(stmt, system_wait(stmt, m), kind, req.nullable)
        result = self.intercepts.answer(sql, req, ctx)
        if result is None:
            self.intercepts.require_warehouse(kind, sql, req, ctx)
            try:
                literal_sql = self.intercepts.with_context_literals(sql, req, ctx)
                result = self.engine.run(stmt, literal_sql, params or None, ctx)
            except ApiError as e:
                if e.code == "090105" and "database" in req.named:
                    raise no_context_named() from None
                raise
        return self.success(stmt, result, kind, req.nullable)

    def success(self, stmt: Statement, result: Result, kind: str, nullable: bool) -> Answer:
        with self.settings.lock:
            partition_bytes = self.settings.partition_bytes
        return success_answer(stmt, result, kind, nullable, partition_bytes)

    # ---- control endpoints -----------------------------------------------------------------

    async def health(self, request: Request) -> dict[str, Any]:
        return {"status": "ok"}

    async def register_user(self, request: Request) -> dict[str, Any]:
        user = User.from_spec(json.loads(await request.body()))
        self.users.register(user)
        return user.describe()

    async def list_users(self, request: Request) -> list[dict[str, Any]]:
        return self.users.describe()

    async def add_fault(self, request: Request) -> dict[str, Any]:
        return self.faults.add(json.loads(await request.body())).describe()

    async def list_faults(self, request: Request) -> list[dict[str, Any]]:
        return self.faults.describe()

    async def clear_faults(self, request: Request) -> dict[str, Any]:
        return {"cleared": self.faults.clear()}

    async def update_settings(self, request: Request) -> dict[str, Any]:
        spec = json.loads(await request.body())
        if isinstance(spec, dict) and "streaming" in spec:
            self.streaming.update_settings(spec["streaming"])
        self.settings.update(spec)
        if isinstance(spec, dict) and "seed" in spec:
            self.faults.reseed(spec["seed"])
        return await self.get_settings(request)

    async def get_settings(self, request: Request) -> dict[str, Any]:
        return {**self.settings.describe(), "streaming": self.streaming.settings.describe()}

    async def get_requests(self, request: Request) -> dict[str, Any]:
        return self.report.describe()

    async def clear_requests(self, request: Request) -> dict[str, Any]:
        self.report.clear()
        return {"cleared": True}

    async def reset(self, request: Request) -> dict[str, Any]:
        spec = json.loads(await request.body() or b"{}")
        self.faults.clear()
        self.faults.reseed(None)
        self.report.clear()
        self.statements.clear()
        self.settings.reset()
        self.streaming.reset()
        dropped = await asyncio.to_thread(self.engine.drop_data) if spec.get("drop_data") else []
        return {"reset": True, "dropped_schemas": dropped}


class TrafficMiddleware:
    """Counts requests outside /__emulator and applies faults to those the SQL API handler doesn't.

    POST /api/v2/statements applies its own faults (it knows the statement text and can delay
    execution); every other path (polls, cancels, fakesnow's driver protocol) gets them here.
    """

    def __init__(self, app: Any, emulator: Emulator) -> None:
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        self.emulator.report.count(path, method)
        submission = method == "POST" and path.rstrip("/") == STATEMENTS_PATH
        fault = None if submission else self.emulator.faults.take(method, path, None)
        if fault is None:
            await self.app(scope, receive, send)
        elif fault.kind in streaming_emulator.HANDLER_FAULTS:
            scope.setdefault("state", {})[streaming_emulator.FAULT_STATE] = fault
            await self.app(scope, receive, send)
        elif fault.kind == "delay_ms":
            await self.delayed(fault, scope, receive, send)
        else:
            await self.replaced(fault, scope, receive, send)

    async def replaced(self, fault: Fault, scope: Any, receive: Any, send: Any) -> None:
        """Answer with the fault (after_execute: once the request has been served for real)."""
        if fault.phase == AFTER:
            await self.app(scope, receive, self.discard)
        reply = DroppedResponse() if fault.kind == "drop_connection" else fault.answer(None).response()
        await reply(scope, receive, send)

    async def delayed(self, fault: Fault, scope: Any, receive: Any, send: Any) -> None:
        """before_execute: wait, then serve; after_execute: serve, hold the answer back, send it."""
        if fault.phase == BEFORE:
            await asyncio.sleep(fault.delay_s)
            await self.app(scope, receive, send)
            return
        messages: list[Any] = []

        async def capture(message: Any) -> None:
            messages.append(message)

        await self.app(scope, receive, capture)
        await asyncio.sleep(fault.delay_s)
        for message in messages:
            await send(message)

    @staticmethod
    async def discard(message: Any) -> None:
        """Swallows the real answer of a request whose answer a fault replaces."""


def create_app(emulator: Emulator) -> Starlette:
    e = emulator
    streaming = streaming_emulator.StreamingApi(e.streaming)
    control = [
        ("/health", "GET", e.health),
        ("/users", "POST", e.register_user),
        ("/users", "GET", e.list_users),
        ("/faults", "POST", e.add_fault),
        ("/faults", "GET", e.list_faults),
        ("/faults", "DELETE", e.clear_faults),
        ("/settings", "POST", e.update_settings),
        ("/settings", "GET", e.get_settings),
        ("/requests", "GET", e.get_requests),
        ("/requests", "DELETE", e.clear_requests),
        ("/reset", "POST", e.reset),
        *streaming.control_routes(),
    ]
    routes = [
        *fakesnow.server.routes,
        Route(STATEMENTS_PATH, e.submit, methods=["POST"]),
        Route(STATEMENTS_PATH + "/", e.submit, methods=["POST"]),
        Route(STATEMENTS_PATH + "/{handle}", api_endpoint(e.status), methods=["GET"]),
        Route(STATEMENTS_PATH + "/{handle}/cancel", api_endpoint(e.cancel), methods=["POST"]),
        *streaming.routes(),
        *(Route(CONTROL_PREFIX + path, control_endpoint(h), methods=[m]) for path, m, h in control),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        emulator.executor.shutdown(wait=False, cancel_futures=True)

    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(TrafficMiddleware, emulator=emulator)
    return app


def parse_namespace(value: str) -> tuple[str, str]:
    database, dot, schema = value.upper().partition(".")
    if not dot or not database or not schema:
        raise argparse.ArgumentTypeError("expected DATABASE.SCHEMA")
    return database, schema


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=emulator_package.__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8085)
    parser.add_argument("--bootstrap", type=parse_namespace, default=("TRACKLAYER", "EVENTS"), metavar="DB.SCHEMA")
    parser.add_argument("--async-threshold-ms", type=int, default=45_000)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("fakesnow.server").propagate = False  # it logs through uvicorn's handlers already
    emulator = Emulator(args.bootstrap, args.async_threshold_ms)
    emulator.engine.bootstrap()
    log.info("bootstrapped %s.%s; serving on http://%s:%d", *args.bootstrap, args.host, args.port)
    # keep idle connections open longer than HTTP clients' pools do (reqwest: 90 s), so a client
    # never reuses a connection the server is closing
    uvicorn.run(create_app(emulator), host=args.host, port=args.port, timeout_keep_alive=120, log_level="info")


if __name__ == "__main__":
    main()
