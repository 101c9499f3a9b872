"""C2SP tlog-checkpoints, and the checkpoint key file (keys.checkpoint_key)."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keys.checkpoint_key import generate_checkpoint_key, load_checkpoint_key
from keys.errors import ConflictError, KeyMaterialError
from notary.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from notary.errors import MalformedError, VerificationError
from notary.note import Signer, Verifier, sign_note

# The example of c2sp.org/tlog-checkpoint (note text only; the spec publishes no key).
SPEC_TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"

ROOT = bytes(range(32))


def test_spec_example_parses_and_round_trips() -> None:
    cp = Checkpoint.from_text(SPEC_TEXT)
    assert cp.origin == "example.com/behind-the-sofa"
    assert cp.size == 20852163
    assert cp.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.extensions == ()
    assert cp.to_text() == SPEC_TEXT


def test_extensions_round_trip() -> None:
    cp = Checkpoint("log.example", 0, ROOT, ("ext one", "ext two"))
    assert Checkpoint.from_text(cp.to_text()) == cp


def test_sign_and_open() -> None:
    signer = Signer.generate("notary.example/log")
    cp = Checkpoint("notary.example/log", 7, ROOT)
    note = sign_checkpoint(cp, signer)
    assert note.startswith(cp.to_text().encode() + b"\n\xe2\x80\x94 notary.example/log ")
    assert open_checkpoint(note, signer.verifier()) == cp
    # The vkey text a client would be given works the same.
    assert open_checkpoint(note, Verifier.from_vkey(signer.verifier().vkey())) == cp


def test_sign_requires_key_name_equal_origin() -> None:
    with pytest.raises(ValueError):
        sign_checkpoint(Checkpoint("a.example", 1, ROOT), Signer.generate("b.example"))


def test_open_rejects_other_key() -> None:
    cp = Checkpoint("notary.example/log", 7, ROOT)
    note = sign_checkpoint(cp, Signer.generate("notary.example/log"))
    with pytest.raises(VerificationError):
        open_checkpoint(note, Signer.generate("notary.example/log").verifier())


def test_open_rejects_modified_checkpoint() -> None:
    signer = Signer.generate("notary.example/log")
    note = sign_checkpoint(Checkpoint("notary.example/log", 7, ROOT), signer)
    with pytest.raises(VerificationError):
        open_checkpoint(note.replace(b"\n7\n", b"\n8\n"), signer.verifier())


def test_open_rejects_origin_other_than_key_name() -> None:
    # A note validly signed by the key, but whose origin line names another log.
    signer = Signer.generate("notary.example/log")
    text = Checkpoint("other.example/log", 7, ROOT).to_text()
    note = sign_note(text, signer)
    with pytest.raises(VerificationError, match="origin"):
        open_checkpoint(note, signer.verifier())


@pytest.mark.parametrize(
    "text",
    [
        "",
        "log\n1\n",
        "log\n1\n" + base64.b64encode(ROOT).decode(),  # no final newline
        "\n1\n" + base64.b64encode(ROOT).decode() + "\n",  # empty origin
        "log\n01\n" + base64.b64encode(ROOT).decode() + "\n",  # leading zero
        "log\n+1\n" + base64.b64encode(ROOT).decode() + "\n",
        "log\n-1\n" + base64.b64encode(ROOT).decode() + "\n",
        "log\n1_0\n" + base64.b64encode(ROOT).decode() + "\n",
        "log\n\u0661\n" + base64.b64encode(ROOT).decode() + "\n",  # Arabic-Indic digit
        "log\n9223372036854775808\n" + base64.b64encode(ROOT).decode() + "\n",  # > 2**63-1
        "log\n1\n" + base64.b64encode(ROOT[:31]).decode() + "\n",  # 31-byte root
        "log\n1\n" + base64.b64encode(ROOT).decode().rstrip("=") + "\n",  # unpadded
        "log\n1\n" + base64.b64encode(ROOT).decode() + "\n\n",  # empty extension
        "log\n1\n" + base64.b64encode(ROOT).decode() + "\next\x00\n",
    ],
)
def test_malformed_checkpoints(text: str) -> None:
    with pytest.raises(MalformedError):
        Checkpoint.from_text(text)


@given(st.text(max_size=200))
def test_from_text_arbitrary(text: str) -> None:
    try:
        Checkpoint.from_text(text)
    except MalformedError:
        pass


@given(st.binary(max_size=400))
def test_open_checkpoint_arbitrary_bytes(data: bytes) -> None:
    v = Signer.generate("log.example").verifier()
    try:
        open_checkpoint(data, v)
    except VerificationError:
        pass


@given(st.data())
def test_open_checkpoint_mutated(data: st.DataObject) -> None:
    signer = Signer.from_skey(
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
    )
    raw = bytearray(sign_checkpoint(Checkpoint("PeterNeumann", 5, ROOT, ("x",)), signer))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(VerificationError):
        open_checkpoint(bytes(raw), signer.verifier())


# --- the checkpoint key file ------------------------------------------------------------------


def test_generate_and_load_checkpoint_key(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.key"
    key = generate_checkpoint_key(path, "notary.example/log")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == key.skey() + "\n"
    loaded = load_checkpoint_key(path)
    assert loaded.skey() == key.skey()
    signer = Signer.from_key(loaded)
    assert signer.name == "notary.example/log"
    assert signer.verifier().vkey() == key.vkey()
    cp = Checkpoint("notary.example/log", 1, ROOT)
    assert open_checkpoint(sign_checkpoint(cp, signer), Verifier.from_vkey(key.vkey())) == cp


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.key"
    key = generate_checkpoint_key(path, "notary.example/log")
    with pytest.raises(ConflictError):
        generate_checkpoint_key(path, "notary.example/log")
    assert load_checkpoint_key(path).skey() == key.skey()


def test_generate_rejects_bad_origin(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError):
        generate_checkpoint_key(tmp_path / "k", "has space")
    assert not (tmp_path / "k").exists()


def test_load_missing_key(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match="does not exist") as e:
        load_checkpoint_key(tmp_path / "nope.key")
    assert e.value.hint


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"garbage\n",
        b"\xff\xfe",
        b"PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz\n",
        b"A" * 10000,
    ],
)
def test_load_malformed_key(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    with pytest.raises(KeyMaterialError):
        load_checkpoint_key(path)


def test_load_go_skey_file(tmp_path: Path) -> None:
    skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
    path = tmp_path / "go.key"
    path.write_text(skey + "\n")
    key = load_checkpoint_key(path)
    assert key.vkey() == "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
