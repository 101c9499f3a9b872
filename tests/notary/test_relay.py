"""The notary's SMTP relay against real components: a notary subprocess, aiosmtpd
recipient servers, swaks, clamd. Each test submits over a real SMTP session."""

from __future__ import annotations

import base64
import hashlib
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from certmail.relay_client import RelayEndpoint, relay_endpoint, submit
from keys.errors import VerificationError
from notary.note import Verifier
from notary.receipt import Receipt
from tests.fixtures.clamd import EICAR
from tests.fixtures.notary import CERTMAIL
from tests.notary.relay_helpers import (
    ALICE,
    BOB,
    RelayNotary,
    configure,
    gpg,
    message,
    wait_for,
)


@pytest.fixture
def relay(notary_dir: Path, smtp_sink: Any) -> Iterator[RelayNotary]:
    configure(notary_dir, relay_retry_initial=0.2, relay_max_message_bytes=200_000)
    r = RelayNotary(notary_dir, smtp_sink.port)
    r.start()
    yield r
    r.proc.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayNotary]:
    """One relay for the tests that only talk to it (refusals, endpoint)."""
    from tests.fixtures.notary import init_notary_dir
    from tests.fixtures.smtp import SmtpSink

    sink = SmtpSink(tmp_path_factory.mktemp("sink"))
    sink.start()
    d = init_notary_dir(tmp_path_factory.mktemp("shared") / "notary")
    configure(d, relay_retry_initial=0.2, relay_max_message_bytes=200_000)
    r = RelayNotary(d, sink.port)
    r.start()
    yield r
    r.proc.stop()
    sink.stop()


def _submit(relay: RelayNotary, data: bytes, rcpts: list[str] | None = None) -> str:
    return submit(
        data, mail_from=ALICE, recipients=rcpts or [BOB], notary_url=relay.url, token=relay.token
    )


def test_submit_deliver_and_receipts(relay: RelayNotary, smtp_sink: Any) -> None:
    data = message("m1")
    sha = _submit(relay, data)
    assert sha == hashlib.sha256(data).hexdigest()
    events = relay.wait_events(sha, "RelayToNonERDS")
    assert [e["event"] for e in events] == ["SubmissionAcceptance", "RelayToNonERDS"]
    acc, rel = events
    assert acc["submitter"] == ALICE and acc["recipients"] == [BOB]
    assert acc["content"] == {"encrypted": False, "scan": None}
    assert rel["recipient"] == BOB and rel["port"] == smtp_sink.port
    assert rel["reply"] == {"code": 250, "text": "2.0.0 queued as certmail-test"}
    # The recipient got the exact submitted bytes after prepended header lines only.
    (got,) = smtp_sink.messages
    assert got.rcpt_tos == [BOB] and got.mail_from == ALICE
    assert got.data.endswith(data)
    prefix = got.data[: -len(data)]
    assert prefix.startswith(b"Received: by notary.test")
    assert f"Certmail-Evidence: sha256={sha}; notary=notary.test/log\r\n".encode() in prefix
    # Every receipt verifies offline; the acceptance carries an RFC 3161 token on the hash.
    verifier = Verifier.from_vkey(httpx.get(relay.url + "/v1/vkey").text.strip())
    receipts = relay.receipts(sha)
    for r in receipts:
        Receipt.from_json(r).verify(verifier)
    assert receipts[0]["tst"] and not receipts[1].get("tst")
    assert hashlib.sha256(data).digest() in base64.b64decode(receipts[0]["tst"])


def test_relay_endpoint_names_the_certificate(shared: RelayNotary) -> None:
    ep = relay_endpoint(shared.url)
    assert ep.port == shared.smtp_port and ep.host == "127.0.0.1"
    info = httpx.get(shared.url + "/v1/relay").json()
    assert info["certificate"] == (shared.proc.directory / "relay/relay-cert.pem").read_text()
    assert info["starttls"] is True and info["max_message_bytes"] == 200_000


def test_client_refuses_a_certificate_other_than_the_pinned_one(
    relay: RelayNotary, smtp_sink: Any
) -> None:
    ep = relay_endpoint(relay.url)
    wrong = RelayEndpoint(ep.host, ep.port, "00" * 32, ep.max_message_bytes)
    with pytest.raises(VerificationError, match="intercepted"):
        submit(
            message("pin"),
            mail_from=ALICE,
            recipients=[BOB],
            notary_url=relay.url,
            token=relay.token,
            endpoint=wrong,
        )
    assert smtp_sink.messages == []


def test_swaks_submits(relay: RelayNotary, smtp_sink: Any, tmp_path: Path) -> None:
    data = message("swaks", body="sent by swaks")
    token = relay.token
    while token.startswith("-"):  # swaks reads a value starting with "-" as an option
        subprocess.run(
            [*CERTMAIL, "notary", "accounts", "revoke", ALICE, "--dir", str(relay.proc.directory)],
            check=True,
            capture_output=True,
        )
        token = relay.token = relay.proc.token_for(ALICE)
    eml = tmp_path / "m.eml"
    eml.write_bytes(data)
    out = subprocess.run(
        [
            "swaks",
            "--server",
            f"127.0.0.1:{relay.smtp_port}",
            "--tls",
            "--auth",
            "LOGIN",
            "--auth-user",
            ALICE,
            "--auth-password",
            token,
            "--from",
            ALICE,
            "--to",
            BOB,
            "--data",
            str(eml),
            "--suppress-data",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    line = next(x for x in out.stdout.splitlines() if "Accepted sha256=" in x)
    sha = line.split("sha256=")[1].strip()
    relay.wait_events(sha, "RelayToNonERDS")
    # What the relay hashed is exactly what follows its prepended header lines.
    got = smtp_sink.messages[0].data
    marker = f"Certmail-Evidence: sha256={sha}; notary=notary.test/log\r\n".encode()
    submitted = got.split(marker, 1)[1]
    assert hashlib.sha256(submitted).hexdigest() == sha
    assert b"Message-ID: <swaks@a.test>" in submitted and b"sent by swaks" in submitted


# --- never an open relay ---------------------------------------------------------------


def test_mail_before_starttls_is_refused(shared: RelayNotary) -> None:
    s = shared.connect(tls=False)
    assert "auth" not in s.esmtp_features
    assert (
        s.docmd(
            "AUTH", "PLAIN " + base64.b64encode(f"\0{ALICE}\0{shared.token}".encode()).decode()
        )[0]
        == 530
    )
    assert s.mail(ALICE)[0] == 530
    s.close()


def test_mail_without_auth_is_refused(shared: RelayNotary) -> None:
    s = shared.connect()
    assert s.mail(ALICE)[0] == 530
    assert s.rcpt(BOB)[0] in (503, 530)
    s.close()


def test_wrong_token_is_refused(shared: RelayNotary) -> None:
    s = shared.connect()
    with pytest.raises(smtplib.SMTPAuthenticationError) as e:
        s.login(ALICE, "not-the-token")
    assert e.value.smtp_code == 535
    with pytest.raises(smtplib.SMTPAuthenticationError) as e:
        s.login("mallory@a.test", shared.token)  # right token, an address not the account's
    assert e.value.smtp_code == 535
    s.close()


def test_foreign_envelope_sender_is_refused(shared: RelayNotary) -> None:
    s = shared.connect()
    s.login(ALICE, shared.token)
    code, text = s.mail("mallory@a.test")
    assert code == 553 and b"5.7.1" in text
    s.close()


def test_foreign_from_header_is_refused(relay: RelayNotary, smtp_sink: Any) -> None:
    s = relay.connect()
    s.login(ALICE, relay.token)
    assert s.mail(ALICE)[0] == 250 and s.rcpt(BOB)[0] == 250
    code, text = s.data(message("forged", sender="ceo@a.test"))
    assert code == 550 and b"From: ceo@a.test" in text
    s.close()
    assert relay.events(hashlib.sha256(message("forged", sender="ceo@a.test")).hexdigest()) == []
    assert smtp_sink.messages == []


def test_blind_copy_is_delivered_with_its_own_evidence(relay: RelayNotary, smtp_sink: Any) -> None:
    # carol@c.test is in neither To: nor Cc: (issue 10, item 18: this was a 550).
    data = message("hidden")
    sha = _submit(relay, data, [BOB, "carol@c.test"])
    wait_for(
        lambda: len([e for e in relay.events(sha) if e["event"] == "RelayToNonERDS"]) == 2,
        what="two deliveries",
    )
    events = relay.wait_events(sha, "RelayToNonERDS")
    # The acceptance names only the To:/Cc: recipients; the blind copy has its own
    # acceptance naming only it (docs/relay.md, "Blind copies").
    acc = [e for e in events if e["event"] == "SubmissionAcceptance"]
    assert [(e["recipients"], e.get("blind")) for e in acc] == [
        ([BOB], None),
        (["carol@c.test"], True),
    ]
    rel = [e for e in events if e["event"] == "RelayToNonERDS"]
    assert sorted(e["recipient"] for e in rel) == [BOB, "carol@c.test"]
    got = {m.rcpt_tos[0]: m.data for m in smtp_sink.messages}
    assert set(got) == {BOB, "carol@c.test"}
    # Each copy names only its own recipient in the relay's trace field.
    assert b"for <carol@c.test>" in got["carol@c.test"] and b"carol" not in got[BOB]
    # A Bcc: field naming addresses would show them to everyone: refused, not rewritten.
    s = relay.connect()
    s.login(ALICE, relay.token)
    s.mail(ALICE)
    s.rcpt(BOB)
    code, text = s.data(message("bcc", extra="Bcc: carol@c.test\r\n"))
    assert code == 554 and b"Bcc" in text
    s.close()


def test_oversized_message_is_refused(shared: RelayNotary) -> None:
    s = shared.connect()
    s.login(ALICE, shared.token)
    big = message("big", body=("x" * 998 + "\r\n") * 250)
    code, _ = s.mail(ALICE, [f"SIZE={len(big)}"])
    assert code == 552
    s.rset()
    s.mail(ALICE)
    s.rcpt(BOB)
    assert s.data(big)[0] == 552
    s.close()


# --- delivery outcomes -------------------------------------------------------------------


def test_recipient_down_then_back(relay: RelayNotary, smtp_sink: Any) -> None:
    smtp_sink.stop()
    sha = _submit(relay, message("down"))
    relay.wait_events(sha, "SubmissionAcceptance")
    # The first attempt must have failed (and been recorded) before the sink is back.
    deferred = relay.wait_deferred(sha)
    assert deferred["recipient"] == BOB
    smtp_sink.start()
    events = relay.wait_events(sha, "RelayToNonERDS")
    assert [e["event"] for e in events] == ["SubmissionAcceptance", "RelayToNonERDS"]
    assert events[1]["attempts"] >= 2
    assert len(smtp_sink.messages) == 1


def test_recipient_4xx_is_retried(relay: RelayNotary, smtp_sink: Any) -> None:
    smtp_sink.fail("rcpt", 451, "greylisted")
    sha = _submit(relay, message("grey"))
    events = relay.wait_events(sha, "RelayToNonERDS")
    assert events[-1]["attempts"] >= 2 and len(smtp_sink.messages) == 1


def test_recipient_5xx_is_failure_evidence(relay: RelayNotary, smtp_sink: Any) -> None:
    smtp_sink.fail("rcpt", 550, "no such user", sticky=True)
    sha = _submit(relay, message("reject"))
    events = relay.wait_events(sha, "RelayToNonERDSFailure")
    fail = events[-1]
    assert fail["reason"] == "rejected" and fail["stage"] == "RCPT"
    assert fail["reply"] == {"code": 550, "text": "no such user"}
    assert [e["event"] for e in events] == ["SubmissionAcceptance", "RelayToNonERDSFailure"]
    assert smtp_sink.messages == []


def test_retry_deadline_gives_failure(notary_dir: Path, smtp_sink: Any) -> None:
    configure(notary_dir, relay_retry_initial=0.2, relay_retry_deadline=1)
    r = RelayNotary(notary_dir, smtp_sink.port)
    r.start()
    try:
        smtp_sink.fail("rcpt", 451, "try later", sticky=True)
        sha = _submit(r, message("late"))
        fail = r.wait_events(sha, "RelayToNonERDSFailure")[-1]
        assert fail["reason"] == "deadline" and "451" in fail["detail"]
    finally:
        r.proc.stop()


def test_delivery_with_starttls_records_tls(notary_dir: Path, smtp_sink_factory: Any) -> None:
    sink = smtp_sink_factory(tls=True)
    configure(notary_dir, relay_retry_initial=0.2)
    r = RelayNotary(notary_dir, sink.port)
    r.start()
    try:
        sha = _submit(r, message("tls"))
        rel = r.wait_events(sha, "RelayToNonERDS")[-1]
        assert rel["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
        assert sink.ca_file is not None
        import ssl as _ssl

        der = _ssl.PEM_cert_to_DER_cert(sink.ca_file.read_text())
        assert rel["tls"]["cert_sha256"] == hashlib.sha256(der).hexdigest()
        assert sink.messages[0].tls
    finally:
        r.proc.stop()


def test_sigkill_after_250_loses_nothing(relay: RelayNotary, smtp_sink: Any) -> None:
    smtp_sink.stop()  # the 250 is given; delivery cannot happen yet
    shas = [_submit(relay, message(f"crash{i}")) for i in range(5)]
    relay.proc.kill()
    smtp_sink.start()
    relay.start()  # a plain restart, nothing else
    for sha in shas:
        events = relay.wait_events(sha, "RelayToNonERDS")
        assert [e["event"] for e in events] == ["SubmissionAcceptance", "RelayToNonERDS"]
    assert sorted(
        m.data[-200:].split(b"Message-ID: <")[1].split(b"@")[0] for m in smtp_sink.messages
    ) == [f"crash{i}".encode() for i in range(5)]


# --- content scanning --------------------------------------------------------------------


@pytest.fixture
def scanning_relay(notary_dir: Path, smtp_sink: Any, clamd_socket: str) -> Iterator[RelayNotary]:
    configure(notary_dir, relay_retry_initial=0.2, clamd=clamd_socket)
    r = RelayNotary(notary_dir, smtp_sink.port)
    r.start()
    yield r
    r.proc.stop()


def test_infected_plain_message_is_refused_with_evidence(
    scanning_relay: RelayNotary, smtp_sink: Any
) -> None:
    r = scanning_relay
    data = message("virus", body=EICAR.decode())
    s = r.connect()
    s.login(ALICE, r.token)
    s.mail(ALICE)
    s.rcpt(BOB)
    code, text = s.data(data)
    s.close()
    assert code == 554 and b"virus" in text
    (ev,) = r.events(hashlib.sha256(data).hexdigest())
    assert ev["event"] == "VirusDetected" and "Eicar" in ev["signature"]
    assert ev["engine"].startswith("ClamAV")
    clean = _submit(r, message("clean"))
    acc = r.wait_events(clean, "RelayToNonERDS")[0]
    assert acc["content"]["scan"]["result"] == "clean"
    assert [m.data.endswith(data) for m in smtp_sink.messages] == [False]


def test_encrypted_content_is_opaque(scanning_relay: RelayNotary, smtp_sink: Any) -> None:
    # Real OpenPGP ciphertext (SKESK + SEIPD) of EICAR: opaque, so not scanned.
    armor = gpg("--symmetric", "--armor", data=EICAR).replace(b"\n", b"\r\n").decode()
    body = (
        "--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
        "--b\r\nContent-Type: application/octet-stream\r\n\r\n" + armor + "\r\n--b--"
    )
    data = message(
        "enc",
        body=body,
        extra=(
            "MIME-Version: 1.0\r\nContent-Type: multipart/encrypted; "
            'protocol="application/pgp-encrypted"; boundary="b"\r\n'
        ),
    )
    sha = _submit(scanning_relay, data)
    acc = scanning_relay.wait_events(sha, "RelayToNonERDS")[0]
    assert acc["content"] == {"encrypted": True}
    assert smtp_sink.messages[0].data.endswith(data)
