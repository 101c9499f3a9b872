"""Outside time-stamps over checkpoints in a proof bundle (format 4, issue 14 item 2;
docs/anchors.md).

A bundle exported from a notary that anchors its checkpoints with outside RFC 3161
TSAs holds, for the smallest anchored checkpoint at least as large as each receipt's:

- ``evidence/anchor-<N>.checkpoint``: the notary's checkpoint of size N, the signed
  note exactly as the notary signed it (its one signature line); the bytes the
  tokens' messageImprint is the SHA-256 of;
- ``evidence/anchor-<N>-<id>.tsr``: an outside TSA's DER TimeStampToken over it
  (``<id>``: 8 hex digits naming the TSA at the notary, SHA-256 of its URL);
- ``anchor-roots.pem``: the outside TSAs' root certificates as the notary was
  configured with them (as trustworthy as the bundle: pin your own with
  ``proof verify --anchor-root PEM``).

The anchored sizes join the receipts' in the chain of consistency proofs
(``evidence/consistency-M-N.json``), so a token over checkpoint N shows that every
entry of the smaller checkpoints existed when the outside TSA says.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from certmail.bundle.layout import (
    ANCHOR_CHECKPOINT,
    ANCHOR_ROOTS,
    ANCHOR_TOKEN,
    fail,
    members_of,
)
from certmail.bundle.report import Check
from keys.errors import MalformedError, VerificationError

if TYPE_CHECKING:
    from cryptography import x509

    from certmail.bundle.checks import Verified
    from notary.checkpoint import Checkpoint

__all__ = ["Anchor", "anchor_members", "check_anchor_roots", "read_anchors"]


@dataclass(frozen=True)
class Anchor:
    """One outside token over one checkpoint, verified against the bundle's anchor roots."""

    file: str  # evidence/anchor-N-ID.tsr
    checkpoint_file: str  # evidence/anchor-N.checkpoint
    size: int
    token: bytes
    digest: bytes  # SHA-256 of the checkpoint note
    info: Any  # notary.rfc3161.TokenInfo


def _bundle_roots(files: Mapping[str, bytes]) -> tuple[x509.Certificate, ...]:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    if ANCHOR_ROOTS not in files:
        raise fail(f"the bundle holds outside time-stamps but no {ANCHOR_ROOTS}")
    data = files[ANCHOR_ROOTS]
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise fail(f"{ANCHOR_ROOTS} holds no readable PEM certificates") from None
    if b"".join(c.public_bytes(Encoding.PEM) for c in certs) != data or len(certs) > 16:
        raise fail(f"{ANCHOR_ROOTS} is not in its canonical PEM form")
    return tuple(certs)


def read_anchors(v: Verified) -> tuple[dict[int, Checkpoint], list[Anchor]]:
    """Each evidence/anchor-N.checkpoint (signed by the notary key, its one signature, of
    size N) and each token over it (valid over its SHA-256 against anchor-roots.pem);
    every token has its checkpoint and every checkpoint a token."""
    if not members_of(v.files, "anchors"):  # the names' roles are remembered (layout.py)
        if ANCHOR_ROOTS in v.files:
            raise fail(f"{ANCHOR_ROOTS} in a bundle without outside time-stamps")
        return {}, []
    from notary.checkpoint import open_checkpoint
    from notary.note import parse_note
    from notary.rfc3161 import verify_token

    notes = {int(m[1]): n for n in v.files if (m := ANCHOR_CHECKPOINT.fullmatch(n))}
    tokens = sorted(
        ((int(m[1]), m[2], n) for n in v.files if (m := ANCHOR_TOKEN.fullmatch(n))),
    )
    if not notes and not tokens:
        if ANCHOR_ROOTS in v.files:
            raise fail(f"{ANCHOR_ROOTS} in a bundle without outside time-stamps")
        return {}, []
    roots = _bundle_roots(v.files)
    assert v.verifier is not None
    checkpoints: dict[int, Checkpoint] = {}
    for size, name in sorted(notes.items()):
        note = v.files[name]
        try:
            cp = open_checkpoint(note, v.verifier)
            sigs = parse_note(note).signatures
        except (MalformedError, VerificationError) as e:
            raise fail(f"{name}: {e.message}") from None
        if len(sigs) != 1:
            raise fail(f"{name} must hold the notary's signature only")
        if cp.size != size:
            raise fail(f"{name} holds a checkpoint of size {cp.size}")
        checkpoints[size] = cp
    out = []
    for size, _tsa, name in tokens:
        if size not in notes:
            raise fail(f"{name} has no evidence/anchor-{size}.checkpoint beside it")
        note_name = notes[size]
        digest = hashlib.sha256(v.files[note_name]).digest()
        try:
            info = verify_token(v.files[name], roots=roots, digest=digest)
        except VerificationError as e:
            raise fail(f"{name}: {e.message}") from None
        out.append(Anchor(name, note_name, size, v.files[name], digest, info))
    lonely = sorted(set(notes) - {a.size for a in out})
    if lonely:
        raise fail(f"{notes[lonely[0]]} has no token over it")
    return checkpoints, out


def check_anchor_roots(
    anchors: Sequence[Anchor], trusted: Sequence[x509.Certificate] | None
) -> Check | None:
    """With ``trusted`` roots (``--anchor-root``) every outside token must chain to one of
    them (VerificationError naming the token's file), and the bundle must hold one.
    Without: a skipped check that does not apply (the tokens were checked against the
    bundle's own anchor-roots.pem only), none when there are no anchors."""
    if not trusted:
        if not anchors:
            return None
        return Check(
            "outside time-stamps",
            "skipped",
            f"{len(anchors)} token(s) valid against the bundle's own {ANCHOR_ROOTS}; "
            "not checked against a trusted root (no --anchor-root given)",
            applies=False,
        )
    if not anchors:
        raise VerificationError(
            "the bundle holds no outside time-stamps (evidence/anchor-N-ID.tsr)",
            hint="export the bundle again once the notary has anchored its checkpoint",
        )
    from notary.rfc3161 import verify_token

    for a in anchors:
        try:
            verify_token(a.token, roots=trusted, digest=a.digest)
        except VerificationError as e:
            raise fail(f"{a.file}: not from a trusted outside TSA ({e.message})") from None
    sizes = ", ".join(str(s) for s in sorted({a.size for a in anchors}))
    return Check(
        "outside time-stamps",
        "ok",
        f"{len(anchors)} token(s) over the checkpoint(s) of size {sizes}, "
        "each from an outside TSA chaining to a trusted --anchor-root",
    )


def anchor_members(anchored: Sequence[Mapping[str, Any]]) -> dict[str, bytes]:
    """The members for the notary's ``GET /v1/anchors`` answers (``size``,
    ``checkpoint``, ``tokens`` each with ``tsa``, ``token`` base64 and ``root`` PEM):
    one checkpoint per size, its tokens, and the roots, canonical PEM, deduplicated."""
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    out: dict[str, bytes] = {}
    roots: dict[bytes, None] = {}
    for a in sorted(anchored, key=lambda a: int(a["size"])):
        size = int(a["size"])
        out[f"evidence/anchor-{size}.checkpoint"] = str(a["checkpoint"]).encode("utf-8")
        for t in a["tokens"]:
            out[f"evidence/anchor-{size}-{t['tsa']}.tsr"] = base64.b64decode(t["token"])
            for c in x509.load_pem_x509_certificates(str(t["root"]).encode("ascii")):
                roots[c.public_bytes(Encoding.PEM)] = None
    if out:
        out[ANCHOR_ROOTS] = b"".join(roots)
    return out
