"""Exporting a proof bundle (DESIGN §4.5) from a message and the receipts the notary gave.

The bundle is verified against the notary's key (once) before it is returned.
:func:`write_bundle` writes it to a file: message.eml (hundreds of MB) is then a
:class:`certmail.bundle.zipio.FileMember`, read in pieces, never whole in memory;
:func:`export_bundle` is the same writer into memory.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from certmail.bundle.layout import (
    ANCHOR_CHECKPOINT,
    CHAIN,
    COSIGNED,
    FORMAT,
    FORMAT_ANCHORED,
    FORMAT_COSIGNED,
    FORMAT_FILE,
    FORMAT_SMIME,
    MAX_EVENTS,
    MESSAGE,
    SIGNER_CHAIN,
    VKEY,
    consistency_text,
    format_text,
    receipt_text,
)
from keys.errors import MalformedError, VerificationError

if TYPE_CHECKING:
    from certmail.bundle.zipio import FileMember
    from notary.receipt import Receipt

__all__ = ["export_bundle", "write_bundle"]


def _earliest(receipts: Sequence[Mapping[str, Any]], vkey: str) -> list[Receipt]:
    """One verified receipt per entry, in time (then log) order: of several for one entry
    the one with the smallest checkpoint (a token preferred on a tie)."""
    from notary.evidence import parse_statement
    from notary.note import Verifier
    from notary.receipt import Receipt

    verifier = Verifier.from_vkey(vkey)
    best: dict[bytes, Receipt] = {}
    for obj in receipts:
        r = Receipt.from_json(dict(obj))
        r.verify(verifier)
        have = best.get(r.entry)
        if have is None or (r.checkpoint().size, r.tst is None) < (
            have.checkpoint().size,
            have.tst is None,
        ):
            best[r.entry] = r
    if not best:
        raise ValueError("no receipts to export")
    if len(best) > MAX_EVENTS:
        raise ValueError(f"more than {MAX_EVENTS} events")
    return sorted(best.values(), key=lambda r: (parse_statement(r.entry)["time"], r.index))


def export_bundle(message: bytes, receipts: Sequence[Mapping[str, Any]], **options: Any) -> bytes:
    """The bytes of the proof bundle :func:`write_bundle` writes, with its options."""
    out = io.BytesIO()
    write_bundle(out, message, receipts, **options)
    return out.getvalue()


def write_bundle(
    out: BinaryIO,
    message: bytes | FileMember,
    receipts: Sequence[Mapping[str, Any]],
    *,
    vkey: str,
    tsa_chain_pem: bytes,
    consistency: Callable[[int, int], Sequence[bytes]] | None = None,
    reveal_subject: bool = False,
    protected_subject: str | None = None,
    keys: Mapping[str, bytes] | None = None,
    for_recipient: str | None = None,
    etsi: Sequence[bytes] = (),
    etsi_chain_pem: bytes | None = None,
    etsi_pdf: bytes | None = None,
    anchored: Callable[[int], Mapping[str, Any] | None] | None = None,
    mdns: Sequence[bytes] = (),
) -> int:
    """Write to ``out`` (a new file, or memory) the proof bundle for ``message`` and its
    ``receipts`` (DESIGN §4.5); return its size. ``message`` is its bytes or, for a big
    one, its file (:class:`certmail.bundle.zipio.FileMember`: read in pieces, hashed
    once, copied by the kernel, compared once when read back).

    Receipts are JSON objects as the notary answers them (fresh ones, and older
    ones the sender kept); of several receipts for the same entry the one with
    the smallest checkpoint is kept (the receipt issued nearest the event, a
    token preferred on a tie), so the bundle holds the checkpoints of the
    events' times and the consistency proofs linking them. ``consistency(old, new)``
    returns the RFC 9162 consistency proof between two tree sizes (the
    notary's ``GET /v1/proof/consistency``); it is called for each pair of
    successive checkpoints the receipts use. The bundle is verified against
    ``vkey`` and the chain's own root before it is returned (VerificationError).

    With ``reveal_subject`` the certificate shows the Subject: for an encrypted
    message, ``protected_subject`` (what the sender read inside the encryption of
    their own copy) marked as such, else the outer one (``[...]``, RFC 9788).

    ``keys`` are the ``keys/<FPR>.asc`` members (:func:`certmail.bundle.pgpkeys.export_keys`:
    the sender's and the acknowledging recipients' public keys). The bundle is written in
    the current format (:data:`certmail.bundle.layout.FORMAT`), message.eml stored.
    Everything is verified once, before the documents are rendered from what verified;
    the zip is then read back and must hold exactly what was written.
    Blind copies' statements are left out unless the bundle is ``for_recipient``
    that blind copy (:mod:`certmail.bundle.blind`). ``etsi`` are the notary's ETSI
    evidence XMLs (with ``etsi_chain_pem``, its evidence chain, and ``etsi_pdf``, its
    signed certificate.pdf: certmail/bundle/etsi.py). ``anchored(size)`` answers the
    notary's ``GET /v1/anchors?size=N`` (the smallest checkpoint of at least N entries
    outside TSAs time-stamped, or None): asked for the kept receipts' smallest checkpoint
    size, and again only for a size its answer does not cover; the answers go in as
    outside time-stamps (format 4: certmail/bundle/anchors.py).
    ``mdns`` are the read receipts (RFC 8098 MDNs, as received) that came back:
    ``mdns/NN.eml``. A bundle with read receipts or a version 2 acknowledgement, or of an
    S/MIME signed message (``smime/signer-chain.pem``, certmail/bundle/smimesig.py) or
    with an S/MIME acknowledgement (certmail/bundle/smimeack.py), is
    written in format 6, with or without outside time-stamps (format 5 is no longer
    written: renderer 6 adds the stock-tool checks of signed read receipts).
    """
    from notary.note import Verifier

    vkey = Verifier.from_vkey(vkey.strip()).vkey()
    from certmail.bundle.zipio import FileMember

    member = message if isinstance(message, FileMember) else None
    files, ordered = _members(
        message, receipts, vkey, tsa_chain_pem, consistency, keys, for_recipient, anchored
    )
    files.update(_optional_members(files, ordered, etsi, etsi_chain_pem, etsi_pdf, mdns, message))
    files.update(_documents(files, member, vkey, reveal_subject, protected_subject))
    return _written(out, {MESSAGE: message, **files} if member is not None else files)


def _members(
    message: bytes | FileMember,
    receipts: Sequence[Mapping[str, Any]],
    vkey: str,
    tsa_chain_pem: bytes,
    consistency: Callable[[int, int], Sequence[bytes]] | None,
    keys: Mapping[str, bytes] | None,
    for_recipient: str | None,
    anchored: Callable[[int], Mapping[str, Any] | None] | None,
) -> tuple[dict[str, bytes], list[Receipt]]:
    """The evidence members of the receipts ``for_recipient`` may see (the earliest
    per entry, :func:`_earliest`, returned too), with their cosigned checkpoints,
    outside time-stamps and the ``keys/`` members (message.eml among them when it is
    bytes; a file's is written after the checks)."""
    from certmail.bundle.blind import visible_to

    visible = visible_to(receipts, for_recipient)
    ordered = _earliest(visible, vkey)
    extra = {**_cosigned(visible, ordered, vkey), **_anchored(ordered, anchored)}
    files = _evidence_members(message, ordered, vkey, tsa_chain_pem, consistency, extra)
    files.update(sorted((keys or {}).items()))
    return files, ordered


def _optional_members(
    files: Mapping[str, bytes],
    ordered: Sequence[Receipt],
    etsi: Sequence[bytes],
    etsi_chain_pem: bytes | None,
    etsi_pdf: bytes | None,
    mdns: Sequence[bytes],
    message: bytes | FileMember,
) -> dict[str, bytes]:
    """The ETSI evidence, the read receipts (``mdns/NN.eml``), the S/MIME signer's
    chain, and format 6's ``format`` member when a read receipt, a version 2
    acknowledgement or the signer chain needs it (cumulative: over 3 to 5 too)."""
    from certmail.bundle.etsi import etsi_members
    from certmail.bundle.mdns import mdn_members, needs_format_5
    from certmail.bundle.smimeack import has_cms_ack
    from certmail.bundle.smimesig import signer_chain_pem
    from notary.evidence import parse_statement

    out = etsi_members(ordered, etsi, etsi_chain_pem, etsi_pdf)  # proof export --etsi
    out.update(mdn_members(mdns))  # format 5: the read receipts, mdns/NN.eml
    chain = signer_chain_pem(message if isinstance(message, bytes) else message.buf)  # format 6
    if chain is not None:
        out[SIGNER_CHAIN] = chain
    statements = [parse_statement(r.entry) for r in ordered]
    if chain is not None or needs_format_5({**files, **out}, statements) or has_cms_ack(statements):
        out[FORMAT_FILE] = format_text(FORMAT_SMIME)
    return out


def _documents(
    files: Mapping[str, bytes],
    message: FileMember | None,
    vkey: str,
    reveal_subject: bool,
    protected_subject: str | None,
) -> dict[str, bytes]:
    """The rendered documents, from what the evidence members (and ``message``, when it
    is not among them) verify to (checked once)."""
    from certmail.bundle import documents
    from certmail.bundle.verify import check_evidence

    _, _, facts = check_evidence(
        files, vkey, None, None, documents=False, openpgp=False, message=message
    )
    if protected_subject is not None:
        if facts.mime is None or facts.mime.kind != "encrypted":
            raise ValueError("protected_subject is for an encrypted message only")
        protected_subject = _one_line(protected_subject)
    return documents.render(facts, reveal_subject, protected_subject)


def _written(out: BinaryIO, files: Mapping[str, bytes | FileMember]) -> int:
    """The zip of ``files`` written to ``out`` and read back (a file's in pieces): it must
    hold exactly what was written. Its size."""
    from certmail.bundle.zipio import same_members, write_members_to
    from certmail.mime import FileBuffer

    size = write_members_to(out, files)
    out.flush()
    written = out.getvalue() if isinstance(out, io.BytesIO) else FileBuffer(out.fileno())
    if not same_members(written, files):
        raise VerificationError("the bundle written does not read back as written")
    return size


def _evidence_members(
    message: bytes | FileMember,
    ordered: Sequence[Any],
    vkey: str,
    tsa_chain_pem: bytes,
    consistency: Callable[[int, int], Sequence[bytes]] | None,
    extra: Mapping[str, bytes],
) -> dict[str, bytes]:
    """message.eml (when it is bytes), the format, the verifier key, the TSA chain, each receipt's
    evidence/NN-<event> members, the ``extra`` members (cosigned checkpoints, format 3;
    outside time-stamps, format 4) and the consistency proofs between all their
    checkpoints."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from notary.evidence import parse_statement

    try:
        chain = x509.load_pem_x509_certificates(tsa_chain_pem)
    except ValueError:
        raise MalformedError("the TSA chain holds no PEM certificates") from None
    files: dict[str, bytes] = {MESSAGE: message} if isinstance(message, bytes) else {}
    files |= {
        FORMAT_FILE: format_text(_format(extra)),
        VKEY: (vkey + "\n").encode("ascii"),
        CHAIN: b"".join(c.public_bytes(Encoding.PEM) for c in chain),
    }
    for n, r in enumerate(ordered, start=1):
        stem = f"evidence/{n:02d}-{parse_statement(r.entry)['event']}"
        files[f"{stem}.json"] = receipt_text(r.to_json())
        files[f"{stem}.tlog-proof"] = r.proof.to_bytes()
        if r.tst is not None:
            files[f"{stem}.tsr"] = r.tst
    files.update(extra)
    sizes = sorted({r.checkpoint().size for r in ordered} | {_size(n) for n in extra} - {0})
    for m, n in itertools.pairwise(sizes):
        if consistency is None:
            raise ValueError("receipts use several checkpoints: pass consistency=")
        files[f"evidence/consistency-{m}-{n}.json"] = consistency_text(m, n, consistency(m, n))
    return files


def _anchored(
    ordered: Sequence[Receipt], anchored: Callable[[int], Mapping[str, Any] | None] | None
) -> dict[str, bytes]:
    """The format 4 members: ``anchored(size)``'s answers for each checkpoint size the
    kept receipts use (one per answered size). The notary is asked once per export
    while its answer covers them all: the smallest anchored checkpoint of at least the
    smallest size that is at least as large as a size is that size's answer too, and
    when there is none for the smallest size there is none for a larger one."""
    from certmail.bundle.anchors import anchor_members

    answers: dict[int, Mapping[str, Any]] = {}
    covered = 0  # the answers so far also answer every size up to this one
    for size in sorted({r.checkpoint().size for r in ordered}) if anchored else ():
        if size <= covered:
            continue
        got = anchored(size)  # type: ignore[misc]
        if got is None:
            break
        covered = int(got["size"])
        answers[covered] = got
    return anchor_members(list(answers.values()))


def _cosigned(
    receipts: Sequence[Mapping[str, Any]], ordered: Sequence[Receipt], vkey: str
) -> dict[str, bytes]:
    """The evidence/checkpoint-N.cosigned members: the cosigned checkpoint notes of the
    receipts (verified by the notary key) at least as large as every checkpoint the
    kept receipts use, so that the cosigned one covers them all (docs/witness.md)."""
    from certmail.bundle.cosigned import cosigned_members
    from notary.note import Verifier
    from notary.receipt import Receipt

    verifier = Verifier.from_vkey(vkey)
    top = max(r.checkpoint().size for r in ordered)
    notes = []
    for obj in receipts:
        r = Receipt.from_json(dict(obj))
        if r.checkpoint().size >= top:
            r.verify(verifier)
            notes.append(r.proof.checkpoint)
    members = cosigned_members(notes)
    return dict(list(members.items())[:1])  # the smallest cosigned one covering them all


def _size(name: str) -> int:
    """The checkpoint size a cosigned or anchored checkpoint member is of; 0 for the others."""
    m = COSIGNED.fullmatch(name) or ANCHOR_CHECKPOINT.fullmatch(name)
    return int(m.group(1)) if m else 0


def _format(extra: Mapping[str, bytes]) -> int:
    """The format the members need: 4 with outside time-stamps, 3 with cosigned
    checkpoints, else 2."""
    if any(ANCHOR_CHECKPOINT.fullmatch(n) for n in extra):
        return FORMAT_ANCHORED
    return FORMAT_COSIGNED if any(COSIGNED.fullmatch(n) for n in extra) else FORMAT


def _one_line(text: str) -> str:
    """A Subject as the certificate shows it: one line, control characters as spaces,
    at most 300 characters (as the header facts cut them)."""
    return "".join(c if c.isprintable() else " " for c in text).strip()[:300]
