"""The notary's uvicorn config freezes what the loaded app holds (notary.http_limits)."""

from __future__ import annotations

import gc
from typing import Any

from notary.http_limits import HttpLimits, LimitedConfig


async def _app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - never served
    raise AssertionError("not served")


def test_loading_the_app_moves_what_exists_out_of_the_collectors_generations() -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    config = LimitedConfig(_app, limits=HttpLimits(per_peer=4, header_timeout=5.0))
    try:
        config.load()
        # The modules and the app loaded so far: a full collection no longer walks them.
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
