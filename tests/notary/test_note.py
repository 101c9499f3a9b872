"""C2SP signed notes: the spec's and Go's vectors, round trips, strict parsing."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notary.errors import MalformedError, VerificationError
from notary.note import (
    Signature,
    Signer,
    Verifier,
    key_id,
    open_note,
    parse_note,
    sign_note,
)

# The worked example of c2sp.org/signed-note (revision d4c16da5e7687a016619074e78dad84b2c7238cc,
# section "Example"): verifier key and signed note.
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n"
    "\u2014 example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
).encode()

# The example of golang.org/x/mod/sumdb/note (package doc and note_test.go): signer key,
# verifier keys, text and signatures. The spec publishes no signer key for example.com/foo,
# so byte-for-byte signing is checked against Go's PeterNeumann key.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)
GO_NOTE = (GO_TEXT + "\n" + PETER_SIG).encode()


# --- vectors -------------------------------------------------------------------------------


def test_spec_vkey_parses_and_round_trips() -> None:
    v = Verifier.from_vkey(SPEC_VKEY)
    assert v.name == "example.com/foo"
    assert v.key_id == bytes.fromhex("530d903a")
    assert key_id(v.name, v.public_key) == v.key_id
    assert v.vkey() == SPEC_VKEY


def test_spec_note_opens_with_spec_vkey() -> None:
    note = open_note(SPEC_NOTE, [Verifier.from_vkey(SPEC_VKEY)])
    assert note.text == "This is an example message.\n"
    assert [s.name for s in note.signatures] == ["example.com/foo"]
    assert note.to_bytes() == SPEC_NOTE


def test_go_skey_reproduces_go_signature_byte_for_byte() -> None:
    signer = Signer.from_skey(GO_SKEY)
    assert signer.name == "PeterNeumann"
    assert signer.key_id == bytes.fromhex("c74f20a3")
    assert signer.skey() == GO_SKEY
    assert signer.verifier().vkey() == GO_VKEY
    assert sign_note(GO_TEXT, signer) == GO_NOTE


def test_go_note_with_two_signers() -> None:
    both = (GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode()
    peter, enoch = Verifier.from_vkey(GO_VKEY), Verifier.from_vkey(ENOCH_VKEY)
    assert [s.name for s in open_note(both, [peter, enoch]).signatures] == [
        "PeterNeumann",
        "EnochRoot",
    ]
    # Unknown signatures are ignored.
    assert [s.name for s in open_note(both, [enoch]).signatures] == ["EnochRoot"]


# --- round trips -----------------------------------------------------------------------------


def test_generated_keys_round_trip() -> None:
    s = Signer.generate("notary.example/log")
    assert Signer.from_skey(s.skey()).skey() == s.skey()
    v = Verifier.from_vkey(s.verifier().vkey())
    assert v == s.verifier()
    assert v.key_id == s.key_id == key_id(s.name, v.public_key)


def test_sign_parse_open_round_trip_with_two_signers() -> None:
    a, b = Signer.generate("a.example"), Signer.generate("b.example")
    text = "line one\n\nline three after an empty line\n"
    data = sign_note(text, a, b)
    parsed = parse_note(data)
    assert parsed.text == text
    assert [s.name for s in parsed.signatures] == ["a.example", "b.example"]
    assert parsed.to_bytes() == data
    assert open_note(data, [b.verifier()]).text == text


# --- verification failures -------------------------------------------------------------------


def test_open_rejects_without_known_key() -> None:
    with pytest.raises(VerificationError, match="no signature by a known key"):
        open_note(GO_NOTE, [Verifier.from_vkey(ENOCH_VKEY)])
    with pytest.raises(VerificationError):
        open_note(GO_NOTE, [])


def test_open_rejects_modified_text() -> None:
    bad = GO_NOTE.replace(b"problem,", b"problem;")
    with pytest.raises(VerificationError, match="invalid signature"):
        open_note(bad, [Verifier.from_vkey(GO_VKEY)])


def test_open_rejects_if_any_known_signature_is_bad() -> None:
    good = Signer.from_skey(GO_SKEY)
    forged = Signature(good.name, good.key_id, bytes(64))
    data = (GO_TEXT + "\n" + PETER_SIG + forged.to_line()).encode()
    with pytest.raises(VerificationError):
        open_note(data, [good.verifier()])


def test_same_name_other_key_is_ignored_not_trusted() -> None:
    # A key with the same name but a different id must not be used, nor make the note verify.
    impostor = Signer.generate("PeterNeumann")
    data = sign_note(GO_TEXT, impostor)
    with pytest.raises(VerificationError):
        open_note(data, [Verifier.from_vkey(GO_VKEY)])


def test_each_signature_byte_flip_fails() -> None:
    v = Verifier.from_vkey(GO_VKEY)
    raw = base64.b64decode(PETER_SIG.split()[-1])
    for i in range(len(raw)):
        flipped = bytearray(raw)
        flipped[i] ^= 0x01
        line = "\u2014 PeterNeumann " + base64.b64encode(bytes(flipped)).decode() + "\n"
        with pytest.raises(VerificationError):
            open_note((GO_TEXT + "\n" + line).encode(), [v])


def test_verifier_verify_raises() -> None:
    s = Signer.generate("x.example")
    sig = s.sign(b"hello\n")
    s.verifier().verify(b"hello\n", sig.signature)
    with pytest.raises(VerificationError):
        s.verifier().verify(b"hellO\n", sig.signature)


# --- strict parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "vkey",
    [
        "",
        "example.com/foo",
        "example.com/foo+530d903a",
        "example.com/foo+530D903A+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",  # upper-case id
        "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",  # wrong id
        "example.com/bar+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",  # wrong name
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2",  # bad base64
        "example.com/foo+530d903a+AukyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",  # alg not 0x01
        "example com+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",  # space in name
        "+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",  # empty name
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k\n",
    ],
)
def test_malformed_vkeys(vkey: str) -> None:
    with pytest.raises(MalformedError):
        Verifier.from_vkey(vkey)


@pytest.mark.parametrize(
    "skey",
    [
        GO_SKEY.replace("PRIVATE+KEY+", "PRIVATE+KY+"),
        GO_SKEY.replace("c74f20a3", "c74f20a4"),
        GO_SKEY.replace("PeterNeumann", "PaulNeumann"),
        GO_SKEY[:-1],
        GO_VKEY,
        "PRIVATE+KEY+a+00000000+",
    ],
)
def test_malformed_skeys(skey: str) -> None:
    with pytest.raises(MalformedError):
        Signer.from_skey(skey)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        GO_TEXT.encode(),  # no signatures
        GO_NOTE[:-1],  # no final newline
        GO_NOTE.replace("\u2014".encode(), b"-"),  # hyphen, not em dash
        GO_NOTE.replace(b"PeterNeumann ", b"Peter+Neumann "),  # plus in name
        GO_NOTE.replace(b"PeterNeumann x08", b"PeterNeumann  x08"),  # two spaces
        GO_NOTE.replace(b"If", b"I\x01f"),  # control character
        GO_NOTE.replace(b"If", b"I\xfff"),  # invalid UTF-8
        GO_NOTE.replace(b"JnAM=", b"JnAN="),  # non-canonical base64 (padding bits)
        (GO_TEXT + "\n\u2014 PeterNeumann AAAA\n").encode(),  # signature too short
        (GO_TEXT + "\n" + PETER_SIG + "\n").encode(),  # trailing blank line
        GO_TEXT.encode() + b"\n" + PETER_SIG.encode() * 101,  # too many signatures
        b"x\n\n\xe2\x80\x94 a " + b"A" * (1 << 20) + b"\n",  # too large
    ],
)
def test_malformed_notes(data: bytes) -> None:
    with pytest.raises(MalformedError):
        parse_note(data)
    with pytest.raises(MalformedError):
        open_note(data, [Verifier.from_vkey(GO_VKEY)])


def test_hundred_signatures_accepted() -> None:
    data = GO_TEXT.encode() + b"\n" + PETER_SIG.encode() * 100
    assert len(open_note(data, [Verifier.from_vkey(GO_VKEY)]).signatures) == 1


@pytest.mark.parametrize("text", ["no newline", "ctl\x07\n", ""])
def test_sign_note_rejects_bad_text(text: str) -> None:
    with pytest.raises(ValueError):
        sign_note(text, Signer.from_skey(GO_SKEY))


# --- property tests: the parser raises only MalformedError -----------------------------------


@given(st.binary(max_size=600))
def test_parse_note_arbitrary_bytes(data: bytes) -> None:
    try:
        parse_note(data)
    except MalformedError:
        pass


@given(st.data())
def test_parse_note_mutated_vector(data: st.DataObject) -> None:
    raw = bytearray(GO_NOTE + ENOCH_SIG.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        i = data.draw(st.integers(0, len(raw) - 1))
        if op == "flip":
            raw[i] ^= data.draw(st.integers(1, 255))
        elif op == "delete":
            del raw[i]
        else:
            raw.insert(i, data.draw(st.sampled_from([0x0A, 0x20, 0x2B, 0xE2, 0x00, 0x41])))
    try:
        note = open_note(bytes(raw), [Verifier.from_vkey(GO_VKEY), Verifier.from_vkey(ENOCH_VKEY)])
    except VerificationError:
        return
    # A mutated note that still opens must carry exactly the signed text: a mutation can
    # only have touched what no verified signature covers (e.g. an unknown signer's line).
    assert note.text == GO_TEXT
    assert note.signatures


@given(st.text(max_size=120))
def test_from_vkey_arbitrary_text(s: str) -> None:
    try:
        Verifier.from_vkey(s)
    except MalformedError:
        pass


@settings(max_examples=500, deadline=None)
@given(s=st.text(alphabet=st.characters(max_codepoint=0x7F)) | st.text())
def test_control_check_equals_the_character_loop(s: str) -> None:
    """The regex check refuses exactly the characters below space other than newline."""
    from notary.note import _check_chars

    loop = any(c < " " and c != "\n" for c in s)
    try:
        _check_chars(s)
    except MalformedError:
        assert loop
    else:
        assert not loop
