"""Signed acknowledgements of receipt, client side (docs/ack.md).

The recipient: :func:`notarized_sha256` finds the SHA-256 the notary logged
for a delivered file, :func:`make_ack` builds and signs the acknowledgement
text (format: :mod:`notary.ackformat`), :func:`post_ack` sends it to the notary's
``POST /v1/ack`` and checks the receipt. :func:`acknowledge` (``open --ack``)
keeps a signed acknowledgement the notary could not take in the ledger
(:meth:`certmail.ledger.Ledger.enqueue_ack`); ``certmail outbox flush`` posts
it (:meth:`certmail.outbox.Outbox.flush_acks`).

The sender: :func:`check_handover` checks a ``ContentHandover`` statement
against the keys the message was encrypted to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keys.errors import Error, MalformedError, NotFoundError, TemporaryError, VerificationError
from notary.ackformat import Ack, AttachmentScan, ack_text, parse_ack_text

from .inbox.notarized import EVIDENCE_HEADER, TRACE_FIELDS, notarized

if TYPE_CHECKING:
    from collections.abc import Callable

    from keys.gpg import Keyring

    from .smime.opening import SmimeContext

    SmimeSource = SmimeContext | Callable[[], SmimeContext]

__all__ = [
    "EVIDENCE_HEADER",
    "TRACE_FIELDS",
    "HandoverCheck",
    "SignedAck",
    "check_handover",
    "make_ack",
    "notarized_sha256",
    "post_ack",
    "post_body",
]

_HEADER_LIMIT = 256 * 1024


def notarized_sha256(raw: bytes) -> tuple[str, int]:
    """The SHA-256 the notary logged for the delivered copy ``raw``, and where it starts
    in the copy's canonical form: the rule of :mod:`certmail.inbox.notarized`."""
    n = notarized(raw)
    return n.sha256, n.start


@dataclass(frozen=True)
class SignedAck:
    """An acknowledgement ready to post: the ``POST /v1/ack`` body."""

    sha256: str
    message_id: str
    recipient: str
    signed: str
    signature: str
    public_key: str
    fingerprint: str  # the OpenPGP key's, or the S/MIME certificate's SHA-256
    #: The S/MIME form (:mod:`certmail.ack_smime`): a detached CMS SignedData, base64 DER;
    #: ``signature`` and ``public_key`` are then empty.
    cms: str = ""

    def to_json(self) -> dict[str, str]:
        if self.cms:
            return {
                "sha256": self.sha256,
                "message_id": self.message_id,
                "recipient": self.recipient,
                "signed": self.signed,
                "cms": self.cms,
            }
        return {
            "sha256": self.sha256,
            "message_id": self.message_id,
            "recipient": self.recipient,
            "signed": self.signed,
            "signature": self.signature,
            "public_key": self.public_key,
        }


def make_ack(keyring: Keyring, ack: Ack) -> SignedAck:
    """The acknowledgement text of ``ack`` signed (detached, armored) with its recipient's key.

    With ``ack.scans`` (:func:`certmail.scanverdicts.scans_of`) the text is of version 2
    and states each attachment's scan verdicts, the sender's and the recipient's."""
    return sign_text(keyring, ack, ack_text(ack))


def sign_text(keyring: Keyring, ack: Ack, text: str) -> SignedAck:
    """``text`` (the acknowledgement or refusal of ``ack``) signed, detached and armored,
    with ``ack.recipient``'s OpenPGP key."""
    signer = keyring.signing_key(ack.recipient)
    sig, _ = keyring.sign_detached(text.encode("utf-8"), signer)
    key = keyring.key_for(signer)
    return SignedAck(
        ack.sha256,
        ack.message_id,
        ack.recipient,
        text,
        sig.decode("ascii"),
        keyring.export_public(key.fingerprint),
        key.fingerprint,
    )


def post_ack(notary_url: str, ack: SignedAck, *, timeout: float = 30.0) -> dict[str, Any]:
    """POST the acknowledgement; return the ContentHandover receipt after checking it."""
    from .notary_client import NotaryClient

    with NotaryClient(notary_url, None, timeout=timeout) as client:
        return client.post_ack(ack.to_json(), ack.sha256, ack.message_id)


@dataclass(frozen=True)
class HandoverCheck:
    """What the sender's client concluded about one ContentHandover."""

    recipient: str
    fingerprint: str | None
    verdict: str  # "recipient's key" | "not the recipient's key" | "bad signature"
    detail: str
    #: False when the keyring holds no key for the recipient (nothing to compare with).
    have_key: bool = True
    #: ``openpgp`` (``fingerprint``: the key's) or ``cms`` (the S/MIME certificate's SHA-256).
    kind: str = "openpgp"

    @property
    def ok(self) -> bool:
        return self.verdict == "recipient's key"


def logged_text(stmt: dict[str, Any], recipient: str) -> str:
    """The acknowledgement text a ContentHandover logged (``signed``); VerificationError
    unless it names the statement's message and ``recipient``, KeyError without one."""
    signed = str(stmt["signed"])
    ack = parse_ack_text(signed)
    msg = stmt.get("message") or {}
    if ack.sha256 != msg.get("sha256") or ack.message_id != msg.get("id"):
        raise VerificationError("the acknowledgement names another message")
    if ack.recipient.lower() != recipient.lower():
        raise VerificationError("the acknowledgement names another recipient")
    return signed


def check_handover(
    stmt: dict[str, Any], keyring: Keyring, smime: SmimeSource | None = None
) -> HandoverCheck:
    """Check a ContentHandover statement against the recipient's key in ``keyring``.

    The fingerprint the notary logged must be that of the key we hold for the
    recipient (the key we encrypted to), the signature must verify with it and
    the signed text must name this message and recipient. An S/MIME (CMS)
    acknowledgement is checked with ``smime`` (a context, or a function making one)
    by :func:`certmail.ack_smime.check_cms_handover`.
    """
    if "cms" in stmt:
        from .ack_smime import check_cms_handover

        recipient = str(stmt.get("recipient") or "")
        if smime is None:
            no = "no S/MIME settings to check an S/MIME acknowledgement with"
            return HandoverCheck(recipient, None, "not the recipient's key", no, False, "cms")
        return check_cms_handover(stmt, smime() if callable(smime) else smime)
    recipient = str(stmt.get("recipient") or "")
    fpr = stmt.get("fingerprint")
    fpr = str(fpr).upper() if isinstance(fpr, str) else None
    try:
        theirs = keyring.key_for(recipient).fingerprint.upper()
    except (NotFoundError, Error):
        return HandoverCheck(
            recipient,
            fpr,
            "not the recipient's key",
            f"no key for {recipient} in your keyring",
            have_key=False,
        )
    if fpr != theirs:
        return HandoverCheck(
            recipient,
            fpr,
            "not the recipient's key",
            f"acknowledged by a key that is not {recipient}'s "
            f"({fpr}; {recipient}'s key is {theirs})",
        )
    try:
        signature = str(stmt["signature"])
        signed = logged_text(stmt, recipient)
        sig = keyring.verify_detached(signed.encode("utf-8"), signature.encode("ascii"))
        if sig.primary_fingerprint.upper() != theirs:
            raise VerificationError("signed by another key than the one logged")
    except (KeyError, MalformedError, VerificationError, UnicodeError) as e:
        why = e.message if isinstance(e, Error) else str(e)
        return HandoverCheck(recipient, fpr, "bad signature", why)
    return HandoverCheck(recipient, fpr, "recipient's key", f"signed by {recipient}'s key {fpr}")


def disposition_notification_to(raw: bytes) -> str | None:
    """The bare address of the (outer) Disposition-Notification-To field, if any (RFC 8098)."""
    from email.parser import BytesHeaderParser
    from email.policy import compat32
    from email.utils import getaddresses

    end = raw.find(b"\r\n\r\n")
    end = end if end >= 0 else raw.find(b"\n\n")
    head = raw[: end if end >= 0 else _HEADER_LIMIT][:_HEADER_LIMIT]
    msg = BytesHeaderParser(policy=compat32).parsebytes(head + b"\r\n\r\n")
    value = msg.get("Disposition-Notification-To")
    if value is None:
        return None
    addrs = [a for _, a in getaddresses([str(value)]) if "@" in a]
    return addrs[0] if len(addrs) == 1 else None


@dataclass
class AckOutcome:
    """What ``certmail open --ack`` did."""

    sha256: str
    message_id: str
    recipient: str
    notary: str
    fingerprint: str
    receipt: dict[str, Any] | None
    #: ``sent`` (``receipt`` holds the ContentHandover receipt) or ``queued``
    #: (the notary could not be reached: the signed acknowledgement is in the
    #: ledger, ``certmail outbox flush`` posts it; ``error`` says why).
    status: str = "sent"
    error: str | None = None
    mdn_to: str | None = None
    mdn_reply: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _sign_and_post(
    cm: Any,
    sha: str,
    message_id: str,
    me: str,
    notary: str,
    scans: tuple[AttachmentScan, ...] | None = None,
    smime: bool = False,
) -> AckOutcome:
    """Post the acknowledgement (with the attachments' ``scans``; with ``smime`` signed
    with the S/MIME key, :mod:`certmail.ack_smime`); when the notary cannot be reached,
    keep it queued.

    An acknowledgement queued before (by an earlier ``open --ack``) is the one
    posted, so the notary never sees two signatures for one handover.
    """
    from datetime import UTC
    from datetime import datetime as _dt

    ledger = cm.ledger
    try:
        queued = ledger.ack(sha, me, notary)
    except NotFoundError:
        queued = None
    if queued is not None and queued.state == "sent" and queued.receipt is not None:
        fpr = str(queued.body.get("fingerprint") or "")
        return AckOutcome(sha, message_id, me, notary, fpr, queued.receipt)
    if queued is not None and queued.state == "pending":
        body = queued.body
    else:
        now = cm.clock() if cm.clock else _dt.now(UTC)
        signed = _sign(cm, smime, Ack(sha, message_id, me, now, notary, scans))
        body = {**signed.to_json(), "fingerprint": signed.fingerprint}
    fpr = str(body["fingerprint"])
    try:
        receipt = post_body(notary, body)
    except TemporaryError as e:
        ledger.enqueue_ack(
            sha256=sha,
            message_id=message_id,
            recipient=me,
            notary=notary,
            body=body,
            error=e.message,
        )
        return AckOutcome(sha, message_id, me, notary, fpr, None, status="queued", error=e.message)
    if queued is None:  # kept as sent: `inbox list` shows it, a second --ack posts nothing
        queued = ledger.enqueue_ack(
            sha256=sha, message_id=message_id, recipient=me, notary=notary, body=body, error=""
        )
    ledger.mark_ack_sent(queued.id, receipt)
    return AckOutcome(sha, message_id, me, notary, fpr, receipt)


def _sign(cm: Any, smime: bool, ack: Ack) -> SignedAck:
    """``ack`` signed with the S/MIME key (``smime``) or the OpenPGP one."""
    from .ack_smime import make_cms_ack

    return make_cms_ack(cm.smime, ack) if smime else make_ack(cm.keyring, ack)


def post_body(notary_url: str, body: dict[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
    """POST a stored acknowledgement body (``SignedAck.to_json()`` plus ``fingerprint``)."""
    from .notary_client import NotaryClient

    wire = {k: v for k, v in body.items() if k != "fingerprint"}
    with NotaryClient(notary_url, None, timeout=timeout) as client:
        return client.post_ack(wire, str(body["sha256"]), str(body["message_id"]))


def acknowledge(
    cm: Any, path: Path, opened: Any, *, mdn: bool = False, notary_url: str | None = None
) -> AckOutcome:
    """Sign and post an acknowledgement of the opened message; with ``mdn`` also send an MDN.

    The acknowledgement states each attachment's scan verdicts (version 2): what the
    sender's manifest says and what this terminal's scan found on opening.

    ``cm`` is the recipient's :class:`certmail.api.Certmail`, ``opened`` what
    its ``open`` returned for ``path``. The notary is the one the message
    names (``Certmail-Notary``), else ``notary_url``, else the configured one.
    """
    from .compose import check_address

    s = cm.settings
    me = s.email
    if not me:
        raise Error("no identity to acknowledge as", hint="certmail init --email ADDR --name NAME")
    check_address(me)
    to_cc = f"{opened.headers.get('To', '')},{opened.headers.get('Cc', '')}".lower()
    if me.lower() not in to_cc:
        raise Error(f"{me} is not a recipient of this message; nothing was acknowledged")
    message_id = opened.headers.get("Message-ID")
    if not message_id:
        raise MalformedError("the message has no Message-ID; it cannot be acknowledged")
    notary = opened.notary or notary_url or s.notary_url
    if not notary:
        raise Error(
            "the message names no notary to acknowledge it to",
            hint="certmail open FILE --ack --notary URL",
        )
    raw = path.read_bytes()
    sha, _ = notarized_sha256(raw)
    from .scanverdicts import scans_of

    scans = scans_of(opened.attachments)
    from .ack_smime import is_smime_message

    smime = is_smime_message(raw) and cm.smime.store.own_certificate() is not None
    out = _sign_and_post(cm, sha, message_id, me, notary, scans, smime)
    if opened.attachments and scans is None:
        out.warnings.append(
            f"{len(opened.attachments)} attachments are more than an acknowledgement lists: "
            "it states no scan verdicts"
        )
    if mdn:
        dnt = disposition_notification_to(raw)
        if dnt is None:
            out.warnings.append(
                "the message asks for no disposition notification "
                "(no Disposition-Notification-To): none was sent"
            )
            return out
        if not s.smtp_url:
            done = "sent" if out.status == "sent" else "queued in the outbox"
            raise Error(
                "no SMTP server configured to send the notification through "
                f"(the acknowledgement was {done})",
                hint="set CERTMAIL_SMTP_URL=smtp://user:pass@host:587",
            )
        from .mdn import Mdn, send_mdn

        note = Mdn(message_id, me, dnt, opened.headers.get("Subject", ""), sha)
        out.mdn_to = dnt
        out.mdn_reply = send_mdn(cm.keyring, note, s.smtp_url)
    return out
