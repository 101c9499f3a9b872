"""S/MIME signed read receipts in a proof bundle (``mdns/NN.eml``, format 6).

An RFC 8098 MDN inside an RFC 8551 ``multipart/signed`` (as Outlook and most
corporate clients sign them; :mod:`certmail.mdn_smime`) travels byte for byte
like any read receipt (certmail/bundle/mdns.py). ``proof verify`` checks it
with ``openssl cms -verify -binary`` of the signature over part 1's exact bytes
(:func:`keys.cms.verify_detached`): with ``--smime-ca``, the chain against that
bundle as of the submission's time (an MDN carries no trusted time of its own;
the same rule as the sender's S/MIME signature, certmail/bundle/smimesig.py),
else the signature against the certificate it carries only, reported unrun.
The From: address must be one the certificate names; the receipt counts as the
recipient's when the certificate also names its Final-Recipient, one of the
message's recipients, else it is weak. VERIFY.txt prints the byte ranges and the
``openssl cms -verify`` of each (certmail/bundle/documents/verify_txt.py).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from certmail.bundle.layout import fail
from certmail.bundle.report import Check
from keys.errors import Error, MalformedError, VerificationError

if TYPE_CHECKING:
    from certmail.bundle.checks import Verified
    from certmail.bundle.documents.feature_facts import MdnFact, MimeLayout

__all__ = ["check_smime_mdn", "smime_mdn_layout"]


def smime_mdn_layout(raw: bytes) -> MimeLayout | None:
    """The byte ranges of an S/MIME signed MDN's signed part and signature (base64), or
    None: not S/MIME signed."""
    from certmail.bundle.documents.feature_facts import MimeLayout
    from certmail.mdn_smime import is_smime_signed
    from certmail.mime import parse_entity, part_spans

    try:
        top = parse_entity(raw)
        if not is_smime_signed(top):
            return None
        (s0, e0), (s1, e1) = part_spans(top)[:2]
        sig = parse_entity(top.buf, s1, e1)
    except (Error, ValueError, LookupError):
        return None
    return MimeLayout("signed", (s0, e0 - s0), (sig.body_start, sig.end - sig.body_start))


def check_smime_mdn(
    v: Verified, m: MdnFact, recipients: Sequence[str], ca: Path | None, at: int
) -> Check:
    """The S/MIME signature of read receipt ``m`` (see the module docstring); ``at``: the
    submission's time (POSIX seconds)."""
    from certmail.mime import parse_entity, same_address, single_mailbox
    from certmail.smime.entities import detached_parts
    from keys.cms import verify_detached

    label = f"read receipt {m.file}"
    try:
        top = parse_entity(v.files[m.file])
        content, der = detached_parts(top)
        when = datetime.datetime.fromtimestamp(at, datetime.UTC)
        signer = verify_detached(content, der, ca, at=when, chain=ca is not None)
    except MalformedError as e:
        raise fail(f"{m.file}: its S/MIME signature does not read ({e.message})") from None
    except VerificationError as e:
        raise fail(f"{m.file}: read receipt S/MIME signature: {e.message}") from None
    sender = single_mailbox(top.headers.get("From"))
    if sender is None or sender.lower() not in signer.emails:
        raise fail(f"{m.file}: signed (S/MIME) by a certificate for "
                   f"{', '.join(signer.emails) or 'no address'}, not for its From")  # fmt: skip
    by_them = any(same_address(m.final_recipient, e) for e in signer.emails)
    to_them = any(same_address(m.final_recipient, r) for r in recipients)
    who = f"certificate {signer.sha256} ({signer.subject[:200]})"
    if not (by_them and to_them):
        detail = f"signed (S/MIME) by {who}, not a certificate of {m.final_recipient}: weak"
    else:
        detail = f"signed (S/MIME) by recipient {m.final_recipient}'s {who}"
    if ca is None:
        return Check(label, "skipped", f"{detail}; the chain is not checked (give --smime-ca)")
    return Check(label, "ok", f"{detail}, chain verified")
