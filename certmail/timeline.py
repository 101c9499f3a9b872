"""A message's receipt timeline: what the notary's evidence says happened, per recipient.

The notary's receipts (DESIGN §4.3) carry evidence statements (§4.2) named
after ETSI EN 319 522 events. :func:`statements` decodes them;
:func:`build_timeline` turns them into :class:`Event` objects per recipient
(accepted, delivered or failed, acknowledged, opened) and says whether every
recipient is done. The CLI's ``certmail receipts`` renders this; scripts call
it directly::

    from certmail.timeline import build_timeline
    tl = build_timeline(client.receipts(sha256), ["bob@example.net"], keyring=ring)
    for rcpt, events in tl.recipients.items():
        print(rcpt, tl.status(rcpt))

The relay's delivery state (``NotaryClient.deliveries``: per recipient the
attempts, the last server reply and the next attempt) is not evidence, but it
shows a deferral while it lasts: :func:`delivery_states` reads it, and
``Timeline.deliveries`` carries it beside the events::

    tl.deliveries = delivery_states(client.deliveries(sha256))
    print(tl.deliveries["bob@example.net"].summary())

A message sent directly (``--via smtp``) has one receipt, the notarization of
its hash (channel ``api``): the notary never sees its delivery, so that
receipt is the whole timeline and it is final at once.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from notary.states import EVENT_STATES, MESSAGE_EVENTS, NOTARIZED_STEP

if TYPE_CHECKING:
    from keys.gpg import Keyring

    from .ack import HandoverCheck

__all__ = [
    "STEPS",
    "Delivery",
    "Event",
    "Timeline",
    "build_timeline",
    "delivery_states",
    "statement_of",
    "statements",
]

#: Event -> the step the timeline shows for it (notary/states.py, the vocabulary the
#: notary's web pages share: each step starts with the event's state word).
STEPS = {event: state.step for event, state in EVENT_STATES.items()}
#: Events that concern every recipient of the message at once.
_WHOLE_MESSAGE = MESSAGE_EVENTS
#: Events after which nothing more happens for a recipient.
_FINAL = ("RelayToNonERDS", "RelayToNonERDSFailure", "VirusDetected", "SubmissionRejection")


def statement_of(receipt: dict[str, Any]) -> dict[str, Any] | None:
    """The evidence statement a receipt carries, or None when it cannot be decoded.

    Not a verification: check the receipt first (``NotaryClient.check_receipt``).
    """
    try:
        stmt = json.loads(base64.b64decode(receipt["entry"]))
    except (KeyError, TypeError, ValueError, binascii.Error):
        return None
    return stmt if isinstance(stmt, dict) else None


def statements(receipts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The evidence statements inside receipts, in log order (undecodable ones left out)."""
    return [s for s in map(statement_of, receipts) if s is not None]


@dataclass
class Event:
    """One step of one recipient's timeline.

    ``step`` is the word shown (:data:`STEPS`), ``event`` the evidence event.
    Delivery steps carry ``host`` and ``reply`` (the server's ``{"code", "text"}``),
    failures ``reason`` and ``reply``, acknowledgements the signing key's
    ``fingerprint`` and, when checked against the keyring, ``key`` (the verdict)
    and ``detail``, and (a version 2 acknowledgement) ``scans``, the attachments' virus-scan
    verdicts at both ends (:func:`certmail.scanverdicts.labelled`); tracked opens their
    ``strength``.
    """

    step: str
    event: str
    time: str | None
    host: str | None = None
    reply: dict[str, Any] | None = None
    reason: str | None = None
    fingerprint: str | None = None
    key: str | None = None
    detail: str | None = None
    strength: str | None = None
    mode: str | None = None  # ContentHandover: sealed | pickup (docs/sealed.md)
    assurance: str | None = None  # ContentHandover: how the recipient was identified
    released: str | None = None  # pickup: when the notary released its key share
    scans: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        """The step as ``certmail receipts --json`` prints it (only its event's members)."""
        out: dict[str, Any] = {"step": self.step, "event": self.event, "time": self.time}
        if self.event == "RelayToNonERDS":
            out.update(host=self.host, reply=self.reply)
        elif self.event == "RelayToNonERDSFailure":
            out.update(reason=self.reason, reply=self.reply)
        elif self.event == "ContentHandover":
            out["fingerprint"] = self.fingerprint
            if self.key is not None:
                out["key"] = self.key
            if self.detail is not None:
                out["detail"] = self.detail
            for name in ("mode", "assurance", "released", "scans"):
                if (value := getattr(self, name)) is not None:
                    out[name] = value
        elif self.event == "ContentAccessTracking":
            out["strength"] = self.strength
        return out


@dataclass(frozen=True)
class Delivery:
    """The relay's delivery state of one recipient (not evidence: the queue's view).

    ``state`` is ``held``, ``queued``, ``delivered`` or ``failed``; ``last_reply``
    the next hop's last ``{"code", "text"}``; ``next_attempt`` is set while queued.
    """

    recipient: str
    state: str
    attempts: int
    last_attempt: str | None = None
    last_reply: dict[str, Any] | None = None
    last_error: str | None = None
    next_attempt: str | None = None

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Delivery:
        """One item of ``GET /v1/messages/{sha256}/deliveries`` (odd members left out)."""

        def text(name: str) -> str | None:
            v = obj.get(name)
            return v if isinstance(v, str) else None

        reply = obj.get("last_reply")
        attempts = obj.get("attempts")
        return cls(
            recipient=str(obj["recipient"]),
            state=text("state") or "unknown",
            attempts=attempts if isinstance(attempts, int) and attempts >= 0 else 0,
            last_attempt=text("last_attempt"),
            last_reply=reply if isinstance(reply, dict) else None,
            last_error=text("last_error"),
            next_attempt=text("next_attempt"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "attempts": self.attempts,
            "last_attempt": self.last_attempt,
            "last_reply": self.last_reply,
            "last_error": self.last_error,
            "next_attempt": self.next_attempt,
        }

    def reply_text(self) -> str | None:
        """The last reply as ``"451 4.7.1 greylisted"`` (or the last error without one)."""
        if self.last_reply is not None:
            code, text = self.last_reply.get("code"), str(self.last_reply.get("text", ""))
            return " ".join(f"{code} {text}".split())[:120]
        return self.last_error

    def summary(self) -> str:
        """One line: ``queued, 2 attempts, last reply 451 ..., next attempt ...``."""
        n = self.attempts
        parts = [self.state, f"{n} attempt{'' if n == 1 else 's'}"]
        if (reply := self.reply_text()) is not None:
            parts.append(f"last reply {reply}")
        if self.next_attempt is not None:
            parts.append(f"next attempt {self.next_attempt}")
        return ", ".join(parts)


def delivery_states(items: list[dict[str, Any]]) -> dict[str, Delivery]:
    """``NotaryClient.deliveries(...)`` per recipient."""
    return {d.recipient: d for d in map(Delivery.from_json, items)}


@dataclass
class Timeline:
    """Per recipient, its events in log order; ``final`` once every recipient is done.

    ``deliveries`` is the relay's delivery state per recipient when it was
    fetched (:func:`delivery_states`), else empty; :meth:`to_json` is the
    evidence only (``certmail receipts --json`` adds ``deliveries`` beside it).
    """

    recipients: dict[str, list[Event]] = field(default_factory=dict)
    final: bool = False
    message_id: str | None = None  # as the evidence names it
    deliveries: dict[str, Delivery] = field(default_factory=dict)

    def status(self, recipient: str) -> str:
        """The latest step of ``recipient`` ("no evidence yet" without one)."""
        steps = self.recipients.get(recipient) or []
        return steps[-1].step if steps else "no evidence yet"

    def to_json(self) -> dict[str, Any]:
        return {
            "recipients": {r: [e.to_json() for e in steps] for r, steps in self.recipients.items()},
            "final": self.final,
        }


def _handover(
    event: Event, stmt: dict[str, Any], recipient: str, check: HandoverCheck | None
) -> None:
    from .scanverdicts import handover_scans

    event.fingerprint = stmt.get("fingerprint") or stmt.get("certificate_sha256")
    for name in ("mode", "assurance", "released"):
        value = stmt.get(name)
        setattr(event, name, value[:200] if isinstance(value, str) else None)
    if event.mode == "pickup":  # no signature: the page's confirmation (docs/sealed.md)
        event.step = f"acknowledged on the pickup page ({event.assurance or 'link holder'})"
        event.detail = f"key share released {event.released}" if event.released else None
        return
    if check is None or check.ok:  # a bad signature's verdicts are nobody's
        event.scans = handover_scans(stmt)
    if check is None:
        return
    event.key = check.verdict
    if check.kind == "cms":  # which certificate, and whether it is the one held
        event.detail = check.detail
    if not check.ok:
        event.step = (
            f"acknowledged by a key that is not {recipient}'s"
            if check.verdict == "not the recipient's key"
            else "acknowledgement with a BAD signature"
        )
        event.detail = check.detail


def build_timeline(
    receipts: list[dict[str, Any]],
    recipients: list[str],
    *,
    keyring: Keyring | Callable[[], Keyring] | None = None,
    smime: Any = None,
) -> Timeline:
    """The timeline of a message's (already checked) receipts, for ``recipients``.

    With ``keyring``, each acknowledgement (ContentHandover) is checked against
    the recipient's key in it (docs/ack.md); the verdict is the event's ``key``.
    ``keyring`` may be a function making one, called only when there is an
    acknowledgement to check. ``smime`` (an S/MIME context, or a function making one)
    checks the S/MIME (CMS) ones (:mod:`certmail.ack_smime`). Recipients the evidence
    names beyond ``recipients`` are added.
    """
    stmts = statements(receipts)
    checks: dict[int, HandoverCheck] = {}
    if keyring is not None and any(s.get("event") == "ContentHandover" for s in stmts):
        from .ack import check_handover

        ring = keyring() if callable(keyring) else keyring
        checks = {
            i: check_handover(s, ring, smime)
            for i, s in enumerate(stmts)
            if s.get("event") == "ContentHandover" and s.get("mode") != "pickup"
        }
    per: dict[str, list[Event]] = {r: [] for r in recipients}
    direct = False
    for i, s in enumerate(stmts):
        name = s.get("event", "")
        event = Event(STEPS.get(name, name), name, s.get("time"))
        if name == "SubmissionAcceptance" and s.get("channel") == "api":
            direct = True  # notarized hash of a message sent directly: nothing follows
            event.step = NOTARIZED_STEP
        if name in _WHOLE_MESSAGE:
            for r in s.get("recipients") or list(per):
                per.setdefault(r, []).append(event)
            continue
        r = s.get("recipient")
        if not isinstance(r, str):
            continue
        if name == "RelayToNonERDS":
            event.host, event.reply = s.get("host"), s.get("reply")
        elif name == "RelayToNonERDSFailure":
            event.reason, event.reply = s.get("reason"), s.get("reply")
        elif name == "ContentHandover":
            _handover(event, s, r, checks.get(i))
        elif name == "ContentAccessTracking":
            event.strength = s.get("strength")
        per.setdefault(r, []).append(event)
    final = bool(per) and (
        direct or all(any(e.event in _FINAL for e in steps) for steps in per.values())
    )
    message = stmts[0].get("message") if stmts else None
    message_id = message.get("id") if isinstance(message, dict) else None
    return Timeline(per, final, message_id)
