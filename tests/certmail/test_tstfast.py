"""certmail.tstfast: the template check of our TSA's tokens agrees with the general verifier."""

from __future__ import annotations

import functools
import hashlib
import tempfile
from pathlib import Path

from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certmail.tstfast import template_for, verify_fast
from keys.tsa import generate_tsa_pki
from notary.rfc3161 import TimeStampAuthority, verify_token

MESSAGE = b"From: a@example.org\r\nTo: b@example.net\r\n\r\nhello\r\n"
DIGEST = hashlib.sha256(MESSAGE).digest()


def _setup(tmp: Path) -> tuple[TimeStampAuthority, bytes, list[x509.Certificate]]:
    creds = generate_tsa_pki(tmp / "tsa", "Fast TSA")
    tsa = TimeStampAuthority(creds, state_dir=tmp / "tsa")
    pem = tsa.chain_pem()
    return tsa, pem, x509.load_pem_x509_certificates(pem)


def test_same_result_as_the_general_verifier(tmp_path: Path) -> None:
    tsa, pem, chain = _setup(tmp_path)
    roots = chain[-1:]
    tpl = template_for(pem, chain, roots)
    assert tpl is not None
    for token in (tsa.stamp(DIGEST), tsa.stamp(DIGEST, nonce=2**63 + 5),
                  tsa.stamp(DIGEST, cert_req=False)):
        fast = verify_fast(token, tpl, DIGEST)
        full = verify_token(token, roots=roots, data=MESSAGE, certificates=chain)
        assert fast is not None
        assert (fast.gen_time, fast.serial, fast.policy, fast.nonce, fast.tsa_cert) == (
            full.gen_time, full.serial, full.policy, full.nonce, full.tsa_cert)
        # another message's imprint: not accepted
        assert verify_fast(token, tpl, hashlib.sha256(b"other").digest()) is None


def test_other_layouts_and_foreign_chains_are_left_to_the_general_verifier(
        tmp_path: Path) -> None:
    tsa, pem, chain = _setup(tmp_path)
    other, _, other_chain = _setup(tmp_path / "other")
    tpl = template_for(pem, chain, chain[-1:])
    assert tpl is not None
    assert verify_fast(other.stamp(DIGEST), tpl, DIGEST) is None  # signed by another TSA
    sha384 = tsa.stamp(hashlib.sha384(MESSAGE).digest(), "sha384")
    assert verify_fast(sha384, tpl, DIGEST) is None
    # a chain that does not end at the given roots has no template
    assert template_for(pem, chain, other_chain[-1:]) is None


@functools.cache
def _stamped() -> tuple[bytes, bytes, tuple[x509.Certificate, ...]]:
    tsa, pem, chain = _setup(Path(tempfile.mkdtemp(prefix="tstfast-")))
    return tsa.stamp(DIGEST), pem, tuple(chain)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pos=st.integers(0, 10**6), mask=st.integers(1, 255))
def test_a_flipped_byte_is_never_accepted(pos: int, mask: int) -> None:
    token, pem, chain = _stamped()
    tpl = template_for(pem, chain, chain[-1:])
    assert tpl is not None and verify_fast(token, tpl, DIGEST) is not None
    bad = bytearray(token)
    bad[pos % len(token)] ^= mask
    assert verify_fast(bytes(bad), tpl, DIGEST) is None
