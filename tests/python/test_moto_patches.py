"""tracklayer_local.moto_patches: refused for any moto but the one it was written for; each SQS
call atomic per queue, without holding the queue through a long poll's wait.

The patched server itself is exercised end to end by every stack test and test_chaos.py.
"""

from __future__ import annotations

import threading
from importlib.metadata import version
from typing import Any

import pytest

from tracklayer_local import moto_patches


def test_the_pinned_moto_is_the_one_the_patches_were_written_for() -> None:
    assert version("moto") == moto_patches.MOTO_VERSION
    moto_patches.check_moto_version()


def test_another_moto_version_is_refused_with_what_to_check() -> None:
    with pytest.raises(moto_patches.MotoVersionError) as refused:
        moto_patches.check_moto_version("5.3.0")
    message = str(refused.value)
    assert message.startswith(
        f"moto 5.3.0 is installed, but tracklayer_local.moto_patches was written for moto {moto_patches.MOTO_VERSION}"
    )
    for internal in ("unix_time", "generate_receipt_handle", "Queue.delete_message", "MOTO_VERSION"):
        assert internal in message
    assert "--events-sqs stack" in message


def _queue_with_one_message(name: str) -> tuple[Any, Any, str]:
    """moto's in-process SQS backend, patched atomic, with queue `name` holding one message."""
    moto_patches.patch_atomic()
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sqs.models import sqs_backends

    backend = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    queue = backend.create_queue(name)
    backend.send_message(name, "the chunk")
    return backend, queue, name


def test_a_delete_waits_for_a_call_holding_the_queue() -> None:
    # Unpatched, a delete racing another call rebuilt the queue from a stale copy: a lost delete.
    backend, queue, name = _queue_with_one_message("atomic-delete")
    [received] = backend.receive_message(name, 10, 0, 30)
    with queue._messages_lock:  # what a receive, delete or send holds for its whole call now
        deleting = threading.Thread(target=backend.delete_message, args=(name, received.receipt_handle))
        deleting.start()
        deleting.join(0.2)
        assert deleting.is_alive()
    deleting.join()
    assert queue._messages == []


def test_a_long_poll_lets_a_send_in_while_it_waits() -> None:
    backend, _queue, name = _queue_with_one_message("atomic-poll")
    [first] = backend.receive_message(name, 10, 0, 30)
    backend.delete_message(name, first.receipt_handle)
    got: list[Any] = []
    polling = threading.Thread(target=lambda: got.extend(backend.receive_message(name, 10, 20, 30)))
    polling.start()
    backend.send_message(name, "sent during the poll")  # blocked until the poll ended, were the lock held
    polling.join()
    assert [m.body for m in got] == ["sent during the poll"]
