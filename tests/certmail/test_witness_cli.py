"""``certmail witness`` for real: a notary served, a witness served, checkpoints fed
from the notary's public tiles; the witness's promise across SIGKILL; a forked
copy of the notary refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from notary.cosignature import CosignatureVerifier, verify_cosignatures
from notary.errors import VerificationError
from tests.fixtures.cli import cli, one_line_error
from tests.fixtures.notary import NotaryProcess
from tests.fixtures.witness import WitnessProcess, grow_log


@pytest.fixture
def witness_dir(tmp_path: Path) -> Path:
    d = tmp_path / "witness"
    p = cli("witness", "init", "--dir", str(d), "--name", "witness.test/w1", "--json")
    assert p.returncode == 0, p.stderr
    return d


@pytest.fixture
def witness(witness_dir: Path) -> Iterator[WitnessProcess]:
    w = WitnessProcess(witness_dir)
    yield w
    w.stop()


def test_witness_cosigns_a_real_notary_and_keeps_its_promise(
    notary_dir: Path, witness_dir: Path, witness: WitnessProcess, tmp_path: Path
) -> None:
    wvkey = (witness_dir / "witness.vkey").read_text().strip()
    wv = CosignatureVerifier.from_vkey(wvkey)
    real = NotaryProcess(notary_dir)
    assert cli("witness", "logs", "add", real.vkey, "--dir", str(witness_dir)).returncode == 0
    witness.start()
    real.start()
    forked: NotaryProcess | None = None

    def feed(url: str) -> subprocess.CompletedProcess[str]:
        args = ["witness", "feed", url, "--log-vkey", real.vkey]
        return cli(*args, "--witness", witness.url, "--witness-vkey", wvkey)

    try:
        token = real.token_for("alice@example.test")
        grow_log(real, token, "a", 300)
        p = feed(real.url)
        assert p.returncode == 0, p.stderr
        times = verify_cosignatures(p.stdout.encode(), [wv], 1)
        assert set(times) == {"witness.test/w1"}
        real.stop()
        shutil.copytree(notary_dir, tmp_path / "fork")
        real.start()
        grow_log(real, token, "b", 200)
        p = feed(real.url)  # the witness answers 409 "300", the feeder proves 300 -> 500
        assert p.returncode == 0, p.stderr
        assert "\n500\n" in p.stdout
        verify_cosignatures(p.stdout.encode(), [wv], 1)

        # SIGKILL right after the cosignature: the promise is on disk
        witness.kill()
        witness.start()
        listed = cli("witness", "logs", "list", "--dir", str(witness_dir), "--json")
        assert json.loads(listed.stdout)["logs"][0]["size"] == 500

        db = f"sqlite:///{tmp_path}/fork/notary.db"
        forked = NotaryProcess(tmp_path / "fork", database=db)
        forked.start()
        p = feed(forked.url)  # still size 300: the witness holds 500
        assert p.returncode == 3
        assert "holds a tree of size 500, larger than 300" in one_line_error(p)
        grow_log(forked, token, "c", 200)  # 500 again, another root
        p = feed(forked.url)
        assert p.returncode == 3 and "409" in one_line_error(p) and "fork" in one_line_error(p)
        grow_log(forked, token, "d", 20)  # larger, not an extension
        p = feed(forked.url)
        assert p.returncode == 3 and "422" in one_line_error(p)
        listed = cli("witness", "logs", "list", "--dir", str(witness_dir), "--json")
        assert json.loads(listed.stdout)["logs"][0]["size"] == 500
        grow_log(real, token, "e", 1)
        assert feed(real.url).returncode == 0
    finally:
        real.stop()
        if forked is not None:
            forked.stop()


def test_witness_cli_errors(tmp_path: Path, witness_dir: Path) -> None:
    p = cli("witness", "init", "--dir", str(witness_dir), "--name", "witness.test/w1")
    assert p.returncode == 7 and "a witness already" in one_line_error(p)
    p = cli("witness", "logs", "add", "not a key", "--dir", str(witness_dir))
    assert p.returncode == 1 and "not a log verifier key" in one_line_error(p)
    p = cli("witness", "serve", "--dir", str(tmp_path / "none"))
    assert p.returncode == 6 and "not a witness directory" in one_line_error(p)


def test_no_cosignature_is_lost_to_sigkill(witness_dir: Path, witness: WitnessProcess) -> None:
    """Cosign as fast as possible from 4 threads, SIGKILL the witness mid-stream:
    after the restart it holds at least the largest size it ever cosigned."""
    import random
    import threading

    from tests.fixtures.witness_log import Log

    log = Log()
    assert (
        cli(
            "witness", "logs", "add", log.signer.verifier().vkey(), "--dir", str(witness_dir)
        ).returncode
        == 0
    )
    witness.start()
    lock = threading.Lock()
    cosigned: list[int] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=10) as c:
            while not stop.is_set():
                with lock:
                    note = log.grow(1)
                    size = log.store.size
                    body = log.body(0, note=note, proof=[])
                try:
                    r = c.post(witness.url + "/add-checkpoint", content=body)
                except httpx.HTTPError:
                    return
                if r.status_code == 409:  # learn the size held and prove from it
                    held = int(r.text)
                    with lock:
                        from notary.merkle import prove_consistency

                        proof = prove_consistency(held, size, log.store) if 0 < held < size else []
                        body = log.body(held, note=note, proof=proof)
                    try:
                        r = c.post(witness.url + "/add-checkpoint", content=body)
                    except httpx.HTTPError:
                        return
                if r.status_code == 200:
                    with lock:
                        cosigned.append(size)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0 + random.random())
    witness.kill()
    stop.set()
    for t in threads:
        t.join()
    assert cosigned, "nothing was cosigned before the kill"
    listed = cli("witness", "logs", "list", "--dir", str(witness_dir), "--json")
    (row,) = [r for r in json.loads(listed.stdout)["logs"] if r["origin"] == "log.test/a"]
    assert row["size"] >= max(cosigned)


def _wait_cosigned(
    url: str, size: int, wvs: list[CosignatureVerifier], quorum: int, path: str = "/cosigned"
) -> bytes:
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=5) as http:  # one client: httpx.get builds an SSL context
        while time.monotonic() < deadline:
            r = http.get(url + "/checkpoint" + path)
            if r.status_code == 200 and f"\n{size}\n".encode() in r.content:
                try:
                    verify_cosignatures(r.content, wvs, quorum)
                    return r.content
                except VerificationError:
                    pass
            time.sleep(0.1)
    raise AssertionError(f"no checkpoint of size {size} cosigned by {quorum}")


def test_notary_asks_its_witnesses(notary_dir: Path, tmp_path: Path) -> None:
    from notary.checkpoint import open_checkpoint
    from notary.note import Verifier

    witnesses, wvs = [], []
    for i in (1, 2):
        d = tmp_path / f"w{i}"
        p = cli("witness", "init", "--dir", str(d), "--name", f"witness.test/w{i}")
        assert p.returncode == 0
        vkey = (d / "witness.vkey").read_text().strip()
        wvs.append(CosignatureVerifier.from_vkey(vkey))
        w = WitnessProcess(d)
        witnesses.append(w)
    real = NotaryProcess(notary_dir)
    for w, wv in zip(witnesses, wvs, strict=True):
        assert cli("witness", "logs", "add", real.vkey, "--dir", str(w.directory)).returncode == 0
        p = cli("notary", "witnesses", "add", w.url, wv.vkey(), "--dir", str(notary_dir))
        assert p.returncode == 0, p.stderr
    p = cli("notary", "witnesses", "list", "--dir", str(notary_dir), "--json")
    listed = json.loads(p.stdout)
    assert listed["quorum"] == 2 and [x["name"] for x in listed["witnesses"]] == [
        "witness.test/w1",
        "witness.test/w2",
    ]
    try:
        for w in witnesses:
            w.start()
        real.start()
        token = real.token_for("alice@example.test")
        grow_log(real, token, "a", 100)
        _wait_cosigned(real.url, 100, wvs, 2)
        # GET /checkpoint carries them too, and still opens under the log's key alone
        note = httpx.get(real.url + "/checkpoint").content
        open_checkpoint(note, Verifier.from_vkey(real.vkey))
        # a witness down delays cosigning, never the log
        witnesses[1].kill()
        started = time.monotonic()
        grow_log(real, token, "b", 50)
        assert time.monotonic() - started < 10
        _wait_cosigned(real.url, 150, wvs[:1], 1, path="")  # /checkpoint: w1 cosigned 150 ...
        time.sleep(0.5)
        r = httpx.get(real.url + "/checkpoint/cosigned")
        assert b"\n100\n" in r.content  # ... but the quorum of 2 is still at 100
        witnesses[1].start()  # back: it holds 100, learns to prove 100 -> 150
        _wait_cosigned(real.url, 150, wvs, 2)
        assert (notary_dir / "cosigned-checkpoint").read_bytes() == httpx.get(
            real.url + "/checkpoint/cosigned"
        ).content
    finally:
        real.stop()
        for w in witnesses:
            w.stop()
