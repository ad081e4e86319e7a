"""Run a real Lambda binary locally the way AWS does: the Runtime API, and an SQS event source mapping.

    .venv/bin/python -m tracklayer_local.lambda_host invoke --binary target/debug/ingest --name ingest \\
        [--timeout 30] [--event-file F | --event JSON] [--repeat N]
    .venv/bin/python -m tracklayer_local.lambda_host sqs --binary target/debug/ingest --name ingest \\
        --queue-url URL [--batch-size 10] [--max-batches N] [--until-empty] [--wait 1]

Common options: ``--env-file .local/stack.env`` (KEY=VALUE lines added to the function's
environment), ``--env KEY=VALUE`` (repeatable), ``--memory 128``, ``--init-timeout 10``,
``--log PATH`` (default ``$STACK_DIR/logs/<name>.log``, STACK_DIR defaulting to ``.local``),
``--port 0`` (the Runtime API's port; 0 = any free one). Both modes print progress to stderr and
one JSON summary object to stdout; exit status 0, or 1 when an invocation failed (``invoke``) or
the function could not initialise (both modes), 2 for a usage error.

Runtime API (``/2018-06-01``, served on 127.0.0.1): ``GET runtime/invocation/next`` blocks until an
invocation is queued and answers the event with ``Lambda-Runtime-Aws-Request-Id``,
``-Deadline-Ms``, ``-Invoked-Function-Arn`` and ``-Trace-Id``; ``POST
runtime/invocation/{id}/response`` and ``.../error`` answer it (202); ``POST runtime/init/error``
(202) reports an initialisation failure: the host then stops the function and every later
invocation fails with that error. Responses over 6 MiB are refused (413), as Lambda does.

The function runs as a child process (its own process group) with the caller's environment, the
extra variables, and Lambda's: ``AWS_LAMBDA_RUNTIME_API``, ``AWS_LAMBDA_FUNCTION_NAME``,
``AWS_LAMBDA_FUNCTION_VERSION`` ($LATEST), ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``,
``AWS_LAMBDA_LOG_GROUP_NAME``, ``AWS_LAMBDA_LOG_STREAM_NAME``, ``AWS_LAMBDA_INITIALIZATION_TYPE``,
and ``AWS_REGION``/``AWS_DEFAULT_REGION``/``TZ`` when missing. Its stdout and stderr go to the log
file. Invocations run one at a time, like one Lambda execution environment:

* an answer that does not come by the deadline (``--timeout`` after the function took the event)
  fails the invocation with ``Sandbox.Timedout``, and the process is killed; the next invocation
  starts a new one (a cold start), as Lambda does;
* a process that exits while handling an invocation fails it with ``Runtime.ExitError`` (status
  and log tail in the message) and is started again for the next invocation;
* a process that exits before it first asks for an invocation, posts ``init/error``, or does not
  ask within ``--init-timeout`` has failed to initialise: the host stops and reports it.

Measured: each invocation's duration (from handing the event to the function to its answer, like
Lambda's REPORT Duration), each process's cold start (from its start to its first ``GET next``)
and the peak RSS over all processes (``VmHWM`` of /proc/<pid>/status, read after every invocation
and before the process is stopped; ``memory_limit_exceeded`` compares it with ``--memory``), and
``cpu_ms``, the CPU time (user + system, ``utime + stime`` of /proc/<pid>/stat, clock-tick
resolution, usually 10 ms) used by all processes, read at the same moments. ``host.cpu_ms()``
reads the running process's CPU time now, so a caller can take the delta around one invocation.

SQS mode emulates an event source mapping with ``ReportBatchItemFailures``: up to
``--batch-size`` messages per batch (ReceiveMessage calls of at most 10, the first one long-polling
``--wait`` seconds), the event built as Lambda builds it, then: a success answer deletes every
message except those in ``batchItemFailures``; an error, a timeout, or an answer Lambda would
treat as a whole-batch failure (not an object, an ``itemIdentifier`` that is missing, empty or not
in the batch) deletes nothing. Messages not deleted are made visible again at once (visibility 0)
so redelivery, and redrive to a DLQ after ``maxReceiveCount``, can be tested quickly. It stops
when a receive returns nothing (``--until-empty``), after ``--max-batches``, if the function cannot
initialise, or on Ctrl-C. SQS is reached at ``AWS_ENDPOINT_URL`` (from the environment or the env
file).

As a module (tests)::

    with LambdaHost("target/debug/ingest", "ingest", env={...}, timeout=30) as host:
        ok, payload = host.invoke({"Records": [...]})
        summary = run_sqs(host, queue_url, until_empty=True, wait=0)
        host.summary()  # cold_start_ms, peak_rss_kb, cpu_ms, durations_ms, restarts, init_error, ...
        before = host.cpu_ms(); host.invoke(event); used = host.cpu_ms() - before  # CPU of one invocation
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tracklayer_local.harness import (
    DEFAULT_REGION,
    Progress,
    SqsClient,
    progress_to_stderr,
    read_env_file,
    sqs_client,
    stack_dir,
)

API_VERSION = "2018-06-01"
ACCOUNT_ID = "123456789012"
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # Lambda's limit for a synchronous request and response
ANSWER_GRACE_S = 0.5  # after the deadline, for an answer already on its way
STOP_GRACE_S = 2.0  # SIGTERM -> SIGKILL
LOG_TAIL_LINES = 20
SQS_RECORD_ATTRIBUTES = (  # the system attributes Lambda copies into a record
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
    "DeadLetterQueueSourceArn",
    "AWSTraceHeader",
)

stderr_progress = progress_to_stderr("lambda_host")


def quiet(_line: str) -> None:
    pass


class HostError(Exception):
    """The host cannot run the function at all (no such binary, bad arguments)."""


@dataclass
class Invocation:
    request_id: str
    event: bytes
    trace_id: str
    queued_at: float  # time.monotonic()
    dispatched_at: float | None = None
    finished_at: float | None = None
    deadline_ms: int | None = None
    result: tuple[bool, Any] | None = None

    @property
    def done(self) -> bool:
        return self.result is not None


@dataclass
class Child:
    """One process of the function (one execution environment)."""

    generation: int
    popen: subprocess.Popen
    started_at: float
    log_offset: int
    first_next_at: float | None = None
    stopped_by_host: bool = False
    exit_status: int | None = None
    peak_rss_kb: int | None = None
    cpu_ms: float | None = None  # utime + stime at the last sample

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def ready(self) -> bool:
        return self.first_next_at is not None

    @property
    def alive(self) -> bool:
        return self.exit_status is None


def describe_status(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


def read_vm_hwm_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def read_cpu_ms(pid: int) -> float | None:
    """CPU time (user + system, every thread, live and exited) of `pid` so far, in ms."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": fields 3...
        utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    except (OSError, ValueError, IndexError):
        return None
    return round((utime + stime) * 1000 / CLOCK_TICKS, 1)


def process_exited(pid: int) -> bool:
    """Whether our child `pid` has exited, without reaping it (the watcher thread does that)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def trace_id() -> str:
    return f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=0"


def decode_payload(body: bytes) -> Any:
    """A JSON answer as Python data; anything else as text."""
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace")


def default_log_path(name: str) -> Path:
    return stack_dir() / "logs" / f"{name}.log"


class LambdaHost:
    """One function: a Runtime API server and the process polling it. Use as a context manager.

    ``env`` is added to the caller's environment (``inherit_env=False``: used instead of it).
    ``invoke`` returns ``(True, answer)`` or ``(False, {"errorType", "errorMessage", ...})``;
    it never waits longer than ``init_timeout`` (cold) + ``timeout`` + a moment.
    """

    def __init__(
        self,
        binary: str | os.PathLike,
        name: str,
        *,
        timeout: float = 30.0,
        env: dict[str, str] | None = None,
        inherit_env: bool = True,
        memory_mb: int = 128,
        log: str | os.PathLike | None = None,
        port: int = 0,
        init_timeout: float = 10.0,
        region: str | None = None,
        progress: Progress = quiet,
    ) -> None:
        self.binary = Path(binary)
        self.name = name
        self.timeout = float(timeout)
        self.init_timeout = float(init_timeout)
        self.memory_mb = int(memory_mb)
        self.extra_env = dict(env or {})
        self.inherit_env = inherit_env
        self.region = region or self.extra_env.get("AWS_REGION") or os.environ.get("AWS_REGION") or DEFAULT_REGION
        self.function_arn = f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{name}"
        self.log_path = Path(log) if log else default_log_path(name)
        self.progress = progress
        self._requested_port = port

        self._cond = threading.Condition()
        self._invoke_lock = threading.Lock()
        self._queue: collections.deque[Invocation] = collections.deque()
        self._inflight: dict[str, Invocation] = {}
        self._child: Child | None = None
        self._generation = 0
        self._closing = False
        self._server: ThreadingHTTPServer | None = None
        self._server_thread: threading.Thread | None = None

        self.init_error: dict[str, Any] | None = None
        self.cold_starts_ms: list[float] = []
        self.durations_ms: list[float] = []
        self.peak_rss_kb: int | None = None
        self._children: list[Child] = []  # every process started, for cpu_ms
        self.restarts = 0
        self.invocations = 0

    # ---------------------------------------------------------------- lifecycle

    @property
    def port(self) -> int:
        if self._server is None:
            raise HostError("the Runtime API is not started")
        return self._server.server_address[1]

    @property
    def runtime_api(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.pid if child and child.alive else None

    def __enter__(self) -> LambdaHost:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Starts the Runtime API and the function's process (if not running)."""
        if not self.binary.is_file():
            raise HostError(f"{self.binary}: no such file (build it first, e.g. `cargo build -p {self.name}`)")
        if not os.access(self.binary, os.X_OK):
            raise HostError(f"{self.binary}: not executable")
        if self._server is None:
            self._server = RuntimeApiServer(("127.0.0.1", self._requested_port), self)
            self._server_thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True, name="runtime-api"
            )
            self._server_thread.start()
        with self._cond:
            child = self._child
            if child is not None and child.alive and process_exited(child.pid):
                end = time.monotonic() + STOP_GRACE_S  # let the watcher record how it ended
                while child.alive and end - time.monotonic() > 0:
                    self._cond.wait(end - time.monotonic())
            if self.init_error is None and (child is None or not child.alive):
                self._start_child()

    def close(self) -> None:
        """Stops the process (reading its peak RSS first) and the Runtime API. Idempotent."""
        with self._cond:
            self._closing = True
            closed = {"errorType": "Host.Closed", "errorMessage": "the host was closed during the invocation"}
            self._fail_pending(closed)
        child = self._child
        if child is not None:
            self._stop_child(child)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Waits until the process asks for its first invocation (True) or fails to (False)."""
        end = time.monotonic() + (self.init_timeout if timeout is None else timeout)
        with self._cond:
            while True:
                child = self._child
                if child is not None and child.ready:
                    return True
                if self.init_error is not None or child is None or not child.alive:
                    return False
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)

    def _start_child(self) -> None:
        """Starts a new process. Caller holds the condition."""
        self._generation += 1
        if self._child is not None:
            self.restarts += 1
        env = dict(os.environ) if self.inherit_env else {}
        env.update(self.extra_env)
        env.update(
            {
                "AWS_LAMBDA_RUNTIME_API": self.runtime_api,
                "AWS_LAMBDA_FUNCTION_NAME": self.name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": time.strftime("%Y/%m/%d/[$LATEST]", time.gmtime()) + uuid.uuid4().hex,
                "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            }
        )
        env.setdefault("AWS_REGION", self.region)
        env.setdefault("AWS_DEFAULT_REGION", env["AWS_REGION"])
        env.setdefault("TZ", ":UTC")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            log.write(f"--- lambda_host {stamp}: starting {self.binary} as {self.name} ---\n".encode())
            log.flush()
            offset = log.tell()
            try:
                popen = subprocess.Popen(
                    [str(self.binary)],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stopped with its children
                )
            except OSError as e:
                raise HostError(f"cannot start {self.binary}: {e}") from e
        child = Child(self._generation, popen, time.monotonic(), offset)
        self._child = child
        self._children.append(child)
        threading.Thread(target=self._watch, args=(child,), daemon=True, name=f"watch-{popen.pid}").start()
        self.progress(f"started {self.name} (pid {popen.pid}), runtime API {self.runtime_api}, log {self.log_path}")

    def _watch(self, child: Child) -> None:
        """Waits for the process to exit, then fails what it left unanswered."""
        status = child.popen.wait()
        with self._cond:
            child.exit_status = status
            if not child.stopped_by_host:
                tail = self.log_tail(child)
                if not child.ready and self.init_error is None:
                    self.init_error = {
                        "errorType": "Runtime.ExitError",
                        "errorMessage": f"{self.name} {describe_status(status)} before asking for an invocation "
                        f"(initialisation failed); log tail:\n{tail}",
                    }
                    self.progress(f"{self.name} {describe_status(status)} during initialisation")
                else:
                    self.progress(f"{self.name} {describe_status(status)}")
                message = (
                    self.init_error["errorMessage"]
                    if self.init_error and not child.ready
                    else f"{self.name} {describe_status(status)} while handling the invocation; log tail:\n{tail}"
                )
                self._fail_pending({"errorType": "Runtime.ExitError", "errorMessage": message})
            self._cond.notify_all()

    def _stop_child(self, child: Child) -> None:
        """Reads the process's peak RSS, then SIGTERM, then SIGKILL, to its whole process group."""
        with self._cond:
            if not child.alive:
                return
            already = child.stopped_by_host
            child.stopped_by_host = True
            if not already:
                self._sample_rss(child)
        if already:  # another thread is stopping it: just wait for the end
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(3 * STOP_GRACE_S)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGTERM)
        try:
            child.popen.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(STOP_GRACE_S)
        with self._cond:  # the watcher may not have run yet
            if child.popen.returncode is not None:
                child.exit_status = child.popen.returncode
            self._cond.notify_all()

    def _sample_rss(self, child: Child) -> None:
        """Reads the process's peak RSS and CPU time so far (both only grow)."""
        rss = read_vm_hwm_kb(child.pid)
        if rss is not None:
            child.peak_rss_kb = max(child.peak_rss_kb or 0, rss)
            self.peak_rss_kb = max(self.peak_rss_kb or 0, rss)
        cpu = read_cpu_ms(child.pid)
        if cpu is not None:
            child.cpu_ms = max(child.cpu_ms or 0.0, cpu)

    def cpu_ms(self) -> float | None:
        """The running process's CPU time (user + system) so far, in ms; None if none runs.

        Clock-tick resolution (usually 10 ms). For one invocation's CPU take the difference of
        two readings around ``invoke`` (the same process: check ``pid`` did not change).
        """
        child = self._child
        if child is None or not child.alive:
            return None
        cpu = read_cpu_ms(child.pid)
        if cpu is not None:
            child.cpu_ms = max(child.cpu_ms or 0.0, cpu)
        return cpu

    def total_cpu_ms(self) -> float | None:
        """CPU time of every process started, as last sampled (after each invocation, before a stop)."""
        samples = [child.cpu_ms for child in self._children if child.cpu_ms is not None]
        return round(sum(samples), 1) if samples else None

    def _fail_pending(self, error: dict[str, Any]) -> None:
        """Fails every queued and in-flight invocation. Caller holds the condition."""
        now = time.monotonic()
        for invocation in [*self._queue, *self._inflight.values()]:
            if not invocation.done:
                invocation.result = (False, error)
                invocation.finished_at = now
        self._queue.clear()
        self._inflight.clear()
        self._cond.notify_all()

    def log_tail(self, child: Child | None = None, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines the process (default: the current one) wrote."""
        child = child or self._child
        try:
            with open(self.log_path, "rb") as log:
                log.seek(child.log_offset if child else 0)
                text = log.read()[-64 * 1024 :].decode("utf-8", errors="replace")
        except OSError:
            return "(no log)"
        tail = "\n".join(text.splitlines()[-lines:])
        return tail or "(the process wrote nothing)"

    # ---------------------------------------------------------------- invoking

    def invoke(self, event: Any) -> tuple[bool, Any]:
        """Sends one event (JSON-serialisable data, or bytes/str already JSON) and waits for the answer."""
        if isinstance(event, bytes):
            body = event
        elif isinstance(event, str):
            body = event.encode()
        else:
            body = json.dumps(event).encode()
        with self._invoke_lock:
            if self.init_error is not None:
                return False, self.init_error
            if self._closing:
                return False, {"errorType": "Host.Closed", "errorMessage": "the host is closed"}
            self.start()
            if self.init_error is not None:
                return False, self.init_error
            with self._cond:
                invocation = Invocation(str(uuid.uuid4()), body, trace_id(), time.monotonic())
                self._queue.append(invocation)
                self._cond.notify_all()
                self._wait(invocation)
                child = self._child
                timed_out = not invocation.done
                if timed_out:
                    self._time_out(invocation)
            if timed_out and child is not None:
                self._stop_child(child)
            elif child is not None:
                with self._cond:
                    if child.alive:
                        self._sample_rss(child)
            if self.init_error is not None and child is not None:
                self._stop_child(child)
            self.invocations += 1
            assert invocation.result is not None and invocation.finished_at is not None
            began = invocation.dispatched_at if invocation.dispatched_at is not None else invocation.queued_at
            self.durations_ms.append(round((invocation.finished_at - began) * 1000, 1))
            return invocation.result

    def _wait(self, invocation: Invocation) -> None:
        """Waits (holding the condition) until answered, failed or overdue."""
        child = self._child
        cold = child is None or not child.ready
        end = invocation.queued_at + (self.init_timeout if cold else self.timeout) + ANSWER_GRACE_S
        while not invocation.done:
            if invocation.dispatched_at is not None:
                end = invocation.dispatched_at + self.timeout + ANSWER_GRACE_S
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _time_out(self, invocation: Invocation) -> None:
        """An overdue invocation fails. Caller holds the condition; the process is stopped after."""
        with contextlib.suppress(ValueError):
            self._queue.remove(invocation)
        self._inflight.pop(invocation.request_id, None)
        invocation.finished_at = time.monotonic()
        child = self._child
        if invocation.dispatched_at is not None:
            error = {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"{invocation.request_id} Task timed out after {self.timeout:.2f} seconds",
            }
            self.progress(
                f"invocation {invocation.request_id} timed out after {self.timeout:.2f}s; stopping the process"
            )
        elif child is not None and not child.ready:
            error = {
                "errorType": "Runtime.InitTimeout",
                "errorMessage": f"{self.name} did not ask for an invocation within {self.init_timeout:.1f}s of "
                f"starting (initialisation did not finish); log tail:\n{self.log_tail(child)}",
            }
            self.init_error = error
            self.progress(f"{self.name} did not finish initialising within {self.init_timeout:.1f}s")
        else:
            error = {
                "errorType": "Runtime.NotPolling",
                "errorMessage": f"{self.name} did not ask for its next invocation within {self.timeout:.1f}s; "
                f"log tail:\n{self.log_tail(child)}",
            }
            self.progress(error["errorMessage"].splitlines()[0])
        invocation.result = (False, error)

    def summary(self) -> dict[str, Any]:
        return {
            "cold_start_ms": self.cold_starts_ms[0] if self.cold_starts_ms else None,
            "cold_starts_ms": list(self.cold_starts_ms),
            "peak_rss_kb": self.peak_rss_kb,
            "memory_limit_exceeded": bool(self.peak_rss_kb and self.peak_rss_kb > self.memory_mb * 1024),
            "cpu_ms": self.total_cpu_ms(),
            "durations_ms": list(self.durations_ms),
            "invocations": self.invocations,
            "restarts": self.restarts,
            "init_error": self.init_error,
            "log": str(self.log_path),
        }

    # ---------------------------------------------------------------- Runtime API (server threads)

    def _next(self) -> Invocation | None:
        """Blocks until an invocation is queued for the current process; None when that process is gone."""
        with self._cond:
            child = self._child
            if child is None:
                return None
            generation = child.generation
            if child.first_next_at is None:
                child.first_next_at = time.monotonic()
                cold_start = round((child.first_next_at - child.started_at) * 1000, 1)
                self.cold_starts_ms.append(cold_start)
                self.progress(f"{self.name} ready: cold start {cold_start} ms")
                self._cond.notify_all()
            while True:
                current = self._child
                if self._closing or current is None or current.generation != generation or not current.alive:
                    return None
                if self.init_error is not None:
                    return None
                if self._queue:
                    invocation = self._queue.popleft()
                    invocation.dispatched_at = time.monotonic()
                    invocation.deadline_ms = int(time.time() * 1000 + self.timeout * 1000)
                    self._inflight[invocation.request_id] = invocation
                    self._cond.notify_all()
                    return invocation
                self._cond.wait(1.0)

    def _undispatch(self, invocation: Invocation) -> None:
        """The event could not be sent: queue it again for the next poll."""
        with self._cond:
            if self._inflight.pop(invocation.request_id, None) is not None and not invocation.done:
                invocation.dispatched_at = None
                invocation.deadline_ms = None
                self._queue.appendleft(invocation)
                self._cond.notify_all()

    def _answer(self, request_id: str, result: tuple[bool, Any]) -> bool:
        with self._cond:
            invocation = self._inflight.pop(request_id, None)
            if invocation is None:
                return False
            invocation.result = result
            invocation.finished_at = time.monotonic()
            self._cond.notify_all()
            return True

    def _init_failed(self, error: dict[str, Any]) -> None:
        with self._cond:
            child = self._child
            if self.init_error is None:
                message = error.get("errorMessage") if isinstance(error, dict) else None
                self.init_error = {
                    "errorType": (error.get("errorType") if isinstance(error, dict) else None) or "Runtime.InitError",
                    "errorMessage": f"{self.name} reported an initialisation error: {message or error!r}; "
                    f"log tail:\n{self.log_tail(child)}",
                    "reported": error,
                }
                self.progress(f"{self.name} reported an initialisation error: {message or error!r}")
            self._fail_pending(self.init_error)
        if child is not None:  # the host stops: no process keeps running after a failed init
            threading.Thread(target=self._stop_child, args=(child,), daemon=True).start()


class RuntimeApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], host: LambdaHost) -> None:
        self.host = host
        super().__init__(address, RuntimeApiHandler)

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # the function's process went away mid-request: the watcher reports that
        super().handle_error(request, client_address)


INVOCATION_PATH = re.compile(rf"^/{API_VERSION}/runtime/invocation/([^/]+)/(response|error)$")


class RuntimeApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the runtime clients expect
    server: RuntimeApiServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def reply(self, status: int, body: bytes | dict | None = None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def read_body(self, limit: int = MAX_PAYLOAD_BYTES) -> bytes | None:
        """The request body (Content-Length or chunked); None when over `limit` (rest discarded)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts, size = [], 0
            while True:
                line = self.rfile.readline(1024)
                length = int(line.split(b";")[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunk = self.rfile.read(length)
                self.rfile.readline(8)
                size += len(chunk)
                if size <= limit:
                    parts.append(chunk)
            return b"".join(parts) if size <= limit else None
        length = int(self.headers.get("Content-Length") or 0)
        if length > limit:
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
            return None
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        if self.path.split("?")[0] != f"/{API_VERSION}/runtime/invocation/next":
            self.reply(404, {"errorType": "NotFound", "errorMessage": f"no route {self.path}"})
            return
        host = self.server.host
        invocation = host._next()
        if invocation is None:  # the host is closing or this connection's process is gone
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.reply(
                    410, {"errorType": "Host.Stopped", "errorMessage": "the host stopped this execution environment"}
                )
            return
        headers = {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": host.function_arn,
            "Lambda-Runtime-Trace-Id": invocation.trace_id,
        }
        try:
            self.reply(200, invocation.event, headers)
        except OSError:
            host._undispatch(invocation)
            self.close_connection = True

    def do_POST(self) -> None:
        host = self.server.host
        path = self.path.split("?")[0]
        body = self.read_body()
        if path == f"/{API_VERSION}/runtime/init/error":
            payload = decode_payload(body or b"")
            if not isinstance(payload, dict):
                payload = {
                    "errorType": self.headers.get("Lambda-Runtime-Function-Error-Type") or "Runtime.InitError",
                    "errorMessage": str(payload),
                }
            self.reply(202, {"status": "OK"})
            host._init_failed(payload)
            return
        match = INVOCATION_PATH.match(path)
        if not match:
            self.reply(404, {"errorType": "NotFound", "errorMessage": f"no route {self.path}"})
            return
        request_id, kind = match.groups()
        if body is None:
            error = {
                "errorType": "Function.ResponseSizeTooLarge",
                "errorMessage": "Response payload size exceeded maximum allowed payload size "
                f"({MAX_PAYLOAD_BYTES} bytes).",
            }
            host._answer(request_id, (False, error))
            self.reply(413, {"errorType": "RequestEntityTooLarge", "errorMessage": error["errorMessage"]})
            return
        payload = decode_payload(body)
        if kind == "error":
            if not isinstance(payload, dict):
                payload = {"errorMessage": payload}
            payload.setdefault(
                "errorType", self.headers.get("Lambda-Runtime-Function-Error-Type") or "Function.Unhandled"
            )
            result = (False, payload)
        else:
            result = (True, payload)
        if host._answer(request_id, result):
            self.reply(202, {"status": "OK"})
        else:
            self.reply(
                400,
                {
                    "errorType": "InvalidRequestID",
                    "errorMessage": f"{request_id} is not an invocation in progress (answered already, or timed out)",
                },
            )


# ------------------------------------------------------------------------------------------------
# SQS event source mapping
# ------------------------------------------------------------------------------------------------


def queue_arn(sqs: SqsClient, queue_url: str, region: str = DEFAULT_REGION) -> str:
    try:
        return sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    except Exception:  # noqa: BLE001 - fall back to the ARN Lambda would show for a default account
        return f"arn:aws:sqs:{region}:{ACCOUNT_ID}:{queue_url.rstrip('/').rsplit('/', 1)[-1]}"


def lambda_message_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """SQS message attributes as Lambda shows them (camelCase, binary base64)."""
    converted = {}
    for name, value in attributes.items():
        item: dict[str, Any] = {"stringListValues": [], "binaryListValues": [], "dataType": value["DataType"]}
        if "StringValue" in value:
            item["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            item["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
        converted[name] = item
    return converted


def sqs_record(message: dict[str, Any], source_arn: str, region: str = DEFAULT_REGION) -> dict[str, Any]:
    """One record of an SQS Lambda event, from a boto3 ReceiveMessage message."""
    attributes = message.get("Attributes", {})
    record = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": {k: attributes[k] for k in SQS_RECORD_ATTRIBUTES if k in attributes},
        "messageAttributes": lambda_message_attributes(message.get("MessageAttributes", {})),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": source_arn,
        "awsRegion": region,
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def sqs_event(messages: list[dict[str, Any]], source_arn: str, region: str = DEFAULT_REGION) -> dict[str, Any]:
    return {"Records": [sqs_record(m, source_arn, region) for m in messages]}


def batch_failures(ok: bool, payload: Any, message_ids: list[str]) -> tuple[set[str], str | None]:
    """The message ids to leave for redelivery, and why the whole batch failed (None if it did not).

    Lambda's rules for ReportBatchItemFailures: null, ``{}``, and a missing, null or empty
    ``batchItemFailures`` are complete success; an error, an answer that is not an object, and an
    ``itemIdentifier`` that is missing, null, empty or not in the batch fail the whole batch.
    """
    everything = set(message_ids)
    if not ok:
        kind = payload.get("errorType") if isinstance(payload, dict) else None
        return everything, f"invocation failed ({kind or 'error'})"
    if payload is None:
        return set(), None
    if not isinstance(payload, dict):
        return everything, "the answer is not a JSON object"
    failures = payload.get("batchItemFailures")
    if failures is None:
        return set(), None
    if not isinstance(failures, list):
        return everything, "batchItemFailures is not a list"
    failed = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or not identifier or identifier not in everything:
            return everything, f"invalid batchItemFailures entry {item!r}"
        failed.add(identifier)
    return failed, None


def _batches(items: list, size: int = 10) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def receive_batch(sqs: SqsClient, queue_url: str, batch_size: int, wait: int) -> list[dict[str, Any]]:
    """Up to `batch_size` messages, in ReceiveMessage calls of at most 10; only the first long-polls."""
    messages: list[dict[str, Any]] = []
    seen: set[str] = set()
    while len(messages) < batch_size:
        got = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, batch_size - len(messages)),
            WaitTimeSeconds=wait if not messages else 0,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        fresh = [m for m in got if m["MessageId"] not in seen]
        if not fresh:
            break
        seen.update(m["MessageId"] for m in fresh)
        messages.extend(fresh)
    return messages


def _delete(sqs: SqsClient, queue_url: str, messages: list[dict[str, Any]], say: Progress) -> int:
    deleted = 0
    for chunk in _batches(messages):
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
        result = sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
        deleted += len(result.get("Successful", []))
        for failure in result.get("Failed", []):
            say(f"delete failed: {failure}")
    return deleted


def _make_visible(sqs: SqsClient, queue_url: str, messages: list[dict[str, Any]]) -> None:
    for chunk in _batches(messages):
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(chunk)
        ]
        sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)


def run_sqs(
    host: LambdaHost,
    queue_url: str,
    *,
    batch_size: int = 10,
    max_batches: int | None = None,
    until_empty: bool = False,
    wait: int = 1,
    sqs: SqsClient | None = None,  # default: a client for AWS_ENDPOINT_URL / AWS_REGION
    keep_responses: int = 5,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Feeds the queue to the function as an SQS event source mapping with ReportBatchItemFailures."""
    if not 1 <= batch_size <= 10000:
        raise HostError("batch size must be 1..10000")
    if not 0 <= wait <= 20:
        raise HostError("wait must be 0..20 seconds (SQS long polling)")
    say = progress or host.progress
    env = {**os.environ, **host.extra_env} if host.inherit_env else dict(host.extra_env)
    region = env.get("AWS_REGION") or host.region
    sqs = sqs or sqs_client(env, region)
    source_arn = queue_arn(sqs, queue_url, region)
    stats = {
        "batches": 0,
        "messages_received": 0,
        "messages_deleted": 0,
        "messages_failed": 0,
        "invocation_errors": 0,
    }
    responses: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep_responses)
    interrupted = False
    messages: list[dict[str, Any]] = []  # received and not yet settled
    try:
        while max_batches is None or stats["batches"] < max_batches:
            if host.init_error is not None:
                break
            messages = receive_batch(sqs, queue_url, batch_size, wait)
            if not messages:
                if until_empty:
                    say("queue is empty")
                    break
                if wait == 0:
                    time.sleep(1)  # polling forever without long polling: do not spin
                continue
            stats["batches"] += 1
            stats["messages_received"] += len(messages)
            ids = [m["MessageId"] for m in messages]
            ok, payload = host.invoke(sqs_event(messages, source_arn, region))
            if not ok:
                stats["invocation_errors"] += 1
            failed, whole_batch = batch_failures(ok, payload, ids)
            responses.append({"batch": stats["batches"], "ok": ok, "payload": payload})
            keep = [m for m in messages if m["MessageId"] in failed]
            deleted = _delete(sqs, queue_url, [m for m in messages if m["MessageId"] not in failed], say)
            _make_visible(sqs, queue_url, keep)
            messages = []
            stats["messages_deleted"] += deleted
            stats["messages_failed"] += len(keep)
            why = f" ({whole_batch})" if whole_batch else ""
            say(
                f"batch {stats['batches']}: {len(ids)} messages, {deleted} deleted, "
                f"{len(keep)} left for redelivery{why}"
            )
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted")
        if messages:  # the batch in hand goes back to the queue at once
            with contextlib.suppress(Exception):
                _make_visible(sqs, queue_url, messages)
    summary = host.summary()
    return {
        **stats,
        **({"interrupted": True} if interrupted else {}),
        "cold_start_ms": summary["cold_start_ms"],
        "peak_rss_kb": summary["peak_rss_kb"],
        "cpu_ms": summary["cpu_ms"],
        "responses": list(responses),
        "durations_ms": summary["durations_ms"],
        "restarts": summary["restarts"],
        "memory_limit_exceeded": summary["memory_limit_exceeded"],
        "init_error": summary["init_error"],
        "log": summary["log"],
    }


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lambda_host.py", description=__doc__.split("\n\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--binary", required=True, help="the function's executable (a custom runtime)")
    common.add_argument("--name", required=True, help="function name (AWS_LAMBDA_FUNCTION_NAME)")
    common.add_argument("--timeout", type=float, default=30.0, help="function timeout, seconds (30)")
    common.add_argument("--init-timeout", type=float, default=10.0, help="initialisation limit, seconds (10)")
    common.add_argument("--memory", type=int, default=128, help="AWS_LAMBDA_FUNCTION_MEMORY_SIZE, MB (128)")
    common.add_argument("--log", help="the function's stdout+stderr (default $STACK_DIR/logs/<name>.log)")
    common.add_argument("--port", type=int, default=0, help="Runtime API port (0: any free one)")
    common.add_argument("--env-file", action="append", default=[], help="KEY=VALUE lines for the function")
    common.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="one more variable")

    invoke = modes.add_parser("invoke", parents=[common], help="invoke with one event, N times")
    source = invoke.add_mutually_exclusive_group()
    source.add_argument("--event", help="the event as JSON text (default {})")
    source.add_argument("--event-file", help="a file holding the event ('-': stdin)")
    invoke.add_argument("--repeat", type=int, default=1, help="invocations (1)")

    sqs = modes.add_parser("sqs", parents=[common], help="feed a queue to the function (event source mapping)")
    sqs.add_argument("--queue-url", required=True)
    sqs.add_argument("--batch-size", type=int, default=10, help="messages per invocation (10, max 10000)")
    sqs.add_argument("--max-batches", type=int, help="stop after N batches")
    sqs.add_argument("--until-empty", action="store_true", help="stop when a receive returns nothing")
    sqs.add_argument("--wait", type=int, default=1, help="ReceiveMessage long-poll seconds (1)")
    return parser.parse_args(argv)


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    env: dict[str, str] = {}
    try:
        for path in args.env_file:
            env.update(read_env_file(path))
        for pair in args.env:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise HostError(f"--env {pair!r}: expected KEY=VALUE")
            env[key] = value
        if args.mode == "invoke":
            if args.event_file == "-":
                event = sys.stdin.read()
            elif args.event_file:
                event = Path(args.event_file).read_text()
            else:
                event = args.event or "{}"
            try:
                json.loads(event)  # fail early on a malformed event
            except ValueError as e:
                raise HostError(f"the event is not valid JSON: {e}") from e
            if args.repeat < 1:
                raise HostError("--repeat must be at least 1")
    except (OSError, ValueError, HostError) as e:
        print(f"lambda_host: error: {e}", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, _raise_interrupt)
    host = LambdaHost(
        args.binary,
        args.name,
        timeout=args.timeout,
        init_timeout=args.init_timeout,
        env=env,
        memory_mb=args.memory,
        log=args.log,
        port=args.port,
        progress=stderr_progress,
    )
    interrupted = False
    output: dict[str, Any] = {}
    try:
        host.start()
        if args.mode == "invoke":
            responses, errors = [], []
            for number in range(1, args.repeat + 1):
                ok, payload = host.invoke(event)
                (responses if ok else errors).append(payload)
                outcome = "ok" if ok else "error"
                stderr_progress(f"invocation {number}/{args.repeat}: {outcome} in {host.durations_ms[-1]} ms")
                if host.init_error is not None:
                    break
            output = {"responses": responses, "errors": errors}
        else:
            output = run_sqs(
                host,
                args.queue_url,
                batch_size=args.batch_size,
                max_batches=args.max_batches,
                until_empty=args.until_empty,
                wait=args.wait,
            )
    except HostError as e:
        host.close()
        print(f"lambda_host: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        interrupted = True
        stderr_progress("interrupted; stopping the function")
    finally:
        host.close()
    summary = host.summary()
    for key, value in summary.items():
        output.setdefault(key, value)
    if interrupted:
        output["interrupted"] = True
    print(json.dumps(output, indent=2))
    if host.init_error is not None or output.get("interrupted"):
        return 1
    if args.mode == "invoke" and output.get("errors"):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
