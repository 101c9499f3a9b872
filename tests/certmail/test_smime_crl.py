"""Revocation of S/MIME certificates with a CRL (``--smime-crl FILE``, openssl
``-crl_check``): a signer the CA's CRL lists is refused, one it does not list opens, a
CRL file without the signer's CA's CRL is a clear refusal, not a silent pass; an
expired signer is refused with or without a CRL."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cli import json_of, one_line_error
from tests.fixtures.smime import Smime, SmimePki, smime_homes
from tests.fixtures.smime_mail import open_as_bob, signed_by


@pytest.fixture
def smime(correspondents: Any, tmp_path: Path) -> Smime:
    return smime_homes(correspondents, tmp_path)


def test_a_signer_the_crl_lists_is_refused(smime: Smime, tmp_path: Path) -> None:
    s = smime
    signed = signed_by(s, s.alice)
    clean = s.pki.crl([], "clean.crl.pem")
    got = json_of(open_as_bob(s, signed, "--smime-crl", str(clean), "--json"))
    assert got["signer"] == s.alice.email and got["trusted"] is True
    revoked = s.pki.crl([s.alice.cert], "revoked.crl.pem")
    p = open_as_bob(s, signed, "--smime-crl", str(revoked))
    assert p.returncode == 3 and p.stdout == ""
    assert "the signer's S/MIME certificate is revoked" in one_line_error(p)
    # certmail verify likewise
    from tests.fixtures.cli import run

    p = run(s.c.bob, "verify", str(signed), "--smime-crl", str(revoked), **s.env)
    assert p.returncode == 3 and "revoked" in one_line_error(p)
    # Without --smime-crl no revocation check is made (documented): it opens.
    assert json_of(open_as_bob(s, signed, "--json"))["signer"] == s.alice.email


def test_a_crl_of_another_ca_is_a_clear_refusal(smime: Smime, tmp_path: Path) -> None:
    s = smime
    other = SmimePki(tmp_path / "other", name="Other Root").crl([])
    p = open_as_bob(s, signed_by(s, s.alice), "--smime-crl", str(other))
    assert p.returncode == 3
    assert "holds no CRL of the signer's CA" in one_line_error(p)


def test_an_expired_signer_is_refused_with_a_crl(smime: Smime) -> None:
    s = smime
    then = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=90)
    old = s.pki.person(s.alice.email, stem="alice-old", now=then, days=30)
    p = open_as_bob(s, signed_by(s, old), "--smime-crl", str(s.pki.crl([])))
    assert p.returncode == 3 and "has expired" in one_line_error(p)


def test_send_smime_refuses_a_recipient_the_crl_lists(smime: Smime) -> None:
    """``send --smime --smime-crl``: the recipient's certificate checked against the CRL."""
    from tests.fixtures.cli import run, send_args

    s = smime
    revoked = s.pki.crl([s.bob.cert], "bob-revoked.crl.pem")
    args = send_args(s.bob.email, "Contract", "--smime", "--no-notarize")
    p = run(s.c.alice, *args, "--smime-crl", str(revoked), stdin=b"x\n", **s.env)
    assert p.returncode == 3, p.stderr
    assert f"not encrypting to {s.bob.email}: the S/MIME certificate is revoked" in one_line_error(
        p
    )
    assert s.c.sink.messages == []
    p = run(s.c.alice, *send_args(s.bob.email, "X", "--no-notarize"), "--smime-crl", str(revoked),
            stdin=b"x\n", **s.env)  # fmt: skip
    assert p.returncode == 1 and "--smime-crl are for S/MIME, not a message" in one_line_error(p)
    clean = s.pki.crl([], "clean.crl.pem")
    sent = json_of(run(s.c.alice, *args, "--smime-crl", str(clean), stdin=b"x\n", **s.env))
    assert sent["encrypted"] and len(s.c.sink.messages) == 1
