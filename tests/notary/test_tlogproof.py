"""C2SP tlog-proofs: round trips, verification against a real tree, strict parsing."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from keys.checkpoint_key import CheckpointKey
from notary.checkpoint import Checkpoint, sign_checkpoint
from notary.errors import MalformedError, VerificationError
from notary.merkle import MemoryHashStore, prove_inclusion
from notary.note import Signer
from notary.tlogproof import TlogProof

ORIGIN = "notary.example/log"
# A fixed test key (seed 0x07 * 32), so property tests are reproducible.
SIGNER = Signer.from_key(CheckpointKey(ORIGIN, Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)))


def build(n: int, signer: Signer = SIGNER) -> tuple[list[bytes], MemoryHashStore, bytes]:
    store = MemoryHashStore()
    entries = [f"entry {i}".encode() for i in range(n)]
    for e in entries:
        store.append(e)
    note = sign_checkpoint(Checkpoint(signer.name, store.size, store.root()), signer)
    return entries, store, note


def proof_for(store: MemoryHashStore, note: bytes, index: int) -> TlogProof:
    return TlogProof(index, tuple(prove_inclusion(store.size, index, store)), note)


def test_format_matches_spec_layout() -> None:
    _, store, note = build(5)
    p = TlogProof(3, tuple(prove_inclusion(5, 3, store)), note, extra=b"hello")
    text = p.to_bytes()
    lines = text.split(b"\n")
    assert lines[0] == b"c2sp.org/tlog-proof@v1"
    assert lines[1] == b"extra " + base64.b64encode(b"hello")
    assert lines[2] == b"index 3"
    assert [base64.b64decode(x) for x in lines[3 : 3 + len(p.hashes)]] == list(p.hashes)
    assert lines[3 + len(p.hashes)] == b""
    assert text.endswith(b"\n\n" + note)


@pytest.mark.parametrize("extra", [None, b"", b"\x00\x01opaque"])
def test_round_trip(extra: bytes | None) -> None:
    _, store, note = build(7)
    p = TlogProof(6, tuple(prove_inclusion(7, 6, store)), note, extra)
    assert TlogProof.from_bytes(p.to_bytes()) == p


def test_verify_every_leaf_of_small_trees() -> None:
    for n in range(1, 18):
        entries, store, note = build(n)
        for i, e in enumerate(entries):
            p = TlogProof.from_bytes(proof_for(store, note, i).to_bytes())
            cp = p.verify(e, SIGNER.verifier())
            assert (cp.size, cp.root_hash) == (n, store.root())


def test_single_leaf_tree_has_no_hashes() -> None:
    entries, store, note = build(1)
    p = proof_for(store, note, 0)
    assert p.hashes == ()
    assert b"index 0\n\n" in p.to_bytes()
    p.verify(entries[0], SIGNER.verifier())


def test_verify_rejects_wrong_entry_index_key_and_hashes() -> None:
    entries, store, note = build(9)
    p = proof_for(store, note, 4)
    v = SIGNER.verifier()
    with pytest.raises(VerificationError):
        p.verify(entries[5], v)  # another entry
    with pytest.raises(VerificationError):
        p.verify(entries[4] + b" ", v)  # modified entry
    with pytest.raises(VerificationError):
        TlogProof(5, p.hashes, note).verify(entries[4], v)  # another index
    with pytest.raises(VerificationError):
        p.verify(entries[4], Signer.generate(ORIGIN).verifier())  # another key
    for i in range(len(p.hashes)):
        for bit in (0, 7):
            hashes = list(p.hashes)
            hashes[i] = bytes([hashes[i][0] ^ (1 << bit)]) + hashes[i][1:]
            with pytest.raises(VerificationError):
                TlogProof(4, tuple(hashes), note).verify(entries[4], v)
    with pytest.raises(VerificationError):
        TlogProof(4, p.hashes[:-1], note).verify(entries[4], v)  # short proof
    with pytest.raises(VerificationError):
        TlogProof(4, (*p.hashes, p.hashes[0]), note).verify(entries[4], v)  # long proof


def test_verify_rejects_checkpoint_signed_by_another_key_same_tree() -> None:
    entries, store, _ = build(4)
    other = Signer.generate(ORIGIN)
    note = sign_checkpoint(Checkpoint(ORIGIN, 4, store.root()), other)
    with pytest.raises(VerificationError):
        proof_for(store, note, 2).verify(entries[2], SIGNER.verifier())


def _valid_text() -> bytes:
    _, store, note = build(6)
    return proof_for(store, note, 2).to_bytes()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: b"",
        lambda t: t.replace(b"c2sp.org/tlog-proof@v1", b"c2sp.org/tlog-proof@v2"),
        lambda t: t.replace(b"index 2\n", b"index 02\n"),
        lambda t: t.replace(b"index 2\n", b"index  2\n"),
        lambda t: t.replace(b"index 2\n", b"index -2\n"),
        lambda t: t.replace(b"index 2\n", b"index 6\n"),  # beyond the tree
        lambda t: t.replace(b"index 2\n", b""),
        lambda t: t.replace(b"index 2\n", b"index 2\nextra AAAA\n"),  # extra after index
        lambda t: t.replace(b"c2sp.org/tlog-proof@v1\n", b"c2sp.org/tlog-proof@v1\nextra !!\n"),
        lambda t: t.replace(b"index 2\n", b"index 2\nAAAA\n"),  # 3-byte hash
        lambda t: t.replace(b"index 2\n", b"index 2\n" + b"A" * 43 + b"\n"),  # unpadded
        lambda t: t.replace(b"\n\n", b"\n", 1),  # no blank line before the checkpoint
        lambda t: t.split(b"\n\n")[0] + b"\n\n",  # no checkpoint
        lambda t: t.replace(b"\xe2\x80\x94", b"-"),  # checkpoint is not a signed note
        lambda t: t.replace(b"index 2\n", b"index 2\n" + b"\xc3\xa9\n"),
        lambda t: t.replace(
            b"index 2\n", b"index 2\n" + (base64.b64encode(bytes(32)) + b"\n") * 64
        ),  # too many hashes
    ],
)
def test_malformed_proofs(mutate: object) -> None:
    text = _valid_text()
    bad = mutate(text)  # type: ignore[operator]
    assert bad != text
    with pytest.raises(MalformedError):
        TlogProof.from_bytes(bad)


@given(st.binary(max_size=500))
def test_from_bytes_arbitrary(data: bytes) -> None:
    try:
        TlogProof.from_bytes(data)
    except MalformedError:
        pass


@given(st.binary(max_size=200))
def test_from_bytes_arbitrary_after_header(data: bytes) -> None:
    try:
        TlogProof.from_bytes(b"c2sp.org/tlog-proof@v1\nindex 0\n" + data)
    except MalformedError:
        pass


VALID = _valid_text()


@settings(max_examples=300)
@given(st.data())
def test_mutated_proofs_never_verify_nor_crash(data: st.DataObject) -> None:
    raw = bytearray(VALID)
    i = data.draw(st.integers(0, len(raw) - 1))
    op = data.draw(st.sampled_from(["flip", "delete", "insert"]))
    if op == "flip":
        raw[i] ^= data.draw(st.integers(1, 255))
    elif op == "delete":
        del raw[i]
    else:
        raw.insert(i, data.draw(st.sampled_from([0x0A, 0x20, 0x30, 0x41, 0x2B])))
    try:
        p = TlogProof.from_bytes(bytes(raw))
    except MalformedError:
        return
    # A proof that still parses must not verify the entry at index 2, unless the
    # mutation only touched the unauthenticated encoding in a way that changes nothing.
    try:
        p.verify(b"entry 2", SIGNER.verifier())
    except VerificationError:
        return
    assert p == TlogProof.from_bytes(VALID)


def test_verify_of_a_constructed_proof_with_a_bad_checkpoint_text_is_unchanged() -> None:
    """A TlogProof built directly around a note whose text is no checkpoint: verify
    reports what open_checkpoint reports (the signature first)."""
    from notary.checkpoint import open_checkpoint
    from notary.note import Signer, sign_note

    signer = Signer.generate("example.org/log")
    note = sign_note("not a checkpoint\n", signer)
    proof = TlogProof(0, (), note)
    for v in (signer.verifier(), Signer.generate("example.org/log").verifier()):
        with pytest.raises(VerificationError) as got:
            proof.verify(b"entry", v)
        with pytest.raises(VerificationError) as want:
            open_checkpoint(note, v)
        assert (type(got.value), got.value.message) == (type(want.value), want.value.message)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.integers(0, 3))
def test_hash_lines_must_be_canonical_base64(h: bytes, low_bits: int) -> None:
    """A hash line is the one canonical base64 of 32 bytes; setting the unused low bits
    of its last character (decodes to the same bytes) is refused."""
    good = base64.b64encode(h).decode()
    _, _, note = build(2)
    proof = TlogProof(0, (h,), note).to_bytes()
    assert TlogProof.from_bytes(proof).hashes == (h,)
    if low_bits:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        bad = good[:42] + alphabet[alphabet.index(good[42]) | low_bits] + "="
        assert base64.b64decode(bad) == h
        with pytest.raises(MalformedError, match="non-canonical"):
            TlogProof.from_bytes(proof.replace(good.encode(), bad.encode()))
