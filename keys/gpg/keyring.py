"""The OpenPGP keyring: RFC 9580 / RFC 4880 keys and operations through GnuPG.

One :class:`Keyring` wraps one GNUPGHOME (one per certmail profile) and drives
``gpg`` through python-gnupg, or :class:`~keys.gpg.process.GpgProcess` to stream.
It is built in three layers: :mod:`keys.gpg.base` (running gpg, listing and
choosing keys, unlocking the secret key), :mod:`keys.gpg.streaming` (the
start/finish operations the send and open pipelines stream through) and this
module (key management and whole-file sign, verify, encrypt, decrypt).
Bulk operations stream file to file: a 200 MB attachment is never held in memory.
No network: ``gpg.conf`` turns off key auto-retrieval and WKD lookups.

Trust model: GnuPG's classic ``pgp`` model. Your own identity is ultimately
trusted; someone else's key becomes valid when you certify it locally with
:meth:`Keyring.trust` (a non-exportable ``lsign``). Encryption goes only to
valid keys: ``--trust-model always`` is never used. See docs/keys.md.
"""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from keys.errors import (
    ConflictError,
    KeyMaterialError,
    MalformedError,
    NotFoundError,
    VerificationError,
)
from keys.gpg.base import BUFFER_SIZE
from keys.gpg.home import launch_agent
from keys.gpg.importing import check_before_import, nothing_imported, require_usable
from keys.gpg.passphrase import check_secret_key_used, raise_for_passphrase
from keys.gpg.process import atomic_output
from keys.gpg.status import (
    MICALG,
    SIG_STATUS,
    SignatureInfo,
    check_recipients_accepted,
    gpg_message,
    signature_info,
    status_values,
)
from keys.gpg.streaming import StreamingKeyring

__all__ = ["BUFFER_SIZE", "Keyring"]


#: What gpg may be fed from: a binary file object (a file, or e.g. bytes made on the fly).
_Readable = IO[bytes] | io.RawIOBase


class Keyring(StreamingKeyring):
    """One GnuPG home: the identity's keys and the keys of correspondents.

    ``passphrase`` unlocks the own secret key for signing and decryption; it is
    sent to gpg through ``--pinentry-mode loopback`` on a pipe, never on argv.
    Without one, gpg runs with ``--pinentry-mode error``: an unprotected key, or
    one the agent has unlocked (its cache), just works. ``ask``
    (:mod:`keys.gpg.passphrase`) is called when gpg needs a passphrase or
    refused the one it got, up to :data:`~keys.gpg.passphrase.MAX_TRIES` times;
    the passphrase that worked is kept for the keyring's later operations (the
    streaming ones, which cannot be run twice, use it).
    """

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
        if not secret:
            params.append("%no-protection")
        params.append("%commit")
        # The parameters on stdin; the passphrase on its own pipe (loopback): gpg-agent
        # never tries a pinentry, which fails off a terminal.
        proc = self._run(
            ["--gen-key"],
            stdin=("\n".join(params) + "\n").encode(),
            secret=True,
            passphrase=secret or None,
        )
        stderr = proc.stderr.decode("utf-8", "replace")
        created = [v.split() for v in status_values(stderr, "KEY_CREATED")]
        if proc.returncode != 0 or not created or len(created[-1]) < 2:
            raise KeyMaterialError(f"key generation failed: {gpg_message(stderr)}")
        return created[-1][1]

    def export_public(self, addr_or_fpr: str) -> str:
        """The public key, ASCII-armored (``-----BEGIN PGP PUBLIC KEY BLOCK-----``)."""
        fpr = self.key_for(addr_or_fpr, only=True).fingerprint  # one key: not the keyring
        proc = self._run(["--export", "--armor", "--", fpr])  # no python-gnupg handle for it
        armored = proc.stdout.decode("ascii", "replace") if proc.returncode == 0 else ""
        if not armored:
            raise KeyMaterialError(f"cannot export {fpr}: {gpg_message(proc.stderr)}")
        return armored

    def import_keys(self, data: bytes, *, secret: bool = False) -> list[str]:
        """Import OpenPGP keys (armored or binary); returns the fingerprints imported.
        Secret keys only with ``secret`` (else SecretKeyRefused, nothing imported)."""
        facts = check_before_import(data, secret=secret)
        result = self._gpg.import_keys(data, extra_args=["--import-options", "import-clean"])
        self.forget_listing()
        fprs = list(dict.fromkeys(str(f) for f in result.fingerprints if f))
        if not fprs:
            raise nothing_imported(facts, ".".join(map(str, self._gpg.version or ())))
        return fprs

    def trust(self, addr_or_fpr: str) -> str:
        """Certify the key locally with your own key (``lsign``) so that it is fully valid."""
        key = self.key_for(addr_or_fpr)
        require_usable(key)
        if key.has_secret and key.validity == "ultimate":
            return key.fingerprint
        own = [
            k for k in self._listing(secret=True) if "C" in k.capabilities or "c" in k.capabilities
        ]
        own = [k for k in own if k.info.validity not in ("expired", "revoked")]
        if not own:
            raise NotFoundError(
                "no identity of your own to certify the key with",
                hint="certmail init --email ADDR --name NAME",
            )
        signer = own[0].info.fingerprint

        def lsign(passphrase: str | None) -> None:
            proc = self._run(
                ["--local-user", signer, "--quick-lsign-key", key.fingerprint],
                secret=True,
                passphrase=passphrase,
            )
            if proc.returncode != 0:
                stderr = proc.stderr.decode("utf-8", "replace")
                raise_for_passphrase(stderr)
                raise KeyMaterialError(f"cannot certify {key.fingerprint}: {gpg_message(stderr)}")

        self._unlocked(lsign, signer)
        self._run(["--check-trustdb"])
        return key.fingerprint

    # -- signatures ------------------------------------------------------------

    def _sign_result(self, result: Any) -> tuple[bytes, str]:
        if not result.fingerprint or result.returncode not in (0, None):
            raise KeyMaterialError(
                f"signing failed: {result.status or gpg_message(result.stderr)}",
                hint="certmail keys list --secret",
            )
        micalg = MICALG.get(str(result.hash_algo))
        if micalg is None:
            raise KeyMaterialError(f"gpg used an unknown hash algorithm {result.hash_algo}")
        data = result.data
        return (data if isinstance(data, bytes) else str(data).encode()), micalg

    def _sign_stream(self, open_data: Callable[[], IO[bytes]], signer: str) -> tuple[bytes, str]:
        """A detached signature over what ``open_data()`` reads (opened again for each try)."""
        fpr = self._resolve_signer(signer)

        def sign(passphrase: str | None) -> tuple[bytes, str]:
            with open_data() as f:
                result = self._gpg.sign_file(
                    f,
                    keyid=fpr,
                    passphrase=passphrase,
                    clearsign=False,
                    detach=True,
                    extra_args=self._secret_args(passphrase),
                )
            if not result.fingerprint:
                raise_for_passphrase(result.stderr or "")
            return self._sign_result(result)

        return self._unlocked(sign, fpr)

    def sign_detached(self, data: bytes, signer: str) -> tuple[bytes, str]:
        """An ASCII-armored detached signature over ``data`` and its RFC 3156 micalg."""
        return self._sign_stream(lambda: io.BytesIO(data), signer)

    def sign_detached_file(self, path: Path, signer: str) -> tuple[bytes, str]:
        """Like :meth:`sign_detached`, streaming the data from ``path``."""
        return self._sign_stream(lambda: open(path, "rb"), signer)

    def verify_detached(self, data: bytes, signature: bytes) -> SignatureInfo:
        """Verify a detached signature over ``data``; raise VerificationError if it fails."""
        with tempfile.NamedTemporaryFile(prefix="certmail-sig-", delete=False) as sig:
            sig.write(signature)
        try:
            result = self._gpg.verify_data(sig.name, data)
        finally:
            os.unlink(sig.name)
        return signature_info(result)

    def verify_detached_stream(self, data: _Readable, signature: bytes) -> SignatureInfo:
        """Like :meth:`verify_detached`; the data is read from ``data`` (a file object,
        e.g. a range of a file) into gpg's stdin as it hashes, never held whole."""
        with tempfile.NamedTemporaryFile(prefix="certmail-sig-", delete=False) as sig:
            sig.write(signature)
        try:
            result = self._gpg_io(["--verify", sig.name, "-"], data, "verify")
        finally:
            os.unlink(sig.name)
        return signature_info(result)

    def verify_detached_at(self, fd: int, offset: int, signature: bytes) -> SignatureInfo:
        """Like :meth:`verify_detached`; the data is the file ``fd`` from ``offset`` to its
        end, which gpg reads itself (its stdin; nothing passes through Python)."""
        with tempfile.NamedTemporaryFile(prefix="certmail-sig-", delete=False) as sig:
            sig.write(signature)
        data = os.dup(fd)  # the same open file: gpg's reading moves only what pread ignores
        try:
            os.lseek(data, offset, os.SEEK_SET)
            run = self.spawn(["--verify", sig.name, "-"], stdin=data, stdout=subprocess.DEVNULL)
            os.close(data)
            data = -1
            code, stderr, _ = run.wait()
        finally:
            if data >= 0:
                os.close(data)
            os.unlink(sig.name)
        return signature_info(self._status_result("verify", stderr, code))

    def _status_result(self, kind: str, stderr: str, code: int) -> Any:
        """python-gnupg's result of ``kind`` for a gpg run of ours, read from its status
        lines as python-gnupg reads them (so :func:`signature_info` judges it alike)."""
        result = self._gpg.result_map[kind](self._gpg)
        for line in stderr.splitlines():
            line = line.rstrip()
            if line[0:9] == "[GNUPG:] ":
                words = line[9:].split(None, 1)
                if words:
                    result.handle_status(words[0], words[1] if len(words) > 1 else "")
        result.stderr = stderr
        result.returncode = code
        return result

    def _gpg_io(
        self, args: list[str], data: _Readable, kind: str, passphrase: str | None = None
    ) -> Any:
        """python-gnupg's run of ``gpg args`` with ``data`` copied to its stdin (what its
        ``decrypt_file`` and ``verify_data`` do), the result of ``kind`` ("crypt",
        "verify"). gpg stopping before it read everything (a broken pipe) is not an
        error here: its status lines, in the result, say why it stopped."""
        result = self._gpg.result_map[kind](self._gpg)
        try:
            self._gpg._handle_io(args, data, result, passphrase=passphrase, binary=True)
        except BrokenPipeError:
            pass
        return result

    def verify_detached_file(self, path: Path, signature: bytes) -> SignatureInfo:
        """Like :meth:`verify_detached`; gpg reads the data from ``path`` itself."""
        if not Path(path).is_file():
            raise NotFoundError(f"no such file: {path}")
        with io.BytesIO(signature) as sig:
            result = self._gpg.verify_file(sig, data_filename=str(path), close_file=False)
        return signature_info(result)

    # -- encryption ------------------------------------------------------------

    def _encrypt(
        self,
        src: Path,
        dst: Path,
        recipients: Sequence[str],
        signer: str | None,
        armor: bool,
        compress: bool = True,
    ) -> None:
        fprs = self._check_recipients(recipients)
        sign = self._resolve_signer(signer) if signer else None

        def encrypt(passphrase: str | None) -> None:
            with atomic_output(dst) as tmp, open(src, "rb") as f:
                extra = ["--yes"] + (self._secret_args(passphrase) if sign else [])
                if not compress:
                    extra += ["--compress-algo", "none"]
                result = self._gpg.encrypt_file(
                    f,
                    fprs,
                    sign=sign,
                    always_trust=False,
                    passphrase=passphrase if sign else None,
                    armor=armor,
                    output=str(tmp),
                    extra_args=extra,
                )
                if not result.ok or result.returncode != 0:
                    check_recipients_accepted(result.stderr)
                    if sign:
                        raise_for_passphrase(result.stderr or "")
                    if status_values(result.stderr, "INV_SGNR"):
                        raise KeyMaterialError(
                            f"cannot sign with {sign}",
                            hint="certmail init --email ADDR --name NAME",
                        )
                    raise KeyMaterialError(
                        f"encryption failed: {result.status or gpg_message(result.stderr)}"
                    )

        if sign is None:
            encrypt(None)
        else:
            self._unlocked(encrypt, sign)

    def encrypt_file(
        self,
        src: Path,
        dst: Path,
        recipients: Sequence[str],
        *,
        armor: bool = True,
        compress: bool = True,
    ) -> None:
        """Encrypt ``src`` to ``dst`` for valid recipient keys (fingerprints), streaming.

        ``compress=False`` (``--compress-algo none``) skips gpg's compression:
        base64 text or already-compressed data gains little and costs most of
        the time of a large encryption.
        """
        self._encrypt(src, dst, recipients, None, armor, compress)

    def sign_encrypt_file(
        self,
        src: Path,
        dst: Path,
        recipients: Sequence[str],
        signer: str,
        *,
        armor: bool = True,
        compress: bool = True,
    ) -> None:
        """Sign with ``signer`` and encrypt in one OpenPGP message, streaming."""
        self._encrypt(src, dst, recipients, signer, armor, compress)

    def decrypt_file(self, src: Path, dst: Path) -> SignatureInfo | None:
        """Decrypt ``src`` to ``dst``; verify and return the signature if it was signed.

        ``dst`` appears only when decryption (and any signature) succeeded.
        """
        src = Path(src)
        if not src.is_file():
            raise NotFoundError(f"no such file: {src}")
        return self.decrypt_stream(lambda: open(src, "rb"), dst)

    def decrypt_stream(self, source: Callable[[], _Readable], dst: Path) -> SignatureInfo | None:
        """:meth:`decrypt_file` of the bytes ``source()`` reads (a file object, closed
        here; asked again if the key had to be unlocked): gpg is fed from it through a
        pipe, so a ciphertext made on the fly (e.g. taken out of its armor) is never
        written to a file. An exception raised by its ``read`` is raised here."""
        return self._unlocked(lambda passphrase: self._decrypt_once(source, dst, passphrase))

    def _decrypt_once(
        self, source: Callable[[], _Readable], dst: Path, passphrase: str | None
    ) -> SignatureInfo | None:
        with atomic_output(dst) as tmp, source() as f:
            if passphrase and not self._gpg.is_valid_passphrase(passphrase):
                raise ValueError("Invalid passphrase")  # as python-gnupg's decrypt_file
            args = ["--decrypt", "--yes", "--output", str(tmp), *self._secret_args(passphrase)]
            result = self._gpg_io(args, f, "crypt", passphrase)
            stderr = getattr(result, "stderr", None) or ""
            if not result.ok or result.returncode not in (0, 2):
                check_secret_key_used(stderr)
                if status_values(stderr, "BADSIG"):
                    raise VerificationError(
                        "BAD signature: the data or the signature was modified",
                    )
                if status_values(stderr, "BEGIN_DECRYPTION"):
                    raise MalformedError(
                        "decryption failed: the message is truncated or was modified",
                    )
                raise MalformedError(
                    f"not an OpenPGP encrypted message ({result.status or gpg_message(stderr)})",
                )
            signed = any(status_values(stderr, kw) for kw in SIG_STATUS)
            info = signature_info(result) if signed else None
            if result.returncode != 0 and info is None:
                raise MalformedError(f"decryption failed: {gpg_message(stderr)}")
        return info

    # -- before forking workers --------------------------------------------------

    def ensure_agent(self) -> None:
        """Have this home's gpg-agent running before processes that share it start
        (e.g. a campaign's forked workers): their racing autostarts are avoided."""
        launch_agent(self.gnupghome)

    # -- before a streaming decryption -------------------------------------------

    def unlock_decryption(self, fpr: str) -> None:
        """Make sure the own key ``fpr`` can decrypt (asking for its passphrase if needed)
        before a streaming decryption: a few bytes are encrypted to it and decrypted."""
        with tempfile.TemporaryDirectory(prefix="certmail-unlock-") as tmp:
            plain, sealed, out = Path(tmp, "p"), Path(tmp, "c"), Path(tmp, "o")
            plain.write_bytes(b"certmail\n")
            self.encrypt_file(plain, sealed, [fpr], armor=False)

            def probe(passphrase: str | None) -> None:
                self._decrypt_once(lambda: open(sealed, "rb"), out, passphrase)

            self._unlocked(probe, fpr)
