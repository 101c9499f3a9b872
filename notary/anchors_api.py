"""``GET /v1/anchors?size=N``: the outside time-stamps over the notary's checkpoints
(docs/formats.md §9, docs/anchors.md), and the anchoring thread started beside the log.

Public like checkpoints and consistency proofs: a token covers only a checkpoint.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from fastapi import FastAPI, Response

from keys.errors import Error, NotFoundError

__all__ = ["include_anchor_routes"]


def include_anchor_routes(app: FastAPI, service: Any) -> None:
    """Start :class:`notary.anchors.Anchoring` (only with anchors.toml) and add the route."""
    from notary.anchors import Anchoring, anchored_at_least, load_anchors

    directory = service.config.directory
    anchoring = Anchoring(directory, service.storage.latest_checkpoint)
    anchoring.start()

    @app.get(
        "/v1/anchors",
        summary="The smallest checkpoint of at least SIZE entries that outside TSAs "
        "time-stamped, with their RFC 3161 tokens",
        tags=["log"],
    )
    def anchors(size: int = 1) -> Response:
        if not 0 < size < 1 << 63:
            raise Error("size must be a positive tree size")
        got = anchored_at_least(directory, size)
        if got is None:
            raise NotFoundError(f"no checkpoint of size {size} or more is anchored yet")
        tsas = {a.id: a for a in load_anchors(directory)}
        body = {
            "size": got.size,
            "checkpoint": got.note.decode("utf-8"),
            "tokens": [
                {
                    "tsa": tsa,
                    "url": tsas[tsa].url,
                    "root": (directory / tsas[tsa].root).read_text(encoding="ascii"),
                    "token": base64.b64encode(t).decode("ascii"),
                }
                for tsa, t in got.tokens.items()
                if tsa in tsas  # a TSA removed from anchors.toml: its root is not vouched for
            ],
        }
        if not body["tokens"]:
            raise NotFoundError(f"no checkpoint of size {size} or more is anchored yet")
        headers = {"cache-control": "public, max-age=60"}
        return Response(
            json.dumps(body, sort_keys=True), media_type="application/json", headers=headers
        )
