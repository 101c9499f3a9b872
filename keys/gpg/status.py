"""GnuPG's machine-readable status lines (``--status-fd``, GnuPG doc/DETAILS) interpreted.

``[GNUPG:] KEYWORD args`` lines say what gpg did; this module finds them
(:func:`status_values`), takes the digest of a new signature from
``SIG_CREATED`` (:func:`signature_micalg`, RFC 3156 micalg names), and turns a
python-gnupg verify or decrypt result into a :class:`SignatureInfo` or the one
error that says why not (:func:`signature_info`).
"""

from __future__ import annotations

import codecs
import encodings.utf_8
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from keys.errors import Error, KeyMaterialError, MalformedError, VerificationError
from keys.gpg.colons import TRUSTED_VALIDITY, email_of, timestamp

__all__ = [
    "IMPORT_HINT",
    "INVALID_REASON",
    "MICALG",
    "SIG_STATUS",
    "SIG_VALIDITY",
    "STDERR_ENCODING",
    "SignatureInfo",
    "check_recipients_accepted",
    "gpg_message",
    "signature_info",
    "signature_micalg",
    "status_values",
]

IMPORT_HINT = "certmail keys import FILE"

# OpenPGP hash algorithm ids (RFC 9580 §9.5) -> RFC 3156 micalg names.
MICALG = {
    "1": "pgp-md5",
    "2": "pgp-sha1",
    "3": "pgp-ripemd160",
    "8": "pgp-sha256",
    "9": "pgp-sha384",
    "10": "pgp-sha512",
    "11": "pgp-sha224",
}

# python-gnupg trust levels (status keywords TRUST_*).
SIG_VALIDITY = {
    "TRUST_EXPIRED": "expired",
    "TRUST_UNDEFINED": "unknown",
    "TRUST_NEVER": "never",
    "TRUST_MARGINAL": "marginal",
    "TRUST_FULLY": "full",
    "TRUST_ULTIMATE": "ultimate",
}

# INV_RECP / INV_SGNR reason codes (GnuPG doc/DETAILS).
INVALID_REASON = {
    "0": "no specific reason",
    "1": "not found",
    "2": "ambiguous specification",
    "3": "wrong key usage",
    "4": "key revoked",
    "5": "key expired",
    "9": "not a secret key",
    "10": "key not trusted",
    "13": "key disabled",
}

# Status keywords that show a signature was present (GnuPG doc/DETAILS).
SIG_STATUS = ("NEWSIG", "GOODSIG", "BADSIG", "ERRSIG", "VALIDSIG", "EXPSIG", "EXPKEYSIG",
              "REVKEYSIG")  # fmt: skip


#: The codec python-gnupg reads gpg's stderr with: UTF-8, but undecodable bytes
#: become U+FFFD instead of killing python-gnupg's reader thread. Status lines are
#: UTF-8 with binary values percent-escaped (doc/DETAILS); gpg's human lines are
#: not: they print notation values raw, and Sequoia (``sq``) adds a binary
#: ``salt@notations.sequoia-pgp.org`` notation to every signature.
STDERR_ENCODING = "certmail_gpg_utf8"


class _ReplacingReader(encodings.utf_8.StreamReader):
    """UTF-8 stream reader whose default error handling is "replace"."""

    def __init__(self, stream: Any, errors: str = "replace") -> None:
        super().__init__(stream, errors)


def _codec(name: str) -> codecs.CodecInfo | None:
    if name != STDERR_ENCODING:
        return None
    utf8 = codecs.lookup("utf-8")
    return codecs.CodecInfo(
        utf8.encode,
        utf8.decode,
        streamreader=_ReplacingReader,
        streamwriter=utf8.streamwriter,
        incrementalencoder=utf8.incrementalencoder,
        incrementaldecoder=utf8.incrementaldecoder,
        name=STDERR_ENCODING,
    )


codecs.register(_codec)


@dataclass(frozen=True)
class SignatureInfo:
    """A good OpenPGP signature: who made it, when, and how far we trust the key."""

    fingerprint: str
    primary_fingerprint: str
    signer_email: str | None
    created: datetime
    validity: str
    trusted: bool


def status_values(stderr: str, keyword: str) -> list[str]:
    """The arguments of every ``[GNUPG:] keyword`` line in ``stderr``."""
    values = []
    for line in (stderr or "").splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0] == "[GNUPG:]" and parts[1] == keyword:
            values.append(parts[2].strip() if len(parts) > 2 else "")
    return values


def gpg_message(stderr: str | bytes) -> str:
    """The last human line gpg wrote (not a status line), for error messages. Bytes
    are read as UTF-8 with replacement: gpg's human lines may carry binary values."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", "replace")
    lines = [
        ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("[GNUPG:]")
    ]
    return lines[-1].removeprefix("gpg: ") if lines else "gpg failed"


def signature_micalg(code: int, stderr: str) -> str:
    """The RFC 3156 micalg of the signature gpg just made (its SIG_CREATED line)."""
    created = status_values(stderr, "SIG_CREATED")
    if code != 0 or not created:
        raise KeyMaterialError(
            f"signing failed: {gpg_message(stderr)}",
            hint="certmail keys list --secret",
        )
    # SIG_CREATED <type> <pk_algo> <hash_algo> <class> <timestamp> <fpr>
    fields = created[-1].split()
    micalg = MICALG.get(fields[2]) if len(fields) > 2 else None
    if micalg is None:
        raise KeyMaterialError(f"gpg used an unknown hash algorithm ({created[-1]})")
    return micalg


def signature_info(result: Any) -> SignatureInfo:
    """Turn a python-gnupg verify/decrypt result into SignatureInfo or raise."""
    if getattr(result, "stderr", None) is None:  # python-gnupg could not read gpg's answer
        raise VerificationError("signature did not verify: gpg's answer could not be read")
    status = result.status or ""
    if result.valid and result.fingerprint:
        level = result.trust_text or "TRUST_UNDEFINED"
        validity = SIG_VALIDITY.get(level, "unknown")
        created = (timestamp(str(result.sig_timestamp or ""))
                   or timestamp(str(result.timestamp or ""))
                   or datetime.fromtimestamp(0, tz=UTC))  # fmt: skip
        primary = str(result.pubkey_fingerprint or result.fingerprint)
        return SignatureInfo(
            fingerprint=str(result.fingerprint),
            primary_fingerprint=primary,
            signer_email=email_of(str(result.username or "")),
            created=created,
            validity=validity,
            trusted=validity in TRUSTED_VALIDITY,
        )
    if status == "no public key" or status_values(result.stderr, "NO_PUBKEY"):
        errsig = status_values(result.stderr, "ERRSIG")
        keyid = errsig[0].split()[0] if errsig else "?"
        raise VerificationError(
            f"signed by an unknown key {keyid}; cannot verify the signature",
            hint=IMPORT_HINT,
        )
    if status == "signature bad" or status_values(result.stderr, "BADSIG"):
        raise VerificationError(
            "BAD signature: the data or the signature was modified",
        )
    if status in ("signing key has expired", "signing key was revoked"):
        raise VerificationError(f"signature not accepted: {status}")
    if status in ("signature expected but not found", "no data was provided"):
        raise MalformedError("not an OpenPGP signature")
    raise VerificationError(f"signature did not verify: {status or gpg_message(result.stderr)}")


def check_recipients_accepted(stderr: str) -> None:
    """Raise if gpg refused a recipient (INV_RECP), naming it and the reason."""
    invalid = status_values(stderr, "INV_RECP")
    if invalid:
        code, _, who = invalid[0].partition(" ")
        reason = INVALID_REASON.get(code, f"reason {code}")
        raise Error(
            f"cannot encrypt to {who}: {reason}",
            hint=f"certmail keys trust {who}" if code == "10" else IMPORT_HINT,
        )


def check_signed_by(stderr: str, fpr: str) -> None:
    """Raise VerificationError unless gpg's status lines show exactly one signature,
    good and valid, made by the key ``fpr`` (its primary key or a subkey).

    For a decryption whose plaintext was signed in the same OpenPGP message
    (RFC 3156 §6.2): ``VALIDSIG <fpr> ... <primary fpr>`` (GnuPG doc/DETAILS).
    """
    bad = [kw for kw in SIG_STATUS if kw not in ("NEWSIG", "GOODSIG", "VALIDSIG")]
    if any(status_values(stderr, kw) for kw in bad):
        raise VerificationError(f"the signature did not verify: {gpg_message(stderr)}")
    valid = status_values(stderr, "VALIDSIG")
    if len(valid) != 1 or len(status_values(stderr, "GOODSIG")) != 1:
        raise VerificationError(f"expected one good signature, gpg reported {len(valid)}")
    fields = valid[0].split()
    if fpr.upper() not in (fields[0].upper(), fields[-1].upper()):
        raise VerificationError(f"signed by {fields[-1]}, not by {fpr}")
