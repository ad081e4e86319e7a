"""Statements (handles), their answers, and the idempotency store.

SQL API v2: handles, polling, cancelling, retries
--------------------------------------------------
* 202 when execution takes longer than the async threshold (default 45 s, see settings) or with
  ``async=true``: ``{"code": "333334", "message": "Asynchronous execution in progress. ...",
  "statementHandle", "statementStatusUrl"}``; the statement keeps running.
* ``GET /api/v2/statements/{handle}[?partition=N]``: 202 while running, then the final answer
  (200, 422, 408), or result partition N (rule 5).
  ``POST /api/v2/statements/{handle}/cancel``: 200. If the statement was still running the body
  is ``{"code": "000604", "sqlState": "57014", "message": "SQL execution canceled", ...}`` and
  later polls answer 422 with that body; if it had already finished the body has code "000000"
  and the statement keeps its answer. Unknown handle: 404 code "000709".
* Idempotency: with ``retry=true`` a requestId whose last execution succeeded is answered from
  the stored result without executing again, one still running gets 202 (same handle) once the
  async threshold has passed, one that failed executes again. Without ``retry=true`` a repeated
  requestId always executes again.
* Statement timeout (body ``timeout`` > 0, seconds): 408 ``{"code": "000630", "sqlState":
  "57014"}``; the statement is interrupted.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from tracklayer_local.emulator.errors import Answer

STATEMENTS_PATH = "/api/v2/statements"
ASYNC_MESSAGE = "Asynchronous execution in progress. Use provided query id to perform query monitoring and management."
MAX_STORED_STATEMENTS = 2000
log = logging.getLogger("snowflake_emulator")


@dataclass
class Statement:
    """One execution: its handle, its final answer once known, and what cancels it."""

    handle: str
    request_id: str
    created_on: int
    answer: Answer | None = None
    future: Future | None = None
    duck: Any = None  # the DuckDB connection while executing, to interrupt it
    partitions: list[bytes] = field(default_factory=list)  # result partitions 1.., gzip-compressed JSON
    cancelled: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def links(self) -> dict[str, str]:
        return {
            "statementHandle": self.handle,
            "statementStatusUrl": f"{STATEMENTS_PATH}/{self.handle}?requestId={self.request_id}",
        }

    def accepted(self) -> Answer:
        return Answer(202, {"code": "333334", "message": ASYNC_MESSAGE, **self.links()})

    def finish(self, answer: Answer) -> bool:
        """Set the final answer unless one is already set (the first one wins)."""
        with self._lock:
            if self.answer is not None:
                return False
            self.answer = answer
            return True

    def abort(self, answer: Answer) -> bool:
        """Finish with `answer` (cancel or timeout) and stop the execution, if still running."""
        if not self.finish(answer):
            return False
        self.cancelled.set()
        duck = self.duck
        if duck is not None:
            try:
                duck.interrupt()
            except Exception:
                log.debug("interrupt failed", exc_info=True)
        return True

    @property
    def succeeded(self) -> bool:
        return self.answer is not None and self.answer.status == 200


class Statements:
    """Handles -> statements (the newest MAX_STORED_STATEMENTS) and requestId -> latest handle."""

    def __init__(self) -> None:
        self._by_handle: OrderedDict[str, Statement] = OrderedDict()
        self._by_request: dict[str, Statement] = {}
        self._lock = threading.Lock()

    def claim(self, request_id: str, retry: bool) -> tuple[Statement, bool]:
        """For a retry, the earlier running or successful statement; else a new one (True)."""
        with self._lock:
            earlier = self._by_request.get(request_id)
            if retry and earlier is not None and (earlier.answer is None or earlier.succeeded):
                return earlier, False
            stmt = self._create(request_id)
            self._by_request[request_id] = stmt
            return stmt, True

    def child(self, parent: Statement) -> Statement:
        """A statement of a multi-statement request (pollable, not tied to the requestId)."""
        with self._lock:
            return self._create(parent.request_id)

    def _create(self, request_id: str) -> Statement:
        stmt = Statement(str(uuid.uuid4()), request_id, int(time.time() * 1000))
        self._by_handle[stmt.handle] = stmt
        while len(self._by_handle) > MAX_STORED_STATEMENTS:
            _, old = self._by_handle.popitem(last=False)
            if self._by_request.get(old.request_id) is old:
                del self._by_request[old.request_id]
        return stmt

    def get(self, handle: str) -> Statement | None:
        with self._lock:
            return self._by_handle.get(handle)

    def clear(self) -> None:
        with self._lock:
            self._by_handle.clear()
            self._by_request.clear()
