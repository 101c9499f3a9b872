"""Several `serve` processes share one PostgreSQL log; one sequences at a time."""

from __future__ import annotations

import base64
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from notary.checkpoint import open_checkpoint
from notary.merkle import mth, verify_consistency
from notary.note import Verifier
from tests.fixtures.notary import NotaryProcess, init_notary_dir, notarize_concurrently
from tests.notary.storage_backends import pg_url

pytestmark = pytest.mark.postgres


def test_two_serve_processes_share_one_log(tmp_path: Path) -> None:
    from notary.storage.postgres import PostgresStorage

    schema = "multi_" + uuid.uuid4().hex[:12]
    url = pg_url(schema)
    d = init_notary_dir(tmp_path / "notary", database=url)
    a, b = NotaryProcess(d, database=url), NotaryProcess(d, database=url)
    try:
        with ThreadPoolExecutor(3) as pool:  # both boot at once; a failed start raises here
            account = pool.submit(a.token_for, "multi@example.test")
            for started in [pool.submit(p.start) for p in (a, b)]:
                started.result()
            token = account.result()
        verifier = Verifier.from_vkey(a.vkey)
        got = notarize_concurrently([a.url, b.url], token, threads=4, each=40, tag="multi")
        assert len(got) == 320
        # every index once: the two sequencers never appended over each other
        assert sorted(r.index for r in got) == list(range(320))
        for r in got:
            r.verify(verifier)
        cp_a = open_checkpoint(httpx.get(a.url + "/v1/checkpoint").content, verifier)
        cp_b = open_checkpoint(httpx.get(b.url + "/v1/checkpoint").content, verifier)
        assert cp_a == cp_b and cp_a.size == 320
        st = PostgresStorage(url)
        try:
            assert mth([e.entry for e in st.iter_entries()]) == cp_a.root_hash
            # each receipt's checkpoint is a prefix of the final one; receipts that
            # carry the same checkpoint (size and root) need one proof between them
            olds = {(c.size, c.root_hash): c for c in (r.checkpoint() for r in got)}
            assert len(olds) > 1  # the log grew while the clients ran
            with httpx.Client(base_url=a.url) as http:  # one connection for all the proofs
                for old in olds.values():
                    q = {"old": old.size, "new": cp_a.size}
                    proof = http.get("/v1/proof/consistency", params=q).json()["proof"]
                    hashes = [base64.b64decode(h) for h in proof]
                    verify_consistency(old.size, cp_a.size, hashes, old.root_hash, cp_a.root_hash)
        finally:
            st.drop_schema()
            st.close()
    finally:
        a.stop()
        b.stop()


def test_a_serve_with_workers_and_another_machine_share_one_log(tmp_path: Path) -> None:
    """`serve --workers 2` (one sequencer for its workers) and another machine's
    sequencer (here in the test process, with the same key) append to one PostgreSQL
    log at the same time: the advisory lock orders their batches, nothing is lost."""
    from keys.checkpoint_key import load_checkpoint_key
    from notary.config import load_config
    from notary.note import Signer
    from notary.sequencer import Sequencer, Submission
    from notary.storage.postgres import PostgresStorage

    schema = "multi_" + uuid.uuid4().hex[:12]
    url = pg_url(schema)
    d = init_notary_dir(tmp_path / "m1", database=url)
    a = NotaryProcess(d)
    with ThreadPoolExecutor(1) as pool:  # the account is made while the serve boots
        account = pool.submit(a.token_for, "multi@example.test")
        a.start(extra=["--workers", "2"])
    st = PostgresStorage(url)
    try:
        token = account.result()
        verifier = Verifier.from_vkey(a.vkey)
        other = Sequencer(st, Signer.from_key(load_checkpoint_key(load_config(d).key_path)))

        def machine_b() -> None:
            for i in range(20):
                digest = f"{i:064x}"
                other.commit_batch([Submission("SubmissionAcceptance", digest, f"<{i}@b>", None)])

        b = threading.Thread(target=machine_b)
        b.start()
        got = notarize_concurrently([a.url], token, threads=4, each=10, tag="m")
        b.join()
        assert (d / ".sequencer.sock").exists()  # the serve's workers share one sequencer
        for r in got:
            r.verify(verifier)
        entries = list(st.iter_entries())
        cp = st.latest_checkpoint()
        assert cp is not None and cp.size == len(entries) == 60
        assert [e.index for e in entries] == list(range(60))
        assert mth([e.entry for e in entries]) == cp.root_hash
        assert all(entries[r.index].entry == r.entry for r in got)
    finally:
        a.stop()
        st.drop_schema()
        st.close()


def test_logs_in_two_schemas_sequence_at_the_same_time() -> None:
    from notary.storage.postgres import SEQUENCER_LOCK, PostgresStorage, sequencer_lock_key

    a = PostgresStorage(pg_url("lock_a_" + uuid.uuid4().hex[:12]))
    b = PostgresStorage(pg_url("lock_b_" + uuid.uuid4().hex[:12]))
    try:
        assert len({a.sequencer_lock_key, b.sequencer_lock_key, SEQUENCER_LOCK}) == 3
        assert sequencer_lock_key("public") == SEQUENCER_LOCK  # what older versions take
        entered = threading.Event()

        def sequence_b() -> None:
            with b.sequence() as tx:
                tx.tree_size()
                entered.set()

        with a.sequence() as tx:
            tx.tree_size()
            t = threading.Thread(target=sequence_b)
            t.start()
            # While a holds its log's lock, b takes its own (a shared key would
            # make b wait for a's block to end: the wait below would run out).
            held_together = entered.wait(60)
        t.join()
        assert held_together
    finally:
        for s in (a, b):
            s.drop_schema()
            s.close()
