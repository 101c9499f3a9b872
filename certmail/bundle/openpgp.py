"""The OpenPGP checks of a proof bundle (RFC 3156, RFC 4880), as far as a third party
can make them with a keyring: the sender's signature of a signed-only message.eml,
and each recipient's signed acknowledgement (ContentHandover, docs/ack.md).

Without a keyring, or without the keys, a check is reported as skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from certmail.bundle.layout import fail
from certmail.bundle.report import Check
from keys.errors import VerificationError

if TYPE_CHECKING:
    from certmail.bundle.checks import Event
    from certmail.bundle.documents.feature_facts import MimeLayout
    from keys.gpg import Keyring
    from notary.mime import Buffer

__all__ = ["check_acknowledgement", "check_sender_signature"]


def check_sender_signature(
    message: Buffer,
    layout: MimeLayout | None,
    sender: str,
    keyring: Keyring | None,
    *,
    from_bundle: bool = False,
) -> Check:
    """The sender's OpenPGP signature, by the key of the From: address (``from_bundle``:
    ``keyring`` holds the bundle's own keys, :mod:`certmail.bundle.pgpkeys`)."""
    item = "sender signature"
    if layout is None:
        from certmail.bundle.checks import NOT_OPENPGP

        return NOT_OPENPGP
    if layout.kind == "encrypted":
        return Check(item, "skipped", "encrypted: signature inside, checkable by a recipient")
    if keyring is None:
        return Check(item, "skipped", "no keyring given")
    from email.utils import parseaddr

    from keys.gpg import IMPORT_HINT

    assert layout.signature is not None
    (o1, n1), (o2, n2) = layout.first, layout.signature
    try:
        info = keyring.verify_detached(message[o1 : o1 + n1], message[o2 : o2 + n2])
    except VerificationError as e:
        if e.hint == IMPORT_HINT:
            where = "the bundle carries" if from_bundle else "the keyring holds"
            return Check(item, "skipped", f"{where} no key for the sender")
        raise fail(f"the sender's signature in message.eml: {e.message}") from None
    addr = parseaddr(sender)[1].lower()
    if info.signer_email is None or info.signer_email.lower() != addr:
        raise fail(
            f"message.eml is signed by {info.signer_email or info.fingerprint}, "
            f"not by its From: address {addr or '(none)'}"
        )
    return Check(
        item,
        "ok",
        f"good OpenPGP signature by {info.signer_email} ({info.primary_fingerprint})"
        + (", the key the bundle carries" if from_bundle else ""),
    )


def _not_recipients_key(
    number: int, signer: str, recipient: str, theirs: str | None
) -> VerificationError:
    """The acknowledgement is genuine evidence, but not by the recipient: it proves nothing
    about receipt. Exit 3 like any failed item; the message says what was found."""
    held = (
        f"the keyring's key for {recipient} is {theirs}"
        if theirs
        else f"the keyring holds no key for {recipient}"
    )
    return VerificationError(
        f"evidence {number:02d}: the acknowledgement is signed by {signer}, which is not a "
        f"recipient's key ({held}); it does not prove that {recipient} received the message",
        hint="if the recipient really changed keys, import the new key from a source you trust",
    )


def _acknowledger(e: Event, recipients: Sequence[str], sha256: str) -> tuple[str, str, str, str]:
    """The acknowledgement's signature, signed text, signer fingerprint and recipient,
    which must be about this message and by one of its recipients."""
    sig, signed, fpr, who = (
        e.statement.get(k) for k in ("signature", "signed", "fingerprint", "recipient")
    )
    if not (
        isinstance(sig, str)
        and isinstance(signed, str)
        and isinstance(fpr, str)
        and isinstance(who, str)
    ):
        raise fail(
            f"evidence {e.number:02d}: the acknowledgement lacks signature, "
            "signed, fingerprint or recipient"
        )
    if sha256 not in signed:
        raise fail(f"evidence {e.number:02d}: the acknowledgement is about another message")
    who = who.lower()
    if who not in {r.lower() for r in recipients}:
        raise VerificationError(
            f"evidence {e.number:02d}: the acknowledgement is by {who}, "
            "who is not a recipient of the message"
        )
    return sig, signed, fpr, who


def pickup_detail(stmt: Any) -> str:
    """The acknowledgement check's detail for a pickup ContentHandover: nothing signed."""
    assurance = str(stmt.get("assurance", ""))[:200]
    return f"confirmed on the pickup page, no signature to check (identity assurance: {assurance})"


def check_acknowledgement(
    e: Event,
    recipients: Sequence[str],
    sha256: str,
    keyring: Keyring | None,
    *,
    from_bundle: bool = False,
) -> Check:
    """A ContentHandover acknowledgement against the recipient's key.

    The key that signed must be the one the keyring uses for the acknowledging
    recipient's address (as the sender's ``certmail receipts`` checks it): a key
    that merely carries the same user id is *not a recipient's key*. With
    ``from_bundle`` (the bundle's own keys, the sender's key the one trust anchor)
    only a key the sender certified for the address counts: an uncertified one
    leaves the check unrun.
    """
    from keys.errors import NotFoundError

    label = f"{e.number:02d} acknowledgement"
    if e.statement.get("mode") == "pickup":  # the pickup page's confirmation (docs/sealed.md)
        return Check(label, "skipped", pickup_detail(e.statement), applies=False)
    sig, signed, fpr, who = _acknowledger(e, recipients, sha256)
    if keyring is None:
        return Check(label, "skipped", f"no keyring given (signer key {fpr})")
    from keys.gpg import normalize_fingerprint  # only when a key is checked

    signer = normalize_fingerprint(fpr)
    held = [k for k in keyring.list_keys() if who in (m.lower() for m in k.emails)]
    certified = [k for k in held if k.validity in ("full", "ultimate")]
    if len(held) > 1 and not certified:
        return Check(
            label,
            "skipped",
            f"several keys for {who} in the keyring and none "
            f"certified: cannot tell whether {fpr} is {who}'s",
        )
    if from_bundle and held and not certified:
        return Check(
            label,
            "skipped",
            f"the bundle's key for {who} is not certified by the sender's key (signer key {fpr})",
        )
    theirs_all = [k.fingerprint.upper() for k in (certified or held)]
    theirs = " or ".join(theirs_all) or None
    if theirs is not None and signer not in theirs_all:
        raise _not_recipients_key(e.number, signer, who, theirs)
    try:
        keyring.key_for(signer)
    except NotFoundError:
        detail = (
            f"the bundle carries neither the signer's key {fpr} nor a key for {who}"
            if from_bundle
            else f"neither the signer's key {fpr} nor a key for {who} is in the keyring"
        )
        return Check(label, "skipped", detail)
    try:
        info = keyring.verify_detached(signed.encode("utf-8"), sig.encode("utf-8"))
    except VerificationError as ex:
        raise fail(f"evidence {e.number:02d}: acknowledgement signature: {ex.message}") from None
    if signer not in (info.primary_fingerprint, info.fingerprint):
        raise fail(
            f"evidence {e.number:02d}: the acknowledgement was signed by "
            f"{info.primary_fingerprint}, not the key it names ({fpr})"
        )
    email = (info.signer_email or "").lower()
    if theirs is None or email != who:
        raise _not_recipients_key(
            e.number, f"{info.primary_fingerprint} ({email or '?'})", who, theirs
        )
    how = ", the key the bundle carries, certified by the sender" if from_bundle else ""
    return Check(label, "ok", f"signed by recipient {email} ({info.primary_fingerprint}){how}")
