"""The log's RFC 3161 tokens carry no certificates; the TSA chain is given beside them.

Issue 16 item 2: every stored token repeated the TSA's certificate chain. The
sequencer now asks its TSA for tokens with certReq false; the chain is served
once (``GET /v1/tsa/chain``) and is in every proof bundle (tsa-chain.pem).
Shown here on the real app: the log's token embeds no certificate and is smaller
by the chain; it verifies with the served chain, through certmail's receipt
check and through ``openssl ts -verify -untrusted`` (as VERIFY.txt says), and
without the chain it is refused with a hint naming it; an older receipt whose
token embeds the chain still verifies without one; ``POST /tsa`` still embeds the
certificates when a client asks (certReq true).
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.testclient import TestClient

from certmail.receipts import verify_receipt
from keys.errors import VerificationError
from notary.receipt import Receipt
from notary.service import NotaryService

MESSAGE = b"From: a@example.org\r\nTo: b@example.net\r\n\r\nwithout certificates\r\n"


def _embedded(token: bytes) -> int:
    """How many certificates a TimeStampToken embeds."""
    certs = cms.ContentInfo.load(token)["content"]["certificates"]
    return 0 if certs.native is None else len(certs)


def _notarized(notary_client: TestClient, notary_service: NotaryService) -> Receipt:
    _, token = notary_service.add_account(["alice@example.org"])
    r = notary_client.post(
        "/v1/notarize",
        json={"sha256": hashlib.sha256(MESSAGE).hexdigest(), "message_id": "<nc@example.org>"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    return Receipt.from_json(r.json())


def test_the_logs_tokens_carry_no_certificates_and_verify_with_the_served_chain(
    notary_client: TestClient, notary_service: NotaryService
) -> None:
    receipt = _notarized(notary_client, notary_service)
    assert receipt.tst is not None and _embedded(receipt.tst) == 0
    # What the log stores is that token too.
    (stored,) = notary_service.storage.entries_for_message(hashlib.sha256(MESSAGE).hexdigest())
    assert stored.tst == receipt.tst
    # Smaller than a token with the chain by about the chain's size.
    digest = hashlib.sha256(MESSAGE).digest()
    with_certs = notary_service.tsa.stamp(digest)
    served = notary_client.get("/v1/tsa/chain")
    assert served.status_code == 200
    chain = x509.load_pem_x509_certificates(served.content)
    assert _embedded(with_certs) == len(chain) == 2
    chain_der = sum(len(c.public_bytes(Encoding.DER)) for c in chain)
    assert len(with_certs) - len(receipt.tst) >= chain_der  # (ECDSA signatures vary by a byte)
    # The chain the notary serves verifies it.
    vkey = notary_client.get("/v1/vkey").text.strip()
    got = verify_receipt(receipt, vkey, data=MESSAGE, tsa_roots=chain[-1:], tsa_chain=chain)
    assert got.token is not None and got.token.digest == digest
    # Without the chain: refused, and told where the chain is.
    with pytest.raises(VerificationError) as err:
        verify_receipt(receipt, vkey, data=MESSAGE, tsa_roots=chain[-1:])
    assert err.value.hint is not None and "/v1/tsa/chain" in err.value.hint


def test_openssl_verifies_the_token_with_the_chain_as_untrusted(
    notary_client: TestClient, notary_service: NotaryService, tmp_path: Path
) -> None:
    receipt = _notarized(notary_client, notary_service)
    assert receipt.tst is not None
    (tmp_path / "message.eml").write_bytes(MESSAGE)
    (tmp_path / "token.tst").write_bytes(receipt.tst)
    chain = notary_client.get("/v1/tsa/chain").content
    (tmp_path / "tsa-chain.pem").write_bytes(chain)
    root = x509.load_pem_x509_certificates(chain)[-1]
    (tmp_path / "tsa-root.pem").write_bytes(root.public_bytes(Encoding.PEM))
    base = ["openssl", "ts", "-verify", "-data", "message.eml", "-in", "token.tst", "-token_in"]
    base += ["-CAfile", "tsa-root.pem"]
    ok = subprocess.run(
        [*base, "-untrusted", "tsa-chain.pem"], cwd=tmp_path, capture_output=True, text=True
    )
    assert ok.returncode == 0 and "Verification: OK" in ok.stdout, ok.stdout + ok.stderr
    # The chain is what lets openssl find the signer: without it, no verification.
    bare = subprocess.run(base, cwd=tmp_path, capture_output=True, text=True)
    assert bare.returncode != 0


def test_an_older_receipt_whose_token_embeds_the_chain_still_verifies_without_it(
    notary_client: TestClient, notary_service: NotaryService
) -> None:
    receipt = _notarized(notary_client, notary_service)
    old_token = notary_service.tsa.stamp(
        hashlib.sha256(MESSAGE).digest()
    )  # certReq true, as before
    old = Receipt(receipt.entry, receipt.proof, old_token)
    vkey = notary_client.get("/v1/vkey").text.strip()
    root = notary_service.tsa.creds.chain[-1]
    got = verify_receipt(Receipt.from_json(old.to_json()), vkey, data=MESSAGE, tsa_roots=[root])
    assert got.token is not None and got.token.digest == hashlib.sha256(MESSAGE).digest()


def test_post_tsa_still_embeds_the_certificates_when_asked(notary_client: TestClient) -> None:
    imprint = {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": bytes(32)}
    for cert_req, want in ((True, True), (False, False)):
        query = tsp.TimeStampReq(
            {"version": 1, "message_imprint": imprint, "cert_req": cert_req}
        ).dump()
        r = notary_client.post(
            "/tsa", content=query, headers={"content-type": "application/timestamp-query"}
        )
        assert r.status_code == 200
        token = tsp.TimeStampResp.load(r.content)["time_stamp_token"].dump()
        assert (_embedded(token) > 0) is want
