"""The send-side self-check (DESIGN §5): the bytes written are decrypted and verified
before they may leave, while the inner entity streams into gpg.

The ciphertext is tampered with between gpg and the message file (one flipped
byte in gpg's output, so the armor, its CRC-24 and the file all carry it): the
check must refuse the message. Both ways of armoring are covered: certmail's
own (GNU base64) and gpg's (``CERTMAIL_REFERENCE_ONLY=1``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import certmail.seal as seal_module
from certmail.compose import Headers, ScanRecord
from certmail.pipeline import EncryptPipeline, GpgOptions
from certmail.seal import Sealed, seal
from certmail.unseal import check_manifest, unseal
from keys.errors import Error, MalformedError, NotFoundError
from keys.gpg import Keyring
from tests.fixtures.tamper import tamper_stream

ALICE = "alice@example.org"
BOB = "bob@example.net"


@pytest.fixture
def pair(keyring_factory: Callable[[str, str], tuple[Keyring, str]]) -> tuple[Keyring, Keyring]:
    alice, _ = keyring_factory(ALICE, "Alice")
    bob, _ = keyring_factory(BOB, "Bob")
    for me, other, addr in ((alice, bob, BOB), (bob, alice, ALICE)):
        me.import_keys(other.export_public(addr).encode())
        me.trust(addr)
    return alice, bob


@pytest.fixture(params=["fast", "reference"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "reference":
        monkeypatch.setenv("CERTMAIL_REFERENCE_ONLY", "1")
    else:
        monkeypatch.delenv("CERTMAIL_REFERENCE_ONLY", raising=False)
    return str(request.param)


def _headers() -> Headers:
    return Headers(ALICE, (BOB,), "the deal", "<m1@example.org>", "Mon, 01 Jan 2024 00:00:00 +0000")


def _attachment(tmp_path: Path, size: int = 200_000) -> Path:
    f = tmp_path / "deal.bin"
    f.write_bytes(os.urandom(size))
    return f


def _seal_attached(alice: Keyring, tmp_path: Path, f: Path, combined: bool) -> Sealed:
    """Alice seals "Hello Bob" with ``f`` attached (scanned clean) in the layout asked."""
    return seal(
        alice,
        tmp_path / "w",
        _headers(),
        b"Hello Bob\n",
        [(f, ScanRecord("clean"))],
        gpg=GpgOptions(combined=combined),
    )


class TamperingPipeline(EncryptPipeline):
    """The real pipeline with one byte of gpg's ciphertext flipped on its way out."""

    at = 20_000  # well inside the encrypted data packet

    def _start(self) -> None:
        super()._start()
        assert self.enc is not None and self.enc.stdout is not None
        self.enc.proc.stdout = tamper_stream(
            self.enc.stdout, self.at, lambda c: bytes([c[0] ^ 0x01])
        )


#: RFC 3156 §6.2 (combined; certmail send and campaigns) and §6.1 (multipart/signed
#: inside; other senders, and certmail send before issue 16).
LAYOUTS = pytest.mark.parametrize("combined", [False, True], ids=["rfc3156-6.1", "rfc3156-6.2"])


@LAYOUTS
def test_streamed_send_roundtrips(
    pair: tuple[Keyring, Keyring], tmp_path: Path, mode: str, combined: bool
) -> None:
    alice, bob = pair
    f = _attachment(tmp_path, 3_000_001)  # not a multiple of 57: a short last base64 line
    s = _seal_attached(alice, tmp_path, f, combined)
    assert s.manifest.attachments[0].size == 3_000_001
    assert not (tmp_path / "w" / "message.unsigned").exists()
    # §6.2 writes no copy of the inner entity: the message file is the only one
    assert (tmp_path / "w" / "inner.mime").exists() is not combined
    u = unseal(bob, s.path.read_bytes(), tmp_path / "o")
    check_manifest(u)
    assert u.signature is not None and u.signature.signer_email == ALICE
    assert [p.data for p in u.parts if p.filename == "deal.bin"] == [f.read_bytes()]


def test_unsigned_encrypted_send_writes_no_inner_file(
    pair: tuple[Keyring, Keyring], tmp_path: Path, mode: str
) -> None:
    """``--no-sign``: encrypted only, still checked by decrypting; no copy of the inner
    entity on disk (only a §6.1 detached signature was ever checked over one)."""
    alice, bob = pair
    f = _attachment(tmp_path)
    s = seal(
        alice, tmp_path / "w", _headers(), b"Hello Bob\n", [(f, ScanRecord("clean"))], sign=False
    )
    assert s.encrypted and not s.signed
    assert not (tmp_path / "w" / "inner.mime").exists()
    u = unseal(bob, s.path.read_bytes(), tmp_path / "o", allow_unsigned=True)
    assert u.signature is None
    assert [p.data for p in u.parts if p.filename == "deal.bin"] == [f.read_bytes()]


@LAYOUTS
def test_tampered_ciphertext_is_refused(
    pair: tuple[Keyring, Keyring],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    combined: bool,
) -> None:
    alice, _ = pair
    monkeypatch.setattr(seal_module, "EncryptPipeline", TamperingPipeline)
    f = _attachment(tmp_path)
    with pytest.raises(Error, match="refusing to send: the finished message did not re-verify"):
        _seal_attached(alice, tmp_path, f, combined)
    assert not (tmp_path / "w" / "message.eml").exists()


A = "A" * 40
S = "5" * 40
B = "B" * 40


@pytest.mark.parametrize(
    ("status", "problem"),
    [
        (f"[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG {S[-16:]} a\n[GNUPG:] VALIDSIG {S} x {A}\n", None),
        (f"[GNUPG:] GOODSIG {A[-16:]} a\n[GNUPG:] VALIDSIG {A} x {A}\n", None),
        ("[GNUPG:] DECRYPTION_OKAY\n", "expected one good signature"),
        (f"[GNUPG:] GOODSIG {B[-16:]} b\n[GNUPG:] VALIDSIG {B} x {B}\n", "not by"),
        (f"[GNUPG:] BADSIG {A[-16:]} a\n", "did not verify"),
        (f"[GNUPG:] ERRSIG {A[-16:]} 22 10 00 0 9\n[GNUPG:] NO_PUBKEY {A[-16:]}\n", "did not"),
        (
            f"[GNUPG:] GOODSIG {A[-16:]} a\n[GNUPG:] VALIDSIG {A} x {A}\n" * 2,
            "expected one good signature",
        ),
    ],
    ids=["subkey", "primary", "unsigned", "other-key", "bad", "unknown-key", "two"],
)
def test_the_combined_check_wants_one_good_signature_by_the_signer(
    status: str, problem: str | None
) -> None:
    """§6.2's re-check: the decryption's status lines must show exactly one good
    signature by the sender's key (primary or subkey); anything else refuses."""
    from keys.errors import VerificationError
    from keys.gpg.status import check_signed_by

    if problem is None:
        check_signed_by(status, A)
    else:
        with pytest.raises(VerificationError, match=problem):
            check_signed_by(status, A)


def test_compose_errors_surface_as_they_are(pair: tuple[Keyring, Keyring], tmp_path: Path) -> None:
    """A bad input found while composing into gpg is that error, not a failed check."""
    alice, _ = pair
    missing = tmp_path / "gone.bin"
    with pytest.raises(NotFoundError, match="no such file"):
        seal(alice, tmp_path / "w1", _headers(), b"hi\n", [(missing, ScanRecord("clean"))])
    with pytest.raises(MalformedError, match="not UTF-8"):
        seal(alice, tmp_path / "w2", _headers(), b"\xff\xfe", [])


def _sealer(alice: Keyring, tmp_path: Path) -> Any:
    from certmail.signer import Sealer
    from keys.dkim import generate_dkim_key

    generate_dkim_key(tmp_path / "dkim", "example.org", "sel", "ed25519")
    return Sealer(lambda: alice, tmp_path / "dkim")


def _seal_with(sealer: Any, tmp_path: Path) -> Any:
    f = _attachment(tmp_path, 500_000)
    return sealer.seal(
        tmp_path / "w",
        _headers(),
        b"Hello Bob\n",
        [(f, ScanRecord("clean"))],
        notary_url=None,
        sign=True,
        encrypt=True,
        request_mdn=False,
        progress=None,
    )


def test_dkim_signed_sha256_is_of_the_checked_file(
    pair: tuple[Keyring, Keyring], tmp_path: Path
) -> None:
    """The SHA-256 taken in the DKIM check's pass is the stored file's; the file verifies."""
    import hashlib

    from keys.dkim import dkim_verify_file, dns_record, find_dkim_key

    sealer = _sealer(pair[0], tmp_path)
    s = _seal_with(sealer, tmp_path)
    raw = s.path.read_bytes()
    assert raw.startswith(b"DKIM-Signature: ")
    assert s.sha256 == hashlib.sha256(raw).hexdigest() and s.size == len(raw)
    key = find_dkim_key(tmp_path / "dkim", "example.org")
    assert key is not None
    _, record = dns_record(key)
    dkim_verify_file(s.path, dnsfunc=lambda q: record.encode())


def test_bad_dkim_signature_is_refused(pair: tuple[Keyring, Keyring], tmp_path: Path) -> None:
    """A DKIM-Signature whose body hash is not of the body: the check refuses the message."""
    sealer = _sealer(pair[0], tmp_path)
    sign = sealer.dkim_hashed("example.org")
    assert sign is not None
    sealer.dkim_hashed = lambda domain: lambda head, bh: sign(head, bytes(32))
    with pytest.raises(Error, match="refusing to send: the DKIM signature does not verify"):
        _seal_with(sealer, tmp_path)


def test_dkim_hash_taken_while_writing_equals_the_files(
    pair: tuple[Keyring, Keyring], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The body hash taken as the message is written is the one of the stored body
    (after the probe with a dummy body hash that sizes the field's room)."""
    from keys.dkim_body import body_hash_file

    monkeypatch.delenv("CERTMAIL_REFERENCE_ONLY", raising=False)
    sealer = _sealer(pair[0], tmp_path)
    seen: list[tuple[bytes, bytes]] = []
    sign = sealer.dkim_hashed("example.org")
    assert sign is not None

    def recording(head: bytes, bh: bytes) -> bytes:
        seen.append((head, bh))
        return bytes(sign(head, bh))

    sealer.dkim_hashed = lambda domain: recording
    s = _seal_with(sealer, tmp_path)
    raw = s.path.read_bytes()
    head, bh = body_hash_file(s.path)
    prefix_end = raw.index(b"\r\nFrom: ") + 2  # the DKIM-Signature field(s) come first
    assert seen == [(head[prefix_end:], bytes(32)), (head[prefix_end:], bh)]


def _check_dkim_file(s: Sealed, tmp_path: Path) -> None:
    import hashlib

    from keys.dkim import dkim_verify_file, dns_record, find_dkim_key

    raw = s.path.read_bytes()
    assert raw.startswith(b"DKIM-Signature: ")
    assert s.sha256 == hashlib.sha256(raw).hexdigest() and s.size == len(raw)
    key = find_dkim_key(tmp_path / "dkim", "example.org")
    assert key is not None
    dkim_verify_file(s.path, dnsfunc=lambda q: dns_record(key)[1].encode())


@pytest.mark.parametrize("reference", [False, True])
def test_dkim_field_written_in_place(
    pair: tuple[Keyring, Keyring],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reference: bool,
) -> None:
    """The message is written behind room for its DKIM-Signature field, which then
    fills it: the message is not copied (``CERTMAIL_REFERENCE_ONLY``: it is)."""
    copies: list[int] = []
    real = seal_module.copy_file

    def counting(src: Any, dst: Any) -> None:
        copies.append(1)
        real(src, dst)

    monkeypatch.setattr(seal_module, "copy_file", counting)
    if reference:
        monkeypatch.setenv("CERTMAIL_REFERENCE_ONLY", "1")
    else:
        monkeypatch.delenv("CERTMAIL_REFERENCE_ONLY", raising=False)
    s = _seal_with(_sealer(pair[0], tmp_path), tmp_path)
    assert copies == ([1] if reference else [])
    _check_dkim_file(s, tmp_path)
    with open(s.path, "rb") as f:
        assert b"\0" not in f.read(4096)


def test_dkim_field_longer_than_its_room_is_copied(
    pair: tuple[Keyring, Keyring], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A field that does not fit the room sized by the probe: the message is copied
    behind it, still exact (the stored bytes are the ones hashed and verified)."""
    monkeypatch.delenv("CERTMAIL_REFERENCE_ONLY", raising=False)
    sealer = _sealer(pair[0], tmp_path)
    sign = sealer.dkim_hashed("example.org")
    assert sign is not None

    def uneven(head: bytes, bh: bytes) -> bytes:
        return b"X-Probe: 1\r\n" if bh == bytes(32) else bytes(sign(head, bh))

    sealer.dkim_hashed = lambda domain: uneven
    _check_dkim_file(_seal_with(sealer, tmp_path), tmp_path)


@pytest.mark.parametrize(("external", "small", "starts"), [
    (True, 0, True), (False, 0, False), (True, None, False)])  # fmt: skip
def test_sealer_external_base64_switch(
    pair: tuple[Keyring, Keyring],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    external: bool,
    small: int | None,
    starts: bool,
) -> None:
    """``Sealer(gpg=GpgOptions(external_base64=False))`` (a small campaign) seals without
    starting GNU base64; the default starts it for a message of SMALL_MESSAGE bytes and
    more (here the limit is 0), and not for a smaller one (the limit as it is). All the
    messages open for Bob."""
    import certmail.compose as compose_module
    import certmail.pipeline as pipeline_module
    import certmail.signer as signer_module

    if small is not None:
        monkeypatch.setattr(signer_module, "SMALL_MESSAGE", small)

    monkeypatch.delenv("CERTMAIL_REFERENCE_ONLY", raising=False)
    started: list[tuple[str, ...]] = []
    real = compose_module.base64_argv

    def counting(tool: str, *args: str) -> Any:
        started.append(args)
        return real(tool, *args)

    monkeypatch.setattr(compose_module, "base64_argv", counting)
    monkeypatch.setattr(pipeline_module, "base64_argv", counting)
    sealer = _sealer(pair[0], tmp_path)
    sealer.gpg = GpgOptions(external_base64=external)
    s = _seal_with(sealer, tmp_path)
    assert bool(started) is starts
    u = unseal(pair[1], s.path.read_bytes(), tmp_path / "o")
    check_manifest(u)
    assert u.signature is not None and u.signature.signer_email == ALICE
