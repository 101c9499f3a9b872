"""c2sp.org/tlog-cosignature (notary/cosignature.py) and tlog-witness add-checkpoint
(notary/witness.py): every status the spec names, durability of the state."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from notary.checkpoint import Checkpoint, sign_checkpoint
from notary.cosignature import (
    CosignatureVerifier,
    Cosigner,
    cosigned_message,
    verify_cosignatures,
)
from notary.errors import MalformedError, VerificationError
from notary.merkle import prove_consistency
from notary.note import Signer
from notary.witness import SIZE_TYPE, Witness, add_log, init_witness
from tests.fixtures.witness_log import ORIGIN, Log

# --- cosignature/v1 ---------------------------------------------------------------


def test_cosignature_round_trip_and_key_id() -> None:
    c = Cosigner("witness.test/w1", os.urandom(32))
    v = c.verifier
    pub = v.public_key
    assert v.key_id == hashlib.sha256(b"witness.test/w1\n\x04" + pub).digest()[:4]
    assert CosignatureVerifier.from_vkey(v.vkey()) == v
    log = Log()
    note = log.grow(5)
    line = c.cosign(note.decode().split("\n\n")[0] + "\n", 1_700_000_000)
    assert line.startswith("\u2014 witness.test/w1 ") and line.endswith("\n")
    raw = base64.b64decode(line.split(" ")[2])
    assert raw[:4] == v.key_id and int.from_bytes(raw[4:12], "big") == 1_700_000_000
    assert verify_cosignatures(note + line.encode(), [v], 1) == {"witness.test/w1": 1_700_000_000}
    text = note.decode().split("\n\n")[0] + "\n"
    assert cosigned_message(text, 7) == f"cosignature/v1\ntime 7\n{text}".encode()


def test_cosignature_byte_flips_fail() -> None:
    c = Cosigner("witness.test/w1", os.urandom(32))
    log = Log()
    note = log.grow(3)
    line = c.cosign(note.decode().split("\n\n")[0] + "\n", 123)
    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    for i in range(len(raw)):
        bad = bytearray(raw)
        bad[i] ^= 0x01
        forged = f"\u2014 witness.test/w1 {base64.b64encode(bad).decode()}\n".encode()
        with pytest.raises(VerificationError):
            verify_cosignatures(note + forged, [c.verifier], 1)
    # another checkpoint, the same cosignature
    with pytest.raises(VerificationError):
        verify_cosignatures(log.grow(1) + line.encode(), [c.verifier], 1)
    # the quorum counts distinct known cosigners only
    other = Cosigner("witness.test/w2", os.urandom(32))
    with pytest.raises(VerificationError, match="1 valid cosignature"):
        verify_cosignatures(note + line.encode(), [c.verifier, other.verifier], 2)


@pytest.mark.parametrize(
    "vkey",
    ["", "a+b", "w+00000000+AQ==", "w+zz+" + base64.b64encode(b"\x04" + b"k" * 32).decode()],
)
def test_malformed_cosigner_keys(vkey: str) -> None:
    with pytest.raises(MalformedError):
        CosignatureVerifier.from_vkey(vkey)


# --- add-checkpoint -----------------------------------------------------------------


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Witness, Log, Path]]:
    d = tmp_path / "w"
    init_witness(d, "witness.test/w1")
    log = Log()
    add_log(d, log.signer.verifier().vkey())
    w = Witness(d, clock=lambda: 1_800_000_000.0)
    yield w, log, d
    w.close()


def test_cosigns_a_growing_log(setup: tuple[Witness, Log, Path]) -> None:
    w, log, _ = setup
    log.grow(10)
    r = w.add_checkpoint(log.body(0))
    assert r.status == 200, r.body
    verify_cosignatures(log.note() + r.body, [w.cosigner.verifier], 1)
    log.grow(300)
    r = w.add_checkpoint(log.body(10))
    assert r.status == 200, r.body
    assert w.latest(ORIGIN)[0] == 310
    # the same checkpoint again: cosigned again, nothing changes
    assert w.add_checkpoint(log.body(310)).status == 200
    assert w.latest(ORIGIN)[0] == 310


def test_every_refusal(setup: tuple[Witness, Log, Path]) -> None:
    w, log, _ = setup
    log.grow(10)
    assert w.add_checkpoint(log.body(0)).status == 200
    log.grow(5)
    # a stale old size: 409 with the size held
    r = w.add_checkpoint(log.body(0))
    assert (r.status, r.content_type, r.body) == (409, SIZE_TYPE, b"10\n")
    r = w.add_checkpoint(log.body(12, proof=[]))
    assert (r.status, r.body) == (409, b"10\n")
    # a proof that does not verify: 422, and it is kept as possible evidence
    good = prove_consistency(10, 15, log.store)
    bad = [bytes([good[0][0] ^ 1]) + good[0][1:], *good[1:]]
    assert w.add_checkpoint(log.body(10, proof=bad)).status == 422
    # old larger than the checkpoint: 400; malformed: 400
    assert w.add_checkpoint(log.body(16, proof=[])).status == 400
    assert w.add_checkpoint(b"old 01\n\n" + log.note()).status == 400
    assert w.add_checkpoint(b"new 1\n\n" + log.note()).status == 400
    assert w.add_checkpoint(b"old 10\nnot base64!\n\n" + log.note()).status == 400
    # an unknown log: 404; a signature by another key with the log's name: 403
    stranger = Signer.generate("log.test/b")
    cp = Checkpoint("log.test/b", 1, b"\0" * 32)
    assert w.add_checkpoint(b"old 0\n\n" + sign_checkpoint(cp, stranger)).status == 404
    impostor = Log(Signer.generate(ORIGIN))
    impostor.grow(20)
    assert w.add_checkpoint(impostor.body(10)).status == 403
    # a fork at the size held: 409
    fork = Log(log.signer)
    fork.grow(10, tag="other")
    r = w.add_checkpoint(fork.body(10))
    assert r.status == 409 and b"fork" in r.body
    assert w.latest(ORIGIN)[0] == 10
    refused = w._db.execute("SELECT reason FROM refused").fetchall()
    assert len(refused) == 2  # the bad proof and the fork (signed by the log)
    assert w.add_checkpoint(log.body(10)).status == 200


def test_state_survives_reopening(setup: tuple[Witness, Log, Path]) -> None:
    w, log, d = setup
    log.grow(40)
    assert w.add_checkpoint(log.body(0)).status == 200
    w.close()
    again = Witness(d)
    try:
        assert again.latest(ORIGIN)[0] == 40
        r = again.add_checkpoint(log.body(0))
        assert (r.status, r.body) == (409, b"40\n")
    finally:
        again.close()


def test_racing_requests_never_roll_back(setup: tuple[Witness, Log, Path]) -> None:
    """The tlog-witness race: requests from one old size to different new sizes at
    once; exactly one is cosigned per round and the state is its size."""
    import threading

    w, log, _ = setup
    log.grow(1)
    assert w.add_checkpoint(log.body(0)).status == 200
    for _round in range(5):
        old = log.store.size
        bodies = {}
        for _ in range(8):  # sizes old+1 .. old+8, each proved from old
            note = log.grow(1)
            bodies[log.store.size] = log.body(old, note=note)
        barrier = threading.Barrier(len(bodies))
        status: dict[int, int] = {}

        def send(size: int, body: bytes) -> None:
            barrier.wait()
            status[size] = w.add_checkpoint(body).status

        threads = [threading.Thread(target=send, args=kv) for kv in bodies.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        won = [s for s, st in status.items() if st == 200]
        assert len(won) == 1 and all(st in (200, 409) for st in status.values()), status
        assert w.latest(ORIGIN)[0] == won[0]
        # catch up to the log's head from the winner
        assert w.add_checkpoint(log.body(won[0])).status == 200


def test_cosigned_receipts_are_proved_once_per_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Receipts asked for again against the same cosigned checkpoint are not proved
    again (the log is append-only); each stays a valid proof against that checkpoint,
    and a newer cosigned checkpoint gets proofs of its own."""
    import secrets

    from starlette.testclient import TestClient

    import notary.merkle
    from notary.api import create_app
    from notary.cosigning import COSIGNED
    from notary.note import Verifier
    from notary.receipt import Receipt
    from notary.service import NotaryService
    from tests.fixtures.notary import init_notary_dir

    calls: list[tuple[int, int]] = []
    real = notary.merkle.prove_inclusion

    def counting(size: int, index: int, reader: object) -> list[bytes]:
        calls.append((size, index))
        return real(size, index, reader)  # type: ignore[arg-type]

    svc = NotaryService.open(init_notary_dir(tmp_path / "notary"))
    try:
        _, token = svc.add_account(["a@example.org"])
        auth = {"Authorization": f"Bearer {token}"}
        digest = hashlib.sha256(b"the deal").hexdigest()
        with TestClient(create_app(svc)) as c:
            v = Verifier.from_vkey(c.get("/v1/vkey").text.strip())

            def notarize(sha256: str) -> None:
                body = {"sha256": sha256, "message_id": f"<{secrets.token_hex(4)}@x>"}
                assert c.post("/v1/notarize", json=body, headers=auth).status_code == 200

            def receipts() -> list[Receipt]:
                r = c.get(f"/v1/messages/{digest}/receipts", headers=auth)
                assert r.status_code == 200, r.text
                return [Receipt.from_json(x) for x in r.json()["receipts"]]

            notarize(digest)
            notarize(hashlib.sha256(b"other").hexdigest())
            cosigned = svc.storage.latest_checkpoint()
            assert cosigned is not None
            (svc.config.directory / COSIGNED).write_bytes(cosigned.note)
            for i in range(3):  # the log moves on past the cosigned checkpoint
                notarize(hashlib.sha256(b"later %d" % i).hexdigest())
            monkeypatch.setattr(notary.merkle, "prove_inclusion", counting)
            first = receipts()
            proved = [x for x in calls if x[0] == cosigned.size]
            assert len(proved) == 1
            again = receipts()
            assert [x for x in calls if x[0] == cosigned.size] == proved  # not proved again
            assert [r.to_json() for r in again] == [r.to_json() for r in first]
            for r in again:
                assert r.checkpoint().size == cosigned.size
                r.verify(v)
            newer = svc.storage.latest_checkpoint()
            assert newer is not None
            (svc.config.directory / COSIGNED).write_bytes(newer.note)
            for r in receipts():
                assert r.checkpoint().size == newer.size
                r.verify(v)
    finally:
        svc.close()
