"""The notary set-up bench_log.py and bench_batch_peers.py share: this process's CPU
time, the benchmark's submissions, the PostgreSQL DSN, a fresh PostgreSQL schema and a
warmed-up sequencer."""

from __future__ import annotations

import hashlib
import os
import resource
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from notary.note import Signer
from notary.sequencer import Sequencer, Stamper, Submission
from notary.storage import Storage


def cpu() -> float:
    """This process's CPU seconds so far (user + system)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def subs(n: int, tag: str, *, timestamp: bool = False) -> list[Submission]:
    """``n`` submissions of one account, distinct by ``tag``; ``timestamp`` asks for tokens."""
    return [
        Submission(
            "SubmissionAcceptance",
            hashlib.sha256(f"{tag}{i}".encode()).hexdigest(),
            f"<{i}.{tag}@bench>",
            1,
            {"submitter": "bench@example.test", "channel": "api"},
            timestamp,
        )
        for i in range(n)
    ]


def pg_dsn() -> str | None:
    """CERTMAIL_TEST_POSTGRES_DSN, else the local server if one listens, else None."""
    dsn = os.environ.get("CERTMAIL_TEST_POSTGRES_DSN")
    if dsn:
        return dsn
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return "postgresql://postgres@127.0.0.1:5432/test"
    except OSError:
        return None


@contextmanager
def pg_storage(dsn: str) -> Iterator[Storage]:
    """A PostgresStorage in a fresh schema, dropped afterwards."""
    from notary.storage.postgres import PostgresStorage

    pg = PostgresStorage(dsn, schema="bench_" + uuid.uuid4().hex[:12])
    try:
        yield pg
    finally:
        pg.drop_schema()
        pg.close()


def sequencer(storage: Storage, tsa: Stamper | None = None) -> Sequencer:
    """A sequencer on ``storage`` that has committed one small batch (the tree known, the
    statements prepared by the server)."""
    seq = Sequencer(storage, Signer.generate("bench.test/log"), tsa=tsa)
    seq.commit_batch(subs(10, "warm", timestamp=tsa is not None))
    return seq
