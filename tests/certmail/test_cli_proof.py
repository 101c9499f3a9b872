"""``certmail proof export|verify`` end to end: a real send, a real notary, gpg, openssl."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from tests.fixtures.cli import one_line_error, run, signed_ack
from tests.fixtures.notary import NotaryProcess
from tests.fixtures.proof import (
    acked_bundle,
    openpgp_commands,
    proof_verify,
    run_commands,
    send_deal,
)


def notary_vkey(path: Path) -> str:
    return path.read_text().strip()


def _tamper_ack(path: Path) -> None:
    """Change one character of the acknowledgement's signed text inside the receipt."""
    import base64

    receipt = json.loads(path.read_text())
    stmt = json.loads(base64.b64decode(receipt["entry"]))
    assert "bob@" in stmt["signed"]
    stmt["signed"] = stmt["signed"].replace("bob@", "eve@", 1)
    receipt["entry"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    path.write_text(json.dumps(receipt))


def test_export_verify_tamper(
    correspondents: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    c = correspondents
    token = notary_server.token_for(c.alice.email)
    c.settings(c.alice, notary_url=notary_server.url, notary_token=token)
    sent = send_deal(c, tmp_path, "--no-encrypt")
    bundle = tmp_path / "deal.certmail-proof.zip"
    p = run(c.alice, "proof", "export", sent["sha256"], "-o", str(bundle), "--reveal-subject")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(bundle) and bundle.is_file()
    # by Message-ID too; no overwrite without --force
    again = tmp_path / "again.zip"
    p = run(c.alice, "proof", "export", sent["message_id"], "-o", str(again), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["sha256"] == sent["sha256"]
    p = run(c.alice, "proof", "export", sent["sha256"], "-o", str(again))
    assert p.returncode == 7 and "exists" in one_line_error(p)
    p = run(c.alice, "proof", "export", "f" * 64, "-o", str(tmp_path / "none.zip"))
    assert p.returncode == 6, p.stderr
    one_line_error(p)

    vkey = tmp_path / "trusted.vkey"
    vkey.write_text(notary_server.vkey + "\n")
    root = notary_server.directory / "tsa" / "root-ca.pem"
    # Bob verifies: his keyring holds Alice's key, so her signature is checked too.
    p = proof_verify(c.bob, bundle, vkey=vkey, root=root, as_json=True)
    assert p.returncode == 0, p.stderr
    assert "warning" not in p.stderr
    report = json.loads(p.stdout)
    assert report["valid"] and report["sha256"] == sent["sha256"]
    assert [e["event"] for e in report["events"]] == ["SubmissionAcceptance"]
    checks = {ch["item"]: ch for ch in report["checks"]}
    assert checks["sender signature"]["status"] == "ok"
    assert c.alice.email in checks["sender signature"]["detail"]
    assert checks["01 time-stamp"]["status"] == "ok"
    # without a trusted key or root: only consistent with itself, so exit 3 (issue 10 item 16)
    p = proof_verify(c.bob, bundle)
    assert p.returncode == 3 and p.stdout == ""
    assert "not verified against a trusted notary key" in one_line_error(p)
    assert "--trust-bundle-key" in p.stderr
    p = proof_verify(c.bob, bundle, vkey=vkey)
    assert p.returncode == 3 and p.stdout == ""
    assert "not verified against a trusted TSA root" in one_line_error(p)
    # the table, and the loud warning when the user accepts the bundle's own key and root
    p = proof_verify(c.bob, bundle, "--trust-bundle-key", trust_root=True)
    assert p.returncode == 0, p.stderr
    assert "SubmissionAcceptance" in p.stdout and "valid" in p.stdout
    assert "certmail: warning: no trusted verifier key" in p.stderr
    assert "certmail: warning: no trusted TSA root" in p.stderr

    # VERIFY.txt's gpg commands work on the bundle's own files, with the keys it carries
    work = tmp_path / "unzipped"
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(work)
    cmds = openpgp_commands((work / "VERIFY.txt").read_text())
    assert len(cmds) == 5 and cmds[-1].startswith("gpg --homedir gnupg"), cmds
    results = run_commands(cmds, work)
    assert all(r.returncode == 0 for r in results), [(r.args, r.stderr) for r in results]
    assert f'Good signature from "Alice <{c.alice.email}>"' in results[-1].stderr

    # tampering: one flipped byte in message.eml -> exit 3, one line naming it
    files = {}
    with zipfile.ZipFile(bundle) as zf:
        for name in zf.namelist():
            files[name] = zf.read(name)
    eml = bytearray(files["message.eml"])
    eml[eml.index(b"I agree")] ^= 0x20
    files["message.eml"] = bytes(eml)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(buf.getvalue())
    p = proof_verify(c.bob, bad, vkey=vkey, root=root)
    assert p.returncode == 3 and p.stdout == ""
    assert "message.eml" in one_line_error(p)
    # a wrong trusted key -> exit 3
    from notary.note import Signer

    wrong = tmp_path / "wrong.vkey"
    wrong.write_text(Signer.generate("notary.test/log").verifier().vkey())
    p = proof_verify(c.bob, bundle, vkey=wrong)
    assert p.returncode == 3 and "notary.vkey" in one_line_error(p)
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"not a zip at all")
    p = proof_verify(c.bob, garbage)
    assert p.returncode == 3 and "not a readable zip" in one_line_error(p)


def test_encrypted_message_bundle(
    correspondents: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    c = correspondents
    token = notary_server.token_for(c.alice.email)
    c.settings(c.alice, notary_url=notary_server.url, notary_token=token)
    sent = send_deal(c, tmp_path)
    bundle = tmp_path / "sealed.certmail-proof.zip"
    p = run(c.alice, "proof", "export", sent["message_id"], "-o", str(bundle))
    assert p.returncode == 0, p.stderr
    vkey = tmp_path / "trusted.vkey"
    vkey.write_text(notary_server.vkey)
    # the sender's signature is inside the encryption: a check that could not run, so
    # "valid, but 1 check could not run", exit 3 unless --allow-partial (item 15)
    p = proof_verify(c.bob, bundle, vkey=vkey, trust_root=True, as_json=True)
    assert p.returncode == 3 and p.stdout == ""
    assert "valid, but 1 check could not run (sender signature: encrypted" in one_line_error(p)
    assert "--allow-partial" in p.stderr
    p = proof_verify(c.bob, bundle, vkey=vkey, trust_root=True, as_json=True, partial=True)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["verdict"] == "valid, but 1 check could not run"
    assert report["unchecked"] == ["sender signature"]
    checks = {ch["item"]: ch for ch in report["checks"]}
    assert checks["sender signature"]["detail"] == (
        "encrypted: signature inside, checkable by a recipient"
    )
    p = proof_verify(c.bob, bundle, vkey=vkey, trust_root=True, partial=True)
    assert p.returncode == 0 and p.stdout.rstrip().endswith(
        "valid, but 1 check could not run, with warnings (see stderr)"
    ), p.stdout
    with zipfile.ZipFile(bundle) as zf:
        html = zf.read("certificate.html").decode()
        text = zf.read("VERIFY.txt").decode()
    assert "The deal" not in html and "not revealed" in html  # no --reveal-subject
    assert "gpg --decrypt message.asc" in text


def _verified_with_ack(
    c: Any, bundle: Path, vkey: Path
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Alice verifies ``bundle``: valid, a submission then Bob's acknowledgement, checked
    ok against her keyring. The report and its checks by item."""
    p = proof_verify(c.alice, bundle, vkey=vkey, trust_root=True, as_json=True, partial=True)
    assert p.returncode == 0, p.stderr
    report: dict[str, Any] = json.loads(p.stdout)
    assert [e["event"] for e in report["events"]] == ["SubmissionAcceptance", "ContentHandover"]
    checks = {ch["item"]: ch for ch in report["checks"]}
    assert checks["02 acknowledgement"]["status"] == "ok"
    return report, checks


def test_acknowledgement_by_the_recipient_verifies(
    correspondents: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    c = correspondents
    _, bundle, vkey = acked_bundle(c, notary_server, tmp_path)
    bob_fpr = c.bob.keyring.key_for(c.bob.email).fingerprint
    # Alice's keyring holds Bob's real key (the one she encrypted to).
    report, checks = _verified_with_ack(c, bundle, vkey)
    assert checks["02 acknowledgement"]["detail"] == (
        f"signed by recipient {c.bob.email} ({bob_fpr})"
    )
    # The submission's receipt is the one Alice's ledger kept (the checkpoint of its
    # time), the acknowledgement's is fresh: two checkpoints, linked by a consistency proof.
    sizes = [e["checkpoint_size"] for e in report["events"]]
    assert sizes[0] < sizes[1], sizes
    assert checks["consistency"]["status"] == "ok"
    assert f"evidence/consistency-{sizes[0]}-{sizes[1]}.json" in zipfile.ZipFile(bundle).namelist()
    # Without a keyring the acknowledgement is not checked, and says so.
    empty = tmp_path / "empty-gnupghome"
    empty.mkdir(mode=0o700)
    p = proof_verify(
        c.alice,
        bundle,
        "--gnupghome",
        str(empty),
        vkey=vkey,
        trust_root=True,
        as_json=True,
        partial=True,
    )
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    checks = {ch["item"]: ch for ch in report["checks"]}
    # ... with the keys the bundle carries (issue 10 item 15), Bob's certified by Alice
    assert checks["02 acknowledgement"]["status"] == "ok", checks
    assert checks["02 acknowledgement"]["detail"] == (
        f"signed by recipient {c.bob.email} ({bob_fpr}), the key the bundle carries, "
        "certified by the sender"
    )
    assert report["format"] == 2
    names = zipfile.ZipFile(bundle).namelist()
    alice_fpr = c.alice.keyring.key_for(c.alice.email).fingerprint
    assert sorted(n for n in names if n.startswith("keys/")) == sorted(
        [f"keys/{bob_fpr}.asc", f"keys/{alice_fpr}.asc"]
    )
    # Without the bundle's keys (a bundle of format 1 has none) it could not run.
    from certmail.bundle import read_members, write_members

    files = read_members(bundle)
    v1 = {n: d for n, d in files.items() if not n.startswith("keys/")}
    from certmail.bundle.verify import check_evidence

    _, found, _ = check_evidence(v1, notary_vkey(vkey), None, None, documents=False)
    ack = {ch.item: ch for ch in found}["02 acknowledgement"]
    assert ack.status == "skipped" and bob_fpr in ack.detail
    assert write_members(files) == bundle.read_bytes()

    # VERIFY.txt: the exact commands, with plain gpg, check Bob's acknowledgement with
    # the bundle's keys and say that Alice certified his key; a tampered ack fails.
    work = tmp_path / "unzipped"
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(work)
    cmds = openpgp_commands((work / "VERIFY.txt").read_text())
    assert any("--trusted-key" in cmd and "--verify ack-02.asc" in cmd for cmd in cmds), cmds
    results = run_commands(cmds, work, c.bob.settings.gnupghome)  # Bob decrypts
    assert all(r.returncode == 0 for r in results), [(r.args, r.stderr) for r in results]
    assert f'Good signature from "Bob <{c.bob.email}>" [full]' in results[-1].stderr
    _tamper_ack(work / "evidence" / "02-ContentHandover.json")
    (work / "gnupg").rename(work / "gnupg-old")
    results = run_commands(cmds, work, c.bob.settings.gnupghome)
    assert results[-1].args == cmds[-1] and results[-1].returncode != 0
    assert "BAD signature" in results[-1].stderr


def test_acknowledgement_by_a_key_that_is_not_the_recipients(
    correspondents: Any, notary_server: NotaryProcess, tmp_path: Path, gnupghome_factory: Any
) -> None:
    from keys.gpg import Keyring

    c = correspondents
    # Mallory made a key with Bob's very user id; Alice encrypted to Bob's real key.
    mallory = Keyring(gnupghome_factory())
    mallory_fpr = mallory.generate_identity(c.bob.email, c.bob.name)
    assert c.bob.keyring.key_for(c.bob.email).uids == mallory.key_for(mallory_fpr).uids
    bob_fpr = c.bob.keyring.key_for(c.bob.email).fingerprint
    assert mallory_fpr != bob_fpr
    _, bundle, vkey = acked_bundle(
        c, notary_server, tmp_path, signer=mallory, export_args=("--keep-all-acks",)
    )
    p = proof_verify(c.alice, bundle, vkey=vkey, trust_root=True)
    assert p.returncode == 3 and p.stdout == "", p.stderr
    line = one_line_error(p)
    assert "evidence 02" in line and "not a recipient's key" in line
    assert mallory_fpr in line and bob_fpr in line
    assert "modified" not in line  # the evidence itself is genuine
    # Even a keyring that also holds Mallory's key (so the signature itself verifies)
    # says so: the key is not the one it uses for Bob.
    c.alice.keyring.import_keys(mallory.export_public(mallory_fpr).encode())
    p = proof_verify(c.alice, bundle, vkey=vkey, trust_root=True, as_json=True)
    assert p.returncode == 3 and "not a recipient's key" in one_line_error(p), p.stderr


def test_export_leaves_out_an_acknowledgement_by_another_key(
    correspondents: Any, notary_server: NotaryProcess, tmp_path: Path, gnupghome_factory: Any
) -> None:
    """Anyone can post an acknowledgement naming Bob; by default the sender's export
    leaves out one not signed by Bob's key (the key she encrypted to), says so, and
    the bundle verifies; Bob's own acknowledgement is kept."""
    import httpx

    from keys.gpg import Keyring

    c = correspondents
    mallory = Keyring(gnupghome_factory())
    mallory_fpr = mallory.generate_identity(c.bob.email, c.bob.name)
    c.settings(
        c.alice, notary_url=notary_server.url, notary_token=notary_server.token_for(c.alice.email)
    )
    sent = send_deal(c, tmp_path)
    forged = signed_ack(mallory, sent, c.bob.email, notary_server.url)
    assert httpx.post(notary_server.url + "/v1/ack", json=forged.to_json()).status_code == 200
    eml = tmp_path / "delivered.eml"
    eml.write_bytes(c.sink.messages[-1].data)
    p = run(c.bob, "open", str(eml), "--ack", "--json")
    assert p.returncode == 0, p.stderr

    bundle = tmp_path / "b.certmail-proof.zip"
    p = run(c.alice, "proof", "export", sent["sha256"], "-o", str(bundle), "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert [lo["fingerprint"] for lo in out["left_out"]] == [mallory_fpr]
    assert f"not {c.bob.email}'s" in out["left_out"][0]["reason"]
    assert "warning: left out an acknowledgement" in p.stderr and "--keep-all-acks" in p.stderr
    vkey = tmp_path / "trusted.vkey"
    vkey.write_text(notary_server.vkey + "\n")
    _verified_with_ack(c, bundle, vkey)

    # --keep-all-acks keeps the forged one, and verification then names it.
    p = run(
        c.alice, "proof", "export", sent["sha256"], "-o", str(bundle), "--force", "--keep-all-acks"
    )
    assert p.returncode == 0 and "left out" not in p.stderr, p.stderr
    p = proof_verify(c.alice, bundle, vkey=vkey, trust_root=True)
    assert p.returncode == 3 and "not a recipient's key" in one_line_error(p)


def test_direct_mode_certificate_says_the_notary_saw_only_a_hash_and_the_real_subject(
    correspondents: Any, notary_server: NotaryProcess, tmp_path: Path
) -> None:
    """Issue 10 item 14: a direct (``--via smtp``) send is notarized as a hash: the
    certificate says so, not "accepted this exact message for registered delivery";
    ``--reveal-subject`` on encrypted mail shows the Subject from inside the sender's
    copy (send encrypts to the sender too), marked as such, and the bundle verifies."""
    c = correspondents
    token = notary_server.token_for(c.alice.email)
    c.settings(c.alice, notary_url=notary_server.url, notary_token=token)
    sent = send_deal(c, tmp_path)
    bundle = tmp_path / "revealed.certmail-proof.zip"
    p = run(c.alice, "proof", "export", sent["message_id"], "-o", str(bundle), "--reveal-subject")
    assert p.returncode == 0, p.stderr
    assert "warning" not in p.stderr
    with zipfile.ZipFile(bundle) as zf:
        html = zf.read("certificate.html").decode()
        pdf = zf.read("certificate.pdf")
        text = zf.read("VERIFY.txt").decode()
    assert "for registered delivery" not in html
    assert "the notary saw only the hash, not the message" in html
    assert "<dd>The deal <em>(as read by the sender from inside the encryption" in html
    assert "[...]" not in html
    assert b"The deal" in pdf and b"registered delivery" not in pdf
    assert "--trust-bundle-key" in text and "exits non-zero" in text
    vkey = tmp_path / "trusted.vkey"
    vkey.write_text(notary_server.vkey)
    p = proof_verify(c.bob, bundle, vkey=vkey, trust_root=True, as_json=True, partial=True)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert "direct mode" in report["events"][0]["proves"]
    # a keyring that cannot decrypt the copy: said so, and the outer Subject it is
    from types import SimpleNamespace

    from certmail.cli.proof_subject import protected_subject

    raw = (c.alice.home / "sent" / f"{sent['sha256']}.eml").read_bytes()
    assert protected_subject(raw, SimpleNamespace(gnupghome=c.alice.home / "gnupg")) == (
        "The deal",
        None,
    )
    empty = tmp_path / "empty-gnupghome"
    empty.mkdir(mode=0o700)
    subject, note = protected_subject(raw, SimpleNamespace(gnupghome=empty))
    assert subject is None and note is not None
    assert note.startswith("cannot decrypt your copy to read its Subject")
    assert note.endswith("(the certificate shows the outer Subject, [...])")
