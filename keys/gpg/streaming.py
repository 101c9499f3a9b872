"""Streaming keyring operations: data through file descriptors, not Python buffers.

The send and open pipelines (:mod:`certmail.pipeline`) start gpg with a
``start_*`` method, connect its pipes, and check the outcome with the
matching ``finish_*`` method. A streaming run cannot be repeated, so the key
is unlocked before (:meth:`StreamingKeyring.micalg`,
:meth:`keys.gpg.Keyring.unlock_decryption`). Import
:class:`~keys.gpg.Keyring` from :mod:`keys.gpg`.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from keys.errors import KeyMaterialError, MalformedError
from keys.gpg.base import KeyringBase
from keys.gpg.passphrase import Ask, check_secret_key_used, raise_for_passphrase
from keys.gpg.process import GpgProcess
from keys.gpg.status import (
    check_recipients_accepted,
    check_signed_by,
    gpg_message,
    signature_micalg,
    status_values,
)

__all__ = ["StreamingKeyring"]


class StreamingKeyring(KeyringBase):
    """The start/finish operations of a keyring (see the module docstring)."""

    def __init__(
        self, gnupghome: Path, *, passphrase: str | None = None, ask: Ask | None = None
    ) -> None:
        super().__init__(gnupghome, passphrase=passphrase, ask=ask)
        #: micalg by signing-key fingerprint: one probe per key and keyring.
        self._micalg_of = functools.cache(self._probe_micalg)

    def spawn(
        self,
        args: Sequence[str],
        *,
        stdin: int | IO[bytes] | None = None,
        stdout: int | IO[bytes] | None = None,
        secret: bool = False,
        collect_stdout: bool = False,
        passphrase: str | None = None,
    ) -> GpgProcess:
        """Start gpg on this keyring with ``args``; ``secret``: it uses the secret key
        (unlocked with ``passphrase``, default :attr:`passphrase`). Streaming runs
        cannot be repeated: unlock the key first (:meth:`micalg`,
        :meth:`unlock_decryption`), which asks for the passphrase when needed."""
        return GpgProcess.start(
            self.gnupghome,
            args,
            stdin=stdin,
            stdout=stdout,
            passphrase=(passphrase if passphrase is not None else self.passphrase)
            if secret
            else None,
            secret=secret,
            collect_stdout=collect_stdout,
        )

    def micalg(self, signer: str) -> str:
        """The RFC 3156 micalg gpg will use for detached signatures by ``signer``.

        gpg picks the digest from the key and the preferences; a one-time probe
        (an empty signature) tells which, before any data is signed, so that the
        ``multipart/signed`` header can be written ahead of the signature. The
        probe's answer is kept per keyring and signing key.
        """
        return self._micalg_of(self._resolve_signer(signer))

    def _probe_micalg(self, fpr: str) -> str:
        def probe(passphrase: str | None) -> str:
            run = self.spawn(
                ["--local-user", fpr, "--detach-sign", "--armor"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                secret=True,
                collect_stdout=True,
                passphrase=passphrase,
            )
            code, stderr, _ = run.wait()
            if code != 0:
                raise_for_passphrase(stderr)
            return signature_micalg(code, stderr)

        return self._unlocked(probe, fpr)

    def start_sign_detached(self, src: IO[bytes] | int, signer: str) -> GpgProcess:
        """Start an armored detached signature over ``src`` (gpg reads the file itself)."""
        fpr = self._resolve_signer(signer)
        return self.spawn(
            ["--local-user", fpr, "--detach-sign", "--armor"],
            stdin=src,
            stdout=subprocess.PIPE,
            secret=True,
            collect_stdout=True,
        )

    def finish_sign_detached(self, run: GpgProcess) -> tuple[bytes, str]:
        """The signature and its micalg once :meth:`start_sign_detached` is done."""
        code, stderr, out = run.wait()
        if code != 0:
            raise_for_passphrase(stderr)
        return out, signature_micalg(code, stderr)

    def start_encrypt(
        self,
        recipients: Sequence[str],
        *,
        armor: bool = True,
        compress: bool = True,
        compress_level: int | None = None,
        stdout: int | IO[bytes] | None = None,
        signer: str | None = None,
        digests: str | None = None,
    ) -> GpgProcess:
        """Start encrypting stdin (a pipe) to valid recipient keys; ciphertext on ``stdout``.

        ``compress_level`` (1-9) is gpg's ``-z`` when compressing (default: gpg's).
        ``signer``: the same gpg run signs the data too (one OpenPGP message, signed
        then encrypted: RFC 3156 §6.2); unlock the key first (:meth:`micalg`).
        ``digests``: the signature's digest preferences for this run (gpg's
        ``--personal-digest-preferences``, e.g. ``"SHA256 SHA512 SHA384"``); gpg
        still picks one the key can use (a P-384 key needs at least SHA-384).
        """
        fprs = self._check_recipients(recipients)
        args = ["--trust-model", "pgp", "--encrypt"]
        if signer is not None:
            args = ["--local-user", self._resolve_signer(signer), "--sign", *args]
            if digests is not None:
                args = ["--personal-digest-preferences", digests, *args]
        for f in fprs:
            args += ["--recipient", f]
        if armor:
            args.append("--armor")
        if not compress:
            args += ["--compress-algo", "none"]
        elif compress_level is not None:
            args += ["-z", str(compress_level)]
        return self.spawn(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE if stdout is None else stdout,
            secret=signer is not None,
        )

    def finish_encrypt(self, run: GpgProcess, *, signed: bool = False) -> None:
        """Raise unless the encryption (and, ``signed``, the signature) was made."""
        code, stderr, _ = run.wait()
        if (
            code == 0
            and status_values(stderr, "END_ENCRYPTION")
            and (not signed or status_values(stderr, "SIG_CREATED"))
        ):
            return
        check_recipients_accepted(stderr)
        if signed:
            raise_for_passphrase(stderr)
        raise KeyMaterialError(f"encryption failed: {gpg_message(stderr)}")

    def start_decrypt(self, *, stdin: int | IO[bytes] | None = None) -> GpgProcess:
        """Start decrypting ``stdin`` (default: a pipe); the plaintext comes out of a pipe."""
        return self.spawn(
            ["--decrypt"],
            stdin=subprocess.PIPE if stdin is None else stdin,
            stdout=subprocess.PIPE,
            secret=True,
        )

    def finish_decrypt(self, run: GpgProcess, *, signed_by: str | None = None) -> None:
        """Raise unless the decryption succeeded with an intact integrity check.

        ``signed_by``: the plaintext must also carry exactly one signature, good,
        by that key (:func:`keys.gpg.status.check_signed_by`).
        """
        code, stderr, _ = run.wait()
        if (
            code == 0
            and status_values(stderr, "DECRYPTION_OKAY")
            and not status_values(stderr, "DECRYPTION_FAILED")
        ):
            if signed_by is not None:
                check_signed_by(stderr, self._resolve_signer(signed_by))
            return
        check_secret_key_used(stderr)
        raise MalformedError(f"decryption failed: {gpg_message(stderr)}")
