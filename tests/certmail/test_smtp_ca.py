"""Issue 10 item 20: direct sending to a private STARTTLS server whose certificate is
issued by a private CA, named with ``?ca=FILE`` in CERTMAIL_SMTP_URL or CERTMAIL_SMTP_CA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from certmail.api import Certmail, QueuedError
from certmail.smtp import parse_smtp_url
from keys.errors import NotFoundError
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.x509 import private_ca


@pytest.fixture
def private_sink(tmp_path: Path) -> Any:
    """A STARTTLS server whose certificate only the private CA vouches for."""
    sink = SmtpSink(tmp_path, tls=True)
    sink.ca_file, sink.tls_context = private_ca(tmp_path)
    sink.start()
    yield sink
    sink.stop()


def _send(c: Any) -> Any:
    with Certmail(c.alice.settings) as cm:
        return cm.send(to=[c.bob.email], subject="private", body="hello\n", notarize=False)


def test_private_ca_via_url_or_env(
    correspondents: Any, private_sink: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = correspondents
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("CERTMAIL_SMTP_CA", raising=False)
    url = f"smtp://127.0.0.1:{private_sink.port}?starttls=require"
    c.settings(c.alice, smtp_url=url)
    with pytest.raises(QueuedError, match="certificate verify failed"):
        _send(c)
    assert private_sink.messages == []
    c.settings(c.alice, smtp_url=f"{url}&ca={private_sink.ca_file}")
    r = _send(c)
    assert r.status == "sent" and len(private_sink.messages) == 1
    assert private_sink.messages[0].tls
    c.settings(c.alice, smtp_url=url)
    monkeypatch.setenv("CERTMAIL_SMTP_CA", str(private_sink.ca_file))
    _send(c)
    assert len(private_sink.messages) == 2


def test_a_ca_trusts_only_itself(
    correspondents: Any, private_sink: Any, smtp_sink_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ?ca= the system's store is not consulted: another server's CA does not count."""
    c = correspondents
    other = smtp_sink_factory(tls=True)  # self-signed, trusted through SSL_CERT_FILE
    monkeypatch.setenv("SSL_CERT_FILE", str(other.ca_file))
    c.settings(c.alice, smtp_url=f"smtp://127.0.0.1:{other.port}?ca={private_sink.ca_file}")
    with pytest.raises(QueuedError, match="certificate verify failed"):
        _send(c)
    assert other.messages == []


def test_ca_parsing(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert parse_smtp_url(f"smtp://h?ca={ca}", env={}).ca_file == str(ca)
    assert parse_smtp_url("smtps://h", env={"CERTMAIL_SMTP_CA": str(ca)}).ca_file == str(ca)
    assert parse_smtp_url("smtp://h", env={}).ca_file is None
    # The URL's ca= wins over the environment.
    other = tmp_path / "other.pem"
    other.write_text("y")
    t = parse_smtp_url(f"smtp://h?starttls=require&ca={other}", env={"CERTMAIL_SMTP_CA": str(ca)})
    assert t.ca_file == str(other) and t.starttls == "require"
    with pytest.raises(NotFoundError, match="CA file"):
        parse_smtp_url(f"smtp://h?ca={tmp_path / 'missing.pem'}", env={})
