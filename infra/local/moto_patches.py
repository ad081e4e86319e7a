"""Patches for moto's SQS, for moto of one version only: the one requirements.txt pins.

    .venv/bin/python -m tracklayer_local.moto_patches --port PORT    # a patched moto server

The stack's moto (``stack.py``) and ``chaos.py``'s events queue pair run on such a server.

**Atomic calls** (``patch_atomic``). moto's server is threaded, but its queues have no lock: two
receives at once can hand one message to both callers, two deletes at once rebuild the message
list from the same copy so one of the deletions is undone, and a receive that meets a concurrent
delete can fail with a 500. Real SQS hides a received message from every other consumer for its
visibility timeout (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html)
and a deleted message stays deleted (API_DeleteMessage.html); flush's 100,000-event test once
failed in CI on such a lost delete. The patch runs every queue call of ``SQSBackend`` under that
queue's own condition lock, which moto's long poll already waits on (the wait releases it). A
standard queue's rare second delivery ("at-least-once delivery", sqs-standard-queues.html) is
what ``chaos.py`` injects on purpose, not left to thread timing.

**Speed** (``patch_moto``'s other patches). moto computes a queue's attributes, its
three message counts included, for every message sent and three times for every message received
(its retention check); each count reads the clock through a slow datetime helper once or twice per
message in the queue. A receipt handle is 185 ``random.choice()`` calls, and a delete walks the
queue twice building a list per message. With 100,000 messages that takes hours. The patches keep
moto's behaviour and make each of those cheap: a clock read without the datetime detour, one
counting pass per attributes dict, an O(1) retention check, receipt handles from ``os.urandom``,
a one-pass delete.

They replace moto internals (``moto.sqs.models``: ``unix_time``, ``unix_time_millis``,
``camelcase_to_underscores``, ``generate_receipt_handle``, ``Queue.attributes`` and its
``approximate_number_of_messages*`` properties, ``Queue.delete_message``,
``SQSBackend.is_message_valid_based_on_retention_period``), so ``patch_moto`` refuses any moto
but ``MOTO_VERSION``: after a moto upgrade, check that those still exist and mean the same (and
that ``QUEUE_CALLS`` still take the queue's name first and ``Queue._messages_lock`` is still the
condition the long poll waits on), then change ``MOTO_VERSION`` (and run ``make chaos``).
"""

from __future__ import annotations

import argparse
import base64
import functools
import os
import threading
import time
from importlib.metadata import version
from typing import Any

MOTO_VERSION = "5.2.5"


class MotoVersionError(RuntimeError):
    """The installed moto is not the one the patches were written for."""


def check_moto_version(installed: str | None = None) -> None:
    """MotoVersionError unless moto is MOTO_VERSION, saying what to check."""
    installed = version("moto") if installed is None else installed
    if installed != MOTO_VERSION:
        raise MotoVersionError(
            f"moto {installed} is installed, but tracklayer_local.moto_patches was written for moto "
            f"{MOTO_VERSION} (infra/local/requirements.txt): check that moto.sqs.models still has unix_time, "
            "unix_time_millis, camelcase_to_underscores, generate_receipt_handle, Queue.attributes, "
            "Queue.approximate_number_of_messages*, Queue.delete_message and "
            "SQSBackend.is_message_valid_based_on_retention_period with the same meaning, then set MOTO_VERSION "
            f"in {__file__} to {installed}; or run chaos with --events-sqs stack"
        )


#: ``SQSBackend`` methods that take the queue's name first and read or change its messages.
QUEUE_CALLS = (
    "send_message",
    "send_message_batch",
    "receive_message",
    "delete_message",
    "delete_message_batch",
    "change_message_visibility",
    "change_message_visibility_batch",
    "get_queue_attributes",
    "purge_queue",
)


def patch_atomic() -> None:
    """Makes each SQS call of this process's moto atomic per queue (see the module docstring)."""
    check_moto_version()
    import moto.sqs.models as models

    def atomic(call: Any) -> Any:
        @functools.wraps(call)
        def locked(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
            # an unknown queue raises here, as the unpatched call would
            queue = self.get_queue(queue_name)
            with queue._messages_lock:  # a Condition over an RLock: re-entered by add_message
                return call(self, queue_name, *args, **kwargs)

        locked.tracklayer_atomic = True
        return locked

    for name in QUEUE_CALLS:
        call = getattr(models.SQSBackend, name)
        if not getattr(call, "tracklayer_atomic", False):
            setattr(models.SQSBackend, name, atomic(call))


def patch_moto() -> None:
    """Applies the atomicity and speed patches to this process's moto (after checking its
    version)."""
    check_moto_version()
    patch_atomic()
    import moto.sqs.models as models

    slow_unix_time = models.unix_time

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else slow_unix_time(dt)

    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else slow_unix_time(dt) * 1000.0

    models.unix_time = unix_time
    models.unix_time_millis = unix_time_millis
    models.camelcase_to_underscores = functools.lru_cache(maxsize=4096)(models.camelcase_to_underscores)
    # opaque 185-character handles, as moto's, from os.urandom
    models.generate_receipt_handle = lambda: base64.b32encode(os.urandom(120)).decode().lower()[:185]

    building = threading.local()  # the counts of the attributes dict this thread is building

    def counts(queue: Any) -> tuple[int, int, int]:
        """(visible and not delayed, delayed, not visible): one pass, one clock read, memoised
        while one attributes dict is being built (per thread: the server is threaded)."""
        memo = getattr(building, "counts", None)
        if memo is not None and memo[0] is queue:
            return memo[1]
        now = time.time() * 1000.0
        available = delayed = hidden = 0
        for message in queue._messages:
            visible = now > message.visible_at
            late = now < message.delayed_until
            if visible and not late:
                available += 1
            if late:
                delayed += 1
            if not visible:
                hidden += 1
        return available, delayed, hidden

    models.Queue.approximate_number_of_messages = property(lambda self: counts(self)[0])
    models.Queue.approximate_number_of_messages_delayed = property(lambda self: counts(self)[1])
    models.Queue.approximate_number_of_messages_not_visible = property(lambda self: counts(self)[2])
    slow_attributes = models.Queue.attributes.fget

    def attributes(self: Any) -> dict[str, Any]:
        outer = getattr(building, "counts", None)
        building.counts = (self, counts(self))
        try:
            return slow_attributes(self)
        finally:
            building.counts = outer

    models.Queue.attributes = property(attributes)

    def retention_ok(self: Any, queue_name: str, message: Any) -> bool:
        queue = self.get_queue(queue_name)
        return int(queue.message_retention_period) + message.sent_timestamp / 1000 > time.time()

    models.SQSBackend.is_message_valid_based_on_retention_period = retention_ok

    def delete_message(self: Any, receipt_handle: str) -> None:
        if receipt_handle in self.deleted_messages:
            return  # deleted before: fine, as in moto
        for index, message in enumerate(self._messages):
            if message.receipt_handle == receipt_handle or receipt_handle in message._old_receipt_handles:
                del self._messages[index]
                self.pending_messages.discard(message)
                self.deleted_messages.update(message.all_receipt_handles)
                return
        raise models.ReceiptHandleIsInvalid()

    models.Queue.delete_message = delete_message


def serve(port: int) -> None:
    """A patched moto server on 127.0.0.1:`port`, until the process is stopped."""
    patch_moto()
    from moto.server import main as moto_main

    moto_main(["-H", "127.0.0.1", "-p", str(port)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="moto_patches", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="the port to serve on (127.0.0.1)")
    serve(parser.parse_args(argv).port)


if __name__ == "__main__":
    main()
