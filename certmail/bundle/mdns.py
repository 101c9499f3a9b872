"""Read receipts in a proof bundle: ``mdns/NN.eml`` (bundle format 5, issue 11 item 5;
docs/proof-bundle.md).

The RFC 8098 MDNs that came back for the message (kept in the sender's ledger by
:mod:`certmail.mdn_in`) travel byte for byte as ``mdns/01.eml``, ``mdns/02.eml``, ...
Each must be an MDN about the bundle's message (``Original-Message-ID``). A signed one
is checked like an acknowledgement: its signature must be good, by a key carrying the
``Final-Recipient`` address, one the message was sent to (the bundle's ``keys/`` or the
caller's keyring); an unsigned one is shown as ``unsigned, weak`` and never fails.

Format 5 is written only when a bundle needs it: it carries MDNs, or an
acknowledgement of text version 2 (the attachments' scan verdicts, which renderer 5
states on the certificate); any other bundle is exactly format 2, 3 or 4 as before.
Formats are cumulative: a format 5 bundle may hold cosigned checkpoints (3) and
outside time-stamps (4) too, and renderer 5 shows the latter as renderer 4 does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from certmail.bundle.documents.feature_facts import MdnFact
from certmail.bundle.layout import FORMAT_MDNS, MDN_MEMBER, fail, members_of
from certmail.bundle.report import Check
from keys.errors import Error, MalformedError, VerificationError

if TYPE_CHECKING:
    from pathlib import Path

    from certmail.bundle.checks import Verified
    from keys.gpg import Keyring

__all__ = [
    "FORMAT_MDNS",
    "MAX_MDNS",
    "MDN_MEMBER",
    "check_mdns",
    "kept_read_receipts",
    "mdn_facts",
    "mdn_members",
    "needs_format_5",
]

#: Most read receipts in one bundle.
MAX_MDNS = 99


def mdn_members(raws: Sequence[bytes]) -> dict[str, bytes]:
    """The mdns/NN.eml members of the MDNs ``raws`` (in the order they came)."""
    if len(raws) > MAX_MDNS:
        raise ValueError(f"more than {MAX_MDNS} read receipts")
    return {f"mdns/{n:02d}.eml": raw for n, raw in enumerate(raws, start=1)}


def kept_read_receipts(ledger_path: Path, sha256: str) -> tuple[list[bytes], list[tuple[str, str]]]:
    """The MDNs the sender's ledger kept for message ``sha256`` (their exact bytes), and
    the (fingerprint, address) of each signed one's recipient key, for ``keys/``."""
    from certmail.mdn_in import raw_of, stored

    kept = stored(ledger_path, sha256)[:MAX_MDNS]
    keys = [
        (m.signer_fingerprint, m.final_recipient)
        for m in kept
        if m.label == "signed" and m.signer_fingerprint
    ]
    return [raw_of(ledger_path, m.mdn_sha256) for m in kept], keys


def needs_format_5(files: Mapping[str, bytes], statements: Sequence[Mapping[str, object]]) -> bool:
    """Whether a bundle of these members and evidence statements is written in format 5."""
    from notary.ackformat import ACK_TITLE_V2

    if any(MDN_MEMBER.fullmatch(n) for n in files):
        return True
    return any(
        s.get("event") == "ContentHandover"
        and isinstance(s.get("signed"), str)
        and str(s["signed"]).startswith(ACK_TITLE_V2)
        for s in statements
    )


def _names(v: Verified) -> list[str]:
    """The mdns/ members, numbered 01.. without gaps (allowed from format 5 only:
    :func:`certmail.bundle.checks.check_format`)."""
    names = sorted(members_of(v.files, "mdns"))  # format: check_format
    if names != [f"mdns/{n:02d}.eml" for n in range(1, len(names) + 1)]:
        raise fail("the mdns/ files are not numbered 01, 02, ... without gaps")
    return names


def mdn_facts(v: Verified) -> tuple[MdnFact, ...]:
    """What each read receipt states (signature not checked: :func:`check_mdns`); each
    must be an MDN about the bundle's message. A format 5 bundle must need format 5
    (:func:`needs_format_5`: it is written only then, so each bundle has one form)."""
    names = _names(v)
    if v.format == FORMAT_MDNS and not needs_format_5(v.files, [e.statement for e in v.events]):
        raise fail("bundle.json says format 5, but the bundle holds nothing of format 5")
    if not names:
        return ()  # the MDN reader is imported only for read receipts (CLI start-up)
    from certmail.bundle.headers import header_facts
    from certmail.bundle.smimemdn import smime_mdn_layout
    from certmail.mdn_in import address_of, unverified_fields

    out = []
    for name in names:
        try:
            fields, signed = unverified_fields(v.files[name])
        except (Error, ValueError, UnicodeError):
            raise fail(f"{name} is not an RFC 8098 read receipt") from None
        about = fields.get("Original-Message-ID", "").strip()
        if about != v.message_id:
            raise fail(f"{name} is a read receipt for another message ({about[:100]!r})")
        rcpt = address_of(fields.get("Final-Recipient", ""))[:254]
        disposition = " ".join(fields.get("Disposition", "").split())[:200]
        if not rcpt or not disposition:
            raise fail(f"{name} lacks its Final-Recipient or Disposition")
        smime = smime_mdn_layout(v.files[name]) if signed else None  # smimemdn.py
        layout = smime or (header_facts(v.files[name]).layout if signed else None)
        shown = disposition.rpartition(";")[2].strip()
        out.append(MdnFact(name, rcpt, shown, signed, layout, smime is not None))
    return tuple(out)


def check_mdns(
    v: Verified,
    recipients: Sequence[str],
    keyring: Keyring | None,
    facts: Sequence[MdnFact],
    smime_ca: Path | None = None,
) -> list[Check]:
    """One check per read receipt: a signed one's signature (VerificationError when bad;
    an S/MIME one against ``smime_ca``, certmail/bundle/smimemdn.py), an unsigned one
    reported as weak."""
    if not facts:
        return []
    from certmail.bundle.smimemdn import check_smime_mdn
    from certmail.bundle.smimesig import submission_time
    from certmail.mdn_in import label_of, read_mdn

    out = []
    for m in facts:
        label = f"read receipt {m.file}"
        if m.smime:
            out.append(check_smime_mdn(v, m, recipients, smime_ca, submission_time(v)))
            continue
        if not m.signed:
            out.append(Check(label, "ok", f"unsigned, weak: anyone could have written it "
                                          f"(it names {m.final_recipient})"))  # fmt: skip
            continue
        if keyring is None:
            out.append(Check(label, "skipped", "signed: no keyring and no keys/ to check it"))
            continue
        try:
            mdn = read_mdn(keyring, v.files[m.file])
        except MalformedError:
            raise fail(f"{m.file}: its signed part does not read") from None
        except VerificationError as e:
            if "unknown key" in e.message:
                out.append(Check(label, "skipped", f"signed by a key not at hand: {e.message}"))
                continue
            raise fail(f"{m.file}: read receipt signature: {e.message}") from None
        except Error as e:
            raise fail(f"{m.file}: {e.message}") from None
        if label_of(mdn, tuple(recipients)) == "signed":
            detail = f"signed by recipient {mdn.final_recipient}'s key ({mdn.signer_fingerprint})"
        else:
            detail = (
                f"signed by {mdn.signer_fingerprint}, not a key of {mdn.final_recipient} "
                "(a recipient): weak"
            )
        out.append(Check(label, "ok", detail))
    return out
