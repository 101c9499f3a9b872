"""S/MIME signed read receipts (RFC 8098 inside RFC 8551 multipart/signed), as Outlook
and corporate clients send them.

Alice sends S/MIME with ``--request-mdn`` (direct mode, a real notary, an SMTP
sink); the MDN is made and signed by ``openssl cms -sign`` with Bob's test
certificate (the independent peer). Alice's ``open`` and ``inbox list`` verify it
against her CA bundle, keep it labelled "signed MDN (S/MIME) from SUBJECT/ADDR",
and ``receipts`` shows it; a changed one, or one whose certificate another CA
issued, is refused with nothing kept; one signed by another person's certificate is
kept as weak.
"""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes

from certmail.mdn_in import stored
from tests.fixtures.cli import json_of, run, send_args, use_notary
from tests.fixtures.mdn import thunderbird_mdn
from tests.fixtures.notary import NotaryProcess
from tests.fixtures.smime import Smime, SmimePerson, SmimePki, openssl, smime_homes

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def sent(
    correspondents: Any, notary_server: NotaryProcess, tmp_path: Path
) -> tuple[Smime, dict[str, Any]]:
    c = correspondents
    s = smime_homes(c, tmp_path)
    use_notary(c, c.alice, notary_server)
    args = send_args(c.bob.email, "Read me", "--smime", "--via", "smtp", "--request-mdn")
    return s, json_of(run(c.alice, *args, stdin=b"Tell me when you read it.\n", **s.env))


def smime_mdn(
    who: SmimePerson, alice: str, message_id: str, work: Path, final: str | None = None
) -> bytes:
    """The report (Thunderbird's layout; Final-Recipient ``final``, else ``who``) signed by
    ``openssl cms -sign`` as ``who``: multipart/signed, application/pkcs7-signature, with
    the mail header fields (From: ``who``) on top."""
    mdn = thunderbird_mdn(final or who.email, alice, message_id)
    report = mdn[mdn.index(b"MIME-Version:") :]
    src = work / "report.eml"
    src.write_bytes(report)
    signed = openssl(
        "cms", "-sign", "-in", str(src), "-signer", str(who.cert_pem), "-inkey",
        str(who.key_pem), "-md", "sha256",
    )  # fmt: skip
    head = f"From: <{who.email}>\r\nTo: {alice}\r\nSubject: Read: Read me\r\n"
    head += "Message-ID: <smime-mdn@example.net>\r\nDate: Tue, 01 Dec 2026 12:00:00 +0000\r\n"
    return head.encode() + signed


def test_an_smime_signed_mdn_is_verified_kept_and_shown(
    sent: tuple[Smime, dict[str, Any]], tmp_path: Path
) -> None:
    s, out = sent
    c = s.c
    f = tmp_path / "mdn.eml"
    f.write_bytes(smime_mdn(s.bob, c.alice.email, out["message_id"], tmp_path))
    got = json_of(run(c.alice, "open", str(f), "--json", **s.env))["mdn"]
    assert got["label"] == "signed-smime" and got["sha256"] == out["sha256"]
    assert got["signer_fingerprint"] == s.bob.cert.fingerprint(hashes.SHA256()).hex()
    assert got["description"] == f"signed MDN (S/MIME) from CN={c.bob.email}/{c.bob.email}"
    doc = json_of(run(c.alice, "receipts", out["sha256"], "--json", **s.env))
    assert [m["label"] for m in doc["mdns"]] == ["signed-smime"]
    text = run(c.alice, "receipts", out["sha256"], **s.env).stdout
    assert f"signed MDN (S/MIME) from CN={c.bob.email}/{c.bob.email}" in text
    # In the proof bundle: checked by proof verify --smime-ca, and by VERIFY.txt's openssl.
    bundle = tmp_path / "p.zip"
    p = run(c.alice, "proof", "export", out["sha256"], "-o", str(bundle), **s.env)
    assert p.returncode == 0, p.stderr
    verify = ("proof", "verify", str(bundle), "--trust-bundle-key", "--trust-bundle-root")
    v = json_of(run(c.alice, *verify, "--json", "--allow-partial", "--smime-ca", str(s.pki.ca)))
    (mdn,) = [ch for ch in v["checks"] if ch["item"] == "read receipt mdns/01.eml"]
    assert mdn["status"] == "ok" and "chain verified" in mdn["detail"], mdn
    assert f"signed (S/MIME) by recipient {c.bob.email}'s certificate" in mdn["detail"]
    other = SmimePki(tmp_path / "other", name="Another Root CA").ca
    p = run(c.alice, *verify, "--allow-partial", "--smime-ca", str(other))
    assert p.returncode == 3 and "does not chain" in p.stderr, p.stderr
    work = tmp_path / "unzipped"
    with zipfile.ZipFile(bundle) as z:
        z.extractall(work)
    text = (work / "VERIFY.txt").read_text()
    script = text[text.index("is signed with S/MIME") :].split("\n\n", 2)[1]
    done = subprocess.run(
        ["sh", "-c", script.replace("your-ca.pem", str(s.pki.ca))],
        cwd=work, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and "Verification successful" in done.stderr, done.stderr


def test_changed_foreign_and_other_peoples_smime_mdns(
    sent: tuple[Smime, dict[str, Any]], tmp_path: Path
) -> None:
    s, out = sent
    c = s.c
    maildir = tmp_path / "Maildir"
    for d in ("cur", "new", "tmp"):
        (maildir / d).mkdir(parents=True)
    good = smime_mdn(s.bob, c.alice.email, out["message_id"], tmp_path)
    changed = good.replace(b"; displayed", b"; deleted")
    other = SmimePki(tmp_path / "other", name="Another Root CA").person(c.bob.email, stem="b2")
    foreign = smime_mdn(other, c.alice.email, out["message_id"], tmp_path)
    (maildir / "new" / "1.M1P1.mx").write_bytes(changed)
    (maildir / "new" / "2.M2P1.mx").write_bytes(foreign)
    p = run(c.alice, "inbox", "list", "--maildir", str(maildir), **s.env)
    assert p.returncode == 0, p.stderr
    assert "does not verify" in p.stdout and "does not chain to a trusted CA" in p.stdout
    assert stored(c.alice.settings.ledger_path, out["sha256"]) == []
    # Carol's certificate signs a receipt naming Bob: a good signature, but weak.
    carol = s.pki.person("carol@example.com")
    mdn = smime_mdn(carol, c.alice.email, out["message_id"], tmp_path, final=c.bob.email)
    (tmp_path / "carol.eml").write_bytes(mdn)
    got = json_of(run(c.alice, "open", str(tmp_path / "carol.eml"), "--json", **s.env))["mdn"]
    assert got["label"] == "signed-other" and got["final_recipient"] == c.bob.email
    assert "weak" in got["description"]
