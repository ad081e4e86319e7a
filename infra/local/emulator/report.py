"""The request report: every request outside /__emulator since the last reset.

Control endpoint
----------------
* ``GET /__emulator/requests``: ``{"total", "by_path", "by_kind", "statements": [{"request_id",
  "retry", "kind", "query_tag", "status", "bytes", "handle", "executed", "fault"}]}`` for every
  request outside /__emulator since the last reset. Paths are grouped as "/api/v2/statements",
  "/api/v2/statements/{handle}", "/api/v2/statements/{handle}/cancel" and fakesnow's paths.
  ``statements`` holds one entry per POST /api/v2/statements (``kind`` is the first statement's
  first keyword, "UNKNOWN" without a statement; ``executed`` is false when the answer came from a
  fault or the idempotency store). ``DELETE`` clears the report.
  Streaming paths are grouped with placeholders for names, and ``by_streaming`` counts them by
  kind (hostname, token, open, append, status, drop).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from tracklayer_local.emulator import streaming as streaming_emulator
from tracklayer_local.emulator.statements import STATEMENTS_PATH


def path_key(path: str) -> str:
    """Group SQL API paths by template so handles don't each get a key."""
    path = path.rstrip("/") or "/"
    if path.startswith(STATEMENTS_PATH + "/"):
        return STATEMENTS_PATH + ("/{handle}/cancel" if path.endswith("/cancel") else "/{handle}")
    return streaming_emulator.path_template(path) or path


class Report:
    """Requests served outside /__emulator since the last reset."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._total = 0
            self._by_path: Counter[str] = Counter()
            self._by_kind: Counter[str] = Counter()
            self._by_streaming: Counter[str] = Counter()
            self._statements: list[dict[str, Any]] = []

    def count(self, path: str, method: str = "") -> None:
        with self._lock:
            self._total += 1
            self._by_path[path_key(path)] += 1
            if kind := streaming_emulator.request_kind(method, path):
                self._by_streaming[kind] += 1

    def add_statement(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._by_kind[entry["kind"]] += 1
            self._statements.append(entry)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self._total,
                "by_path": dict(self._by_path),
                "by_kind": dict(self._by_kind),
                "by_streaming": dict(self._by_streaming),
                "statements": list(self._statements),
            }
