"""``certmail open`` of a sealed message (docs/sealed.md): ask, acknowledge, fetch K_n, decrypt.

The PGP/MIME (or S/MIME) layer holds K_r and the sealed content; K_n is with
the notary. The acknowledgement is OpenPGP-signed in both cases: the notary
releases K_n only against a key registered for the message.
:func:`open_sealed` shows the caller what is known before the acknowledgement
(:class:`SealedInfo`: sender, protected subject, size), lets it decide
(:class:`SealedOpening`), then signs the acknowledgement (the one format of
:mod:`notary.ackformat`, :func:`certmail.ack.make_ack`), posts it to
``POST /v1/seals/{sha256}/open``, checks the ContentHandover receipt it gets
with K_n, and decrypts. A refusal posts a signed refusal instead
(``POST /v1/seals/{sha256}/refuse``) and decrypts nothing.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keys.errors import Error, MalformedError, NotFoundError, VerificationError
from notary.ackformat import Ack
from notary.sealformat import refusal_text

from .box import CONTENT_NAME, KEY_NAME, KeyPart, join_key, open_content

if TYPE_CHECKING:
    from ..unseal import Part, Unsealed

__all__ = [
    "AckNeeded",
    "Declined",
    "SealedInfo",
    "SealedOpening",
    "is_sealed",
    "open_sealed",
]


class AckNeeded(Error):
    """A sealed message opened with no terminal to ask on and neither --ack nor --refuse."""

    exit_code = 2


class Declined(Error):
    """The person at the terminal did not acknowledge: the content stays sealed."""


@dataclass(frozen=True)
class SealedInfo:
    """What the recipient learns before acknowledging."""

    sender: str
    subject: str
    size: int  # of the sealed inner entity, bytes
    notary: str
    sha256: str
    message_id: str
    recipient: str


@dataclass
class SealedOpening:
    """How to decide, and afterwards what happened.

    ``choice`` is ``"ack"`` or ``"refuse"`` (given on the command line), else
    ``ask`` is called with the :class:`SealedInfo` (True: acknowledge); with
    neither, :class:`AckNeeded` is raised.
    """

    choice: str | None = None
    ask: Callable[[SealedInfo], bool] | None = None
    info: SealedInfo | None = None
    outcome: str | None = None  # "opened" | "refused"
    receipt: dict[str, Any] | None = None  # ContentHandover / RejectionByRecipient
    fingerprint: str | None = None

    def decide(self, info: SealedInfo) -> str:
        self.info = info
        if self.choice in ("ack", "refuse"):
            return self.choice
        if self.ask is None:
            raise AckNeeded(
                "this message is sealed: its content is handed over only against your "
                "signed acknowledgement, and there is no terminal to ask on",
                hint="certmail open FILE --ack (or --refuse to decline it)",
            )
        if not self.ask(info):
            raise Declined("not acknowledged: the content stays sealed (nothing was logged)")
        return "ack"


def is_sealed(u: Unsealed) -> bool:
    """Whether an opened message is a sealed one (its two parts, by name)."""
    names = [p.filename for p in u.parts]
    return KEY_NAME in names and CONTENT_NAME in names


def _part(u: Unsealed, name: str) -> Part:
    found = [p for p in u.parts if p.filename == name]
    if len(found) != 1:
        raise MalformedError(f"a sealed message has exactly one {name} part")
    return found[0]


def key_part(u: Unsealed) -> KeyPart:
    return KeyPart.from_bytes(_part(u, KEY_NAME).data)


def open_sealed(cm: Any, u: Unsealed, sha256: str, work: Path, how: SealedOpening) -> Unsealed:
    """The sealed message ``u`` (whose notarized hash is ``sha256``) opened as ``how`` decides.

    Returns the inner message's content under ``u``'s signature and protected
    header fields; for a refusal, ``u`` unchanged. Raises AckNeeded, Declined,
    VerificationError (the notary's answer or the content does not check out),
    NotaryRequestError (the notary refused: expired, another key...).
    """
    from ..compose import check_address
    from ..notary_client import NotaryClient

    kp = key_part(u)
    me = cm.settings.email
    if not me:
        raise Error("no identity to acknowledge as", hint="certmail init --email ADDR --name NAME")
    check_address(me)
    message_id = u.fields.get("Message-ID") or ""
    if not message_id:
        raise MalformedError("the sealed message has no Message-ID")
    info = SealedInfo(
        u.fields.get("From", "?"), u.fields.get("Subject", ""), kp.size, kp.notary,
        sha256, message_id, me,
    )  # fmt: skip
    _check_signer(cm.keyring, u, me)  # before asking: the answer is signed with it
    choice = how.decide(info)
    now = cm.clock() if cm.clock else datetime.now(UTC)
    body = _signed(cm.keyring, Ack(sha256, message_id, me, now, kp.notary), choice)
    how.fingerprint = body.pop("fingerprint")
    with NotaryClient(kp.notary, None) as client:
        route = f"/v1/seals/{sha256}/{'open' if choice == 'ack' else 'refuse'}"
        resp = client.request("POST", route, auth=False, json=body)
        answer = resp.json()
        receipt = answer.get("receipt") if isinstance(answer, dict) else None
        if not isinstance(receipt, dict):
            raise VerificationError("the notary's answer carries no receipt")
        client.check_receipt(receipt, sha256, message_id)
    _check_event(receipt, choice, me)
    how.receipt = receipt
    if choice == "ack":  # kept as sent: `inbox list` shows it acknowledged
        ledger = cm.ledger
        kept = ledger.enqueue_ack(
            sha256=sha256,
            message_id=message_id,
            recipient=me,
            notary=kp.notary,
            body={**body, "fingerprint": how.fingerprint},
            error="",
        )
        ledger.mark_ack_sent(kept.id, receipt)
    if choice == "refuse":
        how.outcome = "refused"
        return u
    try:
        k_n = base64.b64decode(str(answer.get("share")), validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError("the notary's answer carries no key share") from None
    blob = _part(u, CONTENT_NAME).data
    if hashlib.sha256(blob).hexdigest() != kp.content_sha256:
        raise VerificationError("the sealed content is not the one its key part names")
    inner = open_content(blob, join_key(kp.k_r, k_n), message_id)
    from ..unseal import unseal

    v = unseal(cm.keyring, inner, work / "sealed", allow_unsigned=True)
    how.outcome = "opened"
    return dataclasses.replace(u, body=v.body, parts=v.parts, manifest=v.manifest)


def _check_signer(keyring: Any, u: Unsealed, me: str) -> None:
    """Our own OpenPGP signing key, which the acknowledgement (or refusal) is signed with:
    the notary releases K_n only against a registered OpenPGP key, also for S/MIME mail."""
    try:
        keyring.signing_key(me)
    except Error as e:
        smime = u.signature is not None and u.signature.validity == "x509"
        also = " (also for S/MIME mail: the acknowledgement is OpenPGP-signed)" if smime else ""
        kind = NotFoundError if isinstance(e, NotFoundError) else Error
        raise kind(
            f"opening a sealed message needs your OpenPGP key{also}: {e.message}",
            hint=e.hint or "certmail init --email ADDR --name NAME",
        ) from None


def _check_event(receipt: dict[str, Any], choice: str, me: str) -> None:
    """The (verified) receipt must log what we asked for, about us, in sealed mode."""
    from notary.evidence import parse_statement
    from notary.receipt import Receipt

    stmt = parse_statement(Receipt.from_json(receipt).entry)
    want = "ContentHandover" if choice == "ack" else "RejectionByRecipient"
    who = str(stmt.get("recipient", "")).lower()
    if stmt.get("event") != want or stmt.get("mode") != "sealed" or who != me.lower():
        raise VerificationError(f"the notary's receipt is not the sealed {want} of {me}")


def _signed(keyring: Any, ack: Ack, choice: str) -> dict[str, str]:
    """The request body: the acknowledgement (or refusal) text signed with our key."""
    from ..ack import make_ack, sign_text

    s = make_ack(keyring, ack) if choice == "ack" else sign_text(keyring, ack, refusal_text(ack))
    return {**s.to_json(), "fingerprint": s.fingerprint}
