"""Fault injection: rules that make matching requests misbehave.

Control endpoint
----------------
* ``POST /__emulator/faults`` ``{"match": {"method"?, "path_prefix"?, "statement_contains"?, "binding_contains"?},
  "count"?: 1, "phase"?: "before_execute" | "after_execute", "probability"?: 1, "seed"?: int, "action": A}``
  where A is one of
  ``{"status": 429|500|503|..., "headers"?: {...}}`` (Snowflake-like body: 429 -> 390505, 500 ->
  000603, other -> "390<status>"), ``{"snowflake_error": {"status"?: 422, "code", "sqlState"?,
  "message"?}}`` (a 422 registers a failed statement so its handle can be polled),
  ``{"delay_ms": N}`` (before_execute: the statement starts N ms late, which counts towards the
  async threshold; after_execute: the answer is held back N ms), ``{"drop_connection": true}``
  (sends "200 OK" with a Content-Length, part of the body, then closes the connection: the client
  gets an I/O error while reading the body). Omitted match fields match anything;
  statement_contains (case-insensitive) and binding_contains (case-sensitive, in any bound
  value: targets the chunks holding one row) only match SQL API submissions. The next ``count``
  matching requests get the fault, first rule first. after_execute runs the request for real
  first (rows are inserted), then replaces its answer. ``probability`` (0 < p <= 1, default 1):
  a matching request takes the rule only with that probability; otherwise the rule is neither
  used nor consumed and the next rule is considered (``count`` still bounds the uses). Each
  matching request of a rule with p < 1 draws ``rng.random() < p`` once, where rng is the rule's
  own ``random.Random(seed)`` when the rule has a ``seed``, else the emulator's shared generator
  (seeded by the ``seed`` setting; unseeded after start and reset). Draws follow the order in
  which requests reach the rule, so a seeded run is reproducible when its requests arrive in the
  same order. ``GET`` answers a JSON array of the rules still armed (with ``remaining`` counts,
  ``probability``, ``seed`` and ``taken``, the uses so far); ``DELETE`` clears them
  (``{"cleared": n}``).
  A ``status`` action may carry ``"body": <any JSON>`` to answer instead of the Snowflake-like
  body (e.g. a bare string). The streaming actions ``channel_error``, ``fence_channel`` and
  ``commit_delay_ms`` are described in streaming.py.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response

from tracklayer_local.emulator import streaming as streaming_emulator
from tracklayer_local.emulator.errors import Answer
from tracklayer_local.emulator.statements import Statement

BEFORE, AFTER = "before_execute", "after_execute"


FAULT_ACTIONS = ("status", "snowflake_error", "delay_ms", "drop_connection", *streaming_emulator.HANDLER_FAULTS)


@dataclass
class Fault:
    """A rule that makes the next `remaining` matching requests misbehave."""

    id: int
    method: str | None
    path_prefix: str | None
    statement_contains: str | None
    binding_contains: str | None
    remaining: int
    phase: str
    action: dict[str, Any]
    probability: float = 1.0
    seed: int | None = None
    taken: int = 0
    rng: random.Random | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, fault_id: int, spec: Any) -> Fault:
        if not isinstance(spec, dict):
            raise ValueError("a fault is a JSON object")
        match, action = spec.get("match") or {}, spec.get("action")
        kinds = [k for k in FAULT_ACTIONS if isinstance(action, dict) and k in action]
        if len(kinds) != 1:
            raise ValueError(f"action needs exactly one of {', '.join(FAULT_ACTIONS)}")
        phase = spec.get("phase", BEFORE)
        if phase not in (BEFORE, AFTER):
            raise ValueError(f"phase must be {BEFORE} or {AFTER}")
        streaming_emulator.check_fault(kinds[0], action, match, phase)
        count = spec.get("count", 1)
        if not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        error = action.get("snowflake_error")
        if kinds[0] == "snowflake_error" and not (isinstance(error, dict) and error.get("code")):
            raise ValueError("snowflake_error needs at least a code")
        if kinds[0] == "status" and not isinstance(action["status"], int):
            raise ValueError("status must be an integer")
        probability = spec.get("probability", 1)
        if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0 < probability <= 1:
            raise ValueError("probability must be a number, 0 < p <= 1")
        seed = spec.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError("seed must be an integer")
        return cls(
            id=fault_id,
            method=(match.get("method") or "").upper() or None,
            path_prefix=match.get("path_prefix"),
            statement_contains=match.get("statement_contains"),
            binding_contains=match.get("binding_contains"),
            remaining=count,
            phase=phase,
            action=action,
            probability=float(probability),
            seed=seed,
            rng=None if seed is None else random.Random(seed),
        )

    @property
    def kind(self) -> str:
        return next(k for k in FAULT_ACTIONS if k in self.action)

    @property
    def status(self) -> int | None:
        """The HTTP status a status or snowflake_error action answers with."""
        if self.kind == "status":
            return self.action["status"]
        if self.kind == "snowflake_error":
            return self.action["snowflake_error"].get("status", 422)
        return None

    @property
    def delay_s(self) -> float:
        return self.action.get("delay_ms", 0) / 1000

    def matches(self, method: str, path: str, statement: str | None, bindings: str | None = None) -> bool:
        if self.method and self.method != method:
            return False
        if self.path_prefix and not path.startswith(self.path_prefix):
            return False
        if self.binding_contains is not None and (bindings is None or self.binding_contains not in bindings):
            return False
        if self.statement_contains is not None:
            return statement is not None and self.statement_contains.lower() in statement.lower()
        return True

    def answer(self, stmt: Statement | None) -> Answer:
        """The error answer of a status or snowflake_error action."""
        if self.kind == "status":
            body = self.action["body"] if "body" in self.action else status_fault_body(self.status)
            return Answer(self.status, body, self.action.get("headers"))
        error = self.action["snowflake_error"]
        body = {
            "code": str(error["code"]),
            "sqlState": error.get("sqlState", "XX000"),
            "message": error.get("message", f"Injected Snowflake error {error['code']}."),
        }
        if stmt is not None:
            body |= stmt.links()
        return Answer(self.status, body, self.action.get("headers"))

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "match": {
                "method": self.method,
                "path_prefix": self.path_prefix,
                "statement_contains": self.statement_contains,
                "binding_contains": self.binding_contains,
            },
            "remaining": self.remaining,
            "phase": self.phase,
            "action": self.action,
            "probability": self.probability,
            "seed": self.seed,
            "taken": self.taken,
        }


def binding_text(body: Any) -> str | None:
    """The bound values of a submission, joined, for a fault's binding_contains."""
    bindings = body.get("bindings") if isinstance(body, dict) else None
    if not isinstance(bindings, dict):
        return None
    return "\n".join(str(b.get("value")) for b in bindings.values() if isinstance(b, dict))


def status_fault_body(status: int) -> dict[str, Any]:
    if status == 429:
        return {"code": "390505", "message": "Too many requests (emulator fault). Retry later."}
    if status == 500:
        return {"code": "000603", "sqlState": "XX000", "message": "SQL execution internal error (emulator fault)."}
    return {"code": f"390{status}", "message": f"HTTP {status} (emulator fault)."}


class Faults:
    def __init__(self) -> None:
        self._rules: list[Fault] = []
        self._next_id = 1
        self._lock = threading.Lock()
        self._rng = random.Random()

    def reseed(self, seed: int | None) -> None:
        """Reseed the generator shared by probabilistic rules without a seed of their own."""
        with self._lock:
            self._rng = random.Random(seed)

    def add(self, spec: Any) -> Fault:
        with self._lock:
            fault = Fault.parse(self._next_id, spec)
            self._next_id += 1
            self._rules.append(fault)
            return fault

    def take(self, method: str, path: str, statement: str | None, bindings: str | None = None) -> Fault | None:
        """Consume one use of the first rule matching the request (and winning its draw, if p < 1)."""
        with self._lock:
            for fault in self._rules:
                if fault.matches(method, path, statement, bindings):
                    if fault.probability < 1 and (fault.rng or self._rng).random() >= fault.probability:
                        continue
                    fault.taken += 1
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._rules.remove(fault)
                    return fault
        return None

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.describe() for f in self._rules]

    def clear(self) -> int:
        with self._lock:
            cleared, self._rules = len(self._rules), []
            return cleared


class DroppedResponse(Response):
    """Starts a 200 answer with a Content-Length, sends part of the body, then stops.

    uvicorn closes the connection when the app returns before completing the body, so the client
    sees a connection closed mid-body (IncompleteRead / "error decoding response body").
    """

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"65536")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"resultSetMetaData": {"numRows": ', "more_body": True})
