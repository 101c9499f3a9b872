"""The OpenPGP keyring: RFC 9580 / RFC 4880 keys and operations through GnuPG.

One :class:`Keyring` wraps one GNUPGHOME (one per certmail profile) and drives
the ``gpg`` binary through python-gnupg. Every bulk operation streams from file
to file, so a 200 MB attachment is never held in memory. The keyring never
touches the network: ``gpg.conf`` turns off key auto-retrieval and WKD lookups.

Trust model: GnuPG's classic ``pgp`` model. Your own identity is ultimately
trusted; someone else's key becomes valid when you certify it locally with
:meth:`Keyring.trust` (a non-exportable ``lsign``). Encryption goes only to
valid keys: ``--trust-model always`` is never used. See docs/keys.md.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import gnupg

from keys.errors import (
    ConflictError,
    Error,
    KeyMaterialError,
    MalformedError,
    NotFoundError,
    VerificationError,
)

GPG_BINARY = "gpg"

IMPORT_HINT = "certmail keys import FILE"

GPG_CONF = """\
# Written by certmail. Keys are never fetched from the network.
keyid-format long
trust-model pgp
auto-key-locate local
no-auto-key-retrieve
personal-digest-preferences SHA512 SHA384 SHA256
cert-digest-algo SHA512
default-preference-list SHA512 SHA384 SHA256 AES256 AES192 AES ZLIB BZIP2 ZIP Uncompressed
"""

GPG_AGENT_CONF = """\
# Written by certmail: no passphrase caching; passphrases come through loopback.
default-cache-ttl 0
max-cache-ttl 0
allow-loopback-pinentry
"""

# Colon-listing validity letters (GnuPG doc/DETAILS, field 2).
VALIDITY = {
    "o": "unknown",
    "i": "invalid",
    "d": "disabled",
    "r": "revoked",
    "e": "expired",
    "-": "unknown",
    "q": "unknown",
    "n": "never",
    "m": "marginal",
    "f": "full",
    "u": "ultimate",
    "w": "unknown",
    "s": "special",
}
TRUSTED_VALIDITY = ("full", "ultimate")

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

# OpenPGP public key algorithm ids (RFC 9580 §9.1).
PK_ALGO = {"1": "rsa", "16": "elgamal", "17": "dsa", "18": "ecdh", "19": "ecdsa", "22": "eddsa"}

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

BUFFER_SIZE = 1 << 20

# Status keywords that show a signature was present (GnuPG doc/DETAILS).
SIG_STATUS = ("NEWSIG", "GOODSIG", "BADSIG", "ERRSIG", "VALIDSIG", "EXPSIG", "EXPKEYSIG",
              "REVKEYSIG")

_FPR_RE = re.compile(r"^(0x)?[0-9A-Fa-f]{16,40}$")
_EMAIL_IN_UID_RE = re.compile(r"<([^<>\s]+@[^<>\s]+)>\s*$")


@dataclass(frozen=True)
class KeyInfo:
    """One OpenPGP key (primary key and its subkeys) as the keyring sees it."""

    fingerprint: str
    uids: tuple[str, ...]
    emails: tuple[str, ...]
    validity: str
    has_secret: bool
    created: datetime
    expires: datetime | None
    algo: str


@dataclass(frozen=True)
class SignatureInfo:
    """A good OpenPGP signature: who made it, when, and how far we trust the key."""

    fingerprint: str
    primary_fingerprint: str
    signer_email: str | None
    created: datetime
    validity: str
    trusted: bool


@dataclass
class _Listed:
    """Internal: a key from the colon listing, with per-uid validity and capabilities."""

    info: KeyInfo
    uid_validity: dict[str, str]  # lower-case email -> validity word
    capabilities: str


def normalize_fingerprint(value: str) -> str:
    """Upper-case hex without spaces or ``0x``; input that is not hex is returned stripped."""
    compact = value.replace(" ", "").strip()
    if _FPR_RE.match(compact):
        return compact.removeprefix("0x").removeprefix("0X").upper()
    return value.strip()


def email_of(uid: str) -> str | None:
    """The lower-case address of a user id ``Name <addr>`` or a bare ``addr``."""
    m = _EMAIL_IN_UID_RE.search(uid)
    if m:
        return m.group(1).lower()
    uid = uid.strip()
    if "@" in uid and " " not in uid:
        return uid.strip("<>").lower()
    return None


def _timestamp(value: str) -> datetime | None:
    if not value:
        return None
    if value.isdigit():
        return datetime.fromtimestamp(int(value), tz=UTC)
    # ISO 8601 basic format, e.g. 20240101T120000
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _unescape_colon(field: str) -> str:
    raw = re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]), field.encode())
    return raw.decode("utf-8", "replace")


def _status_values(stderr: str, keyword: str) -> list[str]:
    values = []
    for line in (stderr or "").splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0] == "[GNUPG:]" and parts[1] == keyword:
            values.append(parts[2].strip() if len(parts) > 2 else "")
    return values


def _gpg_message(stderr: str) -> str:
    """The last human line gpg wrote (not a status line), for error messages."""
    lines = [
        ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("[GNUPG:]")
    ]
    return lines[-1].removeprefix("gpg: ") if lines else "gpg failed"


class Keyring:
    """One GnuPG home: the identity's keys and the keys of correspondents.

    ``passphrase`` unlocks the own secret key for signing and decryption; it is
    sent to gpg through ``--pinentry-mode loopback`` on a pipe, never on argv.
    """

    def __init__(self, gnupghome: Path, *, passphrase: str | None = None) -> None:
        self.gnupghome = Path(gnupghome)
        self.passphrase = passphrase
        self._prepare_home()
        try:
            self._gpg = gnupg.GPG(gpgbinary=GPG_BINARY, gnupghome=str(self.gnupghome),
                                  encoding="utf-8")
        except (OSError, ValueError) as e:
            raise KeyMaterialError(
                f"cannot run gpg: {e}", hint="install GnuPG 2.2 or later (scripts/bootstrap.sh)"
            ) from e
        self._gpg.buffer_size = BUFFER_SIZE
        self._micalg_cache: dict[str, str] = {}

    # -- setup -----------------------------------------------------------------

    def _prepare_home(self) -> None:
        home = self.gnupghome
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(home, 0o700)
        for name, text in (("gpg.conf", GPG_CONF), ("gpg-agent.conf", GPG_AGENT_CONF)):
            path = home / name
            if not path.exists():
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)

    def _run(self, args: Sequence[str], *, stdin: bytes | None = None,
             passphrase: bool = False) -> subprocess.CompletedProcess[bytes]:
        """Run gpg directly (for listings and small key-management commands)."""
        cmd = [GPG_BINARY, "--homedir", str(self.gnupghome), "--batch", "--no-tty",
               "--status-fd", "2", "--with-colons", "--fixed-list-mode"]
        data = stdin or b""
        if passphrase and self.passphrase is not None:
            cmd += ["--pinentry-mode", "loopback", "--passphrase-fd", "0"]
            data = self.passphrase.encode() + b"\n" + data
        elif passphrase:
            cmd += ["--pinentry-mode", "error"]
        cmd += list(args)
        return subprocess.run(cmd, input=data, capture_output=True, check=False)

    def _secret_args(self) -> list[str]:
        """Extra arguments for operations that use the secret key."""
        return [] if self.passphrase is not None else ["--pinentry-mode", "error"]

    # -- listing ---------------------------------------------------------------

    def _listing(self, *, secret: bool) -> list[_Listed]:
        proc = self._run(["--list-secret-keys" if secret else "--list-keys"])
        if proc.returncode not in (0, 2):
            raise KeyMaterialError(f"cannot list keys: {_gpg_message(proc.stderr.decode())}")
        secret_fprs: set[str] = set()
        if not secret:
            secret_fprs = {k.info.fingerprint for k in self._listing(secret=True)}
        keys: list[_Listed] = []
        cur: dict[str, Any] | None = None
        in_sub = False

        def flush() -> None:
            if cur is None or not cur.get("fingerprint"):
                return
            fpr = cur["fingerprint"]
            uids = tuple(u for u, _ in cur["uids"])
            emails = tuple(dict.fromkeys(e for e in (email_of(u) for u in uids) if e))
            info = KeyInfo(
                fingerprint=fpr,
                uids=uids,
                emails=emails,
                validity=VALIDITY.get(cur["validity"], "unknown"),
                has_secret=secret or fpr in secret_fprs,
                created=_timestamp(cur["created"]) or datetime.fromtimestamp(0, tz=UTC),
                expires=_timestamp(cur["expires"]),
                algo=cur["algo"],
            )
            uid_validity: dict[str, str] = {}
            for u, v in cur["uids"]:
                e = email_of(u)
                if e and e not in uid_validity:
                    uid_validity[e] = VALIDITY.get(v, "unknown")
            keys.append(_Listed(info, uid_validity, cur["cap"]))

        for line in proc.stdout.decode("utf-8", "replace").splitlines():
            f = line.split(":")
            kind = f[0]
            if kind in ("pub", "sec"):
                flush()
                algo = PK_ALGO.get(f[3], f[3])
                curve = f[16] if len(f) > 16 else ""
                if curve:
                    algo = curve
                elif algo in ("rsa", "dsa", "elgamal"):
                    algo = f"{algo}{f[2]}"
                cur = {"fingerprint": "", "validity": f[1], "created": f[5], "expires": f[6],
                       "cap": f[11] if len(f) > 11 else "", "algo": algo, "uids": []}
                in_sub = False
            elif kind in ("sub", "ssb"):
                in_sub = True
            elif kind == "fpr" and cur is not None and not in_sub:
                cur["fingerprint"] = f[9]
            elif kind == "uid" and cur is not None:
                cur["uids"].append((_unescape_colon(f[9]), f[1]))
        flush()
        return keys

    def list_keys(self, *, secret: bool = False) -> list[KeyInfo]:
        """Every key in the keyring (``secret=True``: only those with a secret key)."""
        return [k.info for k in self._listing(secret=secret)]

    def _find(self, addr_or_fpr: str, *, secret: bool = False) -> list[_Listed]:
        """Keys matching a fingerprint (or key id suffix) or an address, newest first."""
        query = normalize_fingerprint(addr_or_fpr)
        listed = self._listing(secret=secret)
        if _FPR_RE.match(query):
            found = [k for k in listed if k.info.fingerprint.endswith(query)]
        else:
            addr = query.strip("<>").lower()
            found = [k for k in listed if addr in k.info.emails]
        usable = ("full", "ultimate", "unknown", "marginal", "never")
        found.sort(key=lambda k: (k.info.validity in usable, k.info.created), reverse=True)
        return found

    def key_for(self, addr_or_fpr: str) -> KeyInfo:
        """The key for an address or fingerprint (newest usable one if several)."""
        found = self._find(addr_or_fpr)
        if not found:
            raise NotFoundError(f"no OpenPGP key for {addr_or_fpr}", hint=IMPORT_HINT)
        return found[0].info

    def encryption_key(self, addr: str) -> str:
        """Fingerprint of a valid, trusted key for ``addr`` that can encrypt."""
        addr_l = normalize_fingerprint(addr).strip("<>").lower()
        found = self._find(addr)
        if not found:
            raise NotFoundError(f"no OpenPGP key for {addr}", hint=IMPORT_HINT)
        capable = [k for k in found if "E" in k.capabilities and "D" not in k.capabilities]
        if not capable:
            states = ", ".join(sorted({k.info.validity for k in found}))
            raise KeyMaterialError(
                f"the key for {addr} cannot encrypt ({states})",
                hint=f"ask {addr} for a current key, then {IMPORT_HINT}",
            )
        for k in capable:
            validity = k.uid_validity.get(addr_l, k.info.validity)
            if _FPR_RE.match(normalize_fingerprint(addr)):
                validity = k.info.validity
            if validity in TRUSTED_VALIDITY:
                return k.info.fingerprint
        fpr = capable[0].info.fingerprint
        raise Error(
            f"the key {fpr} for {addr} is not trusted; check its fingerprint with {addr}",
            hint=f"certmail keys trust {addr}",
        )

    def signing_key(self, addr: str) -> str:
        """Fingerprint of the own secret key for ``addr`` that can sign."""
        found = [k for k in self._find(addr, secret=True)
                 if "S" in k.capabilities and k.info.validity not in ("expired", "revoked")]
        if not found:
            raise NotFoundError(
                f"no secret key of your own for {addr}",
                hint="certmail init --email ADDR --name NAME",
            )
        return found[0].info.fingerprint

    # -- key management --------------------------------------------------------

    def generate_identity(self, email: str, name: str, passphrase: str | None = None) -> str:
        """Create an Ed25519 (sign, certify) key with a Cv25519 encryption subkey."""
        email = email.strip()
        if "@" not in email or any(c in email for c in "<> \t\r\n"):
            raise KeyMaterialError(f"not an email address: {email!r}")
        if any(c in name for c in "<>\r\n") or not name.strip():
            raise KeyMaterialError(f"not a usable name: {name!r}")
        if self._find(email, secret=True):
            raise ConflictError(
                f"a secret key for {email} already exists in {self.gnupghome}",
                hint=f"certmail keys fingerprint {email}",
            )
        secret = passphrase if passphrase is not None else self.passphrase
        if secret is not None and not self._gpg.is_valid_passphrase(secret):
            raise KeyMaterialError("a passphrase must not contain line breaks or NUL")
        params = [
            "Key-Type: EDDSA",
            "Key-Curve: ed25519",
            "Key-Usage: sign,cert",
            "Subkey-Type: ECDH",
            "Subkey-Curve: cv25519",
            "Subkey-Usage: encrypt",
            f"Name-Real: {name.strip()}",
            f"Name-Email: {email}",
            "Expire-Date: 0",
        ]
        params.append(f"Passphrase: {secret}" if secret else "%no-protection")
        params.append("%commit")
        result = self._gpg.gen_key("\n".join(params) + "\n")
        if not result.fingerprint:
            raise KeyMaterialError(f"key generation failed: {_gpg_message(result.stderr)}")
        return str(result.fingerprint)

    def export_public(self, addr_or_fpr: str) -> str:
        """The public key, ASCII-armored (``-----BEGIN PGP PUBLIC KEY BLOCK-----``)."""
        fpr = self.key_for(addr_or_fpr).fingerprint
        armored = self._gpg.export_keys(fpr, armor=True)
        if not armored:
            raise KeyMaterialError(f"cannot export {fpr}")
        return str(armored)

    def import_keys(self, data: bytes) -> list[str]:
        """Import OpenPGP keys (armored or binary); returns the fingerprints imported."""
        result = self._gpg.import_keys(data, extra_args=["--import-options", "import-clean"])
        fprs = list(dict.fromkeys(str(f) for f in result.fingerprints if f))
        if not fprs:
            raise MalformedError(
                "no OpenPGP key found in the input",
                hint="export the key with gpg --export --armor ADDR and import that file",
            )
        return fprs

    def trust(self, addr_or_fpr: str) -> str:
        """Certify the key locally with your own key (``lsign``) so that it is fully valid."""
        key = self.key_for(addr_or_fpr)
        if key.has_secret and key.validity == "ultimate":
            return key.fingerprint
        own = [k for k in self._listing(secret=True)
               if "C" in k.capabilities or "c" in k.capabilities]
        own = [k for k in own if k.info.validity not in ("expired", "revoked")]
        if not own:
            raise NotFoundError(
                "no identity of your own to certify the key with",
                hint="certmail init --email ADDR --name NAME",
            )
        signer = own[0].info.fingerprint
        proc = self._run(["--local-user", signer, "--quick-lsign-key", key.fingerprint],
                         passphrase=True)
        if proc.returncode != 0:
            raise KeyMaterialError(
                f"cannot certify {key.fingerprint}: {_gpg_message(proc.stderr.decode())}",
                hint="set CERTMAIL_PASSPHRASE_FILE if your key has a passphrase",
            )
        self._run(["--check-trustdb"])
        return key.fingerprint

    # -- signatures ------------------------------------------------------------

    def _sign_result(self, result: Any) -> tuple[bytes, str]:
        if not result.fingerprint or result.returncode not in (0, None):
            raise KeyMaterialError(
                f"signing failed: {result.status or _gpg_message(result.stderr)}",
                hint="set CERTMAIL_PASSPHRASE_FILE if your key has a passphrase",
            )
        micalg = MICALG.get(str(result.hash_algo))
        if micalg is None:
            raise KeyMaterialError(f"gpg used an unknown hash algorithm {result.hash_algo}")
        data = result.data
        return (data if isinstance(data, bytes) else str(data).encode()), micalg

    def _resolve_signer(self, signer: str) -> str:
        query = normalize_fingerprint(signer)
        if _FPR_RE.match(query):
            return query
        return self.signing_key(signer)

    def sign_detached(self, data: bytes, signer: str) -> tuple[bytes, str]:
        """An ASCII-armored detached signature over ``data`` and its RFC 3156 micalg."""
        with io.BytesIO(data) as f:
            result = self._gpg.sign_file(
                f, keyid=self._resolve_signer(signer), passphrase=self.passphrase,
                clearsign=False, detach=True, extra_args=self._secret_args(),
            )
        return self._sign_result(result)

    def sign_detached_file(self, path: Path, signer: str) -> tuple[bytes, str]:
        """Like :meth:`sign_detached`, streaming the data from ``path``."""
        with open(path, "rb") as f:
            result = self._gpg.sign_file(
                f, keyid=self._resolve_signer(signer), passphrase=self.passphrase,
                clearsign=False, detach=True, extra_args=self._secret_args(),
            )
        return self._sign_result(result)

    def _signature_info(self, result: Any) -> SignatureInfo:
        """Turn a python-gnupg verify/decrypt result into SignatureInfo or raise."""
        status = result.status or ""
        if result.valid and result.fingerprint:
            level = result.trust_text or "TRUST_UNDEFINED"
            validity = SIG_VALIDITY.get(level, "unknown")
            created = (_timestamp(str(result.sig_timestamp or ""))
                       or _timestamp(str(result.timestamp or ""))
                       or datetime.fromtimestamp(0, tz=UTC))
            primary = str(result.pubkey_fingerprint or result.fingerprint)
            return SignatureInfo(
                fingerprint=str(result.fingerprint),
                primary_fingerprint=primary,
                signer_email=email_of(str(result.username or "")),
                created=created,
                validity=validity,
                trusted=validity in TRUSTED_VALIDITY,
            )
        if status == "no public key" or _status_values(result.stderr, "NO_PUBKEY"):
            errsig = _status_values(result.stderr, "ERRSIG")
            keyid = errsig[0].split()[0] if errsig else "?"
            raise VerificationError(
                f"signed by an unknown key {keyid}; cannot verify the signature",
                hint=IMPORT_HINT,
            )
        if status == "signature bad" or _status_values(result.stderr, "BADSIG"):
            raise VerificationError(
                "BAD signature: the data or the signature was modified",
            )
        if status in ("signing key has expired", "signing key was revoked"):
            raise VerificationError(f"signature not accepted: {status}")
        if status in ("signature expected but not found", "no data was provided"):
            raise MalformedError("not an OpenPGP signature")
        raise VerificationError(
            f"signature did not verify: {status or _gpg_message(result.stderr)}"
        )

    def verify_detached(self, data: bytes, signature: bytes) -> SignatureInfo:
        """Verify a detached signature over ``data``; raise VerificationError if it fails."""
        with tempfile.NamedTemporaryFile(prefix="certmail-sig-", delete=False) as sig:
            sig.write(signature)
        try:
            result = self._gpg.verify_data(sig.name, data)
        finally:
            os.unlink(sig.name)
        return self._signature_info(result)

    def verify_detached_file(self, path: Path, signature: bytes) -> SignatureInfo:
        """Like :meth:`verify_detached`; gpg reads the data from ``path`` itself."""
        if not Path(path).is_file():
            raise NotFoundError(f"no such file: {path}")
        with io.BytesIO(signature) as sig:
            result = self._gpg.verify_file(sig, data_filename=str(path), close_file=False)
        return self._signature_info(result)

    # -- encryption ------------------------------------------------------------

    def _check_recipients(self, recipients: Sequence[str]) -> list[str]:
        if not recipients:
            raise Error("no recipients to encrypt to")
        listed = self._listing(secret=False)
        fprs: list[str] = []
        for r in recipients:
            q = normalize_fingerprint(r)
            if not _FPR_RE.match(q):
                fprs.append(self.encryption_key(r))
                continue
            match = [k for k in listed if k.info.fingerprint.endswith(q)]
            if not match:
                raise NotFoundError(f"no OpenPGP key {r}", hint=IMPORT_HINT)
            k = match[0]
            if k.info.validity not in TRUSTED_VALIDITY:
                raise Error(f"the key {k.info.fingerprint} is not trusted",
                            hint=f"certmail keys trust {k.info.fingerprint}")
            fprs.append(k.info.fingerprint)
        return fprs

    @contextlib.contextmanager
    def _atomic_output(self, dst: Path) -> Iterator[Path]:
        """A temporary file next to ``dst``, renamed to ``dst`` only on success."""
        dst = Path(dst)
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            os.replace(tmp_path, dst)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()

    def _encrypt(self, src: Path, dst: Path, recipients: Sequence[str], signer: str | None,
                 armor: bool, compress: bool = True) -> None:
        fprs = self._check_recipients(recipients)
        sign = self._resolve_signer(signer) if signer else None
        with self._atomic_output(dst) as tmp, open(src, "rb") as f:
            extra = ["--yes"] + (self._secret_args() if sign else [])
            if not compress:
                extra += ["--compress-algo", "none"]
            result = self._gpg.encrypt_file(
                f, fprs, sign=sign, always_trust=False,
                passphrase=self.passphrase if sign else None,
                armor=armor, output=str(tmp), extra_args=extra,
            )
            if not result.ok or result.returncode != 0:
                invalid = _status_values(result.stderr, "INV_RECP")
                if invalid:
                    code, _, who = invalid[0].partition(" ")
                    reason = INVALID_REASON.get(code, f"reason {code}")
                    raise Error(f"cannot encrypt to {who}: {reason}",
                                hint=f"certmail keys trust {who}" if code == "10"
                                else IMPORT_HINT)
                if _status_values(result.stderr, "INV_SGNR"):
                    raise KeyMaterialError(f"cannot sign with {sign}",
                                           hint="certmail init --email ADDR --name NAME")
                raise KeyMaterialError(
                    f"encryption failed: {result.status or _gpg_message(result.stderr)}",
                    hint="set CERTMAIL_PASSPHRASE_FILE if your key has a passphrase"
                    if sign else None,
                )

    def encrypt_file(self, src: Path, dst: Path, recipients: Sequence[str], *,
                     armor: bool = True, compress: bool = True) -> None:
        """Encrypt ``src`` to ``dst`` for valid recipient keys (fingerprints), streaming.

        ``compress=False`` (``--compress-algo none``) skips gpg's compression:
        base64 text or already-compressed data gains little and costs most of
        the time of a large encryption.
        """
        self._encrypt(src, dst, recipients, None, armor, compress)

    def sign_encrypt_file(self, src: Path, dst: Path, recipients: Sequence[str], signer: str,
                          *, armor: bool = True, compress: bool = True) -> None:
        """Sign with ``signer`` and encrypt in one OpenPGP message, streaming."""
        self._encrypt(src, dst, recipients, signer, armor, compress)

    def decrypt_file(self, src: Path, dst: Path) -> SignatureInfo | None:
        """Decrypt ``src`` to ``dst``; verify and return the signature if it was signed.

        ``dst`` appears only when decryption (and any signature) succeeded.
        """
        src = Path(src)
        if not src.is_file():
            raise NotFoundError(f"no such file: {src}")
        with self._atomic_output(dst) as tmp, open(src, "rb") as f:
            result = self._gpg.decrypt_file(
                f, passphrase=self.passphrase, output=str(tmp),
                extra_args=["--yes", *self._secret_args()],
            )
            stderr = result.stderr or ""
            if not result.ok or result.returncode not in (0, 2):
                if _status_values(stderr, "NO_SECKEY") and not _status_values(
                        stderr, "DECRYPTION_KEY"):
                    raise VerificationError(
                        "not encrypted to any of your keys",
                        hint="certmail keys list --secret",
                    )
                if _status_values(stderr, "BAD_PASSPHRASE") or _status_values(
                        stderr, "MISSING_PASSPHRASE"):
                    raise KeyMaterialError(
                        "your secret key needs its passphrase",
                        hint="set CERTMAIL_PASSPHRASE_FILE or run the command on a terminal",
                    )
                if _status_values(stderr, "BADSIG"):
                    raise VerificationError(
                        "BAD signature: the data or the signature was modified",
                    )
                if _status_values(stderr, "BEGIN_DECRYPTION"):
                    raise MalformedError(
                        "decryption failed: the message is truncated or was modified",
                    )
                raise MalformedError(
                    f"not an OpenPGP encrypted message ({result.status or _gpg_message(stderr)})",
                )
            signed = any(_status_values(stderr, kw) for kw in SIG_STATUS)
            info = self._signature_info(result) if signed else None
            if result.returncode != 0 and info is None:
                raise MalformedError(f"decryption failed: {_gpg_message(stderr)}")
        return info


    # -- streaming (data through file descriptors, not Python buffers) ------------

    def spawn(self, args: Sequence[str], *, stdin: int | IO[bytes] | None = None,
               stdout: int | IO[bytes] | None = None, secret: bool = False,
               collect_stdout: bool = False) -> GpgProcess:
        cmd = [GPG_BINARY, "--homedir", str(self.gnupghome), "--batch", "--no-tty", "--yes",
               "--status-fd", "2"]
        passphrase = None
        if secret:
            if self.passphrase is not None:
                passphrase = self.passphrase
            else:
                cmd += ["--pinentry-mode", "error"]
        return GpgProcess([*cmd, *args], stdin=stdin, stdout=stdout, passphrase=passphrase,
                          collect_stdout=collect_stdout)


    def micalg(self, signer: str) -> str:
        """The RFC 3156 micalg gpg will use for detached signatures by ``signer``.

        gpg picks the digest from the key and the preferences; a one-time probe
        (an empty signature) tells which, before any data is signed, so that the
        ``multipart/signed`` header can be written ahead of the signature.
        """
        fpr = self._resolve_signer(signer)
        cache = self._micalg_cache
        if fpr not in cache:
            run = self.spawn(["--local-user", fpr, "--detach-sign", "--armor"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, secret=True,
                             collect_stdout=True)
            code, stderr, _ = run.wait()
            cache[fpr] = _signature_micalg(code, stderr)
        return cache[fpr]


    def start_sign_detached(self, src: IO[bytes] | int, signer: str) -> GpgProcess:
        """Start an armored detached signature over ``src`` (gpg reads the file itself)."""
        fpr = self._resolve_signer(signer)
        return self.spawn(["--local-user", fpr, "--detach-sign", "--armor"], stdin=src,
                          stdout=subprocess.PIPE, secret=True, collect_stdout=True)


    def finish_sign_detached(self, run: GpgProcess) -> tuple[bytes, str]:
        """The signature and its micalg once :meth:`start_sign_detached` is done."""
        code, stderr, out = run.wait()
        return out, _signature_micalg(code, stderr)


    def start_encrypt(self, recipients: Sequence[str], *, armor: bool = True,
                       compress: bool = True, stdout: int | IO[bytes] | None = None) -> GpgProcess:
        """Start encrypting stdin (a pipe) to valid recipient keys; ciphertext on ``stdout``."""
        fprs = self._check_recipients(recipients)
        args = ["--trust-model", "pgp", "--encrypt"]
        for f in fprs:
            args += ["--recipient", f]
        if armor:
            args.append("--armor")
        if not compress:
            args += ["--compress-algo", "none"]
        return self.spawn(args, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE if stdout is None else stdout)


    def finish_encrypt(self, run: GpgProcess) -> None:
        code, stderr, _ = run.wait()
        if code == 0 and _status_values(stderr, "END_ENCRYPTION"):
            return
        invalid = _status_values(stderr, "INV_RECP")
        if invalid:
            reason_code, _, who = invalid[0].partition(" ")
            reason = INVALID_REASON.get(reason_code, f"reason {reason_code}")
            raise Error(f"cannot encrypt to {who}: {reason}",
                        hint=f"certmail keys trust {who}" if reason_code == "10" else IMPORT_HINT)
        raise KeyMaterialError(f"encryption failed: {_gpg_message(stderr)}")


    def start_decrypt(self, *, stdin: int | IO[bytes] | None = None) -> GpgProcess:
        """Start decrypting ``stdin`` (default: a pipe); the plaintext comes out of a pipe."""
        return self.spawn(["--decrypt"], stdin=subprocess.PIPE if stdin is None else stdin,
                          stdout=subprocess.PIPE, secret=True)


    def finish_decrypt(self, run: GpgProcess) -> None:
        """Raise unless the decryption succeeded with an intact integrity check."""
        code, stderr, _ = run.wait()
        if code == 0 and _status_values(stderr, "DECRYPTION_OKAY") and not _status_values(
                stderr, "DECRYPTION_FAILED"):
            return
        if _status_values(stderr, "NO_SECKEY") and not _status_values(stderr, "DECRYPTION_KEY"):
            raise VerificationError("not encrypted to any of your keys",
                                    hint="certmail keys list --secret")
        if _status_values(stderr, "BAD_PASSPHRASE") or _status_values(stderr, "MISSING_PASSPHRASE"):
            raise KeyMaterialError("your secret key needs its passphrase",
                                   hint="set CERTMAIL_PASSPHRASE_FILE or run the command on a "
                                        "terminal")
        raise MalformedError(f"decryption failed: {_gpg_message(stderr)}")


# ---------------------------------------------------------------- streaming processes


class GpgProcess:
    """A gpg process whose data flows through file descriptors, not Python buffers.

    Started by :meth:`Keyring.spawn`. ``stdin``/``stdout`` are pipes (or the
    files given); stderr, which carries the ``[GNUPG:]`` status lines, and a
    small stdout (``collect_stdout=True``) are drained by threads so the
    process never blocks on them. The passphrase goes through its own pipe
    (``--passphrase-fd``), never argv.
    """

    def __init__(self, cmd: list[str], *, stdin: int | IO[bytes] | None,
                 stdout: int | IO[bytes] | None, passphrase: str | None,
                 collect_stdout: bool) -> None:
        pass_fds: tuple[int, ...] = ()
        rfd = -1
        if passphrase is not None:
            rfd, wfd = os.pipe()
            os.write(wfd, passphrase.encode() + b"\n")
            os.close(wfd)
            pass_fds = (rfd,)
            cmd = [cmd[0], "--pinentry-mode", "loopback", "--passphrase-fd", str(rfd), *cmd[1:]]
        try:
            self.proc = subprocess.Popen(cmd, stdin=stdin, stdout=stdout,
                                         stderr=subprocess.PIPE, pass_fds=pass_fds)
        except OSError as e:
            raise KeyMaterialError(f"cannot run gpg: {e}",
                                   hint="install GnuPG 2.2 or later") from e
        finally:
            if rfd >= 0:
                os.close(rfd)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                _widen_pipe(pipe.fileno())
        self._stderr: list[bytes] = []
        self._stdout: list[bytes] = []
        self._threads = [threading.Thread(target=self._drain,
                                          args=(self.proc.stderr, self._stderr), daemon=True)]
        if collect_stdout:
            self._threads.append(threading.Thread(
                target=self._drain, args=(self.proc.stdout, self._stdout), daemon=True))
        for t in self._threads:
            t.start()

    @staticmethod
    def _drain(f: IO[bytes] | None, into: list[bytes]) -> None:
        if f is None:
            return
        with f:
            while chunk := f.read(65536):
                into.append(chunk)

    @property
    def stdin(self) -> IO[bytes] | None:
        return self.proc.stdin

    @property
    def stdout(self) -> IO[bytes] | None:
        return self.proc.stdout

    def wait(self) -> tuple[int, str, bytes]:
        """Exit status, stderr (status lines included) and collected stdout."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        code = self.proc.wait()
        for t in self._threads:
            t.join()
        return code, b"".join(self._stderr).decode("utf-8", "replace"), b"".join(self._stdout)

    def kill(self) -> None:
        """Stop the process (after a failure elsewhere in a pipeline)."""
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.wait()

_F_SETPIPE_SZ = 1031  # Linux fcntl: set a pipe's capacity


def _widen_pipe(fd: int, size: int = 1 << 20) -> None:
    """Give a pipe a 1 MiB buffer (Linux; the default 64 KiB makes gpg and Python
    take turns every 64 KiB: many context switches for a large message)."""
    try:
        import fcntl

        fcntl.fcntl(fd, _F_SETPIPE_SZ, size)
    except (OSError, ImportError):
        pass


def _signature_micalg(code: int, stderr: str) -> str:
    created = _status_values(stderr, "SIG_CREATED")
    if code != 0 or not created:
        raise KeyMaterialError(
            f"signing failed: {_gpg_message(stderr)}",
            hint="set CERTMAIL_PASSPHRASE_FILE if your key has a passphrase",
        )
    # SIG_CREATED <type> <pk_algo> <hash_algo> <class> <timestamp> <fpr>
    fields = created[-1].split()
    micalg = MICALG.get(fields[2]) if len(fields) > 2 else None
    if micalg is None:
        raise KeyMaterialError(f"gpg used an unknown hash algorithm ({created[-1]})")
    return micalg
