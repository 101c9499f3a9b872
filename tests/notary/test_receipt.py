"""Receipts (DESIGN §4.3): JSON round trip and offline verification."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

import pytest

from notary.checkpoint import Checkpoint, sign_checkpoint
from notary.errors import MalformedError, VerificationError
from notary.evidence import statement
from notary.merkle import MemoryHashStore, prove_inclusion
from notary.note import Signer, Verifier
from notary.receipt import Receipt
from notary.tlogproof import TlogProof

ORIGIN = "notary.example/log"
SIGNER = Signer.generate(ORIGIN)
SHA = hashlib.sha256(b"the message").hexdigest()


def entry(i: int, notary: str = ORIGIN) -> bytes:
    return statement(
        "SubmissionAcceptance",
        time=datetime(2026, 11, 21, 17, 0, i, tzinfo=UTC),
        notary=notary,
        sha256=SHA,
        message_id=f"<{i}@sender.example>",
    )


def log_of(entries: list[bytes], signer: Signer = SIGNER) -> tuple[MemoryHashStore, bytes]:
    store = MemoryHashStore()
    for e in entries:
        store.append(e)
    note = sign_checkpoint(Checkpoint(signer.name, store.size, store.root()), signer)
    return store, note


def receipt_for(entries: list[bytes], index: int, signer: Signer = SIGNER) -> Receipt:
    store, note = log_of(entries, signer)
    proof = TlogProof(index, tuple(prove_inclusion(store.size, index, store)), note)
    return Receipt(entries[index], proof, tst=b"\x30\x03\x02\x01\x00")


ENTRIES = [entry(i) for i in range(6)]


def test_verify_returns_statement() -> None:
    r = receipt_for(ENTRIES, 3)
    stmt = r.verify(SIGNER.verifier())
    assert stmt["event"] == "SubmissionAcceptance"
    assert stmt["message"] == {"sha256": SHA, "id": "<3@sender.example>"}
    assert r.index == 3
    assert r.checkpoint() == Checkpoint(ORIGIN, 6, log_of(ENTRIES)[0].root())


def test_json_round_trip_through_text() -> None:
    r = receipt_for(ENTRIES, 2)
    obj = r.to_json()
    assert set(obj) == {"entry", "proof", "tst"}
    assert base64.b64decode(obj["entry"]) == ENTRIES[2]
    assert obj["proof"].startswith("c2sp.org/tlog-proof@v1\nindex 2\n")
    assert base64.b64decode(obj["tst"]) == r.tst
    back = Receipt.from_json(json.loads(json.dumps(obj)))
    assert back == r
    back.verify(Verifier.from_vkey(SIGNER.verifier().vkey()))


def test_tst_is_optional() -> None:
    r = Receipt(ENTRIES[0], receipt_for(ENTRIES, 0).proof)
    assert "tst" not in r.to_json()
    assert Receipt.from_json(r.to_json()) == r


def test_wrong_vkey() -> None:
    r = receipt_for(ENTRIES, 1)
    with pytest.raises(VerificationError):
        r.verify(Signer.generate(ORIGIN).verifier())  # same name, another key
    with pytest.raises(VerificationError):
        r.verify(Signer.generate("other.example/log").verifier())


def test_modified_entry() -> None:
    r = receipt_for(ENTRIES, 1)
    modified = r.entry.replace(b"<1@", b"<9@")
    assert modified != r.entry
    with pytest.raises(VerificationError):
        Receipt(modified, r.proof, r.tst).verify(SIGNER.verifier())
    # Another genuine entry of the same log does not verify with this proof either.
    with pytest.raises(VerificationError):
        Receipt(ENTRIES[2], r.proof, r.tst).verify(SIGNER.verifier())


def test_proof_for_another_index() -> None:
    r1, r4 = receipt_for(ENTRIES, 1), receipt_for(ENTRIES, 4)
    with pytest.raises(VerificationError):
        Receipt(r1.entry, r4.proof).verify(SIGNER.verifier())
    # Same hashes, index rewritten.
    moved = TlogProof(4, r1.proof.hashes, r1.proof.checkpoint)
    with pytest.raises(VerificationError):
        Receipt(r1.entry, moved).verify(SIGNER.verifier())


def test_checkpoint_signed_by_another_key() -> None:
    other = Signer.generate(ORIGIN)
    r = receipt_for(ENTRIES, 1, signer=other)
    with pytest.raises(VerificationError):
        r.verify(SIGNER.verifier())
    # Splicing the other key's checkpoint (same tree) into a good receipt fails too.
    good = receipt_for(ENTRIES, 1)
    spliced = TlogProof(1, good.proof.hashes, r.proof.checkpoint)
    with pytest.raises(VerificationError):
        Receipt(good.entry, spliced).verify(SIGNER.verifier())


def test_statement_of_another_notary_is_rejected() -> None:
    entries = [*ENTRIES, entry(7, notary="someone-else.example/log")]
    r = receipt_for(entries, 6)
    with pytest.raises(VerificationError, match="notary"):
        r.verify(SIGNER.verifier())


def test_logged_garbage_is_not_a_statement() -> None:
    r = receipt_for([b"not json", *ENTRIES], 0)
    with pytest.raises(MalformedError):
        r.verify(SIGNER.verifier())


def _obj() -> dict[str, object]:
    return receipt_for(ENTRIES, 2).to_json()


def _with(**changes: object) -> dict[str, object]:
    o = _obj()
    o.update(changes)
    return o


def _without(k: str) -> dict[str, object]:
    o = _obj()
    del o[k]
    return o


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        "x",
        {},
        _without("entry"),
        _without("proof"),
        _with(entry=""),
        _with(entry="not base64!"),
        _with(entry="QQ"),  # unpadded
        _with(entry=5),
        _with(proof=5),
        _with(proof="c2sp.org/tlog-proof@v1\n"),
        _with(tst=""),
        _with(tst=None),
        _with(extra="x"),
        _with(proof="\ud800"),  # lone surrogate
    ],
)
def test_from_json_rejects(obj: object) -> None:
    with pytest.raises(MalformedError):
        Receipt.from_json(obj)


# The worked example of docs/formats.md (demo key: Ed25519 seed bytes 0..31).
DOC_VKEY = "notary.example.com/log+80a44dcd+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
DOC_SKEY = (
    "PRIVATE+KEY+notary.example.com/log+80a44dcd+AQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f"
)


def _doc_receipt() -> dict[str, object]:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "formats.md").read_text()
    section = doc.split("## 6. Receipt (JSON)", 1)[1].split("\n## ", 1)[0]  # its worked example
    block = section.split("```json\n", 1)[1].split("```")[0]
    return json.loads(block)  # type: ignore[no-any-return]


def test_docs_worked_example_verifies() -> None:
    assert Signer.from_skey(DOC_SKEY).verifier().vkey() == DOC_VKEY
    stmt = Receipt.from_json(_doc_receipt()).verify(Verifier.from_vkey(DOC_VKEY))
    assert stmt["event"] == "RelayToNonERDS"
    assert stmt["notary"] == "notary.example.com/log"
    with pytest.raises(VerificationError):
        Receipt.from_json(_doc_receipt()).verify(SIGNER.verifier())
