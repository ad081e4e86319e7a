"""Settings and warehouses (``/__emulator/settings``); reset() restores the start-up values.

Warehouses
----------
* Warehouses: a statement that needs one (rule 1) runs on the request's warehouse; SUSPENDED
  with auto_resume -> resumed (its ``resumes`` counter, see GET /__emulator/settings, goes up);
  SUSPENDED without auto_resume -> 422 000608. Default: TRACKLAYER_WH, STARTED, auto_resume
  true, auto_suspend 60 (no timer suspends it).

Control endpoint
----------------
* ``POST /__emulator/settings`` ``{"async_threshold_ms"?: N, "partition_bytes"?: N, "seed"?: int|null,
  "warehouses"?: {NAME: {"state"?: "STARTED"|"SUSPENDED", "auto_resume"?: bool, "auto_suspend"?:
  int|null, "size"?: str}}}`` (merged; unknown warehouses are created, named exactly as given).
  ``seed`` reseeds the shared generator of
  probabilistic fault rules (null: unseeded), every time it is posted. ``GET`` shows them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

DEFAULT_PARTITION_BYTES = 10_000_000


WAREHOUSE_STATES = ("STARTED", "SUSPENDED")


@dataclass
class Warehouse:
    name: str
    state: str = "STARTED"
    auto_resume: bool = True
    auto_suspend: int | None = 60
    size: str = "X-Small"
    resumes: int = 0

    def update(self, spec: dict[str, Any]) -> None:
        if "state" in spec:
            if spec["state"] not in WAREHOUSE_STATES:
                raise ValueError(f"state must be one of {WAREHOUSE_STATES}")
            self.state = spec["state"]
        if "auto_resume" in spec:
            self.auto_resume = bool(spec["auto_resume"])
        if "auto_suspend" in spec:
            self.auto_suspend = None if spec["auto_suspend"] is None else int(spec["auto_suspend"])
        if "size" in spec:
            self.size = str(spec["size"])

    def describe(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "auto_resume": self.auto_resume,
            "auto_suspend": self.auto_suspend,
            "size": self.size,
            "resumes": self.resumes,
        }


class Settings:
    """Async threshold and warehouses; reset() restores the start-up values."""

    def __init__(self, async_threshold_ms: int) -> None:
        self._default_threshold_ms = async_threshold_ms
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.async_threshold_ms = self._default_threshold_ms
            self.partition_bytes = DEFAULT_PARTITION_BYTES
            self.seed: int | None = None
            self.warehouses = {"TRACKLAYER_WH": Warehouse("TRACKLAYER_WH")}

    def warehouse(self, name: str | None) -> Warehouse | None:
        """The warehouse whose name is exactly `name` (as SHOW WAREHOUSES shows it)."""
        return self.warehouses.get(name) if name else None

    def update(self, spec: Any) -> None:
        if not isinstance(spec, dict):
            raise ValueError("settings are a JSON object")
        seed = spec.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError("seed must be an integer or null")
        with self.lock:
            if "seed" in spec:
                self.seed = seed
            if "async_threshold_ms" in spec:
                self.async_threshold_ms = int(spec["async_threshold_ms"])
            if "partition_bytes" in spec:
                partition_bytes = spec["partition_bytes"]
                if isinstance(partition_bytes, bool) or not isinstance(partition_bytes, int) or partition_bytes < 1:
                    raise ValueError("partition_bytes must be a positive integer")
                self.partition_bytes = partition_bytes
            for name, wh_spec in (spec.get("warehouses") or {}).items():
                self.warehouses.setdefault(name, Warehouse(name)).update(wh_spec)

    def describe(self) -> dict[str, Any]:
        with self.lock:
            return {
                "async_threshold_ms": self.async_threshold_ms,
                "partition_bytes": self.partition_bytes,
                "seed": self.seed,
                "warehouses": {name: wh.describe() for name, wh in self.warehouses.items()},
            }
