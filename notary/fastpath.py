"""The fast-path switch, for notary's modules: it is :mod:`keys.fastpath` (keys, which
imports nothing of notary, has fast paths of its own)."""

from __future__ import annotations

from keys.fastpath import ENV, enabled

__all__ = ["ENV", "enabled"]
