"""The notary's anchoring (notary/anchors.py) in-process, against real openssl TSAs
(tests/fixtures/openssl_tsa.py): tokens verified against the configured root before
they are kept, kept durably (a restarted notary does not ask again), at most every N
seconds per TSA, and the configuration's errors."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509

from keys.errors import ConflictError, Error, NotFoundError
from notary.anchors import Anchoring, add_anchor, anchored_at_least, load_anchors, remove_anchor
from notary.rfc3161 import verify_token
from tests.fixtures.openssl_tsa import OpensslTsa


@pytest.fixture(scope="module")
def tsas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OpensslTsa, OpensslTsa]]:
    base = tmp_path_factory.mktemp("tsas")
    a = OpensslTsa(base / "a", name="TSA A").start()
    b = OpensslTsa(base / "b", name="TSA B").start()
    yield a, b
    a.stop()
    b.stop()


def _cp(size: int) -> SimpleNamespace:
    return SimpleNamespace(size=size, note=f"notary.test\n{size}\nroot\n\n— sig\n".encode())


def test_tokens_are_verified_kept_durably_and_rate_limited(
    tsas: tuple[OpensslTsa, OpensslTsa], tmp_path: Path
) -> None:
    a, b = tsas
    add_anchor(tmp_path, a.url, a.root.read_bytes(), every=60)
    add_anchor(
        tmp_path, b.url + "wrong-root", a.root.read_bytes(), every=60
    )  # B's tokens: A's root
    now = [1000.0]
    anchoring = Anchoring(tmp_path, lambda: None, clock=lambda: now[0])
    b_entry = load_anchors(tmp_path)[1]
    assert b_entry.url.endswith("wrong-root")
    asked = a.queries
    anchoring.round(_cp(3).note, 3)
    assert a.queries == asked + 1
    got = anchored_at_least(tmp_path, 1)
    assert got is not None and got.size == 3 and list(got.tokens) == [load_anchors(tmp_path)[0].id]
    root = x509.load_pem_x509_certificate(a.root.read_bytes())
    (token,) = got.tokens.values()
    info = verify_token(token, roots=[root], digest=hashlib.sha256(got.note).digest())
    assert info.tsa_cert.subject.rfc4514_string() == "CN=TSA A"
    # the log grew, but A's 60 s have not passed: not asked; once they have, asked
    anchoring.round(_cp(5).note, 5)
    assert a.queries == asked + 1 and anchored_at_least(tmp_path, 4) is None
    now[0] += 61
    anchoring.round(_cp(5).note, 5)
    assert a.queries == asked + 2 and anchored_at_least(tmp_path, 4).size == 5  # type: ignore[union-attr]
    # a restarted notary knows what is kept: not asked again for that size
    again = Anchoring(tmp_path, lambda: None, clock=lambda: 10_000.0)
    again.round(_cp(5).note, 5)
    assert a.queries == asked + 2
    assert anchored_at_least(tmp_path, 6) is None


def test_configuration_errors(tsas: tuple[OpensslTsa, OpensslTsa], tmp_path: Path) -> None:
    a, _ = tsas
    with pytest.raises(Error, match="http:// or https://"):
        add_anchor(tmp_path, "ftp://x", a.root.read_bytes(), every=60)
    with pytest.raises(Error, match="no PEM certificate"):
        add_anchor(tmp_path, a.url, b"nope", every=60)
    with pytest.raises(Error, match="at least 1"):
        add_anchor(tmp_path, a.url, a.root.read_bytes(), every=0)
    e = add_anchor(tmp_path, a.url, a.root.read_bytes(), every=60)
    with pytest.raises(ConflictError):
        add_anchor(tmp_path, a.url, a.root.read_bytes(), every=60)
    assert (tmp_path / e.root).read_bytes() == a.root.read_bytes()
    remove_anchor(tmp_path, e.id)
    assert load_anchors(tmp_path) == []
    with pytest.raises(NotFoundError):
        remove_anchor(tmp_path, a.url)
    (tmp_path / "anchors.toml").write_text("[[anchor]\n")
    with pytest.raises(Error, match="not valid TOML"):
        load_anchors(tmp_path)
