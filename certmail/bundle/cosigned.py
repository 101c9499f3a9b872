"""Cosigned checkpoints in a proof bundle (format 3, issue 14; docs/witness.md).

A bundle exported from a notary with witnesses holds
``evidence/checkpoint-<N>.cosigned``: the notary's checkpoint of size N as a
C2SP signed note, the notary's own signature first, then the witnesses'
cosignature/v1 lines (c2sp.org/tlog-cosignature). Its size joins the
receipts' checkpoint sizes in the chain of consistency proofs, so a
cosigned checkpoint at the largest size covers every checkpoint the bundle
relies on. :func:`read_cosigned` checks the notary's signature (always);
:func:`check_witnesses` the cosignatures against the witness keys a verifier
trusts (``proof verify --witness``), with a quorum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from certmail.bundle.layout import COSIGNED, fail, members_of
from certmail.bundle.report import Check
from keys.errors import MalformedError, VerificationError

if TYPE_CHECKING:
    from certmail.bundle.checks import Verified
    from notary.checkpoint import Checkpoint
    from notary.cosignature import CosignatureVerifier

__all__ = ["check_witnesses", "cosigned_members", "read_cosigned"]


def read_cosigned(v: Verified) -> dict[int, Checkpoint]:
    """Each evidence/checkpoint-N.cosigned: a checkpoint of size N signed by the notary
    key (its signature the first line), by size. Cosignatures are not checked here."""
    from notary.checkpoint import open_checkpoint
    from notary.note import parse_note

    assert v.verifier is not None
    out: dict[int, Checkpoint] = {}
    for name in sorted(members_of(v.files, "cosigned")):
        size = int(COSIGNED.fullmatch(name).group(1))  # type: ignore[union-attr]
        note = v.files[name]
        try:
            cp = open_checkpoint(note, v.verifier)
            first = parse_note(note).signatures[0]
        except (MalformedError, VerificationError) as e:
            raise fail(f"{name}: {e.message}") from None
        if (first.name, first.key_id) != (v.verifier.name, v.verifier.key_id):
            raise fail(f"{name}: the notary's signature is not the first line")
        if cp.size != size:
            raise fail(f"{name} holds a checkpoint of size {cp.size}")
        out[size] = cp
    return out


def cosigned_members(notes: Sequence[bytes]) -> dict[str, bytes]:
    """The members for the cosigned checkpoint notes the notary gave (receipts whose
    checkpoint carries more than the notary's signature): one per size, the one with
    the most signature lines."""
    from notary.note import parse_note
    from notary.tlogproof import parsed_checkpoint

    best: dict[int, bytes] = {}
    for note in notes:
        if len(parse_note(note).signatures) < 2:
            continue
        size = parsed_checkpoint(note)[1].size
        have = best.get(size)
        if have is None or len(parse_note(have).signatures) < len(parse_note(note).signatures):
            best[size] = note
    return {f"evidence/checkpoint-{n}.cosigned": best[n] for n in sorted(best)}


def check_witnesses(
    v: Verified,
    cosigned: Mapping[int, Checkpoint],
    witnesses: Sequence[CosignatureVerifier],
    quorum: int | None,
) -> Check | None:
    """The largest checkpoint the bundle relies on must carry ``quorum`` (default: all)
    valid cosignatures by ``witnesses``; VerificationError naming the checkpoint's file
    and the witnesses missing or invalid. Without witnesses: a skipped check (one that
    does not apply: the verdict stays "valid") when the bundle holds cosigned
    checkpoints, else none."""
    if not witnesses:
        if not cosigned:
            return None
        sizes = ", ".join(map(str, sorted(cosigned)))
        return Check(
            "cosignatures",
            "skipped",
            f"cosigned checkpoint(s) of size {sizes} not checked (no --witness given)",
            applies=False,  # nothing was asked of the witnesses: not "could not run"
        )
    need = len(witnesses) if quorum is None else quorum
    top = max(v.checkpoints)
    name = f"evidence/checkpoint-{top}.cosigned"
    if top not in cosigned:
        held = (
            f"it holds cosigned checkpoints of size {', '.join(map(str, sorted(cosigned)))} only"
            if cosigned
            else f"it holds no cosigned checkpoint (bundle format {v.format})"
        )
        raise VerificationError(
            f"the checkpoint of size {top} the bundle relies on is not cosigned: no {name}; {held}",
            hint="export the bundle again once the notary's witnesses have cosigned",
        )
    valid, bad = _cosigners(v.files[name], witnesses)
    if len(valid) < need:
        missing = [w.name for w in witnesses if w.name not in valid and w.name not in bad]
        why = [f"{w}: {bad[w]}" for w in sorted(bad)] + [f"{w}: no cosignature" for w in missing]
        raise fail(f"{name}: {len(valid)} valid cosignature(s), {need} required ({'; '.join(why)})")
    return Check(
        "cosignatures",
        "ok",
        f"{name}: the checkpoint of size {top} is cosigned by {', '.join(sorted(valid))} "
        f"({len(valid)} of {len(witnesses)}, quorum {need})",
    )


def _cosigners(
    note: bytes, witnesses: Sequence[CosignatureVerifier]
) -> tuple[dict[str, int], dict[str, str]]:
    """The witnesses whose cosignature on ``note`` verifies (name -> time) and those
    whose line is there but does not (name -> why)."""
    from notary.note import parse_note

    parsed = parse_note(note)
    valid: dict[str, int] = {}
    bad: dict[str, str] = {}
    for w in witnesses:
        for sig in parsed.signatures:
            if sig.name != w.name:
                continue
            if sig.key_id != w.key_id:
                bad.setdefault(w.name, "signed by another key than the one given")
                continue
            try:
                valid[w.name] = w.verify(parsed.text, sig.signature)
                bad.pop(w.name, None)
            except VerificationError as e:
                bad[w.name] = e.message
    return valid, bad
