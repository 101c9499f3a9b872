"""Asking a witness to cosign a checkpoint (the log's side of c2sp.org/tlog-witness).

:func:`request_cosignature` sends ``add-checkpoint`` with a consistency proof
from the size the witness is believed to hold; on ``409`` with
``text/x.tlog.size`` it learns the witness's size and tries once more from
there. The consistency proof comes from a callable, so a log can build it from
its storage or, as :func:`tiles_consistency` does, from its public tiles. The
cosignature returned is checked against the witness's key before it is used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from keys.errors import Error, TemporaryError
from notary.checkpoint import Checkpoint
from notary.cosignature import CosignatureVerifier, verify_cosignatures
from notary.errors import VerificationError
from notary.merkle import prove_consistency
from notary.note import parse_note
from notary.tiles import TileFetcher, TileHashReader

if TYPE_CHECKING:
    import httpx

__all__ = ["WitnessRefusedError", "http_post", "request_cosignature", "tiles_consistency"]

Consistency = Callable[[int, int], list[bytes]]
Post = Callable[[str, bytes], tuple[int, str, bytes]]
"""POST ``body`` to ``url``: the status, content type and body of the answer."""


class WitnessRefusedError(VerificationError):
    """The witness refused to cosign (``status`` is its HTTP status)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def http_post(
    client: httpx.Client, url: str, body: bytes, *, what: str = ""
) -> tuple[int, str, bytes]:
    """:data:`Post` over ``client``, which its owner keeps for every POST (one SSL
    context and connection pool, not one per call); TemporaryError when ``url``
    cannot be reached (``what`` names it in the message, e.g. ``"the witness "``)."""
    import httpx

    try:
        r = client.post(url, content=body)
    except httpx.HTTPError as e:
        raise TemporaryError(f"cannot reach {what}{url}: {e}") from None
    return r.status_code, r.headers.get("content-type", ""), r.content


def tiles_consistency(fetch: TileFetcher) -> Consistency:
    """Consistency proofs built from a log's tiles (old 0 or equal sizes: empty)."""

    def proof(old: int, new: int) -> list[bytes]:
        if old in (0, new):
            return []
        return prove_consistency(old, new, TileHashReader(new, fetch))

    return proof


def _body(old: int, proof: list[bytes], note: bytes) -> bytes:
    import base64

    lines = [f"old {old}"] + [base64.b64encode(h).decode() for h in proof]
    return ("\n".join(lines) + "\n\n").encode() + note


def request_cosignature(
    witness_url: str,
    note: bytes,
    consistency: Consistency,
    witness: CosignatureVerifier,
    post: Post,
    *,
    old: int = 0,
) -> tuple[bytes, int]:
    """The checkpoint ``note`` with the witness's cosignature appended, and the
    size the witness held before (ask again from it next time)."""
    cp = Checkpoint.from_text(parse_note(note).text)
    url = witness_url.rstrip("/") + "/add-checkpoint"
    for _attempt in range(2):
        status, ctype, answer = post(url, _body(old, consistency(old, cp.size), note))
        if status == 409 and ctype.startswith("text/x.tlog.size"):
            held = answer.decode("ascii", "replace").strip()
            if not held.isdigit() or int(held) > cp.size:
                raise WitnessRefusedError(
                    f"{witness.name} holds a tree of size {held}, larger than {cp.size}: "
                    "the log would be rolling back",
                    409,
                )
            old = int(held)
            continue
        if status != 200:
            text = answer.decode("utf-8", "replace").strip()[:300]
            if status >= 500:
                raise TemporaryError(f"{witness.name} answered HTTP {status}: {text}")
            raise WitnessRefusedError(f"{witness.name} refused: HTTP {status}: {text}", status)
        cosigned = note + answer
        verify_cosignatures(cosigned, [witness], 1)
        return cosigned, old
    raise Error(f"{witness.name} kept changing its size; try again")
