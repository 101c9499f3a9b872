"""A client that rejects the relay's certificate costs one log line, not a traceback.

Issue 10 item 20: STARTTLS handshake failures were logged by aiosmtpd with two
chained tracebacks.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from pathlib import Path

import pytest

from tests.fixtures.notary import free_port
from tests.notary.relay_helpers import RelayNotary

pytestmark = pytest.mark.timeout(120)


def test_rejected_certificate_is_one_log_line(notary_dir: Path) -> None:
    relay = RelayNotary(notary_dir, free_port())
    relay.start()
    try:
        for _ in range(3):
            s = smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=10)
            s.ehlo()
            with pytest.raises(ssl.SSLCertVerificationError):
                s.starttls(context=ssl.create_default_context())  # the self-signed cert: rejected
            s.close()
        ok = relay.connect()  # the relay still serves a client that pins or accepts it
        assert ok.noop()[0] == 250
        ok.quit()
        log = relay.proc.log_path
        for _ in range(50):  # the server notices the alert shortly after the client sends it
            if log.read_text().count("TLS handshake failed") >= 3:
                break
            time.sleep(0.1)
    finally:
        relay.proc.stop()
    text = log.read_text()
    assert text.count("TLS handshake failed: tlsv1 alert unknown ca") == 3, text[-3000:]
    assert "Traceback" not in text and "TLSSetupException" not in text
