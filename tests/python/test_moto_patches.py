"""tracklayer_local.moto_patches: refused for any moto but the one it was written for.

The patched server itself is exercised end to end by test_chaos.py (the events queues live there).
"""

from __future__ import annotations

from importlib.metadata import version

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
