"""The log keeps each entry's RFC 3161 token and statement byte for byte (schema 3).

Tokens in the TSA's template layout are stored as their variable parts
(notary.storage.sql.tokens); any other token is stored whole. Either way the
entry read back carries the identical bytes, on both backends.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from keys.tsa import TsaCredentials, generate_tsa_pki
from notary.errors import StorageError
from notary.rfc3161 import TimeStampAuthority
from notary.rfc3161.compact import split
from notary.storage import NewEntry, Storage, StoredCheckpoint
from notary.storage.sql.dialect import SCHEMA_VERSION
from notary.storage.sqlite import SQLiteStorage
from tests.fixtures.storage import T0
from tests.notary.storage_backends import BACKENDS, open_backend


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> TsaCredentials:
    return generate_tsa_pki(tmp_path_factory.mktemp("pki"), "Storage TSA")


@pytest.fixture(scope="module")
def tsa(creds: TsaCredentials) -> TimeStampAuthority:
    return TimeStampAuthority(creds)


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    yield from open_backend(request.param, tmp_path)


def _sha(i: int) -> str:
    return hashlib.sha256(f"m{i}".encode()).hexdigest()


def _statement(i: int) -> bytes:
    # Canonical JSON (RFC 8785) with a non-ASCII character: the bytes must come back as given.
    st = {"event": "SubmissionAcceptance", "message": {"id": f"<{i}@x>", "sha256": _sha(i)}}
    return json.dumps({**st, "note": "é"}, sort_keys=True, separators=(",", ":")).encode()


def _append(storage: Storage, tsts: list[bytes | None]) -> int:
    with storage.sequence() as tx:
        start = tx.tree_size()
        entries = [
            NewEntry(
                1,
                _sha(start + i),
                f"<{start + i}@x>",
                "SubmissionAcceptance",
                _statement(start + i),
                t,
            )
            for i, t in enumerate(tsts)
        ]
        end = start + len(tsts)
        hashes = [bytes([i % 256]) * 32 for i in range(len(tsts))]
        tx.append(start, entries, hashes, 2 * start, StoredCheckpoint(end, b"r" * 32, T0, b"n"))
    return start


def _tokens(tsa: TimeStampAuthority, start: int) -> list[bytes | None]:
    """Tokens of every shape the notary writes, and some it never does."""
    md = bytearray(tsa.stamp(bytes.fromhex(_sha(start + 3)), cert_req=False))
    found = tsa.template.match(bytes(md))
    assert found is not None
    md[md.find(hashlib.sha256(found[0]).digest())] ^= 1  # the message digest no longer matches
    return [
        tsa.stamp(bytes.fromhex(_sha(start)), cert_req=False),  # the log's tokens
        tsa.stamp(bytes.fromhex(_sha(start + 1)), cert_req=True),  # with the chain
        tsa.stamp(hashlib.sha256(b"other").digest(), nonce=2**70 + 5, cert_req=False),
        bytes(md),
        None,
        b"\x01 looks compact but is not",
        b"\x00 looks whole-marked",
        b"tst",
        tsa.stamp(hashlib.sha512(b"x").digest(), "sha512", cert_req=False),
    ]


def _stored_tst(storage: Storage, idx: int) -> bytes | None:
    """The raw ``tst`` column of one entry (SQLite only)."""
    assert isinstance(storage, SQLiteStorage)
    with sqlite3.connect(storage.path) as conn:
        row = conn.execute("SELECT tst FROM entries WHERE idx = ?", (idx,)).fetchone()
    return None if row[0] is None else bytes(row[0])


def test_tokens_and_statements_come_back_byte_for_byte(
    storage: Storage, tsa: TimeStampAuthority
) -> None:
    tokens = _tokens(tsa, 0)
    assert split(tokens[3]) is None  # the damaged token is not in the template layout
    _append(storage, tokens)
    again = _tokens(tsa, len(tokens))
    _append(storage, again)  # a second batch reuses the stored templates
    want = tokens + again
    assert [e.tst for e in storage.iter_entries()] == want
    assert [e.entry for e in storage.iter_entries()] == [_statement(i) for i in range(len(want))]
    for i, t in enumerate(want):
        e = storage.entry(i)
        assert e is not None and e.tst == t and e.entry == _statement(i)
        assert [x.tst for x in storage.entries_for_message(_sha(i))] == [t]


def test_template_tokens_are_stored_small_and_others_whole(
    tmp_path: Path, tsa: TimeStampAuthority
) -> None:
    st = SQLiteStorage(tmp_path / "n.db")
    tokens = _tokens(tsa, 0)
    _append(st, tokens)
    stored = [_stored_tst(st, i) for i in range(len(tokens))]
    assert all(s is not None and s[0] == 1 and len(s) < 130 for s in stored[:2])
    # Another digest than the message's, and a nonce: both kept, still far from whole.
    assert stored[2] is not None and stored[2][0] == 1 and len(stored[2]) < 170
    assert len(stored[1] or b"") < 130 < len(tokens[1] or b"")  # the chain is kept once
    assert stored[3] == tokens[3]  # DER, not rebuildable: whole, as schema 2 stored it
    assert stored[5] == b"\x00" + (tokens[5] or b"")
    assert stored[6] == b"\x00" + (tokens[6] or b"")
    st.close()
    reopened = SQLiteStorage(tmp_path / "n.db")  # a fresh process reads the templates
    assert [e.tst for e in reopened.iter_entries()] == tokens
    reopened.close()


def test_a_rolled_back_template_is_not_cached(tmp_path: Path, creds: TsaCredentials) -> None:
    st = SQLiteStorage(tmp_path / "n.db")
    tsa = TimeStampAuthority(creds, policy_oid="1.3.6.1.4.1.99999.7")
    with pytest.raises(RuntimeError), st.sequence() as tx:
        tx.append(
            0,
            [
                NewEntry(
                    1,
                    _sha(0),
                    "<0@x>",
                    "SubmissionAcceptance",
                    _statement(0),
                    tsa.stamp(bytes.fromhex(_sha(0)), cert_req=False),
                )
            ],
            [b"h" * 32],
            0,
            StoredCheckpoint(1, b"r" * 32, T0, b"n"),
        )
        raise RuntimeError("the batch failed after its template was inserted")
    token = tsa.stamp(bytes.fromhex(_sha(0)), cert_req=False)
    _append(st, [token])
    assert st.entry(0) is not None and st.entry(0).tst == token  # type: ignore[union-attr]
    st.close()
    reopened = SQLiteStorage(tmp_path / "n.db")
    assert reopened.entry(0).tst == token  # type: ignore[union-attr]
    reopened.close()


def test_a_version_2_log_opens_as_version_3_and_keeps_its_whole_tokens(
    tmp_path: Path, tsa: TimeStampAuthority
) -> None:
    path = tmp_path / "n.db"
    st = SQLiteStorage(path)
    st.close()
    old = tsa.stamp(bytes.fromhex(_sha(0)), cert_req=False)
    with sqlite3.connect(path) as conn:  # what a schema-2 notary left: the token whole
        conn.execute("DROP TABLE tst_templates")
        conn.execute("UPDATE schema_version SET version = 2")
        conn.execute(
            "INSERT INTO entries (idx, account_id, entry, tst) VALUES (0, 1, ?, ?)",
            (_statement(0), old),
        )
        conn.execute("INSERT INTO hashes (idx, hash) VALUES (0, ?)", (b"h" * 32,))
        conn.execute(
            "INSERT INTO checkpoints (size, root, time, note) VALUES (1, ?, ?, ?)",
            (b"r" * 32, T0.isoformat(), b"n"),
        )
    st = SQLiteStorage(path)
    new = tsa.stamp(bytes.fromhex(_sha(1)), cert_req=False)
    _append(st, [new])
    assert [e.tst for e in st.iter_entries()] == [old, new]
    assert _stored_tst(st, 0) == old and (_stored_tst(st, 1) or b"")[0] == 1
    st.close()
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT version FROM schema_version")] == [
            SCHEMA_VERSION
        ]


def test_a_missing_template_is_a_clear_storage_error(
    tmp_path: Path, tsa: TimeStampAuthority
) -> None:
    path = tmp_path / "n.db"
    st = SQLiteStorage(path)
    _append(st, [tsa.stamp(bytes.fromhex(_sha(0)), cert_req=False)])
    st.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM tst_templates")
    st = SQLiteStorage(path)
    with pytest.raises(StorageError, match="stored RFC 3161 token is damaged"):
        st.entry(0)
    st.close()


def _openssl_token(work: Path) -> bytes:
    """A token OpenSSL's own TSA (``openssl ts -reply``) issued: another layout entirely."""
    generate_tsa_pki(work / "pki", "Foreign TSA")
    (work / "serial").write_text("01\n")
    (work / "ts.cnf").write_text(
        "[ tsa ]\ndefault_tsa = tsa1\n[ tsa1 ]\nserial = serial\nsigner_digest = sha256\n"
        "default_policy = 1.2.3.4.1\ndigests = sha256\naccuracy = secs:1\n"
        "ess_cert_id_alg = sha256\n"
    )
    digest = hashlib.sha256(b"foreign").hexdigest()
    run = {"cwd": work, "check": True, "capture_output": True}
    subprocess.run(
        ["openssl", "ts", "-query", "-digest", digest, "-sha256", "-out", "q.tsq"], **run
    )
    subprocess.run(
        [
            "openssl",
            "ts",
            "-reply",
            "-config",
            "ts.cnf",
            "-queryfile",
            "q.tsq",
            "-signer",
            "pki/tsa-cert.pem",
            "-inkey",
            "pki/tsa-key.pem",
            "-token_out",
            "-out",
            "t.der",
        ],
        **run,
    )
    return (work / "t.der").read_bytes()


def test_a_token_from_another_tsa_is_stored_whole(
    storage: Storage, tsa: TimeStampAuthority, tmp_path: Path
) -> None:
    foreign = _openssl_token(tmp_path)
    assert split(foreign) is None
    ours = tsa.stamp(bytes.fromhex(_sha(1)), cert_req=False)
    _append(storage, [foreign, ours])
    assert [e.tst for e in storage.iter_entries()] == [foreign, ours]
    if isinstance(storage, SQLiteStorage):
        assert _stored_tst(storage, 0) == foreign
