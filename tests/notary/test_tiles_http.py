"""GET /tile/... and GET /checkpoint (c2sp.org/tlog-tiles) on a real notary.

In-process (both the raw-ASGI answer and, with CERTMAIL_REFERENCE_ONLY=1, the
FastAPI routes) for the HTTP rules; then a real ``certmail notary serve``
whose tiles reproduce its checkpoint's root and the inclusion proofs of the
receipts it handed out, checked by certmail's code and by Go's
golang.org/x/mod/sumdb/tlog (tests/notary/tlogcheck, a verifier that is not ours).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from notary.api import create_app
from notary.checkpoint import Checkpoint, open_checkpoint
from notary.merkle import (
    leaf_hash,
    prove_consistency,
    prove_inclusion,
    tree_hash,
    verify_consistency,
)
from notary.note import Signer, Verifier
from notary.receipt import Receipt
from notary.service import NotaryService
from notary.tiles import Tile, TileHashReader, tiles_for_size
from tests.fixtures.notary import NotaryProcess, init_notary_dir

IMMUTABLE = "public, max-age=31536000, immutable"
GO_SOURCE = Path(__file__).parent / "tlogcheck" / "main.go"
GOPATH = "/usr/share/gocode"


def _batch(
    client: httpx.Client | TestClient, auth: dict[str, str], tag: str, n: int
) -> list[Receipt]:
    items = [
        {"sha256": hashlib.sha256(f"{tag}{i}".encode()).hexdigest(), "message_id": f"<{i}@{tag}>"}
        for i in range(n)
    ]
    r = client.post("/v1/notarize/batch", json={"items": items, "tst": False}, headers=auth)
    assert r.status_code == 200, r.text
    return [Receipt.from_json(x) for x in r.json()["receipts"]]


@pytest.fixture(scope="module", params=["fast", "reference"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, NotaryService, dict[str, str]]]:
    mp = pytest.MonkeyPatch()
    if request.param == "reference":
        mp.setenv("CERTMAIL_REFERENCE_ONLY", "1")
    d = init_notary_dir(tmp_path_factory.mktemp("tiles") / "notary")
    svc = NotaryService.open(d)
    _, token = svc.add_account(["alice@example.test"])
    with TestClient(create_app(svc), raise_server_exceptions=False) as c:
        yield c, svc, {"Authorization": f"Bearer {token}"}
    svc.close()
    mp.undo()


def test_tiles_and_checkpoint_over_http(
    served: tuple[TestClient, NotaryService, dict[str, str]],
) -> None:
    client, svc, auth = served
    r = client.get("/checkpoint")
    assert r.status_code == 200 and r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["cache-control"] == "public, max-age=2"
    assert client.get("/tile/0/000.p/1").status_code == 404  # the empty tree has no tiles
    _batch(client, auth, "a", 600)
    note = client.get("/checkpoint").content
    assert note == client.get("/v1/checkpoint").content
    cp = open_checkpoint(note, Verifier.from_vkey(svc.vkey))
    assert cp.size == 600
    for tile in tiles_for_size(600):  # 0/000, 0/001, 0/002.p/88, 1/000.p/2
        r = client.get("/" + tile.path())
        assert r.status_code == 200, tile
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["cache-control"] == IMMUTABLE
        assert len(r.content) == 32 * tile.width
    # a narrower partial tile of a tree the log once had is served too; HEAD has no body
    assert client.get("/tile/0/002.p/5").content == client.get("/tile/0/002.p/88").content[:160]
    head = client.head("/tile/0/000")
    assert (
        head.status_code == 200 and head.content == b"" and head.headers["content-length"] == "8192"
    )

    def fetch(tiles: Sequence[Tile]) -> list[bytes]:
        return [client.get("/" + t.path()).content for t in tiles]

    assert tree_hash(600, TileHashReader(600, fetch)) == cp.root_hash


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/tile/entries/000", 404),  # entries are private: never an entry bundle
        ("/tile/entries/000.p/5", 404),
        ("/tile/0/003", 404),  # beyond the tree
        ("/tile/0/002.p/89", 404),
        ("/tile/2/000.p/1", 404),
        ("/tile/0/0", 404),  # malformed
        ("/tile/0/000.p/256", 404),
        ("/tile/00/000", 404),
        ("/tile/", 404),
    ],
)
def test_what_is_not_served(
    served: tuple[TestClient, NotaryService, dict[str, str]], path: str, status: int
) -> None:
    client, _, _ = served
    r = client.get(path)
    assert r.status_code == status, r.text
    assert r.json()["error"] == "not_found"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-type"] == "application/json"


def test_only_get(served: tuple[TestClient, NotaryService, dict[str, str]]) -> None:
    client, _, _ = served
    r = client.post("/tile/0/000", content=b"x")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    assert client.post("/checkpoint").status_code == 405


# --- a real notary, checked by Go's sumdb/tlog ---------------------------------


@pytest.fixture(scope="session")
def tlogcheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/notary/tlogcheck built with Debian's Go and golang.org/x/mod."""
    go = shutil.which("go")
    if go is None or not Path(GOPATH, "src/golang.org/x/mod/sumdb/tlog").is_dir():
        pytest.fail("needs Debian's golang-go and golang-golang-x-mod-dev (scripts/bootstrap.sh)")
    out = tmp_path_factory.mktemp("go") / "tlogcheck"
    # Go's build cache is content-addressed and safe to share between concurrent builds:
    # one per user across sessions spares each run recompiling the standard library
    # (the binary itself is still built from GO_SOURCE every session).
    cache = Path(os.environ.get("GOCACHE") or f"/tmp/certmail-test-gocache-{os.getuid()}")
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": GOPATH,
        "GOCACHE": str(cache),
        "GOFLAGS": "",
    }
    subprocess.run([go, "build", "-o", str(out), str(GO_SOURCE)], check=True, env=env, timeout=300)
    return out


def _go(tlogcheck: Path, url: str, vkey: str, *args: str) -> list[str]:
    r = subprocess.run(
        [str(tlogcheck), "-url", url, "-vkey", vkey, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.splitlines()


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


def test_real_notary_tiles_verify_with_go_tlog(notary_dir: Path, tlogcheck: Path) -> None:
    proc = NotaryProcess(notary_dir)
    proc.start()
    try:
        token = proc.token_for("alice@example.test")
        auth = {"Authorization": f"Bearer {token}"}
        verifier = Verifier.from_vkey(proc.vkey)
        with httpx.Client(base_url=proc.url, timeout=60) as c:
            first = _batch(c, auth, "a", 300)
            old: Checkpoint = first[0].checkpoint()
            later = _batch(c, auth, "b", 2000) + _batch(c, auth, "c", 7)
            note = c.get("/checkpoint").content
            cp = open_checkpoint(note, verifier)
            assert cp.size == 2307

            def fetch(tiles: Sequence[Tile]) -> list[bytes]:
                got = [c.get("/" + t.path()) for t in tiles]
                assert all(r.status_code == 200 for r in got)
                return [r.content for r in got]

            tiles = TileHashReader(cp.size, fetch)
            assert tree_hash(cp.size, tiles) == cp.root_hash
            verify_consistency(
                old.size,
                cp.size,
                prove_consistency(old.size, cp.size, tiles),
                old.root_hash,
                cp.root_hash,
            )
            # the inclusion proofs the notary handed out, rebuilt from tiles
            for receipt in (first[0], first[-1], later[0], later[1234], later[-1]):
                at = receipt.checkpoint()
                at_tiles = TileHashReader(at.size, fetch)
                assert tree_hash(at.size, at_tiles) == at.root_hash
                assert (
                    tuple(prove_inclusion(at.size, receipt.index, at_tiles)) == receipt.proof.hashes
                )
        lines = _go(
            tlogcheck, proc.url, proc.vkey, "-old", str(old.size), "-oldroot", _b64(old.root_hash)
        )
        assert lines == [
            f"ok signature {cp.origin} size {cp.size}",
            f"ok root {_b64(cp.root_hash)}",
            f"ok consistency {old.size} {cp.size}",
        ]
        # an inclusion proof against the latest checkpoint, checked and rebuilt by Go
        r = httpx.get(
            proc.url + f"/v1/messages/{hashlib.sha256(b'b1234').hexdigest()}/receipts", headers=auth
        )
        (receipt,) = [Receipt.from_json(x) for x in r.json()["receipts"]]
        assert receipt.checkpoint().size == cp.size
        proof = ",".join(_b64(h) for h in receipt.proof.hashes)
        lines = _go(
            tlogcheck,
            proc.url,
            proc.vkey,
            "-index",
            str(receipt.index),
            "-leaf",
            _b64(leaf_hash(receipt.entry)),
            "-proof",
            proof,
        )
        assert lines[-1] == f"ok inclusion {receipt.index}"
        # Go refuses what is wrong: another key, a proof with one byte flipped
        other = Signer.generate(cp.origin).verifier().vkey()
        bad = subprocess.run(
            [str(tlogcheck), "-url", proc.url, "-vkey", other],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert bad.returncode == 1 and "FAIL" in bad.stdout
        flipped = bytearray(receipt.proof.hashes[0])
        flipped[0] ^= 1
        proof = ",".join(_b64(h) for h in (bytes(flipped), *receipt.proof.hashes[1:]))
        bad = subprocess.run(
            [
                str(tlogcheck),
                "-url",
                proc.url,
                "-vkey",
                proc.vkey,
                "-index",
                str(receipt.index),
                "-leaf",
                _b64(leaf_hash(receipt.entry)),
                "-proof",
                proof,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert bad.returncode == 1 and "FAIL inclusion" in bad.stdout
    finally:
        proc.stop()


def test_openapi_lists_the_tile_paths(
    served: tuple[TestClient, NotaryService, dict[str, str]],
) -> None:
    client, _, _ = served
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {"/tile/{path}", "/checkpoint"} <= paths


@pytest.mark.postgres
def test_tiles_from_postgresql(tmp_path: Path) -> None:
    """The same tiles from the PostgreSQL backend (one storage interface)."""
    import uuid

    from tests.notary.storage_backends import pg_url

    url = pg_url(f"tiles_{uuid.uuid4().hex[:12]}")
    d = init_notary_dir(tmp_path / "notary", database=url)
    svc = NotaryService.open(d, database=url)
    try:
        _, token = svc.add_account(["alice@example.test"])
        with TestClient(create_app(svc), raise_server_exceptions=False) as client:
            auth = {"Authorization": f"Bearer {token}"}
            receipts = _batch(client, auth, "pg", 700)
            cp = open_checkpoint(client.get("/checkpoint").content, Verifier.from_vkey(svc.vkey))

            def fetch(tiles: Sequence[Tile]) -> list[bytes]:
                return [client.get("/" + t.path()).content for t in tiles]

            tiles = TileHashReader(cp.size, fetch)
            assert tree_hash(cp.size, tiles) == cp.root_hash
            r = receipts[-1]
            assert tuple(prove_inclusion(cp.size, r.index, tiles)) == r.proof.hashes
    finally:
        svc.storage.drop_schema()  # type: ignore[attr-defined]
        svc.close()


def test_an_unreadable_store_is_503_not_500() -> None:
    from notary.errors import StorageError
    from notary.tiles_api import TileServer

    class Broken:
        def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
            raise StorageError("disk on fire")

        def latest_checkpoint(self) -> object:
            class Cp:
                size = 1000

            return Cp()

    answer = TileServer(Broken(), lambda: b"").tile("tile/0/000")  # type: ignore[arg-type]
    assert answer.status == 503 and b"unavailable" in answer.body
