"""``certmail send --pickup --smime`` (docs/sealed.md "Pickup"): an S/MIME sender's pickup
notice is signed with S/MIME (RFC 8551 ``multipart/signed``, detached CMS SignedData), not
OpenPGP, and ``openssl cms -verify`` (the independent peer) accepts its signature.

Real components: openssl, gpg, ``certmail notary serve``, an aiosmtpd server.
"""

from __future__ import annotations

import email
import email.policy
import subprocess
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization

from tests.fixtures.cli import use_notary
from tests.fixtures.notary import NotaryProcess
from tests.fixtures.pickup import BODY, CAROL, SECRET, api, parts, send_pickup
from tests.fixtures.smime import openssl, smime_homes


def test_the_pickup_notice_is_smime_signed_and_openssl_verifies_it(
    correspondents: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    c = correspondents
    s = smime_homes(c, tmp_path)
    use_notary(c, c.alice, notary_server)
    sent, eml, url = send_pickup(c, tmp_path, "--smime", **s.env)
    assert sent["signed"] and not sent["encrypted"]
    assert sent["recipients"] == [CAROL]
    top = email.message_from_bytes(eml, policy=email.policy.default)
    assert top.get_content_type() == "multipart/signed"
    assert top.get_param("protocol") == "application/pkcs7-signature"
    assert b"BEGIN PGP SIGNATURE" not in eml
    assert BODY.strip() not in eml and SECRET[:20] not in eml  # only the link
    # openssl checks the signature over the exact bytes, the chain, the S/MIME purpose.
    path = tmp_path / "notice.eml"
    path.write_bytes(eml)
    content = openssl(
        "cms", "-verify", "-in", str(path), "-CAfile", str(s.pki.ca), "-purpose", "smimesign",
        "-signer", str(tmp_path / "signer.pem"),
    )  # fmt: skip
    signer = (tmp_path / "signer.pem").read_bytes()
    assert signer == s.alice.cert.public_bytes(serialization.Encoding.PEM)
    inner = email.message_from_bytes(content, policy=email.policy.default)
    types = [p.get_content_type() for p in inner.walk()]
    assert "text/plain" in types and "text/html" in types
    assert url.encode() in content.replace(b"=\r\n", b"")
    # A changed byte: openssl refuses.
    path.write_bytes(eml.replace(b"registered message", b"registered messagE", 1))
    bad = subprocess.run(
        ["openssl", "cms", "-verify", "-in", str(path), "-CAfile", str(s.pki.ca),
         "-purpose", "smimesign"], capture_output=True, check=False,
    )  # fmt: skip
    assert bad.returncode != 0
    # The notary holds it for the link, as for an OpenPGP-signed notice.
    _, token, _ = parts(url)
    page = httpx.get(api(notary_server, token), timeout=10)
    assert page.status_code == 200 and c.alice.email in page.json()["sender"], page.text
