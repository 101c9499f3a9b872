"""``certmail send --pickup``: recipients without a key get a link (docs/sealed.md "Pickup").

:func:`prepare_pickup` encrypts the body and the (scanned) attachments under a
fresh K (:mod:`certmail.sealed.pickup`), and gives back what the email carries
instead: a short text with the pickup link (``<notary>/p/<token>#<K_link>``)
and no attachment. After the email is signed, :meth:`PickupPrepared.register`
sends K_n, the ciphertext, the SHA-256 of the token and what the page shows to
the notary (``POST /v1/pickups``), before anything is sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import mimetypes
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keys.errors import Error
from notary.evidence import format_time
from notary.pickupformat import KDF_PARAMS, token_hash

from ..compose import Headers, ScanRecord, attachment_name, canonical_text
from .pickup import DerivedPassphrase, PickupFile, PickupKeys, link, new_token, seal_pickup

if TYPE_CHECKING:
    from ..notary_client import NotaryClient

__all__ = [
    "PickupOptions",
    "PickupPrepared",
    "check_passphrase",
    "passphrase_check",
    "prepare_pickup",
    "read_passphrase_file",
]

#: The shortest pickup passphrase accepted.
MIN_PASSPHRASE = 8


def read_passphrase_file(path: Path, option: str = "--pickup-passphrase-file") -> bytes:
    """The pickup passphrase: the first line of ``path``, stripped (read once; ``send``
    and ``campaign create`` / ``campaign send`` alike). An unreadable or empty file, or
    a passphrase under 8 characters, is an :class:`Error` with a hint."""
    hint = f"{option} FILE: a readable file whose first line is the passphrase (8 characters+)"
    try:
        data = path.read_bytes()
    except OSError as e:
        raise Error(
            f"cannot read the pickup passphrase from {path}: {e.strerror or e}", hint=hint
        ) from None
    lines = data.splitlines()
    passphrase = lines[0].strip() if lines else b""
    if not passphrase:
        raise Error(f"{path} holds no pickup passphrase (its first line is empty)", hint=hint)
    if len(passphrase) < MIN_PASSPHRASE:
        raise Error(
            f"the pickup passphrase in {path} is shorter than {MIN_PASSPHRASE} characters",
            hint=hint,
        )
    return passphrase


def passphrase_check(passphrase: bytes) -> dict[str, str]:
    """What a campaign keeps to recognise its pickup passphrase at each ``send``: the
    form the notary keeps for each pickup (a random salt and the SHA-256 of the scrypt
    verifier, docs/sealed.md "The protocol"), never the passphrase."""
    from .pickup import passphrase_keys

    salt = os.urandom(16)
    verifier = passphrase_keys(passphrase, salt)[1]
    return {
        "salt": base64.b64encode(salt).decode("ascii"),
        "verifier_sha256": hashlib.sha256(verifier).hexdigest(),
    }


def check_passphrase(passphrase: bytes, check: dict[str, str]) -> bool:
    """Whether ``passphrase`` is the one :func:`passphrase_check` made ``check`` of."""
    from .pickup import passphrase_keys

    verifier = passphrase_keys(passphrase, base64.b64decode(check["salt"]))[1]
    return hmac.compare_digest(hashlib.sha256(verifier).hexdigest(), check["verifier_sha256"])


@dataclass(frozen=True)
class PickupOptions:
    """``send --pickup``: until when the notary keeps it, and the passphrase, if any (a
    campaign recipient's own: derived at ``campaign create``, :class:`DerivedPassphrase`)."""

    expires: datetime
    passphrase: bytes | DerivedPassphrase | None = None


@dataclass
class PickupPrepared:
    """The email's text (the link), no parts, and the pickup still to register."""

    body: bytes
    notary: NotaryClient
    registration: dict[str, Any]
    parts: list[tuple[Path, ScanRecord]] = field(default_factory=list)
    link: str = ""
    html: bytes = b""  # the text's HTML alternative

    def register(self, sha256: str, message_id: str) -> dict[str, Any]:
        """``POST /v1/pickups``: K_n and the ciphertext kept until the expiry."""
        body = {**self.registration, "sha256": sha256, "message_id": message_id}
        resp = self.notary.request("POST", "/v1/pickups", json=body)
        out: dict[str, Any] = resp.json()
        return out


def prepare_pickup(
    options: PickupOptions | None,
    headers: Headers,
    body: bytes,
    scanned: list[tuple[Path, ScanRecord]],
    notary: NotaryClient | None,
    encrypt: bool,
) -> PickupPrepared | None:
    """The pickup of one recipient's message; None when not picking up."""
    if options is None:
        return None
    if notary is None:
        raise Error("--pickup needs a notary", hint="set CERTMAIL_NOTARY_URL")
    if encrypt:
        raise Error("--pickup is for recipients without a key", hint="add --no-encrypt")
    if len(headers.recipients) != 1:
        raise Error(
            "--pickup sends one recipient's link per message",
            hint="send one message per recipient (or a campaign)",
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Error("the message body is not UTF-8 text") from None
    files = [
        PickupFile(
            attachment_name(p),
            mimetypes.guess_type(p.name)[0] or "application/octet-stream",
            p.read_bytes(),
        )
        for p, _ in scanned
    ]
    content, keys, salt = seal_pickup(text, files, headers.message_id, options.passphrase)
    token = new_token()
    url = link(notary.url, token, keys.k_link)
    registration = {
        "share": base64.b64encode(keys.k_n).decode("ascii"),
        "token_sha256": token_hash(token),
        "recipient": headers.recipients[0],
        "expires": format_time(options.expires),
        "content": base64.b64encode(content).decode("ascii"),
        "sender": f"{headers.from_name} <{headers.from_addr}>"
        if headers.from_name
        else headers.from_addr,
        "subject": headers.subject,
        "size": len(body) + sum(len(f.data) for f in files),
        "date": headers.date,
        "passphrase": _passphrase(keys, salt),
    }
    email = _email_text(headers, url, options, len(files))
    html = _email_html(headers, url, options, len(files))
    return PickupPrepared(email, notary, registration, link=url, html=html)


def _passphrase(keys: PickupKeys, salt: bytes | None) -> dict[str, Any] | None:
    if salt is None or keys.verifier_sha256 is None:
        return None
    return {
        "salt": base64.b64encode(salt).decode("ascii"),
        "verifier_sha256": keys.verifier_sha256,
        **KDF_PARAMS,
    }


def _email_text(headers: Headers, url: str, options: PickupOptions, files: int) -> bytes:
    who = headers.from_name or headers.from_addr
    lines = [
        f"{who} <{headers.from_addr}> sent you a registered message through certmail.",
        "",
        f"Subject: {headers.subject}",
        f"Attachments: {files}",
        f"Kept for you until: {format_time(options.expires)}",
        "",
        "To read it, open this link in your browser:",
        "",
        url,
        "",
        "The page asks you to confirm your email address and to acknowledge receipt",
        "(or to refuse the message). The notary logs your acknowledgement, then the",
        "page decrypts the message in your browser. This email holds no content of",
        "the message, and without the whole link (including the part after #) the",
        "message cannot be read.",
    ]
    if options.passphrase is not None:
        lines += ["", "You also need the passphrase the sender gives you separately."]
    return canonical_text(("\n".join(lines) + "\n").encode("utf-8"))


def _email_html(headers: Headers, url: str, options: PickupOptions, files: int) -> bytes:
    """The same notice as HTML: no image, no style sheet, no script, nothing fetched."""
    e = html.escape
    who = e(headers.from_name or headers.from_addr)
    passphrase = (
        "<p>You also need the passphrase the sender gives you separately.</p>"
        if options.passphrase is not None
        else ""
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(headers.subject)}</title></head>
<body>
<p><strong>{who}</strong> &lt;{e(headers.from_addr)}&gt; sent you a registered message
through certmail.</p>
<table>
<tr><th align="left">Subject</th><td>{e(headers.subject)}</td></tr>
<tr><th align="left">Attachments</th><td>{files}</td></tr>
<tr><th align="left">Kept for you until</th><td>{e(format_time(options.expires))}</td></tr>
</table>
<p><a href="{e(url)}">Open the registered message</a></p>
<p>The page asks you to confirm your email address and to acknowledge receipt (or to
refuse the message). The notary logs your acknowledgement, then the page decrypts the
message in your browser. This email holds no content of the message, and without the
whole link the message cannot be read.</p>
{passphrase}
<p>If the link does not open, copy it into your browser: {e(url)}</p>
</body></html>
"""
    return page.encode("utf-8")
