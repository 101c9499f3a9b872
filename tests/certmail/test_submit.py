"""The one client submitter (certmail.submitter): pins, AUTH, streaming, exact bytes."""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path
from typing import Any

import pytest

from certmail.submitter import (
    DeliveryError,
    LoginError,
    Peer,
    UncertainDeliveryError,
    submit,
)
from keys.errors import TemporaryError, VerificationError

MSG = b"From: a@a.test\r\nTo: b@b.test\r\nSubject: t\r\n\r\n.\r\n..x\r\nhello\r\n.\r\n"


def _pin(sink: Any) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(sink.ca_file.read_text())).hexdigest()


def test_pinned_starttls_with_auth_sends_exact_bytes(smtp_sink_factory: Any) -> None:
    sink = smtp_sink_factory(tls=True, auth=("alice", "s3cret"))
    peer = Peer(sink.host, sink.port, pin_sha256=_pin(sink))
    r = submit(peer, "a@a.test", ["b@b.test", "c@b.test"], MSG, login=("alice", "s3cret"))
    assert r.code == 250 and r.tls and r.cert_sha256 == _pin(sink)
    (got,) = sink.messages
    assert got.data == MSG and got.tls and got.rcpt_tos == ["b@b.test", "c@b.test"]


def test_a_wrong_pin_sends_nothing_not_even_the_password(smtp_sink_factory: Any) -> None:
    sink = smtp_sink_factory(tls=True, auth=("alice", "s3cret"))
    peer = Peer(sink.host, sink.port, pin_sha256="00" * 32)
    with pytest.raises(VerificationError, match="intercepted"):
        submit(peer, "a@a.test", ["b@b.test"], MSG, login=("alice", "s3cret"))
    assert sink.messages == [] and sink.handler.rcpt_seen == []


def test_a_pinned_peer_without_starttls_gets_nothing(smtp_sink: Any) -> None:
    peer = Peer(smtp_sink.host, smtp_sink.port, pin_sha256="00" * 32, starttls="never")
    with pytest.raises(VerificationError, match="does not offer STARTTLS"):
        submit(peer, "a@a.test", ["b@b.test"], MSG)
    assert smtp_sink.handler.rcpt_seen == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_pin_with_implicit_tls(smtp_sink_factory: Any) -> None:
    sink = smtp_sink_factory(implicit_tls=True, auth=("u", "p"))
    r = submit(
        Peer(sink.host, sink.port, implicit_tls=True, pin_sha256=_pin(sink)),
        "a@a.test",
        ["b@b.test"],
        MSG,
        login=("u", "p"),
    )
    assert r.tls and sink.messages[0].data == MSG
    with pytest.raises(VerificationError, match="intercepted"):
        submit(
            Peer(sink.host, sink.port, implicit_tls=True, pin_sha256="ab" * 32),
            "a@a.test",
            ["b@b.test"],
            MSG,
            login=("u", "p"),
        )
    assert len(sink.messages) == 1


def test_without_a_pin_the_certificate_is_verified(
    smtp_sink_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = smtp_sink_factory(tls=True)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(TemporaryError, match="certificate verify failed"):
        submit(Peer(sink.host, sink.port), "a@a.test", ["b@b.test"], MSG)
    r = submit(Peer(sink.host, sink.port, ca_file=str(sink.ca_file)), "a@a.test", ["b@b.test"], MSG)
    assert r.tls and sink.messages[0].data == MSG


def test_refused_login_is_a_login_error(smtp_sink_factory: Any) -> None:
    sink = smtp_sink_factory(tls=True, auth=("alice", "s3cret"))
    with pytest.raises(LoginError) as e:
        submit(
            Peer(sink.host, sink.port, pin_sha256=_pin(sink), login_hint="fix it"),
            "a@a.test",
            ["b@b.test"],
            MSG,
            login=("alice", "wrong"),
        )
    assert e.value.code == 535 and e.value.hint == "fix it"
    assert isinstance(e.value, DeliveryError) and sink.messages == []


def test_a_file_is_streamed_with_progress_and_arrives_unchanged(
    smtp_sink: Any, tmp_path: Path
) -> None:
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n"
    body = b"".join(b"." + line if i % 97 == 0 else line for i in range(40_000))
    data = b"Subject: big\r\n\r\n" + body  # ~3 MiB: several chunks, dots across them
    path = tmp_path / "m.eml"
    path.write_bytes(data)
    seen: list[tuple[int, int]] = []
    submit(
        Peer(smtp_sink.host, smtp_sink.port),
        "a@a.test",
        ["b@b.test"],
        path,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert smtp_sink.messages[0].data == data
    assert len(seen) > 1 and seen[-1] == (len(data), len(data))
    submit(Peer(smtp_sink.host, smtp_sink.port), "a@a.test", ["b@b.test"], data)
    assert smtp_sink.messages[1].data == data


def test_larger_than_the_servers_size_is_refused_before_mail(smtp_sink_factory: Any) -> None:
    sink = smtp_sink_factory(size_limit=100)
    submit(Peer(sink.host, sink.port), "a@a.test", ["b@b.test"], MSG)
    assert f"SIZE={len(MSG)}" in sink.messages[0].mail_options
    with pytest.raises(DeliveryError, match="larger than"):
        submit(Peer(sink.host, sink.port), "a@a.test", ["b@b.test"], MSG + b"x" * 200 + b"\r\n")
    assert sink.handler.rcpt_seen == ["b@b.test"]  # the first message's only


def test_one_refused_recipient_sends_to_none(smtp_sink: Any) -> None:
    smtp_sink.fail("rcpt", 550, "5.1.1 unknown")
    with pytest.raises(DeliveryError, match="550"):
        submit(Peer(smtp_sink.host, smtp_sink.port), "a@a.test", ["x@b.test", "b@b.test"], MSG)
    smtp_sink.fail("rcpt", 451, "4.3.0 later")
    with pytest.raises(TemporaryError, match="451") as e:
        submit(
            Peer(smtp_sink.host, smtp_sink.port, retry_hint="retry"),
            "a@a.test",
            ["x@b.test", "b@b.test"],
            MSG,
        )
    assert e.value.hint == "retry" and not isinstance(e.value, DeliveryError)
    assert smtp_sink.messages == []


def test_utf8_addresses_need_smtputf8(smtp_sink_factory: Any) -> None:
    plain = smtp_sink_factory()
    with pytest.raises(DeliveryError, match="SMTPUTF8"):
        submit(Peer(plain.host, plain.port), "a@a.test", ["用户@例子.测试"], MSG)
    utf8 = smtp_sink_factory(smtputf8=True)
    submit(Peer(utf8.host, utf8.port), "a@a.test", ["用户@例子.测试"], MSG)
    assert utf8.messages[0].rcpt_tos == ["用户@例子.测试"]
    assert "SMTPUTF8" in utf8.messages[0].mail_options


def test_a_connection_lost_after_the_dot_is_uncertain(smtp_sink: Any) -> None:
    smtp_sink.drop_after_data()
    with pytest.raises(UncertainDeliveryError):
        submit(
            Peer(smtp_sink.host, smtp_sink.port, uncertain_hint="check"),
            "a@a.test",
            ["b@b.test"],
            MSG,
        )
    assert smtp_sink.handler.dropped[0].data == MSG
