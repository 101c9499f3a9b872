"""``certmail send --smime`` with the notary: notarized direct, and through the relay.

The same manifest, scan, notarization and relay as OpenPGP: the relay sees
CMS EnvelopedData as ciphertext (``content: {"encrypted": true}``), Bob's
``open --ack`` of the delivered copy shows the notarized SHA-256 and
acknowledges it, and Alice's receipts show the hand-over.
"""

from __future__ import annotations

import base64
import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes

from notary.receipt import Receipt
from tests.fixtures.cli import json_of, run, send_args, use_notary
from tests.fixtures.relay import Relay, as_sender
from tests.fixtures.smime import Smime, SmimePki, openssl, smime_homes
from tests.fixtures.smime_relay import relay, smime, wait_until

__all__ = ["relay", "smime"]  # the fixtures


def test_smime_direct_is_notarized(correspondents: Any, notary_server: Any, tmp_path: Path) -> None:
    c = correspondents
    s = smime_homes(c, tmp_path)
    use_notary(c, c.alice, notary_server)
    args = send_args(c.bob.email, "Contract", "--smime", "--via", "smtp")
    out = json_of(run(c.alice, *args, stdin=b"Please sign.\n", **s.env))
    (rc,) = out["receipts"]
    from notary.note import Verifier

    stmt = Receipt.from_json(rc).verify(Verifier.from_vkey(notary_server.vkey))
    assert stmt["message"]["sha256"] == out["sha256"]
    eml = tmp_path / "in.eml"
    eml.write_bytes(c.sink.messages[-1].data)
    o = json_of(run(c.bob, "open", str(eml), "--no-ack", "--json", **s.env))
    assert o["sha256"] == out["sha256"] and o["notary"] == notary_server.url
    assert o["signer"] == c.alice.email and o["manifest"] == "verified"


def test_smime_through_the_relay_opens_and_is_acknowledged(
    correspondents: Any, relay: Relay, smime: Smime, tmp_path: Path
) -> None:
    """Bob's acknowledgement is signed with his S/MIME key (CMS), not an OpenPGP one."""
    c, s = correspondents, smime
    out = json_of(
        as_sender(
            c, relay, *send_args(c.bob.email, "Contract", "--smime"), stdin=b"Dear Bob.\n", **s.env
        )
    )
    assert out["via"] == "relay" and out["status"] == "sent"
    (acc,) = out["receipts"]
    stmt = Receipt.from_json(acc).verify(relay.verifier())
    assert stmt["event"] == "SubmissionAcceptance" and stmt["content"] == {"encrypted": True}
    wait_until(lambda: len(c.sink.messages) == 1, "delivery to Bob's server")
    eml = tmp_path / "in.eml"
    eml.write_bytes(c.sink.messages[0].data)
    p = run(c.bob, "open", str(eml), "--ack", "--json", **s.env)
    assert p.returncode == 0, p.stderr
    o = json.loads(p.stdout)
    assert o["sha256"] == out["sha256"] and o["notary"] == relay.url
    assert o["signer"] == c.alice.email and o["body"] == "Dear Bob.\n"
    assert o["ack"]["status"] == "sent" and o["ack"]["sha256"] == out["sha256"]
    bob_cert = s.bob.cert.fingerprint(hashes.SHA256()).hex()
    assert o["ack"]["fingerprint"] == bob_cert
    stmt = Receipt.from_json(o["ack"]["receipt"]).verify(relay.verifier())
    assert stmt["event"] == "ContentHandover" and stmt["certificate_sha256"] == bob_cert
    # The logged CMS signature verifies with the stock tool against the CA.
    (tmp_path / "ack.p7s").write_bytes(base64.b64decode(stmt["cms"]))
    (tmp_path / "ack.txt").write_text(stmt["signed"], encoding="utf-8")
    openssl(
        "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "ack.p7s"),
        "-content", str(tmp_path / "ack.txt"), "-CAfile", str(s.pki.ca), "-purpose", "smimesign",
    )  # fmt: skip
    steps: list[dict[str, Any]] = []

    def handed_over() -> bool:
        r = as_sender(c, relay, "receipts", out["sha256"], "--json", **s.env)
        steps[:] = json.loads(r.stdout)["recipients"][c.bob.email] if r.returncode == 0 else []
        return "ContentHandover" in [st["event"] for st in steps]

    wait_until(handed_over, "the acknowledgement in Alice's receipts")
    (ack,) = [st for st in steps if st["event"] == "ContentHandover"]
    assert ack["step"] == "acknowledged" and ack["key"] == "recipient's key"
    assert ack["fingerprint"] == bob_cert and "the one you hold for them" in ack["detail"]
    # Without the CA in her bundle, Alice's client does not take the certificate as Bob's.
    other = SmimePki(tmp_path / "other", name="Another Root CA").ca
    r = as_sender(c, relay, "receipts", out["sha256"], "--json", "--smime-ca", str(other))
    (ack,) = [st for st in json.loads(r.stdout)["recipients"][c.bob.email]
              if st["event"] == "ContentHandover"]  # fmt: skip
    assert ack["key"] == "not the recipient's key", ack


def test_smime_proof_bundle_exports_and_verifies(
    correspondents: Any, relay: Relay, smime: Smime, tmp_path: Path
) -> None:
    """The evidence of an S/MIME send is a proof bundle like any other (DESIGN §4.5); Bob's
    S/MIME acknowledgement (by ``inbox open --ack``) in it is checked by ``proof verify
    --smime-ca`` and by VERIFY.txt's ``openssl cms -verify`` as printed."""
    c, s = correspondents, smime
    args = send_args(c.bob.email, "Contract", "--smime")
    out = json_of(as_sender(c, relay, *args, stdin=b"Dear Bob.\n", **s.env))
    wait_until(lambda: len(c.sink.messages) == 1, "delivery to Bob's server")
    maildir = tmp_path / "Maildir"  # this time through `inbox open --ack`
    for d in ("cur", "new", "tmp"):
        (maildir / d).mkdir(parents=True)
    (maildir / "new" / "1700000000.M1P1.test").write_bytes(c.sink.messages[0].data)
    inbox = ("inbox", "open", "1700000000.M1P1.test", "--maildir", str(maildir), "--json")
    o = json_of(run(c.bob, *inbox, "--ack", **s.env))
    assert o["sha256"] == out["sha256"] and o["ack"]["receipt"]
    assert o["ack"]["fingerprint"] == s.bob.cert.fingerprint(hashes.SHA256()).hex()
    bundle = tmp_path / "p.zip"
    p = as_sender(c, relay, "proof", "export", out["sha256"], "-o", str(bundle), **s.env)
    assert p.returncode == 0, p.stderr
    verify = ("proof", "verify", str(bundle), "--trust-bundle-key", "--trust-bundle-root")
    v = json_of(
        as_sender(c, relay, *verify, "--json", "--allow-partial", "--smime-ca", str(s.pki.ca))
    )
    assert v["valid"] and v["sha256"] == out["sha256"]
    assert v["unchecked"] == ["sender signature"]  # encrypted: the signature is inside
    assert [e["event"] for e in v["events"]] == [
        "SubmissionAcceptance", "RelayToNonERDS", "ContentHandover",
    ]  # fmt: skip
    (ack,) = [ch for ch in v["checks"] if ch["item"].endswith("acknowledgement")]
    assert ack["status"] == "ok" and "S/MIME" in ack["detail"], ack
    assert c.bob.email in ack["detail"] and "chain verified" in ack["detail"]
    # Without the CA bundle: the signature against its own certificate, the chain unrun.
    v = json_of(as_sender(c, relay, *verify, "--json", "--allow-partial"))
    (ack,) = [ch for ch in v["checks"] if ch["item"].endswith("acknowledgement")]
    assert ack["status"] == "skipped" and "--smime-ca" in ack["detail"]
    # Another CA: the certificate is not trusted, and the bundle does not verify.
    other = SmimePki(tmp_path / "other", name="Another Root CA").ca
    p = as_sender(c, relay, *verify, "--smime-ca", str(other))
    assert p.returncode == 3 and "does not chain" in p.stderr, p.stderr
    # VERIFY.txt's commands, as printed, with the stock tools.
    work = tmp_path / "unzipped"
    with zipfile.ZipFile(bundle) as z:
        z.extractall(work)
        assert json.loads(z.read("bundle.json"))["format"] == 6
    text = (work / "VERIFY.txt").read_text()
    lines = text[text.index("S/MIME (CMS)") :].split("\n\n", 2)[1]
    script = lines.replace("your-ca.pem", str(s.pki.ca))
    done = subprocess.run(["sh", "-c", script], cwd=work, capture_output=True, text=True)
    assert done.returncode == 0 and "Verification successful" in done.stderr, done.stderr
