"""certmail.api send: scan, seal, exact-bytes SMTP, ledger, outbox (real gpg, clamd, aiosmtpd)."""

from __future__ import annotations

import hashlib
import random
import smtplib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certmail.api import Certmail, QueuedError
from certmail.mime import parse_entity
from certmail.smtp import DeliveryError, UncertainDeliveryError, dot_stuff, parse_smtp_url
from certmail.smtpdata import DotStuffer
from keys.errors import Error, InfectedError, TemporaryError
from tests.fixtures.clamd import EICAR


def send(c: Any, **kw: Any) -> Any:
    kw.setdefault("to", [c.bob.email])
    kw.setdefault("subject", "Contract")
    kw.setdefault("body", "Please find the contract attached.\n")
    kw.setdefault("notarize", False)
    with Certmail(c.alice.settings) as cm:
        return cm.send(**kw)


def test_sent_bytes_are_the_ledger_copy(correspondents: Any, tmp_path: Path) -> None:
    c = correspondents
    f = tmp_path / "contract.pdf"
    f.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 100)
    r = send(c, attachments=[f], cc=[c.alice.email])
    assert len(c.sink.messages) == 1
    got = c.sink.messages[0]
    assert got.mail_from == c.alice.email
    assert got.rcpt_tos == [c.bob.email, c.alice.email]
    stored = Path(r.path).read_bytes()
    assert got.data == stored
    assert hashlib.sha256(got.data).hexdigest() == r.sha256
    assert r.status == "sent" and r.receipts == [] and r.encrypted and r.signed
    assert parse_entity(got.data).headers["Message-ID"] == r.message_id
    with Certmail(c.alice.settings) as cm:
        e = cm.ledger.get(r.sha256)
        assert e.status == "sent" and e.smtp_reply.startswith("250")
        assert cm.outbox() == []


def test_carol_has_no_key(correspondents: Any) -> None:
    c = correspondents
    with pytest.raises(Error) as e:
        send(c, to=["carol@example.com"])
    assert e.value.hint and "certmail keys import" in e.value.hint
    assert c.sink.messages == []


def test_infected_attachment_refused(
    correspondents: Any, clamd_socket: str, tmp_path: Path
) -> None:
    c = correspondents
    c.settings(c.alice, clamd=clamd_socket)
    bad = tmp_path / "invoice.com"
    bad.write_bytes(EICAR)
    good = tmp_path / "fine.txt"
    good.write_bytes(b"fine")
    with pytest.raises(InfectedError, match="Eicar") as e:
        send(c, attachments=[good, bad])
    assert e.value.exit_code == 4
    assert c.sink.messages == [] and c.sink.handler.rcpt_seen == []
    with Certmail(c.alice.settings) as cm:
        assert cm.ledger.all() == []


def test_clean_attachment_scanned(correspondents: Any, clamd_socket: str, tmp_path: Path) -> None:
    c = correspondents
    c.settings(c.alice, clamd=clamd_socket)
    f = tmp_path / "fine.txt"
    f.write_bytes(b"fine")
    send(c, attachments=[f])
    with Certmail(c.bob.settings) as cm:
        path = tmp_path / "in.eml"
        path.write_bytes(c.sink.messages[0].data)
        o = cm.open(path, allow_unsigned=False)
    assert o.manifest == "verified"


def test_no_scanner(correspondents: Any, tmp_path: Path) -> None:
    c = correspondents
    f = tmp_path / "a.txt"
    f.write_bytes(b"a")
    r = send(c, attachments=[f])
    assert any("not scanned" in w for w in r.warnings)
    with pytest.raises(Error, match="require-scan"):
        send(c, attachments=[f], require_scan=True)
    assert len(c.sink.messages) == 1


def test_unreachable_scanner_is_temporary(correspondents: Any, tmp_path: Path) -> None:
    c = correspondents
    c.settings(c.alice, clamd=f"unix://{tmp_path}/nothing.ctl")
    f = tmp_path / "a.txt"
    f.write_bytes(b"a")
    with pytest.raises(TemporaryError):
        send(c, attachments=[f])
    assert c.sink.messages == []


def test_rcpt_4xx_queues_then_flush_sends_once(correspondents: Any) -> None:
    c = correspondents
    c.sink.fail("rcpt", 451, "greylisted")
    with pytest.raises(QueuedError) as e:
        send(c)
    assert e.value.exit_code == 5 and e.value.result.status == "queued"
    assert c.sink.messages == []
    sha = e.value.result.sha256
    with Certmail(c.alice.settings) as cm:
        assert [x.sha256 for x in cm.outbox()] == [sha]
        assert [i.status for i in cm.flush()] == ["sent"]
        assert cm.flush() == []
    assert len(c.sink.messages) == 1
    assert hashlib.sha256(c.sink.messages[0].data).hexdigest() == sha


def test_server_down_then_up(correspondents: Any) -> None:
    c = correspondents
    c.sink.stop()
    with pytest.raises(QueuedError, match="cannot reach"):
        send(c)
    with Certmail(c.alice.settings) as cm:
        items = cm.flush()
        assert [i.status for i in items] == ["queued"] and items[0].exit_code == 5
        c.sink.start()
        assert [i.status for i in cm.flush()] == ["sent"]
    assert len(c.sink.messages) == 1


def test_data_5xx_is_permanent(correspondents: Any) -> None:
    c = correspondents
    c.sink.fail("data", 554, "content rejected")
    with pytest.raises(DeliveryError, match="554"):
        send(c)
    with Certmail(c.alice.settings) as cm:
        assert cm.outbox() == []
        assert [e.status for e in cm.ledger.all()] == ["failed"]


def test_one_recipient_refused_sends_to_none(correspondents: Any, smtp_sink_factory: Any) -> None:
    c = correspondents
    c.sink.fail("rcpt", 550, "no such user")
    with pytest.raises(DeliveryError):
        send(c)
    assert c.sink.messages == []


def test_relay_mode_not_configured(correspondents: Any) -> None:
    with pytest.raises(Error, match="relay"):
        send(correspondents, via="relay")


def test_signed_only_and_plain(correspondents: Any) -> None:
    c = correspondents
    r = send(c, encrypt=False)
    top = parse_entity(c.sink.messages[0].data)
    assert top.content_type == "multipart/signed" and not r.encrypted
    send(c, encrypt=False, sign=False)
    assert parse_entity(c.sink.messages[1].data).content_type == "multipart/mixed"


def test_dkim_over_final_bytes(correspondents: Any) -> None:
    from keys.dkim import dkim_verify, dns_record, find_dkim_key, generate_dkim_key

    c = correspondents
    generate_dkim_key(Path(c.alice.settings.dkim_dir), "example.org", "s1", "ed25519")
    r = send(c)
    raw = c.sink.messages[0].data
    assert raw.startswith(b"DKIM-Signature:") and Path(r.path).read_bytes() == raw
    key = find_dkim_key(Path(c.alice.settings.dkim_dir), "example.org")
    assert key is not None
    _, record = dns_record(key)
    dkim_verify(raw, dnsfunc=lambda q: record.encode())
    with Certmail(c.bob.settings) as cm:
        p = Path(r.path)
        v = cm.verify(p, dnsfunc=lambda q: record.encode())
        assert v.dkim == "valid" and v.dkim_domain == "example.org" and v.pgp == "encrypted"


def test_starttls_required_but_not_offered(correspondents: Any) -> None:
    c = correspondents
    c.settings(c.alice, smtp_url=c.sink.url + "?starttls=require")
    with pytest.raises(DeliveryError, match="STARTTLS"):
        send(c)
    assert c.sink.messages == []


def test_starttls_and_auth(
    correspondents: Any, smtp_sink_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = correspondents
    sink = smtp_sink_factory(tls=True, auth=("alice", "s3cret pass"))
    monkeypatch.setenv("SSL_CERT_FILE", str(sink.ca_file))
    c.settings(
        c.alice, smtp_url=f"smtp://alice:s3cret%20pass@127.0.0.1:{sink.port}?starttls=require"
    )
    send(c)
    assert len(sink.messages) == 1 and sink.messages[0].tls
    c.settings(c.alice, smtp_url=f"smtp://alice:wrong@127.0.0.1:{sink.port}")
    with pytest.raises(DeliveryError, match="login failed"):
        send(c)
    assert len(sink.messages) == 1


def test_smtp_url_parsing() -> None:
    t = parse_smtp_url("smtp://u%40x:p%3Aw@mail.example.org?starttls=require")
    assert (t.host, t.port, t.username, t.password, t.starttls) == (
        "mail.example.org",
        587,
        "u@x",
        "p:w",
        "require",
    )
    assert parse_smtp_url("smtps://h").port == 465 and parse_smtp_url("smtps://h").implicit_tls
    for bad in ("http://h", "smtp://", "smtp://h?starttls=maybe", "smtp://h:99999"):
        with pytest.raises(Error):
            parse_smtp_url(bad)


@given(st.lists(st.sampled_from([b".", b"..", b"a", b"\r\n", b".\r\n", b"x.y", b" "]), max_size=40))
def test_dot_stuffing_matches_smtplib(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"").replace(b"\n", b"\r\n")
    ref = smtplib.quotedata(data.decode()).encode()  # type: ignore[attr-defined]
    if ref and not ref.endswith(b"\r\n"):
        ref += b"\r\n"
    assert dot_stuff(data) == ref + b".\r\n"


@given(
    st.lists(st.sampled_from([b".", b"..", b"a", b"\r\n", b".\r\n", b"x.y"]), max_size=30),
    st.lists(st.integers(min_value=0, max_value=120), max_size=6),
)
def test_dot_stuffing_in_chunks_is_the_same(pieces: list[bytes], cuts: list[int]) -> None:
    """Fed in chunks cut anywhere (between a LF and its dot too), the same bytes go out."""
    data = b"".join(pieces).replace(b"\r\n", b"\n").replace(b"\r", b"").replace(b"\n", b"\r\n")
    stuffer, out, at = DotStuffer(), b"", 0
    for cut in sorted(min(c, len(data)) for c in cuts):
        out += stuffer.feed(data[at:cut])
        at = cut
    out += stuffer.feed(data[at:]) + stuffer.end()
    ref = smtplib.quotedata(data.decode()).encode()  # type: ignore[attr-defined]
    assert out == (ref if not ref or ref.endswith(b"\r\n") else ref + b"\r\n") + b".\r\n"


def test_notarized_send_and_notary_outage(correspondents: Any, notary_server: Any) -> None:
    from notary.note import Verifier
    from notary.receipt import Receipt

    c = correspondents
    token = notary_server.token_for(c.alice.email)
    c.settings(c.alice, notary_url=notary_server.url, notary_token=token)
    r = send(c, notarize=True)
    assert r.status == "sent" and len(r.receipts) == 1
    stmt = Receipt.from_json(r.receipts[0]).verify(Verifier.from_vkey(notary_server.vkey))
    assert stmt["message"] == {"sha256": r.sha256, "id": r.message_id}
    assert stmt["event"] == "SubmissionAcceptance" or stmt["event"]
    assert parse_entity(c.sink.messages[0].data).headers["Certmail-Notary"] == notary_server.url

    # The notary is down: the message goes out once, notarization waits in the outbox.
    notary_server.stop()
    with pytest.raises(QueuedError, match="not yet notarized") as e:
        send(c, notarize=True)
    sha = e.value.result.sha256
    assert len(c.sink.messages) == 2
    with Certmail(c.alice.settings) as cm:
        assert [(x.sha256, x.status) for x in cm.outbox()] == [(sha, "notarizing")]
        notary_server.start()
        assert [i.status for i in cm.flush()] == ["sent"]
        assert len(cm.ledger.receipts(sha)) == 1 and cm.outbox() == []
    assert len(c.sink.messages) == 2  # never sent twice


def test_bad_notary_token_is_permanent(correspondents: Any, notary_server: Any) -> None:
    c = correspondents
    c.settings(c.alice, notary_url=notary_server.url, notary_token="0" * 64)
    with pytest.raises(Error, match="sent, but the notary refused") as e:
        send(c, notarize=True)
    assert e.value.hint and "CERTMAIL_NOTARY_TOKEN" in e.value.hint
    with Certmail(c.alice.settings) as cm:
        assert [x.status for x in cm.ledger.all()] == ["unnotarized"]


def test_connection_dropped_after_final_dot_is_uncertain(correspondents: Any) -> None:
    import json
    import subprocess
    import sys

    c = correspondents
    c.sink.drop_after_data()
    with pytest.raises(UncertainDeliveryError, match="before the server confirmed"):
        send(c)
    # The server got every byte (final dot included) but never answered.
    assert c.sink.messages == [] and len(c.sink.handler.dropped) == 1
    data = c.sink.handler.dropped[0].data
    sha = hashlib.sha256(data).hexdigest()
    with Certmail(c.alice.settings) as cm:
        assert [(e.sha256, e.status, e.smtp) for e in cm.outbox()] == [
            (sha, "uncertain", "uncertain")
        ]
    # `certmail outbox flush` leaves it alone ...
    cmd = [sys.executable, "-m", "certmail.cli.main", "outbox", "flush", "--json"]
    p = subprocess.run(cmd, env=c.alice.env(), capture_output=True, check=False, timeout=120)
    assert p.returncode == 0, p.stderr
    items = json.loads(p.stdout)["messages"]
    assert [(i["sha256"], i["status"]) for i in items] == [(sha, "uncertain")]
    assert c.sink.messages == [] and c.sink.handler.rcpt_seen == [c.bob.email]
    # ... and sends it again only when told to.
    p = subprocess.run(
        [*cmd, "--include-uncertain"],
        env=c.alice.env(),
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert [i["status"] for i in json.loads(p.stdout)["messages"]] == ["sent"]
    assert [m.data for m in c.sink.messages] == [data]
    with Certmail(c.alice.settings) as cm:
        assert cm.outbox() == [] and cm.ledger.get(sha).status == "sent"


# aiosmtpd counts only STARTTLS as TLS for AUTH; this server is TLS from the first byte.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtps_implicit_tls(
    correspondents: Any, smtp_sink_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = correspondents
    sink = smtp_sink_factory(implicit_tls=True, auth=("alice", "s3cret"))
    assert sink.url.startswith("smtps://")
    c.settings(c.alice, smtp_url=sink.url)
    # The server's certificate is self-signed: not trusted until its CA file is given.
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(QueuedError, match="certificate verify failed") as e:
        send(c)
    assert sink.messages == [] and e.value.result.status == "queued"
    monkeypatch.setenv("SSL_CERT_FILE", str(sink.ca_file))
    with Certmail(c.alice.settings) as cm:
        items = cm.flush()
        assert [(i.status, i.error) for i in items] == [("sent", None)]
        entry = cm.ledger.get(e.value.result.sha256)
        stored = cm.ledger.message_path(entry.sha256).read_bytes()
    assert len(sink.messages) == 1
    got = sink.messages[0]
    assert got.tls and got.data == stored and got.rcpt_tos == [c.bob.email]
    assert hashlib.sha256(got.data).hexdigest() == entry.sha256


def _send_child(c: Any, tmp_path: Path, attachment: Path) -> int:
    """Peak RSS (KiB, the child's own ru_maxrss from wait4) of one `certmail send`."""
    import os
    import subprocess
    import sys

    body = tmp_path / "body.txt"
    body.write_text("see attachment\n")
    cmd = [
        sys.executable,
        "-m",
        "certmail.cli.main",
        "send",
        "--to",
        c.bob.email,
        "--subject",
        "big",
        "--attach",
        str(attachment),
        "--body-file",
        str(body),
        "--no-notarize",
        "--via",
        "smtp",
    ]
    p = subprocess.Popen(cmd, env=c.alice.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    err = p.stderr.read().decode() if p.stderr else ""
    assert os.waitstatus_to_exitcode(status) == 0, err
    return int(usage.ru_maxrss)


def test_dkim_signed_large_send_memory_does_not_grow(correspondents: Any, tmp_path: Path) -> None:
    """A DKIM-signed send streams: peak RSS of a 30 MB send stays near a 1 KB send's.

    Holding the message in memory (as dkimpy's bytes API does, with copies for
    canonicalization) would add several times its ~41 MB; the 200 MB / 300 MB
    check is in benchmarks/bench_send.py.
    """
    from keys.dkim import dkim_verify_file, dns_record, find_dkim_key, generate_dkim_key

    c = correspondents
    generate_dkim_key(Path(c.alice.settings.dkim_dir), "example.org", "s1", "ed25519")
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 1024)
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        for i in range(30):  # incompressible: gpg compresses the signed part
            f.write(random.Random(i).randbytes(1 << 20))
    base = _send_child(c, tmp_path, small)
    peak = _send_child(c, tmp_path, big)
    assert len(c.sink.messages) == 2
    sent = c.sink.messages[1].data
    assert len(sent) > 40 << 20 and sent.startswith(b"DKIM-Signature:")
    growth_mb = (peak - base) / 1024
    assert growth_mb < 15, f"peak RSS grew by {growth_mb:.0f} MB for a {len(sent) >> 20} MB message"
    key = find_dkim_key(Path(c.alice.settings.dkim_dir), "example.org")
    assert key is not None
    _, record = dns_record(key)
    received = tmp_path / "received.eml"
    received.write_bytes(sent)
    del sent
    dkim_verify_file(received, dnsfunc=lambda q: record.encode())
